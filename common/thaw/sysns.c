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
