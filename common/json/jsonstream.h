/* jsonstream.h - incremental decoder of newline-delimited JSON (watch events).
 *
 * Owner: the http + kube client module. Pure: no I/O, no loop.
 *
 * Bytes are fed in chunks of any size; each complete line is parsed with
 * cJSON and handed to a callback. Each line is scanned once, so a line that
 * arrives in many chunks costs O(length). Lines may end in "\n" or "\r\n";
 * blank lines are skipped. A line longer than the maximum fails with
 * THAW_E2BIG as soon as that is known, without buffering the rest of it.
 * Errors are sticky: after one, every call returns it again. */
#ifndef THAW_JSONSTREAM_H
#define THAW_JSONSTREAM_H

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct {
  char *buf;  /* the incomplete last line; NULL when empty */
  size_t len, cap;
  size_t max; /* longest accepted line, without its line ending */
  int err;    /* first error, sticky */
} thaw_jsonstream_t;

/* Called with each parsed line; `doc` is owned by the stream and deleted
 * when the callback returns (cJSON_DetachItem* what must outlive it). Return
 * 0 to go on, or non-zero to stop: thaw_jsonstream_feed() then returns that
 * value at once. The callback must not free the stream. */
typedef int (*thaw_jsonstream_cb)(cJSON *doc, void *data);

/* Prepares an empty stream accepting lines of up to max_line bytes. This
 * function can't fail. */
void thaw_jsonstream_init(thaw_jsonstream_t *s, size_t max_line);

/* Consumes n bytes. Returns 0, THAW_EPARSE (a line is not one JSON value),
 * THAW_E2BIG (a line is over the maximum), THAW_ENOMEM, or the callback's
 * non-zero return. */
int thaw_jsonstream_feed(thaw_jsonstream_t *s, const char *p, size_t n,
                         thaw_jsonstream_cb cb, void *data);

/* End of input: returns THAW_EPARSE when an unterminated, non-blank line is
 * left (a truncated event), else 0 (or the sticky error). */
int thaw_jsonstream_end(thaw_jsonstream_t *s);

/* Bytes of the incomplete line held now (for tests and diagnostics). */
size_t thaw_jsonstream_pending(const thaw_jsonstream_t *s);

/* Releases the buffer; the stream may be initialised again. */
void thaw_jsonstream_free(thaw_jsonstream_t *s);

#endif
