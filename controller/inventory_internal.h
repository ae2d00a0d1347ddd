/* inventory_internal.h - internal to controller/inventory*.c: the interned
 * contents, manifests, objects and repositories with their reference counts
 * (inventory.c), and the queues of reads and deletes that run against the
 * cache registry (inventory_io.c). */
#ifndef THAW_INVENTORY_INTERNAL_H
#define THAW_INVENTORY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "inventory.h"

#define INV_BACKOFF_MIN_MS 1000
#define INV_BACKOFF_MAX_MS 60000
#define INV_RETRY_AFTER_MAX_MS 600000 /* a 429's Retry-After, capped */
#define INV_POLL_MS 1000              /* may_delete asked again */
#define INV_NAME_MAX 1024
#define INV_REPO_MAX 512

/* A manifest's state. GONE lasts only from a delete's answer to its
 * settling (freed, or read again when referenced meanwhile). */
enum { INV_UNREAD, INV_READ, INV_ABSENT, INV_GONE };
/* Which queue a manifest waits in. */
enum { INV_Q_NONE, INV_Q_READ, INV_Q_WAIT, INV_Q_DEL };

typedef struct inv_node inv_node_t;
typedef struct inv_entry inv_entry_t;
typedef struct inv_obj inv_obj_t;
typedef struct inv_repo inv_repo_t;

/* Chained hash table of structs whose first member is their chain link. */
typedef struct {
  void **b;
  size_t cap, n;
} inv_table_t;

typedef struct {
  inv_entry_t *head, *tail;
  size_t n;
} inv_list_t;

/* Content: a blob or a manifest's bytes, global by digest as distribution
 * stores it. Interned: one per distinct digest. */
struct inv_node {
  inv_node_t *hnext;
  int64_t size;   /* -1 until known */
  uint32_t users; /* pointers to it from manifests (its lifetime) */
  uint32_t refs;  /* references from manifests in the cache (read, not yet
                     deleted): at 0 the next GC reclaims it */
  uint32_t live;  /* of those, from manifests some object references: at
                     > 0 it counts in the unique bytes */
  uint32_t mark, tmp; /* scratch of the pure queries (epoch, count) */
  uint8_t d[32];      /* the sha256 */
};

/* A manifest: (repository, digest). */
struct inv_entry {
  inv_entry_t *hnext;
  inv_entry_t *qprev, *qnext;
  inv_repo_t *repo;
  inv_node_t *node; /* its own bytes */
  void **refs;      /* READ: index -> inv_entry_t * children (same repo);
                       image -> inv_node_t * config and layers */
  uint32_t nrefs;
  uint32_t live; /* objects holding it + referenced READ indexes listing it */
  uint32_t in;   /* objects holding it + READ indexes in the cache listing
                    it: deletable only at 0 (index before children) */
  uint32_t mark, tmp;
  uint32_t backoff_ms;
  uint64_t next_try; /* loop time of the next try after a failure */
  inv_obj_t *owner;  /* an orphan: the object whose drop orphaned it */
  uint8_t state, q, busy, is_index, depth;
};

/* A CachedImage. Kept after remove while manifests it orphaned are in the
 * cache (outstanding), for thaw_inventory_pending(). */
struct inv_obj {
  inv_obj_t *hnext;
  inv_entry_t *top; /* NULL: holds nothing */
  int64_t hint;
  uint32_t outstanding; /* orphans it owns */
  uint32_t mark;
  uint8_t gone; /* removed */
  char name[];
};

struct inv_repo {
  inv_repo_t *hnext;
  inv_repo_t *dprev, *dnext; /* in inv->delrepos while delq is not empty */
  inv_list_t delq;           /* orphans ready to delete */
  uint64_t hash;
  uint32_t users;    /* manifests of it */
  uint32_t unread;   /* manifests of it not read yet: no delete meanwhile */
  uint32_t deleting; /* deletes in flight */
  char name[];
};

typedef struct {
  thaw_inventory_t *inv;
  inv_entry_t *e; /* NULL: the slot is free */
  int del;
} inv_op_t;

struct thaw_inventory {
  uv_loop_t *loop;
  thaw_inventory_opts_t o;
  thaw_registry_t *reg;
  char *host;
  inv_table_t nodes, entries, objs, repos;
  inv_list_t readq, waitq;
  inv_repo_t *delrepos;
  inv_op_t *ops; /* o.concurrency slots */
  unsigned inflight;
  uv_timer_t kick_t; /* pump on the next loop turn */
  uv_timer_t tick_t; /* retries due, may_delete polls */
  uint64_t tick_due;
  int closing, open_handles;
  int64_t live_bytes, reclaimable;
  uint32_t epoch;
  size_t nobjs, memory;
};

/* ---- the model (inventory.c) ---- */

/* Decides where a manifest waits after any change (read, delete, retry,
 * counts), frees it once nothing refers to it and it is out of the cache. */
void inv_settle(thaw_inventory_t *inv, inv_entry_t *e);
/* A read answered: the manifest's bytes, or 404. inv_take returns 0 or a
 * THAW_E* (reason in err), the manifest then still unread. */
int inv_take(thaw_inventory_t *inv, inv_entry_t *e,
             const thaw_registry_result_t *res, char *err, size_t errlen);
void inv_absent(thaw_inventory_t *inv, inv_entry_t *e);
/* A delete answered (or 404): releases the manifest's references; returns
 * the bytes no manifest in the cache references any more. */
int64_t inv_release(thaw_inventory_t *inv, inv_entry_t *e);
/* "sha256:<hex>" of a node into out. */
void inv_digest_str(const inv_node_t *n, char out[72]);

/* ---- requests (inventory_io.c) ---- */

void inv_qmove(thaw_inventory_t *inv, inv_entry_t *e, int q);
void inv_kick(thaw_inventory_t *inv);
void inv_io_init(thaw_inventory_t *inv);
/* Cancels the requests in flight (closing: their outcome is dropped). */
void inv_io_cancel(thaw_inventory_t *inv);
/* Closes the timers; the last close frees inv. */
void inv_io_close(thaw_inventory_t *inv);

#endif
