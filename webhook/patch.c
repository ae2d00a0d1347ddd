/* patch.c - JSON text for the webhook's reply: buffer, escaping, JSON Patch
 * ops, base64 (see patch.h). */
#include "patch.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

void thaw_jbuf_init(thaw_jbuf_t *b, size_t reserve, size_t max) {
  b->p = NULL;
  b->len = 0;
  b->cap = reserve;
  b->max = max;
  b->err = 0;
  b->own = NULL;
}

void thaw_jbuf_init_on(thaw_jbuf_t *b, char *buf, size_t cap, size_t max) {
  thaw_jbuf_init(b, cap, max);
  b->p = b->own = buf;
  buf[0] = '\0';
}

void thaw_jbuf_free(thaw_jbuf_t *b) {
  if (b->p != b->own)
    free(b->p);
  b->p = NULL;
  b->len = 0;
}

char *thaw_jbuf_take(thaw_jbuf_t *b, size_t *len) {
  if (b->err)
    return NULL;
  if (!b->p || b->p == b->own) {
    /* The caller must be able to free what it takes. */
    char *heap = malloc(b->len + 1);
    if (!heap) {
      b->err = THAW_ENOMEM;
      return NULL;
    }
    if (b->p)
      memcpy(heap, b->p, b->len);
    heap[b->len] = '\0';
    b->p = heap;
  }
  char *p = b->p;
  if (len)
    *len = b->len;
  b->p = NULL;
  b->len = 0;
  return p;
}

/* Makes room for n more bytes plus the NUL; returns the write position. */
static char *reserve(thaw_jbuf_t *b, size_t n) {
  if (b->err)
    return NULL;
  if (n > ((size_t)-1) / 4 - b->len || (b->max && b->len + n > b->max)) {
    b->err = THAW_E2BIG;
    return NULL;
  }
  size_t need = b->len + n + 1;
  if (!b->p || need > b->cap) {
    size_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need)
      cap *= 2;
    char *p = b->p && b->p == b->own ? malloc(cap) : realloc(b->p, cap);
    if (!p) {
      b->err = THAW_ENOMEM;
      return NULL;
    }
    if (b->p && b->p == b->own)
      memcpy(p, b->p, b->len + 1);
    b->p = p;
    b->cap = cap;
  }
  return b->p + b->len;
}

void thaw_jbuf_raw(thaw_jbuf_t *b, const char *s, size_t n) {
  char *w = reserve(b, n);
  if (!w)
    return;
  memcpy(w, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void thaw_jbuf_cstr(thaw_jbuf_t *b, const char *s) {
  thaw_jbuf_raw(b, s, strlen(s));
}

static const char hex[] = "0123456789abcdef";

/* Bytes each byte takes inside a JSON string, and inside an RFC 6901
 * token in one: \u00XX for control bytes, a backslash or "~" pair. */
#define ESC_LEN(ptr)                                                           \
  {[0 ... 0x1f] = 6, [' ' ... '!'] = 1, ['"'] = 2, ['#' ... '.'] = 1,          \
   ['/'] = 1 + (ptr), ['0' ... '['] = 1, ['\\'] = 2, [']' ... '}'] = 1,       \
   ['~'] = 1 + (ptr), [0x7f ... 0xff] = 1}
static const unsigned char esc_len[2][256] = {ESC_LEN(0), ESC_LEN(1)};
#undef ESC_LEN

/* Escaped body of a JSON string (no quotes). `ptr` also applies RFC 6901. */
static void escaped(thaw_jbuf_t *b, const char *s, size_t n, int ptr) {
  /* Count first so the buffer grows once and `max` sees the exact size. */
  const unsigned char *len = esc_len[ptr != 0];
  size_t out = 0;
  for (size_t i = 0; i < n; i++)
    out += len[(unsigned char)s[i]];
  char *w = reserve(b, out);
  if (!w)
    return;
  if (out == n) { /* nothing to escape: the common case */
    memcpy(w, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return;
  }
  char *start = w;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (ptr && (c == '~' || c == '/')) {
      *w++ = '~';
      *w++ = c == '~' ? '0' : '1';
    } else if (c == '"' || c == '\\') {
      *w++ = '\\';
      *w++ = (char)c;
    } else if (c < 0x20) {
      memcpy(w, "\\u00", 4);
      w[4] = hex[c >> 4];
      w[5] = hex[c & 15];
      w += 6;
    } else {
      *w++ = (char)c;
    }
  }
  b->len += (size_t)(w - start);
  b->p[b->len] = '\0';
}

void thaw_jbuf_str(thaw_jbuf_t *b, const char *s, size_t n) {
  thaw_jbuf_raw(b, "\"", 1);
  escaped(b, s, n, 0);
  thaw_jbuf_raw(b, "\"", 1);
}

void thaw_jbuf_esc(thaw_jbuf_t *b, const char *s, size_t n) {
  escaped(b, s, n, 0);
}

void thaw_jbuf_ptr_token(thaw_jbuf_t *b, const char *s, size_t n) {
  escaped(b, s, n, 1);
}

void thaw_jbuf_base64(thaw_jbuf_t *b, const unsigned char *s, size_t n) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (n > ((size_t)-1) / 2) {
    b->err = b->err ? b->err : THAW_E2BIG;
    return;
  }
  size_t out = (n + 2) / 3 * 4;
  char *w = reserve(b, out);
  if (!w)
    return;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
    *w++ = tab[v >> 18];
    *w++ = tab[(v >> 12) & 63];
    *w++ = tab[(v >> 6) & 63];
    *w++ = tab[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)s[i] << 16;
    if (i + 1 < n)
      v |= (unsigned)s[i + 1] << 8;
    *w++ = tab[v >> 18];
    *w++ = tab[(v >> 12) & 63];
    *w++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
    *w++ = '=';
  }
  b->len += out;
  b->p[b->len] = '\0';
}

void thaw_patch_op_begin(thaw_jbuf_t *b, const char *op,
                         const char *const *tokens, size_t ntok) {
  if (b->len > 1)
    thaw_jbuf_raw(b, ",", 1);
  thaw_jbuf_cstr(b, "{\"op\":\"");
  thaw_jbuf_cstr(b, op);
  thaw_jbuf_cstr(b, "\",\"path\":\"");
  for (size_t i = 0; i < ntok; i++) {
    thaw_jbuf_raw(b, "/", 1);
    thaw_jbuf_ptr_token(b, tokens[i], strlen(tokens[i]));
  }
  thaw_jbuf_cstr(b, "\",\"value\":");
}

void thaw_patch_op_str(thaw_jbuf_t *b, const char *op,
                       const char *const *tokens, size_t ntok,
                       const char *value, size_t vlen) {
  thaw_patch_op_begin(b, op, tokens, ntok);
  thaw_jbuf_str(b, value, vlen);
  thaw_jbuf_raw(b, "}", 1);
}

void thaw_patch_op_json(thaw_jbuf_t *b, const char *op,
                        const char *const *tokens, size_t ntok,
                        const char *json, size_t jlen) {
  thaw_patch_op_begin(b, op, tokens, ntok);
  thaw_jbuf_raw(b, json, jlen);
  thaw_jbuf_raw(b, "}", 1);
}
