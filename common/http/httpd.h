/* httpd.h - a small plain-HTTP/1.1 server on a uv loop for /metrics,
 * /healthz and /readyz (the controller's metrics port; the webhook serves
 * these from h2o), the agents' control APIs and the controller's token
 * endpoint.
 *
 * GET and HEAD (and POST without a body, from thaw_httpd_start_post());
 * a request line and headers of at most 8 KiB; request bodies are never
 * read: refused (413 when Content-Length > 0 or chunked), or only told to
 * a thaw_httpd_start_request() handler, and the connection closes after
 * the reply; keep-alive
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

/* The whole request, for a thaw_httpd_start_request() handler. Every
 * string points into the connection's buffer and is valid during the
 * handler's call only. */
typedef struct {
  const char *method;        /* "GET", "HEAD" or "POST" */
  const char *path;          /* without the query */
  const char *query;         /* after '?', before any '#'; "" when none;
                                raw (not decoded: thaw_httpd_query_next()) */
  const char *authorization; /* the Authorization header's value, trimmed;
                                NULL when absent (two of them: 400, the
                                handler is not called) */
  int has_body;              /* the request carried a body (Content-Length
                                > 0 or chunked); it is not read */
} thaw_httpd_request_t;

/* Fills *reply for *req, as thaw_httpd_method_cb does. */
typedef void (*thaw_httpd_request_cb)(const thaw_httpd_request_t *req,
                                      thaw_httpd_reply_t *reply, void *data);

/* As thaw_httpd_start_post(), with the whole request. A request with a
 * body is still not read (the connection closes after the reply), but it
 * is passed to the handler (has_body) instead of a 413, so that a token
 * endpoint can answer a POST (OAuth2 form, which containerd tries first)
 * with 404/405 and make the client fall back to GET. */
int thaw_httpd_start_request(uv_loop_t *loop, const char *address,
                             thaw_httpd_request_cb handler, void *data,
                             thaw_httpd_t **out, char *err, size_t errlen);

/* Decodes the parameters of `query` (application/x-www-form-urlencoded,
 * as thaw_httpd_request_t.query holds it) one by one: start with *pos = 0.
 * Returns 1 and writes the next name and value, percent- and '+'-decoded
 * and NUL-ended, into name[0..name_cap) and value[0..value_cap) while
 * parameters remain; 0 at the end. Repeated names (scope=a&scope=b) come
 * out one at a time in order; a parameter without '=' has the value "";
 * empty ones ("a&&b") are skipped. Returns THAW_EINVAL for a bad escape
 * ("%zz", "%4"), an escaped NUL ("%00"), a name or value longer than its
 * cap allows, or a NULL argument: the caller should answer 400. *pos is
 * only advanced past a parameter that was returned. */
int thaw_httpd_query_next(const char *query, size_t *pos, char *name,
                          size_t name_cap, char *value, size_t value_cap);

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
