/* backends/sh/parse.h: the parsing of what a script prints, for the sh
 * and eval backends (nbdkit-sh-plugin(3) conventions).  parse.c owns
 * it: pure functions of a method's output (stdout, or stderr for the
 * errno name of a failure), which the callbacks of methods*.c and the
 * running of a call (call.c) use, and which the fuzzing target
 * "sh-output" (tests/fuzz/fuzz-sh-output.c) exercises.  Nothing here
 * runs a process; the output is modified in place (it is the
 * NUL-terminated buffer of a call, which the caller frees).  Each
 * function that can fail returns -1 (or NULL) after nbdkit_error and
 * nbdkit_set_error.
 */

#ifndef NBDKIT_SH_PARSE_H
#define NBDKIT_SH_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "nbdkit-backend.h"

/* nbdkit_error, prefixed with "LABEL: METHOD: ", and errno for it
 * (LABEL is the program's script_label, methods.h).
 */
extern void method_error (int err, const char *method, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* The output without blanks at either end. */
extern char *trim (char *s);
/* The output without its trailing newline characters (len, if not
 * NULL, is its length, updated).
 */
extern void chomp (char *s, size_t *len);

/* open: the handle is the output less exactly one trailing newline. */
extern void parse_handle (char *out, size_t *len);

/* thread_model: the NBDKIT_THREAD_MODEL_* named, or -1 (with a debug
 * message, not an error) when it names none.
 */
extern int parse_thread_model (char *out);

/* get_size: the size, at least 0, or -1. */
extern int64_t parse_size (char *out);

/* block_size: three sizes, minimum preferred maximum, each at most
 * 2^32-1.  0 or -1 (the sizes parsed until the error are set).
 */
extern int parse_block_size (char *out, uint32_t *minimum,
                             uint32_t *preferred, uint32_t *maximum);

/* can_fua and can_cache: "none", "emulate" or "native" (any case,
 * blanks around), as the value given for each; or -1.
 */
extern int parse_level (const char *method, char *out, int none,
                        int emulate, int native);

/* list_exports: one name a line, or after a first line NAMES,
 * INTERLEAVED or NAMES+DESCRIPTIONS, names and descriptions; each is
 * added to exports.  0 or -1.
 */
extern int parse_exports (char *out, struct nbdkit_exports *exports);

/* default_export: the first name listed (in out), "" when there is
 * none, NULL when memory is short.
 */
extern const char *parse_default_export (char *out);

/* extents: lines of "offset length [type]", added to extents (whose
 * library checks their order and clips them to the request).  0 or -1.
 */
extern int parse_extents (char *out, struct nbdkit_extents *extents);

/* magic_config_key: the first word of the output (in out), or "". */
extern char *parse_magic_config_key (char *out);

/* A failed call: the errno named at the start of stderr err (as
 * nbdkit does), or else at the start of any of its lines, or else
 * def_errno; the message is the rest of err on one line, followed by
 * "(note)" if note is not NULL; without any text, note or else the
 * description of the errno.  "LABEL: METHOD: " prefixes it (no
 * "LABEL: " when label is empty).  err may be NULL; it is modified.
 */
extern void parse_stderr (const char *label, const char *method, char *err,
                          int def_errno, const char *note);

#endif /* NBDKIT_SH_PARSE_H */
