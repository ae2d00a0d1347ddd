/* cirec.c - the compact CachedImage record and RFC 3339 times (cirec.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* timegm, strptime */
#endif
#include "cirec.h"

#include "clock.h"
#include "imgref.h"
#include "units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const phase_names[THAW_CI_PHASES] = {
    "Pending", "Pending", "Warming", "Ready", "Expiring", "Failed"};

const char *thaw_ci_phase_name(enum thaw_ci_phase p) {
  return (unsigned)p < THAW_CI_PHASES ? phase_names[p] : "Pending";
}

static const cJSON *field(const cJSON *o, const char *name) {
  return cJSON_GetObjectItemCaseSensitive(o, name);
}

static const char *str_or_empty(const cJSON *o, const char *name) {
  const char *s = cJSON_GetStringValue(field(o, name));
  return s ? s : "";
}

static enum thaw_ci_phase parse_phase(const char *s) {
  for (int p = THAW_CI_PENDING; p < THAW_CI_PHASES; p++)
    if (strcmp(s, phase_names[p]) == 0)
      return p;
  return THAW_CI_NONE;
}

/* Writes src plus its NUL at *at (when buf is not NULL); returns the
 * pointer the record will hold. */
static const char *put(char *buf, size_t *at, const char *src) {
  size_t n = strlen(src) + 1;
  const char *p = buf ? buf + *at : NULL;
  if (buf)
    memcpy(buf + *at, src, n);
  *at += n;
  return p;
}

/* Lays the strings out twice: once to size, once to copy. */
static size_t layout(thaw_cirec_t *r, const cJSON *obj) {
  const cJSON *spec = field(obj, "spec"), *status = field(obj, "status");
  char *buf = r ? r->buf : NULL;
  size_t at = 0;
  const char *uid = str_or_empty(field(obj, "metadata"), "uid");
  const char *image = str_or_empty(spec, "image");
  const char *digest = str_or_empty(status, "digest");
  const char *upstream = str_or_empty(status, "upstreamDigest");
  thaw_imgref_t ref;
  const char *norm =
      thaw_imgref_parse(image, strlen(image), &ref) == 0 ? ref.str : "";
  const char *u = put(buf, &at, uid), *i = put(buf, &at, image),
             *d = put(buf, &at, digest), *up = put(buf, &at, upstream),
             *no = put(buf, &at, norm);
  const char *secrets = buf ? buf + at : NULL;
  unsigned n = 0;
  const cJSON *s;
  cJSON_ArrayForEach(s, field(spec, "pullSecrets")) {
    const char *ns = cJSON_GetStringValue(field(s, "namespace"));
    const char *name = cJSON_GetStringValue(field(s, "name"));
    if (ns == NULL || name == NULL || *ns == '\0' || *name == '\0' || n == 255)
      continue;
    size_t a = strlen(ns), b = strlen(name);
    if (buf) {
      memcpy(buf + at, ns, a);
      buf[at + a] = '/';
      memcpy(buf + at + a + 1, name, b + 1);
    }
    at += a + b + 2;
    n++;
  }
  if (r) {
    r->uid = u;
    r->image = i;
    r->digest = d;
    r->upstream = up;
    r->norm = no;
    r->pull_secrets = secrets;
    r->n_secrets = (uint8_t)n;
  }
  return at;
}

void *thaw_cirec_project(const cJSON *obj, size_t *size, void *data) {
  (void)data;
  if (!cJSON_IsObject(obj))
    return NULL;
  size_t n = layout(NULL, obj);
  thaw_cirec_t *r = calloc(1, sizeof(*r) + n);
  if (r == NULL)
    return NULL;
  layout(r, obj);
  const cJSON *spec = field(obj, "spec"), *status = field(obj, "status");
  r->phase = (uint8_t)parse_phase(str_or_empty(status, "phase"));
  if (cJSON_IsTrue(field(status, "private")))
    r->flags |= THAW_CI_PRIVATE;
  if (cJSON_IsTrue(field(spec, "retain")))
    r->flags |= THAW_CI_RETAIN;
  double a = cJSON_GetNumberValue(field(status, "attempts"));
  r->attempts = a > 0 && a < 1e9 ? (uint32_t)a : 0;
  double sz = cJSON_GetNumberValue(field(status, "sizeBytes"));
  r->size_bytes = sz > 0 && sz < 9e18 ? (int64_t)sz : 0;
  r->last_checked = thaw_rfc3339_parse(str_or_empty(status, "lastCheckedAt"));
  r->created = thaw_rfc3339_parse(
      str_or_empty(field(obj, "metadata"), "creationTimestamp"));
  r->cached_at = thaw_rfc3339_parse(str_or_empty(status, "cachedAt"));
  r->last_used = thaw_rfc3339_parse(str_or_empty(status, "lastUsedAt"));
  r->expires_at = thaw_rfc3339_parse(str_or_empty(status, "expiresAt"));
  uint64_t ea;
  const char *eas = cJSON_GetStringValue(field(spec, "expireAfter"));
  if (eas != NULL && thaw_parse_duration(eas, &ea) == 0)
    r->expire_after_ms = ea;
  const cJSON *used = field(status, "usedBy");
  double cnt = cJSON_GetNumberValue(field(used, "count"));
  r->used_pods = cnt > 0 && cnt < 4e9 ? (uint32_t)cnt : 0;
  cnt = cJSON_GetNumberValue(field(used, "templates"));
  r->used_templates = cnt > 0 && cnt < 4e9 ? (uint32_t)cnt : 0;
  const char *pods[10];
  size_t np = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, field(used, "pods")) {
    if (np < 10 && cJSON_IsString(p))
      pods[np++] = p->valuestring;
  }
  r->used_hash = thaw_cirec_pods_hash(pods, np);
  const cJSON *c;
  cJSON_ArrayForEach(c, field(status, "conditions")) {
    if (strcmp(str_or_empty(c, "type"), "Ready") != 0)
      continue;
    if (strcmp(str_or_empty(c, "reason"), "Evicted") == 0)
      r->flags |= THAW_CI_EVICTED;
    if (strcmp(str_or_empty(c, "reason"), "CacheFull") == 0)
      r->flags |= THAW_CI_FULL;
  }
  *size = sizeof(*r) + n;
  return r;
}

uint32_t thaw_cirec_pods_hash(const char *const *pods, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    for (const char *p = pods[i];; p++) {
      h = (h ^ (uint8_t)*p) * 16777619u;
      if (*p == '\0')
        break;
    }
  return h;
}

void thaw_cirec_free(void *rec, void *data) {
  (void)data;
  free(rec);
}

static int secrets_equal(const thaw_cirec_t *a, const thaw_cirec_t *b) {
  if (a->n_secrets != b->n_secrets)
    return 0;
  const char *p = a->pull_secrets, *q = b->pull_secrets;
  for (unsigned i = 0; i < a->n_secrets; i++) {
    if (strcmp(p, q) != 0)
      return 0;
    p += strlen(p) + 1;
    q += strlen(q) + 1;
  }
  return 1;
}

int thaw_cirec_spec_changed(const thaw_cirec_t *a, const thaw_cirec_t *b) {
  return strcmp(a->image, b->image) != 0 || !secrets_equal(a, b) ||
         a->expire_after_ms != b->expire_after_ms ||
         (a->flags & THAW_CI_RETAIN) != (b->flags & THAW_CI_RETAIN);
}

int thaw_cirec_equal(const void *va, const void *vb, void *data) {
  (void)data;
  const thaw_cirec_t *a = va, *b = vb;
  return a->phase == b->phase && a->flags == b->flags &&
         a->attempts == b->attempts && a->size_bytes == b->size_bytes &&
         a->last_checked == b->last_checked && a->created == b->created &&
         a->cached_at == b->cached_at && a->last_used == b->last_used &&
         a->expires_at == b->expires_at &&
         a->expire_after_ms == b->expire_after_ms &&
         a->used_pods == b->used_pods &&
         a->used_templates == b->used_templates &&
         a->used_hash == b->used_hash && strcmp(a->uid, b->uid) == 0 &&
         strcmp(a->digest, b->digest) == 0 &&
         strcmp(a->upstream, b->upstream) == 0 && !thaw_cirec_spec_changed(a, b);
}

void thaw_cirec_add_time(cJSON *o, const char *key, time_t t) {
  char buf[32];
  thaw_rfc3339(t, buf, sizeof buf);
  cJSON_AddStringToObject(o, key, buf);
}

void thaw_cirec_add_ready(cJSON *o, int ready, const char *reason,
                          const char *msg) {
  cJSON *list = cJSON_AddArrayToObject(o, "conditions");
  cJSON *c = cJSON_CreateObject();
  if (list == NULL || c == NULL) {
    cJSON_Delete(c);
    return;
  }
  cJSON_AddItemToArray(list, c);
  cJSON_AddStringToObject(c, "type", "Ready");
  cJSON_AddStringToObject(c, "status", ready ? "True" : "False");
  cJSON_AddStringToObject(c, "reason", reason);
  char buf[THAW_CI_MESSAGE_MAX + 1];
  snprintf(buf, sizeof buf, "%s", msg ? msg : "");
  cJSON_AddStringToObject(c, "message", buf);
  thaw_cirec_add_time(c, "lastTransitionTime", time(NULL));
}

void thaw_rfc3339(time_t t, char *buf, size_t cap) {
  struct tm tm;
  gmtime_r(&t, &tm);
  if (strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 && cap > 0)
    buf[0] = '\0';
}

time_t thaw_rfc3339_parse(const char *s) {
  int64_t ms;
  if (s == NULL || thaw_time_parse_ms(s, &ms) != 0)
    return 0;
  return (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
}
