/* test_sources.c - the controller's pod sweep, pre-warm and pull-secret
 * learning (controller/sources.c) against the API-server emulator: which
 * CachedImages appear, and only while active; the webhook's opt-outs;
 * rewritten images count as their originals; namespaces that gain the
 * pre-warm label or lose the opt-out are swept; pull secrets only from
 * cache-private namespaces, and forgotten with their pods. Run under
 * test/with-emulator.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIN                                                                    \
  "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

#include "check.h"
#include "error.h"
#include "imgref.h"
#include "informer_harness.h"
#include "metrics.h"
#include "podinfo.h"
#include "pullsecrets.h"
#include "sources.h"

#define SYSTEM_NS "thaw-test-system"

static harness_t h;
static thaw_kube_t *skube; /* the sources' own client: its creates are theirs */
static int creates;        /* CachedImage POSTs by the sources */
static int exists_calls;

static void on_kube(const char *verb, long status, void *data) {
  (void)status;
  (void)data;
  if (strcmp(verb, "create") == 0)
    creates++;
}

/* --- the controller's side: a CachedImage informer answers `exists` --- */

static thaw_informer_t *ci_inf;

static void *ci_project(const cJSON *obj, size_t *size, void *data) {
  (void)data;
  const char *img = cJSON_GetStringValue(
      cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "spec"), "image"));
  *size = 0;
  return img != NULL ? strdup(img) : NULL;
}

static void ci_free(void *rec, void *data) {
  (void)data;
  free(rec);
}

static int ci_exists(const char *normalized, void *data) {
  (void)data;
  exists_calls++;
  size_t pos = 0;
  void *rec;
  while (thaw_store_next(thaw_informer_store(ci_inf), &pos, NULL, NULL, &rec))
    if (strcmp(rec, normalized) == 0)
      return 1;
  return 0;
}

/* --- object builders ---------------------------------------------------- */

static void create_json(const thaw_kube_resource_t *r, const char *ns,
                        const char *json) {
  cJSON *o = cJSON_Parse(json);
  CHECK(o != NULL);
  int rc = sync_create(&h, r, ns, o, NULL);
  if (rc != 0)
    fprintf(stderr, "create failed (%s): %s\n", thaw_err_name(rc), json);
  CHECK(rc == 0);
  cJSON_Delete(o);
}

static void make_ns(const char *name, const char *labels) {
  char buf[1024];
  snprintf(buf, sizeof(buf),
           "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":"
           "{\"name\":\"%s\",\"labels\":{%s}}}",
           name, labels);
  cJSON *o = cJSON_Parse(buf);
  int rc = sync_create(&h, &thaw_kube_namespaces, NULL, o, NULL);
  CHECK(rc == 0 || rc == THAW_EALREADYEXISTS);
  cJSON_Delete(o);
}

/* A pod; `extra_meta` and `spec` are JSON members (without braces). */
static void new_pod(const char *ns, const char *name, const char *extra_meta,
                    const char *spec) {
  char buf[4096];
  snprintf(buf, sizeof(buf),
           "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":"
           "\"%s\",\"namespace\":\"%s\"%s%s},\"spec\":{%s}}",
           name, ns, *extra_meta ? "," : "", extra_meta, spec);
  create_json(&thaw_kube_pods, ns, buf);
}

static void make_template(const char *ns, const char *name,
                          const char *tmpl_labels, const char *spec) {
  char buf[4096];
  snprintf(buf, sizeof(buf),
           "{\"apiVersion\":\"v1\",\"kind\":\"PodTemplate\",\"metadata\":"
           "{\"name\":\"%s\",\"namespace\":\"%s\"},\"template\":{\"metadata\":"
           "{\"labels\":{%s}},\"spec\":{%s}}}",
           name, ns, tmpl_labels, spec);
  create_json(&thaw_kube_podtemplates, ns, buf);
}

static void patch_ns_labels(const char *ns, const char *labels) {
  char buf[512];
  snprintf(buf, sizeof(buf), "{\"metadata\":{\"labels\":{%s}}}", labels);
  cJSON *p = cJSON_Parse(buf);
  CHECK(sync_merge_patch(&h, &thaw_kube_namespaces, NULL, ns, p) == 0);
  cJSON_Delete(p);
}

typedef struct {
  int done, err;
} wait_t;

static void on_done(const thaw_kube_result_t *res, void *data) {
  wait_t *w = data;
  w->done = 1;
  w->err = res->err;
}

static int is_done(void *arg) { return ((wait_t *)arg)->done; }

/* Adds an ephemeral container, the only way one gets into a pod. */
static void add_ephemeral(const char *ns, const char *pod, const char *image) {
  char buf[512];
  snprintf(buf, sizeof(buf),
           "{\"spec\":{\"ephemeralContainers\":[{\"name\":\"debug\","
           "\"image\":\"%s\"}]}}",
           image);
  cJSON *p = cJSON_Parse(buf);
  wait_t w = {0};
  thaw_kube_opts_t o = {
      .namespace = ns, .name = pod, .subresource = "ephemeralcontainers"};
  CHECK(thaw_kube_merge_patch(h.kube, &thaw_kube_pods, &o, p, on_done, &w) ==
        0);
  CHECK(run_until(&h, is_done, &w, 10000));
  CHECK(w.err == 0);
  cJSON_Delete(p);
}

/* --- what the server holds ---------------------------------------------- */

/* Number of CachedImages on the server; 1 when `image` is among them,
 * named and labelled as docs/design.md says. */
static int has_ci(const char *image, int *total) {
  char want[THAW_CACHEDIMAGE_NAME_MAX + 1];
  CHECK(thaw_cachedimage_name(image, want, sizeof(want)) == 0);
  cJSON *items = list_all(&h, &thaw_kube_cachedimages, NULL, NULL), *it;
  int found = 0;
  cJSON_ArrayForEach(it, items) {
    cJSON *meta = cJSON_GetObjectItem(it, "metadata");
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(meta, "name"));
    const char *img = cJSON_GetStringValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(it, "spec"), "image"));
    if (img == NULL || strcmp(img, image) != 0)
      continue;
    found = 1;
    CHECK(name != NULL && strcmp(name, want) == 0);
    const char *by = cJSON_GetStringValue(cJSON_GetObjectItem(
        cJSON_GetObjectItem(meta, "labels"), "app.kubernetes.io/managed-by"));
    CHECK(by != NULL && strcmp(by, "thaw") == 0);
  }
  if (total != NULL)
    *total = cJSON_GetArraySize(items);
  cJSON_Delete(items);
  return found;
}

typedef struct {
  const char *const *want;
  int n;
} set_t;

static int all_present(void *arg) {
  set_t *s = arg;
  for (int i = 0; i < s->n; i++)
    if (!has_ci(s->want[i], NULL))
      return 0;
  return 1;
}

static int wait_present(const char *const *want, int n) {
  set_t s = {want, n};
  /* polling lists: give each round some loop time */
  for (int i = 0; i < 100; i++) {
    if (all_present(&s))
      return 1;
    run_until(&h, NULL, NULL, 200);
  }
  for (int i = 0; i < n; i++)
    if (!has_ci(want[i], NULL))
      fprintf(stderr, "missing CachedImage for %s\n", want[i]);
  return 0;
}

static int total_cis(void) {
  int n = 0;
  has_ci("docker.io/library/none:0", &n);
  return n;
}

/* --- pull secrets ------------------------------------------------------- */

typedef struct {
  char got[8][96];
  int n;
} secrets_t;

static void on_secret(const char *ns, const char *name, void *data) {
  secrets_t *s = data;
  if (s->n < 8)
    snprintf(s->got[s->n], sizeof(s->got[0]), "%s/%s", ns, name);
  s->n++;
}

static int has_secret(const secrets_t *s, const char *want) {
  for (int i = 0; i < s->n && i < 8; i++)
    if (strcmp(s->got[i], want) == 0)
      return 1;
  return 0;
}

static secrets_t secrets_of(thaw_sources_t *src, const char *image) {
  secrets_t s;
  memset(&s, 0, sizeof(s));
  thaw_sources_pull_secrets(src, image, on_secret, &s);
  return s;
}

/* The pull-secret table on its own: reference counts and the bound. */
static void test_pullsecrets_table(void) {
  thaw_pullsecrets_t *ps = thaw_pullsecrets_new(4);
  CHECK(ps != NULL);
  const char *imgs[] = {"docker.io/a/x:1", "docker.io/a/y:1"};
  const char *names[] = {"one", "two"};
  thaw_pullsecrets_use_t *u1 = thaw_pullsecrets_add(ps, "n", imgs, 2, names, 1);
  thaw_pullsecrets_use_t *u2 = thaw_pullsecrets_add(ps, "n", imgs, 1, names, 1);
  CHECK(u1 != NULL && u2 != NULL);
  CHECK(thaw_pullsecrets_count(ps) == 2); /* x/one shared, counted once */
  /* 2 + 2x2 > 4: refused whole */
  CHECK(thaw_pullsecrets_add(ps, "n", imgs, 2, names, 2) == NULL);
  CHECK(thaw_pullsecrets_add(ps, "n", imgs, 0, names, 1) == NULL);
  secrets_t s;
  memset(&s, 0, sizeof(s));
  thaw_pullsecrets_each(ps, imgs[0], on_secret, &s);
  CHECK(s.n == 1 && has_secret(&s, "n/one"));
  thaw_pullsecrets_drop(ps, u1);
  CHECK(thaw_pullsecrets_count(ps) == 1); /* u2 still names x/one */
  memset(&s, 0, sizeof(s));
  thaw_pullsecrets_each(ps, imgs[1], on_secret, &s);
  CHECK(s.n == 0);
  thaw_pullsecrets_drop(ps, u2);
  CHECK(thaw_pullsecrets_count(ps) == 0);
  thaw_pullsecrets_drop(ps, NULL);
  CHECK(thaw_pullsecrets_add(ps, "n", imgs, 2, names, 2) != NULL);
  thaw_pullsecrets_free(ps); /* with a use still in it */
  thaw_pullsecrets_free(NULL);
}

/* --- the scenario ------------------------------------------------------- */

static int sources_synced(void *arg) { return thaw_sources_synced(arg); }
static int ci_synced(void *arg) {
  (void)arg;
  return thaw_informer_has_synced(ci_inf);
}

/* The value of thaw_sweep_created_total{source="<src>"}, or -1. */
static double created_metric(thaw_metrics_t *m, const char *src) {
  char *text = NULL, pat[128];
  size_t len = 0;
  double v = -1;
  CHECK(thaw_metrics_render(m, &text, &len) == 0);
  snprintf(pat, sizeof(pat), "thaw_sweep_created_total{source=\"%s\"} ", src);
  const char *p = text != NULL ? strstr(text, pat) : NULL;
  if (p != NULL)
    v = strtod(p + strlen(pat), NULL);
  free(text);
  return v;
}

static void seed(void) {
  make_ns("src-plain", "");
  make_ns("src-prewarm", "\"thaw.dev/prewarm\":\"true\"");
  make_ns("src-listed", "");
  make_ns("src-optout",
          "\"thaw.dev/caching\":\"disabled\",\"thaw.dev/prewarm\":\"true\"");
  make_ns("src-private", "\"thaw.dev/cache-private\":\"true\"");
  make_ns("src-private-optout", "\"thaw.dev/cache-private\":\"true\","
                                "\"thaw.dev/caching\":\"disabled\"");
  make_ns("src-late", "");
  make_ns("src-optin-late", "\"thaw.dev/caching\":\"disabled\"");
  make_ns("kube-system", "");
  /* --exclude-namespaces: as the system namespace, whatever its labels */
  make_ns("src-excluded", "\"thaw.dev/prewarm\":\"true\",\"thaw.dev/cache-private\":\"true\"");
  make_ns(SYSTEM_NS, "\"thaw.dev/prewarm\":\"true\"");
  make_ns("oscar-svc", "");
  make_ns("oscar-svc-alice-1a2b3c",
          "\"app.kubernetes.io/managed-by\":\"oscar\"");
  make_ns("oscarish", "\"app.kubernetes.io/managed-by\":\"oscar\"");

  /* swept: containers and init containers, normalised; bad ones skipped */
  new_pod("src-plain", "app", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"nginx\"},"
          "{\"name\":\"b\",\"image\":\"Foo/bar:1\"},"
          "{\"name\":\"c\",\"image\":\"bad image!\"}],"
          "\"initContainers\":[{\"name\":\"i\",\"image\":"
          "\"Quay.IO/org/init:2\"}]");
  /* rewritten images count as their originals */
  new_pod("src-plain", "rewritten",
          "\"annotations\":{\"thaw.dev/original-images\":"
          "\"{\\\"container/r\\\":\\\"redis:7\\\"}\"}",
          "\"containers\":[{\"name\":\"r\",\"image\":"
          "\"localhost:7439/docker.io/library/redis:7\"},"
          "{\"name\":\"m\",\"image\":"
          "\"localhost:7439/my.reg__5000/team/app:2\"}]");
  /* a pinned rewrite <cache>/x:tag@d: nothing when a CachedImage of x:tag
   * (or x:tag@d) exists, else x:tag@d, what the pod runs */
  new_pod("src-plain", "pinned",
          "\"annotations\":{\"thaw.dev/original-images\":"
          "\"{\\\"container/a\\\":\\\"preexisting:1\\\"}\"}",
          "\"containers\":[{\"name\":\"a\",\"image\":"
          "\"localhost:7439/docker.io/library/preexisting:1@" PIN "\"},"
          "{\"name\":\"b\",\"image\":"
          "\"localhost:7439/docker.io/library/pinned:1@" PIN "\"}]");
  /* an existing CachedImage is not created again */
  new_pod("src-plain", "pre", "",
          "\"containers\":[{\"name\":\"a\",\"image\":"
          "\"docker.io/library/preexisting:1\"}]");
  /* opt-outs */
  new_pod("src-plain", "mirror",
          "\"annotations\":{\"kubernetes.io/config.mirror\":\"abc\"}",
          "\"containers\":[{\"name\":\"a\",\"image\":\"mirror-only:1\"}]");
  new_pod("src-plain", "optout",
          "\"labels\":{\"thaw.dev/caching\":\"disabled\"}",
          "\"containers\":[{\"name\":\"a\",\"image\":\"pod-optout:1\"}]");
  new_pod("src-optout", "p", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"ns-optout:1\"}]");
  new_pod("kube-system", "p", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"kube-sys:1\"}]");
  new_pod(SYSTEM_NS, "p", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"own-sys:1\"}]");
  new_pod("src-excluded", "p", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"excluded:1\"}]");
  new_pod("src-optin-late", "p", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"optin-late:1\"}]");
  /* pull secrets: only the cache-private namespace lends them */
  new_pod("src-private", "p", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"private:1\"}],"
          "\"imagePullSecrets\":[{\"name\":\"regcred\"},{\"name\":\"other\"}]");
  new_pod("src-private-optout", "p", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"private:1\"}],"
          "\"imagePullSecrets\":[{\"name\":\"optcred\"}]");
  new_pod("src-plain", "withsecret", "",
          "\"containers\":[{\"name\":\"a\",\"image\":"
          "\"docker.io/library/private:1\"}],"
          "\"imagePullSecrets\":[{\"name\":\"plaincred\"}]");

  /* templates: only in pre-warm namespaces */
  make_template("src-prewarm", "t", "",
                "\"containers\":[{\"name\":\"a\",\"image\":"
                "\"ghcr.io/org/svc:1\"},{\"name\":\"b\",\"image\":"
                "\"UPPER/path/Bad:1\"}],"
                "\"initContainers\":[{\"name\":\"i\",\"image\":\"alpine:3\"}]");
  make_template("src-prewarm", "optout", "\"thaw.dev/caching\":\"disabled\"",
                "\"containers\":[{\"name\":\"a\",\"image\":\"tpl-optout:1\"}]");
  make_template("src-listed", "t", "",
                "\"containers\":[{\"name\":\"a\",\"image\":\"listed:1\"}]");
  make_template("src-plain", "t", "",
                "\"containers\":[{\"name\":\"a\",\"image\":\"notwarmed:1\"}]");
  make_template(
      "src-optout", "t", "",
      "\"containers\":[{\"name\":\"a\",\"image\":\"tpl-nsoptout:1\"}]");
  make_template(SYSTEM_NS, "t", "",
                "\"containers\":[{\"name\":\"a\",\"image\":\"tpl-sys:1\"}]");
  make_template("src-excluded", "t", "",
                "\"containers\":[{\"name\":\"a\",\"image\":\"tpl-excluded:1\"}]");
  make_template("src-late", "t", "",
                "\"containers\":[{\"name\":\"a\",\"image\":\"late:1\"}]");
  make_template("oscar-svc", "cowsay", "",
                "\"containers\":[{\"name\":\"a\",\"image\":"
                "\"grycap/imagemagick\"}]");
  make_template("oscar-svc-alice-1a2b3c", "plants", "",
                "\"containers\":[{\"name\":\"a\",\"image\":"
                "\"grycap/plants:1\"}]");
  make_template("oscarish", "t", "",
                "\"containers\":[{\"name\":\"a\",\"image\":\"oscarish:1\"}]");
  make_template("src-private", "t", "",
                "\"containers\":[{\"name\":\"a\",\"image\":\"private:1\"}],"
                "\"imagePullSecrets\":[{\"name\":\"tplcred\"}]");

  /* the controller already has this one */
  create_json(&thaw_kube_cachedimages, NULL,
              "{\"apiVersion\":\"thaw.dev/v1alpha1\",\"kind\":\"CachedImage\","
              "\"metadata\":{\"name\":\"preexisting\"},"
              "\"spec\":{\"image\":\"docker.io/library/preexisting:1\"}}");
}

static const char *const expected[] = {
    "docker.io/library/nginx:latest",      "quay.io/org/init:2",
    "docker.io/library/redis:7",           "my.reg:5000/team/app:2",
    "docker.io/library/private:1",         "ghcr.io/org/svc:1",
    "docker.io/library/alpine:3",          "docker.io/library/listed:1",
    "docker.io/grycap/imagemagick:latest", "docker.io/grycap/plants:1",
    ("docker.io/library/pinned:1@" PIN), /* one string */
};
#define N_EXPECTED ((int)(sizeof(expected) / sizeof(expected[0])))

static const char *const never[] = {
    "docker.io/library/mirror-only:1",
    "docker.io/library/pod-optout:1",
    "docker.io/library/ns-optout:1",
    "docker.io/library/kube-sys:1",
    "docker.io/library/own-sys:1",
    "docker.io/library/tpl-optout:1",
    "docker.io/library/notwarmed:1",
    "docker.io/library/tpl-nsoptout:1",
    "docker.io/library/tpl-sys:1",
    "docker.io/library/excluded:1",
    "docker.io/library/tpl-excluded:1",
    "docker.io/library/oscarish:1",
    "localhost:7439/docker.io/library/redis:7",
    ("docker.io/library/preexisting:1@" PIN), /* one string */
    "docker.io/library/pinned:1",
};

static void check_never(void) {
  for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
    int bad = has_ci(never[i], NULL);
    if (bad)
      fprintf(stderr, "unexpected CachedImage for %s\n", never[i]);
    CHECK(!bad);
  }
}

int main(void) {
  harness_init(&h);
  test_pullsecrets_table();
  CHECK(thaw_kube_new(&h.loop, &h.cfg, &skube) == 0);
  thaw_kube_set_observer(skube, on_kube, NULL);
  thaw_informer_config_t cc = {.resource = &thaw_kube_cachedimages,
                               .project = ci_project,
                               .free_rec = ci_free};
  CHECK(thaw_informer_new(&h.loop, h.kube, &cc, &ci_inf) == 0);
  CHECK(thaw_informer_start(ci_inf) == 0);
  seed();

  thaw_metrics_t *m = thaw_metrics_new();
  const char *prewarm[] = {"src-listed", "oscar-svc", NULL};
  const char *excluded[] = {"src-excluded", NULL};
  thaw_sources_opts_t o = {.system_namespace = SYSTEM_NS,
                           .excluded_namespaces = excluded,
                           .cache_host = "localhost:7439",
                           .prewarm_namespaces = prewarm,
                           .exists = ci_exists,
                           .metrics = m};
  thaw_sources_t *src;
  thaw_sources_opts_t bad = {0};
  CHECK(thaw_sources_new(&h.loop, skube, &bad, &src) == THAW_EINVAL);
  CHECK(thaw_sources_new(&h.loop, skube, &o, &src) == 0);
  CHECK(thaw_sources_start(src) == 0);
  CHECK(thaw_sources_start(src) == THAW_EINVAL);
  CHECK(run_until(&h, sources_synced, src, 20000));
  CHECK(run_until(&h, ci_synced, NULL, 20000));

  /* inactive: nothing is created, but everything is known */
  run_until(&h, NULL, NULL, 500);
  CHECK(creates == 0);
  CHECK(total_cis() == 1);
  CHECK(thaw_sources_ns_has_label(src, "src-private", "thaw.dev/cache-private",
                                  "true"));
  CHECK(!thaw_sources_ns_has_label(src, "src-private", "thaw.dev/cache-private",
                                   "false"));
  CHECK(!thaw_sources_ns_has_label(src, "src-plain", "thaw.dev/cache-private",
                                   "true"));
  CHECK(!thaw_sources_ns_has_label(src, "nowhere", "a", "b"));
  /* spec.pullSecrets are lent by the same rule as pods' secrets */
  CHECK(thaw_sources_ns_lends(src, "src-private"));
  CHECK(!thaw_sources_ns_lends(src, "src-private-optout"));
  CHECK(!thaw_sources_ns_lends(src, "src-plain"));
  CHECK(!thaw_sources_ns_lends(src, "src-excluded"));
  CHECK(!thaw_sources_ns_lends(src, "nowhere"));
  const thaw_podinfo_t *mp =
      thaw_informer_get(thaw_sources_pods(src), "src-plain/mirror", NULL);
  CHECK(mp != NULL && (mp->flags & THAW_SOURCES_POD_MIRROR));
  const thaw_podinfo_t *pp =
      thaw_informer_get(thaw_sources_pods(src), "src-plain/app", NULL);
  CHECK(pp != NULL && !(pp->flags & THAW_SOURCES_POD_MIRROR));

  /* pull secrets: learned already, lent only by src-private */
  secrets_t s = secrets_of(src, "docker.io/library/private:1");
  CHECK(s.n == 3);
  CHECK(has_secret(&s, "src-private/regcred"));
  CHECK(has_secret(&s, "src-private/other"));
  CHECK(has_secret(&s, "src-private/tplcred"));
  CHECK(!has_secret(&s, "src-plain/plaincred"));
  CHECK(!has_secret(&s, "src-private-optout/optcred"));
  s = secrets_of(src, "docker.io/library/nginx:latest");
  CHECK(s.n == 0);

  /* active: exactly the expected images, one POST each */
  thaw_sources_set_active(src, 1);
  thaw_sources_set_active(src, 1); /* no second sweep */
  CHECK(wait_present(expected, N_EXPECTED));
  run_until(&h, NULL, NULL, 500);
  check_never();
  CHECK(total_cis() == N_EXPECTED + 1);
  CHECK(creates == N_EXPECTED);
  CHECK(exists_calls > 0);
  CHECK(created_metric(m, "pod") == 6);
  CHECK(created_metric(m, "podtemplate") == 5);
  /* the pre-existing object is untouched */
  int n = 0;
  cJSON *items = list_all(&h, &thaw_kube_cachedimages, NULL, NULL), *it;
  cJSON_ArrayForEach(it, items) {
    const char *name = cJSON_GetStringValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(it, "metadata"), "name"));
    n += name != NULL && strcmp(name, "preexisting") == 0;
  }
  cJSON_Delete(items);
  CHECK(n == 1);

  /* updates: an ephemeral container, a namespace gaining pre-warm, one
   * losing its opt-out, a new pod */
  add_ephemeral("src-plain", "app", "busybox:1.36");
  patch_ns_labels("src-late", "\"thaw.dev/prewarm\":\"true\"");
  patch_ns_labels("src-optin-late", "\"thaw.dev/caching\":null");
  new_pod("src-plain", "new", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"fresh:1\"}]");
  const char *later[] = {
      "docker.io/library/busybox:1.36", "docker.io/library/late:1",
      "docker.io/library/optin-late:1", "docker.io/library/fresh:1"};
  CHECK(wait_present(later, 4));
  run_until(&h, NULL, NULL, 300);
  check_never();
  CHECK(creates == N_EXPECTED + 4);
  CHECK(created_metric(m, "pod") == 9);
  CHECK(created_metric(m, "podtemplate") == 6);

  /* a create that fails for good (400; a 403 is retried, since RBAC may
   * be fixed) is not counted as created */
  CHECK(emu_post(&h, "/_emulator/fail",
                 "{\"count\":1,\"code\":400,\"pathPrefix\":"
                 "\"/apis/thaw.dev\",\"methods\":[\"POST\"]}",
                 NULL) == 200);
  new_pod("src-plain", "forbidden", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"forbidden:1\"}]");
  for (int i = 0; i < 50 && creates < N_EXPECTED + 5; i++)
    run_until(&h, NULL, NULL, 100);
  run_until(&h, NULL, NULL, 300);
  CHECK(creates == N_EXPECTED + 5);
  CHECK(!has_ci("docker.io/library/forbidden:1", NULL));
  CHECK(created_metric(m, "pod") == 9);

  /* inactive again: new images wait for the next activation */
  thaw_sources_set_active(src, 0);
  new_pod("src-plain", "while-inactive", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"inactive:1\"}]");
  make_template("src-prewarm", "while-inactive", "",
                "\"containers\":[{\"name\":\"a\",\"image\":\"inactive-t:1\"}]");
  run_until(&h, NULL, NULL, 800);
  CHECK(!has_ci("docker.io/library/inactive:1", NULL));
  CHECK(!has_ci("docker.io/library/inactive-t:1", NULL));
  CHECK(creates == N_EXPECTED + 5);
  thaw_sources_set_active(src, 1);
  const char *resumed[] = {"docker.io/library/inactive:1",
                           "docker.io/library/inactive-t:1",
                           "docker.io/library/forbidden:1"};
  CHECK(wait_present(resumed, 3));
  run_until(&h, NULL, NULL, 300);
  /* the re-sweep found nothing else new (forbidden:1 is tried again: the
   * recorder is new) */
  CHECK(creates == N_EXPECTED + 8);

  /* pull secrets go with the pods and templates that named them */
  CHECK(sync_delete(&h, &thaw_kube_pods, "src-private", "p") == 0);
  run_until(&h, NULL, NULL, 300);
  s = secrets_of(src, "docker.io/library/private:1");
  CHECK(s.n == 1 && has_secret(&s, "src-private/tplcred"));
  CHECK(sync_delete(&h, &thaw_kube_podtemplates, "src-private", "t") == 0);
  run_until(&h, NULL, NULL, 300);
  s = secrets_of(src, "docker.io/library/private:1");
  CHECK(s.n == 0);
  /* a namespace that stops being cache-private stops lending */
  new_pod("src-private", "p2", "",
          "\"containers\":[{\"name\":\"a\",\"image\":\"private:1\"}],"
          "\"imagePullSecrets\":[{\"name\":\"regcred\"}]");
  run_until(&h, NULL, NULL, 300);
  CHECK(secrets_of(src, "docker.io/library/private:1").n == 1);
  patch_ns_labels("src-private", "\"thaw.dev/cache-private\":null");
  /* a system namespace never lends, even labelled */
  patch_ns_labels("kube-system", "\"thaw.dev/cache-private\":\"true\"");
  run_until(&h, NULL, NULL, 300);
  CHECK(secrets_of(src, "docker.io/library/private:1").n == 0);
  CHECK(thaw_sources_ns_has_label(src, "kube-system", "thaw.dev/cache-private",
                                  "true"));
  CHECK(!thaw_sources_ns_lends(src, "kube-system"));

  /* freed while active with the informers' requests in flight */
  thaw_sources_free(src);
  thaw_sources_free(NULL);
  thaw_informer_free(ci_inf);
  run_until(&h, NULL, NULL, 200);
  thaw_kube_free(skube);
  thaw_metrics_free(m);
  harness_close(&h);
  if (failures)
    fprintf(stderr, "%d check(s) failed\n", failures);
  return failures != 0;
}
