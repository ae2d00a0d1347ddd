/* patch.h - the JSON text of the webhook's reply: a growable buffer, JSON
 * string escaping, JSON Patch (RFC 6902) operations whose paths are built
 * from raw tokens with RFC 6901 escaping ("~" -> "~0", "/" -> "~1"), and
 * base64 for AdmissionReview's response.patch.
 *
 * Errors are sticky: the first failed append (THAW_ENOMEM, or THAW_E2BIG past
 * `max`) is kept in b->err and later appends do nothing, so a caller checks
 * once at the end. The buffer owns its memory; thaw_jbuf_free() releases it
 * (thaw_jbuf_take() hands it over instead). */
#ifndef THAW_WEBHOOK_PATCH_H
#define THAW_WEBHOOK_PATCH_H

#include <stddef.h>

typedef struct {
  char *p;    /* NUL-terminated once anything was appended; may be NULL */
  size_t len; /* bytes used, without the NUL */
  size_t cap;
  size_t max; /* 0: no limit; else appends that would pass it fail E2BIG */
  int err;    /* 0 or the first THAW_E* error */
  char *own;  /* caller storage it started on (never freed), or NULL */
} thaw_jbuf_t;

/* Starts an empty buffer; `reserve` bytes are allocated on the first append.
 * This function can't fail. */
void thaw_jbuf_init(thaw_jbuf_t *b, size_t reserve, size_t max);
/* Starts an empty buffer on caller storage `buf` of `cap` bytes (a stack
 * array is fine; cap >= 1): no allocation until the text outgrows it, then
 * it moves to the heap. thaw_jbuf_free() is still needed. Can't fail. */
void thaw_jbuf_init_on(thaw_jbuf_t *b, char *buf, size_t cap, size_t max);
void thaw_jbuf_free(thaw_jbuf_t *b);
/* Returns the text (malloc'd, NUL-terminated, never NULL on success) and its
 * length, leaving b empty; NULL when b->err is set or on THAW_ENOMEM. */
char *thaw_jbuf_take(thaw_jbuf_t *b, size_t *len);

void thaw_jbuf_raw(thaw_jbuf_t *b, const char *s, size_t n);
void thaw_jbuf_cstr(thaw_jbuf_t *b, const char *s); /* raw, NUL-terminated */
/* A JSON string literal with quotes: '"' and '\' escaped, control bytes as
 * \u00XX; other bytes (UTF-8) pass through. */
void thaw_jbuf_str(thaw_jbuf_t *b, const char *s, size_t n);
/* The same escaping without the quotes, to build one string in pieces. */
void thaw_jbuf_esc(thaw_jbuf_t *b, const char *s, size_t n);
/* An RFC 6901 reference token, without the leading '/', escaped for both
 * the pointer ("~0", "~1") and the enclosing JSON string. */
void thaw_jbuf_ptr_token(thaw_jbuf_t *b, const char *s, size_t n);
/* Standard base64 (with '=' padding) of n bytes, no quotes. */
void thaw_jbuf_base64(thaw_jbuf_t *b, const unsigned char *s, size_t n);

/* One JSON Patch op: {"op":<op>,"path":"/<tok0>/<tok1>...","value":...}.
 * `tokens` are raw (unescaped) reference tokens. thaw_patch_op_str() writes
 * `value` as a JSON string; thaw_patch_op_json() writes `json` as is (it must
 * be valid JSON text). A ',' is written first when b->len > 1, so ops go
 * into a buffer that starts with "[". */
void thaw_patch_op_str(thaw_jbuf_t *b, const char *op,
                       const char *const *tokens, size_t ntok,
                       const char *value, size_t vlen);
void thaw_patch_op_json(thaw_jbuf_t *b, const char *op,
                        const char *const *tokens, size_t ntok,
                        const char *json, size_t jlen);
/* The start of the same op, up to and including "value":; the caller
 * appends the value and the closing '}'. */
void thaw_patch_op_begin(thaw_jbuf_t *b, const char *op,
                         const char *const *tokens, size_t ntok);

#endif
