/* httpd_internal.h - shared by httpd.c (connections) and httpd_parse.c
 * (the request head, parsed in place, no I/O). */
#ifndef THAW_HTTPD_INTERNAL_H
#define THAW_HTTPD_INTERNAL_H

#include <stddef.h>

#define HTTPD_HEAD_MAX 8192 /* request line + headers */

/* One parsed request; its strings point into the connection's buffer. */
typedef struct {
  int status; /* 0: serve it; else the error to answer */
  int head;   /* HEAD: headers only */
  int close;  /* close after the reply */
  int allow;  /* send the server's Allow header (405) */
  int post;   /* POST: served only by servers that accept it (httpd.c) */
  int body;   /* Content-Length > 0 or chunked; never read (close is set) */
  const char *method; /* "GET", "HEAD" or "POST" when status is 0 */
  const char *path;   /* without query or fragment */
  const char *query;  /* after '?', before '#'; "" when none; raw */
  const char *authorization; /* trimmed value; NULL when absent */
} req_t;

/* Parses the request at buf[0..len) in place (it writes NULs into buf).
 * Returns the bytes it takes, with *r filled (r->status 0: serve it, else
 * the error to answer), or 0 while the head is incomplete. A POST and a
 * body come back with status 0: httpd.c answers them 405 or 413 unless its
 * handler takes them. */
size_t httpd_parse_request(char *buf, size_t len, req_t *r);

#endif
