/* sources_internal.h - what sources.c (sweeps, handlers, the public API)
 * and sources_records.c (the informers' records) share. Not for other
 * modules: they use sources.h. */
#ifndef THAW_SOURCES_INTERNAL_H
#define THAW_SOURCES_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "imgref.h"
#include "intern.h"
#include "pullsecrets.h"
#include "record.h"
#include "sources.h"
#include "store.h"

#define MAX_SECRETS 16 /* imagePullSecrets per pod or template */

/* The private flag podinfo.h leaves free, for mirror pods (sources.h). */
#define POD_MIRROR THAW_SOURCES_POD_MIRROR

enum { NS_OPTED_OUT = 1, NS_PRIVATE = 2, NS_PREWARM = 4, NS_EXCLUDED = 8 };

/* A namespace: its thaw flags and all its labels (ns_has_label answers
 * any), interned key, value pairs. */
typedef struct {
  uint8_t flags;
  uint8_t n;
  const char *kv[];
} ns_rec_t;

/* A PodTemplate: distinct images of template.spec containers and
 * initContainers, as written. */
enum { TPL_OPTED_OUT = 1 };
typedef struct {
  thaw_pullsecrets_use_t *use; /* its imagePullSecrets, or NULL */
  uint8_t flags;
  uint8_t n;
  const char *refs[];
} tpl_rec_t;

struct thaw_sources {
  uv_loop_t *loop;
  thaw_kube_t *kube;
  char *system_ns, *cache_host, *private_host;
  char **prewarm;  /* NULL-ended */
  char **excluded; /* --exclude-namespaces, NULL-ended */
  thaw_sources_exists_cb exists;
  void *exists_data;
  thaw_metric_t *created; /* thaw_sweep_created_total{source}, or NULL */
  thaw_intern_t *intern;  /* images and labels of all records */
  thaw_informer_t *ns_inf, *pod_inf, *tpl_inf;
  thaw_recorder_t *rec; /* while active */
  thaw_store_t *srcs;   /* image queued by us -> its source, for metrics */
  thaw_store_t *bad;    /* unparsable images already logged */
  thaw_pullsecrets_t *ps;
  thaw_store_t *pod_uses; /* "%p" of a pod record -> its pull-secret use */
  size_t records;         /* live records of the three informers */
  thaw_sources_observer_t obs[THAW_SOURCES_OBSERVERS_MAX];
  size_t n_obs;
  int active, started, closing;
};

/* `raw` as written in a spec, normalised; a rewritten image counts as its
 * original. A rewritten "<cache>/x:tag@d" may come from "x:tag" (pinned by
 * the rewrite) or from a submitted "x:tag@d": *out gets "x:tag@d" and, when
 * `alt` is not NULL, *alt the tag-only "x:tag" (alt->len 0 otherwise, and
 * for anything not rewritten). Returns 0 or THAW_EINVAL (out->err says
 * why). */
int thaw_sources__normalize(const thaw_sources_t *s, const char *raw,
                            thaw_imgref_t *out, thaw_imgref_t *alt);

/* A record is gone; the last one after thaw_sources_free() frees s (the
 * informers release their stores after their free returns). */
void thaw_sources__record_gone(thaw_sources_t *s);

/* The informers' project, free and equal callbacks; data is the
 * thaw_sources_t. Each record projected counts in s->records until freed. */
void *thaw_sources__pod_project(const cJSON *obj, size_t *size, void *data);
void thaw_sources__pod_free(void *rec, void *data);
int thaw_sources__pod_equal(const void *a, const void *b, void *data);
void *thaw_sources__tpl_project(const cJSON *obj, size_t *size, void *data);
void thaw_sources__tpl_free(void *rec, void *data);
int thaw_sources__tpl_equal(const void *a, const void *b, void *data);
void *thaw_sources__ns_project(const cJSON *obj, size_t *size, void *data);
void thaw_sources__ns_free(void *rec, void *data);
int thaw_sources__ns_equal(const void *a, const void *b, void *data);

#endif
