/* sources_records.c - the records of the sources' informers (sources.h):
 * Pod (thaw_podinfo_t, plus the mirror bit), PodTemplate and Namespace
 * projections, and the pull secrets each pod or template lends.
 *
 * Pull secrets are tied to the lifetime of informer records: a record's
 * free drops what it added, so the table stays exact across re-lists, when
 * old and new records briefly coexist. Pods keep that link in a side table
 * keyed by record address (thaw_podinfo_t has no room for it); templates
 * carry it in their own record. */
#include "sources_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "podinfo.h"
#include "sysns.h"

#define LABEL_CACHING "thaw.dev/caching"
#define LABEL_PRIVATE "thaw.dev/cache-private"
#define LABEL_PREWARM "thaw.dev/prewarm"
#define LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define ANN_MIRROR "kubernetes.io/config.mirror"
#define OSCAR_PREFIX "oscar-svc"

#define MAX_LABELS 255 /* per namespace; more are ignored */

static const cJSON *field(const cJSON *o, const char *name) {
  return cJSON_GetObjectItemCaseSensitive(o, name);
}

static int str_is(const cJSON *o, const char *name, const char *want) {
  const char *v = cJSON_GetStringValue(field(o, name));
  return v != NULL && strcmp(v, want) == 0;
}

/* sources_internal.h */
int thaw_sources__normalize(const thaw_sources_t *s, const char *raw,
                            thaw_imgref_t *out, thaw_imgref_t *alt) {
  size_t len = strlen(raw);
  if (alt != NULL)
    alt->len = 0, alt->str[0] = '\0';
  int rc = thaw_imgref_unrewrite(raw, len, s->cache_host, out);
  if (rc == THAW_ENOENT) /* a private image's rewrite counts as its original */
    rc = thaw_imgref_unrewrite(raw, len, s->private_host, out);
  if (rc == THAW_ENOENT)
    return thaw_imgref_parse(raw, len, out);
  if (rc == 0 && alt != NULL && thaw_imgref_tag_only(out, alt) != 0)
    alt->len = 0, alt->str[0] = '\0';
  return rc;
}

/* --- pull secrets ------------------------------------------------------- */

/* Up to MAX_SECRETS names of spec.imagePullSecrets into names[]. */
static size_t secret_names(const cJSON *spec, const char **names) {
  size_t n = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, field(spec, "imagePullSecrets")) {
    const char *name = cJSON_GetStringValue(field(it, "name"));
    if (name != NULL && *name != '\0' && n < MAX_SECRETS)
      names[n++] = name;
  }
  return n;
}

/* Learns names x the normalised images of raw[] for namespace ns (both
 * originals of a pinned rewrite). */
static thaw_pullsecrets_use_t *learn(thaw_sources_t *s, const char *ns,
                                     const char *const *raw, size_t n,
                                     const char **names, size_t n_names) {
  if (ns == NULL || n == 0 || n_names == 0)
    return NULL;
  char **imgs = calloc(2 * n, sizeof(*imgs));
  size_t k = 0;
  thaw_imgref_t ref, alt;
  for (size_t i = 0; imgs != NULL && i < n; i++) {
    if (thaw_sources__normalize(s, raw[i], &ref, &alt) != 0)
      continue;
    if ((imgs[k] = strdup(ref.str)) != NULL)
      k++;
    if (alt.len > 0 && (imgs[k] = strdup(alt.str)) != NULL)
      k++;
  }
  thaw_pullsecrets_use_t *u =
      k > 0 ? thaw_pullsecrets_add(s->ps, ns, (const char *const *)imgs, k,
                                   names, n_names)
            : NULL;
  for (size_t i = 0; i < k; i++)
    free(imgs[i]);
  free(imgs);
  return u;
}

/* --- Pod informer ------------------------------------------------------- */

static void ptr_key(const void *p, char *buf, size_t cap) {
  snprintf(buf, cap, "%p", p);
}

void *thaw_sources__pod_project(const cJSON *obj, size_t *size, void *data) {
  thaw_sources_t *s = data;
  thaw_podinfo_t *p = thaw_podinfo_project(obj, size, s->intern);
  if (p == NULL)
    return NULL;
  s->records++;
  const cJSON *meta = field(obj, "metadata"), *spec = field(obj, "spec");
  if (field(field(meta, "annotations"), ANN_MIRROR) != NULL)
    p->flags |= POD_MIRROR;
  const char *names[MAX_SECRETS];
  size_t n = secret_names(spec, names);
  thaw_pullsecrets_use_t *u =
      n > 0 ? learn(s, cJSON_GetStringValue(field(meta, "namespace")), p->refs,
                    p->n_images, names, n)
            : NULL;
  char k[32];
  ptr_key(p, k, sizeof(k));
  if (u != NULL && thaw_store_put(s->pod_uses, k, 0, u, NULL) < 0)
    thaw_pullsecrets_drop(s->ps, u);
  return p;
}

void thaw_sources__pod_free(void *rec, void *data) {
  thaw_sources_t *s = data;
  void *u;
  char k[32];
  if (thaw_store_count(s->pod_uses) > 0) {
    ptr_key(rec, k, sizeof(k));
    if (thaw_store_remove(s->pod_uses, k, &u, NULL) == 0)
      thaw_pullsecrets_drop(s->ps, u);
  }
  thaw_podinfo_free(rec, s->intern);
  thaw_sources__record_gone(s);
}

int thaw_sources__pod_equal(const void *a, const void *b, void *data) {
  thaw_sources_t *s = data;
  return thaw_podinfo_equal(a, b, s->intern);
}

/* --- PodTemplate informer ----------------------------------------------- */

static void add_images(const cJSON *spec, const char *list, const char **refs,
                       size_t *n) {
  const cJSON *c;
  cJSON_ArrayForEach(c, field(spec, list)) {
    const char *img = cJSON_GetStringValue(field(c, "image"));
    size_t i = 0;
    while (img != NULL && *img != '\0' && i < *n && strcmp(refs[i], img) != 0)
      i++;
    if (img != NULL && *img != '\0' && i == *n && *n < UINT8_MAX)
      refs[(*n)++] = img;
  }
}

void thaw_sources__tpl_free(void *rec, void *data) {
  thaw_sources_t *s = data;
  tpl_rec_t *t = rec;
  thaw_pullsecrets_drop(s->ps, t->use);
  for (size_t i = 0; i < t->n; i++)
    thaw_intern_unref(s->intern, t->refs[i]);
  free(t);
  thaw_sources__record_gone(s);
}

void *thaw_sources__tpl_project(const cJSON *obj, size_t *size, void *data) {
  thaw_sources_t *s = data;
  const cJSON *meta = field(obj, "metadata"), *tmpl = field(obj, "template");
  const cJSON *spec = field(tmpl, "spec");
  const char *raw[UINT8_MAX];
  size_t n = 0;
  add_images(spec, "containers", raw, &n);
  add_images(spec, "initContainers", raw, &n);
  tpl_rec_t *t = calloc(1, sizeof(*t) + n * sizeof(char *));
  if (t == NULL)
    return NULL;
  s->records++;
  if (str_is(field(meta, "labels"), LABEL_CACHING, "disabled") ||
      str_is(field(field(tmpl, "metadata"), "labels"), LABEL_CACHING,
             "disabled"))
    t->flags |= TPL_OPTED_OUT; /* its pods would be opted out */
  for (; t->n < n; t->n++) {
    if ((t->refs[t->n] = thaw_intern_ref(s->intern, raw[t->n],
                                         strlen(raw[t->n]))) == NULL) {
      thaw_sources__tpl_free(t, s);
      return NULL;
    }
  }
  const char *names[MAX_SECRETS];
  size_t nn = secret_names(spec, names);
  if (nn > 0)
    t->use = learn(s, cJSON_GetStringValue(field(meta, "namespace")), raw, n,
                   names, nn);
  *size = sizeof(*t) + n * sizeof(char *);
  return t;
}

int thaw_sources__tpl_equal(const void *a, const void *b, void *data) {
  (void)data;
  const tpl_rec_t *x = a, *y = b;
  if (x->flags != y->flags || x->n != y->n)
    return 0;
  for (size_t i = 0; i < x->n; i++)
    if (x->refs[i] != y->refs[i]) /* interned */
      return 0;
  return 1;
}

/* --- Namespace informer ------------------------------------------------- */

static int listed(const thaw_sources_t *s, const char *name) {
  for (char **p = s->prewarm; p != NULL && *p != NULL; p++)
    if (strcmp(*p, name) == 0)
      return 1;
  return 0;
}

void thaw_sources__ns_free(void *rec, void *data) {
  thaw_sources_t *s = data;
  ns_rec_t *r = rec;
  for (size_t i = 0; i < 2u * r->n; i++)
    thaw_intern_unref(s->intern, r->kv[i]);
  free(r);
  thaw_sources__record_gone(s);
}

void *thaw_sources__ns_project(const cJSON *obj, size_t *size, void *data) {
  thaw_sources_t *s = data;
  const cJSON *meta = field(obj, "metadata"), *labels = field(meta, "labels");
  const char *name = cJSON_GetStringValue(field(meta, "name"));
  if (name == NULL)
    return NULL;
  size_t n = 0;
  const cJSON *l;
  cJSON_ArrayForEach(l, labels) {
    if (cJSON_IsString(l) && n < MAX_LABELS)
      n++;
  }
  ns_rec_t *r = calloc(1, sizeof(*r) + 2 * n * sizeof(char *));
  if (r == NULL)
    return NULL;
  s->records++;
  cJSON_ArrayForEach(l, labels) {
    if (!cJSON_IsString(l) || r->n == n)
      continue;
    const char **kv = &r->kv[2 * r->n];
    kv[0] = thaw_intern_ref(s->intern, l->string, strlen(l->string));
    kv[1] = thaw_intern_ref(s->intern, l->valuestring, strlen(l->valuestring));
    r->n++; /* counted even when half failed: unref(NULL) is a no-op */
    if (kv[0] == NULL || kv[1] == NULL) {
      thaw_sources__ns_free(r, s);
      return NULL;
    }
  }
  if (thaw_namespace_excluded(name, s->system_ns,
                              (const char *const *)s->excluded))
    r->flags |= NS_EXCLUDED;
  if (str_is(labels, LABEL_CACHING, "disabled"))
    r->flags |= NS_OPTED_OUT;
  if (str_is(labels, LABEL_PRIVATE, "true"))
    r->flags |= NS_PRIVATE;
  if (str_is(labels, LABEL_PREWARM, "true") || listed(s, name) ||
      (str_is(labels, LABEL_MANAGED_BY, "oscar") &&
       strncmp(name, OSCAR_PREFIX, strlen(OSCAR_PREFIX)) == 0))
    r->flags |= NS_PREWARM;
  *size = sizeof(*r) + 2 * n * sizeof(char *);
  return r;
}

int thaw_sources__ns_equal(const void *a, const void *b, void *data) {
  (void)data;
  const ns_rec_t *x = a, *y = b;
  return x->flags == y->flags && x->n == y->n &&
         memcmp(x->kv, y->kv, 2 * x->n * sizeof(char *)) == 0;
}
