/* nbdkit backends: running an external tool (mke2fs, mkfs, xorriso, a
 * user's command) from a backend, and the temporary files it makes.
 * Shared by the tmpdisk, ondemand, linuxdisk and iso backends.  A
 * backend is its own process, so these block: they are called from
 * get_ready or from open, never from the server's loop.
 */

#ifndef NBDKIT_RUN_TOOL_H
#define NBDKIT_RUN_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Run script with /bin/sh -c.  env: NULL, or a NULL-terminated list of
 * "NAME=VALUE" strings added to (or replacing in) the environment.
 * Standard input is /dev/null.  Standard output goes to out_fd when it
 * is >= 0, else with standard error to a pipe that is read back.
 * Returns 0 when the script exits with status 0; else -1 after
 * nbdkit_error ("WHAT failed (exit status N): <what it wrote>").
 */
extern int run_tool (const char *what, const char *script,
                     char *const *env, int out_fd);

/* The directory for temporary files: $TMPDIR, else /var/tmp, as
 * nbdkit.
 */
extern const char *tool_tmpdir (void);

/* A new private directory PREFIX-XXXXXX in tool_tmpdir (); malloc'd, or
 * NULL after nbdkit_error.
 */
extern char *tool_mkdtemp (const char *prefix);

/* Remove the files of dir (not recursively) and dir itself; quiet. */
extern void tool_rmdir (const char *dir);

/* Whether prog runs: a path that is executable, or a name found so on
 * $PATH.
 */
extern bool tool_found (const char *prog);

/* The time the server (this backend's parent) started, in seconds
 * since the epoch, and a number that names that server among all that
 * ran on this machine.  Both are the same in every incarnation of the
 * backend, so that a restarted backend can make the same disk (same
 * times, same UUIDs) for the clients it re-opens.
 */
extern int64_t tool_server_start (void);
extern uint64_t tool_server_id (void);

/* value quoted for the shell ('...'), malloc'd, or NULL (ENOMEM). */
extern char *tool_shell_quote (const char *value);

#endif /* NBDKIT_RUN_TOOL_H */
