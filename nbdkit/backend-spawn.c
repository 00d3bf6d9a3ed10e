/* nbdkit front end: a backend's process.
 *
 * Owns struct spawn_state, the part of a backend_proc (backend-proc.h)
 * that is its process; and finding the backend executable, starting
 * it (socketpair, fork, exec with the channel on fd 3, stdin and stdout on /dev/null, stderr
 * on a pipe relayed to the log, no other fd, the server's environment
 * (or a minimal one with --backend-clean-environment),
 * its own process group, no new privileges, SIGTERM when the server
 * dies, optionally another user and group and resource limits),
 * signalling it (backend_kill, backend_terminate), and noticing the
 * process's end, which it reports to the supervisor.  Decisions
 * (restart, stop) are the supervisor's.  What the backend says of
 * itself in HELLO is backend-info.c's.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend-proc.h"
#include "options.h"

#define CHANNEL_FD 3

pid_t
backend_pid (const struct backend_proc *bp)
{
  return bp->spawn.pid;
}

void
spawn_init (struct backend_proc *bp)
{
  bp->spawn.pid = -1;
  bp->spawn.stderr_fd = -1;
}

static bool
is_executable_file (const char *path)
{
  struct stat st;

  return stat (path, &st) == 0 && S_ISREG (st.st_mode) &&
         access (path, X_OK) == 0;
}

/* The directory of backends: $NBDKIT_BACKEND_DIR, else the build tree's
 * when this binary runs from the build tree, else the installed one.
 * --dump-config reports it (as backenddir), so that the bash completion
 * lists the backends this binary runs.
 */
const char *
backend_dir (void)
{
  const char *env = getenv ("NBDKIT_BACKEND_DIR");
  static char self[PATH_MAX];
  ssize_t r;

  if (env && *env)
    return env;
  r = readlink ("/proc/self/exe", self, sizeof self - 1);
  if (r > 0) {
    self[r] = '\0';
    if (strcmp (self, ABS_TOP_BUILDDIR "/nbdkit/nbdkit") == 0)
      return ABS_TOP_BUILDDIR "/backends";
  }
  return BACKENDDIR;
}

/* nbdkit's names for its plugins -- a path ending in
 * nbdkit-NAME-plugin.so, nbdkit-NAME-plugin.so, nbdkit-NAME-plugin --
 * name the backend NAME.  Returns NAME (allocated), or NULL.
 */
static char *
plugin_alias (const char *name)
{
  const char *base = strrchr (name, '/');
  size_t len;
  char *alias;

  base = base ? base + 1 : name;
  if (strncmp (base, "nbdkit-", 7) != 0)
    return NULL;
  base += 7;
  len = strlen (base);
  if (len > 3 && strcmp (base + len - 3, ".so") == 0)
    len -= 3;
  if (len <= 7 || strncmp (base + len - 7, "-plugin", 7) != 0)
    return NULL;
  alias = strndup (base, len - 7);
  if (!alias)
    die ("out of memory");
  return alias;
}

static const char *backends_found (const char *dir);

char *
backend_locate (const char *name)
{
  const char *dir;
  char *path, *alias;
  const char *p;

  /* An nbdkit plugin's name, unless it is the path of an executable:
   * the backend of that name, which also names it for -D flags.
   */
  if (!(strchr (name, '/') && is_executable_file (name)) &&
      (alias = plugin_alias (name)) != NULL) {
    nbdkit_debug ("%s: nbdkit's %s plugin: using the %s backend",
                  name, alias, alias);
    opt.backend_name = name = alias;
  }

  if (strchr (name, '/')) {
    if (!is_executable_file (name))
      die ("%s: the backend is not an executable file: %s", name,
           access (name, F_OK) == 0 ? "not executable" : strerror (errno));
    path = realpath (name, NULL);
    if (!path)
      die ("%s: %m", name);
    return path;
  }

  for (p = name; *p; ++p)
    if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') ||
          ('0' <= *p && *p <= '9') || *p == '_' || *p == '-'))
      die ("backend name '%s' is not valid: use a name such as 'memory' or "
           "a path containing '/'", name);
  if (*name == '\0' || *name == '-')
    die ("backend name '%s' is not valid", name);

  dir = backend_dir ();
  if (asprintf (&path, "%s/%s/nbdkit-%s-backend", dir, name, name) == -1)
    die ("out of memory");
  if (is_executable_file (path))
    return path;
  free (path);
  if (asprintf (&path, "%s/nbdkit-%s-backend", dir, name) == -1)
    die ("out of memory");
  if (is_executable_file (path))
    return path;
  die ("backend '%s' not found: no executable %s/%s/nbdkit-%s-backend "
       "or %s/nbdkit-%s-backend; the backends in %s are: %s (or give a "
       "backend's path, such as ./nbdkit-%s-backend)",
       name, dir, name, name, dir, name, dir, backends_found (dir), name);
}

/* The names of the backends in DIR, in either layout, sorted and
 * separated by ", "; "none" if there are none.  For the message of an
 * unknown backend, just before exiting: the string is never freed.
 */
static int
compare_names (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static const char *
backends_found (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, i, len = 0;
  char *list, *p;

  while (d && (e = readdir (d)) != NULL) {
    char *path = NULL, *name;
    size_t l = strlen (e->d_name);
    bool found;

    if (e->d_name[0] == '.')
      continue;
    if (l > 15 && strncmp (e->d_name, "nbdkit-", 7) == 0 &&
        strcmp (e->d_name + l - 8, "-backend") == 0) {
      name = strndup (e->d_name + 7, l - 15);
      found = name && asprintf (&path, "%s/%s", dir, e->d_name) != -1;
    }
    else {
      name = strdup (e->d_name);
      found = name && asprintf (&path, "%s/%s/nbdkit-%s-backend",
                                dir, name, name) != -1;
    }
    if (found && is_executable_file (path) &&
        (names = realloc (names, (n + 1) * sizeof *names)) != NULL) {
      names[n++] = name;
      len += strlen (name) + 2;
    }
    else
      free (name);
    free (path);
    if (!names)
      n = 0;
  }
  if (d)
    closedir (d);
  if (n == 0)
    return "none";
  qsort (names, n, sizeof *names, compare_names);
  list = p = malloc (len + 1);
  if (!list)
    return "(out of memory)";
  for (i = 0; i < n; ++i)
    p += sprintf (p, "%s%s", i ? ", " : "", names[i]);
  return list;
}

/* ---- the child side, between fork and exec ---- */

static const char *const pass_env[] = {
  "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME",
  "LD_LIBRARY_PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
  "MALLOC_CHECK_", "MALLOC_PERTURB_", "PYTHONPATH", "PERL5LIB",
  NULL
};

/* The backend's environment, made before fork: the server's, as
 * nbdkit's in-process plugins see it, or with
 * --backend-clean-environment only the variables of pass_env and LC_*;
 * in both, NBDKIT_HELPER_FD names the channel (any inherited value of
 * it is replaced).  Only the array is allocated: free it, not the
 * strings.
 */
static char **
backend_environment (void)
{
  extern char **environ;
  size_t n = 0, i, j;
  char **env;
  const size_t fdlen = strlen (HP_ENV_FD);

  for (i = 0; environ[i]; ++i)
    ;
  env = calloc (i + 2, sizeof *env);
  if (!env)
    return NULL;
  for (i = 0; environ[i]; ++i) {
    const char *e = environ[i];

    if (strncmp (e, HP_ENV_FD, fdlen) == 0 && e[fdlen] == '=')
      continue;
    if (!backend_clean_environment || strncmp (e, "LC_", 3) == 0) {
      env[n++] = environ[i];
      continue;
    }
    for (j = 0; pass_env[j]; ++j) {
      size_t len = strlen (pass_env[j]);

      if (strncmp (e, pass_env[j], len) == 0 && e[len] == '=') {
        env[n++] = environ[i];
        break;
      }
    }
  }
  env[n++] = (char *) HP_ENV_FD "=3";
  env[n] = NULL;
  return env;
}

static void
close_other_fds (void)
{
  DIR *d = opendir ("/proc/self/fd");
  struct dirent *e;
  int keep;

  if (!d) {
    int fd;

    for (fd = CHANNEL_FD + 1; fd < 1024; ++fd)
      close (fd);
    return;
  }
  keep = dirfd (d);
  while ((e = readdir (d)) != NULL) {
    int fd = atoi (e->d_name);

    if (e->d_name[0] != '.' && fd > CHANNEL_FD && fd != keep)
      close (fd);
  }
  closedir (d);
}

/* --backend-rlimit, --backend-group, --backend-user.  Failing any of
 * them is fatal: the backend must not run with more than was asked.
 */
static void
drop_privileges (void)
{
  size_t i;

  for (i = 0; i < opt.nr_rlimits; ++i) {
    struct rlimit rl = {
      .rlim_cur = opt.rlimits[i].value,
      .rlim_max = opt.rlimits[i].value,
    };
    if (setrlimit (opt.rlimits[i].resource, &rl) == -1) {
      dprintf (STDERR_FILENO, "error: setrlimit: %s\n", strerror (errno));
      _exit (126);
    }
  }
  if (opt.backend_gid_set) {
    if (setgroups (1, &opt.backend_gid) == -1 ||
        setresgid (opt.backend_gid, opt.backend_gid, opt.backend_gid) == -1) {
      dprintf (STDERR_FILENO, "error: cannot change to group %d: %s\n",
               (int) opt.backend_gid, strerror (errno));
      _exit (126);
    }
  }
  if (opt.backend_uid_set) {
    if (setresuid (opt.backend_uid, opt.backend_uid, opt.backend_uid) == -1) {
      dprintf (STDERR_FILENO, "error: cannot change to user %d: %s\n",
               (int) opt.backend_uid, strerror (errno));
      _exit (126);
    }
  }
}

static void __attribute__ ((noreturn))
exec_backend (int chan, int err_w, pid_t server, char **env)
{
  sigset_t all;
  int devnull;
  char *argv[2] = { opt.backend_path, NULL };

  /* Move the channel to fd 3 and stderr onto the pipe.  Both source fds
   * are above 3 (see backend_spawn), so nothing is overwritten early.
   */
  if (dup2 (chan, CHANNEL_FD) == -1 || dup2 (err_w, STDERR_FILENO) == -1)
    _exit (127);
  devnull = open ("/dev/null", O_RDWR);
  if (devnull == -1 || dup2 (devnull, STDIN_FILENO) == -1 ||
      dup2 (devnull, STDOUT_FILENO) == -1)
    _exit (127);
  close_other_fds ();

  signal (SIGPIPE, SIG_DFL);
  signal (SIGINT, SIG_DFL);
  signal (SIGTERM, SIG_DFL);
  signal (SIGQUIT, SIG_DFL);
  sigemptyset (&all);
  sigprocmask (SIG_SETMASK, &all, NULL);
  setpgid (0, 0);
  drop_privileges ();
  prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  /* SIGTERM when the server dies, even of SIGKILL: the backend library
   * then kills the backend's process group (nbdkit-supervision(1)).
   * Set after the change of user, which would clear it; exec keeps it
   * (no set-user-ID exec under no_new_privs).  It fires when the thread
   * that forked ends: the server forks from its main thread only.  If
   * the server died before it took effect, there is nobody to serve.
   */
  if (prctl (PR_SET_PDEATHSIG, SIGTERM) == -1) {
    dprintf (STDERR_FILENO, "error: prctl PR_SET_PDEATHSIG: %s\n",
             strerror (errno));
    _exit (126);
  }
  if (getppid () != server)
    _exit (127);

  execve (opt.backend_path, argv, env);
  dprintf (STDERR_FILENO, "cannot run %s: %s\n", opt.backend_path,
           strerror (errno));
  _exit (127);
}

/* ---- the parent side ---- */

static void
stderr_flush_line (struct backend_proc *bp)
{
  struct spawn_state *sp = &bp->spawn;

  if (sp->stderr_len) {
    sp->stderr_line[sp->stderr_len] = '\0';
    log_backend_line (bproc_name (bp), sp->stderr_line);
    sp->stderr_len = 0;
  }
}

/* Relay the backend's stderr, a line at a time. */
static void
stderr_drain (struct backend_proc *bp)
{
  struct spawn_state *sp = &bp->spawn;
  char buf[4096];
  ssize_t r, i;

  while (sp->stderr_fd >= 0) {
    r = read (sp->stderr_fd, buf, sizeof buf);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        stderr_flush_line (bp);
        ev_ref (loop);          /* balances the ev_unref at start */
        ev_io_stop (loop, &sp->stderr_watcher);
        close (sp->stderr_fd);
        sp->stderr_fd = -1;
      }
      return;
    }
    for (i = 0; i < r; ++i) {
      if (buf[i] == '\n')
        stderr_flush_line (bp);
      else {
        sp->stderr_line[sp->stderr_len++] = buf[i];
        if (sp->stderr_len == sizeof sp->stderr_line - 1)
          stderr_flush_line (bp);
      }
    }
  }
}

static void
on_stderr (struct ev_loop *l, ev_io *w, int revents)
{
  stderr_drain (BPROC_OF (w, spawn.stderr_watcher));
}

static void
on_child_exit (struct ev_loop *l, ev_child *w, int revents)
{
  struct backend_proc *bp = BPROC_OF (w, spawn.child_watcher);
  struct spawn_state *sp = &bp->spawn;
  int status = w->rstatus;
  const char *name = bproc_name (bp);

  ev_child_stop (loop, w);
  stderr_drain (bp);
  if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
    nbdkit_debug ("%s: backend process %d exited", name, (int) sp->pid);
  else if (WIFEXITED (status))
    nbdkit_error ("%s: backend process %d exited with status %d",
                  name, (int) sp->pid, WEXITSTATUS (status));
  else if (WIFSIGNALED (status))
    nbdkit_error ("%s: backend process %d was killed by signal SIG%s",
                  name, (int) sp->pid,
                  sigabbrev_np (WTERMSIG (status)) ?: "?");
  sp->pid = -1;
  supervisor_backend_exited (bp);
}

/* SIGKILL for the backend and everything it started (a script that
 * runs, data's commands): the backend leads a process group of its
 * own (see exec_backend).  Its pid is not reaped yet, so the group's
 * id cannot have been reused.
 */
void
backend_kill (struct backend_proc *bp)
{
  pid_t pid = bp->spawn.pid;

  if (pid <= 0)
    return;
  if (kill (-pid, SIGKILL) == -1)
    kill (pid, SIGKILL);
}

void
backend_terminate (struct backend_proc *bp)
{
  if (bp->spawn.pid > 0)
    kill (bp->spawn.pid, SIGTERM);
}

/* Move fd above the channel's fd number so that the dup2 calls in the
 * child cannot clobber it.
 */
static int
fd_above (int fd)
{
  int r;

  if (fd > CHANNEL_FD)
    return fd;
  r = fcntl (fd, F_DUPFD_CLOEXEC, CHANNEL_FD + 1);
  close (fd);
  return r;
}

bool
backend_spawn (struct backend_proc *bp)
{
  struct spawn_state *sp = &bp->spawn;
  int sv[2], errp[2];
  pid_t self = getpid ();
  char **env;

  if (!channel_reserve (bp)) {
    nbdkit_error ("cannot start the backend: out of memory");
    return false;
  }
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
    nbdkit_error ("socketpair: %m");
    return false;
  }
  if (pipe2 (errp, O_CLOEXEC) == -1) {
    nbdkit_error ("pipe: %m");
    close (sv[0]);
    close (sv[1]);
    return false;
  }
  sv[1] = fd_above (sv[1]);
  errp[1] = fd_above (errp[1]);
  env = backend_environment ();
  if (sv[1] == -1 || errp[1] == -1 || !env || (sp->pid = fork ()) == -1) {
    nbdkit_error ("cannot start the backend: %s",
                  env ? strerror (errno) : "out of memory");
    free (env);
    close (sv[0]);
    close (errp[0]);
    if (sv[1] >= 0)
      close (sv[1]);
    if (errp[1] >= 0)
      close (errp[1]);
    sp->pid = -1;
    return false;
  }
  if (sp->pid == 0)
    exec_backend (sv[1], errp[1], self, env);
  free (env);

  close (sv[1]);
  close (errp[1]);
  fcntl (sv[0], F_SETFL, O_NONBLOCK);
  fcntl (errp[0], F_SETFL, O_NONBLOCK);

  /* The previous incarnation's stderr may still be open: finish it. */
  if (sp->stderr_fd >= 0) {
    stderr_drain (bp);
    if (sp->stderr_fd >= 0) {
      ev_ref (loop);
      ev_io_stop (loop, &sp->stderr_watcher);
      close (sp->stderr_fd);
    }
  }
  sp->stderr_fd = errp[0];
  sp->stderr_len = 0;
  ev_io_init (&sp->stderr_watcher, on_stderr, sp->stderr_fd, EV_READ);
  ev_io_start (loop, &sp->stderr_watcher);
  ev_unref (loop);              /* the relay alone keeps nothing alive */
  ev_child_init (&sp->child_watcher, on_child_exit, sp->pid, 0);
  ev_child_start (loop, &sp->child_watcher);
  channel_open (bp, sv[0]);
  nbdkit_debug ("%s: started backend process %d (%s)",
                bproc_name (bp), (int) sp->pid, opt.backend_path);
  return true;
}
