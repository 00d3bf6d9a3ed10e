/* nbdkit nbd backend: what nbd.c (the callbacks), params.c (the
 * parameters) and upstream.c (the connections to the upstream NBD
 * server) share.
 */

#ifndef NBD_BACKEND_UPSTREAM_H
#define NBD_BACKEND_UPSTREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libnbd.h>

/* How to reach the upstream server: exactly one of these. */
enum transport {
  TRANSPORT_NONE,
  TRANSPORT_UNIX,               /* socket= */
  TRANSPORT_TCP,                /* hostname= [port=] */
  TRANSPORT_VSOCK,              /* vsock= [port=] */
  TRANSPORT_URI,                /* [uri=] */
  TRANSPORT_COMMAND,            /* command= [arg=...] */
  TRANSPORT_FD,                 /* socket-fd= */
};

/* The parameters, set by nbd.c's config and config_complete. */
struct upstream_config {
  enum transport transport;
  char *socket;                 /* made absolute */
  char *hostname;
  char *port;                   /* NULL: 10809 */
  uint32_t cid;
  char *uri;
  char **argv;                  /* command= then each arg=, NULL-ended */
  size_t argc;
  int fd;                       /* socket-fd=: the server's descriptor */
  char *export;                 /* export=, or NULL */
  bool dynamic_export;
  bool shared;                  /* one connection for all clients */
  int tls;                      /* LIBNBD_TLS_*, or -1: not given */
  char *tls_certificates;       /* made absolute */
  int tls_verify;               /* 0, 1, or -1: not given */
  char *tls_username;
  char *tls_psk;                /* made absolute */
  unsigned retry;               /* more attempts, a second apart */
};

extern struct upstream_config upstream_config;

/* params.c: the config and config_complete callbacks, and freeing
 * what they kept (from unload).
 */
extern int params_config (const char *key, const char *value);
extern int params_config_complete (void);
extern void params_free (void);

/* One connection to the upstream server in transmission, with the
 * thread that waits on its socket and completes its commands.
 */
struct upstream {
  struct nbd_handle *nbd;
  int wake;                     /* eventfd: makes the poller look again */
  pthread_t poller;
  bool stopping;                /* under stop_lock */
  pthread_mutex_t stop_lock;
};

/* One command in flight: the worker that sent it waits on it. */
struct op {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done;
  int err;
  /* Block status: a copy of the base:allocation entries. */
  uint32_t *entries;
  size_t nr_entries;
  int extent_err;
};

/* Connect (synchronously, with retry=) to the export, or with
 * opt_mode to negotiate options (listing exports).  Returns the handle,
 * or NULL after nbdkit_error.
 */
extern struct nbd_handle *upstream_connect (const char *export,
                                            bool opt_mode);

/* End a connection made with opt_mode (NBD_OPT_ABORT) and close it. */
extern void upstream_close_options (struct nbd_handle *nbd);

/* Take a connected handle into transmission: starts its poller.
 * NULL after nbdkit_error (the handle is then closed).
 */
extern struct upstream *upstream_start (struct nbd_handle *nbd);

/* Disconnect politely and free everything. */
extern void upstream_close (struct upstream *u);

/* Sending a command: op_init, then a completion callback made by
 * op_completion (and op_extents for block status) for the nbd_aio_*
 * call, then op_wait with its cookie, which waits for the reply and
 * returns 0, or -1 with the NBD error set (nbdkit_set_error).  what
 * names the call in messages.
 */
extern void op_init (struct op *op);
extern nbd_completion_callback op_completion (struct op *op);
extern nbd_extent_callback op_extents (struct op *op);
extern int op_wait (struct upstream *u, struct op *op, int64_t cookie,
                    const char *what);

/* The NBD error for an errno from libnbd or from the upstream server:
 * the codes NBD knows pass, anything else is EINVAL (as nbdkit does).
 */
extern int upstream_errno (int err);

#endif /* NBD_BACKEND_UPSTREAM_H */
