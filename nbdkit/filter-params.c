/* nbdkit front end, filter framework: parsing filter parameters
 * (filters/filter.h, fparse_*).  Each function names the parameter and
 * the value in its error, says what would be valid, and returns -1
 * (after nbdkit_error) when the value is not.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../filters/filter.h"

int
fparse_size (const char *key, const char *value, int64_t *r)
{
  static const char suffixes[] = "bkmgtpe";
  const char *p;
  char *end;
  uint64_t v;
  int shift = 0;

  if (!isdigit ((unsigned char) value[0]))
    goto bad;
  errno = 0;
  v = strtoull (value, &end, 10);
  if (errno == ERANGE || v > INT64_MAX)
    goto too_large;
  if (*end) {
    p = strchr (suffixes, tolower ((unsigned char) *end));
    if (!p || end[1])
      goto bad;
    shift = 10 * (int) (p - suffixes);
    if (v > ((uint64_t) INT64_MAX >> shift))
      goto too_large;
  }
  *r = (int64_t) (v << shift);
  return 0;

 bad:
  nbdkit_error ("%s=%s: not a size: use a number of bytes with an "
                "optional suffix k, M, G, T, P or E (e.g. 1M)", key, value);
  return -1;
 too_large:
  nbdkit_error ("%s=%s: too large (at most 2^63-1 bytes)", key, value);
  return -1;
}

int
fparse_uint (const char *key, const char *value, unsigned max, unsigned *r)
{
  char *end;
  unsigned long v;

  errno = 0;
  if (!isdigit ((unsigned char) value[0]))
    goto bad;
  v = strtoul (value, &end, 10);
  if (errno || *end || v > max)
    goto bad;
  *r = (unsigned) v;
  return 0;
 bad:
  nbdkit_error ("%s=%s: use a whole number from 0 to %u", key, value, max);
  return -1;
}

int
fparse_bool (const char *key, const char *value, bool *r)
{
  static const char *const yes[] = { "1", "true", "t", "yes", "y", "on" };
  static const char *const no[] = { "0", "false", "f", "no", "n", "off" };
  size_t i;

  for (i = 0; i < sizeof yes / sizeof yes[0]; ++i) {
    if (strcasecmp (value, yes[i]) == 0) {
      *r = true;
      return 0;
    }
    if (strcasecmp (value, no[i]) == 0) {
      *r = false;
      return 0;
    }
  }
  nbdkit_error ("%s=%s: use true or false (also yes/no, on/off, 1/0)",
                key, value);
  return -1;
}

/* "N" or "Ns" seconds, "Nms" milliseconds, "Nus" microseconds; N may
 * have a fraction.
 */
int
fparse_delay (const char *key, const char *value, double *r)
{
  char *end;
  double v;

  errno = 0;
  if (!isdigit ((unsigned char) value[0]) && value[0] != '.')
    goto bad;
  v = strtod (value, &end);
  if (errno || !isfinite (v) || v < 0)
    goto bad;
  if (strcmp (end, "ms") == 0)
    v /= 1000;
  else if (strcmp (end, "us") == 0)
    v /= 1000000;
  else if (*end && strcmp (end, "s") != 0)
    goto bad;
  if (v > 86400 * 365)
    goto bad;
  *r = v;
  return 0;
 bad:
  nbdkit_error ("%s=%s: not a delay: use seconds (e.g. 2, 0.5 or 1.5s), "
                "milliseconds with ms (e.g. 100ms) or microseconds with us "
                "(e.g. 250us), from 0 up to a year", key, value);
  return -1;
}

/* "N%" or a fraction "0.N" (also "1e-3"): a probability 0..1. */
int
fparse_probability (const char *key, const char *value, double *r)
{
  char *end;
  double v;

  errno = 0;
  v = strtod (value, &end);
  if (errno || end == value || !isfinite (v))
    goto bad;
  if (strcmp (end, "%") == 0)
    v /= 100;
  else if (*end)
    goto bad;
  if (v < 0 || v > 1)
    goto bad;
  *r = v;
  return 0;
 bad:
  nbdkit_error ("%s=%s: not a rate: use a percentage (e.g. 10%%) or a "
                "fraction from 0 to 1 (e.g. 0.1)", key, value);
  return -1;
}

/* Error names a filter may inject, as nbdkit-error-filter has them. */
int
fparse_error (const char *key, const char *value, uint32_t *r)
{
  static const struct { const char *name; uint32_t err; } errors[] = {
    { "EPERM", HP_EPERM }, { "EIO", HP_EIO }, { "ENOMEM", HP_ENOMEM },
    { "EINVAL", HP_EINVAL }, { "ENOSPC", HP_ENOSPC },
    { "ESHUTDOWN", HP_ESHUTDOWN }, { "EOVERFLOW", HP_EOVERFLOW },
    { "ENOTSUP", HP_ENOTSUP },
  };
  size_t i;

  for (i = 0; i < sizeof errors / sizeof errors[0]; ++i)
    if (strcasecmp (value, errors[i].name) == 0) {
      *r = errors[i].err;
      return 0;
    }
  nbdkit_error ("%s=%s: not an error this filter can give: use EIO, EPERM, "
                "ENOMEM, EINVAL, ENOSPC, ESHUTDOWN, EOVERFLOW or ENOTSUP",
                key, value);
  return -1;
}
