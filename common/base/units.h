/* units.h - the value syntaxes of thaw's flags and fields: Go durations
 * (--refresh-interval, --expire-after, spec.expireAfter) and byte sizes as
 * Kubernetes quantities (--max-cache-bytes). */
#ifndef THAW_UNITS_H
#define THAW_UNITS_H

#include <stdint.h>

/* Go time.ParseDuration subset: a sequence of <number><unit> with units
 * ns us ms s m h ("1h30m", "168h", "0.5s"); "0" alone is zero. Returns 0 and
 * sets *ms (rounded down to milliseconds), or THAW_EINVAL (also on
 * overflow or a negative value). */
int thaw_parse_duration(const char *s, uint64_t *ms);
/* A byte size: plain bytes, or with a suffix k/M/G/T (1000s), Ki/Mi/Gi/Ti
 * (1024s), as Kubernetes quantities. Returns 0 or THAW_EINVAL. */
int thaw_parse_bytes(const char *s, uint64_t *out);

#endif
