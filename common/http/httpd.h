/* httpd.h - a small plain-HTTP/1.1 server on a uv loop for /metrics,
 * /healthz and /readyz (the controller's metrics port; the webhook serves
 * these from h2o).
 *
 * GET and HEAD (and POST without a body, from thaw_httpd_start_post());
 * a request line and headers of at most 8 KiB; request bodies are refused
 * (413 when Content-Length > 0 or chunked); keep-alive
 * with a 30 s idle timeout and at most 256 open connections (further ones
 * are accepted and closed at once). A client that has not sent a whole
 * request within 10 s is disconnected. Responses are built by the handler
 * and written whole. Single-threaded, on the loop's thread. */
#ifndef THAW_HTTPD_H
#define THAW_HTTPD_H

#include <stddef.h>
#include <uv.h>

#include "metrics.h"

typedef struct thaw_httpd thaw_httpd_t;

typedef struct {
  int status;              /* 200, 404, 503, ... */
  const char *content_type;/* NULL = "text/plain; charset=utf-8" */
  char *body;              /* malloc'd; the server frees it; may be NULL */
  size_t len;
  const char *allow;       /* static; sent as "Allow: ..." (for a 405);
                              NULL: none */
} thaw_httpd_reply_t;

/* Fills *reply for `path` (without the query string). Unset status means 404.
 * Runs on the loop. */
typedef void (*thaw_httpd_handler_cb)(const char *path, thaw_httpd_reply_t *reply,
                                      void *data);

/* Binds `address` ("HOST:PORT", ":PORT" for every address, "[::1]:PORT")
 * and starts listening. Returns 0 and sets *out; THAW_EINVAL for a bad
 * address; THAW_EIO when bind/listen fails (err gets a line saying why). */
int thaw_httpd_start(uv_loop_t *loop, const char *address,
                     thaw_httpd_handler_cb handler, void *data,
                     thaw_httpd_t **out, char *err, size_t errlen);

/* A handler that is told the method: "GET", "HEAD" (fill the reply as for
 * GET; its body is not sent) or "POST". */
typedef void (*thaw_httpd_method_cb)(const char *method, const char *path,
                                     thaw_httpd_reply_t *reply, void *data);

/* As thaw_httpd_start(), and POST is served too, without a body (a POST
 * with one gets 413 like any request); other methods get 405 with "Allow:
 * GET, HEAD, POST". For the small control APIs of the agents. */
int thaw_httpd_start_post(uv_loop_t *loop, const char *address,
                          thaw_httpd_method_cb handler, void *data,
                          thaw_httpd_t **out, char *err, size_t errlen);

/* Sets *reply to status and a copy of text (on no memory: status, no
 * body). */
void thaw_httpd_reply_text(thaw_httpd_reply_t *reply, int status,
                           const char *text);

/* Sets *reply to m's text exposition (200), or 500 when out of memory. */
void thaw_httpd_reply_metrics(thaw_httpd_reply_t *reply, thaw_metrics_t *m);

/* The bound port (useful with port 0). */
int thaw_httpd_port(const thaw_httpd_t *s);

/* Closes the listener and every connection; memory is released once their
 * handles are closed (run the loop). NULL does nothing. */
void thaw_httpd_free(thaw_httpd_t *s);

#endif
