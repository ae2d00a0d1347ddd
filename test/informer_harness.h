/* informer_harness.h - shared by the informer tests and benchmark: a kube
 * client from the emulator's environment, blocking helpers for setup, the
 * emulator's control endpoint, and an event recorder that checks every
 * delivered event against what came before. Test code only: it exits the
 * process on setup failures. */
#ifndef THAW_INFORMER_HARNESS_H
#define THAW_INFORMER_HARNESS_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <uv.h>

#include "informer.h"
#include "intern.h"
#include "kube.h"
#include "store.h"

typedef struct {
  uv_loop_t loop;
  thaw_kube_t *kube;
  thaw_kube_config_t cfg;
} harness_t;

/* Reads THAW_EMU_URL / THAW_EMU_CA / THAW_EMU_TOKEN; exits 77 (skip) when
 * they are absent. */
void harness_init(harness_t *h);
void harness_close(harness_t *h);

/* Blocking POST/GET to the control endpoint (libcurl easy, own thread
 * safe). Returns the HTTP status, 0 on a transport error; *body (if given)
 * gets a malloc'd response. */
long emu_post(const harness_t *h, const char *path, const char *json,
              char **body);
long emu_get(const harness_t *h, const char *path, char **body);

/* Runs the loop until cond(arg) is true or timeout_ms passes; returns 1 when
 * cond became true. cond NULL: runs for timeout_ms. */
int run_until(harness_t *h, int (*cond)(void *), void *arg, long timeout_ms);

/* Blocking kube calls through the async client (the loop runs meanwhile).
 * Return the result's err; *body (if given) gets the detached body. */
int sync_create(harness_t *h, const thaw_kube_resource_t *r, const char *ns,
                const cJSON *obj, cJSON **body);
int sync_delete(harness_t *h, const thaw_kube_resource_t *r, const char *ns,
                const char *name);
int sync_update(harness_t *h, const thaw_kube_resource_t *r, const char *ns,
                const cJSON *obj, cJSON **body);
int sync_merge_patch(harness_t *h, const thaw_kube_resource_t *r,
                     const char *ns, const char *name, const cJSON *patch);
int ensure_namespace(harness_t *h, const char *ns);

/* A small pod: one container per image given (NULL-terminated). */
cJSON *make_pod(const char *ns, const char *name, const char *const *images);

/* Every object of the resource (paginated list); returns the items array
 * (caller deletes) and the list's resourceVersion in rv[64]. */
cJSON *list_all(harness_t *h, const thaw_kube_resource_t *r, const char *ns,
                char *rv);

/* --- event recorder ------------------------------------------------------ */

typedef struct {
  char *key;
  char type; /* 'A', 'U', 'D' */
  uint64_t rv;
} rec_event_t;

typedef struct {
  thaw_informer_t *inf;   /* set after thaw_informer_new, for rvs */
  thaw_intern_t *intern;  /* the podinfo table */
  thaw_store_t *live;     /* key → copy of the last delivered record */
  rec_event_t *log;
  size_t n, cap;
  int keep_log;
  int synced;
  uint64_t adds, updates, deletes;
  uint64_t dup_adds, orphan_updates, orphan_deletes, stale_old;
} recorder_t;

void recorder_init(recorder_t *r, thaw_intern_t *intern, int keep_log);
void recorder_free(recorder_t *r);
/* Handlers for a podinfo informer that record into r (handlers.data = r). */
thaw_informer_handlers_t recorder_handlers(recorder_t *r);
/* Count of log entries for key from index `from`, as a string like "AUD". */
void recorder_history(const recorder_t *r, const char *key, size_t from,
                      char *out, size_t outlen);

/* Compares the server's items with the informer's store and the recorder's
 * live state (keys, resourceVersions, images/flags). Prints up to 5
 * differences; returns their number. */
size_t compare_state(const cJSON *items, thaw_informer_t *inf,
                     const recorder_t *r, thaw_intern_t *intern, int verbose);

#endif
