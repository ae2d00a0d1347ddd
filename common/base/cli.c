/* cli.c - see cli.h. */
#include "cli.h"

#include <stdarg.h>

int thaw_cli_bad(const char *prog, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 2;
}

void thaw_cli_version(FILE *f, const char *prog) {
  fprintf(f, "%s %s\n", prog, THAW_VERSION);
}
