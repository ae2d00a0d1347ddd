/* clock.c - see clock.h. */
#include "clock.h"

#include <string.h>
#include <time.h>

#include "error.h"

uint64_t thaw_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- RFC 3339 ------------------------------------------------------------ */

/* n decimal digits at s, or -1. */
static int digits(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so no timegm() and no time zone is involved. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int thaw_time_parse_ms(const char *s, int64_t *ms) {
  static const char shape[] = "dddd-dd-ddTdd:dd:dd";
  if (s == NULL || strlen(s) < sizeof(shape) - 1)
    return THAW_EINVAL;
  for (size_t i = 0; i < sizeof(shape) - 1; i++)
    if (shape[i] != 'd' && shape[i] != s[i] &&
        !(shape[i] == 'T' && s[i] == 't'))
      return THAW_EINVAL;
  int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2),
      h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 ||
      mi < 0 || mi > 59 || se < 0 || se > 60)
    return THAW_EINVAL;
  const char *p = s + 19;
  int frac = 0; /* ms */
  if (*p == '.') {
    int n = 0;
    for (p++; *p >= '0' && *p <= '9'; p++, n++)
      if (n < 3)
        frac = frac * 10 + (*p - '0');
    if (n == 0)
      return THAW_EINVAL;
    for (; n < 3; n++)
      frac *= 10;
  }
  int64_t off = 0; /* seconds east of UTC */
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    /* each check stops at the first byte that fails, so a string cut
     * short ("+1") is never read past its end */
    int oh = digits(p + 1, 2);
    if (oh < 0 || oh > 23 || p[3] != ':')
      return THAW_EINVAL;
    int om = digits(p + 4, 2);
    if (om < 0 || om > 59)
      return THAW_EINVAL;
    off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    return THAW_EINVAL;
  }
  if (*p != '\0')
    return THAW_EINVAL;
  int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  *ms = (secs - off) * 1000 + frac;
  return 0;
}
