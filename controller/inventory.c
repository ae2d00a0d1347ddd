/* inventory.c - the cache inventory's model (inventory.h): interned contents,
 * manifests and objects, their reference counts, and the byte sums. The
 * reads and deletes that feed it run in inventory_io.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "inventory_internal.h"
#include "log.h"
#include "warm_internal.h"

/* ---- memory, counted for stats.memory ---- */

static void *xalloc(thaw_inventory_t *inv, size_t n) {
  void *p = calloc(1, n);
  if (p)
    inv->memory += n;
  return p;
}

static void xfree(thaw_inventory_t *inv, void *p, size_t n) {
  if (p) {
    free(p);
    inv->memory -= n;
  }
}

/* ---- tables ---- */

#define LINK(p) (*(void **)(p))

static uint64_t fnv(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h ^ (h >> 31);
}

static uint64_t node_hash_d(const uint8_t d[32]) {
  uint64_t h;
  memcpy(&h, d, sizeof h); /* sha256: already uniform */
  return h;
}

static uint64_t entry_hash_of(const inv_repo_t *r, const inv_node_t *n) {
  return node_hash_d(n->d) ^ (r->hash * 0x9E3779B97F4A7C15ull);
}

static uint64_t node_hash(const void *p) {
  return node_hash_d(((const inv_node_t *)p)->d);
}
static uint64_t entry_hash(const void *p) {
  const inv_entry_t *e = p;
  return entry_hash_of(e->repo, e->node);
}
static uint64_t obj_hash(const void *p) {
  return fnv(((const inv_obj_t *)p)->name);
}
static uint64_t repo_hash(const void *p) {
  return ((const inv_repo_t *)p)->hash;
}

static void *table_first(const inv_table_t *t, uint64_t h) {
  return t->cap ? t->b[h & (t->cap - 1)] : NULL;
}

static int table_add(thaw_inventory_t *inv, inv_table_t *t, void *e,
                     uint64_t (*hash)(const void *)) {
  if (t->n + 1 > t->cap) { /* load factor <= 1 */
    size_t ncap = t->cap ? t->cap * 2 : 64;
    void **nb = xalloc(inv, ncap * sizeof *nb);
    if (!nb)
      return THAW_ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
      for (void *p = t->b[i], *next; p; p = next) {
        next = LINK(p);
        size_t j = hash(p) & (ncap - 1);
        LINK(p) = nb[j];
        nb[j] = p;
      }
    xfree(inv, t->b, t->cap * sizeof *t->b);
    t->b = nb;
    t->cap = ncap;
  }
  size_t j = hash(e) & (t->cap - 1);
  LINK(e) = t->b[j];
  t->b[j] = e;
  t->n++;
  return 0;
}

static void table_del(inv_table_t *t, void *e, uint64_t h) {
  for (void **pp = &t->b[h & (t->cap - 1)]; *pp; pp = &LINK(*pp))
    if (*pp == e) {
      *pp = LINK(e);
      t->n--;
      return;
    }
}

/* ---- digests ---- */

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                                 : -1;
}

/* "sha256:<64 lower-case hex>" into 32 bytes; THAW_EINVAL otherwise. */
static int digest_bin(const char *s, uint8_t d[32]) {
  if (!warm_digest_valid(s))
    return THAW_EINVAL;
  for (int i = 0; i < 32; i++)
    d[i] = (uint8_t)(hexval(s[7 + 2 * i]) << 4 | hexval(s[8 + 2 * i]));
  return 0;
}

void inv_digest_str(const inv_node_t *n, char out[72]) {
  static const char hex[] = "0123456789abcdef";
  memcpy(out, "sha256:", 7);
  for (int i = 0; i < 32; i++) {
    out[7 + 2 * i] = hex[n->d[i] >> 4];
    out[8 + 2 * i] = hex[n->d[i] & 15];
  }
  out[71] = '\0';
}

/* ---- contents ---- */

static void node_size(thaw_inventory_t *inv, inv_node_t *n, int64_t size) {
  if (n->size < 0 && size >= 0) {
    n->size = size;
    if (n->live)
      inv->live_bytes += size;
  }
}

static int64_t bytes(const inv_node_t *n) { return n->size > 0 ? n->size : 0; }

/* The node of digest d with one more user (created when new). */
static inv_node_t *node_get(thaw_inventory_t *inv, const uint8_t d[32],
                            int64_t size) {
  inv_node_t *n = table_first(&inv->nodes, node_hash_d(d));
  for (; n; n = n->hnext)
    if (memcmp(n->d, d, 32) == 0)
      break;
  if (!n) {
    if (!(n = xalloc(inv, sizeof *n)))
      return NULL;
    memcpy(n->d, d, 32);
    n->size = -1;
    if (table_add(inv, &inv->nodes, n, node_hash)) {
      xfree(inv, n, sizeof *n);
      return NULL;
    }
  }
  n->users++;
  node_size(inv, n, size);
  return n;
}

static void node_put(thaw_inventory_t *inv, inv_node_t *n) {
  if (--n->users)
    return;
  table_del(&inv->nodes, n, node_hash(n));
  xfree(inv, n, sizeof *n);
}

static void node_live(thaw_inventory_t *inv, inv_node_t *n, int up) {
  if (up) {
    if (n->live++ == 0)
      inv->live_bytes += bytes(n);
  } else if (--n->live == 0) {
    inv->live_bytes -= bytes(n);
  }
}

/* ---- repositories ---- */

static inv_repo_t *repo_find(const thaw_inventory_t *inv, const char *name) {
  uint64_t h = fnv(name);
  for (inv_repo_t *r = table_first(&inv->repos, h); r; r = r->hnext)
    if (r->hash == h && strcmp(r->name, name) == 0)
      return r;
  return NULL;
}

/* The repository with one more user (created when new). */
static inv_repo_t *repo_get(thaw_inventory_t *inv, const char *name) {
  inv_repo_t *r = repo_find(inv, name);
  if (!r) {
    size_t len = strlen(name);
    if (!(r = xalloc(inv, sizeof *r + len + 1)))
      return NULL;
    memcpy(r->name, name, len + 1);
    r->hash = fnv(name);
    if (table_add(inv, &inv->repos, r, repo_hash)) {
      xfree(inv, r, sizeof *r + len + 1);
      return NULL;
    }
  }
  r->users++;
  return r;
}

static void repo_put(thaw_inventory_t *inv, inv_repo_t *r) {
  if (--r->users)
    return;
  table_del(&inv->repos, r, r->hash);
  xfree(inv, r, sizeof *r + strlen(r->name) + 1);
}

/* ---- objects ---- */

static inv_obj_t *obj_find(const thaw_inventory_t *inv, const char *name) {
  for (inv_obj_t *o = table_first(&inv->objs, fnv(name)); o; o = o->hnext)
    if (strcmp(o->name, name) == 0)
      return o;
  return NULL;
}

static void obj_free(thaw_inventory_t *inv, inv_obj_t *o) {
  table_del(&inv->objs, o, obj_hash(o));
  xfree(inv, o, sizeof *o + strlen(o->name) + 1);
}

/* An orphan is deleted, read absent, or referenced again: its owner has one
 * fewer, and a removed owner with none left is forgotten. */
static void resolve(thaw_inventory_t *inv, inv_entry_t *e) {
  inv_obj_t *o = e->owner;
  e->owner = NULL;
  if (--o->outstanding == 0 && o->gone)
    obj_free(inv, o);
}

static void own(inv_entry_t *e, inv_obj_t *by) {
  if (by && !e->owner && e->state != INV_ABSENT) {
    e->owner = by;
    by->outstanding++;
  }
}

/* ---- manifests ---- */

static inv_entry_t *entry_find(const thaw_inventory_t *inv,
                               const inv_repo_t *r, const inv_node_t *n) {
  inv_entry_t *e = table_first(&inv->entries, entry_hash_of(r, n));
  for (; e; e = e->hnext)
    if (e->repo == r && e->node == n)
      return e;
  return NULL;
}

/* The manifest (r, d), created unread when new; the caller takes its
 * reference before the next settle. */
static inv_entry_t *entry_get(thaw_inventory_t *inv, inv_repo_t *r,
                              const uint8_t d[32], int64_t size, int depth) {
  inv_node_t *n = node_get(inv, d, size);
  if (!n)
    return NULL;
  inv_entry_t *e = entry_find(inv, r, n);
  if (e) {
    node_put(inv, n);
    if (depth < e->depth)
      e->depth = (uint8_t)depth;
    return e;
  }
  if (!(e = xalloc(inv, sizeof *e))) {
    node_put(inv, n);
    return NULL;
  }
  e->repo = r;
  e->node = n;
  e->depth = (uint8_t)depth;
  if (table_add(inv, &inv->entries, e, entry_hash)) {
    xfree(inv, e, sizeof *e);
    node_put(inv, n);
    return NULL;
  }
  r->users++;
  r->unread++;
  return e;
}

static void entry_free(thaw_inventory_t *inv, inv_entry_t *e) {
  inv_qmove(inv, e, INV_Q_NONE);
  if (e->owner)
    resolve(inv, e);
  if (e->state == INV_UNREAD)
    e->repo->unread--;
  table_del(&inv->entries, e, entry_hash(e));
  node_put(inv, e->node);
  repo_put(inv, e->repo);
  xfree(inv, e, sizeof *e);
}

static void live_up(thaw_inventory_t *inv, inv_entry_t *e);
static void live_down(thaw_inventory_t *inv, inv_entry_t *e, inv_obj_t *by);

/* A READ manifest starts (up) or stops counting: its bytes, its blobs, and
 * the liveness of its children. */
static void content_live(thaw_inventory_t *inv, inv_entry_t *e, int up,
                         inv_obj_t *by) {
  node_live(inv, e->node, up);
  for (uint32_t i = 0; i < e->nrefs; i++) {
    if (!e->is_index) {
      node_live(inv, e->refs[i], up);
      continue;
    }
    inv_entry_t *k = e->refs[i];
    if (up)
      live_up(inv, k);
    else
      live_down(inv, k, by);
    inv_settle(inv, k);
  }
}

static void live_up(thaw_inventory_t *inv, inv_entry_t *e) {
  if (e->live++)
    return;
  if (e->owner) /* an orphan referenced again: never deleted */
    resolve(inv, e);
  if (e->state == INV_READ)
    content_live(inv, e, 1, NULL);
}

/* The last reference gone: an orphan owned by `by` (may be NULL). */
static void live_down(thaw_inventory_t *inv, inv_entry_t *e, inv_obj_t *by) {
  if (--e->live)
    return;
  if (e->state == INV_READ)
    content_live(inv, e, 0, by);
  own(e, by);
}

void inv_settle(thaw_inventory_t *inv, inv_entry_t *e) {
  if (e->busy || inv->closing)
    return;
  int orphan = !e->live && !e->in;
  int wait = e->next_try > uv_now(inv->loop);
  int q = INV_Q_NONE;
  switch (e->state) {
  case INV_GONE:
    if (orphan) {
      entry_free(inv, e);
      return;
    }
    /* referenced again while the delete was on its way: read what is left */
    char digest[72];
    inv_digest_str(e->node, digest);
    thaw_warn("cache manifest deleted while referenced again",
              "repo", e->repo->name, "digest", digest);
    e->state = INV_UNREAD;
    e->repo->unread++;
    e->backoff_ms = 0;
    e->next_try = 0;
    wait = 0;
    /* fall through */
  case INV_UNREAD: /* orphans too: their children are learnt by reading */
    q = wait ? INV_Q_WAIT : INV_Q_READ;
    break;
  case INV_READ:
    if (orphan)
      q = wait ? INV_Q_WAIT : INV_Q_DEL;
    break;
  case INV_ABSENT:
    if (orphan) {
      entry_free(inv, e);
      return;
    }
    break;
  }
  inv_qmove(inv, e, q);
}

int inv_take(thaw_inventory_t *inv, inv_entry_t *e,
             const thaw_registry_result_t *res, char *err, size_t errlen) {
  warm_manifest_t m;
  int depth = e->depth ? e->depth : 1;
  int rc = warm_manifest_parse(res->body, res->body_len, res->media_type,
                               depth, NULL, &m, err, errlen);
  if (rc)
    return rc;
  void **refs = m.n ? xalloc(inv, m.n * sizeof *refs) : NULL;
  size_t i = 0;
  for (; refs && i < m.n; i++) {
    uint8_t d[32];
    if (digest_bin(m.descs[i].digest, d))
      break; /* warm_manifest_parse checked it */
    if (!m.is_index) {
      refs[i] = node_get(inv, d, m.descs[i].size);
    } else { /* listed: in++ at once, so a child listed twice is one entry */
      inv_entry_t *k = entry_get(inv, e->repo, d, m.descs[i].size, depth + 1);
      if (k)
        k->in++;
      refs[i] = k;
    }
    if (!refs[i])
      break;
  }
  if (i < m.n) { /* out of memory: undo, stay unread */
    while (i-- > 0) { /* backwards: a child's last in-- is its first listing */
      if (!m.is_index) {
        node_put(inv, refs[i]);
        continue;
      }
      inv_entry_t *k = refs[i];
      if (!--k->in && !k->live && !k->busy && k->q == INV_Q_NONE &&
          k->state == INV_UNREAD)
        entry_free(inv, k); /* made just now */
    }
    xfree(inv, refs, m.n * sizeof *refs);
    warm_manifest_clear(&m);
    return thaw_errf(err, errlen, THAW_ENOMEM, "out of memory");
  }
  node_size(inv, e->node, (int64_t)res->body_len);
  e->refs = refs;
  e->nrefs = (uint32_t)m.n;
  e->is_index = (uint8_t)m.is_index;
  e->state = INV_READ;
  e->repo->unread--;
  e->node->refs++;
  for (i = 0; i < m.n; i++) {
    if (!m.is_index) {
      ((inv_node_t *)refs[i])->refs++;
      continue;
    }
    inv_entry_t *k = refs[i];
    if (!e->live && !k->live) /* part of an orphan's tree */
      own(k, e->owner);
  }
  warm_manifest_clear(&m);
  if (e->live)
    content_live(inv, e, 1, NULL);
  else if (e->is_index)
    for (i = 0; i < e->nrefs; i++)
      inv_settle(inv, e->refs[i]);
  inv_settle(inv, e);
  return 0;
}

void inv_absent(thaw_inventory_t *inv, inv_entry_t *e) {
  e->state = INV_ABSENT;
  e->repo->unread--;
  if (e->owner) /* nothing to delete */
    resolve(inv, e);
  inv_settle(inv, e);
}

int64_t inv_release(thaw_inventory_t *inv, inv_entry_t *e) {
  int64_t freed = 0;
  if (e->live) /* referenced again meanwhile: its children lose it */
    content_live(inv, e, 0, NULL);
  if (--e->node->refs == 0)
    freed += bytes(e->node);
  for (uint32_t i = 0; i < e->nrefs; i++) {
    if (e->is_index) { /* the child may go now (one in-- and settle per
                          listing: one listed twice goes at its last) */
      inv_entry_t *k = e->refs[i];
      k->in--;
      inv_settle(inv, k);
      continue;
    }
    inv_node_t *n = e->refs[i];
    if (--n->refs == 0)
      freed += bytes(n);
    node_put(inv, n);
  }
  void **refs = e->refs;
  uint32_t nrefs = e->nrefs;
  e->refs = NULL;
  e->nrefs = 0;
  e->state = INV_GONE;
  if (e->owner)
    resolve(inv, e);
  xfree(inv, refs, nrefs * sizeof *refs);
  return freed;
}

/* ---- the API ---- */

int thaw_inventory_new(uv_loop_t *loop, const thaw_inventory_opts_t *o,
                       thaw_inventory_t **out) {
  thaw_inventory_t *inv = calloc(1, sizeof *inv);
  if (!inv)
    return THAW_ENOMEM;
  inv->loop = loop;
  if (o)
    inv->o = *o;
  if (!inv->o.concurrency)
    inv->o.concurrency = 4;
  inv->memory = sizeof *inv;
  inv->ops = xalloc(inv, inv->o.concurrency * sizeof *inv->ops);
  if (!inv->ops) {
    free(inv);
    return THAW_ENOMEM;
  }
  inv_io_init(inv);
  for (unsigned i = 0; i < inv->o.concurrency; i++)
    inv->ops[i].inv = inv;
  *out = inv;
  return 0;
}

void thaw_inventory_free(thaw_inventory_t *inv) {
  if (!inv || inv->closing)
    return;
  inv->closing = 1;
  inv_io_cancel(inv);
  for (size_t i = 0; i < inv->entries.cap; i++)
    for (inv_entry_t *e = inv->entries.b[i], *next; e; e = next) {
      next = e->hnext;
      free(e->refs);
      free(e);
    }
  inv_table_t *tables[] = {&inv->nodes, &inv->objs, &inv->repos};
  for (size_t t = 0; t < sizeof tables / sizeof *tables; t++) {
    for (size_t i = 0; i < tables[t]->cap; i++)
      for (void *p = tables[t]->b[i], *next; p; p = next) {
        next = LINK(p);
        free(p);
      }
  }
  free(inv->entries.b);
  free(inv->nodes.b);
  free(inv->objs.b);
  free(inv->repos.b);
  free(inv->ops);
  free(inv->host);
  inv_io_close(inv);
}

static void hold(thaw_inventory_t *inv, inv_entry_t *e) {
  e->in++;
  live_up(inv, e);
  inv_settle(inv, e);
}

static void unhold(thaw_inventory_t *inv, inv_entry_t *e, inv_obj_t *by) {
  e->in--;
  live_down(inv, e, by);
  inv_settle(inv, e);
}

int thaw_inventory_set(thaw_inventory_t *inv, const char *name,
                       const char *repo, const char *digest,
                       int64_t size_hint) {
  uint8_t d[32];
  int none = !digest || !*digest;
  if (!inv || !name || !*name || strlen(name) > INV_NAME_MAX)
    return THAW_EINVAL;
  if (!none && (!repo || !*repo || strlen(repo) > INV_REPO_MAX ||
                digest_bin(digest, d)))
    return THAW_EINVAL;
  inv_obj_t *o = obj_find(inv, name);
  if (!o) {
    size_t len = strlen(name);
    if (!(o = xalloc(inv, sizeof *o + len + 1)))
      return THAW_ENOMEM;
    memcpy(o->name, name, len + 1);
    o->gone = 1;
    if (table_add(inv, &inv->objs, o, obj_hash)) {
      xfree(inv, o, sizeof *o + len + 1);
      return THAW_ENOMEM;
    }
  }
  /* the object again before its new reference: that may resolve an orphan
   * it owns, and a removed owner with none left would be freed */
  int was_gone = o->gone;
  if (was_gone) {
    o->gone = 0;
    inv->nobjs++;
  }
  inv_entry_t *e = NULL, *old = o->top;
  if (!none) {
    if (old && strcmp(old->repo->name, repo) == 0 &&
        memcmp(old->node->d, d, 32) == 0) {
      e = old;
      if (e->state == INV_ABSENT && !e->busy) { /* a warm may have pushed it */
        e->state = INV_UNREAD;
        e->repo->unread++;
        inv_settle(inv, e);
      }
    } else {
      inv_repo_t *r = repo_get(inv, repo);
      if (r) {
        e = entry_get(inv, r, d, -1, 1);
        repo_put(inv, r); /* the manifest holds its own */
      }
      if (!e) {
        if (was_gone) {
          o->gone = 1;
          inv->nobjs--;
          if (!o->outstanding)
            obj_free(inv, o);
        }
        return THAW_ENOMEM;
      }
      hold(inv, e); /* the new before the old: shared parts stay live */
    }
  }
  o->hint = size_hint > 0 ? size_hint : 0;
  if (old != e) {
    o->top = e;
    if (old)
      unhold(inv, old, o);
  }
  return 0;
}

void thaw_inventory_remove(thaw_inventory_t *inv, const char *name) {
  inv_obj_t *o = inv && name ? obj_find(inv, name) : NULL;
  if (!o || o->gone)
    return;
  inv_entry_t *old = o->top;
  o->top = NULL;
  if (old)
    unhold(inv, old, o);
  o->gone = 1;
  inv->nobjs--;
  if (!o->outstanding)
    obj_free(inv, o);
}

int thaw_inventory_digest(const thaw_inventory_t *inv, const char *name,
                          char out[72]) {
  const inv_obj_t *o = inv && name ? obj_find(inv, name) : NULL;
  if (!o || o->gone || !o->top)
    return 0;
  inv_digest_str(o->top->node, out);
  return 1;
}

int thaw_inventory_absent(const thaw_inventory_t *inv, const char *name) {
  const inv_obj_t *o = inv && name ? obj_find(inv, name) : NULL;
  return o && !o->gone && o->top && o->top->state == INV_ABSENT;
}

int thaw_inventory_pending(const thaw_inventory_t *inv, const char *name) {
  const inv_obj_t *o = inv && name ? obj_find(inv, name) : NULL;
  return o && o->outstanding > 0;
}

static int tree_loaded(const inv_entry_t *e) {
  if (e->state == INV_ABSENT)
    return 1;
  if (e->state != INV_READ)
    return 0;
  for (uint32_t i = 0; e->is_index && i < e->nrefs; i++)
    if (!tree_loaded(e->refs[i]))
      return 0;
  return 1;
}

int thaw_inventory_loaded(const thaw_inventory_t *inv, const char *name) {
  const inv_obj_t *o = inv && name ? obj_find(inv, name) : NULL;
  return o && !o->gone && (!o->top || tree_loaded(o->top));
}

int64_t thaw_inventory_unique_bytes(const thaw_inventory_t *inv) {
  int64_t sum = inv->live_bytes;
  for (size_t i = 0; i < inv->objs.cap; i++)
    for (const inv_obj_t *o = inv->objs.b[i]; o; o = o->hnext)
      if (!o->gone && o->top && !tree_loaded(o->top))
        sum += o->hint;
  return sum;
}

/* The pure queries mark what they visited with a fresh epoch: scratch
 * fields, not state, hence the casts from const. */
static uint32_t next_epoch(const thaw_inventory_t *inv) {
  return ++((thaw_inventory_t *)inv)->epoch;
}

static int64_t node_once(inv_node_t *n, uint32_t epoch) {
  if (n->mark == epoch)
    return 0;
  n->mark = epoch;
  return bytes(n);
}

static int64_t tree_bytes(inv_entry_t *e, uint32_t epoch) {
  if (e->mark == epoch || e->state != INV_READ)
    return 0;
  e->mark = epoch;
  int64_t sum = node_once(e->node, epoch);
  for (uint32_t i = 0; i < e->nrefs; i++)
    sum += e->is_index ? tree_bytes(e->refs[i], epoch)
                       : node_once(e->refs[i], epoch);
  return sum;
}

int64_t thaw_inventory_object_bytes(const thaw_inventory_t *inv,
                                    const char *name) {
  const inv_obj_t *o = inv && name ? obj_find(inv, name) : NULL;
  if (!o || o->gone || !o->top)
    return 0;
  if (!tree_loaded(o->top))
    return o->hint;
  return tree_bytes(o->top, next_epoch(inv));
}

/* Drops one reference in the simulation of freed_bytes: tmp counts the
 * references dropped this epoch; at `live` the manifest would be an
 * orphan, and a content at `live` would stop counting. */
static void sim_node(inv_node_t *n, uint32_t epoch, int64_t *freed) {
  if (n->mark != epoch) {
    n->mark = epoch;
    n->tmp = 0;
  }
  if (++n->tmp == n->live)
    *freed += bytes(n);
}

static void sim_drop(inv_entry_t *e, uint32_t epoch, int64_t *freed) {
  if (e->mark != epoch) {
    e->mark = epoch;
    e->tmp = 0;
  }
  if (++e->tmp != e->live || e->state != INV_READ)
    return;
  sim_node(e->node, epoch, freed);
  for (uint32_t i = 0; i < e->nrefs; i++) {
    if (e->is_index)
      sim_drop(e->refs[i], epoch, freed);
    else
      sim_node(e->refs[i], epoch, freed);
  }
}

int64_t thaw_inventory_freed_bytes(const thaw_inventory_t *inv,
                                   const char *const *names, size_t n) {
  int64_t freed = 0;
  uint32_t epoch = next_epoch(inv);
  for (size_t i = 0; i < n; i++) {
    inv_obj_t *o = names[i] ? obj_find(inv, names[i]) : NULL;
    if (!o || o->gone || o->mark == epoch)
      continue;
    o->mark = epoch;
    if (!o->top)
      continue;
    if (!tree_loaded(o->top))
      freed += o->hint;
    sim_drop(o->top, epoch, &freed);
  }
  return freed;
}

int64_t thaw_inventory_reclaimable_bytes(const thaw_inventory_t *inv) {
  return inv->reclaimable;
}

void thaw_inventory_collected(thaw_inventory_t *inv) { inv->reclaimable = 0; }

unsigned thaw_inventory_deleting(const thaw_inventory_t *inv,
                                 const char *repo) {
  const inv_repo_t *r = inv && repo ? repo_find(inv, repo) : NULL;
  return r ? r->deleting : 0;
}

void thaw_inventory_stats(const thaw_inventory_t *inv,
                          thaw_inventory_stats_t *out) {
  memset(out, 0, sizeof *out);
  out->objects = inv->nobjs;
  for (size_t i = 0; i < inv->objs.cap; i++)
    for (const inv_obj_t *o = inv->objs.b[i]; o; o = o->hnext)
      out->unloaded += !o->gone && o->top && !tree_loaded(o->top);
  for (size_t i = 0; i < inv->entries.cap; i++)
    for (const inv_entry_t *e = inv->entries.b[i]; e; e = e->hnext)
      out->orphans += !e->live && e->state != INV_ABSENT;
  out->manifests = inv->entries.n;
  out->contents = inv->nodes.n;
  out->inflight = inv->inflight;
  out->waiting = inv->waitq.n;
  out->memory = inv->memory;
}
