/* libnbdkit-backend: the backend process's main loop.
 *
 * Owns the channel to the server: reads frames (with recvmsg, so that a
 * file descriptor passed with ATTACH_FD arrives too), validates each
 * one, and hands it on in one switch on the message type — the readable
 * list of everything the server can ask.  Start-up messages run here,
 * in order; the rest go to the worker threads.  Replies are written
 * whole, under a lock, from whichever thread finished.  EOF on the
 * channel, or SHUTDOWN, ends the process after closing the handles.
 */

#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend-internal.h"

const struct nbdkit_backend *be;
int thread_model;
bool verbose;
json_t *debug_flags;
int memfd = -1;

static int chan = -1;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* File descriptors received and not yet claimed by ATTACH_FD. */
#define MAX_FDS 4
static int received_fds[MAX_FDS];
static size_t nr_received_fds;

static void
keep_fds (struct msghdr *msg)
{
  struct cmsghdr *cmsg;

  for (cmsg = CMSG_FIRSTHDR (msg); cmsg; cmsg = CMSG_NXTHDR (msg, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
      size_t n = (cmsg->cmsg_len - CMSG_LEN (0)) / sizeof (int), i;
      int fd;

      for (i = 0; i < n; ++i) {
        memcpy (&fd, CMSG_DATA (cmsg) + i * sizeof fd, sizeof fd);
        if (nr_received_fds < MAX_FDS)
          received_fds[nr_received_fds++] = fd;
        else
          close (fd);
      }
    }
  }
}

/* Read exactly n bytes.  Returns 0, or -1 on EOF or error. */
static int
recv_exact (void *buf, size_t n)
{
  unsigned char *p = buf;

  while (n > 0) {
    union {
      char buf[CMSG_SPACE (MAX_FDS * sizeof (int))];
      struct cmsghdr align;
    } u;
    struct iovec iov = { .iov_base = p, .iov_len = n };
    struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1,
      .msg_control = u.buf, .msg_controllen = sizeof u.buf,
    };
    ssize_t r = recvmsg (chan, &msg, MSG_CMSG_CLOEXEC);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    keep_fds (&msg);
    p += r;
    n -= r;
  }
  return 0;
}

static void
write_all (struct iovec *iov, int n)
{
  while (n > 0) {
    ssize_t r = writev (chan, iov, n);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return;                   /* the server is gone: the reader sees EOF */
    }
    while (n > 0 && (size_t) r >= iov->iov_len) {
      r -= iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *) iov->iov_base + r;
      iov->iov_len -= r;
    }
  }
}

void
send_reply (const struct hp_header *req, uint32_t status, uint32_t handle,
            const void *payload, uint32_t len)
{
  send_reply_flags (req, status, 0, handle, payload, len);
}

void
send_reply_flags (const struct hp_header *req, uint32_t status,
                  uint16_t flags, uint32_t handle,
                  const void *payload, uint32_t len)
{
  struct hp_header h = {
    .type = req->type | HP_REPLY,
    .flags = flags,
    .id = req->id,
    .handle = handle,
    .status = status,
    .offset = req->offset,
    .count = req->count,
    .payload_len = payload ? len : 0,
  };
  unsigned char hdr[HP_HEADER_SIZE];
  struct iovec iov[2] = {
    { .iov_base = hdr, .iov_len = sizeof hdr },
    { .iov_base = (void *) payload, .iov_len = h.payload_len },
  };

  hp_encode_header (&h, hdr);
  pthread_mutex_lock (&write_lock);
  write_all (iov, h.payload_len ? 2 : 1);
  pthread_mutex_unlock (&write_lock);
}

void
send_json_reply (const struct hp_header *req, uint32_t handle, json_t *j)
{
  char *s;

  if (!j)
    j = json_object ();
  s = j ? json_dumps (j, JSON_COMPACT) : NULL;
  json_decref (j);
  if (!s) {
    send_reply (req, HP_ENOMEM, 0, "out of memory", 13);
    return;
  }
  send_reply (req, 0, handle, s, strlen (s));
  free (s);
}

/* After a failed callback: the error (from nbdkit_set_error, else
 * errno, else def_status, else EIO) and its message.
 */
void
send_error_reply (const struct hp_header *req, uint32_t def_status)
{
  const char *msg = NULL;
  uint32_t st = context_failure (errno, def_status, &msg);

  send_reply (req, st, 0, msg, msg ? strlen (msg) : 0);
}

static void __attribute__ ((noreturn))
protocol_error (const char *why)
{
  fprintf (stderr, "error: invalid frame from the server: %s\n", why);
  exit (EXIT_FAILURE);
}

static json_t *
parse_json (const struct hp_header *h, const unsigned char *payload)
{
  json_error_t err;
  json_t *j;

  if (h->payload_len == 0)
    return json_object ();
  j = json_loadb ((const char *) payload, h->payload_len, 0, &err);
  if (!j || !json_is_object (j))
    protocol_error ("a control message whose payload is not a JSON object");
  return j;
}

static int
take_fd (void)
{
  int fd;

  if (nr_received_fds == 0)
    return -1;
  fd = received_fds[0];
  memmove (received_fds, received_fds + 1,
           --nr_received_fds * sizeof received_fds[0]);
  return fd;
}

int
nbdkit_backend_main (const struct nbdkit_backend *backend,
                     int argc, char *argv[])
{
  return nbdkit_backend_main_with_model (backend, 0, argc, argv);
}

int
nbdkit_backend_main_with_model (const struct nbdkit_backend *backend,
                                int model, int argc, char *argv[])
{
  const char *env = getenv (HP_ENV_FD);
  char *end;
  long fd;
  bool running = true;

  be = backend;
  if (!be->name || !*be->name) {
    fprintf (stderr, "%s: the backend has no name\n", argv[0]);
    return EXIT_FAILURE;
  }
  errno = 0;
  fd = env ? strtol (env, &end, 10) : -1;
  if (!env || errno || *end || fd < 0 || fd > 1024) {
    fprintf (stderr,
             "%s: this program is an nbdkit backend: run it with "
             "'nbdkit %s' (see nbdkit(1))\n", argv[0], be->name);
    return EXIT_FAILURE;
  }
  chan = (int) fd;
  signal (SIGPIPE, SIG_IGN);
  thread_model = model ? model : be->thread_model ? be->thread_model
    : NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS;
  if (thread_model < NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS ||
      thread_model > NBDKIT_THREAD_MODEL_PARALLEL) {
    fprintf (stderr, "error: the backend's thread model %d is not one of "
             "the NBDKIT_THREAD_MODEL_* constants\n", thread_model);
    return EXIT_FAILURE;
  }
  if (be->load)
    be->load ();

  while (running) {
    unsigned char hdr[HP_HEADER_SIZE];
    struct hp_header h;
    unsigned char *payload = NULL;
    const char *why;
    json_t *j;

    if (recv_exact (hdr, sizeof hdr) == -1)
      break;
    if (hp_decode_header (hdr, &h, &why) == -1 ||
        hp_check_request (&h, &why) == -1)
      protocol_error (why);
    if (h.payload_len) {
      payload = malloc ((size_t) h.payload_len + 1);
      if (!payload) {
        fprintf (stderr, "error: out of memory\n");
        exit (EXIT_FAILURE);
      }
      if (recv_exact (payload, h.payload_len) == -1) {
        free (payload);
        break;
      }
      payload[h.payload_len] = '\0';
    }

    switch (h.type) {
    case HP_HELLO:
      j = parse_json (&h, payload);
      op_hello (&h, j);
      json_decref (j);
      break;
    case HP_CONFIG:
      j = parse_json (&h, payload);
      op_config (&h, j);
      json_decref (j);
      break;
    case HP_CONFIG_COMPLETE:
      op_config_complete (&h);
      break;
    case HP_GET_READY:
      op_get_ready (&h);
      break;
    case HP_DUMP:
      op_dump (&h);
      break;
    case HP_ATTACH_FD:
      j = parse_json (&h, payload);
      op_attach_fd (&h, j, take_fd ());
      json_decref (j);
      break;
    case HP_SHUTDOWN:
      send_json_reply (&h, 0, NULL);
      running = false;
      break;

    case HP_LIST_EXPORTS:
    case HP_DEFAULT_EXPORT:
    case HP_OPEN:
    case HP_CLOSE:
    case HP_PREAD:
    case HP_PWRITE:
    case HP_FLUSH:
    case HP_TRIM:
    case HP_ZERO:
    case HP_CACHE:
    case HP_EXTENTS: {
      struct job *job = calloc (1, sizeof *job);

      if (!job) {
        fprintf (stderr, "error: out of memory\n");
        exit (EXIT_FAILURE);
      }
      job->req = h;
      job->payload = payload;
      payload = NULL;
      workers_submit (job);
      break;
    }
    default:
      protocol_error ("a message type this backend does not know");
    }
    free (payload);
  }

  workers_stop ();
  op_close_all ();
  if (be->unload)
    be->unload ();
  return EXIT_SUCCESS;
}
