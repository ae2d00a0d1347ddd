/* denied.h - a permission the API server refuses (403), reported once.
 *
 * A missing RBAC grant fails every attempt the same way; logging each one
 * would flood the log while the caller backs off. So the first 403 of one
 * kind of request (`verb` on `resource`) is one error line naming both and
 * carrying the server's Status message; repeats go to debug; the first
 * success after it logs "permission granted again". Callers keep one
 * thaw_denied_t per kind of request, zero-initialised. */
#ifndef THAW_DENIED_H
#define THAW_DENIED_H

#include <stdint.h>

typedef struct {
  int denied;        /* the last answer was a 403 */
  uint64_t failures; /* 403s since the last success */
} thaw_denied_t;

/* Notes the outcome `err` (0 or a THAW_E* code) of one request by `who` (a
 * component, for the log). Returns 1 when err is THAW_EFORBIDDEN, so the
 * caller skips its own log line; other errors leave the state alone. */
int thaw_denied_note(thaw_denied_t *d, int err, const char *who,
                     const char *verb, const char *resource,
                     const char *message);

#endif
