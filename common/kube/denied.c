/* denied.c - a permission the API server refuses, reported once (denied.h). */
#include "denied.h"

#include <stdio.h>

#include "error.h"
#include "log.h"

int thaw_denied_note(thaw_denied_t *d, int err, const char *who,
                     const char *verb, const char *resource,
                     const char *message) {
  if (err == THAW_EFORBIDDEN) {
    d->failures++;
    if (!d->denied)
      thaw_error("permission denied",
                 "component", who, "verb", verb, "resource", resource,
                 "message", message);
    else
      thaw_debug("permission still denied", "component", who, "verb", verb,
                 "resource", resource);
    d->denied = 1;
    return 1;
  }
  if (err == 0 && d->denied) {
    char n[24];
    snprintf(n, sizeof n, "%llu", (unsigned long long)d->failures);
    thaw_info("permission granted again", "component", who, "verb", verb,
              "resource", resource, "denied_attempts", n);
    d->denied = 0;
    d->failures = 0;
  }
  return 0;
}
