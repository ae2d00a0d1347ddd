/* admit_gate.c - cold wait (docs/design.md, "Cold wait"): a CREATEd pod
 * with a cold image whose warm is to come waits behind the scheduling gate
 * thaw.dev/warming, its images as submitted, until the controller's leader
 * releases it (rewriting what is Ready by then). Choices where
 * docs/design.md is silent:
 *   - A pod that carries the gate already (reinvocation, or a replica that
 *     gated it) keeps its images too: the release rewrites them, and the
 *     reply to a reinvocation stays empty.
 *   - spec.nodeName counts as set unless absent, null or "": such a pod
 *     skips the scheduler, which is what the gate holds.
 *   - spec.schedulingGates null is replaced like an absent one; any other
 *     non-array value is left alone and the pod is not gated (an op on it
 *     would not apply). So is a pod whose metadata is not an object, since
 *     the controller needs the annotation and it cannot be written. */
#include <stdio.h>
#include <string.h>

#include "admit_internal.h"

static int has_gate(const thaw_jval_t *gates) {
  thaw_jiter_t it;
  thaw_jval_t g, name;
  thaw_jiter_init(&it, gates); /* a non-array iterates nothing */
  while (thaw_jiter_next(&it, NULL, &g))
    if (thaw_json_get(&g, "name", 4, &name) &&
        thaw_json_str_eq(&name, THAW_ADMIT_GATE, sizeof(THAW_ADMIT_GATE) - 1))
      return 1;
  return 0;
}

/* The pod keeps its images: forget the rewrites and their annotation, not
 * the reverted cache paths of private images (admit.c). */
static void drop_rewrites(admit_review_t *r) {
  r->ops.len = 1; /* "[" */
  r->ops.p[1] = '\0';
  thaw_admit_set_err(r, r->reverts.err);
  if (r->reverts.len > 1)
    thaw_jbuf_raw(&r->ops, r->reverts.p + 1, r->reverts.len - 1);
  r->nann = 0;
  r->private_rw = 0;
  r->ann.len = 0;
  if (r->ann.p)
    r->ann.p[0] = '\0';
}

void thaw_admit_gate(admit_review_t *r) {
  const admit_view_t *v = &r->view;
  const thaw_admit_env_t *env = r->env;
  if (has_gate(&v->gates)) {
    drop_rewrites(r);
    return;
  }
  if (!r->cold || !env->registry_up || !env->leader_fresh)
    return;
  int node = v->node_name.type != THAW_JSON_NONE &&
             v->node_name.type != THAW_JSON_NULL &&
             !(v->node_name.type == THAW_JSON_STRING && v->node_name.len == 2);
  int gates_ok = v->gates.type == THAW_JSON_NONE ||
                 v->gates.type == THAW_JSON_NULL ||
                 v->gates.type == THAW_JSON_ARRAY;
  if (node || !gates_ok || v->metadata.type != THAW_JSON_OBJECT)
    return;
  drop_rewrites(r);
  char secs[16];
  int n = snprintf(secs, sizeof secs, "%u", env->cold_wait_s);
  thaw_jbuf_t *b = &r->ops;
  if (v->annotations.type != THAW_JSON_OBJECT) {
    /* absent or null: add creates (or replaces) the whole map */
    const char *path[] = {"metadata", "annotations"};
    thaw_patch_op_begin(b, "add", path, 2);
    thaw_jbuf_raw(b, "{", 1);
    thaw_jbuf_str(b, THAW_ADMIT_COLD_WAIT, sizeof(THAW_ADMIT_COLD_WAIT) - 1);
    thaw_jbuf_raw(b, ":", 1);
    thaw_jbuf_str(b, secs, (size_t)n);
    thaw_jbuf_raw(b, "}}", 2);
  } else {
    /* add on an existing key replaces its value */
    const char *path[] = {"metadata", "annotations", THAW_ADMIT_COLD_WAIT};
    thaw_patch_op_str(b, "add", path, 3, secs, (size_t)n);
  }
  static const char gate[] = "{\"name\":\"" THAW_ADMIT_GATE "\"}";
  if (v->gates.type == THAW_JSON_ARRAY) {
    const char *path[] = {"spec", "schedulingGates", "-"};
    thaw_patch_op_json(b, "add", path, 3, gate, sizeof(gate) - 1);
  } else {
    const char *path[] = {"spec", "schedulingGates"};
    thaw_patch_op_begin(b, "add", path, 2);
    thaw_jbuf_raw(b, "[", 1);
    thaw_jbuf_raw(b, gate, sizeof(gate) - 1);
    thaw_jbuf_raw(b, "]}", 2);
  }
  r->st->gated = 1;
}
