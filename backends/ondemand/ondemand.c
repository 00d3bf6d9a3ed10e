/* nbdkit ondemand backend: a persistent file system per export name,
 * made on first use in dir= (nbdkit-ondemand-plugin(1)).
 *
 * Owns the exports directory: the checking of export names (no '.',
 * '/' or ':', at most NAME_MAX bytes, "" is "default"), the making of
 * a missing export (mkfs or command= writes a hidden temporary file,
 * which link(2) then puts in place, so that two clients making the same
 * export at once get one file system), the lock of an export while a
 * client uses it, and the listing.  The lock is flock(2) on a
 * descriptor of its own, which never leaves this process: the data
 * descriptor may go to the server (passthrough) and outlive a close
 * here.  The parameters and the serving of the data are mkfs-disk.c's.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../mkfs-disk.h"

static char *dir;                       /* dir= */
static bool wait_lock;                  /* wait= */
static int dir_fd = -1;

static void
ondemand_unload (void)
{
  mkfs_unload ();
  free (dir);
  if (dir_fd >= 0)
    close (dir_fd);
}

static int
ondemand_config (const char *key, const char *value)
{
  if (strcmp (key, "dir") == 0) {
    free (dir);
    dir = nbdkit_realpath (value);
    return dir ? 0 : -1;
  }
  if (strcmp (key, "wait") == 0) {
    int r = nbdkit_parse_bool (value);

    if (r == -1)
      return -1;
    wait_lock = r;
    return 0;
  }
  return mkfs_config ("ondemand", key, value) == -1 ? -1 : 0;
}

static int
ondemand_config_complete (void)
{
  struct stat st;

  if (!dir) {
    nbdkit_error ("dir= is required: the directory that holds the "
                  "exports' file systems, e.g. dir=/var/tmp/exports");
    return -1;
  }
  if (mkfs_config_complete ("ondemand") == -1)
    return -1;
  dir_fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd == -1 || fstat (dir_fd, &st) == -1) {
    nbdkit_error ("dir=%s: %m (give an existing directory)", dir);
    return -1;
  }
  if (access (dir, W_OK | X_OK) == -1) {
    nbdkit_error ("dir=%s: %m (the backend makes the file systems there)",
                  dir);
    return -1;
  }
  return 0;
}

/* nbdkit's rule: no '.', '/' or ':' (so no hidden file, no ".." and no
 * path), and a name the directory can hold.  NULL, or why not.
 */
static const char *
bad_name (const char *name)
{
  if (strlen (name) > NAME_MAX)
    return "longer than NAME_MAX (255) bytes";
  if (strchr (name, '/'))
    return "'/' cannot be in an export name";
  if (strchr (name, '.'))
    return "'.' cannot be in an export name";
  if (strchr (name, ':'))
    return "':' cannot be in an export name";
  return NULL;
}

static const char *
ondemand_default_export (int readonly, int is_tls)
{
  return "default";
}

static int
ondemand_list_exports (int readonly, int is_tls,
                       struct nbdkit_exports *exports)
{
  int fd = openat (dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d;
  struct dirent *e;
  int r = 0;

  if (fd == -1 || (d = fdopendir (fd)) == NULL) {
    nbdkit_error ("dir=%s: %m", dir);
    if (fd >= 0)
      close (fd);
    return -1;
  }
  /* As nbdkit: the default export first, as "", which is the file
   * "default".
   */
  r = nbdkit_add_export (exports, "", NULL);
  while (r == 0 && (errno = 0, e = readdir (d)) != NULL) {
    struct stat st;

    if (bad_name (e->d_name) || !*e->d_name ||
        strcmp (e->d_name, "default") == 0)
      continue;
    if (fstatat (dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
        !S_ISREG (st.st_mode))
      continue;
    r = nbdkit_add_export (exports, e->d_name, NULL);
  }
  if (r == 0 && errno) {
    nbdkit_error ("dir=%s: readdir: %m", dir);
    r = -1;
  }
  closedir (d);
  return r;
}

/* Make the export's file system if it does not exist yet. */
static int
create_export (const char *name)
{
  static unsigned counter;
  char *tmp, *path;
  int r = -1;

  if (faccessat (dir_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
    return 0;
  if (asprintf (&tmp, "%s/.ondemand-%ld-%u", dir, (long) getpid (),
                __atomic_add_fetch (&counter, 1, __ATOMIC_RELAXED)) == -1)
    goto oom;
  if (asprintf (&path, "%s/%s", dir, name) == -1) {
    free (tmp);
    goto oom;
  }
  unlink (tmp);
  nbdkit_debug ("ondemand: making export '%s'", name);
  if (mkfs_create ("ondemand", tmp) == 0) {
    /* link fails with EEXIST if another client made it first: keep
     * theirs.
     */
    if (link (tmp, path) == 0 || errno == EEXIST)
      r = 0;
    else
      nbdkit_error ("ondemand: link %s to %s: %m", tmp, path);
  }
  unlink (tmp);
  free (tmp);
  free (path);
  return r;

 oom:
  nbdkit_error ("out of memory");
  return -1;
}

static void *
ondemand_open (int readonly)
{
  const char *name = nbdkit_export_name ();
  const char *why;
  int fd, lockfd;

  if (!name || !*name)
    name = "default";
  if ((why = bad_name (name)) != NULL) {
    nbdkit_error ("export name '%s' refused: %s", name, why);
    errno = EINVAL;
    return NULL;
  }
  if (create_export (name) == -1)
    return NULL;

  lockfd = openat (dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (lockfd == -1) {
    nbdkit_error ("%s/%s: %m", dir, name);
    return NULL;
  }
  /* Try first without waiting, so that a wait is logged. */
  bool waiting = false;
  while (flock (lockfd, LOCK_EX | (waiting ? 0 : LOCK_NB)) == -1) {
    if (errno == EINTR)
      continue;
    if (errno == EWOULDBLOCK && wait_lock && !waiting) {
      nbdkit_debug ("export '%s' is locked by another client: waiting "
                    "for it (wait=true)", name);
      waiting = true;
      continue;
    }
    if (errno == EWOULDBLOCK) {
      nbdkit_error ("export '%s': filesystem is locked by another client "
                    "(wait=true makes a client wait for it)", name);
      errno = EBUSY;
    }
    else
      nbdkit_error ("%s/%s: flock: %m", dir, name);
    close (lockfd);
    return NULL;
  }
  fd = openat (dir_fd, name,
               (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW |
               O_NOCTTY);
  if (fd == -1) {
    nbdkit_error ("%s/%s: %m", dir, name);
    close (lockfd);
    return NULL;
  }
  return mkfs_handle_new (fd, lockfd, name);
}

static struct nbdkit_backend ondemand = {
  .name = "ondemand",
  .longname = "nbdkit ondemand backend",
  .version = PACKAGE_VERSION,
  .description = "A persistent file system per export name, made on "
                 "first use.",
  .config_help =
    "dir=<EXPORTSDIR>   (required) The directory of the file systems.\n"
    MKFS_CONFIG_HELP "\n"
    "wait=true          A second client of an export waits for the first\n"
    "                   to go (default: it is refused).",
  .magic_config_key = "size",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .unload = ondemand_unload,
  .config = ondemand_config,
  .config_complete = ondemand_config_complete,
  .list_exports = ondemand_list_exports,
  .default_export = ondemand_default_export,
  .open = ondemand_open,
  .close = mkfs_close,
  .get_size = mkfs_get_size,
  .can_fua = mkfs_can_fua,
  .can_fast_zero = mkfs_can_fast_zero,
  .pread = mkfs_pread,
  .pwrite = mkfs_pwrite,
  .flush = mkfs_flush,
  .trim = mkfs_trim,
  .zero = mkfs_zero,
  .extents = mkfs_extents,
};

NBDKIT_REGISTER_BACKEND (ondemand)
