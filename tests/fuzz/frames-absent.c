/* Fuzzing target "frames" (fuzz-frames.c): what the harness links but
 * must never reach.  nbdkit/passthrough.c is linked (its reading of
 * OPEN's "passthrough" member is fuzzed), but its I/O needs a
 * descriptor with the OPEN reply, which the harness's backend never
 * sends; and a channel to a backend never has TLS.  Each stand-in
 * reports a bug if it is called.
 */

#include <config.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "fuzz-bug.h"
#include "internal.h"

/* ---- passthrough's I/O ---- */

void
freq_reply (struct freq *r, void *data, uint32_t len, uint16_t rflags)
{
  fuzz_bug ("a request went to passthrough without a descriptor");
}

void
freq_reply_error (struct freq *r, uint32_t status, const char *msg)
{
  fuzz_bug ("a request went to passthrough without a descriptor");
}

bool
freq_unfiltered (const struct freq *r)
{
  fuzz_bug ("a request went to passthrough without a descriptor");
  return false;
}

bool
freq_from_plain_client (const struct freq *r)
{
  return freq_unfiltered (r);
}

void
worker_submit (void (*work) (void *), void (*done) (void *), void *arg)
{
  fuzz_bug ("passthrough I/O without a descriptor");
}

/* ---- tls.c: a channel never has TLS ---- */

size_t tls_pending (struct tls *t) { fuzz_bug ("TLS on the channel"); }
void tls_bye (struct tls *t) { fuzz_bug ("TLS on the channel"); }
void tls_free (struct tls *t) { fuzz_bug ("TLS on the channel"); }
ssize_t tls_recv (struct tls *t, void *buf, size_t len)
{ fuzz_bug ("TLS on the channel"); }
ssize_t tls_send (void *t, const void *buf, size_t len)
{ fuzz_bug ("TLS on the channel"); }
