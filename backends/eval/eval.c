/* nbdkit eval backend: a disk whose methods are shell snippets given
 * on the command line (nbdkit-eval-backend(1)).
 *
 * This file owns the parameters: a key that names a method
 * (get_size=, pread=, ..., missing=) holds that method's code; any
 * other key=value is a parameter of the user's config method, run at
 * config_complete (so in any order with config=).  A method runs as
 * '/bin/sh -c CODE METHOD METHOD ARGS...', so that $1 is the method
 * and $2... its arguments, exactly as for an nbdkit-sh-backend(1)
 * script; everything else is shared with the sh backend (methods.c).
 */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

/* The methods that can be given, in alphabetical order. */
static const char *const method_names[] = {
  "after_fork", "block_size", "cache", "can_cache", "can_extents",
  "can_fast_zero", "can_flush", "can_fua", "can_multi_conn", "can_trim",
  "can_write", "can_zero", "close", "config", "config_complete",
  "default_export", "dump_plugin", "export_description", "extents",
  "flush", "get_ready", "get_size", "is_rotational", "list_exports",
  "missing", "open", "pread", "preconnect", "pwrite", "thread_model",
  "trim", "unload", "zero",
};
#define NR_METHODS (sizeof method_names / sizeof method_names[0])

static char *code[NR_METHODS];  /* the code of each method, or NULL */

/* The user's parameters, for the config method. */
static struct param {
  char *key, *value;
} *params;
static size_t nr_params;

const char *script_label = "";

static int
method_index (const char *method)
{
  size_t i;

  for (i = 0; i < NR_METHODS; ++i)
    if (strcmp (method, method_names[i]) == 0)
      return (int) i;
  return -1;
}

static const char *
code_of (const char *method)
{
  int i = method_index (method);

  return i >= 0 ? code[i] : NULL;
}

size_t
script_command (const char *method, const char **argv)
{
  const char *c = code_of (method);

  if (!c)
    c = code_of ("missing");    /* the user's stand-in for the rest */
  if (!c)
    return 0;
  argv[0] = "/bin/sh";
  argv[1] = "-c";
  argv[2] = c;
  argv[3] = method;             /* $0 */
  argv[4] = method;             /* $1 */
  return 5;
}

int
script_defined (const char *method)
{
  return code_of (method) != NULL;
}

static int
eval_config (const char *key, const char *value)
{
  int i = method_index (key);
  struct param *p;

  if (i >= 0) {
    if (code[i]) {
      nbdkit_error ("%s= is given twice: define each method once", key);
      return -1;
    }
    code[i] = strdup (value);
    if (!code[i]) {
      nbdkit_error ("out of memory");
      return -1;
    }
    return 0;
  }

  /* Not a method: the config method's, when all are known. */
  p = realloc (params, (nr_params + 1) * sizeof *params);
  if (!p) {
    nbdkit_error ("out of memory");
    return -1;
  }
  params = p;
  params[nr_params].key = strdup (key);
  params[nr_params].value = strdup (value);
  if (!params[nr_params].key || !params[nr_params].value) {
    free (params[nr_params].key);
    free (params[nr_params].value);
    nbdkit_error ("out of memory");
    return -1;
  }
  nr_params++;
  return 0;
}

static int
eval_config_complete (void)
{
  size_t i;

  if (methods_tmpdir ("eval") == -1)
    return -1;
  for (i = 0; i < nr_params; ++i) {
    if (!code_of ("config") && !code_of ("missing")) {
      nbdkit_error ("unknown parameter '%s=%s': '%s' is not a method "
                    "(get_size, pread, pwrite, ...: see nbdkit eval "
                    "--help), and there is no config= to take it",
                    params[i].key, params[i].value, params[i].key);
      return -1;
    }
    if (methods_config (params[i].key, params[i].value) == -1)
      return -1;
  }
  if (!code_of ("get_size") || !code_of ("pread"))
    nbdkit_debug ("get_size= or pread= is not given: every connection "
                  "will fail unless missing= provides them");
  return methods_config_complete ();
}

static void
eval_unload (void)
{
  size_t i;

  methods_unload ();
  for (i = 0; i < NR_METHODS; ++i) {
    free (code[i]);
    code[i] = NULL;
  }
  for (i = 0; i < nr_params; ++i) {
    free (params[i].key);
    free (params[i].value);
  }
  free (params);
  params = NULL;
  nr_params = 0;
}

static struct nbdkit_backend eval_backend = {
  .name = "eval",
  .longname = "nbdkit eval backend",
  .description = "A disk whose methods are shell snippets given on the "
                 "command line.",
  .config_help =
    "get_size='CODE'    (required) Print the size of the disk.\n"
    "pread='CODE'       (required) Print $3 bytes from offset $4.\n"
    "pwrite='CODE'      Write $3 bytes at offset $4 from stdin.\n"
    "METHOD='CODE'      Any other method of nbdkit-sh-backend(1):\n"
    "                   after_fork block_size cache can_cache\n"
    "                   can_extents can_fast_zero can_flush can_fua\n"
    "                   can_multi_conn can_trim can_write can_zero close\n"
    "                   config config_complete default_export\n"
    "                   export_description extents flush get_ready\n"
    "                   is_rotational list_exports open preconnect\n"
    "                   thread_model trim unload zero.  CODE runs with\n"
    "                   /bin/sh -c; $1 is the method, $2... its\n"
    "                   arguments, $tmpdir a private directory.\n"
    "missing='CODE'     Run for every method not given (default:\n"
    "                   exit 2, \"not supported\").\n"
    "key=value          Any other key: passed to config='CODE'.",
  SCRIPT_BACKEND_COMMON,
  .config = eval_config,
  .config_complete = eval_config_complete,
  .unload = eval_unload,
};

NBDKIT_REGISTER_BACKEND (eval_backend)
