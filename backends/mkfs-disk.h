/* nbdkit backends: what the tmpdisk and ondemand backends share -- the
 * parameters that say how a new file system is made (size=, type=,
 * label=, command= and the user's own VAR=VALUE), making one with mkfs
 * or the command, and serving a handle whose data is one disk file.
 */

#ifndef NBDKIT_MKFS_DISK_H
#define NBDKIT_MKFS_DISK_H

#include <stdint.h>

#include "nbdkit-backend.h"

/* One open disk: its data, and (ondemand) the descriptor holding the
 * export's lock.
 */
struct mkfs_handle {
  int fd;
  int lockfd;                   /* -1: none */
  int64_t size;
  char *name;                   /* for messages */
};

/* backend: "tmpdisk" or "ondemand", for messages.  Returns 1 if key was
 * one of these parameters (0 after storing it, -1 after nbdkit_error),
 * else 0.  A key that is no parameter of the backend becomes a shell
 * variable of command=, as in nbdkit (the caller handles its own keys
 * first).
 */
extern int mkfs_config (const char *backend, const char *key,
                        const char *value);
/* size= was given: 0, else -1 after nbdkit_error. */
extern int mkfs_config_complete (const char *backend);
extern void mkfs_unload (void);

/* Make the file system in the file disk (which must not exist: the
 * command makes it).  0, or -1 after nbdkit_error with the command's
 * output.
 */
extern int mkfs_create (const char *backend, const char *disk);

/* A handle on the disk open on fd (which it takes, also on error):
 * its size, and passthrough of fd.  NULL after nbdkit_error.
 */
extern struct mkfs_handle *mkfs_handle_new (int fd, int lockfd,
                                            const char *name);

/* The callbacks of a handle's data, for both backends. */
extern void mkfs_close (void *handle);
extern int64_t mkfs_get_size (void *handle);
extern int mkfs_can_fua (void *handle);
extern int mkfs_can_fast_zero (void *handle);
extern int mkfs_pread (void *handle, void *buf, uint32_t count,
                       uint64_t offset, uint32_t flags);
extern int mkfs_pwrite (void *handle, const void *buf, uint32_t count,
                        uint64_t offset, uint32_t flags);
extern int mkfs_flush (void *handle, uint32_t flags);
extern int mkfs_trim (void *handle, uint32_t count, uint64_t offset,
                      uint32_t flags);
extern int mkfs_zero (void *handle, uint32_t count, uint64_t offset,
                      uint32_t flags);
extern int mkfs_extents (void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, struct nbdkit_extents *extents);

#define MKFS_CONFIG_HELP \
  "[size=]<SIZE>      (required) The size of the file system.\n" \
  "type=<FS>          The file system type for mkfs (default ext4).\n" \
  "label=<LABEL>      The file system label.\n" \
  "command=<COMMAND>  A shell command that makes the disk file \"$disk\"\n" \
  "                   instead of mkfs (with $size, $type, $label and\n" \
  "                   every other VAR=VALUE parameter as variables)."

#endif /* NBDKIT_MKFS_DISK_H */
