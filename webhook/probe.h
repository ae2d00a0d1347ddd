/* probe.h - the health gate on the cache registry (docs/design.md):
 * GET <registry-url>/v2/ every 2 s with a 1 s timeout. 200 or 401 is a
 * success; a connection error, a timeout or a 5xx is a failure. The gate
 * goes down after two failures in a row and up again after one success. It
 * starts down: nothing is rewritten before the registry has answered once.
 * Other answers (404, say) count as failures too: that is not a registry. */
#ifndef THAW_WEBHOOK_PROBE_H
#define THAW_WEBHOOK_PROBE_H

#include <uv.h>

#include "http.h"

typedef struct thaw_probe thaw_probe_t;

/* Called on every change of the gate (and not otherwise). */
typedef void (*thaw_probe_change_cb)(int up, void *data);

/* `registry_url` is "http://host:port" or "https://..." without a trailing
 * path; `http` must outlive the probe. Returns 0, THAW_EINVAL for a bad URL,
 * or THAW_ENOMEM. */
int thaw_probe_new(uv_loop_t *loop, thaw_http_t *http,
                   const char *registry_url, thaw_probe_t **out);
/* For tests: interval and timeout in ms (defaults 2000 and 1000). */
void thaw_probe_set_timing(thaw_probe_t *p, unsigned interval_ms,
                           unsigned timeout_ms);
void thaw_probe_set_observer(thaw_probe_t *p, thaw_probe_change_cb cb,
                             void *data);
/* Called after every finished probe, after any change callback: ok is 1
 * for a success, status the HTTP status (0 when none arrived). Not called
 * for a probe cancelled by thaw_probe_free(). For tests and metrics. */
typedef void (*thaw_probe_result_cb)(int ok, long status, void *data);
void thaw_probe_set_result_hook(thaw_probe_t *p, thaw_probe_result_cb cb,
                                void *data);
/* Starts probing at once. Returns 0 or THAW_EINVAL when already started. */
int thaw_probe_start(thaw_probe_t *p);
/* 1 when the gate is up. */
int thaw_probe_up(const thaw_probe_t *p);
/* Stops; memory goes once the in-flight probe has called back (run the
 * loop). NULL does nothing. */
void thaw_probe_free(thaw_probe_t *p);

#endif
