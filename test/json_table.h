/* json_table.h - JSON written with ' for " in test tables (readable), for
 * the C tests that link cJSON. */
#ifndef THAW_TEST_JSON_TABLE_H
#define THAW_TEST_JSON_TABLE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cJSON.h"

static inline cJSON *json(const char *s) {
  char *b = strdup(s);
  for (char *p = b; *p; p++)
    if (*p == '\'')
      *p = '"';
  cJSON *o = cJSON_Parse(b);
  if (o == NULL)
    fprintf(stderr, "bad JSON in the table: %s\n", b);
  free(b);
  return o;
}

#endif
