/* nbdkit sh backend: a disk served by a script (nbdkit-sh-backend(1)).
 *
 * This file owns the script parameter: the first parameter must be
 * script=PATH (the bare argument after 'nbdkit sh'), checked to be an
 * executable file; its load and magic_config_key methods run at once,
 * and later parameters go to its config method.  Each method then runs
 * as 'SCRIPT METHOD ARGS...' (methods.c, call.c).  A script whose "#!"
 * line names nbdkit itself (a script run directly, as
 * '#!/usr/sbin/nbdkit sh') is run with /bin/sh instead, or it would
 * start another server.
 */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "methods.h"
#include "parse.h"

static char *script;            /* absolute path */
static bool via_sh;             /* "#!" names nbdkit: run with /bin/sh */
static bool has_magic_key;      /* the script printed a magic_config_key */

const char *script_label = "";

size_t
script_command (const char *method, const char **argv)
{
  size_t n = 0;

  if (via_sh)
    argv[n++] = "/bin/sh";
  argv[n++] = script;
  argv[n++] = method;
  return n;
}

int
script_defined (const char *method)
{
  return -1;                    /* only running it tells */
}

/* Does the "#!" line of the file name nbdkit as (part of) its
 * interpreter, e.g. "#!/usr/sbin/nbdkit sh" or
 * "#!/usr/bin/env -S nbdkit sh"?
 */
static bool
shebang_is_nbdkit (const char *path)
{
  char line[256], *word, *save = NULL;
  FILE *fp = fopen (path, "r");
  bool r = false;

  if (!fp)
    return false;
  if (fgets (line, sizeof line, fp) && strncmp (line, "#!", 2) == 0) {
    for (word = strtok_r (line + 2, " \t\r\n", &save); word;
         word = strtok_r (NULL, " \t\r\n", &save)) {
      const char *base = strrchr (word, '/');

      base = base ? base + 1 : word;
      if (strcmp (base, "nbdkit") == 0)
        r = true;
    }
  }
  fclose (fp);
  return r;
}

static int
set_script (const char *value)
{
  struct stat st;
  struct call_io io = { .want_out = 1 };
  char *path;

  if (strcmp (value, "-") == 0) {
    nbdkit_error ("script=-: reading the script from standard input is not "
                  "supported (the backend's stdin is not the server's): "
                  "save it to a file and give its path, or use "
                  "nbdkit eval");
    return -1;
  }
  path = nbdkit_realpath (value);
  if (!path)
    return -1;
  if (stat (path, &st) == -1) {
    nbdkit_error ("script=%s: %m", value);
    free (path);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    nbdkit_error ("script=%s: not a regular file (give the path of the "
                  "script)", value);
    free (path);
    return -1;
  }
  if (access (path, X_OK) == -1) {
    nbdkit_error ("script=%s: the script is not executable (%m): make it "
                  "so with 'chmod +x %s'", value, value);
    free (path);
    return -1;
  }
  script = path;
  via_sh = shebang_is_nbdkit (script);
  script_label = script;
  if (methods_tmpdir ("sh") == -1)
    return -1;

  switch (run_method ("load", NULL, NULL)) {
  case CALL_OK:
  case CALL_MISSING:
    break;
  case CALL_FALSE:
    nbdkit_error ("%s: load: exit status 3 (false) is only meaningful for "
                  "the can_* and is_rotational methods", script);
    return -1;
  default:
    return -1;
  }

  /* The script may name the key of the bare arguments after it. */
  switch (run_method ("magic_config_key", NULL, &io)) {
  case CALL_OK: {
    char *key = parse_magic_config_key (io.out);

    if (*key) {
      nbdkit_set_magic_config_key (key);
      has_magic_key = true;
    }
    free (io.out);
    break;
  }
  case CALL_MISSING:
    break;
  case CALL_FALSE:
    nbdkit_error ("%s: magic_config_key: exit status 3 (false) is only "
                  "meaningful for the can_* and is_rotational methods",
                  script);
    return -1;
  default:
    return -1;
  }
  return 0;
}

static int
sh_config (const char *key, const char *value)
{
  if (!script) {
    if (strcmp (key, "script") != 0) {
      nbdkit_error ("the first parameter must be the script, as in "
                    "'nbdkit sh /path/to/script [key=value ...]' "
                    "(got '%s=%s')", key, value);
      return -1;
    }
    return set_script (value);
  }
  /* A later bare argument, when the script names no key for them. */
  if (strcmp (key, "script") == 0 && !has_magic_key) {
    nbdkit_error ("%s: '%s': the parameters after the script must be "
                  "key=value (the script has no magic_config_key method)",
                  script, value);
    return -1;
  }
  return methods_config (key, value);
}

static int
sh_config_complete (void)
{
  if (!script) {
    nbdkit_error ("no script: use 'nbdkit sh /path/to/script "
                  "[key=value ...]'");
    return -1;
  }
  return methods_config_complete ();
}

static void
sh_unload (void)
{
  if (script)
    methods_unload ();
  free (script);
  script = NULL;
}

static struct nbdkit_backend sh_backend = {
  .name = "sh",
  .longname = "nbdkit sh backend",
  .description = "A disk served by a script or any executable, run once "
                 "per method (get_size, pread, pwrite, ...).",
  .config_help =
    "script=<FILENAME>  (required) The script: an executable run as\n"
    "                   'SCRIPT METHOD ARGS...' (the bare argument\n"
    "                   after 'nbdkit sh').\n"
    "[key=value ...]    Passed to the script's config method; bare\n"
    "                   arguments take the key that its\n"
    "                   magic_config_key method prints.",
  .magic_config_key = "script",
  SCRIPT_BACKEND_COMMON,
  .config = sh_config,
  .config_complete = sh_config_complete,
  .unload = sh_unload,
};

NBDKIT_REGISTER_BACKEND (sh_backend)
