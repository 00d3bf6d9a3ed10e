/* nbdkit front end, filter framework: the table of the filters compiled
 * into the front end (filters/NAME.c), by name.
 */

#include <config.h>

#include <stdio.h>
#include <string.h>

#include "../filters/filter.h"

extern const struct filter
  blocksize_filter,
  blocksize_policy_filter,
  cacheextents_filter,
  checkwrite_filter,
  cache_filter,
  cow_filter,
  ddrescue_filter,
  delay_filter,
  error_filter,
  exitlast_filter,
  exitwhen_filter,
  exportname_filter,
  fua_filter,
  gzip_filter,
  ip_filter,
  limit_filter,
  log_filter,
  luks_filter,
  multi_conn_filter,
  nocache_filter,
  noextents_filter,
  noparallel_filter,
  nozero_filter,
  offset_filter,
  partition_filter,
  pause_filter,
  protect_filter,
  qcow2dec_filter,
  rate_filter,
  readahead_filter,
  retry_filter,
  scan_filter,
  stats_filter,
  swab_filter,
  tar_filter,
  tls_fallback_filter,
  truncate_filter,
  xz_filter;

static const struct filter *const filters[] = {
  &blocksize_filter,
  &blocksize_policy_filter,
  &cacheextents_filter,
  &checkwrite_filter,
  &cache_filter,
  &cow_filter,
  &ddrescue_filter,
  &delay_filter,
  &error_filter,
  &exitlast_filter,
  &exitwhen_filter,
  &exportname_filter,
  &fua_filter,
  &gzip_filter,
  &ip_filter,
  &limit_filter,
  &log_filter,
  &luks_filter,
  &multi_conn_filter,
  &nocache_filter,
  &noextents_filter,
  &noparallel_filter,
  &nozero_filter,
  &offset_filter,
  &partition_filter,
  &pause_filter,
  &protect_filter,
  &qcow2dec_filter,
  &rate_filter,
  &readahead_filter,
  &retry_filter,
  &scan_filter,
  &stats_filter,
  &swab_filter,
  &tar_filter,
  &tls_fallback_filter,
  &truncate_filter,
  &xz_filter,
};

const struct filter *
filter_lookup (const char *name)
{
  size_t i;

  for (i = 0; i < sizeof filters / sizeof filters[0]; ++i)
    if (strcmp (filters[i]->name, name) == 0)
      return filters[i];
  return NULL;
}

/* "a, b, c" into buf (truncated if it must be). */
void
filter_list_names (char *buf, size_t len)
{
  size_t i, used = 0;

  if (len == 0)
    return;
  buf[0] = '\0';
  for (i = 0; i < sizeof filters / sizeof filters[0] && used < len; ++i) {
    int r = snprintf (buf + used, len - used, "%s%s", i ? ", " : "",
                      filters[i]->name);
    if (r < 0)
      break;
    used += (size_t) r;
  }
}
