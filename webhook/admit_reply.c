/* admit_reply.c - the text of the webhook's reply: warnings, the
 * thaw.dev/original-images annotation, the JSON Patch and the response
 * AdmissionReview (admit_internal.h; the choices are listed in admit.c). */
#include <string.h>

#include "admit_internal.h"
#include "error.h"

#define ANNOTATION THAW_ADMIT_ANNOTATION
#define WARN_MAX 120
#define WARNINGS_MAX 10

/* Annotation key prefixes; the set tag of a key is its list + 1. */
static const char *const list_prefix[] = {"init/", "container/", NULL};

void thaw_admit_set_err(admit_review_t *r, int rc) {
  if (rc < 0 && !r->err)
    r->err = rc;
}

/* --- warnings ------------------------------------------------------------- */

/* Warning text: clipped pieces of printable ASCII, "..." where cut. */
typedef struct {
  char s[WARN_MAX + 1];
  size_t n;
} wtext_t;

static void wput(wtext_t *w, const char *s, size_t len, size_t max) {
  int clip = len > max && max >= 3;
  size_t take = clip ? max - 3 : (len < max ? len : max);
  for (size_t i = 0; i < take && w->n < WARN_MAX; i++) {
    unsigned char c = (unsigned char)s[i];
    w->s[w->n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  if (clip)
    wput(w, "...", 3, 3);
  w->s[w->n] = '\0';
}

void thaw_admit_warn_text(admit_review_t *r, const char *text) {
  if (r->nwarn >= WARNINGS_MAX)
    return;
  if (r->nwarn++)
    thaw_jbuf_raw(&r->warn, ",", 1);
  thaw_jbuf_str(&r->warn, text, strlen(text));
}

/* thaw: image "<image>" of container "<name>" not cached: <why>, fitted into
 * WARN_MAX: the reason is kept whole (imgref reasons are short), the name
 * gets up to 16 characters and the image the rest. */
void thaw_admit_warn_image(admit_review_t *r, admit_str_t image,
                           admit_str_t name, const char *why) {
  static const char p1[] = "thaw: image \"", p2[] = "\" of container \"",
                    p3[] = "\" not cached: ";
  if (r->nwarn >= WARNINGS_MAX)
    return;
  size_t fixed = sizeof(p1) + sizeof(p2) + sizeof(p3) - 3;
  size_t whyn = strnlen(why, 56), namen = name.n < 16 ? name.n : 16;
  size_t imgn = WARN_MAX - fixed - whyn - namen; /* >= 6 */
  wtext_t w = {.n = 0};
  wput(&w, p1, sizeof(p1) - 1, sizeof(p1) - 1);
  wput(&w, image.p, image.n, imgn);
  wput(&w, p2, sizeof(p2) - 1, sizeof(p2) - 1);
  wput(&w, name.p, name.n, namen);
  wput(&w, p3, sizeof(p3) - 1, sizeof(p3) - 1);
  wput(&w, why, strnlen(why, whyn + 1), whyn);
  thaw_admit_warn_text(r, w.s);
}

/* --- the annotation ------------------------------------------------------- */

void thaw_admit_add_original(admit_review_t *r, enum admit_list l,
                             admit_str_t name, admit_str_t image) {
  int rc = thaw_admit_sset_add(&r->keys, name.p, name.n, (uint32_t)l + 1);
  if (rc <= 0) {
    thaw_admit_set_err(r, rc);
    return;
  }
  thaw_jbuf_t *b = &r->ann;
  if (r->nann++)
    thaw_jbuf_raw(b, ",", 1);
  /* The key is one JSON string: prefix + name. */
  thaw_jbuf_raw(b, "\"", 1);
  thaw_jbuf_cstr(b, list_prefix[l]);
  thaw_jbuf_esc(b, name.p, name.n);
  thaw_jbuf_raw(b, "\":", 2);
  thaw_jbuf_str(b, image.p, image.n);
}

void thaw_admit_annotation_setup(admit_review_t *r) {
  const admit_view_t *v = &r->view;
  if (v->metadata.type != THAW_JSON_OBJECT) {
    r->ann_mode = ANN_SKIP;
    return;
  }
  if (v->annotations.type != THAW_JSON_OBJECT) {
    r->ann_mode = ANN_ADD_ALL; /* absent or null: add replaces it */
    return;
  }
  if (v->original.type == THAW_JSON_NONE) {
    r->ann_mode = ANN_ADD_KEY;
    return;
  }
  /* Its text must be one JSON object (blanks around it are fine). */
  admit_str_t text;
  thaw_jval_t obj;
  int rc = thaw_admit_str(&r->arena, &v->original, &text, 0);
  thaw_admit_set_err(r, rc);
  if (rc != 1 ||
      thaw_json_parse(text.p, text.n, 0, &obj, NULL, NULL) != 0 ||
      obj.type != THAW_JSON_OBJECT) {
    r->ann_mode = ANN_SKIP;
    r->ann_invalid = 1;
    return;
  }
  r->ann_mode = ANN_MERGE;
  r->ann_old = text;
  r->ann_old_empty = 1;
  thaw_jiter_t it;
  thaw_jval_t k, val;
  thaw_jiter_init(&it, &obj);
  while (thaw_jiter_next(&it, &k, &val)) {
    r->ann_old_empty = 0;
    admit_str_t key;
    rc = thaw_admit_str(&r->arena, &k, &key, 0);
    thaw_admit_set_err(r, rc);
    for (int l = LIST_INIT; rc == 1 && l <= LIST_CONTAINERS; l++) {
      size_t plen = strlen(list_prefix[l]);
      if (key.n >= plen && memcmp(key.p, list_prefix[l], plen) == 0) {
        thaw_admit_set_err(r, thaw_admit_sset_add(&r->keys, key.p + plen,
                                                  key.n - plen,
                                                  (uint32_t)l + 1));
        break;
      }
    }
  }
}

/* The annotation's new JSON text: the old object with the new entries. */
static void annotation_text(admit_review_t *r, thaw_jbuf_t *out) {
  if (r->ann_mode == ANN_MERGE) {
    /* A valid object ends with '}' once trailing blanks are cut. */
    size_t n = r->ann_old.n;
    while (n && r->ann_old.p[n - 1] != '}')
      n--;
    thaw_jbuf_raw(out, r->ann_old.p, n ? n - 1 : 0);
    if (!r->ann_old_empty)
      thaw_jbuf_raw(out, ",", 1);
  } else {
    thaw_jbuf_raw(out, "{", 1);
  }
  thaw_jbuf_raw(out, r->ann.p ? r->ann.p : "", r->ann.len);
  thaw_jbuf_raw(out, "}", 1);
}

/* --- the patch and the response ------------------------------------------- */

/* The JSON Patch: the annotation op first (it may create the parent the
 * other ops do not need, and docs/design.md asks for it first), then the images. */
static void build_patch(admit_review_t *r, thaw_jbuf_t *patch) {
  thaw_jbuf_raw(patch, "[", 1);
  if (r->nann) {
    char store[512];
    thaw_jbuf_t text;
    thaw_jbuf_init_on(&text, store, sizeof(store), 0);
    annotation_text(r, &text);
    if (text.err) {
      thaw_admit_set_err(r, text.err);
    } else if (r->ann_mode == ANN_ADD_ALL) {
      const char *path[] = {"metadata", "annotations"};
      thaw_patch_op_begin(patch, "add", path, 2);
      thaw_jbuf_raw(patch, "{", 1);
      thaw_jbuf_str(patch, ANNOTATION, sizeof(ANNOTATION) - 1);
      thaw_jbuf_raw(patch, ":", 1);
      thaw_jbuf_str(patch, text.p, text.len);
      thaw_jbuf_raw(patch, "}}", 2);
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

static void write_response(thaw_jbuf_t *out, const thaw_jval_t *uid,
                           const thaw_jbuf_t *patch, admit_review_t *r) {
  thaw_jbuf_cstr(out, "{\"apiVersion\":\"admission.k8s.io/v1\","
                      "\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
  /* A string with no escape is its own JSON text; else re-escape it. */
  if (!uid->esc) {
    thaw_jbuf_raw(out, uid->p, uid->len);
  } else {
    admit_str_t s;
    int rc = thaw_admit_str(&r->arena, uid, &s, 0);
    if (rc == 1)
      thaw_jbuf_str(out, s.p, s.n);
    else if (!out->err)
      out->err = THAW_ENOMEM;
  }
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

int thaw_admit_reply(admit_review_t *r, char **out, size_t *out_len) {
  char store[2048];
  thaw_jbuf_t patch;
  thaw_jbuf_init_on(&patch, store, sizeof(store), 0);
  int changed = r->ops.len > 1;
  if (changed)
    build_patch(r, &patch);
  thaw_admit_set_err(r, r->ops.err);
  thaw_admit_set_err(r, r->ann.err);
  thaw_admit_set_err(r, r->warn.err);
  thaw_admit_set_err(r, patch.err);
  int rc = r->err;
  if (!rc) {
    /* One allocation: the caller frees the reply. */
    thaw_jbuf_t resp;
    thaw_jbuf_init(&resp, 256 + r->view.uid.len * 2 +
                              (changed ? patch.len * 4 / 3 + 64 : 0) +
                              r->warn.len,
                   0);
    write_response(&resp, &r->view.uid, changed ? &patch : NULL, r);
    *out = thaw_jbuf_take(&resp, out_len);
    rc = *out ? 0 : (resp.err ? resp.err : THAW_ENOMEM);
    thaw_jbuf_free(&resp);
    r->st->patched = (unsigned)(changed && !rc);
  }
  thaw_jbuf_free(&patch);
  return rc;
}
