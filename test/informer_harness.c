/* informer_harness.c - see informer_harness.h. */
#include "informer_harness.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "podinfo.h"

static void die(const char *what, const char *detail) {
  fprintf(stderr, "harness: %s: %s\n", what, detail ? detail : "");
  exit(1);
}

void harness_init(harness_t *h) {
  const char *url = getenv("THAW_EMU_URL"), *ca = getenv("THAW_EMU_CA"),
             *token = getenv("THAW_EMU_TOKEN");
  if (url == NULL || ca == NULL) {
    fprintf(stderr, "THAW_EMU_URL/THAW_EMU_CA not set: run under "
                    "test/with-emulator.sh\n");
    exit(77);
  }
  memset(h, 0, sizeof(*h));
  h->cfg.server = strdup(url);
  h->cfg.ca_file = strdup(ca);
  h->cfg.token = token ? strdup(token) : NULL;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (uv_loop_init(&h->loop) != 0)
    die("uv_loop_init", NULL);
  int rc = thaw_kube_new(&h->loop, &h->cfg, &h->kube);
  if (rc != 0)
    die("thaw_kube_new", thaw_strerror(rc));
}

static void walk_close(uv_handle_t *hd, void *arg) {
  (void)arg;
  if (!uv_is_closing(hd))
    uv_close(hd, NULL);
}

void harness_close(harness_t *h) {
  thaw_kube_free(h->kube);
  h->kube = NULL;
  uv_run(&h->loop, UV_RUN_DEFAULT);
  uv_walk(&h->loop, walk_close, NULL);
  uv_run(&h->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&h->loop) != 0)
    fprintf(stderr, "harness: loop not empty at close\n");
  free(h->cfg.server);
  free(h->cfg.ca_file);
  free(h->cfg.token);
  curl_global_cleanup();
}

/* --- control endpoint ---------------------------------------------------- */

typedef struct {
  char *buf;
  size_t len;
} membuf_t;

static size_t on_write(char *p, size_t sz, size_t n, void *ud) {
  membuf_t *m = ud;
  char *nb = realloc(m->buf, m->len + sz * n + 1);
  if (nb == NULL)
    return 0;
  memcpy(nb + m->len, p, sz * n);
  m->len += sz * n;
  nb[m->len] = '\0';
  m->buf = nb;
  return sz * n;
}

static long emu_req(const harness_t *h, const char *method, const char *path,
                    const char *json, char **body) {
  char url[1024];
  snprintf(url, sizeof(url), "%s%s", h->cfg.server, path);
  CURL *c = curl_easy_init();
  membuf_t m = {0};
  struct curl_slist *hdr =
      curl_slist_append(NULL, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CAINFO, h->cfg.ca_file);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (json != NULL)
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
  long status = 0;
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(hdr);
  curl_easy_cleanup(c);
  if (body != NULL)
    *body = m.buf;
  else
    free(m.buf);
  return status;
}

long emu_post(const harness_t *h, const char *path, const char *json,
              char **body) {
  return emu_req(h, "POST", path, json ? json : "{}", body);
}

long emu_get(const harness_t *h, const char *path, char **body) {
  return emu_req(h, "GET", path, NULL, body);
}

/* --- loop helpers ------------------------------------------------------- */

static void on_tick(uv_timer_t *t) { (void)t; }

int run_until(harness_t *h, int (*cond)(void *), void *arg, long timeout_ms) {
  uv_timer_t tick;
  uv_timer_init(&h->loop, &tick);
  uv_timer_start(&tick, on_tick, 10, 10); /* UV_RUN_ONCE returns often */
  uv_update_time(&h->loop);
  uint64_t end = uv_now(&h->loop) + (uint64_t)timeout_ms;
  int ok = 0;
  for (;;) {
    if (cond != NULL && cond(arg)) {
      ok = 1;
      break;
    }
    if (uv_now(&h->loop) >= end)
      break;
    uv_run(&h->loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&h->loop, UV_RUN_NOWAIT);
  return ok;
}

typedef struct {
  int done, err;
  cJSON *body;
} sync_t;

static void on_sync(const thaw_kube_result_t *res, void *data) {
  sync_t *s = data;
  s->done = 1;
  s->err = res->err;
  s->body = thaw_kube_result_take_body(res);
  if (res->err != 0 && res->err != THAW_EALREADYEXISTS &&
      res->err != THAW_ENOTFOUND)
    fprintf(stderr, "harness: request failed: %s %ld %s\n",
            thaw_err_name(res->err), res->http_status, res->message);
}

static int sync_done(void *arg) { return ((sync_t *)arg)->done; }

static int finish(harness_t *h, int rc, sync_t *s, cJSON **body) {
  if (rc != 0)
    return rc;
  run_until(h, sync_done, s, 120000);
  if (!s->done)
    die("request timed out", NULL);
  if (body != NULL)
    *body = s->body;
  else
    cJSON_Delete(s->body);
  return s->err;
}

int sync_create(harness_t *h, const thaw_kube_resource_t *r, const char *ns,
                const cJSON *obj, cJSON **body) {
  sync_t s = {0};
  thaw_kube_opts_t o = {.namespace = ns};
  return finish(h, thaw_kube_create(h->kube, r, &o, obj, on_sync, &s), &s,
                body);
}

int sync_delete(harness_t *h, const thaw_kube_resource_t *r, const char *ns,
                const char *name) {
  sync_t s = {0};
  thaw_kube_opts_t o = {.namespace = ns, .name = name};
  return finish(h, thaw_kube_delete(h->kube, r, &o, on_sync, &s), &s, NULL);
}

int sync_update(harness_t *h, const thaw_kube_resource_t *r, const char *ns,
                const cJSON *obj, cJSON **body) {
  sync_t s = {0};
  const cJSON *meta = cJSON_GetObjectItem(obj, "metadata");
  thaw_kube_opts_t o = {
      .namespace = ns,
      .name = cJSON_GetStringValue(cJSON_GetObjectItem(meta, "name"))};
  return finish(h, thaw_kube_update(h->kube, r, &o, obj, on_sync, &s), &s,
                body);
}

int sync_merge_patch(harness_t *h, const thaw_kube_resource_t *r,
                     const char *ns, const char *name, const cJSON *patch) {
  sync_t s = {0};
  thaw_kube_opts_t o = {.namespace = ns, .name = name};
  return finish(h, thaw_kube_merge_patch(h->kube, r, &o, patch, on_sync, &s),
                &s, NULL);
}

cJSON *make_pod(const char *ns, const char *name, const char *const *images) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", "v1");
  cJSON_AddStringToObject(o, "kind", "Pod");
  cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
  cJSON_AddStringToObject(meta, "name", name);
  cJSON_AddStringToObject(meta, "namespace", ns);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(meta, "labels"), "app",
                          "thaw-test");
  cJSON *spec = cJSON_AddObjectToObject(o, "spec");
  cJSON *ctrs = cJSON_AddArrayToObject(spec, "containers");
  for (int i = 0; images[i] != NULL; i++) {
    char cname[16];
    snprintf(cname, sizeof(cname), "c%d", i);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", cname);
    cJSON_AddStringToObject(c, "image", images[i]);
    cJSON_AddItemToArray(ctrs, c);
  }
  return o;
}

int ensure_namespace(harness_t *h, const char *ns) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", "v1");
  cJSON_AddStringToObject(o, "kind", "Namespace");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "metadata"), "name", ns);
  int rc = sync_create(h, &thaw_kube_namespaces, NULL, o, NULL);
  cJSON_Delete(o);
  return rc == THAW_EALREADYEXISTS ? 0 : rc;
}

cJSON *list_all(harness_t *h, const thaw_kube_resource_t *r, const char *ns,
                char *rv) {
  cJSON *all = cJSON_CreateArray();
  char *cont = NULL;
  for (;;) {
    sync_t s = {0};
    thaw_kube_opts_t o = {.namespace = ns, .limit = 1000,
                          .continue_token = cont};
    int rc = finish(h, thaw_kube_list(h->kube, r, &o, on_sync, &s), &s,
                    &s.body);
    (void)rc;
    free(cont);
    cont = NULL;
    if (s.err != 0) {
      /* an expired token or a transient failure: start over */
      cJSON_Delete(s.body);
      cJSON_Delete(all);
      all = cJSON_CreateArray();
      continue;
    }
    cJSON *items = cJSON_GetObjectItem(s.body, "items"), *it;
    if (!cJSON_IsArray(items)) {
      char *txt = cJSON_PrintUnformatted(s.body);
      fprintf(stderr, "harness: list without items: %.300s\n", txt ? txt : "(no body)");
      free(txt);
      cJSON_Delete(s.body);
      continue;
    }
    while ((it = cJSON_DetachItemFromArray(items, 0)) != NULL)
      cJSON_AddItemToArray(all, it);
    cJSON *meta = cJSON_GetObjectItem(s.body, "metadata");
    const char *c = cJSON_GetStringValue(cJSON_GetObjectItem(meta, "continue"));
    if (c != NULL && *c) {
      cont = strdup(c);
    } else if (rv != NULL) {
      snprintf(rv, 64, "%s",
               cJSON_GetStringValue(
                   cJSON_GetObjectItem(meta, "resourceVersion")));
    }
    cJSON_Delete(s.body);
    if (cont == NULL)
      return all;
  }
}

/* --- recorder ----------------------------------------------------------- */

static void *copy_rec(thaw_intern_t *t, const void *rec) {
  (void)t;
  const thaw_podinfo_t *p = rec;
  size_t n = (size_t)p->n_images + p->n_originals;
  thaw_podinfo_t *c = malloc(sizeof(*c) + n * sizeof(char *));
  memcpy(c, p, sizeof(*c) + n * sizeof(char *));
  for (size_t i = 0; i < n; i++)
    thaw_intern_dup(c->refs[i]);
  return c;
}

static void log_event(recorder_t *r, const char *key, char type, uint64_t rv) {
  if (!r->keep_log)
    return;
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 1024;
    r->log = realloc(r->log, r->cap * sizeof(*r->log));
  }
  r->log[r->n++] = (rec_event_t){strdup(key), type, rv};
}

static uint64_t rv_now(recorder_t *r, const char *key) {
  uint64_t rv = 0;
  if (r->inf != NULL)
    thaw_informer_get(r->inf, key, &rv);
  return rv;
}

static void rec_add(const char *key, const void *rec, void *data) {
  recorder_t *r = data;
  r->adds++;
  uint64_t rv = rv_now(r, key);
  if (thaw_store_get(r->live, key, NULL) != NULL)
    r->dup_adds++;
  thaw_store_put(r->live, key, rv, copy_rec(r->intern, rec), NULL);
  log_event(r, key, 'A', rv);
}

static void rec_update(const char *key, const void *old, const void *rec,
                       void *data) {
  recorder_t *r = data;
  r->updates++;
  uint64_t rv = rv_now(r, key);
  void *prev = thaw_store_get(r->live, key, NULL);
  if (prev == NULL)
    r->orphan_updates++;
  else if (!thaw_podinfo_equal(prev, old, NULL))
    r->stale_old++;
  thaw_store_put(r->live, key, rv, copy_rec(r->intern, rec), NULL);
  log_event(r, key, 'U', rv);
}

static void rec_delete(const char *key, const void *rec, void *data) {
  recorder_t *r = data;
  r->deletes++;
  void *prev = NULL;
  if (thaw_store_remove(r->live, key, &prev, NULL) != 0) {
    r->orphan_deletes++;
  } else {
    if (!thaw_podinfo_equal(prev, rec, NULL))
      r->stale_old++;
    thaw_podinfo_free(prev, r->intern);
  }
  log_event(r, key, 'D', 0);
}

static void rec_synced(void *data) { ((recorder_t *)data)->synced = 1; }

void recorder_init(recorder_t *r, thaw_intern_t *intern, int keep_log) {
  memset(r, 0, sizeof(*r));
  r->intern = intern;
  r->keep_log = keep_log;
  r->live = thaw_store_new(thaw_podinfo_free, intern);
}

void recorder_free(recorder_t *r) {
  thaw_store_free(r->live);
  for (size_t i = 0; i < r->n; i++)
    free(r->log[i].key);
  free(r->log);
}

thaw_informer_handlers_t recorder_handlers(recorder_t *r) {
  return (thaw_informer_handlers_t){rec_add, rec_update, rec_delete,
                                    rec_synced, r};
}

void recorder_history(const recorder_t *r, const char *key, size_t from,
                      char *out, size_t outlen) {
  size_t o = 0;
  for (size_t i = from; i < r->n && o + 1 < outlen; i++)
    if (strcmp(r->log[i].key, key) == 0)
      out[o++] = r->log[i].type;
  out[o] = '\0';
}

static void diff_note(size_t *n, int verbose, const char *what,
                      const char *key) {
  if (verbose && *n < 5)
    fprintf(stderr, "  state mismatch: %s %s\n", what, key);
  (*n)++;
}

size_t compare_state(const cJSON *items, thaw_informer_t *inf,
                     const recorder_t *r, thaw_intern_t *intern, int verbose) {
  size_t bad = 0, n = 0;
  const cJSON *it;
  char key[512];
  const thaw_store_t *st = thaw_informer_store(inf);
  cJSON_ArrayForEach(it, items) {
    n++;
    const cJSON *meta = cJSON_GetObjectItem(it, "metadata");
    snprintf(key, sizeof(key), "%s/%s",
             cJSON_GetStringValue(cJSON_GetObjectItem(meta, "namespace")),
             cJSON_GetStringValue(cJSON_GetObjectItem(meta, "name")));
    uint64_t want_rv = thaw_store_rv(cJSON_GetStringValue(
        cJSON_GetObjectItem(meta, "resourceVersion")));
    thaw_podinfo_t *want = thaw_podinfo_project(it, NULL, intern);
    uint64_t rv = 0;
    const void *got = thaw_store_get(st, key, &rv);
    if (got == NULL)
      diff_note(&bad, verbose, "missing from store", key);
    else if (rv != want_rv)
      diff_note(&bad, verbose, "store rv differs", key);
    else if (!thaw_podinfo_equal(got, want, NULL))
      diff_note(&bad, verbose, "store record differs", key);
    if (r != NULL) {
      got = thaw_store_get(r->live, key, &rv);
      if (got == NULL)
        diff_note(&bad, verbose, "no live add in event log", key);
      else if (rv != want_rv)
        diff_note(&bad, verbose, "last event rv differs", key);
      else if (!thaw_podinfo_equal(got, want, NULL))
        diff_note(&bad, verbose, "last event record differs", key);
    }
    thaw_podinfo_free(want, intern);
  }
  if (thaw_store_count(st) != n)
    diff_note(&bad, verbose, "store has extra keys", "");
  if (r != NULL && thaw_store_count(r->live) != n)
    diff_note(&bad, verbose, "event log has extra live keys", "");
  return bad;
}
