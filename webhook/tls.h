/* tls.h - the webhook's serving certificate: an OpenSSL server context built
 * from a certificate and key file, rebuilt when the files change.
 *
 * Policy: TLS 1.2 minimum; TLS 1.2 offers only ECDHE with AES-GCM or
 * ChaCha20-Poly1305, TLS 1.3 keeps OpenSSL's default suites; no compression,
 * no renegotiation; ALPN selects h2, else http/1.1.
 *
 * Reload: cert-manager and Secret volumes replace the files by swapping a
 * symlink (`..data` -> a new directory), so the directories holding the files
 * are watched (uv_fs_event) and, because inotify on symlink swaps is easy to
 * miss, the files are also stat()ed every second; a change of (dev, inode,
 * size, mtime) of either resolved file triggers a rebuild. A new context is
 * only taken when the key matches the certificate; otherwise the old one
 * keeps serving and the error is logged once per change. (The environment
 * variable THAW_TLS_POLL_ONLY=1 turns the directory watch off, for tests of
 * the polling path.) Connections hold a
 * reference on the context they were accepted with (SSL_new), so freeing the
 * old context here never cuts a live connection. Everything runs on the
 * loop's thread. */
#ifndef THAW_WEBHOOK_TLS_H
#define THAW_WEBHOOK_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <uv.h>

/* Largest certificate chain or key file read (bytes). */
#define THAW_TLS_FILE_MAX (1u << 20)

typedef struct thaw_tls thaw_tls_t;

/* Called after every reload attempt: err 0 when a new context was taken
 * (then `serial` is its certificate's serial in hex and `not_after` its
 * expiry as Unix seconds), else the THAW_E* of the failed attempt (the old
 * context stays). */
typedef void (*thaw_tls_reload_cb)(int err, const char *serial,
                                   double not_after, void *data);

/* Builds a server context from PEM files (a chain: leaf first). Returns 0
 * and sets *out (the caller owns it: SSL_CTX_free), or THAW_ECONFIG with a
 * one-line reason in err (unreadable file, no certificate, bad key, key not
 * matching the certificate), or THAW_ENOMEM. */
int thaw_tls_ctx_new(const char *cert_file, const char *key_file,
                     SSL_CTX **out, char *err, size_t errlen);

/* Loads the files once (errors as thaw_tls_ctx_new) and prepares watching
 * them. Paths are copied. */
int thaw_tls_new(uv_loop_t *loop, const char *cert_file, const char *key_file,
                 thaw_tls_t **out, char *err, size_t errlen);
void thaw_tls_set_observer(thaw_tls_t *t, thaw_tls_reload_cb cb, void *data);
/* Starts watching. Returns 0 or a negative libuv/THAW_E* code. */
int thaw_tls_start(thaw_tls_t *t);
/* The context new connections must use. Valid until the next loop
 * iteration: take a reference (SSL_new does) before returning to the loop. */
SSL_CTX *thaw_tls_ctx(const thaw_tls_t *t);
/* Stops watching; handles close on the next loop iterations. */
void thaw_tls_stop(thaw_tls_t *t);
/* Stops and frees, with the current context; memory goes once the handles
 * have closed (run the loop). NULL does nothing. */
void thaw_tls_free(thaw_tls_t *t);

#endif
