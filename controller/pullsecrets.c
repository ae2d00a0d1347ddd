/* pullsecrets.c - image -> {namespace, secret} pairs, reference-counted by
 * the pods and PodTemplates that name them (pullsecrets.h).
 *
 * A thaw_store keyed by image holds a small array of pairs per image (an
 * image is pulled with a handful of secrets at most, so a linear scan beats
 * a second table). Strings are interned, so pairs compare by pointer. */
#include "pullsecrets.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "log.h"
#include "store.h"

#define MAX_PAIRS 100000

typedef struct {
  const char *ns, *name; /* interned, one reference each */
  uint32_t refs;         /* uses that name this pair */
} pair_t;

typedef struct {
  size_t n, cap;
  pair_t *p;
} img_t;

struct thaw_pullsecrets_use {
  thaw_pullsecrets_use_t *prev, *next; /* all uses, for free() */
  const char *ns;
  size_t n_images, n_names;
  const char *s[]; /* n_images images, then n_names names; interned */
};

struct thaw_pullsecrets {
  thaw_intern_t *t;
  thaw_store_t *images; /* image -> img_t */
  thaw_pullsecrets_use_t *uses;
  size_t pairs, max_pairs;
  int warned; /* the bound was hit; logged once until it clears */
};

static void img_free(void *rec, void *data) {
  thaw_pullsecrets_t *ps = data;
  img_t *img = rec;
  for (size_t i = 0; i < img->n; i++) {
    thaw_intern_unref(ps->t, img->p[i].ns);
    thaw_intern_unref(ps->t, img->p[i].name);
  }
  free(img->p);
  free(img);
}

thaw_pullsecrets_t *thaw_pullsecrets_new(size_t max_pairs) {
  thaw_pullsecrets_t *ps = calloc(1, sizeof(*ps));
  if (ps == NULL)
    return NULL;
  ps->max_pairs = max_pairs ? max_pairs : MAX_PAIRS;
  ps->t = thaw_intern_new();
  ps->images = thaw_store_new(img_free, ps);
  if (ps->t == NULL || ps->images == NULL) {
    thaw_store_free(ps->images);
    thaw_intern_free(ps->t);
    free(ps);
    return NULL;
  }
  return ps;
}

/* One more reference on (image, ns, name). Returns 0, or -1 when out of
 * memory (nothing changed). */
static int pair_ref(thaw_pullsecrets_t *ps, const char *image, const char *ns,
                    const char *name) {
  img_t *img = thaw_store_get(ps->images, image, NULL);
  if (img == NULL) {
    img = calloc(1, sizeof(*img));
    if (img == NULL || thaw_store_put(ps->images, image, 0, img, NULL) < 0) {
      free(img);
      return -1;
    }
  }
  for (size_t i = 0; i < img->n; i++) {
    if (img->p[i].ns == ns && img->p[i].name == name) {
      img->p[i].refs++;
      return 0;
    }
  }
  if (img->n == img->cap) {
    size_t cap = img->cap ? img->cap * 2 : 2;
    pair_t *p = realloc(img->p, cap * sizeof(*p));
    if (p == NULL) {
      if (img->n == 0)
        thaw_store_remove(ps->images, image, NULL, NULL);
      return -1;
    }
    img->p = p;
    img->cap = cap;
  }
  img->p[img->n++] = (pair_t){thaw_intern_dup(ns), thaw_intern_dup(name), 1};
  ps->pairs++;
  return 0;
}

static void pair_unref(thaw_pullsecrets_t *ps, const char *image,
                       const char *ns, const char *name) {
  img_t *img = thaw_store_get(ps->images, image, NULL);
  if (img == NULL)
    return;
  for (size_t i = 0; i < img->n; i++) {
    pair_t *p = &img->p[i];
    if (p->ns != ns || p->name != name)
      continue;
    if (--p->refs > 0)
      return;
    thaw_intern_unref(ps->t, p->ns);
    thaw_intern_unref(ps->t, p->name);
    *p = img->p[--img->n];
    ps->pairs--;
    if (img->n == 0)
      thaw_store_remove(ps->images, image, NULL, NULL);
    return;
  }
}

/* Takes back the first `done` pairs of u, in add order. */
static void unapply(thaw_pullsecrets_t *ps, thaw_pullsecrets_use_t *u,
                    size_t done) {
  for (size_t k = 0; k < done; k++)
    pair_unref(ps, u->s[k / u->n_names], u->ns,
               u->s[u->n_images + k % u->n_names]);
}

static void use_free(thaw_pullsecrets_t *ps, thaw_pullsecrets_use_t *u) {
  thaw_intern_unref(ps->t, u->ns);
  for (size_t i = 0; i < u->n_images + u->n_names; i++)
    thaw_intern_unref(ps->t, u->s[i]);
  free(u);
}

thaw_pullsecrets_use_t *
thaw_pullsecrets_add(thaw_pullsecrets_t *ps, const char *ns,
                     const char *const *images, size_t n_images,
                     const char *const *names, size_t n_names) {
  if (ps == NULL || ns == NULL || n_images == 0 || n_names == 0)
    return NULL;
  if (ps->warned && ps->pairs < ps->max_pairs / 2)
    ps->warned = 0;
  /* conservative: pairs that already exist are counted as new */
  if (n_names > ps->max_pairs / n_images ||
      ps->pairs + n_images * n_names > ps->max_pairs) {
    if (!ps->warned)
      thaw_warn("pull secret table full; secrets of new pods not learned", "ns",
                ns);
    ps->warned = 1;
    return NULL;
  }
  size_t n = n_images + n_names;
  thaw_pullsecrets_use_t *u = calloc(1, sizeof(*u) + n * sizeof(char *));
  if (u == NULL)
    return NULL;
  u->ns = thaw_intern_ref(ps->t, ns, strlen(ns));
  int oom = u->ns == NULL;
  for (size_t i = 0; i < n && !oom; i++) {
    const char *s = i < n_images ? images[i] : names[i - n_images];
    if ((u->s[i] = thaw_intern_ref(ps->t, s, strlen(s))) == NULL)
      oom = 1;
    else if (i < n_images)
      u->n_images++;
    else
      u->n_names++;
  }
  if (oom) {
    use_free(ps, u); /* NULL slots are ignored by unref */
    return NULL;
  }
  size_t done = 0;
  for (; done < n_images * n_names; done++)
    if (pair_ref(ps, u->s[done / n_names], u->ns,
                 u->s[n_images + done % n_names]) != 0)
      break;
  if (done < n_images * n_names) {
    unapply(ps, u, done);
    use_free(ps, u);
    return NULL;
  }
  u->next = ps->uses;
  if (ps->uses != NULL)
    ps->uses->prev = u;
  ps->uses = u;
  return u;
}

void thaw_pullsecrets_drop(thaw_pullsecrets_t *ps, thaw_pullsecrets_use_t *u) {
  if (ps == NULL || u == NULL)
    return;
  unapply(ps, u, u->n_images * u->n_names);
  if (u->prev != NULL)
    u->prev->next = u->next;
  else
    ps->uses = u->next;
  if (u->next != NULL)
    u->next->prev = u->prev;
  use_free(ps, u);
}

void thaw_pullsecrets_each(const thaw_pullsecrets_t *ps, const char *image,
                           thaw_pullsecrets_cb cb, void *data) {
  const img_t *img = ps != NULL && image != NULL
                         ? thaw_store_get(ps->images, image, NULL)
                         : NULL;
  for (size_t i = 0; img != NULL && i < img->n; i++)
    cb(img->p[i].ns, img->p[i].name, data);
}

size_t thaw_pullsecrets_count(const thaw_pullsecrets_t *ps) {
  return ps->pairs;
}

void thaw_pullsecrets_free(thaw_pullsecrets_t *ps) {
  if (ps == NULL)
    return;
  while (ps->uses != NULL) {
    thaw_pullsecrets_use_t *u = ps->uses;
    ps->uses = u->next;
    free(u); /* its strings go with the intern table */
  }
  thaw_store_free(ps->images);
  thaw_intern_free(ps->t);
  free(ps);
}
