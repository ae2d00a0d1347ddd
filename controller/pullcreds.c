/* pullcreds.c - credentials from dockerconfigjson Secrets (pullcreds.h). */
#include "pullcreds.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct {
  thaw_kube_t *kube;
  char host[THAW_REGAUTH_FIELD_MAX];
  char *secrets[THAW_PULLCREDS_MAX];
  size_t n, next;
  char why[512]; /* what went wrong with each secret tried, for message */
  thaw_pullcreds_cb cb;
  void *data;
} lookup_t;

static void lookup_free(lookup_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->secrets[i]);
  free(l);
}

/* Decodes base64 `b64` into a malloc'd NUL-ended buffer; NULL if invalid. */
static char *unbase64(const char *b64, size_t *len) {
  size_t n = strlen(b64);
  if (n == 0 || n % 4 != 0 || n > 4 * (THAW_REGAUTH_CONFIG_MAX / 3))
    return NULL;
  unsigned char *raw = malloc(n + 1);
  if (raw == NULL)
    return NULL;
  int got = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
  if (got < 0) {
    free(raw);
    return NULL;
  }
  /* EVP_DecodeBlock counts '=' padding as zero bytes. */
  size_t m = (size_t)got - (b64[n - 1] == '=') - (b64[n - 2] == '=');
  raw[m] = '\0';
  *len = m;
  return (char *)raw;
}

int thaw_pullcreds_from_secret(const cJSON *secret, const char *host,
                               thaw_regauth_creds_t *out) {
  const char *type =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(secret, "type"));
  const char *key;
  if (type && strcmp(type, "kubernetes.io/dockerconfigjson") == 0)
    key = ".dockerconfigjson";
  else if (type && strcmp(type, "kubernetes.io/dockercfg") == 0)
    key = ".dockercfg";
  else
    return THAW_EPARSE;
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(secret, "data");
  const char *b64 =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, key));
  if (b64 == NULL)
    return THAW_EPARSE;
  size_t len;
  char *json = unbase64(b64, &len);
  if (json == NULL)
    return THAW_EPARSE;
  int rc = thaw_regauth_dockerconfig(json, len, host, out);
  OPENSSL_cleanse(json, len);
  free(json);
  return rc;
}

static void note(lookup_t *l, const char *secret, const char *why) {
  size_t at = strlen(l->why);
  snprintf(l->why + at, sizeof l->why - at, "%s%s: %s", at ? "; " : "",
           secret, why);
}

static void try_next(lookup_t *l);

static void on_secret(const thaw_kube_result_t *res, void *data) {
  lookup_t *l = data;
  const char *name = l->secrets[l->next - 1];
  if (res->err == THAW_ECANCELED) {
    l->cb(THAW_ECANCELED, NULL, "canceled", l->data);
    lookup_free(l);
    return;
  }
  if (res->err != 0) {
    note(l, name, thaw_err_name(res->err));
    try_next(l);
    return;
  }
  thaw_regauth_creds_t creds;
  int rc = thaw_pullcreds_from_secret(res->body, l->host, &creds);
  if (rc == 0) {
    l->cb(0, &creds, "", l->data);
    OPENSSL_cleanse(&creds, sizeof creds);
    lookup_free(l);
    return;
  }
  note(l, name, rc == THAW_ENOENT ? "no entry for the registry"
                                  : "not a valid dockerconfigjson secret");
  try_next(l);
}

/* Starts the GET of the next secret: 0, or -1 when none is left. */
static int start_next(lookup_t *l) {
  while (l->next < l->n) {
    char *s = l->secrets[l->next++];
    char *slash = strchr(s, '/');
    *slash = '\0';
    thaw_kube_opts_t o = {.namespace = s, .name = slash + 1};
    int rc = thaw_kube_get(l->kube, &thaw_kube_secrets, &o, on_secret, l);
    *slash = '/';
    if (rc == 0)
      return 0;
    note(l, s, thaw_err_name(rc));
  }
  return -1;
}

static void try_next(lookup_t *l) {
  if (start_next(l) == 0)
    return;
  char msg[sizeof l->host + sizeof l->why + 64];
  snprintf(msg, sizeof msg, "no usable pull secret for %s (%s)", l->host,
           l->why[0] ? l->why : "none given");
  l->cb(THAW_ENOENT, NULL, msg, l->data);
  lookup_free(l);
}

int thaw_pullcreds_fetch(thaw_kube_t *kube, const char *host,
                         const char *const *secrets, size_t n,
                         thaw_pullcreds_cb cb, void *data) {
  if (kube == NULL || host == NULL || cb == NULL || n > THAW_PULLCREDS_MAX)
    return THAW_EINVAL;
  for (size_t i = 0; i < n; i++) {
    const char *slash = strchr(secrets[i], '/');
    if (slash == NULL || slash == secrets[i] || slash[1] == '\0')
      return THAW_EINVAL;
  }
  lookup_t *l = calloc(1, sizeof *l);
  if (l == NULL)
    return THAW_ENOMEM;
  l->kube = kube;
  snprintf(l->host, sizeof l->host, "%s", host);
  l->cb = cb;
  l->data = data;
  for (; l->n < n; l->n++)
    if ((l->secrets[l->n] = strdup(secrets[l->n])) == NULL) {
      lookup_free(l);
      return THAW_ENOMEM;
    }
  if (n == 0 || start_next(l) != 0) { /* cb must not run before we return */
    lookup_free(l);
    return n == 0 ? THAW_EINVAL : THAW_ENOMEM;
  }
  return 0;
}
