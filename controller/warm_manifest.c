/* warm_manifest.c - reads OCI/Docker image manifests and indexes into the
 * descriptors a warm copies, strictly: whatever a warm cannot copy safely is
 * refused here with a reason, before anything is written to the cache. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "warm_internal.h"

static const char *const index_types[] = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json", NULL};
static const char *const image_types[] = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json", NULL};

static int in_list(const char *s, const char *const *list) {
  for (; s && *list; list++)
    if (strcmp(s, *list) == 0)
      return 1;
  return 0;
}

int warm_media_is_index(const char *media) {
  return in_list(media, index_types);
}

int warm_digest_valid(const char *d) {
  if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 71)
    return 0;
  for (const char *p = d + 7; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return 0;
  return 1;
}

void warm_manifest_clear(warm_manifest_t *m) {
  free(m->descs);
  free(m->rewritten);
  memset(m, 0, sizeof *m);
}

/* Reads {digest, size[, mediaType]} of descriptor `what`. */
static int read_desc(const cJSON *d, const char *what, warm_desc_t *out,
                     char *err, size_t errlen) {
  const cJSON *dg = cJSON_GetObjectItemCaseSensitive(d, "digest");
  const cJSON *sz = cJSON_GetObjectItemCaseSensitive(d, "size");
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(d, "mediaType");
  if (!cJSON_IsObject(d))
    return thaw_errf(err, errlen, THAW_EPARSE, "%s is not an object", what);
  if (!cJSON_IsString(dg))
    return thaw_errf(err, errlen, THAW_EPARSE, "%s has no digest", what);
  if (!warm_digest_valid(dg->valuestring))
    return thaw_errf(err, errlen, THAW_EPARSE,
                     "%s digest is not sha256:<64 hex>", what);
  if (!cJSON_IsNumber(sz))
    return thaw_errf(err, errlen, THAW_EPARSE, "%s has no size", what);
  double v = sz->valuedouble;
  /* 2^53: beyond it a JSON number no longer names one exact byte count. */
  if (!(v >= 0) || v != floor(v) || v > 9007199254740992.0)
    return thaw_errf(err, errlen, THAW_EPARSE,
                     "%s size is negative or not an integer", what);
  if (mt && (!cJSON_IsString(mt) || strlen(mt->valuestring) >= WARM_MEDIA_MAX))
    return thaw_errf(err, errlen, THAW_EPARSE, "%s has a bad mediaType",
                     what);
  memcpy(out->digest, dg->valuestring, 72);
  out->size = (long long)v;
  snprintf(out->media, sizeof out->media, "%s", mt ? mt->valuestring : "");
  return 0;
}

/* Does the child's platform match one "os/arch[/variant]" of the filter?
 * A child without a platform, or "unknown", matches nothing. */
static int platform_match(const cJSON *child, const char *const *platforms) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(child, "platform");
  const char *os = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "os"));
  const char *arch = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(p, "architecture"));
  const char *var = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(p, "variant"));
  if (!os || !arch || !strcmp(os, "unknown") || !strcmp(arch, "unknown"))
    return 0;
  for (; *platforms; platforms++) {
    const char *f = *platforms, *s1 = strchr(f, '/');
    if (!s1)
      continue;
    const char *s2 = strchr(s1 + 1, '/');
    size_t alen = s2 ? (size_t)(s2 - s1 - 1) : strlen(s1 + 1);
    if (strlen(os) != (size_t)(s1 - f) || strncmp(os, f, s1 - f) ||
        strlen(arch) != alen || strncmp(arch, s1 + 1, alen))
      continue;
    if (!s2 || (var && strcmp(var, s2 + 1) == 0)) /* no variant: any */
      return 1;
  }
  return 0;
}

static int parse_image(const cJSON *doc, warm_manifest_t *out, char *err,
                       size_t errlen) {
  const cJSON *config = cJSON_GetObjectItemCaseSensitive(doc, "config");
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(doc, "layers");
  if (!config)
    return thaw_errf(err, errlen, THAW_EPARSE, "manifest has no config");
  if (layers && !cJSON_IsArray(layers))
    return thaw_errf(err, errlen, THAW_EPARSE, "manifest layers is not an array");
  int n = cJSON_GetArraySize(layers);
  if (n > WARM_ENTRIES_MAX)
    return thaw_errf(err, errlen, THAW_EPARSE,
                     "manifest has %d layers, over %d", n, WARM_ENTRIES_MAX);
  if (!(out->descs = calloc((size_t)n + 1, sizeof *out->descs)))
    return THAW_ENOMEM;
  int rc = read_desc(config, "config", &out->descs[0], err, errlen);
  out->n = 1;
  const cJSON *l;
  cJSON_ArrayForEach(l, layers) {
    char what[32];
    snprintf(what, sizeof what, "layer %zu", out->n - 1);
    if (rc || (rc = read_desc(l, what, &out->descs[out->n], err, errlen)))
      break;
    /* Foreign layers live elsewhere (urls); registries do not hold them. */
    if (strstr(out->descs[out->n].media, ".foreign.") &&
        cJSON_GetObjectItemCaseSensitive(l, "urls"))
      continue;
    out->n++;
  }
  return rc;
}

static int parse_index(cJSON *doc, int depth, const char *const *platforms,
                       warm_manifest_t *out, char *err, size_t errlen) {
  cJSON *kids = cJSON_GetObjectItemCaseSensitive(doc, "manifests");
  if (!cJSON_IsArray(kids))
    return thaw_errf(err, errlen, THAW_EPARSE, "index has no manifests array");
  int n = cJSON_GetArraySize(kids);
  if (n > WARM_ENTRIES_MAX)
    return thaw_errf(err, errlen, THAW_EPARSE,
                     "index has %d manifests, over %d", n, WARM_ENTRIES_MAX);
  if (!(out->descs = calloc((size_t)n + 1, sizeof *out->descs)))
    return THAW_ENOMEM;
  out->is_index = 1;
  out->all = (size_t)n;
  cJSON *k = kids->child, *next;
  for (int i = 0; k; k = next, i++) {
    next = k->next;
    char what[32];
    snprintf(what, sizeof what, "index entry %d", i);
    warm_desc_t *d = &out->descs[out->n];
    int rc = read_desc(k, what, d, err, errlen);
    if (rc)
      return rc;
    if (!in_list(d->media, index_types) && !in_list(d->media, image_types))
      return thaw_errf(err, errlen, THAW_EPARSE,
                       "%s has media type '%.80s', not a manifest", what,
                       d->media);
    if (warm_media_is_index(d->media) && depth >= WARM_DEPTH_MAX)
      return thaw_errf(err, errlen, THAW_EPARSE,
                       "indexes nested deeper than %d", WARM_DEPTH_MAX);
    if (platforms && !platform_match(k, platforms)) {
      cJSON_Delete(cJSON_DetachItemViaPointer(kids, k));
      continue;
    }
    out->n++;
  }
  if (out->n < out->all) {
    if (!(out->rewritten = cJSON_PrintUnformatted(doc)))
      return THAW_ENOMEM;
    out->rewritten_len = strlen(out->rewritten);
  }
  return 0;
}

int warm_manifest_parse(const char *bytes, size_t len, const char *media,
                        int depth, const char *const *platforms,
                        warm_manifest_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  int index = warm_media_is_index(media);
  if (!index && !in_list(media, image_types))
    return thaw_errf(err, errlen, THAW_EPARSE,
                     "unsupported manifest media type '%.80s'", media);
  cJSON *doc = cJSON_ParseWithLength(bytes, len);
  if (!cJSON_IsObject(doc)) {
    cJSON_Delete(doc);
    return thaw_errf(err, errlen, THAW_EPARSE, "manifest is not a JSON object");
  }
  int rc = 0;
  const cJSON *sv = cJSON_GetObjectItemCaseSensitive(doc, "schemaVersion");
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(doc, "mediaType");
  if (!cJSON_IsNumber(sv) || sv->valuedouble != 2)
    rc = thaw_errf(err, errlen, THAW_EPARSE, "schemaVersion is not 2");
  else if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, media)))
    rc = thaw_errf(err, errlen, THAW_EPARSE,
                   "mediaType field differs from Content-Type '%.80s'", media);
  else if (index)
    rc = parse_index(doc, depth, platforms, out, err, errlen);
  else
    rc = parse_image(doc, out, err, errlen);
  cJSON_Delete(doc);
  if (rc)
    warm_manifest_clear(out);
  return rc;
}
