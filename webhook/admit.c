/* admit.c - the webhook's decision: AdmissionReview in, AdmissionReview out
 * (admit.h; docs/design.md, "Webhook decision").
 *
 * One validating pass over the body keeps spans of the fields it reads
 * (admit_parse.c: no tree, managedFields skipped in place), one pass over
 * the containers, and the reply written from three small text buffers
 * (admit_reply.c). Strings are decoded only when they carry escapes, into a
 * per-review arena; a review allocates its reply and, only for large pods,
 * heap chunks. Choices where docs/design.md is silent:
 *   - Only an ABSENT image is handed to env->record: a CachedImage that
 *     exists in any phase counts as recorded (docs/design.md, "CachedImage").
 *   - An existing thaw.dev/original-images that is not a JSON object string
 *     is left untouched (with a warning); images are still rewritten, since
 *     thaw_imgref_unrewrite() recovers every original from its rewritten
 *     form. A valid one is extended in place: its text is kept byte for byte
 *     and new keys are appended, so the first original always wins.
 *   - If object.metadata is not an object no annotation op is written: an
 *     op on a missing parent makes the apiserver refuse the pod (fixtures,
 *     responses.json case d) even under failurePolicy Ignore.
 *   - Cold wait (admit_gate.c) is decided once every container is: a pod
 *     that waits keeps its images as submitted, so their ops are dropped;
 *     the decisions counted stay those of the table (what the index says).
 *   - UPDATE of pods/ephemeralcontainers: only ephemeral containers whose
 *     name is not in oldObject.spec.ephemeralContainers are decided; the
 *     apiserver forbids changing an existing one, so touching it would make
 *     the update invalid.
 *   - Warnings are printable ASCII (other bytes become '?'), at most 120
 *     characters and at most 10 per review.
 *   - The body is strict JSON (jsontok.h): raw control bytes in strings,
 *     numbers such as "01" and bad \u escapes are refused, which cJSON let
 *     through. Strings are used whole: a "\u0000" inside a name or an image
 *     no longer cuts it short (such an image is invalid, with a warning). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "admit_internal.h"
#include "error.h"
#include "imgref.h"
#include "sysns.h"

const char *thaw_decision_name(enum thaw_decision d) {
  static const char *const names[THAW_DECISION_COUNT] = {
      "rewritten", "cold",          "opted_out", "invalid",
      "already",   "pull_never",    "registry_down", "private"};
  return (unsigned)d < THAW_DECISION_COUNT ? names[d] : "unknown";
}

/* --- the string set (admit_internal.h) ----------------------------------- */

void thaw_admit_sset_init(admit_sset_t *set) {
  memset(set->inl, 0, sizeof(set->inl));
  set->slot = set->inl;
  set->cap = sizeof(set->inl) / sizeof(set->inl[0]);
  set->n = 0;
}

void thaw_admit_sset_free(admit_sset_t *set) {
  if (set->slot != set->inl)
    free(set->slot);
  thaw_admit_sset_init(set);
}

static uint32_t shash(const char *s, size_t len, uint32_t tag) {
  uint32_t h = 2166136261u ^ tag;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static admit_skey_t *sset_slot(admit_skey_t *slot, size_t cap, const char *s,
                               size_t len, uint32_t tag) {
  size_t i = shash(s, len, tag) & (cap - 1);
  while (slot[i].s && !(slot[i].tag == tag && slot[i].len == len &&
                        memcmp(slot[i].s, s, len) == 0))
    i = (i + 1) & (cap - 1);
  return &slot[i];
}

int thaw_admit_sset_has(const admit_sset_t *set, const char *s, size_t len,
                        uint32_t tag) {
  return len <= UINT32_MAX && sset_slot(set->slot, set->cap, s, len, tag)->s;
}

int thaw_admit_sset_add(admit_sset_t *set, const char *s, size_t len,
                        uint32_t tag) {
  if (len > UINT32_MAX)
    return THAW_ENOMEM;
  admit_skey_t *k = sset_slot(set->slot, set->cap, s, len, tag);
  if (k->s)
    return 0;
  if ((set->n + 1) * 2 > set->cap) {
    size_t cap = set->cap * 2;
    admit_skey_t *slot = calloc(cap, sizeof(*slot));
    if (!slot)
      return THAW_ENOMEM;
    for (size_t i = 0; i < set->cap; i++)
      if (set->slot[i].s)
        *sset_slot(slot, cap, set->slot[i].s, set->slot[i].len,
                   set->slot[i].tag) = set->slot[i];
    if (set->slot != set->inl)
      free(set->slot);
    set->slot = slot;
    set->cap = cap;
    k = sset_slot(slot, cap, s, len, tag);
  }
  /* An empty key still needs a non-NULL pointer: NULL marks a free slot. */
  k->s = s ? s : "";
  k->len = (uint32_t)len;
  k->tag = tag;
  set->n++;
  return 1;
}

/* --- one review ------------------------------------------------------------ */

static const char *const list_field[] = {"initContainers", "containers",
                                         "ephemeralContainers"};

static void count(admit_review_t *r, enum thaw_decision d) {
  r->st->decisions[d]++;
}

static void record(admit_review_t *r, const thaw_imgref_t *ref) {
  if (r->dry_run || !r->env->record ||
      thaw_admit_sset_has(&r->recorded, ref->str, ref->len, 0))
    return;
  char *copy = thaw_admit_arena_alloc(&r->arena, (size_t)ref->len + 1);
  if (!copy) {
    thaw_admit_set_err(r, THAW_ENOMEM);
    return;
  }
  memcpy(copy, ref->str, (size_t)ref->len + 1);
  int rc = thaw_admit_sset_add(&r->recorded, copy, ref->len, 0);
  if (rc == 1)
    r->env->record(ref->str, r->env->data);
  thaw_admit_set_err(r, rc);
}

/* Decimal digits of i into buf (at least 21 bytes), NUL-terminated. */
static const char *index_token(size_t i, char *buf, size_t cap) {
  char *p = buf + cap - 1;
  *p = '\0';
  do
    *--p = (char)('0' + i % 10);
  while ((i /= 10) && p > buf);
  return p;
}

/* 1 when the pod already names the thaw-pull Secret. */
static int has_pull_secret(const admit_view_t *v) {
  thaw_jiter_t it;
  thaw_jval_t e, name;
  thaw_jiter_init(&it, &v->pull_secrets); /* a non-array iterates nothing */
  while (thaw_jiter_next(&it, NULL, &e))
    if (thaw_json_get(&e, "name", 4, &name) &&
        thaw_json_str_eq(&name, THAW_ADMIT_PULL_SECRET,
                         sizeof(THAW_ADMIT_PULL_SECRET) - 1))
      return 1;
  return 0;
}

/* A private image was rewritten: the pod pulls it with its namespace's
 * thaw-pull credentials, added to spec.imagePullSecrets unless named. */
static void add_pull_secret(admit_review_t *r) {
  const admit_view_t *v = &r->view;
  static const char ref[] = "{\"name\":\"" THAW_ADMIT_PULL_SECRET "\"}";
  if (has_pull_secret(v))
    return;
  if (v->pull_secrets.type == THAW_JSON_ARRAY) {
    const char *path[] = {"spec", "imagePullSecrets", "-"};
    thaw_patch_op_json(&r->ops, "add", path, 3, ref, sizeof(ref) - 1);
  } else { /* absent or null: the whole list */
    const char *path[] = {"spec", "imagePullSecrets"};
    thaw_patch_op_begin(&r->ops, "add", path, 2);
    thaw_jbuf_raw(&r->ops, "[", 1);
    thaw_jbuf_raw(&r->ops, ref, sizeof(ref) - 1);
    thaw_jbuf_raw(&r->ops, "]}", 2);
  }
}

/* 1 when this container may be served private images: only through its
 * namespace's own credentials (thaw-pull), which an ephemeral container's
 * update cannot add. */
static int may_serve_private(const admit_review_t *r, enum admit_list l) {
  return (r->ns_flags & THAW_NS_CACHE_PRIVATE) && r->env->private_host &&
         !(l == LIST_EPHEMERAL && !has_pull_secret(&r->view));
}

/* Writes `ref` as spec.<list>[index].image into ops. */
static void replace_image(thaw_jbuf_t *ops, enum admit_list l, size_t index,
                          const char *ref) {
  char idx[24];
  const char *path[] = {"spec", list_field[l],
                        index_token(index, idx, sizeof(idx)), "image"};
  thaw_patch_op_str(ops, "replace", path, 4, ref, strlen(ref));
}

/* A container names a cache path itself (img; under the private host when
 * private_form). A public image's stays ("already"). A private image's --
 * every path under the private host, and a cache-host path whose image the
 * index knows as private -- goes back to its original where the pod may not
 * be served it: the registry refuses it anyway (that, not this, keeps it
 * private), and the original lets the pod pull from upstream with its own
 * secrets, as without thaw. Where it may be served, the pod gets thaw-pull,
 * and a cache-host path (which the cache cannot serve: private content lives
 * under private/) becomes its private form. */
static void cache_path(admit_review_t *r, enum admit_list l, size_t index,
                       const char *img, int private_form, admit_str_t image,
                       admit_str_t name) {
  const thaw_admit_env_t *env = r->env;
  const char *host = private_form ? env->private_host : env->cache_host;
  thaw_imgref_t orig, key;
  char digest[THAW_ADMIT_DIGEST_SIZE] = "";
  if (thaw_imgref_unrewrite(img, strlen(img), host, &orig) != 0) {
    count(r, THAW_DECISION_ALREADY);
    return;
  }
  /* A pinned path names its CachedImage by tag. */
  if (thaw_imgref_tag_only(&orig, &key) != 0)
    key = orig;
  if (!private_form &&
      (!env->image_state || env->image_state(key.str, digest, env->data) !=
                                THAW_IMAGE_READY_PRIVATE)) {
    count(r, THAW_DECISION_ALREADY);
    return;
  }
  if (!may_serve_private(r, l)) {
    count(r, THAW_DECISION_PRIVATE);
    replace_image(&r->ops, l, index, orig.str);
    replace_image(&r->reverts, l, index, orig.str);
    thaw_admit_warn_image(r, image, name,
                          "private image's cache path; original used");
    return;
  }
  if (l != LIST_EPHEMERAL)
    r->private_rw = 1;
  char rw[THAW_IMGREF_STR_MAX + 1];
  if (private_form || !thaw_imgref_digest_valid(digest, strlen(digest)) ||
      thaw_imgref_rewrite(&orig, env->private_host, digest, rw,
                          sizeof(rw)) != 0) {
    count(r, THAW_DECISION_ALREADY);
    return;
  }
  count(r, THAW_DECISION_REWRITTEN);
  replace_image(&r->ops, l, index, rw);
  if (l != LIST_EPHEMERAL && r->ann_mode != ANN_SKIP)
    thaw_admit_add_original(r, l, name, image);
}

/* Decides one container's image; may append an op and an annotation entry. */
static void decide(admit_review_t *r, enum admit_list l, size_t index,
                   const admit_ctr_t *ct) {
  const thaw_admit_env_t *env = r->env;
  admit_str_t image, name;
  int rc = thaw_admit_str(&r->arena, &ct->image, &image, 0);
  if (rc != 1) {
    thaw_admit_set_err(r, rc);
    return; /* nothing to decide; the apiserver's validation answers */
  }
  thaw_admit_set_err(r, thaw_admit_str(&r->arena, &ct->name, &name, 0));
  if (r->opted_out) {
    count(r, THAW_DECISION_OPTED_OUT);
    return;
  }
  thaw_imgref_t ref;
  if (thaw_imgref_parse(image.p, image.n, &ref) != 0) {
    count(r, THAW_DECISION_INVALID);
    thaw_admit_warn_image(r, image, name,
                          ref.err ? ref.err : "invalid reference");
    return;
  }
  /* It parsed, so it is at most THAW_IMGREF_INPUT_MAX bytes. */
  char img[THAW_IMGREF_INPUT_MAX + 1];
  memcpy(img, image.p, image.n);
  img[image.n] = '\0';
  int private_form = env->private_host &&
                     thaw_imgref_is_rewritten(img, env->private_host);
  if (private_form || thaw_imgref_is_rewritten(img, env->cache_host)) {
    cache_path(r, l, index, img, private_form, image, name);
    return;
  }
  if (thaw_json_str_eq(&ct->pull_policy, "Never", 5)) {
    count(r, THAW_DECISION_PULL_NEVER);
    return;
  }
  char digest[THAW_ADMIT_DIGEST_SIZE] = "";
  enum thaw_image_state state =
      env->image_state ? env->image_state(ref.str, digest, env->data)
                       : THAW_IMAGE_ABSENT;
  if ((state == THAW_IMAGE_READY || state == THAW_IMAGE_READY_PRIVATE) &&
      digest[0] == '\0')
    state = THAW_IMAGE_PRESENT; /* Ready without a digest: nothing to pin */
  const char *host = env->cache_host;
  switch (state) {
  case THAW_IMAGE_READY_PRIVATE:
    if (!may_serve_private(r, l)) {
      count(r, THAW_DECISION_PRIVATE);
      return;
    }
    host = env->private_host;
    /* fall through */
  case THAW_IMAGE_READY:
    if (!env->registry_up) {
      count(r, THAW_DECISION_REGISTRY_DOWN);
      return;
    }
    break;
  case THAW_IMAGE_ABSENT:
    count(r, THAW_DECISION_COLD);
    r->cold = 1; /* row 5: its warm is to come */
    record(r, &ref);
    return;
  default: /* PRESENT, or an unknown answer: not Ready */
    count(r, THAW_DECISION_COLD);
    /* row 6: only a warm still to come (not all Failed or Expiring) is
     * worth waiting for; asked only when cold wait could use the answer */
    if (env->cold_wait_s && !r->cold && env->image_pending &&
        env->image_pending(ref.str, env->data))
      r->cold = 1;
    return;
  }
  char rw[THAW_IMGREF_STR_MAX + 1];
  if (thaw_imgref_rewrite(&ref, host, digest, rw, sizeof(rw)) != 0) {
    count(r, THAW_DECISION_INVALID);
    thaw_admit_warn_image(r, image, name,
                          "rewritten form is not a valid reference");
    return;
  }
  count(r, THAW_DECISION_REWRITTEN);
  if (host != env->cache_host)
    r->private_rw = 1;
  replace_image(&r->ops, l, index, rw);
  if (l == LIST_EPHEMERAL)
    return;
  if (r->ann_mode != ANN_SKIP) {
    thaw_admit_add_original(r, l, name, image);
  } else if (r->ann_invalid) {
    r->ann_invalid = 0; /* warn once, and only when it matters */
    thaw_admit_warn_text(r, "thaw: annotation " THAW_ADMIT_ANNOTATION
                            " is not a JSON object; left unchanged");
  }
}

/* Decides every container of spec.<list>, skipping names in `skip`. */
static void decide_list(admit_review_t *r, enum admit_list l,
                        const admit_sset_t *skip) {
  for (const admit_ctr_t *ct = r->view.ctrs[l]; ct && !r->err;
       ct = ct->next) {
    if (skip) {
      admit_str_t name;
      int rc = thaw_admit_str(&r->arena, &ct->name, &name, 0);
      thaw_admit_set_err(r, rc);
      if (rc == 1 && thaw_admit_sset_has(skip, name.p, name.n, 0))
        continue;
    }
    decide(r, l, ct->index, ct);
  }
}

/* Which requests are decided. */
enum mode { MODE_PASS = 0, MODE_CREATE, MODE_EPHEMERAL };

static enum mode request_mode(const admit_view_t *v) {
  /* A group that is a non-empty string: raw "" is the only empty one. */
  if (!thaw_json_str_eq(&v->kind_kind, "Pod", 3) ||
      (v->kind_group.type == THAW_JSON_STRING && v->kind_group.len > 2))
    return MODE_PASS;
  if (!thaw_json_str_eq(&v->res_resource, "pods", 4) ||
      (v->res_group.type == THAW_JSON_STRING && v->res_group.len > 2))
    return MODE_PASS;
  int no_sub = v->sub_resource.type != THAW_JSON_STRING ||
               v->sub_resource.len == 2;
  if (thaw_json_str_eq(&v->operation, "CREATE", 6) && no_sub)
    return MODE_CREATE;
  if (thaw_json_str_eq(&v->operation, "UPDATE", 6) &&
      thaw_json_str_eq(&v->sub_resource, "ephemeralcontainers", 19))
    return MODE_EPHEMERAL;
  return MODE_PASS;
}

/* Pod or namespace opted out, excluded namespace (ns is a C string), or
 * mirror pod. */
static int excluded(const admit_review_t *r, const admit_str_t *ns) {
  if (r->ns_flags & THAW_NS_OPTED_OUT)
    return 1;
  if (thaw_namespace_excluded(ns->p, r->env->system_namespace,
                              r->env->excluded_namespaces))
    return 1;
  if (thaw_json_str_eq(&r->view.caching, "disabled", 8))
    return 1;
  return r->view.mirror.type != THAW_JSON_NONE;
}

/* Decides the pod of a decided request; fills r->ops / ann / warn. */
static void decide_pod(admit_review_t *r, enum mode mode) {
  const thaw_admit_env_t *env = r->env;
  const admit_view_t *v = &r->view;
  if (v->object.type != THAW_JSON_OBJECT)
    return;
  /* The namespace goes to a callback: a C string. */
  admit_str_t ns;
  const thaw_jval_t *nsv =
      v->ns.type == THAW_JSON_STRING && v->ns.len > 2 ? &v->ns : &v->meta_ns;
  int rc = thaw_admit_str(&r->arena, nsv, &ns, 1);
  if (rc < 0) {
    thaw_admit_set_err(r, rc);
    return;
  }
  r->ns_flags =
      env->namespace_flags ? env->namespace_flags(ns.p, env->data) : 0;
  r->opted_out = excluded(r, &ns);
  if (mode == MODE_CREATE) {
    if (!r->opted_out)
      thaw_admit_annotation_setup(r);
    decide_list(r, LIST_INIT, NULL);
    decide_list(r, LIST_CONTAINERS, NULL);
    if (env->cold_wait_s && !r->opted_out && !r->err)
      thaw_admit_gate(r);
    /* after the gate, which may drop the rewrites; a gated pod of a
     * cache-private namespace gets it too, for its release may rewrite
     * private images and a pod's imagePullSecrets cannot change later */
    int gated_private = r->st->gated && (r->ns_flags & THAW_NS_CACHE_PRIVATE) &&
                        env->private_host != NULL;
    if ((r->private_rw || gated_private) && !r->err)
      add_pull_secret(r);
    return;
  }
  /* Ephemeral containers already in oldObject cannot change. */
  admit_sset_t old;
  thaw_admit_sset_init(&old);
  for (const admit_ctr_t *ct = v->ctrs[LIST_OLD_EPHEMERAL]; ct && !r->err;
       ct = ct->next) {
    admit_str_t name;
    rc = thaw_admit_str(&r->arena, &ct->name, &name, 0);
    thaw_admit_set_err(r, rc);
    if (rc == 1)
      thaw_admit_set_err(r, thaw_admit_sset_add(&old, name.p, name.n, 0));
  }
  if (!r->err)
    decide_list(r, LIST_EPHEMERAL, &old);
  thaw_admit_sset_free(&old);
}

static void fail_reason(char *err, size_t errlen, const char *why) {
  if (err && errlen) {
    size_t n = strnlen(why, errlen - 1);
    memcpy(err, why, n);
    err[n] = '\0';
  }
}

int thaw_admit_review(const char *body, size_t len, const thaw_admit_env_t *env,
                      char **out, size_t *out_len, thaw_admit_stats_t *stats,
                      char *err, size_t errlen) {
  thaw_admit_stats_t dummy;
  admit_review_t r;
  memset(&r, 0, offsetof(admit_review_t, view));
  r.env = env;
  r.st = stats ? stats : &dummy;
  memset(r.st, 0, sizeof(*r.st));
  *out = NULL;
  if (out_len)
    *out_len = 0;
  thaw_admit_arena_init(&r.arena);
  int rc = thaw_admit_view(body, len, &r.arena, &r.view, err, errlen);
  const admit_view_t *v = &r.view;
  if (rc == 0 && v->uid.type != THAW_JSON_STRING) {
    fail_reason(err, errlen,
                v->root.type != THAW_JSON_OBJECT      ? "body is not a JSON object"
                : v->request.type != THAW_JSON_OBJECT ? "no request object"
                                                      : "request.uid is not a string");
    rc = THAW_EPARSE;
  }
  if (rc != 0) {
    thaw_admit_arena_free(&r.arena);
    return rc;
  }
  thaw_jbuf_init_on(&r.ops, r.ops_buf, sizeof(r.ops_buf), 0);
  thaw_jbuf_raw(&r.ops, "[", 1);
  thaw_jbuf_init_on(&r.reverts, r.reverts_buf, sizeof(r.reverts_buf), 0);
  thaw_jbuf_raw(&r.reverts, "[", 1);
  thaw_jbuf_init_on(&r.ann, r.ann_buf, sizeof(r.ann_buf), 0);
  thaw_jbuf_init_on(&r.warn, r.warn_buf, sizeof(r.warn_buf), 0);
  thaw_admit_sset_init(&r.keys);
  thaw_admit_sset_init(&r.recorded);

  enum mode mode = request_mode(v);
  if (mode != MODE_PASS) {
    r.dry_run = v->dry_run.type == THAW_JSON_TRUE;
    r.st->dry_run = (unsigned)r.dry_run;
    decide_pod(&r, mode);
  }
  rc = thaw_admit_reply(&r, out, out_len);
  if (rc) {
    fail_reason(err, errlen, thaw_strerror(rc));
    rc = rc == THAW_E2BIG ? THAW_ENOMEM : rc;
  }
  thaw_jbuf_free(&r.ops);
  thaw_jbuf_free(&r.reverts);
  thaw_jbuf_free(&r.ann);
  thaw_jbuf_free(&r.warn);
  thaw_admit_sset_free(&r.keys);
  thaw_admit_sset_free(&r.recorded);
  thaw_admit_arena_free(&r.arena);
  return rc;
}
