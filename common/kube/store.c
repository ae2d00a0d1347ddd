/* store.c - open-addressing hash table of store.h. */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

/* One allocation per entry; the hash is kept to skip most key compares and
 * to rehash without touching the key bytes. */
typedef struct {
  uint64_t rv;
  void *rec;
  uint32_t hash;
  char key[];
} entry_t;

struct thaw_store {
  entry_t **slots; /* cap slots, NULL when empty */
  size_t cap;      /* power of two, or 0 */
  size_t count;
  size_t key_bytes;
  thaw_store_free_cb free_rec;
  void *data;
};

#define MIN_CAP 16

static uint32_t hash_key(const char *s, size_t *len) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a, then folded */
  const char *p = s;
  for (; *p; p++) {
    h ^= (unsigned char)*p;
    h *= 1099511628211ull;
  }
  *len = (size_t)(p - s);
  h ^= h >> 29;
  return (uint32_t)(h ^ (h >> 32));
}

thaw_store_t *thaw_store_new(thaw_store_free_cb free_rec, void *data) {
  thaw_store_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  s->free_rec = free_rec;
  s->data = data;
  return s;
}

static void release(thaw_store_t *s, void *rec) {
  if (s->free_rec != NULL && rec != NULL)
    s->free_rec(rec, s->data);
}

void thaw_store_free(thaw_store_t *s) {
  if (s == NULL)
    return;
  for (size_t i = 0; i < s->cap; i++) {
    if (s->slots[i] != NULL) {
      release(s, s->slots[i]->rec);
      free(s->slots[i]);
    }
  }
  free(s->slots);
  free(s);
}

size_t thaw_store_count(const thaw_store_t *s) { return s->count; }

/* Returns the slot of key, or of the empty slot where it would go. */
static size_t find(const thaw_store_t *s, const char *key, uint32_t h) {
  size_t mask = s->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    entry_t *e = s->slots[i];
    if (e == NULL || (e->hash == h && strcmp(e->key, key) == 0))
      return i;
  }
}

static int grow(thaw_store_t *s) {
  size_t ncap = s->cap ? s->cap * 2 : MIN_CAP;
  entry_t **ns = calloc(ncap, sizeof(*ns));
  if (ns == NULL)
    return THAW_ENOMEM;
  for (size_t i = 0; i < s->cap; i++) {
    entry_t *e = s->slots[i];
    if (e == NULL)
      continue;
    size_t j = e->hash & (ncap - 1);
    while (ns[j] != NULL)
      j = (j + 1) & (ncap - 1);
    ns[j] = e;
  }
  free(s->slots);
  s->slots = ns;
  s->cap = ncap;
  return 0;
}

int thaw_store_put(thaw_store_t *s, const char *key, uint64_t rv, void *rec,
                   void **old) {
  size_t len;
  uint32_t h = hash_key(key, &len);
  /* Keep the load under 3/4 so probe runs stay short. */
  if ((s->count + 1) * 4 > s->cap * 3 && grow(s) != 0)
    return THAW_ENOMEM;
  size_t i = find(s, key, h);
  entry_t *e = s->slots[i];
  if (e != NULL) {
    if (old != NULL)
      *old = e->rec;
    else
      release(s, e->rec);
    e->rec = rec;
    e->rv = rv;
    return 0;
  }
  e = malloc(sizeof(*e) + len + 1);
  if (e == NULL)
    return THAW_ENOMEM;
  e->rv = rv;
  e->rec = rec;
  e->hash = h;
  memcpy(e->key, key, len + 1);
  s->slots[i] = e;
  s->count++;
  s->key_bytes += len + 1;
  return 1;
}

void *thaw_store_get(const thaw_store_t *s, const char *key, uint64_t *rv) {
  if (s->count == 0)
    return NULL;
  size_t len;
  entry_t *e = s->slots[find(s, key, hash_key(key, &len))];
  if (e == NULL)
    return NULL;
  if (rv != NULL)
    *rv = e->rv;
  return e->rec;
}

int thaw_store_remove(thaw_store_t *s, const char *key, void **rec,
                      uint64_t *rv) {
  if (s->count == 0)
    return THAW_ENOENT;
  size_t len, mask = s->cap - 1;
  size_t i = find(s, key, hash_key(key, &len));
  entry_t *e = s->slots[i];
  if (e == NULL)
    return THAW_ENOENT;
  if (rv != NULL)
    *rv = e->rv;
  if (rec != NULL)
    *rec = e->rec;
  else
    release(s, e->rec);
  s->key_bytes -= len + 1;
  free(e);
  s->slots[i] = NULL;
  s->count--;
  /* Backward-shift deletion: no tombstones, so lookups never slow down. */
  for (size_t j = (i + 1) & mask; s->slots[j] != NULL; j = (j + 1) & mask) {
    size_t home = s->slots[j]->hash & mask;
    /* Move j into the hole when its home is not in the cyclic range (i, j]. */
    if (((j - home) & mask) >= ((j - i) & mask)) {
      s->slots[i] = s->slots[j];
      s->slots[j] = NULL;
      i = j;
    }
  }
  return 0;
}

int thaw_store_next(const thaw_store_t *s, size_t *pos, const char **key,
                    uint64_t *rv, void **rec) {
  for (; *pos < s->cap; (*pos)++) {
    entry_t *e = s->slots[*pos];
    if (e == NULL)
      continue;
    (*pos)++;
    if (key != NULL)
      *key = e->key;
    if (rv != NULL)
      *rv = e->rv;
    if (rec != NULL)
      *rec = e->rec;
    return 1;
  }
  return 0;
}

size_t thaw_store_overhead(const thaw_store_t *s) {
  return s->cap * sizeof(entry_t *) + s->count * sizeof(entry_t) +
         s->key_bytes;
}

void thaw_store_diff(const thaw_store_t *from, const thaw_store_t *to,
                     thaw_store_diff_cb cb, void *data) {
  size_t pos = 0;
  const char *key;
  uint64_t rv, orv;
  void *rec, *orec;
  while (thaw_store_next(from, &pos, &key, &rv, &rec))
    if (thaw_store_get(to, key, NULL) == NULL)
      cb(THAW_STORE_DELETED, key, rec, NULL, data);
  pos = 0;
  while (thaw_store_next(to, &pos, &key, &rv, &rec)) {
    orec = thaw_store_get(from, key, &orv);
    if (orec == NULL)
      cb(THAW_STORE_ADDED, key, NULL, rec, data);
    else if (orv != rv)
      cb(THAW_STORE_UPDATED, key, orec, rec, data);
  }
}

uint64_t thaw_store_rv(const char *rv) {
  if (rv == NULL || *rv == '\0')
    return 0;
  uint64_t v = 0;
  const char *p = rv;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > (UINT64_MAX >> 1) / 10)
      break; /* too long for a revision: hash it */
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (*p == '\0')
    return v;
  uint64_t h = 1469598103934665603ull;
  for (p = rv; *p; p++) {
    h ^= (unsigned char)*p;
    h *= 1099511628211ull;
  }
  return h | (1ull << 63);
}

void thaw_store_free_plain(void *rec, void *data) {
  (void)data;
  free(rec);
}
