/* pullsecrets.h - which imagePullSecrets the pods and PodTemplates that use
 * an image name, so a private image can be warmed with them (sources.h).
 *
 * Each pod or template with imagePullSecrets adds one "use": the pairs
 * image x {namespace, secret} it contributes. Pairs are reference-counted,
 * so a pair goes away with the last use that named it, and a lookup sees
 * each distinct pair once. The owner of a use (the informer record it was
 * built for) drops it when that record is freed, which keeps the table
 * exact across re-lists. Bounded: beyond `max_pairs` distinct pairs, new
 * uses are refused. Strings are copied; not thread-safe (one loop). */
#ifndef THAW_PULLSECRETS_H
#define THAW_PULLSECRETS_H

#include <stddef.h>

typedef struct thaw_pullsecrets thaw_pullsecrets_t;
typedef struct thaw_pullsecrets_use thaw_pullsecrets_use_t;

/* Returns an empty table holding at most max_pairs (0: 100000) distinct
 * pairs, or NULL when out of memory. */
thaw_pullsecrets_t *thaw_pullsecrets_new(size_t max_pairs);
/* Frees the table and every use still in it (their handles dangle). NULL
 * does nothing. */
void thaw_pullsecrets_free(thaw_pullsecrets_t *ps);

/* Adds the pairs of `images` (normalised references) x {ns, names[i]}.
 * Returns the use (owned by the table until dropped), or NULL when there is
 * nothing to add, the bound would be passed (logged), or memory is out. */
thaw_pullsecrets_use_t *
thaw_pullsecrets_add(thaw_pullsecrets_t *ps, const char *ns,
                     const char *const *images, size_t n_images,
                     const char *const *names, size_t n_names);
/* Takes back what a use added and frees it. NULL does nothing. */
void thaw_pullsecrets_drop(thaw_pullsecrets_t *ps, thaw_pullsecrets_use_t *u);

typedef void (*thaw_pullsecrets_cb)(const char *ns, const char *name,
                                    void *data);
/* Calls cb for each distinct {ns, name} pair of `image`. The table must not
 * be changed from cb. */
void thaw_pullsecrets_each(const thaw_pullsecrets_t *ps, const char *image,
                           thaw_pullsecrets_cb cb, void *data);

/* Distinct pairs held. */
size_t thaw_pullsecrets_count(const thaw_pullsecrets_t *ps);

#endif
