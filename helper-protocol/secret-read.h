/* helper-protocol/secret-read.h: reading the secret values of
 * parameters (nbdkit's password conventions: VALUE, +FILE, -, -FD),
 * the parts that the front end's filters and the backends share.
 * Not part of libnbdkit-backend: compiled into each program that uses
 * it.  Each side says where '-' and '-FD' read from (the front end
 * from its own descriptors, a backend through its parent's, see
 * backends/secret.c).
 */

#ifndef NBDKIT_SECRET_READ_H
#define NBDKIT_SECRET_READ_H

#include <stdbool.h>

/* The longest secret read from a file, a descriptor or a terminal. */
#define SECRET_MAX (1024 * 1024)

/* Read fd to its end (or, with line, to the first newline), without a
 * final newline (and carriage return).  Malloc'd, or NULL with errno
 * (EFBIG: longer than SECRET_MAX).
 */
extern char *secret_read_fd (int fd, bool line);

/* KEY=+FILE: the file's contents.  NULL after nbdkit_error. */
extern char *secret_from_file (const char *key, const char *value);

/* KEY=-FD: the descriptor number, checked (not 0, 1 or 2: use '-'),
 * into *fd.  -1 after nbdkit_error.
 */
extern int secret_parse_fd (const char *key, const char *value, int *fd);

/* Ask on tty (a terminal open for reading and writing) with prompt,
 * echo off, one line.  NULL with errno.
 */
extern char *secret_ask_tty (int tty, const char *prompt);

/* Free s after clearing it. */
extern void secret_free (char *s);

/* Both sides define it (filters/filter.h, nbdkit-backend.h). */
extern void nbdkit_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

#endif /* NBDKIT_SECRET_READ_H */
