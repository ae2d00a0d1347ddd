/* test_repair.c - the repair's decision (controller/repair.c,
 * thaw_repair_plan): which containers of a pod get their original image
 * back, the JSON Patch that does it (test ops before each replace), and
 * the Event message; a table of pods, each with the exact patch expected
 * or none. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "json_table.h"
#include "error.h"
#include "repair.h"

#define CACHE "localhost:7439"
#define ANN "thaw.dev/original-images"

/* A pod: metadata (JSON members), the containers, their statuses. */
#define POD(meta, spec, status)                                                \
  "{'metadata':{'name':'p','namespace':'ns'" meta "},'spec':{" spec            \
  "},'status':{" status "}}"
#define UID ",'uid':'u-1'"
#define ANNOT(v) ",'annotations':{'" ANN "':'" v "'}"
#define ORIG(k, v) "{\\'" k "\\':\\'" v "\\'}" /* escaped JSON text */
#define CTR(n, img) "{'name':'" n "','image':'" img "'}"
#define WAIT(n, why) "{'name':'" n "','state':{'waiting':{'reason':'" why "'}}}"
#define RUNNING(n) "{'name':'" n "','state':{'running':{}}}"
#define TEST(path, v) "{'op':'test','path':'" path "','value':'" v "'}"
#define REPLACE(path, v) "{'op':'replace','path':'" path "','value':'" v "'}"

#define RW "localhost:7439/docker.io/grycap/imagemagick:latest"
#define DG "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define RWD RW "@" DG /* content-addressed */
/* a private image's rewrite, through the namespace's thaw-pull */
#define RWP "localhost:7440/private/docker.io/grycap/imagemagick:latest@" DG

/* a private image (its CachedImage has status.private) and its cache path */
#define PRIV "my.reg/team/model:1"
#define PRIV_RW "localhost:7439/my.reg/team/model:1"

static int is_private(const char *norm, void *data) {
  (void)data;
  return strcmp(norm, PRIV) == 0;
}

static const thaw_repair_opts_t OPTS = {.cache_host = CACHE,
                                        .is_private = is_private};

static const struct {
  const char *what, *pod;
  int n;            /* containers repaired */
  const char *ops;  /* the patch, or NULL */
  const char *says; /* in the message */
} cases[] = {
    {"rewritten, backing off: the annotation's original, as submitted",
     POD(UID ANNOT(ORIG("container/app", "grycap/imagemagick")),
         "'containers':[" CTR("app", RW) "]",
         "'containerStatuses':[" WAIT("app", "ImagePullBackOff") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") "," TEST("/spec/containers/0/image", RW)
     "," REPLACE("/spec/containers/0/image", "grycap/imagemagick") "]",
     "container app: " RW " -> grycap/imagemagick (ImagePullBackOff)"},
    {"pinned rewrite: the annotation's tag-only original, as submitted",
     POD(UID ANNOT(ORIG("container/app", "grycap/imagemagick")),
         "'containers':[" CTR("app", RWD) "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") "," TEST("/spec/containers/0/image", RWD)
     "," REPLACE("/spec/containers/0/image", "grycap/imagemagick") "]",
     NULL},
    {"private rewrite (localhost:7440/private): the annotation's original",
     POD(UID ANNOT(ORIG("container/app", "grycap/imagemagick")),
         "'containers':[" CTR("app", RWP) "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") "," TEST("/spec/containers/0/image", RWP)
     "," REPLACE("/spec/containers/0/image", "grycap/imagemagick") "]",
     NULL},
    {"private rewrite, no annotation key: the pinned inverse",
     POD(UID ANNOT(ORIG("container/other", "busybox")),
         "'containers':[" CTR("app", RWP) "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") "," TEST("/spec/containers/0/image", RWP)
     "," REPLACE("/spec/containers/0/image",
                 "docker.io/grycap/imagemagick:latest@" DG) "]",
     NULL},
    {"pinned rewrite of a submitted tag@digest: that original",
     POD(UID ANNOT(ORIG("container/app", "grycap/imagemagick:latest@" DG)),
         "'containers':[" CTR("app", RWD) "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") "," TEST("/spec/containers/0/image", RWD)
     "," REPLACE("/spec/containers/0/image",
                 "grycap/imagemagick:latest@" DG) "]",
     NULL},
    {"pinned rewrite, no key: the pinned inverse (runs what was admitted)",
     POD(UID ANNOT(ORIG("container/other", "busybox")),
         "'containers':[" CTR("app", RWD) "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") "," TEST("/spec/containers/0/image", RWD)
     "," REPLACE("/spec/containers/0/image",
                 "docker.io/grycap/imagemagick:latest@" DG) "]",
     NULL},
    {"pinned rewrite, an annotation naming another tag: the pinned inverse",
     POD(UID ANNOT(ORIG("container/app", "grycap/imagemagick:2")),
         "'containers':[" CTR("app", RWD) "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") "," TEST("/spec/containers/0/image", RWD)
     "," REPLACE("/spec/containers/0/image",
                 "docker.io/grycap/imagemagick:latest@" DG) "]",
     NULL},
    {"no annotation: thaw did not rewrite it, never touched",
     POD(UID, "'containers':[" CTR("app", RW) "]",
         "'containerStatuses':[" WAIT("app", "ImagePullBackOff") "]"),
     0, NULL, NULL},
    /* Without the annotation (a cache path named by hand while the
     * webhook was down) only a private image's path goes back. */
    {"no annotation, a private path: the pinned inverse",
     POD(UID, "'containers':[" CTR("app", RWP) "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") "," TEST("/spec/containers/0/image", RWP)
     "," REPLACE("/spec/containers/0/image",
                 "docker.io/grycap/imagemagick:latest@" DG) "]",
     "container app: " RWP " -> docker.io/grycap/imagemagick:latest@" DG},
    {"no annotation, a private image's cache-host path (pinned: by its tag)",
     POD(UID, "'initContainers':[" CTR("i", PRIV_RW "@" DG) "],"
              "'containers':[" CTR("pub", RW) "," CTR("app", PRIV_RW) "]",
         "'initContainerStatuses':[" WAIT("i", "ImagePullBackOff") "],"
         "'containerStatuses':[" WAIT("pub", "ErrImagePull") ","
                                 WAIT("app", "ErrImagePull") "]"),
     2,
     "[" TEST("/metadata/uid", "u-1") ","
     TEST("/spec/initContainers/0/image", PRIV_RW "@" DG) ","
     REPLACE("/spec/initContainers/0/image", PRIV "@" DG) ","
     TEST("/spec/containers/1/image", PRIV_RW) ","
     REPLACE("/spec/containers/1/image", PRIV) "]",
     NULL},
    {"no annotation, a private path that is running: untouched",
     POD(UID, "'containers':[" CTR("app", RWP) "]",
         "'containerStatuses':[" RUNNING("app") "]"),
     0, NULL, NULL},
    {"failing on an image that is not under the cache host",
     POD(UID ANNOT(ORIG("container/other", "busybox")),
         "'containers':[" CTR("app", "docker.io/library/nginx:1") "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     0, NULL, NULL},
    {"rewritten but running",
     POD(UID ANNOT(ORIG("container/app", "grycap/imagemagick")),
         "'containers':[" CTR("app", RW) "]",
         "'containerStatuses':[" RUNNING("app") "]"),
     0, NULL, NULL},
    {"rewritten, another reason (CrashLoopBackOff is not a pull)",
     POD(UID ANNOT(ORIG("container/app", "grycap/imagemagick")),
         "'containers':[" CTR("app", RW) "]",
         "'containerStatuses':[" WAIT("app", "CrashLoopBackOff") "]"),
     0, NULL, NULL},
    {"init container and the second container; the first runs",
     POD(UID ANNOT("{\\'init/setup\\':\\'alpine:3\\',"
                   "\\'container/web\\':\\'nginx\\'}"),
         "'initContainers':[" CTR("setup",
                                  "localhost:7439/docker.io/library/alpine:3") "],"
         "'containers':[" CTR("side", "localhost:7439/docker.io/library/x:1") ","
         CTR("web", "localhost:7439/docker.io/library/nginx:latest") "]",
         "'initContainerStatuses':[" WAIT("setup", "ErrImagePull") "],"
         "'containerStatuses':[" RUNNING("side") ","
         WAIT("web", "ImagePullBackOff") "]"),
     2,
     "[" TEST("/metadata/uid", "u-1") ","
     TEST("/spec/initContainers/0/image",
          "localhost:7439/docker.io/library/alpine:3") ","
     REPLACE("/spec/initContainers/0/image", "alpine:3") ","
     TEST("/spec/containers/1/image",
          "localhost:7439/docker.io/library/nginx:latest") ","
     REPLACE("/spec/containers/1/image", "nginx") "]",
     "init container setup: localhost:7439/docker.io/library/alpine:3 -> "
     "alpine:3 (ErrImagePull); container web: "},
    {"stale annotation (the image was changed since): the inverse instead",
     POD(UID ANNOT(ORIG("container/app", "grycap/imagemagick:old")),
         "'containers':[" CTR("app", RW) "]",
         "'containerStatuses':[" WAIT("app", "ImagePullBackOff") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") "," TEST("/spec/containers/0/image", RW)
     "," REPLACE("/spec/containers/0/image",
                 "docker.io/grycap/imagemagick:latest") "]",
     NULL},
    {"annotation without this container's key: the inverse, port decoded",
     POD(UID ANNOT(ORIG("container/other", "busybox")),
         "'containers':[" CTR("app", "localhost:7439/my.reg__5000/a/b:1") "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") ","
     TEST("/spec/containers/0/image", "localhost:7439/my.reg__5000/a/b:1") ","
     REPLACE("/spec/containers/0/image", "my.reg:5000/a/b:1") "]",
     NULL},
    {"annotation that is not a JSON object still marks the pod: the inverse",
     POD(UID ANNOT("not json"),
         "'containers':[" CTR("app", "localhost:7439/ipv6_xfe80--1x__5000/a:1") "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") ","
     TEST("/spec/containers/0/image", "localhost:7439/ipv6_xfe80--1x__5000/a:1")
     "," REPLACE("/spec/containers/0/image", "[fe80::1]:5000/a:1") "]",
     NULL},
    {"an annotation value under the cache host is never put back",
     POD(UID ANNOT(ORIG("container/app", RW)),
         "'containers':[" CTR("app", RW) "]",
         "'containerStatuses':[" WAIT("app", "ImagePullBackOff") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") "," TEST("/spec/containers/0/image", RW)
     "," REPLACE("/spec/containers/0/image",
                 "docker.io/grycap/imagemagick:latest") "]",
     NULL},
    {"cache host compared without case; no uid, no uid test",
     POD(ANNOT(ORIG("container/app", "grycap/imagemagick")),
         "'containers':[" CTR("app", "LocalHost:7439/docker.io/grycap/"
                                     "imagemagick:latest") "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     1,
     "[" TEST("/spec/containers/0/image",
              "LocalHost:7439/docker.io/grycap/imagemagick:latest") ","
     REPLACE("/spec/containers/0/image", "grycap/imagemagick") "]",
     NULL},
    {"another cache host (port) is not ours",
     POD(UID ANNOT(ORIG("container/app", "grycap/imagemagick")),
         "'containers':[" CTR("app", "localhost:7440/docker.io/grycap/"
                                     "imagemagick:latest") "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     0, NULL, NULL},
    {"the failing status names another container",
     POD(UID ANNOT(ORIG("container/app", "grycap/imagemagick")),
         "'containers':[" CTR("app", RW) "," CTR("b", "busybox") "]",
         "'containerStatuses':[" RUNNING("app") "," WAIT("b", "ErrImagePull") "]"),
     0, NULL, NULL},
    {"init and container of the same name are told apart",
     POD(UID ANNOT(ORIG("container/x", "busybox:1")),
         "'initContainers':[" CTR("x", "localhost:7439/docker.io/library/busybox:1") "],"
         "'containers':[" CTR("x", "localhost:7439/docker.io/library/busybox:1") "]",
         "'initContainerStatuses':[" RUNNING("x") "],"
         "'containerStatuses':[" WAIT("x", "ImagePullBackOff") "]"),
     1,
     "[" TEST("/metadata/uid", "u-1") ","
     TEST("/spec/containers/0/image", "localhost:7439/docker.io/library/busybox:1")
     "," REPLACE("/spec/containers/0/image", "busybox:1") "]",
     NULL},
    {"being deleted",
     POD(UID ",'deletionTimestamp':'2026-11-26T17:20:00Z'"
             ANNOT(ORIG("container/app", "grycap/imagemagick")),
         "'containers':[" CTR("app", RW) "]",
         "'containerStatuses':[" WAIT("app", "ImagePullBackOff") "]"),
     0, NULL, NULL},
    {"no status at all", POD(UID ANNOT(ORIG("container/app", "x")),
                             "'containers':[" CTR("app", RW) "]", ""),
     0, NULL, NULL},
    {"a rewritten image whose registry component does not decode",
     POD(UID ANNOT(ORIG("container/app", "x")),
         "'containers':[" CTR("app", "localhost:7439/nodots/a:1") "]",
         "'containerStatuses':[" WAIT("app", "ErrImagePull") "]"),
     0, NULL, NULL},
};

static void test_table(void) {
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    cJSON *pod = json(cases[i].pod), *ops = (cJSON *)1;
    char msg[THAW_REPAIR_MESSAGE_MAX];
    CHECK(pod != NULL);
    int n = thaw_repair_plan(pod, &OPTS, &ops, msg, sizeof msg);
    if (n != cases[i].n)
      fprintf(stderr, "case %zu (%s): %d repaired, want %d\n", i,
              cases[i].what, n, cases[i].n);
    CHECK(n == cases[i].n);
    if (cases[i].ops == NULL) {
      CHECK(ops == NULL);
      CHECK(msg[0] == '\0');
    } else {
      cJSON *want = json(cases[i].ops);
      CHECK(want != NULL);
      char *got = ops ? cJSON_PrintUnformatted(ops) : NULL;
      char *exp = want ? cJSON_PrintUnformatted(want) : NULL;
      if (got == NULL || exp == NULL || strcmp(got, exp) != 0)
        fprintf(stderr, "case %zu (%s):\n got %s\nwant %s\n", i,
                cases[i].what, got ? got : "(none)", exp ? exp : "?");
      CHECK(got != NULL && exp != NULL && strcmp(got, exp) == 0);
      CHECK(strncmp(msg, "pull from the cache failed", 26) == 0);
      if (cases[i].says && strstr(msg, cases[i].says) == NULL)
        fprintf(stderr, "case %zu: message %s\n", i, msg);
      CHECK(cases[i].says == NULL || strstr(msg, cases[i].says) != NULL);
      free(got);
      free(exp);
      cJSON_Delete(want);
    }
    cJSON_Delete(ops);
    cJSON_Delete(pod);
  }
}

/* A long message is cut, never overrun; the patch stays whole. */
static void test_long_message(void) {
  char pod[16384];
  /* 20 containers with long names, all failing */
  char spec[8192] = "", sts[8192] = "";
  for (int i = 0; i < 20; i++) {
    char c[400], s[200];
    snprintf(c, sizeof c,
             "%s{'name':'container-with-a-rather-long-name-%02d','image':"
             "'localhost:7439/docker.io/library/img-%02d:1'}",
             i ? "," : "", i, i);
    snprintf(s, sizeof s,
             "%s{'name':'container-with-a-rather-long-name-%02d','state':"
             "{'waiting':{'reason':'ErrImagePull'}}}",
             i ? "," : "", i);
    snprintf(spec + strlen(spec), sizeof spec - strlen(spec), "%s", c);
    snprintf(sts + strlen(sts), sizeof sts - strlen(sts), "%s", s);
  }
  snprintf(pod, sizeof pod,
           "{'metadata':{'name':'p','uid':'u','annotations':{'" ANN
           "':'{}'}},'spec':{'containers':[%s]},'status':{"
           "'containerStatuses':[%s]}}",
           spec, sts);
  cJSON *o = json(pod), *ops = NULL;
  char msg[THAW_REPAIR_MESSAGE_MAX];
  CHECK(thaw_repair_plan(o, &OPTS, &ops, msg, sizeof msg) == 20);
  CHECK(cJSON_GetArraySize(ops) == 1 + 40);
  CHECK(strlen(msg) == sizeof msg - 1);
  char small[8];
  cJSON_Delete(ops);
  CHECK(thaw_repair_plan(o, &OPTS, &ops, small, sizeof small) == 20);
  CHECK(strlen(small) == 7);
  cJSON_Delete(ops);
  cJSON_Delete(o);
}

int main(void) {
  test_table();
  test_long_message();
  return 0;
}
