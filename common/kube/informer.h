/* informer.h - list+watch one resource type into a compact store and tell
 * handlers what changed (client-go's reflector + indexer, lean).
 *
 * LIST in pages (limit/continue), then WATCH from the list's resourceVersion
 * with bookmarks. A stream that ends normally is re-watched from the last
 * resourceVersion (events and bookmarks advance it). A dropped stream,
 * transport or server error is re-watched after a backoff; an ERROR event or
 * HTTP answer with 410, an expired continue token, a malformed or oversized
 * event lead to a re-list. Retries back off exponentially with jitter (0.2 s
 * doubling, cap 30 s), logged with thaw_warn; a 403 (RBAC) backs off the
 * same way but is logged once, as an error (denied.h). A re-list builds a new store
 * and swaps it in at once, emitting the exact difference, so handlers see
 * every change once: no duplicate add, no update or delete without an add.
 *
 * The store keeps only what `project` returns for each object, with its key
 * ("namespace/name", or "name" when cluster-scoped) and its resourceVersion.
 *
 * Handlers run on the loop and must only record or enqueue; records passed
 * to them are owned by the informer and valid during the call only. While a
 * handler runs, the store already holds the new state (thaw_informer_get()
 * returns the new record and its resourceVersion). During a re-list both
 * the old and the new store are alive, so memory peaks at twice the store.
 * All functions run on the loop's thread. Free informers before the
 * thaw_kube_t they use. */
#ifndef THAW_INFORMER_H
#define THAW_INFORMER_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kube.h"
#include "store.h"

typedef struct thaw_informer thaw_informer_t;

/* Returns a new compact record for `obj` (owned by the informer from then
 * on) and its size in *size, or NULL to leave the object out of the store
 * (an object that was stored and now projects to NULL is deleted). */
typedef void *(*thaw_informer_project_cb)(const cJSON *obj, size_t *size,
                                          void *data);
typedef void (*thaw_informer_free_cb)(void *rec, void *data);
/* Nonzero when two records are equal for the handlers' purposes. */
typedef int (*thaw_informer_equal_cb)(const void *a, const void *b,
                                      void *data);

typedef struct {
  void (*on_add)(const char *key, const void *rec, void *data);
  void (*on_update)(const char *key, const void *old_rec, const void *new_rec,
                    void *data);
  void (*on_delete)(const char *key, const void *rec, void *data);
  void (*on_synced)(void *data); /* once, after the first complete list */
  void *data;
} thaw_informer_handlers_t;

typedef struct {
  const thaw_kube_resource_t *resource; /* required, must outlive the informer */
  const char *namespace;      /* NULL: all namespaces */
  const char *label_selector; /* NULL: none */
  const char *field_selector; /* NULL: none */
  long page_size;             /* list limit; 0 → 500 */
  long watch_timeout;         /* server-side timeoutSeconds; 0 → 300-600 s */
  const char *name;           /* for logs; NULL → the resource */
  /* required: project and free; equal is optional. With `equal`, an update
   * whose records are equal still advances the stored resourceVersion but
   * is not delivered to on_update. */
  thaw_informer_project_cb project;
  thaw_informer_free_cb free_rec;
  thaw_informer_equal_cb equal;
  void *project_data; /* passed to project, free_rec and equal */
  thaw_informer_handlers_t handlers;
} thaw_informer_config_t;

/* Creates an informer on `kube`'s loop; it does nothing until started. The
 * strings in cfg are copied. Returns 0 and sets *out, or THAW_EINVAL (a
 * required field is missing) or THAW_ENOMEM. */
int thaw_informer_new(uv_loop_t *loop, thaw_kube_t *kube,
                      const thaw_informer_config_t *cfg,
                      thaw_informer_t **out);

/* Starts the first list. Returns 0, or THAW_EINVAL when already started. */
int thaw_informer_start(thaw_informer_t *inf);

/* Stops the watch and timers; no handler runs after this returns. The memory
 * is released once outstanding requests have called back, so run the loop
 * afterwards (and before thaw_kube_free() returns, requests are canceled).
 * thaw_informer_free(NULL) does nothing. */
void thaw_informer_free(thaw_informer_t *inf);

/* 1 once the first complete list has been delivered. */
int thaw_informer_has_synced(const thaw_informer_t *inf);

/* 1 while the last list or watch answer was 403 Forbidden (a missing RBAC
 * grant): the store may be stale, so readiness should be false. Such
 * failures back off like any other, and are logged once (denied.h). */
int thaw_informer_denied(const thaw_informer_t *inf);

/* The stored record of key (owned by the informer, valid until the next turn
 * of the loop) and its resourceVersion, or NULL. */
const void *thaw_informer_get(const thaw_informer_t *inf, const char *key,
                              uint64_t *rv);

/* The live store, for iteration (thaw_store_next). Do not modify it. */
const thaw_store_t *thaw_informer_store(const thaw_informer_t *inf);

/* The resourceVersion a watch would resume from ("" before the first list). */
const char *thaw_informer_resource_version(const thaw_informer_t *inf);

typedef struct {
  uint64_t lists;          /* complete lists (first one included) */
  uint64_t list_pages;     /* pages fetched */
  uint64_t list_errors;    /* failed pages (expired continue included) */
  uint64_t watches;        /* watch requests started */
  uint64_t watch_ends;     /* streams that ended normally */
  uint64_t watch_errors;   /* streams that failed (drops, 5xx, parse) */
  uint64_t gone;           /* 410s: ERROR events, HTTP 410 */
  uint64_t events;         /* ADDED/MODIFIED/DELETED received */
  uint64_t bookmarks;
  uint64_t adds, updates, deletes; /* delivered to handlers */
} thaw_informer_stats_t;

/* Counters since creation. */
const thaw_informer_stats_t *thaw_informer_stats(const thaw_informer_t *inf);

#endif
