/* showcase.c - thaw-showcase: an OSCAR-like workload against an API server.
 *
 * Job pods are created with generateName in the services namespace, as OSCAR
 * does for every uploaded file; informers on Pods and CachedImages follow
 * along and print each pod's images as stored, marking those that admission
 * pointed at the cache. Finished jobs are deleted. With --record it also
 * records a CachedImage for each cold image, as thaw-webhook does, for runs
 * without the webhook. It ends when the pod informer has seen every pod come
 * and go, and prints what it saw. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imgref.h"
#include "informer.h"
#include "intern.h"
#include "kube.h"
#include "kubeconfig.h"
#include "log.h"
#include "podinfo.h"

/* The images of OSCAR services; the last one is an invalid reference, which
 * the webhook will pass through with a warning. With --upstream HOST, the
 * same repositories under HOST (a registry on this machine that holds them),
 * so a real controller can warm them. */
static const char *const images_[] = {
    "grycap/imagemagick", "ghcr.io/grycap/oscar-theano-plants:latest",
    "rclone/rclone", "docker.io/library/alpine:3.19", "Bad/Image:tag"};
static const char *const paths_[] = {
    "grycap/imagemagick:latest", "grycap/oscar-theano-plants:latest",
    "rclone/rclone:latest", "library/alpine:3.19", NULL};
#define N_IMAGES (sizeof images_ / sizeof images_[0])
#define SIDECAR 2 /* rclone/rclone */
static char upstream_images[N_IMAGES][300];

typedef struct {
  uv_loop_t *loop;
  thaw_kube_t *kube;
  thaw_intern_t *intern;
  thaw_informer_t *pods, *cis;
  uv_timer_t tick;
  const char *ns;
  int jobs, created, create_errors, deleted, pods_seen, pods_gone;
  int attempts, recorded, already, invalid, synced;
  int record, pods_cached;
  const char *cache_host;
  const char *images[N_IMAGES];
  int done;
} showcase_t;

typedef struct {
  char image[THAW_IMGREF_INPUT_MAX + 1];
} ci_rec_t;

static void *ci_project(const cJSON *obj, size_t *size, void *data) {
  (void)data;
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
  const char *img =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "image"));
  if (img == NULL)
    return NULL;
  ci_rec_t *r = malloc(sizeof *r);
  if (r == NULL)
    return NULL;
  snprintf(r->image, sizeof r->image, "%s", img);
  *size = sizeof *r;
  return r;
}

static void ci_free(void *rec, void *data) {
  (void)data;
  free(rec);
}

static void on_ci_add(const char *key, const void *rec, void *data) {
  (void)data;
  const ci_rec_t *r = rec;
  printf("  cachedimage %-58s %s\n", key, r->image);
}

static void on_recorded(const thaw_kube_result_t *res, void *data) {
  showcase_t *s = data;
  if (res->err == 0)
    s->recorded++;
  else if (res->err == THAW_EALREADYEXISTS)
    s->already++; /* another pod recorded it first: that counts */
  else if (res->err != THAW_ECANCELED)
    thaw_warn("record cachedimage", "error", res->message);
}

/* What the webhook will do for a cold image: create its CachedImage. */
static void record_image(showcase_t *s, const char *image) {
  thaw_imgref_t ref;
  char name[THAW_CACHEDIMAGE_NAME_MAX + 1];
  if (thaw_imgref_parse(image, strlen(image), &ref) != 0) {
    printf("  image %-40s not recorded: %s\n", image, ref.err);
    s->invalid++;
    return;
  }
  if (thaw_cachedimage_name(ref.str, name, sizeof name) != 0)
    return;
  cJSON *ci = cJSON_CreateObject();
  cJSON_AddStringToObject(ci, "apiVersion", "thaw.dev/v1alpha1");
  cJSON_AddStringToObject(ci, "kind", "CachedImage");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(ci, "metadata"), "name",
                          name);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(ci, "spec"), "image",
                          ref.str);
  thaw_kube_opts_t o = {0};
  int rc = thaw_kube_create(s->kube, &thaw_kube_cachedimages, &o, ci,
                            on_recorded, s);
  s->attempts++;
  if (rc != 0)
    thaw_warn("record cachedimage", "image", ref.str, "error",
              thaw_strerror(rc));
  cJSON_Delete(ci);
}

static void on_deleted(const thaw_kube_result_t *res, void *data) {
  showcase_t *s = data;
  if (res->err == 0 || res->err == THAW_ENOTFOUND)
    s->deleted++;
}

static void on_pod_add(const char *key, const void *rec, void *data) {
  showcase_t *s = data;
  const thaw_podinfo_t *p = rec;
  int cached = 0;
  s->pods_seen++;
  printf("+ pod %s\n", key);
  for (int i = 0; i < p->n_images; i++) {
    int hit = thaw_imgref_is_rewritten(p->refs[i], s->cache_host);
    cached |= hit;
    printf("    %s %s\n", hit ? "cache:" : "cold: ", p->refs[i]);
    if (s->record && !hit)
      record_image(s, p->refs[i]);
  }
  s->pods_cached += cached;
  /* The job is over at once: delete the pod, as a finished OSCAR job's pod
   * is eventually garbage-collected. */
  const char *slash = strchr(key, '/');
  thaw_kube_opts_t o = {.namespace = s->ns, .name = slash ? slash + 1 : key};
  thaw_kube_delete(s->kube, &thaw_kube_pods, &o, on_deleted, s);
}

static void on_pod_delete(const char *key, const void *rec, void *data) {
  showcase_t *s = data;
  (void)rec;
  s->pods_gone++;
  printf("- pod %s\n", key);
}

static void on_synced(void *data) {
  showcase_t *s = data;
  s->synced++;
}

static void on_created(const thaw_kube_result_t *res, void *data) {
  showcase_t *s = data;
  if (res->err != 0 && res->err != THAW_ECANCELED) {
    s->create_errors++;
    thaw_warn("create pod", "error", res->message);
  }
}

/* An OSCAR job pod: the service's image, plus the rclone mount sidecar as an
 * initContainer on every other job. */
static cJSON *job_pod(const showcase_t *s, int i) {
  char buf[1024];
  snprintf(buf, sizeof buf,
           "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{"
           "\"generateName\":\"imagemagick-job-%d-\",\"namespace\":\"%s\","
           "\"labels\":{\"oscar_service\":\"imagemagick\"}},"
           "\"spec\":{\"restartPolicy\":\"Never\",\"containers\":[{"
           "\"name\":\"oscar-container\",\"image\":\"%s\"}]}}",
           i, s->ns, s->images[i % N_IMAGES]);
  cJSON *pod = cJSON_Parse(buf);
  if (pod != NULL && i % 2 == 1) {
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(pod, "spec");
    cJSON *init = cJSON_AddArrayToObject(spec, "initContainers");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", "rclone-container");
    cJSON_AddStringToObject(c, "image", s->images[SIDECAR]);
    cJSON_AddItemToArray(init, c);
  }
  return pod;
}

static void on_tick(uv_timer_t *t) {
  showcase_t *s = t->data;
  if (s->synced < 2)
    return;
  if (s->created < s->jobs) {
    cJSON *pod = job_pod(s, s->created);
    thaw_kube_opts_t o = {.namespace = s->ns};
    if (pod != NULL &&
        thaw_kube_create(s->kube, &thaw_kube_pods, &o, pod, on_created, s) == 0)
      s->created++;
    cJSON_Delete(pod);
    return;
  }
  if (s->pods_gone + s->create_errors >= s->jobs) {
    s->done = 1;
    uv_timer_stop(t);
    uv_stop(s->loop);
  }
}

static void on_ns(const thaw_kube_result_t *res, void *data) {
  showcase_t *s = data;
  if (res->err != 0 && res->err != THAW_EALREADYEXISTS)
    thaw_error("create namespace", "ns", s->ns, "error", res->message);
}

static int start_informer(showcase_t *s, const thaw_kube_resource_t *r,
                          const char *ns, thaw_informer_t **out) {
  thaw_informer_config_t c = {0};
  c.resource = r;
  c.namespace = ns;
  c.handlers.on_synced = on_synced;
  c.handlers.data = s;
  if (r == &thaw_kube_pods) {
    c.project = thaw_podinfo_project;
    c.free_rec = thaw_podinfo_free;
    c.equal = thaw_podinfo_equal;
    c.project_data = s->intern;
    c.handlers.on_add = on_pod_add;
    c.handlers.on_delete = on_pod_delete;
  } else {
    c.project = ci_project;
    c.free_rec = ci_free;
    c.handlers.on_add = on_ci_add;
  }
  int rc = thaw_informer_new(s->loop, s->kube, &c, out);
  return rc != 0 ? rc : thaw_informer_start(*out);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: thaw-showcase [--kubeconfig PATH] [--namespace NS] "
          "[--jobs N]\n"
          "  --kubeconfig PATH  kubeconfig to use (default: $KUBECONFIG; "
          "in-cluster\n"
          "                     config when neither is set)\n"
          "  --namespace NS     OSCAR services namespace (default oscar-svc)\n"
          "  --jobs N           job pods to create (default 20)\n"
          "  --record           record a CachedImage for each cold image, as\n"
          "                     thaw-webhook does (for runs without it)\n"
          "  --cache-host HOST  host of rewritten references (default "
          "localhost:7439)\n"
          "  --upstream HOST    take the services' images from registry HOST\n"
          "                     (HOST/grycap/imagemagick:latest, ...) instead\n"
          "                     of their public registries\n");
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"kubeconfig", required_argument, NULL, 'k'},
      {"namespace", required_argument, NULL, 'n'},
      {"jobs", required_argument, NULL, 'j'},
      {"record", no_argument, NULL, 'r'},
      {"cache-host", required_argument, NULL, 'c'},
      {"upstream", required_argument, NULL, 'u'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  setvbuf(stdout, NULL, _IOLBF, 0); /* lines, not blocks, among the logs */
  const char *kubeconfig = NULL;
  showcase_t s = {.ns = "oscar-svc", .jobs = 20, .cache_host = "localhost:7439"};
  for (size_t i = 0; i < N_IMAGES; i++)
    s.images[i] = images_[i];
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    char *end;
    switch (c) {
    case 'k':
      kubeconfig = optarg;
      break;
    case 'n':
      s.ns = optarg;
      break;
    case 'r':
      s.record = 1;
      break;
    case 'c':
      s.cache_host = optarg;
      break;
    case 'u':
      for (size_t i = 0; i < N_IMAGES; i++)
        if (paths_[i] != NULL) {
          snprintf(upstream_images[i], sizeof upstream_images[i], "%.200s/%s",
                   optarg, paths_[i]);
          s.images[i] = upstream_images[i];
        }
      break;
    case 'j':
      s.jobs = (int)strtol(optarg, &end, 10);
      if (*end != '\0' || s.jobs < 1 || s.jobs > 100000) {
        fprintf(stderr, "thaw-showcase: --jobs: not a number in 1..100000\n");
        return 2;
      }
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }

  if (kubeconfig == NULL && getenv("KUBECONFIG") && *getenv("KUBECONFIG"))
    kubeconfig = getenv("KUBECONFIG");
  thaw_kube_config_t cfg;
  char err[512];
  if (thaw_kube_config_load(&cfg, kubeconfig, err, sizeof err) != 0) {
    fprintf(stderr, "thaw-showcase: %s\n", err);
    return 2;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  s.loop = &loop;
  s.intern = thaw_intern_new();
  int rc = thaw_kube_new(&loop, &cfg, &s.kube);
  thaw_kube_config_free(&cfg);
  if (rc != 0 || s.intern == NULL) {
    fprintf(stderr, "thaw-showcase: %s\n", thaw_strerror(rc));
    return 1;
  }

  cJSON *nsobj = cJSON_CreateObject();
  cJSON_AddStringToObject(nsobj, "apiVersion", "v1");
  cJSON_AddStringToObject(nsobj, "kind", "Namespace");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(nsobj, "metadata"), "name",
                          s.ns);
  thaw_kube_opts_t o = {0};
  thaw_kube_create(s.kube, &thaw_kube_namespaces, &o, nsobj, on_ns, &s);
  cJSON_Delete(nsobj);

  if (start_informer(&s, &thaw_kube_pods, s.ns, &s.pods) != 0 ||
      start_informer(&s, &thaw_kube_cachedimages, NULL, &s.cis) != 0) {
    fprintf(stderr, "thaw-showcase: cannot start informers\n");
    return 1;
  }
  printf("thaw-showcase: %d OSCAR job pods in namespace %s\n", s.jobs, s.ns);
  uv_timer_init(&loop, &s.tick);
  s.tick.data = &s;
  uv_timer_start(&s.tick, on_tick, 200, 200); /* ~OSCAR upload pace */
  uv_run(&loop, UV_RUN_DEFAULT);

  const thaw_informer_stats_t *st = thaw_informer_stats(s.pods);
  printf("\njobs created %d, pods seen %d, pods gone %d, create errors %d\n",
         s.created, s.pods_seen, s.pods_gone, s.create_errors);
  printf("pods pointed at the cache %d of %d\n", s.pods_cached, s.pods_seen);
  if (s.record)
    printf("cachedimages recorded %d, already recorded %d, invalid images %d\n",
           s.recorded, s.already, s.invalid);
  printf("pod informer: %llu lists, %llu watches, %llu 410s, %llu events, "
         "%llu bookmarks\n",
         (unsigned long long)st->lists, (unsigned long long)st->watches,
         (unsigned long long)st->gone, (unsigned long long)st->events,
         (unsigned long long)st->bookmarks);
  /* Every pod seen and gone, every valid image recorded: the demo doubles as
   * a test of requests started from informer handlers. */
  int ok = s.done && s.pods_seen == s.created && s.pods_gone == s.created &&
           s.create_errors == 0 && s.recorded + s.already == s.attempts &&
           (!s.record || s.recorded > 0);

  uv_close((uv_handle_t *)&s.tick, NULL);
  thaw_informer_free(s.pods);
  thaw_informer_free(s.cis);
  thaw_kube_free(s.kube);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  thaw_intern_free(s.intern);
  return ok ? 0 : 1;
}
