/* nbdkit front end: captive use, as nbdkit-captive(1) describes.
 *
 * Owns the URI of the running server (for --print-uri and --run), the
 * --run command (started through the shell once the server is ready,
 * with $uri and $nbd (the same URI, in nbdkit's form), $port,
 * $unixsocket, $exportname, $tls (unset when TLS is off),
 * $tls_certificates and $tls_psk in its environment; the server exits
 * when it does, with its exit status, 128+N for a signal; if the
 * server stops first, it still waits for the command and exits with
 * its status, as nbdkit does), and --exit-with-parent.
 */

#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

static ev_child run_watcher;
static pid_t parent_pid;

/* Append s to the URI as nbdkit does: letters, digits and "/.-_~"
 * as they are, every other byte percent-encoded.
 */
static void
append_encoded (FILE *fp, const char *s)
{
  for (; *s; ++s) {
    unsigned char c = *s;

    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || strchr ("/.-_~", c))
      fputc (c, fp);
    else
      fprintf (fp, "%%%02X", c);
  }
}

/* The host in a TCP URI: "localhost", as nbdkit writes it, unless -i
 * names an address that localhost does not reach.
 */
static bool
is_loopback (const char *host)
{
  return strcmp (host, "localhost") == 0 || strcmp (host, "::1") == 0 ||
         strncmp (host, "127.", 4) == 0;
}

/* The NBD URI clients use, in nbdkit's form (see the NBD URI
 * specification): nbd://localhost:PORT, nbd+unix://?socket=PATH,
 * nbd+vsock://1:PORT, with "/EXPORTNAME" before any "?" only when the
 * export name is not empty, and "nbds" when TLS is required.
 */
char *
captive_uri (void)
{
  char *uri = NULL;
  size_t len = 0;
  FILE *fp = open_memstream (&uri, &len);
  const char *s = opt.tls == TLS_REQUIRE ? "s" : "";

  if (!fp)
    die ("out of memory");
  if (opt.vsock)
    fprintf (fp, "nbd%s+vsock://1:%s", s, opt.port ? opt.port : "10809");
  else if (opt.unixsocket)
    fprintf (fp, "nbd%s+unix://", s);
  else {
    const char *host = opt.ipaddr && !is_loopback (opt.ipaddr)
                       ? opt.ipaddr : "localhost";

    if (strchr (host, ':'))
      fprintf (fp, "nbd%s://[%s]", s, host);
    else
      fprintf (fp, "nbd%s://%s", s, host);
    fprintf (fp, ":%s", opt.port ? opt.port : "10809");
  }
  if (*opt.exportname) {
    fputc ('/', fp);
    append_encoded (fp, opt.exportname);
  }
  if (opt.unixsocket && !opt.vsock) {
    fputs ("?socket=", fp);
    append_encoded (fp, opt.unixsocket);
  }
  if (fclose (fp) != 0)
    die ("out of memory");
  return uri;
}

void
captive_print_uri (void)
{
  char *uri;

  if (!opt.print_uri)
    return;
  uri = captive_uri ();
  printf ("%s\n", uri);
  fflush (stdout);     /* never-blocks: one line, once, at start-up */
  free (uri);
}

/* The server's exit status for the command's wait status. */
static int
run_exit_code (int status)
{
  int code;

  if (WIFEXITED (status)) {
    code = WEXITSTATUS (status);
    nbdkit_debug ("--run: the command exited with status %d", code);
  }
  else if (WIFSIGNALED (status)) {
    code = 128 + WTERMSIG (status);
    nbdkit_debug ("--run: the command was killed by signal %d",
                  WTERMSIG (status));
  }
  else
    code = EXIT_FAILURE;
  return code;
}

static void
on_run_exit (struct ev_loop *l, ev_child *w, int revents)
{
  ev_child_stop (loop, w);
  server_quit (run_exit_code (w->rstatus));
}

int
captive_wait (int status)
{
  int st;
  pid_t r;

  if (!opt.run || !ev_is_active (&run_watcher))
    return status;
  /* The server stopped first (SIGTERM, exitlast, exitwhen): as with
   * nbdkit, the command runs on, and its status is the server's.
   */
  if (ev_is_pending (&run_watcher))   /* reaped, not yet handled */
    return run_exit_code (run_watcher.rstatus);
  nbdkit_debug ("--run: the server has stopped; waiting for the command");
  do
    /* never-blocks: the loop has ended, the server is down */
    r = waitpid (run_watcher.pid, &st, 0);
  while (r == -1 && errno == EINTR);
  return r == -1 ? status : run_exit_code (st);
}

static void
set_env (const char *name, const char *value)
{
  if (setenv (name, value ? value : "", 1) == -1)
    _exit (127);
}

void
captive_run (void)
{
  pid_t pid;

  if (!opt.run)
    return;
  pid = fork ();
  if (pid == -1)
    die ("--run: fork: %m");
  if (pid == 0) {
    const char *tls[] = { NULL, "1", "2" };

    signal (SIGPIPE, SIG_DFL);
    /* $nbd: the URI too, as in nbdkit (it was once qemu's nbd:HOST:PORT). */
    set_env ("uri", captive_uri ());
    set_env ("nbd", captive_uri ());
    set_env ("port", opt.unixsocket || opt.vsock ? ""
             : opt.port ? opt.port : "10809");
    set_env ("unixsocket", opt.unixsocket);
    set_env ("exportname", opt.exportname);
    /* $tls as nbdkit sets it: 1 (on), 2 (require), unset when off. */
    if (tls[opt.tls])
      set_env ("tls", tls[opt.tls]);
    else
      unsetenv ("tls");
    if (opt.tls != TLS_OFF && tls_certificates_dir ())
      set_env ("tls_certificates", tls_certificates_dir ());
    else
      unsetenv ("tls_certificates");
    if (opt.tls_psk)
      set_env ("tls_psk", opt.tls_psk);
    else
      unsetenv ("tls_psk");
    execl ("/bin/sh", "sh", "-c", opt.run, (char *) NULL);
    fprintf (stderr, "%s: --run: /bin/sh: %m\n", PROGRAM_NAME);
    _exit (127);
  }
  ev_child_init (&run_watcher, on_run_exit, pid, 0);
  ev_child_start (loop, &run_watcher);
}

void
captive_exit_with_parent (void)
{
  if (!opt.exit_with_parent)
    return;
  parent_pid = getppid ();
  /* SIGTERM when the parent dies: an orderly shutdown. */
  if (prctl (PR_SET_PDEATHSIG, SIGTERM) == -1)
    die ("--exit-with-parent: prctl: %m");
  /* It may have died already, before prctl took effect. */
  if (getppid () != parent_pid || parent_pid == 1)
    die ("--exit-with-parent: the parent process has already exited");
}
