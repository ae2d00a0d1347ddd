/* test_phase.c - the CachedImage state machine (controller/phase.c): every
 * row of the table in phase.h, and the facts that must stop an expiry. */
#include "check.h"
#include "phase.h"

#define PROC THAW_EV_PROCESS
#define TICK THAW_EV_TICK

static enum thaw_action act(enum thaw_phase_event ev, thaw_phase_facts_t f) {
  return thaw_phase_decide(ev, &f);
}

static void test_process(void) {
  /* No status reads as Pending. */
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_NONE, .room = 1}) ==
        THAW_ACT_WARM);
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_PENDING, .room = 1}) ==
        THAW_ACT_WARM);
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_PENDING}) ==
        THAW_ACT_WAIT_ROOM);
  /* A warm in progress resumes even when the cache filled meanwhile. */
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_WARMING}) ==
        THAW_ACT_WARM);
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_FAILED, .room = 1}) ==
        THAW_ACT_WAIT);
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_FAILED, .room = 1,
                                       .due = 1}) == THAW_ACT_WARM);
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_FAILED, .due = 1}) ==
        THAW_ACT_WAIT_ROOM);
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_READY, .due = 1}) ==
        THAW_ACT_NOTHING); /* a digest never changes */
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_READY, .tag = 1}) ==
        THAW_ACT_WAIT);
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_READY, .tag = 1,
                                       .due = 1}) == THAW_ACT_REFRESH);
  /* A refresh needs no room: it replaces what is there. */
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_READY, .tag = 1,
                                       .due = 1, .room = 0}) ==
        THAW_ACT_REFRESH);
  CHECK(act(PROC, (thaw_phase_facts_t){.phase = THAW_CI_EXPIRING, .tag = 1,
                                       .due = 1, .room = 1}) ==
        THAW_ACT_NOTHING);
}

static void test_tick_expiry(void) {
  thaw_phase_facts_t idle = {.phase = THAW_CI_READY, .settled = 1,
                             .idle_expired = 1};
  CHECK(act(TICK, idle) == THAW_ACT_EXPIRE);
  thaw_phase_facts_t f = idle;
  f.retain = 1;
  CHECK(act(TICK, f) == THAW_ACT_NOTHING);
  f = idle;
  f.used = 1;
  CHECK(act(TICK, f) == THAW_ACT_NOTHING);
  f = idle;
  f.settled = 0; /* a use write pending: lastUsedAt may be stale */
  CHECK(act(TICK, f) == THAW_ACT_NOTHING);
  f = idle;
  f.idle_expired = 0;
  CHECK(act(TICK, f) == THAW_ACT_NOTHING);
  f.over_bound = 1;
  CHECK(act(TICK, f) == THAW_ACT_EVICT);
  f.used = 1;
  CHECK(act(TICK, f) == THAW_ACT_NOTHING); /* in use: never evicted */
  f = idle;
  f.phase = THAW_CI_FAILED;
  CHECK(act(TICK, f) == THAW_ACT_EXPIRE);
  f.over_bound = 1;
  f.idle_expired = 0;
  CHECK(act(TICK, f) == THAW_ACT_NOTHING); /* nothing cached to evict */
  for (int p = THAW_CI_NONE; p <= THAW_CI_WARMING; p++) {
    f = idle;
    f.phase = (enum thaw_ci_phase)p;
    f.over_bound = 1;
    CHECK(act(TICK, f) == THAW_ACT_NOTHING);
  }
}

static void test_tick_expiring(void) {
  thaw_phase_facts_t f = {.phase = THAW_CI_EXPIRING, .has_expiry = 1};
  CHECK(act(TICK, f) == THAW_ACT_NOTHING); /* the grace runs */
  f.expiry_passed = 1;
  CHECK(act(TICK, f) == THAW_ACT_DELETE);
  f.used = 1;
  CHECK(act(TICK, f) == THAW_ACT_KEEP);
  f.expiry_passed = 0;
  CHECK(act(TICK, f) == THAW_ACT_KEEP);
  f.deleting = 1; /* manifests going: finish, the sweep records it again */
  CHECK(act(TICK, f) == THAW_ACT_DELETE);
  f = (thaw_phase_facts_t){.phase = THAW_CI_EXPIRING};
  CHECK(act(TICK, f) == THAW_ACT_EXPIRE); /* no expiresAt: set it */
  f.retain = 1; /* retained meanwhile: kept */
  CHECK(act(TICK, f) == THAW_ACT_KEEP);
  f.deleting = 1;
  CHECK(act(TICK, f) == THAW_ACT_DELETE);
  CHECK(thaw_action_name(THAW_ACT_DELETE)[0] == 'd');
}

int main(void) {
  test_process();
  test_tick_expiry();
  test_tick_expiring();
  return 0;
}
