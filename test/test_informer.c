/* test_informer.c - the pod informer against the API-server emulator:
 * paginated sync, ordered events, bookmarks, watch drops, 410 after
 * compaction with an exact re-list diff, server failures with backoff, and
 * a store equal to the server's list at the end. Run under
 * test/with-emulator.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "informer_harness.h"
#include "log.h"
#include "podinfo.h"

#include "check.h"

static harness_t h; /* the informers' loop */
static harness_t d; /* the driver's loop: runs only while h is paused */
static thaw_intern_t *intern;

static const char *img1[] = {"docker.io/grycap/imagemagick:1", NULL};
static const char *img2[] = {"docker.io/grycap/imagemagick:2",
                             "busybox:1.36", NULL};

static void create_pod(const char *ns, const char *name,
                       const char *const *images, char *rv_out) {
  cJSON *pod = make_pod(ns, name, images), *body = NULL;
  int rc = sync_create(&d, &thaw_kube_pods, ns, pod, &body);
  if (rc != 0) {
    fprintf(stderr, "create %s/%s: %s\n", ns, name, thaw_err_name(rc));
    exit(1);
  }
  if (rv_out != NULL)
    snprintf(rv_out, 64, "%s",
             cJSON_GetStringValue(cJSON_GetObjectItem(
                 cJSON_GetObjectItem(body, "metadata"), "resourceVersion")));
  cJSON_Delete(pod);
  cJSON_Delete(body);
}

static void label_pod(const char *ns, const char *name, const char *gen) {
  cJSON *p = cJSON_CreateObject();
  cJSON_AddStringToObject(
      cJSON_AddObjectToObject(cJSON_AddObjectToObject(p, "metadata"), "labels"),
      "gen", gen);
  int rc = sync_merge_patch(&d, &thaw_kube_pods, ns, name, p);
  CHECK(rc == 0);
  cJSON_Delete(p);
}

static void delete_pod(const char *ns, const char *name) {
  CHECK(sync_delete(&d, &thaw_kube_pods, ns, name) == 0);
}

static int is_synced(void *arg) { return ((recorder_t *)arg)->synced; }

typedef struct {
  recorder_t *r;
  const char *key;
  const char *want;
  size_t from;
} hist_wait_t;

static int has_history(void *arg) {
  hist_wait_t *w = arg;
  char got[64];
  recorder_history(w->r, w->key, w->from, got, sizeof(got));
  return strcmp(got, w->want) == 0;
}

typedef struct {
  thaw_informer_t *inf;
  recorder_t *r;
  cJSON *items;
} match_wait_t;

/* Runs h until the informer equals the server (checked every 200 ms). */
static int matches_server(void *arg) {
  match_wait_t *m = arg;
  static uint64_t next;
  if (uv_now(&h.loop) < next)
    return 0;
  next = uv_now(&h.loop) + 200;
  cJSON_Delete(m->items);
  m->items = list_all(&d, &thaw_kube_pods, NULL, NULL);
  return compare_state(m->items, m->inf, m->r, intern, 0) == 0;
}

static int wait_match(thaw_informer_t *inf, recorder_t *r, long ms) {
  match_wait_t m = {inf, r, NULL};
  int ok = run_until(&h, matches_server, &m, ms);
  if (!ok)
    compare_state(m.items, inf, r, intern, 1);
  cJSON_Delete(m.items);
  return ok;
}

typedef struct {
  thaw_informer_t *inf;
  uint64_t rv;
} bm_wait_t;

static int bookmark_past(void *arg) {
  bm_wait_t *b = arg;
  return thaw_informer_stats(b->inf)->bookmarks > 0 &&
         thaw_store_rv(thaw_informer_resource_version(b->inf)) >= b->rv;
}

typedef struct {
  const uint64_t *counter;
  uint64_t want;
} count_wait_t;

static int count_reached(void *arg) {
  count_wait_t *c = arg;
  return *c->counter >= c->want;
}

static thaw_informer_t *new_informer(recorder_t *r, long page, long timeout,
                                     const char *ns, const char *lsel) {
  thaw_informer_config_t cfg = {
      .resource = &thaw_kube_pods,
      .namespace = ns,
      .label_selector = lsel,
      .page_size = page,
      .watch_timeout = timeout,
      .project = thaw_podinfo_project,
      .free_rec = thaw_podinfo_free,
      .project_data = intern,
      .handlers = recorder_handlers(r),
  };
  thaw_informer_t *inf = NULL;
  if (thaw_informer_new(&h.loop, h.kube, &cfg, &inf) != 0)
    exit(1);
  r->inf = inf;
  CHECK(thaw_informer_start(inf) == 0);
  CHECK(thaw_informer_start(inf) == THAW_EINVAL);
  return inf;
}

static void print_stats(const char *name, thaw_informer_t *inf) {
  const thaw_informer_stats_t *s = thaw_informer_stats(inf);
  printf("%s: lists=%llu pages=%llu list_errors=%llu watches=%llu "
         "watch_ends=%llu watch_errors=%llu gone=%llu events=%llu "
         "bookmarks=%llu adds=%llu updates=%llu deletes=%llu\n",
         name, (unsigned long long)s->lists,
         (unsigned long long)s->list_pages,
         (unsigned long long)s->list_errors, (unsigned long long)s->watches,
         (unsigned long long)s->watch_ends,
         (unsigned long long)s->watch_errors, (unsigned long long)s->gone,
         (unsigned long long)s->events, (unsigned long long)s->bookmarks,
         (unsigned long long)s->adds, (unsigned long long)s->updates,
         (unsigned long long)s->deletes);
}

int main(void) {
  harness_init(&h);
  harness_init(&d);
  intern = thaw_intern_new();
  CHECK(ensure_namespace(&d, "inf-a") == 0);
  CHECK(ensure_namespace(&d, "inf-b") == 0);
  char name[64], rv[64];
  for (int i = 0; i < 25; i++) {
    snprintf(name, sizeof(name), "p-%02d", i);
    create_pod("inf-a", name, i % 2 ? img1 : img2, NULL);
  }

  /* 1. Initial sync, 7 per page: 4 pages, 25 adds, then synced. */
  recorder_t r;
  recorder_init(&r, intern, 1);
  thaw_informer_t *inf = new_informer(&r, 7, 0, NULL, NULL);
  CHECK(!thaw_informer_has_synced(inf));
  CHECK(run_until(&h, is_synced, &r, 30000));
  CHECK(thaw_informer_has_synced(inf));
  CHECK(r.adds == 25 && r.updates == 0 && r.deletes == 0);
  CHECK(thaw_informer_stats(inf)->list_pages == 4);
  CHECK(thaw_store_count(thaw_informer_store(inf)) == 25);
  const thaw_podinfo_t *pi = thaw_informer_get(inf, "inf-a/p-00", NULL);
  CHECK(pi != NULL && pi->n_images == 2 &&
        thaw_podinfo_uses(pi, "busybox:1.36"));
  CHECK(wait_match(inf, &r, 10000));
  printf("sync: %llu adds over %llu pages\n", (unsigned long long)r.adds,
         (unsigned long long)thaw_informer_stats(inf)->list_pages);

  /* 2. Add, update, delete arrive in order, once each. */
  size_t mark = r.n;
  create_pod("inf-a", "p-x", img1, NULL);
  label_pod("inf-a", "p-x", "2");
  delete_pod("inf-a", "p-x");
  hist_wait_t hw = {&r, "inf-a/p-x", "AUD", mark};
  CHECK(run_until(&h, has_history, &hw, 10000));
  CHECK(r.n - mark == 3);

  /* 3. Bookmarks advance the resume point past events the selector hides:
   * a short watch gets a bookmark 2 s before its deadline. */
  recorder_t r2;
  recorder_init(&r2, intern, 1);
  thaw_informer_t *quiet = new_informer(&r2, 0, 4, NULL, "app=none");
  CHECK(run_until(&h, is_synced, &r2, 10000));
  create_pod("inf-b", "p-other", img1, rv);
  bm_wait_t bw = {quiet, thaw_store_rv(rv)};
  CHECK(run_until(&h, bookmark_past, &bw, 15000));
  CHECK(r2.adds == 0 && thaw_informer_stats(quiet)->lists == 1);
  /* ...and after the stream's deadline it re-watches without a re-list. */
  CHECK(run_until(&h, NULL, NULL, 5000) == 0);
  CHECK(thaw_informer_stats(quiet)->watch_ends >= 1);
  CHECK(thaw_informer_stats(quiet)->lists == 1);
  print_stats("quiet", quiet);
  thaw_informer_free(quiet);

  /* 4. A dropped stream resumes from the last rv: no re-list, no dup. */
  uint64_t lists = thaw_informer_stats(inf)->lists;
  uint64_t ends = thaw_informer_stats(inf)->watch_ends +
                  thaw_informer_stats(inf)->watch_errors;
  CHECK(emu_post(&d, "/_emulator/drop-watches", NULL, NULL) == 200);
  create_pod("inf-a", "p-drop", img2, NULL);
  mark = r.n;
  hw = (hist_wait_t){&r, "inf-a/p-drop", "A", mark};
  CHECK(run_until(&h, has_history, &hw, 10000));
  CHECK(thaw_informer_stats(inf)->lists == lists);
  CHECK(thaw_informer_stats(inf)->watch_ends +
            thaw_informer_stats(inf)->watch_errors > ends);
  CHECK(wait_match(inf, &r, 10000));

  /* 5. Changes made while the watch is down and then compacted away, the
   * watch cache restarted (as by an apiserver restart): the re-watch gets 410, the re-list delivers exactly the difference. */
  uint64_t gone = thaw_informer_stats(inf)->gone;
  CHECK(emu_post(&d, "/_emulator/drop-watches", NULL, NULL) == 200);
  usleep(300000); /* let the server drop the stream before the changes */
  create_pod("inf-a", "p-new1", img1, NULL);
  create_pod("inf-b", "p-new2", img2, NULL);
  label_pod("inf-a", "p-03", "2");
  label_pod("inf-a", "p-04", "2");
  delete_pod("inf-a", "p-05");
  delete_pod("inf-a", "p-06");
  label_pod("inf-a", "p-07", "2"); /* changed, then deleted: only a delete */
  delete_pod("inf-a", "p-07");
  CHECK(emu_post(&d, "/_emulator/compact", "{\"restartWatchCache\":true}", NULL) == 200);
  mark = r.n;
  CHECK(wait_match(inf, &r, 20000));
  CHECK(thaw_informer_stats(inf)->gone > gone);
  CHECK(thaw_informer_stats(inf)->lists == lists + 1);
  struct {
    const char *key, *want;
  } exp[] = {{"inf-a/p-new1", "A"}, {"inf-b/p-new2", "A"},
             {"inf-a/p-03", "U"},   {"inf-a/p-04", "U"},
             {"inf-a/p-05", "D"},   {"inf-a/p-06", "D"},
             {"inf-a/p-07", "D"},   {"inf-a/p-08", ""}};
  char got[64];
  for (size_t i = 0; i < sizeof(exp) / sizeof(*exp); i++) {
    recorder_history(&r, exp[i].key, mark, got, sizeof(got));
    if (strcmp(got, exp[i].want) != 0) {
      fprintf(stderr, "relist diff for %s: got '%s' want '%s'\n", exp[i].key,
              got, exp[i].want);
      failures++;
    }
  }
  CHECK(r.n - mark == 7);
  printf("relist after 410: %zu events\n", r.n - mark);

  /* 6. The server fails the informer's next requests: the re-watch backs
   * off (0.1-0.2 + 0.2-0.4 + 0.4-0.8 + 0.8-1.6 s at least) and recovers. */
  const thaw_informer_stats_t *st = thaw_informer_stats(inf);
  uint64_t errs = st->watch_errors + st->list_errors;
  CHECK(emu_post(&d, "/_emulator/drop-watches", NULL, NULL) == 200);
  CHECK(emu_post(&d, "/_emulator/fail",
                 "{\"count\":4,\"code\":500,\"pathPrefix\":\"/api/v1/pods\","
                 "\"methods\":[\"GET\"]}",
                 NULL) == 200);
  uv_update_time(&h.loop);
  uint64_t t0 = uv_now(&h.loop);
  count_wait_t cw = {&st->watch_errors, errs + 5}; /* the drop, 4 failures */
  CHECK(run_until(&h, count_reached, &cw, 30000));
  create_pod("inf-a", "p-after", img1, NULL);
  hw = (hist_wait_t){&r, "inf-a/p-after", "A", r.n};
  CHECK(run_until(&h, has_history, &hw, 35000));
  uint64_t took = uv_now(&h.loop) - t0;
  CHECK(took >= 1500);
  CHECK(st->lists == lists + 1); /* resumed: no re-list */
  printf("recovered from 4 failures in %llu ms\n", (unsigned long long)took);

  /* 7. An ERROR 410 event forces a re-list whose pages fail (503, 503,
   * then 410 as for an expired continue token): retried until it
   * completes, then the watch resumes. */
  lists = st->lists;
  uint64_t list_errs = st->list_errors;
  label_pod("inf-a", "p-09", "3");
  CHECK(emu_post(&d, "/_emulator/fail",
                 "{\"count\":2,\"code\":503,\"pathPrefix\":\"/api/v1/pods\","
                 "\"methods\":[\"GET\"]}",
                 NULL) == 200);
  CHECK(emu_post(&d, "/_emulator/fail",
                 "{\"count\":1,\"code\":410,\"pathPrefix\":\"/api/v1/pods\","
                 "\"methods\":[\"GET\"]}",
                 NULL) == 200);
  CHECK(emu_post(&d, "/_emulator/watch-inject",
                 "{\"resource\":\"pods\",\"raw\":\"{\\\"type\\\":\\\"ERROR\\\","
                 "\\\"object\\\":{\\\"kind\\\":\\\"Status\\\",\\\"apiVersion\\\":"
                 "\\\"v1\\\",\\\"status\\\":\\\"Failure\\\",\\\"reason\\\":"
                 "\\\"Expired\\\",\\\"code\\\":410}}\\n\"}",
                 NULL) == 200);
  cw = (count_wait_t){&st->lists, lists + 1};
  CHECK(run_until(&h, count_reached, &cw, 30000));
  CHECK(st->list_errors == list_errs + 3);
  CHECK(wait_match(inf, &r, 30000));
  CHECK(r.n > 0 && strcmp(r.log[r.n - 1].key, "inf-a/p-09") == 0 &&
        r.log[r.n - 1].type == 'U');

  /* 8. A real expired continue token: page 1 arrives, the server is slow
   * on page 2 (latency), history moves and is compacted meanwhile; the
   * informer restarts the list and syncs once. */
  CHECK(emu_post(&d, "/_emulator/latency", "{\"ms\":1000}", NULL) == 200);
  recorder_t r3;
  recorder_init(&r3, intern, 1);
  thaw_informer_t *paged = new_informer(&r3, 5, 0, "inf-a", NULL);
  const thaw_informer_stats_t *s3 = thaw_informer_stats(paged);
  cw = (count_wait_t){&s3->list_pages, 1};
  CHECK(run_until(&h, count_reached, &cw, 10000));
  CHECK(emu_post(&d, "/_emulator/seed",
                 "{\"resource\":\"pods\",\"namespace\":\"inf-c\",\"count\":1,"
                 "\"namePrefix\":\"moved-\"}",
                 NULL) == 200);
  CHECK(emu_post(&d, "/_emulator/compact", NULL, NULL) == 200);
  CHECK(emu_post(&d, "/_emulator/latency", "{\"ms\":0}", NULL) == 200);
  CHECK(run_until(&h, is_synced, &r3, 30000));
  CHECK(s3->list_errors >= 1 && s3->lists == 1);
  cJSON *items = list_all(&d, &thaw_kube_pods, "inf-a", NULL);
  CHECK(compare_state(items, paged, &r3, intern, 1) == 0);
  CHECK((int)r3.adds == cJSON_GetArraySize(items) && r3.dup_adds == 0);
  cJSON_Delete(items);
  print_stats("paged", paged);
  thaw_informer_free(paged);

  /* 9. A malformed event and one over 3 MiB: the stream cannot be trusted
   * past them, so each leads to a re-list (and nothing is delivered twice). */
  const char *bad[] = {"{\"raw\":\"{\\\"type\\\":\\\"ADDED\\\",\\\"object\\\":{\\n\"}",
                       NULL};
  size_t big_len = (3u << 20) + 4096;
  char *big = malloc(big_len + 64);
  int off = snprintf(big, 64, "{\"raw\":\"{\\\"type\\\":\\\"ADDED\\\",\\\"x\\\":\\\"");
  memset(big + off, 'a', big_len - (size_t)off);
  snprintf(big + big_len, 64, "\\\"}\\n\"}");
  bad[1] = big;
  for (int i = 0; i < 2; i++) {
    lists = st->lists;
    usleep(1100000); /* a healthy watch: no backoff carried over */
    run_until(&h, NULL, NULL, 100);
    CHECK(emu_post(&d, "/_emulator/watch-inject", bad[i], NULL) == 200);
    cw = (count_wait_t){&st->lists, lists + 1};
    CHECK(run_until(&h, count_reached, &cw, 15000));
  }
  free(big);
  CHECK(wait_match(inf, &r, 10000));

  /* The end: the store is the server's list; the log never doubled up. */
  CHECK(wait_match(inf, &r, 10000));
  CHECK(r.dup_adds == 0 && r.orphan_updates == 0 && r.orphan_deletes == 0 &&
        r.stale_old == 0);
  print_stats("pods", inf);

  thaw_informer_free(inf);
  thaw_informer_free(NULL);
  recorder_free(&r);
  recorder_free(&r2);
  recorder_free(&r3);
  harness_close(&h);
  harness_close(&d);
  CHECK(thaw_intern_count(intern) == 0);
  thaw_intern_free(intern);
  if (failures) {
    fprintf(stderr, "test_informer: %d failure(s)\n", failures);
    return 1;
  }
  printf("test_informer: ok\n");
  return 0;
}
