/* nspull.c - per-namespace thaw-pull Secrets (nspull.h). */
#include "nspull.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "error.h"
#include "log.h"
#include "store.h"

#define TICK_MS 1000
#define RESYNC_MS (10 * 60 * 1000)
#define RETRY_MS 5000
#define INFLIGHT_MAX 4
#define NS_MAX 64
#define MANAGED_BY "app.kubernetes.io/managed-by"
#define CRD_NAME "cachedimages.thaw.dev"

/* What thaw knows of a namespace's thaw-pull Secret. */
enum { S_UNSEEN = 0, S_PRESENT, S_ABSENT, S_FOREIGN, S_BUSY };

static const thaw_kube_resource_t crds = {
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", 0};

struct thaw_nspull {
  uv_loop_t *loop;
  thaw_nspull_opts_t o;
  char host[256];
  thaw_store_t *state; /* namespace -> rv: S_* */
  thaw_store_t *retry; /* namespace -> rv: loop ms of the next try */
  uv_timer_t tick;
  unsigned inflight;
  uint64_t next_resync;
  char crd_uid[64]; /* "" until read */
  int active, dirty, crd_busy, freeing, closed;
};

typedef struct {
  thaw_nspull_t *n;
  char ns[NS_MAX];
} op_t;

static int state_of(const thaw_nspull_t *n, const char *ns) {
  uint64_t rv = S_UNSEEN;
  thaw_store_get(n->state, ns, &rv);
  return (int)rv;
}

static void set_state(thaw_nspull_t *n, const char *ns, int st) {
  thaw_store_put(n->state, ns, (uint64_t)st, NULL, NULL);
}

static int wanted(const thaw_nspull_t *n, const char *ns) {
  return thaw_sources_ns_serves(n->o.sources, ns) == THAW_SOURCES_NS_PRIVATE;
}

static void maybe_free(thaw_nspull_t *n) {
  if (n->freeing && n->closed && n->inflight == 0 && !n->crd_busy) {
    thaw_store_free(n->state);
    thaw_store_free(n->retry);
    free(n);
  }
}

/* An op ended: free it, and look at its namespace again after a failure. */
static void op_end(op_t *op, int failed) {
  thaw_nspull_t *n = op->n;
  n->inflight--;
  if (failed) {
    set_state(n, op->ns, S_UNSEEN);
    thaw_store_put(n->retry, op->ns, uv_now(n->loop) + RETRY_MS, NULL, NULL);
  }
  n->dirty = 1;
  free(op);
  maybe_free(n);
}

/* --- the Secret -------------------------------------------------------- */

static char *b64(const void *in, size_t len) {
  char *out = malloc(len / 3 * 4 + 8);
  if (out)
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
  return out;
}

/* base64 of {"auths":{HOST:{"username","password","auth"}}}, or NULL. */
static char *dockerconfig_b64(const thaw_nspull_t *n, const char *ns) {
  char pw[THAW_TOKEN_PASSWORD_LEN + 1], plain[NS_MAX + 64];
  if (thaw_token_pull_password(n->o.token, ns, pw) != 0)
    return NULL;
  int pn = snprintf(plain, sizeof plain, "%s:%s", ns, pw);
  char *auth = b64(plain, (size_t)pn);
  cJSON *root = cJSON_CreateObject(), *auths = cJSON_AddObjectToObject(root, "auths"),
        *entry = cJSON_AddObjectToObject(auths, n->host);
  char *json = NULL, *out = NULL;
  if (auth && entry && cJSON_AddStringToObject(entry, "username", ns) &&
      cJSON_AddStringToObject(entry, "password", pw) &&
      cJSON_AddStringToObject(entry, "auth", auth) &&
      (json = cJSON_PrintUnformatted(root)) != NULL)
    out = b64(json, strlen(json));
  if (json) {
    OPENSSL_cleanse(json, strlen(json));
    cJSON_free(json);
  }
  if (auth) {
    OPENSSL_cleanse(auth, strlen(auth));
    free(auth);
  }
  /* the tree holds copies of the password too */
  cJSON *u = cJSON_GetObjectItem(entry, "password");
  if (u && u->valuestring)
    OPENSSL_cleanse(u->valuestring, strlen(u->valuestring));
  cJSON_Delete(root);
  OPENSSL_cleanse(pw, sizeof pw);
  OPENSSL_cleanse(plain, sizeof plain);
  return out;
}

static void wipe_free(char *s) {
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

/* Sets the fields thaw owns on a Secret object: type, labels, owner, data. */
static int fill_secret(const thaw_nspull_t *n, cJSON *obj, const char *ns,
                       const char *data_b64) {
  cJSON *meta = cJSON_GetObjectItem(obj, "metadata");
  if (!meta && !(meta = cJSON_AddObjectToObject(obj, "metadata")))
    return THAW_ENOMEM;
  cJSON_DeleteItemFromObject(meta, "name");
  cJSON_DeleteItemFromObject(meta, "namespace");
  cJSON_AddStringToObject(meta, "name", THAW_NSPULL_SECRET);
  cJSON_AddStringToObject(meta, "namespace", ns);
  cJSON *labels = cJSON_GetObjectItem(meta, "labels");
  if (!cJSON_IsObject(labels)) {
    cJSON_DeleteItemFromObject(meta, "labels");
    labels = cJSON_AddObjectToObject(meta, "labels");
  }
  cJSON_DeleteItemFromObject(labels, MANAGED_BY);
  cJSON_AddStringToObject(labels, MANAGED_BY, "thaw");
  if (n->crd_uid[0]) { /* uninstalling thaw (its CRD) deletes the Secret */
    cJSON_DeleteItemFromObject(meta, "ownerReferences");
    cJSON *refs = cJSON_AddArrayToObject(meta, "ownerReferences");
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "apiVersion", "apiextensions.k8s.io/v1");
    cJSON_AddStringToObject(r, "kind", "CustomResourceDefinition");
    cJSON_AddStringToObject(r, "name", CRD_NAME);
    cJSON_AddStringToObject(r, "uid", n->crd_uid);
    cJSON_AddItemToArray(refs, r);
  }
  cJSON_DeleteItemFromObject(obj, "type");
  cJSON_AddStringToObject(obj, "type", "kubernetes.io/dockerconfigjson");
  cJSON_DeleteItemFromObject(obj, "data");
  cJSON *data = cJSON_AddObjectToObject(obj, "data");
  if (!data || !cJSON_AddStringToObject(data, ".dockerconfigjson", data_b64))
    return THAW_ENOMEM;
  return 0;
}

static int ours(const cJSON *secret) {
  const cJSON *labels = cJSON_GetObjectItem(
      cJSON_GetObjectItem(secret, "metadata"), "labels");
  const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(labels, MANAGED_BY));
  return v && strcmp(v, "thaw") == 0;
}

static void wipe_tree(cJSON *obj) {
  cJSON *d = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "data"),
                                 ".dockerconfigjson");
  if (d && d->valuestring)
    OPENSSL_cleanse(d->valuestring, strlen(d->valuestring));
  cJSON_Delete(obj);
}

/* --- one namespace ----------------------------------------------------- */

static void on_written(const thaw_kube_result_t *res, void *data) {
  op_t *op = data;
  thaw_nspull_t *n = op->n;
  if (res->err == THAW_ECANCELED) {
    op_end(op, 0);
    return;
  }
  if (res->err == 0) {
    int gone = res->http_status == 200 && wanted(n, op->ns) == 0;
    set_state(n, op->ns, gone ? S_ABSENT : S_PRESENT);
    op_end(op, 0);
    return;
  }
  if (res->err == THAW_ENOTFOUND) { /* deleted meanwhile: look again */
    set_state(n, op->ns, S_UNSEEN);
    op_end(op, 0);
    return;
  }
  thaw_warn("thaw-pull secret: write failed; trying again", "namespace",
            op->ns, "error", res->message);
  op_end(op, 1);
}

static void on_deleted(const thaw_kube_result_t *res, void *data) {
  op_t *op = data;
  if (res->err == 0 || res->err == THAW_ENOTFOUND) {
    set_state(op->n, op->ns, S_ABSENT);
    if (res->err == 0)
      thaw_info("thaw-pull secret deleted: the namespace may no longer pull "
                "private images from the cache", "namespace", op->ns);
    op_end(op, 0);
    return;
  }
  if (res->err != THAW_ECANCELED)
    thaw_warn("thaw-pull secret: delete failed; trying again", "namespace",
              op->ns, "error", res->message);
  op_end(op, res->err != THAW_ECANCELED);
}

static void on_read(const thaw_kube_result_t *res, void *data) {
  op_t *op = data;
  thaw_nspull_t *n = op->n;
  if (res->err == THAW_ECANCELED || !n->active) {
    set_state(n, op->ns, S_UNSEEN);
    op_end(op, 0);
    return;
  }
  if (res->err != 0 && res->err != THAW_ENOTFOUND) {
    thaw_warn("thaw-pull secret: read failed; trying again", "namespace",
              op->ns, "error", res->message);
    op_end(op, 1);
    return;
  }
  int want = wanted(n, op->ns);
  thaw_kube_opts_t ko = {.namespace = op->ns, .name = THAW_NSPULL_SECRET,
                         .field_manager = "thaw-controller"};
  if (res->err == THAW_ENOTFOUND || !ours(res->body)) {
    if (res->err == 0) { /* someone else's: never touched */
      if (state_of(n, op->ns) != S_FOREIGN)
        thaw_warn("a Secret thaw-pull that thaw did not make is in the way; "
                  "left alone", "namespace", op->ns);
      set_state(n, op->ns, S_FOREIGN);
      op_end(op, 0);
      return;
    }
    if (!want) {
      set_state(n, op->ns, S_ABSENT);
      op_end(op, 0);
      return;
    }
    char *d = dockerconfig_b64(n, op->ns);
    cJSON *obj = cJSON_CreateObject();
    int rc = d && obj ? fill_secret(n, obj, op->ns, d) : THAW_ENOMEM;
    cJSON_AddStringToObject(obj, "apiVersion", "v1");
    cJSON_AddStringToObject(obj, "kind", "Secret");
    ko.name = NULL;
    if (rc == 0)
      rc = thaw_kube_create(n->o.kube, &thaw_kube_secrets, &ko, obj,
                            on_written, op);
    wipe_free(d);
    wipe_tree(obj);
    if (rc != 0)
      op_end(op, 1);
    return;
  }
  const char *rv = cJSON_GetStringValue(cJSON_GetObjectItem(
      cJSON_GetObjectItem(res->body, "metadata"), "resourceVersion"));
  if (!want) {
    ko.resource_version = rv; /* never a Secret changed since it was read */
    if (thaw_kube_delete(n->o.kube, &thaw_kube_secrets, &ko, on_deleted, op))
      op_end(op, 1);
    return;
  }
  char *d = dockerconfig_b64(n, op->ns);
  const char *have = cJSON_GetStringValue(cJSON_GetObjectItem(
      cJSON_GetObjectItem(res->body, "data"), ".dockerconfigjson"));
  const cJSON *refs = cJSON_GetObjectItem(
      cJSON_GetObjectItem(res->body, "metadata"), "ownerReferences");
  if (d && have && strcmp(have, d) == 0 &&
      (!n->crd_uid[0] || cJSON_GetArraySize(refs) == 1)) {
    wipe_free(d);
    set_state(n, op->ns, S_PRESENT);
    op_end(op, 0);
    return;
  }
  /* a new signing key, or edited by hand: put it back */
  cJSON *obj = thaw_kube_result_take_body(res);
  int rc = d && obj ? fill_secret(n, obj, op->ns, d) : THAW_ENOMEM;
  if (rc == 0)
    rc = thaw_kube_update(n->o.kube, &thaw_kube_secrets, &ko, obj, on_written,
                          op);
  wipe_free(d);
  wipe_tree(obj);
  if (rc != 0)
    op_end(op, 1);
}

static void look(thaw_nspull_t *n, const char *ns) {
  op_t *op = calloc(1, sizeof *op);
  if (op == NULL)
    return;
  op->n = n;
  snprintf(op->ns, sizeof op->ns, "%s", ns);
  thaw_kube_opts_t ko = {.namespace = ns, .name = THAW_NSPULL_SECRET};
  set_state(n, ns, S_BUSY);
  n->inflight++;
  if (thaw_kube_get(n->o.kube, &thaw_kube_secrets, &ko, on_read, op) != 0) {
    n->inflight--;
    set_state(n, ns, S_UNSEEN);
    free(op);
  }
}

/* --- scanning ---------------------------------------------------------- */

typedef struct {
  thaw_nspull_t *n;
  int resync;
  uint64_t now;
} scan_t;

static void scan_ns(const char *ns, int serves, void *data) {
  scan_t *sc = data;
  thaw_nspull_t *n = sc->n;
  if (n->inflight >= INFLIGHT_MAX || strlen(ns) >= NS_MAX)
    return;
  int st = state_of(n, ns), want = serves == THAW_SOURCES_NS_PRIVATE;
  uint64_t not_before = 0;
  thaw_store_get(n->retry, ns, &not_before);
  if (st == S_BUSY || not_before > sc->now)
    return;
  int need = want ? st != S_PRESENT && (st != S_FOREIGN || sc->resync)
                  : st != S_ABSENT && st != S_FOREIGN;
  if (sc->resync && want)
    need = 1;
  if (need) {
    thaw_store_remove(n->retry, ns, NULL, NULL);
    look(n, ns);
  }
}

static void on_crd(const thaw_kube_result_t *res, void *data) {
  thaw_nspull_t *n = data;
  n->crd_busy = 0;
  const char *uid = cJSON_GetStringValue(cJSON_GetObjectItem(
      cJSON_GetObjectItem(res->body, "metadata"), "uid"));
  if (res->err == 0 && uid)
    snprintf(n->crd_uid, sizeof n->crd_uid, "%s", uid);
  else if (res->err != THAW_ECANCELED)
    thaw_warn("thaw-pull secrets: cannot read the CachedImage CRD; they get "
              "no owner until it can be read", "error", res->message);
  n->dirty = 1;
  maybe_free(n);
}

static void on_tick(uv_timer_t *t) {
  thaw_nspull_t *n = t->data;
  uint64_t now = uv_now(n->loop);
  if (!n->active || !thaw_sources_synced(n->o.sources))
    return;
  if (!n->crd_uid[0] && !n->crd_busy) {
    thaw_kube_opts_t ko = {.name = CRD_NAME};
    n->crd_busy = thaw_kube_get(n->o.kube, &crds, &ko, on_crd, n) == 0;
    return; /* Secrets wait for the owner's first answer */
  }
  if (n->crd_busy)
    return;
  scan_t sc = {n, now >= n->next_resync, now};
  if (!n->dirty && !sc.resync)
    return;
  n->dirty = 0;
  if (sc.resync)
    n->next_resync = now + RESYNC_MS;
  thaw_sources_each_namespace(n->o.sources, scan_ns, &sc);
  if (n->inflight >= INFLIGHT_MAX)
    n->dirty = 1; /* more on the next tick */
}

/* A namespace (or template) changed: look on the next tick. */
static void on_templates(void *data) {
  thaw_nspull_t *n = data;
  n->dirty = 1;
}

int thaw_nspull_new(uv_loop_t *loop, const thaw_nspull_opts_t *o,
                    thaw_nspull_t **out) {
  thaw_nspull_t *n = calloc(1, sizeof *n);
  if (n == NULL)
    return THAW_ENOMEM;
  n->loop = loop;
  n->o = *o;
  snprintf(n->host, sizeof n->host, "%s", o->host);
  n->state = thaw_store_new(NULL, NULL);
  n->retry = thaw_store_new(NULL, NULL);
  thaw_sources_observer_t obs = {.on_templates = on_templates, .data = n};
  int rc = n->state && n->retry ? thaw_sources_observe(o->sources, &obs)
                                : THAW_ENOMEM;
  if (rc != 0) {
    thaw_store_free(n->state);
    thaw_store_free(n->retry);
    free(n);
    return rc;
  }
  uv_timer_init(loop, &n->tick);
  n->tick.data = n;
  uv_timer_start(&n->tick, on_tick, TICK_MS, TICK_MS);
  *out = n;
  return 0;
}

void thaw_nspull_set_active(thaw_nspull_t *n, int leading) {
  n->active = leading;
  n->dirty = 1;
  n->next_resync = 0; /* a new leader looks at every namespace */
  if (!leading) { /* another leader may change anything meanwhile */
    thaw_store_t *fresh = thaw_store_new(NULL, NULL);
    if (fresh) {
      thaw_store_free(n->state);
      n->state = fresh;
    }
  }
}

size_t thaw_nspull_present(const thaw_nspull_t *n) {
  size_t pos = 0, c = 0;
  uint64_t rv;
  while (thaw_store_next(n->state, &pos, NULL, &rv, NULL))
    c += rv == S_PRESENT;
  return c;
}

static void on_closed(uv_handle_t *h) {
  thaw_nspull_t *n = h->data;
  n->closed = 1;
  maybe_free(n);
}

void thaw_nspull_free(thaw_nspull_t *n) {
  if (n == NULL)
    return;
  n->freeing = 1;
  n->active = 0;
  uv_close((uv_handle_t *)&n->tick, on_closed);
}
