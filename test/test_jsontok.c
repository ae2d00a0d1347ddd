/* test_jsontok.c - common/json/jsontok: tables of valid and invalid texts (RFC
 * 8259's grammar and edge cases, with the error code and offset expected),
 * string decoding (escapes, \u, surrogate pairs, \u0000), key comparison,
 * nesting at and over the limit, huge numbers and int64 conversion, the
 * cursor (walk, skip, errors, sticky errors, misuse) and the iterators. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "jsontok.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define S(lit) lit, sizeof(lit) - 1

static const struct {
  const char *text;
  enum thaw_json_type type;
} valid[] = {
    {"{}", THAW_JSON_OBJECT},
    {"[]", THAW_JSON_ARRAY},
    {" \t\r\n{ \t\r\n} \t\r\n", THAW_JSON_OBJECT},
    {"0", THAW_JSON_NUMBER},
    {"-0", THAW_JSON_NUMBER},
    {"-0.0e-0", THAW_JSON_NUMBER},
    {"123", THAW_JSON_NUMBER},
    {"1.5E+10", THAW_JSON_NUMBER},
    {"1e5", THAW_JSON_NUMBER},
    {"-12.0001e-0009", THAW_JSON_NUMBER},
    {"1e999999999", THAW_JSON_NUMBER}, /* out of double range: still JSON */
    {"true", THAW_JSON_TRUE},
    {"false", THAW_JSON_FALSE},
    {"null", THAW_JSON_NULL},
    {"\"\"", THAW_JSON_STRING},
    {"\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\"", THAW_JSON_STRING},
    {"\"\\u0000\\u00e9\\uFFFF\\ud83d\\ude00\"", THAW_JSON_STRING},
    {"\"\xc3\xa9 \x7f \xff\"", THAW_JSON_STRING}, /* bytes >= 0x7f pass */
    {"[1,\"a\",{\"b\":[null,true,false]},[],{}]", THAW_JSON_ARRAY},
    {"{\"a\":1,\"a\":2}", THAW_JSON_OBJECT}, /* duplicate keys are JSON */
    {"{\"\":\"\"}", THAW_JSON_OBJECT},
    {"[ 1 , 2 ]", THAW_JSON_ARRAY},
    {"{\"a\" : { \"b\" : [ ] } }", THAW_JSON_OBJECT},
    {"\"[{]}\\\"\"", THAW_JSON_STRING},
    {"{\"x\":\"long string of more than eight bytes, plain\"}",
     THAW_JSON_OBJECT},
};

static const struct {
  const char *text;
  size_t len; /* 0: strlen */
  int code;
  size_t where;
} invalid[] = {
    {"", 0, THAW_JSON_E_EOF, 0},
    {"   ", 0, THAW_JSON_E_EOF, 3},
    {"{", 0, THAW_JSON_E_EOF, 1},
    {"[1,", 0, THAW_JSON_E_EOF, 3},
    {"{\"a\"", 0, THAW_JSON_E_EOF, 4},
    {"{\"a\":", 0, THAW_JSON_E_EOF, 5},
    {"\"abc", 0, THAW_JSON_E_EOF, 4},
    {"tru", 0, THAW_JSON_E_EOF, 3},
    {"\"\\u12", 0, THAW_JSON_E_EOF, 5},
    {"{}}", 0, THAW_JSON_E_TRAILING, 2},
    {"{} x", 0, THAW_JSON_E_TRAILING, 3},
    {"{}{}", 0, THAW_JSON_E_TRAILING, 2},
    {"1 2", 0, THAW_JSON_E_TRAILING, 2},
    {"{}\x01", 0, THAW_JSON_E_TRAILING, 2},
    {"{}\0", 3, THAW_JSON_E_TRAILING, 2},
    {"\xef\xbb\xbf{}", 0, THAW_JSON_E_TOKEN, 0}, /* no byte order mark */
    {"{\x0c}", 0, THAW_JSON_E_TOKEN, 1},         /* form feed: not blank */
    {"[\x0b" "1]", 0, THAW_JSON_E_TOKEN, 1},
    {"[1,]", 0, THAW_JSON_E_TOKEN, 3},
    {"[,1]", 0, THAW_JSON_E_TOKEN, 1},
    {"{,}", 0, THAW_JSON_E_TOKEN, 1},
    {"{\"a\":1,}", 0, THAW_JSON_E_TOKEN, 7},
    {"{\"a\" 1}", 0, THAW_JSON_E_TOKEN, 5},
    {"{1:2}", 0, THAW_JSON_E_TOKEN, 1},
    {"{'a':1}", 0, THAW_JSON_E_TOKEN, 1},
    {"[1 2]", 0, THAW_JSON_E_TOKEN, 3},
    {"[}", 0, THAW_JSON_E_TOKEN, 1},
    {"{]", 0, THAW_JSON_E_TOKEN, 1},
    {"[1}", 0, THAW_JSON_E_TOKEN, 2},
    {"{\"a\":1]", 0, THAW_JSON_E_TOKEN, 6},
    {"truex", 0, THAW_JSON_E_TRAILING, 4},
    {"[truex]", 0, THAW_JSON_E_TOKEN, 5},
    {"True", 0, THAW_JSON_E_TOKEN, 0},
    {"nul", 0, THAW_JSON_E_EOF, 3},
    {"NaN", 0, THAW_JSON_E_TOKEN, 0},
    {"undefined", 0, THAW_JSON_E_TOKEN, 0},
    {"\"a\x01\"", 0, THAW_JSON_E_CTRL, 2},
    {"\"a\tb\"", 0, THAW_JSON_E_CTRL, 2},
    {"\"a\nb\"", 0, THAW_JSON_E_CTRL, 2},
    {"\"a\0b\"", 5, THAW_JSON_E_CTRL, 2},
    {"\"0123456789abcdef\x1f\"", 0, THAW_JSON_E_CTRL, 17},
    {"\"\\x41\"", 0, THAW_JSON_E_ESCAPE, 1},
    {"\"\\a\"", 0, THAW_JSON_E_ESCAPE, 1},
    {"\"\\'\"", 0, THAW_JSON_E_ESCAPE, 1},
    {"\"\\u12g4\"", 0, THAW_JSON_E_ESCAPE, 1},
    {"\"\\U0041\"", 0, THAW_JSON_E_ESCAPE, 1},
    {"\"\\ud83d\"", 0, THAW_JSON_E_UNICODE, 1},        /* lone high */
    {"\"\\ude00\"", 0, THAW_JSON_E_UNICODE, 1},        /* lone low */
    {"\"\\ud83d\\u0041\"", 0, THAW_JSON_E_UNICODE, 1}, /* high + non-low */
    {"\"\\ud83dx\\ude00\"", 0, THAW_JSON_E_UNICODE, 1},
    {"01", 0, THAW_JSON_E_NUMBER, 0},
    {"-01", 0, THAW_JSON_E_NUMBER, 0},
    {"00", 0, THAW_JSON_E_NUMBER, 0},
    {"1.", 0, THAW_JSON_E_NUMBER, 0},
    {"1.e5", 0, THAW_JSON_E_NUMBER, 0},
    {".5", 0, THAW_JSON_E_TOKEN, 0},
    {"-.5", 0, THAW_JSON_E_NUMBER, 0},
    {"+1", 0, THAW_JSON_E_TOKEN, 0},
    {"-", 0, THAW_JSON_E_NUMBER, 0},
    {"1e", 0, THAW_JSON_E_NUMBER, 0},
    {"1e+", 0, THAW_JSON_E_NUMBER, 0},
    {"1.2.3", 0, THAW_JSON_E_NUMBER, 0},
    {"[1e5e5]", 0, THAW_JSON_E_NUMBER, 1},
    {"[0x10]", 0, THAW_JSON_E_TOKEN, 2},
    {"[1-2]", 0, THAW_JSON_E_NUMBER, 1},
    {"-Infinity", 0, THAW_JSON_E_NUMBER, 0},
};

static void test_tables(void) {
  for (size_t i = 0; i < N(valid); i++) {
    thaw_jval_t v;
    int code = -1;
    size_t where = 99;
    int rc = thaw_json_parse(valid[i].text, strlen(valid[i].text), 0, &v,
                             &code, &where);
    if (rc != 0 || v.type != valid[i].type || code != 0)
      fprintf(stderr, "valid[%zu] %s: rc %d type %d code %d at %zu\n", i,
              valid[i].text, rc, v.type, code, where);
    CHECK(rc == 0 && v.type == valid[i].type && code == 0);
  }
  for (size_t i = 0; i < N(invalid); i++) {
    size_t len = invalid[i].len ? invalid[i].len : strlen(invalid[i].text);
    thaw_jval_t v = {.type = THAW_JSON_ARRAY};
    int code = 0;
    size_t where = 0;
    int rc = thaw_json_parse(invalid[i].text, len, 0, &v, &code, &where);
    if (rc != THAW_EPARSE || code != invalid[i].code ||
        where != invalid[i].where)
      fprintf(stderr, "invalid[%zu] %s: rc %d code %d (%s) at %zu\n", i,
              invalid[i].text, rc, code, thaw_json_strerror(code), where);
    CHECK(rc == THAW_EPARSE && code == invalid[i].code &&
          where == invalid[i].where && v.type == THAW_JSON_NONE);
  }
  CHECK(strcmp(thaw_json_strerror(THAW_JSON_E_CTRL),
               "raw control character in a string") == 0);
  CHECK(strcmp(thaw_json_strerror(999), "unknown JSON error") == 0);
  /* Errors found inside every text of the table, also one byte short. */
  for (size_t i = 0; i < N(valid); i++) {
    size_t len = strlen(valid[i].text);
    int code = 0;
    char last = valid[i].text[len - 1];
    if (len > 1 && (last == '"' || last == ']' || last == '}'))
      CHECK(thaw_json_parse(valid[i].text, len - 1, 0, NULL, &code, NULL) ==
                THAW_EPARSE &&
            code == THAW_JSON_E_EOF);
  }
}

static void test_strings(void) {
  static const struct {
    const char *json;
    const char *want;
    size_t wlen;
  } dec[] = {
      {"\"plain\"", S("plain")},
      {"\"\"", S("")},
      {"\"a\\\"b\\\\c\\/d\"", S("a\"b\\c/d")},
      {"\"\\b\\f\\n\\r\\t\"", S("\b\f\n\r\t")},
      {"\"\\u0041\\u00e9\\u20AC\"", S("A\xc3\xa9\xe2\x82\xac")},
      {"\"x\\u0000y\"", S("x\0y")},
      {"\"\\ud83d\\ude00\"", S("\xf0\x9f\x98\x80")},  /* U+1F600 */
      {"\"\\uD800\\uDC00\"", S("\xf0\x90\x80\x80")},  /* U+10000 */
      {"\"\\udbff\\udfff\"", S("\xf4\x8f\xbf\xbf")},  /* U+10FFFF */
      {"\"\\uffff\"", S("\xef\xbf\xbf")},
      {"\"\\u07ff\\u0800\"", S("\xdf\xbf\xe0\xa0\x80")},
      {"\"\xc3\xa9\"", S("\xc3\xa9")},
  };
  for (size_t i = 0; i < N(dec); i++) {
    thaw_jval_t v;
    CHECK(thaw_json_parse(dec[i].json, strlen(dec[i].json), 0, &v, NULL,
                          NULL) == 0);
    CHECK(v.esc == (strchr(dec[i].json, '\\') != NULL));
    char buf[64];
    size_t n = 99;
    CHECK(thaw_json_str_decode(&v, buf, sizeof(buf), &n) == 0);
    if (n != dec[i].wlen || memcmp(buf, dec[i].want, n) != 0)
      fprintf(stderr, "decode[%zu] %s: got %zu bytes\n", i, dec[i].json, n);
    CHECK(n == dec[i].wlen && memcmp(buf, dec[i].want, n) == 0 &&
          buf[n] == '\0');
    CHECK(n <= THAW_JSON_DECODED_MAX(&v) - 1);
    CHECK(thaw_json_str_eq(&v, dec[i].want, dec[i].wlen));
    if (dec[i].wlen > 0) {
      CHECK(!thaw_json_str_eq(&v, dec[i].want, dec[i].wlen - 1));
      char other[64];
      memcpy(other, dec[i].want, dec[i].wlen);
      other[dec[i].wlen - 1] ^= 1;
      CHECK(!thaw_json_str_eq(&v, other, dec[i].wlen));
    }
    /* Exactly enough room (bytes + NUL) works; one less is E2BIG. */
    char tight[64];
    CHECK(thaw_json_str_decode(&v, tight, n + 1, NULL) == 0);
    CHECK(thaw_json_str_decode(&v, tight, n, NULL) == THAW_E2BIG &&
          (n == 0 || tight[0] == '\0'));
    /* The documented bound always fits. */
    CHECK(thaw_json_str_decode(&v, tight, THAW_JSON_DECODED_MAX(&v), NULL) ==
          0);
  }
  thaw_jval_t num;
  char buf[8];
  CHECK(thaw_json_parse(S("12"), 0, &num, NULL, NULL) == 0);
  CHECK(thaw_json_str_decode(&num, buf, sizeof(buf), NULL) == THAW_EINVAL);
  CHECK(!thaw_json_str_eq(&num, S("12")));
  CHECK(!thaw_json_str_eq(NULL, S("")));
}

static void test_depth(void) {
  enum { DEEP = 100000 };
  char *t = malloc(2 * DEEP + 16);
  CHECK(t != NULL);
  if (!t)
    return;
  for (size_t d = 998; d <= 1001; d++) {
    memset(t, '[', d);
    memset(t + d, ']', d);
    int code = 0;
    size_t where = 0;
    int rc = thaw_json_parse(t, 2 * d, 0, NULL, &code, &where);
    CHECK(d <= THAW_JSON_DEPTH_MAX ? rc == 0
                                   : rc == THAW_EPARSE &&
                                         code == THAW_JSON_E_DEPTH &&
                                         where == THAW_JSON_DEPTH_MAX);
  }
  /* Objects count too, and a smaller limit is honoured. */
  size_t n = 0;
  for (int i = 0; i < 10; i++)
    n += (size_t)snprintf(t + n, 16, "{\"k\":");
  memcpy(t + n, "1", 1);
  n++;
  memset(t + n, '}', 10);
  n += 10;
  CHECK(thaw_json_parse(t, n, 10, NULL, NULL, NULL) == 0);
  int code = 0;
  CHECK(thaw_json_parse(t, n, 9, NULL, &code, NULL) == THAW_EPARSE &&
        code == THAW_JSON_E_DEPTH);
  /* Far over the limit: refused without recursion, wherever it is. */
  memset(t, '[', DEEP);
  memset(t + DEEP, ']', DEEP);
  CHECK(thaw_json_parse(t, 2 * DEEP, 0, NULL, &code, NULL) == THAW_EPARSE &&
        code == THAW_JSON_E_DEPTH);
  memcpy(t, "{\"a\":", 5);
  CHECK(thaw_json_parse(t, DEEP, 0, NULL, &code, NULL) == THAW_EPARSE &&
        code == THAW_JSON_E_DEPTH);
  free(t);
}

static void test_numbers(void) {
  /* 2000 digits, and exponents beyond any double: valid JSON. */
  char big[2100];
  memset(big, '9', 2000);
  big[0] = '-';
  memcpy(big + 2000, ".5e-99999", 9);
  thaw_jval_t v;
  CHECK(thaw_json_parse(big, 2009, 0, &v, NULL, NULL) == 0 &&
        v.type == THAW_JSON_NUMBER && v.len == 2009);
  int64_t x = 0;
  CHECK(thaw_json_int64(&v, &x) == THAW_EINVAL);
  CHECK(thaw_json_parse(big, 2000, 0, &v, NULL, NULL) == 0);
  CHECK(thaw_json_int64(&v, &x) == THAW_E2BIG);
  static const struct {
    const char *text;
    int rc;
    int64_t want;
  } ints[] = {
      {"0", 0, 0},
      {"-0", 0, 0},
      {"42", 0, 42},
      {"-42", 0, -42},
      {"9223372036854775807", 0, INT64_MAX},
      {"-9223372036854775808", 0, INT64_MIN},
      {"9223372036854775808", THAW_E2BIG, 0},
      {"-9223372036854775809", THAW_E2BIG, 0},
      {"1.0", THAW_EINVAL, 0},
      {"1e3", THAW_EINVAL, 0},
  };
  for (size_t i = 0; i < N(ints); i++) {
    CHECK(thaw_json_parse(ints[i].text, strlen(ints[i].text), 0, &v, NULL,
                          NULL) == 0);
    x = 7;
    int rc = thaw_json_int64(&v, &x);
    CHECK(rc == ints[i].rc && (rc != 0 || x == ints[i].want));
  }
  thaw_jval_t s;
  CHECK(thaw_json_parse(S("\"1\""), 0, &s, NULL, NULL) == 0);
  CHECK(thaw_json_int64(&s, &x) == THAW_EINVAL);
}

/* The cursor: enter the containers of interest, take the rest. */
static void test_cursor(void) {
  static const char doc[] =
      " {\"kind\":\"Pod\",\"skip\":{\"deep\":[1,{\"x\":\"}]\"}]},"
      "\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"img\\/1\"},"
      "7,{\"image\":\"b\"}]},\"n\":[],\"e\":{}} ";
  thaw_jcur_t c;
  thaw_jcur_init(&c, doc, sizeof(doc) - 1, 0);
  CHECK(thaw_jcur_peek(&c) == THAW_JSON_OBJECT);
  CHECK(thaw_jcur_enter(&c, THAW_JSON_ARRAY) == 0 && c.err == 0);
  CHECK(thaw_jcur_enter(&c, THAW_JSON_OBJECT) == 1);
  thaw_jval_t k, v, skipped = {0}, containers = {0};
  int members = 0;
  while (thaw_jcur_member(&c, &k)) {
    members++;
    if (thaw_json_str_eq(&k, S("spec"))) {
      CHECK(thaw_jcur_enter(&c, THAW_JSON_OBJECT));
      while (thaw_jcur_member(&c, &k))
        CHECK(thaw_jcur_take(&c, &containers));
    } else if (thaw_json_str_eq(&k, S("n"))) {
      CHECK(thaw_jcur_enter(&c, THAW_JSON_ARRAY));
      CHECK(thaw_jcur_elem(&c) == 0);
    } else if (thaw_json_str_eq(&k, S("skip"))) {
      CHECK(thaw_jcur_take(&c, &skipped));
    } else {
      CHECK(thaw_jcur_take(&c, &v));
    }
  }
  CHECK(members == 5 && c.err == 0 && c.depth == 0);
  CHECK(thaw_jcur_finish(&c) == 0);
  CHECK(skipped.type == THAW_JSON_OBJECT &&
        skipped.len == strlen("{\"deep\":[1,{\"x\":\"}]\"}]}") &&
        skipped.p[skipped.len - 1] == '}');
  /* The taken array is walked later without validation. */
  thaw_jiter_t it;
  thaw_jiter_init(&it, &containers);
  thaw_jval_t el, img;
  int n = 0, images = 0;
  while (thaw_jiter_next(&it, NULL, &el)) {
    n++;
    if (thaw_json_get(&el, S("image"), &img)) {
      images++;
      char buf[16];
      size_t len;
      CHECK(thaw_json_str_decode(&img, buf, sizeof(buf), &len) == 0);
      CHECK(n != 1 || (len == 5 && memcmp(buf, "img/1", 5) == 0));
    }
  }
  CHECK(n == 3 && images == 2);
  CHECK(thaw_jiter_next(&it, NULL, &el) == 0 && el.type == THAW_JSON_NONE);

  /* Errors are sticky and found where they are, even in skipped parts. */
  static const char broken[] = "{\"a\":{\"b\":[1,2,}]},\"c\":1}";
  thaw_jcur_init(&c, S(broken), 0);
  CHECK(thaw_jcur_enter(&c, THAW_JSON_OBJECT));
  CHECK(thaw_jcur_member(&c, &k) == 1);
  CHECK(thaw_jcur_take(&c, &v) == 0 && c.err == THAW_JSON_E_TOKEN &&
        c.err_at == broken + 15);
  CHECK(thaw_jcur_member(&c, &k) == 0 && thaw_jcur_take(&c, &v) == 0);
  CHECK(thaw_jcur_finish(&c) == THAW_EPARSE && c.err == THAW_JSON_E_TOKEN);

  /* Misuse: a member asked in an array, finish with a container open, a
   * second root value, finish before any value. */
  thaw_jcur_init(&c, S("[1]"), 0);
  CHECK(thaw_jcur_enter(&c, THAW_JSON_ARRAY));
  CHECK(thaw_jcur_member(&c, &k) == 0 && c.err == THAW_JSON_E_USAGE);
  thaw_jcur_init(&c, S("[1]"), 0);
  CHECK(thaw_jcur_enter(&c, THAW_JSON_ARRAY) && thaw_jcur_elem(&c));
  CHECK(thaw_jcur_finish(&c) == THAW_EPARSE && c.err == THAW_JSON_E_USAGE);
  thaw_jcur_init(&c, S("1"), 0);
  CHECK(thaw_jcur_take(&c, NULL) && thaw_jcur_take(&c, NULL) == 0 &&
        c.err == THAW_JSON_E_TRAILING);
  thaw_jcur_init(&c, S("1"), 0);
  CHECK(thaw_jcur_finish(&c) == THAW_EPARSE && c.err == THAW_JSON_E_EOF);
  /* A member's value left unconsumed shows up as a syntax error. */
  thaw_jcur_init(&c, S("{\"a\":1,\"b\":2}"), 0);
  CHECK(thaw_jcur_enter(&c, THAW_JSON_OBJECT) && thaw_jcur_member(&c, &k));
  CHECK(thaw_jcur_member(&c, &k) == 0 && c.err == THAW_JSON_E_TOKEN);
  /* Entering counts against the limit like scanning does. */
  thaw_jcur_init(&c, S("[[[1]]]"), 2);
  CHECK(thaw_jcur_enter(&c, THAW_JSON_ARRAY) && thaw_jcur_elem(&c));
  CHECK(thaw_jcur_take(&c, NULL) == 0 && c.err == THAW_JSON_E_DEPTH);
  thaw_jcur_init(&c, S("[[[1]]]"), 2);
  CHECK(thaw_jcur_enter(&c, THAW_JSON_ARRAY) && thaw_jcur_elem(&c));
  CHECK(thaw_jcur_enter(&c, THAW_JSON_ARRAY) && thaw_jcur_elem(&c));
  CHECK(thaw_jcur_enter(&c, THAW_JSON_ARRAY) == 0 &&
        c.err == THAW_JSON_E_DEPTH);
}

static void test_iter(void) {
  static const char doc[] =
      "{ \"a\" : 1 , \"dup\":\"first\",\"dup\":\"second\",\"\\u0069mage\":"
      "\"x\",\"nul\\u0000\":true,\"arr\":[ \"s\" , [1,[2]] , {\"q\":\"]\"} ,"
      "null ] , \"e\\\\\":{}}";
  thaw_jval_t root, v;
  CHECK(thaw_json_parse(S(doc), 0, &root, NULL, NULL) == 0);
  CHECK(thaw_json_get(&root, S("dup"), &v) && thaw_json_str_eq(&v, S("first")));
  CHECK(thaw_json_get(&root, S("image"), &v) && thaw_json_str_eq(&v, S("x")));
  CHECK(thaw_json_get(&root, S("nul\0"), &v) && v.type == THAW_JSON_TRUE);
  CHECK(!thaw_json_get(&root, S("nul"), &v) && v.type == THAW_JSON_NONE);
  CHECK(thaw_json_get(&root, S("e\\"), &v) && v.type == THAW_JSON_OBJECT &&
        v.len == 2);
  CHECK(thaw_json_get(&root, S("a"), &v) && v.type == THAW_JSON_NUMBER &&
        v.len == 1);
  CHECK(thaw_json_get(&root, S("arr"), &v) && v.type == THAW_JSON_ARRAY);
  static const enum thaw_json_type want[] = {
      THAW_JSON_STRING, THAW_JSON_ARRAY, THAW_JSON_OBJECT, THAW_JSON_NULL};
  static const size_t wlen[] = {3, 7, 9, 4};
  thaw_jiter_t it;
  thaw_jiter_init(&it, &v);
  thaw_jval_t k, e;
  size_t i = 0;
  while (thaw_jiter_next(&it, &k, &e)) {
    CHECK(i < 4 && k.type == THAW_JSON_NONE && e.type == want[i] &&
          e.len == wlen[i]);
    i++;
  }
  CHECK(i == 4);
  /* Iterating a scalar, or a value of another text, gives nothing. */
  thaw_jval_t one;
  CHECK(thaw_json_parse(S("1"), 0, &one, NULL, NULL) == 0);
  thaw_jiter_init(&it, &one);
  CHECK(thaw_jiter_next(&it, &k, &e) == 0);
  CHECK(!thaw_json_get(&one, S("a"), &e));
  /* Keys of every member, in order, decoded. */
  thaw_jiter_init(&it, &root);
  static const char *const keys[] = {"a",   "dup", "dup", "image",
                                     "nul", "arr", "e\\"};
  i = 0;
  while (thaw_jiter_next(&it, &k, &e)) {
    char buf[16];
    size_t n;
    CHECK(i < N(keys) && thaw_json_str_decode(&k, buf, sizeof(buf), &n) == 0 &&
          strcmp(buf, keys[i]) == 0);
    i++;
  }
  CHECK(i == N(keys));
}

int main(void) {
  test_tables();
  test_strings();
  test_depth();
  test_numbers();
  test_cursor();
  test_iter();
  if (failures)
    fprintf(stderr, "test_jsontok: %d failures\n", failures);
  return failures != 0;
}
