/* filters/ddrescue.c: serve a disk image rescued by GNU ddrescue as
 * its mapfile says (nbdkit-ddrescue-filter(1)): a read of bytes the
 * map marks as finished ('+') passes through; a read touching any
 * other byte (non-tried, non-trimmed, non-scraped, bad, or not in the
 * map) fails with EIO, so the image's zeros are not taken for data.
 * The export is read-only and cannot cache, as nbdkit's.
 *
 * ddrescue-mapfile=FILE is read once, at configuration, before the
 * server serves (the only file I/O here), and parsed by the pure
 * parser of ddrescue-map.c.  Owns the parsed map (static).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filter.h"
#include "ddrescue-map.h"

/* A mapfile has a line per region of the disk: this is far more than
 * any real one and bounds what is read into memory.
 */
#define MAX_MAPFILE (64 * 1024 * 1024)

static struct ddr_map map;
static char *mapfile;

/* The whole file, into a malloc'd buffer (*len bytes). */
static char *
read_mapfile (const char *path, size_t *len)
{
  struct stat st;
  char *buf = NULL;
  size_t got = 0;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd == -1) {
    nbdkit_error ("ddrescue-mapfile=%s: %s", path, strerror (errno));
    return NULL;
  }
  if (fstat (fd, &st) == -1) {
    nbdkit_error ("ddrescue-mapfile=%s: %s", path, strerror (errno));
    goto fail;
  }
  if (!S_ISREG (st.st_mode)) {
    nbdkit_error ("ddrescue-mapfile=%s: not a regular file (give the "
                  "mapfile written by ddrescue)", path);
    goto fail;
  }
  if (st.st_size > MAX_MAPFILE) {
    nbdkit_error ("ddrescue-mapfile=%s: %lld bytes, larger than any "
                  "ddrescue mapfile should be (at most %d)", path,
                  (long long) st.st_size, MAX_MAPFILE);
    goto fail;
  }
  buf = malloc ((size_t) st.st_size + 1);
  if (!buf) {
    nbdkit_error ("ddrescue-mapfile=%s: out of memory", path);
    goto fail;
  }
  /* Up to the size seen: a file that grows meanwhile is cut there. */
  while (got < (size_t) st.st_size) {
    /* never-blocks: at configuration, before the loop serves. */
    ssize_t r = read (fd, buf + got, (size_t) st.st_size - got);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      nbdkit_error ("ddrescue-mapfile=%s: read: %s", path, strerror (errno));
      goto fail;
    }
    if (r == 0)
      break;
    got += (size_t) r;
  }
  close (fd);
  *len = got;
  return buf;

 fail:
  free (buf);
  close (fd);
  return NULL;
}

static int
ddrescue_config (const char *key, const char *value)
{
  char err[256], *text;
  size_t len;
  int r;

  if (mapfile) {
    nbdkit_error ("ddrescue-mapfile=%s: the mapfile was already given "
                  "(ddrescue-mapfile=%s): give it once", value, mapfile);
    return -1;
  }
  if (!(text = read_mapfile (value, &len)))
    return -1;
  r = ddr_map_parse (text, len, &map, err, sizeof err);
  free (text);
  if (r == -1) {
    nbdkit_error ("ddrescue-mapfile=%s: %s", value, err);
    return -1;
  }
  if (!(mapfile = strdup (value))) {
    nbdkit_error ("ddrescue-mapfile=%s: out of memory", value);
    return -1;
  }
  nbdkit_debug ("ddrescue: %s: %zu blocks, %zu rescued ranges", value,
                map.blocks, map.nr);
  return 0;
}

static int
ddrescue_config_complete (void)
{
  if (!mapfile) {
    nbdkit_error ("the ddrescue filter needs ddrescue-mapfile=FILE (the "
                  "mapfile GNU ddrescue wrote for the image)");
    return -1;
  }
  return 0;
}

static void
ddrescue_unload (void)
{
  ddr_map_free (&map);
  free (mapfile);
  mapfile = NULL;
}

static void
ddrescue_open (struct fopen *o)
{
  struct export_caps *c = o->caps;

  c->can_write = c->can_trim = c->can_zero = c->can_fast_zero = false;
  c->can_fua = c->fua_emulated = false;
  c->can_cache = false;
  fopen_done (o, NULL);
}

static void
ddrescue_pread (void *handle, struct freq *r)
{
  if (ddr_map_covers (&map, r->offset, r->count)) {
    freq_next (r);
    return;
  }
  nbdkit_debug ("ddrescue: read of %u bytes at %llu touches bytes not "
                "rescued: EIO", r->count, (unsigned long long) r->offset);
  freq_reply_error (r, HP_EIO, "ddrescue: the read touches bytes the "
                    "mapfile does not mark as rescued ('+')");
}

/* Not offered (the export is read-only and cannot cache): refused if
 * asked all the same.
 */
static void
ddrescue_refuse_write (void *handle, struct freq *r)
{
  freq_reply_error (r, HP_EPERM, "ddrescue: the export is read-only");
}

static void
ddrescue_refuse_cache (void *handle, struct freq *r)
{
  freq_reply_error (r, HP_EINVAL, "ddrescue: the export cannot cache");
}

static const char *const keys[] = { "ddrescue-mapfile", NULL };

const struct filter ddrescue_filter = {
  .name = "ddrescue",
  .description = "serve a ddrescue image, failing reads of unrescued areas",
  .config_help =
    "ddrescue-mapfile=FILE  the ddrescue mapfile of the image (required):\n"
    "                       reads of areas not marked '+' fail with EIO",
  .keys = keys,
  .config = ddrescue_config,
  .config_complete = ddrescue_config_complete,
  .unload = ddrescue_unload,
  .readonly_below = true,
  .open = ddrescue_open,
  .pread = ddrescue_pread,
  .pwrite = ddrescue_refuse_write,
  .trim = ddrescue_refuse_write,
  .zero = ddrescue_refuse_write,
  .cache = ddrescue_refuse_cache,
};
