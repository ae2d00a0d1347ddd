/* admit_parse.c - the review view: one validating pass over an
 * AdmissionReview that keeps spans of the fields the decision reads, and
 * skips the rest (managedFields and all) without building anything; the
 * per-review arena; decoded strings (admit_internal.h). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit_internal.h"
#include "error.h"

/* The server refuses bodies over 3 MiB; this bounds any other caller. */
#define BODY_MAX (16u << 20)

/* --- arena ---------------------------------------------------------------- */

struct admit_chunk {
  admit_chunk_t *next;
  char data[];
};

void thaw_admit_arena_init(admit_arena_t *a) {
  a->p = a->block;
  a->left = sizeof(a->block);
  a->chunks = NULL;
}

char *thaw_admit_arena_alloc(admit_arena_t *a, size_t n) {
  if (n <= a->left) {
    char *p = a->p;
    a->p += n;
    a->left -= n;
    return p;
  }
  size_t cap = n > 4096 ? n : 4096;
  if (cap > ((size_t)-1) - sizeof(admit_chunk_t))
    return NULL;
  admit_chunk_t *c = malloc(sizeof(*c) + cap);
  if (!c)
    return NULL;
  c->next = a->chunks;
  a->chunks = c;
  a->p = c->data + n;
  a->left = cap - n;
  return c->data;
}

void thaw_admit_arena_free(admit_arena_t *a) {
  while (a->chunks) {
    admit_chunk_t *next = a->chunks->next;
    free(a->chunks);
    a->chunks = next;
  }
  thaw_admit_arena_init(a);
}

int thaw_admit_str(admit_arena_t *a, const thaw_jval_t *v, admit_str_t *out,
                   int cstr) {
  out->p = "";
  out->n = 0;
  if (v->type != THAW_JSON_STRING)
    return 0;
  if (!v->esc && (!cstr || v->len == 2)) {
    out->p = v->p + 1;
    out->n = v->len - 2;
    return 1;
  }
  size_t cap = THAW_JSON_DECODED_MAX(v);
  char *buf = thaw_admit_arena_alloc(a, cap);
  if (!buf)
    return THAW_ENOMEM;
  thaw_json_str_decode(v, buf, cap, &out->n); /* fits: cap is the bound */
  out->p = buf;
  return 1;
}

/* --- the view --------------------------------------------------------------
 * A table per object of interest: a member whose key is listed is kept in
 * its slot of the view, and walked into when it has a table and is an
 * object; every other member is validated and skipped. */

typedef struct field {
  const char *key;
  size_t klen;
  size_t slot; /* offsetof(admit_view_t, ...) */
  const struct field *sub;
  size_t nsub;
} field_t;

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define F(k, s) {k, sizeof(k) - 1, offsetof(admit_view_t, s), NULL, 0}
#define FS(k, s, t) {k, sizeof(k) - 1, offsetof(admit_view_t, s), t, N(t)}

static const field_t labels_f[] = {F("thaw.dev/caching", caching)};
static const field_t anns_f[] = {F(THAW_ADMIT_ANNOTATION, original),
                                 F(THAW_ADMIT_MIRROR, mirror)};
static const field_t meta_f[] = {F("namespace", meta_ns),
                                 FS("labels", labels, labels_f),
                                 FS("annotations", annotations, anns_f)};
static const field_t spec_f[] = {
    F("initContainers", lists[LIST_INIT]),
    F("containers", lists[LIST_CONTAINERS]),
    F("ephemeralContainers", lists[LIST_EPHEMERAL])};
static const field_t object_f[] = {FS("metadata", metadata, meta_f),
                                   FS("spec", spec, spec_f)};
static const field_t old_spec_f[] = {
    F("ephemeralContainers", old_ephemeral)};
static const field_t old_f[] = {FS("spec", old_spec, old_spec_f)};
static const field_t kind_f[] = {F("kind", kind_kind),
                                 F("group", kind_group)};
static const field_t res_f[] = {F("resource", res_resource),
                                F("group", res_group)};
static const field_t request_f[] = {
    F("uid", uid),
    FS("kind", kind, kind_f),
    FS("resource", resource, res_f),
    F("operation", operation),
    F("subResource", sub_resource),
    F("dryRun", dry_run),
    F("namespace", ns),
    FS("object", object, object_f),
    FS("oldObject", old_object, old_f)};
static const field_t root_f[] = {FS("request", request, request_f)};

/* Walks the members of the object the cursor has just entered. Depth is
 * bounded by the tables (at most 5 levels). */
static void walk(thaw_jcur_t *c, admit_view_t *v, const field_t *f,
                 size_t nf) {
  thaw_jval_t key;
  while (thaw_jcur_member(c, &key)) {
    thaw_jval_t *slot = NULL;
    const field_t *hit = NULL;
    for (size_t i = 0; i < nf && !hit; i++)
      if (thaw_json_str_eq(&key, f[i].key, f[i].klen))
        hit = &f[i];
    if (hit) {
      slot = (thaw_jval_t *)(void *)((char *)v + hit->slot);
      if (slot->type != THAW_JSON_NONE)
        slot = NULL; /* a duplicate key: the first one counts */
    }
    if (slot && hit->sub && thaw_jcur_peek(c) == THAW_JSON_OBJECT) {
      const char *start = c->p;
      thaw_jcur_enter(c, THAW_JSON_OBJECT);
      walk(c, v, hit->sub, hit->nsub);
      if (c->err)
        return;
      /* The cursor stands after the '}' and any blanks. */
      const char *end = c->p;
      while (end > start && end[-1] != '}')
        end--;
      *slot = (thaw_jval_t){start, (size_t)(end - start), THAW_JSON_OBJECT,
                            0};
    } else if (!thaw_jcur_take(c, slot)) {
      return;
    }
  }
}

static void reason(char *err, size_t errlen, const char *why,
                   const thaw_jcur_t *c) {
  if (!err || !errlen)
    return;
  if (c)
    snprintf(err, errlen, "%s: %s at byte %zu", why,
             thaw_json_strerror(c->err), (size_t)(c->err_at - c->base));
  else
    snprintf(err, errlen, "%s", why);
}

int thaw_admit_view(const char *body, size_t len, admit_view_t *v, char *err,
                    size_t errlen) {
  memset(v, 0, sizeof(*v));
  /* A raw NUL is never valid JSON; say so plainly. */
  if (!body || len > BODY_MAX || memchr(body, '\0', len)) {
    reason(err, errlen,
           !body            ? "request body is not valid JSON"
           : len > BODY_MAX ? "request body too large"
                            : "NUL byte in the request body",
           NULL);
    return THAW_EPARSE;
  }
  thaw_jcur_t c;
  thaw_jcur_init(&c, body, len, THAW_JSON_DEPTH_MAX);
  if (thaw_jcur_peek(&c) == THAW_JSON_OBJECT) {
    v->root = (thaw_jval_t){body, len, THAW_JSON_OBJECT, 0};
    thaw_jcur_enter(&c, THAW_JSON_OBJECT);
    walk(&c, v, root_f, N(root_f));
  } else {
    thaw_jcur_take(&c, &v->root);
  }
  if (thaw_jcur_finish(&c) != 0) {
    reason(err, errlen,
           c.err == THAW_JSON_E_TRAILING ? "trailing data after the JSON body"
                                         : "request body is not valid JSON",
           &c);
    memset(v, 0, sizeof(*v));
    return THAW_EPARSE;
  }
  return 0;
}

/* --- containers ------------------------------------------------------------ */

void thaw_admit_container(const thaw_jval_t *obj, admit_container_t *ct) {
  memset(ct, 0, sizeof(*ct));
  thaw_jiter_t it;
  thaw_jval_t k, val;
  thaw_jiter_init(&it, obj);
  while (thaw_jiter_next(&it, &k, &val)) {
    thaw_jval_t *slot = thaw_json_str_eq(&k, "name", 4)    ? &ct->name
                        : thaw_json_str_eq(&k, "image", 5) ? &ct->image
                        : thaw_json_str_eq(&k, "imagePullPolicy", 15)
                            ? &ct->pull_policy
                            : NULL;
    if (slot && slot->type == THAW_JSON_NONE)
      *slot = val;
  }
}
