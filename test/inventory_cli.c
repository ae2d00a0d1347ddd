/* inventory_cli.c - drives controller/inventory on a loop for
 * test/test_inventory.py: one command a line on stdin, one JSON reply a line
 * on stdout, with the inventory's events (deleted) as lines of their own in
 * between. The loop runs while it waits for input, so reads and deletes go
 * on between commands.
 *
 * usage: inventory_cli [--concurrency N]
 * commands:
 *   registry HOST:PORT   a new registry client (plain http) for the cache
 *   registry none        set_registry(NULL), then free the client
 *   registry drop        free the client first, then set_registry(NULL)
 *   set NAME REPO DIGEST HINT   (DIGEST "-" = holds nothing)
 *   remove NAME
 *   deny REPO | allow REPO      what may_delete answers (default yes)
 *   kick | collected
 *   query [NAME...]      unique, reclaimable, stats, and per name: loaded,
 *                        pending, bytes
 *   freed NAME...        thaw_inventory_freed_bytes
 *   deleting REPO        thaw_inventory_deleting
 *   free                 thaw_inventory_free now (requests in flight)
 *   quit                 free everything; exit 0 if the loop closes empty
 * Replies: {"reply": CMD, "rc": "OK" | THAW_E..., ...}. Events:
 * {"event": "deleted", "repo", "digest", "freed"}. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "error.h"
#include "inventory.h"

#define BUF_MAX (1 << 20)  /* a line: up to ~10,000 names */
#define ARGS_MAX 65536
#define DENY_MAX 64

static uv_loop_t loop;
static uv_pipe_t in;
static thaw_http_t *http;
static thaw_registry_t *reg;
static thaw_inventory_t *inv;
static char buf[BUF_MAX], line[BUF_MAX];
static char *args[ARGS_MAX];
static size_t blen;
static char *denied[DENY_MAX];
static unsigned long denied_asks;
static int quitting;

static void emit(cJSON *o) {
  char *s = cJSON_PrintUnformatted(o);
  printf("%s\n", s);
  fflush(stdout);
  free(s);
  cJSON_Delete(o);
}

static cJSON *reply(const char *cmd, int rc) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "reply", cmd);
  cJSON_AddStringToObject(o, "rc", rc ? thaw_err_name(rc) : "OK");
  return o;
}

static int may_delete(const char *repo, void *data) {
  (void)data;
  for (int i = 0; i < DENY_MAX; i++)
    if (denied[i] && strcmp(denied[i], repo) == 0) {
      denied_asks++;
      return 0;
    }
  return 1;
}

static void on_deleted(const char *repo, const char *digest, int64_t freed,
                       void *data) {
  (void)data;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "event", "deleted");
  cJSON_AddStringToObject(o, "repo", repo);
  cJSON_AddStringToObject(o, "digest", digest);
  cJSON_AddNumberToObject(o, "freed", (double)freed);
  emit(o);
}

static int set_registry(const char *host) {
  int rc = 0;
  if (!strcmp(host, "drop")) { /* the client first: callbacks already ran */
    thaw_registry_free(reg);
    reg = NULL;
    return thaw_inventory_set_registry(inv, NULL, NULL);
  }
  rc = thaw_inventory_set_registry(inv, NULL, NULL);
  thaw_registry_free(reg);
  reg = NULL;
  if (rc || !strcmp(host, "none"))
    return rc;
  const char *insecure[] = {host, NULL};
  thaw_registry_opts_t ro = {.insecure = insecure, .timeout_ms = 10000};
  if ((rc = thaw_registry_new(http, &ro, &reg)))
    return rc;
  return thaw_inventory_set_registry(inv, reg, host);
}

static void query(char **argv, int argc) {
  cJSON *o = reply("query", 0);
  thaw_inventory_stats_t st;
  thaw_inventory_stats(inv, &st);
  cJSON_AddNumberToObject(o, "unique", (double)thaw_inventory_unique_bytes(inv));
  cJSON_AddNumberToObject(o, "reclaimable",
                          (double)thaw_inventory_reclaimable_bytes(inv));
  cJSON_AddNumberToObject(o, "denied_asks", (double)denied_asks);
  cJSON *s = cJSON_AddObjectToObject(o, "stats");
  cJSON_AddNumberToObject(s, "objects", (double)st.objects);
  cJSON_AddNumberToObject(s, "unloaded", (double)st.unloaded);
  cJSON_AddNumberToObject(s, "manifests", (double)st.manifests);
  cJSON_AddNumberToObject(s, "contents", (double)st.contents);
  cJSON_AddNumberToObject(s, "orphans", (double)st.orphans);
  cJSON_AddNumberToObject(s, "inflight", (double)st.inflight);
  cJSON_AddNumberToObject(s, "waiting", (double)st.waiting);
  cJSON_AddNumberToObject(s, "memory", (double)st.memory);
  cJSON *objs = cJSON_AddObjectToObject(o, "objects");
  for (int i = 1; i < argc; i++) {
    cJSON *x = cJSON_AddObjectToObject(objs, argv[i]);
    cJSON_AddBoolToObject(x, "loaded", thaw_inventory_loaded(inv, argv[i]));
    cJSON_AddBoolToObject(x, "pending", thaw_inventory_pending(inv, argv[i]));
    cJSON_AddNumberToObject(x, "bytes",
                            (double)thaw_inventory_object_bytes(inv, argv[i]));
  }
  emit(o);
}

static void finish(void);

static void command(char *rest) {
  char **argv = args;
  int argc = 0;
  for (char *tok; argc < ARGS_MAX && (tok = strsep(&rest, " \t\r"));)
    if (*tok)
      argv[argc++] = tok;
  if (!argc)
    return;
  const char *c = argv[0];
  int rc = 0;
  if (!inv && strcmp(c, "quit")) {
    emit(reply(c, THAW_EINVAL)); /* after "free" */
    return;
  }
  if (!strcmp(c, "registry") && argc == 2) {
    rc = set_registry(argv[1]);
  } else if (!strcmp(c, "set") && argc == 5) {
    rc = thaw_inventory_set(inv, argv[1], argv[2],
                            strcmp(argv[3], "-") ? argv[3] : NULL,
                            strtoll(argv[4], NULL, 10));
  } else if (!strcmp(c, "remove") && argc == 2) {
    thaw_inventory_remove(inv, argv[1]);
  } else if (!strcmp(c, "deny") && argc == 2) {
    for (int i = 0; i < DENY_MAX; i++)
      if (!denied[i]) {
        denied[i] = strdup(argv[1]);
        break;
      }
  } else if (!strcmp(c, "allow") && argc == 2) {
    for (int i = 0; i < DENY_MAX; i++)
      if (denied[i] && !strcmp(denied[i], argv[1])) {
        free(denied[i]);
        denied[i] = NULL;
      }
  } else if (!strcmp(c, "kick")) {
    thaw_inventory_kick(inv);
  } else if (!strcmp(c, "collected")) {
    thaw_inventory_collected(inv);
  } else if (!strcmp(c, "query")) {
    query(argv, argc);
    return;
  } else if (!strcmp(c, "freed")) {
    cJSON *o = reply(c, 0);
    cJSON_AddNumberToObject(
        o, "bytes",
        (double)thaw_inventory_freed_bytes(inv, (const char *const *)argv + 1,
                                           (size_t)argc - 1));
    emit(o);
    return;
  } else if (!strcmp(c, "deleting") && argc == 2) {
    cJSON *o = reply(c, 0);
    cJSON_AddNumberToObject(o, "n", thaw_inventory_deleting(inv, argv[1]));
    emit(o);
    return;
  } else if (!strcmp(c, "free")) {
    thaw_inventory_free(inv);
    inv = NULL;
  } else if (!strcmp(c, "quit")) {
    emit(reply(c, 0));
    finish();
    return;
  } else {
    rc = THAW_EINVAL;
  }
  emit(reply(c, rc));
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  b->base = buf + blen;
  b->len = sizeof buf - blen;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)s;
  (void)b;
  if (n < 0) { /* EOF: as quit */
    finish();
    return;
  }
  blen += (size_t)n;
  char *nl;
  while (!quitting && (nl = memchr(buf, '\n', blen))) {
    *nl = '\0';
    size_t used = (size_t)(nl - buf) + 1;
    memcpy(line, buf, used);
    memmove(buf, buf + used, blen - used);
    blen -= used;
    command(line);
  }
  if (blen == sizeof buf) { /* a line too long */
    fprintf(stderr, "inventory_cli: line too long\n");
    blen = 0;
  }
}

static void finish(void) {
  if (quitting)
    return;
  quitting = 1;
  uv_read_stop((uv_stream_t *)&in);
  thaw_inventory_free(inv); /* before the client it may have requests on */
  inv = NULL;
  thaw_registry_free(reg);
  reg = NULL;
  thaw_http_free(http);
  http = NULL;
  uv_close((uv_handle_t *)&in, NULL);
}

int main(int argc, char **argv) {
  thaw_inventory_opts_t o = {.may_delete = may_delete, .deleted = on_deleted};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--concurrency") && i + 1 < argc) {
      o.concurrency = (unsigned)strtoul(argv[++i], NULL, 10);
    } else {
      fprintf(stderr, "usage: inventory_cli [--concurrency N]\n");
      return 2;
    }
  }
  uv_loop_init(&loop);
  int rc = thaw_http_new(&loop, &http);
  if (!rc)
    rc = thaw_inventory_new(&loop, &o, &inv);
  if (rc) {
    fprintf(stderr, "inventory_cli: %s\n", thaw_strerror(rc));
    return 1;
  }
  uv_pipe_init(&loop, &in, 0);
  if (uv_pipe_open(&in, 0) ||
      uv_read_start((uv_stream_t *)&in, on_alloc, on_read)) {
    fprintf(stderr, "inventory_cli: cannot read stdin\n");
    return 1;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < DENY_MAX; i++)
    free(denied[i]);
  if (uv_loop_close(&loop)) {
    fprintf(stderr, "inventory_cli: loop not empty at exit\n");
    return 2;
  }
  return 0;
}
