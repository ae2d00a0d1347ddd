/* phase.h - the CachedImage state machine in one table (docs/design.md,
 * "Controller"): what happens to an object, by phase and event.
 *
 * Two events drive it. PROCESS: the work queue hands the object to a job
 * (reconcile.c; after a change, a timer, or on becoming leader). TICK: the
 * lifecycle's once-a-second pass (lifecycle.c). Each row is one line of
 * phase_table in phase.c:
 *
 *   phase     event    condition                         action
 *   --------  -------  --------------------------------  -------------------
 *   Pending   PROCESS  the cache has room                WARM
 *   Pending   PROCESS  the cache is full                 WAIT_ROOM
 *   Warming   PROCESS  (a restart or a new leader)       WARM (resumes)
 *   Failed    PROCESS  backoff not over                  WAIT
 *   Failed    PROCESS  backoff over, the cache has room  WARM
 *   Failed    PROCESS  backoff over, the cache is full   WAIT_ROOM
 *   Ready     PROCESS  digest reference                  NOTHING
 *   Ready     PROCESS  tag, refresh interval not over    WAIT
 *   Ready     PROCESS  tag, refresh interval over        REFRESH
 *   Expiring  PROCESS                                    NOTHING (lifecycle)
 *   Ready     TICK     idle for expireAfter              EXPIRE
 *   Ready     TICK     over --max-cache-bytes, LRU       EVICT (lifecycle.c
 *                                                        picks which)
 *   Failed    TICK     idle for expireAfter              EXPIRE
 *   Expiring  TICK     its deletion has begun            DELETE (goes on)
 *   Expiring  TICK     retained (set meanwhile)          KEEP
 *   Expiring  TICK     used again                        KEEP (-> Ready, or
 *                                                        Pending if nothing
 *                                                        was cached)
 *   Expiring  TICK     no expiresAt                      EXPIRE (sets it: the
 *                                                        grace is never
 *                                                        skipped)
 *   Expiring  TICK     expiresAt passed, unused          DELETE (manifests,
 *                                                        then the object)
 *   any other TICK                                       NOTHING
 *
 * EXPIRE and EVICT also need: not retained, not used, settled.
 * "Used" means in use now (use.h); "idle" counts from lastUsedAt, else
 * cachedAt, else creation, and only once status says whether the object
 * is in use (no use write pending). */
#ifndef THAW_PHASE_H
#define THAW_PHASE_H

#include "cirec.h"

enum thaw_phase_event { THAW_EV_PROCESS, THAW_EV_TICK };

enum thaw_action {
  THAW_ACT_NOTHING,
  THAW_ACT_WAIT,      /* try again when the backoff or interval is over */
  THAW_ACT_WAIT_ROOM, /* stay Pending: the cache is full */
  THAW_ACT_WARM,
  THAW_ACT_REFRESH,
  THAW_ACT_EXPIRE,    /* -> Expiring, expiresAt = now + grace */
  THAW_ACT_EVICT,     /* a candidate for eviction (-> Expiring, Evicted) */
  THAW_ACT_KEEP,      /* Expiring -> Ready/Pending */
  THAW_ACT_DELETE,    /* manifests, then the object */
};

/* What the table's conditions read; each field is a yes/no fact about the
 * object now. */
typedef struct {
  enum thaw_ci_phase phase;
  unsigned tag : 1;          /* a tag reference (refreshable) */
  unsigned room : 1;         /* a warm may start (lifecycle_has_room) */
  unsigned due : 1;          /* backoff (Failed) or refresh interval
                                (Ready) is over */
  unsigned retain : 1;
  unsigned used : 1;
  unsigned settled : 1;      /* status tells whether it is in use */
  unsigned idle_expired : 1; /* idle for at least expireAfter */
  unsigned over_bound : 1;   /* the cache is over --max-cache-bytes */
  unsigned has_expiry : 1;   /* status.expiresAt is set */
  unsigned expiry_passed : 1;/* now >= expiresAt */
  unsigned deleting : 1;     /* its manifests are being deleted */
} thaw_phase_facts_t;

enum thaw_action thaw_phase_decide(enum thaw_phase_event ev,
                                   const thaw_phase_facts_t *f);
const char *thaw_action_name(enum thaw_action a);

#endif
