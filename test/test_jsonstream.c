/* test_jsonstream.c - table-driven tests of the watch-event line decoder.
 *
 * Each case is fed whole, split in two at every byte boundary, and one byte
 * at a time; the events and the error must be the same every way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "error.h"
#include "jsonstream.h"
#include "kube.h"

#define MAX_EVENTS 8

typedef struct {
  char *got[MAX_EVENTS];
  int n;
  int stop_after; /* callback returns 1 after this many; 0 = never */
} sink_t;

static int collect(cJSON *doc, void *data) {
  sink_t *s = data;
  if (s->n >= MAX_EVENTS)
    abort(); /* the table never expects this many */
  s->got[s->n++] = cJSON_PrintUnformatted(doc);
  return s->stop_after && s->n >= s->stop_after ? 1 : 0;
}

static void sink_clear(sink_t *s) {
  for (int i = 0; i < s->n; i++)
    free(s->got[i]);
  s->n = 0;
}

typedef struct {
  const char *name;
  const char *in;
  const char *want[MAX_EVENTS]; /* compact JSON of each event, NULL-ended */
  int err;                      /* from feed or end */
} tcase_t;

static const tcase_t cases[] = {
    {"one event", "{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n",
     {"{\"type\":\"ADDED\",\"object\":{\"a\":1}}"}, 0},
    {"several in one chunk", "{\"a\":1}\n{\"b\":2}\n{\"c\":[3]}\n",
     {"{\"a\":1}", "{\"b\":2}", "{\"c\":[3]}"}, 0},
    {"crlf", "{\"a\":1}\r\n{\"b\":\"x\\ny\"}\r\n",
     {"{\"a\":1}", "{\"b\":\"x\\ny\"}"}, 0},
    {"empty and blank lines", "\n\r\n  \n{\"a\":1}\n\n\t\n{\"b\":2}\n",
     {"{\"a\":1}", "{\"b\":2}"}, 0},
    {"last event without newline is truncated", "{\"a\":1}\n{\"b\":",
     {"{\"a\":1}"}, THAW_EPARSE},
    {"complete value without newline is still unfinished", "{\"a\":1}",
     {NULL}, THAW_EPARSE},
    {"trailing blanks at end are fine", "{\"a\":1}\n  \r", {"{\"a\":1}"}, 0},
    {"garbage", "{\"a\":1}\nnot json\n{\"b\":2}\n", {"{\"a\":1}"},
     THAW_EPARSE},
    {"two values on one line", "{\"a\":1}{\"b\":2}\n", {NULL}, THAW_EPARSE},
    {"value then junk", "{\"a\":1} x\n", {NULL}, THAW_EPARSE},
    {"unbalanced", "{\"a\":[1,2}\n", {NULL}, THAW_EPARSE},
    {"nul byte inside a line", "{\"a\":1}\0\n", {NULL}, THAW_EPARSE},
    {"empty input", "", {NULL}, 0},
    {"utf-8 passes through", "{\"s\":\"\xc3\xa9t\xc3\xa9\"}\n",
     {"{\"s\":\"\xc3\xa9t\xc3\xa9\"}"}, 0},
};

/* Input length: the NUL case embeds a NUL, so lengths are explicit. */
static size_t in_len(const tcase_t *c) {
  if (strcmp(c->name, "nul byte inside a line") == 0)
    return 9;
  return strlen(c->in);
}

/* Feeds `in` cut at the given offsets; returns the first error. */
static int run(const char *in, size_t len, const size_t *cuts, int ncuts,
               sink_t *s) {
  thaw_jsonstream_t js;
  thaw_jsonstream_init(&js, 1024);
  size_t at = 0;
  int rc = 0;
  for (int i = 0; i <= ncuts && !rc; i++) {
    size_t end = i < ncuts ? cuts[i] : len;
    rc = thaw_jsonstream_feed(&js, in + at, end - at, collect, s);
    at = end;
  }
  if (!rc)
    rc = thaw_jsonstream_end(&js);
  /* errors are sticky */
  if (rc && rc != 1)
    CHECK(thaw_jsonstream_feed(&js, "{}\n", 3, collect, s) == rc);
  thaw_jsonstream_free(&js);
  return rc;
}

static void check(const tcase_t *c, const sink_t *s, int rc, const char *how) {
  int nwant = 0;
  while (nwant < MAX_EVENTS && c->want[nwant])
    nwant++;
  int ok = rc == c->err && s->n == nwant;
  for (int i = 0; ok && i < nwant; i++)
    ok = strcmp(s->got[i], c->want[i]) == 0;
  if (!ok) {
    fprintf(stderr, "FAIL %s (%s): rc %d want %d, %d events want %d\n",
            c->name, how, rc, c->err, s->n, nwant);
    for (int i = 0; i < s->n; i++)
      fprintf(stderr, "  got %s\n", s->got[i]);
    exit(1);
  }
}

static void test_table(void) {
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const tcase_t *c = &cases[ci];
    size_t len = in_len(c);
    sink_t s = {0};
    int rc = run(c->in, len, NULL, 0, &s);
    check(c, &s, rc, "whole");
    sink_clear(&s);
    for (size_t cut = 0; cut <= len; cut++) {
      rc = run(c->in, len, &cut, 1, &s);
      check(c, &s, rc, "split");
      sink_clear(&s);
    }
    size_t *cuts = calloc(len + 1, sizeof *cuts);
    for (size_t i = 0; i < len; i++)
      cuts[i] = i + 1;
    rc = run(c->in, len, cuts, (int)len, &s);
    check(c, &s, rc, "bytewise");
    sink_clear(&s);
    free(cuts);
  }
  printf("ok table (%zu cases)\n", sizeof cases / sizeof cases[0]);
}

/* A line of exactly `size` bytes: {"p":"xxxx..."} */
static char *make_event(size_t size, const char *ending) {
  size_t el = strlen(ending);
  char *b = malloc(size + el + 1);
  memcpy(b, "{\"p\":\"", 6);
  memset(b + 6, 'x', size - 8);
  memcpy(b + size - 2, "\"}", 2);
  memcpy(b + size, ending, el + 1);
  return b;
}

static void test_max_event(void) {
  const size_t max = THAW_KUBE_MAX_EVENT;
  sink_t s = {0};
  thaw_jsonstream_t js;

  /* exactly the maximum, with LF and with CRLF, fed in odd chunks */
  const char *endings[] = {"\n", "\r\n"};
  for (int e = 0; e < 2; e++) {
    char *ev = make_event(max, endings[e]);
    size_t len = strlen(ev);
    thaw_jsonstream_init(&js, max);
    for (size_t at = 0; at < len; at += 65521) {
      size_t n = len - at < 65521 ? len - at : 65521;
      CHECK(thaw_jsonstream_feed(&js, ev + at, n, collect, &s) == 0);
    }
    CHECK(thaw_jsonstream_end(&js) == 0);
    CHECK(s.n == 1 && strlen(s.got[0]) == max);
    sink_clear(&s);
    thaw_jsonstream_free(&js);
    free(ev);
  }

  /* one byte more: THAW_E2BIG as soon as the line passes the maximum,
   * before its end arrives, and never more than max + 1 bytes held */
  char *ev = make_event(max + 1, "\n{\"after\":1}\n");
  size_t len = strlen(ev);
  thaw_jsonstream_init(&js, max);
  int rc = 0;
  size_t at = 0;
  while (at < len && !rc) {
    size_t n = len - at < 4096 ? len - at : 4096;
    rc = thaw_jsonstream_feed(&js, ev + at, n, collect, &s);
    CHECK(thaw_jsonstream_pending(&js) <= max + 1);
    at += n;
  }
  CHECK(rc == THAW_E2BIG);
  CHECK(at <= max + 4096); /* failed before the newline at max + 1 */
  CHECK(s.n == 0);
  CHECK(thaw_jsonstream_end(&js) == THAW_E2BIG);
  thaw_jsonstream_free(&js);

  /* the same line in one chunk with its newline */
  thaw_jsonstream_init(&js, max);
  CHECK(thaw_jsonstream_feed(&js, ev, len, collect, &s) == THAW_E2BIG);
  CHECK(s.n == 0);
  thaw_jsonstream_free(&js);

  /* max + 1 bytes ending in '\r' may still be a CRLF-ended max line */
  char *crlf = make_event(max, "\r\n");
  thaw_jsonstream_init(&js, max);
  CHECK(thaw_jsonstream_feed(&js, crlf, max + 1, collect, &s) == 0);
  CHECK(thaw_jsonstream_feed(&js, crlf + max + 1, 1, collect, &s) == 0);
  CHECK(s.n == 1);
  sink_clear(&s);
  thaw_jsonstream_free(&js);
  free(crlf);

  /* max + 1 bytes then CR LF: too big */
  thaw_jsonstream_init(&js, max);
  char *big = make_event(max + 1, "\r\n");
  CHECK(thaw_jsonstream_feed(&js, big, max + 1, collect, &s) == THAW_E2BIG);
  thaw_jsonstream_free(&js);
  free(big);
  free(ev);
  printf("ok max event\n");
}

/* A 3 MiB line arriving one byte at a time must cost O(n), not O(n^2). */
static void test_linear(void) {
  const size_t max = THAW_KUBE_MAX_EVENT;
  char *ev = make_event(max, "\n");
  size_t len = strlen(ev);
  sink_t s = {0};
  thaw_jsonstream_t js;
  thaw_jsonstream_init(&js, max);
  clock_t t0 = clock();
  for (size_t i = 0; i < len; i++)
    CHECK(thaw_jsonstream_feed(&js, ev + i, 1, collect, &s) == 0);
  double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
  CHECK(s.n == 1);
  CHECK(secs < 5.0); /* quadratic rescans would take minutes */
  sink_clear(&s);
  thaw_jsonstream_free(&js);
  free(ev);
  printf("ok linear (%.2fs for %zu one-byte chunks)\n", secs, len);
}

static void test_callback_stop(void) {
  const char *in = "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n";
  sink_t s = {.stop_after = 2};
  thaw_jsonstream_t js;
  thaw_jsonstream_init(&js, 1024);
  CHECK(thaw_jsonstream_feed(&js, in, strlen(in), collect, &s) == 1);
  CHECK(s.n == 2);
  sink_clear(&s);
  thaw_jsonstream_free(&js);
  printf("ok callback stop\n");
}

int main(void) {
  test_table();
  test_max_event();
  test_linear();
  test_callback_stop();
  return 0;
}
