/* nbdkit front end: scripts that only the server can read.
 *
 * nbdkit's script plugins take `script=-` (the script on the server's
 * standard input: `nbdkit sh - <<'EOF'`) and a script through a pipe
 * (`nbdkit sh <(...)`, a /dev/fd path).  A backend here is a separate
 * process with its standard input on /dev/null and no inherited
 * descriptors, so the server reads such a script itself, once, at
 * start-up (before the loop runs), into a private temporary directory,
 * and gives the backend that file's path instead.  Every incarnation of
 * the backend runs the same copy; the directory is removed at exit.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static char *tmpdir;            /* made on first use */
static char *copy;              /* the script's copy in it */

/* Does value name a script the backend could not read itself? */
static bool
needs_copy (const char *value)
{
  struct stat st;

  if (strcmp (value, "-") == 0 || strcmp (value, "/dev/stdin") == 0)
    return true;
  /* A pipe (process substitution), or any other file that is not a
   * regular one and can be read only once.
   */
  return stat (value, &st) == 0 && !S_ISREG (st.st_mode) &&
         !S_ISDIR (st.st_mode);
}

static void
copy_all (int in, int out, const char *what)
{
  char buf[65536];
  ssize_t r;

  for (;;) {
    do
      r = read (in, buf, sizeof buf);    /* never-blocks: start-up */
    while (r == -1 && errno == EINTR);
    if (r == 0)
      return;
    if (r == -1)
      die ("script=%s: cannot read the script: %m", what);
    if (write (out, buf, r) != r)
      die ("script=%s: cannot save the script in %s: %m", what, tmpdir);
  }
}

const char *
inline_script (const char *value)
{
  const char *base = getenv ("TMPDIR");
  int in, out;

  if (!needs_copy (value))
    return value;
  if (copy)
    die ("script=%s: only one script can be read this way", value);
  if (strcmp (value, "-") == 0 && opt.single)
    die ("script=-: with -s standard input is the client's connection: "
         "give the path of the script");
  if (asprintf (&tmpdir, "%s/nbdkitXXXXXX",
                base && *base ? base : "/tmp") == -1 ||
      !mkdtemp (tmpdir))
    die ("script=%s: cannot make a temporary directory: %m", value);
  if (asprintf (&copy, "%s/inline-script.sh", tmpdir) == -1)
    die ("out of memory");
  atexit (inline_script_cleanup);
  in = strcmp (value, "-") == 0 ? STDIN_FILENO
    : open (value, O_RDONLY | O_CLOEXEC);
  if (in == -1)
    die ("script=%s: %m", value);
  out = open (copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
  if (out == -1)
    die ("script=%s: cannot save the script in %s: %m", value, tmpdir);
  copy_all (in, out, value);
  if (close (out) == -1)
    die ("script=%s: cannot save the script in %s: %m", value, tmpdir);
  if (in != STDIN_FILENO)
    close (in);
  /* A backend run as another user must be able to read it. */
  if ((opt.backend_uid_set || opt.backend_gid_set) &&
      (chown (tmpdir, opt.backend_uid_set ? opt.backend_uid : (uid_t) -1,
              opt.backend_gid_set ? opt.backend_gid : (gid_t) -1) == -1 ||
       chown (copy, opt.backend_uid_set ? opt.backend_uid : (uid_t) -1,
              opt.backend_gid_set ? opt.backend_gid : (gid_t) -1) == -1))
    die ("script=%s: cannot give the script to the backend's user: %m",
         value);
  nbdkit_debug ("script=%s: saved as %s", value, copy);
  return copy;
}

void
inline_script_cleanup (void)
{
  if (copy) {
    unlink (copy);
    free (copy);
    copy = NULL;
  }
  if (tmpdir) {
    rmdir (tmpdir);
    free (tmpdir);
    tmpdir = NULL;
  }
}
