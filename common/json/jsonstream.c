/* jsonstream.c - newline-delimited JSON, decoded as bytes arrive. */
#include "jsonstream.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

void thaw_jsonstream_init(thaw_jsonstream_t *s, size_t max_line) {
  memset(s, 0, sizeof *s);
  s->max = max_line;
}

void thaw_jsonstream_free(thaw_jsonstream_t *s) {
  free(s->buf);
  s->buf = NULL;
  s->len = s->cap = 0;
}

size_t thaw_jsonstream_pending(const thaw_jsonstream_t *s) { return s->len; }

static int is_blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
      return 0;
  return 1;
}

static int fail(thaw_jsonstream_t *s, int err) {
  s->err = err;
  s->len = 0;
  return err;
}

/* Appends to the partial line; the caller has checked the size bound, so
 * the buffer never grows past max + 2 bytes. */
static int append(thaw_jsonstream_t *s, const char *p, size_t n) {
  if (s->len + n > s->cap) {
    size_t c = s->cap ? s->cap : 4096;
    while (c < s->len + n)
      c *= 2;
    if (c > s->max + 2)
      c = s->max + 2;
    char *b = realloc(s->buf, c);
    if (!b)
      return THAW_ENOMEM;
    s->buf = b;
    s->cap = c;
  }
  memcpy(s->buf + s->len, p, n);
  s->len += n;
  return 0;
}

/* Parses one complete line (line ending already removed). */
static int emit(thaw_jsonstream_t *s, const char *p, size_t n,
                thaw_jsonstream_cb cb, void *data) {
  if (n > s->max)
    return fail(s, THAW_E2BIG);
  if (is_blank(p, n))
    return 0;
  const char *end = NULL;
  cJSON *doc = cJSON_ParseWithLengthOpts(p, n, &end, 0);
  if (!doc)
    return fail(s, THAW_EPARSE);
  if (!end || end < p || end > p + n || !is_blank(end, (size_t)(p + n - end))) {
    cJSON_Delete(doc); /* trailing bytes after the value: "{} x" */
    return fail(s, THAW_EPARSE);
  }
  int rc = cb(doc, data);
  cJSON_Delete(doc);
  return rc;
}

int thaw_jsonstream_feed(thaw_jsonstream_t *s, const char *p, size_t n,
                         thaw_jsonstream_cb cb, void *data) {
  if (s->err)
    return s->err;
  while (n > 0) {
    const char *nl = memchr(p, '\n', n);
    if (!nl) {
      /* Partial line. One byte over the maximum is allowed only when it is
       * the '\r' of a "\r\n" still to come. */
      size_t total = s->len + n;
      if (total > s->max + 1 || (total == s->max + 1 && p[n - 1] != '\r'))
        return fail(s, THAW_E2BIG);
      int rc = append(s, p, n);
      return rc ? fail(s, rc) : 0;
    }
    size_t chunk = (size_t)(nl - p);
    const char *line = p;
    size_t len = chunk;
    if (s->len) {
      if (s->len + chunk > s->max + 1)
        return fail(s, THAW_E2BIG);
      int rc = append(s, p, chunk);
      if (rc)
        return fail(s, rc);
      line = s->buf;
      len = s->len;
    }
    if (len && line[len - 1] == '\r')
      len--;
    s->len = 0; /* the buffer's bytes stay valid through emit() */
    int rc = emit(s, line, len, cb, data);
    if (rc)
      return rc;
    p = nl + 1;
    n -= chunk + 1;
  }
  return 0;
}

int thaw_jsonstream_end(thaw_jsonstream_t *s) {
  if (s->err)
    return s->err;
  if (s->len && !is_blank(s->buf, s->len))
    return fail(s, THAW_EPARSE);
  s->len = 0;
  return 0;
}
