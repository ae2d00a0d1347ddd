/* pinhold.c - digests refreshed away, held while pods name them
 * (pinhold.h). */
#include "pinhold.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "store.h"

#define HOLD_NAME_MAX 1100

typedef struct {
  uint64_t seen;  /* loop ms a pod last named it (or the hold began) */
  char pinned[];  /* "<norm>@<digest>", as use tracking counts it */
} hold_t;

struct thaw_pinhold {
  uv_loop_t *loop;
  thaw_inventory_t *inv;
  const thaw_use_t *use;
  uint64_t min_ms;
  thaw_store_t *holds; /* "hold:<repo>@<digest>" -> hold_t */
  uv_timer_t tick;
};

/* Drops holds whose image no pod has named for min_ms; counts
 * are trusted only once the informers have synced. */
static void on_tick(uv_timer_t *t) {
  thaw_pinhold_t *h = t->data;
  uint64_t now = uv_now(h->loop);
  if (!thaw_use_ready(h->use))
    return;
  size_t n = thaw_store_count(h->holds), ndrop = 0, pos = 0;
  const char **drop = n ? malloc(n * sizeof *drop) : NULL;
  const char *key;
  void *rec;
  while (thaw_store_next(h->holds, &pos, &key, NULL, &rec)) {
    hold_t *o = rec;
    if (thaw_use_get(h->use, o->pinned).pods > 0)
      o->seen = now;
    else if (now - o->seen >= h->min_ms && drop)
      drop[ndrop++] = key;
  }
  for (size_t i = 0; i < ndrop; i++) {
    char name[HOLD_NAME_MAX];
    snprintf(name, sizeof name, "%s", drop[i]); /* the key goes with it */
    thaw_store_remove(h->holds, name, NULL, NULL);
    thaw_inventory_remove(h->inv, name);
    thaw_info("refreshed-away digest released: no pod names it",
              "hold", name);
  }
  free(drop);
}

int thaw_pinhold_new(uv_loop_t *loop, thaw_inventory_t *inv,
                     const thaw_use_t *use, uint64_t min_ms,
                     thaw_pinhold_t **out) {
  thaw_pinhold_t *h = calloc(1, sizeof *h);
  if (h == NULL || (h->holds = thaw_store_new(thaw_store_free_plain, NULL)) ==
                       NULL) {
    free(h);
    return THAW_ENOMEM;
  }
  h->loop = loop;
  h->inv = inv;
  h->use = use;
  h->min_ms = min_ms;
  uv_timer_init(loop, &h->tick);
  h->tick.data = h;
  uv_timer_start(&h->tick, on_tick, THAW_PINHOLD_TICK_MS,
                 THAW_PINHOLD_TICK_MS);
  uv_unref((uv_handle_t *)&h->tick);
  *out = h;
  return 0;
}

void thaw_pinhold_moving(thaw_pinhold_t *h, const char *name,
                         const char *norm, const char *repo,
                         const char *digest) {
  char old[72], hold[HOLD_NAME_MAX];
  if (h == NULL || !thaw_inventory_digest(h->inv, name, old))
    return;
  if (digest && strcmp(old, digest) == 0)
    return;
  if (strchr(norm, '@') != NULL) /* pinned by digest: never refreshed */
    return;
  int hn = snprintf(hold, sizeof hold, "hold:%s@%s", repo, old);
  size_t cap = strlen(norm) + 1 + sizeof old;
  hold_t *o = malloc(sizeof *o + cap);
  if (hn <= 0 || (size_t)hn >= sizeof hold || o == NULL) {
    free(o);
    return;
  }
  o->seen = uv_now(h->loop);
  snprintf(o->pinned, cap, "%s@%s", norm, old);
  if (thaw_store_put(h->holds, hold, 0, o, NULL) < 0) {
    free(o);
    return;
  }
  if (thaw_inventory_set(h->inv, hold, repo, old, 0) != 0) {
    thaw_store_remove(h->holds, hold, NULL, NULL);
    thaw_warn("refreshed-away digest not held", "image", norm);
    return;
  }
  thaw_info("refreshed-away digest held while pods name it", "image",
            o->pinned);
}

size_t thaw_pinhold_count(const thaw_pinhold_t *h) {
  return thaw_store_count(h->holds);
}

static void on_closed(uv_handle_t *t) {
  thaw_pinhold_t *h = t->data;
  thaw_store_free(h->holds);
  free(h);
}

void thaw_pinhold_free(thaw_pinhold_t *h) {
  if (h == NULL)
    return;
  uv_close((uv_handle_t *)&h->tick, on_closed);
}
