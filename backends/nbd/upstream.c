/* nbdkit nbd backend: the connections to the upstream NBD server.
 *
 * Owns connecting (libnbd's synchronous connect calls, with the TLS
 * settings, the export name and retry=), and the transmission phase,
 * which uses libnbd's asynchronous API: each connection has a poller
 * thread that waits on its socket (and on an eventfd) and runs
 * nbd_aio_notify_read/write, which runs libnbd's state machine and
 * the completion callbacks.  A worker thread of libnbdkit-backend
 * sends its command itself (nbd_aio_*: libnbd writes it at once when
 * the socket takes it), wakes the poller only when part of it is left
 * to write, and sleeps on its own condition variable until the
 * completion callback, on the poller, says the reply came.  So as
 * many commands as there are workers are in flight on one connection,
 * replies come back in any order, and no worker holds libnbd's handle
 * lock while it waits (as the synchronous nbd_pread would).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "upstream.h"

struct upstream_config upstream_config = {
  .fd = -1, .tls = -1, .tls_verify = -1,
};

/* How long a closing connection may take to send its NBD_CMD_DISC. */
#define CLOSE_TIMEOUT_MS 5000

int
upstream_errno (int err)
{
  switch (err) {
  case EPERM: case EROFS: case EIO: case ENOMEM: case EINVAL:
  case ENOSPC: case EDQUOT: case EFBIG: case EOVERFLOW: case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
  case EOPNOTSUPP:
#endif
  case ESHUTDOWN:
    return err;
  case 0:
    return EIO;
  default:
    /* ENOTCONN (the server went away), ECONNRESET, ...: nbdkit sends
     * EINVAL for an errno that has no NBD code.
     */
    return EINVAL;
  }
}

/* The failed libnbd call's message and error code, for the caller's
 * reply.
 */
static void
libnbd_error (void)
{
  int err = nbd_get_errno ();

  nbdkit_error ("%s", nbd_get_error ());
  nbdkit_set_error (upstream_errno (err));
}

/* Why an attempt to connect failed: reported only when no attempt is
 * left (one that a retry mends is only a debug message).
 */
struct failure {
  char msg[512];
  int err;
};

static void
connect_failed (struct failure *f, const char *msg, int err)
{
  snprintf (f->msg, sizeof f->msg, "%s", msg ? msg : "unknown error");
  f->err = err;
}

/* Close a handle that has no poller. */
static void
close_handle (struct nbd_handle *nbd)
{
  if (upstream_config.transport == TRANSPORT_COMMAND)
    nbd_kill_subprocess (nbd, 0);       /* SIGTERM: not every server exits
                                         * when its client goes */
  nbd_close (nbd);
}

/* The settings made before connecting. */
static int
configure_handle (struct nbd_handle *nbd, const char *export, bool opt_mode)
{
  const struct upstream_config *c = &upstream_config;

  if (c->transport != TRANSPORT_URI &&
      nbd_set_export_name (nbd, export) == -1)
    return -1;
  if (nbd_add_meta_context (nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
      nbd_set_full_info (nbd, true) == -1)
    return -1;
#ifdef LIBNBD_HAVE_NBD_SET_PREAD_INITIALIZE
  /* A read that succeeds fills the whole buffer; one that fails sends
   * no data: clearing the buffer first is wasted work.
   */
  if (nbd_set_pread_initialize (nbd, false) == -1)
    return -1;
#endif
  /* With a URI and dynamic-export=true the URI's export is replaced
   * by the client's: stop at the options to set it.
   */
  if ((opt_mode || (c->transport == TRANSPORT_URI && c->dynamic_export)) &&
      nbd_set_opt_mode (nbd, true) == -1)
    return -1;
  if (c->tls >= 0 && nbd_set_tls (nbd, c->tls) == -1)
    return -1;
  if (c->tls_certificates &&
      nbd_set_tls_certificates (nbd, c->tls_certificates) == -1)
    return -1;
  if (c->tls_verify >= 0 && nbd_set_tls_verify_peer (nbd, c->tls_verify) == -1)
    return -1;
  if (c->tls_username && nbd_set_tls_username (nbd, c->tls_username) == -1)
    return -1;
  if (c->tls_psk && nbd_set_tls_psk_file (nbd, c->tls_psk) == -1)
    return -1;
  return 0;
}

static int
connect_transport (struct nbd_handle *nbd, struct failure *f)
{
  const struct upstream_config *c = &upstream_config;
  uint32_t vport = 10809;
  int fd;

  switch (c->transport) {
  case TRANSPORT_UNIX:
    return nbd_connect_unix (nbd, c->socket);
  case TRANSPORT_TCP:
    return nbd_connect_tcp (nbd, c->hostname, c->port ? c->port : "10809");
  case TRANSPORT_VSOCK:
    if (c->port)
      vport = (uint32_t) strtoul (c->port, NULL, 0);   /* checked before */
    return nbd_connect_vsock (nbd, c->cid, vport);
  case TRANSPORT_URI:
    return nbd_connect_uri (nbd, c->uri);
  case TRANSPORT_COMMAND:
    return nbd_connect_systemd_socket_activation (nbd, c->argv);
  case TRANSPORT_FD:
    /* libnbd takes the descriptor it is given: give it a duplicate. */
    fd = fcntl (c->fd, F_DUPFD_CLOEXEC, 3);
    if (fd == -1) {
      char msg[128];

      snprintf (msg, sizeof msg, "socket-fd=%d: %s", c->fd, strerror (errno));
      connect_failed (f, msg, errno);
      return -2;
    }
    return nbd_connect_socket (nbd, fd);
  case TRANSPORT_NONE:
    break;
  }
  connect_failed (f, "no NBD server to connect to", EINVAL);
  return -2;
}

/* One attempt.  NULL after connect_failed. */
static struct nbd_handle *
connect_once (const char *export, bool opt_mode, struct failure *f)
{
  const struct upstream_config *c = &upstream_config;
  struct nbd_handle *nbd = nbd_create ();
  int r;

  if (!nbd) {
    connect_failed (f, nbd_get_error (), nbd_get_errno ());
    return NULL;
  }
  if (configure_handle (nbd, export, opt_mode) == -1) {
    connect_failed (f, nbd_get_error (), nbd_get_errno ());
    nbd_close (nbd);
    return NULL;
  }
  r = connect_transport (nbd, f);
  if (r == 0 && c->transport == TRANSPORT_URI && c->dynamic_export) {
    /* Stopped at the options: the client's export, not the URI's. */
    r = nbd_set_export_name (nbd, export);
    if (r == 0 && !opt_mode)
      r = nbd_opt_go (nbd);
  }
  if (r != 0) {
    if (r == -1)
      connect_failed (f, nbd_get_error (), nbd_get_errno ());
    close_handle (nbd);
    return NULL;
  }
  return nbd;
}

struct nbd_handle *
upstream_connect (const char *export, bool opt_mode)
{
  struct failure f = { .msg = "connect failed", .err = EIO };
  unsigned attempt;

  for (attempt = 0;; ++attempt) {
    struct nbd_handle *nbd = connect_once (export, opt_mode, &f);

    if (nbd)
      return nbd;
    if (attempt >= upstream_config.retry) {
      nbdkit_error ("%s", f.msg);
      nbdkit_set_error (upstream_errno (f.err));
      return NULL;
    }
    nbdkit_debug ("%s (attempt %u of %u): retrying in a second",
                  f.msg, attempt + 1,
                  upstream_config.retry + 1);
    sleep (1);
  }
}

void
upstream_close_options (struct nbd_handle *nbd)
{
  nbd_opt_abort (nbd);
  close_handle (nbd);
}

/* ---- transmission ---- */

static void
wake_poller (struct upstream *u)
{
  uint64_t one = 1;

  /* EAGAIN: the counter is already non-zero, the poller will look. */
  if (write (u->wake, &one, sizeof one) == -1 && errno != EAGAIN)
    nbdkit_debug ("waking the poller: %m");
}

static bool
is_stopping (struct upstream *u)
{
  bool r;

  pthread_mutex_lock (&u->stop_lock);
  r = u->stopping;
  pthread_mutex_unlock (&u->stop_lock);
  return r;
}

/* The poller: the one thread that reads the connection's socket (and
 * writes what the workers' calls left unwritten).  When the server
 * goes, libnbd fails every command in flight (their callbacks run
 * here) and every later call at once; the poller then only waits to
 * be stopped.  No nbdkit_* call here: this thread serves no request.
 */
static void *
poller (void *arg)
{
  struct upstream *u = arg;

  for (;;) {
    struct pollfd fds[2];
    bool stopping = is_stopping (u);
    int fd = nbd_aio_get_fd (u->nbd);
    unsigned dir = fd >= 0 ? nbd_aio_get_direction (u->nbd) : 0;
    int r;

    if (stopping &&
        (fd < 0 || (!(dir & LIBNBD_AIO_DIRECTION_WRITE) &&
                    nbd_aio_in_flight (u->nbd) <= 0)))
      break;
    fds[0].fd = fd;
    fds[0].events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
      ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0);
    fds[0].revents = 0;
    fds[1].fd = u->wake;
    fds[1].events = POLLIN;
    fds[1].revents = 0;
    r = poll (fds, 2, stopping ? CLOSE_TIMEOUT_MS : -1);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (r == 0)                 /* stopping, and the server is stuck */
      break;
    if (fds[1].revents & POLLIN) {
      uint64_t v;

      if (read (u->wake, &v, sizeof v) == -1 && errno != EAGAIN)
        break;
    }
    if (fd < 0 || !fds[0].revents)
      continue;
    if ((dir & LIBNBD_AIO_DIRECTION_READ) &&
        (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
      nbd_aio_notify_read (u->nbd);
    else if ((dir & LIBNBD_AIO_DIRECTION_WRITE) &&
             (fds[0].revents & (POLLOUT | POLLHUP | POLLERR)))
      nbd_aio_notify_write (u->nbd);
    else if (fds[0].revents & POLLNVAL)
      continue;                 /* closed under us: get_fd says so next */
  }
  return NULL;
}

struct upstream *
upstream_start (struct nbd_handle *nbd)
{
  struct upstream *u = calloc (1, sizeof *u);
  int err;

  if (!u) {
    nbdkit_error ("out of memory");
    close_handle (nbd);
    return NULL;
  }
  u->nbd = nbd;
  pthread_mutex_init (&u->stop_lock, NULL);
  u->wake = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (u->wake == -1) {
    nbdkit_error ("eventfd: %m");
    goto fail;
  }
  err = pthread_create (&u->poller, NULL, poller, u);
  if (err) {
    errno = err;
    nbdkit_error ("starting the poller thread: %m");
    close (u->wake);
    goto fail;
  }
  return u;

 fail:
  pthread_mutex_destroy (&u->stop_lock);
  close_handle (nbd);
  free (u);
  return NULL;
}

void
upstream_close (struct upstream *u)
{
  /* NBD_CMD_DISC, written by the poller if the socket is full. */
  if (nbd_aio_is_ready (u->nbd) || nbd_aio_is_processing (u->nbd))
    nbd_aio_disconnect (u->nbd, 0);
  pthread_mutex_lock (&u->stop_lock);
  u->stopping = true;
  pthread_mutex_unlock (&u->stop_lock);
  wake_poller (u);
  pthread_join (u->poller, NULL);
  close (u->wake);
  pthread_mutex_destroy (&u->stop_lock);
  close_handle (u->nbd);
  free (u);
}

/* ---- one command ---- */

void
op_init (struct op *op)
{
  memset (op, 0, sizeof *op);
  pthread_mutex_init (&op->lock, NULL);
  pthread_cond_init (&op->cond, NULL);
}

/* On the poller (or on any thread that happens to run libnbd's state
 * machine): the reply is in.  Returning 1 retires the command.
 */
static int
completion_cb (void *user_data, int *error)
{
  struct op *op = user_data;

  pthread_mutex_lock (&op->lock);
  op->err = *error;
  op->done = true;
  pthread_cond_signal (&op->cond);
  pthread_mutex_unlock (&op->lock);     /* op may be gone after this */
  return 1;
}

/* Block status: keep the base:allocation entries (length, flags
 * pairs) for the worker, which adds them as extents.
 */
static int
extent_cb (void *user_data, const char *context, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  struct op *op = user_data;

  if (strcmp (context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 ||
      op->entries || nr_entries == 0)
    return 0;
  op->entries = malloc (nr_entries * sizeof *entries);
  if (!op->entries) {
    op->extent_err = ENOMEM;
    *error = ENOMEM;
    return -1;
  }
  memcpy (op->entries, entries, nr_entries * sizeof *entries);
  op->nr_entries = nr_entries;
  return 0;
}

nbd_completion_callback
op_completion (struct op *op)
{
  return (nbd_completion_callback) { .callback = completion_cb,
                                     .user_data = op };
}

nbd_extent_callback
op_extents (struct op *op)
{
  return (nbd_extent_callback) { .callback = extent_cb, .user_data = op };
}

int
op_wait (struct upstream *u, struct op *op, int64_t cookie, const char *what)
{
  int err = 0;

  if (cookie == -1) {
    /* Not sent (the connection is gone, or libnbd refused it). */
    libnbd_error ();
    err = -1;
  }
  else {
    if (nbd_aio_get_direction (u->nbd) & LIBNBD_AIO_DIRECTION_WRITE)
      wake_poller (u);
    pthread_mutex_lock (&op->lock);
    while (!op->done)
      pthread_cond_wait (&op->cond, &op->lock);
    pthread_mutex_unlock (&op->lock);
    if (op->err) {
      nbdkit_debug ("%s: the server replied with an error: %s", what,
                    strerror (op->err));
      nbdkit_set_error (upstream_errno (op->err));
      err = -1;
    }
  }
  pthread_cond_destroy (&op->cond);
  pthread_mutex_destroy (&op->lock);
  return err;
}
