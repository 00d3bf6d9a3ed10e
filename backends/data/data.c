/* nbdkit data backend: a disk whose first contents are given on the
 * command line, in the data format (format.c), in base64 or as raw
 * bytes, and which is then a writable RAM disk like the memory backend.
 *
 * This file owns the parameters and the disk: the contents are built
 * as a sparse blob (blob.c) and written into a memfd, which is sparse
 * too, so '@1T 1' costs a page, not a terabyte.  The memfd is the
 * server's (wants_memfd): after a crash the next incarnation of the
 * backend finds the disk as it was, writes included, and does not
 * build it again.  Pages are allocated, freed and reported as by
 * nbdkit's sparse array (../sparse-file.h), and blob_render allocates
 * the first contents as nbdkit's data plugin does.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "../sparse-file.h"
#include "blob.h"
#include "format.h"

/* What the contents come from: exactly one of them. */
static enum { SRC_NONE, SRC_DATA, SRC_RAW, SRC_BASE64 } source;
static const char *source_key;
static char *source_value;

static int64_t size = -1;              /* size=, or -1: the data's size */
static struct data_var *vars;
static size_t nvars;
static struct node *tree;              /* data=, parsed */

static int fd = -1;
static int64_t disk_size;
static enum sparse_allocator allocator = ALLOC_SPARSE;
static bool locked;                    /* allocator=malloc,mlock=true */

static int
set_source (int which, const char *key, const char *value)
{
  if (source != SRC_NONE) {
    nbdkit_error ("%s= and %s= cannot both be given: the contents come "
                  "from exactly one of data=, raw= and base64=",
                  source_key, key);
    return -1;
  }
  source_value = strdup (value);
  if (!source_value) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  source = which;
  source_key = which == SRC_DATA ? "data" :
               which == SRC_RAW ? "raw" : "base64";
  return 0;
}

static int
add_var (const char *key, const char *value)
{
  struct data_var *v;
  size_t i;

  for (i = 0; i < nvars; i++) {
    if (strcmp (vars[i].name, key) == 0) {  /* the last one wins */
      char *s = strdup (value);

      if (!s) {
        nbdkit_error ("strdup: %m");
        return -1;
      }
      free (vars[i].value);
      vars[i].value = s;
      return 0;
    }
  }
  v = realloc (vars, (nvars + 1) * sizeof *v);
  if (!v) {
    nbdkit_error ("realloc: %m");
    return -1;
  }
  vars = v;
  v = &vars[nvars];
  *v = (struct data_var) { .name = strdup (key), .value = strdup (value) };
  if (!v->name || !v->value) {
    free (v->name);
    free (v->value);
    nbdkit_error ("strdup: %m");
    return -1;
  }
  nvars++;
  return 0;
}

static int
data_config (const char *key, const char *value)
{
  if (strcmp (key, "data") == 0)
    return set_source (SRC_DATA, key, value);
  if (strcmp (key, "raw") == 0)
    return set_source (SRC_RAW, key, value);
  if (strcmp (key, "base64") == 0)
    return set_source (SRC_BASE64, key, value);
  if (strcmp (key, "size") == 0) {
    size = nbdkit_parse_size (value);
    return size == -1 ? -1 : 0;
  }
  if (strcmp (key, "allocator") == 0)
    return sparse_parse_allocator (value, &allocator, &locked);
  if (data_format_is_name (key))
    return add_var (key, value);
  nbdkit_error ("unknown parameter '%s' (the data backend takes data=, "
                "raw=, base64=, size=, allocator=sparse|malloc[,mlock=true] "
                "and variables NAME=VALUE "
                "for $NAME)", key);
  return -1;
}

static int
data_config_complete (void)
{
  if (source == SRC_NONE) {
    nbdkit_error ("the contents of the disk are required: give data=, "
                  "raw= or base64=, e.g. nbdkit data '1 2 3 @0x1fe 0x55 "
                  "0xaa'");
    return -1;
  }
  if (source == SRC_DATA) {
    tree = data_format_parse (source_value, "data=");
    if (!tree)
      return -1;
  }
  else if (nvars > 0) {
    nbdkit_error ("unknown parameter '%s' (variables are for data=, not "
                  "for %s=)", vars[0].name, source_key);
    return -1;
  }
  return 0;
}

/* RFC 4648 base64; whitespace is skipped, padding is optional. */
static int
decode_base64 (const char *s, struct blob *out)
{
  static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t len = strlen (s), i, n = 0, pad = 0;
  unsigned char *buf = malloc (len / 4 * 3 + 3);
  uint32_t acc = 0;
  int bits = 0;
  int r;

  if (!buf) {
    nbdkit_error ("malloc: %m");
    return -1;
  }
  for (i = 0; i < len; i++) {
    const char *p;
    unsigned char c = s[i];

    if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
      continue;
    if (c == '=') {
      pad++;
      continue;
    }
    p = c ? strchr (alphabet, c) : NULL;
    if (!p || pad > 0) {
      nbdkit_error ("base64=: character %zu ('%c') is not base64%s", i + 1,
                    c, pad > 0 ? " (data after the '=' padding)" : "");
      free (buf);
      return -1;
    }
    acc = (acc << 6) | (uint32_t) (p - alphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      buf[n++] = (acc >> bits) & 0xff;
    }
  }
  /* 6 bits left over can never be a whole byte: a truncated input. */
  if (bits >= 6 || pad > 2) {
    nbdkit_error ("base64=: the input is truncated or badly padded");
    free (buf);
    return -1;
  }
  r = blob_put_literal (out, 0, buf, n);
  free (buf);
  return r;
}

static int
build (struct blob *b)
{
  switch (source) {
  case SRC_DATA:
    if (data_format_eval (tree, &vars, &nvars, b) == -1)
      return -1;
    if (nbdkit_debug_flag ("AST", 0))
      data_format_print_ast (tree, vars, nvars);
    for (size_t i = 0; i < nvars; i++)
      if (!vars[i].used)
        fprintf (stderr, "warning: parameter %s= is not used: no $%s in "
                 "the data\n", vars[i].name, vars[i].name);
    return 0;
  case SRC_RAW:
    return blob_put_literal (b, 0, source_value, strlen (source_value));
  case SRC_BASE64:
    return decode_base64 (source_value, b);
  case SRC_NONE:
    break;
  }
  return -1;
}

static int
data_get_ready (void)
{
  struct blob b = BLOB_INIT;
  struct stat st;

  fd = nbdkit_memfd ();
  if (fd >= 0 && fstat (fd, &st) == 0 && st.st_size > 0) {
    /* A restart: the disk is there, writes and all. */
    disk_size = st.st_size;
    nbdkit_debug ("data: the disk (%" PRId64 " bytes) is kept from before",
                  disk_size);
    return locked ? sparse_mlock ("data", fd, disk_size) : 0;
  }
  if (fd == -1)                 /* run without the server's memfd */
    fd = memfd_create ("nbdkit-data", MFD_CLOEXEC);
  if (fd == -1) {
    nbdkit_error ("memfd_create: %m");
    return -1;
  }
  if (build (&b) == -1)
    goto err;
  disk_size = size >= 0 ? size : (int64_t) b.len;
  if (allocator == ALLOC_MALLOC && sparse_malloc_fits ("data", disk_size) == -1)
    goto err;
  if (ftruncate (fd, disk_size) == -1) {
    nbdkit_error ("cannot make a disk of %" PRId64 " bytes in memory: %m",
                  disk_size);
    goto err;
  }
  if (blob_render (&b, fd, disk_size) == -1) {
    /* Leave no half-built disk for the next incarnation. */
    if (ftruncate (fd, 0) == -1)
      nbdkit_debug ("ftruncate: %m");
    goto err;
  }
  nbdkit_debug ("data: the disk has %" PRId64 " bytes, %zu pieces",
                disk_size, b.n);
  blob_reset (&b);
  return locked ? sparse_mlock ("data", fd, disk_size) : 0;
 err:
  blob_reset (&b);
  return -1;
}

static void
data_unload (void)
{
  size_t i;

  data_format_free (tree);
  for (i = 0; i < nvars; i++) {
    data_format_free (vars[i].tree);
    free (vars[i].name);
    free (vars[i].value);
    free (vars[i].label);
  }
  free (vars);
  free (source_value);
}

static void
data_dump_plugin (void)
{
  printf ("data_base64=yes\n");
  printf ("mlock=yes\n");
  printf ("zstd=no\n");
}

static void *
data_open (int readonly)
{
  return &fd;
}

static int64_t
data_get_size (void *handle)
{
  return disk_size;
}

static int data_yes (void *handle) { return 1; }
static int data_fua (void *handle) { return NBDKIT_FUA_NATIVE; }
static int data_cache (void *handle) { return NBDKIT_CACHE_NATIVE; }

static int
data_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  return sparse_pread ("data", fd, buf, count, offset);
}

static int
data_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
             uint32_t flags)
{
  return sparse_page_pwrite ("data", fd, buf, count, offset);
}

static int
data_flush (void *handle, uint32_t flags)
{
  return 0;                     /* memory is as durable as it gets */
}

/* Trim is zero, as in nbdkit: the range reads as zeroes afterwards. */
static int
data_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  if (locked)                   /* keep the locked memory */
    return sparse_write_zeroes ("data", fd, count, offset);
  return sparse_page_zero ("data", fd, disk_size, count, offset);
}

static int
data_cache_cb (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return 0;
}

static int
data_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
              struct nbdkit_extents *extents)
{
  if (allocator == ALLOC_MALLOC)        /* a flat array: all data */
    return nbdkit_add_extent (extents, offset, count, 0);
  return sparse_page_extents ("data", fd, disk_size, count, offset, flags,
                              extents);
}

static struct nbdkit_backend data = {
  .name = "data",
  .longname = "nbdkit data backend",
  .version = PACKAGE_VERSION,
  .description = "A RAM disk whose first contents are given on the "
                 "command line.",
  .config_help =
    "[data=]'DATA'    The contents in the data format, e.g. "
    "'1 2 3 @0x1fe 0x55 0xaa'.\n"
    "raw=BYTES        Or: the contents as raw bytes.\n"
    "base64=BASE64    Or: the contents in base64.\n"
    "size=SIZE        Truncate or extend the disk to SIZE bytes.\n"
    "allocator=sparse|malloc[,mlock=true]\n"
    "                 As nbdkit memory (allocator=zstd is refused).\n"
    "NAME=DATA        A variable, for $NAME in data=.",
  .magic_config_key = "data",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .wants_memfd = true,
  .config = data_config,
  .config_complete = data_config_complete,
  .get_ready = data_get_ready,
  .unload = data_unload,
  .dump_plugin = data_dump_plugin,
  .open = data_open,
  .get_size = data_get_size,
  .can_multi_conn = data_yes,
  .can_fast_zero = data_yes,
  .can_fua = data_fua,
  .can_cache = data_cache,
  .pread = data_pread,
  .pwrite = data_pwrite,
  .flush = data_flush,
  .trim = data_zero,
  .zero = data_zero,
  .cache = data_cache_cb,
  .extents = data_extents,
};

NBDKIT_REGISTER_BACKEND (data)
