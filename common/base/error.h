/* error.h - the one map of thaw error codes.
 *
 * Functions that can fail return 0 or a negative THAW_E* code. Codes that
 * mirror errno use the same negative value, so a libuv or errno result can be
 * passed through unchanged (as libuv does with UV_E*). */
#ifndef THAW_ERROR_H
#define THAW_ERROR_H

#include <errno.h>
#include <stddef.h>

#define THAW_ERRNO_MAP(X)                                                      \
  X(NOMEM, -ENOMEM, "out of memory")                                           \
  X(INVAL, -EINVAL, "invalid argument")                                        \
  X(NOENT, -ENOENT, "no such file or object")                                  \
  X(EXIST, -EEXIST, "already exists")                                          \
  X(TIMEDOUT, -ETIMEDOUT, "timed out")                                         \
  X(CANCELED, -ECANCELED, "canceled")                                          \
  X(2BIG, -E2BIG, "too large")                                                 \
  X(IO, -EIO, "I/O error")                                                     \
  X(AGAIN, -EAGAIN, "try again")

/* Codes with no errno twin live below -4000, out of errno's range. */
#define THAW_OWN_MAP(X)                                                        \
  X(PARSE, -4001, "malformed input")                                           \
  X(TRANSPORT, -4002, "connection or TLS failure")                             \
  X(HTTP, -4003, "unexpected HTTP status")                                     \
  X(NOTFOUND, -4004, "not found (404)")                                        \
  X(CONFLICT, -4005, "conflict (409)")                                         \
  X(ALREADYEXISTS, -4006, "already exists (409)")                              \
  X(GONE, -4007, "resource version expired (410)")                             \
  X(INVALID, -4008, "invalid object (422)")                                    \
  X(TOOMANY, -4009, "too many requests (429)")                                 \
  X(SERVER, -4010, "server error (5xx)")                                       \
  X(CONFIG, -4011, "bad configuration")                                        \
  X(BADREQUEST, -4012, "bad request (400)")                                    \
  X(FORBIDDEN, -4013, "unauthorized or forbidden (401/403)")                   \
  X(DIGEST, -4014, "digest mismatch")

#define THAW_DEFINE_(name, val, msg) THAW_E##name = (val),
enum thaw_error {
  THAW_OK = 0,
  THAW_ERRNO_MAP(THAW_DEFINE_) THAW_OWN_MAP(THAW_DEFINE_)
};
#undef THAW_DEFINE_

/* Returns a static, human-readable message for a THAW_E* code (or a negative
 * errno). Never returns NULL. */
const char *thaw_strerror(int err);

/* Writes a one-line reason into err[errlen] (when err is not NULL and errlen
 * > 0, truncating) and returns `code`, for "return thaw_errf(...)" on the
 * paths that report a reason to their caller. */
int thaw_errf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Returns the symbolic name ("THAW_ENOTFOUND") of a code, or "THAW_EUNKNOWN". */
const char *thaw_err_name(int err);

#endif
