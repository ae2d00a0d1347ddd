/* lease.c - the webhook's view of the controller's Lease (lease.h): an
 * informer whose record is when the Lease stops counting as held. */
#include "lease.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "informer.h"
#include "log.h"

struct thaw_lease {
  thaw_informer_t *inf;
  int64_t until_ms; /* renewTime + leaseDurationSeconds; 0: no leader */
  int started;
};

/* --- RFC 3339 ------------------------------------------------------------ */

/* n decimal digits at s, or -1. */
static int digits(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so no timegm() and no time zone is involved. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int thaw_lease_time_parse(const char *s, int64_t *ms) {
  static const char shape[] = "dddd-dd-ddTdd:dd:dd";
  if (s == NULL || strlen(s) < sizeof(shape) - 1)
    return THAW_EINVAL;
  for (size_t i = 0; i < sizeof(shape) - 1; i++)
    if (shape[i] != 'd' && shape[i] != s[i] &&
        !(shape[i] == 'T' && s[i] == 't'))
      return THAW_EINVAL;
  int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2),
      h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 ||
      mi < 0 || mi > 59 || se < 0 || se > 60)
    return THAW_EINVAL;
  const char *p = s + 19;
  int frac = 0; /* ms */
  if (*p == '.') {
    int n = 0;
    for (p++; *p >= '0' && *p <= '9'; p++, n++)
      if (n < 3)
        frac = frac * 10 + (*p - '0');
    if (n == 0)
      return THAW_EINVAL;
    for (; n < 3; n++)
      frac *= 10;
  }
  int64_t off = 0; /* seconds east of UTC */
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if ((*p == '+' || *p == '-') && p[3] == ':') {
    int oh = digits(p + 1, 2), om = digits(p + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59)
      return THAW_EINVAL;
    off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    return THAW_EINVAL;
  }
  if (*p != '\0')
    return THAW_EINVAL;
  int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  *ms = (secs - off) * 1000 + frac;
  return 0;
}

int64_t thaw_lease_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
      thaw_lease_time_parse(renew, &renewed) == 0)
    *until = renewed + (int64_t)(dur->valuedouble * 1000);
  *size = sizeof *until;
  return until;
}

static void free_rec(void *rec, void *data) {
  (void)data;
  free(rec);
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
      .free_rec = free_rec,
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
