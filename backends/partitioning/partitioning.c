/* nbdkit partitioning backend: a partitioned disk made from files, as
 * nbdkit's partitioning plugin.
 *
 * Owns the parameters (file=, repeated or bare, each taking the
 * alignment=, mbr-id= and type-guid= given before it; partition-type=),
 * the files' descriptors per connection, and the requests: each is cut
 * at the regions of the layout (layout.c).  Reads of the tables and of
 * the padding come from memory; reads and writes of a partition go to
 * its file.  The tables and padding are read-only: a write there must
 * leave them as they are (the same bytes, zeroes in the padding) or
 * the whole request fails with EIO before anything is written.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../sparse-file.h"
#include "partitioning.h"

static struct part *parts;
static size_t nr_parts;
static enum table_type table_type = TABLE_DEFAULT;
/* In force for the files that follow. */
static uint64_t cur_alignment = MAX_ALIGNMENT;
static uint8_t cur_mbr_id = DEFAULT_MBR_ID;
static uint8_t cur_type_guid[16];
static bool guid_set;

static struct layout layout;

struct handle {
  int *fds;                     /* one per file */
};

static int
add_file (const char *value)
{
  struct part *p;
  char *path;
  struct stat st;

  if (!(path = nbdkit_realpath (value)))
    return -1;
  if (stat (path, &st) == -1 || !S_ISREG (st.st_mode)) {
    nbdkit_error ("file=%s: not a regular file (each partition is a "
                  "regular file)", value);
    free (path);
    return -1;
  }
  if (st.st_size == 0) {
    nbdkit_error ("file=%s: the file is empty: zero length partitions are "
                  "not allowed", value);
    free (path);
    return -1;
  }
  if (!(p = realloc (parts, (nr_parts + 1) * sizeof *p))) {
    nbdkit_error ("out of memory");
    free (path);
    return -1;
  }
  parts = p;
  p = &parts[nr_parts++];
  memset (p, 0, sizeof *p);
  p->path = path;
  p->size = st.st_size;
  p->alignment = cur_alignment;
  p->mbr_id = cur_mbr_id;
  memcpy (p->type_guid, cur_type_guid, 16);
  return 0;
}

static int
partitioning_config (const char *key, const char *value)
{
  if (!guid_set) {
    parse_guid (DEFAULT_TYPE_GUID, cur_type_guid);
    guid_set = true;
  }
  if (strcmp (key, "file") == 0)
    return add_file (value);
  if (strcmp (key, "partition-type") == 0) {
    if (strcasecmp (value, "mbr") == 0)
      table_type = TABLE_MBR;
    else if (strcasecmp (value, "gpt") == 0)
      table_type = TABLE_GPT;
    else {
      nbdkit_error ("partition-type=%s: unknown partition table type "
                    "(use mbr or gpt)", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "alignment") == 0) {
    int64_t a = nbdkit_parse_size (value);

    if (a == -1)
      return -1;
    if (a < SECTOR || a > MAX_ALIGNMENT || (a & (a - 1)) != 0) {
      nbdkit_error ("alignment=%s: the alignment must be a power of 2 "
                    "from 512 to 1M (e.g. 4k or 1M)", value);
      return -1;
    }
    cur_alignment = a;
    return 0;
  }
  if (strcmp (key, "mbr-id") == 0) {
    unsigned id;

    if (strcmp (value, "default") == 0) {
      cur_mbr_id = DEFAULT_MBR_ID;
      return 0;
    }
    if (nbdkit_parse_unsigned ("mbr-id", value, &id) == -1)
      return -1;
    if (id == 0 || id > 0xff) {
      nbdkit_error ("mbr-id=%s: the MBR partition type must be from 0x01 "
                    "to 0xff (e.g. 0x83, Linux), or default", value);
      return -1;
    }
    cur_mbr_id = id;
    return 0;
  }
  if (strcmp (key, "type-guid") == 0) {
    if (strcmp (value, "default") == 0)
      return parse_guid (DEFAULT_TYPE_GUID, cur_type_guid);
    if (parse_guid (value, cur_type_guid) == -1) {
      nbdkit_error ("type-guid=%s: not a GUID (use the form "
                    "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX in hexadecimal, "
                    "e.g. %s, or default)", value, DEFAULT_TYPE_GUID);
      return -1;
    }
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (the partitioning backend takes "
                "file=, partition-type=, alignment=, mbr-id= and "
                "type-guid=)", key);
  return -1;
}

static int
partitioning_config_complete (void)
{
  if (nr_parts == 0) {
    nbdkit_error ("no files given: name one or more files, one for each "
                  "partition (nbdkit partitioning file1 [file2 ...])");
    return -1;
  }
  return layout_make (parts, nr_parts, table_type, &layout);
}

static void
partitioning_unload (void)
{
  size_t i;

  layout_free (&layout, nr_parts);
  for (i = 0; i < nr_parts; i++)
    free (parts[i].path);
  free (parts);
}

static void
partitioning_close (void *handle)
{
  struct handle *h = handle;
  size_t i;

  for (i = 0; i < nr_parts; i++)
    if (h->fds[i] >= 0)
      close (h->fds[i]);
  free (h->fds);
  free (h);
}

static void *
partitioning_open (int readonly)
{
  struct handle *h = calloc (1, sizeof *h);
  size_t i;

  if (!h || !(h->fds = malloc (nr_parts * sizeof *h->fds))) {
    nbdkit_error ("out of memory");
    free (h);
    return NULL;
  }
  for (i = 0; i < nr_parts; i++)
    h->fds[i] = -1;
  for (i = 0; i < nr_parts; i++) {
    struct stat st;

    h->fds[i] = open (parts[i].path,
                      (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (h->fds[i] == -1) {
      nbdkit_error ("%s: %m%s", parts[i].path,
                    !readonly && (errno == EACCES || errno == EROFS)
                    ? " (use -r to serve read-only files)" : "");
      goto err;
    }
    /* The table says how big each partition is: a file that shrank
     * would leave a partition with nothing behind its end.
     */
    if (fstat (h->fds[i], &st) == -1 || (uint64_t) st.st_size < parts[i].size) {
      nbdkit_error ("%s: the file is smaller than when the server started "
                    "(%" PRIu64 " bytes): restart the server", parts[i].path,
                    parts[i].size);
      nbdkit_set_error (EIO);
      goto err;
    }
  }
  return h;

err:
  partitioning_close (h);
  return NULL;
}

static int64_t
partitioning_get_size (void *handle)
{
  return layout.size;
}

static int
partitioning_can_multi_conn (void *handle)
{
  return 1;
}

static int
partitioning_can_cache (void *handle)
{
  return NBDKIT_CACHE_EMULATE;
}

/* The first region that ends after offset. */
static size_t
find_region (uint64_t offset)
{
  size_t lo = 0, hi = layout.nr_regions;

  while (lo < hi) {
    size_t mid = (lo + hi) / 2;

    if (layout.regions[mid].end <= offset)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

enum op { OP_READ, OP_CHECK, OP_WRITE };

/* Do op on each region that [offset, offset+count) covers. */
static int
walk (struct handle *h, enum op op, uint8_t *buf, uint32_t count,
      uint64_t offset)
{
  size_t i = find_region (offset);
  uint64_t end = offset + count;

  for (; i < layout.nr_regions && offset < end; i++) {
    const struct region *r = &layout.regions[i];
    uint64_t n = (r->end < end ? r->end : end) - offset;
    uint64_t ro = offset - r->start;
    uint8_t *b = buf + (count - (end - offset));

    switch (r->type) {
    case REGION_DATA:
      if (op == OP_READ)
        memcpy (b, r->data + ro, n);
      else if (op == OP_CHECK && memcmp (b, r->data + ro, n) != 0) {
        nbdkit_error ("write to the partition table at offset %" PRIu64
                      ": the partition table is read-only", offset);
        nbdkit_set_error (EIO);
        return -1;
      }
      break;
    case REGION_ZERO:
      if (op == OP_READ)
        memset (b, 0, n);
      else if (op == OP_CHECK) {
        uint64_t k;

        for (k = 0; k < n; k++)
          if (b[k]) {
            nbdkit_error ("write of non-zero bytes to padding at offset %"
                          PRIu64 ": the space between partitions is "
                          "read-only", offset + k);
            nbdkit_set_error (EIO);
            return -1;
          }
      }
      break;
    case REGION_FILE:
      if (op == OP_READ &&
          sparse_pread (parts[r->file].path, h->fds[r->file], b, n,
                        ro) == -1)
        return -1;
      if (op == OP_WRITE &&
          sparse_pwrite (parts[r->file].path, h->fds[r->file], b, n,
                         ro) == -1)
        return -1;
      break;
    }
    offset += n;
  }
  return 0;
}

static int
partitioning_pread (void *handle, void *buf, uint32_t count,
                    uint64_t offset, uint32_t flags)
{
  return walk (handle, OP_READ, buf, count, offset);
}

static int
partitioning_pwrite (void *handle, const void *buf, uint32_t count,
                     uint64_t offset, uint32_t flags)
{
  /* Check the whole request first, so that a refused write changes
   * nothing.
   */
  if (walk (handle, OP_CHECK, (uint8_t *) buf, count, offset) == -1)
    return -1;
  return walk (handle, OP_WRITE, (uint8_t *) buf, count, offset);
}

static int
partitioning_flush (void *handle, uint32_t flags)
{
  struct handle *h = handle;
  size_t i;

  for (i = 0; i < nr_parts; i++)
    if (fdatasync (h->fds[i]) == -1) {
      nbdkit_error ("%s: fdatasync: %m", parts[i].path);
      return -1;
    }
  return 0;
}

static struct nbdkit_backend partitioning = {
  .name = "partitioning",
  .longname = "nbdkit partitioning backend",
  .version = PACKAGE_VERSION,
  .description = "A partitioned disk made from files, one per partition.",
  .config_help =
    "[file=]<FILENAME>  (required) The file of a partition; repeat it.\n"
    "partition-type=mbr|gpt        The partition table (default: MBR for\n"
    "                              up to 4 files that fit, else GPT).\n"
    "alignment=<SIZE>              Alignment of the following partitions\n"
    "                              (default 1M).\n"
    "mbr-id=0xN|default            MBR type byte of the following\n"
    "                              partitions (default 0x83).\n"
    "type-guid=<GUID>|default      GPT type GUID of the following\n"
    "                              partitions (default Linux filesystem).",
  .magic_config_key = "file",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .config = partitioning_config,
  .config_complete = partitioning_config_complete,
  .unload = partitioning_unload,
  .open = partitioning_open,
  .close = partitioning_close,
  .get_size = partitioning_get_size,
  .can_multi_conn = partitioning_can_multi_conn,
  .can_cache = partitioning_can_cache,
  .pread = partitioning_pread,
  .pwrite = partitioning_pwrite,
  .flush = partitioning_flush,
};

NBDKIT_REGISTER_BACKEND (partitioning)
