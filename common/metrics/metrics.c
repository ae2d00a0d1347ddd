/* metrics.c - a Prometheus registry: families in a list, children per label
 * tuple in a list per family, rendered to the text format 0.0.4.
 *
 * Lookups scan a family's children linearly: families hold a few dozen
 * children at most, and hot paths cache the child pointer. */
#include "metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "error.h"

#define MAX_COLLECT 16
#define MAX_NAME 256      /* metric and label names */
#define MAX_HELP 4096
#define MAX_VALUE 4096    /* a label value; longer ones are cut */
#define MAX_LABELS 16
#define MAX_BUCKETS 64
#define MAX_CHILDREN 4096 /* per family: a runaway label cannot eat memory */
#define PROC_BUF 4096     /* /proc/self/stat fits well within it */

enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM };

struct thaw_metric_child {
  thaw_metric_t *family;
  char **values;     /* family->nlabels copies */
  double value;      /* counter or gauge; a histogram's sum */
  uint64_t count;    /* histogram observations */
  uint64_t *buckets; /* per bound, not cumulative; nbuckets entries */
  thaw_metric_child_t *next;
};

struct thaw_metric {
  enum kind kind;
  char *name, *help;
  size_t nlabels;
  char **labels;
  double *bounds;
  size_t nbounds;
  thaw_metric_child_t *children, *last;
  thaw_metric_t *next;
};

struct thaw_metrics {
  thaw_metric_t *families, *last;
  struct {
    thaw_metrics_collect_cb cb;
    void *data;
  } collect[MAX_COLLECT];
  size_t ncollect;
  void *proc; /* process collector state, freed with the registry */
};

/* 100 us .. 10 s, roughly x2.5 per step. */
const double thaw_metrics_latency_buckets[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};
const size_t thaw_metrics_latency_nbuckets =
    sizeof thaw_metrics_latency_buckets / sizeof thaw_metrics_latency_buckets[0];

/* ---- names -------------------------------------------------------------- */

static int name_ok(const char *s, int colon) {
  if (!s || !*s || strnlen(s, MAX_NAME) >= MAX_NAME)
    return 0;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                (colon && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
      return 0;
  }
  return 1;
}

/* Label names: no colon, and the `__` prefix is reserved by Prometheus. */
static int label_ok(const char *s) {
  return name_ok(s, 0) && strncmp(s, "__", 2) != 0;
}

/* ---- registry ----------------------------------------------------------- */

thaw_metrics_t *thaw_metrics_new(void) { return calloc(1, sizeof(thaw_metrics_t)); }

static void free_strv(char **v, size_t n) {
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static void free_family(thaw_metric_t *f) {
  thaw_metric_child_t *c = f->children;
  while (c) {
    thaw_metric_child_t *next = c->next;
    free_strv(c->values, f->nlabels);
    free(c->buckets);
    free(c);
    c = next;
  }
  free_strv(f->labels, f->nlabels);
  free(f->bounds);
  free(f->name);
  free(f->help);
  free(f);
}

void thaw_metrics_free(thaw_metrics_t *m) {
  if (!m)
    return;
  thaw_metric_t *f = m->families;
  while (f) {
    thaw_metric_t *next = f->next;
    free_family(f);
    f = next;
  }
  free(m->proc);
  free(m);
}

static thaw_metric_t *find_family(thaw_metrics_t *m, const char *name) {
  for (thaw_metric_t *f = m->families; f; f = f->next)
    if (strcmp(f->name, name) == 0)
      return f;
  return NULL;
}

static char **dup_strv(const char *const *v, size_t n, size_t max) {
  char **out = calloc(n ? n : 1, sizeof *out);
  if (!out)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    const char *s = v[i] ? v[i] : "";
    out[i] = strndup(s, max);
    if (!out[i]) {
      free_strv(out, i);
      return NULL;
    }
  }
  return out;
}

static thaw_metric_t *add_family(thaw_metrics_t *m, enum kind kind,
                                 const char *name, const char *help,
                                 size_t nlabels, const char *const *labels,
                                 const double *bounds, size_t nbounds) {
  if (!m || !name_ok(name, 1) || nlabels > MAX_LABELS ||
      (nlabels && !labels) || find_family(m, name))
    return NULL;
  for (size_t i = 0; i < nlabels; i++) {
    if (!label_ok(labels[i]) || (kind == K_HISTOGRAM && !strcmp(labels[i], "le")))
      return NULL;
    for (size_t j = 0; j < i; j++)
      if (!strcmp(labels[i], labels[j]))
        return NULL;
  }
  if (kind == K_HISTOGRAM) {
    /* A trailing +Inf is implied anyway; drop it rather than print it twice. */
    if (nbounds && bounds && isinf(bounds[nbounds - 1]) && bounds[nbounds - 1] > 0)
      nbounds--;
    if ((nbounds && !bounds) || nbounds > MAX_BUCKETS)
      return NULL;
    for (size_t i = 0; i < nbounds; i++)
      if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
        return NULL;
  }
  thaw_metric_t *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->kind = kind;
  f->nlabels = nlabels;
  f->name = strdup(name);
  f->help = strndup(help ? help : "", MAX_HELP);
  f->labels = dup_strv(labels, nlabels, MAX_NAME);
  if (kind == K_HISTOGRAM && nbounds) {
    f->bounds = malloc(nbounds * sizeof *f->bounds);
    if (f->bounds)
      memcpy(f->bounds, bounds, nbounds * sizeof *f->bounds);
  }
  f->nbounds = kind == K_HISTOGRAM ? nbounds : 0;
  if (!f->name || !f->help || !f->labels || (f->nbounds && !f->bounds)) {
    free_family(f);
    return NULL;
  }
  if (m->last)
    m->last->next = f;
  else
    m->families = f;
  m->last = f;
  return f;
}

thaw_metric_t *thaw_metrics_counter(thaw_metrics_t *m, const char *name,
                                    const char *help, size_t nlabels,
                                    const char *const *labels) {
  return add_family(m, K_COUNTER, name, help, nlabels, labels, NULL, 0);
}

thaw_metric_t *thaw_metrics_gauge(thaw_metrics_t *m, const char *name,
                                  const char *help, size_t nlabels,
                                  const char *const *labels) {
  return add_family(m, K_GAUGE, name, help, nlabels, labels, NULL, 0);
}

thaw_metric_t *thaw_metrics_histogram(thaw_metrics_t *m, const char *name,
                                      const char *help, size_t nlabels,
                                      const char *const *labels,
                                      const double *buckets, size_t nbuckets) {
  return add_family(m, K_HISTOGRAM, name, help, nlabels, labels, buckets,
                    nbuckets);
}

/* ---- children ----------------------------------------------------------- */

static int same_values(const thaw_metric_t *f, char *const *have,
                       const char *const *want) {
  for (size_t i = 0; i < f->nlabels; i++) {
    const char *w = want[i] ? want[i] : "";
    if (strncmp(have[i], w, MAX_VALUE) != 0)
      return 0;
  }
  return 1;
}

thaw_metric_child_t *thaw_metric_child(thaw_metric_t *f,
                                       const char *const *values) {
  if (!f || (f->nlabels && !values))
    return NULL;
  size_t n = 0;
  for (thaw_metric_child_t *c = f->children; c; c = c->next, n++)
    if (same_values(f, c->values, values))
      return c;
  if (n >= MAX_CHILDREN)
    return NULL;
  thaw_metric_child_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->family = f;
  c->values = dup_strv(values, f->nlabels, MAX_VALUE);
  if (f->nbounds)
    c->buckets = calloc(f->nbounds, sizeof *c->buckets);
  if (!c->values || (f->nbounds && !c->buckets)) {
    free_strv(c->values, f->nlabels);
    free(c->buckets);
    free(c);
    return NULL;
  }
  if (f->last)
    f->last->next = c;
  else
    f->children = c;
  f->last = c;
  return c;
}

/* A counter only goes up: negative or NaN increments are dropped, so a
 * scrape never sees a counter reset that did not happen. */
void thaw_metric_child_add(thaw_metric_child_t *c, double v) {
  if (!c || c->family->kind == K_HISTOGRAM)
    return;
  if (c->family->kind == K_COUNTER && !(v >= 0))
    return;
  c->value += v;
}

void thaw_metric_child_set(thaw_metric_child_t *c, double v) {
  if (c && c->family->kind == K_GAUGE)
    c->value = v;
}

void thaw_metric_child_observe(thaw_metric_child_t *c, double v) {
  if (!c || c->family->kind != K_HISTOGRAM)
    return;
  const thaw_metric_t *f = c->family;
  /* Buckets are upper-inclusive (le); NaN lands only in +Inf, as in Go. */
  for (size_t i = 0; i < f->nbounds; i++)
    if (v <= f->bounds[i]) {
      c->buckets[i]++;
      break;
    }
  c->count++;
  c->value += v;
}

double thaw_metric_child_value(const thaw_metric_child_t *c) {
  if (!c)
    return 0;
  return c->family->kind == K_HISTOGRAM ? (double)c->count : c->value;
}

void thaw_metric_inc(thaw_metric_t *f, const char *const *values) {
  thaw_metric_child_add(thaw_metric_child(f, values), 1);
}

void thaw_metric_add(thaw_metric_t *f, const char *const *values, double v) {
  thaw_metric_child_add(thaw_metric_child(f, values), v);
}

void thaw_metric_set(thaw_metric_t *f, const char *const *values, double v) {
  thaw_metric_child_set(thaw_metric_child(f, values), v);
}

void thaw_metric_observe(thaw_metric_t *f, const char *const *values,
                         double v) {
  thaw_metric_child_observe(thaw_metric_child(f, values), v);
}

int thaw_metrics_on_collect(thaw_metrics_t *m, thaw_metrics_collect_cb cb,
                            void *data) {
  if (!m || !cb)
    return THAW_EINVAL;
  if (m->ncollect >= MAX_COLLECT)
    return THAW_ENOMEM;
  m->collect[m->ncollect].cb = cb;
  m->collect[m->ncollect].data = data;
  m->ncollect++;
  return 0;
}

/* ---- rendering ---------------------------------------------------------- */

typedef struct {
  char *b;
  size_t len, cap;
  int oom;
} sbuf_t;

static void sb_put(sbuf_t *s, const char *p, size_t n) {
  if (s->oom)
    return;
  if (s->len + n + 1 > s->cap) {
    size_t c = s->cap ? s->cap : 4096;
    while (c < s->len + n + 1)
      c *= 2;
    char *nb = realloc(s->b, c);
    if (!nb) {
      s->oom = 1;
      return;
    }
    s->b = nb;
    s->cap = c;
  }
  memcpy(s->b + s->len, p, n);
  s->len += n;
  s->b[s->len] = '\0';
}

static void sb_str(sbuf_t *s, const char *p) { sb_put(s, p, strlen(p)); }

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid:
 * overlong forms, surrogates and code points over U+10FFFF are invalid. */
static size_t utf8_len(const unsigned char *p) {
  if (p[0] < 0x80)
    return 1;
  size_t n;
  unsigned cp;
  if (p[0] >= 0xc2 && p[0] <= 0xdf) {
    n = 2;
    cp = p[0] & 0x1f;
  } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
    n = 3;
    cp = p[0] & 0x0f;
  } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
    n = 4;
    cp = p[0] & 0x07;
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0; /* also stops at the NUL */
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return n;
}

/* Escapes `\` and newline, and `"` too when quoted (label values). Bytes
 * that are not UTF-8 become U+FFFD: Prometheus refuses the whole scrape
 * otherwise, and values come from pod specs. */
static void sb_escaped(sbuf_t *s, const char *p, int quoted) {
  const char *run = p;
  while (*p) {
    const char *rep = NULL;
    size_t n = utf8_len((const unsigned char *)p);
    if (n == 0)
      rep = "\xef\xbf\xbd", n = 1;
    else if (*p == '\\')
      rep = "\\\\";
    else if (*p == '\n')
      rep = "\\n";
    else if (*p == '"' && quoted)
      rep = "\\\"";
    if (rep) {
      sb_put(s, run, (size_t)(p - run));
      sb_str(s, rep);
      run = p + n;
    }
    p += n;
  }
  sb_put(s, run, (size_t)(p - run));
}

/* Formats v as Prometheus and Go's FormatFloat(v, 'g', -1) read it back:
 * "+Inf", "-Inf", "NaN"; integers up to 2^53 without an exponent; otherwise
 * the shortest %g form that round-trips. */
static void fmt_double(char *buf, size_t n, double v) {
  if (isnan(v)) {
    snprintf(buf, n, "NaN");
  } else if (isinf(v)) {
    snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
  } else if (v == floor(v) && fabs(v) <= 9007199254740992.0) {
    snprintf(buf, n, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
  } else {
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(buf, n, "%.*g", prec, v);
      if (strtod(buf, NULL) == v)
        break;
    }
  }
}

static void sb_double(sbuf_t *s, double v) {
  char buf[64];
  fmt_double(buf, sizeof buf, v);
  sb_str(s, buf);
}

static void sb_u64(sbuf_t *s, uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
  sb_str(s, buf);
}

/* `{a="x",b="y"}` plus an optional le pair; nothing when there are none. */
static void sb_labels(sbuf_t *s, const thaw_metric_t *f,
                      const thaw_metric_child_t *c, const char *le) {
  if (!f->nlabels && !le)
    return;
  sb_str(s, "{");
  for (size_t i = 0; i < f->nlabels; i++) {
    if (i)
      sb_str(s, ",");
    sb_str(s, f->labels[i]);
    sb_str(s, "=\"");
    sb_escaped(s, c->values[i], 1);
    sb_str(s, "\"");
  }
  if (le) {
    if (f->nlabels)
      sb_str(s, ",");
    sb_str(s, "le=\"");
    sb_str(s, le);
    sb_str(s, "\"");
  }
  sb_str(s, "}");
}

static void sb_sample(sbuf_t *s, const thaw_metric_t *f,
                      const thaw_metric_child_t *c, const char *suffix,
                      const char *le) {
  sb_str(s, f->name);
  sb_str(s, suffix);
  sb_labels(s, f, c, le);
  sb_str(s, " ");
}

static void render_family(sbuf_t *s, const thaw_metric_t *f) {
  static const char *const types[] = {"counter", "gauge", "histogram"};
  sb_str(s, "# HELP ");
  sb_str(s, f->name);
  sb_str(s, " ");
  sb_escaped(s, f->help, 0);
  sb_str(s, "\n# TYPE ");
  sb_str(s, f->name);
  sb_str(s, " ");
  sb_str(s, types[f->kind]);
  sb_str(s, "\n");
  for (const thaw_metric_child_t *c = f->children; c; c = c->next) {
    if (f->kind != K_HISTOGRAM) {
      sb_sample(s, f, c, "", NULL);
      sb_double(s, c->value);
      sb_str(s, "\n");
      continue;
    }
    uint64_t cum = 0;
    char le[64];
    for (size_t i = 0; i < f->nbounds; i++) {
      cum += c->buckets[i];
      fmt_double(le, sizeof le, f->bounds[i]);
      sb_sample(s, f, c, "_bucket", le);
      sb_u64(s, cum);
      sb_str(s, "\n");
    }
    sb_sample(s, f, c, "_bucket", "+Inf");
    sb_u64(s, c->count);
    sb_str(s, "\n");
    sb_sample(s, f, c, "_sum", NULL);
    sb_double(s, c->value);
    sb_str(s, "\n");
    sb_sample(s, f, c, "_count", NULL);
    sb_u64(s, c->count);
    sb_str(s, "\n");
  }
}

int thaw_metrics_render(thaw_metrics_t *m, char **out, size_t *len) {
  if (!m || !out)
    return THAW_EINVAL;
  for (size_t i = 0; i < m->ncollect; i++)
    m->collect[i].cb(m, m->collect[i].data);
  sbuf_t s = {0};
  sb_put(&s, "", 0); /* an empty registry still yields "" */
  for (const thaw_metric_t *f = m->families; f; f = f->next)
    render_family(&s, f);
  if (s.oom) {
    free(s.b);
    return THAW_ENOMEM;
  }
  *out = s.b;
  if (len)
    *len = s.len;
  return 0;
}

/* ---- process metrics ---------------------------------------------------- */

typedef struct {
  thaw_metric_child_t *rss, *vsize, *cpu, *start, *fds, *maxfds;
  long page, ticks;
} proc_t;

/* Reads a small /proc file into buf (NUL-terminated). Returns the length,
 * or -1. */
static ssize_t read_small(const char *path, char *buf, size_t n) {
  FILE *fp = fopen(path, "re");
  if (!fp)
    return -1;
  size_t got = fread(buf, 1, n - 1, fp);
  fclose(fp);
  buf[got] = '\0';
  return (ssize_t)got;
}

static double boot_time(void) {
  /* /proc/stat holds per-CPU lines before btime; 64 KiB covers many CPUs. */
  FILE *fp = fopen("/proc/stat", "re");
  if (!fp)
    return 0;
  char line[512];
  double bt = 0;
  while (fgets(line, sizeof line, fp))
    if (strncmp(line, "btime ", 6) == 0) {
      bt = strtod(line + 6, NULL);
      break;
    }
  fclose(fp);
  return bt;
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  int n = 0, own = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.' && strtol(e->d_name, NULL, 10) != own)
      n++;
  closedir(d);
  return n;
}

/* Fields of /proc/self/stat after the `(comm)` field, 1-based as in proc(5):
 * utime 14, stime 15, starttime 22, vsize 23, rss 24. The command name may
 * hold spaces and parentheses, so parsing starts after the last ')'. */
static void proc_collect(thaw_metrics_t *m, void *data) {
  (void)m;
  proc_t *p = data;
  char buf[PROC_BUF];
  if (read_small("/proc/self/stat", buf, sizeof buf) > 0) {
    char *s = strrchr(buf, ')');
    unsigned long long f[25] = {0};
    if (s) {
      s += 2; /* ") " then field 3, the state letter */
      if (*s)
        s++;
      for (int i = 4; i <= 24 && *s; i++)
        f[i] = strtoull(s, &s, 10);
      p->cpu->value = (double)(f[14] + f[15]) / (double)p->ticks;
      p->vsize->value = (double)f[23];
      p->rss->value = (double)f[24] * (double)p->page;
    }
  }
  int fds = count_fds();
  if (fds >= 0)
    p->fds->value = fds;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    p->maxfds->value = rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

static double start_time(long ticks) {
  char buf[PROC_BUF];
  if (read_small("/proc/self/stat", buf, sizeof buf) <= 0)
    return 0;
  char *s = strrchr(buf, ')');
  if (!s)
    return 0;
  s += 2;
  if (*s)
    s++;
  unsigned long long v = 0;
  for (int i = 4; i <= 22 && *s; i++)
    v = strtoull(s, &s, 10);
  return boot_time() + (double)v / (double)ticks;
}

int thaw_metrics_register_process(thaw_metrics_t *m, const char *version) {
  if (!m || m->proc)
    return THAW_EINVAL;
  proc_t *p = calloc(1, sizeof *p);
  if (!p)
    return THAW_ENOMEM;
  p->page = sysconf(_SC_PAGESIZE);
  p->ticks = sysconf(_SC_CLK_TCK);
  if (p->page <= 0)
    p->page = 4096;
  if (p->ticks <= 0)
    p->ticks = 100;
  static const char *const ver_label[] = {"version"};
  const char *ver[] = {version ? version : "unknown"};
  p->rss = thaw_metric_child(
      thaw_metrics_gauge(m, "process_resident_memory_bytes",
                         "Resident memory size in bytes.", 0, NULL), NULL);
  p->vsize = thaw_metric_child(
      thaw_metrics_gauge(m, "process_virtual_memory_bytes",
                         "Virtual memory size in bytes.", 0, NULL), NULL);
  p->cpu = thaw_metric_child(
      thaw_metrics_counter(m, "process_cpu_seconds_total",
                           "Total user and system CPU time spent in seconds.",
                           0, NULL), NULL);
  p->start = thaw_metric_child(
      thaw_metrics_gauge(m, "process_start_time_seconds",
                         "Start time of the process since unix epoch in seconds.",
                         0, NULL), NULL);
  p->fds = thaw_metric_child(
      thaw_metrics_gauge(m, "process_open_fds", "Number of open file descriptors.",
                         0, NULL), NULL);
  p->maxfds = thaw_metric_child(
      thaw_metrics_gauge(m, "process_max_fds",
                         "Maximum number of open file descriptors.", 0, NULL), NULL);
  thaw_metric_t *info = thaw_metrics_gauge(
      m, "thaw_build_info", "Build information about thaw; the value is 1.",
      1, ver_label);
  thaw_metric_child_t *ic = thaw_metric_child(info, ver);
  if (!p->rss || !p->vsize || !p->cpu || !p->start || !p->fds || !p->maxfds ||
      !ic) {
    free(p); /* families stay registered; they are freed with m */
    return THAW_ENOMEM;
  }
  ic->value = 1;
  p->start->value = start_time(p->ticks);
  int rc = thaw_metrics_on_collect(m, proc_collect, p);
  if (rc) {
    free(p);
    return rc;
  }
  m->proc = p;
  return 0;
}
