/* test_release.c - the release of gated pods, its pure parts
 * (controller/release_plan.c, thaw_release_plan; common/thaw/podinfo.c,
 * the gated pod's record): when a pod is due and the exact JSON Patch that
 * releases it, by table; the cold-wait annotation; what podinfo keeps. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "json_table.h"
#include "error.h"
#include "intern.h"
#include "podinfo.h"
#include "release.h"

#define CACHE "localhost:7439"
#define NOW 1780000000 /* 2026-05-28T20:26:40Z */
#define CREATED "2026-05-28T20:26:30Z" /* NOW - 10 */

/* What the CachedImages say, by normalised image. */
#define A "docker.io/library/alpine:3"
#define B "docker.io/library/busybox:1"
#define P "reg.example/team/private:1"
#define W "docker.io/library/warming:1"
#define F "docker.io/library/failed:1"
#define X "docker.io/library/expiring:1"
#define N "docker.io/library/none:1" /* no CachedImage */
#define U "docker.io/library/unpinned:1" /* Ready, no digest to pin */
#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DP "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
enum { ANY = THAW_RELEASE_CI_ANY };
static const struct {
  const char *norm;
  unsigned ci;
} states[] = {
    {A, ANY | THAW_RELEASE_CI_READY},
    {B, ANY | THAW_RELEASE_CI_READY | THAW_RELEASE_CI_ACTIVE},
    {P, ANY | THAW_RELEASE_CI_READY | THAW_RELEASE_CI_PRIVATE},
    {W, ANY | THAW_RELEASE_CI_ACTIVE},
    {F, ANY | THAW_RELEASE_CI_FAILED},
    {X, ANY},
    {U, ANY | THAW_RELEASE_CI_READY},
};

static const char *digest(const char *norm, void *data) {
  (void)data;
  return strcmp(norm, A) == 0   ? DA
         : strcmp(norm, B) == 0 ? DB
         : strcmp(norm, P) == 0 ? DP
                                : NULL;
}

static unsigned lookup(const char *norm, void *data) {
  (void)data;
  for (size_t i = 0; i < sizeof states / sizeof *states; i++)
    if (strcmp(states[i].norm, norm) == 0)
      return states[i].ci;
  return 0;
}

#define RW_A CACHE "/docker.io/library/alpine:3@" DA
#define RW_B CACHE "/docker.io/library/busybox:1@" DB
#define RW_P "localhost:7440/private/reg.example/team/private:1@" DP
#define THAW_PULL ",'imagePullSecrets':[{'name':'other'},{'name':'thaw-pull'}]"

/* A pod: metadata members after name/namespace/uid/creation, the spec. */
#define POD(meta, spec)                                                        \
  "{'metadata':{'name':'p','namespace':'ns','uid':'u-1',"                     \
  "'creationTimestamp':'" CREATED "'" meta "},'spec':{" spec "}}"
#define WAIT30 ",'annotations':{'thaw.dev/cold-wait-seconds':'30'}"
#define WAITS(s) ",'annotations':{'thaw.dev/cold-wait-seconds':'" s "'}"
#define GATES "'schedulingGates':[{'name':'thaw.dev/warming'}]"
#define CTR(n, img) "{'name':'" n "','image':'" img "'}"
#define OP(op, path, v) "{'op':'" op "','path':'" path "','value':'" v "'}"
#define TEST(path, v) OP("test", path, v)
#define REPLACE(path, v) OP("replace", path, v)
#define UIDT TEST("/metadata/uid", "u-1")
#define ANNP "/metadata/annotations/thaw.dev~1original-images"
#define UNGATE(i)                                                              \
  TEST("/spec/schedulingGates/" #i "/name", "thaw.dev/warming")               \
  ",{'op':'remove','path':'/spec/schedulingGates/" #i "'}"
#define IMG(list, i, from, to)                                                 \
  TEST("/spec/" list "/" #i "/image", from)                                    \
  "," REPLACE("/spec/" list "/" #i "/image", to)

static const struct {
  const char *what, *pod;
  int serves;      /* THAW_SOURCES_NS_* */
  int rc;          /* 1 released, 0 not now */
  int gate;        /* out.gate */
  int rewritten;
  const char *ops; /* the patch, when released */
} cases[] = {
    {"all Ready: rewritten, the original recorded, the gate removed",
     POD(WAIT30, GATES ",'containers':[" CTR("app", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 1,
     "[" UIDT "," IMG("containers", 0, "alpine:3", RW_A)
     ",{'op':'add','path':'" ANNP "','value':'{\\'container/app\\':"
     "\\'alpine:3\\'}'}," UNGATE(0) "]"},
    {"Ready while a refresh warms (Ready and active): done",
     POD(WAIT30, GATES ",'containers':[" CTR("app", "busybox:1") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 1,
     "[" UIDT "," IMG("containers", 0, "busybox:1", RW_B)
     ",{'op':'add','path':'" ANNP "','value':'{\\'container/app\\':"
     "\\'busybox:1\\'}'}," UNGATE(0) "]"},
    {"one Failed, one Ready: the Ready one rewritten, the Failed left",
     POD(WAIT30, GATES ",'containers':[" CTR("a", "failed:1") "," CTR(
                     "b", "docker.io/alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 1,
     "[" UIDT "," IMG("containers", 1, "docker.io/alpine:3", RW_A)
     ",{'op':'add','path':'" ANNP "','value':'{\\'container/b\\':"
     "\\'docker.io/alpine:3\\'}'}," UNGATE(0) "]"},
    {"one Warming, one Ready, before the deadline: not yet",
     POD(WAIT30, GATES ",'containers':[" CTR("a", "warming:1") "," CTR(
                     "b", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 0, 0, 0, NULL},
    {"deadline reached while Warming: the Ready one rewritten, the other left",
     POD(WAITS("10"), GATES ",'containers':[" CTR("a", "warming:1") "," CTR(
                          "b", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 1,
     "[" UIDT "," IMG("containers", 1, "alpine:3", RW_A)
     ",{'op':'add','path':'" ANNP "','value':'{\\'container/b\\':"
     "\\'alpine:3\\'}'}," UNGATE(0) "]"},
    {"deadline reached, only Warming: released unchanged",
     POD(WAITS("5"), GATES ",'containers':[" CTR("a", "warming:1") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 0, "[" UIDT "," UNGATE(0) "]"},
    {"cold wait 0: due at creation",
     POD(WAITS("0"), GATES ",'containers':[" CTR("a", "warming:1") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 0, "[" UIDT "," UNGATE(0) "]"},
    {"no annotation: 30 s, not yet after 10",
     POD("", GATES ",'containers':[" CTR("a", "warming:1") "]"),
     THAW_SOURCES_NS_PUBLIC, 0, 0, 0, NULL},
    {"an invalid annotation counts as 30 (not 5), not yet",
     POD(WAITS("5s"), GATES ",'containers':[" CTR("a", "warming:1") "]"),
     THAW_SOURCES_NS_PUBLIC, 0, 0, 0, NULL},
    {"no CachedImage yet: still waited for (it is being recorded)",
     POD(WAIT30, GATES ",'containers':[" CTR("a", "none:1") "]"),
     THAW_SOURCES_NS_PUBLIC, 0, 0, 0, NULL},
    {"Ready without a digest to pin: done, left as submitted",
     POD(WAIT30, GATES ",'containers':[" CTR("a", "unpinned:1") "," CTR(
                     "b", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 1,
     "[" UIDT "," IMG("containers", 1, "alpine:3", RW_A)
     ",{'op':'add','path':'" ANNP "','value':'{\\'container/b\\':"
     "\\'alpine:3\\'}'}," UNGATE(0) "]"},
    {"only Expiring: done, unchanged",
     POD(WAIT30, GATES ",'containers':[" CTR("a", "expiring:1") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 0, "[" UIDT "," UNGATE(0) "]"},
    {"private, the namespace is not cache-private: released unchanged",
     POD(WAIT30, GATES ",'containers':[" CTR("a", P) "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 0, "[" UIDT "," UNGATE(0) "]"},
    {"private, cache-private, the pod names thaw-pull: rewritten to the "
     "private host",
     POD(WAIT30, GATES THAW_PULL ",'containers':[" CTR("a", P) "]"),
     THAW_SOURCES_NS_PRIVATE, 1, 0, 1,
     "[" UIDT "," IMG("containers", 0, P, RW_P)
     ",{'op':'add','path':'" ANNP "','value':'{\\'container/a\\':"
     "\\'" P "\\'}'}," UNGATE(0) "]"},
    {"private, cache-private, no thaw-pull (a pod's secrets cannot change): "
     "released unchanged",
     POD(WAIT30, GATES ",'containers':[" CTR("a", P) "]"),
     THAW_SOURCES_NS_PRIVATE, 1, 0, 0, "[" UIDT "," UNGATE(0) "]"},
    {"a private host rewrite already: never rewritten again",
     POD(WAIT30, GATES THAW_PULL ",'containers':[" CTR("a", RW_P) "]"),
     THAW_SOURCES_NS_PRIVATE, 1, 0, 0, "[" UIDT "," UNGATE(0) "]"},
    {"init containers: their index and the init/ key",
     POD(WAIT30, GATES ",'initContainers':[" CTR("setup", "busybox:1") "],"
                       "'containers':[" CTR("app", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 2,
     "[" UIDT "," IMG("initContainers", 0, "busybox:1", RW_B)
     "," IMG("containers", 0, "alpine:3", RW_A)
     ",{'op':'add','path':'" ANNP "','value':'{\\'init/setup\\':"
     "\\'busybox:1\\',\\'container/app\\':\\'alpine:3\\'}'}," UNGATE(0) "]"},
    {"existing annotation object: tested, its text kept, the key appended",
     POD(",'annotations':{'thaw.dev/original-images':"
         "'{ \\'container/old\\' : \\'x\\' } '}",
         GATES ",'containers':[" CTR("app", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 1,
     "[" UIDT "," IMG("containers", 0, "alpine:3", RW_A)
     "," TEST(ANNP, "{ \\'container/old\\' : \\'x\\' } ")
     "," REPLACE(ANNP, "{ \\'container/old\\' : \\'x\\' ,\\'container/app\\':"
                       "\\'alpine:3\\'}")
     "," UNGATE(0) "]"},
    {"existing empty object: no comma",
     POD(",'annotations':{'thaw.dev/original-images':'{}'}",
         GATES ",'containers':[" CTR("app", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 1,
     "[" UIDT "," IMG("containers", 0, "alpine:3", RW_A)
     "," TEST(ANNP, "{}")
     "," REPLACE(ANNP, "{\\'container/app\\':\\'alpine:3\\'}")
     "," UNGATE(0) "]"},
    {"the annotation has the key already: its first original stays",
     POD(",'annotations':{'thaw.dev/original-images':"
         "'{\\'container/app\\':\\'alpine:3\\'}'}",
         GATES ",'containers':[" CTR("app", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 1,
     "[" UIDT "," IMG("containers", 0, "alpine:3", RW_A) "," UNGATE(0) "]"},
    {"annotation not a JSON object: left alone, the image still rewritten",
     POD(",'annotations':{'thaw.dev/original-images':'[1]'}",
         GATES ",'containers':[" CTR("app", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 1,
     "[" UIDT "," IMG("containers", 0, "alpine:3", RW_A) "," UNGATE(0) "]"},
    {"no annotations at all: the map is added",
     POD("", GATES ",'containers':[" CTR("app", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 1,
     "[" UIDT "," IMG("containers", 0, "alpine:3", RW_A)
     ",{'op':'add','path':'/metadata/annotations','value':"
     "{'thaw.dev/original-images':'{\\'container/app\\':\\'alpine:3\\'}'}},"
     UNGATE(0) "]"},
    {"the gate not at index 0",
     POD(WAIT30, "'schedulingGates':[{'name':'other.io/x'},"
                 "{'name':'thaw.dev/warming'}],"
                 "'containers':[" CTR("app", "failed:1") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 1, 0, "[" UIDT "," UNGATE(1) "]"},
    {"under the cache host, pull policy Never: not waited for, not touched",
     POD(WAIT30, GATES ",'containers':[" CTR("a", RW_A) ","
                 "{'name':'b','image':'warming:1','imagePullPolicy':'Never'}]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 0, "[" UIDT "," UNGATE(0) "]"},
    {"pod opted out: nothing waited for, nothing rewritten",
     POD(",'labels':{'thaw.dev/caching':'disabled'}",
         GATES ",'containers':[" CTR("a", "alpine:3") "," CTR("b",
                                                              "warming:1") "]"),
     THAW_SOURCES_NS_PUBLIC, 1, 0, 0, "[" UIDT "," UNGATE(0) "]"},
    {"namespace excluded: released unchanged",
     POD(WAIT30, GATES ",'containers':[" CTR("a", "alpine:3") "]"),
     THAW_SOURCES_NS_NONE, 1, 0, 0, "[" UIDT "," UNGATE(0) "]"},
    {"not gated: nothing to do",
     POD(WAIT30, "'schedulingGates':[{'name':'other.io/x'}],"
                 "'containers':[" CTR("a", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 0, -1, 0, NULL},
    {"being deleted: nothing to do",
     POD(",'deletionTimestamp':'2026-05-28T20:26:35Z'",
         GATES ",'containers':[" CTR("a", "alpine:3") "]"),
     THAW_SOURCES_NS_PUBLIC, 0, -1, 0, NULL},
};

static void test_table(void) {
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    cJSON *pod = json(cases[i].pod);
    CHECK(pod != NULL);
    thaw_release_env_t env = {.cache_host = CACHE,
                              .ns_serves = cases[i].serves,
                              .lookup = lookup,
                              .digest = digest,
                              .now = NOW};
    thaw_release_plan_t plan;
    int rc = thaw_release_plan(pod, &env, &plan);
    int ok = rc == cases[i].rc && plan.gate == cases[i].gate &&
             (rc != 1 || plan.rewritten == cases[i].rewritten);
    if (rc == 1 && cases[i].ops != NULL) {
      cJSON *want = json(cases[i].ops);
      ok = ok && want != NULL && cJSON_Compare(want, plan.ops, 1);
      if (!ok) {
        char *got = cJSON_PrintUnformatted(plan.ops);
        char *exp = cJSON_PrintUnformatted(want);
        fprintf(stderr, "  got  %s\n  want %s\n", got, exp);
        free(got);
        free(exp);
      }
      cJSON_Delete(want);
    }
    CHECK(rc != 1 || plan.ops != NULL);
    CHECK(rc == 1 || plan.ops == NULL);
    if (!ok)
      fprintf(stderr, "case %zu (%s): rc %d gate %d rewritten %d\n", i,
              cases[i].what, rc, plan.gate, plan.rewritten);
    CHECK(ok);
    if (cases[i].gate >= 0)
      CHECK(plan.created == NOW - 10);
    cJSON_Delete(plan.ops);
    cJSON_Delete(pod);
  }
}

static void test_deadline(void) {
  cJSON *pod = json(POD(WAITS("12"), GATES ",'containers':[" CTR(
                                          "a", "warming:1") "]"));
  thaw_release_env_t env = {.cache_host = CACHE, .lookup = lookup,
                            .now = NOW + 1};
  thaw_release_plan_t plan;
  CHECK(thaw_release_plan(pod, &env, &plan) == 0);
  CHECK(plan.deadline == NOW + 2 && plan.gate == 0);
  env.now = NOW + 2; /* exactly at the deadline: due */
  CHECK(thaw_release_plan(pod, &env, &plan) == 1);
  cJSON_Delete(plan.ops);
  cJSON_Delete(pod);
}

static void test_image_done(void) {
  CHECK(!thaw_release_image_done(0)); /* none yet */
  CHECK(!thaw_release_image_done(ANY | THAW_RELEASE_CI_ACTIVE));
  CHECK(thaw_release_image_done(ANY)); /* only Expiring */
  CHECK(thaw_release_image_done(ANY | THAW_RELEASE_CI_READY |
                                THAW_RELEASE_CI_ACTIVE));
  CHECK(thaw_release_image_done(ANY | THAW_RELEASE_CI_FAILED |
                                THAW_RELEASE_CI_ACTIVE));
}

static void test_cold_wait(void) {
  static const struct {
    const char *v;
    int want;
  } t[] = {{NULL, 30}, {"", 30},  {"0", 0},   {"1", 1},     {"300", 300},
           {"07", 7},  {"301", 30}, {"600", 30}, {"-1", 30},  {"+5", 30},
           {"1.5", 30}, {"5s", 30}, {" 5", 30},  {"99999999999999999999", 30}};
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    int got = thaw_podinfo_cold_wait(t[i].v);
    if (got != t[i].want)
      fprintf(stderr, "cold wait %s: %d, want %d\n", t[i].v ? t[i].v : "NULL",
              got, t[i].want);
    CHECK(got == t[i].want);
  }
}

/* The gated pod's record: the extra fields, which refs are waited for,
 * equality; a pod without the gate pays nothing. */
static void test_podinfo(void) {
  thaw_intern_t *in = thaw_intern_new();
  cJSON *pod = json(POD(WAITS("45"),
                        GATES ",'containers':[" CTR("a", "alpine:3") ","
                        "{'name':'n','image':'never:1','imagePullPolicy':"
                        "'Never'}],'initContainers':[" CTR("i", "busybox:1")
                        "],'ephemeralContainers':[" CTR("e", "debug:1") "]"));
  size_t size = 0;
  thaw_podinfo_t *p = thaw_podinfo_project(pod, &size, in);
  const thaw_podinfo_gate_t *g = thaw_podinfo_gate(p);
  CHECK(p != NULL && p->gated && g != NULL);
  CHECK(p->n_images == 4);
  CHECK(g != NULL && g->wait_s == 45 && strcmp(g->uid, "u-1") == 0 &&
        strcmp(g->created, CREATED) == 0);
  CHECK(g != NULL && g->waited == 0x5); /* alpine, busybox */
  CHECK(size > sizeof *p + 4 * sizeof(char *));
  thaw_podinfo_t *same = thaw_podinfo_project(pod, NULL, in);
  CHECK(thaw_podinfo_equal(p, same, NULL));
  cJSON *ann = cJSON_GetObjectItem(cJSON_GetObjectItem(pod, "metadata"),
                                   "annotations");
  cJSON_ReplaceItemInObject(ann, "thaw.dev/cold-wait-seconds",
                            cJSON_CreateString("46"));
  thaw_podinfo_t *other = thaw_podinfo_project(pod, NULL, in);
  CHECK(!thaw_podinfo_equal(p, other, NULL));
  /* The gate removed: not gated, the size of a plain record. */
  cJSON *spec = cJSON_GetObjectItem(pod, "spec");
  cJSON_ReplaceItemInObject(spec, "schedulingGates", cJSON_CreateArray());
  thaw_podinfo_t *open = thaw_podinfo_project(pod, &size, in);
  CHECK(open != NULL && !open->gated && thaw_podinfo_gate(open) == NULL);
  CHECK(size == sizeof *open + 4 * sizeof(char *));
  CHECK(!thaw_podinfo_equal(p, open, NULL));
  /* Being deleted: not tracked as gated. */
  cJSON_ReplaceItemInObject(spec, "schedulingGates",
                            json("[{'name':'thaw.dev/warming'}]"));
  cJSON_AddStringToObject(cJSON_GetObjectItem(pod, "metadata"),
                          "deletionTimestamp", CREATED);
  thaw_podinfo_t *del = thaw_podinfo_project(pod, NULL, in);
  CHECK(del != NULL && thaw_podinfo_gate(del) == NULL);
  thaw_podinfo_free(p, in);
  thaw_podinfo_free(same, in);
  thaw_podinfo_free(other, in);
  thaw_podinfo_free(open, in);
  thaw_podinfo_free(del, in);
  CHECK(thaw_intern_count(in) == 0);
  thaw_intern_free(in);
  cJSON_Delete(pod);
}

int main(void) {
  test_table();
  test_deadline();
  test_image_done();
  test_cold_wait();
  test_podinfo();
  return 0;
}
