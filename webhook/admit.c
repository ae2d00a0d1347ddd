/* admit.c - the webhook's decision: AdmissionReview in, AdmissionReview out
 * (admit.h; DESIGN.md, "Webhook decision").
 *
 * One cJSON parse of the request, one pass over the containers, and three
 * small text buffers (image ops, annotation entries, warnings) joined into
 * the reply at the end. Choices where DESIGN.md is silent:
 *   - Only an ABSENT image is handed to env->record: a CachedImage that
 *     exists in any phase counts as recorded (DESIGN, "CachedImage").
 *   - An existing thaw.dev/original-images that is not a JSON object string
 *     is left untouched (with a warning); images are still rewritten, since
 *     thaw_imgref_unrewrite() recovers every original from its rewritten
 *     form. A valid one is extended in place: its text is kept byte for byte
 *     and new keys are appended, so the first original always wins.
 *   - If object.metadata is not an object no annotation op is written: an
 *     op on a missing parent makes the apiserver refuse the pod (fixtures,
 *     responses.json case d) even under failurePolicy Ignore.
 *   - UPDATE of pods/ephemeralcontainers: only ephemeral containers whose
 *     name is not in oldObject.spec.ephemeralContainers are decided; the
 *     apiserver forbids changing an existing one, so touching it would make
 *     the update invalid.
 *   - Warnings are printable ASCII (other bytes become '?'), at most 120
 *     characters and at most WARNINGS_MAX per review. */
#include "admit.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imgref.h"
#include "patch.h"

#define ANNOTATION "thaw.dev/original-images"
#define MIRROR_ANNOTATION "kubernetes.io/config.mirror"
#define WARN_MAX 120
#define WARNINGS_MAX 10

const char *thaw_decision_name(enum thaw_decision d) {
  static const char *const names[THAW_DECISION_COUNT] = {
      "rewritten", "cold",          "opted_out", "invalid",
      "already",   "pull_never",    "registry_down", "private"};
  return (unsigned)d < THAW_DECISION_COUNT ? names[d] : "unknown";
}

/* --- a small open-addressing string set ---------------------------------
 * Keys are (tag, bytes). Used for annotation keys, old ephemeral container
 * names and recorded references, so every lookup is O(1) however many
 * containers a (hostile) pod has. Starts inline; grows on the heap. */

typedef struct {
  const char *s; /* NULL: empty slot */
  uint32_t len;
  uint32_t tag;
} skey_t;

typedef struct {
  skey_t *slot;
  size_t cap; /* power of two */
  size_t n;
  int owned; /* keys are copied in and freed with the set */
  skey_t inl[16];
} sset_t;

static void sset_init(sset_t *set, int owned) {
  memset(set->inl, 0, sizeof(set->inl));
  set->slot = set->inl;
  set->cap = sizeof(set->inl) / sizeof(set->inl[0]);
  set->n = 0;
  set->owned = owned;
}

static void sset_free(sset_t *set) {
  if (set->owned)
    for (size_t i = 0; i < set->cap; i++)
      free((char *)set->slot[i].s);
  if (set->slot != set->inl)
    free(set->slot);
}

static uint32_t shash(const char *s, size_t len, uint32_t tag) {
  uint32_t h = 2166136261u ^ tag;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static skey_t *sset_slot(skey_t *slot, size_t cap, const char *s, size_t len,
                         uint32_t tag) {
  size_t i = shash(s, len, tag) & (cap - 1);
  while (slot[i].s && !(slot[i].tag == tag && slot[i].len == len &&
                        memcmp(slot[i].s, s, len) == 0))
    i = (i + 1) & (cap - 1);
  return &slot[i];
}

static int sset_has(const sset_t *set, const char *s, size_t len,
                    uint32_t tag) {
  return sset_slot(set->slot, set->cap, s, len, tag)->s != NULL;
}

/* Returns 1 if added, 0 if already there, THAW_ENOMEM. */
static int sset_add(sset_t *set, const char *s, size_t len, uint32_t tag) {
  if (len > UINT32_MAX)
    return THAW_ENOMEM;
  skey_t *k = sset_slot(set->slot, set->cap, s, len, tag);
  if (k->s)
    return 0;
  if ((set->n + 1) * 2 > set->cap) {
    size_t cap = set->cap * 2;
    skey_t *slot = calloc(cap, sizeof(*slot));
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
  const char *key = s;
  if (set->owned) {
    char *copy = malloc(len + 1);
    if (!copy)
      return THAW_ENOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    key = copy;
  }
  k->s = key;
  k->len = (uint32_t)len;
  k->tag = tag;
  set->n++;
  return 1;
}

/* --- one review ---------------------------------------------------------- */

enum list { LIST_INIT = 0, LIST_CONTAINERS, LIST_EPHEMERAL };
static const char *const list_field[] = {"initContainers", "containers",
                                         "ephemeralContainers"};
/* Annotation key prefixes; the set tag of a key is its list + 1. */
static const char *const list_prefix[] = {"init/", "container/", NULL};

/* How the annotation is written when something was rewritten. */
enum ann_mode {
  ANN_SKIP = 0, /* not at all (no metadata, or existing value invalid) */
  ANN_ADD_ALL,  /* add /metadata/annotations {ANNOTATION: ...} */
  ANN_ADD_KEY,  /* add /metadata/annotations/thaw.dev~1original-images */
  ANN_MERGE     /* replace it with the old text plus new keys */
};

typedef struct {
  const thaw_admit_env_t *env;
  thaw_admit_stats_t *st;
  int opted_out;
  int dry_run;
  int ns_flags;
  enum ann_mode ann_mode;
  const char *ann_old; /* existing annotation text (ANN_MERGE) */
  int ann_old_empty;   /* it is "{}" */
  int ann_invalid;     /* it exists but is not a JSON object string */
  cJSON *ann_parsed;   /* its parse; keys in `keys` point into it */
  thaw_jbuf_t ops;     /* "[" + image ops */
  thaw_jbuf_t ann;     /* new annotation entries, comma-separated */
  unsigned nann;
  thaw_jbuf_t warn;    /* warning strings, comma-separated */
  unsigned nwarn;
  sset_t keys;         /* annotation keys, existing and added */
  sset_t recorded;     /* references handed to env->record */
  int err;
} review_t;

static cJSON *get(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *get_str(const cJSON *o, const char *k) {
  cJSON *v = get(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int str_eq(const char *a, const char *b) {
  return a && b && strcmp(a, b) == 0;
}

static void count(review_t *r, enum thaw_decision d) {
  r->st->decisions[d]++;
}

/* Warning text: clipped pieces of printable ASCII, "..." where cut. */
typedef struct {
  char s[WARN_MAX + 1];
  size_t n;
} wtext_t;

static void wput(wtext_t *w, const char *s, size_t max) {
  size_t len = strnlen(s, max + 1);
  int clip = len > max && max >= 3;
  size_t take = clip ? max - 3 : (len < max ? len : max);
  for (size_t i = 0; i < take && w->n < WARN_MAX; i++) {
    unsigned char c = (unsigned char)s[i];
    w->s[w->n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  if (clip)
    wput(w, "...", 3);
  w->s[w->n] = '\0';
}

static void warn_text(review_t *r, const char *text) {
  if (r->nwarn >= WARNINGS_MAX)
    return;
  if (r->nwarn++)
    thaw_jbuf_raw(&r->warn, ",", 1);
  thaw_jbuf_str(&r->warn, text, strlen(text));
}

/* thaw: image "<image>" of container "<name>" not cached: <why>, fitted into
 * WARN_MAX: the reason is kept whole (imgref reasons are short), the name
 * gets up to 16 characters and the image the rest. */
static void warn_image(review_t *r, const char *image, const char *name,
                       const char *why) {
  static const char p1[] = "thaw: image \"", p2[] = "\" of container \"",
                    p3[] = "\" not cached: ";
  size_t fixed = sizeof(p1) + sizeof(p2) + sizeof(p3) - 3;
  size_t whyn = strnlen(why, 56), namen = strnlen(name, 16);
  size_t imgn = WARN_MAX - fixed - whyn - namen; /* >= 6 */
  wtext_t w = {.n = 0};
  wput(&w, p1, sizeof(p1) - 1);
  wput(&w, image, imgn);
  wput(&w, p2, sizeof(p2) - 1);
  wput(&w, name, namen);
  wput(&w, p3, sizeof(p3) - 1);
  wput(&w, why, whyn);
  warn_text(r, w.s);
}

static void set_err(review_t *r, int rc) {
  if (rc < 0 && !r->err)
    r->err = rc;
}

/* Records the original image under "<prefix><name>" unless the key exists. */
static void add_original(review_t *r, enum list l, const char *name,
                         const char *image) {
  size_t nlen = strlen(name);
  int rc = sset_add(&r->keys, name, nlen, (uint32_t)l + 1);
  if (rc <= 0) {
    set_err(r, rc);
    return;
  }
  size_t plen = strlen(list_prefix[l]);
  if (r->nann++)
    thaw_jbuf_raw(&r->ann, ",", 1);
  /* The key is one JSON string: prefix + name. */
  thaw_jbuf_t *b = &r->ann;
  thaw_jbuf_raw(b, "\"", 1);
  thaw_jbuf_raw(b, list_prefix[l], plen);
  thaw_jbuf_esc(b, name, nlen);
  thaw_jbuf_raw(b, "\"", 1);
  thaw_jbuf_raw(b, ":", 1);
  thaw_jbuf_str(b, image, strlen(image));
}

static void record(review_t *r, const thaw_imgref_t *ref) {
  if (r->dry_run || !r->env->record)
    return;
  int rc = sset_add(&r->recorded, ref->str, ref->len, 0);
  if (rc == 1)
    r->env->record(ref->str, r->env->data);
  set_err(r, rc);
}

/* Decides one container's image; may append an op and an annotation entry. */
static void decide(review_t *r, enum list l, size_t index, const cJSON *ct) {
  const thaw_admit_env_t *env = r->env;
  const char *image = get_str(ct, "image");
  if (!image)
    return; /* nothing to decide; the apiserver's validation answers */
  const char *name = get_str(ct, "name");
  if (!name)
    name = "";
  if (r->opted_out) {
    count(r, THAW_DECISION_OPTED_OUT);
    return;
  }
  thaw_imgref_t ref;
  if (thaw_imgref_parse(image, strlen(image), &ref) != 0) {
    count(r, THAW_DECISION_INVALID);
    warn_image(r, image, name, ref.err ? ref.err : "invalid reference");
    return;
  }
  if (thaw_imgref_is_rewritten(image, env->cache_host)) {
    count(r, THAW_DECISION_ALREADY);
    return;
  }
  if (str_eq(get_str(ct, "imagePullPolicy"), "Never")) {
    count(r, THAW_DECISION_PULL_NEVER);
    return;
  }
  enum thaw_image_state state =
      env->image_state ? env->image_state(ref.str, env->data)
                       : THAW_IMAGE_ABSENT;
  switch (state) {
  case THAW_IMAGE_READY_PRIVATE:
    if (!(r->ns_flags & THAW_NS_CACHE_PRIVATE)) {
      count(r, THAW_DECISION_PRIVATE);
      return;
    }
    /* fall through */
  case THAW_IMAGE_READY:
    if (!env->registry_up) {
      count(r, THAW_DECISION_REGISTRY_DOWN);
      return;
    }
    break;
  case THAW_IMAGE_ABSENT:
    count(r, THAW_DECISION_COLD);
    record(r, &ref);
    return;
  default: /* PRESENT, or an unknown answer: not Ready */
    count(r, THAW_DECISION_COLD);
    return;
  }
  char rw[THAW_IMGREF_STR_MAX + 1];
  if (thaw_imgref_rewrite(&ref, env->cache_host, rw, sizeof(rw)) != 0) {
    count(r, THAW_DECISION_INVALID);
    warn_image(r, image, name, "rewritten form is not a valid reference");
    return;
  }
  count(r, THAW_DECISION_REWRITTEN);
  char idx[24];
  snprintf(idx, sizeof(idx), "%zu", index);
  const char *path[] = {"spec", list_field[l], idx, "image"};
  thaw_patch_op_str(&r->ops, "replace", path, 4, rw, strlen(rw));
  if (l == LIST_EPHEMERAL)
    return;
  if (r->ann_mode != ANN_SKIP) {
    add_original(r, l, name, image);
  } else if (r->ann_invalid) {
    r->ann_invalid = 0; /* warn once, and only when it matters */
    warn_text(r, "thaw: annotation " ANNOTATION
                 " is not a JSON object; left unchanged");
  }
}

/* Decides every entry of spec.<list>, skipping names in `skip`. */
static void decide_list(review_t *r, const cJSON *spec, enum list l,
                        const sset_t *skip) {
  cJSON *arr = get(spec, list_field[l]);
  if (!cJSON_IsArray(arr))
    return;
  size_t i = 0;
  for (const cJSON *ct = arr->child; ct && !r->err; ct = ct->next, i++) {
    if (!cJSON_IsObject(ct))
      continue;
    if (skip) {
      const char *name = get_str(ct, "name");
      if (name && sset_has(skip, name, strlen(name), 0))
        continue;
    }
    decide(r, l, i, ct);
  }
}

/* Reads the existing annotation: chooses ann_mode and seeds `keys`. */
static void annotation_setup(review_t *r, const cJSON *meta) {
  if (!cJSON_IsObject(meta)) {
    r->ann_mode = ANN_SKIP;
    return;
  }
  cJSON *anns = get(meta, "annotations");
  if (!cJSON_IsObject(anns)) {
    r->ann_mode = ANN_ADD_ALL; /* absent or null: add replaces it */
    return;
  }
  cJSON *old = cJSON_GetObjectItemCaseSensitive(anns, ANNOTATION);
  if (!old) {
    r->ann_mode = ANN_ADD_KEY;
    return;
  }
  cJSON *parsed = NULL;
  if (cJSON_IsString(old)) {
    const char *end = NULL;
    size_t n = strlen(old->valuestring);
    parsed = cJSON_ParseWithLengthOpts(old->valuestring, n, &end, 0);
    while (parsed && end && end < old->valuestring + n &&
           (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
      end++;
    if (parsed && (!cJSON_IsObject(parsed) || end != old->valuestring + n)) {
      cJSON_Delete(parsed);
      parsed = NULL;
    }
  }
  if (!parsed) {
    r->ann_mode = ANN_SKIP;
    r->ann_invalid = 1;
    return;
  }
  r->ann_mode = ANN_MERGE;
  r->ann_old = old->valuestring;
  r->ann_old_empty = parsed->child == NULL;
  r->ann_parsed = parsed;
  for (cJSON *k = parsed->child; k; k = k->next) {
    for (int l = LIST_INIT; l <= LIST_CONTAINERS; l++) {
      size_t plen = strlen(list_prefix[l]);
      if (k->string && strncmp(k->string, list_prefix[l], plen) == 0) {
        set_err(r, sset_add(&r->keys, k->string + plen,
                            strlen(k->string + plen), (uint32_t)l + 1));
        break;
      }
    }
  }
}

/* The annotation's new JSON text: the old object with the new entries. */
static void annotation_text(review_t *r, thaw_jbuf_t *out) {
  if (r->ann_mode == ANN_MERGE) {
    /* A valid object ends with '}' once trailing blanks are cut. */
    const char *s = r->ann_old;
    size_t n = strlen(s);
    while (n && s[n - 1] != '}')
      n--;
    thaw_jbuf_raw(out, s, n ? n - 1 : 0);
    if (!r->ann_old_empty)
      thaw_jbuf_raw(out, ",", 1);
  } else {
    thaw_jbuf_raw(out, "{", 1);
  }
  thaw_jbuf_raw(out, r->ann.p ? r->ann.p : "", r->ann.len);
  thaw_jbuf_raw(out, "}", 1);
}

/* The JSON Patch: the annotation op first (it may create the parent the
 * other ops do not need, and DESIGN asks for it first), then the images. */
static void build_patch(review_t *r, thaw_jbuf_t *patch) {
  thaw_jbuf_raw(patch, "[", 1);
  if (r->nann) {
    thaw_jbuf_t text;
    thaw_jbuf_init(&text, 256, 0);
    annotation_text(r, &text);
    if (text.err) {
      set_err(r, text.err);
    } else if (r->ann_mode == ANN_ADD_ALL) {
      const char *path[] = {"metadata", "annotations"};
      thaw_jbuf_t obj;
      thaw_jbuf_init(&obj, text.len + 64, 0);
      thaw_jbuf_raw(&obj, "{", 1);
      thaw_jbuf_str(&obj, ANNOTATION, sizeof(ANNOTATION) - 1);
      thaw_jbuf_raw(&obj, ":", 1);
      thaw_jbuf_str(&obj, text.p, text.len);
      thaw_jbuf_raw(&obj, "}", 1);
      set_err(r, obj.err);
      if (!obj.err)
        thaw_patch_op_json(patch, "add", path, 2, obj.p, obj.len);
      thaw_jbuf_free(&obj);
    } else {
      const char *path[] = {"metadata", "annotations", ANNOTATION};
      thaw_patch_op_str(patch, r->ann_mode == ANN_MERGE ? "replace" : "add",
                        path, 3, text.p, text.len);
    }
    thaw_jbuf_free(&text);
  }
  /* ops holds "[" + the image ops; append them after the annotation op. */
  if (r->ops.len > 1) {
    if (patch->len > 1)
      thaw_jbuf_raw(patch, ",", 1);
    thaw_jbuf_raw(patch, r->ops.p + 1, r->ops.len - 1);
  }
  thaw_jbuf_raw(patch, "]", 1);
}

/* Which requests are decided. */
enum mode { MODE_PASS = 0, MODE_CREATE, MODE_EPHEMERAL };

static enum mode request_mode(const cJSON *req) {
  const cJSON *kind = get(req, "kind");
  const char *group = get_str(kind, "group");
  if (!str_eq(get_str(kind, "kind"), "Pod") || (group && *group))
    return MODE_PASS;
  const cJSON *res = get(req, "resource");
  const char *rgroup = get_str(res, "group");
  if (!str_eq(get_str(res, "resource"), "pods") || (rgroup && *rgroup))
    return MODE_PASS;
  const char *op = get_str(req, "operation");
  const char *sub = get_str(req, "subResource");
  if (str_eq(op, "CREATE") && (!sub || !*sub))
    return MODE_CREATE;
  if (str_eq(op, "UPDATE") && str_eq(sub, "ephemeralcontainers"))
    return MODE_EPHEMERAL;
  return MODE_PASS;
}

/* Pod or namespace opted out, system namespace, or mirror pod. */
static int excluded(const review_t *r, const char *ns, const cJSON *meta) {
  const thaw_admit_env_t *env = r->env;
  if (r->ns_flags & THAW_NS_OPTED_OUT)
    return 1;
  if (str_eq(ns, "kube-system") || str_eq(ns, env->system_namespace))
    return 1;
  if (str_eq(get_str(get(meta, "labels"), "thaw.dev/caching"), "disabled"))
    return 1;
  return get(get(meta, "annotations"), MIRROR_ANNOTATION) != NULL;
}

/* Decides the pod of a decided request; fills r->ops / ann / warn. */
static void decide_pod(review_t *r, const cJSON *req, enum mode mode) {
  const thaw_admit_env_t *env = r->env;
  const cJSON *obj = get(req, "object");
  if (!cJSON_IsObject(obj))
    return;
  const cJSON *meta = get(obj, "metadata");
  const cJSON *spec = get(obj, "spec");
  const char *ns = get_str(req, "namespace");
  if (!ns || !*ns)
    ns = get_str(meta, "namespace");
  if (!ns)
    ns = "";
  r->ns_flags = env->namespace_flags ? env->namespace_flags(ns, env->data) : 0;
  r->opted_out = excluded(r, ns, meta);
  if (mode == MODE_CREATE) {
    if (!r->opted_out)
      annotation_setup(r, meta);
    decide_list(r, spec, LIST_INIT, NULL);
    decide_list(r, spec, LIST_CONTAINERS, NULL);
    return;
  }
  /* Ephemeral containers already in oldObject cannot change. */
  sset_t old;
  sset_init(&old, 0);
  cJSON *olds = get(get(get(req, "oldObject"), "spec"), "ephemeralContainers");
  if (cJSON_IsArray(olds))
    for (cJSON *c = olds->child; c && !r->err; c = c->next) {
      const char *name = get_str(c, "name");
      if (name)
        set_err(r, sset_add(&old, name, strlen(name), 0));
    }
  if (!r->err)
    decide_list(r, spec, LIST_EPHEMERAL, &old);
  sset_free(&old);
}

static void fail_reason(char *err, size_t errlen, const char *why) {
  if (err && errlen)
    snprintf(err, errlen, "%s", why);
}

/* Parses the whole body as one JSON value; NULL with a reason otherwise. */
static cJSON *parse_body(const char *body, size_t len, char *err,
                         size_t errlen) {
  /* A raw NUL is never valid JSON, and C strings would cut it short. */
  if (body && memchr(body, '\0', len)) {
    fail_reason(err, errlen, "NUL byte in the request body");
    return NULL;
  }
  const char *end = NULL;
  cJSON *root = body ? cJSON_ParseWithLengthOpts(body, len, &end, 0) : NULL;
  if (!root) {
    fail_reason(err, errlen, "request body is not valid JSON");
    return NULL;
  }
  const char *stop = body + len;
  while (end < stop &&
         (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
    end++;
  if (end != stop) {
    cJSON_Delete(root);
    fail_reason(err, errlen, "trailing data after the JSON body");
    return NULL;
  }
  return root;
}

static void write_response(thaw_jbuf_t *out, const char *uid,
                           const thaw_jbuf_t *patch, const review_t *r) {
  thaw_jbuf_cstr(out, "{\"apiVersion\":\"admission.k8s.io/v1\","
                      "\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
  thaw_jbuf_str(out, uid, strlen(uid));
  thaw_jbuf_cstr(out, ",\"allowed\":true");
  if (patch) {
    thaw_jbuf_cstr(out, ",\"patchType\":\"JSONPatch\",\"patch\":\"");
    thaw_jbuf_base64(out, (const unsigned char *)patch->p, patch->len);
    thaw_jbuf_raw(out, "\"", 1);
  }
  if (r->nwarn) {
    thaw_jbuf_cstr(out, ",\"warnings\":[");
    thaw_jbuf_raw(out, r->warn.p, r->warn.len);
    thaw_jbuf_raw(out, "]", 1);
  }
  thaw_jbuf_cstr(out, "}}");
}

int thaw_admit_review(const char *body, size_t len, const thaw_admit_env_t *env,
                      char **out, size_t *out_len, thaw_admit_stats_t *stats,
                      char *err, size_t errlen) {
  thaw_admit_stats_t dummy;
  review_t r = {.env = env, .st = stats ? stats : &dummy};
  memset(r.st, 0, sizeof(*r.st));
  *out = NULL;
  if (out_len)
    *out_len = 0;
  cJSON *root = parse_body(body, len, err, errlen);
  if (!root)
    return THAW_EPARSE;
  cJSON *req = get(root, "request");
  const char *uid = get_str(req, "uid");
  if (!uid) {
    fail_reason(err, errlen,
                cJSON_IsObject(root)
                    ? (cJSON_IsObject(req) ? "request.uid is not a string"
                                           : "no request object")
                    : "body is not a JSON object");
    cJSON_Delete(root);
    return THAW_EPARSE;
  }
  thaw_jbuf_init(&r.ops, 256, 0);
  thaw_jbuf_raw(&r.ops, "[", 1);
  thaw_jbuf_init(&r.ann, 128, 0);
  thaw_jbuf_init(&r.warn, 128, 0);
  sset_init(&r.keys, 0);
  sset_init(&r.recorded, 1);

  enum mode mode = request_mode(req);
  if (mode != MODE_PASS) {
    r.dry_run = cJSON_IsTrue(get(req, "dryRun"));
    r.st->dry_run = (unsigned)r.dry_run;
    decide_pod(&r, req, mode);
  }

  thaw_jbuf_t patch;
  thaw_jbuf_init(&patch, r.ops.len + r.ann.len * 2 + 128, 0);
  int changed = r.ops.len > 1;
  if (changed)
    build_patch(&r, &patch);
  set_err(&r, r.ops.err);
  set_err(&r, r.ann.err);
  set_err(&r, r.warn.err);
  set_err(&r, patch.err);

  int rc = r.err;
  if (!rc) {
    thaw_jbuf_t resp;
    thaw_jbuf_init(&resp, 256 + patch.len * 4 / 3 + r.warn.len, 0);
    write_response(&resp, uid, changed ? &patch : NULL, &r);
    *out = thaw_jbuf_take(&resp, out_len);
    rc = *out ? 0 : (resp.err ? resp.err : THAW_ENOMEM);
    thaw_jbuf_free(&resp);
    r.st->patched = (unsigned)(changed && !rc);
  }
  if (rc) {
    fail_reason(err, errlen, thaw_strerror(rc));
    rc = rc == THAW_E2BIG ? THAW_ENOMEM : rc;
  }
  thaw_jbuf_free(&patch);
  thaw_jbuf_free(&r.ops);
  thaw_jbuf_free(&r.ann);
  thaw_jbuf_free(&r.warn);
  sset_free(&r.keys);
  sset_free(&r.recorded);
  cJSON_Delete(r.ann_parsed);
  cJSON_Delete(root);
  return rc;
}
