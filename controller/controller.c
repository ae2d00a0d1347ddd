/* controller.c - wires thaw-controller's parts on one loop (controller.h). */
#include "controller.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gc.h"
#include "http.h"
#include "httpd.h"
#include "kube.h"
#include "kubeconfig.h"
#include "inventory.h"
#include "leader.h"
#include "lifecycle.h"
#include "log.h"
#include "metrics.h"
#include "nspull.h"
#include "pinhold.h"
#include "reconcile.h"
#include "registry.h"
#include "release.h"
#include "repair.h"
#include "sources.h"
#include "token.h"
#include "use.h"
#include "warm.h"

#ifndef THAW_VERSION
#define THAW_VERSION "dev"
#endif

#define ACTIVATE_POLL_MS 200

struct thaw_controller {
  uv_loop_t *loop;
  const thaw_config_t *cfg;
  thaw_metrics_t *metrics;
  thaw_metric_t *kube_requests, *upstream_requests;
  thaw_http_t *http;
  thaw_kube_t *kube;
  thaw_registry_t *registry;
  thaw_warmer_t *warmer;
  thaw_sources_t *sources;
  thaw_reconciler_t *rec;
  thaw_gc_t *gc; /* registry garbage collection (a no-op without --gc-url) */
  thaw_repair_t *repair;
  thaw_release_t *release; /* gated pods (cold wait) */
  thaw_use_t *use;          /* usedBy, lastUsedAt */
  thaw_inventory_t *inv;    /* what the cache holds, by content */
  thaw_pinhold_t *pinhold;  /* old digests that pods still name */
  thaw_store_t *moved;      /* private objects whose public copy was let go */
  thaw_lifecycle_t *life;   /* expiry and eviction */
  thaw_leader_t *leader;
  thaw_httpd_t *httpd;
  thaw_token_t *token;        /* NULL: the cache registry has no auth */
  thaw_httpd_t *token_httpd;  /* GET /token */
  thaw_nspull_t *nspull;      /* thaw-pull Secrets (token + private) */
  const char *insecure[THAW_CONFIG_LIST_MAX + 2];
  uv_timer_t activate;
  int leading, sources_active, stopping;
  thaw_controller_stopped_cb stopped_cb;
  void *stopped_data;
};

/* --- observers -------------------------------------------------------- */

static void on_kube_request(const char *verb, long status, void *data) {
  thaw_controller_t *c = data;
  char code[24];
  snprintf(code, sizeof code, "%ld", status); /* 0: no HTTP answer */
  const char *v[] = {verb, code};
  thaw_metric_inc(c->kube_requests, v);
}

static void on_registry_request(const char *host, long status, void *data) {
  thaw_controller_t *c = data;
  char code[24];
  snprintf(code, sizeof code, "%ld", status);
  const char *v[] = {host, code};
  thaw_metric_inc(c->upstream_requests, v);
}

/* The token endpoint: may namespace `ns` read private/ now? */
static int ns_private(const char *ns, void *data) {
  thaw_controller_t *c = data;
  return thaw_sources_ns_serves(c->sources, ns) == THAW_SOURCES_NS_PRIVATE;
}

static int image_private(const char *normalized, void *data) {
  thaw_controller_t *c = data;
  return thaw_release_is_private(c->release, normalized);
}

static int exists(const char *normalized, void *data) {
  thaw_controller_t *c = data;
  return thaw_reconciler_exists(c->rec, normalized);
}

/* --- lifecycle glue ---------------------------------------------------- */

static const thaw_store_t *ci_store(void *data) {
  thaw_controller_t *c = data;
  return thaw_reconciler_store(c->rec);
}

static int ci_synced(void *data) {
  thaw_controller_t *c = data;
  return thaw_reconciler_synced(c->rec);
}

/* Before private/ existed a private image was cached under its public
 * path, which anonymous tokens reach: that copy is handed to the inventory
 * as an object of its own and dropped at once, so it is deleted under the
 * inventory's safe-deletion rules (never while another object holds it
 * there). Once per object and process; a 404 costs one read. The private
 * copy is made again by the next refresh (thaw_inventory_absent). */
static void drop_public_copy(thaw_controller_t *c, const char *name,
                             const thaw_cirec_t *rec) {
  char pub[THAW_IMGREF_STR_MAX + 1], legacy[320];
  static char seen[] = "";
  if (!(rec->flags & THAW_CI_PRIVATE) || rec->digest == NULL ||
      rec->digest[0] == '\0' || c->moved == NULL ||
      thaw_store_get(c->moved, name, NULL) != NULL ||
      thaw_warm_cache_repo_of(rec->norm, 0, pub, sizeof pub) != 0)
    return;
  /* '#' is in no object name: the two never meet */
  snprintf(legacy, sizeof legacy, "%.250s#public", name);
  if (thaw_inventory_set(c->inv, legacy, pub, rec->digest, 0) != 0 ||
      thaw_store_put(c->moved, name, 0, seen, NULL) < 0)
    return;
  thaw_inventory_remove(c->inv, legacy);
}

static int absent(const char *name, void *data) {
  thaw_controller_t *c = data;
  return thaw_inventory_absent(c->inv, name);
}

/* What each CachedImage holds in the cache, for the inventory; an object
 * whose manifests are being deleted no longer owns them. */
static void on_ci_changed(const char *name, const thaw_cirec_t *rec,
                          void *data) {
  thaw_controller_t *c = data;
  char repo[THAW_IMGREF_STR_MAX + 1];
  thaw_release_cachedimage(c->release, name, rec);
  if (rec == NULL) {
    thaw_inventory_remove(c->inv, name);
    thaw_store_remove(c->moved, name, NULL, NULL);
    return;
  }
  if (c->life && thaw_lifecycle_releasing(c->life, name))
    return;
  if (rec->norm[0] == '\0' ||
      thaw_warm_cache_repo_of(rec->norm, (rec->flags & THAW_CI_PRIVATE) != 0,
                              repo, sizeof repo) != 0)
    return;
  thaw_pinhold_moving(c->pinhold, name, rec->norm, repo, rec->digest);
  if (thaw_inventory_set(c->inv, name, repo, rec->digest, rec->size_bytes) != 0)
    thaw_warn("inventory: object not recorded", "name", name);
  drop_public_copy(c, name, rec);
}

static int may_delete(const char *repo, void *data) {
  thaw_controller_t *c = data;
  return c->leading && c->life && thaw_lifecycle_may_delete(c->life, repo);
}

/* A manifest left the cache: its blobs are reclaimed by the next GC. */
static void on_manifest_deleted(const char *repo, const char *digest,
                                int64_t freed, void *data) {
  thaw_controller_t *c = data;
  thaw_info("manifest deleted from the cache", "repo", repo, "digest", digest);
  thaw_gc_request(c->gc, freed);
}

static int gc_running(void *data) {
  thaw_controller_t *c = data;
  return thaw_gc_running(c->gc);
}

static int may_push(const char *repo, void *data) {
  thaw_controller_t *c = data;
  return thaw_inventory_deleting(c->inv, repo) == 0;
}

static int has_room(char *msg, size_t cap, void *data) {
  thaw_controller_t *c = data;
  return thaw_lifecycle_has_room(c->life, msg, cap);
}

/* Unique bytes are known only to the leader, which reads the cache. */
static int64_t cache_bytes(void *data) {
  thaw_controller_t *c = data;
  return c->leading ? thaw_inventory_unique_bytes(c->inv) : -1;
}

/* --- leadership -------------------------------------------------------- */

/* The pod sweep creates only once the CachedImage store is complete, so
 * it never re-creates what exists. */
static void on_activate_tick(uv_timer_t *t) {
  thaw_controller_t *c = t->data;
  if (!c->leading || c->sources_active)
    return;
  if (!thaw_reconciler_synced(c->rec))
    return;
  uv_timer_stop(t);
  c->sources_active = 1;
  thaw_sources_set_active(c->sources, 1);
}

/* The registry client lives only while leading: freeing it on a step-down
 * stops every transfer at once, so a new leader never warms alongside. */
static int make_warmer(thaw_controller_t *c) {
  const thaw_config_t *cfg = c->cfg;
  thaw_registry_opts_t ro = {.insecure = c->insecure,
                             .ca_file = cfg->ca_file,
                             .observe = on_registry_request,
                             .observe_data = c,
                             .mint = c->token ? thaw_token_mint_self : NULL,
                             .mint_data = c->token};
  thaw_warmer_opts_t wo = {.cache_registry = cfg->registry_host,
                           .platforms = cfg->platforms,
                           .blob_concurrency = cfg->blob_concurrency};
  int rc = thaw_registry_new(c->http, &ro, &c->registry);
  if (rc == 0)
    rc = thaw_warmer_new(c->registry, &wo, &c->warmer);
  return rc;
}

static void free_warmer(thaw_controller_t *c) {
  thaw_warmer_free(c->warmer); /* warms' done ran already: none is left */
  thaw_registry_free(c->registry);
  c->warmer = NULL;
  c->registry = NULL;
}

/* Garbage collection pauses the reconciler's pushes around a run (gc.h). */
static void gc_pause(thaw_gc_drained_cb drained, void *ctx, void *data) {
  thaw_controller_t *c = data;
  thaw_reconciler_pause(c->rec, 1, drained, ctx);
}

static void gc_resume(void *data) {
  thaw_controller_t *c = data;
  thaw_reconciler_pause(c->rec, 0, NULL, NULL);
}

/* A new leader pushes only once the agent has no run in flight. */
static void on_gc_ready(void *data) { gc_resume(data); }

static void start_leading(thaw_controller_t *c) {
  int rc = make_warmer(c);
  if (rc != 0) {
    free_warmer(c);
    thaw_error("leading, but cannot make the registry client",
               "error", thaw_strerror(rc));
    return;
  }
  c->leading = 1;
  thaw_info("leading: reconciling CachedImages");
  thaw_reconciler_pause(c->rec, 1, NULL, NULL); /* until on_gc_ready */
  thaw_inventory_set_registry(c->inv, c->registry, c->cfg->registry_host);
  thaw_reconciler_set_active(c->rec, c->warmer);
  thaw_use_set_active(c->use, 1);
  thaw_lifecycle_set_active(c->life, 1);
  thaw_gc_set_active(c->gc, 1, on_gc_ready, c);
  thaw_repair_set_active(c->repair, 1);
  thaw_release_set_active(c->release, 1);
  if (c->nspull)
    thaw_nspull_set_active(c->nspull, 1);
  uv_timer_start(&c->activate, on_activate_tick, 0, ACTIVATE_POLL_MS);
}

static void stop_leading(thaw_controller_t *c) {
  c->leading = 0;
  uv_timer_stop(&c->activate);
  thaw_repair_set_active(c->repair, 0);
  thaw_release_set_active(c->release, 0);
  if (c->nspull)
    thaw_nspull_set_active(c->nspull, 0);
  thaw_lifecycle_set_active(c->life, 0);
  thaw_use_set_active(c->use, 0);
  thaw_inventory_set_registry(c->inv, NULL, NULL); /* before the client goes */
  if (c->sources_active)
    thaw_sources_set_active(c->sources, 0);
  c->sources_active = 0;
  thaw_gc_set_active(c->gc, 0, NULL, NULL);
  thaw_reconciler_set_active(c->rec, NULL); /* cancels warms in flight */
  thaw_reconciler_pause(c->rec, 0, NULL, NULL);
  free_warmer(c);
}

static void on_started_leading(thaw_leader_t *l, void *data) {
  (void)l;
  start_leading(data);
}

static void on_stopped_leading(thaw_leader_t *l, void *data) {
  (void)l;
  thaw_controller_t *c = data;
  thaw_info("not leading: warms stop");
  stop_leading(c);
}

/* --- /metrics, /healthz, /readyz -------------------------------------- */

static void on_http(const char *path, thaw_httpd_reply_t *reply, void *data) {
  thaw_controller_t *c = data;
  if (strcmp(path, "/metrics") == 0) {
    thaw_httpd_reply_metrics(reply, c->metrics);
  } else if (strcmp(path, "/healthz") == 0) {
    thaw_httpd_reply_text(reply, 200, "ok\n");
  } else if (strcmp(path, "/readyz") == 0) {
    /* synced, and still able to list and watch (RBAC may be revoked) */
    int ok = thaw_reconciler_synced(c->rec) && thaw_sources_synced(c->sources) &&
             !thaw_reconciler_denied(c->rec) && !thaw_sources_denied(c->sources);
    thaw_httpd_reply_text(reply, ok ? 200 : 503, ok ? "ok\n" : "informers not synced\n");
  } else {
    thaw_httpd_reply_text(reply, 404, "not found\n");
  }
}

/* --- life cycle -------------------------------------------------------- */

static int build(thaw_controller_t *c, char *err, size_t errlen) {
  const thaw_config_t *cfg = c->cfg;
  int rc;
  static const char *const kube_labels[] = {"verb", "code"},
                           *const reg_labels[] = {"registry", "code"};
  if ((c->metrics = thaw_metrics_new()) == NULL ||
      thaw_metrics_register_process(c->metrics, THAW_VERSION) != 0 ||
      (c->kube_requests = thaw_metrics_counter(
           c->metrics, "thaw_kube_requests_total",
           "Kubernetes API requests by verb and HTTP status (0: none).", 2,
           kube_labels)) == NULL ||
      (c->upstream_requests = thaw_metrics_counter(
           c->metrics, "thaw_upstream_requests_total",
           "Registry requests by host and HTTP status (0: none).", 2,
           reg_labels)) == NULL)
    return thaw_errf(err, errlen, THAW_ENOMEM, "out of memory");

  if (cfg->token_key_file != NULL &&
      ((rc = thaw_token_new(cfg->token_key_file, cfg->token_cert_file,
                            c->metrics, &c->token, err, errlen)) != 0 ||
       (rc = thaw_token_set_cache_host(c->token, cfg->registry_host)) != 0))
    return rc;

  thaw_kube_config_t kc;
  if ((rc = thaw_kube_config_load(&kc, cfg->kubeconfig, err, errlen)) != 0)
    return rc;
  rc = thaw_kube_new(c->loop, &kc, &c->kube);
  thaw_kube_config_free(&kc);
  if (rc != 0)
    return thaw_errf(err, errlen, rc, "kube client: %s", thaw_strerror(rc));
  thaw_kube_set_observer(c->kube, on_kube_request, c);

  size_t n = 0;
  for (size_t i = 0; cfg->insecure_registries[i]; i++)
    c->insecure[n++] = cfg->insecure_registries[i];
  if (cfg->registry_insecure)
    c->insecure[n++] = cfg->registry_host;
  c->insecure[n] = NULL;
  if ((rc = thaw_http_new(c->loop, &c->http)) != 0)
    return thaw_errf(err, errlen, rc, "http client: %s", thaw_strerror(rc));
  thaw_gc_opts_t go = {.agent_url = cfg->gc_url,
                       .interval_ms = cfg->gc_interval_ms,
                       .metrics = c->metrics,
                       .pause = gc_pause,
                       .resume = gc_resume,
                       .data = c};
  if ((rc = thaw_gc_new(c->loop, c->http, &go, &c->gc)) != 0)
    return thaw_errf(err, errlen, rc, "gc: %s", thaw_strerror(rc));

  thaw_sources_opts_t so = {.system_namespace = cfg->namespace_,
                            .cache_host = cfg->cache_host,
                            .private_host = cfg->private_host,
                            .prewarm_namespaces = cfg->prewarm_namespaces,
                            .excluded_namespaces = cfg->exclude_namespaces,
                            .exists = exists,
                            .exists_data = c,
                            .metrics = c->metrics};
  if ((rc = thaw_sources_new(c->loop, c->kube, &so, &c->sources)) != 0)
    return thaw_errf(err, errlen, rc, "sources: %s", thaw_strerror(rc));
  if (c->token)
    thaw_token_set_private_check(c->token, ns_private, c);
  thaw_nspull_opts_t npo = {.kube = c->kube, .sources = c->sources,
                            .token = c->token,
                            .host = cfg->private_cache_host};
  if (c->token && cfg->allow_private &&
      (rc = thaw_nspull_new(c->loop, &npo, &c->nspull)) != 0)
    return thaw_errf(err, errlen, rc, "thaw-pull secrets: %s",
                     thaw_strerror(rc));
  thaw_repair_opts_t rpo = {.cache_host = cfg->cache_host,
                            .private_host = cfg->private_host,
                            .is_private = image_private,
                            .data = c,
                            .after_ms = cfg->repair_after_ms,
                            .metrics = c->metrics};
  if ((rc = thaw_repair_new(c->loop, c->kube, c->sources, &rpo,
                            &c->repair)) != 0)
    return thaw_errf(err, errlen, rc, "repair: %s", thaw_strerror(rc));
  thaw_release_opts_t rlo = {.cache_host = cfg->cache_host,
                             .private_host = cfg->private_host,
                             .metrics = c->metrics,
                             .synced = ci_synced,
                             .data = c};
  if ((rc = thaw_release_new(c->loop, c->kube, c->sources, &rlo,
                             &c->release)) != 0)
    return thaw_errf(err, errlen, rc, "release: %s", thaw_strerror(rc));
  thaw_reconciler_opts_t reo = {.cfg = cfg,
                                .kube = c->kube,
                                .sources = c->sources,
                                .metrics = c->metrics};
  if ((rc = thaw_reconciler_new(c->loop, &reo, &c->rec)) != 0)
    return thaw_errf(err, errlen, rc, "reconciler: %s", thaw_strerror(rc));
  thaw_use_opts_t uo = {.kube = c->kube, .sources = c->sources,
                        .cachedimages = ci_store,
                        .cachedimages_synced = ci_synced, .data = c};
  if ((rc = thaw_use_new(c->loop, &uo, &c->use)) != 0)
    return thaw_errf(err, errlen, rc, "use tracking: %s", thaw_strerror(rc));
  thaw_inventory_opts_t io = {.may_delete = may_delete,
                              .deleted = on_manifest_deleted, .data = c};
  if ((rc = thaw_inventory_new(c->loop, &io, &c->inv)) != 0)
    return thaw_errf(err, errlen, rc, "inventory: %s", thaw_strerror(rc));
  if ((rc = thaw_pinhold_new(c->loop, c->inv, c->use,
                             cfg->expire_grace_ms, &c->pinhold)) != 0)
    return thaw_errf(err, errlen, rc, "holds: %s", thaw_strerror(rc));
  if ((c->moved = thaw_store_new(NULL, NULL)) == NULL)
    return thaw_errf(err, errlen, THAW_ENOMEM, "out of memory");
  thaw_lifecycle_opts_t lo = {.cfg = cfg, .kube = c->kube, .rec = c->rec,
                              .use = c->use, .inv = c->inv,
                              .gc_running = gc_running, .gc_data = c,
                              .events = thaw_reconciler_events(c->rec),
                              .metrics = c->metrics};
  if ((rc = thaw_lifecycle_new(c->loop, &lo, &c->life)) != 0)
    return thaw_errf(err, errlen, rc, "lifecycle: %s", thaw_strerror(rc));
  thaw_reconciler_hooks_t hooks = {.has_room = has_room,
                                   .may_push = may_push,
                                   .cache_bytes = cache_bytes,
                                   .absent = absent,
                                   .changed = on_ci_changed, .data = c};
  thaw_reconciler_set_hooks(c->rec, &hooks);

  if (cfg->leader_elect) {
    thaw_leader_opts_t lo = {.namespace = cfg->namespace_,
                             .on_started_leading = on_started_leading,
                             .on_stopped_leading = on_stopped_leading,
                             .data = c,
                             .metrics = c->metrics};
    if ((rc = thaw_leader_new(c->loop, c->kube, &lo, &c->leader)) != 0)
      return thaw_errf(err, errlen, rc, "leader election: %s",
                       thaw_strerror(rc));
  } else {
    thaw_metric_t *g =
        thaw_metrics_gauge(c->metrics, "thaw_leader",
                           "1 while this replica leads (always 1 without "
                           "--leader-elect).",
                           0, NULL);
    thaw_metric_set(g, NULL, 1);
  }
  return 0;
}

int thaw_controller_new(uv_loop_t *loop, const thaw_config_t *cfg,
                        thaw_controller_t **out, char *err, size_t errlen) {
  *out = NULL;
  thaw_controller_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return thaw_errf(err, errlen, THAW_ENOMEM, "out of memory");
  c->loop = loop;
  c->cfg = cfg;
  uv_timer_init(loop, &c->activate);
  c->activate.data = c;
  int rc = build(c, err, errlen);
  if (rc != 0) {
    thaw_controller_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

static void on_token_http(const thaw_httpd_request_t *req,
                          thaw_httpd_reply_t *reply, void *data) {
  thaw_controller_t *c = data;
  thaw_token_serve(c->token, req, reply);
}

int thaw_controller_start(thaw_controller_t *c, char *err, size_t errlen) {
  int rc = thaw_httpd_start(c->loop, c->cfg->metrics_bind_address, on_http,
                            c, &c->httpd, err, errlen);
  if (rc != 0)
    return rc;
  if (c->token != NULL &&
      (rc = thaw_httpd_start_request(c->loop, c->cfg->token_bind_address,
                                     on_token_http, c, &c->token_httpd, err,
                                     errlen)) != 0)
    return rc;
  if ((rc = thaw_reconciler_start(c->rec)) != 0 ||
      (rc = thaw_sources_start(c->sources)) != 0)
    return thaw_errf(err, errlen, rc, "informers: %s", thaw_strerror(rc));
  thaw_info("started", "version", THAW_VERSION, "registry",
            c->cfg->registry_url, "namespace", c->cfg->namespace_,
            "metrics", c->cfg->metrics_bind_address);
  if (c->leader)
    return thaw_leader_start(c->leader);
  start_leading(c);
  return 0;
}

static void on_released(thaw_leader_t *l, void *data) {
  (void)l;
  thaw_controller_t *c = data;
  if (c->stopped_cb)
    c->stopped_cb(c->stopped_data);
}

void thaw_controller_stop(thaw_controller_t *c,
                          thaw_controller_stopped_cb done, void *data) {
  if (c->stopping)
    return;
  c->stopping = 1;
  c->stopped_cb = done;
  c->stopped_data = data;
  if (c->leader) {
    thaw_leader_release(c->leader, on_released, c); /* stops leading first */
    return;
  }
  if (c->leading)
    stop_leading(c);
  if (done)
    done(data);
}

static void on_timer_closed(uv_handle_t *h) { free(h->data); }

void thaw_controller_free(thaw_controller_t *c) {
  if (c == NULL)
    return;
  thaw_httpd_free(c->httpd);
  thaw_httpd_free(c->token_httpd);
  thaw_leader_free(c->leader);
  thaw_nspull_free(c->nspull); /* before the sources it observes */
  thaw_sources_free(c->sources);
  thaw_repair_free(c->repair); /* after its observed sources */
  thaw_release_free(c->release); /* after its observed sources */
  thaw_pinhold_free(c->pinhold); /* before the use it asks */
  c->pinhold = NULL;
  thaw_store_free(c->moved);
  c->moved = NULL;
  thaw_use_free(c->use);        /* after its observed sources */
  thaw_lifecycle_free(c->life);
  thaw_gc_free(c->gc); /* before the reconciler it pauses and the http */
  thaw_reconciler_free(c->rec); /* cancels warms; jobs end with the kube */
  thaw_inventory_free(c->inv);  /* before the registry client */
  free_warmer(c);
  thaw_http_free(c->http);
  thaw_kube_free(c->kube);
  thaw_token_free(c->token); /* after the registry client that mints */
  thaw_metrics_free(c->metrics);
  uv_timer_stop(&c->activate);
  uv_close((uv_handle_t *)&c->activate, on_timer_closed);
}
