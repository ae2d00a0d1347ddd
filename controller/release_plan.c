/* release_plan.c - the release of a gated pod, decided on the pod as read:
 * is it due, and the JSON Patch that releases it (release.h). Pure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imgref.h"
#include "podinfo.h"
#include "podpatch.h"
#include "release.h"

#define MAX_REWRITES 64 /* images rewritten by one release; more are left */

int thaw_release_image_done(unsigned ci) {
  if (ci & (THAW_RELEASE_CI_READY | THAW_RELEASE_CI_FAILED))
    return 1;
  return (ci & THAW_RELEASE_CI_ANY) && !(ci & THAW_RELEASE_CI_ACTIVE);
}

static const cJSON *field(const cJSON *o, const char *k) {
  return cJSON_GetObjectItemCaseSensitive(o, k);
}

static const char *str(const cJSON *o, const char *k) {
  return cJSON_GetStringValue(field(o, k));
}

/* One image the release rewrites. */
typedef struct {
  const char *list;   /* "initContainers", "containers" */
  const char *prefix; /* the annotation key's: "init/", "container/" */
  int index;
  const char *name, *image; /* as read */
  char rw[THAW_IMGREF_STR_MAX + 1];
} rewrite_t;

typedef struct {
  const thaw_release_env_t *env;
  int opted_out; /* nothing waited for, nothing rewritten */
  int pull_secret; /* the pod names thaw-pull: private images may be served
                      (a pod's imagePullSecrets cannot change after it is
                      created; the webhook adds it when it gates a pod of a
                      cache-private namespace) */
  int waiting;   /* an image is not done */
  rewrite_t rw[MAX_REWRITES];
  size_t n;
} decide_t;

/* Decides one container's image, as the webhook's rows would. */
static void decide(decide_t *d, const char *list, const char *prefix, int i,
                   const cJSON *ctr) {
  const thaw_release_env_t *env = d->env;
  const char *priv_host =
      env->private_host ? env->private_host : THAW_IMGREF_PRIVATE_HOST;
  const char *name = str(ctr, "name"), *image = str(ctr, "image");
  const char *policy = str(ctr, "imagePullPolicy");
  thaw_imgref_t ref;
  if (d->opted_out || name == NULL || image == NULL ||
      thaw_imgref_parse(image, strlen(image), &ref) != 0 ||
      thaw_imgref_is_rewritten(image, env->cache_host) ||
      thaw_imgref_is_rewritten(image, priv_host) ||
      (policy != NULL && strcmp(policy, "Never") == 0))
    return; /* never waited for, never rewritten */
  unsigned ci = env->lookup(ref.str, env->data);
  if (!thaw_release_image_done(ci))
    d->waiting = 1;
  int private_ = (ci & THAW_RELEASE_CI_PRIVATE) != 0;
  if (!(ci & THAW_RELEASE_CI_READY) ||
      (private_ && (env->ns_serves != THAW_SOURCES_NS_PRIVATE ||
                    !d->pull_secret)) ||
      d->n == MAX_REWRITES)
    return;
  rewrite_t *w = &d->rw[d->n];
  const char *digest = env->digest ? env->digest(ref.str, env->data) : NULL;
  if (digest == NULL ||
      thaw_imgref_rewrite(&ref, private_ ? priv_host : env->cache_host,
                          digest, w->rw, sizeof w->rw) != 0)
    return; /* nothing to pin, or the webhook's row 9: left */
  w->list = list;
  w->prefix = prefix;
  w->index = i;
  w->name = name;
  w->image = image;
  d->n++;
}

/* A JSON string's text (with quotes and escapes) appended to buf; 0 or
 * THAW_ENOMEM. */
typedef struct {
  char *p;
  size_t len, cap;
} buf_t;

static int put(buf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = (b->len + n + 1) * 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
      return THAW_ENOMEM;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

static int put_json_str(buf_t *b, const char *a, const char *c) {
  size_t na = strlen(a), nc = strlen(c);
  char *s = malloc(na + nc + 1);
  if (s == NULL)
    return THAW_ENOMEM;
  memcpy(s, a, na);
  memcpy(s + na, c, nc + 1);
  cJSON *v = cJSON_CreateString(s);
  char *text = v ? cJSON_PrintUnformatted(v) : NULL;
  int rc = text ? put(b, text, strlen(text)) : THAW_ENOMEM;
  free(text);
  cJSON_Delete(v);
  free(s);
  return rc;
}

/* The annotation's ops, as the webhook writes it: absent → added; a JSON
 * object → its text kept byte for byte with the new keys appended (a key
 * it has keeps its first original), after a test of the old text; not a
 * JSON object → left alone. */
static int annotation_ops(const cJSON *meta, const decide_t *d, cJSON *ops) {
  const cJSON *anns = field(meta, "annotations");
  const char *old = cJSON_IsObject(anns)
                        ? str(anns, THAW_PODPATCH_ANN_ORIGINALS)
                        : NULL;
  cJSON *obj = NULL;
  if (old != NULL) {
    const char *end = NULL;
    obj = cJSON_ParseWithOpts(old, &end, 1);
    if (!cJSON_IsObject(obj)) {
      cJSON_Delete(obj);
      return 0;
    }
  }
  buf_t b = {0};
  int rc = 0, comma = 0, fresh = 0;
  if (old != NULL) { /* up to the closing brace, then "," if not empty */
    size_t n = strlen(old);
    while (n && old[n - 1] != '}')
      n--;
    rc = put(&b, old, n ? n - 1 : 0);
    comma = obj->child != NULL;
  } else {
    rc = put(&b, "{", 1);
  }
  for (size_t i = 0; rc == 0 && i < d->n; i++) {
    const rewrite_t *w = &d->rw[i];
    char key[320];
    snprintf(key, sizeof key, "%s%.300s", w->prefix, w->name);
    int dup = obj != NULL && field(obj, key) != NULL; /* first one stays */
    for (size_t k = 0; k < i; k++) /* a name listed twice: the first's */
      dup |= d->rw[k].prefix == w->prefix &&
             strcmp(d->rw[k].name, w->name) == 0;
    if (dup)
      continue;
    if ((comma++ && (rc = put(&b, ",", 1)) != 0) ||
        (rc = put_json_str(&b, w->prefix, w->name)) != 0 ||
        (rc = put(&b, ":", 1)) != 0 ||
        (rc = put_json_str(&b, w->image, "")) != 0)
      break;
    fresh++;
  }
  if (rc == 0)
    rc = put(&b, "}", 1);
  const char *path = "/metadata/annotations/" THAW_PODPATCH_ANN_ORIGINALS_PTR;
  if (rc == 0 && fresh > 0) {
    if (!cJSON_IsObject(anns)) {
      cJSON *v = cJSON_CreateObject();
      if (v == NULL ||
          !cJSON_AddStringToObject(v, THAW_PODPATCH_ANN_ORIGINALS, b.p)) {
        cJSON_Delete(v);
        rc = THAW_ENOMEM;
      } else {
        rc = thaw_podpatch_op_json(ops, "add", "/metadata/annotations", v);
      }
    } else if (old == NULL) {
      rc = thaw_podpatch_op(ops, "add", path, b.p);
    } else if ((rc = thaw_podpatch_op(ops, "test", path, old)) == 0) {
      rc = thaw_podpatch_op(ops, "replace", path, b.p);
    }
  }
  free(b.p);
  cJSON_Delete(obj);
  return rc;
}

/* The patch: test the uid, test and replace each image, the annotation,
 * test and remove the gate. */
static int build(const cJSON *pod, const decide_t *d, int gate, cJSON **out) {
  const cJSON *meta = field(pod, "metadata");
  const char *uid = str(meta, "uid");
  cJSON *ops = cJSON_CreateArray();
  char path[96];
  int rc = ops ? 0 : THAW_ENOMEM;
  if (rc == 0 && uid != NULL)
    rc = thaw_podpatch_op(ops, "test", "/metadata/uid", uid);
  for (size_t i = 0; rc == 0 && i < d->n; i++) {
    const rewrite_t *w = &d->rw[i];
    snprintf(path, sizeof path, "/spec/%s/%d/image", w->list, w->index);
    if ((rc = thaw_podpatch_op(ops, "test", path, w->image)) == 0)
      rc = thaw_podpatch_op(ops, "replace", path, w->rw);
  }
  if (rc == 0 && d->n > 0 && cJSON_IsObject(meta))
    rc = annotation_ops(meta, d, ops);
  snprintf(path, sizeof path, "/spec/schedulingGates/%d", gate);
  if (rc == 0) {
    char name[128];
    snprintf(name, sizeof name, "%s/name", path);
    rc = thaw_podpatch_op(ops, "test", name, THAW_PODINFO_GATE);
  }
  if (rc == 0)
    rc = thaw_podpatch_op(ops, "remove", path, NULL);
  if (rc != 0) {
    cJSON_Delete(ops);
    return rc;
  }
  *out = ops;
  return 0;
}

int thaw_release_plan(const cJSON *pod, const thaw_release_env_t *env,
                      thaw_release_plan_t *out) {
  memset(out, 0, sizeof *out);
  out->gate = -1;
  const cJSON *meta = field(pod, "metadata"), *spec = field(pod, "spec");
  const cJSON *del = field(meta, "deletionTimestamp"), *g;
  if (del != NULL && !cJSON_IsNull(del))
    return 0;
  int i = 0;
  cJSON_ArrayForEach(g, field(spec, "schedulingGates")) {
    const char *n = str(g, "name");
    if (n != NULL && strcmp(n, THAW_PODINFO_GATE) == 0) {
      out->gate = i;
      break;
    }
    i++;
  }
  if (out->gate < 0)
    return 0;
  const char *created = str(meta, "creationTimestamp");
  out->created = created ? thaw_rfc3339_parse(created) : 0;
  out->deadline = out->created + thaw_podinfo_cold_wait(str(
                                     field(meta, "annotations"),
                                     THAW_PODINFO_COLD_WAIT));
  const char *caching = str(field(meta, "labels"), "thaw.dev/caching");
  decide_t *d = calloc(1, sizeof *d);
  if (d == NULL)
    return THAW_ENOMEM;
  d->env = env;
  d->opted_out = (caching != NULL && strcmp(caching, "disabled") == 0) ||
                 env->ns_serves < THAW_SOURCES_NS_PUBLIC;
  const cJSON *ps;
  cJSON_ArrayForEach(ps, field(spec, "imagePullSecrets")) {
    const char *n = str(ps, "name");
    d->pull_secret |= n != NULL && strcmp(n, THAW_RELEASE_PULL_SECRET) == 0;
  }
  static const char *const lists[][2] = {{"initContainers", "init/"},
                                         {"containers", "container/"}};
  for (size_t l = 0; l < 2; l++) {
    const cJSON *c;
    i = 0;
    cJSON_ArrayForEach(c, field(spec, lists[l][0]))
      decide(d, lists[l][0], lists[l][1], i++, c);
  }
  int rc = 0;
  if (!d->waiting || env->now >= out->deadline) {
    rc = build(pod, d, out->gate, &out->ops);
    if (rc == 0) {
      out->rewritten = (int)d->n;
      rc = 1;
    }
  }
  free(d);
  return rc;
}
