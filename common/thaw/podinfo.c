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
  uint64_t waited; /* thaw_podinfo_gate_t.waited */
  int overflow;
  int oom;
} collect_t;

/* Adds s once (records list distinct strings); returns its index, or -1. */
static int add_ref(collect_t *c, size_t from, const char *s) {
  if (s == NULL || *s == '\0' || c->oom)
    return -1;
  for (size_t i = from; i < c->n; i++)
    if (strcmp(c->refs[i], s) == 0)
      return (int)i;
  if (c->n == THAW_PODINFO_MAX_REFS) {
    c->overflow = 1;
    return -1;
  }
  const char *r = thaw_intern_ref(c->t, s, strlen(s));
  if (r == NULL) {
    c->oom = 1;
    return -1;
  }
  c->refs[c->n++] = r;
  return (int)c->n - 1;
}

/* `waits`: the images of this list may be waited for by the cold wait. */
static void add_images(collect_t *c, const cJSON *spec, const char *field,
                       int waits) {
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(spec, field), *ctr;
  cJSON_ArrayForEach(ctr, list) {
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(ctr, "image");
    if (!cJSON_IsString(img))
      continue;
    int i = add_ref(c, 0, img->valuestring);
    const char *policy = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(ctr, "imagePullPolicy"));
    if (waits && i >= 0 && i < 64 &&
        (policy == NULL || strcmp(policy, "Never") != 0))
      c->waited |= (uint64_t)1 << i;
  }
}

/* 1 when spec.schedulingGates names the cold wait's gate. */
static int gated(const cJSON *spec) {
  const cJSON *g;
  cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(spec,
                                                         "schedulingGates")) {
    const char *n =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "name"));
    if (n != NULL && strcmp(n, THAW_PODINFO_GATE) == 0)
      return 1;
  }
  return 0;
}

int thaw_podinfo_cold_wait(const char *v) {
  int n = 0;
  if (v == NULL || *v == '\0')
    return THAW_PODINFO_COLD_WAIT_DEFAULT;
  for (const char *p = v; *p; p++) {
    if (*p < '0' || *p > '9')
      return THAW_PODINFO_COLD_WAIT_DEFAULT;
    n = n * 10 + (*p - '0');
    if (n > THAW_PODINFO_COLD_WAIT_MAX)
      return THAW_PODINFO_COLD_WAIT_DEFAULT;
  }
  return n;
}

/* Where the gate's fields start: after the refs, pointer-aligned. */
static size_t gate_offset(size_t n_refs) {
  return sizeof(thaw_podinfo_t) + n_refs * sizeof(const char *);
}

const thaw_podinfo_gate_t *thaw_podinfo_gate(const thaw_podinfo_t *p) {
  if (p == NULL || !p->gated)
    return NULL;
  return (const thaw_podinfo_gate_t *)((const char *)p +
                                       gate_offset((size_t)p->n_images +
                                                   p->n_originals));
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

  add_images(&c, spec, "containers", 1);
  add_images(&c, spec, "initContainers", 1);
  add_images(&c, spec, "ephemeralContainers", 0);
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

  size_t bytes = gate_offset(c.n);
  /* A gated pod, not being deleted: the release's fields follow. */
  int gate = !(flags & THAW_POD_DELETING) && gated(spec);
  const char *uid = NULL, *created = NULL;
  size_t ulen = 0, clen = 0;
  if (gate) {
    uid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "uid"));
    created = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(meta, "creationTimestamp"));
    ulen = uid ? strnlen(uid, 128) : 0;
    clen = created ? strnlen(created, 64) : 0;
    bytes += sizeof(thaw_podinfo_gate_t) + ulen + 1 + clen + 1;
  }
  thaw_podinfo_t *p = c.oom ? NULL : malloc(bytes);
  if (p == NULL) {
    for (size_t i = 0; i < c.n; i++)
      thaw_intern_unref(c.t, c.refs[i]);
    return NULL;
  }
  p->flags = flags;
  p->n_images = (uint8_t)n_images;
  p->n_originals = (uint8_t)(c.n - n_images);
  p->gated = (uint8_t)gate;
  memcpy(p->refs, c.refs, c.n * sizeof(const char *));
  if (gate) {
    thaw_podinfo_gate_t *g =
        (thaw_podinfo_gate_t *)((char *)p + gate_offset(c.n));
    const char *ann_wait = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(ann, THAW_PODINFO_COLD_WAIT));
    g->waited = c.waited;
    g->wait_s = (uint16_t)thaw_podinfo_cold_wait(ann_wait);
    memcpy(g->buf, ulen ? uid : "", ulen);
    g->buf[ulen] = '\0';
    memcpy(g->buf + ulen + 1, clen ? created : "", clen);
    g->buf[ulen + 1 + clen] = '\0';
    g->uid = g->buf;
    g->created = g->buf + ulen + 1;
  }
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
      x->n_originals != y->n_originals || x->gated != y->gated)
    return 0;
  const thaw_podinfo_gate_t *gx = thaw_podinfo_gate(x),
                            *gy = thaw_podinfo_gate(y);
  if (gx != NULL && (gx->waited != gy->waited || gx->wait_s != gy->wait_s ||
                     strcmp(gx->uid, gy->uid) != 0 ||
                     strcmp(gx->created, gy->created) != 0))
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
