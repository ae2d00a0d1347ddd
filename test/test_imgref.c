/* test_imgref.c - table tests of image references: input -> normalised form
 * (or error) -> rewritten form -> CachedImage name, plus unrewrite, the
 * cache-host prefix test and name derivation edge cases.
 *
 * Expected CachedImage names were computed outside this code: the prefix
 * with a Python re.sub of docs/design.md's rule, the hash with
 * `printf %s REF | sha256sum | cut -c1-10`. Prints one line per failure and
 * exits 1 if there was any. */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "imgref.h"

#define CACHE "localhost:7439"
#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define H96 "89abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567" \
            "89abcdef0123456789abcdef01234567"
#define H128 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210" \
             "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define A10 "aaaaaaaaaa"
#define A50 A10 A10 A10 A10 A10
#define PIN "sha256:" "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define NOT_REWRITABLE "!" /* valid, but the rewritten name would be > 255 */

struct parse_case {
  const char *in;
  const char *norm; /* NULL: THAW_EINVAL expected */
  const char *rw;   /* rewritten under CACHE, or NOT_REWRITABLE */
  const char *name; /* CachedImage name of norm */
  const char *err;  /* substring of the error reason when invalid */
};

static const struct parse_case parse_cases[] = {
    {"ubuntu",
     "docker.io/library/ubuntu:latest",
     "localhost:7439/docker.io/library/ubuntu:latest",
     "docker-io-library-ubuntu-latest-b68304d63f", NULL},
    {"nginx:1.25",
     "docker.io/library/nginx:1.25",
     "localhost:7439/docker.io/library/nginx:1.25",
     "docker-io-library-nginx-1-25-b07c1fa29c", NULL},
    {"grycap/imagemagick",
     "docker.io/grycap/imagemagick:latest",
     "localhost:7439/docker.io/grycap/imagemagick:latest",
     "docker-io-grycap-imagemagick-latest-03e994d388", NULL},
    {"library/busybox:1.36",
     "docker.io/library/busybox:1.36",
     "localhost:7439/docker.io/library/busybox:1.36",
     "docker-io-library-busybox-1-36-d55432289a", NULL},
    {"docker.io/nginx",
     "docker.io/library/nginx:latest",
     "localhost:7439/docker.io/library/nginx:latest",
     "docker-io-library-nginx-latest-86cee2c108", NULL},
    {"docker.io/library/nginx",
     "docker.io/library/nginx:latest",
     "localhost:7439/docker.io/library/nginx:latest",
     "docker-io-library-nginx-latest-86cee2c108", NULL},
    {"a/b/c/d",
     "docker.io/a/b/c/d:latest",
     "localhost:7439/docker.io/a/b/c/d:latest",
     "docker-io-a-b-c-d-latest-08fbffd1c7", NULL},
    {"example.com",
     "docker.io/library/example.com:latest",
     "localhost:7439/docker.io/library/example.com:latest",
     "docker-io-library-example-com-latest-1855f42d5c", NULL},
    {"index.docker.io/x",
     "docker.io/library/x:latest",
     "localhost:7439/docker.io/library/x:latest",
     "docker-io-library-x-latest-3df8a182e3", NULL},
    {"index.docker.io/grycap/oscar",
     "docker.io/grycap/oscar:latest",
     "localhost:7439/docker.io/grycap/oscar:latest",
     "docker-io-grycap-oscar-latest-4637376420", NULL},
    {"registry-1.docker.io/grycap/oscar:v2",
     "docker.io/grycap/oscar:v2",
     "localhost:7439/docker.io/grycap/oscar:v2",
     "docker-io-grycap-oscar-v2-d599a58637", NULL},
    {"registry-1.docker.io/alpine",
     "docker.io/library/alpine:latest",
     "localhost:7439/docker.io/library/alpine:latest",
     "docker-io-library-alpine-latest-c9ef5b1f0b", NULL},
    {"INDEX.DOCKER.IO/x",
     "docker.io/library/x:latest",
     "localhost:7439/docker.io/library/x:latest",
     "docker-io-library-x-latest-3df8a182e3", NULL},
    {"Docker.IO/nginx:Stable",
     "docker.io/library/nginx:Stable",
     "localhost:7439/docker.io/library/nginx:Stable",
     "docker-io-library-nginx-stable-77df7b9b46", NULL},
    {"localhost/app",
     "localhost/app:latest",
     "localhost:7439/localhost/app:latest",
     "localhost-app-latest-28cc1eae1a", NULL},
    {"LOCALHOST/app",
     "localhost/app:latest",
     "localhost:7439/localhost/app:latest",
     "localhost-app-latest-28cc1eae1a", NULL},
    {"localhost:5000/app:dev",
     "localhost:5000/app:dev",
     "localhost:7439/localhost__5000/app:dev",
     "localhost-5000-app-dev-5274fa9bb9", NULL},
    {"localhost:5000",
     "docker.io/library/localhost:5000",
     "localhost:7439/docker.io/library/localhost:5000",
     "docker-io-library-localhost-5000-c3ff933372", NULL},
    {"10.0.0.1:5000/team/app:1.0",
     "10.0.0.1:5000/team/app:1.0",
     "localhost:7439/10.0.0.1__5000/team/app:1.0",
     "10-0-0-1-5000-team-app-1-0-81ecb48789", NULL},
    {"192.168.1.10/app",
     "192.168.1.10/app:latest",
     "localhost:7439/192.168.1.10/app:latest",
     "192-168-1-10-app-latest-43816314ab", NULL},
    {"my.reg:5000/a/b:1",
     "my.reg:5000/a/b:1",
     "localhost:7439/my.reg__5000/a/b:1",
     "my-reg-5000-a-b-1-1ae9ff5454", NULL},
    {"My.Registry.IO/a/b",
     "my.registry.io/a/b:latest",
     "localhost:7439/my.registry.io/a/b:latest",
     "my-registry-io-a-b-latest-8f34c2d138", NULL},
    {"MY.REG:5000/app:V1",
     "my.reg:5000/app:V1",
     "localhost:7439/my.reg__5000/app:V1",
     "my-reg-5000-app-v1-ebc1770d54", NULL},
    {"my-reg.example.com:443/x",
     "my-reg.example.com:443/x:latest",
     "localhost:7439/my-reg.example.com__443/x:latest",
     "my-reg-example-com-443-x-latest-8dc8d6538e", NULL},
    {"a--b.example/x",
     "a--b.example/x:latest",
     "localhost:7439/a--b.example/x:latest",
     "a-b-example-x-latest-b0835aa758", NULL},
    {"gcr.io/distroless/static:nonroot",
     "gcr.io/distroless/static:nonroot",
     "localhost:7439/gcr.io/distroless/static:nonroot",
     "gcr-io-distroless-static-nonroot-2ecf2fd721", NULL},
    {"k8s.gcr.io/pause:3.9",
     "k8s.gcr.io/pause:3.9",
     "localhost:7439/k8s.gcr.io/pause:3.9",
     "k8s-gcr-io-pause-3-9-99dff61499", NULL},
    {"quay.io/Org/app",
     NULL,
     NULL,
     NULL, "lower-case"},
    {"Foo/bar",
     NULL,
     NULL,
     NULL, "upper-case registry host"},
    {"[::1]:5000/a/b:1",
     "[::1]:5000/a/b:1",
     "localhost:7439/ipv6_x--1x__5000/a/b:1",
     "1-5000-a-b-1-63497816e4", NULL},
    {"[::1]/a",
     "[::1]/a:latest",
     "localhost:7439/ipv6_x--1x/a:latest",
     "1-a-latest-a99aef585d", NULL},
    {"[FE80::1]:443/x/y",
     "[fe80::1]:443/x/y:latest",
     "localhost:7439/ipv6_xfe80--1x__443/x/y:latest",
     "fe80-1-443-x-y-latest-c5ac0b7d2a", NULL},
    {"[2001:db8::]:5000/a",
     "[2001:db8::]:5000/a:latest",
     "localhost:7439/ipv6_x2001-db8--x__5000/a:latest",
     "2001-db8-5000-a-latest-43135c285f", NULL},
    {"[::]/a@sha256:" H64,
     "[::]/a@sha256:" H64,
     "localhost:7439/ipv6_x--x/a@sha256:" H64,
     "a-sha256-0123456789abcdef0123456789abcdef0123456789a-9750d09a1c", NULL},
    {"[2001:db8:0:0:1:0:0:1]:5000/p:t",
     "[2001:db8:0:0:1:0:0:1]:5000/p:t",
     "localhost:7439/ipv6_x2001-db8-0-0-1-0-0-1x__5000/p:t",
     "2001-db8-0-0-1-0-0-1-5000-p-t-b030ae3140", NULL},
    {"[zz]:5000/a",
     NULL,
     NULL,
     NULL, "invalid registry host"},
    {"[::1/a",
     NULL,
     NULL,
     NULL, "invalid registry host"},
    {"[]:5000/a",
     NULL,
     NULL,
     NULL, "invalid registry host"},
    {"ghcr.io/a-b/c_d/e.f/g__h/i---j:x",
     "ghcr.io/a-b/c_d/e.f/g__h/i---j:x",
     "localhost:7439/ghcr.io/a-b/c_d/e.f/g__h/i---j:x",
     "ghcr-io-a-b-c-d-e-f-g-h-i-j-x-55d4d9fb6f", NULL},
    {"a__b",
     "docker.io/library/a__b:latest",
     "localhost:7439/docker.io/library/a__b:latest",
     "docker-io-library-a-b-latest-bee80ec37a", NULL},
    {"a___b",
     NULL,
     NULL,
     NULL, "separator"},
    {"a..b",
     NULL,
     NULL,
     NULL, "separator"},
    {"a._b",
     NULL,
     NULL,
     NULL, "separator"},
    {"-a",
     NULL,
     NULL,
     NULL, "separator"},
    {"a-",
     NULL,
     NULL,
     NULL, "separator"},
    {"_a/b",
     NULL,
     NULL,
     NULL, "separator"},
    {"Ubuntu",
     NULL,
     NULL,
     NULL, "lower-case"},
    {"UPPER.io",
     NULL,
     NULL,
     NULL, "lower-case"},
    {"a b",
     NULL,
     NULL,
     NULL, "separator"},
    {"ubuntu\n",
     NULL,
     NULL,
     NULL, "separator"},
    {"ex ample.com/a",
     NULL,
     NULL,
     NULL, "invalid registry host"},
    {"example.com:/a",
     NULL,
     NULL,
     NULL, "invalid registry host"},
    {"example.com:abc/a",
     NULL,
     NULL,
     NULL, "invalid registry host"},
    {"-example.com/a",
     NULL,
     NULL,
     NULL, "invalid registry host"},
    {"exa_mple.com/a",
     NULL,
     NULL,
     NULL, "invalid registry host"},
    {"a:b/c",
     NULL,
     NULL,
     NULL, "invalid registry host"},
    {"",
     NULL,
     NULL,
     NULL, "empty"},
    {"a/",
     NULL,
     NULL,
     NULL, "empty path component"},
    {"a//b",
     NULL,
     NULL,
     NULL, "empty path component"},
    {"/a",
     NULL,
     NULL,
     NULL, "empty path component"},
    {"quay.io/",
     NULL,
     NULL,
     NULL, "empty path component"},
    {"quay.io/a/",
     NULL,
     NULL,
     NULL, "empty path component"},
    {":tag",
     NULL,
     NULL,
     NULL, "missing repository"},
    {"nginx:",
     NULL,
     NULL,
     NULL, "empty tag"},
    {"nginx:-x",
     NULL,
     NULL,
     NULL, "tag must start"},
    {"nginx:.x",
     NULL,
     NULL,
     NULL, "tag must start"},
    {"nginx:1:2",
     NULL,
     NULL,
     NULL, "invalid character in tag"},
    {"nginx:a/b",
     NULL,
     NULL,
     NULL, "invalid registry host"},
    {"nginx:_x",
     "docker.io/library/nginx:_x",
     "localhost:7439/docker.io/library/nginx:_x",
     "docker-io-library-nginx-x-721a2e7e56", NULL},
    {"nginx:A.b-C_d9",
     "docker.io/library/nginx:A.b-C_d9",
     "localhost:7439/docker.io/library/nginx:A.b-C_d9",
     "docker-io-library-nginx-a-b-c-d9-edec0304b3", NULL},
    {"nginx:T" A50 A50 A10 A10 "aaaaaaa",
     "docker.io/library/nginx:T" A50 A50 A10 A10 "aaaaaaa",
     "localhost:7439/docker.io/library/nginx:T" A50 A50 A10 A10 "aaaaaaa",
     "docker-io-library-nginx-t" A10 A10 "aaaaaaa-70c989d756", NULL},
    {"nginx:" A50 A50 A10 A10 "aaaaaaaaa",
     NULL,
     NULL,
     NULL, "tag longer than 128"},
    {"nginx@sha256:" H64,
     "docker.io/library/nginx@sha256:" H64,
     "localhost:7439/docker.io/library/nginx@sha256:" H64,
     "docker-io-library-nginx-sha256-0123456789abcdef01234-d50838d989", NULL},
    {"nginx:1.25@sha256:" H64,
     "docker.io/library/nginx:1.25@sha256:" H64,
     "localhost:7439/docker.io/library/nginx:1.25@sha256:" H64,
     "docker-io-library-nginx-1-25-sha256-0123456789abcdef-cd015bb957", NULL},
    {"my.reg:5000/a:latest@sha256:" H64,
     "my.reg:5000/a:latest@sha256:" H64,
     "localhost:7439/my.reg__5000/a:latest@sha256:" H64,
     "my-reg-5000-a-latest-sha256-0123456789abcdef01234567-55ebc23898", NULL},
    {"nginx@sha384:" H96,
     "docker.io/library/nginx@sha384:" H96,
     "localhost:7439/docker.io/library/nginx@sha384:" H96,
     "docker-io-library-nginx-sha384-89abcdef0123456789abc-3a320c1375", NULL},
    {"nginx@sha512:" H128,
     "docker.io/library/nginx@sha512:" H128,
     "localhost:7439/docker.io/library/nginx@sha512:" H128,
     "docker-io-library-nginx-sha512-fedcba9876543210fedcb-3b1c2de8da", NULL},
    {"nginx@md5:0123456789abcdef0123456789abcdef",
     NULL,
     NULL,
     NULL, "unsupported digest"},
    {"nginx@blake3:" H64,
     NULL,
     NULL,
     NULL, "unsupported digest"},
    {"nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
     NULL,
     NULL,
     NULL, "wrong length"},
    {"nginx@sha256:" H64 "0",
     NULL,
     NULL,
     NULL, "wrong length"},
    {"nginx@sha384:" H64,
     NULL,
     NULL,
     NULL, "wrong length"},
    {"nginx@sha256:0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
     NULL,
     NULL,
     NULL, "lower-case"},
    {"nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abzzzz",
     NULL,
     NULL,
     NULL, "hexadecimal"},
    {"nginx@sha256",
     NULL,
     NULL,
     NULL, "algorithm:hex"},
    {"nginx@",
     NULL,
     NULL,
     NULL, "algorithm:hex"},
    {"nginx@sha256:" H64 "@sha256:" H64,
     NULL,
     NULL,
     NULL, "hexadecimal"},
    {"@sha256:" H64,
     NULL,
     NULL,
     NULL, "missing repository"},
    {H64,
     NULL,
     NULL,
     NULL, "image ID"},
    {"x.io/" A50 A50 A50 A50 A50,
     "x.io/" A50 A50 A50 A50 A50 ":latest",
     "!",
     "x-io-" A10 A10 A10 A10 "aaaaaaa-d333b58e6b", NULL},
    {"x.io/" A50 A50 A50 A50 A50 "a",
     NULL,
     NULL,
     NULL, "longer than 255"},
    {A50 A50 A50 A50 A10 A10 A10 "aaaaaaa",
     "docker.io/library/" A50 A50 A50 A50 A10 A10 A10 "aaaaaaa:latest",
     "!",
     "docker-io-library-" A10 A10 A10 "aaaa-81d8b73685", NULL},
    {A50 A50 A50 A50 A10 A10 A10 "aaaaaaaa",
     NULL,
     NULL,
     NULL, "longer than 255"},
    {"registry-1.docker.io/b/" A50 A50 A50 A50 A10 A10 A10 A10 "aaa",
     "docker.io/b/" A50 A50 A50 A50 A10 A10 A10 A10 "aaa:latest",
     "!",
     "docker-io-b-" A10 A10 A10 A10 "-df902cde75", NULL},
    {"x.io/" A50 A50 A50 A50 A10 A10 A10 "aaaaa",
     "x.io/" A50 A50 A50 A50 A10 A10 A10 "aaaaa:latest",
     "localhost:7439/x.io/" A50 A50 A50 A50 A10 A10 A10 "aaaaa:latest",
     "x-io-" A10 A10 A10 A10 "aaaaaaa-eb7d91f320", NULL},
    {"x.io/" A50 A50 A50 A50 A10 A10 A10 "aaaaaa",
     "x.io/" A50 A50 A50 A50 A10 A10 A10 "aaaaaa:latest",
     "!",
     "x-io-" A10 A10 A10 A10 "aaaaaaa-cb266d0318", NULL},
    {"localhost:7439/docker.io/library/nginx:latest",
     "localhost:7439/docker.io/library/nginx:latest",
     "localhost:7439/docker.io/library/nginx:latest",
     "localhost-7439-docker-io-library-nginx-latest-95d4cb6f1d", NULL},
    {"localhost:7439/my.reg__5000/a/b:1",
     "localhost:7439/my.reg__5000/a/b:1",
     "localhost:7439/my.reg__5000/a/b:1",
     "localhost-7439-my-reg-5000-a-b-1-645fb51255", NULL},
    {"LocalHost:7439/ipv6_x--1x__5000/a/b:1",
     "localhost:7439/ipv6_x--1x__5000/a/b:1",
     "localhost:7439/ipv6_x--1x__5000/a/b:1",
     "localhost-7439-ipv6-x-1x-5000-a-b-1-b89941b015", NULL},
};

struct unrewrite_case {
  const char *in;
  int rc;
  const char *orig; /* normalised original when rc == 0 */
};

static const struct unrewrite_case unrewrite_cases[] = {
    {CACHE "/docker.io/library/nginx:latest", 0, "docker.io/library/nginx:latest"},
    {CACHE "/my.reg__5000/a/b:1", 0, "my.reg:5000/a/b:1"},
    {"LOCALHOST:7439/my.reg__5000/a/b:1", 0, "my.reg:5000/a/b:1"},
    {CACHE "/localhost__5000/app:dev", 0, "localhost:5000/app:dev"},
    {CACHE "/ipv6_x--1x__5000/a/b:1", 0, "[::1]:5000/a/b:1"},
    {CACHE "/ipv6_x2001-db8--x/a:v", 0, "[2001:db8::]/a:v"},
    {CACHE "/ipv6_x--x/a", 0, "[::]/a:latest"},
    {CACHE "/docker.io/library/nginx@sha256:" H64, 0,
     "docker.io/library/nginx@sha256:" H64},
    {CACHE "/docker.io/nginx", 0, "docker.io/library/nginx:latest"},
    {CACHE "/index.docker.io/x:1", 0, "docker.io/library/x:1"},
    {CACHE "/localhost/app", 0, "localhost/app:latest"},
    {CACHE "/foo/bar", THAW_EINVAL, NULL},
    {CACHE "/nginx", THAW_EINVAL, NULL},
    {CACHE "/my_reg/a", THAW_EINVAL, NULL},
    {CACHE "/ipv6_xzzx/a", THAW_EINVAL, NULL},
    {CACHE "/ipv6_x--1x_5/a", THAW_EINVAL, NULL},
    {CACHE "/ipv6_x--1x__/a", THAW_EINVAL, NULL},
    {CACHE "/ipv6_x1x/a", THAW_EINVAL, NULL},
    {CACHE "/reg.io__5000__1/a", THAW_EINVAL, NULL},
    {CACHE "/docker.io/library/Nginx", THAW_EINVAL, NULL},
    {CACHE "/", THAW_EINVAL, NULL},
    {"quay.io/a", THAW_ENOENT, NULL},
    {"localhost:7440/docker.io/x", THAW_ENOENT, NULL},
    {"localhost:74391/docker.io/x", THAW_ENOENT, NULL},
    {CACHE, THAW_ENOENT, NULL},
    {"", THAW_ENOENT, NULL},
};

struct name_case {
  const char *norm;
  const char *name; /* NULL: THAW_EINVAL expected */
};

static const struct name_case name_cases[] = {
    {"docker.io/grycap/imagemagick:latest", "docker-io-grycap-imagemagick-latest-03e994d388"},
    {"registry.example.com/some/very/long/path/to/the/image/name:v1.2.3", "registry-example-com-some-very-long-path-to-the-imag-6cf35b2b82"},
    {"docker.io/library/nginx:Latest", "docker-io-library-nginx-latest-44a6726c2e"},
    {"abcdefghij/abcdefghij/abcdefghij/abcdefghij/abcdefghi/x:1", "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefgh-619a465f73"},
    {"abcdefghij/abcdefghij/abcdefghij/abcdefghij/abcdefghij/x:1", "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefgh-caa8f15d85"},
    {"[::1]:5000/a/b:1", "1-5000-a-b-1-63497816e4"},
    {"--A--", "a-22611159bf"},
    {"abcdefghij/abcdefghij/abcdefghij/abcdefghij/abcdefg/x:1", "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefg-d95b0205a9"},
    {"", NULL},
    {"://@", NULL},
};

static int failures;

#define FAIL(...)                                                              \
  do {                                                                         \
    failures++;                                                                \
    printf("FAIL %s:%d: ", __FILE__, __LINE__);                                \
    printf(__VA_ARGS__);                                                       \
    printf("\n");                                                              \
  } while (0)

/* The content-addressed rewrite of a case: a tag without a digest gets
 * "@" PIN after it, a digest stays its own; unrewrite gives the pinned
 * original back, and its tag-only form is the case's normalised form. */
static void check_pinned(size_t idx, const struct parse_case *c,
                         const thaw_imgref_t *r) {
  char want[THAW_IMGREF_STR_MAX + 1], rw[THAW_IMGREF_STR_MAX + 1];
  thaw_imgref_t back, tag;
  int own = r->digest_len > 0;
  snprintf(want, sizeof want, "%s%s", c->rw, own ? "" : "@" PIN);
  if (thaw_imgref_rewrite(r, CACHE, PIN, rw, sizeof rw) != 0 ||
      strcmp(rw, want) != 0) {
    FAIL("[%zu] pinned rewrite(%s) = %s, want %s", idx, c->in, rw, want);
    return;
  }
  if (thaw_imgref_rewrite(r, CACHE, PIN, rw, strlen(want)) != THAW_E2BIG)
    FAIL("[%zu] pinned rewrite into a short buffer must be THAW_E2BIG", idx);
  thaw_imgref_rewrite(r, CACHE, PIN, rw, sizeof rw);
  if (thaw_imgref_unrewrite(rw, strlen(rw), CACHE, &back) != 0) {
    FAIL("[%zu] unrewrite(%s): %s", idx, rw, back.err);
    return;
  }
  int rc = thaw_imgref_tag_only(&back, &tag);
  if (own) {
    if (strcmp(back.str, c->norm) != 0)
      FAIL("[%zu] unrewrite(%s) = %s, want %s", idx, rw, back.str, c->norm);
    if (rc != (r->tag_len ? 0 : THAW_ENOENT))
      FAIL("[%zu] tag_only(%s): rc %d", idx, back.str, rc);
  } else if (rc != 0 || strcmp(tag.str, c->norm) != 0 ||
             tag.len != strlen(c->norm) || tag.digest_len != 0 ||
             strncmp(back.str + back.digest_off, PIN, strlen(PIN)) != 0) {
    FAIL("[%zu] tag_only(unrewrite(%s)) = %s (rc %d), want %s", idx, rw,
         tag.str, rc, c->norm);
  }
}

/* A cache host with path components (private images: "localhost:7440/
 * private"): the same rewrite under it, and unrewrite gives it back. */
#define PRIVATE_HOST "localhost:7440/private"
static void check_prefixed(size_t idx, const struct parse_case *c,
                           const thaw_imgref_t *r) {
  char want[THAW_IMGREF_STR_MAX + 16], rw[THAW_IMGREF_STR_MAX + 1];
  thaw_imgref_t back;
  snprintf(want, sizeof want, "%s%s", PRIVATE_HOST, c->rw + strlen(CACHE));
  int rc = thaw_imgref_rewrite(r, PRIVATE_HOST, NULL, rw, sizeof rw);
  /* the longer host leaves 8 bytes less for the name (its 255 limit): the
   * name ends at the tag's ':' (after the last '/') or the '@' */
  size_t name = strcspn(want, "@");
  const char *slash = strrchr(want, '/'), *tag = slash ? strchr(slash, ':') : NULL;
  if (tag && (size_t)(tag - want) < name)
    name = (size_t)(tag - want);
  if (name > THAW_IMGREF_NAME_MAX) {
    if (rc != THAW_EINVAL)
      FAIL("[%zu] rewrite(%s, " PRIVATE_HOST "): a name over 255 must fail",
           idx, c->in);
    return;
  }
  if (rc != 0 || strcmp(rw, want) != 0) {
    FAIL("[%zu] rewrite(%s, " PRIVATE_HOST ") = %s (rc %d), want %s", idx,
         c->in, rw, rc, want);
    return;
  }
  if (thaw_imgref_unrewrite(rw, strlen(rw), PRIVATE_HOST, &back) != 0 ||
      strcmp(back.str, c->norm) != 0)
    FAIL("[%zu] unrewrite(%s) = %s, want %s", idx, rw, back.str, c->norm);
  if (thaw_imgref_unrewrite(rw, strlen(rw), CACHE, &back) != THAW_ENOENT)
    FAIL("[%zu] %s is not under " CACHE, idx, rw);
  if (!thaw_imgref_is_rewritten(rw, PRIVATE_HOST))
    FAIL("[%zu] is_rewritten(%s, " PRIVATE_HOST ")", idx, rw);
}

/* Cache hosts with path components that rewrite refuses, and prefixed
 * hosts that are not the same host. */
/* The private host is the flag's host plus "/private", and never cut. */
static void check_private_host(void) {
  char buf[32];
  if (thaw_imgref_private_host(THAW_IMGREF_PRIVATE_CACHE_HOST, buf,
                               sizeof buf) != 0 ||
      strcmp(buf, THAW_IMGREF_PRIVATE_HOST) != 0 ||
      strcmp(buf, "localhost:7440/private") != 0)
    FAIL("private host of the default: %s", buf);
  if (thaw_imgref_private_host("h:1", buf, 12) != 0 ||
      strcmp(buf, "h:1/private") != 0)
    FAIL("private host, exact fit: %s", buf);
  if (thaw_imgref_private_host("h:1", buf, 11) != THAW_E2BIG)
    FAIL("private host one byte short: not E2BIG");
  if (buf[0] != '\0')
    FAIL("private host too long: buffer not emptied (%s)", buf);
}

static void check_prefixes(void) {
  static const char *const bad[] = {
      "localhost:7440/", "localhost:7440//x", "localhost:7440/Private",
      "localhost:7440/-x", "localhost:7440/a-", "localhost:7440/a/",
      "/private", "localhost:7440/a b"};
  thaw_imgref_t r, back;
  char rw[THAW_IMGREF_STR_MAX + 1];
  if (thaw_imgref_parse("docker.io/library/x:1", 21, &r) != 0) {
    FAIL("parse");
    return;
  }
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (thaw_imgref_rewrite(&r, bad[i], NULL, rw, sizeof rw) != THAW_EINVAL)
      FAIL("rewrite under %s must be THAW_EINVAL, got %s", bad[i], rw);
  static const char *const other[] = {
      "localhost:7440/docker.io/library/x:1",
      "localhost:7440/privatex/docker.io/library/x:1",
      "localhost:7439/private/docker.io/library/x:1"};
  for (size_t i = 0; i < sizeof other / sizeof *other; i++)
    if (thaw_imgref_unrewrite(other[i], strlen(other[i]), PRIVATE_HOST,
                              &back) != THAW_ENOENT)
      FAIL("unrewrite(%s, " PRIVATE_HOST ") must be THAW_ENOENT", other[i]);
  /* an image already under the prefixed host stays as it is */
  static const char in[] = PRIVATE_HOST "/docker.io/library/x:1";
  if (thaw_imgref_parse(in, sizeof in - 1, &r) != 0 ||
      thaw_imgref_rewrite(&r, PRIVATE_HOST, NULL, rw, sizeof rw) != 0 ||
      strcmp(rw, in) != 0)
    FAIL("rewrite(%s) under its own host changed it: %s", in, rw);
}

static void check_parse(size_t idx, const struct parse_case *c) {
  thaw_imgref_t r, r2;
  char buf[THAW_IMGREF_STR_MAX + 1], rw[THAW_IMGREF_STR_MAX + 1];
  int rc = thaw_imgref_parse(c->in, strlen(c->in), &r);

  if (!c->norm) {
    if (rc != THAW_EINVAL)
      FAIL("[%zu] parse(%s): rc %d, want THAW_EINVAL (got %s)", idx, c->in,
           rc, r.str);
    else if (!r.err || strlen(r.err) > 120 || !strstr(r.err, c->err))
      FAIL("[%zu] parse(%s): err \"%s\", want it to contain \"%s\"", idx,
           c->in, r.err ? r.err : "(null)", c->err);
    return;
  }
  if (rc != 0) {
    FAIL("[%zu] parse(%s): rc %d (%s), want %s", idx, c->in, rc,
         r.err ? r.err : "", c->norm);
    return;
  }
  if (strcmp(r.str, c->norm) != 0 || r.len != strlen(c->norm) || r.err)
    FAIL("[%zu] parse(%s) = %s, want %s", idx, c->in, r.str, c->norm);
  if (thaw_imgref_format(&r, buf, sizeof(buf)) != 0 ||
      strcmp(buf, c->norm) != 0)
    FAIL("[%zu] format(%s) = %s", idx, c->in, buf);
  if (thaw_imgref_format(&r, buf, strlen(c->norm)) != THAW_E2BIG ||
      buf[0] != '\0')
    FAIL("[%zu] format into a short buffer must be THAW_E2BIG", idx);
  /* The normalised form is a fixed point. */
  if (thaw_imgref_parse(c->norm, strlen(c->norm), &r2) != 0 ||
      strcmp(r2.str, c->norm) != 0)
    FAIL("[%zu] parse(normalised %s) = %s", idx, c->norm, r2.str);

  rc = thaw_imgref_rewrite(&r, CACHE, NULL, rw, sizeof(rw));
  if (strcmp(c->rw, NOT_REWRITABLE) == 0) {
    if (rc != THAW_EINVAL)
      FAIL("[%zu] rewrite(%s): rc %d (%s), want THAW_EINVAL", idx, c->in, rc,
           rw);
  } else if (rc != 0 || strcmp(rw, c->rw) != 0) {
    FAIL("[%zu] rewrite(%s): rc %d, %s, want %s", idx, c->in, rc, rw, c->rw);
  } else {
    /* The rewritten form parses to itself and is recognised... */
    if (thaw_imgref_parse(rw, strlen(rw), &r2) != 0 ||
        strcmp(r2.str, rw) != 0)
      FAIL("[%zu] rewritten %s does not parse to itself: %s", idx, rw,
           r2.err ? r2.err : r2.str);
    if (thaw_imgref_is_rewritten(rw, CACHE) != 1)
      FAIL("[%zu] is_rewritten(%s) != 1", idx, rw);
    /* ...rewriting it again changes nothing (idempotent)... */
    if (thaw_imgref_rewrite(&r2, CACHE, NULL, buf, sizeof(buf)) != 0 ||
        strcmp(buf, rw) != 0)
      FAIL("[%zu] rewrite(rewrite(%s)) = %s", idx, c->in, buf);
    /* ...and unrewrite gives back the normalised original (':' <-> "__"). */
    if (!thaw_imgref_is_rewritten(c->in, CACHE)) {
      if (thaw_imgref_unrewrite(rw, strlen(rw), CACHE, &r2) != 0 ||
          strcmp(r2.str, c->norm) != 0)
        FAIL("[%zu] unrewrite(%s) = %s, want %s", idx, rw,
             r2.err ? r2.err : r2.str, c->norm);
      if (thaw_imgref_rewrite(&r, CACHE, NULL, buf, strlen(rw)) != THAW_E2BIG)
        FAIL("[%zu] rewrite into a short buffer must be THAW_E2BIG", idx);
    }
  }

  if (strcmp(c->rw, NOT_REWRITABLE) != 0 &&
      !thaw_imgref_is_rewritten(c->in, CACHE)) {
    check_pinned(idx, c, &r);
    check_prefixed(idx, c, &r);
  }

  if (thaw_cachedimage_name(c->norm, buf, sizeof(buf)) != 0 ||
      strcmp(buf, c->name) != 0)
    FAIL("[%zu] name(%s) = %s, want %s", idx, c->norm, buf, c->name);
}

static void check_unrewrite(size_t idx, const struct unrewrite_case *c) {
  thaw_imgref_t r;
  int rc = thaw_imgref_unrewrite(c->in, strlen(c->in), CACHE, &r);
  if (rc != c->rc) {
    FAIL("[%zu] unrewrite(%s): rc %d (%s), want %d", idx, c->in, rc,
         r.err ? r.err : r.str, c->rc);
    return;
  }
  if (rc == 0 && strcmp(r.str, c->orig) != 0)
    FAIL("[%zu] unrewrite(%s) = %s, want %s", idx, c->in, r.str, c->orig);
  if (rc != 0 && (!r.err || r.str[0] != '\0'))
    FAIL("[%zu] unrewrite(%s) failed without a reason", idx, c->in);
}

static void check_names(void) {
  char buf[THAW_CACHEDIMAGE_NAME_MAX + 1];
  for (size_t i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
    const struct name_case *c = &name_cases[i];
    int rc = thaw_cachedimage_name(c->norm, buf, sizeof(buf));
    if (!c->name) {
      if (rc != THAW_EINVAL)
        FAIL("[%zu] name(%s): rc %d, want THAW_EINVAL", i, c->norm, rc);
      continue;
    }
    if (rc != 0 || strcmp(buf, c->name) != 0)
      FAIL("[%zu] name(%s) = %s (rc %d), want %s", i, c->norm, buf, rc,
           c->name);
    if (thaw_cachedimage_name(c->norm, buf, strlen(c->name)) != THAW_E2BIG)
      FAIL("[%zu] name into a short buffer must be THAW_E2BIG", i);
  }
  /* Over the input limit. */
  static char big[THAW_IMGREF_INPUT_MAX + 2];
  memset(big, 'a', sizeof(big) - 1);
  if (thaw_cachedimage_name(big, buf, sizeof(buf)) != THAW_EINVAL)
    FAIL("name of an over-long input must be THAW_EINVAL");
}

static void check_cache_hosts(void) {
  thaw_imgref_t r;
  char buf[THAW_IMGREF_STR_MAX + 1];
  static const char *const bad[] = {"", "cache", "Cache.local", "a b.io",
                                    "index.docker.io", "registry-1.docker.io",
                                    "host:port"};
  if (thaw_imgref_parse("my.reg:5000/a/b:1", 17, &r) != 0) {
    FAIL("parse(my.reg:5000/a/b:1)");
    return;
  }
  if (thaw_imgref_rewrite(&r, "registry.thaw.svc:5000", NULL, buf, sizeof(buf)) !=
          0 ||
      strcmp(buf, "registry.thaw.svc:5000/my.reg__5000/a/b:1") != 0)
    FAIL("rewrite under registry.thaw.svc:5000 = %s", buf);
  if (thaw_imgref_rewrite(&r, "[::1]:7439", NULL, buf, sizeof(buf)) != 0 ||
      strcmp(buf, "[::1]:7439/my.reg__5000/a/b:1") != 0)
    FAIL("rewrite under [::1]:7439 = %s", buf);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (thaw_imgref_rewrite(&r, bad[i], NULL, buf, sizeof(buf)) != THAW_EINVAL)
      FAIL("rewrite under cache host \"%s\" must be THAW_EINVAL", bad[i]);

  static const struct {
    const char *s, *host;
    int want;
  } pre[] = {
      {CACHE "/x", CACHE, 1},         {"LOCALHOST:7439/x", CACHE, 1},
      {CACHE, CACHE, 0},              {"localhost:74390/x", CACHE, 0},
      {"localhost:743/x", CACHE, 0},  {"nginx", CACHE, 0},
      {"", CACHE, 0},                 {"x/y", "", 0},
  };
  for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++)
    if (thaw_imgref_is_rewritten(pre[i].s, pre[i].host) != pre[i].want)
      FAIL("is_rewritten(%s, %s) != %d", pre[i].s, pre[i].host, pre[i].want);

  /* Input over the limit, and bytes after the given length are ignored. */
  static char big[THAW_IMGREF_INPUT_MAX + 1];
  memset(big, 'a', sizeof(big));
  if (thaw_imgref_parse(big, sizeof(big), &r) != THAW_EINVAL)
    FAIL("parse of an over-long input must be THAW_EINVAL");
  if (thaw_imgref_parse("nginx:1.25 trailing", 10, &r) != 0 ||
      strcmp(r.str, "docker.io/library/nginx:1.25") != 0)
    FAIL("parse must stop at len: %s", r.str);
  if (thaw_imgref_parse(NULL, 0, &r) != THAW_EINVAL || !r.err)
    FAIL("parse(NULL) must be THAW_EINVAL");
}

static void check_fields(void) {
  thaw_imgref_t r;
  const char *s = "Quay.IO:443/org/app:V1@sha256:" H64;
  if (thaw_imgref_parse(s, strlen(s), &r) != 0) {
    FAIL("parse(%s): %s", s, r.err);
    return;
  }
  if (r.host_len != 11 || memcmp(r.str, "quay.io:443", 11) != 0 ||
      r.name_len != 19 || r.tag_len != 2 ||
      memcmp(r.str + r.tag_off, "V1", 2) != 0 || r.tag_implicit ||
      r.digest_len != 71 ||
      memcmp(r.str + r.digest_off, "sha256:" H64, 71) != 0)
    FAIL("fields of %s are wrong", r.str);
  if (thaw_imgref_parse("busybox", 7, &r) != 0 || !r.tag_implicit ||
      r.digest_len != 0 || r.host_len != 9)
    FAIL("fields of %s are wrong", r.str);
}

/* The digest argument of rewrite, tag_only, digest_valid. */
static void check_pins(void) {
  thaw_imgref_t r, t;
  char buf[THAW_IMGREF_STR_MAX + 1];
  static const char *const bad[] = {
      "", "sha256:", "sha256:" H64 "0", "SHA256:" H64, "md5:" H64,
      "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
      "sha256:" H64 "@", H64};
  if (thaw_imgref_parse("nginx:1", 7, &r) != 0) {
    FAIL("parse(nginx:1)");
    return;
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (thaw_imgref_rewrite(&r, CACHE, bad[i], buf, sizeof buf) !=
            THAW_EINVAL ||
        buf[0] != '\0')
      FAIL("rewrite pinned to \"%s\" must be THAW_EINVAL", bad[i]);
    if (thaw_imgref_digest_valid(bad[i], strlen(bad[i])))
      FAIL("digest_valid(%s) must be 0", bad[i]);
  }
  if (!thaw_imgref_digest_valid(PIN, strlen(PIN)) ||
      thaw_imgref_digest_valid(PIN, strlen(PIN) - 1) ||
      thaw_imgref_digest_valid(NULL, 0))
    FAIL("digest_valid of the pin");
  /* sha512 pins fit: the longest name, tag and digest still parse. */
  const char *d512 = "sha512:" H64 H64;
  if (thaw_imgref_rewrite(&r, CACHE, d512, buf, sizeof buf) != 0 ||
      strcmp(buf, CACHE "/docker.io/library/nginx:1@sha512:" H64 H64) != 0)
    FAIL("rewrite pinned to sha512 = %s", buf);
  /* Under the cache host: unchanged, the pin ignored (idempotent). */
  const char *under = CACHE "/docker.io/library/nginx:1";
  if (thaw_imgref_parse(under, strlen(under), &t) != 0 ||
      thaw_imgref_rewrite(&t, CACHE, PIN, buf, sizeof buf) != 0 ||
      strcmp(buf, CACHE "/docker.io/library/nginx:1") != 0)
    FAIL("pinned rewrite under the cache host = %s", buf);
  /* tag_only: in place, and refused without a tag or without a digest. */
  if (thaw_imgref_parse("a.io/x:1@" PIN, 9 + strlen(PIN), &t) != 0 ||
      thaw_imgref_tag_only(&t, &t) != 0 || strcmp(t.str, "a.io/x:1") != 0 ||
      t.len != 8 || t.tag_len != 1)
    FAIL("tag_only in place = %s", t.str);
  if (thaw_imgref_tag_only(&r, &t) != THAW_ENOENT ||
      strcmp(t.str, r.str) != 0)
    FAIL("tag_only without a digest must be THAW_ENOENT");
  if (thaw_imgref_parse("a.io/x@" PIN, 7 + strlen(PIN), &r) != 0 ||
      thaw_imgref_tag_only(&r, &t) != THAW_ENOENT || strcmp(t.str, r.str) != 0)
    FAIL("tag_only without a tag must be THAW_ENOENT");
  /* A long name with the longest tag and a sha512 pin: within the limit. */
  char in[THAW_IMGREF_INPUT_MAX + 1];
  int n = snprintf(in, sizeof in, "a.io/%0*d:%0128d", 255 - 5 - 20, 0, 0);
  for (int i = 5; i < 255 - 20; i++)
    in[i] = 'a';
  if (thaw_imgref_parse(in, (size_t)n, &r) != 0)
    FAIL("parse(long) %s", r.err);
  else if (thaw_imgref_rewrite(&r, CACHE, d512, buf, sizeof buf) != 0 ||
           strlen(buf) > THAW_IMGREF_STR_MAX ||
           thaw_imgref_parse(buf, strlen(buf), &t) != 0)
    FAIL("pinned rewrite of the longest reference: %s", buf);
}

int main(void) {
  size_t n = sizeof(parse_cases) / sizeof(parse_cases[0]);
  for (size_t i = 0; i < n; i++)
    check_parse(i, &parse_cases[i]);
  size_t u = sizeof(unrewrite_cases) / sizeof(unrewrite_cases[0]);
  for (size_t i = 0; i < u; i++)
    check_unrewrite(i, &unrewrite_cases[i]);
  check_names();
  check_cache_hosts();
  check_private_host();
  check_prefixes();
  check_pins();
  check_fields();
  printf("imgref: %zu parse cases, %zu unrewrite cases, %zu name cases, "
         "%d failures\n",
         n, u, sizeof(name_cases) / sizeof(name_cases[0]), failures);
  return failures ? 1 : 0;
}
