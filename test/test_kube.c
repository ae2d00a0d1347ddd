/* test_kube.c - the Kubernetes client against the API-server emulator.
 *
 * Run under test/with-emulator.sh, which exports THAW_EMU_URL, THAW_EMU_CA,
 * THAW_EMU_TOKEN, THAW_EMU_TOKENS_FILE, THAW_EMU_DIR and KUBECONFIG. Each
 * test drives the loop until its callbacks ran; the loop must close empty. */
#include "kube_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static char ns[64];

static cJSON *pod(const char *name, const char *app) {
  cJSON *p = cJSON_CreateObject();
  cJSON_AddStringToObject(p, "apiVersion", "v1");
  cJSON_AddStringToObject(p, "kind", "Pod");
  cJSON *m = cJSON_AddObjectToObject(p, "metadata");
  cJSON_AddStringToObject(m, "name", name);
  cJSON *l = cJSON_AddObjectToObject(m, "labels");
  cJSON_AddStringToObject(l, "app", app);
  cJSON_AddStringToObject(l, "suite", ns);
  cJSON *spec = cJSON_AddObjectToObject(p, "spec");
  cJSON *cs = cJSON_AddArrayToObject(spec, "containers");
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "name", "main");
  cJSON_AddStringToObject(c, "image", "busybox:1.36");
  cJSON_AddItemToArray(cs, c);
  return p;
}

static const char *rv_of(const cJSON *o) {
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "metadata");
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "resourceVersion");
  return cJSON_IsString(v) ? v->valuestring : "";
}

static int items_count(const cJSON *list) {
  return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(list, "items"));
}

static void test_namespace_and_create(void) {
  cJSON *n = cJSON_Parse("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
                         "\"metadata\":{\"name\":\"x\"}}");
  cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetObjectItem(n, "metadata"), "name"), ns);
  res_t r = {0};
  CHECK(thaw_kube_create(kc, &thaw_kube_namespaces, NULL, n, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  CHECK(r.status == 201);
  res_free(&r);
  CHECK(thaw_kube_create(kc, &thaw_kube_namespaces, NULL, n, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_EALREADYEXISTS);
  CHECK(r.status == 409 && strcmp(r.reason, "AlreadyExists") == 0);
  res_free(&r);
  cJSON_Delete(n);

  const char *names[] = {"p1", "p2", "p3"}, *apps[] = {"a", "b", "a"};
  for (int i = 0; i < 3; i++) {
    cJSON *p = pod(names[i], apps[i]);
    thaw_kube_opts_t o = {.namespace = ns, .field_manager = "thaw-test"};
    CHECK(thaw_kube_create(kc, &thaw_kube_pods, &o, p, on_res, &r) == 0);
    wait_res(&r);
    CHECK_ERR(&r, 0);
    CHECK(r.body && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(
                               cJSON_GetObjectItem(r.body, "metadata"), "name")),
                           names[i]) == 0);
    res_free(&r);
    cJSON_Delete(p);
  }

  /* dryRun=All: the server answers as if created but stores nothing */
  cJSON *p = pod("dry", "a");
  thaw_kube_opts_t o = {.namespace = ns, .dry_run = 1};
  CHECK(thaw_kube_create(kc, &thaw_kube_pods, &o, p, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);
  cJSON_Delete(p);
  o = (thaw_kube_opts_t){.namespace = ns, .name = "dry"};
  CHECK(thaw_kube_get(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_ENOTFOUND);
  CHECK(r.status == 404 && strcmp(r.reason, "NotFound") == 0 && r.message[0]);
  res_free(&r);
  printf("ok create, AlreadyExists, dryRun, NotFound\n");
}

static void test_get_list_selectors(void) {
  res_t r = {0};
  thaw_kube_opts_t o = {.namespace = ns, .name = "p1"};
  CHECK(thaw_kube_get(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  CHECK(r.status == 200 && rv_of(r.body)[0]);
  res_free(&r);

  struct {
    const char *ns, *label, *field;
    int want;
  } t[] = {
      {ns, "app=a", NULL, 2},
      {ns, "app!=a", NULL, 1},
      {ns, "app in (a,b)", NULL, 3},
      {ns, NULL, "metadata.name=p2", 1},
      {ns, "app=a", "metadata.name!=p1", 1},
      {NULL, NULL, NULL, -1}, /* all namespaces: at least ours */
  };
  char suite[96];
  snprintf(suite, sizeof suite, "suite=%s", ns);
  t[5].label = suite;
  t[5].want = 3;
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    o = (thaw_kube_opts_t){.namespace = t[i].ns,
                           .label_selector = t[i].label,
                           .field_selector = t[i].field};
    CHECK(thaw_kube_list(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
    wait_res(&r);
    CHECK_ERR(&r, 0);
    if (items_count(r.body) != t[i].want) {
      fprintf(stderr, "selector %s / %s: %d items, want %d\n", t[i].label,
              t[i].field, items_count(r.body), t[i].want);
      exit(1);
    }
    res_free(&r);
  }

  /* a selector that does not parse: 400 BadRequest */
  o = (thaw_kube_opts_t){.namespace = ns, .label_selector = "app in (a"};
  CHECK(thaw_kube_list(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_EBADREQUEST);
  CHECK(r.status == 400);
  res_free(&r);
  printf("ok get, list with label and field selectors, 400\n");
}

static void test_pagination(void) {
  res_t r = {0};
  char cont[2048] = "";
  int pages = 0, items = 0;
  do {
    thaw_kube_opts_t o = {.namespace = ns, .limit = 1,
                          .continue_token = cont[0] ? cont : NULL};
    CHECK(thaw_kube_list(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
    wait_res(&r);
    CHECK_ERR(&r, 0);
    CHECK(items_count(r.body) == 1);
    items++;
    pages++;
    const char *c = cJSON_GetStringValue(cJSON_GetObjectItem(
        cJSON_GetObjectItem(r.body, "metadata"), "continue"));
    snprintf(cont, sizeof cont, "%s", c ? c : "");
    res_free(&r);
  } while (cont[0] && pages < 10);
  CHECK(pages == 3 && items == 3);
  printf("ok pagination (limit/continue)\n");
}

static void test_update_patch_status(void) {
  res_t r = {0};
  thaw_kube_opts_t o = {.namespace = ns, .name = "p1"};
  CHECK(thaw_kube_get(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  cJSON *obj = r.body;
  r.body = NULL;
  res_free(&r);
  char old_rv[64];
  snprintf(old_rv, sizeof old_rv, "%s", rv_of(obj));

  /* PUT with the current resourceVersion */
  cJSON *labels = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "metadata"), "labels");
  cJSON_AddStringToObject(labels, "updated", "yes");
  o = (thaw_kube_opts_t){.field_manager = "thaw-test"};
  CHECK(thaw_kube_update(kc, &thaw_kube_pods, &o, obj, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  CHECK(r.status == 200 && strcmp(rv_of(r.body), old_rv) != 0);
  res_free(&r);

  /* the same PUT again carries a stale resourceVersion: 409 Conflict */
  CHECK(thaw_kube_update(kc, &thaw_kube_pods, NULL, obj, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_ECONFLICT);
  CHECK(r.status == 409 && strcmp(r.reason, "Conflict") == 0);
  res_free(&r);
  cJSON_Delete(obj);

  /* merge patch of the object */
  cJSON *patch = cJSON_Parse("{\"metadata\":{\"labels\":{\"patched\":\"1\"}}}");
  o = (thaw_kube_opts_t){.namespace = ns, .name = "p1", .field_manager = "thaw-test"};
  CHECK(thaw_kube_merge_patch(kc, &thaw_kube_pods, &o, patch, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  const cJSON *l = cJSON_GetObjectItem(cJSON_GetObjectItem(r.body, "metadata"), "labels");
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(l, "patched")), "1") == 0);
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(l, "updated")), "yes") == 0);
  res_free(&r);
  cJSON_Delete(patch);

  /* merge patch of the status subresource */
  patch = cJSON_Parse("{\"status\":{\"phase\":\"Running\"}}");
  o = (thaw_kube_opts_t){.namespace = ns, .name = "p1", .subresource = "status"};
  CHECK(thaw_kube_merge_patch(kc, &thaw_kube_pods, &o, patch, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);
  cJSON_Delete(patch);
  o = (thaw_kube_opts_t){.namespace = ns, .name = "p1"};
  CHECK(thaw_kube_get(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(
                   cJSON_GetObjectItem(r.body, "status"), "phase")),
               "Running") == 0);
  /* PUT of the status subresource */
  obj = thaw_kube_result_take_body(&(thaw_kube_result_t){.body = r.body});
  r.body = NULL;
  res_free(&r);
  cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "status"), "phase"),
                       "Succeeded");
  o = (thaw_kube_opts_t){.subresource = "status"};
  CHECK(thaw_kube_update(kc, &thaw_kube_pods, &o, obj, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(
                   cJSON_GetObjectItem(r.body, "status"), "phase")),
               "Succeeded") == 0);
  res_free(&r);
  cJSON_Delete(obj);

  /* a patch needs a name in the options */
  CHECK(thaw_kube_merge_patch(kc, &thaw_kube_pods,
                              &(thaw_kube_opts_t){.namespace = ns}, patch,
                              on_res, &r) == THAW_EINVAL);
  printf("ok update, 409 Conflict, merge-patch, status subresource\n");
}

static void test_delete(void) {
  res_t r = {0};
  thaw_kube_opts_t o = {.namespace = ns, .name = "p3"};
  CHECK(thaw_kube_delete(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);
  CHECK(thaw_kube_get(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_ENOTFOUND);
  res_free(&r);
  CHECK(thaw_kube_delete(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_ENOTFOUND);
  res_free(&r);
  /* a precondition on a stale resourceVersion: 409 Conflict */
  o = (thaw_kube_opts_t){.namespace = ns, .name = "p2", .resource_version = "1"};
  CHECK(thaw_kube_delete(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_ECONFLICT);
  res_free(&r);
  printf("ok delete, 404, stale precondition\n");
}

static const thaw_kube_resource_t crds = {"apiextensions.k8s.io", "v1",
                                          "customresourcedefinitions", 0};
static const thaw_kube_resource_t widgets = {"example.com", "v1", "widgets", 0};

static void test_crd_422(void) {
  res_t r = {0};
  cJSON *crd = cJSON_Parse(
      "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"CustomResourceDefinition\","
      "\"metadata\":{\"name\":\"widgets.example.com\"},\"spec\":{\"group\":\"example.com\","
      "\"scope\":\"Cluster\",\"names\":{\"plural\":\"widgets\",\"singular\":\"widget\","
      "\"kind\":\"Widget\",\"listKind\":\"WidgetList\"},\"versions\":[{\"name\":\"v1\","
      "\"served\":true,\"storage\":true,\"subresources\":{\"status\":{}},\"schema\":"
      "{\"openAPIV3Schema\":{\"type\":\"object\",\"properties\":{\"spec\":{\"type\":"
      "\"object\",\"required\":[\"image\"],\"properties\":{\"image\":{\"type\":\"string\"},"
      "\"size\":{\"type\":\"integer\",\"minimum\":1}}},\"status\":{\"type\":\"object\","
      "\"x-kubernetes-preserve-unknown-fields\":true}}}}}]}}");
  CHECK(crd);
  CHECK(thaw_kube_create(kc, &crds, NULL, crd, on_res, &r) == 0);
  wait_res(&r);
  CHECK(r.err == 0 || r.err == THAW_EALREADYEXISTS);
  res_free(&r);
  cJSON_Delete(crd);

  /* the group may take a moment to be served */
  for (int i = 0; i < 50; i++) {
    CHECK(thaw_kube_list(kc, &widgets, NULL, on_res, &r) == 0);
    wait_res(&r);
    int e = r.err;
    res_free(&r);
    if (!e)
      break;
    sleep_ms(100);
  }
  cJSON *w = cJSON_Parse("{\"apiVersion\":\"example.com/v1\",\"kind\":\"Widget\","
                         "\"metadata\":{\"name\":\"bad\"},\"spec\":{\"size\":0}}");
  CHECK(thaw_kube_create(kc, &widgets, NULL, w, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_EINVALID);
  CHECK(r.status == 422 && strcmp(r.reason, "Invalid") == 0);
  const cJSON *causes = cJSON_GetObjectItem(cJSON_GetObjectItem(r.body, "details"), "causes");
  CHECK(cJSON_GetArraySize(causes) >= 2);
  res_free(&r);
  cJSON_Delete(w);

  /* cluster-scoped custom resource with a status subresource */
  w = cJSON_Parse("{\"apiVersion\":\"example.com/v1\",\"kind\":\"Widget\","
                  "\"metadata\":{\"name\":\"good\"},\"spec\":{\"image\":\"x\",\"size\":1}}");
  CHECK(thaw_kube_create(kc, &widgets, NULL, w, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);
  cJSON_Delete(w);
  cJSON *patch = cJSON_Parse("{\"status\":{\"phase\":\"Ready\"}}");
  thaw_kube_opts_t o = {.name = "good", .subresource = "status"};
  CHECK(thaw_kube_merge_patch(kc, &widgets, &o, patch, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(
                   cJSON_GetObjectItem(r.body, "status"), "phase")), "Ready") == 0);
  res_free(&r);
  cJSON_Delete(patch);

  /* the CachedImage CRD, when the wrapper loaded it: spec.image is required */
  CHECK(thaw_kube_list(kc, &thaw_kube_cachedimages, NULL, on_res, &r) == 0);
  wait_res(&r);
  int have_ci = r.err == 0;
  res_free(&r);
  if (have_ci) {
    cJSON *ci = cJSON_Parse("{\"apiVersion\":\"thaw.dev/v1alpha1\",\"kind\":\"CachedImage\","
                            "\"metadata\":{\"name\":\"no-image\"},\"spec\":{}}");
    CHECK(thaw_kube_create(kc, &thaw_kube_cachedimages, NULL, ci, on_res, &r) == 0);
    wait_res(&r);
    CHECK_ERR(&r, THAW_EINVALID);
    res_free(&r);
    cJSON_Delete(ci);
  }
  printf("ok CRD, 422 Invalid, custom status subresource%s\n",
         have_ci ? ", CachedImage 422" : " (CachedImage CRD not loaded)");
}

static void test_server_errors(void) {
  res_t r = {0};
  char prefix[160], body[320];
  snprintf(prefix, sizeof prefix, "/api/v1/namespaces/%s/pods", ns);
  thaw_kube_opts_t o = {.namespace = ns, .name = "p1"};

  snprintf(body, sizeof body,
           "{\"count\":1,\"code\":429,\"retryAfter\":2,\"pathPrefix\":\"%s\"}", prefix);
  CHECK(control("POST", "fail", body) == 200);
  CHECK(thaw_kube_get(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_ETOOMANY);
  CHECK(r.status == 429 && r.retry_after == 2);
  res_free(&r);
  /* count 1: the next request passes */
  CHECK(thaw_kube_get(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);

  long codes[] = {500, 503};
  for (int i = 0; i < 2; i++) {
    snprintf(body, sizeof body, "{\"count\":1,\"code\":%ld,\"pathPrefix\":\"%s\"}",
             codes[i], prefix);
    CHECK(control("POST", "fail", body) == 200);
    CHECK(thaw_kube_get(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
    wait_res(&r);
    CHECK_ERR(&r, THAW_ESERVER);
    CHECK(r.status == codes[i] && r.message[0]);
    res_free(&r);
  }

  /* 410: an expired continue token and an Exact list of a compacted rv */
  o = (thaw_kube_opts_t){.namespace = ns, .limit = 1};
  CHECK(thaw_kube_list(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  char cont[2048], rv[64];
  snprintf(cont, sizeof cont, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(
                                        cJSON_GetObjectItem(r.body, "metadata"), "continue")));
  snprintf(rv, sizeof rv, "%s", rv_of(r.body));
  res_free(&r);
  /* make history move past rv, then compact it away */
  cJSON *p = pod("p4", "c");
  CHECK(thaw_kube_create(kc, &thaw_kube_pods, &(thaw_kube_opts_t){.namespace = ns},
                         p, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);
  cJSON_Delete(p);
  CHECK(control("POST", "compact", "{}") == 200);
  o.continue_token = cont;
  CHECK(thaw_kube_list(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_EGONE);
  CHECK(r.status == 410 && strcmp(r.reason, "Expired") == 0);
  res_free(&r);
  o = (thaw_kube_opts_t){.namespace = ns, .resource_version = rv,
                         .resource_version_match = "Exact"};
  CHECK(thaw_kube_list(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_EGONE);
  res_free(&r);
  printf("ok 429 + Retry-After, 500, 503, 410 continue/Exact\n");
}

static void test_transport_failure(void) {
  /* a port that was just free: nothing listens there */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
  close(fd);
  char url[64];
  snprintf(url, sizeof url, "https://127.0.0.1:%d", ntohs(a.sin_port));
  thaw_kube_config_t cfg = emu_config();
  free(cfg.server);
  cfg.server = strdup(url);
  thaw_kube_t *k2;
  CHECK(thaw_kube_new(loop, &cfg, &k2) == 0);
  thaw_kube_config_free(&cfg);
  res_t r = {0};
  CHECK(thaw_kube_get(k2, &thaw_kube_namespaces, &(thaw_kube_opts_t){.name = "default"},
                      on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_ETRANSPORT);
  CHECK(r.status == 0 && r.message[0]);
  res_free(&r);
  thaw_kube_free(k2);
  /* a bad server URL is a config error */
  thaw_kube_config_t bad = {.server = "ftp://x"};
  CHECK(thaw_kube_new(loop, &bad, &k2) == THAW_ECONFIG);
  printf("ok transport failure (connection refused)\n");
}

static void write_file(const char *path, const char *text) {
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  CHECK(f);
  fputs(text, f);
  CHECK(fclose(f) == 0);
  CHECK(rename(tmp, path) == 0); /* atomic, like a projected volume */
}

static void test_token_rotation(void) {
  const char *tokens = getenv("THAW_EMU_TOKENS_FILE");
  const char *tok = getenv("THAW_EMU_TOKEN");
  CHECK(tokens && tok);
  char dir[] = "/tmp/thaw-kube-tok-XXXXXX", tf[256];
  CHECK(mkdtemp(dir));
  snprintf(tf, sizeof tf, "%s/token", dir);
  write_file(tf, tok);
  thaw_kube_config_t cfg = emu_config();
  free(cfg.token);
  cfg.token = NULL;
  cfg.token_file = strdup(tf);
  thaw_kube_t *k2;
  CHECK(thaw_kube_new(loop, &cfg, &k2) == 0);
  thaw_kube_config_free(&cfg);
  res_t r = {0};
  thaw_kube_opts_t o = {.name = ns};
  CHECK(thaw_kube_get(k2, &thaw_kube_namespaces, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);

  /* rotate: the server now accepts only the new token (and the suite's) */
  char newtok[64], list[512];
  snprintf(newtok, sizeof newtok, "rotated-%d", (int)getpid());
  snprintf(list, sizeof list, "%s\n%s\n", tok, newtok);
  write_file(tokens, list);
  write_file(tf, newtok);
  CHECK(thaw_kube_get(k2, &thaw_kube_namespaces, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);
  /* an unknown token is refused: proves the file is read again */
  write_file(tf, "not-a-valid-token\n");
  CHECK(thaw_kube_get(k2, &thaw_kube_namespaces, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_EFORBIDDEN);
  CHECK(r.status == 401);
  res_free(&r);
  write_file(tf, newtok);
  CHECK(thaw_kube_get(k2, &thaw_kube_namespaces, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);
  thaw_kube_free(k2);
  unlink(tf);
  rmdir(dir);
  printf("ok token rotation through the token file\n");
}

static void test_client_cert(void) {
  const char *dir = getenv("THAW_EMU_DIR"), *ca = getenv("THAW_EMU_CA");
  CHECK(dir && ca);
  char cmd[2048], key[512], crt[512];
  snprintf(key, sizeof key, "%s/kt-client.key", dir);
  snprintf(crt, sizeof crt, "%s/kt-client.crt", dir);
  snprintf(cmd, sizeof cmd,
           "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout %s -subj '/O=system:masters/CN=thaw-test' 2>/dev/null | "
           "openssl x509 -req -CA %s -CAkey %s/ca.key -days 1 -out %s 2>/dev/null",
           key, ca, dir, crt);
  CHECK(system(cmd) == 0);
  for (int blob = 0; blob < 2; blob++) {
    thaw_kube_config_t cfg = emu_config();
    free(cfg.token);
    cfg.token = NULL;
    if (blob) {
      cfg.cert_pem = read_text(crt);
      cfg.key_pem = read_text(key);
    } else {
      cfg.cert_file = strdup(crt);
      cfg.key_file = strdup(key);
    }
    thaw_kube_t *k2;
    CHECK(thaw_kube_new(loop, &cfg, &k2) == 0);
    thaw_kube_config_free(&cfg);
    res_t r = {0};
    CHECK(thaw_kube_get(k2, &thaw_kube_namespaces, &(thaw_kube_opts_t){.name = ns},
                        on_res, &r) == 0);
    wait_res(&r);
    CHECK_ERR(&r, 0);
    res_free(&r);
    thaw_kube_free(k2);
  }
  /* no credentials at all: 401 */
  thaw_kube_config_t cfg = emu_config();
  free(cfg.token);
  cfg.token = NULL;
  thaw_kube_t *k2;
  CHECK(thaw_kube_new(loop, &cfg, &k2) == 0);
  thaw_kube_config_free(&cfg);
  res_t r = {0};
  CHECK(thaw_kube_get(k2, &thaw_kube_namespaces, &(thaw_kube_opts_t){.name = ns},
                      on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, THAW_EFORBIDDEN);
  res_free(&r);
  thaw_kube_free(k2);
  printf("ok client certificate (file and PEM blob), 401 without credentials\n");
}

static void test_kubeconfig_file(void) {
  const char *path = getenv("KUBECONFIG");
  CHECK(path != NULL); /* with-emulator.sh always writes one */
  thaw_kube_config_t cfg;
  char err[256];
  CHECK(thaw_kube_config_load(&cfg, path, err, sizeof err) == 0);
  thaw_kube_t *k2;
  CHECK(thaw_kube_new(loop, &cfg, &k2) == 0);
  thaw_kube_config_free(&cfg);
  res_t r = {0};
  CHECK(thaw_kube_get(k2, &thaw_kube_namespaces, &(thaw_kube_opts_t){.name = ns},
                      on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);
  thaw_kube_free(k2);
  printf("ok client from KUBECONFIG\n");
}

/* ---- watch ------------------------------------------------------------ */

static void test_watch_events(void) {
  res_t r = {0};
  thaw_kube_opts_t o = {.namespace = ns, .label_selector = "app=w"};
  CHECK(thaw_kube_list(kc, &thaw_kube_pods, &o, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  char rv[64];
  snprintf(rv, sizeof rv, "%s", rv_of(r.body));
  res_free(&r);

  watch_t w = {0};
  o = (thaw_kube_opts_t){.namespace = ns, .label_selector = "app=w",
                         .resource_version = rv, .timeout_seconds = 4};
  CHECK(thaw_kube_watch(kc, &thaw_kube_pods, &o, on_event, on_end, &w, &w.w) == 0);

  cJSON *p = pod("w1", "w");
  CHECK(thaw_kube_create(kc, &thaw_kube_pods, &(thaw_kube_opts_t){.namespace = ns},
                         p, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);
  cJSON_Delete(p);
  cJSON *patch = cJSON_Parse("{\"metadata\":{\"annotations\":{\"x\":\"1\"}}}");
  CHECK(thaw_kube_merge_patch(kc, &thaw_kube_pods,
                              &(thaw_kube_opts_t){.namespace = ns, .name = "w1"},
                              patch, on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);
  cJSON_Delete(patch);
  CHECK(thaw_kube_delete(kc, &thaw_kube_pods,
                         &(thaw_kube_opts_t){.namespace = ns, .name = "w1"},
                         on_res, &r) == 0);
  wait_res(&r);
  CHECK_ERR(&r, 0);
  res_free(&r);

  wait_flag(&w.ended, 20000);
  CHECK(w.end_err == 0);
  /* ADDED, MODIFIED, DELETED in order, bookmarks anywhere */
  const char *want[] = {"ADDED", "MODIFIED", "DELETED"};
  int wi = 0, bookmarks = 0;
  for (int i = 0; i < w.n; i++) {
    if (strcmp(w.types[i], "BOOKMARK") == 0) {
      bookmarks++;
      CHECK(w.rvs[i][0]);
      continue;
    }
    CHECK(wi < 3 && strcmp(w.types[i], want[wi]) == 0);
    CHECK(strcmp(w.names[i], "w1") == 0);
    wi++;
  }
  CHECK(wi == 3);
  CHECK(bookmarks >= 1);
  watch_clear(&w);
  printf("ok watch: ADDED, MODIFIED, DELETED in order, %d bookmark(s), clean end\n",
         bookmarks);
}

static void test_watch_410(void) {
  /* rv 1 is older than the watch cache's window (restarted here, as by an
   * apiserver restart): ERROR event with a 410 Status */
  CHECK(control("POST", "compact", "{\"restartWatchCache\":true}") == 200);
  watch_t w = {0};
  thaw_kube_opts_t o = {.namespace = ns, .resource_version = "1", .timeout_seconds = 10};
  CHECK(thaw_kube_watch(kc, &thaw_kube_pods, &o, on_event, on_end, &w, &w.w) == 0);
  wait_flag(&w.ended, 20000);
  CHECK(w.n == 1 && strcmp(w.types[0], "ERROR") == 0 && w.codes[0] == 410);
  CHECK(w.end_err == 0);
  watch_clear(&w);
  printf("ok watch: 410 ERROR event after compaction\n");
}

static void test_watch_stop_from_callback(void) {
  watch_t w = {.stop_after = 1};
  thaw_kube_opts_t o = {.namespace = ns};
  /* no resourceVersion: the current pods arrive as ADDED, then stop */
  CHECK(thaw_kube_watch(kc, &thaw_kube_pods, &o, on_event, on_end, &w, &w.w) == 0);
  wait_flag(&w.ended, 20000);
  CHECK(w.n == 1 && w.end_err == THAW_ECANCELED && w.end_inside_stop);
  watch_clear(&w);
  /* stop from outside: on_end runs before stop returns */
  w = (watch_t){0};
  CHECK(thaw_kube_watch(kc, &thaw_kube_pods, &o, on_event, on_end, &w, &w.w) == 0);
  wait_count(&w.n, 1, 20000);
  thaw_kube_watch_stop(w.w);
  CHECK(w.ended && w.end_err == THAW_ECANCELED);
  watch_clear(&w);
  run_idle(200); /* nothing may arrive after the stop */
  CHECK(w.n == 0);
  printf("ok watch stop from inside on_event and from outside\n");
}

static int cancel_count;
static void on_cancel(const thaw_kube_result_t *res, void *data) {
  (void)data;
  CHECK(res->err == THAW_ECANCELED);
  cancel_count++;
}

static void test_latency_and_free_in_flight(void) {
  /* 10 requests at 300 ms each finish together, and the loop keeps
   * turning while they wait */
  CHECK(control("POST", "latency", "{\"ms\":300}") == 200);
  res_t r[10] = {{0}};
  uint64_t t0 = uv_now(loop);
  unsigned ticks0 = ticks;
  for (int i = 0; i < 10; i++)
    CHECK(thaw_kube_get(kc, &thaw_kube_pods,
                        &(thaw_kube_opts_t){.namespace = ns, .name = "p1"},
                        on_res, &r[i]) == 0);
  for (int i = 0; i < 10; i++) {
    wait_res(&r[i]);
    CHECK_ERR(&r[i], 0);
    res_free(&r[i]);
  }
  uint64_t took = uv_now(loop) - t0;
  CHECK(took >= 300 && took < 2900); /* serial would be >= 3000 */
  CHECK(ticks - ticks0 >= 4); /* the 50 ms ticker ran meanwhile */

  /* a short client deadline turns into a transport error */
  thaw_kube_set_timeout(kc, 100);
  res_t slow = {0};
  CHECK(thaw_kube_get(kc, &thaw_kube_pods,
                      &(thaw_kube_opts_t){.namespace = ns, .name = "p1"},
                      on_res, &slow) == 0);
  wait_res(&slow);
  CHECK_ERR(&slow, THAW_ETRANSPORT);
  res_free(&slow);
  thaw_kube_set_timeout(kc, 0);

  /* free a client with requests and a watch in flight */
  thaw_kube_config_t cfg = emu_config();
  thaw_kube_t *k2;
  CHECK(thaw_kube_new(loop, &cfg, &k2) == 0);
  thaw_kube_config_free(&cfg);
  cancel_count = 0;
  for (int i = 0; i < 5; i++)
    CHECK(thaw_kube_get(k2, &thaw_kube_pods,
                        &(thaw_kube_opts_t){.namespace = ns, .name = "p1"},
                        on_cancel, NULL) == 0);
  watch_t w = {0};
  CHECK(thaw_kube_watch(k2, &thaw_kube_pods, &(thaw_kube_opts_t){.namespace = ns},
                        on_event, on_end, &w, &w.w) == 0);
  run_idle(100); /* requests are on the wire now */
  thaw_kube_free(k2);
  CHECK(cancel_count == 5 && w.ended && w.end_err == THAW_ECANCELED);
  watch_clear(&w);
  CHECK(control("POST", "latency", "{\"ms\":0}") == 200);
  printf("ok latency (%llu ms for 10 parallel), timeout, free in flight\n",
         (unsigned long long)took);
}

static int free_from_cb_calls;
static void on_free_client(const thaw_kube_result_t *res, void *data) {
  thaw_kube_t **kp = data;
  free_from_cb_calls++;
  if (*kp) {
    CHECK(res->err == 0);
    thaw_kube_t *k = *kp;
    *kp = NULL;
    thaw_kube_free(k); /* the other request ends with THAW_ECANCELED */
  } else {
    CHECK(res->err == THAW_ECANCELED);
  }
}

static void test_free_from_callback(void) {
  thaw_kube_config_t cfg = emu_config();
  thaw_kube_t *k2;
  CHECK(thaw_kube_new(loop, &cfg, &k2) == 0);
  thaw_kube_config_free(&cfg);
  thaw_kube_t *kp = k2;
  free_from_cb_calls = 0;
  CHECK(thaw_kube_get(k2, &thaw_kube_namespaces, &(thaw_kube_opts_t){.name = ns},
                      on_free_client, &kp) == 0);
  watch_t w = {0};
  CHECK(thaw_kube_watch(k2, &thaw_kube_pods, &(thaw_kube_opts_t){.namespace = ns},
                        on_event, on_end, &w, &w.w) == 0);
  wait_flag(&w.ended, 20000);
  CHECK(free_from_cb_calls == 1 && kp == NULL && w.end_err == THAW_ECANCELED);
  watch_clear(&w);

  /* free the client from inside on_event */
  cfg = emu_config();
  CHECK(thaw_kube_new(loop, &cfg, &k2) == 0);
  thaw_kube_config_free(&cfg);
  w = (watch_t){.free_client = k2};
  CHECK(thaw_kube_watch(k2, &thaw_kube_pods, &(thaw_kube_opts_t){.namespace = ns},
                        on_event, on_end, &w, &w.w) == 0);
  wait_flag(&w.ended, 20000);
  CHECK(w.n == 1 && w.end_err == THAW_ECANCELED);
  watch_clear(&w);
  printf("ok free the client from a callback and from on_event\n");
}

static int observed[8];
static void observe(const char *verb, long status, void *data) {
  (void)data;
  const char *verbs[] = {"get", "list", "create", "update", "patch", "delete", "watch"};
  CHECK(status == 0 || (status >= 100 && status < 600));
  for (int i = 0; i < 7; i++)
    if (strcmp(verb, verbs[i]) == 0)
      observed[i]++;
}

int main(void) {
  setup();
  snprintf(ns, sizeof ns, "kt-%d", (int)getpid());
  thaw_kube_set_observer(kc, observe, NULL);
  test_namespace_and_create();
  test_get_list_selectors();
  test_pagination();
  test_update_patch_status();
  test_delete();
  test_crd_422();
  test_server_errors();
  test_transport_failure();
  test_token_rotation();
  test_client_cert();
  test_kubeconfig_file();
  test_watch_events();
  test_watch_410();
  test_watch_stop_from_callback();
  test_latency_and_free_in_flight();
  test_free_from_callback();
  for (int i = 0; i < 7; i++)
    CHECK(observed[i] > 0);
  printf("ok observer saw every verb\n");
  teardown();
  return 0;
}
