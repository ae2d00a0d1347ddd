/* cli.c - see cli.h. */
#include "cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <string.h>

int thaw_cli_bad(const char *prog, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 2;
}

int thaw_cli_getopt_bad(const char *prog, int opt, char **argv) {
  const char *arg = argv[optind - 1];
  if (opt == ':')
    return thaw_cli_bad(prog, "%s needs a value (see --help)", arg);
  /* glibc sets optopt for a long flag given a value it does not take */
  if (optopt != 0 && strncmp(arg, "--", 2) == 0)
    return thaw_cli_bad(prog, "%s takes no value (see --help)", arg);
  return thaw_cli_bad(prog, "unknown option %s (see --help)", arg);
}

void thaw_cli_version(FILE *f, const char *prog) {
  fprintf(f, "%s %s\n", prog, THAW_VERSION);
}
