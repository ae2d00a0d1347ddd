/* config.h - thaw-controller's settings: the flags of docs/design.md ("Flags",
 * "Defaults") parsed and validated, and the Go-style durations and byte
 * sizes they take. */
#ifndef THAW_CONTROLLER_CONFIG_H
#define THAW_CONTROLLER_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "units.h" /* thaw_parse_duration, thaw_parse_bytes */

#define THAW_CONFIG_LIST_MAX 64 /* entries of a comma-separated flag */

typedef struct {
  const char *kubeconfig;       /* NULL: $KUBECONFIG, else in-cluster */
  char namespace_[64];          /* --namespace, else the service account's,
                                   else "thaw-system" */
  const char *registry_url;     /* required: "http[s]://host[:port]" */
  char registry_host[256];      /* host[:port] of registry_url */
  int registry_insecure;        /* registry_url is http:// */
  const char *cache_host;       /* "localhost:7439" */
  const char *private_cache_host; /* "localhost:7440": the node's forward */
  char private_host[280];       /* private_cache_host + "/private": the
                                   prefix of private images' rewrites */
  /* NULL-ended lists, pointing into the parsed flag copies. */
  const char *insecure_registries[THAW_CONFIG_LIST_MAX + 1];
  const char *platforms[THAW_CONFIG_LIST_MAX + 1]; /* "os/arch[/variant]" */
  const char *prewarm_namespaces[THAW_CONFIG_LIST_MAX + 1];
  const char *exclude_namespaces[THAW_CONFIG_LIST_MAX + 1];
  const char *metrics_bind_address; /* ":8081" */
  unsigned concurrency;         /* images warmed at once; default 4 */
  unsigned blob_concurrency;    /* blobs per image; default 4 */
  uint64_t refresh_interval_ms; /* default 1h */
  uint64_t expire_after_ms;     /* default 720h */
  uint64_t max_cache_bytes;     /* 0 = unbounded */
  uint64_t expire_grace_ms;     /* Expiring -> deleted; default 10m */
  uint64_t repair_after_ms;     /* pull error on a rewritten image; 30s */
  const char *gc_url;           /* thaw-registry-gc agent; NULL = no GC */
  uint64_t gc_interval_ms;      /* at least this between GC runs; 1h */
  int allow_private;            /* default 0 */
  int leader_elect;             /* default 1 */
  const char *ca_file;          /* --upstream-ca-file: extra trust anchors */
  const char *token_key_file;   /* signs the cache's tokens; NULL: no auth */
  const char *token_cert_file;  /* its certificate (x5c, rootcertbundle) */
  const char *token_bind_address; /* the token endpoint; ":7442" */
  const char *log_level;        /* NULL: info or $THAW_LOG_LEVEL */
  char *owned[8];               /* copies the lists point into */
} thaw_config_t;

/* Parses argv into *c (defaults first). Returns 0; 1 when --help or --version was
 * given (printed to stdout); 2 on a bad flag or value, with exactly one line
 * "thaw-controller: ..." on stderr. */
int thaw_config_parse(thaw_config_t *c, int argc, char **argv);
void thaw_config_free(thaw_config_t *c);
void thaw_config_usage(FILE *f);

#endif
