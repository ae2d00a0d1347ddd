/* nspull.h - the per-namespace pull credentials for private images
 * (docs/design.md, "Confidentiality and integrity of the cache"): in each
 * namespace that may be served private images (labelled
 * thaw.dev/cache-private=true, neither opted out nor excluded) the leader
 * keeps a Secret `thaw-pull` (kubernetes.io/dockerconfigjson for the
 * private cache host, user the namespace, password
 * thaw_token_pull_password), labelled app.kubernetes.io/managed-by=thaw
 * and owned by the CachedImage CRD (uninstalling thaw deletes them); it
 * deletes that Secret once the namespace may no longer have it. A Secret
 * of that name that thaw did not make is left alone (one warning).
 *
 * Each namespace is read with GET (no list or watch of Secrets: the
 * Component grants get, create, update and delete only), at most 4
 * requests at once; a namespace change is acted on within a second, and
 * every namespace is looked at again every 10 minutes (a Secret edited or
 * deleted by hand is put back). Passwords never reach a log. */
#ifndef THAW_NSPULL_H
#define THAW_NSPULL_H

#include <uv.h>

#include "kube.h"
#include "sources.h"
#include "token.h"

#define THAW_NSPULL_SECRET "thaw-pull"

typedef struct thaw_nspull thaw_nspull_t;

typedef struct {
  thaw_kube_t *kube;
  thaw_sources_t *sources; /* observed for namespace changes */
  thaw_token_t *token;     /* derives the passwords */
  const char *host;        /* the private cache host: "localhost:7440" */
} thaw_nspull_opts_t;

/* Returns 0 and sets *out, THAW_ENOMEM, or THAW_E2BIG (no observer slot
 * left on the sources). */
int thaw_nspull_new(uv_loop_t *loop, const thaw_nspull_opts_t *o,
                    thaw_nspull_t **out);
/* Leading: keep the Secrets (looks at every namespace once the sources
 * have synced). Not leading: stop (requests in flight finish). */
void thaw_nspull_set_active(thaw_nspull_t *n, int leading);
/* Namespaces whose thaw-pull Secret is in place now (tests, metrics). */
size_t thaw_nspull_present(const thaw_nspull_t *n);
/* Stops the timer; frees once the loop has run it and nothing is in
 * flight. NULL does nothing. */
void thaw_nspull_free(thaw_nspull_t *n);

#endif
