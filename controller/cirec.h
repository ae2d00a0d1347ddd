/* cirec.h - the controller's compact record of one CachedImage (what its
 * informer keeps), and the RFC 3339 times its status carries. */
#ifndef THAW_CIREC_H
#define THAW_CIREC_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum thaw_ci_phase {
  THAW_CI_NONE = 0, /* no status yet: treated as Pending */
  THAW_CI_PENDING,
  THAW_CI_WARMING,
  THAW_CI_READY,
  THAW_CI_EXPIRING,
  THAW_CI_FAILED,
  THAW_CI_PHASES
};

enum {
  THAW_CI_PRIVATE = 1,
  THAW_CI_RETAIN = 2,
  THAW_CI_EVICTED = 4, /* Expiring because the cache is over its bound
                          (Ready condition reason "Evicted") */
  THAW_CI_FULL = 8,    /* Pending because the cache is full (reason
                          "CacheFull") */
};

/* One allocation: fixed fields, then the strings. pull_secrets holds
 * n_secrets "namespace/name" strings back to back, each NUL-ended. */
typedef struct {
  uint8_t phase;          /* enum thaw_ci_phase */
  uint8_t flags;
  uint8_t n_secrets;
  uint32_t attempts;
  int64_t size_bytes;
  time_t last_checked;    /* status.lastCheckedAt, 0 if absent */
  time_t created;         /* metadata.creationTimestamp */
  time_t cached_at;       /* status.cachedAt, 0 if absent */
  time_t last_used;       /* status.lastUsedAt, 0 if absent */
  time_t expires_at;      /* status.expiresAt, 0 if absent */
  uint64_t expire_after_ms; /* spec.expireAfter; 0 = the flag's */
  /* status.usedBy as written: counts, and a hash of its pods list */
  uint32_t used_pods, used_templates, used_hash;
  const char *uid;
  const char *image;      /* spec.image as written */
  const char *norm;       /* spec.image normalised; "" if it does not parse */
  const char *digest;     /* status.digest, "" if absent */
  const char *upstream;   /* status.upstreamDigest, "" if absent */
  const char *pull_secrets;
  char buf[];
} thaw_cirec_t;

/* Informer callbacks (informer.h); `data` is unused. */
void *thaw_cirec_project(const cJSON *obj, size_t *size, void *data);
void thaw_cirec_free(void *rec, void *data);
int thaw_cirec_equal(const void *a, const void *b, void *data);

/* "Pending", "Warming", ... ("Pending" for NONE). */
const char *thaw_ci_phase_name(enum thaw_ci_phase p);

/* 1 when the two records' specs (image, pull secrets) differ. */
int thaw_cirec_spec_changed(const thaw_cirec_t *a, const thaw_cirec_t *b);

/* The hash of a usedBy.pods list (FNV-1a over each string and its NUL). */
uint32_t thaw_cirec_pods_hash(const char *const *pods, size_t n);

/* Status patch helpers. */
#define THAW_CI_MESSAGE_MAX 1024 /* status.message maxLength in the CRD */
/* key: the RFC 3339 time t. */
void thaw_cirec_add_time(cJSON *o, const char *key, time_t t);
/* conditions: [the Ready condition] (a merge patch replaces the list);
 * msg cut to THAW_CI_MESSAGE_MAX. */
void thaw_cirec_add_ready(cJSON *o, int ready, const char *reason,
                          const char *msg);

/* RFC 3339 in UTC ("2026-11-26T21:00:00Z") into buf (at least 21 bytes). */
void thaw_rfc3339(time_t t, char *buf, size_t cap);
/* Parses RFC 3339 (Z or an offset; fractions ignored). 0 when malformed. */
time_t thaw_rfc3339_parse(const char *s);

#endif
