/* test_record.c - the CachedImage recorder (common/thaw/record.c), with the
 * webhook's index as its `exists`, against the API-server emulator:
 * de-duplication, results, retries, permanent failures, the queue bound,
 * and freeing with work in flight. Run under test/with-emulator.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "imgref.h"
#include "index.h"
#include "informer_harness.h"
#include "record.h"

static harness_t h;
static thaw_index_t *ix;

/* The webhook's `exists`: the index has a CachedImage for the reference. */
static int indexed(const char *normalized, void *data) {
  return thaw_index_image_state(normalized, NULL, data) != THAW_IMAGE_ABSENT;
}

/* POSTs of CachedImages, as the client saw them (the informers only list
 * and watch, so every "create" is the recorder's). */
static int creates;

static void on_kube(const char *verb, long status, void *data) {
  (void)status;
  (void)data;
  if (strcmp(verb, "create") == 0)
    creates++;
}

/* Results reported through the observer. */
typedef struct {
  int created, exists, retry, failed, dropped, other;
} results_t;

static void on_result(const char *result, const char *normalized,
                      void *data) {
  results_t *r = data;
  CHECK(normalized != NULL && *normalized != '\0');
  if (strcmp(result, "created") == 0)
    r->created++;
  else if (strcmp(result, "exists") == 0)
    r->exists++;
  else if (strcmp(result, "retry") == 0)
    r->retry++;
  else if (strcmp(result, "failed") == 0)
    r->failed++;
  else if (strcmp(result, "dropped") == 0)
    r->dropped++;
  else
    r->other++;
}

static int finished(results_t *r) {
  return r->created + r->exists + r->failed;
}

typedef struct {
  results_t *r;
  int want;
} want_t;

static int finished_reach(void *arg) {
  want_t *w = arg;
  return finished(w->r) >= w->want;
}

static void wait_finished(results_t *r, int want, long ms) {
  want_t w = {r, want};
  if (!run_until(&h, finished_reach, &w, ms)) {
    fprintf(stderr, "finished %d, want %d\n", finished(r), want);
    failures++;
  }
}

static int synced(void *arg) {
  (void)arg;
  return thaw_index_synced(ix);
}

static int idle_recorder(void *arg) {
  return thaw_recorder_pending(arg) == 0;
}

static void fail(const char *json) {
  CHECK(emu_post(&h, "/_emulator/fail", json, NULL) == 200);
}

/* The server's CachedImage for ref, or NULL (caller deletes). */
static cJSON *get_ci(const char *ref) {
  char name[THAW_CACHEDIMAGE_NAME_MAX + 1];
  CHECK(thaw_cachedimage_name(ref, name, sizeof(name)) == 0);
  cJSON *items = list_all(&h, &thaw_kube_cachedimages, NULL, NULL), *it;
  cJSON *found = NULL;
  cJSON_ArrayForEach(it, items) {
    const char *n = cJSON_GetStringValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(it, "metadata"), "name"));
    if (n != NULL && strcmp(n, name) == 0) {
      found = cJSON_Duplicate(it, 1);
      break;
    }
  }
  cJSON_Delete(items);
  return found;
}

/* 200 records of 20 distinct references, all in one loop turn and then
 * again while the first creates are in flight: exactly 20 POSTs. */
static void test_dedup(void) {
  thaw_recorder_t *r;
  results_t res = {0};
  CHECK(thaw_recorder_new(&h.loop, h.kube, indexed, ix, &r) == 0);
  thaw_recorder_set_observer(r, on_result, &res);
  thaw_index_set_observer(ix, thaw_recorder_index_observer, r);
  char ref[20][64];
  for (int i = 0; i < 20; i++)
    snprintf(ref[i], sizeof(ref[i]), "docker.io/dedup/img%02d:%d", i, i);
  int before = creates;
  for (int k = 0; k < 100; k++)
    thaw_recorder_record(r, ref[k % 20]);
  CHECK(thaw_recorder_pending(r) == 20);
  run_until(&h, NULL, NULL, 5); /* some creates start */
  for (int k = 0; k < 100; k++)
    thaw_recorder_record(r, ref[(k * 7) % 20]);
  wait_finished(&res, 20, 30000);
  CHECK(run_until(&h, idle_recorder, r, 10000));
  CHECK(res.created == 20 && res.exists == 0 && res.failed == 0 &&
        res.retry == 0 && res.dropped == 0 && res.other == 0);
  CHECK(creates - before == 20);
  /* named and labelled per DESIGN.md */
  for (int i = 0; i < 20; i++) {
    cJSON *ci = get_ci(ref[i]);
    CHECK(ci != NULL);
    if (ci == NULL)
      continue;
    cJSON *meta = cJSON_GetObjectItem(ci, "metadata");
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(meta, "name"));
    CHECK(name != NULL && strncmp(name, "docker-io-dedup-img", 19) == 0);
    CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(
                     cJSON_GetObjectItem(meta, "labels"),
                     "app.kubernetes.io/managed-by")),
                 "thaw") == 0);
    CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(
                     cJSON_GetObjectItem(ci, "spec"), "image")),
                 ref[i]) == 0);
    cJSON_Delete(ci);
  }
  /* once the index has them: no request at all, nothing reported */
  for (int i = 0; i < 20; i++) {
    while (thaw_index_image_state(ref[i], NULL, ix) == THAW_IMAGE_ABSENT)
      run_until(&h, NULL, NULL, 10);
  }
  before = creates;
  results_t copy = res;
  for (int k = 0; k < 200; k++)
    thaw_recorder_record(r, ref[k % 20]);
  CHECK(thaw_recorder_pending(r) == 0);
  run_until(&h, NULL, NULL, 300);
  CHECK(creates == before);
  CHECK(memcmp(&copy, &res, sizeof(res)) == 0);

  thaw_index_set_observer(ix, NULL, NULL);
  thaw_recorder_free(r);
}

static void delete_ci(const char *ref) {
  char name[THAW_CACHEDIMAGE_NAME_MAX + 1];
  CHECK(thaw_cachedimage_name(ref, name, sizeof(name)) == 0);
  CHECK(sync_delete(&h, &thaw_kube_cachedimages, NULL, name) == 0);
}

/* A deleted CachedImage is recorded again once the index has seen the
 * delete (the observer cleared the recent entry when it was created). */
static void test_rerecord_after_delete(void) {
  thaw_recorder_t *r;
  results_t res = {0};
  CHECK(thaw_recorder_new(&h.loop, h.kube, indexed, ix, &r) == 0);
  thaw_recorder_set_observer(r, on_result, &res);
  thaw_index_set_observer(ix, thaw_recorder_index_observer, r);
  const char *ref = "docker.io/again/img:1";
  thaw_recorder_record(r, ref);
  wait_finished(&res, 1, 30000);
  CHECK(res.created == 1);
  while (thaw_index_image_state(ref, NULL, ix) == THAW_IMAGE_ABSENT)
    run_until(&h, NULL, NULL, 10);
  delete_ci(ref);
  while (thaw_index_image_state(ref, NULL, ix) != THAW_IMAGE_ABSENT)
    run_until(&h, NULL, NULL, 10);
  thaw_recorder_record(r, ref);
  wait_finished(&res, 2, 30000);
  CHECK(res.created == 2);
  /* without the observer, the recent entry suppresses a re-record */
  thaw_index_set_observer(ix, NULL, NULL);
  ref = "docker.io/again/other:1";
  thaw_recorder_record(r, ref);
  wait_finished(&res, 3, 30000);
  CHECK(res.created == 3);
  while (thaw_index_image_state(ref, NULL, ix) == THAW_IMAGE_ABSENT)
    run_until(&h, NULL, NULL, 10);
  delete_ci(ref);
  while (thaw_index_image_state(ref, NULL, ix) != THAW_IMAGE_ABSENT)
    run_until(&h, NULL, NULL, 10);
  thaw_recorder_record(r, ref);
  CHECK(thaw_recorder_pending(r) == 0);
  thaw_recorder_forget(r, ref);
  thaw_recorder_record(r, ref);
  CHECK(thaw_recorder_pending(r) == 1);
  wait_finished(&res, 4, 30000);
  CHECK(res.created == 4);
  thaw_recorder_free(r);
}

/* An object that already exists (the index does not know it yet, or there
 * is no index) is "exists", a success. */
static void test_exists(void) {
  const char *ref = "docker.io/library/exists:1";
  char name[THAW_CACHEDIMAGE_NAME_MAX + 1];
  CHECK(thaw_cachedimage_name(ref, name, sizeof(name)) == 0);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", "thaw.dev/v1alpha1");
  cJSON_AddStringToObject(o, "kind", "CachedImage");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "metadata"), "name",
                          name);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "spec"), "image", ref);
  CHECK(sync_create(&h, &thaw_kube_cachedimages, NULL, o, NULL) == 0);
  cJSON_Delete(o);
  thaw_recorder_t *r;
  results_t res = {0};
  CHECK(thaw_recorder_new(&h.loop, h.kube, NULL, NULL, &r) == 0);
  thaw_recorder_set_observer(r, on_result, &res);
  int before = creates;
  thaw_recorder_record(r, ref);
  thaw_recorder_record(r, ref);
  wait_finished(&res, 1, 30000);
  CHECK(res.exists == 1 && res.created == 0 && res.failed == 0);
  CHECK(creates - before == 1);
  /* done recently: ignored */
  thaw_recorder_record(r, ref);
  CHECK(thaw_recorder_pending(r) == 0);
  thaw_recorder_free(r);
}

/* Injected 500s, then a 429 with Retry-After: retried, then created; the
 * 429's delay is honoured. */
static void test_retries(void) {
  thaw_recorder_t *r;
  results_t res = {0};
  CHECK(thaw_recorder_new(&h.loop, h.kube, indexed, ix, &r) == 0);
  thaw_recorder_set_observer(r, on_result, &res);
  fail("{\"count\":3,\"code\":500,\"pathPrefix\":\"/apis/thaw.dev\","
       "\"methods\":[\"POST\"]}");
  fail("{\"count\":1,\"code\":429,\"retryAfter\":2,"
       "\"pathPrefix\":\"/apis/thaw.dev\",\"methods\":[\"POST\"]}");
  fail("{\"count\":1,\"code\":503,\"pathPrefix\":\"/apis/thaw.dev\","
       "\"methods\":[\"POST\"]}");
  int before = creates;
  uv_update_time(&h.loop);
  uint64_t t0 = uv_now(&h.loop);
  thaw_recorder_record(r, "docker.io/retry/img:1");
  wait_finished(&res, 1, 60000);
  uint64_t took = uv_now(&h.loop) - t0;
  CHECK(res.retry == 5 && res.created == 1 && res.failed == 0);
  CHECK(creates - before == 6);
  /* at least the backoff of 200+400+800 ms and the 429's 2 s */
  CHECK(took >= 200 + 400 + 800 + 2000);
  CHECK(took < 20000);
  cJSON *ci = get_ci("docker.io/retry/img:1");
  CHECK(ci != NULL);
  cJSON_Delete(ci);
  thaw_recorder_free(r);
}

/* 422 (here: spec.image over the CRD's maxLength) and 400 are permanent:
 * one POST, "failed", and no retry on later admissions. */
static void test_permanent(void) {
  thaw_recorder_t *r;
  results_t res = {0};
  CHECK(thaw_recorder_new(&h.loop, h.kube, NULL, NULL, &r) == 0);
  thaw_recorder_set_observer(r, on_result, &res);
  char longref[700];
  int n = snprintf(longref, sizeof(longref), "docker.io/library/");
  memset(longref + n, 'a', 600);
  longref[n + 600] = '\0';
  int before = creates;
  thaw_recorder_record(r, longref);
  wait_finished(&res, 1, 30000);
  CHECK(res.failed == 1 && res.retry == 0 && res.created == 0);
  CHECK(creates - before == 1);
  for (int i = 0; i < 50; i++)
    thaw_recorder_record(r, longref); /* an admission storm */
  run_until(&h, NULL, NULL, 500);
  CHECK(creates - before == 1);
  CHECK(res.failed == 1);

  fail("{\"count\":1,\"code\":400,\"pathPrefix\":\"/apis/thaw.dev\","
       "\"methods\":[\"POST\"]}");
  thaw_recorder_record(r, "docker.io/perm/bad:1");
  wait_finished(&res, 2, 30000);
  CHECK(res.failed == 2 && res.retry == 0 && res.created == 0);
  CHECK(creates - before == 2);
  cJSON *ci = get_ci("docker.io/perm/bad:1");
  CHECK(ci == NULL);
  cJSON_Delete(ci);
  thaw_recorder_free(r);
}

/* 403 (RBAC not granted yet) is retried with the backoff, not given up:
 * once the permission is there, the pending reference is created. */
static void test_forbidden_retried(void) {
  thaw_recorder_t *r;
  results_t res = {0};
  thaw_recorder_opts_t o = {.backoff_base_ms = 5, .backoff_max_ms = 40};
  CHECK(thaw_recorder_new_opts(&h.loop, h.kube, NULL, NULL, &o, &r) == 0);
  thaw_recorder_set_observer(r, on_result, &res);
  fail("{\"count\":3,\"code\":403,\"pathPrefix\":\"/apis/thaw.dev\","
       "\"methods\":[\"POST\"]}");
  int before = creates;
  thaw_recorder_record(r, "docker.io/perm/forbidden:1");
  wait_finished(&res, 1, 30000);
  CHECK(res.retry == 3 && res.created == 1 && res.failed == 0);
  CHECK(creates - before == 4);
  cJSON *ci = get_ci("docker.io/perm/forbidden:1");
  CHECK(ci != NULL);
  cJSON_Delete(ci);
  thaw_recorder_free(r);
}

/* Transient failures forever: max_attempts POSTs, then "failed". */
static void test_retry_limit(void) {
  thaw_recorder_t *r;
  results_t res = {0};
  thaw_recorder_opts_t o = {.backoff_base_ms = 5, .backoff_max_ms = 40};
  CHECK(thaw_recorder_new_opts(&h.loop, h.kube, NULL, NULL, &o, &r) == 0);
  thaw_recorder_set_observer(r, on_result, &res);
  fail("{\"count\":100,\"code\":500,\"pathPrefix\":\"/apis/thaw.dev\","
       "\"methods\":[\"POST\"]}");
  int before = creates;
  thaw_recorder_record(r, "docker.io/limit/img:1");
  wait_finished(&res, 1, 30000);
  CHECK(res.failed == 1 && res.retry == 9 && res.created == 0);
  CHECK(creates - before == 10);
  run_until(&h, NULL, NULL, 300);
  CHECK(creates - before == 10);
  fail("{\"count\":0}");
  thaw_recorder_free(r);
}

/* At most 10,000 references pending; beyond, "dropped". Then the recorder
 * is freed with creates in flight and the rest queued. */
static void test_bound_and_free_in_flight(void) {
  thaw_recorder_t *r;
  results_t res = {0};
  CHECK(thaw_recorder_new(&h.loop, h.kube, NULL, NULL, &r) == 0);
  thaw_recorder_set_observer(r, on_result, &res);
  CHECK(emu_post(&h, "/_emulator/latency", "{\"ms\":300}", NULL) == 200);
  char ref[64];
  for (int i = 0; i < 10003; i++) {
    snprintf(ref, sizeof(ref), "docker.io/bound/img-%05d:1", i);
    thaw_recorder_record(r, ref);
  }
  CHECK(thaw_recorder_pending(r) == 10000);
  CHECK(res.dropped == 3);
  thaw_recorder_record(r, "docker.io/bound/img-00000:1"); /* queued: not a drop */
  CHECK(res.dropped == 3);
  run_until(&h, NULL, NULL, 100); /* creates are now in flight */
  thaw_recorder_free(r);
  thaw_recorder_free(NULL);
  run_until(&h, NULL, NULL, 800); /* their answers arrive after the free */
  CHECK(emu_post(&h, "/_emulator/latency", "{\"ms\":0}", NULL) == 200);

  /* freed again with creates in flight, this time before the client */
  CHECK(emu_post(&h, "/_emulator/latency", "{\"ms\":300}", NULL) == 200);
  CHECK(thaw_recorder_new(&h.loop, h.kube, NULL, NULL, &r) == 0);
  for (int i = 0; i < 10; i++) {
    snprintf(ref, sizeof(ref), "docker.io/inflight/img-%d:1", i);
    thaw_recorder_record(r, ref);
  }
  run_until(&h, NULL, NULL, 50);
  thaw_recorder_free(r);
  CHECK(emu_post(&h, "/_emulator/latency", "{\"ms\":0}", NULL) == 200);
}

int main(void) {
  harness_init(&h);
  thaw_kube_set_observer(h.kube, on_kube, NULL);
  CHECK(thaw_index_new(&h.loop, h.kube, &ix) == 0);
  CHECK(thaw_index_start(ix) == 0);
  CHECK(run_until(&h, synced, NULL, 20000));
  test_dedup();
  test_rerecord_after_delete();
  test_exists();
  test_retries();
  test_permanent();
  test_forbidden_retried();
  test_retry_limit();
  test_bound_and_free_in_flight();
  thaw_index_free(ix);
  harness_close(&h); /* cancels what is still in flight */
  if (failures)
    fprintf(stderr, "%d check(s) failed\n", failures);
  return failures != 0;
}
