/* nbdkit iso backend: a read-only ISO 9660 image made from one or more
 * host directories with xorriso, genisoimage or mkisofs
 * (nbdkit-iso-plugin(1)).
 *
 * Owns the parameters and the making of the image: in get_ready the
 * program writes the image to its standard output, which is a
 * temporary file in $TMPDIR (or /var/tmp) whose name is removed at
 * once (the open descriptor keeps it until the process ends).  Reads
 * are served from that file, in parallel; there is no pwrite.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../run-tool.h"

static char **dirs;                     /* dir=, each quoted */
static size_t nr_dirs;
static char *prog;                      /* prog= */
static char *params;                    /* params= */

static int image_fd = -1;
static int64_t image_size;

static void
iso_unload (void)
{
  for (size_t i = 0; i < nr_dirs; i++)
    free (dirs[i]);
  free (dirs);
  free (prog);
  free (params);
  if (image_fd >= 0)
    close (image_fd);
}

static int
add_dir (const char *value)
{
  char *path = nbdkit_realpath (value), *quoted, **nd;
  struct stat st;

  if (!path)
    return -1;
  if (stat (path, &st) == -1 || !S_ISDIR (st.st_mode)) {
    nbdkit_error ("dir=%s: not a directory (the iso backend puts the files "
                  "of directories in the image)", value);
    free (path);
    return -1;
  }
  quoted = tool_shell_quote (path);
  free (path);
  nd = realloc (dirs, (nr_dirs + 1) * sizeof *nd);
  if (!quoted || !nd) {
    free (quoted);
    if (nd)
      dirs = nd;
    nbdkit_error ("out of memory");
    return -1;
  }
  dirs = nd;
  dirs[nr_dirs++] = quoted;
  return 0;
}

static int
set_string (char **s, const char *key, const char *value)
{
  if (strcmp (key, "prog") == 0 && !*value) {
    nbdkit_error ("prog=: empty: give the program that makes the image "
                  "(xorriso, genisoimage or mkisofs)");
    return -1;
  }
  free (*s);
  *s = strdup (value);
  if (!*s) {
    nbdkit_error ("out of memory");
    return -1;
  }
  return 0;
}

static int
iso_config (const char *key, const char *value)
{
  if (strcmp (key, "dir") == 0)
    return add_dir (value);
  if (strcmp (key, "prog") == 0)
    return set_string (&prog, key, value);
  if (strcmp (key, "params") == 0)
    return set_string (&params, key, value);
  nbdkit_error ("unknown parameter '%s' (the iso backend takes "
                "dir=DIRECTORY (one or more), prog=PROGRAM and "
                "params='PARAMETERS')", key);
  return -1;
}

static int
iso_config_complete (void)
{
  static const char *const progs[] = { "xorriso", "genisoimage", "mkisofs" };

  if (nr_dirs == 0) {
    nbdkit_error ("a directory is required, e.g. 'nbdkit iso "
                  "/path/to/dir' or dir=/path/to/dir");
    return -1;
  }
  if (prog)
    return 0;
  for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++) {
    if (tool_found (progs[i])) {
      prog = strdup (progs[i]);
      if (!prog) {
        nbdkit_error ("out of memory");
        return -1;
      }
      return 0;
    }
  }
  nbdkit_error ("none of xorriso, genisoimage and mkisofs is on $PATH: "
                "install one (e.g. the xorriso package), or name the "
                "program with prog=");
  return -1;
}

static int
iso_get_ready (void)
{
  char *path, *script, *qprog, *all = NULL;
  const char *base = strrchr (prog, '/') ? strrchr (prog, '/') + 1 : prog;
  size_t len = 1;
  struct stat st;
  int fd, r;
  char epoch[64];
  char *env[] = { NULL, NULL };

  for (size_t i = 0; i < nr_dirs; i++)
    len += strlen (dirs[i]) + 1;
  all = calloc (1, len);
  qprog = tool_shell_quote (prog);
  if (!all || !qprog) {
    free (all);
    free (qprog);
    nbdkit_error ("out of memory");
    return -1;
  }
  for (size_t i = 0; i < nr_dirs; i++) {
    strcat (all, " ");
    strcat (all, dirs[i]);
  }
  /* params is passed to the shell as it is, as nbdkit does. */
  r = asprintf (&script, "exec %s%s -quiet %s%s", qprog,
                strcmp (base, "xorriso") == 0 ? " -as mkisofs" : "",
                params ? params : "", all);
  free (all);
  free (qprog);
  if (r == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }

  if (asprintf (&path, "%s/iso-XXXXXX", tool_tmpdir ()) == -1) {
    free (script);
    nbdkit_error ("out of memory");
    return -1;
  }
  fd = mkostemp (path, O_CLOEXEC);
  if (fd == -1) {
    nbdkit_error ("cannot make a temporary file %s: %m (set TMPDIR to a "
                  "writable directory)", path);
    free (path);
    free (script);
    return -1;
  }
  unlink (path);                /* the descriptor keeps it */
  free (path);
  /* xorriso then writes the same image in every incarnation, so that
   * a restarted backend serves the clients it re-opens the same bytes.
   */
  if (!getenv ("SOURCE_DATE_EPOCH")) {
    snprintf (epoch, sizeof epoch, "SOURCE_DATE_EPOCH=%" PRIi64,
              tool_server_start ());
    env[0] = epoch;
  }
  r = run_tool (prog, script, env, fd);
  free (script);
  if (r == -1) {
    close (fd);
    return -1;
  }
  if (fstat (fd, &st) == -1) {
    nbdkit_error ("iso: fstat of the image: %m");
    close (fd);
    return -1;
  }
  if (st.st_size == 0) {
    nbdkit_error ("%s wrote no image on its standard output (check "
                  "params=: it must not send the image elsewhere, "
                  "e.g. with -o)", prog);
    close (fd);
    return -1;
  }
  image_fd = fd;
  image_size = st.st_size;
  return 0;
}

static void *
iso_open (int readonly)
{
  return &image_fd;
}

static int64_t
iso_get_size (void *handle)
{
  return image_size;
}

static int iso_yes (void *handle) { return 1; }

static int
iso_can_cache (void *handle)
{
  return NBDKIT_CACHE_EMULATE;
}

static int
iso_pread (void *handle, void *vbuf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  unsigned char *buf = vbuf;

  while (count > 0) {
    ssize_t r = pread (image_fd, buf, count, (off_t) offset);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      if (r == 0)
        errno = EIO;
      nbdkit_error ("iso: reading the image: %m");
      return -1;
    }
    buf += r;
    count -= (uint32_t) r;
    offset += (uint64_t) r;
  }
  return 0;
}

static struct nbdkit_backend iso = {
  .name = "iso",
  .longname = "nbdkit iso backend",
  .version = PACKAGE_VERSION,
  .description = "A read-only ISO 9660 (CD-ROM) image made from "
                 "directories.",
  .config_help =
    "[dir=]<DIRECTORY>  (required) A directory whose files go in the\n"
    "                   image; more than one are merged.\n"
    "prog=<PROGRAM>     xorriso, genisoimage or mkisofs (default: the\n"
    "                   first of them on $PATH).\n"
    "params='<PARAMS>'  More parameters of the program, e.g. '-JrT'.",
  .magic_config_key = "dir",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .unload = iso_unload,
  .config = iso_config,
  .config_complete = iso_config_complete,
  .get_ready = iso_get_ready,
  .open = iso_open,
  .get_size = iso_get_size,
  .can_multi_conn = iso_yes,
  .can_cache = iso_can_cache,
  .pread = iso_pread,
};

NBDKIT_REGISTER_BACKEND (iso)
