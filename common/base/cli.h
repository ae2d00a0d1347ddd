/* cli.h - the daemons' command-line contract: bad input is one line
 * "PROG: message" on stderr and exit status 2; --version prints
 * "PROG VERSION" (meson's project version) on stdout. */
#ifndef THAW_CLI_H
#define THAW_CLI_H

#include <stdio.h>

/* Writes "prog: <fmt...>\n" to stderr; returns 2 (the exit status). */
int thaw_cli_bad(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The getopt_long failures every daemon words alike, for opt ':' (a flag
 * without its value) or '?' (an unknown flag, or a value given to a flag
 * that takes none), with opterr 0 and a leading ':' in the optstring:
 * one line as thaw_cli_bad; returns 2. */
int thaw_cli_getopt_bad(const char *prog, int opt, char **argv);

/* Writes "prog VERSION\n" to f. */
void thaw_cli_version(FILE *f, const char *prog);

#endif
