/* fuzz_jsontok.c - libFuzzer target for common/json/jsontok, differential against
 * cJSON (what thaw parsed requests with before):
 *   - validity: thaw_json_parse() and cJSON (one value, then only blanks)
 *     agree, except where jsontok is knowingly stricter (raw control bytes
 *     in strings or between tokens, numbers outside RFC 8259 such as "01",
 *     "1." or "-.5", a byte order mark, a \u with a non-hex digit, which
 *     cJSON reads as \u0000) or cJSON is knowingly narrower (it reads at
 *     most 63 characters of a number);
 *   - for accepted texts, the iterators give cJSON's tree: types, members
 *     and keys in order, decoded strings (compared as C strings, since cJSON
 *     cuts them at \u0000), numbers through strtod;
 *   - the cursor, walking the same text (entering or taking values by a
 *     choice taken from the input), accepts exactly when the whole-text
 *     parse does, with the same error code and offset.
 * Any violation aborts. Seeds: test/corpus/jsontok (run on a copy). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "jsontok.h"

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "jsontok fuzz: " __VA_ARGS__);                           \
      fprintf(stderr, "\n");                                                   \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static int blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* cJSON's verdict, as admit.c used to take it. */
static cJSON *cjson_parse(const char *s, size_t n) {
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(s, n, &end, 0);
  if (!root)
    return NULL;
  while (end < s + n && blank(*end))
    end++;
  if (end != s + n) {
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

/* A run of more than 63 number characters: cJSON cuts it and fails. */
static int long_number_run(const char *s, size_t n) {
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    run = strchr("0123456789+-.eE", s[i]) && s[i] ? run + 1 : 0;
    if (run > 63)
      return 1;
  }
  return 0;
}

/* Compares a validated value with cJSON's item, recursively. */
static void same(const thaw_jval_t *v, const cJSON *item, unsigned depth) {
  CHECK(depth <= THAW_JSON_DEPTH_MAX + 1, "depth");
  switch (v->type) {
  case THAW_JSON_NULL:
    CHECK(cJSON_IsNull(item), "null");
    return;
  case THAW_JSON_TRUE:
    CHECK(cJSON_IsTrue(item), "true");
    return;
  case THAW_JSON_FALSE:
    CHECK(cJSON_IsFalse(item), "false");
    return;
  case THAW_JSON_NUMBER: {
    CHECK(cJSON_IsNumber(item), "number");
    char buf[64];
    if (v->len < sizeof(buf)) {
      memcpy(buf, v->p, v->len);
      buf[v->len] = '\0';
      double d = strtod(buf, NULL);
      CHECK(d == item->valuedouble || (d != d && item->valuedouble !=
                                                     item->valuedouble),
            "number value %s", buf);
    }
    return;
  }
  case THAW_JSON_STRING: {
    CHECK(cJSON_IsString(item), "string");
    char *buf = malloc(THAW_JSON_DECODED_MAX(v));
    size_t n = 0;
    CHECK(buf && thaw_json_str_decode(v, buf, THAW_JSON_DECODED_MAX(v), &n) ==
                     0,
          "decode");
    CHECK(strcmp(buf, item->valuestring) == 0, "string value");
    CHECK(thaw_json_str_eq(v, buf, n), "str_eq of its own decoding");
    free(buf);
    return;
  }
  case THAW_JSON_ARRAY:
  case THAW_JSON_OBJECT: {
    CHECK(v->type == THAW_JSON_ARRAY ? cJSON_IsArray(item)
                                     : cJSON_IsObject(item),
          "container type");
    thaw_jiter_t it;
    thaw_jval_t k, e;
    const cJSON *child = item->child;
    thaw_jiter_init(&it, v);
    while (thaw_jiter_next(&it, &k, &e)) {
      CHECK(child, "more members than cJSON");
      if (v->type == THAW_JSON_OBJECT) {
        char *key = malloc(THAW_JSON_DECODED_MAX(&k));
        CHECK(key && thaw_json_str_decode(&k, key, THAW_JSON_DECODED_MAX(&k),
                                          NULL) == 0,
              "key decode");
        CHECK(child->string && strcmp(key, child->string) == 0, "key");
        free(key);
      } else {
        CHECK(k.type == THAW_JSON_NONE, "array key");
      }
      same(&e, child, depth + 1);
      child = child->next;
    }
    CHECK(!child, "fewer members than cJSON");
    return;
  }
  default:
    CHECK(0, "type %d", v->type);
  }
}

/* Walks the value at the cursor: enter or take, by a choice from `seed`. */
static void walk(thaw_jcur_t *c, uint32_t seed, unsigned depth) {
  enum thaw_json_type t = thaw_jcur_peek(c);
  seed = seed * 1103515245u + 12345u;
  if ((t == THAW_JSON_OBJECT || t == THAW_JSON_ARRAY) && (seed >> 16) % 4 &&
      depth < 2000) {
    if (!thaw_jcur_enter(c, t))
      return;
    if (t == THAW_JSON_OBJECT) {
      thaw_jval_t k;
      while (thaw_jcur_member(c, &k)) {
        CHECK(k.type == THAW_JSON_STRING && k.p[0] == '"' &&
                  k.p[k.len - 1] == '"',
              "cursor key span");
        walk(c, seed + (uint32_t)k.len, depth + 1);
      }
    } else {
      while (thaw_jcur_elem(c))
        walk(c, seed ^ depth, depth + 1);
    }
    return;
  }
  thaw_jval_t v;
  if (thaw_jcur_take(c, &v)) {
    /* A taken value is valid on its own. */
    CHECK(v.len > 0 && v.type != THAW_JSON_NONE, "taken span");
    CHECK(thaw_json_parse(v.p, v.len, 0, NULL, NULL, NULL) == 0,
          "taken value does not parse alone");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  thaw_jval_t root;
  int code = 0;
  size_t where = 0;
  int rc = thaw_json_parse(s, size, 0, &root, &code, &where);
  CHECK(rc == 0 || rc == THAW_EPARSE, "rc %d", rc);
  CHECK(rc != 0 || (root.p >= s && root.p + root.len <= s + size),
        "root span");
  CHECK(rc == 0 || where <= size, "error offset");

  cJSON *cj = cjson_parse(s, size);
  if (rc == 0) {
    CHECK(cj || long_number_run(s, size), "jsontok accepts, cJSON refuses");
    if (cj)
      same(&root, cj, 0);
  } else if (cj) {
    unsigned char at = where < size ? (unsigned char)s[where] : 0;
    int stricter =
        code == THAW_JSON_E_CTRL || code == THAW_JSON_E_NUMBER ||
        /* cJSON reads a \u with a non-hex digit as \u0000 */
        (code == THAW_JSON_E_ESCAPE && where + 1 < size && s[where + 1] == 'u') ||
        ((code == THAW_JSON_E_TOKEN || code == THAW_JSON_E_TRAILING) &&
         where < size && at < 0x20) ||
        (code == THAW_JSON_E_TOKEN && where == 0 && size >= 3 &&
         memcmp(s, "\xef\xbb\xbf", 3) == 0);
    CHECK(stricter, "cJSON accepts, jsontok refuses: %s at %zu",
          thaw_json_strerror(code), where);
  }
  cJSON_Delete(cj);

  thaw_jcur_t c;
  thaw_jcur_init(&c, s, size, 0);
  walk(&c, (uint32_t)size, 0);
  int crc = thaw_jcur_finish(&c);
  CHECK(crc == rc, "cursor %d, parse %d", crc, rc);
  CHECK(rc == 0 || (c.err == code && (size_t)(c.err_at - s) == where),
        "cursor error %s at %zu, parse %s at %zu", thaw_json_strerror(c.err),
        (size_t)(c.err_at - s), thaw_json_strerror(code), where);
  return 0;
}
