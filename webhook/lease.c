/* lease.c - the webhook's view of the controller's Lease (lease.h): an
 * informer whose record is when the Lease stops counting as held. */
#include "lease.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "informer.h"
#include "log.h"
#include "store.h"

struct thaw_lease {
  thaw_informer_t *inf;
  int64_t until_ms; /* renewTime + leaseDurationSeconds; 0: no leader */
  int started;
};

/* --- the informer -------------------------------------------------------- */

/* The record: until when the Lease counts as held (0: never). It needs no
 * context, so the informer may free it after the thaw_lease_t is gone. */
static void *project(const cJSON *obj, size_t *size, void *data) {
  (void)data;
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
  const char *holder = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(spec, "holderIdentity"));
  const char *renew = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(spec, "renewTime"));
  const cJSON *dur =
      cJSON_GetObjectItemCaseSensitive(spec, "leaseDurationSeconds");
  int64_t *until = malloc(sizeof *until);
  if (until == NULL)
    return NULL;
  int64_t renewed;
  *until = 0;
  if (holder != NULL && *holder && cJSON_IsNumber(dur) &&
      dur->valuedouble > 0 && dur->valuedouble < 1e6 &&
      thaw_time_parse_ms(renew, &renewed) == 0)
    *until = renewed + (int64_t)(dur->valuedouble * 1000);
  *size = sizeof *until;
  return until;
}

static int equal(const void *a, const void *b, void *data) {
  (void)data;
  return *(const int64_t *)a == *(const int64_t *)b;
}

static void on_add(const char *key, const void *rec, void *data) {
  (void)key;
  thaw_lease_t *l = data;
  l->until_ms = *(const int64_t *)rec;
}

static void on_update(const char *key, const void *old_rec,
                      const void *new_rec, void *data) {
  (void)old_rec;
  on_add(key, new_rec, data);
}

static void on_delete(const char *key, const void *rec, void *data) {
  (void)key;
  (void)rec;
  thaw_lease_t *l = data;
  l->until_ms = 0;
}

int thaw_lease_new(uv_loop_t *loop, thaw_kube_t *kube, const char *ns,
                   const char *name, thaw_lease_t **out) {
  *out = NULL;
  if (ns == NULL || name == NULL || strlen(name) > 253)
    return THAW_EINVAL;
  thaw_lease_t *l = calloc(1, sizeof *l);
  if (l == NULL)
    return THAW_ENOMEM;
  char sel[300];
  memcpy(sel, "metadata.name=", 14);
  memcpy(sel + 14, name, strlen(name) + 1);
  thaw_informer_config_t cfg = {
      .resource = &thaw_kube_leases,
      .namespace = ns,
      .field_selector = sel,
      .name = "lease",
      .project = project,
      .free_rec = thaw_store_free_plain,
      .equal = equal,
      .handlers = {.on_add = on_add, .on_update = on_update,
                   .on_delete = on_delete, .data = l},
  };
  int rc = thaw_informer_new(loop, kube, &cfg, &l->inf);
  if (rc != 0) {
    free(l);
    return rc;
  }
  *out = l;
  return 0;
}

int thaw_lease_start(thaw_lease_t *l) {
  if (l->started)
    return THAW_EINVAL;
  l->started = 1;
  return thaw_informer_start(l->inf);
}

int thaw_lease_fresh(const thaw_lease_t *l, int64_t now_ms) {
  return l != NULL && l->until_ms > now_ms;
}

void thaw_lease_free(thaw_lease_t *l) {
  if (l == NULL)
    return;
  thaw_informer_free(l->inf); /* no handler runs after this */
  free(l);
}
