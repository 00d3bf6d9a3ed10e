/* filters/pause.c: hold requests while paused (nbdkit-pause-filter(1)),
 * for taking a snapshot of the storage below.
 *
 * pause-control=SOCKET names a unix socket the filter listens on.  A
 * control client sends single bytes: 'p' pauses (the reply 'P' is sent
 * once every request passed down before the pause has been answered
 * from below), 'r' resumes (reply 'R'), blanks (space, tab, newline)
 * are ignored without a reply, anything else is answered 'X'.
 *
 * While paused, every request that reaches the filter, from any
 * connection, is queued (not failed) and passed down in order on
 * resume.  Requests are passed down as sub-requests so that their
 * answers are seen: that is how the filter knows when nothing is in
 * flight.  All of it runs on the loop: the control socket and its
 * clients are libev watchers with non-blocking I/O; a 'p' that waits
 * for requests to drain stops reading its client's commands until it
 * is answered.  When the server stops, the held requests fail with
 * ESHUTDOWN and the control clients are closed.
 *
 * Owns (static): the listening socket, the control clients, the pause
 * state, the count of requests in flight below and the queue of held
 * requests.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "filter.h"

#define CTL_IN 256              /* commands read at once */
#define CTL_OUT 256             /* replies not yet written: then read no more */

static char *sockpath;
static int listen_fd = -1;
static ev_io listen_w;

static bool paused, stopping;
static unsigned inflight;       /* passed down, not yet answered */

struct held {
  struct freq *r;
  struct held *next;
};
static struct held *held_head, *held_tail;

/* A client of the control socket. */
struct ctl {
  ev_io rw, ww;
  char in[CTL_IN];
  size_t inpos, inlen;
  char out[CTL_OUT];
  size_t outlen;
  bool waiting;                 /* a 'p' waits for the requests to drain */
  bool eof;                     /* no more commands will come */
  struct ctl *prev, *next;
};
static struct ctl *ctls;

/* Our watchers are not work the loop waits for at exit. */
static void
watch_start (ev_io *w)
{
  if (!ev_is_active (w)) {
    ev_io_start (loop, w);
    ev_unref (loop);
  }
}

/* Also drops an event fed to it and not yet delivered. */
static void
watch_stop (ev_io *w)
{
  if (ev_is_active (w))
    ev_ref (loop);
  ev_io_stop (loop, w);
}

/* ---- parameters and the socket ---- */

static int
pause_config (const char *key, const char *value)
{
  struct sockaddr_un sun;
  char *path;

  if (value[0] == '\0') {
    nbdkit_error ("pause-control=: give the path of the control socket to "
                  "create (e.g. pause-control=/tmp/pause.sock)");
    return -1;
  }
  if (value[0] == '/')
    path = strdup (value);
  else {
    char cwd[PATH_MAX];

    if (!getcwd (cwd, sizeof cwd)) {
      nbdkit_error ("pause-control=%s: cannot make the path absolute: "
                    "getcwd: %m (give an absolute path)", value);
      return -1;
    }
    if (asprintf (&path, "%s/%s", cwd, value) == -1)
      path = NULL;
  }
  if (!path) {
    nbdkit_error ("pause-control=%s: out of memory", value);
    return -1;
  }
  if (strlen (path) >= sizeof sun.sun_path) {
    nbdkit_error ("pause-control=%s: the path %s is %zu bytes, too long "
                  "for a unix socket (at most %zu): use a shorter one",
                  value, path, strlen (path), sizeof sun.sun_path - 1);
    free (path);
    return -1;
  }
  free (sockpath);
  sockpath = path;
  return 0;
}

static int
pause_config_complete (void)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  struct stat st;

  if (!sockpath) {
    nbdkit_error ("the pause filter needs pause-control=SOCKET (the unix "
                  "socket to create for the 'p' and 'r' commands)");
    return -1;
  }
  /* An old socket is replaced, as nbdkit does; anything else is not
   * ours to remove.
   */
  if (lstat (sockpath, &st) == 0) {
    if (!S_ISSOCK (st.st_mode)) {
      nbdkit_error ("pause-control=%s: exists and is not a socket: give "
                    "a path that is free or an old socket", sockpath);
      return -1;
    }
    unlink (sockpath);
  }
  listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd == -1) {
    nbdkit_error ("pause-control=%s: socket: %m", sockpath);
    return -1;
  }
  memcpy (sun.sun_path, sockpath, strlen (sockpath) + 1);
  if (bind (listen_fd, (struct sockaddr *) &sun, sizeof sun) == -1) {
    nbdkit_error ("pause-control=%s: cannot create the socket: %m "
                  "(is its directory there and writable?)", sockpath);
    close (listen_fd);
    listen_fd = -1;
    return -1;
  }
  if (listen (listen_fd, SOMAXCONN) == -1) {
    nbdkit_error ("pause-control=%s: listen: %m", sockpath);
    return -1;
  }
  return 0;
}

/* ---- requests ---- */

static void drained (void);

static void
on_reply (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct freq *r = opaque;

  inflight--;
  freq_reply_from (r, reply, payload, len);
  if (paused && inflight == 0)
    drained ();
}

static void
send_down (struct freq *r)
{
  void *data = r->data;

  r->data = NULL;
  inflight++;
  fnext_request (freq_below (r), r->type, r->flags, r->offset, r->count,
                 data, on_reply, r);
}

static void
pause_request (void *handle, struct freq *r)
{
  struct held *h;

  if (!paused || stopping) {
    send_down (r);
    return;
  }
  h = malloc (sizeof *h);
  if (!h) {
    /* Passing it on would break the pause. */
    freq_reply_error (r, HP_ENOMEM, "pause filter: out of memory");
    return;
  }
  h->r = r;
  h->next = NULL;
  if (held_tail)
    held_tail->next = h;
  else
    held_head = h;
  held_tail = h;
}

/* Resume, or the server stops: let the held requests go (in order), or
 * fail them.
 */
static void
release_held (bool fail)
{
  struct held *h = held_head;

  held_head = held_tail = NULL;
  while (h) {
    struct held *next = h->next;

    if (fail)
      freq_reply_error (h->r, HP_ESHUTDOWN, "pause filter: the server is "
                        "shutting down while paused");
    else
      send_down (h->r);
    free (h);
    h = next;
  }
}

/* ---- control clients ---- */

static void ctl_run (struct ctl *c);

static void
ctl_close (struct ctl *c)
{
  watch_stop (&c->rw);
  watch_stop (&c->ww);
  close (c->rw.fd);
  if (c->prev)
    c->prev->next = c->next;
  else
    ctls = c->next;
  if (c->next)
    c->next->prev = c->prev;
  free (c);
}

static void
reply (struct ctl *c, char ch)
{
  if (c->outlen < CTL_OUT)
    c->out[c->outlen++] = ch;
}

/* Write what can be written now; false if the client is gone. */
static bool
ctl_flush (struct ctl *c)
{
  while (c->outlen) {
    ssize_t n = send (c->ww.fd, c->out, c->outlen, MSG_NOSIGNAL);

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n <= 0)
      return false;
    memmove (c->out, c->out + n, c->outlen - (size_t) n);
    c->outlen -= (size_t) n;
  }
  return true;
}

/* The commands read and not yet done, in order, until one must wait. */
static void
ctl_run (struct ctl *c)
{
  while (!c->waiting && c->inpos < c->inlen && c->outlen < CTL_OUT) {
    char ch = c->in[c->inpos++];

    switch (ch) {
    case 'p':
      if (!paused)
        nbdkit_debug ("pause: pausing, %u requests in flight", inflight);
      paused = true;
      if (inflight > 0)
        c->waiting = true;      /* answered by drained () */
      else
        reply (c, 'P');
      break;
    case 'r':
      if (paused) {
        struct ctl *o;

        paused = false;
        nbdkit_debug ("pause: resumed");
        /* A pause still waiting to take effect is over as well. */
        for (o = ctls; o; o = o->next)
          if (o->waiting) {
            o->waiting = false;
            reply (o, 'R');
            if (o != c)
              ev_feed_event (loop, &o->ww, EV_CUSTOM);
          }
        release_held (false);
      }
      reply (c, 'R');
      break;
    case ' ': case '\t': case '\n': case '\r':
      break;
    default:
      reply (c, 'X');
    }
  }
  if (c->inpos == c->inlen)
    c->inpos = c->inlen = 0;
  if (!ctl_flush (c)) {
    ctl_close (c);
    return;
  }
  if (c->outlen)
    watch_start (&c->ww);
  else
    watch_stop (&c->ww);
  if (c->eof && !c->waiting && c->inlen == 0 && c->outlen == 0) {
    ctl_close (c);
    return;
  }
  /* Read more once the commands read are done and the replies out. */
  if (!c->eof && !c->waiting && c->inlen == 0 && c->outlen < CTL_OUT)
    watch_start (&c->rw);
  else
    watch_stop (&c->rw);
}

/* Nothing in flight while paused: the pauses waiting are done. */
static void
drained (void)
{
  struct ctl *c;

  nbdkit_debug ("pause: paused");
  for (c = ctls; c; c = c->next)
    if (c->waiting) {
      c->waiting = false;
      reply (c, 'P');
      /* Go on with its commands on the next turn of the loop, not
       * inside the reply that drained the filter.
       */
      ev_feed_event (loop, &c->ww, EV_CUSTOM);
    }
}

static void
on_ctl_read (struct ev_loop *l, ev_io *w, int revents)
{
  struct ctl *c = (struct ctl *) ((char *) w - offsetof (struct ctl, rw));
  ssize_t n = read (w->fd, c->in + c->inlen, sizeof c->in - c->inlen);

  if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0)
    c->eof = true;
  else
    c->inlen += (size_t) n;
  ctl_run (c);
}

static void
on_ctl_write (struct ev_loop *l, ev_io *w, int revents)
{
  struct ctl *c = (struct ctl *) ((char *) w - offsetof (struct ctl, ww));

  ctl_run (c);
}

static void
on_accept (struct ev_loop *l, ev_io *w, int revents)
{
  int fd = accept4 (listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  struct ctl *c;

  if (fd == -1)
    return;                     /* EAGAIN, or the client went: no matter */
  c = calloc (1, sizeof *c);
  if (!c) {
    nbdkit_error ("pause filter: out of memory for a control client");
    close (fd);
    return;
  }
  ev_io_init (&c->rw, on_ctl_read, fd, EV_READ);
  ev_io_init (&c->ww, on_ctl_write, fd, EV_WRITE);
  c->next = ctls;
  if (ctls)
    ctls->prev = c;
  ctls = c;
  watch_start (&c->rw);
}

/* ---- life cycle ---- */

static int
pause_get_ready (void)
{
  ev_io_init (&listen_w, on_accept, listen_fd, EV_READ);
  watch_start (&listen_w);
  return 0;
}

static void
pause_stopping (void)
{
  stopping = true;
  paused = false;
  release_held (true);
  watch_stop (&listen_w);
  while (ctls)
    ctl_close (ctls);
}

static void
pause_unload (void)
{
  watch_stop (&listen_w);
  while (ctls)
    ctl_close (ctls);
  if (listen_fd >= 0) {
    close (listen_fd);
    listen_fd = -1;
    unlink (sockpath);
  }
  free (sockpath);
  sockpath = NULL;
}

static const char *const keys[] = { "pause-control", NULL };

const struct filter pause_filter = {
  .name = "pause",
  .description = "pause and resume requests from a control socket",
  .config_help =
    "pause-control=SOCKET  a unix socket to create (required): send 'p'\n"
    "                      to pause (reply 'P' once no request is in\n"
    "                      flight), 'r' to resume (reply 'R')",
  .keys = keys,
  .config = pause_config,
  .config_complete = pause_config_complete,
  .get_ready = pause_get_ready,
  .stopping = pause_stopping,
  .unload = pause_unload,
  .pread = pause_request,
  .pwrite = pause_request,
  .flush = pause_request,
  .trim = pause_request,
  .zero = pause_request,
  .cache = pause_request,
  .extents = pause_request,
};
