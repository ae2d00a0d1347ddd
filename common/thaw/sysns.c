/* sysns.c - namespace names and the default system namespace (sysns.h). */
#include "sysns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

int thaw_namespace_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > THAW_NAMESPACE_MAX || s[0] == '-' || s[n - 1] == '-')
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
          s[i] == '-'))
      return 0;
  return 1;
}

void thaw_system_namespace_default(char *buf, size_t len) {
  const char *dir = getenv("THAW_SERVICEACCOUNT_DIR");
  char path[4096], ns[THAW_NAMESPACE_MAX + 2] = "";
  snprintf(path, sizeof path, "%s/namespace", dir && *dir ? dir : SA_DIR);
  FILE *f = fopen(path, "r");
  if (f != NULL) {
    size_t n = fread(ns, 1, sizeof ns - 1, f);
    fclose(f);
    ns[n] = '\0';
    while (n > 0 && (ns[n - 1] == '\n' || ns[n - 1] == ' ' ||
                     ns[n - 1] == '\r' || ns[n - 1] == '\t'))
      ns[--n] = '\0';
  }
  snprintf(buf, len, "%s",
           thaw_namespace_valid(ns) ? ns : THAW_SYSTEM_NAMESPACE);
}

int thaw_namespace_list_parse(const char *s, char **buf, const char **list,
                              char *err, size_t errlen) {
  size_t n = 0;
  list[0] = NULL;
  *buf = NULL;
  if (*s == '\0')
    return 0; /* an empty list, as the controller's list flags take it */
  if ((*buf = strdup(s)) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  char *p = *buf;
  for (;;) {
    char *comma = strchr(p, ',');
    if (comma != NULL)
      *comma = '\0';
    if (!thaw_namespace_valid(p)) {
      snprintf(err, errlen, "%s: %s", s, *p ? "not a namespace name" : "empty entry");
      break;
    }
    if (n == THAW_EXCLUDED_MAX) {
      snprintf(err, errlen, "%s: more than %d entries", s, THAW_EXCLUDED_MAX);
      break;
    }
    list[n++] = p;
    list[n] = NULL;
    if (comma == NULL)
      return 0;
    p = comma + 1;
  }
  free(*buf);
  *buf = NULL;
  list[0] = NULL;
  return -1;
}

int thaw_namespace_excluded(const char *ns, const char *system_ns,
                            const char *const *extra) {
  if (strcmp(ns, "kube-system") == 0 || (system_ns && strcmp(ns, system_ns) == 0))
    return 1;
  for (; extra && *extra; extra++)
    if (strcmp(ns, *extra) == 0)
      return 1;
  return 0;
}
