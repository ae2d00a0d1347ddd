/* inventory.h - what the cache registry holds for the CachedImages: the
 * manifest tree of each object read from the cache, its bytes counted once
 * across objects (thaw_cache_size_bytes), the bytes an eviction would free,
 * and the safe deletion of manifests no object references any more
 * (docs/design.md, "Cache inventory").
 *
 * Model. Distribution stores blobs (manifest bytes included) once, globally,
 * by digest; a manifest revision lives in one repository, and DELETE by
 * digest in repository R removes that revision and every tag of R pointing
 * at it. So the inventory keeps
 *   - contents: one entry per distinct digest (a blob or a manifest's bytes)
 *     with its size and two reference counts, interned, so 10,000 objects
 *     sharing base layers cost one entry per layer;
 *   - manifests: one entry per (repository, digest), read once from the
 *     cache (GET by digest, sha256 checked) however many objects hold it: an
 *     index lists its children (manifests of the same repository), an image
 *     manifest its config and layers (foreign layers with `urls` skipped);
 *   - objects: a name (a CachedImage) holding one top manifest.
 * A manifest is referenced while an object holds it or a referenced index
 * lists it. One no object references any more is an orphan: it is read (if
 * it was not) and then deleted from the cache, index before children.
 *
 * Safe deletion (the rules, each tested by test/test_inventory.py):
 *   - a manifest some object references in its repository, as a top digest
 *     or as an index child, loaded or not, is never deleted: an object whose
 *     tree is not read yet references at least its top digest, and nothing
 *     in repository R is deleted while any manifest of R is unread;
 *   - an orphan referenced again (another object now holds that digest in
 *     that repository) is dropped from the orphans, never deleted;
 *   - an index is deleted before its children (a child waits until no index
 *     in the cache lists it), so nobody pulls a half-deleted index;
 *   - nothing in R is deleted while opts.may_delete(R) says no;
 *   - a failed read or delete is retried after 1 s, doubling to 60 s (or a
 *     429's Retry-After), and never loses the orphan; a 404 on delete means
 *     already deleted; a 404 on read means the object holds nothing (e.g.
 *     deleted before a restart).
 *
 * All on one loop, not thread-safe. Work (reads and deletes) runs from the
 * loop, never inside a thaw_inventory_* call; at most opts.concurrency
 * requests at once; nothing runs without a registry client. */
#ifndef THAW_INVENTORY_H
#define THAW_INVENTORY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "registry.h"

typedef struct thaw_inventory thaw_inventory_t;

typedef struct {
  /* May manifests of cache repository `repo` be deleted now? The owner says
   * no while a warm may push into it, while an object of that repository is
   * not settled, or while the registry's GC runs. Asked before each round of
   * deletes in `repo`, and again every second while it says no (or at once
   * after thaw_inventory_kick()). NULL = always yes. Must not call
   * thaw_inventory_* functions. */
  int (*may_delete)(const char *repo, void *data);
  /* A manifest was deleted from the cache (a 404 counts as deleted).
   * `freed` = bytes (blobs + manifests) no manifest in the cache references
   * any more because of it, which the next GC reclaims. May call
   * thaw_inventory_* functions except thaw_inventory_free. Optional. */
  void (*deleted)(const char *repo, const char *digest, int64_t freed,
                  void *data);
  void *data;
  unsigned concurrency; /* reads + deletes at once; 0 = 4 */
} thaw_inventory_opts_t;

typedef struct {
  size_t objects;   /* names set and not removed */
  size_t unloaded;  /* of them, holding a tree not completely read */
  size_t manifests; /* (repository, digest) entries known */
  size_t contents;  /* distinct digests known (blobs and manifest bytes) */
  size_t orphans;   /* manifests referenced by no object, not yet deleted */
  size_t inflight;  /* reads and deletes in flight */
  size_t waiting;   /* reads and deletes waiting for a retry */
  size_t memory;    /* bytes the inventory has allocated, approximately */
} thaw_inventory_stats_t;

/* Makes an empty inventory on `loop`. Returns 0 and sets *out, or
 * THAW_ENOMEM. */
int thaw_inventory_new(uv_loop_t *loop, const thaw_inventory_opts_t *o,
                       thaw_inventory_t **out);

/* Cancels the requests in flight (their outcome is dropped) and frees
 * everything; the memory itself once the loop has run its handles' close
 * callbacks. NULL does nothing. Call it before freeing the registry client,
 * or set the registry to NULL first. */
void thaw_inventory_free(thaw_inventory_t *inv);

/* The cache registry client to read and delete with (not owned) and the
 * cache registry's "host:port" (copied), or reg NULL while not leading:
 * requests in flight are cancelled and come back later, trees read so far
 * are kept. Replacing a client cancels the old client's requests first.
 * Call it with NULL before freeing the client (or in the same loop turn
 * after). Returns 0, THAW_EINVAL (reg without host) or THAW_ENOMEM (the
 * registry is then NULL). */
int thaw_inventory_set_registry(thaw_inventory_t *inv, thaw_registry_t *reg,
                                const char *cache_registry);

/* Object `name` (a CachedImage) holds `digest` ("sha256:<64 hex>") in cache
 * repository `repo` (thaw_warm_cache_repo); digest NULL or "" = holds
 * nothing yet. size_hint = its status.sizeBytes, counted in
 * thaw_inventory_unique_bytes() until its tree is read. The same (repo,
 * digest) again only updates the hint, except that a tree that was absent
 * (404) is read again (a warm may have pushed it since). A new digest: the
 * new tree is taken first, then the old one dropped, and its manifests no
 * object references any more become orphans, owned by `name` for
 * thaw_inventory_pending(). A removed name set again is the object again.
 * Returns 0, THAW_EINVAL (empty name, or a digest that is not sha256:<64
 * hex>, or a digest without repo) or THAW_ENOMEM (nothing changed). */
int thaw_inventory_set(thaw_inventory_t *inv, const char *name,
                       const char *repo, const char *digest,
                       int64_t size_hint);

/* The object is gone or being expired: like set(name, NULL), and the name
 * no longer counts as an object. Unknown names do nothing. */
void thaw_inventory_remove(thaw_inventory_t *inv, const char *name);

/* 1 and the top digest ("sha256:<hex>") object `name` holds in out, or 0
 * when it holds nothing or is unknown or removed. */
int thaw_inventory_digest(const thaw_inventory_t *inv, const char *name,
                          char out[72]);

/* 1 when object `name` names a top manifest that the cache lacks (read as
 * 404), e.g. a copy deleted behind thaw's back or made before its path
 * moved (private/): a refresh that finds the same digest copies it again. */
int thaw_inventory_absent(const thaw_inventory_t *inv, const char *name);

/* 1 while manifests orphaned by `name` (by its remove, or by an earlier
 * digest it held) are still in the cache: the lifecycle removes the object,
 * waits until this is 0, then deletes the CachedImage. An orphan that
 * becomes referenced again no longer counts. 0 for unknown names. */
int thaw_inventory_pending(const thaw_inventory_t *inv, const char *name);

/* 1 when the object's tree is completely read, or it holds nothing (no
 * digest, or its top manifest was absent: 404); 0 while reading and for
 * unknown or removed names. */
int thaw_inventory_loaded(const thaw_inventory_t *inv, const char *name);

/* Every blob and manifest of every object, each digest once; an object
 * whose tree is not completely read counts its size_hint (and the parts
 * read so far, so the sum can run high while trees load: evict only when
 * stats.unloaded is 0). */
int64_t thaw_inventory_unique_bytes(const thaw_inventory_t *inv);

/* The object's blobs and manifests, each digest once (shared ones too), or
 * its size_hint while not loaded; 0 for unknown names. */
int64_t thaw_inventory_object_bytes(const thaw_inventory_t *inv,
                                    const char *name);

/* By how much thaw_inventory_unique_bytes() would drop if all of `names`
 * were removed: their blobs and manifests that no other object references
 * (size_hints of the unloaded ones included). Unknown names and repeats
 * count nothing. Pure: nothing changes. */
int64_t thaw_inventory_freed_bytes(const thaw_inventory_t *inv,
                                   const char *const *names, size_t n);

/* The sum of `freed` of the deletes since the last
 * thaw_inventory_collected(): what the next GC should reclaim. */
int64_t thaw_inventory_reclaimable_bytes(const thaw_inventory_t *inv);

/* A GC ran: resets the reclaimable bytes to 0. */
void thaw_inventory_collected(thaw_inventory_t *inv);

/* may_delete may say yes now: try the deletes it held back on the next
 * loop turn, without waiting for the 1 s poll. */
void thaw_inventory_kick(thaw_inventory_t *inv);

/* Deletes in flight in cache repository `repo`. may_delete stops new ones
 * but cannot recall one already sent: a warm into `repo` must wait until
 * this is 0, or a DELETE still on its way could land after the warm's PUT
 * of the same digest. */
unsigned thaw_inventory_deleting(const thaw_inventory_t *inv,
                                 const char *repo);

void thaw_inventory_stats(const thaw_inventory_t *inv,
                          thaw_inventory_stats_t *out);

#endif
