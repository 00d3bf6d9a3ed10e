/* backends/secret.c: secret parameter values (the curl backend's
 * password=, proxy-password= and cookie=, the ssh backend's password=),
 * which nbdkit also takes from a file (+FILE), from the terminal (-)
 * or from a descriptor of the server (-FD); and the small store of
 * values kept for the restarts of a backend.
 *
 * This backend is a process of its own, with /dev/null as standard
 * input and none of the server's descriptors.  So '-' asks on the
 * controlling terminal (/dev/tty), taking its foreground for the time
 * of the question, and '-FD' opens the server's descriptor through
 * /proc/PID/fd (the server is the backend's parent).  What was read is
 * kept in the memory file that the server keeps for this backend
 * (nbdkit_memfd), under KEY=VALUE, so that a restarted backend uses it
 * again instead of asking or reading a second time (a pipe can be read
 * once; there may be nobody at the terminal any more).  Reading a file,
 * a descriptor or the terminal is helper-protocol/secret-read.c's,
 * shared with the front end's filters.  This file owns
 * that record format: for each value, a 4-byte length and KEY=VALUE,
 * then a 4-byte length and the secret.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "secret.h"
#include "secret-read.h"

#define MAX_SECRET SECRET_MAX

/* ---- the store in the memory file ---- */

static int
read_full (int fd, void *buf, size_t n, off_t off)
{
  while (n > 0) {
    ssize_t r = pread (fd, buf, n, off);

    if (r <= 0)
      return -1;
    buf = (char *) buf + r;
    n -= r;
    off += r;
  }
  return 0;
}

char *
secret_kept_find (const char *name)
{
  int fd = nbdkit_memfd ();
  struct stat st;
  off_t off = 0;
  uint32_t klen, vlen;
  char *found = NULL;

  if (fd == -1 || fstat (fd, &st) == -1)
    return NULL;
  while (off + 8 <= st.st_size) {
    char *k, *v;

    if (read_full (fd, &klen, 4, off) == -1 || klen > MAX_SECRET ||
        read_full (fd, &vlen, 4, off + 4 + klen) == -1 || vlen > MAX_SECRET)
      break;                    /* a record cut short: the end */
    k = malloc (klen + 1);
    if (!k || read_full (fd, k, klen, off + 4) == -1) {
      free (k);
      break;
    }
    k[klen] = '\0';
    if (strcmp (k, name) == 0) {      /* the last one kept counts */
      free (found);
      found = v = malloc (vlen + 1);
      if (!v || read_full (fd, v, vlen, off + 8 + klen) == -1) {
        free (k);
        free (v);
        return NULL;
      }
      v[vlen] = '\0';
    }
    free (k);
    off += 8 + klen + vlen;
  }
  return found;
}

void
secret_keep (const char *name, const char *secret)
{
  int fd = nbdkit_memfd ();
  struct stat st;
  uint32_t klen = (uint32_t) strlen (name), vlen = (uint32_t) strlen (secret);

  if (fd == -1 || fstat (fd, &st) == -1)
    return;
  if (pwrite (fd, &klen, 4, st.st_size) != 4 ||
      pwrite (fd, name, klen, st.st_size + 4) != (ssize_t) klen ||
      pwrite (fd, &vlen, 4, st.st_size + 4 + klen) != 4 ||
      pwrite (fd, secret, vlen, st.st_size + 8 + klen) != (ssize_t) vlen) {
    nbdkit_debug ("cannot keep the value for restarts: %m");
    if (ftruncate (fd, st.st_size) == -1) {
      /* a record cut short: secret_kept_find stops before it */
    }
  }
}

/* ---- reading ---- */

/* -FD: the server's descriptor FD, opened again through /proc (a
 * duplicate of what the server has: a pipe is the same pipe).
 */
static char *
from_fd (const char *key, const char *value)
{
  char path[64], info[256], *s;
  int n, fd;
  FILE *fp;
  unsigned long flags = 0;
  bool inherited = false;

  if (secret_parse_fd (key, value, &n) == -1)
    return NULL;
  /* Like an nbdkit plugin, read only what the server inherited (not
   * what it opened itself, which is close-on-exec).
   */
  snprintf (path, sizeof path, "/proc/%d/fdinfo/%d", (int) getppid (), n);
  if ((fp = fopen (path, "re")) != NULL) {
    while (fgets (info, sizeof info, fp))
      if (sscanf (info, "flags: %lo", &flags) == 1)
        inherited = !(flags & O_CLOEXEC);
    fclose (fp);
  }
  if (!inherited) {
    nbdkit_error ("%s=%s: the server did not inherit a file descriptor %d "
                  "(start it with one open, as in '%s=-%d %d<FILE')", key,
                  value, n, key, n, n);
    return NULL;
  }
  snprintf (path, sizeof path, "/proc/%d/fd/%d", (int) getppid (), n);
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    nbdkit_error ("%s=%s: cannot read the server's descriptor %d: %m", key,
                  value, n);
    return NULL;
  }
  s = secret_read_fd (fd, true);
  if (!s)
    nbdkit_error ("%s=%s: reading descriptor %d: %m", key, value, n);
  close (fd);
  return s;
}

/* -: ask on the terminal, without echo. */
static char *
from_terminal (const char *key)
{
  struct sigaction ign = { .sa_handler = SIG_IGN }, old_ttou, old_ttin;
  pid_t fg;
  bool moved = false;
  char *s = NULL, prompt[64];
  int tty, e;

  tty = open ("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (tty == -1) {
    nbdkit_error ("%s=-: there is no terminal to ask for it on (/dev/tty: "
                  "%m); use %s=+FILE or %s=-FD", key, key, key);
    return NULL;
  }
  /* The backend runs in a process group of its own: become the
   * terminal's foreground group for the question, then give it back.
   */
  sigaction (SIGTTOU, &ign, &old_ttou);
  sigaction (SIGTTIN, &ign, &old_ttin);
  fg = tcgetpgrp (tty);
  if (fg != -1 && fg != getpgrp ())
    moved = tcsetpgrp (tty, getpgrp ()) == 0;
  snprintf (prompt, sizeof prompt, "%s: ", key);
  s = secret_ask_tty (tty, prompt);
  e = errno;
  if (moved)
    tcsetpgrp (tty, fg);
  sigaction (SIGTTOU, &old_ttou, NULL);
  sigaction (SIGTTIN, &old_ttin, NULL);
  close (tty);
  if (!s) {
    errno = e;
    nbdkit_error ("%s=-: reading the terminal: %m", key);
  }
  return s;
}

int
secret_read (const char *key, const char *value, char **ret)
{
  char *name, *s;

  if (value[0] != '+' && value[0] != '-') {
    if ((*ret = strdup (value)) == NULL) {
      nbdkit_error ("out of memory");
      return -1;
    }
    return 0;
  }
  if (asprintf (&name, "%s=%s", key, value) == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }
  s = secret_kept_find (name);
  if (s)
    nbdkit_debug ("%s: using the value read at the first start", name);
  else {
    if (value[0] == '+')
      s = secret_from_file (key, value);
    else if (value[1] == '\0')
      s = from_terminal (key);
    else
      s = from_fd (key, value);
    if (s)
      secret_keep (name, s);
  }
  free (name);
  if (!s)
    return -1;
  *ret = s;
  return 0;
}
