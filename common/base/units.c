/* units.c - Go durations and Kubernetes-style byte sizes (units.h). */
#include "units.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

int thaw_parse_duration(const char *s, uint64_t *ms) {
  /* Nanoseconds in uint64 with Go's limit (int64 max) as the overflow. */
  static const struct {
    const char *name;
    uint64_t ns;
  } units[] = {{"ns", 1},
               {"us", 1000},
               {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
               {"\xce\xbcs", 1000}, /* U+03BC Greek mu */
               {"ms", 1000000},
               {"s", 1000000000ull},
               {"m", 60000000000ull},
               {"h", 3600000000000ull}};
  const uint64_t max = (uint64_t)INT64_MAX;
  if (s == NULL)
    return THAW_EINVAL;
  if (*s == '+')
    s++;
  if (strcmp(s, "0") == 0) {
    *ms = 0;
    return 0;
  }
  if (*s == '\0')
    return THAW_EINVAL; /* also "" and "+"; and '-' is never a digit below */
  uint64_t total = 0;
  while (*s) {
    /* [0-9]*(\.[0-9]*)? with at least one digit */
    uint64_t v = 0, f = 0;
    double scale = 1;
    int digits = 0, overflow = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
      if (v > (max - (uint64_t)(*s - '0')) / 10)
        return THAW_EINVAL;
      v = v * 10 + (uint64_t)(*s - '0');
    }
    if (*s == '.') {
      for (s++; *s >= '0' && *s <= '9'; s++, digits++) {
        if (overflow)
          continue; /* precision past 19 digits is dropped, as in Go */
        if (f > (max - (uint64_t)(*s - '0')) / 10) {
          overflow = 1;
          continue;
        }
        f = f * 10 + (uint64_t)(*s - '0');
        scale *= 10;
      }
    }
    if (digits == 0)
      return THAW_EINVAL;
    size_t ulen = strcspn(s, "0123456789.");
    uint64_t unit = 0;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
      if (strlen(units[i].name) == ulen && strncmp(s, units[i].name, ulen) == 0)
        unit = units[i].ns;
    if (unit == 0)
      return THAW_EINVAL; /* missing or unknown unit ("1", "1d") */
    s += ulen;
    if (v > max / unit)
      return THAW_EINVAL;
    v *= unit;
    if (f > 0) {
      uint64_t frac = (uint64_t)((double)f * ((double)unit / scale));
      if (frac > max - v)
        return THAW_EINVAL;
      v += frac;
    }
    if (v > max - total)
      return THAW_EINVAL;
    total += v;
  }
  *ms = total / 1000000;
  return 0;
}

int thaw_parse_bytes(const char *s, uint64_t *out) {
  static const struct {
    const char *suffix;
    uint64_t mult;
  } suffixes[] = {{"", 1},
                  {"k", 1000ull},
                  {"M", 1000000ull},
                  {"G", 1000000000ull},
                  {"T", 1000000000000ull},
                  {"Ki", 1ull << 10},
                  {"Mi", 1ull << 20},
                  {"Gi", 1ull << 30},
                  {"Ti", 1ull << 40}};
  if (s == NULL)
    return THAW_EINVAL;
  /* digits[.digits]: integer part and fraction apart, so the products fit
   * in 128 bits; rounded up as a Kubernetes quantity's Value() is. */
  uint64_t ip = 0, frac = 0, den = 1;
  int digits = 0;
  const char *p = s;
  for (; *p >= '0' && *p <= '9'; p++, digits++) {
    if (ip > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
      return THAW_EINVAL;
    ip = ip * 10 + (uint64_t)(*p - '0');
  }
  if (*p == '.') {
    for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
      if (den == 1000000000000000000ull)
        return THAW_EINVAL; /* more than 18 decimals */
      frac = frac * 10 + (uint64_t)(*p - '0');
      den *= 10;
    }
  }
  if (digits == 0)
    return THAW_EINVAL;
  for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
    if (strcmp(p, suffixes[i].suffix) != 0)
      continue;
    unsigned __int128 m = suffixes[i].mult;
    unsigned __int128 v =
        (unsigned __int128)ip * m + ((unsigned __int128)frac * m + den - 1) / den;
    if (v > UINT64_MAX)
      return THAW_EINVAL;
    *out = (uint64_t)v;
    return 0;
  }
  return THAW_EINVAL;
}

/* Go's strconv.ParseBool. Returns 0/1, or -1. */
