/* store.h - a compact string-keyed table of (resourceVersion, record) pairs.
 *
 * The informer's cache: open addressing with linear probing, one pointer per
 * slot, and one allocation per entry holding the key bytes, the
 * resourceVersion as a uint64 and the record pointer. Lookup is O(1).
 *
 * Ownership: a stored record belongs to the store and is released with the
 * free callback given to thaw_store_new() unless a function hands it back to
 * the caller through an out-parameter. Keys are copied. Not thread-safe; one
 * libuv loop owns it. */
#ifndef THAW_STORE_H
#define THAW_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct thaw_store thaw_store_t;

/* Releases a record; `data` is the pointer given to thaw_store_new(). */
typedef void (*thaw_store_free_cb)(void *rec, void *data);

/* Returns an empty store, or NULL when out of memory. free_rec may be NULL
 * (records are then never released by the store). */
thaw_store_t *thaw_store_new(thaw_store_free_cb free_rec, void *data);

/* A thaw_store_free_cb for records that are one malloc'd block. */
void thaw_store_free_plain(void *rec, void *data);

/* Releases every record and the store. thaw_store_free(NULL) does nothing. */
void thaw_store_free(thaw_store_t *s);

size_t thaw_store_count(const thaw_store_t *s);

/* Inserts `key` or replaces its entry. On a replace, the previous record is
 * moved to *old (caller owns it) when old is non-NULL, else released.
 * Returns 1 when the key was new, 0 when replaced, THAW_ENOMEM on failure (the
 * store is unchanged and `rec` is still the caller's). */
int thaw_store_put(thaw_store_t *s, const char *key, uint64_t rv, void *rec,
                   void **old);

/* Returns the record of `key` (still owned by the store) and its rv in *rv
 * when rv is non-NULL, or NULL when absent. */
void *thaw_store_get(const thaw_store_t *s, const char *key, uint64_t *rv);

/* Removes `key`. Its record moves to *rec (caller owns it) when rec is
 * non-NULL, else is released; *rv gets its rv when non-NULL. Returns 0, or
 * THAW_ENOENT when absent. */
int thaw_store_remove(thaw_store_t *s, const char *key, void **rec,
                      uint64_t *rv);

/* Iterates in slot order: start with *pos = 0; returns 1 and fills the
 * outputs (each may be NULL) while entries remain, then 0. The store must not
 * be modified during an iteration. */
int thaw_store_next(const thaw_store_t *s, size_t *pos, const char **key,
                    uint64_t *rv, void **rec);

/* Bytes the table itself holds: slots plus entries (key, rv, record pointer),
 * as requested from malloc; records are not counted. */
size_t thaw_store_overhead(const thaw_store_t *s);

/* The difference between two snapshots, as the events that turn `from` into
 * `to`: in `from` only → THAW_STORE_DELETED (old set, new NULL), in `to` only
 * → THAW_STORE_ADDED (old NULL), in both with different rvs →
 * THAW_STORE_UPDATED. Keys with equal rvs are skipped. Deletions come first.
 * Neither store may be modified by the callback. */
enum thaw_store_change {
  THAW_STORE_ADDED = 1,
  THAW_STORE_UPDATED = 2,
  THAW_STORE_DELETED = 3,
};
typedef void (*thaw_store_diff_cb)(enum thaw_store_change change,
                                   const char *key, void *old_rec,
                                   void *new_rec, void *data);
void thaw_store_diff(const thaw_store_t *from, const thaw_store_t *to,
                     thaw_store_diff_cb cb, void *data);

/* A resourceVersion string as a uint64: its value when it is all decimal
 * digits (etcd revisions are), else a 64-bit hash with the top bit set, so
 * that two different strings still compare different. NULL or "" is 0. */
uint64_t thaw_store_rv(const char *rv);

#endif
