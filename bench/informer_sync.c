/* informer_sync.c - how fast a pod informer syncs and how much memory its
 * store holds per pod: thaw's compact podinfo store against a store of
 * whole cJSON objects (what controller-runtime's cache keeps), same pods,
 * same process. Run under test/with-emulator.sh (bench/informer-sync.sh).
 *
 * informer_sync [--pods N] [--namespaces K] [--page P] [--template FILE]
 *               [--no-baseline] [--max-bytes-per-pod B]
 * Prints a human summary and one "RESULT k=v ..." line; exits 1 when the
 * store does not hold N pods or thaw's RSS per pod exceeds B. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "informer.h"
#include "informer_harness.h"
#include "intern.h"
#include "podinfo.h"

#ifndef THAW_SRCDIR
#define THAW_SRCDIR "."
#endif

static harness_t h;

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f != NULL && fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, "VmRSS:", 6) == 0)
      kb = strtol(line + 6, NULL, 10);
  if (f != NULL)
    fclose(f);
  return kb;
}

static size_t heap_bytes(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The baseline's projection: keep the whole object. */
static void *whole_project(const cJSON *obj, size_t *size, void *data) {
  (void)data;
  *size = 0;
  return cJSON_Duplicate(obj, 1);
}
static void whole_free(void *rec, void *data) {
  (void)data;
  cJSON_Delete(rec);
}

static int synced_flag;
static void on_synced(void *data) {
  (void)data;
  synced_flag = 1;
}
static int is_synced(void *arg) {
  (void)arg;
  return synced_flag;
}

typedef struct {
  double secs;
  double rss_bpp, heap_bpp; /* bytes per pod */
  size_t count, overhead;
} result_t;

static result_t measure(int compact, long page) {
  thaw_intern_t *intern = compact ? thaw_intern_new() : NULL;
  thaw_informer_config_t cfg = {
      .resource = &thaw_kube_pods,
      .page_size = page,
      .project = compact ? thaw_podinfo_project : whole_project,
      .free_rec = compact ? thaw_podinfo_free : whole_free,
      .equal = compact ? thaw_podinfo_equal : NULL,
      .project_data = intern,
      .handlers = {.on_synced = on_synced},
  };
  result_t r = {0};
  malloc_trim(0);
  long rss0 = rss_kb();
  size_t heap0 = heap_bytes();
  thaw_informer_t *inf = NULL;
  if (thaw_informer_new(&h.loop, h.kube, &cfg, &inf) != 0)
    exit(1);
  synced_flag = 0;
  double t0 = now_s();
  thaw_informer_start(inf);
  if (!run_until(&h, is_synced, NULL, 1800000)) {
    fprintf(stderr, "informer did not sync\n");
    exit(1);
  }
  r.secs = now_s() - t0;
  malloc_trim(0);
  r.count = thaw_store_count(thaw_informer_store(inf));
  r.overhead = thaw_store_overhead(thaw_informer_store(inf));
  double n = r.count ? (double)r.count : 1;
  r.rss_bpp = (double)(rss_kb() - rss0) * 1024.0 / n;
  r.heap_bpp = (double)(heap_bytes() - heap0) / n;
  thaw_informer_free(inf);
  run_until(&h, NULL, NULL, 200); /* let it release */
  thaw_intern_free(intern);
  malloc_trim(0);
  return r;
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  size_t got = fread(buf, 1, (size_t)n, f);
  buf[got] = '\0';
  fclose(f);
  return buf;
}

/* OSCAR-like pods: the job pod template, one service (image) per
 * namespace, seeded in bulk by the emulator. */
static void seed(const char *template_path, long pods, int namespaces) {
  char *text = read_file(template_path);
  cJSON *tpl = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (tpl == NULL) {
    fprintf(stderr, "cannot read template %s\n", template_path);
    exit(1);
  }
  cJSON *review = cJSON_GetObjectItem(tpl, "request");
  if (cJSON_GetObjectItem(review, "object") != NULL) { /* AdmissionReview */
    cJSON *o = cJSON_DetachItemFromObject(review, "object");
    cJSON_Delete(tpl);
    tpl = o;
  }
  static const char *services[] = {"imagemagick", "plants-theano",
                                   "cowsay", "whisper", "yolov8"};
  long left = pods;
  for (int i = 0; i < namespaces; i++) {
    long count = left / (namespaces - i);
    left -= count;
    char ns[32], prefix[64], img[96];
    const char *svc = services[i % 5];
    snprintf(ns, sizeof(ns), "oscar-svc-%d", i);
    snprintf(prefix, sizeof(prefix), "%s-6f0c1f2e-8d7b-4c35-9b1e-%012d-",
             svc, i);
    snprintf(img, sizeof(img), "ghcr.io/grycap/%s:latest", svc);
    cJSON *c0 = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(tpl, "spec"), "containers"),
        0);
    cJSON_ReplaceItemInObject(c0, "image", cJSON_CreateString(img));
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "resource", "pods");
    cJSON_AddStringToObject(req, "namespace", ns);
    cJSON_AddNumberToObject(req, "count", (double)count);
    cJSON_AddStringToObject(req, "namePrefix", prefix);
    cJSON_AddItemReferenceToObject(req, "template", tpl);
    char *body = cJSON_PrintUnformatted(req);
    char *resp = NULL;
    long st = emu_post(&h, "/_emulator/seed", body, &resp);
    if (st != 200 && st != 201) {
      fprintf(stderr, "seed %s: HTTP %ld %s\n", ns, st, resp ? resp : "");
      exit(1);
    }
    free(resp);
    free(body);
    cJSON_Delete(req);
  }
  cJSON_Delete(tpl);
}

int main(int argc, char **argv) {
  long pods = 100000, page = 500, max_bpp = 0;
  int namespaces = 10, baseline = 1;
  const char *template_path = THAW_SRCDIR "/test/data/oscar-job-pod.json";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--pods") == 0 && i + 1 < argc)
      pods = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--namespaces") == 0 && i + 1 < argc)
      namespaces = (int)strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--page") == 0 && i + 1 < argc)
      page = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--template") == 0 && i + 1 < argc)
      template_path = argv[++i];
    else if (strcmp(argv[i], "--max-bytes-per-pod") == 0 && i + 1 < argc)
      max_bpp = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--no-baseline") == 0)
      baseline = 0;
    else {
      fprintf(stderr, "usage: %s [--pods N] [--namespaces K] [--page P] "
                      "[--template FILE] [--no-baseline] "
                      "[--max-bytes-per-pod B]\n", argv[0]);
      return 2;
    }
  }
  if (pods <= 0 || namespaces <= 0 || namespaces > pods)
    return 2;
  harness_init(&h);
  double t0 = now_s();
  seed(template_path, pods, namespaces);
  printf("seeded %ld pods in %d namespaces in %.1f s\n", pods, namespaces,
         now_s() - t0);
  /* Warm the connection (TLS, curl) so neither run pays for it. */
  cJSON_Delete(list_all(&h, &thaw_kube_namespaces, NULL, NULL));
  malloc_trim(0);

  result_t t = measure(1, page);
  printf("thaw:     sync %.2f s, %zu pods, RSS %.0f B/pod, heap %.0f B/pod "
         "(table %.0f B/pod)\n",
         t.secs, t.count, t.rss_bpp, t.heap_bpp,
         (double)t.overhead / (double)(t.count ? t.count : 1));
  result_t b = {0};
  if (baseline) {
    b = measure(0, page);
    printf("baseline: sync %.2f s, %zu pods, RSS %.0f B/pod, heap %.0f B/pod "
           "(whole cJSON objects)\n",
           b.secs, b.count, b.rss_bpp, b.heap_bpp);
    printf("ratio thaw/baseline: RSS per pod %.4f, heap per pod %.4f, "
           "sync time %.2f\n",
           t.rss_bpp / b.rss_bpp, t.heap_bpp / b.heap_bpp, t.secs / b.secs);
  }
  printf("RESULT pods=%zu thaw_s=%.3f thaw_rss_bpp=%.1f thaw_heap_bpp=%.1f "
         "base_s=%.3f base_rss_bpp=%.1f base_heap_bpp=%.1f\n",
         t.count, t.secs, t.rss_bpp, t.heap_bpp, b.secs, b.rss_bpp,
         b.heap_bpp);
  int rc = 0;
  if ((long)t.count != pods || (baseline && (long)b.count != pods)) {
    fprintf(stderr, "store holds %zu pods, want %ld\n", t.count, pods);
    rc = 1;
  }
  if (max_bpp > 0) {
    printf("target <= %ld B/pod (RSS): %s\n", max_bpp,
           t.rss_bpp <= (double)max_bpp ? "met" : "MISSED");
    if (t.rss_bpp > (double)max_bpp)
      rc = 1;
  }
  harness_close(&h);
  return rc;
}
