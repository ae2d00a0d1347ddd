/* podinfo.c - Pod → thaw_podinfo_t projection of podinfo.h. */
#include "podinfo.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define ANN_ORIGINALS "thaw.dev/original-images"
#define LABEL_CACHING "thaw.dev/caching"

typedef struct {
  thaw_intern_t *t;
  const char *refs[THAW_PODINFO_MAX_REFS];
  size_t n;
  int overflow;
  int oom;
} collect_t;

/* Adds s once (records list distinct strings). */
static void add_ref(collect_t *c, size_t from, const char *s) {
  if (s == NULL || *s == '\0' || c->oom)
    return;
  for (size_t i = from; i < c->n; i++)
    if (strcmp(c->refs[i], s) == 0)
      return;
  if (c->n == THAW_PODINFO_MAX_REFS) {
    c->overflow = 1;
    return;
  }
  const char *r = thaw_intern_ref(c->t, s, strlen(s));
  if (r == NULL) {
    c->oom = 1;
    return;
  }
  c->refs[c->n++] = r;
}

static void add_images(collect_t *c, const cJSON *spec, const char *field) {
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(spec, field), *ctr;
  cJSON_ArrayForEach(ctr, list) {
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(ctr, "image");
    if (cJSON_IsString(img))
      add_ref(c, 0, img->valuestring);
  }
}

/* 1 when an entry of status[field] waits on a failed pull: the kubelet's
 * ErrImagePull, then ImagePullBackOff between its retries. */
static int pull_failing(const cJSON *status, const char *field) {
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(status, field), *cs;
  cJSON_ArrayForEach(cs, list) {
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(cs, "state");
    const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(state, "waiting"), "reason"));
    if (why != NULL && (strcmp(why, "ErrImagePull") == 0 ||
                        strcmp(why, "ImagePullBackOff") == 0))
      return 1;
  }
  return 0;
}

static uint8_t phase_of(const char *p) {
  static const char *names[] = {"", "Pending", "Running", "Succeeded",
                                "Failed"};
  for (uint8_t i = 1; p != NULL && i < 5; i++)
    if (strcmp(p, names[i]) == 0)
      return i;
  return THAW_POD_PHASE_UNKNOWN;
}

void *thaw_podinfo_project(const cJSON *pod, size_t *size, void *data) {
  if (!cJSON_IsObject(pod))
    return NULL;
  collect_t c = {.t = data};
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(pod, "metadata");
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(pod, "spec");
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(pod, "status");
  uint8_t flags = phase_of(cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(status, "phase")));
  if ((flags & THAW_POD_PHASE_MASK) >= THAW_POD_PHASE_SUCCEEDED)
    flags |= THAW_POD_TERMINATED;
  const cJSON *labels = cJSON_GetObjectItemCaseSensitive(meta, "labels");
  const char *caching = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(labels, LABEL_CACHING));
  if (caching != NULL && strcmp(caching, "disabled") == 0)
    flags |= THAW_POD_OPTED_OUT;
  const cJSON *del =
      cJSON_GetObjectItemCaseSensitive(meta, "deletionTimestamp");
  if (del != NULL && !cJSON_IsNull(del))
    flags |= THAW_POD_DELETING;
  if (pull_failing(status, "containerStatuses") ||
      pull_failing(status, "initContainerStatuses"))
    flags |= THAW_POD_PULL_FAILING;

  add_images(&c, spec, "containers");
  add_images(&c, spec, "initContainers");
  add_images(&c, spec, "ephemeralContainers");
  size_t n_images = c.n;

  /* The annotation is a JSON object {"container/x": "<original>"}; an
   * unparsable one is ignored, as the webhook would rewrite it anyway. */
  const cJSON *ann = cJSON_GetObjectItemCaseSensitive(meta, "annotations");
  const char *orig = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(ann, ANN_ORIGINALS));
  if (orig != NULL) {
    cJSON *o = cJSON_Parse(orig), *v;
    const cJSON *obj = cJSON_IsObject(o) ? o : NULL;
    cJSON_ArrayForEach(v, obj) {
      if (cJSON_IsString(v))
        add_ref(&c, n_images, v->valuestring);
    }
    cJSON_Delete(o);
  }
  if (c.overflow)
    thaw_warn("pod has too many images; extra ones ignored",
              "pod", cJSON_GetStringValue(
                         cJSON_GetObjectItemCaseSensitive(meta, "name")));

  size_t bytes = sizeof(thaw_podinfo_t) + c.n * sizeof(const char *);
  thaw_podinfo_t *p = c.oom ? NULL : malloc(bytes);
  if (p == NULL) {
    for (size_t i = 0; i < c.n; i++)
      thaw_intern_unref(c.t, c.refs[i]);
    return NULL;
  }
  p->flags = flags;
  p->n_images = (uint8_t)n_images;
  p->n_originals = (uint8_t)(c.n - n_images);
  memcpy(p->refs, c.refs, c.n * sizeof(const char *));
  if (size != NULL)
    *size = bytes;
  return p;
}

void thaw_podinfo_free(void *rec, void *data) {
  thaw_podinfo_t *p = rec;
  if (p == NULL)
    return;
  for (size_t i = 0; i < (size_t)p->n_images + p->n_originals; i++)
    thaw_intern_unref(data, p->refs[i]);
  free(p);
}

int thaw_podinfo_equal(const void *a, const void *b, void *data) {
  (void)data;
  const thaw_podinfo_t *x = a, *y = b;
  if (x->flags != y->flags || x->n_images != y->n_images ||
      x->n_originals != y->n_originals)
    return 0;
  /* Interned in one table, so equal strings are equal pointers. */
  for (size_t i = 0; i < (size_t)x->n_images + x->n_originals; i++)
    if (x->refs[i] != y->refs[i])
      return 0;
  return 1;
}

int thaw_podinfo_uses(const thaw_podinfo_t *p, const char *image) {
  for (size_t i = 0; i < (size_t)p->n_images + p->n_originals; i++)
    if (strcmp(p->refs[i], image) == 0)
      return 1;
  return 0;
}
