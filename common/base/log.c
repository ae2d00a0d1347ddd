/* log.c - JSON-lines logger of log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static int level_ = -1;

static const char *level_names_[] = {"debug", "info", "warn", "error", "off"};

int thaw_log_level_parse(const char *s, enum thaw_log_level *out) {
  for (int i = 0; s != NULL && i <= THAW_LOG_OFF; i++)
    if (strcasecmp(s, level_names_[i]) == 0) {
      *out = (enum thaw_log_level)i;
      return 0;
    }
  return -1;
}

static void init_level(void) {
  enum thaw_log_level lv = THAW_LOG_INFO;
  thaw_log_level_parse(getenv("THAW_LOG_LEVEL"), &lv);
  level_ = (int)lv;
}

void thaw_log_set_level(enum thaw_log_level level) { level_ = (int)level; }

enum thaw_log_level thaw_log_get_level(void) {
  if (level_ < 0)
    init_level();
  return (enum thaw_log_level)level_;
}

/* Appends s JSON-escaped into buf at *off; stops silently when full. */
static void put_escaped(char *buf, size_t cap, size_t *off, const char *s) {
  static const char hex[] = "0123456789abcdef";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[7];
    size_t n;
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\', esc[1] = (char)*p, n = 2;
    } else if (*p == '\n') {
      esc[0] = '\\', esc[1] = 'n', n = 2;
    } else if (*p < 0x20 || *p == 0x7f) {
      memcpy(esc, "\\u00", 4);
      esc[4] = hex[*p >> 4], esc[5] = hex[*p & 15], n = 6;
    } else {
      esc[0] = (char)*p, n = 1;
    }
    if (*off + n + 8 >= cap)
      return;
    memcpy(buf + *off, esc, n);
    *off += n;
  }
}

static void put_raw(char *buf, size_t cap, size_t *off, const char *s) {
  size_t n = strlen(s);
  if (*off + n + 4 >= cap)
    return;
  memcpy(buf + *off, s, n);
  *off += n;
}

void thaw_log(enum thaw_log_level level, const char *msg, ...) {
  if ((int)level < (int)thaw_log_get_level() || level >= THAW_LOG_OFF)
    return;
  char buf[8192];
  size_t off = 0;
  struct timeval tv;
  struct tm tm;
  char ts[48], date[32];
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts, sizeof ts, "%s.%03dZ", date, (int)(tv.tv_usec / 1000) % 1000);
  put_raw(buf, sizeof buf, &off, "{\"ts\":\"");
  put_raw(buf, sizeof buf, &off, ts);
  put_raw(buf, sizeof buf, &off, "\",\"level\":\"");
  put_raw(buf, sizeof buf, &off, level_names_[level]);
  put_raw(buf, sizeof buf, &off, "\",\"msg\":\"");
  put_escaped(buf, sizeof buf, &off, msg);
  put_raw(buf, sizeof buf, &off, "\"");
  va_list ap;
  va_start(ap, msg);
  for (;;) {
    const char *key = va_arg(ap, const char *);
    if (key == NULL)
      break;
    const char *val = va_arg(ap, const char *);
    put_raw(buf, sizeof buf, &off, ",\"");
    put_escaped(buf, sizeof buf, &off, key);
    if (val == NULL) {
      put_raw(buf, sizeof buf, &off, "\":null");
    } else {
      put_raw(buf, sizeof buf, &off, "\":\"");
      put_escaped(buf, sizeof buf, &off, val);
      put_raw(buf, sizeof buf, &off, "\"");
    }
  }
  va_end(ap);
  buf[off++] = '}';
  buf[off++] = '\n';
  fwrite(buf, 1, off, stderr);
}
