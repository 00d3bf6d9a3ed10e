/* backends/sh/methods.h: what the sh and eval backends share.
 *
 * methods.c (with methods-caps.c and methods-data.c) implements every
 * callback of struct nbdkit_backend by running a method of the script
 * (call.c) and parsing what it prints, with the conventions of
 * nbdkit-sh-plugin(3).  The two programs differ only in where a
 * method's code comes from, which each supplies:
 *
 *   sh.c     one executable script: SCRIPT METHOD ARGS...
 *   eval.c   one shell snippet per method: /bin/sh -c CODE ...
 *
 * and in their config, which hands the user's key=value parameters to
 * methods_config.
 */

#ifndef NBDKIT_SH_METHODS_H
#define NBDKIT_SH_METHODS_H

#include <stdbool.h>
#include <stddef.h>

#include "nbdkit-backend.h"
#include "call.h"

/* ---- supplied by the program (sh.c or eval.c) ---- */

/* Prefix of messages about a method: the script's path (sh), or ""
 * (eval).
 */
extern const char *script_label;
/* The start of the command that runs method: argv[0] (a path) and the
 * arguments before the method's own, at most METHOD_CMD_MAX of them.
 * Returns how many were filled in, or 0 when the method is known to be
 * missing (it is then not run: exit status 2 without a process).
 */
#define METHOD_CMD_MAX 6
extern size_t script_command (const char *method, const char **argv);
/* 1: the method is defined, 0: it is not, -1: cannot tell (sh). */
extern int script_defined (const char *method);

/* ---- provided by methods.c, methods-caps.c, methods-data.c ---- */

/* The backend's private temporary directory ($tmpdir of the scripts),
 * made on first use; the same one after a restart of the backend (its
 * path is kept in the server's memfd).  prefix names it in /tmp.
 * Returns 0, or -1 after nbdkit_error.
 */
extern int methods_tmpdir (const char *prefix);

/* Run method with args (NULL-terminated, may be NULL).  io as in
 * call.h, or NULL.
 */
extern enum call_status run_method (const char *method,
                                    const char *const *args,
                                    struct call_io *io);

/* A user parameter: the script's config method, or an error naming
 * the key when there is none.
 */
extern int methods_config (const char *key, const char *value);

/* Callbacks, common to both programs. */
extern void methods_unload (void);
extern void methods_dump_plugin (void);
extern int methods_config_complete (void);
extern int methods_thread_model (void);
extern int methods_get_ready (void);
extern int methods_list_exports (int readonly, int is_tls,
                                 struct nbdkit_exports *exports);
extern const char *methods_default_export (int readonly, int is_tls);
extern int methods_preconnect (int readonly);
extern void *methods_open (int readonly);
extern void methods_close (void *handle);
extern int64_t methods_get_size (void *handle);
extern const char *methods_export_description (void *handle);
extern int methods_block_size (void *handle, uint32_t *minimum,
                               uint32_t *preferred, uint32_t *maximum);
extern int methods_can_write (void *handle);
extern int methods_can_flush (void *handle);
extern int methods_is_rotational (void *handle);
extern int methods_can_trim (void *handle);
extern int methods_can_zero (void *handle);
extern int methods_can_fast_zero (void *handle);
extern int methods_can_extents (void *handle);
extern int methods_can_fua (void *handle);
extern int methods_can_multi_conn (void *handle);
extern int methods_can_cache (void *handle);
extern int methods_pread (void *handle, void *buf, uint32_t count,
                          uint64_t offset, uint32_t flags);
extern int methods_pwrite (void *handle, const void *buf, uint32_t count,
                           uint64_t offset, uint32_t flags);
extern int methods_flush (void *handle, uint32_t flags);
extern int methods_trim (void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags);
extern int methods_zero (void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags);
extern int methods_cache (void *handle, uint32_t count, uint64_t offset,
                          uint32_t flags);
extern int methods_extents (void *handle, uint32_t count, uint64_t offset,
                            uint32_t flags, struct nbdkit_extents *extents);

/* The members of struct nbdkit_backend that both programs set the
 * same way.  Every callback exists, because whether the script has a
 * method is only known by running it; the thread model is lowered by
 * the script's thread_model method (default serialize_all_requests).
 */
#define SCRIPT_BACKEND_COMMON                           \
  .version = PACKAGE_VERSION,                           \
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,         \
  .wants_memfd = true,                                  \
  .dump_plugin = methods_dump_plugin,                   \
  .thread_model_cb = methods_thread_model,              \
  .get_ready = methods_get_ready,                       \
  .list_exports = methods_list_exports,                 \
  .default_export = methods_default_export,             \
  .preconnect = methods_preconnect,                     \
  .open = methods_open,                                 \
  .close = methods_close,                               \
  .get_size = methods_get_size,                         \
  .export_description = methods_export_description,     \
  .block_size = methods_block_size,                     \
  .can_write = methods_can_write,                       \
  .can_flush = methods_can_flush,                       \
  .is_rotational = methods_is_rotational,               \
  .can_trim = methods_can_trim,                         \
  .can_zero = methods_can_zero,                         \
  .can_fast_zero = methods_can_fast_zero,               \
  .can_extents = methods_can_extents,                   \
  .can_fua = methods_can_fua,                           \
  .can_multi_conn = methods_can_multi_conn,             \
  .can_cache = methods_can_cache,                       \
  .pread = methods_pread,                               \
  .pwrite = methods_pwrite,                             \
  .flush = methods_flush,                               \
  .trim = methods_trim,                                 \
  .zero = methods_zero,                                 \
  .cache = methods_cache,                               \
  .extents = methods_extents

#endif /* NBDKIT_SH_METHODS_H */
