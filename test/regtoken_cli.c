/* regtoken_cli.c - mints one registry bearer token with common/oci/regtoken
 * for test/test_regtoken_registry.py and prints it on stdout.
 *
 * usage: regtoken_cli [--now UNIX] [--ttl S] KEY CERT ISSUER AUDIENCE SUB
 *   [SCOPE...]
 * Each SCOPE ("repository:NAME:pull,push") is granted as asked. --now
 * (default: the clock) and --ttl (default 300) set iat/nbf/exp, so a token
 * can be minted already expired. Exit 0, or 2 with one line on stderr. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "error.h"
#include "regtoken.h"

static const char *prog = "regtoken_cli";

/* Reads a whole decimal int64 (strtoll, checked: no atoi). */
static int parse_i64(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end)
    return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  int64_t now = (int64_t)time(NULL), ttl = 300;
  int i = 1;
  for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    int64_t *dst = strcmp(argv[i], "--now") == 0   ? &now
                   : strcmp(argv[i], "--ttl") == 0 ? &ttl
                                                   : NULL;
    if (!dst || parse_i64(argv[i + 1], dst))
      return thaw_cli_bad(prog, "bad option %s %s", argv[i], argv[i + 1]);
  }
  if (argc - i < 5)
    return thaw_cli_bad(prog, "usage: %s [--now UNIX] [--ttl S] KEY CERT ISSUER "
                              "AUDIENCE SUB [SCOPE...]", prog);
  size_t n = (size_t)(argc - i - 5);
  if (n > THAW_REGTOKEN_ACCESS_MAX)
    return thaw_cli_bad(prog, "more than %d scopes", THAW_REGTOKEN_ACCESS_MAX);
  static thaw_regtoken_access_t acc[THAW_REGTOKEN_ACCESS_MAX];
  static char types[THAW_REGTOKEN_ACCESS_MAX][THAW_REGTOKEN_TYPE_MAX];
  static char names[THAW_REGTOKEN_ACCESS_MAX][THAW_REGTOKEN_NAME_MAX];
  for (size_t k = 0; k < n; k++) {
    const char *scope = argv[i + 5 + (int)k];
    if (thaw_regtoken_parse_scope(scope, types[k], sizeof types[k], names[k],
                                  sizeof names[k], &acc[k].actions))
      return thaw_cli_bad(prog, "bad scope \"%s\"", scope);
    acc[k].type = types[k];
    acc[k].name = names[k];
  }
  char err[256];
  thaw_regtoken_signer_t *s;
  if (thaw_regtoken_signer_load(argv[i], argv[i + 1], &s, err, sizeof err))
    return thaw_cli_bad(prog, "%s", err);
  thaw_regtoken_claims_t c = {.issuer = argv[i + 2], .audience = argv[i + 3],
                              .subject = argv[i + 4], .now = now, .ttl = ttl,
                              .access = acc, .naccess = n};
  static char tok[THAW_REGTOKEN_MAX];
  int rc = thaw_regtoken_sign(s, &c, tok, sizeof tok);
  thaw_regtoken_signer_free(s);
  if (rc)
    return thaw_cli_bad(prog, "sign: %s", thaw_strerror(rc));
  printf("%s\n", tok);
  return 0;
}
