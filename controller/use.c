/* use.c - use counts from the Pod and PodTemplate informers, and the
 * coalesced use writes into CachedImage status (use.h). */
#include "use.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "denied.h"
#include "error.h"
#include "log.h"
#include "podinfo.h"

#define SAMPLE_MAX 10     /* usedBy.pods */
#define NORMS_MAX 65536   /* memo of raw -> normalised; cleared when full */
#define WRITES_MAX 64     /* use patches in flight */
#define TICK_WRITES 100   /* use patches started per tick */
#define DIRTY 1u          /* uses rv: low byte flags, pods count above */

struct thaw_use {
  uv_loop_t *loop;
  thaw_use_opts_t o;
  /* normalised image -> rv = pods << 8 | flags (DIRTY: the set of pods
   * changed since the last write, so the sample may differ) */
  thaw_store_t *uses;
  thaw_store_t *tpls;    /* normalised image -> rv = templates naming it */
  /* raw image -> malloc'd normalised ("" invalid), NUL, the other
   * original of a pinned rewrite ("" none), NUL (see norm_of) */
  thaw_store_t *norms;
  /* normalised image -> rv = wall ms it was last seen in use (any pod
   * came or went), so a pod that came and went between two ticks still
   * moves lastUsedAt */
  thaw_store_t *seen;
  /* CachedImage name -> rv = wall ms of our last use write << 1 | 1 when
   * that write said "unused" */
  thaw_store_t *written;
  uv_timer_t tick;
  thaw_denied_t denied;
  unsigned inflight;
  uint64_t writes;
  int active, tpl_dirty, closing, timer_closed;
};

static void release(thaw_use_t *u) {
  thaw_store_free(u->uses);
  thaw_store_free(u->tpls);
  thaw_store_free(u->norms);
  thaw_store_free(u->seen);
  thaw_store_free(u->written);
  free(u);
}

/* --- counting ---------------------------------------------------------- */

/* The normalised form of an image as written, memoised ("" when it does
 * not parse); NULL when out of memory. A rewritten "<cache>/x:tag@d"
 * counts for both of its possible originals, "x:tag@d" and "x:tag"
 * (counting more only keeps an image longer): the second follows the
 * first's NUL (alt_of), "" when there is none. */
static const char *norm_of(thaw_use_t *u, const char *raw) {
  const char *n = thaw_store_get(u->norms, raw, NULL);
  if (n != NULL)
    return n;
  thaw_imgref_t ref, alt;
  int ok = thaw_sources_normalize(u->o.sources, raw, &ref, &alt) == 0;
  size_t rn = ok ? ref.len : 0, an = ok ? alt.len : 0;
  char *copy = malloc(rn + 1 + an + 1);
  if (copy == NULL)
    return NULL;
  memcpy(copy, ref.str, rn);
  copy[rn] = '\0';
  memcpy(copy + rn + 1, alt.str, an);
  copy[rn + 1 + an] = '\0';
  if (thaw_store_count(u->norms) >= NORMS_MAX) {
    thaw_store_t *fresh = thaw_store_new(thaw_store_free_plain, NULL);
    if (fresh != NULL) {
      thaw_store_free(u->norms);
      u->norms = fresh;
    }
  }
  if (thaw_store_put(u->norms, raw, 0, copy, NULL) < 0) {
    free(copy);
    return NULL;
  }
  return copy;
}

/* The other original of a norm_of() answer, "" when there is none. */
static const char *alt_of(const char *norm) { return norm + strlen(norm) + 1; }

/* Appends img to out[] (n of them) unless it is there or empty. */
static size_t add_distinct(const char **out, size_t n, const char *img) {
  if (*img == '\0')
    return n;
  size_t k = 0;
  while (k < n && strcmp(out[k], img) != 0)
    k++;
  if (k == n)
    out[n++] = img;
  return n;
}

/* The distinct normalised images of a pod that counts (both originals of a
 * pinned rewrite; out[] holds 2 * THAW_PODINFO_MAX_REFS); returns how
 * many (0 for a finished pod or NULL). */
static size_t pod_images(thaw_use_t *u, const thaw_podinfo_t *p,
                         const char **out) {
  size_t n = 0;
  if (p == NULL || (p->flags & THAW_POD_TERMINATED))
    return 0;
  for (size_t i = 0; i < p->n_images; i++) {
    const char *img = norm_of(u, p->refs[i]);
    if (img == NULL || *img == '\0')
      continue;
    n = add_distinct(out, n, img);
    n = add_distinct(out, n, alt_of(img));
  }
  return n;
}

/* The last time img was seen in use, or 0. */
static uint64_t seen_ms(const thaw_use_t *u, const char *img) {
  uint64_t ms = 0;
  thaw_store_get(u->seen, img, &ms);
  return ms;
}

static void add_pods(thaw_use_t *u, const char *img, int delta) {
  if (thaw_store_count(u->seen) >= NORMS_MAX) { /* bounded: start over */
    thaw_store_t *fresh = thaw_store_new(NULL, NULL);
    if (fresh != NULL) {
      thaw_store_free(u->seen);
      u->seen = fresh;
    }
  }
  thaw_store_put(u->seen, img, thaw_wall_ms(), u, NULL);
  uint64_t rv = 0;
  thaw_store_get(u->uses, img, &rv);
  int64_t pods = (int64_t)(rv >> 8) + delta;
  if (pods <= 0) {
    thaw_store_remove(u->uses, img, NULL, NULL); /* desired 0: compared */
    return;
  }
  /* The record pointer must be non-NULL for get() to find it. */
  if (thaw_store_put(u->uses, img, (uint64_t)pods << 8 | DIRTY, (void *)u,
                     NULL) < 0)
    thaw_warn("use count lost (out of memory)", "image", img);
}

static void on_pod(const char *key, const void *old_, const void *new_,
                   void *data) {
  (void)key;
  thaw_use_t *u = data;
  const char *was[2 * THAW_PODINFO_MAX_REFS], *is[2 * THAW_PODINFO_MAX_REFS];
  size_t nw = pod_images(u, old_, was), ni = pod_images(u, new_, is);
  /* Both lists: the pod set changed only where membership changed, but a
   * pod that merely changed phase inside "counts" needs nothing. */
  for (size_t i = 0; i < nw; i++) {
    size_t k = 0;
    while (k < ni && strcmp(is[k], was[i]) != 0)
      k++;
    if (k == ni)
      add_pods(u, was[i], -1);
  }
  for (size_t i = 0; i < ni; i++) {
    size_t k = 0;
    while (k < nw && strcmp(was[k], is[i]) != 0)
      k++;
    if (k == nw)
      add_pods(u, is[i], +1);
  }
}

static void on_templates(void *data) {
  thaw_use_t *u = data;
  u->tpl_dirty = 1;
}

static void count_template(const char *key, const char *raw, void *data) {
  (void)key;
  thaw_use_t *u = data;
  const char *img = norm_of(u, raw);
  if (img == NULL || *img == '\0')
    return;
  for (const char *i = img; *i != '\0'; i = i == img ? alt_of(img) : "") {
    uint64_t n = 0;
    thaw_store_get(u->tpls, i, &n);
    thaw_store_put(u->tpls, i, n + 1, (void *)u, NULL);
  }
}

static void recount_templates(thaw_use_t *u) {
  thaw_store_t *fresh = thaw_store_new(NULL, NULL);
  if (fresh == NULL)
    return; /* stays dirty: the next tick tries again */
  thaw_store_free(u->tpls);
  u->tpls = fresh;
  u->tpl_dirty = 0;
  thaw_sources_each_prewarm_image(u->o.sources, count_template, u);
}

thaw_use_count_t thaw_use_get(const thaw_use_t *u, const char *normalized) {
  thaw_use_count_t c = {0, 0};
  uint64_t rv = 0;
  if (thaw_store_get(u->uses, normalized, &rv) != NULL)
    c.pods = (uint32_t)(rv >> 8);
  rv = 0;
  if (thaw_store_get(u->tpls, normalized, &rv) != NULL)
    c.templates = (uint32_t)rv;
  return c;
}

int thaw_use_ready(const thaw_use_t *u) {
  return thaw_sources_synced(u->o.sources) &&
         u->o.cachedimages_synced(u->o.data);
}

/* Unused now and in status, but a pod came and went after the status's
 * lastUsedAt: that must be written too. */
static int blip(const thaw_use_t *u, const thaw_cirec_t *c,
                thaw_use_count_t n) {
  return n.pods + n.templates == 0 && c->used_pods + c->used_templates == 0 &&
         seen_ms(u, c->norm) / 1000 > (uint64_t)c->last_used;
}

int thaw_use_settled(const thaw_use_t *u, const thaw_cirec_t *c) {
  thaw_use_count_t n = thaw_use_get(u, c->norm);
  int used = n.pods + n.templates > 0;
  int says = c->used_pods + c->used_templates > 0;
  return used == says && !blip(u, c, n);
}

uint64_t thaw_use_writes(const thaw_use_t *u) { return u->writes; }

/* --- writing ----------------------------------------------------------- */

/* The first SAMPLE_MAX pod keys (in sort order) of one image. */
typedef struct {
  const char *keys[SAMPLE_MAX];
  size_t n;
  int skipped; /* an object of the image is still to be written */
} sample_t;

static void sample_add(sample_t *s, const char *key) {
  size_t at = s->n;
  while (at > 0 && strcmp(s->keys[at - 1], key) > 0)
    at--;
  if (at >= SAMPLE_MAX)
    return;
  size_t end = s->n < SAMPLE_MAX ? s->n : SAMPLE_MAX - 1;
  memmove(&s->keys[at + 1], &s->keys[at], (end - at) * sizeof s->keys[0]);
  s->keys[at] = key;
  if (s->n < SAMPLE_MAX)
    s->n++;
}

/* One pass over every pod fills the samples of the images in `want`
 * (normalised image -> sample_t). Keys point into the pod store, valid
 * until the loop runs again. */
static void fill_samples(thaw_use_t *u, thaw_store_t *want) {
  const thaw_store_t *pods = thaw_informer_store(thaw_sources_pods(u->o.sources));
  size_t pos = 0;
  const char *key;
  void *rec;
  const char *imgs[2 * THAW_PODINFO_MAX_REFS];
  while (thaw_store_next(pods, &pos, &key, NULL, &rec)) {
    size_t n = pod_images(u, rec, imgs);
    for (size_t i = 0; i < n; i++) {
      sample_t *s = thaw_store_get(want, imgs[i], NULL);
      if (s != NULL)
        sample_add(s, key);
    }
  }
}

typedef struct {
  thaw_use_t *u;
  char name[254];
  int unused;
} write_t;

static void on_written(const thaw_kube_result_t *res, void *data) {
  write_t *w = data;
  thaw_use_t *u = w->u;
  u->inflight--;
  int quiet = res->err != THAW_ECANCELED &&
              thaw_denied_note(&u->denied, res->err, "use", "patch",
                               "cachedimages/status", res->message);
  if (res->err != 0 && res->err != THAW_ECANCELED &&
      res->err != THAW_ENOTFOUND && !quiet)
    thaw_warn("use not written", "name", w->name, "error",
              thaw_err_name(res->err), "message", res->message);
  free(w);
  if (u->closing && u->timer_closed && u->inflight == 0)
    release(u); /* the last write outlived thaw_use_free */
}

static int write_use(thaw_use_t *u, const char *name, const char *img,
                     thaw_use_count_t n, const sample_t *s, uint64_t now) {
  cJSON *body = cJSON_CreateObject();
  cJSON *st = body ? cJSON_AddObjectToObject(body, "status") : NULL;
  cJSON *by = st ? cJSON_AddObjectToObject(st, "usedBy") : NULL;
  cJSON *list = by ? cJSON_AddArrayToObject(by, "pods") : NULL;
  write_t *w = calloc(1, sizeof *w);
  if (list == NULL || w == NULL) {
    cJSON_Delete(body);
    free(w);
    return THAW_ENOMEM;
  }
  cJSON_AddNumberToObject(by, "count", n.pods);
  cJSON_AddNumberToObject(by, "templates", n.templates);
  for (size_t i = 0; s && i < s->n; i++)
    cJSON_AddItemToArray(list, cJSON_CreateString(s->keys[i]));
  /* In use: now. Unused: when it was last seen in use. */
  uint64_t last = n.pods + n.templates == 0 ? seen_ms(u, img) : 0;
  char t[32];
  thaw_rfc3339((time_t)((last ? last : now) / 1000), t, sizeof t);
  cJSON_AddStringToObject(st, "lastUsedAt", t);
  w->u = u;
  w->unused = n.pods + n.templates == 0;
  snprintf(w->name, sizeof w->name, "%s", name);
  thaw_kube_opts_t ko = {.name = name, .subresource = "status",
                         .field_manager = "thaw-controller"};
  int rc = thaw_kube_merge_patch(u->o.kube, &thaw_kube_cachedimages, &ko,
                                 body, on_written, w);
  cJSON_Delete(body);
  if (rc != 0) {
    free(w);
    return rc;
  }
  u->inflight++;
  u->writes++;
  thaw_debug("use written", "name", name, "unused", w->unused ? "1" : "0");
  thaw_store_put(u->written, name, now << 1 | (uint64_t)w->unused, (void *)u,
                 NULL);
  return 0;
}

/* 1 when the object's use should be written now (see use.h). */
static int due(thaw_use_t *u, const char *name, const thaw_cirec_t *c,
               thaw_use_count_t n, int dirty, uint64_t now) {
  int unused = n.pods + n.templates == 0;
  int differs = n.pods != c->used_pods || n.templates != c->used_templates ||
                (dirty && !unused) || blip(u, c, n);
  if (!differs)
    return 0;
  uint64_t last = 0;
  if (thaw_store_get(u->written, name, &last) != NULL &&
      now < (last >> 1) + u->o.coalesce_ms)
    return unused != (int)(last & 1); /* recent: only used <-> unused */
  return 1;
}

static void on_tick(uv_timer_t *t) {
  thaw_use_t *u = t->data;
  if (!u->active || !thaw_use_ready(u))
    return;
  if (u->tpl_dirty)
    recount_templates(u);
  uint64_t now = thaw_wall_ms();
  const thaw_store_t *cis = u->o.cachedimages(u->o.data);
  thaw_store_t *want = thaw_store_new(thaw_store_free_plain, NULL);
  if (want == NULL)
    return;
  size_t pos = 0, n_due = 0, started = 0;
  const char *name;
  void *rec;
  /* Pass 1: which objects are due; their images need samples. All of them:
   * most turn out to be confirmations that need no write (after a restart,
   * every image in use is), and one pod walk serves them all. */
  while (thaw_store_next(cis, &pos, &name, NULL, &rec)) {
    const thaw_cirec_t *c = rec;
    if (c->norm[0] == '\0')
      continue;
    uint64_t rv = 0;
    thaw_store_get(u->uses, c->norm, &rv);
    if (!due(u, name, c, thaw_use_get(u, c->norm), (rv & DIRTY) != 0, now))
      continue;
    n_due++;
    if (thaw_store_get(want, c->norm, NULL) == NULL) {
      sample_t *s = calloc(1, sizeof *s);
      if (s == NULL || thaw_store_put(want, c->norm, 0, s, NULL) < 0)
        free(s);
    }
  }
  if (n_due > 0) {
    fill_samples(u, want);
    /* Pass 2: write what differs from the status (the sample included). */
    pos = 0;
    while (thaw_store_next(cis, &pos, &name, NULL, &rec)) {
      const thaw_cirec_t *c = rec;
      sample_t *s = c->norm[0] ? thaw_store_get(want, c->norm, NULL) : NULL;
      if (s == NULL)
        continue;
      thaw_use_count_t n = thaw_use_get(u, c->norm);
      uint64_t rv = 0;
      thaw_store_get(u->uses, c->norm, &rv);
      if (!due(u, name, c, n, (rv & DIRTY) != 0, now))
        continue;
      if (n.pods == c->used_pods && n.templates == c->used_templates &&
          thaw_cirec_pods_hash(s->keys, s->n) == c->used_hash &&
          !blip(u, c, n))
        continue; /* the same pods after all */
      /* The caps bound writes, not confirmations: the rest stay dirty. */
      if (started >= TICK_WRITES || u->inflight >= WRITES_MAX ||
          write_use(u, name, c->norm, n, s, now) != 0)
        s->skipped = 1;
      else
        started++;
    }
    /* The sets written (or found equal) are clean until pods change. */
    pos = 0;
    const char *img;
    void *srec;
    while (thaw_store_next(want, &pos, &img, NULL, &srec)) {
      uint64_t rv = 0;
      if (((sample_t *)srec)->skipped)
        continue;
      if (thaw_store_get(u->uses, img, &rv) != NULL && (rv & DIRTY))
        thaw_store_put(u->uses, img, rv & ~(uint64_t)DIRTY, (void *)u, NULL);
    }
  }
  thaw_store_free(want);
}

/* --- life cycle -------------------------------------------------------- */

int thaw_use_new(uv_loop_t *loop, const thaw_use_opts_t *o, thaw_use_t **out) {
  *out = NULL;
  if (o == NULL || o->kube == NULL || o->sources == NULL ||
      o->cachedimages == NULL || o->cachedimages_synced == NULL)
    return THAW_EINVAL;
  thaw_use_t *u = calloc(1, sizeof *u);
  if (u == NULL)
    return THAW_ENOMEM;
  u->loop = loop;
  u->o = *o;
  if (u->o.coalesce_ms == 0)
    u->o.coalesce_ms = 10000;
  if (u->o.tick_ms == 0)
    u->o.tick_ms = 1000;
  u->uses = thaw_store_new(NULL, NULL);
  u->tpls = thaw_store_new(NULL, NULL);
  u->norms = thaw_store_new(thaw_store_free_plain, NULL);
  u->seen = thaw_store_new(NULL, NULL);
  u->written = thaw_store_new(NULL, NULL);
  u->tpl_dirty = 1;
  uv_timer_init(loop, &u->tick);
  u->tick.data = u;
  thaw_sources_observer_t ob = {.on_pod = on_pod,
                                .on_templates = on_templates, .data = u};
  int rc = u->uses && u->tpls && u->norms && u->seen && u->written
               ? thaw_sources_observe(o->sources, &ob)
               : THAW_ENOMEM;
  if (rc != 0) {
    thaw_use_free(u);
    return rc;
  }
  *out = u;
  return 0;
}

void thaw_use_set_active(thaw_use_t *u, int leading) {
  u->active = leading != 0;
  if (u->active)
    uv_timer_start(&u->tick, on_tick, u->o.tick_ms, u->o.tick_ms);
  else
    uv_timer_stop(&u->tick);
}

static void on_closed(uv_handle_t *h) {
  thaw_use_t *u = h->data;
  u->timer_closed = 1;
  if (u->inflight == 0)
    release(u); /* else the last write's callback does */
}

void thaw_use_free(thaw_use_t *u) {
  if (u == NULL || u->closing)
    return;
  u->closing = 1;
  u->active = 0;
  uv_timer_stop(&u->tick);
  uv_close((uv_handle_t *)&u->tick, on_closed);
}
