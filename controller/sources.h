/* sources.h - where CachedImages come from besides the webhook, and what
 * the reconciler needs to know about namespaces and pods:
 *
 * - Pod sweep (DESIGN.md "Pod sweep"): every image of every pod (containers,
 *   initContainers, ephemeralContainers; a rewritten image counts as its
 *   original) that has no CachedImage gets one, with the webhook's opt-outs:
 *   pod or namespace labelled thaw.dev/caching=disabled, the system's own
 *   namespace, kube-system, mirror pods.
 * - Pre-warm: the images of PodTemplates in namespaces labelled
 *   thaw.dev/prewarm=true or listed in --prewarm-namespaces get one too, as
 *   soon as the template appears (OSCAR keeps each service as a PodTemplate
 *   in oscar-svc). A namespace that gains the label is swept then.
 *   OSCAR's per-user service namespaces (oscar-svc-<user>-<hash>) count as
 *   pre-warm too: a namespace labelled app.kubernetes.io/managed-by=oscar
 *   whose name starts with "oscar-svc". A template labelled (or whose pod
 *   template is labelled) thaw.dev/caching=disabled is skipped.
 * - Pull secrets: for each image, the {namespace, name} imagePullSecrets of
 *   the pods and PodTemplates that use it (learned from every pod, filtered
 *   at lookup time), so a private image can be warmed with them.
 *
 * A CachedImage is created as the webhook creates it (record.c): name from
 * thaw_cachedimage_name(), spec.image the normalised reference, label
 * app.kubernetes.io/managed-by=thaw; 409 AlreadyExists counts as done; other
 * failures are retried with backoff. Creations happen only while active
 * (leader, and the CachedImage informer has synced): on activation every
 * stored pod and template is swept once, then each add/update. */
#ifndef THAW_SOURCES_H
#define THAW_SOURCES_H

#include <uv.h>

#include "imgref.h"
#include "informer.h"
#include "kube.h"
#include "metrics.h"

typedef struct thaw_sources thaw_sources_t;

/* 1 when a CachedImage for this normalised reference exists (asked before
 * every create; the controller answers from its CachedImage informer). */
typedef int (*thaw_sources_exists_cb)(const char *normalized, void *data);

typedef struct {
  const char *system_namespace;
  const char *cache_host;                 /* rewritten images count as their
                                             originals */
  const char *private_host;               /* so do private ones' (NULL:
                                             THAW_IMGREF_PRIVATE_HOST) */
  const char *const *prewarm_namespaces;  /* NULL-ended; may be NULL */
  const char *const *excluded_namespaces; /* as the system namespace;
                                             NULL-ended; may be NULL */
  thaw_sources_exists_cb exists;          /* required */
  void *exists_data;
  /* Optional: registers thaw_sweep_created_total{source} (pod, podtemplate)
   * and counts creations there. */
  thaw_metrics_t *metrics;
} thaw_sources_opts_t;

int thaw_sources_new(uv_loop_t *loop, thaw_kube_t *kube,
                     const thaw_sources_opts_t *o, thaw_sources_t **out);
/* Starts the Namespace, Pod and PodTemplate informers. */
int thaw_sources_start(thaw_sources_t *s);
/* 1 once all three informers have synced. */
int thaw_sources_synced(const thaw_sources_t *s);
/* 1 while an informer's list or watch is refused (403). */
int thaw_sources_denied(const thaw_sources_t *s);
/* Turns creation on (sweeping everything once) or off. */
void thaw_sources_set_active(thaw_sources_t *s, int active);
/* 1 when namespace `ns` is known and has label key=value. */
int thaw_sources_ns_has_label(const thaw_sources_t *s, const char *ns,
                              const char *key, const char *value);
/* 1 when namespace `ns` may lend its pull secrets: known, labelled
 * thaw.dev/cache-private=true, and neither opted out nor excluded (system
 * namespaces never lend, whatever their labels). */
int thaw_sources_ns_lends(const thaw_sources_t *s, const char *ns);
/* What may be served from the cache to pods of namespace `ns`:
 * THAW_SOURCES_NS_UNKNOWN (not seen yet), THAW_SOURCES_NS_NONE (opted out,
 * excluded or a system namespace: nothing), THAW_SOURCES_NS_PUBLIC (images
 * that are not private), THAW_SOURCES_NS_PRIVATE (labelled
 * thaw.dev/cache-private=true: private images too). */
enum {
  THAW_SOURCES_NS_UNKNOWN = -2,
  THAW_SOURCES_NS_NONE = -1,
  THAW_SOURCES_NS_PUBLIC = 0,
  THAW_SOURCES_NS_PRIVATE = 1,
};
int thaw_sources_ns_serves(const thaw_sources_t *s, const char *ns);
/* Calls cb with each known namespace and what it is served
 * (thaw_sources_ns_serves). cb must not change the sources. */
typedef void (*thaw_sources_ns_cb)(const char *ns, int serves, void *data);
void thaw_sources_each_namespace(const thaw_sources_t *s,
                                 thaw_sources_ns_cb cb, void *data);
/* Calls cb for each known {namespace, name} pull secret of pods and
 * PodTemplates that use `normalized` and whose namespace is labelled
 * thaw.dev/cache-private=true, each pair once. */
typedef void (*thaw_sources_secret_cb)(const char *ns, const char *name,
                                       void *data);
void thaw_sources_pull_secrets(const thaw_sources_t *s, const char *normalized,
                               thaw_sources_secret_cb cb, void *data);
/* The Pod informer (records are thaw_podinfo_t), for use tracking. Mirror
 * pods (annotation kubernetes.io/config.mirror) are stored with this bit,
 * which podinfo.h leaves free, set in their flags. */
#define THAW_SOURCES_POD_MIRROR 0x80
const thaw_informer_t *thaw_sources_pods(const thaw_sources_t *s);

/* Observers of the pod and template informers (use tracking, repair). They
 * see every event, leader or not, after the sweep's own handling. */
typedef struct {
  /* A pod appeared (old_ NULL), changed, or went away (new_ NULL); the
   * records are thaw_podinfo_t. */
  void (*on_pod)(const char *key, const void *old_, const void *new_,
                 void *data);
  /* A PodTemplate or a Namespace appeared, changed or went away: which
   * images pre-warm templates hold may differ. */
  void (*on_templates)(void *data);
  void *data;
} thaw_sources_observer_t;
#define THAW_SOURCES_OBSERVERS_MAX 4 /* use, repair, release: one free */
/* Adds an observer (copied). 0, or THAW_E2BIG beyond the maximum. */
int thaw_sources_observe(thaw_sources_t *s, const thaw_sources_observer_t *o);
/* Calls cb(template key, image as written) for each image of each
 * PodTemplate that pre-warm applies to (a pre-warm namespace, neither
 * the template nor its namespace opted out or excluded). */
typedef void (*thaw_sources_image_cb)(const char *key, const char *raw,
                                      void *data);
void thaw_sources_each_prewarm_image(const thaw_sources_t *s,
                                     thaw_sources_image_cb cb, void *data);
/* `raw` as written in a spec, normalised; a rewritten image counts as its
 * original. A rewritten "<cache>/x:tag@d" may come from "x:tag" (pinned by
 * the rewrite) or from a submitted "x:tag@d": *out gets "x:tag@d" and, when
 * `alt` is not NULL, *alt the tag-only "x:tag" (alt->len 0 otherwise, and
 * for anything not rewritten). Returns 0 or THAW_EINVAL (out->err says
 * why). */
int thaw_sources_normalize(const thaw_sources_t *s, const char *raw,
                           thaw_imgref_t *out, thaw_imgref_t *alt);
/* Stops the informers and frees; run the loop afterwards. NULL is a no-op. */
void thaw_sources_free(thaw_sources_t *s);

#endif
