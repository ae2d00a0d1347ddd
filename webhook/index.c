/* index.c - the webhook's in-memory view of CachedImages and Namespaces
 * (index.h): two informers, and a hash table from normalised image to the
 * count of CachedImages that name it, by phase. */
#include "index.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imgref.h"
#include "informer.h"
#include "log.h"

#define LABEL_CACHING "thaw.dev/caching"
#define LABEL_CACHE_PRIVATE "thaw.dev/cache-private"
#define MIN_CAP 64

/* One distinct normalised image. `refs` counts the projected records that
 * point here (they may not be delivered yet: during a re-list both stores
 * hold records); the other counts are what the handlers were told, and the
 * only thing lookups read. One allocation: counts, then the string. */
typedef struct {
  uint32_t hash;
  uint32_t refs;
  uint32_t total;         /* CachedImages delivered for this image */
  uint32_t ready;         /* ... of which Ready */
  uint32_t ready_private; /* ... of which Ready with status.private */
  char s[];
} img_t;

/* The informer's record of one CachedImage. */
enum { CI_READY = 1, CI_PRIVATE = 2 };
typedef struct {
  img_t *img;
  uint8_t flags;
} ci_rec_t;

struct thaw_index {
  uv_loop_t *loop;
  thaw_kube_t *kube;
  thaw_informer_t *ci_inf, *ns_inf;
  img_t **slots; /* open addressing, linear probing, cap a power of two */
  size_t cap, count;
  size_t objects;  /* CachedImages delivered */
  size_t records;  /* ci_rec_t alive; the index outlives the last one */
  thaw_index_image_cb observer;
  void *observer_data;
  int started, closing;
};

/* --- image table -------------------------------------------------------- */

static uint32_t hash_str(const char *s, size_t *len) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a, folded */
  const char *p = s;
  for (; *p; p++) {
    h ^= (unsigned char)*p;
    h *= 1099511628211ull;
  }
  *len = (size_t)(p - s);
  h ^= h >> 29;
  return (uint32_t)(h ^ (h >> 32));
}

/* The slot of `s`, or of the empty slot where it would go. */
static size_t find(const thaw_index_t *ix, const char *s, uint32_t h) {
  size_t mask = ix->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    img_t *e = ix->slots[i];
    if (e == NULL || (e->hash == h && strcmp(e->s, s) == 0))
      return i;
  }
}

static int grow(thaw_index_t *ix) {
  size_t ncap = ix->cap ? ix->cap * 2 : MIN_CAP;
  img_t **ns = calloc(ncap, sizeof(*ns));
  if (ns == NULL)
    return THAW_ENOMEM;
  for (size_t i = 0; i < ix->cap; i++) {
    img_t *e = ix->slots[i];
    if (e == NULL)
      continue;
    size_t j = e->hash & (ncap - 1);
    while (ns[j] != NULL)
      j = (j + 1) & (ncap - 1);
    ns[j] = e;
  }
  free(ix->slots);
  ix->slots = ns;
  ix->cap = ncap;
  return 0;
}

/* The entry of `s` with one more reference, created if needed; NULL when
 * out of memory. */
static img_t *img_ref(thaw_index_t *ix, const char *s) {
  if ((ix->count + 1) * 4 > ix->cap * 3 && grow(ix) != 0)
    return NULL;
  size_t len;
  uint32_t h = hash_str(s, &len);
  size_t i = find(ix, s, h);
  img_t *e = ix->slots[i];
  if (e == NULL) {
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
      return NULL;
    e->hash = h;
    memcpy(e->s, s, len + 1);
    ix->slots[i] = e;
    ix->count++;
  }
  e->refs++;
  return e;
}

/* Removes e from the table and frees it; backward-shift deletion keeps every
 * probe chain unbroken without tombstones. */
static void img_remove(thaw_index_t *ix, img_t *e) {
  size_t mask = ix->cap - 1, i = find(ix, e->s, e->hash);
  ix->slots[i] = NULL;
  for (size_t j = (i + 1) & mask; ix->slots[j] != NULL; j = (j + 1) & mask) {
    size_t home = ix->slots[j]->hash & mask;
    /* move j into the hole i unless its home lies cyclically in (i, j] */
    if ((j > i && (home <= i || home > j)) ||
        (j < i && (home <= i && home > j))) {
      ix->slots[i] = ix->slots[j];
      ix->slots[j] = NULL;
      i = j;
    }
  }
  ix->count--;
  free(e);
}

static void index_release(thaw_index_t *ix) {
  for (size_t i = 0; i < ix->cap; i++)
    free(ix->slots[i]);
  free(ix->slots);
  free(ix);
}

/* --- CachedImage informer ----------------------------------------------- */

static const cJSON *field(const cJSON *o, const char *name) {
  return cJSON_GetObjectItemCaseSensitive(o, name);
}

static void *ci_project(const cJSON *obj, size_t *size, void *data) {
  thaw_index_t *ix = data;
  const char *image = cJSON_GetStringValue(field(field(obj, "spec"), "image"));
  if (image == NULL)
    return NULL;
  thaw_imgref_t ref;
  if (thaw_imgref_parse(image, strlen(image), &ref) != 0) {
    const char *name =
        cJSON_GetStringValue(field(field(obj, "metadata"), "name"));
    thaw_debug("index: unparsable spec.image left out", "name", name, "image",
               image, "error", ref.err);
    return NULL;
  }
  const cJSON *status = field(obj, "status");
  const char *phase = cJSON_GetStringValue(field(status, "phase"));
  uint8_t flags = 0;
  if (phase != NULL && strcmp(phase, "Ready") == 0)
    flags |= CI_READY;
  if (cJSON_IsTrue(field(status, "private")))
    flags |= CI_PRIVATE;
  ci_rec_t *rec = malloc(sizeof(*rec));
  if (rec == NULL)
    return NULL;
  rec->img = img_ref(ix, ref.str);
  if (rec->img == NULL) {
    free(rec);
    return NULL;
  }
  rec->flags = flags;
  ix->records++;
  *size = sizeof(*rec);
  return rec;
}

static void ci_free(void *p, void *data) {
  thaw_index_t *ix = data;
  ci_rec_t *rec = p;
  if (--rec->img->refs == 0)
    img_remove(ix, rec->img);
  free(rec);
  /* the informers release their stores after thaw_index_free(): the last
   * record frees the index */
  if (--ix->records == 0 && ix->closing)
    index_release(ix);
}

static int ci_equal(const void *a, const void *b, void *data) {
  (void)data;
  const ci_rec_t *x = a, *y = b;
  return x->img == y->img && x->flags == y->flags;
}

/* Adds (d = 1) or removes (d = -1) one delivered CachedImage. */
static void apply(thaw_index_t *ix, const ci_rec_t *rec, int d) {
  img_t *e = rec->img;
  e->total += (uint32_t)d;
  ix->objects += (size_t)(ptrdiff_t)d;
  if (rec->flags & CI_READY) {
    e->ready += (uint32_t)d;
    if (rec->flags & CI_PRIVATE)
      e->ready_private += (uint32_t)d;
  }
  if (d > 0 && e->total == 1 && ix->observer != NULL)
    ix->observer(e->s, ix->observer_data);
}

static void ci_add(const char *key, const void *rec, void *data) {
  (void)key;
  apply(data, rec, 1);
}

static void ci_update(const char *key, const void *old_rec,
                      const void *new_rec, void *data) {
  (void)key;
  /* add first, so an unchanged image never looks absent to the observer */
  apply(data, new_rec, 1);
  apply(data, old_rec, -1);
}

static void ci_delete(const char *key, const void *rec, void *data) {
  (void)key;
  apply(data, rec, -1);
}

/* --- Namespace informer ------------------------------------------------- */

/* Namespaces without thaw labels are left out of the store (most are), and
 * a record is a pointer into this table: nothing is allocated per
 * namespace beyond the store's entry. */
static const uint8_t ns_flag_values[4] = {0, 1, 2, 3};

static void *ns_project(const cJSON *obj, size_t *size, void *data) {
  (void)data;
  const cJSON *labels = field(field(obj, "metadata"), "labels");
  const char *caching = cJSON_GetStringValue(field(labels, LABEL_CACHING));
  const char *priv = cJSON_GetStringValue(field(labels, LABEL_CACHE_PRIVATE));
  int flags = 0;
  if (caching != NULL && strcmp(caching, "disabled") == 0)
    flags |= THAW_NS_OPTED_OUT;
  if (priv != NULL && strcmp(priv, "true") == 0)
    flags |= THAW_NS_CACHE_PRIVATE;
  if (flags == 0)
    return NULL;
  *size = 0;
  return (void *)&ns_flag_values[flags];
}

static void ns_free(void *rec, void *data) {
  (void)rec;
  (void)data;
}

static int ns_equal(const void *a, const void *b, void *data) {
  (void)data;
  return a == b;
}

/* --- public ------------------------------------------------------------- */

int thaw_index_new(uv_loop_t *loop, thaw_kube_t *kube, thaw_index_t **out) {
  *out = NULL;
  thaw_index_t *ix = calloc(1, sizeof(*ix));
  if (ix == NULL)
    return THAW_ENOMEM;
  ix->loop = loop;
  ix->kube = kube;
  thaw_informer_config_t ci = {
      .resource = &thaw_kube_cachedimages,
      .name = "index-cachedimages",
      .project = ci_project,
      .free_rec = ci_free,
      .equal = ci_equal,
      .project_data = ix,
      .handlers = {.on_add = ci_add, .on_update = ci_update,
                   .on_delete = ci_delete, .data = ix},
  };
  thaw_informer_config_t ns = {
      .resource = &thaw_kube_namespaces,
      .name = "index-namespaces",
      .project = ns_project,
      .free_rec = ns_free,
      .equal = ns_equal,
      .project_data = ix,
  };
  int rc = thaw_informer_new(loop, kube, &ci, &ix->ci_inf);
  if (rc == 0)
    rc = thaw_informer_new(loop, kube, &ns, &ix->ns_inf);
  if (rc == 0 && grow(ix) != 0)
    rc = THAW_ENOMEM;
  if (rc != 0) {
    /* not started: the informers hold no records */
    thaw_informer_free(ix->ci_inf);
    thaw_informer_free(ix->ns_inf);
    free(ix->slots);
    free(ix);
    return rc == THAW_EINVAL ? THAW_EINVAL : THAW_ENOMEM;
  }
  *out = ix;
  return 0;
}

void thaw_index_set_observer(thaw_index_t *ix, thaw_index_image_cb cb,
                             void *data) {
  ix->observer = cb;
  ix->observer_data = data;
}

int thaw_index_start(thaw_index_t *ix) {
  if (ix->started)
    return THAW_EINVAL;
  ix->started = 1;
  int rc = thaw_informer_start(ix->ci_inf);
  if (rc == 0)
    rc = thaw_informer_start(ix->ns_inf);
  return rc;
}

int thaw_index_synced(const thaw_index_t *ix) {
  return thaw_informer_has_synced(ix->ci_inf) &&
         thaw_informer_has_synced(ix->ns_inf);
}

int thaw_index_namespace_flags(const char *ns, void *data) {
  const thaw_index_t *ix = data;
  if (ns == NULL || ix == NULL)
    return 0;
  const uint8_t *rec = thaw_informer_get(ix->ns_inf, ns, NULL);
  return rec != NULL ? *rec : 0;
}

enum thaw_image_state thaw_index_image_state(const char *normalized,
                                             void *data) {
  const thaw_index_t *ix = data;
  if (normalized == NULL || ix == NULL)
    return THAW_IMAGE_ABSENT;
  size_t len;
  uint32_t h = hash_str(normalized, &len);
  const img_t *e = ix->slots[find(ix, normalized, h)];
  if (e == NULL || e->total == 0)
    return THAW_IMAGE_ABSENT;
  /* Any Ready copy makes it Ready; if one of them says private, the stricter
   * answer wins, so a private image is never served without cache-private. */
  if (e->ready_private > 0)
    return THAW_IMAGE_READY_PRIVATE;
  return e->ready > 0 ? THAW_IMAGE_READY : THAW_IMAGE_PRESENT;
}

size_t thaw_index_images(const thaw_index_t *ix) { return ix->objects; }

void thaw_index_free(thaw_index_t *ix) {
  if (ix == NULL || ix->closing)
    return;
  ix->closing = 1;
  ix->observer = NULL;
  thaw_informer_free(ix->ci_inf);
  thaw_informer_free(ix->ns_inf);
  if (ix->records == 0)
    index_release(ix);
}
