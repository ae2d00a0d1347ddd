/* podpatch.h - the pieces of a pod JSON Patch that the repair of stuck
 * pods and the release of gated pods share: ops, the original-images
 * annotation's name, and pod keys. */
#ifndef THAW_PODPATCH_H
#define THAW_PODPATCH_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define THAW_PODPATCH_ANN_ORIGINALS "thaw.dev/original-images"
/* The annotation as a JSON Pointer token ("/" escaped as "~1"). */
#define THAW_PODPATCH_ANN_ORIGINALS_PTR "thaw.dev~1original-images"

/* Appends {"op", "path", "value"} to the array `ops`; value NULL writes no
 * value (a remove). Returns 0 or THAW_ENOMEM (ops unchanged). */
int thaw_podpatch_op(cJSON *ops, const char *op, const char *path,
                     const char *value);

/* The same with a JSON value, which it takes (freed on failure too). */
int thaw_podpatch_op_json(cJSON *ops, const char *op, const char *path,
                          cJSON *value);

/* ns (NUL-ended, at most nscap - 1 bytes) and name of a "namespace/name"
 * key; *name points into key. Returns 0, or -1 when key has no '/' or the
 * namespace does not fit. */
int thaw_podpatch_split_key(const char *key, char *ns, size_t nscap,
                            const char **name);

#endif
