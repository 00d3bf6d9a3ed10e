/* filters/readcheck.c: is a range of the layer below the same as some
 * bytes, or all zeros?  Read a piece of at most READCHECK_PIECE at a
 * time (a zero request may span gigabytes; a piece also bounds the
 * memcmp done on the loop), each asked with HP_FLAG_ZEROS so that a
 * hole comes back without data.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "readcheck.h"

#define READCHECK_PIECE (1024 * 1024)

struct check {
  struct fnext *next;
  uint64_t offset, count, done;
  uint32_t piece;               /* the read in flight */
  const unsigned char *expect;
  readcheck_fn cb;
  void *opaque;
};

static bool
all_zero (const unsigned char *p, size_t n)
{
  return n == 0 || (p[0] == 0 && memcmp (p, p + 1, n - 1) == 0);
}

static void check_piece (struct check *c);

static void
finish (struct check *c, bool differs, uint32_t status, const char *msg)
{
  c->cb (c->opaque, differs, status, msg);
  free (c);
}

static void
on_piece (void *opaque, const struct hp_header *reply, void *payload,
          uint32_t len)
{
  struct check *c = opaque;
  uint32_t n = c->piece;
  const unsigned char *want = c->expect ? c->expect + c->done : NULL;
  bool differs;

  if (!reply || reply->status) {
    finish (c, false, reply ? reply->status : HP_EIO,
            reply ? payload : "the layer below did not answer");
    payload_free (payload);
    return;
  }
  if (reply->flags & HP_FLAG_ZEROS)
    differs = want && !all_zero (want, n);
  else if (!payload || len != n)
    differs = true;             /* cannot happen: the chain checks */
  else if (want)
    differs = memcmp (payload, want, n) != 0;
  else
    differs = !all_zero (payload, n);
  payload_free (payload);
  c->done += n;
  if (differs || c->done == c->count)
    finish (c, differs, 0, NULL);
  else
    check_piece (c);
}

static void
check_piece (struct check *c)
{
  uint64_t left = c->count - c->done;
  uint32_t n = left > READCHECK_PIECE ? READCHECK_PIECE : (uint32_t) left;

  c->piece = n;
  fnext_request (c->next, HP_PREAD, HP_FLAG_ZEROS, c->offset + c->done, n,
                 NULL, on_piece, c);
}

void
readcheck (struct fnext *next, uint64_t offset, uint64_t count,
           const unsigned char *expect, readcheck_fn done, void *opaque)
{
  struct check *c = calloc (1, sizeof *c);

  if (!c) {
    done (opaque, false, HP_ENOMEM, "out of memory");
    return;
  }
  c->next = next;
  c->offset = offset;
  c->count = count;
  c->expect = expect;
  c->cb = done;
  c->opaque = opaque;
  check_piece (c);
}
