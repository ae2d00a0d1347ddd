/* leader.c - Lease-based leader election (see leader.h), one request at a
 * time: GET, then CREATE or PUT; the next attempt is scheduled when the
 * answer arrives. */
#include "leader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "denied.h"
#include "error.h"
#include "log.h"

enum { REQ_GET, REQ_CREATE, REQ_UPDATE, REQ_RELEASE, REQ_RELEASE_GET };

/* One request; l is NULL once abandoned, so a late answer only frees it. */
typedef struct {
  thaw_leader_t *l;
  uint64_t sent;
  int kind;
} req_t;

struct thaw_leader {
  uv_loop_t *loop;
  thaw_kube_t *kube;
  char *ns, *name, *id;
  thaw_leader_timings_t t;
  int lease_s;
  thaw_leader_cb on_started, on_stopped, on_released;
  void *data, *released_data;
  uv_timer_t tick, deadline;
  req_t *inflight;
  int started, leader, released, closing, nopen, release_tries;
  uint64_t renewed;     /* uv_now when our last successful write was sent */
  uint64_t observed_at; /* uv_now when the record last changed */
  char observed[512];   /* the record as last seen, to detect changes */
  cJSON *lease;         /* the Lease as we last wrote it, for release */
  thaw_metric_child_t *gauge;
  /* 403s per verb (get, create, update): logged once each, retried every
   * retry period as any failure (the election's own pace, as client-go) */
  thaw_denied_t denied[3];
  uint32_t rng; /* jitter; seeded per elector so replicas do not agree */
};

static void on_result(const thaw_kube_result_t *res, void *data);

static void micro_now(char out[40]) {
  struct timespec ts;
  struct tm tm;
  char b[24];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, 40, "%s.%06uZ", b, (unsigned)(ts.tv_nsec / 1000) % 1000000u);
}

int thaw_leader_default_identity(char *buf, size_t len) {
  char host[256] = "thaw";
  unsigned char r[3] = {0};
  if (gethostname(host, sizeof host - 1) != 0 || !host[0])
    snprintf(host, sizeof host, "thaw");
  if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) != 0) {
    unsigned v = (unsigned)rand() ^ (unsigned)getpid();
    memcpy(r, &v, sizeof r);
  }
  int n = snprintf(buf, len, "%s_%02x%02x%02x", host, r[0], r[1], r[2]);
  return n < 0 || (size_t)n >= len ? THAW_EINVAL : 0;
}

static const char *spec_str(const cJSON *spec, const char *k) {
  const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, k));
  return s ? s : "";
}

static long spec_num(const cJSON *spec, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, k);
  return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

/* Replaces spec[k]; returns 0 or THAW_ENOMEM (v is consumed either way). */
static int put(cJSON *spec, const char *k, cJSON *v) {
  if (!v)
    return THAW_ENOMEM;
  cJSON_DeleteItemFromObjectCaseSensitive(spec, k);
  cJSON_AddItemToObject(spec, k, v);
  return 0;
}

/* Sets the record's fields on obj's spec (made when absent). */
static int set_record(cJSON *obj, const char *holder, long dur,
                      const char *acquire, const char *renew, long trans) {
  cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
  if (!cJSON_IsObject(spec)) {
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "spec");
    if (!(spec = cJSON_AddObjectToObject(obj, "spec")))
      return THAW_ENOMEM;
  }
  if (put(spec, "holderIdentity", cJSON_CreateString(holder)) ||
      put(spec, "leaseDurationSeconds", cJSON_CreateNumber((double)dur)) ||
      put(spec, "acquireTime", cJSON_CreateString(acquire)) ||
      put(spec, "renewTime", cJSON_CreateString(renew)) ||
      put(spec, "leaseTransitions", cJSON_CreateNumber((double)trans)))
    return THAW_ENOMEM;
  return 0;
}

/* Notes when the record changed: expiry counts from then, on our clock. */
static void observe(thaw_leader_t *l, const cJSON *obj) {
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
  char rec[sizeof l->observed];
  snprintf(rec, sizeof rec, "%s|%ld|%s|%s|%ld", spec_str(spec, "holderIdentity"),
           spec_num(spec, "leaseDurationSeconds"), spec_str(spec, "acquireTime"),
           spec_str(spec, "renewTime"), spec_num(spec, "leaseTransitions"));
  if (strcmp(rec, l->observed) != 0) {
    memcpy(l->observed, rec, sizeof rec);
    l->observed_at = uv_now(l->loop);
  }
}

static void abandon(thaw_leader_t *l) {
  if (l->inflight) {
    l->inflight->l = NULL;
    l->inflight = NULL;
  }
}

static int lease_send(thaw_leader_t *l, int kind, const cJSON *obj) {
  req_t *q = calloc(1, sizeof *q);
  if (!q)
    return THAW_ENOMEM;
  q->l = l;
  q->sent = uv_now(l->loop);
  q->kind = kind;
  thaw_kube_opts_t o = {.namespace = l->ns};
  int rc;
  if (kind == REQ_CREATE) {
    rc = thaw_kube_create(l->kube, &thaw_kube_leases, &o, obj, on_result, q);
  } else {
    o.name = l->name;
    rc = kind == REQ_GET || kind == REQ_RELEASE_GET
             ? thaw_kube_get(l->kube, &thaw_kube_leases, &o, on_result, q)
             : thaw_kube_update(l->kube, &thaw_kube_leases, &o, obj, on_result, q);
  }
  if (rc) {
    free(q);
    return rc;
  }
  l->inflight = q;
  return 0;
}

static void on_tick(uv_timer_t *t);

/* Followers add up to 20% jitter so candidates do not move in lockstep. */
static void schedule(thaw_leader_t *l, int now) {
  if (l->closing || l->released)
    return;
  uint64_t d = l->t.retry_ms;
  if (!l->leader) {
    l->rng ^= l->rng << 13; /* xorshift32 */
    l->rng ^= l->rng >> 17;
    l->rng ^= l->rng << 5;
    d += l->rng % (d / 5 + 1);
  }
  uv_timer_start(&l->tick, on_tick, now ? 0 : d, 0);
}

/* Changes state, then calls the callback last: it may free or release l. */
static void set_leading(thaw_leader_t *l, int on, const char *why) {
  if (l->leader == on)
    return;
  l->leader = on;
  thaw_metric_child_set(l->gauge, on);
  thaw_log(on ? THAW_LOG_INFO : THAW_LOG_WARN,
           on ? "leader: started leading" : "leader: stopped leading", "lease",
           l->name, "ns", l->ns, "identity", l->id, "reason", why, (char *)NULL);
  if (!on)
    uv_timer_stop(&l->deadline);
  thaw_leader_cb cb = on ? l->on_started : l->on_stopped;
  if (cb)
    cb(l, l->data);
}

static void on_deadline(uv_timer_t *t) {
  thaw_leader_t *l = t->data;
  if (!l->leader || uv_now(l->loop) < l->renewed + l->t.renew_deadline_ms)
    return;
  /* A renewal still hanging is given up: we are no longer leader anyway. */
  if (l->inflight) {
    abandon(l);
    schedule(l, 0);
  }
  set_leading(l, 0, "renew deadline passed");
}

static void failed(thaw_leader_t *l, int lost, const char *why) {
  schedule(l, 0);
  if (l->leader && (lost || uv_now(l->loop) >= l->renewed + l->t.renew_deadline_ms))
    set_leading(l, 0, why);
}

static void succeeded(thaw_leader_t *l, cJSON *body, uint64_t sent) {
  cJSON_Delete(l->lease);
  l->lease = body;
  observe(l, body);
  l->renewed = sent;
  uint64_t now = uv_now(l->loop), end = sent + l->t.renew_deadline_ms;
  uv_timer_start(&l->deadline, on_deadline, end > now ? end - now : 0, 0);
  schedule(l, 0);
  if (uv_now(l->loop) < end)
    set_leading(l, 1, "acquired");
}

/* Decides from a fresh GET: keep following, or write ourselves in. */
static void try_take(thaw_leader_t *l, const cJSON *lease) {
  observe(l, lease);
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(lease, "spec");
  const char *holder = spec_str(spec, "holderIdentity");
  int ours = strcmp(holder, l->id) == 0;
  uint64_t dur = (uint64_t)spec_num(spec, "leaseDurationSeconds") * 1000;
  if (*holder && !ours && uv_now(l->loop) < l->observed_at + dur) {
    failed(l, 1, "held by another");
    return;
  }
  char now[40];
  micro_now(now);
  long trans = spec_num(spec, "leaseTransitions") + (ours ? 0 : 1);
  char acquire[40];
  snprintf(acquire, sizeof acquire, "%s", ours ? spec_str(spec, "acquireTime") : now);
  if (!*acquire)
    snprintf(acquire, sizeof acquire, "%s", now);
  cJSON *obj = cJSON_Duplicate(lease, 1);
  if (!obj || set_record(obj, l->id, l->lease_s, acquire, now, trans) ||
      lease_send(l, REQ_UPDATE, obj) != 0)
    failed(l, 0, "update not sent");
  cJSON_Delete(obj);
}

static void lease_create(thaw_leader_t *l) {
  char now[40];
  micro_now(now);
  cJSON *obj = cJSON_CreateObject();
  cJSON *md = obj ? cJSON_AddObjectToObject(obj, "metadata") : NULL;
  if (!md || !cJSON_AddStringToObject(obj, "apiVersion", "coordination.k8s.io/v1") ||
      !cJSON_AddStringToObject(obj, "kind", "Lease") ||
      !cJSON_AddStringToObject(md, "name", l->name) ||
      !cJSON_AddStringToObject(md, "namespace", l->ns) ||
      set_record(obj, l->id, l->lease_s, now, now, 0) ||
      lease_send(l, REQ_CREATE, obj) != 0)
    failed(l, 0, "create not sent");
  cJSON_Delete(obj);
}

/* Writes "no holder" over the Lease if it still names us (ReleaseOnCancel). */
static int send_release(thaw_leader_t *l, cJSON *lease) {
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(lease, "spec");
  if (strcmp(spec_str(spec, "holderIdentity"), l->id) != 0)
    return THAW_ENOENT;
  char now[40];
  micro_now(now);
  int rc = set_record(lease, "", 1, now, now, spec_num(spec, "leaseTransitions"));
  return rc ? rc : lease_send(l, REQ_RELEASE, lease);
}

/* A renewal abandoned by release may have landed first, so a 409 is
 * retried (a few times) from a fresh GET. */
static void released_answer(thaw_leader_t *l, int kind,
                            const thaw_kube_result_t *res) {
  int again = 0;
  thaw_debug("leader: release answer", "kind", kind == REQ_RELEASE ? "put" : "get",
             "error", thaw_err_name(res->err), "message", res->message);
  if (kind == REQ_RELEASE && res->err == THAW_ECONFLICT && l->release_tries++ < 3)
    again = lease_send(l, REQ_RELEASE_GET, NULL) == 0;
  else if (kind == REQ_RELEASE_GET && !res->err && res->body) {
    cJSON_Delete(l->lease);
    l->lease = thaw_kube_result_take_body(res);
    again = l->lease && send_release(l, l->lease) == 0;
  }
  else if (res->err)
    thaw_warn("leader: release failed", "lease", l->name, "error", res->message);
  if (!again && l->on_released)
    l->on_released(l, l->released_data);
}

static void on_result(const thaw_kube_result_t *res, void *data) {
  req_t *q = data;
  thaw_leader_t *l = q->l;
  int kind = q->kind;
  uint64_t sent = q->sent;
  free(q);
  if (!l)
    return;
  l->inflight = NULL;
  if (kind == REQ_RELEASE || kind == REQ_RELEASE_GET) {
    released_answer(l, kind, res);
    return;
  }
  const char *verb = kind == REQ_GET ? "get" : kind == REQ_CREATE ? "create"
                                                                  : "update";
  int v = kind == REQ_GET ? 0 : kind == REQ_CREATE ? 1 : 2;
  thaw_denied_note(&l->denied[v], res->err, "leader-election", verb, "leases",
                   res->message);
  if (res->err) {
    thaw_debug("leader: lease request failed", "lease", l->name, "error",
               thaw_err_name(res->err), "message", res->message);
    if (kind == REQ_GET && res->err == THAW_ENOTFOUND)
      lease_create(l);
    else /* 409 from create or update: someone else wrote first */
      failed(l, 0, thaw_err_name(res->err));
    return;
  }
  if (kind == REQ_GET) {
    try_take(l, res->body);
    return;
  }
  cJSON *body = thaw_kube_result_take_body(res);
  if (!body) {
    failed(l, 0, "no body");
    return;
  }
  succeeded(l, body, sent);
}

static void on_tick(uv_timer_t *t) {
  thaw_leader_t *l = t->data;
  if (l->inflight || l->closing || l->released)
    return;
  if (lease_send(l, REQ_GET, NULL) != 0)
    failed(l, 0, "get not sent");
}

int thaw_leader_new(uv_loop_t *loop, thaw_kube_t *kube,
                    const thaw_leader_opts_t *o, thaw_leader_t **out) {
  if (!loop || !kube || !o || !o->namespace || !*o->namespace || !out)
    return THAW_EINVAL;
  thaw_leader_timings_t t = o->timings;
  if (!t.lease_ms)
    t.lease_ms = 15000;
  if (!t.renew_deadline_ms)
    t.renew_deadline_ms = 10000;
  if (!t.retry_ms)
    t.retry_ms = 2000;
  if (!(t.lease_ms > t.renew_deadline_ms && t.renew_deadline_ms > t.retry_ms))
    return THAW_EINVAL;
  char idbuf[300];
  const char *id = o->identity;
  if (!id) {
    if (thaw_leader_default_identity(idbuf, sizeof idbuf))
      return THAW_EINVAL;
    id = idbuf;
  }
  thaw_leader_t *l = calloc(1, sizeof *l);
  if (!l)
    return THAW_ENOMEM;
  l->ns = strdup(o->namespace);
  l->name = strdup(o->name ? o->name : "thaw-controller");
  l->id = strdup(id);
  if (!l->ns || !l->name || !l->id) {
    free(l->ns);
    free(l->name);
    free(l->id);
    free(l);
    return THAW_ENOMEM;
  }
  l->loop = loop;
  l->kube = kube;
  l->t = t;
  l->lease_s = (int)((t.lease_ms + 999) / 1000);
  l->on_started = o->on_started_leading;
  l->on_stopped = o->on_stopped_leading;
  l->data = o->data;
  if (o->metrics) {
    thaw_metric_t *g = thaw_metrics_gauge(o->metrics, "thaw_leader",
        "1 while this replica holds the leader Lease, else 0", 0, NULL);
    l->gauge = thaw_metric_child(g, NULL);
    thaw_metric_child_set(l->gauge, 0);
  }
  uv_timer_init(loop, &l->tick);
  uv_timer_init(loop, &l->deadline);
  l->tick.data = l->deadline.data = l;
  l->nopen = 2;
  if (uv_random(NULL, NULL, &l->rng, sizeof l->rng, 0, NULL) != 0 || !l->rng)
    l->rng = (uint32_t)uv_hrtime() | 1u;
  *out = l;
  return 0;
}

int thaw_leader_start(thaw_leader_t *l) {
  if (!l || l->started || l->released || l->closing)
    return THAW_EINVAL;
  l->started = 1;
  schedule(l, 1);
  return 0;
}

int thaw_leader_is_leader(const thaw_leader_t *l) { return l && l->leader; }

const char *thaw_leader_identity(const thaw_leader_t *l) { return l->id; }

static void on_nothing_released(uv_timer_t *t) {
  thaw_leader_t *l = t->data;
  if (l->on_released)
    l->on_released(l, l->released_data);
}

void thaw_leader_release(thaw_leader_t *l, thaw_leader_cb done, void *data) {
  if (!l || l->closing || l->released)
    return;
  l->released = 1;
  l->on_released = done;
  l->released_data = data;
  uv_timer_stop(&l->tick);
  uv_timer_stop(&l->deadline);
  abandon(l);
  int sent = l->leader && l->lease && send_release(l, l->lease) == 0;
  if (!sent)
    uv_timer_start(&l->tick, on_nothing_released, 0, 0);
  set_leading(l, 0, "released");
}

static void on_close(uv_handle_t *h) {
  thaw_leader_t *l = h->data;
  if (--l->nopen == 0)
    free(l);
}

void thaw_leader_free(thaw_leader_t *l) {
  if (!l || l->closing)
    return;
  l->closing = 1;
  abandon(l);
  if (l->leader)
    thaw_metric_child_set(l->gauge, 0);
  l->leader = 0;
  cJSON_Delete(l->lease);
  l->lease = NULL;
  free(l->ns);
  free(l->name);
  free(l->id);
  l->ns = l->name = l->id = NULL;
  uv_close((uv_handle_t *)&l->tick, on_close);
  uv_close((uv_handle_t *)&l->deadline, on_close);
}
