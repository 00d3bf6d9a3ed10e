/* nbdkit tmpdisk backend: a fresh, empty file system for each
 * connection, deleted when it closes (nbdkit-tmpdisk-plugin(1)).
 *
 * Owns the life of each connection's disk: open makes a private
 * directory in $TMPDIR (or /var/tmp), runs mkfs or command= there to
 * make "disk", opens it and removes the file and the directory at once,
 * so that nothing is left behind however the process ends; the open
 * descriptor is the disk until close.  It is handed to the server
 * (mkfs_handle_new), which gives it back when it re-opens the handle
 * after a crash of this process: the re-open serves the same disk
 * (nbdkit_previous_fd) instead of making a new one.  The parameters and
 * the serving of the data are mkfs-disk.c's.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../mkfs-disk.h"
#include "../run-tool.h"

static void
tmpdisk_unload (void)
{
  mkfs_unload ();
}

static int
tmpdisk_config (const char *key, const char *value)
{
  return mkfs_config ("tmpdisk", key, value) == -1 ? -1 : 0;
}

static int
tmpdisk_config_complete (void)
{
  return mkfs_config_complete ("tmpdisk");
}

static void *
tmpdisk_open (int readonly)
{
  char *dir, *disk = NULL;
  int fd = nbdkit_previous_fd (), err;

  if (fd >= 0) {
    nbdkit_debug ("tmpdisk: re-opened after a restart: serving the "
                  "connection's disk as it was");
    return mkfs_handle_new (fd, -1, "tmpdisk");
  }
  dir = tool_mkdtemp ("tmpdisk");
  if (!dir)
    return NULL;
  if (asprintf (&disk, "%s/disk", dir) == -1) {
    disk = NULL;
    nbdkit_error ("out of memory");
    goto fail;
  }
  if (mkfs_create ("tmpdisk", disk) == -1)
    goto fail;
  fd = open (disk, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY);
  if (fd == -1) {
    nbdkit_error ("tmpdisk: %s: %m", disk);
    goto fail;
  }
  tool_rmdir (dir);
  free (disk);
  free (dir);
  return mkfs_handle_new (fd, -1, "tmpdisk");

 fail:
  err = errno;
  tool_rmdir (dir);
  free (disk);
  free (dir);
  errno = err;
  return NULL;
}

static struct nbdkit_backend tmpdisk = {
  .name = "tmpdisk",
  .longname = "nbdkit tmpdisk backend",
  .version = PACKAGE_VERSION,
  .description = "A fresh, empty file system for each client connection.",
  .config_help = MKFS_CONFIG_HELP,
  .magic_config_key = "size",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .unload = tmpdisk_unload,
  .config = tmpdisk_config,
  .config_complete = tmpdisk_config_complete,
  .open = tmpdisk_open,
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

NBDKIT_REGISTER_BACKEND (tmpdisk)
