/* tls.c - the serving certificate's SSL_CTX and its reload on file change. */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <h2o.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

#define POLL_MS 1000    /* the fallback when inotify misses a symlink swap */
#define DEBOUNCE_MS 100 /* a swap is several events; act once they settle */

/* TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are all
 * AEAD and keep OpenSSL's default). */
static const char cipher_list_[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/* h2 first; a client that offers neither gets no ALPN and speaks HTTP/1.1. */
static const h2o_iovec_t alpn_[] = {
    {H2O_STRLIT("h2")}, {H2O_STRLIT("http/1.1")}, {NULL, 0}};

/* What identifies a file's content without reading it. */
typedef struct {
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  int ok; /* 0 when stat() failed */
} fileid_t;

struct thaw_tls {
  uv_loop_t *loop;
  char *cert_file, *key_file;
  SSL_CTX *ctx;
  fileid_t cert_id, key_id; /* of the files last tried */
  int missing_logged;
  uv_timer_t poll, debounce;
  uv_fs_event_t watch[2];
  int nwatch;
  int started;
  int open_handles; /* handles not yet closed; freed at zero after free() */
  int free_pending;
  thaw_tls_reload_cb cb;
  void *cb_data;
};

/* The reason of the last OpenSSL error, for one-line messages. */
static const char *ssl_reason(char *buf, size_t len) {
  unsigned long e = ERR_peek_last_error();
  if (e == 0)
    snprintf(buf, len, "no PEM data");
  else
    ERR_error_string_n(e, buf, len);
  ERR_clear_error();
  return buf;
}

/* Reads at most THAW_TLS_FILE_MAX bytes of `path` into *buf (malloc'd). */
static int read_file(const char *path, char **buf, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  size_t cap = 16384, n = 0;
  char *b = malloc(cap);
  int rc = b ? 0 : THAW_ENOMEM;
  while (rc == 0) {
    if (n == cap) {
      if (cap > THAW_TLS_FILE_MAX) {
        rc = THAW_E2BIG;
        break;
      }
      char *nb = realloc(b, cap * 2);
      if (nb == NULL) {
        rc = THAW_ENOMEM;
        break;
      }
      b = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, b + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      rc = -errno;
    else if (r == 0)
      break;
    else
      n += (size_t)r;
  }
  close(fd);
  if (rc == 0 && n > THAW_TLS_FILE_MAX)
    rc = THAW_E2BIG;
  if (rc != 0) {
    free(b);
    return rc;
  }
  *buf = b;
  *len = n;
  return 0;
}

/* Never prompt for a pass phrase: an encrypted key is a configuration error. */
static int no_password(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1;
}

static int use_cert_chain(SSL_CTX *ctx, const char *pem, size_t len,
                          const char *path, char *err, size_t errlen) {
  char why[256];
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (bio == NULL)
    return THAW_ENOMEM;
  int rc = 0;
  X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, no_password, NULL);
  if (leaf == NULL || SSL_CTX_use_certificate(ctx, leaf) != 1) {
    rc = thaw_errf(err, errlen, THAW_ECONFIG, "%s: no usable certificate: %s",
                   path, ssl_reason(why, sizeof why));
    goto out;
  }
  X509 *ca;
  while ((ca = PEM_read_bio_X509(bio, NULL, no_password, NULL)) != NULL) {
    if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
      X509_free(ca);
      rc = thaw_errf(err, errlen, THAW_ECONFIG, "%s: bad chain certificate: %s",
                     path, ssl_reason(why, sizeof why));
      goto out;
    }
  }
  ERR_clear_error(); /* the end of the PEM data reads as an error */
out:
  X509_free(leaf);
  BIO_free(bio);
  return rc;
}

static int use_key(SSL_CTX *ctx, const char *pem, size_t len, const char *path,
                   char *err, size_t errlen) {
  char why[256];
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (bio == NULL)
    return THAW_ENOMEM;
  int rc = 0;
  EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
  if (key == NULL || SSL_CTX_use_PrivateKey(ctx, key) != 1)
    rc = thaw_errf(err, errlen, THAW_ECONFIG, "%s: no usable private key: %s",
                   path, ssl_reason(why, sizeof why));
  else if (SSL_CTX_check_private_key(ctx) != 1)
    rc = thaw_errf(err, errlen, THAW_ECONFIG,
                   "%s: private key does not match the certificate", path);
  ERR_clear_error();
  EVP_PKEY_free(key);
  BIO_free(bio);
  return rc;
}

static int new_policy_ctx(SSL_CTX **out, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL)
    return THAW_ENOMEM;
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, cipher_list_) != 1) {
    SSL_CTX_free(ctx);
    return thaw_errf(err, errlen, THAW_ECONFIG,
                     "TLS policy refused by OpenSSL");
  }
  /* idle connections give their 34 KB read/write buffers back */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  h2o_ssl_register_alpn_protocols(ctx, alpn_);
  *out = ctx;
  return 0;
}

int thaw_tls_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out,
                     char *err, size_t errlen) {
  char *cert = NULL, *key = NULL;
  size_t cert_len = 0, key_len = 0;
  SSL_CTX *ctx = NULL;
  int rc;
  *out = NULL;
  if ((rc = read_file(cert_file, &cert, &cert_len)) != 0) {
    rc = rc == THAW_ENOMEM ? rc
                           : thaw_errf(err, errlen, THAW_ECONFIG, "%s: %s",
                                       cert_file, thaw_strerror(rc));
    goto out;
  }
  if ((rc = read_file(key_file, &key, &key_len)) != 0) {
    rc = rc == THAW_ENOMEM ? rc
                           : thaw_errf(err, errlen, THAW_ECONFIG, "%s: %s",
                                       key_file, thaw_strerror(rc));
    goto out;
  }
  if ((rc = new_policy_ctx(&ctx, err, errlen)) != 0 ||
      (rc = use_cert_chain(ctx, cert, cert_len, cert_file, err, errlen)) != 0 ||
      (rc = use_key(ctx, key, key_len, key_file, err, errlen)) != 0)
    goto out;
  *out = ctx;
  ctx = NULL;
out:
  SSL_CTX_free(ctx);
  if (key != NULL)
    OPENSSL_cleanse(key, key_len); /* key bytes do not linger on the heap */
  free(key);
  free(cert);
  return rc;
}

/* Serial (hex) and notAfter (Unix seconds) of the context's certificate. */
static void describe(SSL_CTX *ctx, char *serial, size_t len,
                     double *not_after) {
  X509 *x = SSL_CTX_get0_certificate(ctx);
  snprintf(serial, len, "?");
  *not_after = 0;
  if (x == NULL)
    return;
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  if (hex != NULL)
    snprintf(serial, len, "%s", hex);
  OPENSSL_free(hex);
  BN_free(bn);
  struct tm tm;
  if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
    *not_after = (double)timegm(&tm);
}

static void fileid(const char *path, fileid_t *id) {
  struct stat st;
  memset(id, 0, sizeof *id);
  if (stat(path, &st) != 0) /* follows the ..data symlink */
    return;
  id->dev = st.st_dev;
  id->ino = st.st_ino;
  id->size = st.st_size;
  id->mtime = st.st_mtim;
  id->ok = 1;
}

static int fileid_eq(const fileid_t *a, const fileid_t *b) {
  return a->ok == b->ok && a->dev == b->dev && a->ino == b->ino &&
         a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
         a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void log_loaded(thaw_tls_t *t, const char *msg) {
  char serial[128], when[32] = "";
  double not_after;
  describe(t->ctx, serial, sizeof serial, &not_after);
  time_t na = (time_t)not_after;
  struct tm tm;
  if (gmtime_r(&na, &tm) != NULL)
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  thaw_info(msg, "cert_file", t->cert_file, "serial", serial, "not_after",
            when);
  if (t->cb != NULL)
    t->cb(0, serial, not_after, t->cb_data);
}

/* Rebuilds the context when either file changed since the last attempt. */
static void check(thaw_tls_t *t) {
  fileid_t c, k, c2, k2;
  fileid(t->cert_file, &c);
  fileid(t->key_file, &k);
  if (!c.ok || !k.ok) {
    /* Mid-swap, or deleted: keep serving, say so once. */
    if (!t->missing_logged)
      thaw_warn("tls files missing; keeping the current certificate",
                "cert_file", t->cert_file, "key_file", t->key_file);
    t->missing_logged = 1;
    return;
  }
  t->missing_logged = 0;
  if (fileid_eq(&c, &t->cert_id) && fileid_eq(&k, &t->key_id))
    return;
  char err[512];
  SSL_CTX *ctx;
  int rc = thaw_tls_ctx_new(t->cert_file, t->key_file, &ctx, err, sizeof err);
  fileid(t->cert_file, &c2);
  fileid(t->key_file, &k2);
  if (!fileid_eq(&c, &c2) || !fileid_eq(&k, &k2)) {
    /* The files moved while being read: try again on the next tick. */
    SSL_CTX_free(ctx);
    return;
  }
  t->cert_id = c;
  t->key_id = k;
  if (rc != 0) {
    thaw_error("tls reload failed; keeping the current certificate",
               "cert_file", t->cert_file, "error",
               err[0] ? err : thaw_strerror(rc));
    if (t->cb != NULL)
      t->cb(rc, NULL, 0, t->cb_data);
    return;
  }
  /* Connections hold their own reference (server.c, then SSL_new). */
  SSL_CTX_free(t->ctx);
  t->ctx = ctx;
  log_loaded(t, "tls certificate reloaded");
}

static void on_poll(uv_timer_t *h) { check(h->data); }

static void on_debounce(uv_timer_t *h) { check(h->data); }

static void on_fs_event(uv_fs_event_t *h, const char *name, int events,
                        int status) {
  (void)name, (void)events, (void)status;
  thaw_tls_t *t = h->data;
  uv_timer_start(&t->debounce, on_debounce, DEBOUNCE_MS, 0);
}

int thaw_tls_new(uv_loop_t *loop, const char *cert_file, const char *key_file,
                 thaw_tls_t **out, char *err, size_t errlen) {
  *out = NULL;
  thaw_tls_t *t = calloc(1, sizeof *t);
  if (t == NULL)
    return THAW_ENOMEM;
  t->loop = loop;
  t->cert_file = strdup(cert_file);
  t->key_file = strdup(key_file);
  if (t->cert_file == NULL || t->key_file == NULL) {
    thaw_tls_free(t);
    return THAW_ENOMEM;
  }
  fileid(cert_file, &t->cert_id);
  fileid(key_file, &t->key_id);
  int rc = thaw_tls_ctx_new(cert_file, key_file, &t->ctx, err, errlen);
  if (rc != 0) {
    thaw_tls_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void thaw_tls_set_observer(thaw_tls_t *t, thaw_tls_reload_cb cb, void *data) {
  t->cb = cb;
  t->cb_data = data;
}

/* The directory of `path` into dir[len]. */
static void dir_of(const char *path, char *dir, size_t len) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL)
    snprintf(dir, len, ".");
  else if (slash == path)
    snprintf(dir, len, "/");
  else
    snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

int thaw_tls_start(thaw_tls_t *t) {
  if (t->started)
    return THAW_EINVAL;
  t->started = 1;
  uv_timer_init(t->loop, &t->poll);
  uv_timer_init(t->loop, &t->debounce);
  t->poll.data = t->debounce.data = t;
  t->open_handles = 2;
  uv_timer_start(&t->poll, on_poll, POLL_MS, POLL_MS);

  char dirs[2][4096];
  dir_of(t->cert_file, dirs[0], sizeof dirs[0]);
  dir_of(t->key_file, dirs[1], sizeof dirs[1]);
  int n = strcmp(dirs[0], dirs[1]) == 0 ? 1 : 2;
  /* THAW_TLS_POLL_ONLY=1 leaves inotify out, so tests cover the fallback. */
  const char *poll_only = getenv("THAW_TLS_POLL_ONLY");
  if (poll_only != NULL && strcmp(poll_only, "1") == 0)
    n = 0;
  for (int i = 0; i < n; i++) {
    uv_fs_event_t *w = &t->watch[t->nwatch];
    uv_fs_event_init(t->loop, w);
    w->data = t;
    t->nwatch++;
    t->open_handles++;
    int rc = uv_fs_event_start(w, on_fs_event, dirs[i], 0);
    if (rc != 0) /* inotify limits, say: polling still catches changes */
      thaw_warn("cannot watch tls directory; polling only", "dir", dirs[i],
                "error", uv_strerror(rc));
  }
  log_loaded(t, "tls certificate loaded");
  return 0;
}

SSL_CTX *thaw_tls_ctx(const thaw_tls_t *t) { return t->ctx; }

static void release(thaw_tls_t *t) {
  SSL_CTX_free(t->ctx);
  free(t->cert_file);
  free(t->key_file);
  free(t);
}

static void on_closed(uv_handle_t *h) {
  thaw_tls_t *t = h->data;
  if (--t->open_handles == 0 && t->free_pending)
    release(t);
}

void thaw_tls_stop(thaw_tls_t *t) {
  if (t == NULL || !t->started || t->started == 2)
    return;
  t->started = 2;
  uv_close((uv_handle_t *)&t->poll, on_closed);
  uv_close((uv_handle_t *)&t->debounce, on_closed);
  for (int i = 0; i < t->nwatch; i++)
    uv_close((uv_handle_t *)&t->watch[i], on_closed);
}

void thaw_tls_free(thaw_tls_t *t) {
  if (t == NULL)
    return;
  thaw_tls_stop(t);
  if (t->open_handles == 0)
    release(t);
  else
    t->free_pending = 1;
}
