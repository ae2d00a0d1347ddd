/* test_informer_stress.c - acceptance: 10,000 pods created, updated and a
 * share deleted through the emulator while watches are dropped every 2 s,
 * history is compacted with a watch-cache restart every 5 s, and every
 * 7 s the informer's watch is held off (two failed GETs) long enough for
 * the watch cache's window, kept small (100 growing to 200 events), to move
 * past it. The pod informer's store must end equal to the server (keys,
 * resourceVersions, images), its event log must be consistent: per key no
 * duplicate add, no update or delete without a live add, and the last event
 * equal to the final state; and the 410 of a window overflow must have
 * happened and led to re-lists (with the restarts' 410s, which are counted).
 * Usage: test_informer_stress [PODS]   (run under test/with-emulator.sh) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "informer_harness.h"
#include "podinfo.h"

#include "check.h"

#define NAMESPACES 4
#define INFLIGHT 32

static harness_t h;
static thaw_intern_t *intern;

/* --- chaos: a thread that drops watches, restarts the watch cache, and
 * holds the informer's watch off ------------------------------------------ */

static atomic_int chaos_stop;
static atomic_int drops, compactions, stalls;

static void *chaos(void *arg) {
  (void)arg;
  for (int tick = 1; !atomic_load(&chaos_stop); tick++) {
    usleep(100000);
    if (tick % 20 == 0 &&
        emu_post(&h, "/_emulator/drop-watches", NULL, NULL) == 200)
      atomic_fetch_add(&drops, 1);
    /* an apiserver restart: the streams break, etcd is compacted and the
     * watch cache starts over at the current rv, 50 ms later, while the
     * informer waits out its backoff and the workload writes on. Its
     * re-watch then gets the restart's 410, unless the cut stream made it
     * re-list (a reset HTTP/2 stream can end mid-event: unreadable, so it
     * lists): the restart's 410 is asserted in test_informer.c, where it
     * is deterministic; here it is counted. */
    if (tick % 50 == 0 &&
        emu_post(&h, "/_emulator/drop-watches", NULL, NULL) == 200) {
      usleep(50000);
      if (emu_post(&h, "/_emulator/compact", "{\"restartWatchCache\":true}",
                   NULL) == 200)
        atomic_fetch_add(&compactions, 1);
    }
    /* the informer's next GETs of /api/v1/pods fail: its re-watch backs
     * off for 0.7-1.4 s while the workload writes past the window */
    if (tick % 70 == 0 &&
        emu_post(&h, "/_emulator/fail",
                 "{\"count\":2,\"code\":503,\"pathPrefix\":\"/api/v1/pods\","
                 "\"methods\":[\"GET\"]}",
                 NULL) == 200 &&
        emu_post(&h, "/_emulator/drop-watches", NULL, NULL) == 200)
      atomic_fetch_add(&stalls, 1);
  }
  emu_post(&h, "/_emulator/fail", "{\"count\":0}", NULL); /* clear the rest */
  return NULL;
}

/* The emulator's count of pod watches answered 410, by cause. */
static void expired_watches(long *evicted, long *restarted) {
  char *body = NULL;
  *evicted = *restarted = -1;
  if (emu_post(&h, "/_emulator/watch-cache", "{}", &body) == 200) {
    cJSON *doc = cJSON_Parse(body);
    cJSON *exp = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "resources"), "pods"),
        "expired");
    *evicted = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(exp, "evicted"));
    *restarted =
        (long)cJSON_GetNumberValue(cJSON_GetObjectItem(exp, "restarted"));
    cJSON_Delete(doc);
  }
  free(body);
}

/* --- workload: per pod create → update → [update] → [delete] ------------ */

enum step { CREATE, UPDATE1, UPDATE2, DELETE, DONE };

typedef struct {
  int idx;
  enum step step;
  int tries;
  cJSON *obj; /* last known server object */
} pod_t;

static pod_t *pods;
static int npods, next_new, inflight, done_pods;
static int *ready; /* follow-ups first, so chains interleave with creates */
static int nready;
static long ops, retries;

static void pump(void);

static void pod_ns(const pod_t *p, char *ns) {
  snprintf(ns, 16, "st-%d", p->idx % NAMESPACES);
}

static enum step next_step(const pod_t *p) {
  switch (p->step) {
  case CREATE:
    return UPDATE1;
  case UPDATE1:
    return p->idx % 4 == 0 ? UPDATE2 : (p->idx % 5 < 2 ? DELETE : DONE);
  case UPDATE2:
    return p->idx % 5 < 2 ? DELETE : DONE;
  default:
    return DONE;
  }
}

static void on_op(const thaw_kube_result_t *res, void *data) {
  pod_t *p = data;
  inflight--;
  int err = res->err;
  if (err == THAW_ECANCELED)
    return;
  if (err == 0 || (p->step == CREATE && err == THAW_EALREADYEXISTS) ||
      (p->step == DELETE && err == THAW_ENOTFOUND)) {
    if (err == 0 && p->step != DELETE) {
      cJSON_Delete(p->obj);
      p->obj = thaw_kube_result_take_body(res);
    } else if (err == THAW_EALREADYEXISTS) {
      /* the first attempt got through: its answer was lost; the object
       * from the request is stale, so read it back before updating */
      p->step = CREATE; /* re-enter via a GET */
      p->tries = -1;
      ready[nready++] = p->idx;
      pump();
      return;
    }
    p->step = next_step(p);
    p->tries = 0;
  } else {
    retries++;
    if (++p->tries > 20) {
      fprintf(stderr, "pod %d: giving up after %s\n", p->idx,
              thaw_err_name(err));
      failures++;
      p->step = DONE;
    } else if (err == THAW_ECONFLICT) {
      p->tries = -1; /* re-read, then retry the update */
    }
  }
  if (p->step == DONE)
    done_pods++;
  else
    ready[nready++] = p->idx;
  pump();
}

static void on_get(const thaw_kube_result_t *res, void *data) {
  pod_t *p = data;
  inflight--;
  if (res->err == 0) {
    cJSON_Delete(p->obj);
    p->obj = thaw_kube_result_take_body(res);
    p->tries = 0;
    if (p->step == CREATE)
      p->step = UPDATE1;
  } else if (res->err == THAW_ECANCELED) {
    return;
  }
  ready[nready++] = p->idx;
  pump();
}

static cJSON *pod_body(const pod_t *p) {
  char ns[16], name[32], img[96];
  pod_ns(p, ns);
  snprintf(name, sizeof(name), "stress-%05d", p->idx);
  snprintf(img, sizeof(img), "registry.example:5000/team/app-%d:1",
           p->idx % 50);
  const char *images[] = {img, p->idx % 3 ? "busybox:1.36" : NULL, NULL};
  return make_pod(ns, name, images);
}

/* Builds the next version: a new image tag and a generation label. */
static cJSON *updated(const pod_t *p) {
  cJSON *o = cJSON_Duplicate(p->obj, 1);
  cJSON *c0 = cJSON_GetArrayItem(
      cJSON_GetObjectItem(cJSON_GetObjectItem(o, "spec"), "containers"), 0);
  char img[96], gen[8];
  snprintf(img, sizeof(img), "registry.example:5000/team/app-%d:%d",
           p->idx % 50, p->step == UPDATE1 ? 2 : 3);
  cJSON_ReplaceItemInObject(c0, "image", cJSON_CreateString(img));
  cJSON *meta = cJSON_GetObjectItem(o, "metadata");
  cJSON *labels = cJSON_GetObjectItem(meta, "labels");
  snprintf(gen, sizeof(gen), "%d", p->step == UPDATE1 ? 2 : 3);
  cJSON_DeleteItemFromObject(labels, "gen");
  cJSON_AddStringToObject(labels, "gen", gen);
  return o;
}

static void start_op(pod_t *p) {
  char ns[16], name[32];
  pod_ns(p, ns);
  snprintf(name, sizeof(name), "stress-%05d", p->idx);
  thaw_kube_opts_t o = {.namespace = ns, .name = name};
  int rc;
  ops++;
  if (p->tries < 0) { /* re-read the object */
    rc = thaw_kube_get(h.kube, &thaw_kube_pods, &o, on_get, p);
  } else if (p->step == CREATE) {
    cJSON *body = pod_body(p);
    o.name = NULL;
    rc = thaw_kube_create(h.kube, &thaw_kube_pods, &o, body, on_op, p);
    cJSON_Delete(body);
  } else if (p->step == UPDATE1 || p->step == UPDATE2) {
    cJSON *body = updated(p);
    rc = thaw_kube_update(h.kube, &thaw_kube_pods, &o, body, on_op, p);
    cJSON_Delete(body);
  } else {
    rc = thaw_kube_delete(h.kube, &thaw_kube_pods, &o, on_op, p);
  }
  if (rc != 0) {
    fprintf(stderr, "pod %d: request not started: %s\n", p->idx,
            thaw_err_name(rc));
    failures++;
    p->step = DONE;
    done_pods++;
    return;
  }
  inflight++;
}

static void pump(void) {
  while (inflight < INFLIGHT) {
    if (nready > 0)
      start_op(&pods[ready[--nready]]);
    else if (next_new < npods)
      start_op(&pods[next_new++]);
    else
      return;
  }
}

static int all_done(void *arg) {
  (void)arg;
  return done_pods == npods;
}

typedef struct {
  thaw_informer_t *inf;
  recorder_t *r;
  cJSON *items;
  uint64_t next;
} match_wait_t;

static int matches_server(void *arg) {
  match_wait_t *m = arg;
  if (uv_now(&h.loop) < m->next)
    return 0;
  cJSON_Delete(m->items);
  m->items = list_all(&h, &thaw_kube_pods, NULL, NULL);
  m->next = uv_now(&h.loop) + 1000;
  return compare_state(m->items, m->inf, m->r, intern, 0) == 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  npods = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 10000;
  if (npods <= 0)
    npods = 10000;
  harness_init(&h);
  /* a small window, so that it overflows under this load */
  CHECK(emu_post(&h, "/_emulator/watch-cache",
                 "{\"capacity\":100,\"max\":200,\"restart\":true}",
                 NULL) == 200);
  intern = thaw_intern_new();
  for (int i = 0; i < NAMESPACES; i++) {
    char ns[16];
    snprintf(ns, sizeof(ns), "st-%d", i);
    CHECK(ensure_namespace(&h, ns) == 0);
  }

  recorder_t r;
  recorder_init(&r, intern, 0);
  thaw_informer_config_t cfg = {
      .resource = &thaw_kube_pods,
      .project = thaw_podinfo_project,
      .free_rec = thaw_podinfo_free,
      .project_data = intern,
      .handlers = recorder_handlers(&r),
  };
  thaw_informer_t *inf = NULL;
  CHECK(thaw_informer_new(&h.loop, h.kube, &cfg, &inf) == 0);
  r.inf = inf;
  thaw_informer_start(inf);

  pods = calloc((size_t)npods, sizeof(*pods));
  ready = calloc((size_t)npods, sizeof(*ready));
  for (int i = 0; i < npods; i++)
    pods[i].idx = i;

  double t0 = now_s();
  pthread_t th;
  pthread_create(&th, NULL, chaos, NULL);
  pump();
  CHECK(run_until(&h, all_done, NULL, 480000));
  double t1 = now_s();
  atomic_store(&chaos_stop, 1);
  pthread_join(th, NULL);

  /* Quiesce: the informer must converge to the server's final state. */
  match_wait_t m = {inf, &r, NULL, 0};
  int converged = run_until(&h, matches_server, &m, 90000);
  double t2 = now_s();
  CHECK(converged);
  size_t bad = compare_state(m.items, inf, &r, intern, 1);
  CHECK(bad == 0);
  int final = cJSON_GetArraySize(m.items);
  cJSON_Delete(m.items);

  const thaw_informer_stats_t *s = thaw_informer_stats(inf);
  printf("stress: pods=%d ops=%ld retries=%ld final=%d in %.1f s "
         "(converged %.1f s later)\n",
         npods, ops, retries, final, t1 - t0, t2 - t1);
  long evicted, restarted;
  expired_watches(&evicted, &restarted);
  printf("chaos: drops=%d restarts=%d stalls=%d; watches expired: "
         "window overflow=%ld cache restart=%ld\n",
         atomic_load(&drops), atomic_load(&compactions), atomic_load(&stalls),
         evicted, restarted);
  printf("informer: lists=%llu pages=%llu list_errors=%llu watches=%llu "
         "watch_ends=%llu watch_errors=%llu gone=%llu events=%llu "
         "bookmarks=%llu\n",
         (unsigned long long)s->lists, (unsigned long long)s->list_pages,
         (unsigned long long)s->list_errors, (unsigned long long)s->watches,
         (unsigned long long)s->watch_ends,
         (unsigned long long)s->watch_errors, (unsigned long long)s->gone,
         (unsigned long long)s->events, (unsigned long long)s->bookmarks);
  printf("delivered: adds=%llu updates=%llu deletes=%llu; violations: "
         "dup_adds=%llu orphan_updates=%llu orphan_deletes=%llu "
         "stale_old=%llu; state mismatches=%zu\n",
         (unsigned long long)r.adds, (unsigned long long)r.updates,
         (unsigned long long)r.deletes, (unsigned long long)r.dup_adds,
         (unsigned long long)r.orphan_updates,
         (unsigned long long)r.orphan_deletes,
         (unsigned long long)r.stale_old, bad);
  CHECK(r.dup_adds == 0 && r.orphan_updates == 0 && r.orphan_deletes == 0 &&
        r.stale_old == 0);
  CHECK(r.adds >= (uint64_t)final);
  CHECK(r.adds - r.deletes == (uint64_t)final);
  CHECK(atomic_load(&drops) > 0 && s->watch_errors + s->watch_ends > 0);
  /* the 410 path was taken: the workload outran the watch cache's window
   * (the stalls make sure), and each 410 re-listed */
  CHECK(evicted > 0);
  CHECK(restarted >= 0); /* -1: the emulator did not report its counts */
  CHECK(s->gone >= (uint64_t)(evicted + restarted));
  CHECK(s->lists >= 1 + s->gone);

  thaw_informer_free(inf);
  for (int i = 0; i < npods; i++)
    cJSON_Delete(pods[i].obj);
  free(pods);
  free(ready);
  recorder_free(&r);
  harness_close(&h);
  CHECK(thaw_intern_count(intern) == 0);
  thaw_intern_free(intern);
  if (failures) {
    fprintf(stderr, "test_informer_stress: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_informer_stress: ok\n");
  return 0;
}
