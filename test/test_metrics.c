/* test_metrics.c - the metrics registry (metrics.h): exact exposition text
 * for small registries, name validation, duplicates, NULL-safety and the
 * process collector. `test_metrics --print` writes a registry shaped like
 * the daemons' to stdout, for `promtool check metrics`. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "error.h"
#include "metrics.h"

/* ---- exact rendering, table-driven -------------------------------------- */

typedef void (*build_fn)(thaw_metrics_t *m);

static void b_empty(thaw_metrics_t *m) { (void)m; }

static void b_counter_plain(thaw_metrics_t *m) {
  thaw_metric_t *c = thaw_metrics_counter(m, "thaw_a_total", "Things.", 0, NULL);
  thaw_metric_inc(c, NULL);
  thaw_metric_add(c, NULL, 2);
  thaw_metric_add(c, NULL, -5);  /* counters never go down */
  thaw_metric_add(c, NULL, NAN); /* nor become NaN */
}

static void b_counter_labels(thaw_metrics_t *m) {
  static const char *const l[] = {"verb", "code"};
  thaw_metric_t *c = thaw_metrics_counter(m, "thaw_kube_requests_total",
                                          "Kube requests.", 2, l);
  thaw_metric_inc(c, (const char *const[]){"GET", "200"});
  thaw_metric_inc(c, (const char *const[]){"LIST", "200"});
  thaw_metric_inc(c, (const char *const[]){"GET", "200"});
  thaw_metric_add(c, (const char *const[]){"GET", "404"}, 0.5);
  /* a family with no samples yet still has HELP and TYPE */
  thaw_metrics_counter(m, "thaw_unused_total", "Unused.", 1, l);
}

static void b_gauge(thaw_metrics_t *m) {
  static const char *const l[] = {"phase"};
  thaw_metric_t *g = thaw_metrics_gauge(m, "thaw_cachedimages", "By phase.", 1, l);
  thaw_metric_set(g, (const char *const[]){"Ready"}, 3);
  thaw_metric_set(g, (const char *const[]){"Failed"}, 7);
  thaw_metric_set(g, (const char *const[]){"Ready"}, 12);
  thaw_metric_add(g, (const char *const[]){"Failed"}, -9);
  thaw_metric_t *f = thaw_metrics_gauge(m, "thaw_floats", "Floats.", 1, l);
  thaw_metric_set(f, (const char *const[]){"a"}, 0.1);
  thaw_metric_set(f, (const char *const[]){"b"}, 1e21);
  thaw_metric_set(f, (const char *const[]){"c"}, 1234567890123.0);
  thaw_metric_set(f, (const char *const[]){"d"}, INFINITY);
  thaw_metric_set(f, (const char *const[]){"e"}, -INFINITY);
  thaw_metric_set(f, (const char *const[]){"f"}, NAN);
  thaw_metric_set(f, (const char *const[]){"g"}, -0.0);
  thaw_metric_set(f, (const char *const[]){"h"}, 2.5e-7);
  thaw_metric_set(f, (const char *const[]){"i"}, 1.0 / 3);
}

static void b_histogram(thaw_metrics_t *m) {
  static const double b[] = {0.005, 0.1, 1, 2.5};
  thaw_metric_t *h = thaw_metrics_histogram(
      m, "thaw_warm_duration_seconds", "Warm time.", 0, NULL, b, 4);
  /* boundary values fall in their own bucket (le is inclusive) */
  thaw_metric_observe(h, NULL, 0.005);
  thaw_metric_observe(h, NULL, 0.1);
  thaw_metric_observe(h, NULL, 0.5);
  thaw_metric_observe(h, NULL, 2.5);
  thaw_metric_observe(h, NULL, 30);
  static const char *const l[] = {"result"};
  static const double b2[] = {1, 2, INFINITY}; /* explicit +Inf is not doubled */
  thaw_metric_t *h2 =
      thaw_metrics_histogram(m, "thaw_x_seconds", "X.", 1, l, b2, 3);
  thaw_metric_observe(h2, (const char *const[]){"ok"}, 1.5);
  thaw_metric_child(h2, (const char *const[]){"error"});
}

static void b_escaping(thaw_metrics_t *m) {
  static const char *const l[] = {"path"};
  thaw_metric_t *g = thaw_metrics_gauge(
      m, "thaw_esc", "Back\\slash \"quoted\"\nnewline.", 1, l);
  thaw_metric_set(g, (const char *const[]){"a\\b\"c\nd"}, 1);
  thaw_metric_set(g, (const char *const[]){""}, 2);
  thaw_metric_set(g, (const char *const[]){NULL}, 3); /* NULL is "" too */
  /* valid UTF-8 is kept; bad bytes, overlong forms and surrogates become
   * U+FFFD, one per byte, so the scrape still parses */
  thaw_metric_set(g, (const char *const[]){"caf\xc3\xa9 \xff|\xc3|\xc0\xaf|\xed\xa0\x80"}, 4);
}

static const struct {
  const char *name;
  build_fn build;
  const char *want;
} render_cases[] = {
    {"empty", b_empty, ""},
    {"counter without labels", b_counter_plain,
     "# HELP thaw_a_total Things.\n"
     "# TYPE thaw_a_total counter\n"
     "thaw_a_total 3\n"},
    {"counter with labels", b_counter_labels,
     "# HELP thaw_kube_requests_total Kube requests.\n"
     "# TYPE thaw_kube_requests_total counter\n"
     "thaw_kube_requests_total{verb=\"GET\",code=\"200\"} 2\n"
     "thaw_kube_requests_total{verb=\"LIST\",code=\"200\"} 1\n"
     "thaw_kube_requests_total{verb=\"GET\",code=\"404\"} 0.5\n"
     "# HELP thaw_unused_total Unused.\n"
     "# TYPE thaw_unused_total counter\n"},
    {"gauges and floats", b_gauge,
     "# HELP thaw_cachedimages By phase.\n"
     "# TYPE thaw_cachedimages gauge\n"
     "thaw_cachedimages{phase=\"Ready\"} 12\n"
     "thaw_cachedimages{phase=\"Failed\"} -2\n"
     "# HELP thaw_floats Floats.\n"
     "# TYPE thaw_floats gauge\n"
     "thaw_floats{phase=\"a\"} 0.1\n"
     "thaw_floats{phase=\"b\"} 1e+21\n"
     "thaw_floats{phase=\"c\"} 1234567890123\n"
     "thaw_floats{phase=\"d\"} +Inf\n"
     "thaw_floats{phase=\"e\"} -Inf\n"
     "thaw_floats{phase=\"f\"} NaN\n"
     "thaw_floats{phase=\"g\"} 0\n"
     "thaw_floats{phase=\"h\"} 2.5e-07\n"
     "thaw_floats{phase=\"i\"} 0.3333333333333333\n"},
    {"histograms", b_histogram,
     "# HELP thaw_warm_duration_seconds Warm time.\n"
     "# TYPE thaw_warm_duration_seconds histogram\n"
     "thaw_warm_duration_seconds_bucket{le=\"0.005\"} 1\n"
     "thaw_warm_duration_seconds_bucket{le=\"0.1\"} 2\n"
     "thaw_warm_duration_seconds_bucket{le=\"1\"} 3\n"
     "thaw_warm_duration_seconds_bucket{le=\"2.5\"} 4\n"
     "thaw_warm_duration_seconds_bucket{le=\"+Inf\"} 5\n"
     "thaw_warm_duration_seconds_sum 33.105\n"
     "thaw_warm_duration_seconds_count 5\n"
     "# HELP thaw_x_seconds X.\n"
     "# TYPE thaw_x_seconds histogram\n"
     "thaw_x_seconds_bucket{result=\"ok\",le=\"1\"} 0\n"
     "thaw_x_seconds_bucket{result=\"ok\",le=\"2\"} 1\n"
     "thaw_x_seconds_bucket{result=\"ok\",le=\"+Inf\"} 1\n"
     "thaw_x_seconds_sum{result=\"ok\"} 1.5\n"
     "thaw_x_seconds_count{result=\"ok\"} 1\n"
     "thaw_x_seconds_bucket{result=\"error\",le=\"1\"} 0\n"
     "thaw_x_seconds_bucket{result=\"error\",le=\"2\"} 0\n"
     "thaw_x_seconds_bucket{result=\"error\",le=\"+Inf\"} 0\n"
     "thaw_x_seconds_sum{result=\"error\"} 0\n"
     "thaw_x_seconds_count{result=\"error\"} 0\n"},
    {"escaping", b_escaping,
     "# HELP thaw_esc Back\\\\slash \"quoted\"\\nnewline.\n"
     "# TYPE thaw_esc gauge\n"
     "thaw_esc{path=\"a\\\\b\\\"c\\nd\"} 1\n"
     "thaw_esc{path=\"\"} 3\n"
     "thaw_esc{path=\"caf\xc3\xa9 \xef\xbf\xbd|\xef\xbf\xbd|"
     "\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 4\n"},
};

static void test_render(void) {
  for (size_t i = 0; i < sizeof render_cases / sizeof render_cases[0]; i++) {
    thaw_metrics_t *m = thaw_metrics_new();
    CHECK(m);
    render_cases[i].build(m);
    char *out = NULL;
    size_t len = 99;
    CHECK(thaw_metrics_render(m, &out, &len) == 0);
    CHECK(out && len == strlen(out));
    if (!out || strcmp(out, render_cases[i].want) != 0) {
      fprintf(stderr, "case '%s': got\n%s\nwant\n%s\n", render_cases[i].name,
              out ? out : "(null)", render_cases[i].want);
      failures++;
    }
    free(out);
    thaw_metrics_free(m);
  }
}

/* ---- names, duplicates, bad buckets ------------------------------------- */

static const struct {
  const char *name;
  const char *label; /* NULL: no labels */
  int ok;
} name_cases[] = {
    {"a", NULL, 1},
    {"_a:b_9", NULL, 1},
    {":colon:first", NULL, 1},
    {"A_Z", "Lab_9", 1},
    {"x", "_private", 1},
    {"", NULL, 0},
    {"9lives", NULL, 0},
    {"has-dash", NULL, 0},
    {"has space", NULL, 0},
    {"utf\xc3\xa9", NULL, 0},
    {"x", "", 0},
    {"x", "a:b", 0},  /* label names take no colon */
    {"x", "__name", 0}, /* reserved prefix */
    {"x", "9a", 0},
    {"x", "a-b", 0},
};

static void test_names(void) {
  for (size_t i = 0; i < sizeof name_cases / sizeof name_cases[0]; i++) {
    thaw_metrics_t *m = thaw_metrics_new();
    const char *l[] = {name_cases[i].label};
    size_t n = name_cases[i].label ? 1 : 0;
    int got_c = thaw_metrics_counter(m, name_cases[i].name, "h", n, l) != NULL;
    thaw_metrics_free(m);
    m = thaw_metrics_new();
    int got_g = thaw_metrics_gauge(m, name_cases[i].name, "h", n, l) != NULL;
    thaw_metrics_free(m);
    if (got_c != name_cases[i].ok || got_g != name_cases[i].ok) {
      fprintf(stderr, "name case %zu '%s'/'%s': got %d/%d want %d\n", i,
              name_cases[i].name, name_cases[i].label ? name_cases[i].label : "-",
              got_c, got_g, name_cases[i].ok);
      failures++;
    }
  }
  /* an overlong name is refused, not truncated */
  char longname[400];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  thaw_metrics_t *m = thaw_metrics_new();
  CHECK(!thaw_metrics_gauge(m, longname, "h", 0, NULL));
  thaw_metrics_free(m);
}

static void test_refusals(void) {
  thaw_metrics_t *m = thaw_metrics_new();
  static const char *const dup[] = {"a", "a"};
  static const char *const le[] = {"le"};
  static const double inc[] = {1, 2};
  static const double flat[] = {1, 1};
  static const double down[] = {2, 1};
  static const double nan_b[] = {NAN};
  CHECK(thaw_metrics_counter(m, "dup_total", "h", 0, NULL));
  CHECK(!thaw_metrics_counter(m, "dup_total", "h", 0, NULL));
  CHECK(!thaw_metrics_gauge(m, "dup_total", "other type", 0, NULL));
  CHECK(!thaw_metrics_histogram(m, "dup_total", "h", 0, NULL, inc, 2));
  CHECK(!thaw_metrics_gauge(m, "g", "h", 2, dup));
  CHECK(!thaw_metrics_gauge(m, "g", "h", 1, NULL));
  CHECK(thaw_metrics_gauge(m, "g_le", "h", 1, le)); /* le is fine on gauges */
  CHECK(!thaw_metrics_histogram(m, "h1", "h", 1, le, inc, 2));
  CHECK(!thaw_metrics_histogram(m, "h2", "h", 0, NULL, flat, 2));
  CHECK(!thaw_metrics_histogram(m, "h3", "h", 0, NULL, down, 2));
  CHECK(!thaw_metrics_histogram(m, "h4", "h", 0, NULL, nan_b, 1));
  CHECK(!thaw_metrics_histogram(m, "h5", "h", 0, NULL, NULL, 2));
  CHECK(thaw_metrics_histogram(m, "h6", "h", 0, NULL, NULL, 0)); /* +Inf only */
  CHECK(thaw_metrics_histogram(m, "h7", "h", 0, NULL, thaw_metrics_latency_buckets,
                               thaw_metrics_latency_nbuckets));
  /* a refused name stays free for a valid registration */
  CHECK(thaw_metrics_gauge(m, "h1", "h", 0, NULL));
  thaw_metrics_free(m);
  for (size_t i = 1; i < thaw_metrics_latency_nbuckets; i++)
    CHECK(thaw_metrics_latency_buckets[i] > thaw_metrics_latency_buckets[i - 1]);
  CHECK(thaw_metrics_latency_buckets[0] == 0.0001);
  CHECK(thaw_metrics_latency_buckets[thaw_metrics_latency_nbuckets - 1] == 10);
}

/* ---- children, types, NULL-safety --------------------------------------- */

static void test_children(void) {
  thaw_metrics_t *m = thaw_metrics_new();
  static const char *const l[] = {"code"};
  thaw_metric_t *c = thaw_metrics_counter(m, "req_total", "h", 1, l);
  thaw_metric_child_t *a = thaw_metric_child(c, (const char *const[]){"200"});
  thaw_metric_child_t *b = thaw_metric_child(c, (const char *const[]){"500"});
  char buf[8] = "200";
  thaw_metric_child_t *a2 = thaw_metric_child(c, (const char *const[]){buf});
  CHECK(a && b && a != b && a == a2); /* cached per tuple, values compared */
  buf[0] = 'X'; /* values were copied */
  CHECK(thaw_metric_child(c, (const char *const[]){"200"}) == a);
  CHECK(!thaw_metric_child(c, NULL)); /* a labelled family needs values */
  thaw_metric_child_add(a, 2);
  thaw_metric_child_set(a, 100); /* set is for gauges only */
  thaw_metric_child_observe(a, 1);
  CHECK(thaw_metric_child_value(a) == 2);
  thaw_metric_t *h = thaw_metrics_histogram(m, "lat_seconds", "h", 0, NULL,
                                            thaw_metrics_latency_buckets,
                                            thaw_metrics_latency_nbuckets);
  thaw_metric_child_t *hc = thaw_metric_child(h, NULL);
  thaw_metric_child_observe(hc, 0.2);
  thaw_metric_child_observe(hc, 0.3);
  thaw_metric_child_add(hc, 5); /* ignored on a histogram */
  CHECK(thaw_metric_child_value(hc) == 2);
  thaw_metric_t *g = thaw_metrics_gauge(m, "g", "h", 0, NULL);
  thaw_metric_set(g, NULL, 4);
  thaw_metric_add(g, NULL, -1.5);
  thaw_metric_observe(g, NULL, 100); /* ignored on a gauge */
  CHECK(thaw_metric_child_value(thaw_metric_child(g, NULL)) == 2.5);

  /* many children: each tuple keeps its own value */
  for (int i = 0; i < 200; i++) {
    char v[16];
    snprintf(v, sizeof v, "%d", i % 50);
    thaw_metric_inc(c, (const char *const[]){v});
  }
  CHECK(thaw_metric_child_value(thaw_metric_child(c, (const char *const[]){"7"})) == 4);
  /* a family holds at most 4096 children; older ones keep working */
  int made = 0;
  for (int i = 0; i < 5000; i++) {
    char v[16];
    snprintf(v, sizeof v, "x%d", i);
    made += thaw_metric_child(c, (const char *const[]){v}) != NULL;
  }
  CHECK(made == 4096 - 50 - 2);
  CHECK(thaw_metric_child(c, (const char *const[]){"200"}) == a);

  /* NULL everywhere does nothing */
  CHECK(!thaw_metrics_counter(NULL, "x", "h", 0, NULL));
  CHECK(!thaw_metrics_gauge(m, NULL, "h", 0, NULL));
  CHECK(thaw_metrics_gauge(m, "nohelp", NULL, 0, NULL)); /* empty HELP */
  CHECK(!thaw_metric_child(NULL, NULL));
  thaw_metric_child_add(NULL, 1);
  thaw_metric_child_set(NULL, 1);
  thaw_metric_child_observe(NULL, 1);
  CHECK(thaw_metric_child_value(NULL) == 0);
  thaw_metric_inc(NULL, NULL);
  thaw_metric_add(NULL, NULL, 1);
  thaw_metric_set(NULL, NULL, 1);
  thaw_metric_observe(NULL, NULL, 1);
  CHECK(thaw_metrics_on_collect(NULL, NULL, NULL) == THAW_EINVAL);
  char *out = NULL;
  CHECK(thaw_metrics_render(NULL, &out, NULL) == THAW_EINVAL);
  CHECK(thaw_metrics_render(m, NULL, NULL) == THAW_EINVAL);
  CHECK(thaw_metrics_register_process(NULL, "v") != 0);
  thaw_metrics_free(NULL);
  thaw_metrics_free(m);
}

/* ---- collect callbacks -------------------------------------------------- */

static void on_collect(thaw_metrics_t *m, void *data) {
  (void)m;
  int *calls = data;
  (*calls)++;
}

static void set_size(thaw_metrics_t *m, void *data) {
  (void)m;
  thaw_metric_set(data, NULL, 42);
}

static void test_collect(void) {
  thaw_metrics_t *m = thaw_metrics_new();
  int calls = 0;
  thaw_metric_t *g = thaw_metrics_gauge(m, "thaw_cache_size_bytes", "h", 0, NULL);
  CHECK(thaw_metrics_on_collect(m, set_size, g) == 0);
  for (int i = 1; i < 16; i++)
    CHECK(thaw_metrics_on_collect(m, on_collect, &calls) == 0);
  CHECK(thaw_metrics_on_collect(m, on_collect, &calls) == THAW_ENOMEM); /* 17th */
  char *out = NULL;
  CHECK(thaw_metrics_render(m, &out, NULL) == 0);
  CHECK(calls == 15);
  CHECK(out && strstr(out, "\nthaw_cache_size_bytes 42\n"));
  free(out);
  CHECK(thaw_metrics_render(m, &out, NULL) == 0);
  CHECK(calls == 30);
  free(out);
  thaw_metrics_free(m);
}

/* ---- process metrics ---------------------------------------------------- */

/* The value of the first sample line `name ` in text, or NAN. */
static double sample(const char *text, const char *name) {
  size_t n = strlen(name);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
    if (strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '{')) {
      const char *sp = strchr(p, ' ');
      return sp ? strtod(sp + 1, NULL) : NAN;
    }
  return NAN;
}

static void test_process(void) {
  thaw_metrics_t *m = thaw_metrics_new();
  CHECK(thaw_metrics_register_process(m, "1.2.3") == 0);
  CHECK(thaw_metrics_register_process(m, "1.2.3") != 0); /* only once */
  /* burn a little CPU so the counter is visibly > 0 at 100 Hz */
  clock_t until = clock() + CLOCKS_PER_SEC / 20;
  while (clock() < until)
    ; /* clock() itself costs CPU */
  char *out = NULL;
  CHECK(thaw_metrics_render(m, &out, NULL) == 0);
  if (!out)
    return;
  double rss = sample(out, "process_resident_memory_bytes");
  double vsz = sample(out, "process_virtual_memory_bytes");
  double cpu = sample(out, "process_cpu_seconds_total");
  double start = sample(out, "process_start_time_seconds");
  double fds = sample(out, "process_open_fds");
  double now = (double)time(NULL);
  CHECK(rss > 100 * 1024 && rss < 64e9);
  CHECK(vsz >= rss);
  CHECK(cpu > 0 && cpu < 3600);
  CHECK(start > now - 86400 && start <= now + 2);
  CHECK(fds >= 3 && fds < 1e6); /* stdin, stdout, stderr at least */
  CHECK(sample(out, "process_max_fds") >= fds);
  CHECK(strstr(out, "\nthaw_build_info{version=\"1.2.3\"} 1\n"));
  CHECK(strstr(out, "# TYPE process_cpu_seconds_total counter\n"));
  CHECK(strstr(out, "# TYPE process_resident_memory_bytes gauge\n"));
  free(out);
  /* a new fd shows up on the next render */
  FILE *fp = fopen("/proc/self/stat", "r");
  CHECK(thaw_metrics_render(m, &out, NULL) == 0);
  if (out)
    CHECK(sample(out, "process_open_fds") == fds + 1);
  if (fp)
    fclose(fp);
  free(out);
  thaw_metrics_free(m);
}

/* ---- a daemon-shaped registry for promtool ------------------------------ */

static int print_sample(void) {
  thaw_metrics_t *m = thaw_metrics_new();
  static const char *const code[] = {"code"}, *const decision[] = {"decision"},
                           *const result[] = {"result"}, *const phase[] = {"phase"},
                           *const source[] = {"source"}, *const reason[] = {"reason"},
                           *const regcode[] = {"registry", "code"},
                           *const verbcode[] = {"verb", "code"};
  thaw_metric_t *f;
  f = thaw_metrics_counter(m, "thaw_webhook_requests_total",
                           "Admission requests by HTTP status code.", 1, code);
  thaw_metric_inc(f, (const char *const[]){"200"});
  f = thaw_metrics_histogram(m, "thaw_webhook_admission_duration_seconds",
                             "Time to decide an admission review.", 0, NULL,
                             thaw_metrics_latency_buckets,
                             thaw_metrics_latency_nbuckets);
  thaw_metric_observe(f, NULL, 0.0001);
  thaw_metric_observe(f, NULL, 0.0042);
  f = thaw_metrics_counter(m, "thaw_webhook_images_total",
                           "Container images by decision.", 1, decision);
  thaw_metric_inc(f, (const char *const[]){"rewritten"});
  f = thaw_metrics_counter(m, "thaw_webhook_records_total",
                           "CachedImage records by result.", 1, result);
  thaw_metric_inc(f, (const char *const[]){"created"});
  f = thaw_metrics_gauge(m, "thaw_cache_registry_up",
                         "1 when the cache registry answers its probe.", 0, NULL);
  thaw_metric_set(f, NULL, 1);
  f = thaw_metrics_gauge(m, "thaw_cachedimages", "CachedImages by phase.", 1, phase);
  thaw_metric_set(f, (const char *const[]){"Ready"}, 3);
  f = thaw_metrics_gauge(m, "thaw_cache_size_bytes",
                         "Bytes held by the cache \"registry\"\\nowhere.", 0, NULL);
  thaw_metric_set(f, NULL, 1.5e12);
  f = thaw_metrics_counter(m, "thaw_warm_total", "Warm attempts by result.", 1, result);
  thaw_metric_inc(f, (const char *const[]){"ok"});
  f = thaw_metrics_histogram(m, "thaw_warm_duration_seconds", "Warm time.", 0, NULL,
                             (const double[]){0.1, 1, 10, 60, 600}, 5);
  thaw_metric_observe(f, NULL, 12.5);
  f = thaw_metrics_counter(m, "thaw_warm_bytes_total", "Bytes warmed by source.", 1,
                           source);
  thaw_metric_add(f, (const char *const[]){"upstream"}, 123456789);
  f = thaw_metrics_counter(m, "thaw_expired_total", "Expired images by reason.", 1,
                           reason);
  thaw_metric_child(f, (const char *const[]){"unused"});
  f = thaw_metrics_counter(m, "thaw_upstream_requests_total",
                           "Upstream registry requests.", 2, regcode);
  thaw_metric_inc(f, (const char *const[]){"docker.io", "200"});
  f = thaw_metrics_counter(m, "thaw_kube_requests_total", "Kubernetes API requests.",
                           2, verbcode);
  thaw_metric_inc(f, (const char *const[]){"GET", "200"});
  f = thaw_metrics_gauge(m, "thaw_leader", "1 while this replica leads.", 0, NULL);
  thaw_metric_set(f, NULL, 0);
  f = thaw_metrics_gauge(m, "thaw_escape_test_info", "Label escaping.", 1, code);
  thaw_metric_set(f, (const char *const[]){"a\\b\"c\nd"}, 1);
  thaw_metric_set(f, (const char *const[]){"bad \xff utf8 \xc3"}, 1);
  f = thaw_metrics_gauge(m, "thaw_special_values", "Special floats.", 1, code);
  thaw_metric_set(f, (const char *const[]){"inf"}, INFINITY);
  thaw_metric_set(f, (const char *const[]){"ninf"}, -INFINITY);
  thaw_metric_set(f, (const char *const[]){"nan"}, NAN);
  thaw_metric_set(f, (const char *const[]){"tiny"}, 1e-300);
  int rc = thaw_metrics_register_process(m, THAW_VERSION);
  char *out = NULL;
  size_t len = 0;
  if (rc == 0)
    rc = thaw_metrics_render(m, &out, &len);
  if (rc == 0)
    fwrite(out, 1, len, stdout);
  free(out);
  thaw_metrics_free(m);
  return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--print") == 0)
    return print_sample();
  test_render();
  test_names();
  test_refusals();
  test_children();
  test_collect();
  test_process();
  if (failures)
    fprintf(stderr, "test_metrics: %d failure(s)\n", failures);
  return failures != 0;
}
