/* regcall.h - internal to regcall.c, registry.c and regblob.c: one registry HTTP
 * exchange with the anonymous -> Bearer/Basic retry and redirects followed
 * here, so Authorization never leaves the registry's origin. */
#ifndef THAW_REGCALL_H
#define THAW_REGCALL_H

#include <openssl/evp.h>

#include "registry.h"

#define REG_URL_MAX 4096
#define REG_ORIGIN_MAX 600
#define REG_SCOPE_MAX 1200
#define REG_AUTHZ_MAX (THAW_REGAUTH_TOKEN_MAX + 64)

typedef struct regop regop_t;
typedef struct regcall regcall_t;

struct regcall {
  regop_t *op;
  const char *method;
  char url[REG_URL_MAX];
  char origin[REG_ORIGIN_MAX]; /* scheme://host:port of the registry */
  char host[REG_ORIGIN_MAX];   /* host:port, the token cache key */
  char scope[REG_SCOPE_MAX];   /* space-separated token scopes */
  const char *hdr[4];          /* extra header lines, static or op-owned */
  int nhdr;
  const void *body;
  size_t body_len;
  thaw_http_read_cb read_cb;
  long long read_len;
  thaw_http_data_cb on_data;   /* 2xx body, streamed */
  int (*on_ok)(regcall_t *c);  /* final 2xx headers arrived */
  void (*done)(regcall_t *c, const thaw_http_result_t *res);
  size_t max_body;
  long long timeout_ms;
  int redirects, auth_tried, passing;
  const thaw_regauth_creds_t *creds; /* NULL: anonymous only */
  char *authz;                 /* heap, wiped: current Authorization line */
  thaw_http_req_t *req, *tok_req;
  thaw_http_req_t *cur;        /* the request whose done is running */
};

struct regop {
  thaw_registry_t *r;
  regop_t *prev, *next;
  thaw_registry_cb cb;
  void *data;
  thaw_registry_result_t res;
  char msg[256];
  char media[256];
  char digest[THAW_REGAUTH_FIELD_MAX];
  char ref[THAW_REGAUTH_FIELD_MAX];
  thaw_regauth_creds_t creds;
  int has_creds;
  int finished;
  /* blob copy / put */
  regcall_t a, b, del;  /* a: src GET or main call; b: dst PUT */
  char upload[REG_URL_MAX];
  char mount_from[THAW_REGAUTH_FIELD_MAX];
  void *copy;           /* body copy (manifest PUT, blob put) */
  size_t copy_len;
  int step, a_done, b_done, verified, get_paused, put_paused, err;
  long long size, total;
  size_t blocked;
  EVP_MD_CTX *md;
  thaw_registry_progress_cb progress;
  char *ring;
  size_t rhead, rlen;
  char srepo[THAW_REGAUTH_FIELD_MAX], drepo[THAW_REGAUTH_FIELD_MAX];
  char shost[256], dhost[256];
  thaw_regauth_creds_t screds; /* blob copy: the source's */
  int has_screds;
  char basic_host[REG_ORIGIN_MAX]; /* host that accepted Basic */
};

struct thaw_registry {
  thaw_http_t *http;
  thaw_regauth_cache_t *tokens;
  char **insecure;
  char *ca_file;
  long timeout_ms, low_speed_secs;
  thaw_registry_observe_cb observe;
  void *observe_data;
  thaw_registry_mint_cb mint;
  void *mint_data;
  regop_t *ops;
  int closing;
};

/* registry.c */
regop_t *regop_new(thaw_registry_t *r, const thaw_registry_target_t *t,
                   thaw_registry_cb cb, void *data);
void regop_finish(regop_t *op, int err);
void regop_free_unstarted(regop_t *op);
/* regcall.c */
void regcall_clear(regcall_t *c);
int regcall_init(regcall_t *c, regop_t *op, const char *host,
                 const char *repo, const char *method, const char *path,
                 int push, const char *extra_scope);
int regcall_go(regcall_t *c);
void regcall_cancel(regcall_t *c);
int regcall_status_err(long status);
int regop_fail_status(regop_t *op, const thaw_http_result_t *res,
                      const char *what);

#endif
