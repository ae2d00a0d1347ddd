/* leader.h - leader election with a coordination.k8s.io/v1 Lease, the way
 * client-go's leaderelection does it with a LeaseLock, on a libuv loop.
 *
 * Every retry period (jittered while following) the elector GETs the Lease;
 * it creates it when absent, takes it over when it is free or has not
 * changed for leaseDurationSeconds on OUR clock (robust to clock skew), and
 * renews it while leading. A leader whose writes keep failing steps down once
 * the renew deadline has passed since its last successful write was sent, so
 * it stops before anyone else may take over (lease duration > renew deadline).
 *
 * Callbacks run on the loop. on_started and on_stopped alternate, starting
 * with on_started: on_stopped means "stop reconciling now". They may call
 * thaw_leader_release() or thaw_leader_free(). */
#ifndef THAW_LEADER_H
#define THAW_LEADER_H

#include <stdint.h>
#include <uv.h>

#include "kube.h"
#include "metrics.h"

typedef struct thaw_leader thaw_leader_t;
typedef void (*thaw_leader_cb)(thaw_leader_t *l, void *data);

/* Milliseconds; zero fields take the defaults 15000 / 10000 / 2000. Must
 * hold lease_ms > renew_deadline_ms > retry_ms. The Lease carries
 * leaseDurationSeconds = lease_ms rounded up to whole seconds. */
typedef struct {
  uint64_t lease_ms;
  uint64_t renew_deadline_ms;
  uint64_t retry_ms;
} thaw_leader_timings_t;

typedef struct {
  const char *namespace;  /* required */
  const char *name;       /* NULL: "thaw-controller" */
  const char *identity;   /* NULL: hostname + "_" + random hex */
  thaw_leader_timings_t timings;
  thaw_leader_cb on_started_leading;
  thaw_leader_cb on_stopped_leading;
  void *data;
  /* Optional: registers the gauge thaw_leader (1 while leading) here. A
   * registry holds one such gauge; a second elector on it gets none. */
  thaw_metrics_t *metrics;
} thaw_leader_opts_t;

/* Makes an elector (not started). Strings are copied; `kube` must outlive
 * it. Returns 0 and sets *out, or THAW_EINVAL / THAW_ENOMEM. */
int thaw_leader_new(uv_loop_t *loop, thaw_kube_t *kube,
                    const thaw_leader_opts_t *o, thaw_leader_t **out);

/* Starts trying to acquire at once. Returns 0, or THAW_EINVAL when already
 * started or released. */
int thaw_leader_start(thaw_leader_t *l);

/* 1 between on_started_leading and on_stopped_leading, else 0. */
int thaw_leader_is_leader(const thaw_leader_t *l);

/* The identity written as holderIdentity; owned by the elector. */
const char *thaw_leader_identity(const thaw_leader_t *l);

/* Graceful shutdown (client-go's ReleaseOnCancel): stops the elector; if
 * leading, calls on_stopped_leading before returning, then PUTs the Lease with
 * holderIdentity "" and leaseDurationSeconds 1 so another replica takes over
 * at its next retry. `done` (may be NULL) runs exactly once on the loop when
 * that is over (at once when there was nothing to release), unless the
 * elector is freed first. Keep `kube` alive until then. This can't fail;
 * afterwards only thaw_leader_free() applies. */
void thaw_leader_release(thaw_leader_t *l, thaw_leader_cb done, void *data);

/* Stops and frees the elector without releasing the Lease (another replica
 * takes over once it expires) and without callbacks. Requests in flight are
 * abandoned; memory is returned once the loop has closed the timers.
 * thaw_leader_free(NULL) does nothing. */
void thaw_leader_free(thaw_leader_t *l);

/* Writes "hostname_xxxxxx" (six random hex digits) into buf. Returns 0 or
 * THAW_EINVAL when it does not fit. */
int thaw_leader_default_identity(char *buf, size_t len);

#endif
