/* imgref.c - image references: the distribution grammar, normalisation, the
 * cache-rewritten form and CachedImage names, without heap allocation on the
 * parse path. */
#include "imgref.h"

#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

#include "error.h"

#define DOCKER_HUB "docker.io"
#define LIBRARY "library/"
#define IPV6_MARK "ipv6_x" /* prefix of an encoded IPv6 registry host */
#define NAME_PREFIX_MAX 52 /* CachedImage: sanitised part before the hash */
#define NAME_HASH_HEX 10

/* Locale-independent character classes: references are ASCII. */
static inline bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
static inline bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
static inline bool is_lalnum(char c) { return is_lower(c) || is_digit(c); }
static inline bool is_alnum(char c) { return is_lalnum(c) || is_upper(c); }
static inline bool is_word(char c) { return is_alnum(c) || c == '_'; }
static inline bool is_lhex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }
static inline bool is_xdigit_(char c) {
  return is_lhex(c) || (c >= 'A' && c <= 'F');
}
static inline char to_lower(char c) { return is_upper(c) ? (char)(c + 32) : c; }

static bool mem_eq(const char *a, size_t an, const char *b) {
  size_t bn = strlen(b);
  return an == bn && memcmp(a, b, an) == 0;
}

static bool mem_has_upper(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (is_upper(p[i]))
      return true;
  return false;
}

/* distribution: a first component is a registry host when it contains '.'
 * or ':', is "localhost", or has an upper-case letter. */
static bool looks_like_host(const char *p, size_t n) {
  return memchr(p, '.', n) || memchr(p, ':', n) || mem_eq(p, n, "localhost") ||
         mem_has_upper(p, n);
}

/* After lower-casing, the host must still be recognised as one when the
 * normalised form is parsed again; "Foo/bar" would otherwise turn into the
 * Docker Hub repository "foo/bar". */
static bool lower_host_is_host(const char *p, size_t n) {
  return memchr(p, '.', n) || memchr(p, ':', n) || mem_eq(p, n, "localhost");
}

/* Path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static bool valid_component(const char *p, size_t n) {
  size_t i = 0;
  if (n == 0 || !is_lalnum(p[0]))
    return false;
  while (i < n) {
    if (is_lalnum(p[i])) {
      i++;
      continue;
    }
    if (p[i] == '.') {
      i++;
    } else if (p[i] == '_') {
      i += (i + 1 < n && p[i + 1] == '_') ? 2 : 1;
    } else if (p[i] == '-') {
      while (i < n && p[i] == '-')
        i++;
    } else {
      return false;
    }
    if (i >= n || !is_lalnum(p[i]))
      return false; /* a separator must sit between alphanumerics */
  }
  return true;
}

/* Components separated by single '/'; no empty component anywhere. */
static bool valid_path(const char *p, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || p[i] == '/') {
      if (!valid_component(p + start, i - start))
        return false;
      start = i + 1;
    }
  }
  return true;
}

static bool all_digits(const char *p, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!is_digit(p[i]))
      return false;
  return true;
}

/* Host: (domain-name | "[" [0-9a-fA-F:]+ "]") (":" [0-9]+)?, where a domain
 * name is dot-separated ([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]). */
static bool valid_host(const char *h, size_t n) {
  size_t i = 0;
  if (n == 0)
    return false;
  if (h[0] == '[') {
    i = 1;
    while (i < n && (is_xdigit_(h[i]) || h[i] == ':'))
      i++;
    if (i == 1 || i >= n || h[i] != ']')
      return false;
    i++;
  } else {
    for (;;) {
      size_t start = i;
      while (i < n && (is_alnum(h[i]) || h[i] == '-'))
        i++;
      if (i == start || h[start] == '-' || h[i - 1] == '-')
        return false;
      if (i < n && h[i] == '.') {
        i++;
        continue;
      }
      break;
    }
  }
  if (i == n)
    return true;
  return h[i] == ':' && all_digits(h + i + 1, n - i - 1);
}

/* Tag: [\w][\w.-]{0,127} */
static const char *check_tag(const char *t, size_t n) {
  if (n == 0)
    return "empty tag after ':'";
  if (n > THAW_IMGREF_TAG_MAX)
    return "tag longer than 128 characters";
  if (!is_word(t[0]))
    return "tag must start with a letter, digit or '_'";
  for (size_t i = 1; i < n; i++)
    if (!is_word(t[i]) && t[i] != '.' && t[i] != '-')
      return "invalid character in tag";
  return NULL;
}

/* Digest: algorithm ":" hex. The grammar of distribution's digest pattern is
 * checked first so a malformed digest and an unsupported one read
 * differently; only sha256/384/512 in lower-case hex of exact length pass. */
static const char *check_digest(const char *d, size_t n) {
  const char *colon = memchr(d, ':', n);
  if (!colon)
    return "digest must be algorithm:hex";
  size_t an = (size_t)(colon - d), hn = n - an - 1;
  const char *hex = colon + 1;
  /* [A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)* */
  bool need_alpha = true;
  if (an == 0)
    return "digest must be algorithm:hex";
  for (size_t i = 0; i < an; i++) {
    char c = d[i];
    if (need_alpha) {
      if (!is_lower(c) && !is_upper(c))
        return "invalid digest algorithm";
      need_alpha = false;
    } else if (c == '-' || c == '_' || c == '+' || c == '.') {
      need_alpha = true;
    } else if (!is_alnum(c)) {
      return "invalid digest algorithm";
    }
  }
  if (need_alpha)
    return "invalid digest algorithm";
  for (size_t i = 0; i < hn; i++)
    if (!is_xdigit_(hex[i]))
      return "digest must be hexadecimal";
  if (hn < 32)
    return "digest too short";
  size_t want;
  if (mem_eq(d, an, "sha256"))
    want = 64;
  else if (mem_eq(d, an, "sha384"))
    want = 96;
  else if (mem_eq(d, an, "sha512"))
    want = 128;
  else
    return "unsupported digest algorithm (sha256, sha384, sha512 only)";
  if (hn != want)
    return "digest has the wrong length for its algorithm";
  for (size_t i = 0; i < hn; i++)
    if (!is_lhex(hex[i]))
      return "digest hex must be lower-case";
  return NULL;
}

static void ref_reset(thaw_imgref_t *out) {
  out->str[0] = '\0';
  out->len = out->host_len = out->name_len = 0;
  out->tag_off = out->tag_len = out->digest_off = out->digest_len = 0;
  out->tag_implicit = false;
  out->err = NULL;
}

static int ref_fail(thaw_imgref_t *out, const char *why) {
  ref_reset(out);
  out->err = why;
  return THAW_EINVAL;
}

int thaw_imgref_parse(const char *s, size_t len, thaw_imgref_t *out) {
  ref_reset(out);
  if (!s || len == 0)
    return ref_fail(out, "empty image reference");
  if (len > THAW_IMGREF_INPUT_MAX)
    return ref_fail(out, "image reference longer than 1024 characters");

  /* distribution refuses a bare 64-hex string: it is an image ID. */
  if (len == 64) {
    size_t i = 0;
    while (i < 64 && is_lhex(s[i]))
      i++;
    if (i == 64)
      return ref_fail(out, "a 64-hex-digit string is an image ID");
  }

  /* Split name[:tag][@digest]. A tag colon comes after the last '/', so a
   * host port ("host:5000/x") is never taken for a tag. */
  const char *at = memchr(s, '@', len);
  size_t rem = at ? (size_t)(at - s) : len;
  const char *dig = at ? at + 1 : NULL;
  size_t dig_len = at ? len - rem - 1 : 0;
  const char *slash = memrchr(s, '/', rem);
  size_t after = slash ? (size_t)(slash - s) + 1 : 0;
  const char *colon = memchr(s + after, ':', rem - after);
  size_t nlen = colon ? (size_t)(colon - s) : rem;
  const char *tag = colon ? colon + 1 : NULL;
  size_t tag_len = colon ? rem - nlen - 1 : 0;

  if (nlen == 0)
    return ref_fail(out, "missing repository name");

  /* Split [host/]path on the first '/'. */
  const char *host = NULL, *path = s;
  size_t host_len = 0, path_len = nlen;
  const char *fs = memchr(s, '/', nlen);
  if (fs && looks_like_host(s, (size_t)(fs - s))) {
    host = s;
    host_len = (size_t)(fs - s);
    path = fs + 1;
    path_len = nlen - host_len - 1;
  }

  if (host && !valid_host(host, host_len))
    return ref_fail(out, "invalid registry host");
  if (mem_has_upper(path, path_len))
    return ref_fail(out, "repository name must be lower-case");
  if (!valid_path(path, path_len)) {
    if (path_len == 0 || path[0] == '/' || path[path_len - 1] == '/' ||
        memmem(path, path_len, "//", 2))
      return ref_fail(out, "empty path component (leading, trailing or '//')");
    return ref_fail(out, "invalid character or separator in repository name");
  }
  if (tag) {
    const char *why = check_tag(tag, tag_len);
    if (why)
      return ref_fail(out, why);
  }
  if (dig) {
    const char *why = check_digest(dig, dig_len);
    if (why)
      return ref_fail(out, why);
  }

  /* Normalised host: lower-cased; none and the legacy Hub names -> docker.io. */
  /* The host is lower-cased in place at the start of str (it fits: at most
   * 255 bytes), then replaced by docker.io for the legacy Hub names. */
  char *w = out->str;
  size_t nh_len = sizeof(DOCKER_HUB) - 1;
  if (host) {
    if (host_len > THAW_IMGREF_NAME_MAX)
      return ref_fail(out, "name longer than 255 characters");
    for (size_t i = 0; i < host_len; i++)
      w[i] = to_lower(host[i]);
    if (!lower_host_is_host(w, host_len))
      return ref_fail(out, "upper-case registry host needs a '.' or ':'");
    nh_len = host_len;
  }
  if (!host || mem_eq(w, nh_len, "index.docker.io") ||
      mem_eq(w, nh_len, "registry-1.docker.io")) {
    nh_len = sizeof(DOCKER_HUB) - 1;
    memcpy(w, DOCKER_HUB, nh_len);
  }
  bool library = mem_eq(w, nh_len, DOCKER_HUB) && !memchr(path, '/', path_len);
  size_t lib_len = library ? sizeof(LIBRARY) - 1 : 0;
  size_t name_len = nh_len + 1 + lib_len + path_len;
  if (name_len > THAW_IMGREF_NAME_MAX)
    return ref_fail(out, "name longer than 255 characters");

  /* Assemble the rest; sizes were bounded above, so it fits in str. */
  size_t p = nh_len;
  w[p++] = '/';
  if (library) {
    memcpy(w + p, LIBRARY, lib_len);
    p += lib_len;
  }
  memcpy(w + p, path, path_len);
  p += path_len;
  out->host_len = (uint16_t)nh_len;
  out->name_len = (uint16_t)p;
  if (tag || !dig) {
    if (!tag) {
      tag = "latest";
      tag_len = 6;
      out->tag_implicit = true;
    }
    w[p++] = ':';
    out->tag_off = (uint16_t)p;
    out->tag_len = (uint16_t)tag_len;
    memcpy(w + p, tag, tag_len);
    p += tag_len;
  }
  if (dig) {
    w[p++] = '@';
    out->digest_off = (uint16_t)p;
    out->digest_len = (uint16_t)dig_len;
    memcpy(w + p, dig, dig_len);
    p += dig_len;
  }
  w[p] = '\0';
  out->len = (uint16_t)p;
  return 0;
}

static int put(char *buf, size_t cap, const char *s, size_t n) {
  if (n + 1 > cap) {
    if (cap > 0)
      buf[0] = '\0';
    return THAW_E2BIG;
  }
  memcpy(buf, s, n);
  buf[n] = '\0';
  return 0;
}

int thaw_imgref_format(const thaw_imgref_t *r, char *buf, size_t cap) {
  return put(buf, cap, r->str, r->len);
}

int thaw_imgref_is_rewritten(const char *s, const char *cache_host) {
  if (!s || !cache_host)
    return 0;
  size_t n = strnlen(cache_host, THAW_IMGREF_NAME_MAX + 1);
  if (n == 0 || n > THAW_IMGREF_NAME_MAX)
    return 0;
  /* strncasecmp stops at a NUL in s, so a short s never matches. */
  return strncasecmp(s, cache_host, n) == 0 && s[n] == '/';
}

static bool host_is_cache(const thaw_imgref_t *r, const char *cache_host) {
  size_t n = strnlen(cache_host, THAW_IMGREF_NAME_MAX + 1);
  if (memchr(cache_host, '/', n) != NULL) /* "host/prefix": a name under it */
    return n < r->name_len && strncasecmp(r->str, cache_host, n) == 0 &&
           r->str[n] == '/';
  return n == r->host_len && strncasecmp(r->str, cache_host, n) == 0;
}

/* A cache "host" may carry repository path components after it
 * ("localhost:7440/private"): each lower-case alphanumerics joined by
 * '.', '_' or '-', as distribution's path grammar (simplified). */
static bool valid_prefix(const char *p, size_t n) {
  size_t i = 0;
  if (n == 0)
    return false;
  while (i < n) {
    size_t start = i;
    while (i < n && p[i] != '/') {
      char c = p[i];
      bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      if (!alnum && !(c == '.' || c == '_' || c == '-'))
        return false;
      if (!alnum && (i == start || i + 1 == n || p[i + 1] == '/'))
        return false; /* a separator never starts or ends a component */
      i++;
    }
    if (i == start)
      return false; /* an empty component */
    if (i < n)
      i++; /* the '/' */
    if (i == n && p[n - 1] == '/')
      return false;
  }
  return true;
}

/* Encodes a normalised (lower-case, valid) host as one path component; see
 * the header. Returns the length written; dst has room for host_len + 7. */
static size_t encode_host(const char *h, size_t n, char *dst) {
  size_t p = 0, i = 0;
  if (h[0] == '[') {
    memcpy(dst, IPV6_MARK, sizeof(IPV6_MARK) - 1);
    p = sizeof(IPV6_MARK) - 1;
    for (i = 1; h[i] != ']'; i++)
      dst[p++] = h[i] == ':' ? '-' : h[i];
    dst[p++] = 'x';
    i++;
  }
  for (; i < n; i++) {
    if (h[i] == ':') {
      dst[p++] = '_';
      dst[p++] = '_';
    } else {
      dst[p++] = h[i];
    }
  }
  return p;
}

int thaw_imgref_digest_valid(const char *d, size_t n) {
  return d != NULL && n <= THAW_IMGREF_DIGEST_MAX && check_digest(d, n) == NULL;
}

int thaw_imgref_tag_only(const thaw_imgref_t *r, thaw_imgref_t *out) {
  if (out != r)
    memcpy(out, r, sizeof *out);
  if (r->tag_len == 0 || r->digest_len == 0)
    return THAW_ENOENT;
  /* "@digest" is last: cut it off */
  out->len = (uint16_t)(r->digest_off - 1);
  out->str[out->len] = '\0';
  out->digest_off = out->digest_len = 0;
  return 0;
}

int thaw_imgref_private_host(const char *cache_host, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "%s/" THAW_IMGREF_PRIVATE_REPO, cache_host);
  if (n < 0 || (size_t)n >= cap) {
    if (cap > 0)
      buf[0] = '\0';
    return THAW_E2BIG;
  }
  return 0;
}

int thaw_imgref_rewrite(const thaw_imgref_t *r, const char *cache_host,
                        const char *digest, char *buf, size_t cap) {
  if (cap > 0)
    buf[0] = '\0';
  if (!cache_host)
    return THAW_EINVAL;
  size_t cn = strnlen(cache_host, THAW_IMGREF_NAME_MAX + 1);
  const char *slash = memchr(cache_host, '/', cn);
  size_t hn = slash ? (size_t)(slash - cache_host) : cn; /* its host part */
  if (cn > THAW_IMGREF_NAME_MAX || hn == 0 || !valid_host(cache_host, hn) ||
      mem_has_upper(cache_host, hn) || !lower_host_is_host(cache_host, hn) ||
      mem_eq(cache_host, hn, "index.docker.io") ||
      mem_eq(cache_host, hn, "registry-1.docker.io") ||
      (slash && !valid_prefix(slash + 1, cn - hn - 1)))
    return THAW_EINVAL;
  size_t dn = 0;
  if (digest != NULL) {
    dn = strnlen(digest, THAW_IMGREF_DIGEST_MAX + 1);
    if (!thaw_imgref_digest_valid(digest, dn))
      return THAW_EINVAL;
  }
  if (host_is_cache(r, cache_host))
    return put(buf, cap, r->str, r->len);
  if (r->digest_len > 0)
    dn = 0; /* its own digest stays */

  char enc[THAW_IMGREF_NAME_MAX + 8];
  size_t en = encode_host(r->str, r->host_len, enc);
  size_t path_len = (size_t)r->name_len - r->host_len - 1;
  size_t name_len = cn + 1 + en + 1 + path_len;
  if (name_len > THAW_IMGREF_NAME_MAX)
    return THAW_EINVAL; /* would not parse: distribution's name limit */
  size_t rest = (size_t)r->len - r->name_len; /* [:tag][@digest] */
  size_t pin = dn > 0 ? 1 + dn : 0;            /* "@" digest */
  size_t total = name_len + rest + pin;
  if (total > THAW_IMGREF_STR_MAX)
    return THAW_EINVAL; /* cannot happen: name, tag, digest each bounded */
  if (total + 1 > cap)
    return THAW_E2BIG;
  size_t p = 0;
  memcpy(buf + p, cache_host, cn);
  p += cn;
  buf[p++] = '/';
  memcpy(buf + p, enc, en);
  p += en;
  buf[p++] = '/';
  memcpy(buf + p, r->str + r->host_len + 1, path_len + rest);
  p += path_len + rest;
  if (pin > 0) {
    buf[p++] = '@';
    memcpy(buf + p, digest, dn);
    p += dn;
  }
  buf[p] = '\0';
  return 0;
}

/* Decodes an encoded registry component into host; returns its length, or 0
 * if c is not a valid encoding. */
static size_t decode_host(const char *c, size_t n, char *host, size_t cap) {
  size_t p = 0, i = 0;
  const size_t mark = sizeof(IPV6_MARK) - 1;
  if (n + 2 > cap)
    return 0;
  if (n > mark && memcmp(c, IPV6_MARK, mark) == 0) {
    host[p++] = '[';
    for (i = mark; i < n && (is_lhex(c[i]) || c[i] == '-'); i++)
      host[p++] = c[i] == '-' ? ':' : c[i];
    if (i == mark || i >= n || c[i] != 'x')
      return 0;
    host[p++] = ']';
    i++;
    if (i == n)
      return p;
    if (n - i < 3 || c[i] != '_' || c[i + 1] != '_' ||
        !all_digits(c + i + 2, n - i - 2))
      return 0;
    host[p++] = ':';
    memcpy(host + p, c + i + 2, n - i - 2);
    return p + n - i - 2;
  }
  const char *port = memmem(c, n, "__", 2);
  size_t hn = port ? (size_t)(port - c) : n;
  if (memchr(c, '_', hn))
    return 0; /* a lone '_' is never in a host name */
  memcpy(host, c, hn);
  p = hn;
  if (port) {
    if (!all_digits(port + 2, n - hn - 2))
      return 0;
    host[p++] = ':';
    memcpy(host + p, port + 2, n - hn - 2);
    p += n - hn - 2;
  }
  return p;
}

int thaw_imgref_unrewrite(const char *s, size_t len, const char *cache_host,
                          thaw_imgref_t *out) {
  ref_reset(out);
  if (!s || !cache_host)
    return ref_fail(out, "empty image reference");
  if (len > THAW_IMGREF_INPUT_MAX)
    return ref_fail(out, "image reference longer than 1024 characters");
  size_t cn = strnlen(cache_host, THAW_IMGREF_NAME_MAX + 1);
  if (cn == 0 || cn > THAW_IMGREF_NAME_MAX || len <= cn || s[cn] != '/' ||
      strncasecmp(s, cache_host, cn) != 0) {
    out->err = "not under the cache host";
    return THAW_ENOENT;
  }
  int rc = thaw_imgref_parse(s, len, out);
  if (rc < 0)
    return rc;
  if (!host_is_cache(out, cache_host)) {
    ref_reset(out);
    out->err = "not under the cache host";
    return THAW_ENOENT;
  }

  /* <cache>/<registry>/<path>: decode <registry>, then parse the original
   * (<cache> may carry path components: "localhost:7440/private"). */
  const char *reg = out->str + cn + 1;
  size_t path_len = (size_t)out->name_len - cn - 1;
  const char *sl = memchr(reg, '/', path_len);
  if (!sl)
    return ref_fail(out, "no repository after the registry in rewritten form");
  size_t reg_len = (size_t)(sl - reg);
  char orig[THAW_IMGREF_STR_MAX + 1];
  size_t hn = decode_host(reg, reg_len, orig, sizeof(orig));
  if (hn == 0 || !lower_host_is_host(orig, hn))
    return ref_fail(out, "rewritten form does not name a registry host");
  size_t tail = (size_t)out->len - (size_t)(sl - out->str);
  if (hn + tail > THAW_IMGREF_STR_MAX)
    return ref_fail(out, "name longer than 255 characters");
  memcpy(orig + hn, sl, tail); /* "/path[:tag][@digest]" */
  return thaw_imgref_parse(orig, hn + tail, out);
}

int thaw_cachedimage_name(const char *normalized, char *buf, size_t cap) {
  if (cap > 0)
    buf[0] = '\0';
  if (!normalized)
    return THAW_EINVAL;
  size_t n = strnlen(normalized, THAW_IMGREF_INPUT_MAX + 1);
  if (n > THAW_IMGREF_INPUT_MAX)
    return THAW_EINVAL;

  /* Runs outside [a-z0-9] collapse to one '-', emitted only between two
   * alphanumerics: this trims both ends, and a '-' that the 52-char cut would
   * leave last is never written. */
  char name[THAW_CACHEDIMAGE_NAME_MAX + 1];
  size_t p = 0;
  bool dash = false;
  for (size_t i = 0; i < n; i++) {
    char c = to_lower(normalized[i]);
    if (!is_lalnum(c)) {
      dash = true;
      continue;
    }
    if (dash && p > 0) {
      if (p + 2 > NAME_PREFIX_MAX)
        break;
      name[p++] = '-';
    }
    dash = false;
    name[p++] = c;
    if (p == NAME_PREFIX_MAX)
      break;
  }
  if (p == 0)
    return THAW_EINVAL;

  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (EVP_Digest(normalized, n, md, &mdlen, EVP_sha256(), NULL) != 1 ||
      mdlen < NAME_HASH_HEX / 2)
    return THAW_EIO;
  static const char hexd[] = "0123456789abcdef";
  name[p++] = '-';
  for (size_t i = 0; i < NAME_HASH_HEX / 2; i++) {
    name[p++] = hexd[md[i] >> 4];
    name[p++] = hexd[md[i] & 15];
  }
  return put(buf, cap, name, p);
}
