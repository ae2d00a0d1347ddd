/* gc_agent_output.c - what thaw-registry-gc reads in the output of
 * `registry garbage-collect` (gc_agent.h): the summary counts, and the
 * error of a storage that holds nothing yet. No I/O. */
#include <string.h>

#include "error.h"
#include "gc_agent.h"

#define COUNT_DIGITS_MAX 18 /* fits a long long */

/* Reads a decimal count at *p; advances past it. */
static int count(const char **p, long long *out) {
  size_t n = strspn(*p, "0123456789");
  if (n == 0 || n > COUNT_DIGITS_MAX)
    return -1;
  long long v = 0;
  for (size_t i = 0; i < n; i++)
    v = v * 10 + ((*p)[i] - '0');
  *p += n;
  *out = v;
  return 0;
}

static int word(const char **p, const char *w) {
  size_t n = strlen(w);
  if (strncmp(*p, w, n) != 0)
    return -1;
  *p += n;
  return 0;
}

int thaw_gc_parse_summary(const char *line, thaw_gc_counts_t *out) {
  thaw_gc_counts_t c;
  const char *p = line;
  if (line == NULL || count(&p, &c.blobs_marked) != 0 ||
      word(&p, " blobs marked, ") != 0 || count(&p, &c.blobs_deleted) != 0 ||
      word(&p, " blobs and ") != 0 || count(&p, &c.manifests_deleted) != 0 ||
      word(&p, " manifests eligible for deletion") != 0)
    return THAW_EPARSE;
  p += strspn(p, " \t\r\n");
  if (*p != '\0')
    return THAW_EPARSE;
  *out = c;
  return 0;
}

/* "Path not found: <root>" with nothing more to the path (a path deeper
 * down missing is a real error). */
static int path_not_found(const char *s, const char *root) {
  static const char prefix[] = "Path not found: ";
  size_t n = strlen(root);
  for (const char *p = strstr(s, prefix); p; p = strstr(p + 1, prefix)) {
    const char *q = p + sizeof prefix - 1;
    if (strncmp(q, root, n) == 0 &&
        (q[n] == '\0' || strchr(" \t\r\n,;", q[n]) != NULL))
      return 1;
  }
  return 0;
}

int thaw_gc_output_empty_storage(const char *err_text) {
  if (err_text == NULL)
    return 0;
  /* The mark phase lists repositories, the sweep lists blobs; before the
   * first push neither directory exists (filesystem and S3 alike). */
  return path_not_found(err_text, "/docker/registry/v2/repositories") ||
         path_not_found(err_text, "/docker/registry/v2/blobs");
}
