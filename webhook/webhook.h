/* webhook.h - thaw-webhook assembled: the Kubernetes client, the index of
 * CachedImages and Namespaces, the recorder, the registry probe, the serving
 * certificate, the metrics and the two listeners, all on one uv loop.
 *
 * Requests are decided from memory only (thaw_admit_review with the index's
 * lookups, the probe's last answer, and the recorder's enqueue). */
#ifndef THAW_WEBHOOK_WEBHOOK_H
#define THAW_WEBHOOK_WEBHOOK_H

#include <stddef.h>
#include <uv.h>

#include "kubeconfig.h"

typedef struct thaw_webhook thaw_webhook_t;

typedef struct {
  const thaw_kube_config_t *kube;   /* copied */
  const char *namespace;            /* the system's namespace */
  const char *exclude_namespaces;   /* "a,b": excluded too; NULL: none */
  const char *registry_url;         /* NULL: no probe, the gate stays down */
  const char *cache_host;           /* "localhost:7439" */
  const char *private_cache_host;   /* "localhost:7440": private images'
                                       rewrites name <it>/private/... */
  const char *bind_address;         /* ":9443" */
  const char *metrics_bind_address; /* ":8080" */
  const char *tls_cert_file, *tls_key_file;
  unsigned cold_wait_s; /* --cold-wait in whole seconds; 0: off, no Lease
                           watch */
} thaw_webhook_config_t;

/* Builds everything (the certificate is loaded, addresses are checked);
 * nothing runs yet. Strings are copied. Returns 0, THAW_ECONFIG with a
 * one-line reason in err, or THAW_ENOMEM. */
int thaw_webhook_new(uv_loop_t *loop, const thaw_webhook_config_t *cfg,
                     thaw_webhook_t **out, char *err, size_t errlen);
/* Listens, starts the informers (and the Lease watch, with cold wait), the
 * probe and the certificate watch.
 * Returns 0 or a negative code with err set (e.g. the port is taken); then
 * call thaw_webhook_stop() all the same. */
int thaw_webhook_start(thaw_webhook_t *wh, char *err, size_t errlen);

/* Called once a stop has finished: clean is 1 when everything was released
 * (run the loop until it is empty, then thaw_webhook_free()), 0 when
 * connections outlived the drain deadline (exit without freeing). */
typedef void (*thaw_webhook_stopped_cb)(int clean, void *data);
/* Graceful stop: no new connections, requests in flight finish, then the
 * informers, recorder, probe and clients are released. Call once. */
void thaw_webhook_stop(thaw_webhook_t *wh, thaw_webhook_stopped_cb cb,
                       void *data);
/* Frees what is left after a clean stop and a run of the loop, or after a
 * failed thaw_webhook_new. NULL does nothing. */
void thaw_webhook_free(thaw_webhook_t *wh);

#endif
