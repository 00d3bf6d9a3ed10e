/* nbdkit front end: between options.c (the command line) and main.c
 * (the start-up sequence).
 */

#ifndef NBDKIT_OPTIONS_H
#define NBDKIT_OPTIONS_H

#include <stdbool.h>

/* --help, --dump-plugin, --version: answered from the backend. */
extern bool want_help, want_dump, want_version;

/* The nbdkit release whose behaviour this server matches: what
 * --version, --dump-config and --dump-plugin report as the version, for
 * tools that test nbdkit's version.  This package's own version
 * (PACKAGE_VERSION) is reported beside it, as package_version.
 */
#define NBDKIT_COMPAT_VERSION "1.32.0"
#define NBDKIT_COMPAT_MAJOR 1
#define NBDKIT_COMPAT_MINOR 32

/* -4 / -6: AF_INET or AF_INET6 for TCP listening, else AF_UNSPEC. */
extern int listen_family;

/* --backend-clean-environment: the backend gets a minimal environment
 * instead of the server's (backend-spawn.c).
 */
extern bool backend_clean_environment;

/* --swap: lock the server into memory (mlockall) once it is running. */
extern bool want_swap;

/* Every option into opt (exits 1 naming a bad value), and the
 * backend's name; --help or --version without a backend exit here.
 * Returns the index in argv of the first argument after the backend's
 * name.
 */
extern int parse_command_line (int argc, char *argv[]);

/* Hand -D flags named after the backend to the backend (in HELLO):
 * once opt.backend_name is known.
 */
extern void route_debug_flags (void);

#endif /* NBDKIT_OPTIONS_H */
