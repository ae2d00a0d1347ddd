/* kubecreds.c - copying a kube config and caching its bearer token.
 *
 * Owner: the http + kube client module (thaw_kube_config_load lives in
 * kubeconfig.c). The token file is stat()ed on every request and re-read
 * only when its inode, size or mtime changed: projected service-account
 * tokens are swapped atomically (a symlink flip) about every hour. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "kubeconfig.h"
#include "log.h"

#define MAX_TOKEN_BYTES (64u << 10)

static int dup_str(char **dst, const char *src) {
  *dst = NULL;
  if (!src)
    return 0;
  *dst = strdup(src);
  return *dst ? 0 : THAW_ENOMEM;
}

int thaw_kube_config_copy(thaw_kube_config_t *dst,
                          const thaw_kube_config_t *src) {
  memset(dst, 0, sizeof *dst);
  if (dup_str(&dst->server, src->server) ||
      dup_str(&dst->ca_file, src->ca_file) ||
      dup_str(&dst->ca_pem, src->ca_pem) ||
      dup_str(&dst->cert_file, src->cert_file) ||
      dup_str(&dst->cert_pem, src->cert_pem) ||
      dup_str(&dst->key_file, src->key_file) ||
      dup_str(&dst->key_pem, src->key_pem) ||
      dup_str(&dst->token, src->token) ||
      dup_str(&dst->token_file, src->token_file) ||
      dup_str(&dst->namespace, src->namespace)) {
    thaw_kube_config_free(dst);
    return THAW_ENOMEM;
  }
  dst->insecure_skip_tls_verify = src->insecure_skip_tls_verify;
  return 0;
}

/* Frees a secret after wiping it, so it does not linger in freed memory. */
static void free_secret(char *s) {
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

void thaw_kube_config_free(thaw_kube_config_t *cfg) {
  if (!cfg)
    return;
  free(cfg->server);
  free(cfg->ca_file);
  free(cfg->ca_pem);
  free(cfg->cert_file);
  free(cfg->cert_pem);
  free(cfg->key_file);
  free_secret(cfg->key_pem);
  free_secret(cfg->token);
  free(cfg->token_file);
  free(cfg->namespace);
  memset(cfg, 0, sizeof *cfg);
}

struct thaw_kube_token_cache {
  char *token;      /* static token, or the file's last good content */
  char *path;       /* token file, or NULL */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  int loaded;
};

thaw_kube_token_cache_t *thaw_kube_token_cache_new(const thaw_kube_config_t *cfg) {
  thaw_kube_token_cache_t *tc = calloc(1, sizeof *tc);
  if (!tc)
    return NULL;
  if (cfg->token_file) {
    tc->path = strdup(cfg->token_file);
    if (!tc->path)
      goto fail;
  }
  if (cfg->token) { /* with a file too: used until the file is readable */
    tc->token = strdup(cfg->token);
    if (!tc->token)
      goto fail;
  }
  return tc;
fail:
  free(tc->path);
  free(tc);
  return NULL;
}

/* Reads the whole token file, trimmed of surrounding blanks; NULL on error. */
static char *read_token(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  char *buf = malloc(MAX_TOKEN_BYTES + 1);
  size_t len = 0;
  if (!buf)
    goto fail;
  for (;;) {
    ssize_t n = read(fd, buf + len, MAX_TOKEN_BYTES - len);
    if (n < 0)
      goto fail;
    if (n == 0)
      break;
    len += (size_t)n;
    if (len == MAX_TOKEN_BYTES)
      goto fail; /* larger than any real token */
  }
  close(fd);
  fd = -1;
  while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
                 buf[len - 1] == ' ' || buf[len - 1] == '\t'))
    len--;
  size_t start = 0;
  while (start < len && (buf[start] == ' ' || buf[start] == '\t'))
    start++;
  if (start == len)
    goto fail;
  memmove(buf, buf + start, len - start);
  buf[len - start] = '\0';
  return buf;
fail:
  if (fd >= 0)
    close(fd);
  if (buf) {
    explicit_bzero(buf, len);
    free(buf);
  }
  return NULL;
}

const char *thaw_kube_token_get(thaw_kube_token_cache_t *tc) {
  if (!tc)
    return NULL;
  if (!tc->path)
    return tc->token;
  struct stat st;
  if (stat(tc->path, &st) != 0) {
    if (!tc->loaded)
      thaw_warn("kube token file unreadable", "path", tc->path);
    return tc->token; /* keep the last good token */
  }
  if (tc->loaded && st.st_dev == tc->dev && st.st_ino == tc->ino &&
      st.st_size == tc->size && st.st_mtim.tv_sec == tc->mtime.tv_sec &&
      st.st_mtim.tv_nsec == tc->mtime.tv_nsec)
    return tc->token;
  char *t = read_token(tc->path);
  if (!t) {
    thaw_warn("kube token file unreadable", "path", tc->path);
    return tc->token;
  }
  free_secret(tc->token);
  tc->token = t;
  tc->dev = st.st_dev;
  tc->ino = st.st_ino;
  tc->size = st.st_size;
  tc->mtime = st.st_mtim;
  tc->loaded = 1;
  return tc->token;
}

void thaw_kube_token_cache_free(thaw_kube_token_cache_t *tc) {
  if (!tc)
    return;
  free_secret(tc->token);
  free(tc->path);
  free(tc);
}
