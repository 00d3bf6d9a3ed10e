/* filters/blocksize.c: the blocksize filter (placeholder: being written). */

#include <config.h>

#include "filter.h"

const struct filter blocksize_filter = {
  .name = "blocksize",
  .description = "(not written yet)",
};
