/* filters/cache.c: the cache filter (placeholder: being written). */

#include <config.h>

#include "filter.h"

const struct filter cache_filter = {
  .name = "cache",
  .description = "(not written yet)",
};
