/* admit.h - the webhook's decision: an AdmissionReview request in, the
 * AdmissionReview response out (docs/design.md, "Webhook decision").
 *
 * Pure: no I/O, no clock, no globals. What it needs to know about the cluster
 * (namespaces, CachedImages, the registry probe) comes through the lookup
 * callbacks of thaw_admit_env_t, which must answer from memory. Images to
 * record are handed to env->record, which must only enqueue. */
#ifndef THAW_ADMIT_H
#define THAW_ADMIT_H

#include <stddef.h>

/* Bits of env->namespace_flags(). An unknown namespace is 0. */
enum {
  THAW_NS_OPTED_OUT = 1,     /* label thaw.dev/caching=disabled */
  THAW_NS_CACHE_PRIVATE = 2, /* label thaw.dev/cache-private="true" */
};

/* Answers of env->image_state() for a normalised reference. */
enum thaw_image_state {
  THAW_IMAGE_ABSENT = 0,   /* no CachedImage: record one */
  THAW_IMAGE_PRESENT,      /* a CachedImage exists, not Ready */
  THAW_IMAGE_READY,        /* Ready, public */
  THAW_IMAGE_READY_PRIVATE /* Ready, status.private: needs cache-private */
};

/* Room for a status.digest: "sha256:" + 64 hex + NUL. */
#define THAW_ADMIT_DIGEST_SIZE 72

/* The decision for one container image; the label value of
 * thaw_webhook_images_total{decision}. */
enum thaw_decision {
  THAW_DECISION_REWRITTEN = 0, /* pointed at the cache */
  THAW_DECISION_COLD,          /* not Ready (or absent): unchanged, recorded */
  THAW_DECISION_OPTED_OUT,     /* pod/namespace opted out, system ns, mirror pod */
  THAW_DECISION_INVALID,       /* unparsable: unchanged, with a warning */
  THAW_DECISION_ALREADY,       /* already under the cache host */
  THAW_DECISION_PULL_NEVER,    /* imagePullPolicy: Never */
  THAW_DECISION_REGISTRY_DOWN, /* Ready, but the cache registry probe fails */
  THAW_DECISION_PRIVATE,       /* Ready and private; namespace lacks cache-private */
  THAW_DECISION_COUNT
};

/* "rewritten", "cold", "opted_out", "invalid", "already", "pull_never",
 * "registry_down", "private". */
const char *thaw_decision_name(enum thaw_decision d);

#define THAW_ADMIT_PULL_SECRET "thaw-pull"

typedef struct {
  const char *cache_host;       /* "localhost:7439" */
  /* Where private images are rewritten to, for cache-private namespaces:
   * the node's loopback forward to the cache, and its private/ prefix
   * ("localhost:7440/private"); the pod also gets imagePullSecret
   * THAW_ADMIT_PULL_SECRET. NULL: private images are never rewritten. */
  const char *private_host;
  const char *system_namespace; /* "thaw-system"; kube-system is implied */
  const char *const *excluded_namespaces; /* NULL-ended; may be NULL */
  int registry_up;              /* the health gate, sampled by the caller */
  int (*namespace_flags)(const char *ns, void *data);
  /* For the READY states, also writes the image's status.digest
   * ("sha256:<64 hex>", NUL-ended) into `digest` (THAW_ADMIT_DIGEST_SIZE
   * bytes); a READY answer that leaves it "" is decided cold (row 6). */
  enum thaw_image_state (*image_state)(const char *normalized, char *digest,
                                       void *data);
  /* Called once per distinct normalised reference to record (decision
   * COLD), never on dryRun. May be NULL. */
  void (*record)(const char *normalized, void *data);
  void *data;
  /* Cold wait (docs/design.md): 0 is off; else the whole seconds written
   * to the annotation thaw.dev/cold-wait-seconds of a gated pod. */
  unsigned cold_wait_s;
  /* The Lease thaw-controller is held and fresh (sampled by the caller):
   * a leader exists that will release a gated pod. */
  int leader_fresh;
  /* For an image with a CachedImage none of which is Ready: 1 when one of
   * them is Pending, Warming or has no phase (a warm is to come), 0 when all
   * are Failed or Expiring. Asked only while cold wait is on; NULL is 0. */
  int (*image_pending)(const char *normalized, void *data);
} thaw_admit_env_t;

/* What one review did, for metrics and logs. */
typedef struct {
  unsigned decisions[THAW_DECISION_COUNT];
  unsigned patched;  /* 1 when the response carries a patch */
  unsigned dry_run;
  unsigned gated;    /* 1 when the patch adds the gate thaw.dev/warming */
} thaw_admit_stats_t;

/* Decides `body` (len bytes of JSON, an admission.k8s.io/v1 AdmissionReview)
 * and writes the response AdmissionReview to *out (malloc'd, NUL-terminated,
 * length in *out_len; the caller frees it). The response echoes the uid,
 * always has allowed: true, carries a base64 JSONPatch only when something
 * changed (every op applies to the object as sent: "add
 * /metadata/annotations" comes first when the pod has none), and warnings of
 * at most 120 characters for unparsable images. Kinds other than Pod, and
 * operations other than CREATE of pods and UPDATE of the subresource
 * pods/ephemeralcontainers, pass through with no patch. With cold wait
 * on, a CREATEd pod with a cold image may instead get the scheduling gate
 * thaw.dev/warming and the annotation thaw.dev/cold-wait-seconds, its images
 * left as submitted (docs/design.md, "Cold wait"; admit_gate.c).
 *
 * Returns 0; THAW_EPARSE when the body is not an AdmissionReview with a
 * request.uid (err gets a one-line reason for the 400 answer); THAW_ENOMEM.
 * On error *out is NULL. `stats` may be NULL. */
int thaw_admit_review(const char *body, size_t len, const thaw_admit_env_t *env,
                      char **out, size_t *out_len, thaw_admit_stats_t *stats,
                      char *err, size_t errlen);

#endif
