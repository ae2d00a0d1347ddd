/* server.h - thaw-webhook's two HTTP listeners, on libh2o and the daemon's
 * one uv loop.
 *
 * The TLS listener (--bind-address, HTTP/1.1 and HTTP/2 by ALPN) serves
 * POST /mutate:
 *   - another method: 405; a Content-Type other than application/json (with
 *     or without parameters): 415; a body over THAW_SERVER_MAX_BODY: 413, on
 *     HTTP/2 as on HTTP/1.1 (h2o itself accepts up to
 *     THAW_SERVER_H2O_MAX_ENTITY, so the status is ours, not a stream reset;
 *     bigger bodies get h2o's 413 on HTTP/1.1 and a reset on HTTP/2);
 *   - the review callback's answer: 200 application/json, or 400 with its
 *     one-line reason for a malformed review, or 500.
 * Any other path is 404. The plain listener (--metrics-bind-address) serves
 * GET /metrics (Prometheus text 0.0.4), /healthz (200 while the loop runs)
 * and /readyz (200 when the ready callback says so, else 503).
 *
 * Time limits ("too long" is 10 s): a TLS handshake must finish within
 * 10 s, and an idle connection is closed after 10 s (h2o: HTTP/1.1
 * keep-alive, HTTP/2 with no stream making progress). On HTTP/1.1, h2o's
 * req_timeout also bounds a whole request, headers and body. On HTTP/2, a
 * body that trickles in is not bounded by h2o 2.2.5, so a watchdog here
 * (every second) shuts down a connection whose request bytes started
 * arriving THAW_SERVER_TIMEOUT_MS ago with no request handled since. So a
 * client that sends headers and never the body, or its body a byte a second,
 * is cut after 10-11 s on both protocols. The watchdog's clock restarts
 * whenever a request of the connection is handled, so on HTTP/2 a stalled
 * stream beside busy ones lives until the connection goes idle.
 *
 * Metrics (registered on the given registry): thaw_webhook_requests_total
 * {code} for every answer on /mutate, and
 * thaw_webhook_admission_duration_seconds for the time from the handler's
 * start to the queued answer of each /mutate request. */
#ifndef THAW_WEBHOOK_SERVER_H
#define THAW_WEBHOOK_SERVER_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "metrics.h"
#include "tls.h"

#define THAW_SERVER_MAX_BODY (3u << 20)        /* AdmissionReview limit */
#define THAW_SERVER_H2O_MAX_ENTITY (16u << 20) /* h2o's own limit */
#define THAW_SERVER_TIMEOUT_MS 10000
#define THAW_SERVER_DRAIN_MS 25000 /* graceful stop: then give up waiting */

typedef struct thaw_server thaw_server_t;

/* Decides one AdmissionReview. Returns 0 and sets *out (malloc'd; the
 * server frees it), THAW_EPARSE with a one-line reason in err (answered
 * 400), or another THAW_E* (answered 500). Must not block. */
typedef int (*thaw_server_review_cb)(const char *body, size_t len, char **out,
                                     size_t *out_len, char *err, size_t errlen,
                                     void *data);
/* 1 when the daemon is ready (/readyz). */
typedef int (*thaw_server_ready_cb)(void *data);
/* The end of a graceful stop: drained is 1 when every connection closed
 * (everything is released; run the loop to let handles close), 0 when the
 * drain deadline passed with connections still open (the h2o contexts are
 * then left alone: exit without freeing). */
typedef void (*thaw_server_stopped_cb)(int drained, void *data);

typedef struct {
  const char *bind_address;         /* TLS listener, "HOST:PORT" */
  const char *metrics_bind_address; /* plain listener, "HOST:PORT" */
  thaw_tls_t *tls;                  /* the serving certificate */
  thaw_metrics_t *metrics;          /* rendered on /metrics */
  thaw_server_review_cb review;
  thaw_server_ready_cb ready;
  void *data;
} thaw_server_opts_t;

/* Parses "HOST:PORT", ":PORT" (every address) or "[V6]:PORT"; HOST is an IP
 * literal or "localhost". Port 0 asks for any free port. Returns 0, or
 * THAW_ECONFIG with a one-line reason in err. */
int thaw_server_parse_address(const char *s, struct sockaddr_storage *out,
                              char *err, size_t errlen);

/* Checks the addresses and sets up h2o. Returns 0, THAW_ECONFIG (err says
 * why) or THAW_ENOMEM. Nothing listens yet. */
int thaw_server_new(uv_loop_t *loop, const thaw_server_opts_t *o,
                    thaw_server_t **out, char *err, size_t errlen);
/* Binds and listens on both addresses, logging each ("listening", with the
 * bound address, so port 0 can be read back). Returns 0 or a negative libuv
 * code with err set. */
int thaw_server_start(thaw_server_t *s, char *err, size_t errlen);
/* Graceful stop: closes the listeners, asks HTTP/2 connections to go away
 * (GOAWAY), lets requests in flight finish, and calls `cb` once every
 * connection closed. h2o 2.2.5 does not close idle HTTP/1.1 keep-alive
 * connections on shutdown, so those hold the stop until their 10 s idle
 * timeout. Connections still open after THAW_SERVER_DRAIN_MS are shut down;
 * if even that does not close them within 5 s, `cb` reports drained = 0.
 * Call once. */
void thaw_server_stop(thaw_server_t *s, thaw_server_stopped_cb cb, void *data);
/* Frees the h2o configuration and the server. Call after the stop callback
 * reported drained and the loop ran, or instead of stop when never started.
 * NULL does nothing. */
void thaw_server_free(thaw_server_t *s);

#endif
