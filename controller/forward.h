/* forward.h - TCP forwards from a node's loopback to in-cluster Services
 * (thaw-node-forward, docs/design.md "Confidentiality and integrity of the
 * cache"): containerd reaches the cache registry and its token realm as
 * `localhost`, with no node configuration, and runs the token flow itself
 * with a pod's credentials, which a pull-through proxy cannot pass on.
 *
 * Each accepted connection resolves its target anew (a Service's address
 * may change) and connects within a timeout; bytes are relayed both ways
 * with back-pressure (a side stops being read while the other has more
 * than THAW_FORWARD_QUEUE_MAX bytes queued), and an end of stream on one
 * side is passed on as a shutdown of the other (HTTP/1.1 clients may
 * half-close). Connections over the cap are accepted and closed at once.
 * Nothing is parsed or logged of what passes (tokens and credentials go
 * through). All on one loop. */
#ifndef THAW_FORWARD_H
#define THAW_FORWARD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define THAW_FORWARD_ROUTES_MAX 8
#define THAW_FORWARD_QUEUE_MAX (1 << 20) /* buffer bytes queued before a
                                            pause (64 KiB per read) */
#define THAW_FORWARD_HOST_MAX 255

typedef struct thaw_forward thaw_forward_t;

typedef struct {
  char listen[THAW_FORWARD_HOST_MAX + 8]; /* "IP:PORT" ("[::1]:PORT") */
  char host[THAW_FORWARD_HOST_MAX + 1];   /* target name or address */
  char port[8];
} thaw_forward_route_t;

typedef struct {
  uint64_t connect_timeout_ms; /* resolve + connect; 0 = 5 s */
  unsigned max_connections;    /* open at once, over all routes; 0 = 512 */
} thaw_forward_opts_t;

typedef struct {
  uint64_t accepted, refused, failed; /* refused: over the cap; failed:
                                         target unresolved or unreachable */
  unsigned open;
} thaw_forward_stats_t;

/* Parses "LISTEN=HOST:PORT" (LISTEN is "IP:PORT" or "[IPv6]:PORT"; HOST a
 * name, an IPv4 address or "[IPv6]"). Returns 0 or THAW_EINVAL. */
int thaw_forward_parse_route(const char *spec, thaw_forward_route_t *out);

/* Binds every route's listener and starts accepting. Returns 0 and sets
 * *out, or a THAW_E* with one line in err (nothing is left listening). */
int thaw_forward_start(uv_loop_t *loop, const thaw_forward_route_t *routes,
                       size_t n, const thaw_forward_opts_t *o,
                       thaw_forward_t **out, char *err, size_t errlen);

/* The port route i listens on (for tests that bind port 0). */
int thaw_forward_port(const thaw_forward_t *f, size_t i);

void thaw_forward_stats(const thaw_forward_t *f, thaw_forward_stats_t *out);

/* Closes the listeners and every connection; the memory goes once the
 * loop has run the close callbacks. NULL does nothing. */
void thaw_forward_free(thaw_forward_t *f);

#endif
