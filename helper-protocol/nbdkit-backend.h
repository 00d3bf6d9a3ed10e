/* libnbdkit-backend: the C library for writing an nbdkit backend.
 *
 * A backend is a program: fill in a struct nbdkit_backend with the
 * callbacks you have, and NBDKIT_REGISTER_BACKEND(it) supplies main(),
 * which speaks nbdkit-helper-protocol(5) with the server on the channel
 * it was given, runs your callbacks on worker threads according to your
 * thread model, and emulates what you leave out (zeroing by writing,
 * FUA by flushing, caching by reading).  The callbacks and their
 * meaning follow nbdkit-plugin(3), API version 2, so that plugins port
 * with few changes.  See nbdkit-backend(3).
 */

#ifndef NBDKIT_BACKEND_H
#define NBDKIT_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <stdarg.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Thread models, from the most to the least serialized.  A backend
 * that sets none gets SERIALIZE_ALL_REQUESTS.
 */
#define NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS     1
#define NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS    2
#define NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS        3
#define NBDKIT_THREAD_MODEL_PARALLEL                  4

#define NBDKIT_FLAG_MAY_TRIM  (1 << 0)  /* zero: may punch a hole */
#define NBDKIT_FLAG_FUA       (1 << 1)  /* durable before returning */
#define NBDKIT_FLAG_REQ_ONE   (1 << 2)  /* extents: one is enough */
#define NBDKIT_FLAG_FAST_ZERO (1 << 3)  /* zero: fail with ENOTSUP if slow */

#define NBDKIT_FUA_NONE       0
#define NBDKIT_FUA_EMULATE    1
#define NBDKIT_FUA_NATIVE     2

#define NBDKIT_CACHE_NONE     0
#define NBDKIT_CACHE_EMULATE  1
#define NBDKIT_CACHE_NATIVE   2

#define NBDKIT_EXTENT_HOLE    (1 << 0)
#define NBDKIT_EXTENT_ZERO    (1 << 1)

struct nbdkit_extents;
struct nbdkit_exports;

struct nbdkit_backend {
  /* About the backend. */
  const char *name;             /* required: [a-z0-9_-]+ */
  const char *longname;
  const char *version;
  const char *description;
  const char *config_help;      /* shown by 'nbdkit NAME --help' */
  const char *magic_config_key; /* 'nbdkit NAME VALUE' means KEY=VALUE */
  int thread_model;             /* NBDKIT_THREAD_MODEL_*; 0 = not set */
  bool wants_memfd;             /* keep data in nbdkit_memfd () */

  /* Life cycle, in this order: load, config (once per key=value),
   * config_complete, thread_model_cb, get_ready, then connections, and
   * unload when the server closes the channel.  Return -1 on error
   * (after nbdkit_error).
   */
  void (*load) (void);
  int (*config) (const char *key, const char *value);
  int (*config_complete) (void);
  int (*thread_model_cb) (void);        /* may lower thread_model */
  int (*get_ready) (void);
  void (*unload) (void);
  void (*dump_plugin) (void);   /* print key=value lines on stdout */

  /* Exports. */
  int (*list_exports) (int readonly, int is_tls,
                       struct nbdkit_exports *exports);
  const char *(*default_export) (int readonly, int is_tls);

  /* Connections. */
  void *(*open) (int readonly);
  void (*close) (void *handle);
  int64_t (*get_size) (void *handle);
  const char *(*export_description) (void *handle);
  int (*block_size) (void *handle,
                     uint32_t *minimum, uint32_t *preferred,
                     uint32_t *maximum);

  /* Capabilities: 1 yes, 0 no, -1 error.  Defaults are derived from
   * which data callbacks exist.
   */
  int (*can_write) (void *handle);
  int (*can_flush) (void *handle);
  int (*is_rotational) (void *handle);
  int (*can_trim) (void *handle);
  int (*can_zero) (void *handle);
  int (*can_fast_zero) (void *handle);
  int (*can_extents) (void *handle);
  int (*can_fua) (void *handle);        /* NBDKIT_FUA_* */
  int (*can_multi_conn) (void *handle);
  int (*can_cache) (void *handle);      /* NBDKIT_CACHE_* */

  /* Data.  Return 0 or -1 (errno, or nbdkit_set_error, says which). */
  int (*pread) (void *handle, void *buf, uint32_t count, uint64_t offset,
                uint32_t flags);
  int (*pwrite) (void *handle, const void *buf, uint32_t count,
                 uint64_t offset, uint32_t flags);
  int (*flush) (void *handle, uint32_t flags);
  int (*trim) (void *handle, uint32_t count, uint64_t offset,
               uint32_t flags);
  int (*zero) (void *handle, uint32_t count, uint64_t offset,
               uint32_t flags);
  int (*cache) (void *handle, uint32_t count, uint64_t offset,
                uint32_t flags);
  int (*extents) (void *handle, uint32_t count, uint64_t offset,
                  uint32_t flags, struct nbdkit_extents *extents);

  /* Added later: at the end, so that backends built before keep their
   * layout.
   */
  /* NULL-terminated: the config keys whose value is the number of a
   * file descriptor of the server (as nbdkit file fd=3 3<disk.img).
   * The server sends that descriptor along; config gets the value as
   * given and takes the descriptor with nbdkit_config_fd ().
   */
  const char *const *fd_config_keys;
  /* Once per client connection, before anything else of it (its
   * listing or its open); -1 refuses it.
   */
  int (*preconnect) (int readonly);
};

/* The process's main(): speaks the protocol until the server goes. */
extern int nbdkit_backend_main (const struct nbdkit_backend *backend,
                                int argc, char *argv[]);
/* The same, with a thread model that overrides the struct's (0: use
 * the struct's).  NBDKIT_REGISTER_BACKEND uses it for THREAD_MODEL.
 */
extern int nbdkit_backend_main_with_model (const struct nbdkit_backend *b,
                                           int thread_model,
                                           int argc, char *argv[]);

/* Porting aid: as with nbdkit-plugin.h, a backend may instead say
 *   #define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
 * before including this header.
 */
#ifdef THREAD_MODEL
#define NBDKIT_BACKEND_THREAD_MODEL_ (THREAD_MODEL)
#else
#define NBDKIT_BACKEND_THREAD_MODEL_ 0
#endif

#define NBDKIT_REGISTER_BACKEND(b)                                      \
  int main (int argc, char *argv[])                                     \
  {                                                                     \
    return nbdkit_backend_main_with_model (&(b),                        \
                                           NBDKIT_BACKEND_THREAD_MODEL_, \
                                           argc, argv);                 \
  }

/* Messages.  nbdkit_error during a callback becomes the message of the
 * error reply (and is logged); nbdkit_debug prints only with -v.
 */
extern void nbdkit_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
extern void nbdkit_verror (const char *fmt, va_list args)
  __attribute__ ((format (printf, 1, 0)));
extern void nbdkit_debug (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));
extern void nbdkit_set_error (int err);

/* -D NAME.FLAG=N: the value of FLAG, or def when not given. */
extern int nbdkit_debug_flag (const char *flag, int def);

/* Parsing parameters.  Each returns -1 after nbdkit_error naming what
 * and the value.
 */
extern int64_t nbdkit_parse_size (const char *str);
extern int nbdkit_parse_bool (const char *str);
extern int nbdkit_parse_int (const char *what, const char *str, int *r);
extern int nbdkit_parse_unsigned (const char *what, const char *str,
                                  unsigned *r);
extern int nbdkit_parse_int64_t (const char *what, const char *str,
                                 int64_t *r);
extern int nbdkit_parse_uint64_t (const char *what, const char *str,
                                  uint64_t *r);
/* Paths: malloc'd, the caller frees.  NULL after nbdkit_error. */
extern char *nbdkit_absolute_path (const char *path);
extern char *nbdkit_realpath (const char *path);

/* From a config callback: the bare arguments after this parameter on
 * the command line take KEY (a script that declares its own magic
 * config key, as with nbdkit-sh-backend).
 */
extern void nbdkit_set_magic_config_key (const char *key);

/* The connection being opened or served by the calling thread. */
extern const char *nbdkit_export_name (void);
extern int nbdkit_is_tls (void);
/* The client's address, as nbdkit's: filled in as getpeername(2)
 * would (truncated to *addrlen, which is set to the real size).  In
 * open, close and the data and capability callbacks; 0, or -1 after
 * nbdkit_error (no connection here, or nbdkit -s: ENOTSOCK).
 */
struct sockaddr;
extern int nbdkit_peer_name (struct sockaddr *addr, socklen_t *addrlen);

/* With wants_memfd: the memory file the server keeps across restarts
 * of this backend (empty at first), or -1.  Valid from config on.
 */
extern int nbdkit_memfd (void);

/* In open: the data of this handle is exactly the file or block device
 * open on fd (the backend keeps fd open until close), so the server
 * may read and write it itself instead of sending each request here
 * (passthrough, see nbdkit-backend(3)).  The backend still answers
 * open, size, capabilities, extents and close, and every request if
 * the server does not take the descriptor.  flags: 0, or
 * NBDKIT_PASSTHROUGH_ZERO_PUNCH when zeroing may always punch a hole
 * (holes are how the backend stores zeroes); then page, if not 0 (a
 * power of 2), is the backend's page: one that a zero or trim leaves
 * all zeroes is punched whole.  Returns 0, or -1 after nbdkit_error
 * (not in open; fd not open for reading, or O_APPEND; a bad page).
 */
#define NBDKIT_PASSTHROUGH_ZERO_PUNCH 1
extern int nbdkit_passthrough_fd (int fd, unsigned flags, uint32_t page);

/* In open, when the server re-opens a handle after a restart of the
 * backend: the descriptor that the handle's open in the previous
 * process gave with nbdkit_passthrough_fd, kept by the server and now
 * given back, which the caller owns (the library closes one nobody
 * took); -1 when there is none (a first open, none was given, or not
 * in open).  A second call returns -1.
 */
extern int nbdkit_previous_fd (void);

/* During config, for a key of fd_config_keys: the descriptor the
 * server passed for it, which the caller now owns; -1 when there is
 * none (the library refuses such a parameter before config sees it,
 * unless the backend runs without a server).  A second call returns -1.
 */
extern int nbdkit_config_fd (void);

/* In a data callback: disconnect the current client, as nbdkit's
 * nbdkit_disconnect.  force: at once, without an answer to this or any
 * other request in flight; else softly: this request is answered, and
 * every later request of the client fails with ESHUTDOWN.
 */
extern void nbdkit_disconnect (int force);

/* In list_exports: the name default_export gives for this client
 * connection (run once per connection, as in nbdkit), malloc'd, or
 * NULL after an error.  For a list_exports that has no list of its
 * own.
 */
extern char *nbdkit_connection_default_export (int readonly, int is_tls);

/* Extents and exports. */
extern int nbdkit_add_extent (struct nbdkit_extents *extents,
                              uint64_t offset, uint64_t length,
                              uint32_t type);
extern int nbdkit_add_export (struct nbdkit_exports *exports,
                              const char *name, const char *description);

#ifdef __cplusplus
}
#endif

#endif /* NBDKIT_BACKEND_H */
