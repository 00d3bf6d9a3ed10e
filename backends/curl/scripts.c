/* backends/curl/scripts.c: header-script= and cookie-script= of the
 * curl backend.
 *
 * Owns the headers and the cookie that the scripts printed, when each
 * script last ran, and how many times.  A script runs before the first
 * request that needs it and again before a request made at least
 * *-script-renew= seconds after its last run, as /bin/sh -c with the
 * shell variables $url and $iteration (0 the first time) set, standard
 * input on /dev/null, and no descriptor of the backend but its own
 * standard output (read here) and error (the first line goes into the
 * message when the script fails).  One script runs at a time; requests
 * wait for it.  The requests get copies of what the scripts printed, so
 * that a run does not change the headers of a request in progress.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "curldefs.h"

#define MAX_OUTPUT (1024 * 1024)
#define MAX_STDERR (64 * 1024)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

struct script_state {
  bool has_run;
  time_t last;                  /* CLOCK_MONOTONIC seconds */
  unsigned iteration;
};
static struct script_state header_state, cookie_state;

static struct curl_slist *script_headers;
static char *script_cookie;

void
scripts_unload (void)
{
  curl_slist_free_all (script_headers);
  script_headers = NULL;
  secret_free (script_cookie);
  script_cookie = NULL;
}

static time_t
now_seconds (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

/* "url='...'\niteration=N\n" then the script: malloc'd, or NULL. */
static char *
script_text (const char *script, unsigned iteration)
{
  char *s = NULL;
  size_t len = 0;
  FILE *fp = open_memstream (&s, &len);
  const char *p;

  if (!fp)
    return NULL;
  fputs ("url='", fp);
  for (p = url; *p; ++p) {
    if (*p == '\'')
      fputs ("'\\''", fp);
    else
      putc (*p, fp);
  }
  fprintf (fp, "'\niteration=%u\n%s\n", iteration, script);
  if (fclose (fp) == EOF) {
    free (s);
    return NULL;
  }
  return s;
}

static void __attribute__ ((noreturn))
run_child (const char *text, int out_w, int err_w)
{
  int null = open ("/dev/null", O_RDONLY);
  sigset_t none;

  if (null == -1 || dup2 (null, STDIN_FILENO) == -1 ||
      dup2 (out_w, STDOUT_FILENO) == -1 || dup2 (err_w, STDERR_FILENO) == -1)
    _exit (126);
  /* Nothing of the backend (its channel to the server above all). */
#ifdef SYS_close_range
  if (syscall (SYS_close_range, 3u, ~0u, 0) == -1)
#endif
    for (int fd = 3; fd < 65536; ++fd)
      close (fd);
  signal (SIGPIPE, SIG_DFL);
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  execl ("/bin/sh", "sh", "-c", text, (char *) NULL);
  _exit (127);
}

/* Append what can be read from *fd to buf (at most max bytes kept);
 * closes *fd at its end.
 */
static void
drain (int *fd, char **buf, size_t *len, size_t max)
{
  char chunk[8192];
  ssize_t r = read (*fd, chunk, sizeof chunk);

  if (r > 0 && *len < max) {
    size_t n = (size_t) r < max - *len ? (size_t) r : max - *len;
    char *b = realloc (*buf, *len + n + 1);

    if (b) {
      memcpy (b + *len, chunk, n);
      *len += n;
      b[*len] = '\0';
      *buf = b;
    }
  }
  if (r == 0 || (r == -1 && errno != EINTR && errno != EAGAIN)) {
    close (*fd);
    *fd = -1;
  }
}

/* Run a script; *out gets its standard output (malloc'd, or NULL when
 * it printed nothing).  0, or -1 after nbdkit_error.
 */
static int
run_script (const char *name, const char *script, unsigned iteration,
            char **out)
{
  char *text = script_text (script, iteration), *err = NULL, *nl;
  size_t outlen = 0, errlen = 0;
  int o[2] = { -1, -1 }, e[2] = { -1, -1 }, status;
  pid_t pid;

  *out = NULL;
  if (!text) {
    nbdkit_error ("%s: out of memory", name);
    return -1;
  }
  if (pipe2 (o, O_CLOEXEC) == -1 || pipe2 (e, O_CLOEXEC) == -1) {
    nbdkit_error ("%s: pipe: %m", name);
    goto fail;
  }
  nbdkit_debug ("running %s (iteration %u)", name, iteration);
  pid = fork ();
  if (pid == -1) {
    nbdkit_error ("%s: fork: %m", name);
    goto fail;
  }
  if (pid == 0)
    run_child (text, o[1], e[1]);
  close (o[1]);
  close (e[1]);
  o[1] = e[1] = -1;
  while (o[0] >= 0 || e[0] >= 0) {
    struct pollfd p[2] = {
      { .fd = o[0], .events = POLLIN }, { .fd = e[0], .events = POLLIN },
    };

    if (poll (p, 2, -1) == -1) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (o[0] >= 0 && p[0].revents)
      drain (&o[0], out, &outlen, MAX_OUTPUT);
    if (e[0] >= 0 && p[1].revents)
      drain (&e[0], &err, &errlen, MAX_STDERR);
  }
  while (waitpid (pid, &status, 0) == -1)
    if (errno != EINTR) {
      nbdkit_error ("%s: waitpid: %m", name);
      goto fail;
    }
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
    if (err && (nl = strchr (err, '\n')) != NULL)
      *nl = '\0';
    if (err && *err)
      nbdkit_error ("%s failed: %s", name, err);
    else if (WIFEXITED (status))
      nbdkit_error ("%s failed: it exited with status %d", name,
                    WEXITSTATUS (status));
    else
      nbdkit_error ("%s failed: it was killed by signal %d", name,
                    WTERMSIG (status));
    goto fail;
  }
  free (text);
  free (err);
  return 0;

 fail:
  for (int i = 0; i < 2; ++i) {
    if (o[i] >= 0)
      close (o[i]);
    if (e[i] >= 0)
      close (e[i]);
  }
  free (text);
  free (err);
  secret_free (*out);
  *out = NULL;
  return -1;
}

/* Strip trailing white space (and the line end) in place. */
static void
rstrip (char *s)
{
  size_t n = strlen (s);

  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' ||
                   s[n - 1] == '\r' || s[n - 1] == '\n'))
    s[--n] = '\0';
}

static int
run_header_script (void)
{
  struct curl_slist *list = NULL, *l2;
  char *out, *line, *next;
  size_t n = 0;

  if (run_script ("header-script", header_script, header_state.iteration++,
                  &out) == -1)
    return -1;
  for (line = out; line && *line; line = next) {
    next = strchr (line, '\n');
    if (next)
      *next++ = '\0';
    rstrip (line);
    if (*line == '\0')
      continue;
    if (!strpbrk (line, ":;")) {
      nbdkit_error ("header-script printed '%s', which is not an HTTP "
                    "header ('Name: value')", line);
      goto fail;
    }
    if (debug_scripts)
      nbdkit_debug ("header-script: header %s", line);
    if ((l2 = curl_slist_append (list, line)) == NULL) {
      nbdkit_error ("out of memory");
      goto fail;
    }
    list = l2;
    n++;
  }
  nbdkit_debug ("header-script gave %zu header(s)", n);
  secret_free (out);
  curl_slist_free_all (script_headers);
  script_headers = list;
  return 0;

 fail:
  secret_free (out);
  curl_slist_free_all (list);
  return -1;
}

static int
run_cookie_script (void)
{
  char *out, *nl;

  if (run_script ("cookie-script", cookie_script, cookie_state.iteration++,
                  &out) == -1)
    return -1;
  if (out) {
    if ((nl = strchr (out, '\n')) != NULL)
      *nl = '\0';
    rstrip (out);
    if (*out == '\0') {
      free (out);
      out = NULL;
    }
  }
  if (debug_scripts)
    nbdkit_debug ("cookie-script: cookie %s", out ? out : "(none)");
  nbdkit_debug ("cookie-script gave %s", out ? "a cookie" :
                "no cookie");
  secret_free (script_cookie);
  script_cookie = out;
  return 0;
}

static bool
due (const struct script_state *s, unsigned renew, time_t now)
{
  return !s->has_run || (renew > 0 && now - s->last >= (time_t) renew);
}

static int
copy_list (const struct curl_slist *src, struct curl_slist **dst)
{
  struct curl_slist *l = NULL, *l2;

  for (; src; src = src->next) {
    if ((l2 = curl_slist_append (l, src->data)) == NULL) {
      curl_slist_free_all (l);
      nbdkit_error ("out of memory");
      return -1;
    }
    l = l2;
  }
  *dst = l;
  return 0;
}

int
scripts_get (struct curl_slist **hdrs, char **cookie_out)
{
  time_t now;
  int r = -1;

  *hdrs = NULL;
  *cookie_out = NULL;
  if (!header_script && !cookie_script)
    return copy_list (headers, hdrs);

  pthread_mutex_lock (&lock);
  now = now_seconds ();
  if (header_script && due (&header_state, header_script_renew, now)) {
    if (run_header_script () == -1)
      goto out;
    header_state.has_run = true;
    header_state.last = now;
  }
  if (cookie_script && due (&cookie_state, cookie_script_renew, now)) {
    if (run_cookie_script () == -1)
      goto out;
    cookie_state.has_run = true;
    cookie_state.last = now;
  }
  if (copy_list (header_script ? script_headers : headers, hdrs) == -1)
    goto out;
  if (cookie_script && script_cookie &&
      (*cookie_out = strdup (script_cookie)) == NULL) {
    curl_slist_free_all (*hdrs);
    *hdrs = NULL;
    nbdkit_error ("out of memory");
    goto out;
  }
  r = 0;
 out:
  pthread_mutex_unlock (&lock);
  return r;
}
