/* webhook.c - wires the webhook's parts on one loop and answers reviews. */
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "clock.h"
#include "error.h"
#include "http.h"
#include "imgref.h"
#include "index.h"
#include "kube.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "probe.h"
#include "record.h"
#include "server.h"
#include "sysns.h"
#include "tls.h"

#ifndef THAW_VERSION
#define THAW_VERSION "dev"
#endif

struct thaw_webhook {
  uv_loop_t *loop;
  char *ns, *cache_host, *private_host;
  char *excluded_buf; /* --exclude-namespaces, split into excluded */
  const char *excluded[THAW_EXCLUDED_MAX + 1];
  thaw_metrics_t *metrics;
  thaw_metric_child_t *decisions[THAW_DECISION_COUNT];
  thaw_metric_t *records, *registry_up, *kube_requests, *cert_reloads,
      *cert_expiry;
  thaw_metric_child_t *pods_gated;
  unsigned cold_wait_s;
  thaw_lease_t *lease; /* with cold wait only */
  thaw_http_t *http;
  thaw_kube_t *kube;
  thaw_index_t *index;
  thaw_recorder_t *recorder;
  thaw_probe_t *probe;
  thaw_tls_t *tls;
  thaw_server_t *server;
  thaw_webhook_stopped_cb stopped_cb;
  void *stopped_data;
};

/* --- the decision's environment -------------------------------------- */

static int ns_flags(const char *ns, void *data) {
  thaw_webhook_t *wh = data;
  return thaw_index_namespace_flags(ns, wh->index);
}

static enum thaw_image_state image_state(const char *normalized, char *digest,
                                         void *data) {
  thaw_webhook_t *wh = data;
  return thaw_index_image_state(normalized, digest, wh->index);
}

static int image_pending(const char *normalized, void *data) {
  thaw_webhook_t *wh = data;
  return thaw_index_image_pending(normalized, wh->index);
}

/* The recorder's `exists`: the index has a CachedImage for it. */
static int indexed(const char *normalized, void *data) {
  thaw_webhook_t *wh = data;
  return thaw_index_image_state(normalized, NULL, wh->index) !=
         THAW_IMAGE_ABSENT;
}

static void record(const char *normalized, void *data) {
  thaw_webhook_t *wh = data;
  thaw_recorder_record(wh->recorder, normalized); /* only enqueues */
}

static int review(const char *body, size_t len, char **out, size_t *out_len,
                  char *err, size_t errlen, void *data) {
  thaw_webhook_t *wh = data;
  const thaw_admit_env_t env = {
      .cache_host = wh->cache_host,
      .private_host = wh->private_host,
      .system_namespace = wh->ns,
      .excluded_namespaces = wh->excluded,
      .registry_up = wh->probe != NULL && thaw_probe_up(wh->probe),
      .namespace_flags = ns_flags,
      .image_state = image_state,
      .record = record,
      .data = wh,
      .cold_wait_s = wh->cold_wait_s,
      .leader_fresh = wh->lease != NULL &&
                      thaw_lease_fresh(wh->lease, (int64_t)thaw_wall_ms()),
      .image_pending = image_pending,
  };
  thaw_admit_stats_t st;
  memset(&st, 0, sizeof st);
  int rc = thaw_admit_review(body, len, &env, out, out_len, &st, err, errlen);
  if (rc != 0) {
    thaw_debug("review refused", "error", err);
    return rc;
  }
  for (int d = 0; d < THAW_DECISION_COUNT; d++)
    if (st.decisions[d] > 0)
      thaw_metric_child_add(wh->decisions[d], st.decisions[d]);
  if (st.gated && !st.dry_run)
    thaw_metric_child_add(wh->pods_gated, 1);
  return 0;
}

static int ready(void *data) {
  thaw_webhook_t *wh = data;
  /* synced, and still able to list and watch (RBAC may be revoked) */
  return thaw_index_synced(wh->index) && !thaw_index_denied(wh->index);
}

/* --- observers: metrics and logs ------------------------------------- */

static void on_kube_request(const char *verb, long status, void *data) {
  thaw_webhook_t *wh = data;
  char code[24];
  snprintf(code, sizeof code, "%ld", status); /* 0: no HTTP answer */
  const char *v[] = {verb, code};
  thaw_metric_inc(wh->kube_requests, v);
}

static void on_record(const char *result, const char *normalized,
                      void *data) {
  (void)normalized;
  thaw_webhook_t *wh = data;
  const char *v[] = {result};
  thaw_metric_inc(wh->records, v);
}

static void on_indexed(const char *normalized, void *data) {
  thaw_webhook_t *wh = data;
  if (wh->recorder != NULL)
    thaw_recorder_forget(wh->recorder, normalized);
}

static void on_probe(int up, void *data) {
  thaw_webhook_t *wh = data;
  thaw_metric_set(wh->registry_up, NULL, up);
  if (up)
    thaw_info("cache registry up: rewriting resumes");
  else
    thaw_warn("cache registry down: images are left unchanged");
}

static void on_collect(thaw_metrics_t *m, void *data) {
  (void)m;
  thaw_webhook_t *wh = data;
  thaw_metric_set(wh->registry_up, NULL,
                  wh->probe != NULL && thaw_probe_up(wh->probe));
}

static void on_cert(int err, const char *serial, double not_after,
                    void *data) {
  (void)serial;
  thaw_webhook_t *wh = data;
  const char *v[] = {err == 0 ? "success" : "error"};
  thaw_metric_inc(wh->cert_reloads, v);
  if (err == 0)
    thaw_metric_set(wh->cert_expiry, NULL, not_after);
}

/* --- life cycle ------------------------------------------------------ */

static int register_metrics(thaw_webhook_t *wh) {
  thaw_metrics_t *m = wh->metrics;
  static const char *const decision[] = {"decision"};
  static const char *const result[] = {"result"};
  static const char *const verb_code[] = {"verb", "code"};
  thaw_metric_t *images = thaw_metrics_counter(
      m, "thaw_webhook_images_total",
      "Container images decided, by decision.", 1, decision);
  for (int d = 0; d < THAW_DECISION_COUNT; d++) {
    const char *v[] = {thaw_decision_name((enum thaw_decision)d)};
    wh->decisions[d] = thaw_metric_child(images, v); /* zeros are visible */
  }
  thaw_metric_t *gated = thaw_metrics_counter(
      m, "thaw_webhook_pods_gated_total",
      "Pods given the scheduling gate thaw.dev/warming (cold wait).", 0, NULL);
  wh->pods_gated = thaw_metric_child(gated, NULL); /* exported at 0 */
  wh->records = thaw_metrics_counter(
      m, "thaw_webhook_records_total",
      "CachedImage creations for cold images, by result.", 1, result);
  wh->registry_up = thaw_metrics_gauge(
      m, "thaw_cache_registry_up",
      "1 when the cache registry answers its health probe.", 0, NULL);
  wh->kube_requests = thaw_metrics_counter(
      m, "thaw_kube_requests_total",
      "Kubernetes API requests, by verb and HTTP status (0: no answer).", 2,
      verb_code);
  wh->cert_reloads = thaw_metrics_counter(
      m, "thaw_webhook_cert_reloads_total",
      "Serving certificate loads, by result.", 1, result);
  wh->cert_expiry = thaw_metrics_gauge(
      m, "thaw_webhook_cert_expiry_timestamp_seconds",
      "notAfter of the serving certificate in use.", 0, NULL);
  if (images == NULL || wh->pods_gated == NULL || wh->records == NULL || wh->registry_up == NULL ||
      wh->kube_requests == NULL || wh->cert_reloads == NULL ||
      wh->cert_expiry == NULL)
    return THAW_ENOMEM;
  int rc = thaw_metrics_register_process(m, THAW_VERSION);
  if (rc == 0)
    rc = thaw_metrics_on_collect(m, on_collect, wh);
  return rc;
}

int thaw_webhook_new(uv_loop_t *loop, const thaw_webhook_config_t *cfg,
                     thaw_webhook_t **out, char *err, size_t errlen) {
  *out = NULL;
  thaw_webhook_t *wh = calloc(1, sizeof *wh);
  if (wh == NULL)
    return THAW_ENOMEM;
  wh->loop = loop;
  wh->ns = strdup(cfg->namespace);
  wh->cache_host = strdup(cfg->cache_host);
  const char *ph = cfg->private_cache_host ? cfg->private_cache_host
                                           : THAW_IMGREF_PRIVATE_CACHE_HOST;
  size_t phn = strlen(ph) + sizeof THAW_IMGREF_PRIVATE_PREFIX;
  if ((wh->private_host = malloc(phn)) != NULL &&
      thaw_imgref_private_host(ph, wh->private_host, phn) != 0) {
    free(wh->private_host);
    wh->private_host = NULL;
  }
  wh->metrics = thaw_metrics_new();
  int rc = THAW_ENOMEM;
  if (wh->ns == NULL || wh->cache_host == NULL || wh->private_host == NULL ||
      wh->metrics == NULL ||
      (rc = register_metrics(wh)) != 0)
    goto fail;
  char why[400];
  if (cfg->exclude_namespaces &&
      thaw_namespace_list_parse(cfg->exclude_namespaces, &wh->excluded_buf,
                                wh->excluded, why, sizeof why) != 0) {
    snprintf(err, errlen, "--exclude-namespaces %s", why);
    rc = THAW_ECONFIG;
    goto fail;
  }

  rc = thaw_tls_new(loop, cfg->tls_cert_file, cfg->tls_key_file, &wh->tls,
                    why, sizeof why);
  if (rc != 0) {
    snprintf(err, errlen, "tls: %s", why);
    goto fail;
  }
  thaw_tls_set_observer(wh->tls, on_cert, wh);

  const thaw_server_opts_t so = {
      .bind_address = cfg->bind_address,
      .metrics_bind_address = cfg->metrics_bind_address,
      .tls = wh->tls,
      .metrics = wh->metrics,
      .review = review,
      .ready = ready,
      .data = wh,
  };
  if ((rc = thaw_server_new(loop, &so, &wh->server, err, errlen)) != 0)
    goto fail;

  if ((rc = thaw_http_new(loop, &wh->http)) != 0)
    goto fail;
  if ((rc = thaw_kube_new(loop, cfg->kube, &wh->kube)) != 0) {
    snprintf(err, errlen, "kubernetes client: %s", thaw_strerror(rc));
    goto fail;
  }
  thaw_kube_set_observer(wh->kube, on_kube_request, wh);
  if ((rc = thaw_index_new(loop, wh->kube, &wh->index)) != 0 ||
      (rc = thaw_recorder_new(loop, wh->kube, indexed, wh, &wh->recorder)) !=
          0)
    goto fail;
  thaw_index_set_observer(wh->index, on_indexed, wh);
  wh->cold_wait_s = cfg->cold_wait_s;
  if (cfg->cold_wait_s > 0 &&
      (rc = thaw_lease_new(loop, wh->kube, wh->ns, "thaw-controller",
                           &wh->lease)) != 0)
    goto fail;
  thaw_recorder_set_observer(wh->recorder, on_record, wh);

  if (cfg->registry_url != NULL) {
    rc = thaw_probe_new(loop, wh->http, cfg->registry_url, &wh->probe);
    if (rc == THAW_EINVAL) {
      snprintf(err, errlen, "--registry-url %s: not an http(s) base URL",
               cfg->registry_url);
      rc = THAW_ECONFIG;
    }
    if (rc != 0)
      goto fail;
    thaw_probe_set_observer(wh->probe, on_probe, wh);
  }
  *out = wh;
  return 0;
fail:
  if (rc == THAW_ENOMEM)
    snprintf(err, errlen, "out of memory");
  thaw_webhook_free(wh);
  return rc;
}

int thaw_webhook_start(thaw_webhook_t *wh, char *err, size_t errlen) {
  int rc = thaw_server_start(wh->server, err, errlen);
  if (rc != 0)
    return rc;
  if ((rc = thaw_tls_start(wh->tls)) != 0 ||
      (rc = thaw_index_start(wh->index)) != 0 ||
      (wh->lease != NULL && (rc = thaw_lease_start(wh->lease)) != 0) ||
      (wh->probe != NULL && (rc = thaw_probe_start(wh->probe)) != 0)) {
    snprintf(err, errlen, "start: %s", thaw_strerror(rc));
    return rc;
  }
  if (wh->probe == NULL)
    thaw_warn("no --registry-url: the registry gate stays down, images are "
              "recorded but never rewritten");
  char cold[16];
  snprintf(cold, sizeof cold, "%us", wh->cold_wait_s);
  thaw_info("thaw-webhook started", "version", THAW_VERSION, "namespace",
            wh->ns, "cache_host", wh->cache_host,
            "private_host", wh->private_host, "cold_wait", cold);
  return 0;
}

/* Releases the parts with loop handles, in dependency order; their memory
 * goes as the loop runs. */
static void release_parts(thaw_webhook_t *wh) {
  thaw_recorder_free(wh->recorder); /* before the index and client it uses */
  wh->recorder = NULL;
  thaw_index_free(wh->index);
  wh->index = NULL;
  thaw_lease_free(wh->lease); /* before its client */
  wh->lease = NULL;
  thaw_probe_free(wh->probe); /* before its http client */
  wh->probe = NULL;
  thaw_kube_free(wh->kube);
  wh->kube = NULL;
  thaw_http_free(wh->http);
  wh->http = NULL;
  thaw_tls_free(wh->tls);
  wh->tls = NULL;
}

static void on_server_stopped(int drained, void *data) {
  thaw_webhook_t *wh = data;
  if (drained)
    release_parts(wh);
  thaw_info(drained ? "stopped" : "stopped with connections open");
  if (wh->stopped_cb != NULL)
    wh->stopped_cb(drained, wh->stopped_data);
}

void thaw_webhook_stop(thaw_webhook_t *wh, thaw_webhook_stopped_cb cb,
                       void *data) {
  wh->stopped_cb = cb;
  wh->stopped_data = data;
  thaw_server_stop(wh->server, on_server_stopped, wh);
}

void thaw_webhook_free(thaw_webhook_t *wh) {
  if (wh == NULL)
    return;
  release_parts(wh); /* no-ops after a stop */
  thaw_server_free(wh->server);
  thaw_metrics_free(wh->metrics);
  free(wh->ns);
  free(wh->excluded_buf);
  free(wh->cache_host);
  free(wh->private_host);
  free(wh);
}
