/* nbdkit front end, filter framework: the temporary files of the
 * filters that keep data of their own (cow's overlay, cache's cache):
 * made in $TMPDIR (or /var/tmp) and unlinked at once, and whole-range
 * I/O on them.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../filters/filter.h"

int
tmpfile_create (const char *filter, const char *what)
{
  const char *dir = getenv ("TMPDIR");
  char *path;
  int fd;

  if (!dir || !*dir)
    dir = "/var/tmp";
  if (asprintf (&path, "%s/nbdkit-%s-XXXXXX", dir, filter) == -1) {
    nbdkit_error ("out of memory");
    return -1;
  }
  fd = mkostemp (path, O_CLOEXEC);
  if (fd == -1)
    nbdkit_error ("%s filter: cannot create the %s in %s: %m "
                  "(set TMPDIR to a writable directory)", filter, what, dir);
  else
    unlink (path);
  free (path);
  return fd;
}

int
tmpfile_io (int fd, bool write, void *buf, uint64_t n, uint64_t off)
{
  while (n > 0) {
    ssize_t r = write ? pwrite (fd, buf, n, (off_t) off)
      : pread (fd, buf, n, (off_t) off);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    if (r == 0) {
      if (write)
        return -1;
      memset (buf, 0, n);       /* beyond what was written: zeros */
      return 0;
    }
    buf = (char *) buf + r;
    n -= (uint64_t) r;
    off += (uint64_t) r;
  }
  return 0;
}
