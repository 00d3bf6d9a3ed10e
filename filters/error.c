/* filters/error.c: inject errors (nbdkit-error-filter(1)).
 *
 * error=, error-rate=, error-file= set all request types at once;
 * error-pread=, error-pread-rate=, error-pread-file= (and the same for
 * pwrite, trim, zero, extents, cache and flush) one type.  A request
 * fails with the error at the given rate (0% by default; 100% always),
 * and only while the error file exists if one is given.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "filter.h"

enum { T_PREAD, T_PWRITE, T_TRIM, T_ZERO, T_EXTENTS, T_CACHE, T_FLUSH, NR_T };

static const char *const type_names[NR_T] = {
  "pread", "pwrite", "trim", "zero", "extents", "cache", "flush",
};

struct error_setting {
  uint32_t error;
  double rate;
  char *file;
};

static struct error_setting settings[NR_T];
static unsigned seed;

static void
error_load_defaults (void)
{
  int i;

  for (i = 0; i < NR_T; ++i)
    settings[i].error = HP_EIO;
}

static int
set_one (struct error_setting *s, const char *what, const char *key,
         const char *value)
{
  if (strcmp (what, "") == 0)
    return fparse_error (key, value, &s->error);
  if (strcmp (what, "-rate") == 0)
    return fparse_probability (key, value, &s->rate);
  if (strcmp (what, "-file") == 0) {
    free (s->file);
    s->file = strdup (value);
    if (!s->file) {
      nbdkit_error ("error filter: %s=%s: out of memory", key, value);
      return -1;
    }
    return 0;
  }
  nbdkit_error ("%s: unknown parameter of the error filter (see "
                "'nbdkit --filter=error null --help')", key);
  return -1;
}

static int
error_config (const char *key, const char *value)
{
  const char *rest = key + strlen ("error");
  int i;

  if (settings[0].error == 0)
    error_load_defaults ();
  for (i = 0; i < NR_T; ++i) {
    size_t n = strlen (type_names[i]);

    if (rest[0] == '-' && strncmp (rest + 1, type_names[i], n) == 0 &&
        (rest[1 + n] == '\0' || rest[1 + n] == '-'))
      return set_one (&settings[i], rest + 1 + n, key, value);
  }
  /* error, error-rate, error-file: every type. */
  for (i = 0; i < NR_T; ++i)
    if (set_one (&settings[i], rest, key, value) == -1)
      return -1;
  return 0;
}

static int
error_config_complete (void)
{
  if (settings[0].error == 0)
    error_load_defaults ();
  seed = (unsigned) time (NULL) ^ (unsigned) getpid ();
  return 0;
}

static void
error_unload (void)
{
  int i;

  for (i = 0; i < NR_T; ++i)
    free (settings[i].file);
}

static bool
should_fail (const struct error_setting *s)
{
  if (s->rate <= 0)
    return false;
  if (s->file && access (s->file, F_OK) == -1)
    return false;
  if (s->rate >= 1)
    return true;
  return (double) rand_r (&seed) / ((double) RAND_MAX + 1) < s->rate;
}

static void
maybe_fail (int t, struct freq *r)
{
  const struct error_setting *s = &settings[t];

  if (should_fail (s)) {
    /* As nbdkit's filter: an error message, with or without -v. */
    nbdkit_error ("error: injecting %s error into %s",
                  hp_error_name (s->error), type_names[t]);
    freq_reply_error (r, s->error, "injected by the error filter");
  }
  else
    freq_next (r);
}

static void e_pread (void *h, struct freq *r) { maybe_fail (T_PREAD, r); }
static void e_pwrite (void *h, struct freq *r) { maybe_fail (T_PWRITE, r); }
static void e_trim (void *h, struct freq *r) { maybe_fail (T_TRIM, r); }
static void e_zero (void *h, struct freq *r) { maybe_fail (T_ZERO, r); }
static void e_extents (void *h, struct freq *r) { maybe_fail (T_EXTENTS, r); }
static void e_cache (void *h, struct freq *r) { maybe_fail (T_CACHE, r); }
static void e_flush (void *h, struct freq *r) { maybe_fail (T_FLUSH, r); }

static const char *const keys[] = { "error", "error-*", NULL };

const struct filter error_filter = {
  .name = "error",
  .description = "inject errors, for testing clients",
  .config_help =
    "error=EIO|ENOMEM|...     the error to give (default EIO)\n"
    "error-rate=N%|0.N        how often (default 0%; 100% = always)\n"
    "error-file=FILE          only while FILE exists\n"
    "error-pread=, error-pread-rate=, error-pread-file=  the same for\n"
    "                         one type: pread, pwrite, trim, zero,\n"
    "                         extents, cache, flush",
  .keys = keys,
  .config = error_config,
  .config_complete = error_config_complete,
  .unload = error_unload,
  .pread = e_pread,
  .pwrite = e_pwrite,
  .trim = e_trim,
  .zero = e_zero,
  .extents = e_extents,
  .cache = e_cache,
  .flush = e_flush,
};
