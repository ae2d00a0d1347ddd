/* metrics.h - a Prometheus metrics registry and its text exposition.
 *
 * Families (counter, gauge, histogram) have fixed label names; a child per
 * tuple of label values is made on first use and kept for the registry's
 * life, so a child pointer can be cached on hot paths. Single-threaded: one
 * loop owns a registry. Names and label values are copied. Rendering follows
 * the text format 0.0.4 (HELP/TYPE lines, escaped label values, histogram
 * _bucket{le}/_sum/_count with a +Inf bucket), families in registration
 * order and children in creation order, so output is deterministic. */
#ifndef THAW_METRICS_H
#define THAW_METRICS_H

#include <stddef.h>

typedef struct thaw_metrics thaw_metrics_t;
typedef struct thaw_metric thaw_metric_t;     /* a family */
typedef struct thaw_metric_child thaw_metric_child_t;

/* Returns an empty registry, or NULL when out of memory. */
thaw_metrics_t *thaw_metrics_new(void);
/* Frees the registry, its families and children. NULL does nothing. */
void thaw_metrics_free(thaw_metrics_t *m);

/* Registers a family. `labels` holds `nlabels` label names (may be NULL when
 * 0). Histogram `buckets` are upper bounds in increasing order (+Inf is
 * implied). Returns the family (owned by the registry), or NULL when out of
 * memory, the name or a label name is invalid, or the name is taken. */
thaw_metric_t *thaw_metrics_counter(thaw_metrics_t *m, const char *name,
                                    const char *help, size_t nlabels,
                                    const char *const *labels);
thaw_metric_t *thaw_metrics_gauge(thaw_metrics_t *m, const char *name,
                                  const char *help, size_t nlabels,
                                  const char *const *labels);
thaw_metric_t *thaw_metrics_histogram(thaw_metrics_t *m, const char *name,
                                      const char *help, size_t nlabels,
                                      const char *const *labels,
                                      const double *buckets, size_t nbuckets);

/* The child for these label values (as many as the family's label names;
 * NULL when it has none), made on first use. Returns NULL only when out of
 * memory, `metric` is NULL, or the family already has 4096 children (a
 * runaway label); the operations below accept NULL and do nothing, so a
 * failed registration never crashes a daemon. Label values are cut at 4095
 * bytes; bytes that are not UTF-8 render as U+FFFD. */
thaw_metric_child_t *thaw_metric_child(thaw_metric_t *metric,
                                       const char *const *values);

void thaw_metric_child_add(thaw_metric_child_t *c, double v); /* counter, gauge */
void thaw_metric_child_set(thaw_metric_child_t *c, double v); /* gauge */
void thaw_metric_child_observe(thaw_metric_child_t *c, double v); /* histogram */
double thaw_metric_child_value(const thaw_metric_child_t *c); /* counter, gauge;
                                       a histogram's count */

/* Shorthands: child lookup plus the operation. */
void thaw_metric_inc(thaw_metric_t *metric, const char *const *values);
void thaw_metric_add(thaw_metric_t *metric, const char *const *values, double v);
void thaw_metric_set(thaw_metric_t *metric, const char *const *values, double v);
void thaw_metric_observe(thaw_metric_t *metric, const char *const *values,
                         double v);

/* Registers a callback run at the start of every render, to set gauges that
 * are cheaper to compute on scrape (sizes, phases). At most 16. Returns 0 or
 * THAW_ENOMEM. */
typedef void (*thaw_metrics_collect_cb)(thaw_metrics_t *m, void *data);
int thaw_metrics_on_collect(thaw_metrics_t *m, thaw_metrics_collect_cb cb,
                            void *data);

/* Renders every family to *out (malloc'd, NUL-terminated; *len without the
 * NUL; the caller frees it). Returns 0 or THAW_ENOMEM. */
int thaw_metrics_render(thaw_metrics_t *m, char **out, size_t *len);

/* Registers process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_cpu_seconds_total, process_start_time_seconds, process_open_fds
 * (read from /proc at render time) and thaw_build_info{version} = 1.
 * Returns 0 or THAW_ENOMEM. */
int thaw_metrics_register_process(thaw_metrics_t *m, const char *version);

/* Buckets for request latencies in seconds, 100 us .. 10 s. */
extern const double thaw_metrics_latency_buckets[];
extern const size_t thaw_metrics_latency_nbuckets;

#endif
