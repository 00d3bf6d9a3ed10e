/* filters/retry.c: the retry filter (placeholder: being written). */

#include <config.h>

#include "filter.h"

const struct filter retry_filter = {
  .name = "retry",
  .description = "(not written yet)",
};
