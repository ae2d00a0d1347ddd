/* cli.h - the daemons' command-line contract: bad input is one line
 * "PROG: message" on stderr and exit status 2; --version prints
 * "PROG VERSION" (meson's project version) on stdout. */
#ifndef THAW_CLI_H
#define THAW_CLI_H

#include <stdio.h>

/* Writes "prog: <fmt...>\n" to stderr; returns 2 (the exit status). */
int thaw_cli_bad(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes "prog VERSION\n" to f. */
void thaw_cli_version(FILE *f, const char *prog);

#endif
