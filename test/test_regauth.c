/* test_regauth.c - table tests of registry auth's pure parts: challenges,
 * dockerconfigjson lookup, host aliases, token responses, the token cache
 * with an injected clock. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "regauth.h"

static void test_challenges(void) {
  static const struct {
    const char *in;
    int rc;
    enum thaw_regauth_scheme scheme;
    const char *realm, *service, *scope;
  } t[] = {
      {"Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
       "scope=\"repository:library/nginx:pull\"",
       0, THAW_REGAUTH_BEARER, "https://auth.docker.io/token",
       "registry.docker.io", "repository:library/nginx:pull"},
      {"bearer  scope=\"repository:a/b:pull,push\", realm=\"http://h:1/t?x=1\"",
       0, THAW_REGAUTH_BEARER, "http://h:1/t?x=1", "", "repository:a/b:pull,push"},
      {"Bearer realm=tok,service=svc", 0, THAW_REGAUTH_BEARER, "tok", "svc", ""},
      {"Bearer realm=\"a\\\"b\",error=\"insufficient_scope\"", 0,
       THAW_REGAUTH_BEARER, "a\"b", "", ""},
      {"Basic realm=\"Registry Realm\"", 0, THAW_REGAUTH_BASIC,
       "Registry Realm", "", ""},
      {"Basic", 0, THAW_REGAUTH_BASIC, "", "", ""},
      {"Bearer service=\"x\"", THAW_EPARSE, 0, NULL, NULL, NULL}, /* no realm */
      {"Bearer realm=\"unterminated", THAW_EPARSE, 0, NULL, NULL, NULL},
      {"Negotiate abc", THAW_EPARSE, 0, NULL, NULL, NULL},
      {"Bearer realm", THAW_EPARSE, 0, NULL, NULL, NULL},
      {"", THAW_EPARSE, 0, NULL, NULL, NULL},
      {NULL, THAW_EPARSE, 0, NULL, NULL, NULL},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    thaw_regauth_challenge_t ch;
    int rc = thaw_regauth_parse_challenge(t[i].in, &ch);
    if (rc != t[i].rc)
      fprintf(stderr, "challenge %zu: rc %d\n", i, rc);
    CHECK(rc == t[i].rc);
    if (rc == 0) {
      CHECK(ch.scheme == t[i].scheme);
      CHECK(strcmp(ch.realm, t[i].realm) == 0);
      CHECK(strcmp(ch.service, t[i].service) == 0);
      CHECK(strcmp(ch.scope, t[i].scope) == 0);
    }
  }
  char big[THAW_REGAUTH_REALM_MAX + 40] = "Bearer realm=\"";
  memset(big + 14, 'a', sizeof big - 16);
  big[sizeof big - 2] = '"';
  big[sizeof big - 1] = '\0';
  thaw_regauth_challenge_t ch;
  CHECK(thaw_regauth_parse_challenge(big, &ch) == THAW_E2BIG);
}

static void test_host_keys(void) {
  static const struct { const char *in, *out; int rc; } t[] = {
      {"https://index.docker.io/v1/", "docker.io", 0},
      {"index.docker.io", "docker.io", 0},
      {"registry-1.docker.io", "docker.io", 0},
      {"docker.io", "docker.io", 0},
      {"https://Registry.Example.com:5000/v2/", "registry.example.com:5000", 0},
      {"http://127.0.0.1:5000", "127.0.0.1:5000", 0},
      {"ghcr.io", "ghcr.io", 0},
      {"https:///x", "", THAW_EINVAL},
      {"", "", THAW_EINVAL},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char buf[128];
    CHECK(thaw_regauth_host_key(t[i].in, buf, sizeof buf) == t[i].rc);
    CHECK(strcmp(buf, t[i].out) == 0);
  }
  char small[4];
  CHECK(thaw_regauth_host_key("ghcr.io", small, sizeof small) == THAW_E2BIG);
}

static void test_dockerconfig(void) {
  /* "dXNlcjpwYTpzcw==" is base64("user:pa:ss"). */
  static const char doc[] =
      "{\"auths\":{"
      "\"https://index.docker.io/v1/\":{\"auth\":\"dXNlcjpwYTpzcw==\"},"
      "\"reg.example.com:5000\":{\"username\":\"u2\",\"password\":\"p2\"},"
      "\"https://other.example/v2/\":{\"auth\":\"dTM6cDM=\"},"
      "\"bad.example\":{\"auth\":\"!!!!\"},"
      "\"nocolon.example\":{\"auth\":\"YWJj\"}}}";
  static const struct { const char *host; int rc; const char *u, *p; } t[] = {
      {"docker.io", 0, "user", "pa:ss"},
      {"registry-1.docker.io", 0, "user", "pa:ss"},
      {"index.docker.io", 0, "user", "pa:ss"},
      {"reg.example.com:5000", 0, "u2", "p2"},
      {"https://reg.example.com:5000/", 0, "u2", "p2"},
      {"other.example", 0, "u3", "p3"},
      {"reg.example.com", THAW_ENOENT, "", ""},
      {"bad.example", THAW_EPARSE, "", ""},
      {"nocolon.example", THAW_EPARSE, "", ""},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    thaw_regauth_creds_t c;
    int rc = thaw_regauth_dockerconfig(doc, sizeof doc - 1, t[i].host, &c);
    if (rc != t[i].rc)
      fprintf(stderr, "dockerconfig %s: rc %d\n", t[i].host, rc);
    CHECK(rc == t[i].rc);
    CHECK(strcmp(c.user, t[i].u) == 0 && strcmp(c.pass, t[i].p) == 0);
  }
  thaw_regauth_creds_t c;
  static const char legacy[] = "{\"docker.io\":{\"auth\":\"dTM6cDM=\"}}";
  CHECK(thaw_regauth_dockerconfig(legacy, sizeof legacy - 1, "docker.io",
                                  &c) == 0 && strcmp(c.user, "u3") == 0);
  CHECK(thaw_regauth_dockerconfig("{", 1, "docker.io", &c) == THAW_EPARSE);
  CHECK(thaw_regauth_dockerconfig("[]", 2, "docker.io", &c) == THAW_EPARSE);
  CHECK(thaw_regauth_dockerconfig("{\"auths\":[]}", 12, "docker.io", &c) ==
        THAW_EPARSE);
}

static void test_tokens(void) {
  static const struct { const char *in; int rc; const char *tok; long ttl; } t[] = {
      {"{\"token\":\"abc\",\"expires_in\":300}", 0, "abc", 300},
      {"{\"access_token\":\"xyz\"}", 0, "xyz", THAW_REGAUTH_TOKEN_TTL_DEFAULT},
      {"{\"token\":\"\",\"access_token\":\"xyz\",\"expires_in\":-5}", 0, "xyz",
       THAW_REGAUTH_TOKEN_TTL_DEFAULT},
      {"{\"token\":5}", THAW_EPARSE, "", THAW_REGAUTH_TOKEN_TTL_DEFAULT},
      {"not json", THAW_EPARSE, "", THAW_REGAUTH_TOKEN_TTL_DEFAULT},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char tok[64];
    long ttl = 0;
    CHECK(thaw_regauth_parse_token(t[i].in, strlen(t[i].in), tok, sizeof tok,
                                   &ttl) == t[i].rc);
    CHECK(strcmp(tok, t[i].tok) == 0);
    CHECK(ttl == t[i].ttl);
  }
  thaw_regauth_creds_t c = {"aladdin", "opensesame"};
  char h[128];
  CHECK(thaw_regauth_basic_header(&c, h, sizeof h) == 0);
  CHECK(strcmp(h, "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l") == 0);
  CHECK(thaw_regauth_basic_header(&c, h, 20) == THAW_E2BIG);
}

static double fake_now;
static double fake_clock(void *d) {
  (void)d;
  return fake_now;
}

static void test_cache(void) {
  thaw_regauth_cache_t *c;
  CHECK(thaw_regauth_cache_new(2, fake_clock, NULL, &c) == 0);
  fake_now = 1000;
  CHECK(thaw_regauth_cache_get(c, "r", "s", "") == NULL);
  CHECK(thaw_regauth_cache_put(c, "r", "s", "", "t1", 60) == 0);
  CHECK(thaw_regauth_cache_put(c, "r", "s", "bob", "t2", 300) == 0);
  const char *g = thaw_regauth_cache_get(c, "r", "s", "");
  CHECK(g && strcmp(g, "t1") == 0);
  g = thaw_regauth_cache_get(c, "r", "s", "bob");
  CHECK(g && strcmp(g, "t2") == 0);
  CHECK(thaw_regauth_cache_get(c, "r", "other", "") == NULL);
  fake_now = 1000 + 60 - THAW_REGAUTH_TOKEN_MARGIN - 1; /* still valid */
  CHECK(thaw_regauth_cache_get(c, "r", "s", "") != NULL);
  fake_now = 1000 + 60 - THAW_REGAUTH_TOKEN_MARGIN; /* within the margin */
  CHECK(thaw_regauth_cache_get(c, "r", "s", "") == NULL);
  CHECK(thaw_regauth_cache_get(c, "r", "s", "bob") != NULL);
  /* Full: the entry nearest expiry (t1) is evicted. */
  CHECK(thaw_regauth_cache_put(c, "r2", "s", "", "t3", 600) == 0);
  CHECK(thaw_regauth_cache_get(c, "r", "s", "bob") != NULL);
  CHECK(thaw_regauth_cache_get(c, "r2", "s", "") != NULL);
  /* A 4 s token keeps half its life. */
  CHECK(thaw_regauth_cache_put(c, "r2", "s", "", "t4", 4) == 0);
  fake_now += 1.9;
  CHECK(thaw_regauth_cache_get(c, "r2", "s", "") != NULL);
  fake_now += 0.2;
  CHECK(thaw_regauth_cache_get(c, "r2", "s", "") == NULL);
  thaw_regauth_cache_free(c);
  thaw_regauth_cache_free(NULL);
}

int main(void) {
  test_challenges();
  test_host_keys();
  test_dockerconfig();
  test_tokens();
  test_cache();
  if (!failures)
    printf("regauth: ok\n");
  return failures != 0;
}
