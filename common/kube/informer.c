/* informer.c - list+watch loop of informer.h. */
#include "informer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "denied.h"
#include "error.h"
#include "log.h"

#define DEFAULT_PAGE 500
#define BACKOFF_BASE_MS 200
#define BACKOFF_CAP_MS 30000
#define HEALTHY_MS 1000 /* a watch that lived this long was not a failure */
#define KEY_MAX 512     /* 63-byte namespace + '/' + 253-byte name fits */
#define RV_MAX 64

/* ACT_ALIVE: a watch started after a 403 is still open after HEALTHY_MS,
 * so the grant is back (a good watch may not end, or say anything, for
 * minutes). */
enum action { ACT_NONE, ACT_LIST, ACT_WATCH, ACT_ALIVE };

struct thaw_informer {
  uv_loop_t *loop;
  thaw_kube_t *kube;
  const thaw_kube_resource_t *resource;
  char *ns, *label_selector, *field_selector, *name;
  long page_size, watch_timeout;
  thaw_informer_project_cb project;
  thaw_informer_free_cb free_rec;
  thaw_informer_equal_cb equal;
  void *pdata;
  thaw_informer_handlers_t h;

  thaw_store_t *store;   /* what handlers have been told */
  thaw_store_t *pending; /* the list being built, swapped in when complete */
  char *cont;            /* continue token of the next page */
  char rv[RV_MAX];       /* resume point */

  thaw_kube_watch_t *watch;
  int watch_active;          /* a watch is between start and on_end */
  enum action after_watch;   /* chosen by on_event before stopping it */
  uint64_t watch_started;    /* loop ms */
  uint64_t watch_seen;       /* events and bookmarks on this stream */

  uv_timer_t timer; /* runs the next action, after a backoff or at once */
  enum action next;
  unsigned failures; /* consecutive; drives the backoff */
  uint64_t rng;
  /* A 403 on list or watch (a missing RBAC grant) is retried with the same
   * backoff, logged once (denied.h), and keeps thaw_informer_denied() true
   * until an answer succeeds, so readiness can depend on it. */
  thaw_denied_t list_denied, watch_denied;

  int started, synced, closing, timer_closed, list_inflight;
  thaw_informer_stats_t stats;
};

static void begin_list(thaw_informer_t *inf);
static void start_watch(thaw_informer_t *inf);

static uint64_t rnd(thaw_informer_t *inf) {
  inf->rng ^= inf->rng >> 12;
  inf->rng ^= inf->rng << 25;
  inf->rng ^= inf->rng >> 27;
  return inf->rng * 2685821657736338717ull;
}

static void maybe_release(thaw_informer_t *inf) {
  if (!inf->closing || !inf->timer_closed || inf->list_inflight ||
      inf->watch_active)
    return;
  thaw_store_free(inf->store);
  thaw_store_free(inf->pending);
  free(inf->cont);
  free(inf->ns);
  free(inf->label_selector);
  free(inf->field_selector);
  free(inf->name);
  free(inf);
}

static void on_timer(uv_timer_t *t) {
  thaw_informer_t *inf = t->data;
  enum action a = inf->next;
  inf->next = ACT_NONE;
  if (a == ACT_LIST)
    begin_list(inf);
  else if (a == ACT_WATCH)
    start_watch(inf);
  else if (a == ACT_ALIVE && inf->watch_active && inf->after_watch == ACT_NONE)
    thaw_denied_note(&inf->watch_denied, 0, inf->name, "watch",
                     inf->resource->resource, "");
}

/* Runs `a` on the next loop turn, so no request starts inside a callback of
 * the kube client. */
static void proceed(thaw_informer_t *inf, enum action a, uint64_t delay_ms) {
  inf->next = a;
  uv_timer_start(&inf->timer, on_timer, delay_ms, 0);
}

/* A failure: back off exponentially with jitter ("equal jitter": half the
 * step fixed, half random), then run `a`. */
static void retry(thaw_informer_t *inf, enum action a, const char *why,
                  int err) {
  unsigned f = inf->failures < 16 ? inf->failures : 16;
  uint64_t step = (uint64_t)BACKOFF_BASE_MS << f;
  if (step > BACKOFF_CAP_MS)
    step = BACKOFF_CAP_MS;
  uint64_t delay = step / 2 + rnd(inf) % (step / 2 + 1);
  inf->failures++;
  char ms[24], fails[16];
  snprintf(ms, sizeof(ms), "%llu", (unsigned long long)delay);
  snprintf(fails, sizeof(fails), "%u", inf->failures);
  if (err == THAW_EFORBIDDEN) /* logged once by thaw_denied_note */
    thaw_debug(why, "informer", inf->name, "backoff_ms", ms, "failures",
               fails);
  else
    thaw_warn(why, "informer", inf->name, "error", thaw_err_name(err),
            "next", a == ACT_LIST ? "relist" : "rewatch", "backoff_ms", ms,
            "failures", fails);
  proceed(inf, a, delay);
}

static const cJSON *meta_of(const cJSON *obj) {
  return cJSON_GetObjectItemCaseSensitive(obj, "metadata");
}

static const char *rv_of(const cJSON *obj) {
  return cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(meta_of(obj), "resourceVersion"));
}

static void set_rv(thaw_informer_t *inf, const char *rv) {
  if (rv == NULL || *rv == '\0' || strlen(rv) >= RV_MAX)
    return;
  memcpy(inf->rv, rv, strlen(rv) + 1);
}

/* "namespace/name" or "name"; returns -1 when the object has no name. */
static int make_key(const cJSON *obj, char *buf) {
  const cJSON *meta = meta_of(obj);
  const char *name =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "name"));
  const char *ns = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(meta, "namespace"));
  if (name == NULL || *name == '\0')
    return -1;
  int n = (ns != NULL && *ns != '\0')
              ? snprintf(buf, KEY_MAX, "%s/%s", ns, name)
              : snprintf(buf, KEY_MAX, "%s", name);
  return (n < 0 || n >= KEY_MAX) ? -1 : 0;
}

/* --- delivery ----------------------------------------------------------- */

static void emit_add(thaw_informer_t *inf, const char *key, const void *rec) {
  if (inf->closing)
    return;
  inf->stats.adds++;
  if (inf->h.on_add != NULL)
    inf->h.on_add(key, rec, inf->h.data);
}

static void emit_update(thaw_informer_t *inf, const char *key,
                        const void *old, const void *rec) {
  if (inf->closing)
    return;
  if (inf->equal != NULL && inf->equal(old, rec, inf->pdata))
    return;
  inf->stats.updates++;
  if (inf->h.on_update != NULL)
    inf->h.on_update(key, old, rec, inf->h.data);
}

static void emit_delete(thaw_informer_t *inf, const char *key,
                        const void *rec) {
  if (inf->closing)
    return;
  inf->stats.deletes++;
  if (inf->h.on_delete != NULL)
    inf->h.on_delete(key, rec, inf->h.data);
}

static void on_diff(enum thaw_store_change change, const char *key,
                    void *old_rec, void *new_rec, void *data) {
  thaw_informer_t *inf = data;
  if (change == THAW_STORE_ADDED)
    emit_add(inf, key, new_rec);
  else if (change == THAW_STORE_UPDATED)
    emit_update(inf, key, old_rec, new_rec);
  else
    emit_delete(inf, key, old_rec);
}

/* --- list --------------------------------------------------------------- */

static void on_list(const thaw_kube_result_t *res, void *data);

static void list_page(thaw_informer_t *inf) {
  thaw_kube_opts_t o = {
      .namespace = inf->ns,
      .label_selector = inf->label_selector,
      .field_selector = inf->field_selector,
      .limit = inf->page_size,
      .continue_token = inf->cont,
  };
  int rc = thaw_kube_list(inf->kube, inf->resource, &o, on_list, inf);
  if (rc != 0) {
    inf->stats.list_errors++;
    retry(inf, ACT_LIST, "informer list request failed", rc);
    return;
  }
  inf->list_inflight = 1;
}

static void begin_list(thaw_informer_t *inf) {
  thaw_store_free(inf->pending);
  free(inf->cont);
  inf->cont = NULL;
  inf->pending = thaw_store_new(inf->free_rec, inf->pdata);
  if (inf->pending == NULL) {
    retry(inf, ACT_LIST, "informer out of memory", THAW_ENOMEM);
    return;
  }
  list_page(inf);
}

/* Projects obj into st. Returns 0, or THAW_ENOMEM. */
static int ingest(thaw_informer_t *inf, thaw_store_t *st, const cJSON *obj) {
  char key[KEY_MAX];
  if (make_key(obj, key) != 0)
    return 0;
  size_t size = 0;
  void *rec = inf->project(obj, &size, inf->pdata);
  if (rec == NULL)
    return 0;
  int rc = thaw_store_put(st, key, thaw_store_rv(rv_of(obj)), rec, NULL);
  if (rc < 0) {
    inf->free_rec(rec, inf->pdata);
    return rc;
  }
  return 0;
}

/* The list is complete: swap it in and tell handlers the difference. The
 * live store is already the new one while they run. */
static void swap_store(thaw_informer_t *inf) {
  thaw_store_t *old = inf->store;
  inf->store = inf->pending;
  inf->pending = NULL;
  thaw_store_diff(old, inf->store, on_diff, inf);
  thaw_store_free(old);
}

static void on_list(const thaw_kube_result_t *res, void *data) {
  thaw_informer_t *inf = data;
  inf->list_inflight = 0;
  if (inf->closing) {
    maybe_release(inf);
    return;
  }
  if (res->err == THAW_ECANCELED)
    return; /* the client is going away */
  thaw_denied_note(&inf->list_denied, res->err, inf->name, "list",
                   inf->resource->resource, res->message);
  if (res->err != 0) {
    inf->stats.list_errors++;
    if (res->err == THAW_EGONE && inf->cont != NULL)
      retry(inf, ACT_LIST, "informer continue token expired; restarting list",
            res->err);
    else
      retry(inf, ACT_LIST, "informer list failed", res->err);
    return;
  }
  inf->stats.list_pages++;
  const cJSON *item;
  cJSON_ArrayForEach(item,
                     cJSON_GetObjectItemCaseSensitive(res->body, "items")) {
    if (ingest(inf, inf->pending, item) != 0) {
      retry(inf, ACT_LIST, "informer out of memory", THAW_ENOMEM);
      return;
    }
  }
  const cJSON *meta = meta_of(res->body);
  const char *cont =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "continue"));
  if (cont != NULL && *cont != '\0') {
    free(inf->cont);
    inf->cont = strdup(cont);
    if (inf->cont == NULL) {
      retry(inf, ACT_LIST, "informer out of memory", THAW_ENOMEM);
      return;
    }
    list_page(inf);
    return;
  }
  set_rv(inf, cJSON_GetStringValue(
                  cJSON_GetObjectItemCaseSensitive(meta, "resourceVersion")));
  inf->stats.lists++;
  swap_store(inf);
  if (!inf->synced && !inf->closing) {
    inf->synced = 1;
    if (inf->h.on_synced != NULL)
      inf->h.on_synced(inf->h.data);
  }
  if (!inf->closing)
    proceed(inf, ACT_WATCH, 0);
}

/* --- watch -------------------------------------------------------------- */

static void stop_watch(thaw_informer_t *inf, enum action then) {
  inf->after_watch = then;
  if (inf->watch != NULL)
    thaw_kube_watch_stop(inf->watch);
}

static void apply(thaw_informer_t *inf, const char *type, const cJSON *obj) {
  char key[KEY_MAX];
  if (make_key(obj, key) != 0)
    return;
  uint64_t rv = thaw_store_rv(rv_of(obj));
  void *old;
  if (strcmp(type, "DELETED") == 0) {
    if (thaw_store_remove(inf->store, key, &old, NULL) == 0) {
      emit_delete(inf, key, old);
      inf->free_rec(old, inf->pdata);
    }
    return;
  }
  size_t size = 0;
  uint64_t old_rv;
  void *rec = inf->project(obj, &size, inf->pdata);
  if (rec == NULL) { /* filtered out now: gone for the handlers */
    if (thaw_store_remove(inf->store, key, &old, NULL) == 0) {
      emit_delete(inf, key, old);
      inf->free_rec(old, inf->pdata);
    }
    return;
  }
  old = thaw_store_get(inf->store, key, &old_rv);
  if (old != NULL && old_rv == rv) { /* already seen (replayed) */
    inf->free_rec(rec, inf->pdata);
    return;
  }
  old = NULL;
  int rc = thaw_store_put(inf->store, key, rv, rec, &old);
  if (rc < 0) {
    inf->free_rec(rec, inf->pdata);
    stop_watch(inf, ACT_LIST); /* an event is lost: only a list recovers */
    return;
  }
  /* ADDED for a known key (or MODIFIED for an unknown one) can follow a
   * relist; what the handlers need is the change relative to the store. */
  if (rc == 1)
    emit_add(inf, key, rec);
  else {
    emit_update(inf, key, old, rec);
    inf->free_rec(old, inf->pdata);
  }
}

static void on_event(const char *type, const cJSON *obj, void *data) {
  thaw_informer_t *inf = data;
  if (inf->closing || inf->after_watch != ACT_NONE)
    return;
  inf->watch_seen++;
  if (strcmp(type, "BOOKMARK") == 0) {
    inf->stats.bookmarks++;
    set_rv(inf, rv_of(obj));
    return;
  }
  if (strcmp(type, "ERROR") == 0) {
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(obj, "code");
    const char *msg =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "message"));
    if (cJSON_IsNumber(code) && code->valueint == 410) {
      inf->stats.gone++;
      thaw_warn("informer watch expired", "informer", inf->name, "rv",
                inf->rv, "message", msg);
      stop_watch(inf, ACT_LIST);
    } else {
      thaw_warn("informer watch error event", "informer", inf->name,
                "message", msg);
      stop_watch(inf, ACT_WATCH);
    }
    return;
  }
  if (strcmp(type, "ADDED") != 0 && strcmp(type, "MODIFIED") != 0 &&
      strcmp(type, "DELETED") != 0)
    return;
  inf->stats.events++;
  apply(inf, type, obj);
  set_rv(inf, rv_of(obj));
}

static void on_end(const thaw_kube_result_t *res, void *data) {
  thaw_informer_t *inf = data;
  inf->watch = NULL;
  inf->watch_active = 0;
  if (inf->closing) {
    maybe_release(inf);
    return;
  }
  int healthy = inf->watch_seen > 0 ||
                uv_now(inf->loop) - inf->watch_started >= HEALTHY_MS;
  if (healthy) {
    inf->failures = 0;
    thaw_denied_note(&inf->watch_denied, 0, inf->name, "watch",
                     inf->resource->resource, "");
  }
  enum action a = inf->after_watch;
  inf->after_watch = ACT_NONE;
  if (a == ACT_LIST) {
    retry(inf, ACT_LIST, "informer relisting", THAW_EGONE);
    return;
  }
  if (a == ACT_WATCH) {
    inf->stats.watch_errors++;
    retry(inf, ACT_WATCH, "informer rewatching after error event",
          THAW_ESERVER);
    return;
  }
  switch (res->err) {
  case 0:
    inf->stats.watch_ends++;
    if (healthy)
      proceed(inf, ACT_WATCH, 0);
    else
      retry(inf, ACT_WATCH, "informer watch ended at once", 0);
    return;
  case THAW_ECANCELED:
    return; /* the client is going away */
  case THAW_EGONE:
    inf->stats.gone++;
    retry(inf, ACT_LIST, "informer watch expired (410)", res->err);
    return;
  case THAW_EFORBIDDEN: /* RBAC: back off like client-go's reflector */
    inf->stats.watch_errors++;
    thaw_denied_note(&inf->watch_denied, res->err, inf->name, "watch",
                     inf->resource->resource, res->message);
    retry(inf, ACT_WATCH, "informer watch forbidden", res->err);
    return;
  case THAW_EPARSE:
  case THAW_E2BIG:
    inf->stats.watch_errors++;
    retry(inf, ACT_LIST, "informer watch stream unreadable", res->err);
    return;
  default: /* drops, 5xx, 429: resuming from rv is safe */
    inf->stats.watch_errors++;
    retry(inf, ACT_WATCH, "informer watch failed", res->err);
  }
}

static void start_watch(thaw_informer_t *inf) {
  long timeout = inf->watch_timeout;
  if (timeout <= 0) /* spread re-watches of many informers, as client-go */
    timeout = 300 + (long)(rnd(inf) % 300);
  thaw_kube_opts_t o = {
      .namespace = inf->ns,
      .label_selector = inf->label_selector,
      .field_selector = inf->field_selector,
      .resource_version = inf->rv,
      .timeout_seconds = timeout,
  };
  inf->watch_started = uv_now(inf->loop);
  inf->watch_seen = 0;
  inf->after_watch = ACT_NONE;
  inf->watch_active = 1;
  thaw_kube_watch_t *w = NULL;
  int rc = thaw_kube_watch(inf->kube, inf->resource, &o, on_event, on_end,
                           inf, &w);
  if (rc != 0) {
    inf->watch_active = 0;
    retry(inf, ACT_WATCH, "informer watch request failed", rc);
    return;
  }
  inf->stats.watches++;
  if (inf->watch_active) /* on_end has not run already */
    inf->watch = w;
  if (inf->watch_active && inf->watch_denied.denied)
    proceed(inf, ACT_ALIVE, HEALTHY_MS);
}

/* --- public ------------------------------------------------------------- */

static int dup_opt(char **dst, const char *src) {
  *dst = NULL;
  if (src == NULL)
    return 0;
  *dst = strdup(src);
  return *dst == NULL ? THAW_ENOMEM : 0;
}

int thaw_informer_new(uv_loop_t *loop, thaw_kube_t *kube,
                      const thaw_informer_config_t *cfg,
                      thaw_informer_t **out) {
  if (loop == NULL || kube == NULL || cfg == NULL || cfg->resource == NULL ||
      cfg->project == NULL || cfg->free_rec == NULL)
    return THAW_EINVAL;
  thaw_informer_t *inf = calloc(1, sizeof(*inf));
  if (inf == NULL)
    return THAW_ENOMEM;
  inf->loop = loop;
  inf->kube = kube;
  inf->resource = cfg->resource;
  inf->page_size = cfg->page_size > 0 ? cfg->page_size : DEFAULT_PAGE;
  inf->watch_timeout = cfg->watch_timeout;
  inf->project = cfg->project;
  inf->free_rec = cfg->free_rec;
  inf->equal = cfg->equal;
  inf->pdata = cfg->project_data;
  inf->h = cfg->handlers;
  inf->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)inf ^ 0x9e3779b97f4a7c15ull;
  if (dup_opt(&inf->ns, cfg->namespace) != 0 ||
      dup_opt(&inf->label_selector, cfg->label_selector) != 0 ||
      dup_opt(&inf->field_selector, cfg->field_selector) != 0 ||
      dup_opt(&inf->name, cfg->name ? cfg->name : cfg->resource->resource) !=
          0 ||
      (inf->store = thaw_store_new(cfg->free_rec, cfg->project_data)) == NULL)
    goto fail;
  if (uv_timer_init(loop, &inf->timer) != 0)
    goto fail;
  inf->timer.data = inf;
  *out = inf;
  return 0;
fail:
  thaw_store_free(inf->store);
  free(inf->ns);
  free(inf->label_selector);
  free(inf->field_selector);
  free(inf->name);
  free(inf);
  return THAW_ENOMEM;
}

int thaw_informer_start(thaw_informer_t *inf) {
  if (inf->started || inf->closing)
    return THAW_EINVAL;
  inf->started = 1;
  begin_list(inf);
  return 0;
}

static void on_timer_close(uv_handle_t *h) {
  thaw_informer_t *inf = h->data;
  inf->timer_closed = 1;
  maybe_release(inf);
}

void thaw_informer_free(thaw_informer_t *inf) {
  if (inf == NULL || inf->closing)
    return;
  inf->closing = 1;
  if (inf->watch != NULL)
    thaw_kube_watch_stop(inf->watch);
  uv_close((uv_handle_t *)&inf->timer, on_timer_close);
}

int thaw_informer_has_synced(const thaw_informer_t *inf) {
  return inf->synced;
}

int thaw_informer_denied(const thaw_informer_t *inf) {
  return inf->list_denied.denied || inf->watch_denied.denied;
}

const void *thaw_informer_get(const thaw_informer_t *inf, const char *key,
                              uint64_t *rv) {
  return thaw_store_get(inf->store, key, rv);
}

const thaw_store_t *thaw_informer_store(const thaw_informer_t *inf) {
  return inf->store;
}

const char *thaw_informer_resource_version(const thaw_informer_t *inf) {
  return inf->rv;
}

const thaw_informer_stats_t *thaw_informer_stats(const thaw_informer_t *inf) {
  return &inf->stats;
}
