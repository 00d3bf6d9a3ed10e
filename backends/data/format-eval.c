/* nbdkit data backend: the evaluator of the data format's tree
 * (format-tree.h, built by format.c) into a blob: sequences, offsets,
 * repeats and slices, names and variables, and the values with side
 * effects, reading files (<FILE) and running scripts (<(SCRIPT)).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nbdkit-backend.h"
#include "format.h"
#include "format-tree.h"

/* ---- evaluation ---- */

struct binding {
  char *name;
  struct blob value;
};

struct scope {
  const struct scope *up;
  struct binding *b;
  size_t n;
};

struct evaluator {
  struct data_var **vars;
  size_t *nvars;
  int depth;
};

#define node_error(n, ...) node_error_at ((n)->text, (n)->what, (n)->pos, __VA_ARGS__)

static int eval_value (struct evaluator *ev, const struct node *n,
                       const struct scope *sc, struct blob *out);

static void
scope_free (struct scope *sc)
{
  size_t i;

  for (i = 0; i < sc->n; i++) {
    free (sc->b[i].name);
    blob_reset (&sc->b[i].value);
  }
  free (sc->b);
}

/* Bind name to value (taken over), replacing an earlier binding. */
static int
scope_bind (struct scope *sc, const char *name, struct blob *value)
{
  struct binding *b;
  size_t i;

  for (i = 0; i < sc->n; i++) {
    if (strcmp (sc->b[i].name, name) == 0) {
      blob_reset (&sc->b[i].value);
      sc->b[i].value = *value;
      *value = (struct blob) BLOB_INIT;
      return 0;
    }
  }
  b = realloc (sc->b, (sc->n + 1) * sizeof *b);
  if (!b) {
    nbdkit_error ("out of memory: %m");
    return -1;
  }
  sc->b = b;
  b[sc->n].name = strdup (name);
  if (!b[sc->n].name) {
    nbdkit_error ("out of memory: %m");
    return -1;
  }
  b[sc->n].value = *value;
  *value = (struct blob) BLOB_INIT;
  sc->n++;
  return 0;
}

static const struct blob *
scope_find (const struct scope *sc, const char *name)
{
  size_t i;

  for (; sc; sc = sc->up)
    for (i = 0; i < sc->n; i++)
      if (strcmp (sc->b[i].name, name) == 0)
        return &sc->b[i].value;
  return NULL;
}

/* Whether nbdkit copies this value in as a blit (blob_insert_blit)
 * rather than writing it: groups that move the offset or name
 * something, names, variables whose value is such a group, and
 * repeats of those.  (Called after n is evaluated: a variable's tree
 * is parsed by then.)
 */
static bool
needs_blit (const struct evaluator *ev, const struct node *n)
{
  size_t i;

  switch (n->type) {
  case N_SEQ:
    for (i = 0; i < n->n; i++)
      switch (n->items[i]->type) {
      case N_ABS: case N_FWD: case N_BACK: case N_ALIGN: case N_ASSIGN:
        return true;
      default:
        break;
      }
    return false;
  case N_NAME:
    return true;
  case N_VAR:
    for (i = 0; i < *ev->nvars; i++)
      if (strcmp ((*ev->vars)[i].name, n->str) == 0)
        return (*ev->vars)[i].tree && needs_blit (ev, (*ev->vars)[i].tree);
    return false;
  case N_REPEAT:
    return needs_blit (ev, n->child);
  default:
    return false;
  }
}

static int
eval_sequence (struct evaluator *ev, const struct node *seq,
               const struct scope *up, struct blob *out)
{
  struct scope sc = { .up = up };
  uint64_t at = 0, end = 0;
  size_t i;
  int r = -1;

  for (i = 0; i < seq->n; i++) {
    const struct node *n = seq->items[i];
    struct blob v = BLOB_INIT;

    switch (n->type) {
    case N_ABS:
      at = n->u;
      break;
    case N_FWD:
      if (n->u > (uint64_t) INT64_MAX - at) {
        node_error (n, "moves the offset %" PRIu64 " past 2^63-1", at);
        goto out;
      }
      at += n->u;
      break;
    case N_BACK:
      if (n->u > at) {
        node_error (n, "moves the offset %" PRIu64 " before the start%s",
                    at, up ? " of the enclosing '( ... )'" : "");
        goto out;
      }
      at -= n->u;
      break;
    case N_ALIGN:
      if (at % n->u) {
        if (n->u - at % n->u > (uint64_t) INT64_MAX - at) {
          node_error (n, "aligns the offset %" PRIu64 " past 2^63-1", at);
          goto out;
        }
        at += n->u - at % n->u;
      }
      break;
    case N_ASSIGN:
      if (eval_value (ev, n->child, &sc, &v) == -1 ||
          scope_bind (&sc, n->str, &v) == -1) {
        blob_reset (&v);
        goto out;
      }
      break;
    case N_BYTES:               /* straight in: no need for a copy */
      if ((n->len == 1 ? blob_put_fill (out, at, n->bytes[0], 1)
                       : blob_put (out, at, n->bytes, n->len)) == -1)
        goto out;
      at += n->len;
      break;
    default:
      if (eval_value (ev, n, &sc, &v) == -1 ||
          (needs_blit (ev, n) ? blob_insert_blit (out, at, &v)
                          : blob_insert (out, at, &v)) == -1) {
        blob_reset (&v);
        goto out;
      }
      at += v.len;
      blob_reset (&v);
    }
    if (at > end)
      end = at;
  }
  if (end > out->len)
    out->len = end;
  r = 0;
 out:
  scope_free (&sc);
  return r;
}

/* Read the bytes from..to-1 of a stream into out at offset 0 (to ==
 * UINT64_MAX: to the end), discarding the first from bytes when seek
 * is false.  *total is the number of bytes the stream was found to
 * have (as far as it was read); *eof says whether its end was reached.
 * Reading stops as soon as to is reached, so an endless stream (a
 * device, a script) can be sliced.
 */
static int
read_stream (const struct node *n, const char *what, int fd, bool seek,
             uint64_t from, uint64_t to, struct blob *out,
             uint64_t *total, bool *eof)
{
  unsigned char buf[65536];
  uint64_t off = 0;             /* of the next byte read, in the stream */

  *eof = false;
  if (seek && from > 0) {
    if (lseek (fd, (off_t) from, SEEK_SET) == -1) {
      node_error (n, "cannot seek in %s: %s", what, strerror (errno));
      return -1;
    }
    off = from;
  }
  while (off < to) {
    size_t want = sizeof buf;
    ssize_t got;

    if (to - off < want)
      want = to - off;
    got = read (fd, buf, want);
    if (got == -1 && errno == EINTR)
      continue;
    if (got == -1) {
      node_error (n, "cannot read %s: %s", what, strerror (errno));
      return -1;
    }
    if (got == 0) {
      *eof = true;
      break;
    }
    if (off + got > from) {
      uint64_t skip = off < from ? from - off : 0;

      if (blob_put_literal (out, off + skip - from, buf + skip,
                            got - skip) == -1)
        return -1;
    }
    off += got;
  }
  *total = off;
  return 0;
}

/* <FILE, or its bytes from..to-1. */
static int
read_file (const struct node *n, uint64_t from, uint64_t to,
           struct blob *out, uint64_t *total, bool *eof)
{
  struct stat st;
  char what[64];
  int fd = open (n->str, O_RDONLY | O_CLOEXEC);
  int r;

  if (fd == -1) {
    node_error (n, "cannot open '%s': %s", n->str, strerror (errno));
    return -1;
  }
  snprintf (what, sizeof what, "'%.50s'", n->str);
  r = read_stream (n, what, fd,
                   fstat (fd, &st) == 0 && S_ISREG (st.st_mode),
                   from, to, out, total, eof);
  if (r == 0 && from > 0 && S_ISREG (st.st_mode) && *eof &&
      *total == from && (uint64_t) st.st_size < from)
    *total = st.st_size;        /* sought past the end */
  close (fd);
  return r;
}

/* <(SCRIPT), or its bytes from..to-1: /bin/sh -c SCRIPT, in its own
 * process group, its standard output is the value.  It runs in the
 * backend's directory (the server's), with standard error going to
 * the server's log.  Once to bytes are read the script is not needed
 * any more: its process group is killed, and its exit status ignored.
 */
static int
run_script (const struct node *n, uint64_t from, uint64_t to,
            struct blob *out, uint64_t *total, bool *eof)
{
  int fds[2], status, r;
  pid_t pid;

  *total = 0;
  *eof = true;
  if (to == 0)                  /* nothing is needed: do not even run it */
    return 0;
  if (pipe2 (fds, O_CLOEXEC) == -1) {
    node_error (n, "cannot run the script: pipe: %s", strerror (errno));
    return -1;
  }
  pid = fork ();
  if (pid == -1) {
    node_error (n, "cannot run the script: fork: %s", strerror (errno));
    close (fds[0]);
    close (fds[1]);
    return -1;
  }
  /* The script stays in the backend's process group, so that it dies
   * with the backend (nbdkit-supervision(1)).
   */
  if (pid == 0) {               /* the child */
    signal (SIGPIPE, SIG_DFL);
    if (dup2 (fds[1], STDOUT_FILENO) == -1)
      _exit (126);
    closefrom (3);
    execl ("/bin/sh", "sh", "-c", n->str, (char *) NULL);
    _exit (127);
  }
  close (fds[1]);
  r = read_stream (n, "the output of the script", fds[0], false,
                   from, to, out, total, eof);
  /* Not needed any more: the shell is killed, and what it started
   * gets SIGPIPE at its next write to the closed pipe.
   */
  close (fds[0]);
  if (r == -1 || !*eof)
    kill (pid, SIGKILL);
  while (waitpid (pid, &status, 0) == -1) {
    if (errno != EINTR) {
      node_error (n, "waiting for the script: %s", strerror (errno));
      return -1;
    }
  }
  if (r == -1 || !*eof)
    return r;
  if (WIFSIGNALED (status)) {
    node_error (n, "the script was killed by signal %d", WTERMSIG (status));
    return -1;
  }
  if (WEXITSTATUS (status) != 0) {
    node_error (n, "the script failed with exit status %d",
                WEXITSTATUS (status));
    return -1;
  }
  return 0;
}

/* VALUE[from:to] where VALUE is a file or a script: only the bytes
 * needed are read.
 */
static int
eval_stream_slice (const struct node *n, struct blob *out)
{
  const struct node *c = n->child;
  uint64_t to = n->has_to ? n->to : UINT64_MAX, total;
  bool eof;
  int r = c->type == N_FILE
    ? read_file (c, n->u, to, out, &total, &eof)
    : run_script (c, n->u, to, out, &total, &eof);

  if (r == -1)
    return -1;
  if (n->u > total || (n->has_to && n->to > total)) {
    node_error (n, "the slice [%" PRIu64 ":%" PRIu64 "] is outside "
                "the %" PRIu64 " bytes it slices", n->u,
                n->has_to ? n->to : total, total);
    return -1;
  }
  out->len = (n->has_to ? n->to : total) - n->u;
  return 0;
}

static int
eval_var (struct evaluator *ev, const struct node *n,
          const struct scope *sc, struct blob *out)
{
  struct data_var *var = NULL;
  size_t i;
  int r;

  for (i = 0; i < *ev->nvars; i++)
    if (strcmp ((*ev->vars)[i].name, n->str) == 0)
      var = &(*ev->vars)[i];
  if (!var) {
    /* Not a parameter: an environment variable then (a parameter
     * wins over the environment, as in nbdkit's data plugin).
     */
    const char *env = getenv (n->str);
    struct data_var *v;

    if (!env) {
      node_error (n, "there is no variable '%s' (give it as a parameter, "
                  "e.g. %s='1 2 3', or in the environment)", n->str, n->str);
      return -1;
    }
    v = realloc (*ev->vars, (*ev->nvars + 1) * sizeof *v);
    if (!v) {
      nbdkit_error ("out of memory: %m");
      return -1;
    }
    *ev->vars = v;
    var = &v[*ev->nvars];
    *var = (struct data_var) { .name = strdup (n->str),
                               .value = strdup (env) };
    if (!var->name || !var->value ||
        asprintf (&var->label, "variable %s (from the environment)",
                  n->str) == -1) {
      var->label = NULL;
      free (var->name);
      free (var->value);
      nbdkit_error ("out of memory: %m");
      return -1;
    }
    (*ev->nvars)++;
  }
  if (var->active) {
    node_error (n, "the variable '%s' refers to itself", n->str);
    return -1;
  }
  var->used = true;
  if (!var->tree) {
    if (!var->label &&
        asprintf (&var->label, "variable %s", var->name) == -1) {
      var->label = NULL;
      nbdkit_error ("out of memory: %m");
      return -1;
    }
    var->tree = data_format_parse (var->value, var->label);
    if (!var->tree)
      return -1;
  }
  /* The evaluation may add variables from the environment, moving
   * the array: find this one again by its index afterwards.
   */
  i = (size_t) (var - *ev->vars);
  var->active = true;
  r = eval_sequence (ev, var->tree, sc, out);
  (*ev->vars)[i].active = false;
  return r;
}

static int
eval_value (struct evaluator *ev, const struct node *n,
            const struct scope *sc, struct blob *out)
{
  struct blob v = BLOB_INIT;
  const struct blob *named;
  int r = -1;

  if (++ev->depth > MAX_DEPTH) {
    node_error (n, "nested more than %d deep (through variables?)",
                MAX_DEPTH);
    ev->depth--;
    return -1;
  }
  switch (n->type) {
  case N_SEQ:
    r = eval_sequence (ev, n, sc, out);
    break;
  case N_BYTES:
    r = n->len == 1 ? blob_put_fill (out, 0, n->bytes[0], 1)
                    : blob_put (out, 0, n->bytes, n->len);
    break;
  case N_FILE:
  case N_SCRIPT:
    {
      uint64_t total;
      bool eof;

      r = n->type == N_FILE
        ? read_file (n, 0, UINT64_MAX, out, &total, &eof)
        : run_script (n, 0, UINT64_MAX, out, &total, &eof);
      if (r == 0)
        out->len = total;
    }
    break;
  case N_NAME:
    named = scope_find (sc, n->str);
    if (!named)
      node_error (n, "the name '\\%s' is not defined here (define it "
                  "before, with '... -> \\%s', in this '( ... )' or "
                  "around it)", n->str, n->str);
    else
      r = blob_insert (out, 0, named);
    break;
  case N_VAR:
    r = eval_var (ev, n, sc, out);
    break;
  case N_REPEAT:
    if (eval_value (ev, n->child, sc, &v) == 0)
      r = blob_repeat (out, &v, n->u);
    break;
  case N_SLICE:
    if (n->has_to && n->u == n->to)
      r = 0;                    /* [N:N] is empty whatever N, unevaluated */
    else if (n->child->type == N_FILE || n->child->type == N_SCRIPT)
      r = eval_stream_slice (n, out);
    else if (eval_value (ev, n->child, sc, &v) == 0) {
      uint64_t to = n->has_to ? n->to : v.len;

      if (n->u > v.len || to > v.len)
        node_error (n, "the slice [%" PRIu64 ":%" PRIu64 "] is outside "
                    "the %" PRIu64 " bytes it slices", n->u, to, v.len);
      else
        r = blob_slice (out, &v, n->u, to);
    }
    break;
  default:
    node_error (n, "internal error: node type %d is not a value", n->type);
  }
  blob_reset (&v);
  ev->depth--;
  return r;
}

int
data_format_eval (const struct node *tree, struct data_var **vars,
                  size_t *nvars, struct blob *out)
{
  struct evaluator ev = { .vars = vars, .nvars = nvars };

  return eval_sequence (&ev, tree, NULL, out);
}
