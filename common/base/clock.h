/* clock.h - the wall clock in milliseconds, for deadlines that must agree
 * with timestamps written by other machines (creationTimestamp, renewTime).
 * Intervals inside one process use uv_now() instead. */
#ifndef THAW_CLOCK_H
#define THAW_CLOCK_H

#include <stdint.h>

/* CLOCK_REALTIME in ms since the epoch. */
uint64_t thaw_wall_ms(void);

/* An RFC 3339 time as Kubernetes writes it ("2024-05-01T10:00:00Z",
 * MicroTime "...T10:00:00.123456Z", or an offset "+02:00") in ms since the
 * epoch, without the local time zone. Returns 0, or THAW_EINVAL when s is
 * not such a time (nothing may follow it). */
int thaw_time_parse_ms(const char *s, int64_t *ms);

#endif
