/* filters/exitlast.c: exit when the last client disconnects
 * (nbdkit-exitlast-filter(1)).  The server runs until a first client
 * has come and every client has gone, then shuts down cleanly.
 */

#include <config.h>

#include <stdlib.h>

#include "filter.h"

static void
exitlast_closed (void)
{
  if (nr_connections == 0) {
    nbdkit_debug ("exitlast filter: the last client disconnected, exiting");
    server_quit (EXIT_SUCCESS);
  }
}

const struct filter exitlast_filter = {
  .name = "exitlast",
  .description = "exit when the last client disconnects",
  .config_help = "(no parameters)",
  .closed = exitlast_closed,
};
