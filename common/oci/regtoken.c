/* regtoken.c - Docker registry bearer tokens signed with OpenSSL (see
 * regtoken.h). The JWS header is the same for every token of a signer, so
 * load builds it once; sign only builds the claims. */
#include "regtoken.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define ES256_HALF 32 /* bytes of r and of s */

struct thaw_regtoken_signer {
  EVP_PKEY *key;
  int es256;
  size_t sig_max; /* bytes of a raw JWS signature */
  char *header;   /* base64url of the JSON header, NUL-ended */
  size_t header_len;
  uint8_t mac_key[32]; /* SHA-256 of the private key's DER (derive_mac_key) */
};

/* Length of the unpadded base64url of n bytes. */
static size_t b64url_len(size_t n) { return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0); }

/* Writes the unpadded base64url of in[n] at out (room for b64url_len(n)
 * bytes, no NUL); returns the length written. */
static size_t b64url(const unsigned char *in, size_t n, char *out) {
  static const char a[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = a[v >> 18 & 63];
    out[o++] = a[v >> 12 & 63];
    out[o++] = a[v >> 6 & 63];
    out[o++] = a[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
    out[o++] = a[v >> 18 & 63];
    out[o++] = a[v >> 12 & 63];
    if (i + 1 < n)
      out[o++] = a[v >> 6 & 63];
  }
  return o;
}

/* Reads a whole file of at most max bytes into a NUL-ended heap buffer. */
static int read_file(const char *path, size_t max, char **buf, size_t *len,
                     char *err, size_t errlen) {
  *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    int e = errno ? -errno : THAW_EIO;
    return thaw_errf(err, errlen, e, "%s: %s", path, thaw_strerror(e));
  }
  char *b = malloc(max + 1);
  if (!b) {
    fclose(f);
    return thaw_errf(err, errlen, THAW_ENOMEM, "%s: out of memory", path);
  }
  size_t n = fread(b, 1, max + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || n > max) {
    OPENSSL_clear_free(b, max + 1);
    if (bad)
      return thaw_errf(err, errlen, THAW_EIO, "%s: read error", path);
    return thaw_errf(err, errlen, THAW_E2BIG, "%s: larger than %zu bytes", path,
                     max);
  }
  b[n] = '\0';
  *buf = b;
  *len = n;
  return 0;
}

/* The PEM passphrase callback: none, so an encrypted key fails to load
 * instead of prompting on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1;
}

static int load_key(const char *path, EVP_PKEY **out, int *es256, char *err,
                    size_t errlen) {
  *out = NULL;
  char *pem;
  size_t len;
  int rc = read_file(path, THAW_REGTOKEN_KEYFILE_MAX, &pem, &len, err, errlen);
  if (rc)
    return rc;
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
  BIO_free(bio);
  OPENSSL_clear_free(pem, len + 1);
  ERR_clear_error(); /* its reasons may quote the file; we say our own */
  if (!k)
    return thaw_errf(err, errlen, THAW_EPARSE,
                     "%s: no unencrypted PEM private key", path);
  int id = EVP_PKEY_get_base_id(k);
  if (id == EVP_PKEY_RSA) {
    if (EVP_PKEY_get_bits(k) < 2048) {
      rc = thaw_errf(err, errlen, THAW_EINVAL,
                     "%s: RSA key of %d bits, at least 2048 needed", path,
                     EVP_PKEY_get_bits(k));
      goto fail;
    }
    *es256 = 0;
  } else if (id == EVP_PKEY_EC) {
    char group[64];
    size_t glen = 0;
    int nid = NID_undef;
    if (EVP_PKEY_get_group_name(k, group, sizeof group, &glen) == 1) {
      nid = OBJ_sn2nid(group);
      if (nid == NID_undef)
        nid = EC_curve_nist2nid(group);
    }
    if (nid != NID_X9_62_prime256v1) {
      rc = thaw_errf(err, errlen, THAW_EINVAL,
                     "%s: EC key on curve %s, only P-256 (prime256v1) is supported",
                     path, nid == NID_undef ? "?" : OBJ_nid2sn(nid));
      goto fail;
    }
    *es256 = 1;
  } else {
    rc = thaw_errf(err, errlen, THAW_EINVAL,
                   "%s: %s key, only RSA >= 2048 bits or EC P-256 is supported",
                   path, id == NID_undef ? "unknown" : OBJ_nid2sn(id));
    goto fail;
  }
  *out = k;
  return 0;
fail:
  EVP_PKEY_free(k);
  ERR_clear_error();
  return rc;
}

/* Adds the base64 (standard, padded: x5c is not url-safe) DER of cert to
 * the JSON array x5c. */
static int add_x5c(cJSON *x5c, X509 *cert) {
  int der_len = i2d_X509(cert, NULL);
  if (der_len <= 0)
    return THAW_EINVAL;
  unsigned char *der = malloc((size_t)der_len);
  char *b64 = malloc(((size_t)der_len + 2) / 3 * 4 + 1);
  int rc = THAW_ENOMEM;
  if (der && b64) {
    unsigned char *p = der;
    rc = THAW_EINVAL;
    if (i2d_X509(cert, &p) == der_len) {
      EVP_EncodeBlock((unsigned char *)b64, der, der_len);
      rc = cJSON_AddItemToArray(x5c, cJSON_CreateString(b64)) ? 0 : THAW_ENOMEM;
    }
  }
  free(der);
  free(b64);
  return rc;
}

/* Reads the certificates of path into the x5c array; the first must hold
 * the public key of key and be unexpired. */
static int load_certs(const char *path, EVP_PKEY *key, cJSON *x5c, char *err,
                      size_t errlen) {
  char *pem;
  size_t len;
  int rc = read_file(path, THAW_REGTOKEN_CERTFILE_MAX, &pem, &len, err, errlen);
  if (rc)
    return rc;
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio) {
    free(pem);
    return thaw_errf(err, errlen, THAW_ENOMEM, "%s: out of memory", path);
  }
  int n = 0;
  X509 *cert;
  while (rc == 0 && (cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL))) {
    if (n == THAW_REGTOKEN_CHAIN_MAX) {
      rc = thaw_errf(err, errlen, THAW_E2BIG, "%s: more than %d certificates",
                     path, THAW_REGTOKEN_CHAIN_MAX);
    } else if (n == 0 && EVP_PKEY_eq(key, X509_get0_pubkey(cert)) != 1) {
      rc = thaw_errf(err, errlen, THAW_EINVAL,
                     "%s: its first certificate does not match the key", path);
    } else if (n == 0 && X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
      rc = thaw_errf(err, errlen, THAW_EINVAL, "%s: certificate has expired",
                     path);
    } else if ((rc = add_x5c(x5c, cert)) != 0) {
      thaw_errf(err, errlen, rc, "%s: certificate: %s", path, thaw_strerror(rc));
    }
    X509_free(cert);
    n++;
  }
  BIO_free(bio);
  free(pem);
  ERR_clear_error(); /* the end of the file reads as "no start line" */
  if (rc == 0 && n == 0)
    rc = thaw_errf(err, errlen, THAW_EPARSE, "%s: no PEM certificate", path);
  return rc;
}

/* Builds the base64url JSON header of s from the x5c array (taken). */
static int make_header(thaw_regtoken_signer_t *s, cJSON *x5c) {
  cJSON *h = cJSON_CreateObject();
  if (!h) {
    cJSON_Delete(x5c);
    return THAW_ENOMEM;
  }
  int ok = cJSON_AddStringToObject(h, "typ", "JWT") &&
           cJSON_AddStringToObject(h, "alg", s->es256 ? "ES256" : "RS256") &&
           cJSON_AddItemToObject(h, "x5c", x5c);
  if (!ok)
    cJSON_Delete(x5c); /* not attached */
  char *json = ok ? cJSON_PrintUnformatted(h) : NULL;
  cJSON_Delete(h);
  if (!json)
    return THAW_ENOMEM;
  size_t n = strlen(json);
  s->header = malloc(b64url_len(n) + 1);
  if (s->header) {
    s->header_len = b64url((const unsigned char *)json, n, s->header);
    s->header[s->header_len] = '\0';
  }
  cJSON_free(json);
  return s->header ? 0 : THAW_ENOMEM;
}

/* A MAC key only the key's holders share: SHA-256 over a label and the
 * private key's DER, so every controller replica derives the same one and
 * a new signing key replaces it too. */
static int derive_mac_key(thaw_regtoken_signer_t *s) {
  unsigned char *der = NULL;
  int n = i2d_PrivateKey(s->key, &der);
  if (n <= 0)
    return THAW_ENOMEM;
  static const char label[] = "thaw-regtoken mac key v1";
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned int len = 0;
  int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
           EVP_DigestUpdate(md, label, sizeof label) == 1 &&
           EVP_DigestUpdate(md, der, (size_t)n) == 1 &&
           EVP_DigestFinal_ex(md, s->mac_key, &len) == 1 && len == 32;
  EVP_MD_CTX_free(md);
  OPENSSL_clear_free(der, (size_t)n);
  return ok ? 0 : THAW_ENOMEM;
}

int thaw_regtoken_signer_mac(const thaw_regtoken_signer_t *s, const void *msg,
                             size_t len, uint8_t out[32]) {
  unsigned int n = 0;
  if (!s || (!msg && len))
    return THAW_EINVAL;
  if (!HMAC(EVP_sha256(), s->mac_key, sizeof s->mac_key, msg, len, out, &n) ||
      n != 32)
    return THAW_ENOMEM;
  return 0;
}

int thaw_regtoken_signer_load(const char *key_file, const char *cert_file,
                              thaw_regtoken_signer_t **out, char *err,
                              size_t errlen) {
  *out = NULL;
  if (err && errlen)
    err[0] = '\0';
  if (!key_file || !cert_file || !*key_file || !*cert_file)
    return thaw_errf(err, errlen, THAW_EINVAL, "no key or certificate file");
  thaw_regtoken_signer_t *s = calloc(1, sizeof *s);
  cJSON *x5c = cJSON_CreateArray();
  int rc;
  if (!s || !x5c) {
    rc = thaw_errf(err, errlen, THAW_ENOMEM, "out of memory");
    goto fail;
  }
  if ((rc = load_key(key_file, &s->key, &s->es256, err, errlen)) != 0 ||
      (rc = load_certs(cert_file, s->key, x5c, err, errlen)) != 0)
    goto fail;
  s->sig_max = s->es256 ? 2 * ES256_HALF : (size_t)EVP_PKEY_get_size(s->key);
  if ((rc = derive_mac_key(s)) != 0) {
    thaw_errf(err, errlen, rc, "key: cannot derive a MAC key");
    goto fail;
  }
  rc = make_header(s, x5c);
  x5c = NULL;
  if (rc) {
    thaw_errf(err, errlen, rc, "token header: %s", thaw_strerror(rc));
    goto fail;
  }
  *out = s;
  return 0;
fail:
  cJSON_Delete(x5c);
  thaw_regtoken_signer_free(s);
  return rc;
}

void thaw_regtoken_signer_free(thaw_regtoken_signer_t *s) {
  if (!s)
    return;
  EVP_PKEY_free(s->key); /* OpenSSL wipes the private key's numbers */
  OPENSSL_cleanse(s->mac_key, sizeof s->mac_key);
  free(s->header);
  free(s);
}

const char *thaw_regtoken_signer_alg(const thaw_regtoken_signer_t *s) {
  return s && s->es256 ? "ES256" : "RS256";
}

/* Adds a JSON integer exactly (cJSON's numbers are doubles). */
static int add_int(cJSON *o, const char *name, int64_t v) {
  char num[24];
  snprintf(num, sizeof num, "%" PRId64, v);
  return cJSON_AddRawToObject(o, name, num) != NULL;
}

static int add_access(cJSON *arr, const thaw_regtoken_access_t *a) {
  static const struct { unsigned bit; const char *name; } acts[] = {
      {THAW_REGTOKEN_PULL, "pull"}, {THAW_REGTOKEN_PUSH, "push"},
      {THAW_REGTOKEN_DELETE, "delete"}, {THAW_REGTOKEN_ALL, "*"}};
  cJSON *e = cJSON_CreateObject();
  if (!e || !cJSON_AddItemToArray(arr, e)) {
    cJSON_Delete(e);
    return 0;
  }
  cJSON *list;
  if (!cJSON_AddStringToObject(e, "type", a->type) ||
      !cJSON_AddStringToObject(e, "name", a->name) ||
      !(list = cJSON_AddArrayToObject(e, "actions")))
    return 0;
  for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
    if ((a->actions & acts[i].bit) &&
        !cJSON_AddItemToArray(list, cJSON_CreateString(acts[i].name)))
      return 0;
  return 1;
}

/* The claims as compact JSON (cJSON_free it), or NULL (*rc says why). */
static char *claims_json(const thaw_regtoken_claims_t *c, int *rc) {
  unsigned char rnd[16];
  char jti[2 * sizeof rnd + 1];
  if (RAND_bytes(rnd, sizeof rnd) != 1) {
    ERR_clear_error();
    *rc = THAW_EINVAL;
    return NULL;
  }
  for (size_t i = 0; i < sizeof rnd; i++)
    snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
  *rc = THAW_ENOMEM;
  cJSON *o = cJSON_CreateObject();
  cJSON *acc = NULL;
  int ok = o && cJSON_AddStringToObject(o, "iss", c->issuer) &&
           cJSON_AddStringToObject(o, "sub", c->subject) &&
           cJSON_AddStringToObject(o, "aud", c->audience) &&
           add_int(o, "exp", c->now + c->ttl) &&
           add_int(o, "nbf", c->now - THAW_REGTOKEN_SKEW) &&
           add_int(o, "iat", c->now) &&
           cJSON_AddStringToObject(o, "jti", jti) &&
           (acc = cJSON_AddArrayToObject(o, "access")) != NULL;
  for (size_t i = 0; ok && i < c->naccess; i++)
    ok = add_access(acc, &c->access[i]);
  char *json = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return json;
}

/* Signs in[n] with SHA-256 into sig (room for s->sig_max), JWS form. */
static int sign_raw(const thaw_regtoken_signer_t *s, const char *in, size_t n,
                    unsigned char *sig, size_t *sig_len) {
  int rc = THAW_EINVAL;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t der_len = 0;
  unsigned char *der = NULL;
  ECDSA_SIG *es = NULL;
  if (!md)
    return THAW_ENOMEM;
  if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->key) != 1 ||
      EVP_DigestSign(md, NULL, &der_len, (const unsigned char *)in, n) != 1)
    goto done;
  if (!(der = malloc(der_len))) {
    rc = THAW_ENOMEM;
    goto done;
  }
  if (EVP_DigestSign(md, der, &der_len, (const unsigned char *)in, n) != 1)
    goto done;
  if (!s->es256) {
    if (der_len > s->sig_max)
      goto done;
    memcpy(sig, der, der_len);
    *sig_len = der_len;
    rc = 0;
    goto done;
  }
  /* OpenSSL gives ECDSA as DER SEQUENCE{r, s}; JWS wants fixed-width r||s */
  const unsigned char *p = der;
  const BIGNUM *r, *sv;
  if (!(es = d2i_ECDSA_SIG(NULL, &p, (long)der_len)))
    goto done;
  ECDSA_SIG_get0(es, &r, &sv);
  if (BN_bn2binpad(r, sig, ES256_HALF) != ES256_HALF ||
      BN_bn2binpad(sv, sig + ES256_HALF, ES256_HALF) != ES256_HALF)
    goto done;
  *sig_len = 2 * ES256_HALF;
  rc = 0;
done:
  ECDSA_SIG_free(es);
  free(der);
  EVP_MD_CTX_free(md);
  ERR_clear_error();
  return rc;
}

static int claims_valid(const thaw_regtoken_claims_t *c) {
  if (!c->issuer || !*c->issuer || !c->audience || !*c->audience ||
      !c->subject || c->ttl <= 0 || c->naccess > THAW_REGTOKEN_ACCESS_MAX ||
      (c->naccess && !c->access))
    return 0;
  /* exp and nbf must not overflow */
  if (c->now < INT64_MIN + THAW_REGTOKEN_SKEW || c->now > INT64_MAX - c->ttl)
    return 0;
  for (size_t i = 0; i < c->naccess; i++)
    if (!c->access[i].type || !*c->access[i].type || !c->access[i].name ||
        !*c->access[i].name)
      return 0;
  return 1;
}

int thaw_regtoken_sign(const thaw_regtoken_signer_t *s,
                       const thaw_regtoken_claims_t *c, char *out, size_t cap) {
  if (out && cap)
    out[0] = '\0';
  if (!s || !c || !out || !claims_valid(c))
    return THAW_EINVAL;
  int rc;
  char *json = claims_json(c, &rc);
  if (!json)
    return rc;
  size_t jlen = strlen(json);
  /* header . claims . signature NUL */
  size_t need = s->header_len + 1 + b64url_len(jlen) + 1 + b64url_len(s->sig_max) + 1;
  if (need > cap) {
    cJSON_free(json);
    return THAW_E2BIG;
  }
  size_t o = s->header_len;
  memcpy(out, s->header, o);
  out[o++] = '.';
  o += b64url((const unsigned char *)json, jlen, out + o);
  cJSON_free(json);
  unsigned char sig[1024]; /* 8192-bit RSA at most; sig_max is checked */
  size_t sig_len = 0;
  if (s->sig_max > sizeof sig)
    rc = THAW_EINVAL;
  else
    rc = sign_raw(s, out, o, sig, &sig_len);
  if (rc) {
    out[0] = '\0';
    return rc;
  }
  out[o++] = '.';
  o += b64url(sig, sig_len, out + o);
  out[o] = '\0';
  return 0;
}

/* [a-z0-9]+ */
static int lower_alnum(const char *p, size_t n) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9')))
      return 0;
  return 1;
}

/* resourcetype := [a-z0-9]+ [ '(' [a-z0-9]+ ')' ] */
static int type_ok(const char *p, size_t n) {
  const char *open = memchr(p, '(', n);
  if (!open)
    return lower_alnum(p, n);
  size_t head = (size_t)(open - p);
  return lower_alnum(p, head) && n >= head + 3 && p[n - 1] == ')' &&
         lower_alnum(open + 1, n - head - 2);
}

static int name_ok(const char *p, size_t n) {
  if (n == 0 || p[0] == '/')
    return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = p[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || strchr("._/:-", ch)))
      return 0;
  }
  return 1;
}

static unsigned parse_actions(const char *p) {
  static const struct { const char *name; unsigned bit; } acts[] = {
      {"pull", THAW_REGTOKEN_PULL}, {"push", THAW_REGTOKEN_PUSH},
      {"delete", THAW_REGTOKEN_DELETE}, {"*", THAW_REGTOKEN_ALL}};
  unsigned bits = 0;
  while (*p) {
    size_t n = strcspn(p, ",");
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
      if (strlen(acts[i].name) == n && memcmp(acts[i].name, p, n) == 0)
        bits |= acts[i].bit;
    p += n;
    if (*p == ',')
      p++;
  }
  return bits;
}

int thaw_regtoken_parse_scope(const char *scope, char *type, size_t type_cap,
                              char *name, size_t name_cap, unsigned *actions) {
  if (!type || !type_cap || !name || !name_cap || !actions)
    return THAW_EINVAL;
  type[0] = name[0] = '\0';
  *actions = 0;
  if (!scope || strnlen(scope, THAW_REGTOKEN_SCOPE_MAX + 1) > THAW_REGTOKEN_SCOPE_MAX)
    return THAW_EINVAL;
  const char *first = strchr(scope, ':'), *last = strrchr(scope, ':');
  if (!first || last == first)
    return THAW_EINVAL;
  size_t tlen = (size_t)(first - scope), nlen = (size_t)(last - first - 1);
  if (!type_ok(scope, tlen) || !name_ok(first + 1, nlen) || tlen >= type_cap ||
      nlen >= name_cap)
    return THAW_EINVAL;
  memcpy(type, scope, tlen);
  type[tlen] = '\0';
  memcpy(name, first + 1, nlen);
  name[nlen] = '\0';
  *actions = parse_actions(last + 1);
  return 0;
}
