/* sysns.h - namespace names and the system's own namespace, as both daemons
 * take it: --namespace, else the service account's (in a pod), else
 * thaw-system (docs/design.md, "Leader election" and "Flags"). */
#ifndef THAW_SYSNS_H
#define THAW_SYSNS_H

#include <stddef.h>

#define THAW_NAMESPACE_MAX 63 /* a namespace is a DNS label */
#define THAW_SYSTEM_NAMESPACE "thaw-system"

/* 1 when s is a valid namespace name (RFC 1123 label), else 0. */
int thaw_namespace_valid(const char *s);

/* The default system namespace into buf (at least THAW_NAMESPACE_MAX + 1
 * bytes): the service account's namespace file when it holds a valid name
 * ($THAW_SERVICEACCOUNT_DIR overrides its directory, for tests), else
 * THAW_SYSTEM_NAMESPACE. */
void thaw_system_namespace_default(char *buf, size_t len);

#define THAW_EXCLUDED_MAX 64 /* entries of --exclude-namespaces */

/* Splits s ("a,b,c", namespace names) into list[THAW_EXCLUDED_MAX + 1],
 * NULL-ended, pointing into *buf, a copy the caller frees ("" is the empty
 * list, *buf NULL). Returns 0, or
 * -1 with a one-line reason in err (an empty or invalid entry, too many,
 * out of memory). */
int thaw_namespace_list_parse(const char *s, char **buf, const char **list,
                              char *err, size_t errlen);

/* 1 when namespace ns never takes part in caching, whatever its labels say:
 * kube-system, the system namespace, or one listed in extra (NULL-ended;
 * may be NULL), else 0. */
int thaw_namespace_excluded(const char *ns, const char *system_ns,
                            const char *const *extra);

#endif
