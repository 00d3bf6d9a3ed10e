/* backends/secret.h: secret parameter values (password=+FILE, -, -FD)
 * and the values a backend keeps for its restarts, for the backends
 * that link backends/secret.c.  Both need the backend's struct to set
 * wants_memfd = true: the store is the memory file that the server
 * keeps for the backend (nbdkit_memfd).
 */

#ifndef NBDKIT_BACKENDS_SECRET_H
#define NBDKIT_BACKENDS_SECRET_H

/* The value of a secret parameter KEY=VALUE: VALUE itself, +FILE (the
 * file's contents), - (asked on the terminal), -FD (read from the
 * server's descriptor FD).  Malloc'd into *ret.  What was read from a
 * file, a descriptor or the terminal is kept for the restarts of the
 * backend.  Returns 0, or -1 after nbdkit_error.
 */
extern int secret_read (const char *key, const char *value, char **ret);

/* secret_free: see helper-protocol/secret-read.h. */
#include "secret-read.h"

/* The value last kept under name by this backend or an earlier
 * incarnation of it, malloc'd; NULL if there is none.
 */
extern char *secret_kept_find (const char *name);

/* Keep value under name for the later incarnations of this backend
 * (for the life of the server).  Best effort: a failure is logged with
 * -v only.
 */
extern void secret_keep (const char *name, const char *value);

#endif /* NBDKIT_BACKENDS_SECRET_H */
