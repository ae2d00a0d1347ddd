/* kubeconfig.h - where the API server is and how to authenticate to it.
 *
 * Either in-cluster (service-account files and KUBERNETES_SERVICE_HOST/PORT)
 * or a kubeconfig file's current-context. The result is plain data that
 * thaw_kube_new() copies. */
#ifndef THAW_KUBECONFIG_H
#define THAW_KUBECONFIG_H

#include <stddef.h>

typedef struct {
  char *server;       /* "https://host:port", no trailing '/' */
  char *ca_file;      /* PEM file, or NULL */
  char *ca_pem;       /* PEM bytes (from certificate-authority-data), or NULL */
  char *cert_file;    /* client certificate PEM file, or NULL */
  char *cert_pem;     /* client certificate PEM bytes, or NULL */
  char *key_file;     /* client key PEM file, or NULL */
  char *key_pem;      /* client key PEM bytes, or NULL */
  char *token;        /* static bearer token, or NULL */
  char *token_file;   /* bearer token file, re-read when it changes, or NULL */
  char *namespace;    /* context's or service account's namespace, or NULL */
  int insecure_skip_tls_verify;
} thaw_kube_config_t;

/* Loads the configuration: from the kubeconfig at `path`, or in-cluster when
 * `path` is NULL. On error returns THAW_ECONFIG (or THAW_ENOMEM), writes a
 * one-line reason into err[errlen] and leaves *cfg zeroed. Never prints. */
int thaw_kube_config_load(thaw_kube_config_t *cfg, const char *path,
                          char *err, size_t errlen);

/* Deep copy; returns 0 or THAW_ENOMEM (dst zeroed). */
int thaw_kube_config_copy(thaw_kube_config_t *dst,
                          const thaw_kube_config_t *src);

/* Frees the strings and zeroes *cfg. NULL does nothing. */
void thaw_kube_config_free(thaw_kube_config_t *cfg);

/* The bearer token to send now: the static token, or the token file's
 * content, re-read when the file's mtime, size or inode changed (service
 * account tokens are rotated hourly). Returns NULL when there is none. The
 * string is owned by the cache and stays valid until the next call. */
typedef struct thaw_kube_token_cache thaw_kube_token_cache_t;
thaw_kube_token_cache_t *thaw_kube_token_cache_new(const thaw_kube_config_t *cfg);
const char *thaw_kube_token_get(thaw_kube_token_cache_t *tc);
void thaw_kube_token_cache_free(thaw_kube_token_cache_t *tc);

#endif
