/* release.c - tracks gated pods and what the CachedImages say of their
 * images; the leader reads and releases the pods that are due (release.h;
 * the decision is release_plan.c). */
#include "release.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "denied.h"
#include "error.h"
#include "imgref.h"
#include "intern.h"
#include "log.h"
#include "podinfo.h"
#include "podpatch.h"
#include "store.h"
#include "workqueue.h"

#define SYNC_POLL_MS 500    /* informers not synced yet: look again */
#define NS_POLL_MS 1000     /* the pod's namespace not known yet */
#define CONFLICTS_AT_ONCE 3 /* 409/422 read again at once; then backoff */
#define UID_MAX 64

/* A gated pod: when it is due at the latest, and the normalised images
 * (interned) it waits for. */
typedef struct {
  time_t deadline;
  uint8_t conflicts; /* 409/422 in a row */
  uint8_t opted_out; /* pod labelled thaw.dev/caching=disabled */
  uint8_t n;
  char uid[UID_MAX];
  const char *norms[];
} track_t;

/* A CachedImage as far as the release cares. */
typedef struct {
  uint8_t phase, priv;
  const char *digest; /* status.digest when valid, else ""; after norm */
  char norm[];
} ci_t;

/* The CachedImages of one normalised image, by what they say. `ready`
 * counts Ready objects with a valid status.digest (a rewrite pins it);
 * `pin` is the last of them seen, the digest a release pins. */
typedef struct {
  uint32_t any, active, ready, failed, priv;
  const ci_t *pin;
} count_t;

struct thaw_release {
  uv_loop_t *loop;
  thaw_kube_t *kube;
  thaw_sources_t *sources;
  char *cache_host, *private_host;
  int (*synced)(void *data);
  void *data;
  thaw_intern_t *intern; /* the norms of tracked pods */
  thaw_store_t *pods;    /* "namespace/name" -> track_t */
  thaw_store_t *waits;   /* norm -> rv: tracked pods waiting for it */
  thaw_store_t *cis;     /* CachedImage name -> ci_t */
  thaw_store_t *imgs;    /* norm -> count_t */
  const char *changing;  /* the CachedImage whose records are swapped */
  thaw_workqueue_t *q;   /* while active */
  thaw_metric_child_t *rewritten, *unchanged, *waited;
  unsigned calls; /* reads and patches in flight */
  unsigned gen;   /* leadership terms: a call of an earlier one stops */
  int active, closing;
};

/* One read, then maybe one patch, of one pod. */
typedef struct {
  thaw_release_t *r;
  thaw_workqueue_t *q;
  thaw_workqueue_token_t *tok;
  unsigned gen;
  int rewritten;
  time_t created;
  char key[];
} call_t;

static thaw_denied_t denied_get, denied_patch;

/* --- what the CachedImages say ------------------------------------------ */

static int pinnable(const ci_t *ci) {
  return ci->phase == THAW_CI_READY && ci->digest[0] != '\0';
}

static const char *digest_of(const char *norm, void *data) {
  thaw_release_t *r = data;
  const count_t *c = thaw_store_get(r->imgs, norm, NULL);
  return c != NULL && c->pin != NULL ? c->pin->digest : NULL;
}

/* Another pinnable object of c's image than the one changing, or NULL. */
static const ci_t *find_pin(const thaw_release_t *r, const char *norm) {
  size_t pos = 0;
  const char *key;
  void *rec;
  while (thaw_store_next(r->cis, &pos, &key, NULL, &rec)) {
    const ci_t *o = rec;
    if ((r->changing == NULL || strcmp(key, r->changing) != 0) &&
        pinnable(o) &&
        strcmp(o->norm, norm) == 0)
      return o;
  }
  return NULL;
}

static unsigned lookup(const char *norm, void *data) {
  thaw_release_t *r = data;
  const count_t *c = thaw_store_get(r->imgs, norm, NULL);
  if (c == NULL || c->any == 0)
    return 0;
  return THAW_RELEASE_CI_ANY | (c->active ? THAW_RELEASE_CI_ACTIVE : 0) |
         (c->ready ? THAW_RELEASE_CI_READY : 0) |
         (c->failed ? THAW_RELEASE_CI_FAILED : 0) |
         (c->priv ? THAW_RELEASE_CI_PRIVATE : 0);
}

int thaw_release_is_private(thaw_release_t *r, const char *norm) {
  return r != NULL && (lookup(norm, r) & THAW_RELEASE_CI_PRIVATE) != 0;
}

static void count(thaw_release_t *r, const ci_t *ci, int d) {
  count_t *c = thaw_store_get(r->imgs, ci->norm, NULL);
  if (c == NULL) {
    if (d < 0 || (c = calloc(1, sizeof *c)) == NULL ||
        thaw_store_put(r->imgs, ci->norm, 0, c, NULL) < 0) {
      free(c);
      return;
    }
  }
  c->any += d;
  c->active += (ci->phase == THAW_CI_NONE || ci->phase == THAW_CI_PENDING ||
                ci->phase == THAW_CI_WARMING) ? d : 0;
  c->ready += pinnable(ci) ? d : 0;
  c->failed += ci->phase == THAW_CI_FAILED ? d : 0;
  c->priv += ci->priv ? d : 0;
  if (d > 0 && pinnable(ci))
    c->pin = ci; /* the newest digest wins (a refresh moved it) */
  else if (d < 0 && c->pin == ci) /* rare: only with two objects */
    c->pin = c->ready > 0 ? find_pin(r, ci->norm) : NULL;
  if (c->any == 0)
    thaw_store_remove(r->imgs, ci->norm, NULL, NULL);
}

/* Queues the tracked pods that wait for `norm`. */
static void kick_image(thaw_release_t *r, const char *norm) {
  if (r->q == NULL || thaw_store_get(r->waits, norm, NULL) == NULL)
    return;
  size_t pos = 0;
  const char *key;
  void *rec;
  while (thaw_store_next(r->pods, &pos, &key, NULL, &rec)) {
    const track_t *t = rec;
    for (size_t i = 0; i < t->n; i++)
      if (strcmp(t->norms[i], norm) == 0) {
        thaw_workqueue_add(r->q, key);
        break;
      }
  }
}

void thaw_release_cachedimage(thaw_release_t *r, const char *name,
                              const thaw_cirec_t *rec) {
  if (r == NULL || r->closing)
    return;
  ci_t *old = thaw_store_get(r->cis, name, NULL), *ci = NULL;
  if (rec != NULL && rec->norm[0] != '\0') {
    uint8_t priv = (rec->flags & THAW_CI_PRIVATE) != 0;
    const char *dg = rec->digest != NULL &&
                             thaw_imgref_digest_valid(rec->digest,
                                                      strlen(rec->digest))
                         ? rec->digest
                         : "";
    if (old != NULL && old->phase == rec->phase && old->priv == priv &&
        strcmp(old->norm, rec->norm) == 0 && strcmp(old->digest, dg) == 0)
      return; /* a status write that changes nothing here (progress) */
    size_t n = strlen(rec->norm), dn = strlen(dg);
    if ((ci = malloc(sizeof *ci + n + 1 + dn + 1)) == NULL) {
      thaw_warn("release: CachedImage not recorded (out of memory)", "name",
                name);
      return;
    }
    ci->phase = rec->phase;
    ci->priv = priv;
    memcpy(ci->norm, rec->norm, n + 1);
    memcpy(ci->norm + n + 1, dg, dn + 1);
    ci->digest = ci->norm + n + 1;
  }
  r->changing = name; /* neither record of it may become a pin elsewhere */
  unsigned before = 0, after = 0, old_after = 0;
  if (ci != NULL)
    before = lookup(ci->norm, r);
  if (old != NULL) {
    unsigned old_before = lookup(old->norm, r);
    count(r, old, -1);
    old_after = lookup(old->norm, r);
    if (old_before != old_after &&
        (ci == NULL || strcmp(ci->norm, old->norm) != 0))
      kick_image(r, old->norm);
  }
  if (ci != NULL) {
    count(r, ci, +1);
    after = lookup(ci->norm, r);
    if (thaw_store_put(r->cis, name, 0, ci, NULL) < 0) {
      count(r, ci, -1);
      free(ci);
      ci = NULL;
    } else if (after != before) {
      kick_image(r, ci->norm);
    }
  }
  if (ci == NULL)
    thaw_store_remove(r->cis, name, NULL, NULL);
  r->changing = NULL;
}

/* --- tracked pods ------------------------------------------------------- */

static void track_free(thaw_release_t *r, track_t *t) {
  for (size_t i = 0; t != NULL && i < t->n; i++) {
    uint64_t n = 0;
    if (thaw_store_get(r->waits, t->norms[i], &n) != NULL) {
      if (n <= 1)
        thaw_store_remove(r->waits, t->norms[i], NULL, NULL);
      else
        thaw_store_put(r->waits, t->norms[i], n - 1, r, NULL);
    }
    thaw_intern_unref(r->intern, t->norms[i]);
  }
  free(t);
}

static void untrack(thaw_release_t *r, const char *key) {
  void *t;
  if (thaw_store_remove(r->pods, key, &t, NULL) == 0)
    track_free(r, t);
}

/* The track of a gated pod's record, or NULL when out of memory. */
static track_t *track_new(thaw_release_t *r, const thaw_podinfo_t *p,
                          const thaw_podinfo_gate_t *g) {
  size_t cap = p->n_images < 64 ? p->n_images : 64;
  track_t *t = calloc(1, sizeof *t + cap * sizeof(const char *));
  if (t == NULL)
    return NULL;
  time_t created = thaw_rfc3339_parse(g->created);
  t->deadline = created + g->wait_s; /* none: due at once */
  t->opted_out = (p->flags & THAW_POD_OPTED_OUT) != 0;
  snprintf(t->uid, sizeof t->uid, "%s", g->uid);
  for (size_t i = 0; !t->opted_out && i < cap; i++) {
    thaw_imgref_t ref;
    if (!(g->waited & (uint64_t)1 << i) ||
        thaw_imgref_is_rewritten(p->refs[i], r->cache_host) ||
        thaw_imgref_is_rewritten(p->refs[i], r->private_host) ||
        thaw_imgref_parse(p->refs[i], strlen(p->refs[i]), &ref) != 0)
      continue; /* done from the start */
    size_t k = 0;
    while (k < t->n && strcmp(t->norms[k], ref.str) != 0)
      k++;
    if (k < t->n)
      continue;
    const char *s = thaw_intern_ref(r->intern, ref.str, ref.len);
    if (s == NULL) {
      track_free(r, t);
      return NULL;
    }
    t->norms[t->n++] = s;
    uint64_t n = 0;
    thaw_store_get(r->waits, s, &n);
    thaw_store_put(r->waits, s, n + 1, r, NULL);
  }
  return t;
}

static int track_same(const track_t *a, const track_t *b) {
  if (a->deadline != b->deadline || a->n != b->n ||
      a->opted_out != b->opted_out || strcmp(a->uid, b->uid) != 0)
    return 0;
  for (size_t i = 0; i < a->n; i++)
    if (a->norms[i] != b->norms[i]) /* interned */
      return 0;
  return 1;
}

static void on_pod(const char *key, const void *old_, const void *new_,
                   void *data) {
  (void)old_;
  thaw_release_t *r = data;
  const thaw_podinfo_t *p = new_;
  const thaw_podinfo_gate_t *g = thaw_podinfo_gate(p);
  if (r->closing)
    return;
  if (g == NULL ||
      (p->flags & (THAW_POD_TERMINATED | THAW_SOURCES_POD_MIRROR))) {
    untrack(r, key);
    return;
  }
  track_t *t = track_new(r, p, g), *old = thaw_store_get(r->pods, key, NULL);
  if (t == NULL) {
    thaw_warn("release: gated pod not tracked (out of memory)", "pod", key);
    return;
  }
  if (old != NULL && track_same(old, t)) {
    track_free(r, t);
    return;
  }
  if (old != NULL && strcmp(old->uid, t->uid) == 0)
    t->conflicts = old->conflicts;
  else if (r->q != NULL) /* another pod under the same name */
    thaw_workqueue_forget(r->q, key);
  void *prev = NULL;
  if (thaw_store_put(r->pods, key, 0, t, &prev) < 0) {
    track_free(r, t);
    return;
  }
  track_free(r, prev);
  if (r->q != NULL)
    thaw_workqueue_add(r->q, key);
}

/* --- reads and patches -------------------------------------------------- */

/* Ends a call: the queue learns the outcome; the releaser is freed when it
 * was waiting for this call. */
static void finish(call_t *c, thaw_workqueue_result_t res, uint64_t after) {
  thaw_release_t *r = c->r;
  thaw_workqueue_done(c->q, c->tok, res, after);
  free(c);
  if (--r->calls == 0 && r->closing)
    free(r);
}

/* 1 when the call is still this term's and may go on. */
static int current(const call_t *c, int err) {
  return err != THAW_ECANCELED && !c->r->closing && c->r->active &&
         c->gen == c->r->gen;
}

/* Queues `key` again when its deadline comes. */
static void at_deadline(thaw_release_t *r, const char *key, time_t deadline) {
  uint64_t now = thaw_wall_ms(), at = (uint64_t)deadline * 1000u;
  if (r->q != NULL)
    thaw_workqueue_add_after(r->q, key, at > now ? at - now + 10 : 0);
}

static void on_patched(const thaw_kube_result_t *res, void *data) {
  call_t *c = data;
  thaw_release_t *r = c->r;
  if (res->err == THAW_ECANCELED || r->closing) {
    finish(c, THAW_WQ_SUCCESS, 0);
    return;
  }
  char ns[64];
  const char *name = "";
  thaw_podpatch_split_key(c->key, ns, sizeof ns, &name);
  track_t *t = thaw_store_get(r->pods, c->key, NULL);
  if (res->err == 0) {
    thaw_denied_note(&denied_patch, 0, "release", "patch", "pods", NULL);
    double waited = ((double)thaw_wall_ms() - (double)c->created * 1000.0) / 1000.0;
    if (waited < 0)
      waited = 0;
    char w[32];
    snprintf(w, sizeof w, "%.1f", waited);
    thaw_metric_child_add(c->rewritten ? r->rewritten : r->unchanged, 1);
    thaw_metric_child_observe(r->waited, waited);
    thaw_info("gated pod released", "ns", ns, "pod", name, "result",
              c->rewritten ? "rewritten" : "unchanged", "waited", w);
    untrack(r, c->key); /* the informer agrees soon */
    finish(c, THAW_WQ_SUCCESS, 0);
  } else if (res->err == THAW_ENOTFOUND) {
    untrack(r, c->key);
    finish(c, THAW_WQ_SUCCESS, 0);
  } else if ((res->err == THAW_ECONFLICT || res->err == THAW_EINVALID) &&
             t != NULL && t->conflicts < CONFLICTS_AT_ONCE) {
    /* The pod changed since it was read: read it and decide again. */
    t->conflicts++;
    thaw_debug("release: pod changed, reading it again", "pod", c->key);
    finish(c, THAW_WQ_RETRY_AFTER, 0);
  } else {
    if (!thaw_denied_note(&denied_patch, res->err, "release", "patch",
                          "pods", res->message))
      thaw_warn("gated pod not released", "ns", ns, "pod", name, "error",
                thaw_err_name(res->err), "message", res->message);
    finish(c, THAW_WQ_RETRY, 0);
  }
}

static void on_read(const thaw_kube_result_t *res, void *data) {
  call_t *c = data;
  thaw_release_t *r = c->r;
  if (!current(c, res->err)) {
    finish(c, THAW_WQ_SUCCESS, 0);
    return;
  }
  if (res->err == THAW_ENOTFOUND) {
    untrack(r, c->key);
    finish(c, THAW_WQ_SUCCESS, 0);
    return;
  }
  if (res->err != 0) {
    if (!thaw_denied_note(&denied_get, res->err, "release", "get", "pods",
                          res->message))
      thaw_warn("release: pod not read", "pod", c->key, "error",
                thaw_err_name(res->err), "message", res->message);
    finish(c, THAW_WQ_RETRY, 0);
    return;
  }
  thaw_denied_note(&denied_get, 0, "release", "get", "pods", NULL);
  char ns[64];
  const char *name;
  if (thaw_podpatch_split_key(c->key, ns, sizeof ns, &name) != 0) {
    finish(c, THAW_WQ_SUCCESS, 0);
    return;
  }
  int serves = thaw_sources_ns_serves(r->sources, ns);
  thaw_release_env_t env = {.cache_host = r->cache_host,
                            .private_host = r->private_host,
                            .ns_serves = serves, .lookup = lookup,
                            .digest = digest_of,
                            .data = r, .now = time(NULL)};
  thaw_release_plan_t plan;
  int rc = thaw_release_plan(res->body, &env, &plan);
  if (rc < 0) {
    finish(c, THAW_WQ_RETRY, 0);
    return;
  }
  if (rc == 0) {
    char key[THAW_WORKQUEUE_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s", c->key);
    if (plan.gate < 0)
      untrack(r, key); /* released already, or going away */
    finish(c, THAW_WQ_SUCCESS, 0);
    if (plan.gate >= 0) /* not due after all: a change or the deadline */
      at_deadline(r, key, plan.deadline);
    return;
  }
  c->rewritten = plan.rewritten;
  c->created = plan.created;
  thaw_kube_opts_t o = {.namespace = ns, .name = name,
                        .field_manager = "thaw-controller"};
  rc = thaw_kube_json_patch(r->kube, &thaw_kube_pods, &o, plan.ops,
                            on_patched, c);
  cJSON_Delete(plan.ops);
  if (rc != 0) {
    thaw_warn("release: patch not sent", "pod", c->key, "error",
              thaw_strerror(rc));
    finish(c, THAW_WQ_RETRY, 0);
  }
}

/* 1 when the tracked pod is due: its deadline passed, or every image it
 * waits for is done (its namespace known). Else *wait_ms: when to look
 * again at the latest (0: on a change only). */
static int due(thaw_release_t *r, const char *key, const track_t *t,
               uint64_t *wait_ms) {
  uint64_t now = thaw_wall_ms(), at = (uint64_t)t->deadline * 1000u;
  *wait_ms = at > now ? at - now + 10 : 0;
  if (now >= at)
    return 1;
  char ns[64];
  const char *name;
  if (thaw_podpatch_split_key(key, ns, sizeof ns, &name) != 0)
    return 1;
  int serves = thaw_sources_ns_serves(r->sources, ns);
  if (serves == THAW_SOURCES_NS_UNKNOWN) {
    if (*wait_ms > NS_POLL_MS)
      *wait_ms = NS_POLL_MS;
    return 0;
  }
  if (serves == THAW_SOURCES_NS_NONE || t->opted_out)
    return 1;
  for (size_t i = 0; i < t->n; i++)
    if (!thaw_release_image_done(lookup(t->norms[i], r)))
      return 0;
  return 1;
}

static void process(thaw_workqueue_t *q, const char *key,
                    thaw_workqueue_token_t *tok, void *data) {
  thaw_release_t *r = data;
  track_t *t = thaw_store_get(r->pods, key, NULL);
  if (t == NULL || !r->active) {
    thaw_workqueue_done(q, tok, THAW_WQ_SUCCESS, 0);
    return;
  }
  if (!r->synced(r->data) || !thaw_sources_synced(r->sources)) {
    thaw_workqueue_done(q, tok, THAW_WQ_RETRY_AFTER, SYNC_POLL_MS);
    return;
  }
  uint64_t wait_ms;
  if (!due(r, key, t, &wait_ms)) {
    char k[THAW_WORKQUEUE_KEY_MAX + 1];
    snprintf(k, sizeof k, "%s", key);
    thaw_workqueue_done(q, tok, THAW_WQ_SUCCESS, 0);
    if (wait_ms > 0)
      thaw_workqueue_add_after(q, k, wait_ms);
    return;
  }
  size_t len = strlen(key);
  call_t *c = calloc(1, sizeof *c + len + 1);
  char ns[64];
  const char *name;
  int rc = THAW_ENOMEM;
  if (c != NULL && thaw_podpatch_split_key(key, ns, sizeof ns, &name) == 0) {
    memcpy(c->key, key, len + 1);
    c->r = r;
    c->q = q;
    c->tok = tok;
    c->gen = r->gen;
    thaw_kube_opts_t o = {.namespace = ns, .name = name};
    rc = thaw_kube_get(r->kube, &thaw_kube_pods, &o, on_read, c);
  }
  if (rc != 0) {
    free(c);
    thaw_warn("release: cannot read pod", "pod", key, "error",
              thaw_strerror(rc));
    thaw_workqueue_done(q, tok, THAW_WQ_RETRY, 0);
    return;
  }
  r->calls++;
}

/* --- life cycle --------------------------------------------------------- */

static const double cold_wait_buckets[] = {0.1, 0.25, 0.5, 1,  2.5, 5,   10,
                                           15,  20,   30,  45, 60,  120, 300};

static int register_metrics(thaw_release_t *r, thaw_metrics_t *m) {
  static const char *const labels[] = {"result"};
  thaw_metric_t *rel = thaw_metrics_counter(
      m, "thaw_pods_released_total",
      "Gated pods released (rewritten: an image now names the cache).", 1,
      labels);
  thaw_metric_t *h = thaw_metrics_histogram(
      m, "thaw_cold_wait_seconds",
      "A gated pod's creation to its release, in seconds.", 0, NULL,
      cold_wait_buckets, sizeof cold_wait_buckets / sizeof *cold_wait_buckets);
  const char *rw[] = {"rewritten"}, *un[] = {"unchanged"};
  r->rewritten = thaw_metric_child(rel, rw); /* both exported at 0 */
  r->unchanged = thaw_metric_child(rel, un);
  r->waited = thaw_metric_child(h, NULL);
  return rel && h && r->rewritten && r->unchanged && r->waited ? 0
                                                               : THAW_ENOMEM;
}

static void release_stores(thaw_release_t *r) {
  if (r->pods != NULL) {
    size_t pos = 0;
    void *t;
    while (thaw_store_next(r->pods, &pos, NULL, NULL, &t))
      track_free(r, t);
    /* the records are freed above: the store's own callback is NULL */
  }
  thaw_store_free(r->pods);
  thaw_store_free(r->waits);
  thaw_store_free(r->cis);
  thaw_store_free(r->imgs);
  thaw_intern_free(r->intern);
  free(r->cache_host);
  free(r->private_host);
  r->pods = r->waits = r->cis = r->imgs = NULL;
  r->intern = NULL;
  r->cache_host = r->private_host = NULL;
}

int thaw_release_new(uv_loop_t *loop, thaw_kube_t *kube,
                     thaw_sources_t *sources, const thaw_release_opts_t *o,
                     thaw_release_t **out) {
  *out = NULL;
  if (o == NULL || o->cache_host == NULL || o->synced == NULL ||
      kube == NULL || sources == NULL)
    return THAW_EINVAL;
  thaw_release_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return THAW_ENOMEM;
  r->loop = loop;
  r->kube = kube;
  r->sources = sources;
  r->synced = o->synced;
  r->data = o->data;
  r->cache_host = strdup(o->cache_host);
  r->private_host = strdup(o->private_host ? o->private_host
                                           : THAW_IMGREF_PRIVATE_HOST);
  r->intern = thaw_intern_new();
  r->pods = thaw_store_new(NULL, NULL);
  r->waits = thaw_store_new(NULL, NULL);
  r->cis = thaw_store_new(thaw_store_free_plain, NULL);
  r->imgs = thaw_store_new(thaw_store_free_plain, NULL);
  int rc = r->cache_host && r->private_host && r->intern && r->pods &&
                   r->waits && r->cis && r->imgs
               ? 0
               : THAW_ENOMEM;
  if (rc == 0 && o->metrics != NULL)
    rc = register_metrics(r, o->metrics);
  thaw_sources_observer_t ob = {.on_pod = on_pod, .data = r};
  if (rc == 0)
    rc = thaw_sources_observe(sources, &ob);
  if (rc != 0) {
    release_stores(r);
    free(r);
    return rc;
  }
  *out = r;
  return 0;
}

void thaw_release_set_active(thaw_release_t *r, int active) {
  if (r == NULL || r->active == !!active || r->closing)
    return;
  r->active = !!active;
  r->gen++;
  if (!active) {
    thaw_workqueue_free(r->q); /* calls in flight still end through it */
    r->q = NULL;
    return;
  }
  thaw_workqueue_opts_t qo = {.concurrency = THAW_RELEASE_MAX_INFLIGHT,
                              .backoff_base_ms = THAW_RELEASE_RETRY_MS,
                              .backoff_max_ms = THAW_RELEASE_RETRY_MAX_MS,
                              .qps = -1};
  int rc = thaw_workqueue_new(&r->q, r->loop, &qo, process, r);
  if (rc != 0) {
    thaw_error("release: no work queue; gated pods wait for their deadline "
               "or the next leader", "error", thaw_strerror(rc));
    return;
  }
  /* A new leader looks at every gated pod at once. */
  size_t pos = 0;
  const char *key;
  while (thaw_store_next(r->pods, &pos, &key, NULL, NULL))
    thaw_workqueue_add(r->q, key);
}

void thaw_release_free(thaw_release_t *r) {
  if (r == NULL)
    return;
  thaw_release_set_active(r, 0);
  r->closing = 1;
  release_stores(r);
  if (r->calls == 0)
    free(r);
}
