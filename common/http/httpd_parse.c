/* httpd_parse.c - the pure part of httpd.c: one HTTP/1.1 request head
 * parsed in place (httpd_internal.h), and the query's parameters decoded
 * (thaw_httpd_query_next() of httpd.h). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "httpd.h"
#include "httpd_internal.h"

static int is_tchar(unsigned char ch) {
  return ch != 0 && (isalnum(ch) || strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* The length of the header block, through its empty line, or 0 while it
 * is incomplete. Bare LF line ends are accepted, as RFC 9112 allows. */
static size_t header_end(const char *buf, size_t len) {
  for (size_t i = 0; i + 1 < len; i++) {
    if (buf[i] != '\n')
      continue;
    if (buf[i + 1] == '\n')
      return i + 2;
    if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
      return i + 3;
  }
  return 0;
}

/* Cuts the next line out of [*p, stop) and NUL-terminates it. NULL when it
 * holds a control character (a CR other than the last, NUL, ...): such
 * bytes are how request smuggling starts, so they are refused. */
static char *next_line(char **p, char *stop) {
  char *line = *p, *eol = memchr(line, '\n', (size_t)(stop - line));
  *p = eol + 1;
  *eol = '\0';
  if (eol > line && eol[-1] == '\r')
    *--eol = '\0';
  for (char *q = line; q < eol; q++)
    if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
      return NULL;
  return line;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    s[--n] = '\0';
  return s;
}

/* Has the comma-separated header value `v` the token `tok`? */
static int has_token(const char *v, const char *tok) {
  size_t n = strlen(tok);
  while (*v) {
    while (*v == ' ' || *v == '\t' || *v == ',')
      v++;
    size_t m = strcspn(v, ",");
    size_t k = m;
    while (k > 0 && (v[k - 1] == ' ' || v[k - 1] == '\t'))
      k--;
    if (k == n && strncasecmp(v, tok, n) == 0)
      return 1;
    v += m;
  }
  return 0;
}

size_t httpd_parse_request(char *buf, size_t len, req_t *r) {
  size_t end = header_end(buf, len);
  memset(r, 0, sizeof *r);
  if (end == 0)
    return 0;
  r->close = 1; /* until the request is known to be sound */
  char *p = buf, *stop = buf + end;
  char *line = next_line(&p, stop);
  if (line == NULL)
    goto bad;

  /* method SP request-target SP HTTP-version, single spaces */
  char *sp1 = strchr(line, ' ');
  char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (sp1 == NULL || sp2 == NULL || strchr(sp2 + 1, ' ') != NULL ||
      sp1 == line || sp1 - line > 32)
    goto bad;
  *sp1 = *sp2 = '\0';
  const char *method = line, *version = sp2 + 1;
  char *target = sp1 + 1;
  for (const char *m = method; *m; m++)
    if (!is_tchar((unsigned char)*m))
      goto bad;
  for (const char *t = target; *t; t++)
    if ((unsigned char)*t <= ' ' || (unsigned char)*t >= 0x7f)
      goto bad;
  int http10 = 0;
  if (strcmp(version, "HTTP/1.1") == 0)
    http10 = 0;
  else if (strcmp(version, "HTTP/1.0") == 0)
    http10 = 1;
  else if (strlen(version) == 8 && strncmp(version, "HTTP/", 5) == 0 &&
           isdigit((unsigned char)version[5]) && version[6] == '.' &&
           isdigit((unsigned char)version[7])) {
    r->status = 505;
    return end;
  } else
    goto bad;

  /* origin-form, or absolute-form (which servers must accept) */
  char *path = target;
  if (strncasecmp(target, "http://", 7) == 0 ||
      strncasecmp(target, "https://", 8) == 0) {
    char *authority = strstr(target, "://") + 3;
    path = authority + strcspn(authority, "/?#");
  } else if (strcmp(target, "*") != 0 && target[0] != '/')
    goto bad;
  /* The query runs from '?' to any '#' (a fragment is not sent by
   * clients, but is cut rather than handed on). */
  char *hash = strchr(path, '#');
  if (hash != NULL)
    *hash = '\0';
  char *question = strchr(path, '?');
  r->query = "";
  if (question != NULL) {
    *question = '\0';
    r->query = question + 1;
  }
  r->path = path[0] ? path : "/"; /* "http://host?q" */

  int hosts = 0, auths = 0, te = 0, cl_seen = 0, conn_close = 0;
  unsigned long long cl = 0;
  for (;;) {
    line = next_line(&p, stop);
    if (line == NULL)
      goto bad;
    if (line[0] == '\0')
      break;
    if (line[0] == ' ' || line[0] == '\t')
      goto bad; /* obsolete line folding */
    char *colon = strchr(line, ':');
    if (colon == NULL || colon == line)
      goto bad;
    *colon = '\0';
    for (const char *n = line; *n; n++)
      if (!is_tchar((unsigned char)*n))
        goto bad;
    char *value = trim(colon + 1);
    if (strcasecmp(line, "host") == 0) {
      hosts++;
    } else if (strcasecmp(line, "authorization") == 0) {
      auths++; /* two would leave it open which one is checked */
      r->authorization = value;
    } else if (strcasecmp(line, "content-length") == 0) {
      size_t n = strlen(value);
      if (n == 0 || n > 18 || strspn(value, "0123456789") != n)
        goto bad;
      unsigned long long v = strtoull(value, NULL, 10);
      if (cl_seen && v != cl)
        goto bad;
      cl = v;
      cl_seen = 1;
    } else if (strcasecmp(line, "transfer-encoding") == 0) {
      te = 1;
    } else if (strcasecmp(line, "connection") == 0) {
      conn_close |= has_token(value, "close");
    }
  }
  if ((!http10 && hosts != 1) || hosts > 1 || auths > 1 || (te && cl_seen))
    goto bad;
  r->body = te || cl > 0;
  r->head = strcmp(method, "HEAD") == 0;
  r->post = strcmp(method, "POST") == 0;
  r->method = method;
  /* An unread body would be taken for the next request: close after. */
  r->close = http10 || conn_close || r->body;
  if (!r->head && !r->post && strcmp(method, "GET") != 0) {
    r->status = 405;
    r->allow = 1;
  }
  /* Whether a POST or a body is served is httpd.c's choice (405, 413). */
  return end;

bad:
  memset(r, 0, sizeof *r);
  r->status = 400;
  r->close = 1;
  return end;
}

/* --- the query ------------------------------------------------------- */

static int hex_value(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* Decodes src[0..n) ('+' is a space, %XX a byte) into out[0..cap) with a
 * NUL. THAW_EINVAL for a bad or NUL escape, or when it does not fit. */
static int form_decode(const char *src, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = src[i];
    if (ch == '+') {
      ch = ' ';
    } else if (ch == '%') {
      if (i + 2 >= n) /* "%4" at the end of the name or value */
        return THAW_EINVAL;
      int hi = hex_value(src[i + 1]), lo = hex_value(src[i + 2]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
        return THAW_EINVAL;
      ch = (char)(hi << 4 | lo);
      i += 2;
    }
    if (o + 1 >= cap)
      return THAW_EINVAL;
    out[o++] = ch;
  }
  out[o] = '\0';
  return 0;
}

int thaw_httpd_query_next(const char *query, size_t *pos, char *name,
                          size_t name_cap, char *value, size_t value_cap) {
  if (query == NULL || pos == NULL || name == NULL || value == NULL ||
      name_cap == 0 || value_cap == 0)
    return THAW_EINVAL;
  size_t len = strlen(query), at = *pos;
  if (at > len)
    return THAW_EINVAL;
  while (query[at] == '&')
    at++;
  if (query[at] == '\0') {
    *pos = at;
    return 0;
  }
  const char *param = query + at;
  size_t n = strcspn(param, "&");
  const char *eq = memchr(param, '=', n);
  size_t name_len = eq ? (size_t)(eq - param) : n;
  int rc = form_decode(param, name_len, name, name_cap);
  if (rc == 0 && eq)
    rc = form_decode(eq + 1, n - name_len - 1, value, value_cap);
  else if (rc == 0)
    value[0] = '\0';
  if (rc != 0)
    return rc;
  *pos = at + n;
  return 1;
}
