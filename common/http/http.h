/* http.h - asynchronous HTTP client: libcurl's multi-socket API on a uv loop.
 *
 * Owner: the http + kube client module. Used by the Kubernetes client and
 * the OCI registry client.
 *
 * One thaw_http_t serves one uv_loop_t; it owns a curl multi handle, one
 * uv_timer_t and one uv_poll_t per socket (curl's docs/examples/multi-uv.c).
 * Connections are kept and reused between requests; HTTP/2 streams are
 * multiplexed on one connection.
 *
 * Lifetime rules, as in libuv: when thaw_http_start() returns an error, no
 * callback is ever called; when it returns 0, on_done is called exactly once
 * (with THAW_ECANCELED after thaw_http_cancel() or thaw_http_free()), and the
 * request handle is invalid after on_done returns. Every callback may call
 * thaw_http_cancel() on any request, and thaw_http_free(). */
#ifndef THAW_HTTP_H
#define THAW_HTTP_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

typedef struct thaw_http thaw_http_t;
typedef struct thaw_http_req thaw_http_req_t;

/* Outcome of a request, valid during on_done only. */
typedef struct {
  /* 0 when an HTTP response arrived, whatever its status; else
   * THAW_ETRANSPORT (connect, TLS, protocol, reset), THAW_ETIMEDOUT,
   * THAW_E2BIG (body over max_body), THAW_ECANCELED, THAW_ENOMEM, or the
   * negative code a callback returned to abort. */
  int err;
  long status;         /* final HTTP status; 0 if none arrived */
  const char *message; /* transport error text, "" when none; never NULL */
  const char *body;    /* buffered body (only without on_data), NUL-ended */
  size_t body_len;
} thaw_http_result_t;

/* Called once, when the final response's headers are complete (after
 * redirects and 1xx), before any on_data. Return 0, or a negative THAW_E*
 * to abort the request with that error. */
typedef int (*thaw_http_response_cb)(thaw_http_req_t *req, long status,
                                     void *data);
/* A chunk of the response body. Return 0 to go on, THAW_EAGAIN to pause
 * receiving (the chunk is NOT consumed: it is delivered again after
 * thaw_http_unpause()), or another negative THAW_E* to abort with it. */
typedef int (*thaw_http_data_cb)(thaw_http_req_t *req, const char *buf,
                                 size_t len, void *data);
/* Fills buf with up to len request-body bytes. Returns the count, 0 at the
 * end of the body, THAW_EAGAIN to pause sending (resume with
 * thaw_http_unpause()), or another negative THAW_E* to abort. */
typedef ssize_t (*thaw_http_read_cb)(thaw_http_req_t *req, char *buf,
                                     size_t len, void *data);
typedef void (*thaw_http_done_cb)(thaw_http_req_t *req,
                                  const thaw_http_result_t *res, void *data);

enum thaw_http_version {
  THAW_HTTP_DEFAULT = 0, /* HTTP/2 over TLS when the server offers it */
  THAW_HTTP_1_1,
  THAW_HTTP_2_PRIOR,     /* HTTP/2 without ALPN (plain-text h2c) */
};

/* Request options; zero-initialise and set what applies. Everything is
 * copied by thaw_http_start(), except the pointers given to callbacks. */
typedef struct {
  const char *method;           /* "GET" when NULL; "HEAD" sends no body */
  const char *url;              /* http:// or https:// only */
  const char *const *headers;   /* NULL-ended "Name: value" lines */

  /* Request body: a buffer (copied), or a read callback. */
  const void *body;
  size_t body_len;
  thaw_http_read_cb read_cb;
  long long read_len;           /* body size for read_cb; -1 = chunked */

  /* TLS. Verification is on unless insecure; TLS 1.2 is the minimum. */
  const char *ca_file, *ca_pem;     /* trust anchors: file or PEM bytes */
  const char *cert_file, *cert_pem; /* client certificate */
  const char *key_file, *key_pem;   /* its key */
  int insecure;

  long connect_timeout_ms;      /* 0 = 10 s */
  long timeout_ms;              /* whole request; 0 = none */
  long low_speed_bytes;         /* abort when slower than this ... */
  long low_speed_secs;          /* ... for this many seconds; 0 = off */
  long max_redirects;           /* follow up to this many; 0 = don't */
  enum thaw_http_version version;
  size_t max_body;              /* bigger bodies end in THAW_E2BIG; 0 means
                                   64 MiB when buffered, none with on_data */

  thaw_http_response_cb on_response; /* optional */
  thaw_http_data_cb on_data;    /* optional; without it the body is buffered */
  thaw_http_done_cb on_done;    /* required */
  void *data;
} thaw_http_opts_t;

/* Creates a client on `loop`. Returns 0 and sets *out, or THAW_ENOMEM. */
int thaw_http_new(uv_loop_t *loop, thaw_http_t **out);

/* Cancels every request (on_done runs with THAW_ECANCELED for each before
 * this returns) and releases the client; its uv handles close on the next
 * loop iterations, so run the loop until it is empty. NULL does nothing. */
void thaw_http_free(thaw_http_t *h);

/* Queues a request; it starts on the next loop iteration. Returns 0 and sets
 * *out (if out is not NULL), or THAW_EINVAL / THAW_ENOMEM. */
int thaw_http_start(thaw_http_t *h, const thaw_http_opts_t *o,
                    thaw_http_req_t **out);

/* Cancels a request: on_done runs with THAW_ECANCELED before this returns,
 * and no other callback of it runs afterwards. Ignored if already done. */
void thaw_http_cancel(thaw_http_req_t *req);

/* Resumes a request paused with THAW_EAGAIN from on_data or read_cb. Held
 * data may be delivered to on_data before this returns. */
void thaw_http_unpause(thaw_http_req_t *req);

/* A header of the final response (case-insensitive name), valid from
 * on_response until on_done returns; NULL when absent. The value has its
 * surrounding blanks removed. */
const char *thaw_http_header(const thaw_http_req_t *req, const char *name);

/* Limits connections per host (0 = unlimited; the default is 0). */
void thaw_http_set_max_host_connections(thaw_http_t *h, long n);

#endif
