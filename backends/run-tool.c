/* nbdkit backends: running an external tool and reporting its failure
 * with what it wrote, plus the temporary directories the tools work
 * in (see run-tool.h).  Used only from backend processes: it blocks.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "run-tool.h"

extern char **environ;

/* The output kept for the error message: its last OUT_KEEP bytes. */
#define OUT_KEEP 4096

/* environ with env added, names of env replacing the same names. */
static char **
make_env (char *const *env)
{
  size_t n = 0, m = 0, i, j, k = 0;
  char **r;

  while (environ[n])
    n++;
  while (env && env[m])
    m++;
  r = calloc (n + m + 1, sizeof *r);
  if (!r)
    return NULL;
  for (i = 0; i < n; i++) {
    const char *eq = strchr (environ[i], '=');
    size_t len = eq ? (size_t) (eq - environ[i]) : strlen (environ[i]);
    bool replaced = false;

    for (j = 0; j < m; j++)
      if (strncmp (env[j], environ[i], len) == 0 && env[j][len] == '=')
        replaced = true;
    if (!replaced)
      r[k++] = environ[i];
  }
  for (j = 0; j < m; j++)
    r[k++] = env[j];
  return r;
}

/* Runs in the child after fork: only async-signal-safe calls. */
static void __attribute__ ((noreturn))
child (const char *script, char **envp, int out_fd, int err_fd)
{
  static char *const sh = "/bin/sh";
  char *argv[] = { "sh", "-c", (char *) script, NULL };
  sigset_t none;
  int null = open ("/dev/null", O_RDONLY);

  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  signal (SIGPIPE, SIG_DFL);
  if (null == -1 || dup2 (null, 0) == -1 ||
      dup2 (out_fd >= 0 ? out_fd : err_fd, 1) == -1 ||
      dup2 (err_fd, 2) == -1)
    _exit (126);
  execve (sh, argv, envp);
  _exit (127);
}

static void
trim_end (char *s, size_t *len)
{
  while (*len > 0 && (s[*len - 1] == '\n' || s[*len - 1] == ' ' ||
                      s[*len - 1] == '\r' || s[*len - 1] == '\t'))
    (*len)--;
  s[*len] = '\0';
}

int
run_tool (const char *what, const char *script, char *const *env,
          int out_fd)
{
  char **envp = make_env (env);
  char out[OUT_KEEP * 2 + 1];
  size_t len = 0;
  bool cut = false;
  int pfd[2], status;
  pid_t pid;

  if (!envp) {
    nbdkit_error ("%s: out of memory", what);
    return -1;
  }
  if (pipe2 (pfd, O_CLOEXEC) == -1) {
    nbdkit_error ("%s: pipe: %m", what);
    free (envp);
    return -1;
  }
  nbdkit_debug ("%s: running: %s", what, script);
  pid = fork ();
  if (pid == -1) {
    nbdkit_error ("%s: fork: %m", what);
    close (pfd[0]);
    close (pfd[1]);
    free (envp);
    return -1;
  }
  if (pid == 0)
    child (script, envp, out_fd, pfd[1]);
  free (envp);
  close (pfd[1]);

  /* Read everything, keeping the last OUT_KEEP to OUT_KEEP*2 bytes. */
  for (;;) {
    ssize_t r = read (pfd[0], out + len, sizeof out - 1 - len);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t) r;
    if (len == sizeof out - 1) {
      memmove (out, out + OUT_KEEP, len - OUT_KEEP);
      len -= OUT_KEEP;
      cut = true;
    }
  }
  close (pfd[0]);
  while (waitpid (pid, &status, 0) == -1) {
    if (errno != EINTR) {
      nbdkit_error ("%s: waitpid: %m", what);
      return -1;
    }
  }
  trim_end (out, &len);
  if (WIFEXITED (status) && WEXITSTATUS (status) == 0) {
    if (len > 0)
      nbdkit_debug ("%s: %s", what, out);
    return 0;
  }
  if (WIFEXITED (status) && WEXITSTATUS (status) == 127 && len == 0)
    nbdkit_error ("%s failed: /bin/sh could not be run", what);
  else if (WIFEXITED (status))
    nbdkit_error ("%s failed (exit status %d)%s%s%s", what,
                  WEXITSTATUS (status), len ? ": " : "",
                  cut ? "..." : "", out);
  else
    nbdkit_error ("%s failed (killed by signal %d)%s%s%s", what,
                  WTERMSIG (status), len ? ": " : "",
                  cut ? "..." : "", out);
  errno = EIO;
  return -1;
}

const char *
tool_tmpdir (void)
{
  const char *d = getenv ("TMPDIR");

  return d && *d ? d : "/var/tmp";
}

char *
tool_mkdtemp (const char *prefix)
{
  char *path;

  if (asprintf (&path, "%s/%s-XXXXXX", tool_tmpdir (), prefix) == -1) {
    nbdkit_error ("out of memory");
    return NULL;
  }
  if (mkdtemp (path) == NULL) {
    nbdkit_error ("cannot make a temporary directory %s: %m "
                  "(set TMPDIR to a writable directory)", path);
    free (path);
    return NULL;
  }
  return path;
}

void
tool_rmdir (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;

  if (d) {
    while ((e = readdir (d)) != NULL) {
      if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
        continue;
      unlinkat (dirfd (d), e->d_name, 0);
    }
    closedir (d);
  }
  rmdir (dir);
}

/* The start of the parent process, in clock ticks after boot, from
 * field 22 of /proc/PPID/stat; 0 if unknown.
 */
static unsigned long long
parent_start_ticks (void)
{
  char path[64], buf[1024];
  unsigned long long ticks = 0;
  const char *p;
  FILE *f;
  size_t n;

  snprintf (path, sizeof path, "/proc/%ld/stat", (long) getppid ());
  f = fopen (path, "re");
  if (!f)
    return 0;
  n = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  buf[n] = '\0';
  p = strrchr (buf, ')');         /* the name may hold spaces */
  if (!p)
    return 0;
  /* After ")": state (field 3) ... starttime (field 22). */
  for (int field = 2; p && field < 22; field++)
    p = strchr (p + 1, ' ');
  if (p)
    ticks = strtoull (p + 1, NULL, 10);
  return ticks;
}

int64_t
tool_server_start (void)
{
  unsigned long long ticks = parent_start_ticks (), btime = 0;
  long hz = sysconf (_SC_CLK_TCK);
  char line[256];
  FILE *f;

  f = fopen ("/proc/stat", "re");
  if (f) {
    while (fgets (line, sizeof line, f))
      if (sscanf (line, "btime %llu", &btime) == 1)
        break;
    fclose (f);
  }
  if (!ticks || !btime || hz <= 0)
    return (int64_t) time (NULL);
  return (int64_t) (btime + ticks / (unsigned long long) hz);
}

uint64_t
tool_server_id (void)
{
  return (uint64_t) getppid () * UINT64_C (0x9e3779b97f4a7c15) ^
    parent_start_ticks ();
}

bool
tool_found (const char *prog)
{
  const char *path = getenv ("PATH"), *p, *end;
  char full[4096];

  if (strchr (prog, '/'))
    return access (prog, X_OK) == 0;
  if (!path)
    path = "/usr/bin:/bin";
  for (p = path; ; p = end + 1) {
    end = strchr (p, ':');
    if (!end)
      end = p + strlen (p);
    if (snprintf (full, sizeof full, "%.*s/%s", (int) (end - p), p,
                  prog) < (int) sizeof full &&
        end > p && access (full, X_OK) == 0)
      return true;
    if (!*end)
      return false;
  }
}

char *
tool_shell_quote (const char *value)
{
  size_t n = 3, i;
  char *r, *p;

  for (i = 0; value[i]; i++)
    n += value[i] == '\'' ? 4 : 1;
  r = p = malloc (n);
  if (!r)
    return NULL;
  *p++ = '\'';
  for (i = 0; value[i]; i++) {
    if (value[i] == '\'') {
      memcpy (p, "'\\''", 4);
      p += 4;
    }
    else
      *p++ = value[i];
  }
  *p++ = '\'';
  *p = '\0';
  return r;
}
