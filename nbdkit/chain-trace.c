/* nbdkit front end: -v's trace of every call at every layer of a
 * chain (filter-chain.c), in nbdkit's words: "LAYER: pread count=N
 * offset=N", each line with the connection's name and number.
 */

#include <config.h>

#include <inttypes.h>
#include <stdint.h>

#include "internal.h"
#include "options.h"
#include "../filters/filter.h"

/* -D nbdkit.backend.controlpath=0 and -D nbdkit.backend.datapath=0
 * silence the two classes.
 */
bool
chain_tracing (bool datapath)
{
  static int control = -1, data = -1;

  if (!opt.verbose)
    return false;
  if (control == -1) {
    control = server_debug_flag ("backend.controlpath", 1);
    data = server_debug_flag ("backend.datapath", 1);
  }
  return datapath ? data : control;
}

const char *
chain_layer_name (struct backend_proc *bp, size_t i)
{
  return i < opt.nr_filters ? opt.filters[i]->name : bproc_name (bp);
}

void
chain_trace_request (struct backend_proc *bp, uint64_t c, size_t layer,
                     const struct freq *r)
{
  const char *name = chain_layer_name (bp, layer), *conn = bproc_name (bp);
  int fua = !!(r->flags & HP_FLAG_FUA);

  switch (r->type) {
  case HP_PREAD:
    log_conn_debug (conn, c, "%s: pread count=%" PRIu32 " offset=%" PRIu64,
                    name, r->count, r->offset);
    break;
  case HP_PWRITE:
    log_conn_debug (conn, c, "%s: pwrite count=%" PRIu32 " offset=%" PRIu64
                    " fua=%d", name, r->count, r->offset, fua);
    break;
  case HP_FLUSH:
    log_conn_debug (conn, c, "%s: flush", name);
    break;
  case HP_TRIM:
    log_conn_debug (conn, c, "%s: trim count=%" PRIu32 " offset=%" PRIu64
                    " fua=%d", name, r->count, r->offset, fua);
    break;
  case HP_ZERO:
    log_conn_debug (conn, c, "%s: zero count=%" PRIu32 " offset=%" PRIu64
                    " may_trim=%d fua=%d fast=%d", name, r->count,
                    r->offset, !!(r->flags & HP_FLAG_MAY_TRIM), fua,
                    !!(r->flags & HP_FLAG_FAST_ZERO));
    break;
  case HP_CACHE:
    log_conn_debug (conn, c, "%s: cache count=%" PRIu32 " offset=%" PRIu64,
                    name, r->count, r->offset);
    break;
  case HP_EXTENTS:
    log_conn_debug (conn, c, "%s: extents count=%" PRIu32 " offset=%" PRIu64
                    " req_one=%d", name, r->count, r->offset,
                    !!(r->flags & HP_FLAG_REQ_ONE));
    break;
  }
}
