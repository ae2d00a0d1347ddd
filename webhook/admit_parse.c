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
  _Alignas(16) char data[];
};

void thaw_admit_arena_init(admit_arena_t *a) {
  a->p = a->block;
  a->left = sizeof(a->block);
  a->chunks = NULL;
}

void *thaw_admit_arena_alloc(admit_arena_t *a, size_t n) {
  n = (n + 15) & ~(size_t)15; /* keeps every piece aligned */
  if (n == 0)
    return NULL;
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
 * its slot (of the view, or of a container), walked into when it has a
 * table and is an object (or, for a container list, an array); every other
 * member is validated and skipped. */

typedef struct field {
  const char *key;
  size_t klen;
  size_t slot; /* offsetof(admit_view_t or admit_ctr_t, ...) */
  const struct field *sub;
  size_t nsub;
  int list; /* enum admit_list + 1 for a container list */
} field_t;

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define F(k, s) {k, sizeof(k) - 1, offsetof(admit_view_t, s), NULL, 0, 0}
#define FS(k, s, t) {k, sizeof(k) - 1, offsetof(admit_view_t, s), t, N(t), 0}
#define FL(k, l)                                                               \
  {k, sizeof(k) - 1, offsetof(admit_view_t, lists[l]), NULL, 0, l + 1}
#define FC(k, s) {k, sizeof(k) - 1, offsetof(admit_ctr_t, s), NULL, 0, 0}

static const field_t ctr_f[] = {FC("name", name), FC("image", image),
                                FC("imagePullPolicy", pull_policy)};
static const field_t labels_f[] = {F("thaw.dev/caching", caching)};
static const field_t anns_f[] = {F(THAW_ADMIT_ANNOTATION, original),
                                 F(THAW_ADMIT_MIRROR, mirror)};
static const field_t meta_f[] = {F("namespace", meta_ns),
                                 FS("labels", labels, labels_f),
                                 FS("annotations", annotations, anns_f)};
static const field_t spec_f[] = {FL("initContainers", LIST_INIT),
                                 FL("containers", LIST_CONTAINERS),
                                 FL("ephemeralContainers", LIST_EPHEMERAL),
                                 F("nodeName", node_name),
                                 F("schedulingGates", gates),
                                 F("imagePullSecrets", pull_secrets)};
static const field_t object_f[] = {FS("metadata", metadata, meta_f),
                                   FS("spec", spec, spec_f)};
static const field_t old_spec_f[] = {
    FL("ephemeralContainers", LIST_OLD_EPHEMERAL)};
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

typedef struct {
  thaw_jcur_t c;
  admit_view_t *v;
  admit_arena_t *arena;
  int nomem; /* an entry could not be kept; validation goes on */
} walk_t;

static const field_t *match(const field_t *f, size_t nf,
                            const thaw_jval_t *key) {
  for (size_t i = 0; i < nf; i++) {
    /* Most keys differ in length or first byte; escaped keys are rare. */
    if (!key->esc && (key->len - 2 != f[i].klen || key->p[1] != f[i].key[0]))
      continue;
    if (thaw_json_str_eq(key, f[i].key, f[i].klen))
      return &f[i];
  }
  return NULL;
}

/* The span of the container just closed, which started at `start`: the
 * cursor stands after its closing byte and any blanks. */
static thaw_jval_t closed(const thaw_jcur_t *c, const char *start,
                          enum thaw_json_type type) {
  const char *end = c->p;
  char close = type == THAW_JSON_OBJECT ? '}' : ']';
  while (end > start && end[-1] != close)
    end--;
  return (thaw_jval_t){start, (size_t)(end - start), (uint8_t)type, 0};
}

static void walk(walk_t *w, char *base, const field_t *f, size_t nf);

/* Walks a container list: keeps the containers that can be decided. */
static void walk_list(walk_t *w, enum admit_list l) {
  thaw_jcur_t *c = &w->c;
  admit_ctr_t **tail = &w->v->ctrs[l];
  thaw_jcur_enter(c, THAW_JSON_ARRAY);
  for (size_t i = 0; thaw_jcur_elem(c); i++) {
    if (thaw_jcur_peek(c) != THAW_JSON_OBJECT) {
      thaw_jcur_take(c, NULL);
      continue;
    }
    admit_ctr_t ct;
    memset(&ct, 0, sizeof(ct));
    thaw_jcur_enter(c, THAW_JSON_OBJECT);
    walk(w, (char *)&ct, ctr_f, N(ctr_f));
    if (c->err)
      return;
    int keep = l == LIST_OLD_EPHEMERAL ? ct.name.type == THAW_JSON_STRING
                                       : ct.image.type == THAW_JSON_STRING;
    if (!keep)
      continue;
    admit_ctr_t *e = thaw_admit_arena_alloc(w->arena, sizeof(*e));
    if (!e) {
      w->nomem = 1;
      continue;
    }
    *e = ct;
    e->index = i;
    *tail = e;
    tail = &e->next;
  }
}

/* Walks the members of the object the cursor has just entered. Depth is
 * bounded by the tables (at most 6 levels). */
static void walk(walk_t *w, char *base, const field_t *f, size_t nf) {
  thaw_jcur_t *c = &w->c;
  thaw_jval_t key;
  while (thaw_jcur_member(c, &key)) {
    const field_t *hit = match(f, nf, &key);
    thaw_jval_t *slot =
        hit ? (thaw_jval_t *)(void *)(base + hit->slot) : NULL;
    if (slot && slot->type != THAW_JSON_NONE)
      slot = NULL; /* a duplicate key: the first one counts */
    enum thaw_json_type t = thaw_jcur_peek(c);
    const char *start = c->p;
    if (slot && hit->list && t == THAW_JSON_ARRAY) {
      walk_list(w, (enum admit_list)(hit->list - 1));
    } else if (slot && hit->sub && t == THAW_JSON_OBJECT) {
      thaw_jcur_enter(c, THAW_JSON_OBJECT);
      walk(w, base, hit->sub, hit->nsub);
    } else {
      thaw_jcur_take(c, slot);
      continue;
    }
    if (c->err)
      return;
    *slot = closed(c, start, t);
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

int thaw_admit_view(const char *body, size_t len, admit_arena_t *a,
                    admit_view_t *v, char *err, size_t errlen) {
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
  walk_t w = {.v = v, .arena = a, .nomem = 0};
  thaw_jcur_init(&w.c, body, len, THAW_JSON_DEPTH_MAX);
  if (thaw_jcur_peek(&w.c) == THAW_JSON_OBJECT) {
    v->root = (thaw_jval_t){body, len, THAW_JSON_OBJECT, 0};
    thaw_jcur_enter(&w.c, THAW_JSON_OBJECT);
    walk(&w, (char *)v, root_f, N(root_f));
  } else {
    thaw_jcur_take(&w.c, &v->root);
  }
  if (thaw_jcur_finish(&w.c) != 0) {
    reason(err, errlen,
           w.c.err == THAW_JSON_E_TRAILING ? "trailing data after the JSON body"
                                           : "request body is not valid JSON",
           &w.c);
    memset(v, 0, sizeof(*v));
    return THAW_EPARSE;
  }
  if (w.nomem) {
    reason(err, errlen, thaw_strerror(THAW_ENOMEM), NULL);
    return THAW_ENOMEM;
  }
  return 0;
}
