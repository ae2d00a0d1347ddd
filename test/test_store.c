/* test_store.c - unit tests of the store, the re-list diff, the intern table
 * and the pod projection. Usage: test_store DATA_DIR */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "intern.h"
#include "podinfo.h"
#include "store.h"

#include "check.h"

static int freed;
static void count_free(void *rec, void *data) {
  (void)data;
  freed++;
  free(rec);
}

static char *val(int v) {
  char *p = malloc(16);
  snprintf(p, 16, "v%d", v);
  return p;
}

static void test_basic(void) {
  freed = 0;
  thaw_store_t *s = thaw_store_new(count_free, NULL);
  CHECK(thaw_store_count(s) == 0);
  CHECK(thaw_store_get(s, "a", NULL) == NULL);
  CHECK(thaw_store_remove(s, "a", NULL, NULL) == THAW_ENOENT);
  CHECK(thaw_store_put(s, "ns/a", 5, val(1), NULL) == 1);
  CHECK(thaw_store_put(s, "ns/b", 6, val(2), NULL) == 1);
  uint64_t rv = 0;
  CHECK(strcmp(thaw_store_get(s, "ns/a", &rv), "v1") == 0 && rv == 5);
  void *old = NULL;
  CHECK(thaw_store_put(s, "ns/a", 7, val(3), &old) == 0);
  CHECK(old != NULL && strcmp(old, "v1") == 0);
  free(old);
  CHECK(strcmp(thaw_store_get(s, "ns/a", &rv), "v3") == 0 && rv == 7);
  CHECK(thaw_store_put(s, "ns/a", 8, val(4), NULL) == 0); /* store frees v3 */
  CHECK(freed == 1);
  CHECK(thaw_store_count(s) == 2);
  void *rec = NULL;
  CHECK(thaw_store_remove(s, "ns/b", &rec, &rv) == 0 && rv == 6);
  CHECK(strcmp(rec, "v2") == 0);
  free(rec);
  CHECK(thaw_store_get(s, "ns/b", NULL) == NULL);
  CHECK(thaw_store_count(s) == 1);
  thaw_store_free(s);
  CHECK(freed == 2);
  thaw_store_free(NULL);
}

/* Random puts and removes against a plain array as the reference, so the
 * backward-shift deletion is exercised through wrap-around and growth. */
static void test_random(void) {
  enum { N = 20000, OPS = 200000 };
  static uint64_t ref[N]; /* 0 = absent, else rv */
  memset(ref, 0, sizeof(ref));
  thaw_store_t *s = thaw_store_new(NULL, NULL);
  uint64_t x = 88172645463325252ull;
  size_t live = 0;
  char key[32];
  for (int op = 0; op < OPS; op++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t i = x % N;
    snprintf(key, sizeof(key), "ns%zu/pod-%zu", i % 7, i);
    if ((x >> 32) % 3 == 0) {
      int rc = thaw_store_remove(s, key, NULL, NULL);
      CHECK((rc == 0) == (ref[i] != 0));
      if (ref[i] != 0)
        live--;
      ref[i] = 0;
    } else {
      int rc = thaw_store_put(s, key, op + 1, NULL, NULL);
      CHECK(rc == (ref[i] == 0 ? 1 : 0));
      if (ref[i] == 0)
        live++;
      ref[i] = (uint64_t)op + 1;
    }
  }
  CHECK(thaw_store_count(s) == live);
  size_t bad = 0;
  for (size_t i = 0; i < N; i++) {
    snprintf(key, sizeof(key), "ns%zu/pod-%zu", i % 7, i);
    uint64_t rv = 0;
    int present = thaw_store_remove(s, key, NULL, &rv) == 0;
    if (present != (ref[i] != 0) || (present && rv != ref[i]))
      bad++;
  }
  CHECK(bad == 0);
  CHECK(thaw_store_count(s) == 0);
  size_t pos = 0;
  CHECK(thaw_store_next(s, &pos, NULL, NULL, NULL) == 0);
  thaw_store_free(s);
}

typedef struct {
  char log[1024];
} difflog_t;

static void on_diff(enum thaw_store_change c, const char *key, void *o,
                    void *n, void *data) {
  difflog_t *d = data;
  size_t len = strlen(d->log);
  const char *name = c == THAW_STORE_ADDED     ? "add"
                     : c == THAW_STORE_UPDATED ? "update"
                                               : "delete";
  snprintf(d->log + len, sizeof(d->log) - len, "%s %s %s>%s;", name, key,
           o ? (char *)o : "-", n ? (char *)n : "-");
}

/* Keys sort the log lines so slot order does not matter. */
static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}
/* Splits s in place at each sep; returns the number of non-empty parts. */
static size_t split(char *s, char sep, char **parts, size_t max) {
  size_t n = 0;
  while (*s && n < max) {
    char *end = strchr(s, sep);
    if (end != NULL)
      *end = '\0';
    if (*s)
      parts[n++] = s;
    if (end == NULL)
      break;
    s = end + 1;
  }
  return n;
}

static void sort_log(char *log) {
  char *parts[64];
  char copy[1024];
  snprintf(copy, sizeof(copy), "%s", log);
  size_t n = split(copy, ';', parts, 64);
  qsort(parts, n, sizeof(*parts), cmp_str);
  log[0] = '\0';
  size_t off = 0;
  for (size_t i = 0; i < n; i++)
    off += (size_t)snprintf(log + off, 1024 - off, "%s;", parts[i]);
}

static void test_diff(void) {
  struct {
    const char *from; /* "key:rv" list */
    const char *to;
    const char *want; /* sorted */
  } cases[] = {
      {"", "", ""},
      {"", "a:1 b:2", "add a ->a1;add b ->b2;"},
      {"a:1 b:2", "", "delete a a1>-;delete b b2>-;"},
      {"a:1 b:2", "a:1 b:2", ""},
      {"a:1 b:2", "a:1 b:3", "update b b2>b3;"},
      {"a:1 b:2 c:3", "b:2 c:4 d:5", "add d ->d5;delete a a1>-;update c c3>c4;"},
      {"ns/x:10", "ns/x:9", "update ns/x x10>x9;"}, /* any rv change counts */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    thaw_store_t *st[2];
    const char *src[2] = {cases[i].from, cases[i].to};
    for (int k = 0; k < 2; k++) {
      st[k] = thaw_store_new(count_free, NULL);
      char buf[256];
      snprintf(buf, sizeof(buf), "%s", src[k]);
      char *toks[16];
      size_t nt = split(buf, ' ', toks, 16);
      for (size_t j = 0; j < nt; j++) {
        char *t = toks[j];
        char *colon = strchr(t, ':');
        *colon = '\0';
        char *v = malloc(32);
        const char *base = strrchr(t, '/') ? strrchr(t, '/') + 1 : t;
        snprintf(v, 32, "%s%s", base, colon + 1);
        thaw_store_put(st[k], t, thaw_store_rv(colon + 1), v, NULL);
      }
    }
    difflog_t d = {{0}};
    thaw_store_diff(st[0], st[1], on_diff, &d);
    sort_log(d.log);
    if (strcmp(d.log, cases[i].want) != 0) {
      fprintf(stderr, "diff case %zu: got '%s' want '%s'\n", i, d.log,
              cases[i].want);
      failures++;
    }
    thaw_store_free(st[0]);
    thaw_store_free(st[1]);
  }
}

static void test_rv(void) {
  CHECK(thaw_store_rv(NULL) == 0);
  CHECK(thaw_store_rv("") == 0);
  CHECK(thaw_store_rv("1") == 1);
  CHECK(thaw_store_rv("123456789012") == 123456789012ull);
  CHECK(thaw_store_rv("abc") >> 63 == 1);
  CHECK(thaw_store_rv("abc") != thaw_store_rv("abd"));
  CHECK(thaw_store_rv("99999999999999999999999") >> 63 == 1);
}

static void test_intern(void) {
  thaw_intern_t *t = thaw_intern_new();
  const char *a = thaw_intern_ref(t, "docker.io/library/nginx:1", 25);
  const char *b = thaw_intern_ref(t, "docker.io/library/nginx:1XYZ", 25);
  CHECK(a == b);
  CHECK(strcmp(a, "docker.io/library/nginx:1") == 0);
  CHECK(thaw_intern_refs(a) == 2);
  const char *c = thaw_intern_ref(t, "busybox", 7);
  CHECK(c != a && thaw_intern_count(t) == 2);
  CHECK(thaw_intern_dup(c) == c && thaw_intern_refs(c) == 2);
  thaw_intern_unref(t, a);
  CHECK(thaw_intern_refs(a) == 1 && thaw_intern_count(t) == 2);
  thaw_intern_unref(t, a);
  CHECK(thaw_intern_count(t) == 1);
  thaw_intern_unref(t, c);
  thaw_intern_unref(t, c);
  CHECK(thaw_intern_count(t) == 0);
  thaw_intern_unref(t, NULL);
  /* Many strings through growth and deletion. */
  const char *keep[5000];
  char buf[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(buf, sizeof(buf), "img-%d", i);
    keep[i] = thaw_intern_ref(t, buf, strlen(buf));
  }
  CHECK(thaw_intern_count(t) == 5000);
  for (int i = 0; i < 5000; i += 2)
    thaw_intern_unref(t, keep[i]);
  CHECK(thaw_intern_count(t) == 2500);
  for (int i = 1; i < 5000; i += 2) {
    snprintf(buf, sizeof(buf), "img-%d", i);
    CHECK(thaw_intern_ref(t, buf, strlen(buf)) == keep[i]);
    CHECK(thaw_intern_refs(keep[i]) == 2);
  }
  thaw_intern_free(t);
  thaw_intern_free(NULL);
}

static cJSON *load(const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  cJSON *j = cJSON_Parse(buf);
  if (j == NULL) {
    fprintf(stderr, "cannot parse %s\n", path);
    exit(2);
  }
  return j;
}

static void test_podinfo(const char *dir) {
  thaw_intern_t *t = thaw_intern_new();
  cJSON *oscar = load(dir, "oscar-job-pod.json");
  cJSON *mixed = load(dir, "mixed-refs-pod.json");
  cJSON *rewritten = load(dir, "already-rewritten-pod.json");
  size_t size = 0;

  thaw_podinfo_t *p = thaw_podinfo_project(oscar, &size, t);
  CHECK(p != NULL && size == sizeof(*p) + sizeof(char *));
  CHECK(p->n_images == 1 && p->n_originals == 0);
  CHECK(strcmp(p->refs[0], "grycap/imagemagick") == 0);
  CHECK(p->flags == THAW_POD_PHASE_UNKNOWN); /* as admitted: no status */
  CHECK(thaw_podinfo_uses(p, "grycap/imagemagick"));
  CHECK(!thaw_podinfo_uses(p, "grycap/imagemagick:latest"));

  /* Every container kind, order kept: containers, then initContainers. */
  thaw_podinfo_t *m = thaw_podinfo_project(mixed, &size, t);
  const char *want[] = {
      ("my.registry.example:5443/a/b/c:v1@sha256:"
       "194318eaf5c205c21de69e3f05904c8436845ba512cee64743604d29bac1757f"),
      "quay.io/prometheus/node-exporter:v1.7.0",
      "registry.k8s.io/pause:3.9",
      "docker.io/library/nginx",
      "busybox",
      "localhost:5000/team/app:1.2",
  };
  CHECK(m != NULL && m->n_images == 6 && m->n_originals == 0);
  for (size_t i = 0; m && i < 6; i++) {
    CHECK(strcmp(m->refs[i], want[i]) == 0);
    CHECK(thaw_podinfo_uses(m, want[i]));
  }

  /* The original-images annotation's values, interned too. */
  thaw_podinfo_t *r = thaw_podinfo_project(rewritten, &size, t);
  CHECK(r != NULL && r->n_images == 1 && r->n_originals == 1);
  CHECK(strcmp(r->refs[0], "localhost:7439/docker.io/grycap/imagemagick:latest") == 0);
  CHECK(r->refs[1] == p->refs[0]); /* same interned string as oscar's image */
  CHECK(thaw_intern_refs(p->refs[0]) == 2);

  /* Flags: opt-out label, deletion, phases; duplicates collapse. */
  cJSON *meta = cJSON_GetObjectItem(oscar, "metadata");
  cJSON_AddStringToObject(cJSON_GetObjectItem(meta, "labels"),
                          "thaw.dev/caching", "disabled");
  cJSON_AddStringToObject(meta, "deletionTimestamp", "2026-11-26T17:20:00Z");
  cJSON_DeleteItemFromObject(oscar, "status");
  cJSON *status = cJSON_AddObjectToObject(oscar, "status");
  cJSON_AddStringToObject(status, "phase", "Succeeded");
  cJSON *spec = cJSON_GetObjectItem(oscar, "spec");
  cJSON *eph = cJSON_AddArrayToObject(spec, "ephemeralContainers");
  cJSON *e1 = cJSON_CreateObject();
  cJSON_AddStringToObject(e1, "image", "busybox:1.36");
  cJSON_AddItemToArray(eph, e1);
  cJSON *e2 = cJSON_CreateObject();
  cJSON_AddStringToObject(e2, "image", "grycap/imagemagick");
  cJSON_AddItemToArray(eph, e2);
  thaw_podinfo_t *f = thaw_podinfo_project(oscar, &size, t);
  CHECK(f != NULL && f->n_images == 2);
  CHECK(f->flags == (THAW_POD_PHASE_SUCCEEDED | THAW_POD_TERMINATED |
                     THAW_POD_OPTED_OUT | THAW_POD_DELETING));
  CHECK(!thaw_podinfo_equal(f, p, t));
  thaw_podinfo_t *f2 = thaw_podinfo_project(oscar, &size, t);
  CHECK(thaw_podinfo_equal(f, f2, t));
  cJSON_ReplaceItemInObject(status, "phase", cJSON_CreateString("Running"));
  thaw_podinfo_t *g = thaw_podinfo_project(oscar, &size, t);
  CHECK((g->flags & THAW_POD_PHASE_MASK) == THAW_POD_PHASE_RUNNING &&
        !(g->flags & THAW_POD_TERMINATED));
  CHECK(!(g->flags & THAW_POD_PULL_FAILING));

  /* A container or init container waiting on a failed pull; another
   * waiting reason, or a terminated state, is not one. */
  static const struct {
    const char *field, *reason;
    int failing;
  } pulls[] = {
      {"containerStatuses", "ImagePullBackOff", 1},
      {"containerStatuses", "ErrImagePull", 1},
      {"initContainerStatuses", "ImagePullBackOff", 1},
      {"initContainerStatuses", "ErrImagePull", 1},
      {"containerStatuses", "ContainerCreating", 0},
      {"containerStatuses", "CrashLoopBackOff", 0},
      {"ephemeralContainerStatuses", "ImagePullBackOff", 0},
      {"containerStatuses", NULL, 0}, /* state.terminated */
  };
  for (size_t i = 0; i < sizeof(pulls) / sizeof(*pulls); i++) {
    cJSON *list = cJSON_AddArrayToObject(status, pulls[i].field);
    cJSON *ok = cJSON_CreateObject(), *cs = cJSON_CreateObject();
    cJSON_AddObjectToObject(cJSON_AddObjectToObject(ok, "state"), "running");
    cJSON_AddItemToArray(list, ok); /* the failing entry need not be first */
    cJSON *state = cJSON_AddObjectToObject(cs, "state");
    if (pulls[i].reason)
      cJSON_AddStringToObject(cJSON_AddObjectToObject(state, "waiting"),
                              "reason", pulls[i].reason);
    else
      cJSON_AddObjectToObject(state, "terminated");
    cJSON_AddItemToArray(list, cs);
    thaw_podinfo_t *q = thaw_podinfo_project(oscar, &size, t);
    CHECK(q != NULL && !!(q->flags & THAW_POD_PULL_FAILING) ==
                           pulls[i].failing);
    CHECK(q != NULL && (q->flags & THAW_POD_PHASE_MASK) ==
                           THAW_POD_PHASE_RUNNING);
    CHECK(q != NULL && thaw_podinfo_equal(q, g, t) == !pulls[i].failing);
    thaw_podinfo_free(q, t);
    cJSON_DeleteItemFromObject(status, pulls[i].field);
  }

  /* A malformed annotation is ignored; not an object → NULL. */
  cJSON_DeleteItemFromObject(meta, "annotations");
  cJSON *ann = cJSON_AddObjectToObject(meta, "annotations");
  cJSON_AddStringToObject(ann, "thaw.dev/original-images", "{not json");
  thaw_podinfo_t *h = thaw_podinfo_project(oscar, &size, t);
  CHECK(h != NULL && h->n_originals == 0);
  cJSON *num = cJSON_CreateNumber(1);
  CHECK(thaw_podinfo_project(num, &size, t) == NULL);
  cJSON_Delete(num);

  thaw_podinfo_t *all[] = {p, m, r, f, f2, g, h};
  for (size_t i = 0; i < sizeof(all) / sizeof(*all); i++)
    thaw_podinfo_free(all[i], t);
  thaw_podinfo_free(NULL, t);
  CHECK(thaw_intern_count(t) == 0); /* every reference returned */
  thaw_intern_free(t);
  cJSON_Delete(oscar);
  cJSON_Delete(mixed);
  cJSON_Delete(rewritten);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
    return 2;
  }
  test_basic();
  test_random();
  test_diff();
  test_rv();
  test_intern();
  test_podinfo(argv[1]);
  if (failures) {
    fprintf(stderr, "test_store: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_store: ok\n");
  return 0;
}
