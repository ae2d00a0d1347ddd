/* log.h - structured logs: one JSON object a line on stderr.
 *
 * Every line has the keys ts, level and msg, then the context pairs given by
 * the caller in order. Values are strings; they are JSON-escaped here, so any
 * bytes may be passed. Never pass credentials as values. */
#ifndef THAW_LOG_H
#define THAW_LOG_H

enum thaw_log_level {
  THAW_LOG_DEBUG = 0,
  THAW_LOG_INFO = 1,
  THAW_LOG_WARN = 2,
  THAW_LOG_ERROR = 3,
  THAW_LOG_OFF = 4,
};

/* Lines below `level` are dropped. The default is THAW_LOG_INFO, or the value
 * of the THAW_LOG_LEVEL environment variable (debug|info|warn|error|off)
 * read on the first call of thaw_log(). */
void thaw_log_set_level(enum thaw_log_level level);
/* Reads a level name (debug, info, warn, error, off; any case) into *out.
 * Returns 0, or -1 for another string. */
int thaw_log_level_parse(const char *s, enum thaw_log_level *out);
enum thaw_log_level thaw_log_get_level(void);

/* Logs `msg` followed by NULL-terminated key, value string pairs. A NULL value
 * is written as JSON null. This function can't fail; output errors are
 * ignored. */
void thaw_log(enum thaw_log_level level, const char *msg, ...)
    __attribute__((sentinel));

#define thaw_debug(...) thaw_log(THAW_LOG_DEBUG, __VA_ARGS__, (char *)NULL)
#define thaw_info(...) thaw_log(THAW_LOG_INFO, __VA_ARGS__, (char *)NULL)
#define thaw_warn(...) thaw_log(THAW_LOG_WARN, __VA_ARGS__, (char *)NULL)
#define thaw_error(...) thaw_log(THAW_LOG_ERROR, __VA_ARGS__, (char *)NULL)

#endif
