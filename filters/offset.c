/* filters/offset.c: serve a range of the layer below (offset=, range=),
 * as nbdkit-offset-filter(1) does.  Every request is shifted by the
 * offset; the size is the range (or what is left after the offset).
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "filter.h"

static int64_t offset, range = -1;

static int
offset_config (const char *key, const char *value)
{
  if (strcmp (key, "offset") == 0)
    return fparse_size (key, value, &offset);
  return fparse_size (key, value, &range);
}

static void
offset_open (struct fopen *o)
{
  uint64_t size = o->caps->size;
  uint64_t start = (uint64_t) offset;
  char msg[256];

  if (start > size) {
    snprintf (msg, sizeof msg, "offset=%" PRIu64 " is beyond the end of "
              "the disk (size %" PRIu64 ")", start, size);
    goto fail;
  }
  if (range >= 0 && (uint64_t) range > size - start) {
    snprintf (msg, sizeof msg, "offset=%" PRIu64 " range=%" PRId64
              ": the range ends at %" PRIu64 ", beyond the end of the "
              "disk (size %" PRIu64 ")",
              start, range, start + (uint64_t) range, size);
    goto fail;
  }
  o->caps->size = range >= 0 ? (uint64_t) range : size - start;
  fopen_done (o, NULL);
  return;

 fail:
  /* The client is told why; the server's log says so too. */
  nbdkit_error ("offset filter: %s", msg);
  fopen_fail (o, HP_EINVAL, msg);
}

static void
offset_shift (void *handle, struct freq *r)
{
  r->offset += (uint64_t) offset;
  freq_next (r);
}

static const char *const keys[] = { "offset", "range", NULL };

const struct filter offset_filter = {
  .name = "offset",
  .description = "serve a range of the disk",
  .config_help =
    "offset=SIZE         where the range begins (default 0)\n"
    "range=SIZE          how long it is (default: to the end)",
  .keys = keys,
  .config = offset_config,
  .open = offset_open,
  .pread = offset_shift,
  .pwrite = offset_shift,
  .trim = offset_shift,
  .zero = offset_shift,
  .cache = offset_shift,
  .extents = offset_shift,
};
