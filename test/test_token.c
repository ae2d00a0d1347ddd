/* test_token.c - the cache registry's token issuer (controller/token.c):
 * the grant policy by table, the endpoint's answers (status, JSON, the
 * granted access inside the signed token), namespace credentials, and the
 * controller's own mint for the cache host only. Keys are made with the openssl CLI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "check.h"
#include "error.h"
#include "metrics.h"
#include "regtoken.h"
#include "token.h"

static char dir[] = "/tmp/thaw-test-token.XXXXXX";

enum { P = THAW_REGTOKEN_PULL, U = THAW_REGTOKEN_PUSH, D = THAW_REGTOKEN_DELETE,
       A = THAW_REGTOKEN_ALL };

static void test_grant(void) {
  enum { ANON = THAW_TOKEN_ANONYMOUS, NS = THAW_TOKEN_NAMESPACE,
         CTL = THAW_TOKEN_CONTROLLER };
  static const struct {
    int who, private_ok;
    const char *type, *name;
    unsigned asked, want;
  } t[] = {
      {ANON, 0, "repository", "docker.io/library/x", P, P},
      {ANON, 0, "repository", "docker.io/library/x", P | U | D, P},
      {ANON, 0, "repository", "docker.io/library/x", U, 0},
      {ANON, 0, "repository", "docker.io/library/x", A, 0},
      {ANON, 0, "repository", "private/docker.io/a/b", P, 0},
      {ANON, 1, "repository", "private/docker.io/a/b", P, 0}, /* never */
      {ANON, 0, "repository", "private", P, P}, /* not the prefix */
      {ANON, 0, "repository", "privateer/x", P, P},
      {ANON, 0, "registry", "catalog", A, 0},
      {NS, 0, "repository", "docker.io/library/x", P | U, P},
      {NS, 0, "repository", "private/docker.io/a/b", P, 0}, /* label gone */
      {NS, 1, "repository", "private/docker.io/a/b", P | U | D, P},
      {NS, 1, "registry", "catalog", A, 0},
      {CTL, 0, "repository", "private/x", P, P | U | D},
      {CTL, 0, "repository", "docker.io/library/x", 0, P | U | D},
      {CTL, 0, "registry", "catalog", A, A},
      {CTL, 0, "other", "x", P, 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    unsigned got = thaw_token_grant((thaw_token_identity_t)t[i].who,
                                    t[i].private_ok, t[i].type, t[i].name,
                                    t[i].asked);
    if (got != t[i].want)
      fprintf(stderr, "grant row %zu: got %u want %u\n", i, got, t[i].want);
    CHECK(got == t[i].want);
  }
}

/* The claims of a compact JWS (not verified here: test_regtoken does). */
static cJSON *claims_of(const char *tok) {
  const char *a = strchr(tok, '.'), *b = a ? strchr(a + 1, '.') : NULL;
  if (!b)
    return NULL;
  size_t n = (size_t)(b - a - 1);
  char *s = malloc(n + 4);
  memcpy(s, a + 1, n);
  for (size_t i = 0; i < n; i++)
    s[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
  while (n % 4)
    s[n++] = '=';
  unsigned char *out = malloc(n);
  int len = EVP_DecodeBlock(out, (unsigned char *)s, (int)n);
  cJSON *j = NULL;
  if (len > 0) {
    while (len > 0 && out[len - 1] == 0) /* padding decoded as NULs */
      len--;
    j = cJSON_ParseWithLength((char *)out, (size_t)len);
  }
  free(s);
  free(out);
  return j;
}

typedef struct {
  int status;
  cJSON *body;
} answer_t;

static answer_t ask(thaw_token_t *t, const char *method, const char *path,
                    const char *query, const char *authz, int has_body) {
  thaw_httpd_request_t req = {.method = method, .path = path, .query = query,
                              .authorization = authz, .has_body = has_body};
  thaw_httpd_reply_t rep = {0};
  thaw_token_serve(t, &req, &rep);
  answer_t a = {rep.status, NULL};
  if (rep.status == 200) {
    CHECK(rep.content_type && strcmp(rep.content_type, "application/json") == 0);
    a.body = cJSON_ParseWithLength(rep.body, rep.len);
  }
  free(rep.body);
  return a;
}

/* The access array of the token in a 200 answer, as compact JSON. */
static char *access_of_sub(answer_t a, const char *sub) {
  cJSON *tok = cJSON_GetObjectItem(a.body, "token");
  cJSON *at = cJSON_GetObjectItem(a.body, "access_token");
  CHECK(cJSON_IsString(tok) && cJSON_IsString(at) &&
        strcmp(tok->valuestring, at->valuestring) == 0);
  CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(a.body, "expires_in")) ==
        THAW_TOKEN_TTL_S);
  CHECK(cJSON_IsString(cJSON_GetObjectItem(a.body, "issued_at")));
  cJSON *c = claims_of(tok->valuestring);
  CHECK(c != NULL);
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "iss")),
               THAW_TOKEN_ISSUER) == 0);
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "aud")),
               THAW_TOKEN_SERVICE) == 0);
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "sub")), sub) == 0);
  char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "access"));
  cJSON_Delete(c);
  cJSON_Delete(a.body);
  return s;
}

static char *access_of(answer_t a) { return access_of_sub(a, ""); }

static void test_endpoint(thaw_token_t *t, thaw_metrics_t *m) {
  static const struct {
    const char *query, *access;
  } ok[] = {
      {"service=thaw-registry&scope=repository:docker.io/library/x:pull",
       "[{\"type\":\"repository\",\"name\":\"docker.io/library/x\","
       "\"actions\":[\"pull\"]}]"},
      /* push and delete are never served: only pull is left */
      {"service=thaw-registry&scope=repository%3Aa%2Fb%3Apull%2Cpush%2Cdelete",
       "[{\"type\":\"repository\",\"name\":\"a/b\",\"actions\":[\"pull\"]}]"},
      /* private/ and the catalog: left out, not refused */
      {"service=thaw-registry&scope=repository:private/a/b:pull"
       "&scope=registry:catalog:*",
       "[]"},
      /* two scopes in one parameter, space-separated (+ decodes to space) */
      {"scope=repository:a:pull+repository:private/a:pull&service=thaw-registry",
       "[{\"type\":\"repository\",\"name\":\"a\",\"actions\":[\"pull\"]}]"},
      {"service=thaw-registry", "[]"}, /* /v2/ login: no scope */
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    answer_t a = ask(t, "GET", "/token", ok[i].query, NULL, 0);
    CHECK(a.status == 200);
    if (a.status != 200)
      continue;
    char *acc = access_of(a);
    if (strcmp(acc, ok[i].access) != 0)
      fprintf(stderr, "row %zu: access %s\n  want %s\n", i, acc, ok[i].access);
    CHECK(strcmp(acc, ok[i].access) == 0);
    free(acc);
  }
  static const struct {
    const char *method, *path, *query, *authz;
    int body, want;
  } bad[] = {
      {"GET", "/token", "scope=repository:a:pull", NULL, 0, 400}, /* no service */
      {"GET", "/token", "service=other&scope=repository:a:pull", NULL, 0, 400},
      {"GET", "/token", "service=thaw-registry&scope=repository::pull", NULL, 0, 400},
      {"GET", "/token", "service=thaw-registry&scope=%zz", NULL, 0, 400},
      {"GET", "/token", "service=thaw-registry", "Basic YTpi", 0, 401},
      {"POST", "/token", "", NULL, 1, 405}, /* OAuth2 form: fall back to GET */
      {"GET", "/v2/", "", NULL, 0, 404},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    answer_t a = ask(t, bad[i].method, bad[i].path, bad[i].query, bad[i].authz,
                     bad[i].body);
    if (a.status != bad[i].want)
      fprintf(stderr, "bad row %zu: %d want %d\n", i, a.status, bad[i].want);
    CHECK(a.status == bad[i].want);
    cJSON_Delete(a.body);
  }
  char *text = NULL;
  size_t tlen = 0;
  CHECK(thaw_metrics_render(m, &text, &tlen) == 0);
  CHECK(text && strstr(text, "thaw_token_requests_total{code=\"200\"} 5"));
  CHECK(text && strstr(text, "thaw_token_requests_total{code=\"400\"} 4"));
  CHECK(text && strstr(text, "thaw_token_requests_total{code=\"401\"} 1"));
  free(text);
}

static int only_team_a(const char *ns, void *data) {
  (void)data;
  return strcmp(ns, "team-a") == 0;
}

static char *basic(const char *user, const char *pass) {
  char plain[256];
  static char hdr[400];
  int n = snprintf(plain, sizeof plain, "%s:%s", user, pass);
  memcpy(hdr, "Basic ", 6);
  EVP_EncodeBlock((unsigned char *)hdr + 6, (unsigned char *)plain, n);
  return hdr;
}

#define PRIV_Q "service=thaw-registry&scope=repository:private/r/a:pull"
#define PUB_Q "service=thaw-registry&scope=repository:r/a:pull,push"

/* Namespace credentials: derived from the key alone (another replica's
 * signer agrees, another key does not), checked in constant time, and
 * private/ only while the namespace may have it. */
static void test_namespaces(thaw_token_t *t, const char *key, const char *crt,
                            const char *key2, const char *crt2) {
  char pa[THAW_TOKEN_PASSWORD_LEN + 1], pb[THAW_TOKEN_PASSWORD_LEN + 1],
      again[THAW_TOKEN_PASSWORD_LEN + 1], other[THAW_TOKEN_PASSWORD_LEN + 1];
  char err[256];
  CHECK(thaw_token_pull_password(t, "team-a", pa) == 0);
  CHECK(thaw_token_pull_password(t, "team-b", pb) == 0);
  CHECK(strlen(pa) == THAW_TOKEN_PASSWORD_LEN &&
        strspn(pa, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789-_") == THAW_TOKEN_PASSWORD_LEN);
  CHECK(strcmp(pa, pb) != 0);
  CHECK(thaw_token_pull_password(t, "Team-A", again) == THAW_EINVAL);
  CHECK(thaw_token_pull_password(t, "-a", again) == THAW_EINVAL);
  CHECK(thaw_token_pull_password(t, "", again) == THAW_EINVAL);
  thaw_token_t *t2 = NULL, *t3 = NULL;
  CHECK(thaw_token_new(key, crt, NULL, &t2, err, sizeof err) == 0);
  CHECK(t2 && thaw_token_pull_password(t2, "team-a", again) == 0 &&
        strcmp(again, pa) == 0);
  CHECK(thaw_token_new(key2, crt2, NULL, &t3, err, sizeof err) == 0);
  CHECK(t3 && thaw_token_pull_password(t3, "team-a", other) == 0 &&
        strcmp(other, pa) != 0);
  thaw_token_free(t2);
  thaw_token_free(t3);

  thaw_token_set_private_check(t, only_team_a, NULL);
  static const char *const pub =
      "[{\"type\":\"repository\",\"name\":\"r/a\",\"actions\":[\"pull\"]}]";
  static const char *const priv = "[{\"type\":\"repository\",\"name\":"
                                  "\"private/r/a\",\"actions\":[\"pull\"]}]";
  struct {
    const char *user, *pass, *query, *access;
  } ok[] = {
      {"team-a", pa, PRIV_Q, priv},
      {"team-a", pa, PUB_Q, pub},
      {"team-b", pb, PRIV_Q, "[]"}, /* valid, but not labelled */
      {"team-b", pb, PUB_Q, pub},
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    answer_t a = ask(t, "GET", "/token", ok[i].query,
                     basic(ok[i].user, ok[i].pass), 0);
    CHECK(a.status == 200);
    if (a.status != 200)
      continue;
    char *acc = access_of_sub(a, ok[i].user);
    if (strcmp(acc, ok[i].access) != 0)
      fprintf(stderr, "ns row %zu: %s\n", i, acc);
    CHECK(strcmp(acc, ok[i].access) == 0);
    free(acc);
  }
  char longer[THAW_TOKEN_PASSWORD_LEN + 2];
  snprintf(longer, sizeof longer, "%sx", pa);
  const char *bad[] = {
      basic("team-a", pb),     /* another namespace's password */
      basic("team-b", pa),
      basic("team-a", longer), /* a prefix is not enough */
      basic("team-a", ""),
      basic("Team-A", pa),
      "Basic !!!!",
      "Basic dGVhbS1h", /* no colon */
      "Bearer abc",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    answer_t a = ask(t, "GET", "/token", PRIV_Q, bad[i], 0);
    if (a.status != 401)
      fprintf(stderr, "bad credentials row %zu: %d\n", i, a.status);
    CHECK(a.status == 401);
    cJSON_Delete(a.body);
  }
  thaw_token_set_private_check(t, NULL, NULL); /* nobody */
  answer_t a = ask(t, "GET", "/token", PRIV_Q, basic("team-a", pa), 0);
  CHECK(a.status == 200);
  if (a.status == 200) {
    char *acc = access_of_sub(a, "team-a");
    CHECK(strcmp(acc, "[]") == 0);
    free(acc);
  }
}

static void test_mint_self(thaw_token_t *t) {
  char tok[THAW_REGTOKEN_MAX];
  long ttl = 0;
  CHECK(thaw_token_set_cache_host(t, "cache.example:5000") == 0);
  /* another host: the usual challenge flow runs */
  CHECK(thaw_token_mint_self("registry-1.docker.io", "repository:a:pull", tok,
                             sizeof tok, &ttl, t) != 0);
  CHECK(thaw_token_mint_self("cache.example:5000",
                             "repository:a/b:pull,push repository:c:pull", tok,
                             sizeof tok, &ttl, t) == 0);
  CHECK(ttl == THAW_TOKEN_TTL_S);
  cJSON *c = claims_of(tok);
  char *acc = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "access"));
  CHECK(acc && strcmp(acc, "[{\"type\":\"repository\",\"name\":\"a/b\","
                           "\"actions\":[\"pull\",\"push\",\"delete\"]},"
                           "{\"type\":\"repository\",\"name\":\"c\","
                           "\"actions\":[\"pull\",\"push\",\"delete\"]}]") == 0);
  if (acc)
    fprintf(stderr, "self: %s\n", acc);
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "sub")),
               THAW_TOKEN_ISSUER) == 0);
  free(acc);
  cJSON_Delete(c);
  CHECK(thaw_token_mint_self("cache.example:5000", "repository:a:pull", tok,
                             16, &ttl, t) == THAW_E2BIG);
}

int main(void) {
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  char cmd[1024], key[300], crt[300], err[256] = "";
  snprintf(cmd, sizeof cmd,
           "cd '%s' && openssl genpkey -algorithm EC -pkeyopt "
           "ec_paramgen_curve:P-256 -out k.pem >/dev/null 2>&1 && openssl req "
           "-x509 -new -key k.pem -out c.pem -days 3 -subj /CN=t >/dev/null 2>&1"
           " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"
           " -out k2.pem >/dev/null 2>&1 && openssl req -x509 -new -key k2.pem"
           " -out c2.pem -days 3 -subj /CN=t2 >/dev/null 2>&1",
           dir);
  CHECK(system(cmd) == 0);
  snprintf(key, sizeof key, "%s/k.pem", dir);
  snprintf(crt, sizeof crt, "%s/c.pem", dir);
  char key2[300], crt2[300];
  snprintf(key2, sizeof key2, "%s/k2.pem", dir);
  snprintf(crt2, sizeof crt2, "%s/c2.pem", dir);
  thaw_metrics_t *m = thaw_metrics_new();
  thaw_token_t *t = NULL;
  CHECK(thaw_token_new(key, "/nonexistent.pem", m, &t, err, sizeof err) != 0);
  CHECK(t == NULL && err[0] != '\0');
  CHECK(thaw_token_new(key, crt, m, &t, err, sizeof err) == 0);
  test_grant();
  if (t) {
    test_endpoint(t, m);
    test_namespaces(t, key, crt, key2, crt2);
    test_mint_self(t);
  }
  thaw_token_free(t);
  thaw_metrics_free(m);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : 1;
}
