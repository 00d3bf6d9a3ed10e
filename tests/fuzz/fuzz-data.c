/* tests/fuzz/fuzz-data.c: libFuzzer target "data", the data backend's
 * format parser and evaluator (backends/data/format.c, format-eval.c,
 * blob.c), linked with the real libnbdkit-backend messages
 * (helper-protocol/backend-utils.c).  See tests/fuzz/README.
 *
 * One input is the text of data= up to its first NUL byte; each piece
 * after a NUL that reads NAME=VALUE (NAME a valid variable name) is a
 * parameter, the value of $NAME, as on nbdkit's command line (the last
 * one of a name wins).  The text is parsed; if it parses, it is
 * evaluated into a blob, unless it or a parameter holds a file (<FILE),
 * a script (<(SCRIPT)) or a $VAR that is not a parameter: the harness
 * never reads a file, runs a command or reads the environment.  Checked:
 *
 *   - a parse or evaluation that fails says why (nbdkit_error);
 *   - the blob keeps the promises of blob.h: every chunk is 1 byte or
 *     longer and inside the blob's length, a run has no data and data
 *     chunks have some, a zeroing chunk is a run of 0, end is at or
 *     after where the furthest chunk ends (and not past the length),
 *     and data counts the bytes of the data chunks;
 *   - blob_render writes what the chunks say (each over the earlier
 *     ones, holes as zeroes), for the first 64 KiB;
 *   - -D data.AST=1's printer runs on every tree that was evaluated;
 *   - ASan: no overflow, use after free or leak; UBSan: no undefined
 *     behaviour.
 *
 * The blob limits are lowered for the fuzzer (BLOB_MAX_DATA and
 * BLOB_MAX_CHUNKS in tests/fuzz/data.mk), so that an expression such
 * as '(1 2 3)*1G', which nbdkit would build too (it asks for that much
 * data), fails here at 64 MiB instead of exhausting the fuzzer's
 * memory, and '(1 @+1)*1000000' at 2^17 pieces instead of taking
 * seconds: blob.c's limits are what bounds them, only lower.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend-internal.h"
#include "blob.h"
#include "format.h"
#include "format-tree.h"

/* What libnbdkit-backend's main (backend-main.c) would define. */
bool nbdkit__verbose;
json_t *nbdkit__debug_flags;
int nbdkit__memfd = -1;

#define MAX_PARAMS 8
#define RENDER_MAX 65536

static int render_fd = -1;
static unsigned char expect[RENDER_MAX], got[RENDER_MAX];

#define check(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf (stderr, "fuzz-data: %s:%d: check failed: %s\n",          \
               __FILE__, __LINE__, #cond);                              \
      abort ();                                                         \
    }                                                                   \
  } while (0)

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  render_fd = memfd_create ("fuzz-data", MFD_CLOEXEC);
  if (render_fd == -1) {
    perror ("fuzz-data: memfd_create");
    exit (EXIT_FAILURE);
  }
  return 0;
}

/* Is there a value in the tree that the harness must not evaluate? */
static bool
unsafe (const struct node *n, const struct data_var *vars, size_t nvars)
{
  size_t i;

  if (!n)
    return false;
  switch (n->type) {
  case N_FILE:
  case N_SCRIPT:
    return true;
  case N_VAR:
    for (i = 0; i < nvars; i++)
      if (strcmp (vars[i].name, n->str) == 0)
        break;
    if (i == nvars)
      return true;              /* would be looked up in the environment */
    break;
  default:
    break;
  }
  for (i = 0; i < n->n; i++)
    if (unsafe (n->items[i], vars, nvars))
      return true;
  return unsafe (n->child, vars, nvars);
}

/* Did the last failure come with a message?  (Then forget it.) */
static void
said_why (void)
{
  struct context *ctx = nbdkit__context_get ();

  check (ctx->msg != NULL && ctx->msg[0] != '\0');
  free (ctx->msg);
  ctx->msg = NULL;
}

static void
check_blob (const struct blob *b)
{
  uint64_t end = 0, data = 0;
  size_t i;

  check (b->n <= b->cap);
  check (b->len <= (uint64_t) INT64_MAX);
  for (i = 0; i < b->n; i++) {
    const struct chunk *c = &b->v[i];

    check (c->len >= 1);
    check (c->off <= b->len && c->len <= b->len - c->off);
    check (c->fill >= -1 && c->fill <= 255);
    check ((c->fill == -1) == (c->data != NULL));
    check (!c->zero || c->fill == 0);
    if (c->off + c->len > end)
      end = c->off + c->len;
    if (c->fill == -1)
      data += c->len;
  }
  check (b->end >= end && b->end <= b->len);
  check (b->data == data);
}

/* The first size bytes of the blob, by the meaning of its chunks. */
static void
model (const struct blob *b, uint64_t size)
{
  size_t i;

  memset (expect, 0, size);
  for (i = 0; i < b->n; i++) {
    const struct chunk *c = &b->v[i];
    uint64_t len;

    if (c->off >= size)
      continue;
    len = c->len < size - c->off ? c->len : size - c->off;
    if (c->fill >= 0)
      memset (expect + c->off, c->fill, len);
    else
      memcpy (expect + c->off, c->data, len);
  }
}

static void
check_render (const struct blob *b)
{
  uint64_t size = b->len < RENDER_MAX ? b->len : RENDER_MAX;
  struct context *ctx = nbdkit__context_get ();

  check (ftruncate (render_fd, 0) == 0);
  check (ftruncate (render_fd, (off_t) size) == 0);
  if (blob_render (b, render_fd, size) == -1) {
    fprintf (stderr, "fuzz-data: blob_render failed: %s\n",
             ctx->msg ? ctx->msg : "(no message)");
    abort ();
  }
  model (b, size);
  check (pread (render_fd, got, size, 0) == (ssize_t) size);
  check (memcmp (got, expect, size) == 0);
}

static void
free_vars (struct data_var *vars, size_t nvars)
{
  size_t i;

  for (i = 0; i < nvars; i++) {
    data_format_free (vars[i].tree);
    free (vars[i].name);
    free (vars[i].value);
    free (vars[i].label);
  }
  free (vars);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = malloc (size + 1);
  struct data_var *vars = NULL;
  size_t nvars = 0, nparams, i;
  struct node *tree;
  bool eval = true;
  const char *p, *end;

  if (!text)
    return 0;
  memcpy (text, data, size);
  text[size] = '\0';
  end = text + size;
  nbdkit__context_begin (false, NULL, false);

  /* The parameters, after the first NUL. */
  for (p = text + strlen (text) + 1; p < end; p += strlen (p) + 1) {
    const char *eq = strchr (p, '=');
    char *name;
    struct data_var *v;

    if (!eq)
      continue;
    name = strndup (p, eq - p);
    check (name);
    if (!data_format_is_name (name)) {
      free (name);
      continue;
    }
    for (i = 0; i < nvars && strcmp (vars[i].name, name) != 0; i++)
      ;
    if (i < nvars) {                    /* the last one wins */
      free (name);
      free (vars[i].value);
      vars[i].value = strdup (eq + 1);
      check (vars[i].value);
      continue;
    }
    if (nvars == MAX_PARAMS) {
      free (name);
      continue;
    }
    v = realloc (vars, (nvars + 1) * sizeof *v);
    check (v);
    vars = v;
    vars[nvars++] = (struct data_var) { .name = name,
                                        .value = strdup (eq + 1) };
    check (vars[nvars - 1].value);
  }

  nparams = nvars;
  tree = data_format_parse (text, "data=");
  if (!tree) {
    said_why ();
    goto out;
  }

  /* The parameters are parsed here only to look inside them (the
   * evaluator parses those it uses on its own).
   */
  eval = !unsafe (tree, vars, nvars);
  for (i = 0; eval && i < nvars; i++) {
    struct node *t = data_format_parse (vars[i].value, vars[i].name);

    if (!t)
      said_why ();
    else {
      eval = !unsafe (t, vars, nvars);
      data_format_free (t);
    }
  }

  if (eval) {
    struct blob b = BLOB_INIT;

    if (data_format_eval (tree, &vars, &nvars, &b) == -1)
      said_why ();
    else {
      check_blob (&b);
      check_render (&b);
      data_format_print_ast (tree, vars, nvars);
    }
    blob_reset (&b);
    /* No variable came from the environment. */
    check (nvars == nparams);
  }
  data_format_free (tree);

 out:
  free_vars (vars, nvars);
  nbdkit__context_end ();
  free (text);
  return 0;
}
