/* podinfo.h - the compact projection of a Pod that thaw keeps in its pod
 * informer: which images a pod uses, and whether it counts.
 *
 * A record is one allocation: a flags byte, counts, then pointers into a
 * shared intern table (intern.h), so 100,000 pods of the same 3 images cost
 * 8 bytes per image reference. The namespace/name is the informer's key and
 * is not repeated here. Records are immutable once built.
 *
 * A pod held by the cold wait's scheduling gate (thaw.dev/warming) carries
 * a little more, after its refs (thaw_podinfo_gate()): what the release of
 * gated pods needs. Other pods pay nothing for it. */
#ifndef THAW_PODINFO_H
#define THAW_PODINFO_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "intern.h"

/* flags: the phase in the low 3 bits, then single-bit facts. */
enum {
  THAW_POD_PHASE_MASK = 0x07,
  THAW_POD_PHASE_UNKNOWN = 0, /* absent or unrecognised */
  THAW_POD_PHASE_PENDING = 1,
  THAW_POD_PHASE_RUNNING = 2,
  THAW_POD_PHASE_SUCCEEDED = 3,
  THAW_POD_PHASE_FAILED = 4,
  THAW_POD_OPTED_OUT = 0x08,  /* label thaw.dev/caching=disabled */
  THAW_POD_TERMINATED = 0x10, /* phase Succeeded or Failed */
  THAW_POD_DELETING = 0x20,   /* metadata.deletionTimestamp is set */
  THAW_POD_PULL_FAILING = 0x40, /* a container or init container waits in
                                   ErrImagePull or ImagePullBackOff */
  /* 0x80 is left to users of the record (sources.h: mirror pods) */
};

#define THAW_PODINFO_MAX_REFS 255

#define THAW_PODINFO_GATE "thaw.dev/warming"              /* scheduling gate */
#define THAW_PODINFO_COLD_WAIT "thaw.dev/cold-wait-seconds" /* annotation */
#define THAW_PODINFO_COLD_WAIT_DEFAULT 30
#define THAW_PODINFO_COLD_WAIT_MAX 300

typedef struct {
  uint8_t flags;
  uint8_t n_images;    /* distinct images of containers, initContainers
                          and ephemeralContainers, in that order */
  uint8_t n_originals; /* distinct values of thaw.dev/original-images */
  uint8_t gated;       /* 1: spec.schedulingGates names THAW_PODINFO_GATE
                          and thaw_podinfo_gate() has the rest */
  const char *refs[];  /* n_images images, then n_originals originals;
                          interned, owned by the record */
} thaw_podinfo_t;

/* What a gated pod carries beyond the record (in the same allocation). */
typedef struct {
  /* Bit i set: refs[i] is the image of a container or init container whose
   * imagePullPolicy is not Never, i.e. one the cold wait may wait for
   * (ephemeral containers never are). Only the first 64 refs have a bit. */
  uint64_t waited;
  uint16_t wait_s;     /* thaw_podinfo_cold_wait() of the annotation */
  const char *uid;     /* metadata.uid ("" if absent) */
  const char *created; /* metadata.creationTimestamp as written ("" if
                          absent) */
  char buf[];
} thaw_podinfo_gate_t;

/* The informer projection (see informer.h): builds the record of a Pod
 * object. `data` is the thaw_intern_t * to intern into; *size gets the
 * record's bytes. Returns NULL when out of memory or when `pod` is not an
 * object. Refs beyond THAW_PODINFO_MAX_REFS are dropped with a warning. */
void *thaw_podinfo_project(const cJSON *pod, size_t *size, void *data);

/* The gated pod's extra fields, or NULL when the pod is not gated. */
const thaw_podinfo_gate_t *thaw_podinfo_gate(const thaw_podinfo_t *p);

/* The cold wait in seconds that annotation value `v` asks for
 * (docs/design.md "Release of gated pods"): a whole number 0-300 (decimal
 * digits only), else (absent, NULL, anything else)
 * THAW_PODINFO_COLD_WAIT_DEFAULT. */
int thaw_podinfo_cold_wait(const char *v);

/* Releases a record and its string references; `data` is the intern table.
 * NULL does nothing. */
void thaw_podinfo_free(void *rec, void *data);

/* 1 when two records hold the same flags, images and originals. */
int thaw_podinfo_equal(const void *a, const void *b, void *data);

/* 1 when the pod uses `image` exactly (as a container image or as a
 * recorded original). */
int thaw_podinfo_uses(const thaw_podinfo_t *p, const char *image);

#endif
