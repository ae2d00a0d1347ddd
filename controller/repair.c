/* repair.c - pods stuck pulling a rewritten image get their original back
 * (repair.h). */
#include "repair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "denied.h"
#include "error.h"
#include "events.h"
#include "imgref.h"
#include "log.h"
#include "podinfo.h"
#include "podpatch.h"
#include "store.h"

#define TICK_MS 1000
#define MAX_INFLIGHT 8                 /* pods read or patched at once */
#define RETRY_MS 1000                  /* first retry after a failure */
#define RETRY_MAX_MS (5 * 60 * 1000)   /* cap of the retries' backoff */
#define RECHECK_MAX_MS (10 * 60 * 1000) /* cap of "nothing to do" re-reads */

/* What is remembered of a candidate: a pod failing a pull with an image
 * under the cache host. */
typedef struct {
  uint64_t since_ms; /* first seen failing (uv_now) */
  uint64_t next_ms;  /* no read before this */
  uint32_t attempts; /* reads since the last repair that changed nothing */
  uint8_t busy;      /* a read or patch is in flight */
} track_t;

struct thaw_repair {
  uv_loop_t *loop;
  thaw_kube_t *kube;
  thaw_sources_t *sources;
  char *cache_host, *private_host;
  thaw_repair_opts_t opts; /* the hosts: the copies above */
  uint64_t after_ms;
  thaw_events_t *events;
  thaw_metric_child_t *repaired;
  thaw_store_t *pods; /* "namespace/name" -> track_t */
  uv_timer_t tick;
  unsigned inflight;
  int active, missed, closing, timer_open;
};

/* One request in flight; `key` is the pod's "namespace/name". */
typedef struct {
  thaw_repair_t *r;
  char *message; /* the patch's Event message */
  char uid[64];
  char key[];
} call_t;

static thaw_denied_t denied_get, denied_patch;

/* --- the plan (pure) ---------------------------------------------------- */

static const char *str(const cJSON *o, const char *k) {
  return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* The reason a container named `name` waits on a failed pull, or NULL. */
static const char *pull_reason(const cJSON *statuses, const char *name) {
  const cJSON *cs;
  cJSON_ArrayForEach(cs, statuses) {
    const char *n = str(cs, "name");
    if (n == NULL || strcmp(n, name) != 0)
      continue;
    const char *why = str(cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(cs, "state"),
                              "waiting"),
                          "reason");
    if (why != NULL && (strcmp(why, "ErrImagePull") == 0 ||
                        strcmp(why, "ImagePullBackOff") == 0))
      return why;
    return NULL;
  }
  return NULL;
}

static const char *private_host(const thaw_repair_opts_t *o) {
  return o->private_host ? o->private_host : THAW_IMGREF_PRIVATE_HOST;
}

/* The cache host `image` is rewritten under: the cache host, the private
 * images' host, or NULL for neither. */
static const char *rewritten_under(const thaw_repair_opts_t *o,
                                   const char *image) {
  if (thaw_imgref_is_rewritten(image, o->cache_host))
    return o->cache_host;
  if (thaw_imgref_is_rewritten(image, private_host(o)))
    return private_host(o);
  return NULL;
}

/* The original of `image` (under cache_host) into out: the annotation's
 * value for `key` when it names the same image, as submitted (a pinned
 * rewrite "<cache>/x:tag@d" names "x:tag" too); else the inverse of the
 * rewrite ("x:tag@d": pinned, so the pod runs what it was admitted with).
 * Returns 0, or -1 when `image` cannot be undone. */
static int original_of(const thaw_repair_opts_t *o, const cJSON *originals,
                       const char *key, const char *image,
                       const char *cache_host, char *out, size_t cap) {
  thaw_imgref_t back, tag, ann;
  if (thaw_imgref_unrewrite(image, strlen(image), cache_host, &back) != 0)
    return -1;
  int pinned = thaw_imgref_tag_only(&back, &tag) == 0;
  const char *v = str(originals, key);
  if (v != NULL && rewritten_under(o, v) == NULL &&
      thaw_imgref_parse(v, strlen(v), &ann) == 0 &&
      (strcmp(ann.str, back.str) == 0 ||
       (pinned && strcmp(ann.str, tag.str) == 0)) &&
      strlen(v) < cap) {
    snprintf(out, cap, "%s", v);
    return 0;
  }
  snprintf(out, cap, "%s", back.str);
  return 0;
}

/* The container lists whose images a pod update may change. */
typedef struct {
  const char *list, *statuses, *prefix, *what;
} kind_t;
static const kind_t kinds[] = {
    {"initContainers", "initContainerStatuses", "init", "init container"},
    {"containers", "containerStatuses", "container", "container"},
};

/* 1 when `orig`, the original of a path under `host`, is a private
 * image's: every path under the private host is; a cache-host path is when
 * its CachedImage (a pinned path's is named by its tag) says so. */
static int private_path(const thaw_repair_opts_t *o, const char *host,
                        const char *orig) {
  thaw_imgref_t ref, key;
  if (host == private_host(o))
    return 1;
  if (o->is_private == NULL || thaw_imgref_parse(orig, strlen(orig), &ref) != 0)
    return 0;
  if (thaw_imgref_tag_only(&ref, &key) != 0)
    key = ref;
  return o->is_private(key.str, o->data);
}

/* Appends the ops and the message part of each container of one kind to
 * repair; without the annotation (originals NULL, hand_written) only
 * private images' paths. Returns how many, or THAW_ENOMEM. */
static int plan_list(const cJSON *spec, const cJSON *status, const kind_t *k,
                     const cJSON *originals, int hand_written,
                     const thaw_repair_opts_t *o, cJSON *ops, char *msg,
                     size_t msglen, size_t *used) {
  const cJSON *ctrs = cJSON_GetObjectItemCaseSensitive(spec, k->list), *c;
  const cJSON *sts = cJSON_GetObjectItemCaseSensitive(status, k->statuses);
  int n = 0, i = -1;
  cJSON_ArrayForEach(c, ctrs) {
    i++;
    const char *name = str(c, "name"), *image = str(c, "image"), *why;
    const char *host = image ? rewritten_under(o, image) : NULL;
    if (name == NULL || host == NULL || (why = pull_reason(sts, name)) == NULL)
      continue;
    char key[320], orig[THAW_IMGREF_INPUT_MAX + 1], path[96];
    snprintf(key, sizeof key, "%s/%.300s", k->prefix, name);
    if (original_of(o, originals, key, image, host, orig, sizeof orig) != 0 ||
        (hand_written && !private_path(o, host, orig)))
      continue;
    snprintf(path, sizeof path, "/spec/%s/%d/image", k->list, i);
    if (thaw_podpatch_op(ops, "test", path, image) != 0 ||
        thaw_podpatch_op(ops, "replace", path, orig) != 0)
      return THAW_ENOMEM;
    if (*used < msglen) {
      int w = snprintf(msg + *used, msglen - *used, "%s%s %s: %s -> %s (%s)",
                       *used ? "; " : "", k->what, name, image, orig, why);
      *used += w > 0 ? (size_t)w : 0;
    }
    n++;
  }
  return n;
}

int thaw_repair_plan(const cJSON *pod, const thaw_repair_opts_t *o,
                     cJSON **ops, char *msg, size_t msglen) {
  *ops = NULL;
  if (msglen > 0)
    msg[0] = '\0';
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(pod, "metadata");
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(pod, "spec");
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(pod, "status");
  const cJSON *del = cJSON_GetObjectItemCaseSensitive(meta, "deletionTimestamp");
  /* The annotation is the proof that thaw's webhook rewrote this pod;
   * without it only private images' paths are put back (repair.h). */
  const char *ann = str(cJSON_GetObjectItemCaseSensitive(meta, "annotations"),
                        THAW_PODPATCH_ANN_ORIGINALS);
  if (del != NULL && !cJSON_IsNull(del))
    return 0;
  cJSON *parsed = ann != NULL ? cJSON_Parse(ann) : NULL;
  const cJSON *originals = cJSON_IsObject(parsed) ? parsed : NULL;
  cJSON *out = cJSON_CreateArray();
  const char *uid = str(meta, "uid");
  char text[THAW_REPAIR_MESSAGE_MAX * 2];
  size_t used = 0;
  int n = 0;
  /* The uid first: a pod deleted and created again under the same name is
   * another pod. */
  if (out == NULL ||
      (uid != NULL &&
       thaw_podpatch_op(out, "test", "/metadata/uid", uid) != 0))
    n = THAW_ENOMEM;
  for (size_t i = 0; n >= 0 && i < sizeof kinds / sizeof *kinds; i++) {
    int m = plan_list(spec, status, &kinds[i], originals, ann == NULL, o,
                      out, text, sizeof text, &used);
    n = m < 0 ? m : n + m;
  }
  cJSON_Delete(parsed);
  if (n <= 0) {
    cJSON_Delete(out);
    return n;
  }
  if (msglen > 0)
    snprintf(msg, msglen, "pull from the cache failed, original image "
                          "restored: %s", text);
  *ops = out;
  return n;
}

/* --- which pods are candidates ------------------------------------------ */

static int candidate(const thaw_repair_t *r, const thaw_podinfo_t *p) {
  if (p == NULL || !(p->flags & THAW_POD_PULL_FAILING) ||
      (p->flags & (THAW_POD_DELETING | THAW_POD_TERMINATED |
                   THAW_SOURCES_POD_MIRROR)))
    return 0;
  for (size_t i = 0; i < p->n_images; i++)
    if (rewritten_under(&r->opts, p->refs[i]) != NULL)
      return 1;
  return 0;
}

static void forget(thaw_repair_t *r, const char *key) {
  thaw_store_remove(r->pods, key, NULL, NULL);
}

/* Starts the clock of `key` unless it runs already. */
static void track(thaw_repair_t *r, const char *key) {
  if (thaw_store_get(r->pods, key, NULL) != NULL)
    return;
  if (thaw_store_count(r->pods) >= THAW_REPAIR_MAX_PODS) {
    char max[24];
    snprintf(max, sizeof max, "%d", THAW_REPAIR_MAX_PODS);
    if (!r->missed)
      thaw_warn("too many pods failing pulls; repair picks the rest up later",
                "max", max);
    r->missed = 1;
    return;
  }
  track_t *t = calloc(1, sizeof *t);
  if (t == NULL || thaw_store_put(r->pods, key, 0, t, NULL) < 0) {
    free(t);
    r->missed = 1; /* out of memory: the rescan tries again */
    return;
  }
  t->since_ms = uv_now(r->loop);
}

static void on_pod(const char *key, const void *old_, const void *new_,
                   void *data) {
  (void)old_;
  thaw_repair_t *r = data;
  if (candidate(r, new_))
    track(r, key);
  else
    forget(r, key);
}

/* After the store was full: the informer's failing pods not remembered. */
static void rescan(thaw_repair_t *r) {
  r->missed = 0;
  const thaw_store_t *all = thaw_informer_store(thaw_sources_pods(r->sources));
  size_t pos = 0;
  const char *key;
  void *rec;
  while (!r->missed && thaw_store_next(all, &pos, &key, NULL, &rec))
    if (candidate(r, rec))
      track(r, key);
}

/* --- reads and patches -------------------------------------------------- */

static uint64_t backoff(uint64_t first, uint32_t attempts, uint64_t cap) {
  uint64_t d = first;
  for (uint32_t i = 1; i < attempts && d < cap; i++)
    d *= 2;
  return d < cap ? d : cap;
}

static void call_free(call_t *c) {
  free(c->message);
  free(c);
}

/* Ends a request: frees it, and the repairer when it was waiting for it. */
static void call_end(call_t *c) {
  thaw_repair_t *r = c->r;
  call_free(c);
  r->inflight--;
  if (r->closing && r->inflight == 0 && !r->timer_open)
    free(r);
}

/* The pod's record for this answer, or NULL when it is no longer wanted. */
static track_t *settle(call_t *c) {
  thaw_repair_t *r = c->r;
  if (r->closing)
    return NULL;
  track_t *t = thaw_store_get(r->pods, c->key, NULL);
  if (t != NULL)
    t->busy = 0;
  return t;
}

static void retry_later(thaw_repair_t *r, track_t *t) {
  t->attempts++;
  t->next_ms = uv_now(r->loop) + backoff(RETRY_MS, t->attempts, RETRY_MAX_MS);
}

static void on_patched(const thaw_kube_result_t *res, void *data) {
  call_t *c = data;
  thaw_repair_t *r = c->r;
  track_t *t = settle(c);
  if (res->err == THAW_ECANCELED || r->closing) {
    call_end(c);
    return;
  }
  char ns[64];
  const char *name = "";
  thaw_podpatch_split_key(c->key, ns, sizeof ns, &name);
  if (res->err == 0) {
    thaw_denied_note(&denied_patch, 0, "repair", "patch", "pods", NULL);
    thaw_metric_child_add(r->repaired, 1);
    thaw_info("pod repaired: original image restored", "ns", ns, "pod", name,
              "detail", c->message);
    thaw_events_object_t pod = {.api_version = "v1",
                                .kind = "Pod",
                                .namespace = ns,
                                .name = name,
                                .uid = c->uid};
    thaw_events_emit_object(r->events, &pod, "Warning", "ImageRepaired",
                            c->message);
    if (t != NULL) { /* other containers may fail later: the clock restarts */
      t->since_ms = uv_now(r->loop);
      t->attempts = 0;
      t->next_ms = 0;
    }
  } else if (res->err == THAW_ENOTFOUND) {
    forget(r, c->key);
  } else {
    /* 422: a test op failed, the pod changed since it was read; read it
     * again. Others back off. */
    if (!thaw_denied_note(&denied_patch, res->err, "repair", "patch", "pods",
                          res->message))
      thaw_warn("pod repair failed", "ns", ns, "pod", name, "error",
                thaw_err_name(res->err), "message", res->message);
    if (t != NULL)
      retry_later(r, t);
  }
  call_end(c);
}

static void on_read(const thaw_kube_result_t *res, void *data) {
  call_t *c = data;
  thaw_repair_t *r = c->r;
  track_t *t = settle(c);
  if (res->err == THAW_ECANCELED || t == NULL || !r->active) {
    call_end(c);
    return;
  }
  if (res->err == THAW_ENOTFOUND) {
    forget(r, c->key);
    call_end(c);
    return;
  }
  if (res->err != 0) {
    if (!thaw_denied_note(&denied_get, res->err, "repair", "get", "pods",
                          res->message))
      thaw_warn("pod repair: read failed", "pod", c->key, "error",
                thaw_err_name(res->err), "message", res->message);
    retry_later(r, t);
    call_end(c);
    return;
  }
  thaw_denied_note(&denied_get, 0, "repair", "get", "pods", NULL);
  cJSON *ops = NULL;
  char msg[THAW_REPAIR_MESSAGE_MAX];
  int n = thaw_repair_plan(res->body, &r->opts, &ops, msg, sizeof msg);
  if (n <= 0) {
    /* Nothing of thaw's to repair (yet): look again later, less often. */
    t->attempts++;
    t->next_ms = uv_now(r->loop) +
                 backoff(r->after_ms, t->attempts, RECHECK_MAX_MS);
    call_end(c);
    return;
  }
  const char *uid = str(cJSON_GetObjectItemCaseSensitive(res->body, "metadata"),
                        "uid");
  snprintf(c->uid, sizeof c->uid, "%s", uid ? uid : "");
  char ns[64];
  const char *name;
  int rc = THAW_ENOMEM;
  if ((c->message = strdup(msg)) != NULL &&
      thaw_podpatch_split_key(c->key, ns, sizeof ns, &name) == 0) {
    thaw_kube_opts_t o = {.namespace = ns,
                          .name = name,
                          .field_manager = "thaw-controller"};
    rc = thaw_kube_json_patch(r->kube, &thaw_kube_pods, &o, ops, on_patched,
                              c);
  }
  cJSON_Delete(ops);
  if (rc != 0) {
    thaw_warn("pod repair not sent", "pod", c->key, "error", thaw_strerror(rc));
    retry_later(r, t);
    call_end(c);
    return;
  }
  t->busy = 1; /* the same call goes on with the patch */
}

static int start_read(thaw_repair_t *r, const char *key, track_t *t) {
  size_t len = strlen(key);
  call_t *c = calloc(1, sizeof *c + len + 1);
  char ns[64];
  const char *name;
  if (c == NULL)
    return THAW_ENOMEM;
  memcpy(c->key, key, len + 1);
  c->r = r;
  if (thaw_podpatch_split_key(key, ns, sizeof ns, &name) != 0) {
    free(c);
    return THAW_EINVAL;
  }
  thaw_kube_opts_t o = {.namespace = ns, .name = name};
  int rc = thaw_kube_get(r->kube, &thaw_kube_pods, &o, on_read, c);
  if (rc != 0) {
    free(c);
    return rc;
  }
  r->inflight++;
  t->busy = 1;
  return 0;
}

static void on_tick(uv_timer_t *h) {
  thaw_repair_t *r = h->data;
  if (!r->active)
    return;
  if (r->missed && thaw_store_count(r->pods) < THAW_REPAIR_MAX_PODS)
    rescan(r);
  uint64_t now = uv_now(r->loop);
  size_t pos = 0;
  const char *key;
  void *rec;
  while (r->inflight < MAX_INFLIGHT &&
         thaw_store_next(r->pods, &pos, &key, NULL, &rec)) {
    track_t *t = rec;
    if (t->busy || now - t->since_ms < r->after_ms || now < t->next_ms)
      continue;
    int rc = start_read(r, key, t);
    if (rc != 0) {
      thaw_warn("pod repair: cannot read", "pod", key, "error",
                thaw_strerror(rc));
      retry_later(r, t);
    }
  }
}

/* --- life cycle --------------------------------------------------------- */

int thaw_repair_new(uv_loop_t *loop, thaw_kube_t *kube,
                    thaw_sources_t *sources, const thaw_repair_opts_t *o,
                    thaw_repair_t **out) {
  *out = NULL;
  if (o == NULL || o->cache_host == NULL || o->after_ms == 0 ||
      kube == NULL || sources == NULL)
    return THAW_EINVAL;
  thaw_repair_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return THAW_ENOMEM;
  r->loop = loop;
  r->kube = kube;
  r->sources = sources;
  r->after_ms = o->after_ms;
  r->opts = *o;
  if ((r->cache_host = strdup(o->cache_host)) == NULL ||
      (r->private_host = strdup(private_host(o))) == NULL ||
      (r->events = thaw_events_new(kube)) == NULL ||
      (r->pods = thaw_store_new(thaw_store_free_plain, NULL)) == NULL) {
    thaw_events_free(r->events);
    free(r->cache_host);
    free(r->private_host);
    free(r);
    return THAW_ENOMEM;
  }
  r->opts.cache_host = r->cache_host;
  r->opts.private_host = r->private_host;
  if (o->metrics != NULL) {
    thaw_metric_t *m = thaw_metrics_counter(
        o->metrics, "thaw_pods_repaired_total",
        "Pods whose failing rewritten images were set back to the originals.",
        0, NULL);
    r->repaired = thaw_metric_child(m, NULL); /* exported at 0 */
  }
  uv_timer_init(loop, &r->tick);
  r->tick.data = r;
  r->timer_open = 1;
  thaw_sources_observer_t ob = {.on_pod = on_pod, .data = r};
  int rc = thaw_sources_observe(sources, &ob);
  if (rc != 0) {
    thaw_repair_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

void thaw_repair_set_active(thaw_repair_t *r, int active) {
  if (r == NULL || r->active == !!active)
    return;
  r->active = !!active;
  if (active)
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
  else
    uv_timer_stop(&r->tick);
}

static void on_tick_closed(uv_handle_t *h) {
  thaw_repair_t *r = h->data;
  r->timer_open = 0;
  if (r->inflight == 0)
    free(r);
}

void thaw_repair_free(thaw_repair_t *r) {
  if (r == NULL)
    return;
  r->closing = 1;
  r->active = 0;
  thaw_events_free(r->events);
  thaw_store_free(r->pods);
  free(r->cache_host);
  free(r->private_host);
  r->events = NULL;
  r->pods = NULL;
  r->cache_host = NULL;
  uv_timer_stop(&r->tick);
  uv_close((uv_handle_t *)&r->tick, on_tick_closed);
}
