/* filters/limit.c: limit the number of clients connected at once
 * (nbdkit-limit-filter(1)): limit=N (default 1; 0 = no limit).  A
 * client over the limit is disconnected at once.
 */

#include <config.h>

#include "filter.h"

static unsigned limit = 1;
static unsigned connected;

static int
limit_config (const char *key, const char *value)
{
  return fparse_uint (key, value, 1000000, &limit);
}

static bool
limit_accept (int fd, const char *peer)
{
  if (limit > 0 && connected >= limit) {
    nbdkit_error ("limit filter: %s: too many clients connected "
                  "(limit=%u)", peer, limit);
    return false;
  }
  connected++;
  return true;
}

static void
limit_closed (void)
{
  if (connected > 0)
    connected--;
}

static const char *const keys[] = { "limit", NULL };

const struct filter limit_filter = {
  .name = "limit",
  .description = "limit the number of clients connected at once",
  .config_help = "limit=N             clients at once (default 1, 0 = no limit)",
  .keys = keys,
  .config = limit_config,
  .accept = limit_accept,
  .closed = limit_closed,
};
