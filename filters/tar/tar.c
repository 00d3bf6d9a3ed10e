/* filters/tar/tar.c: serve one entry of a tar file (tar-entry=), as
 * nbdkit-tar-filter(1) does: an OVA's disk, say, without unpacking it.
 *
 * Opening an export walks the archive's headers from the start, one
 * asynchronous read from the layer below at a time (a header block,
 * or the data of a GNU long name or pax extended header); the parsing
 * is in tar-header.c.  The walk stops at the entry, at the end of the
 * archive, at an error, or at tar-limit=.  From then on every request
 * is shifted to the entry's data, whose size is the export's: writes
 * change the entry in place, and the size cannot change.
 */

#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../filter.h"
#include "tar-header.h"

static char *entry;             /* tar-entry= */
static int64_t limit;           /* tar-limit=, 0 = none */

static int
tar_config (const char *key, const char *value)
{
  if (strcmp (key, "tar-entry") == 0) {
    if (entry) {
      nbdkit_error ("tar-entry=%s: tar-entry= was already given (%s): "
                    "give it once", value, entry);
      return -1;
    }
    if (*value == '\0') {
      nbdkit_error ("tar-entry=: the entry name is empty: give the name "
                    "as 'tar tf FILE' lists it");
      return -1;
    }
    entry = strdup (value);
    if (!entry) {
      nbdkit_error ("tar filter: out of memory");
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "tar-limit") == 0) {
    if (fparse_size (key, value, &limit) == -1)
      return -1;
    if (limit < 0) {
      nbdkit_error ("tar-limit=%s: the limit must be a size in bytes, or 0 "
                    "for none", value);
      return -1;
    }
    return 0;
  }
  /* tar=: nbdkit's GNU tar program; the archive is parsed here. */
  if (*value == '\0') {
    nbdkit_error ("tar=: the program name is empty (this filter does not "
                  "run tar: leave tar= out)");
    return -1;
  }
  nbdkit_debug ("tar: tar=%s ignored: this filter reads the headers itself",
                value);
  return 0;
}

static int
tar_config_complete (void)
{
  if (!entry) {
    nbdkit_error ("the tar filter needs tar-entry=PATH, the entry to serve "
                  "as 'tar tf FILE' lists it");
    return -1;
  }
  return 0;
}

static void
tar_unload (void)
{
  free (entry);
  entry = NULL;
}

/* The entry, once found: the handle of a connection. */
struct tar_entry {
  uint64_t offset, size;
};

/* Opening: the walk through the headers. */
struct walk {
  struct fopen *o;
  uint64_t file_size;
  struct tar_scan scan;
};

static void
walk_fail (struct walk *w, uint32_t status, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

static void
walk_fail (struct walk *w, uint32_t status, const char *fmt, ...)
{
  char msg[512];
  va_list args;

  va_start (args, fmt);
  vsnprintf (msg, sizeof msg, fmt, args);
  va_end (args);
  nbdkit_error ("tar filter: %s", msg);
  fopen_fail (w->o, status, msg);
  tar_scan_free (&w->scan);
  free (w);
}

static void walk_step (struct walk *w, enum tar_scan_result res);

/* Is [off, off+len) in the file and under tar-limit?  If not, fail. */
static bool
walk_can_read (struct walk *w, uint64_t off, uint64_t len)
{
  if (off > w->file_size || len > w->file_size - off) {
    walk_fail (w, HP_EINVAL, "the tar file is truncated: it ends at %" PRIu64
               " bytes, inside the header or metadata at offset %" PRIu64
               ", before the entry '%s' was found", w->file_size, off,
               entry);
    return false;
  }
  if (limit > 0 && (off > (uint64_t) limit || len > (uint64_t) limit - off)) {
    walk_fail (w, HP_EINVAL, "the entry '%s' was not found in the first "
               "%" PRIi64 " bytes of the tar file (tar-limit=%" PRIi64 "): "
               "raise tar-limit, or set it to 0 for no limit", entry,
               limit, limit);
    return false;
  }
  return true;
}

static bool
read_ok (struct walk *w, const struct hp_header *reply, void *payload,
         uint32_t len, uint64_t off, uint64_t want)
{
  if (!reply || reply->status) {
    char why[256];

    snprintf (why, sizeof why, "%s",
              reply && payload && len ? (const char *) payload : "error");
    payload_free (payload);
    walk_fail (w, HP_EIO, "could not read the tar file at offset %" PRIu64
               ": %s", off, why);
    return false;
  }
  if (len != want) {
    payload_free (payload);
    walk_fail (w, HP_EIO, "a short read of the tar file at offset %" PRIu64,
               off);
    return false;
  }
  return true;
}

static void
on_header (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  struct walk *w = opaque;
  enum tar_scan_result res;

  if (!read_ok (w, reply, payload, len, w->scan.pos, TAR_BLOCK))
    return;
  res = tar_scan_header (&w->scan, payload);
  payload_free (payload);
  walk_step (w, res);
}

static void
on_meta (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct walk *w = opaque;
  enum tar_scan_result res;

  if (!read_ok (w, reply, payload, len, w->scan.meta_off, w->scan.meta_len))
    return;
  res = tar_scan_meta (&w->scan, payload, len);
  payload_free (payload);
  walk_step (w, res);
}

static void
walk_found (struct walk *w)
{
  struct fopen *o = w->o;
  struct tar_entry *e;
  uint64_t off = w->scan.offset, size = w->scan.size;

  if (off > w->file_size || size > w->file_size - off) {
    walk_fail (w, HP_EINVAL, "the tar file is truncated: the entry '%s' "
               "(%" PRIu64 " bytes at offset %" PRIu64 ") goes beyond its "
               "end (%" PRIu64 " bytes)", entry, size, off, w->file_size);
    return;
  }
  e = malloc (sizeof *e);
  if (!e) {
    walk_fail (w, HP_ENOMEM, "out of memory");
    return;
  }
  e->offset = off;
  e->size = size;
  nbdkit_debug ("tar: entry '%s': %" PRIu64 " bytes at offset %" PRIu64
                " (header %" PRIu64 ")", entry, size, off, w->scan.entries);
  o->caps->size = size;
  /* Entries begin on a 512-byte boundary: a block size the layer below
   * asks for still fits, unless it is bigger than that.
   */
  if (o->caps->block_min > TAR_BLOCK)
    o->caps->block_min = o->caps->block_pref = o->caps->block_max = 0;
  fopen_done (o, e);
  tar_scan_free (&w->scan);
  free (w);
}

static void
walk_step (struct walk *w, enum tar_scan_result res)
{
  switch (res) {
  case TAR_SCAN_NEXT:
    if (w->scan.pos == w->file_size) {
      /* The file ends after an entry without the end-of-archive
       * blocks: GNU tar accepts that.
       */
      walk_fail (w, HP_EINVAL, "the entry '%s' is not in the tar file "
                 "(use 'tar tf' to list its entries)", entry);
      return;
    }
    if (!walk_can_read (w, w->scan.pos, TAR_BLOCK))
      return;
    fnext_request (w->o->next, HP_PREAD, 0, w->scan.pos, TAR_BLOCK, NULL,
                   on_header, w);
    return;
  case TAR_SCAN_META:
    if (!walk_can_read (w, w->scan.meta_off, w->scan.meta_len))
      return;
    fnext_request (w->o->next, HP_PREAD, 0, w->scan.meta_off,
                   (uint32_t) w->scan.meta_len, NULL, on_meta, w);
    return;
  case TAR_SCAN_FOUND:
    walk_found (w);
    return;
  case TAR_SCAN_END:
    walk_fail (w, HP_EINVAL, "the entry '%s' is not in the tar file "
               "(use 'tar tf' to list its entries)", entry);
    return;
  case TAR_SCAN_ERROR:
    walk_fail (w, HP_EINVAL, "%s", w->scan.error);
    return;
  }
}

static void
tar_open (struct fopen *o)
{
  struct walk *w = calloc (1, sizeof *w);

  if (!w) {
    nbdkit_error ("tar filter: out of memory");
    fopen_fail (o, HP_ENOMEM, "tar filter: out of memory");
    return;
  }
  w->o = o;
  w->file_size = o->caps->size;
  tar_scan_init (&w->scan, entry);
  if (w->file_size < TAR_BLOCK) {
    walk_fail (w, HP_EINVAL, "not a tar file: %" PRIu64 " bytes is less "
               "than one header", w->file_size);
    return;
  }
  walk_step (w, TAR_SCAN_NEXT);
}

static void
tar_close (void *handle)
{
  free (handle);
}

static void
tar_shift (void *handle, struct freq *r)
{
  const struct tar_entry *e = handle;

  r->offset += e->offset;
  freq_next (r);
}

static const char *const keys[] = { "tar-entry", "tar-limit", "tar", NULL };

const struct filter tar_filter = {
  .name = "tar",
  .description = "serve one entry of a tar file",
  .config_help =
    "tar-entry=PATH      the entry to serve, as 'tar tf' lists it "
    "(required)\n"
    "tar-limit=SIZE      how far into the file to look for it "
    "(default 0: no limit)",
  .keys = keys,
  .config = tar_config,
  .config_complete = tar_config_complete,
  .unload = tar_unload,
  .open = tar_open,
  .close = tar_close,
  .pread = tar_shift,
  .pwrite = tar_shift,
  .trim = tar_shift,
  .zero = tar_shift,
  .cache = tar_shift,
  .extents = tar_shift,
};
