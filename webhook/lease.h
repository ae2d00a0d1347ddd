/* lease.h - is a leader there to release gated pods? The webhook's view of
 * the controller's Lease (coordination.k8s.io/v1 `thaw-controller` in
 * --namespace), for cold wait (docs/design.md, "Cold wait").
 *
 * One informer, field selector metadata.name=<name>, keeps the Lease's
 * renewTime and leaseDurationSeconds. A leader exists while renewTime +
 * leaseDurationSeconds is after now, by the webhook's own clock, and the
 * Lease names a holder (a released Lease has none). The watch never gates
 * readiness: without the RBAC for leases it is refused, logs "permission
 * denied" once (the informer's), and no leader is ever seen, so nothing is
 * gated. Everything runs on the loop's thread. */
#ifndef THAW_WEBHOOK_LEASE_H
#define THAW_WEBHOOK_LEASE_H

#include <stdint.h>
#include <uv.h>

#include "kube.h"

typedef struct thaw_lease thaw_lease_t;

/* Creates the watch of Lease `name` in `ns` on `kube` (which must outlive
 * it); it does nothing until started. Strings are copied. Returns 0,
 * THAW_EINVAL or THAW_ENOMEM. */
int thaw_lease_new(uv_loop_t *loop, thaw_kube_t *kube, const char *ns,
                   const char *name, thaw_lease_t **out);
/* Starts the informer. Returns 0 or THAW_EINVAL when already started. */
int thaw_lease_start(thaw_lease_t *l);
/* 1 when the Lease was last seen held and renewed within its duration,
 * `now_ms` being the wall clock in ms since the epoch; 0 otherwise (no
 * Lease, not seen yet, released, expired). NULL gives 0. */
int thaw_lease_fresh(const thaw_lease_t *l, int64_t now_ms);

/* Stops the informer; no callback runs after this. NULL does nothing. Run
 * the loop afterwards so the informer's requests can end; free it before
 * its thaw_kube_t. */
void thaw_lease_free(thaw_lease_t *l);

#endif
