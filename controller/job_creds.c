/* job_creds.c - credentials for a private image (reconcile_internal.h):
 * the pull secrets of spec.pullSecrets whose namespace is labelled
 * cache-private, or else those the pods using the image name, written back
 * into spec.pullSecrets; then the Secrets are read (pullcreds.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "pullcreds.h"
#include "reconcile_internal.h"

/* --- credentials ------------------------------------------------------ */

static void on_creds(int err, const thaw_regauth_creds_t *creds,
                     const char *message, void *data) {
  job_t *j = data;
  j->refs--;
  if (err == THAW_ECANCELED || j->canceled) {
    thaw_job_end(j, THAW_WQ_SUCCESS, 0);
    return;
  }
  if (err != 0) {
    if (j->phase == THAW_CI_READY)
      thaw_job_refresh_failed(j, message, 0);
    else
      thaw_job_fail(j, message, 0, 1, 1);
    return;
  }
  j->had_creds = 1;
  j->creds = *creds; /* a refresh that finds a new digest warms with them */
  j->creds_then(j, &j->creds);
}

static void add_secret(job_t *j, const char *ns_name, int from_pods) {
  if (j->n_secrets >= sizeof j->secrets / sizeof j->secrets[0])
    return;
  for (size_t i = 0; i < j->n_secrets; i++)
    if (strcmp(j->secrets[i], ns_name) == 0)
      return;
  char *s = strdup(ns_name);
  if (s == NULL)
    return;
  j->secrets[j->n_secrets++] = s;
  j->secrets_from_pods |= from_pods;
}

static void on_pod_secret(const char *ns, const char *name, void *data) {
  job_t *j = data;
  char buf[320];
  snprintf(buf, sizeof buf, "%s/%s", ns, name);
  add_secret(j, buf, 1);
}

static void on_spec_written(const thaw_kube_result_t *res, void *data) {
  (void)data; /* NULL: the job may be gone */
  if (res->err != 0 && res->err != THAW_ECANCELED)
    thaw_warn("spec.pullSecrets not written", "error", thaw_err_name(res->err),
              "message", res->message);
}

/* spec.pullSecrets from what pods use, so the choice is visible and
 * survives a restart. Fire and forget: the next attempt reads it back. */
static void write_spec_secrets(job_t *j) {
  cJSON *patch = cJSON_CreateObject();
  cJSON *spec = patch ? cJSON_AddObjectToObject(patch, "spec") : NULL;
  cJSON *list = spec ? cJSON_AddArrayToObject(spec, "pullSecrets") : NULL;
  for (size_t i = 0; list && i < j->n_secrets; i++) {
    cJSON *e = cJSON_CreateObject();
    char *slash = strchr(j->secrets[i], '/');
    if (e == NULL || slash == NULL) {
      cJSON_Delete(e);
      continue;
    }
    *slash = '\0';
    cJSON_AddStringToObject(e, "namespace", j->secrets[i]);
    cJSON_AddStringToObject(e, "name", slash + 1);
    *slash = '/';
    cJSON_AddItemToArray(list, e);
  }
  thaw_kube_opts_t o = {.name = j->name, .field_manager = "thaw-controller"};
  if (list)
    thaw_kube_merge_patch(j->r->o.kube, &thaw_kube_cachedimages, &o, patch,
                          on_spec_written, NULL);
  cJSON_Delete(patch);
}

/* The private path: usable secrets are those of spec.pullSecrets in
 * namespaces that lend them (labelled cache-private, not opted out, not a
 * system namespace); without any, those pods use. */
int thaw_job_find_creds(job_t *j, const thaw_cirec_t *c,
                        thaw_job_creds_cb then) {
  thaw_reconciler_t *r = j->r;
  j->creds_then = then;
  const char *p = c->pull_secrets;
  for (unsigned i = 0; i < c->n_secrets; i++, p += strlen(p) + 1) {
    char ns[64];
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : 0;
    if (n == 0 || n >= sizeof ns)
      continue;
    memcpy(ns, p, n);
    ns[n] = '\0';
    if (r->o.sources && thaw_sources_ns_lends(r->o.sources, ns))
      add_secret(j, p, 0); /* the same rule as secrets learnt from pods */
  }
  if (j->n_secrets == 0 && c->n_secrets == 0 && r->o.sources)
    thaw_sources_pull_secrets(r->o.sources, j->ref.str, on_pod_secret, j);
  if (j->n_secrets == 0)
    return THAW_ENOENT;
  if (j->secrets_from_pods)
    write_spec_secrets(j);
  char host[THAW_IMGREF_STR_MAX + 1];
  snprintf(host, sizeof host, "%.*s", (int)j->ref.host_len, j->ref.str);
  int rc = thaw_pullcreds_fetch(r->o.kube, host,
                                (const char *const *)j->secrets, j->n_secrets,
                                on_creds, j);
  if (rc == 0)
    j->refs++;
  return rc;
}

