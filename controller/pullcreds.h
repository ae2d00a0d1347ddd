/* pullcreds.h - upstream credentials from kubernetes.io/dockerconfigjson
 * Secrets (spec.pullSecrets of a CachedImage). The secrets are read with
 * GET, one after another in the given order, and the first whose
 * .dockerconfigjson has an entry for the registry host wins. Nothing here
 * logs the secret's content; messages name the secret and the reason. */
#ifndef THAW_PULLCREDS_H
#define THAW_PULLCREDS_H

#include <stddef.h>

#include "kube.h"
#include "regauth.h"

#define THAW_PULLCREDS_MAX 16 /* as spec.pullSecrets' maxItems */

/* err 0 with creds; THAW_ENOENT when no secret had an entry for the host
 * (message says which secrets were tried and why not); THAW_ECANCELED when
 * the kube client went away. creds are valid during the call only. */
typedef void (*thaw_pullcreds_cb)(int err, const thaw_regauth_creds_t *creds,
                                  const char *message, void *data);

/* Starts the lookup for registry `host` over `n` "namespace/name" secrets.
 * Returns 0 (cb runs exactly once, later), or THAW_EINVAL / THAW_ENOMEM. */
int thaw_pullcreds_fetch(thaw_kube_t *kube, const char *host,
                         const char *const *secrets, size_t n,
                         thaw_pullcreds_cb cb, void *data);

/* Finds host's credentials in one Secret object (type
 * kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg, base64 data).
 * Returns 0, THAW_ENOENT (no entry for the host), THAW_EPARSE (wrong type
 * or malformed data). */
int thaw_pullcreds_from_secret(const cJSON *secret, const char *host,
                               thaw_regauth_creds_t *out);

#endif
