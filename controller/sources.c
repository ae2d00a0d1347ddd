/* sources.c - the pod sweep, pre-warm and pull-secret lookups of
 * sources.h: Namespace, Pod and PodTemplate informers (their records are in
 * sources_records.c) feeding a recorder (common/thaw/record.c) while active.
 *
 * Every sweep is level-triggered and cheap to repeat: an image whose
 * CachedImage exists (the owner's `exists`) or is already queued costs a
 * lookup, so handlers simply sweep the whole pod or template again. A pod
 * or template whose namespace is not known yet is skipped; the namespace's
 * add sweeps it, so informer order never opens a gap (nor records an image
 * of a namespace that turns out to be opted out). */
#include "sources_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "podinfo.h"

#define DEFAULT_SYSTEM_NS "thaw-system"
#define DEFAULT_CACHE_HOST "localhost:7439"
#define MAX_BAD 1024 /* unparsable images remembered, to log each once */
#define NS_MAX 256

/* Controller tuning of the recorder: a sweep of a large cluster queues many
 * distinct images at once; the CachedImage informer answers for created
 * ones within seconds, so finished references need not be kept long. */
#define REC_MAX_PENDING 100000
#define REC_RECENT_MS 30000

static const char SRC_POD[] = "pod", SRC_TEMPLATE[] = "podtemplate";

/* The namespace part of a "namespace/name" key, or -1. */
static int key_ns(const char *key, char *buf) {
  const char *slash = strchr(key, '/');
  size_t n = slash != NULL ? (size_t)(slash - key) : 0;
  if (n == 0 || n >= NS_MAX)
    return -1;
  memcpy(buf, key, n);
  buf[n] = '\0';
  return 0;
}

static void free_list(char **l) {
  for (char **p = l; p != NULL && *p != NULL; p++)
    free(*p);
  free(l);
}

/* A NULL-ended copy of a NULL-ended list (NULL: empty); NULL on no memory. */
static char **dup_list(const char *const *l) {
  size_t n = 0;
  while (l != NULL && l[n] != NULL)
    n++;
  char **out = calloc(n + 1, sizeof(char *));
  for (size_t i = 0; out != NULL && i < n; i++)
    if ((out[i] = strdup(l[i])) == NULL) {
      free_list(out);
      return NULL;
    }
  return out;
}

static void release(thaw_sources_t *s) {
  thaw_store_free(s->srcs);
  thaw_store_free(s->bad);
  thaw_store_free(s->pod_uses);
  thaw_pullsecrets_free(s->ps);
  thaw_intern_free(s->intern);
  free_list(s->prewarm);
  free_list(s->excluded);
  free(s->system_ns);
  free(s->cache_host);
  free(s->private_host);
  free(s);
}

/* A record is gone; the last one after thaw_sources_free() frees s (the
 * informers release their stores after their free returns). */
void thaw_sources__record_gone(thaw_sources_t *s) {
  if (--s->records == 0 && s->closing)
    release(s);
}

typedef struct {
  const thaw_sources_t *s;
  thaw_sources_secret_cb cb;
  void *data;
} secret_filter_t;

/* Only namespaces that allow private images to be served from the cache;
 * an opted-out or excluded one never lends its secrets. */
static void secret_filter(const char *ns, const char *name, void *data) {
  secret_filter_t *f = data;
  if (thaw_sources_ns_lends(f->s, ns))
    f->cb(ns, name, f->data);
}

/* --- recording ---------------------------------------------------------- */

static void log_bad(thaw_sources_t *s, const char *raw, const char *why) {
  if (thaw_store_get(s->bad, raw, NULL) != NULL)
    return;
  if (thaw_store_count(s->bad) >= MAX_BAD) { /* start over: bounded */
    thaw_store_t *fresh = thaw_store_new(NULL, NULL);
    if (fresh == NULL)
      return;
    thaw_store_free(s->bad);
    s->bad = fresh;
  }
  thaw_store_put(s->bad, raw, 0, (void *)SRC_POD, NULL);
  thaw_debug("sources: unparsable image skipped", "image", raw, "error", why);
}

/* A rewritten "<cache>/x:tag@d" is recorded as "x:tag@d" (what the pod
 * runs) unless a CachedImage of either original exists. */
static void record_image(thaw_sources_t *s, const char *raw, const char *src) {
  thaw_imgref_t ref, alt;
  if (thaw_sources__normalize(s, raw, &ref, &alt) != 0) {
    log_bad(s, raw, ref.err);
    return;
  }
  if (s->rec == NULL || s->exists(ref.str, s->exists_data) ||
      (alt.len > 0 && s->exists(alt.str, s->exists_data)))
    return;
  size_t before = thaw_recorder_pending(s->rec);
  thaw_recorder_record(s->rec, ref.str);
  if (s->created != NULL && thaw_recorder_pending(s->rec) > before)
    thaw_store_put(s->srcs, ref.str, 0, (void *)src, NULL);
}

static void on_result(const char *result, const char *normalized, void *data) {
  thaw_sources_t *s = data;
  void *src;
  if (strcmp(result, "retry") == 0 ||
      thaw_store_remove(s->srcs, normalized, &src, NULL) != 0)
    return;
  if (strcmp(result, "created") == 0) {
    const char *v[] = {src};
    thaw_metric_inc(s->created, v);
  }
}

/* Flags of namespace ns when it is known and neither excluded nor opted
 * out; else -1. */
static int ns_allows(const thaw_sources_t *s, const char *ns) {
  const ns_rec_t *r = thaw_informer_get(s->ns_inf, ns, NULL);
  if (r == NULL || (r->flags & (NS_EXCLUDED | NS_OPTED_OUT)))
    return -1;
  return r->flags;
}

static void sweep_pod(thaw_sources_t *s, const char *key,
                      const thaw_podinfo_t *p) {
  char ns[NS_MAX];
  if (!s->active ||
      (p->flags & (THAW_POD_OPTED_OUT | THAW_POD_DELETING | POD_MIRROR)) ||
      key_ns(key, ns) != 0 || ns_allows(s, ns) < 0)
    return;
  for (size_t i = 0; i < p->n_images; i++)
    record_image(s, p->refs[i], SRC_POD);
}

static void sweep_template(thaw_sources_t *s, const char *key,
                           const tpl_rec_t *t) {
  char ns[NS_MAX];
  int flags;
  if (!s->active || (t->flags & TPL_OPTED_OUT) || key_ns(key, ns) != 0 ||
      (flags = ns_allows(s, ns)) < 0 || !(flags & NS_PREWARM))
    return;
  for (size_t i = 0; i < t->n; i++)
    record_image(s, t->refs[i], SRC_TEMPLATE);
}

/* Sweeps the stored objects of inf in namespace ns (NULL: all). */
static void sweep_store(thaw_sources_t *s, const thaw_informer_t *inf,
                        const char *ns, int templates) {
  size_t pos = 0, nl = ns != NULL ? strlen(ns) : 0;
  const char *key;
  void *rec;
  while (thaw_store_next(thaw_informer_store(inf), &pos, &key, NULL, &rec)) {
    if (ns != NULL && (strncmp(key, ns, nl) != 0 || key[nl] != '/'))
      continue;
    if (templates)
      sweep_template(s, key, rec);
    else
      sweep_pod(s, key, rec);
  }
}

/* --- handlers ----------------------------------------------------------- */

static void notify_pod(thaw_sources_t *s, const char *key, const void *old_,
                       const void *new_) {
  for (size_t i = 0; i < s->n_obs; i++)
    if (s->obs[i].on_pod)
      s->obs[i].on_pod(key, old_, new_, s->obs[i].data);
}

static void notify_templates(thaw_sources_t *s) {
  for (size_t i = 0; i < s->n_obs; i++)
    if (s->obs[i].on_templates)
      s->obs[i].on_templates(s->obs[i].data);
}

static void pod_add(const char *key, const void *rec, void *data) {
  sweep_pod(data, key, rec);
  notify_pod(data, key, NULL, rec);
}

static void pod_update(const char *key, const void *old_rec,
                       const void *new_rec, void *data) {
  sweep_pod(data, key, new_rec); /* e.g. an ephemeral container came */
  notify_pod(data, key, old_rec, new_rec);
}

static void pod_delete(const char *key, const void *rec, void *data) {
  notify_pod(data, key, rec, NULL);
}

static void tpl_add(const char *key, const void *rec, void *data) {
  sweep_template(data, key, rec);
  notify_templates(data);
}

static void tpl_update(const char *key, const void *old_rec,
                       const void *new_rec, void *data) {
  (void)old_rec;
  sweep_template(data, key, new_rec);
  notify_templates(data);
}

static void tpl_delete(const char *key, const void *rec, void *data) {
  (void)key;
  (void)rec;
  notify_templates(data);
}

/* A namespace appeared (old NULL) or changed: sweep what it now allows
 * and did not before. */
static void ns_changed(thaw_sources_t *s, const char *name, const ns_rec_t *old,
                       const ns_rec_t *r) {
  if (!s->active || (r->flags & (NS_EXCLUDED | NS_OPTED_OUT)))
    return;
  int was_open = old != NULL && !(old->flags & (NS_EXCLUDED | NS_OPTED_OUT));
  if (!was_open)
    sweep_store(s, s->pod_inf, name, 0);
  if ((r->flags & NS_PREWARM) && (!was_open || !(old->flags & NS_PREWARM))) {
    thaw_info("pre-warming the PodTemplates of a namespace", "ns", name);
    sweep_store(s, s->tpl_inf, name, 1);
  }
}

static void ns_add(const char *key, const void *rec, void *data) {
  ns_changed(data, key, NULL, rec);
  notify_templates(data);
}

static void ns_update(const char *key, const void *old_rec, const void *new_rec,
                      void *data) {
  ns_changed(data, key, old_rec, new_rec);
  notify_templates(data);
}

static void ns_delete(const char *key, const void *rec, void *data) {
  (void)key;
  (void)rec;
  notify_templates(data);
}

/* --- public ------------------------------------------------------------- */

static char *dup_or(const char *s, const char *dflt) {
  return strdup(s != NULL && *s != '\0' ? s : dflt);
}

int thaw_sources_new(uv_loop_t *loop, thaw_kube_t *kube,
                     const thaw_sources_opts_t *o, thaw_sources_t **out) {
  *out = NULL;
  if (o == NULL || o->exists == NULL)
    return THAW_EINVAL;
  thaw_sources_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return THAW_ENOMEM;
  s->loop = loop;
  s->kube = kube;
  s->exists = o->exists;
  s->exists_data = o->exists_data;
  s->system_ns = dup_or(o->system_namespace, DEFAULT_SYSTEM_NS);
  s->cache_host = dup_or(o->cache_host, DEFAULT_CACHE_HOST);
  s->private_host = dup_or(o->private_host, THAW_IMGREF_PRIVATE_HOST);
  s->prewarm = dup_list(o->prewarm_namespaces);
  s->excluded = dup_list(o->excluded_namespaces);
  int oom = s->system_ns == NULL || s->cache_host == NULL ||
            s->private_host == NULL ||
            s->prewarm == NULL || s->excluded == NULL;
  s->intern = thaw_intern_new();
  s->srcs = thaw_store_new(NULL, NULL);
  s->bad = thaw_store_new(NULL, NULL);
  s->pod_uses = thaw_store_new(NULL, NULL);
  s->ps = thaw_pullsecrets_new(0);
  int rc = oom || s->intern == NULL || s->srcs == NULL || s->bad == NULL ||
                   s->pod_uses == NULL || s->ps == NULL
               ? THAW_ENOMEM
               : 0;
  const thaw_informer_config_t ns = {
      .resource = &thaw_kube_namespaces,
      .name = "sources-namespaces",
      .project = thaw_sources__ns_project,
      .free_rec = thaw_sources__ns_free,
      .equal = thaw_sources__ns_equal,
      .project_data = s,
      .handlers = {.on_add = ns_add, .on_update = ns_update,
                   .on_delete = ns_delete, .data = s},
  };
  const thaw_informer_config_t pods = {
      .resource = &thaw_kube_pods,
      .name = "sources-pods",
      .project = thaw_sources__pod_project,
      .free_rec = thaw_sources__pod_free,
      .equal = thaw_sources__pod_equal,
      .project_data = s,
      .handlers = {.on_add = pod_add, .on_update = pod_update,
                   .on_delete = pod_delete, .data = s},
  };
  const thaw_informer_config_t tpls = {
      .resource = &thaw_kube_podtemplates,
      .name = "sources-podtemplates",
      .project = thaw_sources__tpl_project,
      .free_rec = thaw_sources__tpl_free,
      .equal = thaw_sources__tpl_equal,
      .project_data = s,
      .handlers = {.on_add = tpl_add, .on_update = tpl_update,
                   .on_delete = tpl_delete, .data = s},
  };
  if (rc == 0)
    rc = thaw_informer_new(loop, kube, &ns, &s->ns_inf);
  if (rc == 0)
    rc = thaw_informer_new(loop, kube, &pods, &s->pod_inf);
  if (rc == 0)
    rc = thaw_informer_new(loop, kube, &tpls, &s->tpl_inf);
  if (rc == 0 && o->metrics != NULL) {
    const char *labels[] = {"source"};
    s->created = thaw_metrics_counter(
        o->metrics, "thaw_sweep_created_total",
        "CachedImages created by the pod sweep and pre-warm, by source.", 1,
        labels);
    const char *v1[] = {SRC_POD}, *v2[] = {SRC_TEMPLATE};
    thaw_metric_child(s->created, v1); /* both series from the start */
    thaw_metric_child(s->created, v2);
  }
  if (rc != 0) {
    /* not started: the informers hold no records */
    thaw_informer_free(s->ns_inf);
    thaw_informer_free(s->pod_inf);
    thaw_informer_free(s->tpl_inf);
    release(s);
    return rc;
  }
  *out = s;
  return 0;
}

int thaw_sources_start(thaw_sources_t *s) {
  if (s->started)
    return THAW_EINVAL;
  s->started = 1;
  int rc = thaw_informer_start(s->ns_inf);
  if (rc == 0)
    rc = thaw_informer_start(s->pod_inf);
  if (rc == 0)
    rc = thaw_informer_start(s->tpl_inf);
  return rc;
}

int thaw_sources_denied(const thaw_sources_t *s) {
  return thaw_informer_denied(s->ns_inf) || thaw_informer_denied(s->pod_inf) ||
         thaw_informer_denied(s->tpl_inf);
}

int thaw_sources_synced(const thaw_sources_t *s) {
  return thaw_informer_has_synced(s->ns_inf) &&
         thaw_informer_has_synced(s->pod_inf) &&
         thaw_informer_has_synced(s->tpl_inf);
}

void thaw_sources_set_active(thaw_sources_t *s, int active) {
  active = active != 0;
  if (s->closing || active == s->active)
    return;
  if (!active) {
    /* queued creates are canceled: only the leader creates */
    s->active = 0;
    thaw_recorder_free(s->rec);
    s->rec = NULL;
    thaw_store_t *fresh = thaw_store_new(NULL, NULL);
    if (fresh != NULL) {
      thaw_store_free(s->srcs);
      s->srcs = fresh;
    }
    return;
  }
  const thaw_recorder_opts_t ro = {.max_pending = REC_MAX_PENDING,
                                   .recent_ms = REC_RECENT_MS,
                                   .field_manager = "thaw-controller"};
  int rc = thaw_recorder_new_opts(s->loop, s->kube, s->exists, s->exists_data,
                                  &ro, &s->rec);
  if (rc != 0) {
    thaw_error("sources: no recorder; nothing will be swept", "error",
               thaw_strerror(rc));
    return; /* stays inactive; the next set_active(1) tries again */
  }
  thaw_recorder_set_observer(s->rec, on_result, s);
  s->active = 1;
  char np[24], nt[24];
  snprintf(np, sizeof(np), "%zu",
           thaw_store_count(thaw_informer_store(s->pod_inf)));
  snprintf(nt, sizeof(nt), "%zu",
           thaw_store_count(thaw_informer_store(s->tpl_inf)));
  thaw_info("sources active: sweeping pods and pre-warm templates", "pods", np,
            "podtemplates", nt);
  sweep_store(s, s->pod_inf, NULL, 0);
  sweep_store(s, s->tpl_inf, NULL, 1);
}

int thaw_sources_ns_has_label(const thaw_sources_t *s, const char *ns,
                              const char *key, const char *value) {
  const ns_rec_t *r =
      ns != NULL ? thaw_informer_get(s->ns_inf, ns, NULL) : NULL;
  for (size_t i = 0; r != NULL && i < r->n; i++)
    if (strcmp(r->kv[2 * i], key) == 0)
      return strcmp(r->kv[2 * i + 1], value) == 0;
  return 0;
}

int thaw_sources_ns_lends(const thaw_sources_t *s, const char *ns) {
  const ns_rec_t *r =
      ns != NULL ? thaw_informer_get(s->ns_inf, ns, NULL) : NULL;
  return r != NULL &&
         (r->flags & (NS_PRIVATE | NS_OPTED_OUT | NS_EXCLUDED)) == NS_PRIVATE;
}

int thaw_sources_ns_serves(const thaw_sources_t *s, const char *ns) {
  const ns_rec_t *r =
      ns != NULL ? thaw_informer_get(s->ns_inf, ns, NULL) : NULL;
  if (r == NULL)
    return THAW_SOURCES_NS_UNKNOWN;
  if (r->flags & (NS_OPTED_OUT | NS_EXCLUDED))
    return THAW_SOURCES_NS_NONE;
  return r->flags & NS_PRIVATE ? THAW_SOURCES_NS_PRIVATE
                               : THAW_SOURCES_NS_PUBLIC;
}

void thaw_sources_each_namespace(const thaw_sources_t *s,
                                 thaw_sources_ns_cb cb, void *data) {
  const thaw_store_t *st = thaw_informer_store(s->ns_inf);
  size_t pos = 0;
  const char *key;
  while (st && thaw_store_next(st, &pos, &key, NULL, NULL))
    cb(key, thaw_sources_ns_serves(s, key), data);
}

void thaw_sources_pull_secrets(const thaw_sources_t *s, const char *normalized,
                               thaw_sources_secret_cb cb, void *data) {
  secret_filter_t f = {s, cb, data};
  thaw_pullsecrets_each(s->ps, normalized, secret_filter, &f);
}

const thaw_informer_t *thaw_sources_pods(const thaw_sources_t *s) {
  return s->pod_inf;
}

int thaw_sources_observe(thaw_sources_t *s, const thaw_sources_observer_t *o) {
  if (s->n_obs >= THAW_SOURCES_OBSERVERS_MAX)
    return THAW_E2BIG;
  s->obs[s->n_obs++] = *o;
  return 0;
}

void thaw_sources_each_prewarm_image(const thaw_sources_t *s,
                                     thaw_sources_image_cb cb, void *data) {
  size_t pos = 0;
  const char *key;
  void *rec;
  char ns[NS_MAX];
  while (thaw_store_next(thaw_informer_store(s->tpl_inf), &pos, &key, NULL,
                         &rec)) {
    const tpl_rec_t *t = rec;
    int flags;
    if ((t->flags & TPL_OPTED_OUT) || key_ns(key, ns) != 0 ||
        (flags = ns_allows(s, ns)) < 0 || !(flags & NS_PREWARM))
      continue;
    for (size_t i = 0; i < t->n; i++)
      cb(key, t->refs[i], data);
  }
}

int thaw_sources_normalize(const thaw_sources_t *s, const char *raw,
                           thaw_imgref_t *out, thaw_imgref_t *alt) {
  return thaw_sources__normalize(s, raw, out, alt);
}

void thaw_sources_free(thaw_sources_t *s) {
  if (s == NULL || s->closing)
    return;
  s->closing = 1;
  s->active = 0;
  thaw_recorder_free(s->rec); /* before the client it uses */
  s->rec = NULL;
  thaw_informer_free(s->ns_inf);
  thaw_informer_free(s->pod_inf);
  thaw_informer_free(s->tpl_inf);
  if (s->records == 0)
    release(s);
}
