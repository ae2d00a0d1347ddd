/* jsontok.c - strict JSON read in place: the validating cursor, iterators
 * over validated values, string decoding (see jsontok.h). */
#include "jsontok.h"

#include <string.h>

#include "error.h"

/* Byte classes. STR: may stand in a string as is. WS: a blank between
 * tokens. SKIP: what a skip over valid text must look at. */
enum { C_STR = 1, C_WS = 2, C_QUOTE = 4, C_OPEN = 8, C_CLOSE = 16 };

static const uint8_t cls[256] = {
    ['\t'] = C_WS, ['\n'] = C_WS, ['\r'] = C_WS,
    [' '] = C_STR | C_WS, ['!'] = C_STR, ['"'] = C_QUOTE,
    ['#' ... 'Z'] = C_STR, ['['] = C_STR | C_OPEN, ['\\'] = 0,
    [']'] = C_STR | C_CLOSE, ['^' ... 'z'] = C_STR, ['{'] = C_STR | C_OPEN,
    ['|'] = C_STR, ['}'] = C_STR | C_CLOSE, ['~' ... 0xff] = C_STR,
};

const char *thaw_json_strerror(int code) {
  static const char *const why[] = {
      "no error",
      "unexpected end of the text",
      "unexpected character",
      "raw control character in a string",
      "invalid escape in a string",
      "unpaired \\u surrogate in a string",
      "invalid number",
      "nested too deeply",
      "trailing data after the value",
      "cursor used out of place"};
  return code >= 0 && (size_t)code < sizeof(why) / sizeof(why[0])
             ? why[code]
             : "unknown JSON error";
}

static inline const char *blanks(const char *p, const char *end) {
  while (p < end && (cls[(uint8_t)*p] & C_WS))
    p++;
  return p;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static enum thaw_json_type type_at(char c) {
  switch (c) {
  case '{':
    return THAW_JSON_OBJECT;
  case '[':
    return THAW_JSON_ARRAY;
  case '"':
    return THAW_JSON_STRING;
  case 't':
    return THAW_JSON_TRUE;
  case 'f':
    return THAW_JSON_FALSE;
  case 'n':
    return THAW_JSON_NULL;
  default:
    return c == '-' || is_digit(c) ? THAW_JSON_NUMBER : THAW_JSON_NONE;
  }
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                 : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                 : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                        : 16u;
    if (d > 15)
      return 0;
    v = v << 4 | d;
  }
  *out = v;
  return 1;
}

/* --- validation ----------------------------------------------------------
 * Each scanner starts at the value's first byte and returns the byte after
 * it, or NULL with *err and *at set. */

static const char *bad(int *err, const char **at, int code, const char *p) {
  *err = code;
  *at = p;
  return NULL;
}

/* Finds the 8 bytes at p that cannot stand in a string as is (below 0x20,
 * '"', '\\'): a mask with the high bit of each such byte (SWAR), so plain
 * runs are skipped 8 bytes a step. */
/* Hot: strings are most of a Kubernetes object's bytes. */
#define HOT static inline __attribute__((always_inline))

HOT uint64_t special8(const char *p) {
  uint64_t x;
  memcpy(&x, p, 8);
  const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
  uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
  uint64_t t = ((x - ones * 0x20) | (q - ones) | (b - ones)) & ~x & high;
  return t;
}

/* The first byte at p that cannot stand in a string as is, or end. */
HOT const char *plain_run(const char *p, const char *end) {
  while (end - p >= 8) {
    uint64_t m = special8(p);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The lowest flagged byte is always a real one (borrows go up). */
    if (m)
      return p + (__builtin_ctzll(m) >> 3);
#else
    if (m)
      break;
#endif
    p += 8;
  }
  while (p < end && (cls[(uint8_t)*p] & C_STR))
    p++;
  return p;
}

HOT const char *scan_str(const char *p, const char *end, uint8_t *esc,
                         int *err, const char **at) {
  p++; /* the opening quote */
  for (;;) {
    p = plain_run(p, end);
    if (p >= end)
      return bad(err, at, THAW_JSON_E_EOF, end);
    if (*p == '"')
      return p + 1;
    if (*p != '\\')
      return bad(err, at, THAW_JSON_E_CTRL, p);
    *esc = 1;
    if (end - p < 2)
      return bad(err, at, THAW_JSON_E_EOF, end);
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r':
    case 't':
      p += 2;
      continue;
    case 'u':
      break;
    default:
      return bad(err, at, THAW_JSON_E_ESCAPE, p);
    }
    unsigned u, lo;
    if (end - p < 6)
      return bad(err, at, THAW_JSON_E_EOF, end);
    if (!hex4(p + 2, &u))
      return bad(err, at, THAW_JSON_E_ESCAPE, p);
    if (u >= 0xdc00 && u <= 0xdfff)
      return bad(err, at, THAW_JSON_E_UNICODE, p);
    if (u >= 0xd800 && u <= 0xdbff) {
      /* A high surrogate needs a low one right after it. */
      if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || !hex4(p + 8, &lo) ||
          lo < 0xdc00 || lo > 0xdfff)
        return bad(err, at, THAW_JSON_E_UNICODE, p);
      p += 12;
    } else {
      p += 6;
    }
  }
}

static const char *digits(const char *p, const char *end) {
  while (p < end && is_digit(*p))
    p++;
  return p;
}

/* RFC 8259: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?, and no
 * number character right after it ("01", "1.2.3"), any length. */
static const char *scan_num(const char *p, const char *end, int *err,
                            const char **at) {
  const char *start = p;
  if (*p == '-')
    p++;
  if (p < end && *p == '0')
    p++;
  else if (p < end && *p >= '1' && *p <= '9')
    p = digits(p, end);
  else
    return bad(err, at, THAW_JSON_E_NUMBER, start);
  if (p < end && *p == '.') {
    if (++p >= end || !is_digit(*p))
      return bad(err, at, THAW_JSON_E_NUMBER, start);
    p = digits(p, end);
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    if (p >= end || !is_digit(*p))
      return bad(err, at, THAW_JSON_E_NUMBER, start);
    p = digits(p, end);
  }
  if (p < end && (is_digit(*p) || *p == '.' || *p == 'e' || *p == 'E' ||
                  *p == '+' || *p == '-'))
    return bad(err, at, THAW_JSON_E_NUMBER, start);
  return p;
}

static const char *scan_lit(const char *p, const char *end, const char *lit,
                            size_t n, int *err, const char **at) {
  size_t have = (size_t)(end - p);
  if (have >= n && memcmp(p, lit, n) == 0)
    return p + n;
  if (have < n && memcmp(p, lit, have) == 0)
    return bad(err, at, THAW_JSON_E_EOF, end);
  return bad(err, at, THAW_JSON_E_TOKEN, p);
}

static int is_obj(const thaw_jcur_t *c, unsigned level) {
  return (int)(c->kind[level / 64] >> (level % 64) & 1);
}

static void set_kind(thaw_jcur_t *c, unsigned level, int obj) {
  uint64_t bit = (uint64_t)1 << (level % 64);
  if (obj)
    c->kind[level / 64] |= bit;
  else
    c->kind[level / 64] &= ~bit;
}

/* Consumes one whole value at c->p (any depth inside it), validating.
 * Returns the byte after it (c->p moves past the blanks that follow), or
 * NULL with c->err set. */
static const char *scan(thaw_jcur_t *c, uint8_t *esc) {
  const char *p = c->p, *end = c->end, *at = NULL;
  const unsigned base = c->depth;
  unsigned depth = base;
  int err = 0;
  for (;;) {
    /* A value starts at p. */
    if (p >= end) {
      p = bad(&err, &at, THAW_JSON_E_EOF, end);
      goto fail;
    }
    switch (*p) {
    case '{':
    case '[':
      if (depth >= c->depth_max) {
        p = bad(&err, &at, THAW_JSON_E_DEPTH, p);
        goto fail;
      }
      set_kind(c, depth++, *p == '{');
      p = blanks(p + 1, end);
      if (p < end && (*p == '}' || *p == ']') &&
          (*p == '}') == is_obj(c, depth - 1)) {
        p++;
        depth--;
        goto after;
      }
      if (is_obj(c, depth - 1))
        goto key;
      continue;
    case '"':
      p = scan_str(p, end, esc, &err, &at);
      break;
    case 't':
      p = scan_lit(p, end, "true", 4, &err, &at);
      break;
    case 'f':
      p = scan_lit(p, end, "false", 5, &err, &at);
      break;
    case 'n':
      p = scan_lit(p, end, "null", 4, &err, &at);
      break;
    default:
      if (*p == '-' || is_digit(*p))
        p = scan_num(p, end, &err, &at);
      else
        p = bad(&err, &at, THAW_JSON_E_TOKEN, p);
      break;
    }
    if (!p)
      goto fail;
  after:
    /* A value ended at p; depth containers are open. */
    if (depth == base) {
      c->p = blanks(p, end);
      return p;
    }
    p = blanks(p, end);
    if (p >= end) {
      p = bad(&err, &at, THAW_JSON_E_EOF, end);
      goto fail;
    }
    if (*p == ',') {
      p = blanks(p + 1, end);
      if (!is_obj(c, depth - 1))
        continue;
    } else if (*p == (is_obj(c, depth - 1) ? '}' : ']')) {
      p++;
      depth--;
      goto after;
    } else {
      p = bad(&err, &at, THAW_JSON_E_TOKEN, p);
      goto fail;
    }
  key:
    /* A member's key starts at p. */
    if (p >= end || *p != '"') {
      p = bad(&err, &at, p >= end ? THAW_JSON_E_EOF : THAW_JSON_E_TOKEN, p);
      goto fail;
    }
    {
      uint8_t kesc = 0;
      p = scan_str(p, end, &kesc, &err, &at);
    }
    if (!p)
      goto fail;
    p = blanks(p, end);
    if (p >= end || *p != ':') {
      p = bad(&err, &at, p >= end ? THAW_JSON_E_EOF : THAW_JSON_E_TOKEN, p);
      goto fail;
    }
    p = blanks(p + 1, end);
  }
fail:
  (void)p;
  c->err = err;
  c->err_at = at;
  c->depth = base;
  return NULL;
}

/* --- the cursor ------------------------------------------------------------ */

void thaw_jcur_init(thaw_jcur_t *c, const char *s, size_t n,
                    unsigned depth_max) {
  c->base = s;
  c->end = s + n;
  c->p = blanks(s, c->end);
  c->depth = 0;
  c->depth_max = depth_max == 0 || depth_max > THAW_JSON_DEPTH_MAX
                     ? THAW_JSON_DEPTH_MAX
                     : depth_max;
  c->err = 0;
  c->err_at = NULL;
  c->first = 0;
  c->done = 0;
}

static int cur_fail(thaw_jcur_t *c, int code, const char *at) {
  if (!c->err) {
    c->err = code;
    c->err_at = at;
  }
  return 0;
}

enum thaw_json_type thaw_jcur_peek(const thaw_jcur_t *c) {
  return c->err || c->p >= c->end ? THAW_JSON_NONE : type_at(*c->p);
}

/* A value was consumed or a container closed: at depth 0 the root is done. */
static void consumed(thaw_jcur_t *c) {
  c->first = 0;
  if (c->depth == 0)
    c->done = 1;
}

int thaw_jcur_take(thaw_jcur_t *c, thaw_jval_t *v) {
  if (c->err)
    return 0;
  if (c->done)
    return cur_fail(c, THAW_JSON_E_TRAILING, c->p);
  const char *start = c->p;
  uint8_t esc = 0;
  const char *stop = scan(c, &esc);
  if (!stop)
    return 0;
  if (v) {
    v->p = start;
    v->len = (size_t)(stop - start);
    v->type = (uint8_t)type_at(*start);
    v->esc = v->type == THAW_JSON_STRING ? esc : 0;
  }
  consumed(c);
  return 1;
}

int thaw_jcur_enter(thaw_jcur_t *c, enum thaw_json_type type) {
  if (c->err)
    return 0;
  if (c->done)
    return cur_fail(c, THAW_JSON_E_TRAILING, c->p);
  enum thaw_json_type t = thaw_jcur_peek(c);
  if (t == THAW_JSON_NONE)
    return cur_fail(c, c->p >= c->end ? THAW_JSON_E_EOF : THAW_JSON_E_TOKEN,
                    c->p);
  if (t != type || (type != THAW_JSON_OBJECT && type != THAW_JSON_ARRAY))
    return 0;
  if (c->depth >= c->depth_max)
    return cur_fail(c, THAW_JSON_E_DEPTH, c->p);
  set_kind(c, c->depth++, type == THAW_JSON_OBJECT);
  c->p = blanks(c->p + 1, c->end);
  c->first = 1;
  return 1;
}

/* At '}' or ']' of the open container (checked by the caller): leaves it. */
static int close_one(thaw_jcur_t *c) {
  c->p = blanks(c->p + 1, c->end);
  c->depth--;
  consumed(c);
  return 0;
}

/* The separator before the next member or element: 1 when one follows,
 * 0 after closing the container or on error. */
static int next_item(thaw_jcur_t *c, int obj) {
  if (c->err)
    return 0;
  if (c->depth == 0 || is_obj(c, c->depth - 1) != obj)
    return cur_fail(c, THAW_JSON_E_USAGE, c->p);
  if (c->p >= c->end)
    return cur_fail(c, THAW_JSON_E_EOF, c->end);
  if (*c->p == (obj ? '}' : ']'))
    return close_one(c);
  if (!c->first) {
    if (*c->p != ',')
      return cur_fail(c, THAW_JSON_E_TOKEN, c->p);
    c->p = blanks(c->p + 1, c->end);
  }
  c->first = 0;
  return 1;
}

int thaw_jcur_member(thaw_jcur_t *c, thaw_jval_t *key) {
  if (!next_item(c, 1))
    return 0;
  const char *start = c->p, *at = NULL;
  int err = 0;
  uint8_t esc = 0;
  if (start >= c->end || *start != '"')
    return cur_fail(c, start >= c->end ? THAW_JSON_E_EOF : THAW_JSON_E_TOKEN,
                    start);
  const char *stop = scan_str(start, c->end, &esc, &err, &at);
  if (!stop)
    return cur_fail(c, err, at);
  const char *p = blanks(stop, c->end);
  if (p >= c->end || *p != ':')
    return cur_fail(c, p >= c->end ? THAW_JSON_E_EOF : THAW_JSON_E_TOKEN, p);
  c->p = blanks(p + 1, c->end);
  if (key) {
    key->p = start;
    key->len = (size_t)(stop - start);
    key->type = THAW_JSON_STRING;
    key->esc = esc;
  }
  return 1;
}

int thaw_jcur_elem(thaw_jcur_t *c) { return next_item(c, 0); }

int thaw_jcur_finish(thaw_jcur_t *c) {
  if (!c->err && (c->depth != 0 || !c->done))
    cur_fail(c, c->depth ? THAW_JSON_E_USAGE : THAW_JSON_E_EOF, c->p);
  if (!c->err && c->p != c->end)
    cur_fail(c, THAW_JSON_E_TRAILING, c->p);
  return c->err ? THAW_EPARSE : 0;
}

int thaw_json_parse(const char *s, size_t n, unsigned depth_max,
                    thaw_jval_t *root, int *code, size_t *where) {
  thaw_jcur_t c;
  thaw_jcur_init(&c, s, n, depth_max);
  thaw_jval_t v = {NULL, 0, THAW_JSON_NONE, 0};
  thaw_jcur_take(&c, &v);
  int rc = thaw_jcur_finish(&c);
  if (root)
    *root = rc ? (thaw_jval_t){NULL, 0, THAW_JSON_NONE, 0} : v;
  if (code)
    *code = c.err;
  if (where)
    *where = rc ? (size_t)(c.err_at - s) : 0;
  return rc;
}

/* --- walking validated text -------------------------------------------------
 * These trust the text to be valid and only bound every read by `end`. */

static const char *skip_str(const char *p, const char *end, uint8_t *esc) {
  p++;
  while (p < end) {
    p = plain_run(p, end);
    if (p >= end)
      break;
    if (*p == '"')
      return p + 1;
    if (*p == '\\') {
      *esc = 1;
      p += end - p >= 2 ? 2 : 1;
    } else {
      p++;
    }
  }
  return end;
}

static const char *skip_value(const char *p, const char *end, uint8_t *esc) {
  if (p >= end)
    return end;
  if (*p == '"')
    return skip_str(p, end, esc);
  if (*p != '{' && *p != '[') {
    while (p < end && *p != ',' && *p != '}' && *p != ']' &&
           !(cls[(uint8_t)*p] & C_WS))
      p++;
    return p;
  }
  size_t depth = 0;
  uint8_t ignore = 0;
  while (p < end) {
    uint8_t k = cls[(uint8_t)*p];
    if (k & C_QUOTE) {
      p = skip_str(p, end, &ignore);
      continue;
    }
    if (k & C_OPEN)
      depth++;
    else if ((k & C_CLOSE) && --depth == 0)
      return p + 1;
    p++;
  }
  return end;
}

void thaw_jiter_init(thaw_jiter_t *it, const thaw_jval_t *v) {
  int ok = v && v->len >= 2 &&
           (v->type == THAW_JSON_OBJECT || v->type == THAW_JSON_ARRAY);
  it->p = ok ? v->p + 1 : NULL;
  it->end = ok ? v->p + v->len - 1 : NULL;
  it->object = ok && v->type == THAW_JSON_OBJECT;
}

int thaw_jiter_next(thaw_jiter_t *it, thaw_jval_t *key, thaw_jval_t *val) {
  const char *p = blanks(it->p, it->end), *end = it->end;
  if (p < end && *p == ',')
    p = blanks(p + 1, end);
  if (key)
    *key = (thaw_jval_t){NULL, 0, THAW_JSON_NONE, 0};
  if (p >= end)
    goto stop;
  if (it->object) {
    if (*p != '"')
      goto stop;
    uint8_t esc = 0;
    const char *k = p;
    p = skip_str(p, end, &esc);
    if (key)
      *key = (thaw_jval_t){k, (size_t)(p - k), THAW_JSON_STRING, esc};
    p = blanks(p, end);
    if (p >= end || *p != ':')
      goto stop;
    p = blanks(p + 1, end);
    if (p >= end)
      goto stop;
  }
  enum thaw_json_type t = type_at(*p);
  if (t == THAW_JSON_NONE)
    goto stop;
  uint8_t esc = 0;
  const char *v = p;
  p = skip_value(p, end, &esc);
  *val = (thaw_jval_t){v, (size_t)(p - v), (uint8_t)t, esc};
  it->p = p;
  return 1;
stop:
  it->p = end;
  *val = (thaw_jval_t){NULL, 0, THAW_JSON_NONE, 0};
  return 0;
}

int thaw_json_get(const thaw_jval_t *obj, const char *key, size_t n,
                  thaw_jval_t *val) {
  thaw_jiter_t it;
  thaw_jval_t k;
  *val = (thaw_jval_t){NULL, 0, THAW_JSON_NONE, 0};
  if (!obj || obj->type != THAW_JSON_OBJECT)
    return 0;
  thaw_jiter_init(&it, obj);
  while (thaw_jiter_next(&it, &k, val))
    if (thaw_json_str_eq(&k, key, n))
      return 1;
  *val = (thaw_jval_t){NULL, 0, THAW_JSON_NONE, 0};
  return 0;
}

/* --- strings and numbers ------------------------------------------------- */

/* Decodes one byte or escape at *pp (before `end`, the closing quote) into
 * out; returns the bytes written (1 to 4). Escapes are trusted to be valid
 * (validated text); one that is not is copied as a plain backslash. */
static size_t decode_one(const char **pp, const char *end, char out[4]) {
  const char *p = *pp;
  if (*p != '\\' || end - p < 2) {
    out[0] = *p;
    *pp = p + 1;
    return 1;
  }
  static const char simple[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
  for (const char *s = simple; *s; s += 2)
    if (p[1] == s[0]) {
      out[0] = s[1];
      *pp = p + 2;
      return 1;
    }
  unsigned u, lo;
  if (p[1] != 'u' || end - p < 6 || !hex4(p + 2, &u)) {
    out[0] = '\\';
    *pp = p + 1;
    return 1;
  }
  p += 6;
  if (u >= 0xd800 && u <= 0xdbff && end - p >= 6 && p[0] == '\\' &&
      p[1] == 'u' && hex4(p + 2, &lo) && lo >= 0xdc00 && lo <= 0xdfff) {
    u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
    p += 6;
  }
  *pp = p;
  if (u < 0x80) {
    out[0] = (char)u;
    return 1;
  }
  if (u < 0x800) {
    out[0] = (char)(0xc0 | u >> 6);
    out[1] = (char)(0x80 | (u & 0x3f));
    return 2;
  }
  if (u < 0x10000) {
    out[0] = (char)(0xe0 | u >> 12);
    out[1] = (char)(0x80 | (u >> 6 & 0x3f));
    out[2] = (char)(0x80 | (u & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | u >> 18);
  out[1] = (char)(0x80 | (u >> 12 & 0x3f));
  out[2] = (char)(0x80 | (u >> 6 & 0x3f));
  out[3] = (char)(0x80 | (u & 0x3f));
  return 4;
}

static int is_str(const thaw_jval_t *v) {
  return v && v->type == THAW_JSON_STRING && v->len >= 2;
}

int thaw_json_str_eq(const thaw_jval_t *v, const char *s, size_t n) {
  if (!is_str(v) || n > v->len - 2)
    return 0;
  if (!v->esc)
    return v->len - 2 == n && memcmp(v->p + 1, s, n) == 0;
  const char *p = v->p + 1, *end = v->p + v->len - 1;
  size_t at = 0;
  char buf[4];
  while (p < end) {
    size_t k = decode_one(&p, end, buf);
    if (k > n - at || memcmp(buf, s + at, k) != 0)
      return 0;
    at += k;
  }
  return at == n;
}

int thaw_json_str_decode(const thaw_jval_t *v, char *buf, size_t cap,
                         size_t *n) {
  if (n)
    *n = 0;
  if (cap)
    buf[0] = '\0';
  if (!is_str(v))
    return THAW_EINVAL;
  const char *p = v->p + 1, *end = v->p + v->len - 1;
  size_t at = 0;
  if (!v->esc) {
    if (v->len - 2 >= cap)
      return THAW_E2BIG;
    memcpy(buf, p, v->len - 2);
    at = v->len - 2;
  } else {
    char one[4];
    while (p < end) {
      size_t k = decode_one(&p, end, one);
      if (k >= cap - at) {
        if (cap)
          buf[0] = '\0';
        return THAW_E2BIG;
      }
      memcpy(buf + at, one, k);
      at += k;
    }
    if (at >= cap)
      return THAW_E2BIG;
  }
  buf[at] = '\0';
  if (n)
    *n = at;
  return 0;
}

int thaw_json_int64(const thaw_jval_t *v, int64_t *out) {
  if (!v || v->type != THAW_JSON_NUMBER || v->len == 0)
    return THAW_EINVAL;
  const char *p = v->p, *end = v->p + v->len;
  int neg = *p == '-';
  p += neg;
  if (p >= end)
    return THAW_EINVAL;
  for (const char *q = p; q < end; q++)
    if (!is_digit(*q))
      return THAW_EINVAL; /* a fraction or an exponent */
  /* Accumulate as a negative number: its range is one larger. */
  int64_t acc = 0;
  for (; p < end; p++) {
    int d = *p - '0';
    if (acc < (INT64_MIN + d) / 10)
      return THAW_E2BIG;
    acc = acc * 10 - d;
  }
  if (!neg && acc == INT64_MIN)
    return THAW_E2BIG;
  *out = neg ? acc : -acc;
  return 0;
}
