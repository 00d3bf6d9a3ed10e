/* filters/exportname.c: change the export names clients see and ask
 * for (nbdkit-exportname-filter(1)): the list NBD_OPT_LIST answers
 * (exportname-list=keep|error|empty|defaultonly|explicit, with
 * exportname=), the export "" opens (default-export=), which names a
 * client may open (exportname-strict=), and the descriptions
 * (exportdesc=keep|none|fixed:STRING|script:SCRIPT).
 *
 * The default export is mapped with the filter API's export_below, so
 * the layers below open the chosen name.  Description scripts run as
 * child processes whose output and exit the loop watches (ev_io,
 * ev_child): nothing waits for them.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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

/* With exportname-strict=true only the names of exportname= open: the
 * name as the client asked it, as nbdkit checks it ("" too, even with
 * default-export=).  "" opens default-export=.
 */
static const char *
exportname_below (const char *export)
{
  if (strict && !listed (export)) {
    nbdkit_error ("exportname: export \"%s\" is not permitted "
                  "(exportname-strict=true allows only the exportname= "
                  "names)", export);
    return NULL;
  }
  if (!*export && default_export && *default_export)
    return default_export;
  return export;
}

/* ---- description scripts ---- */

/* One run of sh -c SCRIPT with $name set: its output is read through a
 * non-blocking pipe (ev_io) and its exit seen by an ev_child watcher
 * (libev reaps the server's children), so nothing waits on the loop.
 * done (opaque, desc) gets the output, trailing newlines cut, or NULL
 * if the script failed or printed nothing; desc is the callee's.
 */
typedef void (*described_fn) (void *opaque, char *desc);

struct script_run {
  ev_io io;
  ev_child child;
  int fd;
  char out[MAX_DESC + 1];
  size_t len;
  bool eof, exited;
  int status;
  described_fn done;
  void *opaque;
};

static void
script_finish (struct script_run *sr)
{
  char *desc = NULL;

  if (!sr->eof || !sr->exited)
    return;
  while (sr->len > 0 && sr->out[sr->len - 1] == '\n')
    sr->len--;
  sr->out[sr->len] = '\0';
  if (WIFEXITED (sr->status) && WEXITSTATUS (sr->status) == 0 &&
      sr->len > 0 && !memchr (sr->out, '\0', sr->len))
    desc = strdup (sr->out);
  else
    nbdkit_debug ("exportname: exportdesc script gave no description");
  sr->done (sr->opaque, desc);
  free (sr);
}

static void
on_script_output (struct ev_loop *l, ev_io *w, int revents)
{
  struct script_run *sr = w->data;
  char buf[4096];
  ssize_t r;

  for (;;) {
    r = read (sr->fd, buf, sizeof buf);
    if (r > 0) {
      /* Keep at most MAX_DESC bytes, but read all: the script must not
       * stall on a full pipe.
       */
      size_t k = (size_t) r > MAX_DESC - sr->len ? MAX_DESC - sr->len
                                                 : (size_t) r;

      memcpy (sr->out + sr->len, buf, k);
      sr->len += k;
      continue;
    }
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    break;                      /* end of file, or an error */
  }
  ev_io_stop (loop, &sr->io);
  close (sr->fd);
  sr->eof = true;
  script_finish (sr);
}

static void
on_script_exit (struct ev_loop *l, ev_child *w, int revents)
{
  struct script_run *sr = w->data;

  ev_child_stop (loop, w);
  sr->status = w->rstatus;
  sr->exited = true;
  script_finish (sr);
}

/* Start the script for name; done runs later (at once, with NULL, if
 * it cannot start).
 */
static void
run_script (const char *name, described_fn done, void *opaque)
{
  extern char **environ;
  struct script_run *sr = calloc (1, sizeof *sr);
  size_t n = 0, i, k = 0;
  char **envp = NULL, *namevar = NULL;
  int fd[2] = { -1, -1 };
  pid_t pid;

  while (environ[n])
    n++;
  if (!sr || !(envp = calloc (n + 2, sizeof *envp)) ||
      !(namevar = malloc (strlen (name) + 6)) ||
      pipe2 (fd, O_CLOEXEC) == -1) {
    nbdkit_error ("exportname: cannot run the exportdesc script: %m");
    goto fail;
  }
  sprintf (namevar, "name=%s", name);
  for (i = 0; i < n; ++i)
    if (strncmp (environ[i], "name=", 5) != 0)
      envp[k++] = environ[i];
  envp[k] = namevar;
  pid = fork ();
  if (pid == -1) {
    nbdkit_error ("exportname: fork: %m");
    goto fail;
  }
  if (pid == 0) {
    int null = open ("/dev/null", O_RDONLY);

    if (null >= 0)
      dup2 (null, STDIN_FILENO);
    dup2 (fd[1], STDOUT_FILENO);
    signal (SIGPIPE, SIG_DFL);
    execve ("/bin/sh", (char *[]) { "sh", "-c", (char *) desc_arg, NULL },
            envp);
    _exit (127);
  }
  close (fd[1]);
  free (envp);
  free (namevar);
  fcntl (fd[0], F_SETFL, fcntl (fd[0], F_GETFL) | O_NONBLOCK);
  sr->fd = fd[0];
  sr->done = done;
  sr->opaque = opaque;
  ev_io_init (&sr->io, on_script_output, fd[0], EV_READ);
  sr->io.data = sr;
  ev_io_start (loop, &sr->io);
  ev_child_init (&sr->child, on_script_exit, pid, 0);
  sr->child.data = sr;
  ev_child_start (loop, &sr->child);
  return;

 fail:
  if (fd[0] >= 0) {
    close (fd[0]);
    close (fd[1]);
  }
  free (envp);
  free (namevar);
  free (sr);
  done (opaque, NULL);
}

/* ---- open ---- */

static void
described (void *opaque, char *desc)
{
  struct fopen *o = opaque;

  free (o->caps->description);
  o->caps->description = desc;
  fopen_done (o, NULL);
}

static void
exportname_open (struct fopen *o)
{
  struct export_caps *c = o->caps;

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
    run_script (c->name ? c->name : o->export, described, o);
    return;
  }
  fopen_done (o, NULL);
}

/* ---- listing ---- */

/* Describing a list with the script, one export after the other. */
struct listing {
  struct flist *l;
  size_t i;                     /* the export being described */
};

static void
list_described (void *opaque, char *desc)
{
  struct listing *ls = opaque;
  struct flist *l = ls->l;

  free (l->exports[ls->i].description);
  l->exports[ls->i].description = desc;
  if (++ls->i < l->nr_exports) {
    run_script (l->exports[ls->i].name, list_described, ls);
    return;
  }
  free (ls);
  flist_done (l);
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
  if (!ls) {
    flist_fail (l, HP_ENOMEM, "out of memory");
    return;
  }
  ls->l = l;
  run_script (l->exports[0].name, list_described, ls);
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
