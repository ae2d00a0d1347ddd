/* test_kube_conn.c - the kube client's connections to the API server, on
 * the protocol the emulator offers (THAW_EMU_HTTP: "2", the default, offers
 * h2 and http/1.1 by ALPN like kube-apiserver; "1.1" offers http/1.1 only):
 *   1. the protocol negotiated; five informers' watches and ordinary
 *      requests share ONE connection on HTTP/2 (one each on HTTP/1.1);
 *   2. GOAWAY in the middle of the watches: the informers re-watch on a new
 *      connection from their last resourceVersion, no event lost or doubled;
 *   3. RST_STREAM on the pod watches: same recovery on the same connection,
 *      and another watch on it is untouched; drop-watches resets streams;
 *   4. SETTINGS_MAX_CONCURRENT_STREAMS 3 with five informers: every watch
 *      still works (REFUSED_STREAM is retried, more connections opened).
 * The server's view comes from GET /_emulator/connections. Run under
 * test/with-emulator.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "informer_harness.h"
#include "podinfo.h"

#include "check.h"

#define NINF 5

static harness_t h; /* the informers' client */
static harness_t d; /* the driver: creates objects, calls the emulator */
static thaw_intern_t *intern;
static int h2;      /* the emulator offers h2 */
static const char *img[] = {"busybox:1.36", NULL};

typedef struct {
  char ns[32];
  recorder_t r;
  thaw_informer_t *inf;
} slot_t;

static slot_t slots[NINF];

/* ---- the emulator's connection table ---------------------------------- */

typedef struct {
  long id;
  int open, requests, watches, refused, goaway;
  char protocol[16];
} conn_t;

/* The client connections (User-Agent thaw/...) with an id above `after`;
 * returns how many (at most max). */
static int conns(long after, conn_t *out, int max) {
  char *b = NULL;
  CHECK(emu_get(&d, "/_emulator/connections", &b) == 200);
  cJSON *j = cJSON_Parse(b), *it;
  free(b);
  int n = 0;
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "items")) {
    const char *ua = cJSON_GetStringValue(cJSON_GetObjectItem(it, "userAgent"));
    long id = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "id"));
    if (id <= after || !ua || strncmp(ua, "thaw/", 5) != 0 || n >= max)
      continue;
    conn_t *c = &out[n++];
    c->id = id;
    c->open = cJSON_IsTrue(cJSON_GetObjectItem(it, "open"));
    c->goaway = cJSON_IsTrue(cJSON_GetObjectItem(it, "goaway"));
    c->requests = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "requests"));
    c->watches = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "watches"));
    c->refused = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "refused"));
    snprintf(c->protocol, sizeof c->protocol, "%s",
             cJSON_GetStringValue(cJSON_GetObjectItem(it, "protocol")));
  }
  cJSON_Delete(j);
  return n;
}

static long last_conn_id(void) {
  conn_t c[256];
  int n = conns(0, c, 256);
  return n ? c[n - 1].id : 0;
}

/* Open client connections after `after` with live watches, and their sum. */
static int watching(long after, conn_t *out, int max, int *total) {
  conn_t c[256];
  int n = conns(after, c, 256), k = 0;
  *total = 0;
  for (int i = 0; i < n; i++) {
    if (!c[i].open || c[i].watches == 0)
      continue;
    *total += c[i].watches;
    if (k < max)
      out[k++] = c[i];
  }
  return k;
}

typedef struct {
  uv_loop_t *loop;
  uint64_t next; /* asks the emulator every 100 ms */
  long after;
  int want;
} watch_wait_t;

static int watches_are(void *arg) {
  watch_wait_t *w = arg;
  if (uv_now(w->loop) < w->next)
    return 0;
  w->next = uv_now(w->loop) + 100;
  conn_t c[64];
  int total;
  watching(w->after, c, 64, &total);
  return total == w->want;
}

/* Runs h until the server sees `want` live watches of client connections
 * after `after`. */
static int wait_watches(harness_t *hh, long after, int want) {
  watch_wait_t w = {&hh->loop, 0, after, want};
  return run_until(hh, watches_are, &w, 20000);
}

/* ---- informers ---------------------------------------------------------- */

static void start_informer(harness_t *hh, slot_t *s) {
  recorder_init(&s->r, intern, 1);
  thaw_informer_config_t cfg = {
      .resource = &thaw_kube_pods,
      .namespace = s->ns,
      .project = thaw_podinfo_project,
      .free_rec = thaw_podinfo_free,
      .project_data = intern,
      .handlers = recorder_handlers(&s->r),
  };
  CHECK(thaw_informer_new(&hh->loop, hh->kube, &cfg, &s->inf) == 0);
  s->r.inf = s->inf;
  CHECK(thaw_informer_start(s->inf) == 0);
}

static void stop_informer(harness_t *hh, slot_t *s) {
  thaw_informer_free(s->inf);
  run_until(hh, NULL, NULL, 50);
  recorder_free(&s->r);
  s->inf = NULL;
}

static int all_synced(void *arg) {
  slot_t *s = arg;
  for (int i = 0; i < NINF; i++)
    if (!s[i].r.synced)
      return 0;
  return 1;
}

static void create_pod(const char *ns, const char *name) {
  cJSON *p = make_pod(ns, name, img);
  int rc = sync_create(&d, &thaw_kube_pods, ns, p, NULL);
  if (rc != 0)
    fprintf(stderr, "create %s/%s: %s\n", ns, name, thaw_err_name(rc));
  CHECK(rc == 0);
  cJSON_Delete(p);
}

typedef struct {
  slot_t *s;
  const char *prefix; /* every slot's "NS/PREFIX" pod ... */
  size_t from;        /* ... appears as exactly one add since log index */
} added_wait_t;

static int all_added(void *arg) {
  added_wait_t *a = arg;
  char key[96], got[64];
  for (int i = 0; i < NINF; i++) {
    snprintf(key, sizeof key, "%s/%s", a->s[i].ns, a->prefix);
    recorder_history(&a->s[i].r, key, a->from, got, sizeof got);
    if (strcmp(got, "A") != 0)
      return 0;
  }
  return 1;
}

/* Each informer equals the server's list, its recorder saw every change
 * once, and none re-listed since `lists`. */
static void check_exact(slot_t *s, const uint64_t *lists) {
  for (int i = 0; i < NINF; i++) {
    size_t bad = 1;
    for (int t = 0; t < 50 && bad; t++) {
      cJSON *items = list_all(&d, &thaw_kube_pods, s[i].ns, NULL);
      bad = compare_state(items, s[i].inf, &s[i].r, intern, t == 49);
      cJSON_Delete(items);
      if (bad)
        run_until(&h, NULL, NULL, 200);
    }
    CHECK(bad == 0);
    CHECK(s[i].r.dup_adds == 0 && s[i].r.orphan_updates == 0 &&
          s[i].r.orphan_deletes == 0);
    if (lists)
      CHECK(thaw_informer_stats(s[i].inf)->lists == lists[i]);
  }
}

static void snapshot_lists(uint64_t *lists, uint64_t *ends) {
  for (int i = 0; i < NINF; i++) {
    const thaw_informer_stats_t *st = thaw_informer_stats(slots[i].inf);
    lists[i] = st->lists;
    ends[i] = st->watch_ends + st->watch_errors;
  }
}

static void check_rewatched(const uint64_t *ends) {
  for (int i = 0; i < NINF; i++) {
    const thaw_informer_stats_t *st = thaw_informer_stats(slots[i].inf);
    CHECK(st->watch_ends + st->watch_errors > ends[i]);
  }
}

/* Creates NS/PREFIX in every slot's namespace. */
static void create_all(const char *prefix) {
  for (int i = 0; i < NINF; i++)
    create_pod(slots[i].ns, prefix);
}

/* Every name is created once: its whole history must be one add. */
static void wait_added(const char *prefix) {
  added_wait_t a = {slots, prefix, 0};
  CHECK(run_until(&h, all_added, &a, 20000));
}

/* ---- 1. protocol and multiplexing --------------------------------------- */

static long h_conn; /* the informers' connection (HTTP/2) */

static void test_multiplex(void) {
  long mark = last_conn_id();
  for (int i = 0; i < NINF; i++)
    start_informer(&h, &slots[i]);
  CHECK(run_until(&h, all_synced, slots, 20000));
  CHECK(wait_watches(&h, mark, NINF));
  /* ordinary requests on the same client while the watches stream */
  for (int i = 0; i < NINF; i++) {
    cJSON *p = make_pod(slots[i].ns, "via-h", img);
    CHECK(sync_create(&h, &thaw_kube_pods, slots[i].ns, p, NULL) == 0);
    cJSON_Delete(p);
    cJSON *items = list_all(&h, &thaw_kube_pods, slots[i].ns, NULL);
    CHECK(cJSON_GetArraySize(items) == 2); /* first, via-h */
    cJSON_Delete(items);
  }
  wait_added("via-h");

  conn_t c[64];
  int n = conns(mark, c, 64), reqs = 0, total;
  for (int i = 0; i < n; i++) {
    CHECK(strcmp(c[i].protocol, h2 ? "h2" : "http/1.1") == 0);
    reqs += c[i].requests;
  }
  /* 5 lists, 5 watches, 5 creates, 5 lists */
  CHECK(reqs >= 4 * NINF);
  if (h2) {
    CHECK(n == 1);
    CHECK(c[0].open && c[0].watches == NINF && c[0].requests >= 4 * NINF);
    h_conn = c[0].id;
  } else {
    int w = watching(mark, c, 64, &total);
    CHECK(w == NINF && total == NINF); /* one watch per connection */
  }
  printf("ok %s: %d watches and %d requests on %d connection(s)\n",
         h2 ? "h2" : "http/1.1", NINF, reqs, n);
}

/* ---- 2. GOAWAY ---------------------------------------------------------- */

static void test_goaway(void) {
  char *b = NULL;
  if (!h2) {
    CHECK(emu_post(&d, "/_emulator/goaway", NULL, &b) == 200);
    CHECK(b && strstr(b, "\"connections\":0"));
    free(b);
    printf("ok http/1.1: GOAWAY touches no connection\n");
    return;
  }
  uint64_t lists[NINF], ends[NINF];
  create_all("g-before");
  wait_added("g-before");
  snapshot_lists(lists, ends);
  long mark = last_conn_id();

  CHECK(emu_post(&d, "/_emulator/goaway", "{\"deadlineSeconds\":1}", &b) == 200);
  CHECK(b && !strstr(b, "\"connections\":0"));
  free(b);
  create_all("g-during"); /* before the old connection closes */
  run_until(&h, NULL, NULL, 1500);
  create_all("g-after");
  wait_added("g-during");
  wait_added("g-after");
  CHECK(wait_watches(&h, mark, NINF));
  check_exact(slots, lists); /* no re-list: resumed from the last rv */
  check_rewatched(ends);

  conn_t c[64];
  int n = conns(h_conn - 1, c, 64);
  CHECK(n >= 1 && c[0].id == h_conn && !c[0].open && c[0].goaway);
  int total, w = watching(mark, c, 64, &total);
  CHECK(w == 1 && total == NINF && c[0].id != h_conn);
  h_conn = c[0].id;
  printf("ok GOAWAY: re-watched on connection %ld, no event lost or doubled\n",
         h_conn);
}

/* ---- 3. RST_STREAM -------------------------------------------------------- */

typedef struct {
  int events, ended, err;
} raw_t;

static void raw_event(const char *type, const cJSON *obj, void *data) {
  (void)type;
  (void)obj;
  ((raw_t *)data)->events++;
}

static void raw_end(const thaw_kube_result_t *res, void *data) {
  raw_t *r = data;
  r->ended = 1;
  r->err = res->err;
}

static int raw_has(void *arg) { return ((raw_t *)arg)->events >= 1; }
static int raw_ended(void *arg) { return ((raw_t *)arg)->ended; }

static void create_secret(const char *ns, const char *name) {
  cJSON *s = cJSON_CreateObject();
  cJSON_AddStringToObject(s, "apiVersion", "v1");
  cJSON_AddStringToObject(s, "kind", "Secret");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(s, "metadata"), "name", name);
  CHECK(sync_create(&d, &thaw_kube_secrets, ns, s, NULL) == 0);
  cJSON_Delete(s);
}

static void test_reset(void) {
  uint64_t lists[NINF], ends[NINF];
  char *b = NULL;
  long mark = last_conn_id();
  /* another watch on the same client: a raw one on secrets */
  raw_t raw = {0};
  thaw_kube_opts_t o = {.namespace = slots[0].ns};
  CHECK(thaw_kube_watch(h.kube, &thaw_kube_secrets, &o, raw_event, raw_end,
                        &raw, NULL) == 0);
  CHECK(wait_watches(&h, h2 ? h_conn - 1 : 0, NINF + 1));
  snapshot_lists(lists, ends);

  if (h2) {
    CHECK(emu_post(&d, "/_emulator/reset-watches",
                   "{\"code\":\"INTERNAL_ERROR\",\"resource\":\"pods\"}", &b) == 200);
    CHECK(b && strstr(b, "\"reset\":5"));
  } else {
    CHECK(emu_post(&d, "/_emulator/reset-watches", "{}", &b) == 200);
    CHECK(b && strstr(b, "\"reset\":0")); /* no streams on HTTP/1.1 */
    free(b);
    b = NULL;
    CHECK(emu_post(&d, "/_emulator/drop-watches", NULL, &b) == 200);
  }
  free(b);
  create_all("r-during");
  wait_added("r-during");
  check_rewatched(ends);
  if (h2) {
    /* the same connection carries the re-watches and the secrets watch */
    CHECK(wait_watches(&h, h_conn - 1, NINF + 1));
    conn_t c[64];
    int total, w = watching(h_conn - 1, c, 64, &total);
    CHECK(w == 1 && c[0].id == h_conn && last_conn_id() >= mark);
    CHECK(!raw.ended);
    create_secret(slots[0].ns, "s-after-reset");
    CHECK(run_until(&h, raw_has, &raw, 10000));
    CHECK(!raw.ended && raw.events == 1);

    /* CANCEL on every watch, then drop-watches: RST too, not the
     * connection */
    snapshot_lists(lists, ends);
    CHECK(emu_post(&d, "/_emulator/reset-watches", "{\"code\":\"CANCEL\"}", NULL) == 200);
    CHECK(run_until(&h, raw_ended, &raw, 10000));
    CHECK(raw.err == THAW_ETRANSPORT);
    create_all("r-cancel");
    wait_added("r-cancel");
    CHECK(wait_watches(&h, h_conn - 1, NINF));
    CHECK(emu_post(&d, "/_emulator/drop-watches", NULL, NULL) == 200);
    create_all("r-drop");
    wait_added("r-drop");
    CHECK(wait_watches(&h, h_conn - 1, NINF));
    w = watching(h_conn - 1, c, 64, &total);
    CHECK(w == 1 && c[0].id == h_conn);
  } else {
    CHECK(run_until(&h, raw_ended, &raw, 10000));
    CHECK(raw.err == THAW_ETRANSPORT);
  }
  check_exact(slots, lists);
  printf("ok %s: watches recover from the last rv%s\n",
         h2 ? "RST_STREAM" : "drop-watches",
         h2 ? " on the same connection, the other stream untouched" : "");
}

/* ---- 4. the server's stream limit ---------------------------------------- */

static void test_stream_limit(void) {
  if (!h2) {
    printf("ok http/1.1: no stream limit\n");
    return;
  }
  CHECK(emu_post(&d, "/_emulator/http2", "{\"maxConcurrentStreams\":3}", NULL) == 200);
  long mark = last_conn_id();
  harness_t l;
  harness_init(&l);
  slot_t ls[NINF];
  memset(ls, 0, sizeof ls);
  for (int i = 0; i < NINF; i++) {
    memcpy(ls[i].ns, slots[i].ns, sizeof ls[i].ns);
    start_informer(&l, &ls[i]);
  }
  CHECK(run_until(&l, all_synced, ls, 30000));
  CHECK(wait_watches(&l, mark, NINF));
  for (int i = 0; i < NINF; i++)
    create_pod(ls[i].ns, "lim");
  added_wait_t a = {ls, "lim", 0};
  CHECK(run_until(&l, all_added, &a, 20000));

  conn_t c[64];
  int n = conns(mark, c, 64), refused = 0, total;
  for (int i = 0; i < n; i++) {
    CHECK(c[i].watches <= 3);
    refused += c[i].refused;
  }
  int w = watching(mark, c, 64, &total);
  CHECK(w >= 2 && total == NINF);
  printf("ok limit 3: %d watches on %d connections, %d streams refused\n",
         total, w, refused);
  for (int i = 0; i < NINF; i++)
    stop_informer(&l, &ls[i]);
  harness_close(&l);
  CHECK(emu_post(&d, "/_emulator/http2", "{\"maxConcurrentStreams\":100}", NULL) == 200);
}

int main(void) {
  const char *v = getenv("THAW_EMU_HTTP");
  h2 = !v || strcmp(v, "1.1") != 0;
  harness_init(&d);
  harness_init(&h);
  intern = thaw_intern_new();
  for (int i = 0; i < NINF; i++) {
    snprintf(slots[i].ns, sizeof slots[i].ns, "conn-%d", i);
    CHECK(ensure_namespace(&d, slots[i].ns) == 0);
    create_pod(slots[i].ns, "first");
  }
  test_multiplex();
  test_goaway();
  test_reset();
  test_stream_limit();
  for (int i = 0; i < NINF; i++)
    stop_informer(&h, &slots[i]);
  harness_close(&h);
  harness_close(&d);
  thaw_intern_free(intern);
  return 0;
}
