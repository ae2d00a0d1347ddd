/* index.c - the webhook's in-memory view of CachedImages and Namespaces
 * (index.h): two informers, and a table (common/kube/store) from normalised image
 * to the count of CachedImages that name it, by phase, and the status.digest
 * its rewrite pins (32 bytes an image). */
#include "index.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imgref.h"
#include "informer.h"
#include "log.h"
#include "store.h"

#define LABEL_CACHING "thaw.dev/caching"
#define LABEL_CACHE_PRIVATE "thaw.dev/cache-private"

/* One distinct normalised image, the record of the image table (a
 * thaw_store keyed by the image). `refs` counts the projected records that
 * point here (they may not be delivered yet: during a re-list both stores
 * hold records); the other counts are what the handlers were told, and the
 * only thing lookups read. One allocation: counts, then the string. */
typedef struct {
  uint32_t refs;
  uint32_t total;         /* CachedImages delivered for this image */
  uint32_t ready;         /* ... of which Ready */
  uint32_t ready_private; /* ... of which Ready with status.private */
  uint32_t pending;       /* ... Pending, Warming or no phase (cold wait) */
  /* The digest a rewrite pins: the last delivered Ready object's, and how
   * many delivered Ready objects carry it. 0 with `ready` > 0 (two objects
   * of one image with different digests, the newer one gone): none until
   * one of them is delivered again, so the image is cold meanwhile. */
  uint32_t same;
  uint8_t digest[32];
  char s[];
} img_t;

/* The informer's record of one CachedImage. Ready means status.phase Ready
 * with a valid status.digest (sha256, the only kind thaw's warm writes): one
 * without it cannot be pinned, so it does not make the image Ready. */
enum { CI_READY = 1, CI_PRIVATE = 2, CI_PENDING = 4 };
typedef struct {
  img_t *img;
  uint8_t flags;
  uint8_t digest[32]; /* while CI_READY */
} ci_rec_t;

#define SHA256_PREFIX "sha256:"

static int unhex(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                              : -1;
}

/* "sha256:" + 64 lower-case hex into 32 bytes; 0, or -1 when malformed. */
static int digest_parse(const char *d, uint8_t out[32]) {
  size_t pn = sizeof(SHA256_PREFIX) - 1;
  if (d == NULL || strncmp(d, SHA256_PREFIX, pn) != 0 ||
      strlen(d) != pn + 64)
    return -1;
  for (size_t i = 0; i < 32; i++) {
    int hi = unhex(d[pn + 2 * i]), lo = unhex(d[pn + 2 * i + 1]);
    if (hi < 0 || lo < 0)
      return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

static void digest_format(const uint8_t d[32], char *out) {
  static const char hexd[] = "0123456789abcdef";
  size_t pn = sizeof(SHA256_PREFIX) - 1;
  memcpy(out, SHA256_PREFIX, pn);
  for (size_t i = 0; i < 32; i++) {
    out[pn + 2 * i] = hexd[d[i] >> 4];
    out[pn + 2 * i + 1] = hexd[d[i] & 15];
  }
  out[pn + 64] = '\0';
}

struct thaw_index {
  uv_loop_t *loop;
  thaw_kube_t *kube;
  thaw_informer_t *ci_inf, *ns_inf;
  thaw_store_t *images; /* normalised image -> img_t */
  size_t objects;  /* CachedImages delivered */
  size_t records;  /* ci_rec_t alive; the index outlives the last one */
  thaw_index_image_cb observer;
  void *observer_data;
  int started, closing;
};

/* --- image table -------------------------------------------------------- */

static void img_free(void *rec, void *data) {
  (void)data;
  free(rec);
}

/* The entry of `s` with one more reference, created if needed; NULL when
 * out of memory. */
static img_t *img_ref(thaw_index_t *ix, const char *s) {
  img_t *e = thaw_store_get(ix->images, s, NULL);
  if (e == NULL) {
    size_t len = strlen(s);
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
      return NULL;
    memcpy(e->s, s, len + 1);
    if (thaw_store_put(ix->images, s, 0, e, NULL) < 0) {
      free(e);
      return NULL;
    }
  }
  e->refs++;
  return e;
}

static void img_remove(thaw_index_t *ix, img_t *e) {
  void *rec;
  if (thaw_store_remove(ix->images, e->s, &rec, NULL) == 0)
    free(rec);
}

static void index_release(thaw_index_t *ix) {
  thaw_store_free(ix->images); /* frees what is left, with free() */
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
  uint8_t flags = 0, digest[32] = {0};
  if (phase != NULL && strcmp(phase, "Ready") == 0 &&
      digest_parse(cJSON_GetStringValue(field(status, "digest")), digest) == 0)
    flags |= CI_READY;
  /* no phase counts as Pending (docs/design.md, "Phases") */
  if (phase == NULL || strcmp(phase, "Pending") == 0 ||
      strcmp(phase, "Warming") == 0)
    flags |= CI_PENDING;
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
  memcpy(rec->digest, digest, sizeof digest);
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
  return x->img == y->img && x->flags == y->flags &&
         memcmp(x->digest, y->digest, sizeof x->digest) == 0;
}

/* Adds (d = 1) or removes (d = -1) one delivered CachedImage. */
static void apply(thaw_index_t *ix, const ci_rec_t *rec, int d) {
  img_t *e = rec->img;
  e->total += (uint32_t)d;
  ix->objects += (size_t)(ptrdiff_t)d;
  if (rec->flags & CI_PENDING)
    e->pending += (uint32_t)d;
  if (rec->flags & CI_READY) {
    e->ready += (uint32_t)d;
    if (rec->flags & CI_PRIVATE)
      e->ready_private += (uint32_t)d;
    int same = memcmp(e->digest, rec->digest, sizeof e->digest) == 0;
    if (d > 0 && (same && e->same > 0)) {
      e->same++;
    } else if (d > 0) { /* the newest digest wins (a refresh moved it) */
      memcpy(e->digest, rec->digest, sizeof e->digest);
      e->same = 1;
    } else if (same && e->same > 0) {
      e->same--;
    }
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
  if (rc == 0 && (ix->images = thaw_store_new(img_free, NULL)) == NULL)
    rc = THAW_ENOMEM;
  if (rc != 0) {
    /* not started: the informers hold no records */
    thaw_informer_free(ix->ci_inf);
    thaw_informer_free(ix->ns_inf);
    thaw_store_free(ix->images);
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

int thaw_index_denied(const thaw_index_t *ix) {
  return thaw_informer_denied(ix->ci_inf) || thaw_informer_denied(ix->ns_inf);
}

int thaw_index_namespace_flags(const char *ns, void *data) {
  const thaw_index_t *ix = data;
  if (ns == NULL || ix == NULL)
    return 0;
  const uint8_t *rec = thaw_informer_get(ix->ns_inf, ns, NULL);
  return rec != NULL ? *rec : 0;
}

enum thaw_image_state thaw_index_image_state(const char *normalized,
                                             char *digest, void *data) {
  const thaw_index_t *ix = data;
  if (digest != NULL)
    digest[0] = '\0';
  if (normalized == NULL || ix == NULL)
    return THAW_IMAGE_ABSENT;
  const img_t *e = thaw_store_get(ix->images, normalized, NULL);
  if (e == NULL || e->total == 0)
    return THAW_IMAGE_ABSENT;
  if (e->ready == 0 || e->same == 0)
    return THAW_IMAGE_PRESENT; /* nothing Ready, or no digest to pin */
  if (digest != NULL)
    digest_format(e->digest, digest);
  /* Any Ready copy makes it Ready; if one of them says private, the stricter
   * answer wins, so a private image is never served without cache-private. */
  return e->ready_private > 0 ? THAW_IMAGE_READY_PRIVATE : THAW_IMAGE_READY;
}

int thaw_index_image_pending(const char *normalized, void *data) {
  const thaw_index_t *ix = data;
  if (normalized == NULL || ix == NULL)
    return 0;
  const img_t *e = thaw_store_get(ix->images, normalized, NULL);
  return e != NULL && e->pending > 0;
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
