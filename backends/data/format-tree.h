/* nbdkit data backend: the tree of the data format, private to
 * format.c (the parser, which builds it) and format-eval.c (the
 * evaluator, which walks it).  A node records where it starts in its
 * source, for the messages of both.
 */

#ifndef NBDKIT_DATA_FORMAT_TREE_H
#define NBDKIT_DATA_FORMAT_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Nesting of '( ... )' and of variables in variables: a guard against
 * running out of stack, far above anything written by hand.
 */
#define MAX_DEPTH 256

enum node_type {
  N_SEQ,                        /* items: a sequence */
  N_BYTES,                      /* bytes, len: a byte, string or word */
  N_ABS,                        /* u: @OFFSET */
  N_FWD,                        /* u: @+N */
  N_BACK,                       /* u: @-N */
  N_ALIGN,                      /* u: @^ALIGNMENT */
  N_FILE,                       /* str: <FILE */
  N_SCRIPT,                     /* str: <(SCRIPT) */
  N_NAME,                       /* str: \NAME */
  N_VAR,                        /* str: $NAME */
  N_ASSIGN,                     /* child, str: VALUE -> \NAME */
  N_REPEAT,                     /* child, u: VALUE*N */
  N_SLICE,                      /* child, u, to, has_to: VALUE[u:to] */
};

struct node {
  enum node_type type;
  const char *text;             /* the source, for messages */
  const char *what;
  size_t pos;                   /* where the node starts in text */
  struct node *child;
  struct node **items;
  size_t n;
  unsigned char *bytes;
  size_t len;
  char *str;
  uint64_t u, to;
  bool has_to;
};

/* "WHAT, at character N near '...': MESSAGE", through nbdkit_error. */
extern void node_error_at (const char *text, const char *what, size_t pos,
                           const char *fmt, ...);

#endif /* NBDKIT_DATA_FORMAT_TREE_H */
