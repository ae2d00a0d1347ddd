/* intern.c - reference-counted string table of intern.h. */
#include "intern.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint32_t refs;
  uint32_t hash;
  char s[];
} istr_t;

struct thaw_intern {
  istr_t **slots; /* open addressing, linear probing, cap a power of two */
  size_t cap;
  size_t count;
};

static istr_t *of(const char *s) {
  return (istr_t *)(void *)(s - offsetof(istr_t, s));
}

static uint32_t hash_bytes(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  h ^= h >> 29;
  return (uint32_t)(h ^ (h >> 32));
}

thaw_intern_t *thaw_intern_new(void) { return calloc(1, sizeof(thaw_intern_t)); }

void thaw_intern_free(thaw_intern_t *t) {
  if (t == NULL)
    return;
  for (size_t i = 0; i < t->cap; i++)
    free(t->slots[i]);
  free(t->slots);
  free(t);
}

static int grow(thaw_intern_t *t) {
  size_t ncap = t->cap ? t->cap * 2 : 64;
  istr_t **ns = calloc(ncap, sizeof(*ns));
  if (ns == NULL)
    return -1;
  for (size_t i = 0; i < t->cap; i++) {
    if (t->slots[i] == NULL)
      continue;
    size_t j = t->slots[i]->hash & (ncap - 1);
    while (ns[j] != NULL)
      j = (j + 1) & (ncap - 1);
    ns[j] = t->slots[i];
  }
  free(t->slots);
  t->slots = ns;
  t->cap = ncap;
  return 0;
}

const char *thaw_intern_ref(thaw_intern_t *t, const char *s, size_t len) {
  if ((t->count + 1) * 2 > t->cap && grow(t) != 0)
    return NULL;
  uint32_t h = hash_bytes(s, len);
  size_t mask = t->cap - 1, i = h & mask;
  for (; t->slots[i] != NULL; i = (i + 1) & mask) {
    istr_t *e = t->slots[i];
    if (e->hash == h && strncmp(e->s, s, len) == 0 && e->s[len] == '\0') {
      e->refs++;
      return e->s;
    }
  }
  istr_t *e = malloc(sizeof(*e) + len + 1);
  if (e == NULL)
    return NULL;
  e->refs = 1;
  e->hash = h;
  memcpy(e->s, s, len);
  e->s[len] = '\0';
  t->slots[i] = e;
  t->count++;
  return e->s;
}

const char *thaw_intern_dup(const char *s) {
  of(s)->refs++;
  return s;
}

void thaw_intern_unref(thaw_intern_t *t, const char *s) {
  if (s == NULL)
    return;
  istr_t *e = of(s);
  if (--e->refs > 0)
    return;
  size_t mask = t->cap - 1, i = e->hash & mask;
  while (t->slots[i] != e)
    i = (i + 1) & mask;
  t->slots[i] = NULL;
  t->count--;
  free(e);
  /* Backward-shift deletion, as in store.c. */
  for (size_t j = (i + 1) & mask; t->slots[j] != NULL; j = (j + 1) & mask) {
    size_t home = t->slots[j]->hash & mask;
    if (((j - home) & mask) >= ((j - i) & mask)) {
      t->slots[i] = t->slots[j];
      t->slots[j] = NULL;
      i = j;
    }
  }
}

size_t thaw_intern_count(const thaw_intern_t *t) { return t->count; }

uint32_t thaw_intern_refs(const char *s) { return of(s)->refs; }
