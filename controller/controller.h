/* controller.h - thaw-controller's wiring: the kube client, informers,
 * leader election, the reconciler, the pod sweep and pre-warm, metrics and
 * the /metrics, /healthz, /readyz server, on one loop. main.c only parses
 * flags and handles signals. */
#ifndef THAW_CONTROLLER_H
#define THAW_CONTROLLER_H

#include <uv.h>

#include "config.h"

typedef struct thaw_controller thaw_controller_t;

/* Builds everything (nothing runs yet). Returns 0 and sets *out, or an
 * error with one line in err (bad kubeconfig: THAW_ECONFIG). `cfg` must
 * outlive the controller. */
int thaw_controller_new(uv_loop_t *loop, const thaw_config_t *cfg,
                        thaw_controller_t **out, char *err, size_t errlen);
/* Binds the metrics port and starts the informers and the elector. */
int thaw_controller_start(thaw_controller_t *c, char *err, size_t errlen);
/* Graceful stop: warms in flight are cancelled (a restart resumes them from
 * the objects' state), the Lease is released; `done` runs once on the loop
 * when that is over. */
typedef void (*thaw_controller_stopped_cb)(void *data);
void thaw_controller_stop(thaw_controller_t *c, thaw_controller_stopped_cb done,
                          void *data);
/* Frees everything; run the loop afterwards so handles close. */
void thaw_controller_free(thaw_controller_t *c);

#endif
