/* test_regtoken.c - registry bearer tokens: keys and certificates made at
 * test time with the openssl CLI (RSA 2048, EC P-256, and the ones a
 * signer must refuse), every header and claim field read back with cJSON,
 * signatures verified with OpenSSL EVP (ES256 r||s turned back into DER),
 * and table tests of scope parsing. test_regtoken_registry.py checks the
 * same tokens against a real docker-registry. */
#include <cjson/cJSON.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "error.h"
#include "regtoken.h"

static char dir[256];

static void path_of(char *buf, size_t cap, const char *file) {
  snprintf(buf, cap, "%s/%s", dir, file);
}

/* Runs an openssl command line in dir; 0 on success. */
static int openssl(const char *args) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cd '%s' && openssl %s >/dev/null 2>&1", dir, args);
  return system(cmd);
}

/* Makes NAME.key and NAME.crt (self-signed) from a genpkey algorithm. */
static int make_pair(const char *name, const char *genpkey) {
  char args[512];
  snprintf(args, sizeof args, "genpkey %s -out %s.key", genpkey, name);
  if (openssl(args))
    return -1;
  snprintf(args, sizeof args,
           "req -x509 -new -key %s.key -out %s.crt -days 3 -subj /CN=thaw-test-%s",
           name, name, name);
  return openssl(args);
}

static int load(const char *key, const char *crt, thaw_regtoken_signer_t **s,
                char *err, size_t errlen) {
  char k[512], c[512];
  path_of(k, sizeof k, key);
  path_of(c, sizeof c, crt);
  return thaw_regtoken_signer_load(k, c, s, err, errlen);
}

/* Decodes base64url (no padding) of in[n] into a heap buffer; NULL if bad. */
static unsigned char *b64url_dec(const char *in, size_t n, size_t *out_len) {
  unsigned char *out = malloc(n * 3 / 4 + 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *p = memchr(a, in[i], 64);
    if (!p || !in[i]) {
      free(out);
      return NULL;
    }
    acc = acc << 6 | (uint32_t)(p - a);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  *out_len = o;
  return out;
}

/* One token split into its parts, header and claims parsed. */
typedef struct {
  cJSON *header, *claims;
  unsigned char *sig;
  size_t sig_len, input_len; /* input: "header.claims" */
} jws_t;

static int split(const char *tok, jws_t *j) {
  memset(j, 0, sizeof *j);
  const char *d1 = strchr(tok, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  if (!d1 || !d2 || strchr(d2 + 1, '.') || strchr(tok, '='))
    return -1;
  size_t hl, cl;
  unsigned char *h = b64url_dec(tok, (size_t)(d1 - tok), &hl);
  unsigned char *c = b64url_dec(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
  j->sig = b64url_dec(d2 + 1, strlen(d2 + 1), &j->sig_len);
  if (h)
    j->header = cJSON_ParseWithLength((char *)h, hl);
  if (c)
    j->claims = cJSON_ParseWithLength((char *)c, cl);
  free(h);
  free(c);
  j->input_len = (size_t)(d2 - tok);
  return j->header && j->claims && j->sig ? 0 : -1;
}

static void jws_free(jws_t *j) {
  cJSON_Delete(j->header);
  cJSON_Delete(j->claims);
  free(j->sig);
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "(missing)";
}

static double num(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Verifies the token's signature with the certificate's public key. */
static int verify(const char *tok, const jws_t *j, const char *crt, int es256) {
  char c[512];
  path_of(c, sizeof c, crt);
  FILE *f = fopen(c, "r");
  X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
  if (f)
    fclose(f);
  if (!x)
    return 0;
  unsigned char *der = NULL;
  const unsigned char *sig = j->sig;
  size_t sig_len = j->sig_len;
  if (es256) { /* JWS r||s back to the DER OpenSSL verifies */
    if (j->sig_len != 64) {
      X509_free(x);
      return 0;
    }
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(j->sig, 32, NULL), BN_bin2bn(j->sig + 32, 32, NULL));
    int n = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    sig = der;
    sig_len = n > 0 ? (size_t)n : 0;
  }
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, X509_get0_pubkey(x)) == 1 &&
           EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)tok, j->input_len) == 1;
  EVP_MD_CTX_free(md);
  OPENSSL_free(der);
  X509_free(x);
  return ok;
}

/* x5c[0] is the standard base64 of the certificate's DER. */
static int x5c_matches(const cJSON *header, const char *crt) {
  const cJSON *x5c = cJSON_GetObjectItemCaseSensitive(header, "x5c");
  const cJSON *first = cJSON_GetArrayItem(x5c, 0);
  if (!cJSON_IsArray(x5c) || cJSON_GetArraySize(x5c) != 1 || !cJSON_IsString(first))
    return 0;
  char c[512];
  path_of(c, sizeof c, crt);
  FILE *f = fopen(c, "r");
  X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
  if (f)
    fclose(f);
  unsigned char *der = NULL;
  int n = x ? i2d_X509(x, &der) : -1;
  X509_free(x);
  if (n <= 0)
    return 0;
  char *b64 = malloc((size_t)n / 3 * 4 + 5);
  EVP_EncodeBlock((unsigned char *)b64, der, n);
  int ok = strcmp(b64, first->valuestring) == 0;
  free(b64);
  OPENSSL_free(der);
  return ok;
}

static int actions_are(const cJSON *entry, const char *const *want, int n) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(entry, "actions");
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
    return 0;
  for (int i = 0; i < n; i++) {
    const cJSON *v = cJSON_GetArrayItem(a, i);
    if (!cJSON_IsString(v) || strcmp(v->valuestring, want[i]) != 0)
      return 0;
  }
  return 1;
}

/* Signs with key/crt and checks every field and the signature. */
static void test_sign(const char *key, const char *crt, const char *alg) {
  char err[256];
  thaw_regtoken_signer_t *s = NULL;
  int rc = load(key, crt, &s, err, sizeof err);
  if (rc)
    fprintf(stderr, "load %s: %s\n", key, err);
  CHECK(rc == 0 && s);
  if (!s)
    return;
  CHECK(strcmp(thaw_regtoken_signer_alg(s), alg) == 0);
  int es256 = strcmp(alg, "ES256") == 0;
  const thaw_regtoken_access_t acc[] = {
      {"repository", "localhost:5000/a/b", THAW_REGTOKEN_PULL | THAW_REGTOKEN_PUSH},
      {"repository", "we\"ird\\name\n", THAW_REGTOKEN_DELETE},
      {"registry", "catalog", THAW_REGTOKEN_ALL},
      {"repository", "none", 0},
  };
  thaw_regtoken_claims_t c = {.issuer = "thaw-issuer", .subject = "alice",
                              .audience = "thaw-cache", .now = 1700000000,
                              .ttl = 300, .access = acc, .naccess = 4};
  char tok[THAW_REGTOKEN_MAX];
  CHECK(thaw_regtoken_sign(s, &c, tok, sizeof tok) == 0);
  jws_t j;
  CHECK(split(tok, &j) == 0);
  if (j.header && j.claims && j.sig) {
    CHECK(cJSON_GetArraySize(j.header) == 3);
    CHECK(strcmp(str(j.header, "typ"), "JWT") == 0);
    CHECK(strcmp(str(j.header, "alg"), alg) == 0);
    CHECK(x5c_matches(j.header, crt));
    CHECK(cJSON_GetArraySize(j.claims) == 8);
    CHECK(strcmp(str(j.claims, "iss"), "thaw-issuer") == 0);
    CHECK(strcmp(str(j.claims, "sub"), "alice") == 0);
    CHECK(strcmp(str(j.claims, "aud"), "thaw-cache") == 0);
    CHECK(num(j.claims, "iat") == 1700000000);
    CHECK(num(j.claims, "nbf") == 1700000000 - 5);
    CHECK(num(j.claims, "exp") == 1700000300);
    const char *jti = str(j.claims, "jti");
    CHECK(strlen(jti) == 32 && strspn(jti, "0123456789abcdef") == 32);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j.claims, "access");
    CHECK(cJSON_IsArray(a) && cJSON_GetArraySize(a) == 4);
    const cJSON *e0 = cJSON_GetArrayItem(a, 0), *e1 = cJSON_GetArrayItem(a, 1),
                *e2 = cJSON_GetArrayItem(a, 2), *e3 = cJSON_GetArrayItem(a, 3);
    CHECK(cJSON_GetArraySize(e0) == 3);
    CHECK(strcmp(str(e0, "type"), "repository") == 0);
    CHECK(strcmp(str(e0, "name"), "localhost:5000/a/b") == 0);
    CHECK(actions_are(e0, (const char *const[]){"pull", "push"}, 2));
    CHECK(strcmp(str(e1, "name"), "we\"ird\\name\n") == 0); /* escaped, back */
    CHECK(actions_are(e1, (const char *const[]){"delete"}, 1));
    CHECK(strcmp(str(e2, "type"), "registry") == 0);
    CHECK(actions_are(e2, (const char *const[]){"*"}, 1));
    CHECK(actions_are(e3, NULL, 0));
    CHECK(j.sig_len == (es256 ? 64u : 256u));
    CHECK(verify(tok, &j, crt, es256));
    /* a changed byte in the claims breaks the signature */
    char bad[THAW_REGTOKEN_MAX];
    memcpy(bad, tok, strlen(tok) + 1);
    char *dot = strchr(bad, '.');
    dot[5] = dot[5] == 'A' ? 'B' : 'A';
    CHECK(!verify(bad, &j, crt, es256));
  }
  /* a second token: another jti; anonymous and no access gives [] */
  c.subject = "";
  c.naccess = 0;
  char tok2[THAW_REGTOKEN_MAX];
  CHECK(thaw_regtoken_sign(s, &c, tok2, sizeof tok2) == 0);
  jws_t j2;
  CHECK(split(tok2, &j2) == 0);
  if (j2.claims && j.claims) {
    CHECK(strcmp(str(j2.claims, "sub"), "") == 0);
    CHECK(strcmp(str(j.claims, "jti"), str(j2.claims, "jti")) != 0);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j2.claims, "access");
    CHECK(cJSON_IsArray(a) && cJSON_GetArraySize(a) == 0);
    CHECK(verify(tok2, &j2, crt, es256));
  }
  jws_free(&j);
  jws_free(&j2);

  /* cap: the exact size fits, one byte less is E2BIG and leaves "" */
  size_t len = strlen(tok2);
  char *exact = malloc(len + 1);
  CHECK(thaw_regtoken_sign(s, &c, exact, len + 1) == 0 && strlen(exact) == len);
  /* both signatures have a fixed size, so one byte less never fits */
  CHECK(thaw_regtoken_sign(s, &c, exact, len) == THAW_E2BIG && exact[0] == '\0');
  CHECK(thaw_regtoken_sign(s, &c, exact, 10) == THAW_E2BIG && exact[0] == '\0');
  free(exact);

  /* bad claims */
  thaw_regtoken_claims_t b = c;
  b.issuer = "";
  CHECK(thaw_regtoken_sign(s, &b, tok2, sizeof tok2) == THAW_EINVAL);
  b = c;
  b.audience = NULL;
  CHECK(thaw_regtoken_sign(s, &b, tok2, sizeof tok2) == THAW_EINVAL);
  b = c;
  b.subject = NULL;
  CHECK(thaw_regtoken_sign(s, &b, tok2, sizeof tok2) == THAW_EINVAL);
  b = c;
  b.ttl = 0;
  CHECK(thaw_regtoken_sign(s, &b, tok2, sizeof tok2) == THAW_EINVAL);
  b = c;
  b.now = INT64_MAX - 10;
  CHECK(thaw_regtoken_sign(s, &b, tok2, sizeof tok2) == THAW_EINVAL);
  const thaw_regtoken_access_t empty[] = {{"repository", "", 1}};
  b = c;
  b.access = empty;
  b.naccess = 1;
  CHECK(thaw_regtoken_sign(s, &b, tok2, sizeof tok2) == THAW_EINVAL);
  b.naccess = THAW_REGTOKEN_ACCESS_MAX + 1;
  CHECK(thaw_regtoken_sign(s, &b, tok2, sizeof tok2) == THAW_EINVAL);
  CHECK(thaw_regtoken_sign(NULL, &c, tok2, sizeof tok2) == THAW_EINVAL);
  thaw_regtoken_signer_free(s);
}

static void refused(const char *key, const char *crt, int want, const char *says) {
  char err[256] = "x";
  thaw_regtoken_signer_t *s = (thaw_regtoken_signer_t *)1;
  int rc = load(key, crt, &s, err, sizeof err);
  if (rc != want || !strstr(err, says))
    fprintf(stderr, "load %s %s: rc %d (%s), err \"%s\"\n", key, crt, rc,
            thaw_err_name(rc), err);
  CHECK(rc == want);
  CHECK(s == NULL);
  CHECK(strstr(err, says) != NULL);
  CHECK(strchr(err, '\n') == NULL);
  CHECK(strstr(err, "PRIVATE") == NULL && strstr(err, "MII") == NULL);
}

static void test_load(void) {
  refused("rsa.key", "ec.crt", THAW_EINVAL, "does not match the key");
  refused("ec.key", "ec2.crt", THAW_EINVAL, "does not match the key");
  refused("rsa1024.key", "rsa1024.crt", THAW_EINVAL, "1024 bits");
  refused("p384.key", "p384.crt", THAW_EINVAL, "secp384r1");
  refused("ed.key", "ed.crt", THAW_EINVAL, "ED25519");
  refused("enc.key", "rsa.crt", THAW_EPARSE, "no unencrypted PEM private key");
  refused("missing.key", "rsa.crt", THAW_ENOENT, "missing.key");
  refused("rsa.key", "missing.crt", THAW_ENOENT, "missing.crt");
  refused("rsa.crt", "rsa.crt", THAW_EPARSE, "no unencrypted PEM private key");
  refused("rsa.key", "rsa.key", THAW_EPARSE, "no PEM certificate");
  refused("big.key", "rsa.crt", THAW_E2BIG, "larger than");
  char err[64];
  thaw_regtoken_signer_t *s;
  CHECK(thaw_regtoken_signer_load("", "x", &s, err, sizeof err) == THAW_EINVAL);
  /* a chain file: the leaf then another certificate; both go in x5c */
  thaw_regtoken_signer_t *chain = NULL;
  CHECK(load("rsa.key", "chain.crt", &chain, err, sizeof err) == 0);
  if (chain) {
    thaw_regtoken_claims_t c = {.issuer = "i", .subject = "", .audience = "a",
                                .now = time(NULL), .ttl = 60};
    char tok[THAW_REGTOKEN_MAX];
    jws_t j;
    CHECK(thaw_regtoken_sign(chain, &c, tok, sizeof tok) == 0);
    CHECK(split(tok, &j) == 0);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j.header, "x5c")) == 2);
    CHECK(verify(tok, &j, "rsa.crt", 0));
    jws_free(&j);
  }
  thaw_regtoken_signer_free(chain);
  thaw_regtoken_signer_free(NULL);
}

static void test_scopes(void) {
  static const struct {
    const char *in;
    int rc;
    const char *type, *name;
    unsigned actions;
  } t[] = {
      {"repository:a/b:pull", 0, "repository", "a/b", THAW_REGTOKEN_PULL},
      {"repository:localhost:5000/a:pull,push", 0, "repository",
       "localhost:5000/a", THAW_REGTOKEN_PULL | THAW_REGTOKEN_PUSH},
      {"repository:library/nginx:push,pull,delete", 0, "repository",
       "library/nginx", 7},
      {"registry:catalog:*", 0, "registry", "catalog", THAW_REGTOKEN_ALL},
      {"repository:a:pull,frobnicate", 0, "repository", "a", THAW_REGTOKEN_PULL},
      {"repository:a:frobnicate", 0, "repository", "a", 0},
      {"repository:a:", 0, "repository", "a", 0},
      {"repository:a:,,pull,", 0, "repository", "a", THAW_REGTOKEN_PULL},
      {"repository(plugin):a/b:pull", 0, "repository(plugin)", "a/b", 1},
      {"repository:Host.Example:5000/x_y-z.w:pull", 0, "repository",
       "Host.Example:5000/x_y-z.w", 1},
      {"repository::pull", THAW_EINVAL, "", "", 0},
      {":a:pull", THAW_EINVAL, "", "", 0},
      {"repository:a", THAW_EINVAL, "", "", 0},
      {"repository", THAW_EINVAL, "", "", 0},
      {"", THAW_EINVAL, "", "", 0},
      {"Repository:a:pull", THAW_EINVAL, "", "", 0},
      {"repo(:a:pull", THAW_EINVAL, "", "", 0},
      {"repo():a:pull", THAW_EINVAL, "", "", 0},
      {"repository:a b:pull", THAW_EINVAL, "", "", 0},
      {"repository:a\"b:pull", THAW_EINVAL, "", "", 0},
      {"repository:/a:pull", THAW_EINVAL, "", "", 0},
      {"repository:a@sha256:pull", THAW_EINVAL, "", "", 0},
      {NULL, THAW_EINVAL, "", "", 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char type[THAW_REGTOKEN_TYPE_MAX] = "x", name[THAW_REGTOKEN_NAME_MAX] = "x";
    unsigned act = 99;
    int rc = thaw_regtoken_parse_scope(t[i].in, type, sizeof type, name,
                                       sizeof name, &act);
    if (rc != t[i].rc || strcmp(type, t[i].type) || strcmp(name, t[i].name) ||
        act != t[i].actions)
      fprintf(stderr, "scope %zu \"%s\": rc %d type \"%s\" name \"%s\" act %u\n",
              i, t[i].in ? t[i].in : "(null)", rc, type, name, act);
    CHECK(rc == t[i].rc);
    CHECK(strcmp(type, t[i].type) == 0);
    CHECK(strcmp(name, t[i].name) == 0);
    CHECK(act == t[i].actions);
  }
  /* overlong: the whole scope, and a name over the caller's buffer */
  char big[THAW_REGTOKEN_SCOPE_MAX + 32], type[16], name[16];
  unsigned act;
  snprintf(big, sizeof big, "repository:");
  memset(big + 11, 'a', sizeof big - 11 - 6);
  memcpy(big + sizeof big - 6, ":pull", 6);
  CHECK(thaw_regtoken_parse_scope(big, type, sizeof type, name, sizeof name,
                                  &act) == THAW_EINVAL);
  CHECK(thaw_regtoken_parse_scope("repository:0123456789abcdef:pull", type,
                                  sizeof type, name, sizeof name, &act) == THAW_EINVAL);
  CHECK(name[0] == '\0' && act == 0);
  CHECK(thaw_regtoken_parse_scope("repository:0123456789abcde:pull", type,
                                  sizeof type, name, sizeof name, &act) == 0);
  CHECK(thaw_regtoken_parse_scope("repositoryxxxxxx:a:pull", type, sizeof type,
                                  name, sizeof name, &act) == THAW_EINVAL);
}

static int make_keys(void) {
  if (make_pair("rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048") ||
      make_pair("ec", "-algorithm EC -pkeyopt ec_paramgen_curve:prime256v1") ||
      make_pair("ec2", "-algorithm EC -pkeyopt ec_paramgen_curve:prime256v1") ||
      make_pair("rsa1024", "-algorithm RSA -pkeyopt rsa_keygen_bits:1024") ||
      make_pair("p384", "-algorithm EC -pkeyopt ec_paramgen_curve:secp384r1") ||
      make_pair("ed", "-algorithm ED25519") ||
      openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes256 "
              "-pass pass:secret -out enc.key"))
    return -1;
  char cmd[600];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && cat rsa.crt ec.crt > chain.crt && head -c 70000 /dev/zero > big.key",
           dir);
  return system(cmd);
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/thaw-regtoken.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  int ok = make_keys() == 0;
  CHECK(ok);
  if (ok) {
    test_sign("rsa.key", "rsa.crt", "RS256");
    test_sign("ec.key", "ec.crt", "ES256");
    test_load();
  }
  test_scopes();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
  printf("regtoken: %d failures\n", failures);
  return 0;
}
