/* fuzz_jsonstream.c - libFuzzer target for the watch-event line decoder.
 *
 * The first byte picks a chunk size, so lines are split at arbitrary points;
 * the decoder must never crash, leak or hold more than max + 1 bytes. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "jsonstream.h"

static int sink(cJSON *doc, void *data) {
  (void)data;
  return cJSON_IsObject(doc) && cJSON_GetArraySize(doc) == 7 ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t chunk = (size_t)data[0] % 17 + 1, max = 64;
  thaw_jsonstream_t js;
  thaw_jsonstream_init(&js, max);
  int rc = 0;
  for (size_t at = 1; at < size && !rc; at += chunk) {
    size_t n = size - at < chunk ? size - at : chunk;
    rc = thaw_jsonstream_feed(&js, (const char *)data + at, n, sink, NULL);
    assert(thaw_jsonstream_pending(&js) <= max + 1);
  }
  if (!rc)
    thaw_jsonstream_end(&js);
  thaw_jsonstream_free(&js);
  return 0;
}
