/* pinhold.h - keeps a digest that a refresh moved a CachedImage away from
 * in the cache while pods still name it (docs/design.md, "Refresh").
 *
 * Rewrites are pinned (<cache path>:<tag>@<digest>), so a pod admitted
 * before a refresh names the old digest. Deleting it at once would fail
 * that pod's next pull (another node, a restart under imagePullPolicy
 * Always). A hold is an inventory object of its own (name "hold:<repo>@
 * <digest>", which no CachedImage can have) that references the old
 * manifest; it is dropped, and the manifest becomes an orphan, once no pod
 * has named "<image>@<old digest>" for min_ms (--expire-grace: as long as
 * an expiring image stays cached; it also covers pods the webhook admits
 * with the old digest while its watch lags). Holds live in memory: a digest refreshed away before a restart is
 * unknown to the new process's inventory and so is never deleted by it. */
#ifndef THAW_PINHOLD_H
#define THAW_PINHOLD_H

#include <uv.h>

#include "inventory.h"
#include "use.h"

#define THAW_PINHOLD_TICK_MS 1000 /* holds are checked this often */

typedef struct thaw_pinhold thaw_pinhold_t;

/* Holds in `inv`, asking `use` whether pods name a digest (neither is
 * owned; both must outlive the holder), each for at least min_ms after the
 * last pod named it. Returns 0 or THAW_ENOMEM. */
int thaw_pinhold_new(uv_loop_t *loop, thaw_inventory_t *inv,
                     const thaw_use_t *use, uint64_t min_ms,
                     thaw_pinhold_t **out);

/* Object `name` (normalised image `norm`, cache repository `repo`) is
 * about to hold `digest` (NULL or "": nothing) in the inventory. If it
 * held another digest and `norm` has a tag and no digest, that digest is
 * held. Call it before thaw_inventory_set. */
void thaw_pinhold_moving(thaw_pinhold_t *h, const char *name,
                         const char *norm, const char *repo,
                         const char *digest);

/* Holds now (for tests). */
size_t thaw_pinhold_count(const thaw_pinhold_t *h);

/* Drops nothing from the inventory; stops the timer and frees once the
 * loop has run its close callback. NULL does nothing. */
void thaw_pinhold_free(thaw_pinhold_t *h);

#endif
