/* phase.c - the table of phase.h: rows are tried in order, the first whose
 * phase and event match, whose `need` facts all hold and whose `not` facts
 * all fail gives the action. */
#include "phase.h"

#include <stddef.h>

enum {
  TAG = 1 << 0,
  ROOM = 1 << 1,
  DELETING = 1 << 2,
  DUE = 1 << 3,
  RETAIN = 1 << 4,
  USED = 1 << 5,
  SETTLED = 1 << 6,
  IDLE = 1 << 7,
  OVER = 1 << 8,
  HAS_EXPIRY = 1 << 9,
  PASSED = 1 << 10,
};

typedef struct {
  enum thaw_ci_phase phase;
  enum thaw_phase_event ev;
  unsigned need, not;
  enum thaw_action act;
} row_t;

#define P THAW_EV_PROCESS
#define T THAW_EV_TICK

static const row_t phase_table[] = {
    /* phase             event need            not            action */
    {THAW_CI_PENDING, P, ROOM, 0, THAW_ACT_WARM},
    {THAW_CI_PENDING, P, 0, 0, THAW_ACT_WAIT_ROOM},
    {THAW_CI_WARMING, P, 0, 0, THAW_ACT_WARM},
    {THAW_CI_FAILED, P, 0, DUE, THAW_ACT_WAIT},
    {THAW_CI_FAILED, P, ROOM, 0, THAW_ACT_WARM},
    {THAW_CI_FAILED, P, 0, 0, THAW_ACT_WAIT_ROOM},
    {THAW_CI_READY, P, 0, TAG, THAW_ACT_NOTHING},
    {THAW_CI_READY, P, 0, DUE, THAW_ACT_WAIT},
    {THAW_CI_READY, P, 0, 0, THAW_ACT_REFRESH},
    {THAW_CI_EXPIRING, P, 0, 0, THAW_ACT_NOTHING},
    {THAW_CI_READY, T, SETTLED | IDLE, RETAIN | USED, THAW_ACT_EXPIRE},
    {THAW_CI_READY, T, SETTLED | OVER, RETAIN | USED, THAW_ACT_EVICT},
    {THAW_CI_FAILED, T, SETTLED | IDLE, RETAIN | USED, THAW_ACT_EXPIRE},
    {THAW_CI_EXPIRING, T, DELETING, 0, THAW_ACT_DELETE},
    {THAW_CI_EXPIRING, T, RETAIN, 0, THAW_ACT_KEEP},
    {THAW_CI_EXPIRING, T, USED, 0, THAW_ACT_KEEP},
    {THAW_CI_EXPIRING, T, 0, HAS_EXPIRY, THAW_ACT_EXPIRE},
    {THAW_CI_EXPIRING, T, PASSED, USED, THAW_ACT_DELETE},
};

static unsigned mask(const thaw_phase_facts_t *f) {
  return (f->tag ? TAG : 0) | (f->room ? ROOM : 0) |
         (f->deleting ? DELETING : 0) | (f->due ? DUE : 0) |
         (f->retain ? RETAIN : 0) | (f->used ? USED : 0) |
         (f->settled ? SETTLED : 0) | (f->idle_expired ? IDLE : 0) |
         (f->over_bound ? OVER : 0) | (f->has_expiry ? HAS_EXPIRY : 0) |
         (f->expiry_passed ? PASSED : 0);
}

enum thaw_action thaw_phase_decide(enum thaw_phase_event ev,
                                   const thaw_phase_facts_t *f) {
  /* No status yet reads as Pending (docs/design.md). */
  enum thaw_ci_phase phase =
      f->phase == THAW_CI_NONE ? THAW_CI_PENDING : f->phase;
  unsigned m = mask(f);
  for (size_t i = 0; i < sizeof phase_table / sizeof phase_table[0]; i++) {
    const row_t *r = &phase_table[i];
    if (r->phase == phase && r->ev == ev && (m & r->need) == r->need &&
        (m & r->not) == 0)
      return r->act;
  }
  return THAW_ACT_NOTHING;
}

const char *thaw_action_name(enum thaw_action a) {
  static const char *const names[] = {"nothing", "wait",   "wait-room",
                                      "warm",    "refresh", "expire",
                                      "evict",   "keep",   "delete"};
  return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}
