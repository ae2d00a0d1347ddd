/* jsontok.h - strict JSON (RFC 8259) read in place, without allocating:
 * a validating pull cursor that walks a document once and skips whole
 * subtrees, iterators over values it has validated, and string decoding
 * into caller buffers.
 *
 * A value is a span of the caller's text (thaw_jval_t); nothing is copied
 * and nothing needs freeing. The text must outlive the values taken from it.
 *
 * Strictness (the input is untrusted): one value, then only blanks (space,
 * tab, LF, CR); no byte order mark; no raw byte below 0x20 inside strings;
 * only the escapes of RFC 8259, with \u surrogates in valid pairs (so every
 * string decodes to UTF-8); numbers in RFC 8259's grammar (no leading zero,
 * no "1.", no "+1"), of any length; at most `depth_max` nested containers.
 * Bytes of 0x80 and above are not checked as UTF-8: they pass through.
 *
 * Two ways in:
 *   - thaw_json_parse() validates a whole text and gives the root value;
 *     thaw_jiter_*() and thaw_json_get() then walk values of it;
 *   - thaw_jcur_*() validates while the caller walks, once per byte: enter
 *     the containers of interest, take (validate and skip) the rest, and
 *     the spans taken can be walked later with thaw_jiter_*().
 * Iterators and decoders only read inside a value's span, so a misused
 * value gives wrong answers, never a read out of bounds. */
#ifndef THAW_JSONTOK_H
#define THAW_JSONTOK_H

#include <stddef.h>
#include <stdint.h>

/* The nesting limit of cJSON, which thaw used before: 1000 containers deep
 * is accepted, 1001 is not. */
#define THAW_JSON_DEPTH_MAX 1000

enum thaw_json_type {
  THAW_JSON_NONE = 0, /* no value (a missing member) */
  THAW_JSON_NULL,
  THAW_JSON_FALSE,
  THAW_JSON_TRUE,
  THAW_JSON_NUMBER,
  THAW_JSON_STRING,
  THAW_JSON_ARRAY,
  THAW_JSON_OBJECT
};

/* Why a text was refused; thaw_json_strerror() names them. */
enum thaw_json_error {
  THAW_JSON_OK = 0,
  THAW_JSON_E_EOF,      /* the text ends inside a value */
  THAW_JSON_E_TOKEN,    /* a byte that cannot start or continue a value */
  THAW_JSON_E_CTRL,     /* a raw byte below 0x20 inside a string */
  THAW_JSON_E_ESCAPE,   /* an escape that is not \" \\ \/ \b \f \n \r \t \uXXXX */
  THAW_JSON_E_UNICODE,  /* a \u surrogate that is not in a valid pair */
  THAW_JSON_E_NUMBER,   /* a number outside the grammar ("01", "1.", "-") */
  THAW_JSON_E_DEPTH,    /* nested deeper than depth_max */
  THAW_JSON_E_TRAILING, /* more than blanks after the value */
  THAW_JSON_E_USAGE     /* a cursor call out of place (a caller's bug) */
};

/* One value in place: text [p, p + len). A string's span includes its
 * quotes; `esc` says it has a backslash, so its bytes must be decoded
 * before use (otherwise p + 1, len - 2 are the decoded bytes). */
typedef struct {
  const char *p;
  size_t len;
  uint8_t type; /* enum thaw_json_type */
  uint8_t esc;
} thaw_jval_t;

/* A short, static reason for an error code ("raw control character in a
 * string"). Never NULL. */
const char *thaw_json_strerror(int code);

/* Validates n bytes of `s` as one JSON text and stores its value in *root
 * (may be NULL). depth_max 0 (or over THAW_JSON_DEPTH_MAX) means
 * THAW_JSON_DEPTH_MAX. Returns 0 or THAW_EPARSE; on error *code gets an
 * enum thaw_json_error and *where its byte offset (either may be NULL). */
int thaw_json_parse(const char *s, size_t n, unsigned depth_max,
                    thaw_jval_t *root, int *code, size_t *where);

/* --- the validating cursor ---------------------------------------------- */

typedef struct {
  const char *p, *end, *base;
  unsigned depth, depth_max;
  int err;            /* 0 or the first enum thaw_json_error, sticky */
  const char *err_at; /* where it was found */
  uint8_t first;      /* the next member or element opens its container */
  uint8_t done;       /* the root value has been consumed */
  uint64_t kind[(THAW_JSON_DEPTH_MAX + 63) / 64]; /* bit set: object */
} thaw_jcur_t;

/* Starts a cursor before the one value of n bytes of `s` (leading blanks
 * are skipped). depth_max 0 or over THAW_JSON_DEPTH_MAX means
 * THAW_JSON_DEPTH_MAX. This function can't fail. */
void thaw_jcur_init(thaw_jcur_t *c, const char *s, size_t n,
                    unsigned depth_max);

/* The type of the value at the cursor, from its first byte, without
 * consuming it; THAW_JSON_NONE at an error or where no value can start. */
enum thaw_json_type thaw_jcur_peek(const thaw_jcur_t *c);

/* Consumes the whole value at the cursor, validating it, and stores its
 * span in *v (may be NULL). Returns 1, or 0 on error (c->err set). */
int thaw_jcur_take(thaw_jcur_t *c, thaw_jval_t *v);

/* Enters the object or array at the cursor. Returns 1; 0 if the value
 * there is of another type (nothing is consumed, c->err stays 0) or on
 * error. */
int thaw_jcur_enter(thaw_jcur_t *c, enum thaw_json_type type);

/* Inside an object: moves to the next member, stores its key (a string
 * value) in *key and leaves the cursor at its value, which the caller must
 * then consume (take or enter). Returns 1; 0 at the closing '}', which is
 * consumed (the cursor is then after the object), or on error. */
int thaw_jcur_member(thaw_jcur_t *c, thaw_jval_t *key);

/* Inside an array: 1 with the cursor at the next element (to consume); 0 at
 * the closing ']', which is consumed, or on error. */
int thaw_jcur_elem(thaw_jcur_t *c);

/* After the root value: checks that only blanks follow. Returns 0, or
 * THAW_EPARSE when c->err is set or was set now (THAW_JSON_E_TRAILING, or
 * THAW_JSON_E_USAGE if a container is still open). */
int thaw_jcur_finish(thaw_jcur_t *c);

/* --- walking validated values ------------------------------------------- */

typedef struct {
  const char *p, *end;
  uint8_t object;
} thaw_jiter_t;

/* Starts an iteration over the members of an object or the elements of an
 * array; any other value iterates nothing. */
void thaw_jiter_init(thaw_jiter_t *it, const thaw_jval_t *v);

/* Stores the next member's key and value (for an array, key->type is
 * THAW_JSON_NONE; key may be NULL). Returns 1, or 0 at the end. */
int thaw_jiter_next(thaw_jiter_t *it, thaw_jval_t *key, thaw_jval_t *val);

/* The value of the first member of object `obj` whose decoded key is the n
 * bytes of `key`. Returns 1 and sets *val; 0 (val->type THAW_JSON_NONE)
 * when there is none or obj is not an object. */
int thaw_json_get(const thaw_jval_t *obj, const char *key, size_t n,
                  thaw_jval_t *val);

/* --- strings and numbers ------------------------------------------------ */

/* 1 when `v` is a string whose decoded bytes are the n bytes of `s`. */
int thaw_json_str_eq(const thaw_jval_t *v, const char *s, size_t n);

/* Bytes of a decoded string, at most its span's len - 2, so a buffer of
 * v->len - 1 bytes always fits it and the NUL. */
#define THAW_JSON_DECODED_MAX(v) ((v)->len - 1)

/* Decodes string `v` into buf (UTF-8, NUL-terminated; \u0000 gives a NUL
 * byte inside, so use *n, not strlen). Returns 0; THAW_E2BIG when it does
 * not fit in `cap` bytes with its NUL (buf then holds ""); THAW_EINVAL
 * when v is not a string. */
int thaw_json_str_decode(const thaw_jval_t *v, char *buf, size_t cap,
                         size_t *n);

/* An integer number in [INT64_MIN, INT64_MAX] without fraction or exponent.
 * Returns 0; THAW_E2BIG when out of range; THAW_EINVAL otherwise. */
int thaw_json_int64(const thaw_jval_t *v, int64_t *out);

#endif
