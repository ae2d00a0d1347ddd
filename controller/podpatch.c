/* podpatch.c - JSON Patch pieces for pods (podpatch.h). */
#include "podpatch.h"

#include <string.h>

#include "error.h"

int thaw_podpatch_op_json(cJSON *ops, const char *op, const char *path,
                          cJSON *value) {
  cJSON *o = cJSON_CreateObject();
  if (o == NULL || !cJSON_AddStringToObject(o, "op", op) ||
      !cJSON_AddStringToObject(o, "path", path) ||
      (value != NULL && !cJSON_AddItemToObject(o, "value", value))) {
    cJSON_Delete(o);
    cJSON_Delete(value);
    return THAW_ENOMEM;
  }
  if (!cJSON_AddItemToArray(ops, o)) {
    cJSON_Delete(o);
    return THAW_ENOMEM;
  }
  return 0;
}

int thaw_podpatch_op(cJSON *ops, const char *op, const char *path,
                     const char *value) {
  cJSON *v = NULL;
  if (value != NULL && (v = cJSON_CreateString(value)) == NULL)
    return THAW_ENOMEM;
  return thaw_podpatch_op_json(ops, op, path, v);
}

int thaw_podpatch_split_key(const char *key, char *ns, size_t nscap,
                            const char **name) {
  const char *slash = strchr(key, '/');
  if (slash == NULL || (size_t)(slash - key) >= nscap)
    return -1;
  memcpy(ns, key, (size_t)(slash - key));
  ns[slash - key] = '\0';
  *name = slash + 1;
  return 0;
}
