/* warm_learn.c - the warmer's bounded table of which cache repository holds
 * a blob, so a warm of another repository mounts it instead of copying.
 * One repository per digest (the latest learned); the oldest entry goes
 * first when the table is full. A stale entry costs only a refused mount,
 * which the registry client turns into a copy. */
#include <stdlib.h>
#include <string.h>

#include "warm_internal.h"

const char *warm_learned_repo(thaw_warmer_t *w, const char *digest,
                              const char *not_repo) {
  for (size_t i = 0; i < w->nlearned; i++)
    if (strcmp(w->learned[i].digest, digest) == 0)
      return strcmp(w->learned[i].repo, not_repo) ? w->learned[i].repo : NULL;
  return NULL;
}

void thaw_warmer_learn(thaw_warmer_t *w, const char *digest,
                       const char *repo) {
  if (!w || !warm_digest_valid(digest) || !repo || !repo[0] ||
      strlen(repo) >= WARM_REPO_MAX)
    return;
  warm_learned_t *e = NULL;
  for (size_t i = 0; i < w->nlearned && !e; i++)
    if (strcmp(w->learned[i].digest, digest) == 0)
      e = &w->learned[i];
  if (!e && w->nlearned < WARM_LEARN_MAX) {
    e = &w->learned[w->nlearned++];
    e->repo = NULL;
  } else if (!e) { /* full: forget the oldest */
    e = &w->learned[0];
    for (size_t i = 1; i < w->nlearned; i++)
      if (w->learned[i].stamp < e->stamp)
        e = &w->learned[i];
  }
  char *copy = strdup(repo);
  if (!copy) /* keep the old entry; a missed mount only costs a copy */
    return;
  free(e->repo);
  e->repo = copy;
  memcpy(e->digest, digest, WARM_DIGEST_MAX);
  e->stamp = ++w->clock;
}

