/* use.h - which CachedImages are in use (docs/design.md, "Use tracking").
 *
 * An image is in use while a pod that has not finished (phase neither
 * Succeeded nor Failed) has a container, init container or ephemeral
 * container whose image, normalised, is the image (a rewritten image counts
 * as its original), or while a PodTemplate of a pre-warm namespace names it.
 * Counts are kept incrementally from the Pod informer's events and the
 * templates are recounted when a template or namespace changes, so a
 * restart recomputes everything from the informers: nothing is lost.
 *
 * The leader writes what it sees into each CachedImage's status with a
 * merge patch: usedBy {count (pods), pods[] (at most 10 namespace/name, the
 * first in sort order), templates} and lastUsedAt (the time of the write
 * while in use, or the last moment it was seen in use: a pod that came and
 * went between two ticks counts). An object whose use
 * has not changed is never written; one whose use changed is written at
 * most once per `coalesce_ms`, except a change between unused and used,
 * which is written at once. */
#ifndef THAW_USE_H
#define THAW_USE_H

#include <stdint.h>
#include <uv.h>

#include "cirec.h"
#include "kube.h"
#include "sources.h"
#include "store.h"

typedef struct thaw_use thaw_use_t;

typedef struct {
  thaw_kube_t *kube;
  thaw_sources_t *sources;
  /* The CachedImage informer's store (records thaw_cirec_t). */
  const thaw_store_t *(*cachedimages)(void *data);
  int (*cachedimages_synced)(void *data);
  void *data;
  uint64_t coalesce_ms; /* 0 = 10 s */
  uint64_t tick_ms;     /* 0 = 1 s */
} thaw_use_opts_t;

typedef struct {
  uint32_t pods, templates;
} thaw_use_count_t;

/* Observes the sources' pods and templates (thaw_sources_observe). */
int thaw_use_new(uv_loop_t *loop, const thaw_use_opts_t *o, thaw_use_t **out);
/* Leading: write use into status. Counting goes on either way. */
void thaw_use_set_active(thaw_use_t *u, int leading);
/* 1 once every informer has synced: counts are complete. */
int thaw_use_ready(const thaw_use_t *u);
/* What uses the normalised image now. */
thaw_use_count_t thaw_use_get(const thaw_use_t *u, const char *normalized);
/* 1 when the object's status tells whether it is in use as the counts do
 * (no write of that change is pending), so its lastUsedAt is current. */
int thaw_use_settled(const thaw_use_t *u, const thaw_cirec_t *c);
/* Use patches sent (for tests and benchmarks). */
uint64_t thaw_use_writes(const thaw_use_t *u);
/* Stops the timer and frees; run the loop afterwards. NULL is a no-op. */
void thaw_use_free(thaw_use_t *u);

#endif
