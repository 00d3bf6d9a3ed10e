/* nbdkit data backend: the data format (nbdkit-data-backend(1), DATA
 * FORMAT), parsed into a tree and evaluated into a blob.  Parsing has
 * no side effects; evaluation reads files and runs scripts.  Errors
 * go through nbdkit_error and name the source ("data=" or a variable)
 * and the character where the problem is.
 */

#ifndef NBDKIT_DATA_FORMAT_H
#define NBDKIT_DATA_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

#include "blob.h"

struct node;

/* A variable for $NAME: an extra NAME=VALUE parameter.  Its value is
 * itself in the data format, parsed the first time it is used.
 */
struct data_var {
  char *name;
  char *value;
  bool used;                    /* set by data_format_eval */
  bool active;                  /* being evaluated (catches $a in $a) */
  struct node *tree;            /* the parsed value, once used */
  char *label;                  /* "variable NAME", for its messages */
};

/* Parse text; what names it in messages (e.g. "data="). */
extern struct node *data_format_parse (const char *text, const char *what);
extern void data_format_free (struct node *n);

/* Evaluate a parsed tree into out (which starts empty).  A $NAME that
 * is not in vars is looked up in the environment, and added to vars
 * (reallocated) if it is there.
 */
extern int data_format_eval (const struct node *tree,
                             struct data_var **vars, size_t *nvars,
                             struct blob *out);

/* -D data.AST=1: print the tree through nbdkit_debug, with the
 * variables used (vars, after data_format_eval) put in place.
 */
extern void data_format_print_ast (const struct node *tree,
                                   const struct data_var *vars,
                                   size_t nvars);

/* A valid variable or name: [A-Za-z_][A-Za-z0-9_]* */
extern bool data_format_is_name (const char *s);

#endif /* NBDKIT_DATA_FORMAT_H */
