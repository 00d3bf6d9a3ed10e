/* helper-protocol/secret-read.c: the shared parts of reading a secret
 * parameter (see secret-read.h): reading a file or a descriptor to its
 * end, checking a -FD number, asking on a terminal with echo off.
 * Called while the parameters are read, before any event loop runs:
 * these reads block, by design.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "secret-read.h"

void
secret_free (char *s)
{
  if (s) {
    explicit_bzero (s, strlen (s));
    free (s);
  }
}

char *
secret_read_fd (int fd, bool line)
{
  char *s = NULL;
  size_t len = 0;

  for (;;) {
    char c;
    ssize_t r = read (fd, &c, 1);
    char *s2;

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      secret_free (s);
      return NULL;
    }
    if (r == 0 || (line && c == '\n'))
      break;
    if (len >= SECRET_MAX) {
      secret_free (s);
      errno = EFBIG;
      return NULL;
    }
    s2 = realloc (s, len + 2);
    if (!s2) {
      secret_free (s);
      return NULL;
    }
    s = s2;
    s[len++] = c;
    s[len] = '\0';
  }
  if (!s && (s = strdup ("")) == NULL)
    return NULL;
  if (len > 0 && s[len - 1] == '\n')
    s[--len] = '\0';
  if (len > 0 && s[len - 1] == '\r')
    s[--len] = '\0';
  return s;
}

char *
secret_from_file (const char *key, const char *value)
{
  const char *path = value + 1;
  int fd;
  char *s;

  if (*path == '\0') {
    nbdkit_error ("%s=+: no file name after '+' (use %s=+FILE)", key, key);
    return NULL;
  }
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    nbdkit_error ("%s=%s: %s: %m", key, value, path);
    return NULL;
  }
  s = secret_read_fd (fd, false);
  if (!s)
    nbdkit_error ("%s=%s: reading %s: %m", key, value, path);
  close (fd);
  return s;
}

int
secret_parse_fd (const char *key, const char *value, int *fd)
{
  char *end;
  long n;

  errno = 0;
  n = strtol (value + 1, &end, 10);
  if (errno || end == value + 1 || *end || n < 0 || n > 65535 ||
      value[1] == '-' || value[1] == '+') {
    nbdkit_error ("%s=%s: not a file descriptor number after '-' (use %s=- "
                  "to be asked, %s=-FD, %s=+FILE, or a value that does not "
                  "start with - or +)", key, value, key, key, key);
    return -1;
  }
  if (n <= 2) {
    nbdkit_error ("%s=%s: descriptors 0, 1 and 2 are the server's standard "
                  "input, output and error (use %s=- to be asked on the "
                  "terminal, or a descriptor greater than 2)", key, value,
                  key);
    return -1;
  }
  *fd = (int) n;
  return 0;
}

char *
secret_ask_tty (int tty, const char *prompt)
{
  struct termios saved, quiet;
  bool echo_off = false;
  char *s;
  int e;

  if (tcgetattr (tty, &saved) == 0) {
    quiet = saved;
    quiet.c_lflag &= ~ECHO;
    quiet.c_lflag |= ECHONL;
    echo_off = tcsetattr (tty, TCSAFLUSH, &quiet) == 0;
  }
  if (write (tty, prompt, strlen (prompt)) == -1) {
    /* asked all the same */
  }
  s = secret_read_fd (tty, true);
  e = errno;
  if (echo_off)
    tcsetattr (tty, TCSAFLUSH, &saved);
  errno = e;
  return s;
}
