/* admit_internal.h - what the parts of the webhook's decision share; not a
 * public API (admit.h is).
 *
 *   admit_parse.c  the review view: one validating pass over the body that
 *                  keeps spans of the fields the decision reads; per-review
 *                  scratch memory; decoded strings
 *   admit.c        the decision, container by container
 *   admit_reply.c  the reply: warnings, the annotation, the JSON Patch, the
 *                  AdmissionReview response
 *   admit_gate.c   cold wait: the scheduling gate instead of rewrites
 *
 * Nothing here is global: a review's whole state is one admit_review_t on
 * the caller's stack, so thaw_admit_review() is reentrant. */
#ifndef THAW_ADMIT_INTERNAL_H
#define THAW_ADMIT_INTERNAL_H

#include <stdint.h>

#include "admit.h"
#include "jsontok.h"
#include "patch.h"

#define THAW_ADMIT_ANNOTATION "thaw.dev/original-images"
#define THAW_ADMIT_MIRROR "kubernetes.io/config.mirror"
#define THAW_ADMIT_GATE "thaw.dev/warming"
#define THAW_ADMIT_COLD_WAIT "thaw.dev/cold-wait-seconds"

/* Bytes, not NUL-terminated unless said. */
typedef struct {
  const char *p;
  size_t n;
} admit_str_t;

/* Scratch memory of one review: a block inside the struct, then heap
 * chunks, all released by thaw_admit_arena_free(). */
typedef struct admit_chunk admit_chunk_t;
typedef struct {
  char *p;
  size_t left;
  admit_chunk_t *chunks;
  _Alignas(16) char block[2048];
} admit_arena_t;

void thaw_admit_arena_init(admit_arena_t *a);
/* n bytes aligned for any object, or NULL (THAW_ENOMEM). */
void *thaw_admit_arena_alloc(admit_arena_t *a, size_t n);
void thaw_admit_arena_free(admit_arena_t *a);

/* Container lists of a pod spec (annotation keys use prefix[list]), and
 * oldObject.spec.ephemeralContainers. */
enum admit_list {
  LIST_INIT = 0,
  LIST_CONTAINERS,
  LIST_EPHEMERAL,
  LIST_OLD_EPHEMERAL,
  LIST_COUNT
};

/* A container of a list: only those with a string image (with a string
 * name for LIST_OLD_EPHEMERAL) are kept, since no other can be decided. */
typedef struct admit_ctr {
  struct admit_ctr *next;
  size_t index; /* its position in the list, other elements counted */
  thaw_jval_t name, image, pull_policy;
} admit_ctr_t;

/* The fields of an AdmissionReview that the decision reads, as spans of the
 * body; type THAW_JSON_NONE when absent. A field under an object is only
 * set when that object is one (as cJSON's lookups on a non-object gave
 * nothing), and the first of duplicate keys wins (as in cJSON). */
typedef struct {
  thaw_jval_t root, request;
  thaw_jval_t uid, kind, kind_kind, kind_group, resource, res_resource,
      res_group, operation, sub_resource, dry_run, ns;
  thaw_jval_t object, metadata, meta_ns, labels, caching, annotations,
      original, mirror, spec, node_name, gates, pull_secrets, old_object,
      old_spec;
  thaw_jval_t lists[LIST_COUNT];
  admit_ctr_t *ctrs[LIST_COUNT]; /* in order; in the arena */
} admit_view_t;

/* Fills *v from the body in one validating pass; containers go to the
 * arena. Returns 0; THAW_EPARSE with a one-line reason in err when the body
 * is not one valid JSON value (NUL bytes, syntax, trailing data, nesting
 * over THAW_JSON_DEPTH_MAX); THAW_ENOMEM. */
int thaw_admit_view(const char *body, size_t len, admit_arena_t *a,
                    admit_view_t *v, char *err, size_t errlen);

/* The decoded bytes of string `v` in *out: the body's own bytes when it has
 * no escape, else a copy in the arena. `cstr` asks for a NUL after them
 * (always a copy then, unless empty). Returns 1; 0 when v is not a string
 * (*out is then ""); THAW_ENOMEM. */
int thaw_admit_str(admit_arena_t *a, const thaw_jval_t *v, admit_str_t *out,
                   int cstr);

/* An open-addressing set of (tag, bytes) keys, so each lookup is O(1)
 * however many containers a hostile pod has. Keys are not copied: they must
 * outlive the set (body or arena). Starts inline; grows on the heap. */
typedef struct {
  const char *s; /* NULL: empty slot */
  uint32_t len;
  uint32_t tag;
} admit_skey_t;

typedef struct {
  admit_skey_t *slot;
  size_t cap; /* power of two */
  size_t n;
  admit_skey_t inl[16];
} admit_sset_t;

void thaw_admit_sset_init(admit_sset_t *set);
void thaw_admit_sset_free(admit_sset_t *set);
int thaw_admit_sset_has(const admit_sset_t *set, const char *s, size_t len,
                        uint32_t tag);
/* 1 if added, 0 if already there, THAW_ENOMEM. */
int thaw_admit_sset_add(admit_sset_t *set, const char *s, size_t len,
                        uint32_t tag);

/* How the annotation is written when something was rewritten. */
enum admit_ann_mode {
  ANN_SKIP = 0, /* not at all (no metadata, or existing value invalid) */
  ANN_ADD_ALL,  /* add /metadata/annotations {ANNOTATION: ...} */
  ANN_ADD_KEY,  /* add /metadata/annotations/thaw.dev~1original-images */
  ANN_MERGE     /* replace it with the old text plus new keys */
};

/* One review. The three text buffers start on the inline storage. */
typedef struct {
  const thaw_admit_env_t *env;
  thaw_admit_stats_t *st;
  int opted_out;
  int dry_run;
  int ns_flags;
  int cold; /* an image is cold with a warm to come: cold wait may gate */
  int private_rw; /* a private image was rewritten: it needs thaw-pull */
  enum admit_ann_mode ann_mode;
  admit_str_t ann_old; /* existing annotation text (ANN_MERGE) */
  int ann_old_empty;   /* it is an empty object */
  int ann_invalid;     /* it exists but is not a JSON object string */
  thaw_jbuf_t ops;     /* "[" + image ops */
  thaw_jbuf_t reverts; /* "[" + the ops of private images' cache paths put
                          back to their originals: a gated pod keeps them */
  thaw_jbuf_t ann;     /* new annotation entries, comma-separated */
  unsigned nann;
  thaw_jbuf_t warn; /* warning strings, comma-separated */
  unsigned nwarn;
  admit_sset_t keys;     /* annotation keys, existing and added */
  admit_sset_t recorded; /* references handed to env->record */
  int err;
  /* Set up by their own init functions, not by zeroing: */
  admit_view_t view;
  admit_arena_t arena;
  char ops_buf[512], ann_buf[256], warn_buf[256], reverts_buf[128];
} admit_review_t;

/* The first error of the review is kept. */
void thaw_admit_set_err(admit_review_t *r, int rc);

/* Warnings: "thaw: image ... not cached: <why>", or a whole text. */
void thaw_admit_warn_image(admit_review_t *r, admit_str_t image,
                           admit_str_t name, const char *why);
void thaw_admit_warn_text(admit_review_t *r, const char *text);

/* Reads the existing annotation: chooses ann_mode and seeds r->keys. */
void thaw_admit_annotation_setup(admit_review_t *r);
/* Records the original image under "<prefix><name>" unless the key exists. */
void thaw_admit_add_original(admit_review_t *r, enum admit_list l,
                             admit_str_t name, admit_str_t image);

/* Cold wait, after every container of a CREATE was decided: when the pod
 * is to wait (admit_gate.c has the conditions), replaces r->ops and the
 * annotation entries with the cold-wait annotation op and the gate op. */
void thaw_admit_gate(admit_review_t *r);

/* Writes the response AdmissionReview: the patch (when r->ops has an op),
 * warnings; *out is malloc'd. Returns 0 or a THAW_E* code. */
int thaw_admit_reply(admit_review_t *r, char **out, size_t *out_len);

#endif
