/* intern.h - a table of shared, reference-counted, immutable strings.
 *
 * Many pods name the same few images: each distinct string is stored once
 * and records hold pointers to it, so equal interned strings (from one
 * table) are equal pointers. Not thread-safe; one loop owns a table. */
#ifndef THAW_INTERN_H
#define THAW_INTERN_H

#include <stddef.h>
#include <stdint.h>

typedef struct thaw_intern thaw_intern_t;

/* Returns an empty table, or NULL when out of memory. */
thaw_intern_t *thaw_intern_new(void);

/* Frees the table and every string still in it (pointers to them dangle
 * afterwards). thaw_intern_free(NULL) does nothing. */
void thaw_intern_free(thaw_intern_t *t);

/* Returns the interned copy of s[0..len) with one more reference, or NULL
 * when out of memory. The bytes must not contain NUL. */
const char *thaw_intern_ref(thaw_intern_t *t, const char *s, size_t len);

/* Takes one more reference on a string returned by thaw_intern_ref(). */
const char *thaw_intern_dup(const char *s);

/* Drops one reference; the string is freed with its last one. NULL does
 * nothing. */
void thaw_intern_unref(thaw_intern_t *t, const char *s);

/* Number of distinct strings, and the references held on one string. */
size_t thaw_intern_count(const thaw_intern_t *t);
uint32_t thaw_intern_refs(const char *s);

#endif
