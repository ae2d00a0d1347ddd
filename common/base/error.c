/* error.c - messages for the THAW_E* codes of error.h. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *thaw_strerror(int err) {
#define THAW_MSG_(name, val, msg)                                              \
  case (val):                                                                  \
    return (msg);
  switch (err) {
  case 0:
    return "success";
    THAW_ERRNO_MAP(THAW_MSG_)
    THAW_OWN_MAP(THAW_MSG_)
  default:
    break;
  }
#undef THAW_MSG_
  if (err < 0 && err > -4000)
    return strerror(-err);
  return "unknown error";
}

const char *thaw_err_name(int err) {
#define THAW_NAME_(name, val, msg)                                             \
  case (val):                                                                  \
    return "THAW_E" #name;
  switch (err) {
  case 0:
    return "THAW_OK";
    THAW_ERRNO_MAP(THAW_NAME_)
    THAW_OWN_MAP(THAW_NAME_)
  default:
    return "THAW_EUNKNOWN";
  }
#undef THAW_NAME_
}

int thaw_errf(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}
