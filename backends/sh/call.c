/* backends/sh/call.c: running one method of a script, for the sh and
 * eval backends.
 *
 * Owns the child process of a call: it is forked with three pipes
 * (stdin, stdout, stderr) and a fourth, close-on-exec one that tells
 * the parent whether exec failed.  The child gets the descriptors 0, 1
 * and 2 only (the helper channel and everything else are closed),
 * default SIGPIPE and an empty signal mask.  The parent writes the
 * input and reads both outputs in one poll loop, so that a script that
 * writes a lot before reading (or the reverse) never deadlocks, then
 * turns the exit status into a call_status, with the errno name and
 * message of stderr on error (parsed by parse.c).  Many calls may run
 * at once, from any worker thread: nothing here is shared but the
 * one-time shutdown request.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "call.h"
#include "parse.h"

/* How much of a script's stderr is kept for the error message (the
 * rest is read and dropped).
 */
#define STDERR_KEEP (64 * 1024)
/* Read and write the pipes in pieces of this size. */
#define PIPE_CHUNK (64 * 1024)

/* ---- a growing buffer with a limit ---- */

struct buf {
  char *p;
  size_t len, cap, max;
  bool overflow;                /* more than max was offered */
};

static int
buf_append (struct buf *b, const char *data, size_t n)
{
  if (n > b->max - b->len) {
    b->overflow = true;
    n = b->max - b->len;
  }
  if (n == 0)
    return 0;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    char *p;

    while (cap < b->len + n + 1)
      cap *= 2;
    if (cap > b->max + 1)
      cap = b->max + 1;
    p = realloc (b->p, cap);
    if (!p)
      return -1;
    b->p = p;
    b->cap = cap;
  }
  memcpy (b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

__thread int call_disconnect;

/* Exit statuses 4 and 5: ask the server to shut down, as
 * nbdkit_shutdown() does for a plugin.  The helper protocol has no
 * message for it, so the backend sends its server (the parent) the
 * signal of a graceful shutdown, once.
 */
static void
request_shutdown (const char *label, const char *method)
{
  static atomic_bool done;
  pid_t server = getppid ();

  if (atomic_exchange (&done, true))
    return;
  nbdkit_debug ("%s%s%s: the script asked the server to shut down",
                label, *label ? ": " : "", method);
  if (server > 1 && kill (server, SIGTERM) == -1)
    fprintf (stderr, "error: %s%s%s: cannot ask the server to shut down: "
             "%s\n", label, *label ? ": " : "", method, strerror (errno));
}

/* ---- the child, between fork and exec: async-signal-safe only ---- */

static void
close_from (int first, int last)
{
#ifdef SYS_close_range
  if (syscall (SYS_close_range, (unsigned) first, (unsigned) last, 0) == 0)
    return;
#endif
  if (last > 65536)
    last = 65536;
  for (; first <= last; ++first)
    close (first);
}

static void __attribute__ ((noreturn))
run_child (const char *const argv[], const char *const sh_argv[],
           char *const envp[], int in_r, int out_w, int err_w, int exec_w)
{
  sigset_t none;
  int e;

  if (dup2 (in_r, STDIN_FILENO) == -1 || dup2 (out_w, STDOUT_FILENO) == -1 ||
      dup2 (err_w, STDERR_FILENO) == -1)
    goto fail;
  /* Everything above 2 goes (the channel above all), except the pipe
   * that reports a failed exec, which closes itself on exec.
   */
  if (exec_w > 3)
    close_from (3, exec_w - 1);
  close_from (exec_w + 1, INT_MAX);
  signal (SIGPIPE, SIG_DFL);
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);

  execve (argv[0], (char **) argv, envp);
  /* No "#!" line: run it with the shell, as execvp(3) does. */
  if (errno == ENOEXEC)
    execve (sh_argv[0], (char **) sh_argv, envp);
 fail:
  e = errno;
  if (write (exec_w, &e, sizeof e) == -1) { /* nothing more to do */ }
  _exit (127);
}

/* ---- the parent ---- */

static int
set_nonblock (int fd)
{
  int fl = fcntl (fd, F_GETFL);

  return fl == -1 ? -1 : fcntl (fd, F_SETFL, fl | O_NONBLOCK);
}

static void
close_fd (int *fd)
{
  if (*fd >= 0) {
    close (*fd);
    *fd = -1;
  }
}

/* Feed in to fd_in and drain fd_out and fd_err until both outputs are
 * closed.  Returns 0, or -1 with errno (and the pipes closed).
 */
static int
exchange (int *fd_in, int *fd_out, int *fd_err,
          const char *in, size_t inlen, struct buf *out, bool keep_out,
          struct buf *err)
{
  static __thread char chunk[PIPE_CHUNK];
  size_t done = 0;

  if (inlen == 0)
    close_fd (fd_in);
  if ((*fd_in >= 0 && set_nonblock (*fd_in) == -1) ||
      set_nonblock (*fd_out) == -1 || set_nonblock (*fd_err) == -1)
    return -1;

  while (*fd_out >= 0 || *fd_err >= 0) {
    struct pollfd pfd[3] = {
      { .fd = *fd_in, .events = POLLOUT },
      { .fd = *fd_out, .events = POLLIN },
      { .fd = *fd_err, .events = POLLIN },
    };
    ssize_t r;

    if (poll (pfd, 3, -1) == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (*fd_in >= 0 && pfd[0].revents) {
      size_t n = inlen - done < PIPE_CHUNK ? inlen - done : PIPE_CHUNK;

      r = write (*fd_in, in + done, n);
      if (r > 0)
        done += (size_t) r;
      /* A script may exit or close stdin without reading all of it:
       * that is its business (EPIPE), not an error of the call.
       */
      if ((r == -1 && errno != EAGAIN && errno != EINTR) || done == inlen)
        close_fd (fd_in);
    }
    if (*fd_out >= 0 && pfd[1].revents) {
      r = read (*fd_out, chunk, sizeof chunk);
      if (r > 0 && keep_out && buf_append (out, chunk, (size_t) r) == -1)
        return -1;
      if (r == 0 || (r == -1 && errno != EAGAIN && errno != EINTR))
        close_fd (fd_out);
    }
    if (*fd_err >= 0 && pfd[2].revents) {
      r = read (*fd_err, chunk, sizeof chunk);
      if (r > 0 && buf_append (err, chunk, (size_t) r) == -1)
        return -1;
      if (r == 0 || (r == -1 && errno != EAGAIN && errno != EINTR))
        close_fd (fd_err);
    }
  }
  close_fd (fd_in);
  return 0;
}

static pid_t
wait_for (pid_t pid, int *status)
{
  pid_t r;

  while ((r = waitpid (pid, status, 0)) == -1 && errno == EINTR)
    ;
  return r;
}

enum call_status
call_run (const char *const argv[], char *const envp[],
          const char *label, const char *method, struct call_io *io)
{
  const char **sh_argv;
  int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
  int ex[2] = { -1, -1 };
  struct buf obuf = { .max = CALL_MAX_OUTPUT };
  struct buf ebuf = { .max = STDERR_KEEP };
  bool keep_out = io && io->want_out;
  enum call_status ret = CALL_ERROR;
  size_t n, i;
  pid_t pid;
  int status, exec_errno = 0;

  call_disconnect = 0;
  ssize_t r;

  if (io) {
    io->out = NULL;
    io->outlen = 0;
    if (io->max_out)
      obuf.max = io->max_out;
  }
  if (keep_out && io->max_out) {
    /* The size is known (pread): one allocation. */
    obuf.p = malloc (io->max_out + 1);
    if (!obuf.p) {
      nbdkit_error ("%s: out of memory", method);
      nbdkit_set_error (ENOMEM);
      return CALL_ERROR;
    }
    obuf.cap = io->max_out + 1;
    obuf.p[0] = '\0';
  }

  /* Prepared before fork: the child may not allocate. */
  for (n = 0; argv[n]; ++n)
    ;
  sh_argv = malloc ((n + 2) * sizeof *sh_argv);
  if (!sh_argv) {
    nbdkit_error ("%s: out of memory", method);
    nbdkit_set_error (ENOMEM);
    free (obuf.p);
    return CALL_ERROR;
  }
  sh_argv[0] = "/bin/sh";
  for (i = 0; i <= n; ++i)
    sh_argv[i + 1] = argv[i];

  if (pipe2 (in, O_CLOEXEC) == -1 || pipe2 (out, O_CLOEXEC) == -1 ||
      pipe2 (err, O_CLOEXEC) == -1 || pipe2 (ex, O_CLOEXEC) == -1) {
    nbdkit_error ("%s: cannot run %s: pipe: %m", method, argv[0]);
    goto out;
  }
  pid = fork ();
  if (pid == -1) {
    nbdkit_error ("%s: cannot run %s: fork: %m", method, argv[0]);
    goto out;
  }
  if (pid == 0)
    run_child (argv, sh_argv, envp, in[0], out[1], err[1], ex[1]);

  close_fd (&in[0]);
  close_fd (&out[1]);
  close_fd (&err[1]);
  close_fd (&ex[1]);

  /* EOF: exec succeeded.  An int: exec failed with that errno. */
  while ((r = read (ex[0], &exec_errno, sizeof exec_errno)) == -1 &&
         errno == EINTR)
    ;
  close_fd (&ex[0]);
  if (r == (ssize_t) sizeof exec_errno) {
    wait_for (pid, &status);
    errno = exec_errno;
    nbdkit_error ("%s%s%s: cannot run %s: %m", label, *label ? ": " : "",
                  method, argv[0]);
    nbdkit_set_error (EIO);
    goto out;
  }

  if (exchange (&in[1], &out[0], &err[0],
                io ? io->in : NULL, io ? io->inlen : 0,
                &obuf, keep_out, &ebuf) == -1) {
    int e = errno;

    kill (pid, SIGKILL);
    wait_for (pid, &status);
    errno = e;
    nbdkit_error ("%s%s%s: talking to the script: %m", label,
                  *label ? ": " : "", method);
    nbdkit_set_error (e == ENOMEM ? ENOMEM : EIO);
    goto out;
  }
  if (wait_for (pid, &status) == -1) {
    nbdkit_error ("%s%s%s: waitpid: %m", label, *label ? ": " : "", method);
    nbdkit_set_error (EIO);
    goto out;
  }

  if (WIFSIGNALED (status)) {
    char what[64];

    snprintf (what, sizeof what, "killed by signal %d", WTERMSIG (status));
    parse_stderr (label, method, ebuf.p, EIO, what);
    goto out;
  }

  switch (WEXITSTATUS (status)) {
  case 0:
  case 4:                       /* shut down, and the call succeeded */
  case 7:                       /* soft disconnect, and success */
    if (WEXITSTATUS (status) == 4)
      request_shutdown (label, method);
    if (WEXITSTATUS (status) == 7) {
      call_disconnect = 7;
      nbdkit_debug ("%s%s%s: exit status 7: the request succeeds, later "
                    "ones of this client fail with ESHUTDOWN", label,
                    *label ? ": " : "", method);
    }
    if (ebuf.len)
      nbdkit_debug ("%s%s%s: stderr: %s", label, *label ? ": " : "",
                    method, ebuf.p);
    if (keep_out && obuf.overflow) {
      nbdkit_error ("%s%s%s: the script printed more than %zu bytes",
                    label, *label ? ": " : "", method, obuf.max);
      nbdkit_set_error (EIO);
      break;
    }
    if (keep_out) {
      if (!obuf.p) {
        obuf.p = malloc (1);
        if (!obuf.p) {
          nbdkit_set_error (ENOMEM);
          break;
        }
        obuf.p[0] = '\0';
      }
      io->out = obuf.p;
      io->outlen = obuf.len;
      obuf.p = NULL;
    }
    ret = CALL_OK;
    break;
  case 2:
    ret = CALL_MISSING;
    break;
  case 3:
    ret = CALL_FALSE;
    break;
  case 5:                       /* shut down, and the call failed */
    request_shutdown (label, method);
    parse_stderr (label, method, ebuf.p, ESHUTDOWN, NULL);
    break;
  case 6:                       /* disconnect the client at once */
    /* stdout and stderr are ignored, as in nbdkit; the backend cannot
     * drop the connection, so the request fails with ESHUTDOWN.
     */
    call_disconnect = 6;
    parse_stderr (label, method, NULL, ESHUTDOWN,
                  "the script asked to disconnect the client (exit "
                  "status 6)");
    break;
  case 8:                       /* soft disconnect, and the call failed */
    call_disconnect = 8;
    parse_stderr (label, method, ebuf.p, ESHUTDOWN, NULL);
    break;
  default: {
    char what[64];
    int code = WEXITSTATUS (status);
    const char *text = ebuf.p ? ebuf.p + strspn (ebuf.p, " \t\r\n") : "";

    /* 1 and 16-255 are errors; 9-15 are reserved, and fail too.  The
     * exit status is worth saying when stderr says nothing.
     */
    if (code >= 9 && code <= 15)
      snprintf (what, sizeof what, "exit status %d is reserved", code);
    else
      snprintf (what, sizeof what, "failed with exit status %d", code);
    parse_stderr (label, method, ebuf.p, EIO,
                  (code >= 9 && code <= 15) || !*text ? what : NULL);
  }
  }

 out:
  close_fd (&in[0]); close_fd (&in[1]);
  close_fd (&out[0]); close_fd (&out[1]);
  close_fd (&err[0]); close_fd (&err[1]);
  close_fd (&ex[0]); close_fd (&ex[1]);
  free (obuf.p);
  free (ebuf.p);
  free (sh_argv);
  return ret;
}
