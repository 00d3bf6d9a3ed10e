/* filters/exportname.c: change the export names clients see and ask
 * for (nbdkit-exportname-filter(1)): the list NBD_OPT_LIST answers
 * (exportname-list=keep|error|empty|defaultonly|explicit, with
 * exportname=), the export "" opens (default-export=), which names a
 * client may open (exportname-strict=), and the descriptions
 * (exportdesc=keep|none|fixed:STRING|script:SCRIPT).
 *
 * The default export is mapped with the filter API's export_below, so
 * the layers below open the chosen name.  Description scripts run on
 * the worker pool (a fork and a read of the script's output), never on
 * the loop.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "filter.h"

#define MAX_DESC 4096           /* NBD's longest string */

static const char *default_export;      /* NULL or "" = none */
static enum { L_KEEP, L_ERROR, L_EMPTY, L_DEFAULTONLY, L_EXPLICIT } list_mode;
static bool strict;
static const char **names;
static size_t nr_names;
static enum { D_KEEP, D_NONE, D_FIXED, D_SCRIPT } desc_mode;
static const char *desc_arg;

static int
exportname_config (const char *key, const char *value)
{
  static const char *const modes[] = {
    "keep", "error", "empty", "defaultonly", "explicit"
  };
  size_t i;

  if (strcmp (key, "default-export") == 0)
    default_export = value;
  else if (strcmp (key, "exportname-list") == 0) {
    for (i = 0; i < 5; ++i)
      if (strcmp (value, modes[i]) == 0) {
        list_mode = i;
        return 0;
      }
    nbdkit_error ("exportname-list=%s: use keep, error, empty, defaultonly "
                  "or explicit", value);
    return -1;
  }
  else if (strcmp (key, "exportname-strict") == 0)
    return fparse_bool (key, value, &strict);
  else if (strcmp (key, "exportname") == 0) {
    const char **n = realloc (names, (nr_names + 1) * sizeof *n);

    if (!n) {
      nbdkit_error ("exportname: out of memory");
      return -1;
    }
    names = n;
    names[nr_names++] = value;
  }
  else {
    if (strcmp (value, "keep") == 0)
      desc_mode = D_KEEP;
    else if (strcmp (value, "none") == 0)
      desc_mode = D_NONE;
    else if (strncmp (value, "fixed:", 6) == 0) {
      desc_mode = D_FIXED;
      desc_arg = value + 6;
    }
    else if (strncmp (value, "script:", 7) == 0) {
      desc_mode = D_SCRIPT;
      desc_arg = value + 7;
    }
    else {
      nbdkit_error ("exportdesc=%s: use keep, none, fixed:STRING or "
                    "script:SCRIPT", value);
      return -1;
    }
  }
  return 0;
}

static void
exportname_unload (void)
{
  free (names);
}

static bool
listed (const char *name)
{
  size_t i;

  for (i = 0; i < nr_names; ++i)
    if (strcmp (names[i], name) == 0)
      return true;
  return false;
}

/* "" opens default-export=; with exportname-strict=true only the names
 * of exportname= open.
 */
static const char *
exportname_below (const char *export)
{
  const char *name = export;

  if (!*name && default_export && *default_export)
    name = default_export;
  if (strict && !listed (name)) {
    nbdkit_error ("exportname: export \"%s\" is not permitted "
                  "(exportname-strict=true allows only the exportname= "
                  "names)", name);
    return NULL;
  }
  return name;
}

/* ---- description scripts, on a worker thread ---- */

/* The output of sh -c SCRIPT with $name set, trailing newlines cut;
 * NULL if it failed or printed nothing.  Runs on a worker.
 */
static char *
run_script (const char *name)
{
  extern char **environ;
  size_t n = 0, i, len = 0;
  char **envp, *namevar, *out;
  int fd[2], status;
  pid_t pid;
  ssize_t r;

  while (environ[n])
    n++;
  envp = calloc (n + 2, sizeof *envp);
  out = malloc (MAX_DESC + 1);
  namevar = malloc (strlen (name) + 6);
  if (!envp || !out || !namevar || pipe (fd) == -1)
    goto fail;
  sprintf (namevar, "name=%s", name);
  for (i = 0; i < n; ++i)
    if (strncmp (environ[i], "name=", 5) != 0)
      envp[len++] = environ[i];
  envp[len] = namevar;
  pid = fork ();
  if (pid == -1) {
    close (fd[0]);
    close (fd[1]);
    goto fail;
  }
  if (pid == 0) {
    int null = open ("/dev/null", O_RDONLY);

    dup2 (null, 0);
    dup2 (fd[1], 1);
    execle ("/bin/sh", "sh", "-c", desc_arg, (char *) NULL, envp);
    _exit (127);
  }
  close (fd[1]);
  len = 0;
  /* Read all of it (the script must not block on a full pipe); keep
   * at most MAX_DESC bytes.
   */
  for (;;) {
    char buf[4096];

    r = read (fd[0], buf, sizeof buf);
    if (r <= 0)
      break;
    if (len < MAX_DESC) {
      size_t k = (size_t) r > MAX_DESC - len ? MAX_DESC - len : (size_t) r;

      memcpy (out + len, buf, k);
      len += k;
    }
  }
  close (fd[0]);
  while (waitpid (pid, &status, 0) == -1)
    ;
  while (len > 0 && out[len - 1] == '\n')
    len--;
  out[len] = '\0';
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0 || len == 0 ||
      memchr (out, '\0', len))
    goto fail;
  free (envp);
  free (namevar);
  return out;

 fail:
  free (envp);
  free (namevar);
  free (out);
  return NULL;
}

/* ---- open ---- */

struct opening {
  struct fopen *o;
  char *name;
  char *desc;
};

static void
describe_work (void *arg)
{
  struct opening *op = arg;

  op->desc = run_script (op->name);
}

static void
described (void *arg)
{
  struct opening *op = arg;
  struct export_caps *c = op->o->caps;

  free (c->description);
  c->description = op->desc;
  fopen_done (op->o, NULL);
  free (op->name);
  free (op);
}

static void
exportname_open (struct fopen *o)
{
  struct export_caps *c = o->caps;
  struct opening *op;

  /* The canonical name of "" is the export it opened. */
  if (!c->name && default_export && *default_export) {
    c->name = strdup (o->export);
    if (!c->name) {
      fopen_fail (o, HP_ENOMEM, "out of memory");
      return;
    }
  }
  switch (desc_mode) {
  case D_KEEP:
    break;
  case D_NONE:
    free (c->description);
    c->description = NULL;
    break;
  case D_FIXED:
    free (c->description);
    c->description = *desc_arg ? strdup (desc_arg) : NULL;
    break;
  case D_SCRIPT:
    op = calloc (1, sizeof *op);
    if (!op || !(op->name = strdup (c->name ? c->name : o->export))) {
      free (op);
      fopen_fail (o, HP_ENOMEM, "out of memory");
      return;
    }
    op->o = o;
    worker_submit (describe_work, described, op);
    return;
  }
  fopen_done (o, NULL);
}

/* ---- listing ---- */

struct listing {
  struct flist *l;
  char **descs;                 /* the scripts' answers, per export */
};

static void
list_describe_work (void *arg)
{
  struct listing *ls = arg;
  size_t i;

  for (i = 0; i < ls->l->nr_exports; ++i)
    ls->descs[i] = run_script (ls->l->exports[i].name);
}

static void
list_described (void *arg)
{
  struct listing *ls = arg;
  size_t i;

  for (i = 0; i < ls->l->nr_exports; ++i) {
    free (ls->l->exports[i].description);
    ls->l->exports[i].description = ls->descs[i];
  }
  flist_done (ls->l);
  free (ls->descs);
  free (ls);
}

/* The list is made: set its descriptions, then end. */
static void
list_finish (struct flist *l)
{
  struct listing *ls;
  size_t i;

  for (i = 0; i < l->nr_exports; ++i) {
    struct fexport *e = &l->exports[i];

    if (desc_mode == D_NONE || desc_mode == D_FIXED) {
      free (e->description);
      e->description = NULL;
    }
    if (desc_mode == D_FIXED && *desc_arg &&
        !(e->description = strdup (desc_arg))) {
      flist_fail (l, HP_ENOMEM, "out of memory");
      return;
    }
  }
  if (desc_mode != D_SCRIPT || l->nr_exports == 0) {
    flist_done (l);
    return;
  }
  ls = calloc (1, sizeof *ls);
  if (!ls || !(ls->descs = calloc (l->nr_exports, sizeof *ls->descs))) {
    free (ls);
    flist_fail (l, HP_ENOMEM, "out of memory");
    return;
  }
  ls->l = l;
  worker_submit (list_describe_work, list_described, ls);
}

static void
on_below_list (struct flist *l, uint32_t status, const char *msg)
{
  size_t i;

  if (status) {
    flist_fail (l, status, msg);
    return;
  }
  /* "" in the list of below is the default export: name it. */
  for (i = 0; i < l->nr_exports && default_export && *default_export; ++i)
    if (!*l->exports[i].name) {
      char *n = strdup (default_export);

      if (!n) {
        flist_fail (l, HP_ENOMEM, "out of memory");
        return;
      }
      free (l->exports[i].name);
      l->exports[i].name = n;
    }
  list_finish (l);
}

static void
on_default (struct flist *l, const char *name, uint32_t status,
            const char *msg)
{
  if (!name) {
    flist_fail (l, status, msg);
    return;
  }
  if (flist_add (l, name, NULL) == -1) {
    flist_fail (l, HP_ENOMEM, "out of memory");
    return;
  }
  list_finish (l);
}

static void
exportname_list (struct flist *l)
{
  size_t i;

  switch (list_mode) {
  case L_KEEP:
    flist_next (l, on_below_list);
    return;
  case L_ERROR:
    nbdkit_error ("exportname: export list restricted by policy "
                  "(exportname-list=error)");
    flist_fail (l, HP_EPERM, "export list restricted by policy");
    return;
  case L_EMPTY:
    flist_done (l);
    return;
  case L_DEFAULTONLY:
    if (default_export && *default_export)
      on_default (l, default_export, 0, NULL);
    else
      flist_default_export (l, on_default);
    return;
  case L_EXPLICIT:
    for (i = 0; i < nr_names; ++i)
      if (flist_add (l, names[i], NULL) == -1) {
        flist_fail (l, HP_ENOMEM, "out of memory");
        return;
      }
    list_finish (l);
    return;
  }
}

static const char *const keys[] = {
  "default-export", "exportname-list", "exportname-strict", "exportname",
  "exportdesc", NULL
};

const struct filter exportname_filter = {
  .name = "exportname",
  .description = "change the export names and descriptions clients see",
  .config_help =
    "default-export=NAME   the export an empty name opens\n"
    "exportname-list=keep|error|empty|defaultonly|explicit  what "
    "NBD_OPT_LIST says\n"
    "exportname-strict=BOOL  only the exportname= names may be opened\n"
    "exportname=NAME       a name for the list (may be repeated)\n"
    "exportdesc=keep|none|fixed:STRING|script:SCRIPT  the descriptions",
  .keys = keys,
  .config = exportname_config,
  .unload = exportname_unload,
  .export_below = exportname_below,
  .open = exportname_open,
  .list_exports = exportname_list,
};
