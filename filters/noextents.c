/* filters/noextents.c: hide block status (nbdkit-noextents-filter(1)):
 * the export says it cannot report extents, so clients see it all as
 * allocated data.
 */

#include <config.h>

#include "filter.h"

static void
noextents_open (struct fopen *o)
{
  o->caps->can_extents = false;
  fopen_done (o, NULL);
}

const struct filter noextents_filter = {
  .name = "noextents",
  .description = "disable block status (extents)",
  .config_help = "(no parameters)",
  .open = noextents_open,
};
