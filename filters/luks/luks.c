/* filters/luks/luks.c: read and write a LUKS1-encrypted disk
 * (nbdkit-luks-filter(1)): the export is the decrypted payload.
 *
 * Opening an export reads the header and the key material of the
 * active key slots from below, then tries the passphrase on them on a
 * worker thread (PBKDF2 is slow by design).  Requests are cut into
 * chunks of whole 512-byte sectors; each chunk is read or written
 * below, and decrypted or encrypted on a worker thread, never on the
 * loop.  A write that does not cover whole sectors reads the sectors
 * at its edges first (read-modify-write).  Writes and zeroes hold a
 * range lock (frange_*, shared by every connection) on their sectors
 * for the whole of their work, so that two of them never interleave
 * their reads and writes of the same sector.  Reads take no lock.
 *
 * The parsing of the header is luks-header.c's, the cryptography
 * luks-crypto.c's; the passphrase is read as nbdkit reads passwords
 * (helper-protocol/secret-read.c).
 */

#include <config.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../filter.h"
#include "luks-crypto.h"
#include "luks-header.h"
#include "secret-read.h"

/* The most a request moves below at a time (a multiple of sectors). */
#define CHUNK (4u * 1024 * 1024)

static char *passphrase;

/* Locks on the payload's bytes, for read-modify-write. */
static struct frange_locks locks;

/* passphrase=: as nbdkit's passwords.  Read while the parameters are
 * parsed, before the loop runs.
 */
static int
luks_config (const char *key, const char *value)
{
  char *s = NULL;

  if (value[0] == '+')
    s = secret_from_file (key, value);
  else if (strcmp (value, "-") == 0) {
    if (!isatty (0)) {
      nbdkit_error ("%s=-: stdin is not a tty, cannot read the passphrase "
                    "interactively (use %s=+FILE or %s=-FD)", key, key, key);
      return -1;
    }
    s = secret_ask_tty (0, "passphrase: ");
    if (!s)
      nbdkit_error ("%s=-: reading the terminal: %m", key);
  }
  else if (value[0] == '-') {
    int fd;

    if (secret_parse_fd (key, value, &fd) == -1)
      return -1;
    if (fcntl (fd, F_GETFD) == -1) {
      nbdkit_error ("%s=%s: the server did not inherit a file descriptor %d "
                    "(start it with one open, as in '%s=-%d %d<FILE')", key,
                    value, fd, key, fd, fd);
      return -1;
    }
    s = secret_read_fd (fd, true);
    if (!s)
      nbdkit_error ("%s=%s: reading descriptor %d: %m", key, value, fd);
    close (fd);
  }
  else if ((s = strdup (value)) == NULL)
    nbdkit_error ("out of memory");
  if (!s)
    return -1;
  secret_free (passphrase);
  passphrase = s;
  return 0;
}

static int
luks_config_complete (void)
{
  if (!passphrase) {
    nbdkit_error ("the luks filter needs the passphrase parameter "
                  "(passphrase=SECRET, =+FILE, =- or =-FD)");
    return -1;
  }
  return 0;
}

static void
luks_unload (void)
{
  secret_free (passphrase);
  passphrase = NULL;
}

/* ---- per connection ---- */

struct luks_handle {
  struct luks_header hdr;
  uint8_t mk[LUKS_MAX_KEY_BYTES];
  uint64_t payload;                   /* the payload's offset below */
  uint64_t size;                      /* the export's size */
};

static void
luks_close (void *handle)
{
  struct luks_handle *h = handle;

  explicit_bzero (h->mk, sizeof h->mk);
  free (h);
}

/* ---- opening ---- */

struct opening {
  struct fopen *o;
  uint64_t disk_size;
  struct luks_header hdr;
  uint8_t *material[LUKS_NUM_SLOTS];
  unsigned pending;
  uint32_t status;                    /* the first read error */
  char msg[256];
  /* Set by the worker. */
  int slot;
  uint8_t mk[LUKS_MAX_KEY_BYTES];
};

static void
opening_free (struct opening *op)
{
  unsigned i;

  for (i = 0; i < LUKS_NUM_SLOTS; ++i)
    payload_free (op->material[i]);
  explicit_bzero (op->mk, sizeof op->mk);
  free (op);
}

static void
open_fail (struct opening *op, uint32_t status, const char *msg)
{
  nbdkit_error ("luks: %s", msg);
  fopen_fail (op->o, status, msg);
  opening_free (op);
}

static void
unlock_work (void *arg)
{
  struct opening *op = arg;

  op->slot = luks_unlock (&op->hdr, passphrase, strlen (passphrase),
                          op->material, op->mk, op->msg, sizeof op->msg);
}

static void
unlock_done (void *arg)
{
  struct opening *op = arg;
  struct export_caps *c = op->o->caps;
  struct luks_handle *h;

  if (op->slot == -1) {
    open_fail (op, HP_EIO, op->msg);
    return;
  }
  if (op->slot == LUKS_NUM_SLOTS) {
    open_fail (op, HP_EPERM, "LUKS passphrase is not correct, no key slot "
               "could be unlocked");
    return;
  }
  h = calloc (1, sizeof *h);
  if (!h) {
    open_fail (op, HP_ENOMEM, "out of memory");
    return;
  }
  h->hdr = op->hdr;
  memcpy (h->mk, op->mk, sizeof h->mk);
  h->payload = (uint64_t) op->hdr.payload_offset * LUKS_SECTOR;
  h->size = (op->disk_size - h->payload) / LUKS_SECTOR * LUKS_SECTOR;
  nbdkit_debug ("luks: unlocked key slot %d of %s (aes-%u-%s, %s), payload "
                "at %" PRIu64 ", %" PRIu64 " bytes", op->slot, h->hdr.uuid,
                h->hdr.aes_bits, h->hdr.cipher_mode, h->hdr.hash_spec,
                h->payload, h->size);
  c->size = h->size;
  c->can_trim = false;
  c->can_zero = c->can_write;         /* by writing encrypted zeros */
  c->can_fast_zero = false;
  c->can_extents = false;
  c->fua_emulated = c->fua_emulated && c->can_fua;
  c->block_min = 1;                   /* read-modify-write */
  if (c->block_pref < LUKS_SECTOR)
    c->block_pref = LUKS_SECTOR;
  c->block_max = UINT32_MAX;
  fopen_done (op->o, h);
  opening_free (op);
}

/* Each slot's read knows its index through this. */
struct material_read {
  struct opening *op;
  unsigned slot;
};

/* One read of key material is over (or our own count, once all are
 * asked): once none is left, unlock on a worker thread.
 */
static void
material_put (struct opening *op)
{
  if (--op->pending > 0)
    return;
  if (op->status) {
    open_fail (op, op->status, op->msg);
    return;
  }
  worker_submit (unlock_work, unlock_done, op);
}

static void
on_slot_read (void *opaque, const struct hp_header *reply, void *payload,
              uint32_t len)
{
  struct material_read *mr = opaque;
  struct opening *op = mr->op;
  unsigned i = mr->slot;

  free (mr);
  if (!reply || reply->status) {
    if (!op->status) {
      op->status = HP_EIO;
      snprintf (op->msg, sizeof op->msg, "reading the key material of "
                "key slot %u: %s", i, reply && payload && len
                ? (const char *) payload : "error");
    }
    payload_free (payload);
  }
  else if (len != luks_slot_material_size (&op->hdr, &op->hdr.slots[i])) {
    if (!op->status) {
      op->status = HP_EIO;
      snprintf (op->msg, sizeof op->msg, "a short read of the key material "
                "of key slot %u", i);
    }
    payload_free (payload);
  }
  else
    op->material[i] = payload;
  material_put (op);
}

static void
on_header (void *opaque, const struct hp_header *reply, void *payload,
           uint32_t len)
{
  struct opening *op = opaque;
  unsigned i;

  if (!reply || reply->status) {
    snprintf (op->msg, sizeof op->msg, "reading the LUKS header: %s",
              reply && payload && len ? (const char *) payload : "error");
    payload_free (payload);
    open_fail (op, HP_EIO, op->msg);
    return;
  }
  if (luks_header_parse (payload, len, op->disk_size, &op->hdr, op->msg,
                         sizeof op->msg) == -1) {
    payload_free (payload);
    open_fail (op, HP_EINVAL, op->msg);
    return;
  }
  payload_free (payload);
  nbdkit_debug ("luks: LUKS v1 header: cipher %s-%s, hash %s, %" PRIu32
                "-byte key, payload at sector %" PRIu32,
                op->hdr.cipher_name, op->hdr.cipher_mode, op->hdr.hash_spec,
                op->hdr.key_bytes, op->hdr.payload_offset);
  op->pending = 1;
  for (i = 0; i < LUKS_NUM_SLOTS; ++i) {
    const struct luks_slot *s = &op->hdr.slots[i];
    struct material_read *mr;

    if (s->active != LUKS_SLOT_ACTIVE)
      continue;
    mr = malloc (sizeof *mr);
    if (!mr) {
      op->status = HP_ENOMEM;
      snprintf (op->msg, sizeof op->msg, "out of memory");
      break;
    }
    mr->op = op;
    mr->slot = i;
    op->pending++;
    fnext_request (op->o->next, HP_PREAD, 0,
                   (uint64_t) s->key_offset * LUKS_SECTOR,
                   (uint32_t) luks_slot_material_size (&op->hdr, s), NULL,
                   on_slot_read, mr);
  }
  material_put (op);               /* our own count */
}

static void
luks_open (struct fopen *o)
{
  struct opening *op;
  uint64_t n;

  if (o->caps->block_min > LUKS_SECTOR) {
    nbdkit_error ("luks: the layer below needs blocks of %" PRIu32 " bytes, "
                  "more than a LUKS sector (put --filter=blocksize below "
                  "--filter=luks)", o->caps->block_min);
    fopen_fail (o, HP_EINVAL, "the layer below needs blocks larger than a "
                "LUKS sector");
    return;
  }
  op = calloc (1, sizeof *op);
  if (!op) {
    fopen_fail (o, HP_ENOMEM, "out of memory");
    return;
  }
  op->o = o;
  op->disk_size = o->caps->size;
  n = op->disk_size < LUKS_HEADER_SIZE ? op->disk_size : LUKS_HEADER_SIZE;
  if (n == 0) {
    open_fail (op, HP_EINVAL, "this disk does not contain a LUKS header "
               "(it is empty)");
    return;
  }
  fnext_request (o->next, HP_PREAD, 0, 0, (uint32_t) n, NULL, on_header, op);
}

/* ---- requests ---- */

/* A read, write or zero in progress, one chunk at a time. */
struct op {
  struct frange_lock lk;              /* first: the lock's start finds us */
  bool locked;
  struct freq *r;
  struct luks_handle *h;
  uint64_t pos, end;                  /* what is left, in the payload */
  /* The chunk: whole sectors [s0, s1) of the payload. */
  uint64_t s0, s1;
  uint8_t *buf;                       /* s1 - s0 bytes */
  void *below;                        /* a read chunk's bytes from below */
  void *head, *tail;                  /* RMW: the edge sectors' old bytes */
  unsigned pending;
  uint8_t *out;                       /* PREAD: the reply, r->count bytes */
  uint32_t status;
  char msg[256];
  int wret;                           /* the worker's result */
};

static uint64_t
down (uint64_t v)
{
  return v / LUKS_SECTOR * LUKS_SECTOR;
}

static uint64_t
up (uint64_t v)
{
  return (v + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
}

static void
op_free (struct op *op)
{
  payload_free (op->below);
  payload_free (op->head);
  payload_free (op->tail);
  free (op->buf);
  free (op->out);
  free (op);
}

static void
op_error (struct op *op, const struct hp_header *reply, const void *payload,
          uint32_t len, const char *what)
{
  if (op->status)
    return;
  op->status = reply && reply->status ? reply->status : HP_EIO;
  snprintf (op->msg, sizeof op->msg, "%s: %s", what,
            reply && payload && len ? (const char *) payload : "error");
}

/* The request is over: release the lock, answer. */
static void
op_finish (struct op *op)
{
  struct freq *r = op->r;

  if (op->locked) {
    op->locked = false;
    frange_release (&locks, &op->lk);
  }
  if (op->status)
    freq_reply_error (r, op->status, op->msg);
  else if (r->type == HP_PREAD) {
    freq_reply (r, op->out, r->count, 0);
    op->out = NULL;
  }
  else
    freq_reply (r, NULL, 0, 0);
  op_free (op);
}

/* The chunk after pos: whole sectors, at most CHUNK bytes. */
static void
chunk_bounds (struct op *op)
{
  op->s0 = down (op->pos);
  op->s1 = up (op->end);
  if (op->s1 - op->s0 > CHUNK)
    op->s1 = op->s0 + CHUNK;
}

/* -- reads -- */

static void read_chunk (struct op *op);

/* Worker: decrypt the chunk and copy the part asked into the reply. */
static void
read_work (void *arg)
{
  struct op *op = arg;
  uint64_t n = op->s1 - op->s0;
  uint64_t to = op->s1 < op->end ? op->s1 : op->end;

  memcpy (op->buf, op->below, n);
  op->wret = luks_crypt (&op->h->hdr, op->h->mk, false,
                         op->s0 / LUKS_SECTOR, op->buf, n / LUKS_SECTOR,
                         op->msg, sizeof op->msg);
  if (op->wret == 0)
    memcpy (op->out + (op->pos - op->r->offset),
            op->buf + (op->pos - op->s0), to - op->pos);
}

static void
read_done (void *arg)
{
  struct op *op = arg;

  payload_free (op->below);
  op->below = NULL;
  if (op->wret == -1) {
    op->status = HP_EIO;
    nbdkit_error ("luks: %s", op->msg);
    op_finish (op);
    return;
  }
  op->pos = op->s1 < op->end ? op->s1 : op->end;
  if (op->pos < op->end)
    read_chunk (op);
  else
    op_finish (op);
}

static void
on_read (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct op *op = opaque;

  if (!reply || reply->status || len != op->s1 - op->s0) {
    op_error (op, reply, payload, len, "reading the encrypted disk");
    payload_free (payload);
    op_finish (op);
    return;
  }
  op->below = payload;
  worker_submit (read_work, read_done, op);
}

static void
read_chunk (struct op *op)
{
  chunk_bounds (op);
  fnext_request (freq_below (op->r), HP_PREAD, 0, op->h->payload + op->s0,
                 (uint32_t) (op->s1 - op->s0), NULL, on_read, op);
}

/* -- writes and zeroes -- */

static void write_chunk (struct op *op);

/* Worker: the old edge sectors, patched with the new bytes, and the
 * whole chunk encrypted.
 */
static void
write_work (void *arg)
{
  struct op *op = arg;
  struct freq *r = op->r;
  const struct luks_header *hdr = &op->h->hdr;
  uint64_t n = op->s1 - op->s0;
  uint64_t to = op->s1 < op->end ? op->s1 : op->end;

  op->wret = 0;
  if (op->head) {
    memcpy (op->buf, op->head, LUKS_SECTOR);
    op->wret = luks_crypt (hdr, op->h->mk, false, op->s0 / LUKS_SECTOR,
                           op->buf, 1, op->msg, sizeof op->msg);
  }
  if (op->wret == 0 && op->tail) {
    uint8_t *t = op->buf + n - LUKS_SECTOR;

    memcpy (t, op->tail, LUKS_SECTOR);
    op->wret = luks_crypt (hdr, op->h->mk, false,
                           (op->s1 - LUKS_SECTOR) / LUKS_SECTOR, t, 1,
                           op->msg, sizeof op->msg);
  }
  if (op->wret == -1)
    return;
  if (r->type == HP_PWRITE)
    memcpy (op->buf + (op->pos - op->s0),
            (const uint8_t *) r->data + (op->pos - r->offset), to - op->pos);
  else
    memset (op->buf + (op->pos - op->s0), 0, to - op->pos);
  op->wret = luks_crypt (hdr, op->h->mk, true, op->s0 / LUKS_SECTOR,
                         op->buf, n / LUKS_SECTOR, op->msg, sizeof op->msg);
}

static void
on_written (void *opaque, const struct hp_header *reply, void *payload,
            uint32_t len)
{
  struct op *op = opaque;

  if (!reply || reply->status) {
    op_error (op, reply, payload, len, "writing the encrypted disk");
    payload_free (payload);
    op_finish (op);
    return;
  }
  payload_free (payload);
  op->pos = op->s1 < op->end ? op->s1 : op->end;
  if (op->pos < op->end)
    write_chunk (op);
  else
    op_finish (op);
}

static void
write_done (void *arg)
{
  struct op *op = arg;
  uint16_t flags = op->r->flags & HP_FLAG_FUA;

  payload_free (op->head);
  payload_free (op->tail);
  op->head = op->tail = NULL;
  if (op->wret == -1) {
    op->status = HP_EIO;
    nbdkit_error ("luks: %s", op->msg);
    op_finish (op);
    return;
  }
  fnext_request (freq_below (op->r), HP_PWRITE, flags,
                 op->h->payload + op->s0, (uint32_t) (op->s1 - op->s0),
                 op->buf, on_written, op);
  op->buf = NULL;                     /* the write has it */
}

static void
edge_put (struct op *op)
{
  if (--op->pending > 0)
    return;
  if (op->status) {
    op_finish (op);
    return;
  }
  worker_submit (write_work, write_done, op);
}

static void
on_head (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct op *op = opaque;

  if (!reply || reply->status || len != LUKS_SECTOR) {
    op_error (op, reply, payload, len, "reading for a read-modify-write");
    payload_free (payload);
  }
  else
    op->head = payload;
  edge_put (op);
}

static void
on_tail (void *opaque, const struct hp_header *reply, void *payload,
         uint32_t len)
{
  struct op *op = opaque;

  if (!reply || reply->status || len != LUKS_SECTOR) {
    op_error (op, reply, payload, len, "reading for a read-modify-write");
    payload_free (payload);
  }
  else
    op->tail = payload;
  edge_put (op);
}

static void
write_chunk (struct op *op)
{
  struct fnext *next = freq_below (op->r);
  uint64_t to;

  chunk_bounds (op);
  to = op->s1 < op->end ? op->s1 : op->end;
  op->buf = malloc (op->s1 - op->s0);
  if (!op->buf) {
    op->status = HP_ENOMEM;
    snprintf (op->msg, sizeof op->msg, "out of memory");
    op_finish (op);
    return;
  }
  /* The sectors that the new bytes do not cover whole are read first. */
  op->pending = 1;
  if (op->pos > op->s0 || (to < op->s0 + LUKS_SECTOR && to < op->s1)) {
    op->pending++;
    fnext_request (next, HP_PREAD, 0, op->h->payload + op->s0, LUKS_SECTOR,
                   NULL, on_head, op);
  }
  if (to < op->s1 && op->s1 - LUKS_SECTOR >= op->s0 + LUKS_SECTOR) {
    op->pending++;
    fnext_request (next, HP_PREAD, 0, op->h->payload + op->s1 - LUKS_SECTOR,
                   LUKS_SECTOR, NULL, on_tail, op);
  }
  edge_put (op);                      /* our own count */
}

static void
write_locked (struct frange_lock *l)
{
  struct op *op = (struct op *) l;

  op->locked = true;
  write_chunk (op);
}

static struct op *
op_new (struct luks_handle *h, struct freq *r)
{
  struct op *op;

  if (r->offset > h->size || r->count > h->size - r->offset) {
    freq_reply_error (r, r->type == HP_PREAD ? HP_EINVAL : HP_ENOSPC,
                      "the request goes beyond the end of the decrypted "
                      "disk");
    return NULL;
  }
  op = calloc (1, sizeof *op);
  if (!op) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return NULL;
  }
  op->r = r;
  op->h = h;
  op->pos = r->offset;
  op->end = r->offset + r->count;
  return op;
}

static void
luks_pread (void *handle, struct freq *r)
{
  struct op *op = op_new (handle, r);

  if (!op)
    return;
  if (r->count == 0) {
    op_finish (op);
    return;
  }
  op->out = malloc (r->count);
  op->buf = malloc (up (op->end) - down (op->pos) < CHUNK
                    ? up (op->end) - down (op->pos) : CHUNK);
  if (!op->out || !op->buf) {
    op->status = HP_ENOMEM;
    snprintf (op->msg, sizeof op->msg, "out of memory");
    op_finish (op);
    return;
  }
  read_chunk (op);
}

static void
luks_write (void *handle, struct freq *r)
{
  struct op *op;

  if (r->type == HP_ZERO && (r->flags & HP_FLAG_FAST_ZERO)) {
    freq_reply_error (r, HP_ENOTSUP, "the luks filter zeroes by writing "
                      "encrypted zeros, which is not fast");
    return;
  }
  op = op_new (handle, r);
  if (!op)
    return;
  if (r->count == 0) {
    op_finish (op);
    return;
  }
  op->lk.lo = down (op->pos);
  op->lk.hi = up (op->end);
  op->lk.start = write_locked;
  frange_acquire (&locks, &op->lk);
}

static void
luks_trim (void *handle, struct freq *r)
{
  freq_reply_error (r, HP_EINVAL, "the luks filter does not trim");
}

static void
luks_cache (void *handle, struct freq *r)
{
  struct luks_handle *h = handle;

  if (r->offset > h->size || r->count > h->size - r->offset) {
    freq_reply_error (r, HP_EINVAL, "the request goes beyond the end of the "
                      "decrypted disk");
    return;
  }
  r->offset += h->payload;
  freq_next (r);
}

static void
luks_extents (void *handle, struct freq *r)
{
  unsigned char *ext = malloc (HP_EXTENT_SIZE);

  if (!ext) {
    freq_reply_error (r, HP_ENOMEM, "out of memory");
    return;
  }
  hp_encode_extent (ext, r->count, 0);  /* all data */
  freq_reply (r, ext, HP_EXTENT_SIZE, 0);
}

static const char *const keys[] = { "passphrase", NULL };

const struct filter luks_filter = {
  .name = "luks",
  .description = "read and write LUKS-encrypted disks and partitions",
  .config_help =
    "passphrase=SECRET  the passphrase (or +FILE, - to be asked, -FD)",
  .keys = keys,
  .config = luks_config,
  .config_complete = luks_config_complete,
  .unload = luks_unload,
  .open = luks_open,
  .close = luks_close,
  .pread = luks_pread,
  .pwrite = luks_write,
  .zero = luks_write,
  .trim = luks_trim,
  .cache = luks_cache,
  .extents = luks_extents,
};
