/* nbdkit backends: making a new file system for the tmpdisk and
 * ondemand backends (mkfs, or the user's command= with its variables),
 * and serving a handle whose data is one disk file (see mkfs-disk.h).
 * The data of a handle goes to the server by passthrough when it takes
 * it; the callbacks here serve it otherwise.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "mkfs-disk.h"
#include "run-tool.h"
#include "sparse-file.h"

/* The variables of the command, "NAME=VALUE", NULL-terminated; $disk
 * is added for each run.  size= is $size in bytes.
 */
static char **vars;
static size_t nr_vars;
static bool have_size;
static char *command;

/* mkfs -t TYPE with the options each kind needs to write to a plain
 * file without asking, and its option for the label.
 */
static const char default_command[] =
  "fstype=${type:-ext4}\n"
  "labelopt=-L\n"
  "case \"$fstype\" in\n"
  "  ext2|ext3|ext4) force=-F ;;\n"
  "  xfs|btrfs) force=-f ;;\n"
  "  vfat|fat|msdos) force=-I; labelopt=-n ;;\n"
  "  ntfs) force=-Q ;;\n"
  "  *) force= ;;\n"
  "esac\n"
  "truncate -s \"$size\" \"$disk\" || exit\n"
  "if [ -n \"$label\" ]; then\n"
  "  exec mkfs -t \"$fstype\" $force $labelopt \"$label\" \"$disk\"\n"
  "else\n"
  "  exec mkfs -t \"$fstype\" $force \"$disk\"\n"
  "fi\n";

static bool
is_shell_name (const char *s)
{
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
    return false;
  for (s++; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_'))
      return false;
  return true;
}

/* Set (or replace) the variable key. */
static int
set_var (const char *key, const char *value)
{
  char *s, **nv;
  size_t len = strlen (key), i;

  if (asprintf (&s, "%s=%s", key, value) == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }
  for (i = 0; i < nr_vars; i++) {
    if (strncmp (vars[i], key, len) == 0 && vars[i][len] == '=') {
      free (vars[i]);
      vars[i] = s;
      return 0;
    }
  }
  nv = realloc (vars, (nr_vars + 2) * sizeof *nv);
  if (!nv) {
    free (s);
    nbdkit_error ("out of memory");
    return -1;
  }
  vars = nv;
  vars[nr_vars++] = s;
  vars[nr_vars] = NULL;
  return 0;
}

int
mkfs_config (const char *backend, const char *key, const char *value)
{
  if (strcmp (key, "size") == 0) {
    int64_t r = nbdkit_parse_size (value);
    char bytes[32];

    if (r == -1)
      return -1;
    snprintf (bytes, sizeof bytes, "%" PRIi64, r);
    have_size = true;
    return set_var ("size", bytes) == -1 ? -1 : 1;
  }
  if (strcmp (key, "type") == 0) {
    const char *p;

    if (!*value) {
      nbdkit_error ("type=: empty: give a file system type that mkfs "
                    "knows, e.g. type=ext4 or type=xfs");
      return -1;
    }
    for (p = value; *p; p++) {
      if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
            *p == '-')) {
        nbdkit_error ("type=%s: '%c' cannot be in a file system type "
                      "(mkfs runs mkfs.TYPE: use e.g. ext4, xfs, vfat)",
                      value, *p);
        return -1;
      }
    }
    return set_var ("type", value) == -1 ? -1 : 1;
  }
  if (strcmp (key, "command") == 0) {
    if (!*value) {
      nbdkit_error ("command=: empty: give a shell command that makes "
                    "the disk file \"$disk\", or leave out command= to "
                    "run mkfs");
      return -1;
    }
    free (command);
    command = strdup (value);
    if (!command) {
      nbdkit_error ("out of memory");
      return -1;
    }
    return 1;
  }
  if (strcmp (key, "disk") == 0) {
    nbdkit_error ("disk=%s: 'disk' cannot be a parameter: $disk is the "
                  "file the %s backend makes for each disk", value, backend);
    return -1;
  }
  /* label= and any other VAR=VALUE: a variable of the command. */
  if (!is_shell_name (key)) {
    nbdkit_error ("%s=%s: unknown parameter, and not a shell variable "
                  "name for command= (use letters, digits and _, not "
                  "starting with a digit)", key, value);
    return -1;
  }
  return set_var (key, value) == -1 ? -1 : 1;
}

int
mkfs_config_complete (const char *backend)
{
  if (!have_size) {
    nbdkit_error ("size= is required: the size of each file system, "
                  "e.g. 'nbdkit %s 1G' or size=1G", backend);
    return -1;
  }
  return 0;
}

void
mkfs_unload (void)
{
  for (size_t i = 0; i < nr_vars; i++)
    free (vars[i]);
  free (vars);
  vars = NULL;
  nr_vars = 0;
  free (command);
  command = NULL;
}

int
mkfs_create (const char *backend, const char *disk)
{
  char **env = calloc (nr_vars + 2, sizeof *env);
  char what[64];
  int r;

  if (!env || asprintf (&env[0], "disk=%s", disk) == -1) {
    free (env);
    nbdkit_error ("out of memory");
    return -1;
  }
  memcpy (env + 1, vars, nr_vars * sizeof *env);
  snprintf (what, sizeof what, "%s", 
            command ? "command=" : "mkfs");
  r = run_tool (what, command ? command : default_command, env, -1);
  free (env[0]);
  free (env);
  if (r == 0 && access (disk, F_OK) == -1) {
    nbdkit_error ("%s: command= did not make the disk file $disk (%s): it "
                  "must make it, e.g. with truncate -s $size \"$disk\"",
                  backend, disk);
    return -1;
  }
  return r;
}

struct mkfs_handle *
mkfs_handle_new (int fd, int lockfd, const char *name)
{
  struct mkfs_handle *h = calloc (1, sizeof *h);
  struct stat st;

  if (!h || !(h->name = strdup (name))) {
    nbdkit_error ("out of memory");
    goto fail;
  }
  h->fd = fd;
  h->lockfd = lockfd;
  if (fstat (fd, &st) == -1) {
    nbdkit_error ("%s: fstat: %m", name);
    goto fail;
  }
  if (!S_ISREG (st.st_mode)) {
    nbdkit_error ("%s: not a regular file", name);
    errno = EINVAL;
    goto fail;
  }
  h->size = st.st_size;
  if (nbdkit_passthrough_fd (fd, 0, 0) == -1)
    goto fail;
  return h;

 fail:
  if (h)
    free (h->name);
  free (h);
  close (fd);
  if (lockfd >= 0)
    close (lockfd);
  return NULL;
}

void
mkfs_close (void *handle)
{
  struct mkfs_handle *h = handle;

  close (h->fd);
  if (h->lockfd >= 0)
    close (h->lockfd);          /* releases the export's lock */
  free (h->name);
  free (h);
}

int64_t
mkfs_get_size (void *handle)
{
  return ((struct mkfs_handle *) handle)->size;
}

int
mkfs_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

int
mkfs_can_fast_zero (void *handle)
{
  return 1;
}

int
mkfs_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  struct mkfs_handle *h = handle;

  return sparse_pread (h->name, h->fd, buf, count, offset);
}

int
mkfs_flush (void *handle, uint32_t flags)
{
  struct mkfs_handle *h = handle;

  if (fdatasync (h->fd) == -1) {
    nbdkit_error ("%s: fdatasync: %m", h->name);
    return -1;
  }
  return 0;
}

int
mkfs_pwrite (void *handle, const void *buf, uint32_t count,
             uint64_t offset, uint32_t flags)
{
  struct mkfs_handle *h = handle;

  if (sparse_pwrite (h->name, h->fd, buf, count, offset) == -1)
    return -1;
  return (flags & NBDKIT_FLAG_FUA) ? mkfs_flush (h, 0) : 0;
}

int
mkfs_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct mkfs_handle *h = handle;

  if (sparse_punch (h->name, h->fd, count, offset) == -1 &&
      errno != EOPNOTSUPP)
    return -1;
  return (flags & NBDKIT_FLAG_FUA) ? mkfs_flush (h, 0) : 0;
}

int
mkfs_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct mkfs_handle *h = handle;
  int r;

  r = fallocate (h->fd, FALLOC_FL_ZERO_RANGE, (off_t) offset, count);
  if (r == -1 && errno == EOPNOTSUPP && (flags & NBDKIT_FLAG_MAY_TRIM))
    r = fallocate (h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   (off_t) offset, count);
  if (r == -1) {
    if (errno == EOPNOTSUPP || errno == ENODEV) {
      nbdkit_set_error (ENOTSUP);   /* the library writes zeroes */
      return -1;
    }
    nbdkit_error ("%s: zeroing: %m", h->name);
    return -1;
  }
  return (flags & NBDKIT_FLAG_FUA) ? mkfs_flush (h, 0) : 0;
}

int
mkfs_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
              struct nbdkit_extents *extents)
{
  struct mkfs_handle *h = handle;

  return sparse_extents (h->name, h->fd, count, offset, flags, extents);
}
