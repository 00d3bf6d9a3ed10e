/* nbdkit front end: where clients come from.
 *
 * Owns the listening sockets (TCP on every address -i/-p resolve to,
 * IPv4 and IPv6, or only one with -4 / -6; or a unix socket, -U PATH, or -U - for a private
 * socket in a private directory removed at exit; or AF_VSOCK with
 * --vsock; or the sockets systemd passed), accepting, and -s (one
 * connection on stdin/stdout).  Never blocks: sockets are non-blocking
 * and accept runs from the loop.
 */

#include <config.h>

#ifdef HAVE_LIBSELINUX
#include <selinux/selinux.h>
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "internal.h"
#include "options.h"

#define MAX_LISTENERS 16
#define DEFAULT_PORT "10809"

struct listener {
  ev_io io;
  int fd;
  bool is_unix;
};

static struct listener listeners[MAX_LISTENERS];
static size_t nr_listeners;
static bool accepting;
unsigned nr_connections;

/* Out of descriptors (EMFILE, ENFILE) or memory: the waiting client
 * stays in the listen queue, and the listening socket stays readable,
 * so accepting again at once would spin.  Accepting pauses until a
 * connection ends or this timer fires, and the error is logged once
 * per pause.
 */
#define ACCEPT_BACKOFF 0.1
static ev_timer accept_backoff;
static bool backing_off;

static void
peer_name (const struct sockaddr_storage *ss, socklen_t len,
           char *buf, size_t buflen)
{
  char host[NI_MAXHOST], port[NI_MAXSERV];

  if (ss->ss_family == AF_UNIX) {
    snprintf (buf, buflen, "unix:");
    return;
  }
  if (ss->ss_family == AF_VSOCK) {
    const struct sockaddr_vm *vm = (const struct sockaddr_vm *) ss;

    snprintf (buf, buflen, "vsock:%u:%u", vm->svm_cid, vm->svm_port);
    return;
  }
  /* never-blocks: numeric only (NI_NUMERICHOST), no look-up */
  if (getnameinfo ((const struct sockaddr *) ss, len, host, sizeof host,
                   port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    snprintf (buf, buflen, "tcp:?");
  else if (ss->ss_family == AF_INET6)
    snprintf (buf, buflen, "tcp:[%s]:%s", host, port);
  else
    snprintf (buf, buflen, "tcp:%s:%s", host, port);
}

static void
set_accepting (bool on)
{
  size_t i;

  if (accepting == on)
    return;
  accepting = on;
  for (i = 0; i < nr_listeners; ++i) {
    if (on)
      ev_io_start (loop, &listeners[i].io);
    else
      ev_io_stop (loop, &listeners[i].io);
  }
}

/* A backend whose thread model is serialize_connections serves one
 * client at a time: stop accepting while one is connected.
 */
static bool
may_accept (void)
{
  return !server_quitting () && !backing_off &&
         !(bproc_info (bproc_first ())->thread_model ==
           THREAD_MODEL_SERIALIZE_CONNECTIONS &&
           nr_connections > 0);
}

static void
on_accept_backoff (struct ev_loop *l, ev_timer *w, int revents)
{
  backing_off = false;
  if (nr_listeners && may_accept ())
    set_accepting (true);
}

void
listen_conn_ended (void)
{
  if (backing_off) {
    ev_timer_stop (loop, &accept_backoff);
    backing_off = false;
  }
  if (nr_listeners && may_accept ())
    set_accepting (true);
}

static void
on_accept (struct ev_loop *l, ev_io *w, int revents)
{
  struct listener *lst = (struct listener *) w;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char peer[NI_MAXHOST + NI_MAXSERV + 16];
  int fd, one = 1;

  fd = accept4 (lst->fd, (struct sockaddr *) &ss, &len,
                SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd == -1) {
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
        errno == ENOMEM) {
      nbdkit_error ("accept: %m (accepting again when a connection ends, "
                    "or in %g s)", ACCEPT_BACKOFF);
      backing_off = true;
      set_accepting (false);
      ev_timer_init (&accept_backoff, on_accept_backoff, ACCEPT_BACKOFF, 0);
      ev_timer_start (loop, &accept_backoff);
    }
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
             errno != ECONNABORTED)
      nbdkit_error ("accept: %m");
    return;
  }
  if (!lst->is_unix)
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  peer_name (&ss, len, peer, sizeof peer);
  conn_new (fd, fd, peer);
  if (!may_accept ())
    set_accepting (false);
}

static void
add_listener (int fd, bool is_unix)
{
  struct listener *lst;

  if (nr_listeners == MAX_LISTENERS)
    die ("too many addresses to listen on (the limit is %d)", MAX_LISTENERS);
  lst = &listeners[nr_listeners++];
  lst->fd = fd;
  lst->is_unix = is_unix;
  ev_io_init (&lst->io, on_accept, fd, EV_READ);
}

/* --selinux-label: can it be applied here?  Dies if not. */
void
listen_check_selinux_label (void)
{
#ifdef HAVE_LIBSELINUX
  if (is_selinux_enabled () <= 0)
    die ("--selinux-label=%s: SELinux is not enabled on this system, so "
         "the sockets cannot be labelled (leave the option out)",
         opt.selinux_label);
  if (security_check_context_raw (opt.selinux_label) == -1)
    die ("--selinux-label=%s: not a valid SELinux context here (for "
         "example system_u:object_r:svirt_socket_t:s0)", opt.selinux_label);
#else
  die ("--selinux-label=%s: this nbdkit was built without SELinux "
       "support (libselinux), so it cannot label its sockets",
       opt.selinux_label);
#endif
}

/* Sockets made between label_sockets (true) and label_sockets (false)
 * get the --selinux-label context.
 */
static void
label_sockets (bool on)
{
#ifdef HAVE_LIBSELINUX
  if (!opt.selinux_label)
    return;
  if (setsockcreatecon_raw (on ? opt.selinux_label : NULL) == -1) {
    if (on)
      die ("--selinux-label=%s: setsockcreatecon: %m", opt.selinux_label);
    nbdkit_debug ("setsockcreatecon (NULL): %m");
  }
#else
  (void) on;
#endif
}

static void
listen_unix (void)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  const char *path = opt.unixsocket;
  char *priv = NULL;
  int fd, r;
  mode_t old_umask;

  if (strcmp (path, "-") == 0) {
    const char *tmpdir = getenv ("TMPDIR");
    char *dir;

    if (asprintf (&dir, "%s/nbdkitXXXXXX",
                  tmpdir && *tmpdir ? tmpdir : "/tmp") == -1)
      die ("out of memory");
    if (!mkdtemp (dir))
      die ("-U -: cannot make a private directory %s: %m", dir);
    opt.private_dir = dir;
    if (asprintf (&priv, "%s/socket", dir) == -1)
      die ("out of memory");
    path = opt.unixsocket = priv;
  }
  if (strlen (path) >= sizeof addr.sun_path)
    die ("-U %s: the socket path is too long (at most %zu bytes)",
         path, sizeof addr.sun_path - 1);
  strcpy (addr.sun_path, path);

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1)
    die ("socket: %m");
  /* The socket file's mode is fixed when bind creates it, from the
   * umask: --unix-socket-mode exactly, else nbdkit's 0755 less the
   * caller's umask (connecting needs write permission, so only the
   * owner may connect).  The umask is the process's: nothing else
   * creates files meanwhile (the filters' worker threads, if a filter
   * started them, only use files already open).
   */
  old_umask = umask (0);
  umask (opt.unix_socket_mode >= 0 ? ~(mode_t) opt.unix_socket_mode & 0777
                                   : old_umask | 022);
  r = bind (fd, (struct sockaddr *) &addr, sizeof addr);
  umask (old_umask);
  if (r == -1)
    die ("-U %s: bind: %m%s", path,
         errno == EADDRINUSE
         ? " (the file exists: nbdkit leaves its socket file at exit; "
           "if no server is using it, remove it first)" : "");
  if (listen (fd, SOMAXCONN) == -1)
    die ("-U %s: listen: %m", path);
  add_listener (fd, true);
  nbdkit_debug ("listening on unix socket %s", path);
}

static void
listen_tcp (void)
{
  struct addrinfo hints = {
    .ai_family = listen_family,         /* -4, -6, or both */
    .ai_socktype = SOCK_STREAM,
    .ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
  };
  struct addrinfo *ai, *a;
  const char *port = opt.port ? opt.port : DEFAULT_PORT;
  int err, one = 1;
  char what[256];

  /* never-blocks: before the loop runs */
  err = getaddrinfo (opt.ipaddr, port, &hints, &ai);
  if (err)
    die ("cannot listen on %s port %s%s: %s (use -p with a port number "
         "or service name, -i with an address%s)",
         opt.ipaddr ? opt.ipaddr : "all addresses", port,
         listen_family == AF_INET ? " over IPv4 (-4)"
         : listen_family == AF_INET6 ? " over IPv6 (-6)" : "",
         err == EAI_SYSTEM ? strerror (errno) : gai_strerror (err),
         listen_family != AF_UNSPEC ? " of that family" : "");

  for (a = ai; a; a = a->ai_next) {
    int fd = socket (a->ai_family, a->ai_socktype | SOCK_NONBLOCK |
                     SOCK_CLOEXEC, a->ai_protocol);

    if (fd == -1) {
      if (errno == EAFNOSUPPORT)
        continue;
      die ("socket: %m");
    }
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->ai_family == AF_INET6)
      setsockopt (fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    peer_name ((struct sockaddr_storage *) a->ai_addr, a->ai_addrlen,
               what, sizeof what);
    if (bind (fd, a->ai_addr, a->ai_addrlen) == -1) {
      if (errno == EADDRNOTAVAIL) {   /* e.g. IPv6 disabled */
        close (fd);
        continue;
      }
      die ("cannot listen on %s: bind: %m%s", what + 4,
           errno == EADDRINUSE
           ? " (another server is using the port: choose another with -p)"
           : "");
    }
    if (listen (fd, SOMAXCONN) == -1)
      die ("cannot listen on %s: %m", what + 4);
    add_listener (fd, false);
    nbdkit_debug ("listening on %s", what + 4);
  }
  freeaddrinfo (ai);
  if (nr_listeners == 0)
    die ("no address to listen on for %s port %s%s",
         opt.ipaddr ? opt.ipaddr : "all addresses", port,
         listen_family == AF_INET ? " over IPv4 (-4)"
         : listen_family == AF_INET6 ? " over IPv6 (-6)" : "");
}

static void
listen_vsock (void)
{
  struct sockaddr_vm addr = {
    .svm_family = AF_VSOCK,
    .svm_cid = VMADDR_CID_ANY,
  };
  unsigned long port = 10809;
  char *end;
  int fd;

  if (opt.port) {
    errno = 0;
    port = strtoul (opt.port, &end, 10);
    if (*end || errno || port > UINT32_MAX || !*opt.port)
      die ("--vsock -p %s: a vsock port is a number from 0 to 4294967295",
           opt.port);
  }
  addr.svm_port = (unsigned) port;
  fd = socket (AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1)
    die ("--vsock: this kernel cannot make AF_VSOCK sockets: %m (load "
         "the vsock modules, e.g. vmw_vsock_virtio_transport, or run in a "
         "virtual machine)");
  if (bind (fd, (struct sockaddr *) &addr, sizeof addr) == -1)
    die ("--vsock: bind port %lu: %m", port);
  if (listen (fd, SOMAXCONN) == -1)
    die ("--vsock: listen: %m");
  add_listener (fd, true);
  nbdkit_debug ("listening on vsock port %lu", port);
}

void
listen_start (void)
{
  label_sockets (true);
  if (opt.vsock)
    listen_vsock ();
  else if (opt.unixsocket)
    listen_unix ();
  else
    listen_tcp ();
  label_sockets (false);
  set_accepting (true);
}

void
listen_adopt (int first_fd, unsigned n)
{
  unsigned i;

  for (i = 0; i < n; ++i) {
    int fd = first_fd + (int) i;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int type = 0;
    socklen_t tlen = sizeof type;

    if (getsockname (fd, (struct sockaddr *) &ss, &len) == -1 ||
        getsockopt (fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == -1 ||
        type != SOCK_STREAM)
      die ("socket activation: file descriptor %d is not a stream socket",
           fd);
    fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
    fcntl (fd, F_SETFD, FD_CLOEXEC);
    add_listener (fd, ss.ss_family != AF_INET && ss.ss_family != AF_INET6);
    nbdkit_debug ("socket activation: listening on file descriptor %d", fd);
  }
  set_accepting (true);
}

void
listen_stop (void)
{
  size_t i;

  if (backing_off) {
    ev_timer_stop (loop, &accept_backoff);
    backing_off = false;
  }
  set_accepting (false);
  for (i = 0; i < nr_listeners; ++i)
    close (listeners[i].fd);
  nr_listeners = 0;
}

void
listen_cleanup (void)
{
  if (opt.private_dir) {
    unlink (opt.unixsocket);
    rmdir (opt.private_dir);
    free (opt.private_dir);
    opt.private_dir = NULL;
  }
}

void
serve_single (void)
{
  int rfd, wfd;

  /* Keep the client on fresh descriptors and put /dev/null on 0 and 1,
   * so nothing else (the backend, messages) can write into the stream.
   */
  rfd = fcntl (STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
  wfd = fcntl (STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  if (rfd == -1 || wfd == -1)
    die ("-s: %m");
  {
    int null = open ("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      dup2 (null, STDIN_FILENO);
      dup2 (null, STDOUT_FILENO);
      if (null > STDERR_FILENO)
        close (null);
    }
  }
  fcntl (rfd, F_SETFL, fcntl (rfd, F_GETFL) | O_NONBLOCK);
  fcntl (wfd, F_SETFL, fcntl (wfd, F_GETFL) | O_NONBLOCK);
  conn_new (rfd, wfd, "stdin");
}
