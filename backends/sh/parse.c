/* backends/sh/parse.c: the parsing of what a script prints, for the
 * sh and eval backends (see parse.h): the handle, thread model, size,
 * block size, fua and cache levels, export lists, extents and magic
 * config key from a method's stdout, and the errno name and message of
 * a failed call from its stderr.  Pure functions of the text (and
 * script_label, in messages): no process is run here, so that the
 * fuzzing target "sh-output" (tests/fuzz/fuzz-sh-output.c) can feed
 * them anything.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "methods.h"
#include "parse.h"

/* ---- messages ---- */

void
method_error (int err, const char *method, const char *fmt, ...)
{
  va_list ap;
  char *msg = NULL;

  va_start (ap, fmt);
  if (vasprintf (&msg, fmt, ap) == -1)
    msg = NULL;
  va_end (ap);
  nbdkit_error ("%s%s%s: %s", script_label, *script_label ? ": " : "",
                method, msg ? msg : fmt);
  free (msg);
  nbdkit_set_error (err);
}

/* ---- lines and blanks ---- */

/* The output of a method without trailing newline characters. */
void
chomp (char *s, size_t *len)
{
  size_t n = len ? *len : strlen (s);

  while (n > 0 && (s[n-1] == '\n' || s[n-1] == '\r'))
    s[--n] = '\0';
  if (len)
    *len = n;
}

char *
trim (char *s)
{
  size_t n;

  s += strspn (s, " \t\r\n");
  n = strlen (s);
  while (n > 0 && strchr (" \t\r\n", s[n-1]))
    s[--n] = '\0';
  return s;
}

void
parse_handle (char *out, size_t *len)
{
  /* As nbdkit: exactly one trailing newline goes, nothing else. */
  if (*len > 0 && out[*len - 1] == '\n')
    out[--*len] = '\0';
}

/* ---- start-up ---- */

int
parse_thread_model (char *out)
{
  static const struct { const char *name; int model; } models[] = {
    { "serialize_connections", NBDKIT_THREAD_MODEL_SERIALIZE_CONNECTIONS },
    { "serialize_all_requests", NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS },
    { "serialize_requests", NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS },
    { "parallel", NBDKIT_THREAD_MODEL_PARALLEL },
  };
  const char *s = trim (out);
  size_t i;

  for (i = 0; i < sizeof models / sizeof models[0]; ++i)
    if (strcmp (s, models[i].name) == 0)
      return models[i].model;
  nbdkit_debug ("thread_model: unknown thread model '%s' ignored "
                "(use serialize_connections, serialize_all_requests, "
                "serialize_requests or parallel)", s);
  return -1;
}

char *
parse_magic_config_key (char *out)
{
  char *key = out + strspn (out, " \t\r\n");

  key[strcspn (key, " \t\r\n")] = '\0';
  return key;
}

/* ---- exports ---- */

/* Split output into lines (in place); the mode line of nbdkit-sh(3),
 * if any, is left out and returned.
 */
enum list_mode { LIST_NAMES, LIST_INTERLEAVED, LIST_NAMES_DESCRIPTIONS };

static char **
split_exports (char *s, size_t *n, enum list_mode *mode)
{
  char **lines = NULL;
  size_t cap = 0;
  char *p = s;

  *n = 0;
  *mode = LIST_NAMES;
  while (*p) {
    char *nl = strchr (p, '\n');

    if (nl)
      *nl = '\0';
    if (*n == cap) {
      char **l = realloc (lines, (cap = cap ? cap * 2 : 16) * sizeof *l);

      if (!l) {
        free (lines);
        return NULL;
      }
      lines = l;
    }
    lines[(*n)++] = p;
    if (!nl)
      break;
    p = nl + 1;
  }
  if (*n > 0) {
    if (strcmp (lines[0], "NAMES") == 0)
      *mode = LIST_NAMES;
    else if (strcmp (lines[0], "INTERLEAVED") == 0)
      *mode = LIST_INTERLEAVED;
    else if (strcmp (lines[0], "NAMES+DESCRIPTIONS") == 0)
      *mode = LIST_NAMES_DESCRIPTIONS;
    else
      return lines ? lines : calloc (1, sizeof *lines);
    memmove (lines, lines + 1, --*n * sizeof *lines);
  }
  return lines ? lines : calloc (1, sizeof *lines);
}

const char *
parse_default_export (char *out)
{
  enum list_mode mode;
  const char *name;
  char **lines;
  size_t n;

  lines = split_exports (out, &n, &mode);
  if (!lines) {
    nbdkit_set_error (ENOMEM);
    return NULL;
  }
  name = n > 0 ? lines[0] : "";
  free (lines);
  return name;
}

int
parse_exports (char *out, struct nbdkit_exports *exports)
{
  enum list_mode mode;
  char **lines;
  size_t n, i;
  int r = 0;

  lines = split_exports (out, &n, &mode);
  if (!lines) {
    nbdkit_set_error (ENOMEM);
    return -1;
  }
  switch (mode) {
  case LIST_NAMES:
    for (i = 0; r == 0 && i < n; ++i)
      r = nbdkit_add_export (exports, lines[i], NULL);
    break;
  case LIST_INTERLEAVED:
    for (i = 0; r == 0 && i < n; i += 2)
      r = nbdkit_add_export (exports, lines[i],
                             i + 1 < n ? lines[i + 1] : NULL);
    break;
  case LIST_NAMES_DESCRIPTIONS: {
    /* As nbdkit: the first half of the lines (rounded up) are the
     * names, the rest their descriptions; with an odd number of lines
     * the last name has none.
     */
    size_t names = (n + 1) / 2;

    for (i = 0; r == 0 && i < names; ++i)
      r = nbdkit_add_export (exports, lines[i],
                             names + i < n ? lines[names + i] : NULL);
    break;
  }
  }
  free (lines);
  return r;
}

/* ---- connections ---- */

int64_t
parse_size (char *out)
{
  int64_t size = nbdkit_parse_size (trim (out));

  if (size == -1)
    method_error (EIO, "get_size", "the script printed '%s', which is "
                  "not a size", trim (out));
  return size;
}

int
parse_block_size (char *out, uint32_t *minimum, uint32_t *preferred,
                  uint32_t *maximum)
{
  uint32_t *res[3] = { minimum, preferred, maximum };
  char *p, *word, *save = NULL;
  int i;

  for (i = 0, p = out; i < 3; ++i, p = NULL) {
    int64_t v;

    word = strtok_r (p, " \t\r\n", &save);
    if (!word) {
      method_error (EIO, "block_size", "the script must print three sizes "
                    "(minimum, preferred, maximum), got %d", i);
      return -1;
    }
    v = nbdkit_parse_size (word);
    if (v == -1 || v > UINT32_MAX) {
      method_error (EIO, "block_size", "'%s' is not a block size", word);
      return -1;
    }
    *res[i] = (uint32_t) v;
  }
  return 0;
}

/* ---- capabilities ---- */

int
parse_level (const char *method, char *out, int none, int emulate,
             int native)
{
  const char *s = trim (out);

  if (strcasecmp (s, "none") == 0)
    return none;
  if (strcasecmp (s, "emulate") == 0)
    return emulate;
  if (strcasecmp (s, "native") == 0)
    return native;
  method_error (EINVAL, method, "the script printed '%s' (print none, "
                "emulate or native)", s);
  return -1;
}

/* ---- extents ---- */

/* One line of extents: "offset length [type]", where type is a number,
 * or words hole and zero separated by commas, or nothing (data).
 */
static int
parse_extent (char *line, struct nbdkit_extents *extents)
{
  char *save = NULL, *word[3], *p = line;
  char copy[256];
  int64_t offset, length;
  uint32_t type = 0;
  int i;

  snprintf (copy, sizeof copy, "%s", line);
  for (i = 0; i < 3; ++i, p = NULL)
    word[i] = strtok_r (p, " \t\r", &save);
  if (!word[0])
    return 0;                   /* a blank line */
  if (!word[1] || strtok_r (NULL, " \t\r", &save)) {
    method_error (EIO, "extents", "cannot parse the line '%s' (write "
                  "'offset length [type]')", copy);
    return -1;
  }
  offset = nbdkit_parse_size (word[0]);
  length = nbdkit_parse_size (word[1]);
  if (offset == -1 || length == -1) {
    method_error (EIO, "extents", "cannot parse the line '%s': the offset "
                  "and length must be sizes", copy);
    return -1;
  }
  if (word[2]) {
    char *end;
    unsigned long t;

    errno = 0;
    t = strtoul (word[2], &end, 0);
    if (word[2][0] >= '0' && word[2][0] <= '9' && !*end && !errno &&
        t <= UINT32_MAX)
      type = (uint32_t) t;
    else {
      char *w, *wsave = NULL;

      for (w = strtok_r (word[2], ",", &wsave); w;
           w = strtok_r (NULL, ",", &wsave)) {
        if (strcmp (w, "hole") == 0)
          type |= NBDKIT_EXTENT_HOLE;
        else if (strcmp (w, "zero") == 0)
          type |= NBDKIT_EXTENT_ZERO;
        else {
          method_error (EIO, "extents", "unknown extent type '%s' in the "
                        "line '%s' (use a number, or hole and/or zero "
                        "separated by a comma)", w, copy);
          return -1;
        }
      }
    }
  }
  return nbdkit_add_extent (extents, (uint64_t) offset, (uint64_t) length,
                            type);
}

int
parse_extents (char *out, struct nbdkit_extents *extents)
{
  char *line, *save = NULL;
  int r = 0;

  for (line = strtok_r (out, "\n", &save); r == 0 && line;
       line = strtok_r (NULL, "\n", &save))
    r = parse_extent (line, extents);
  return r;
}

/* ---- the errno name and message of a failure, on stderr ---- */

static const struct { const char *name; int value; } errno_names[] = {
  { "EPERM", EPERM }, { "ENOENT", ENOENT }, { "ESRCH", ESRCH },
  { "EINTR", EINTR }, { "EIO", EIO }, { "ENXIO", ENXIO },
  { "E2BIG", E2BIG }, { "ENOEXEC", ENOEXEC }, { "EBADF", EBADF },
  { "ECHILD", ECHILD }, { "EAGAIN", EAGAIN }, { "EWOULDBLOCK", EAGAIN },
  { "ENOMEM", ENOMEM }, { "EACCES", EACCES }, { "EFAULT", EFAULT },
  { "EBUSY", EBUSY }, { "EEXIST", EEXIST }, { "EXDEV", EXDEV },
  { "ENODEV", ENODEV }, { "ENOTDIR", ENOTDIR }, { "EISDIR", EISDIR },
  { "EINVAL", EINVAL }, { "ENFILE", ENFILE }, { "EMFILE", EMFILE },
  { "ENOTTY", ENOTTY }, { "ETXTBSY", ETXTBSY }, { "EFBIG", EFBIG },
  { "ENOSPC", ENOSPC }, { "ESPIPE", ESPIPE }, { "EROFS", EROFS },
  { "EMLINK", EMLINK }, { "EPIPE", EPIPE }, { "EDOM", EDOM },
  { "ERANGE", ERANGE }, { "EDEADLK", EDEADLK },
  { "ENAMETOOLONG", ENAMETOOLONG }, { "ENOLCK", ENOLCK },
  { "ENOSYS", ENOSYS }, { "ENOTEMPTY", ENOTEMPTY }, { "ELOOP", ELOOP },
  { "EOVERFLOW", EOVERFLOW }, { "ENOTSUP", ENOTSUP },
  { "EOPNOTSUPP", EOPNOTSUPP }, { "ESHUTDOWN", ESHUTDOWN },
  { "ETIMEDOUT", ETIMEDOUT }, { "ECONNREFUSED", ECONNREFUSED },
  { "ECONNRESET", ECONNRESET }, { "EDQUOT", EDQUOT },
  { "ESTALE", ESTALE }, { "ECANCELED", ECANCELED },
};

/* If s starts with a known errno name followed by a blank or the end,
 * return its value and set *len to the length of the name, else 0.
 * As nbdkit, the name's case does not matter: EIO, eio, Eio.
 */
static int
errno_at (const char *s, size_t *len)
{
  size_t n = 0, i;

  while (s[n] && ((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= 'a' && s[n] <= 'z') ||
                  (s[n] >= '0' && s[n] <= '9')))
    n++;
  if (n == 0 || (s[n] && s[n] != ' ' && s[n] != '\t' && s[n] != '\n' &&
                 s[n] != '\r'))
    return 0;
  for (i = 0; i < sizeof errno_names / sizeof errno_names[0]; ++i)
    if (strlen (errno_names[i].name) == n &&
        strncasecmp (s, errno_names[i].name, n) == 0) {
      *len = n;
      return errno_names[i].value;
    }
  return 0;
}

/* Report a failed call: the errno is the name at the start of stderr
 * (as nbdkit does), or else at the start of any line of it, or else
 * def_errno.  The message is the rest of stderr on one line, followed
 * by "(note)" if note is not NULL; without any text, note or else the
 * description of the errno.
 */
void
parse_stderr (const char *label, const char *method, char *err,
              int def_errno, const char *note)
{
  char empty[1] = "";
  char *start = err ? err : empty, *line;
  char *p, *q;
  size_t n;
  int e = 0;

  /* The name comes first, as in nbdkit: " EIO" names none. */
  if ((e = errno_at (start, &n)) != 0)
    memmove (start, start + n, strlen (start + n) + 1);
  else {
    for (p = strchr (start, '\n'); p; p = strchr (p + 1, '\n')) {
      if ((e = errno_at (p + 1, &n)) != 0) {
        memmove (p + 1, p + 1 + n, strlen (p + 1 + n) + 1);
        break;
      }
    }
  }
  if (!e)
    e = def_errno;

  /* One line: newlines become "; ", blanks at either end go.  "; " is
   * longer than the newline it replaces, so the line is made in a
   * buffer of its own (without memory, newlines become one blank, in
   * place).
   */
  line = malloc (2 * strlen (start) + 1);
  for (p = start, q = line ? line : start; *p; ) {
    if (*p == '\n' || *p == '\r') {
      p += strspn (p, " \t\r\n");
      if (*p && q > (line ? line : start)) {
        *q++ = line ? ';' : ' ';
        if (line)
          *q++ = ' ';
      }
      continue;
    }
    *q++ = *p++;
  }
  *q = '\0';
  if (line)
    start = line;
  start += strspn (start, " \t");
  for (n = strlen (start); n > 0 && (start[n-1] == ' ' || start[n-1] == '\t');
       --n)
    start[n-1] = '\0';

  if (*start && note)
    nbdkit_error ("%s%s%s: %s (%s)", label, *label ? ": " : "", method,
                  start, note);
  else if (*start)
    nbdkit_error ("%s%s%s: %s", label, *label ? ": " : "", method, start);
  else
    nbdkit_error ("%s%s%s: %s", label, *label ? ": " : "", method,
                  note ? note : strerror (e));
  free (line);
  nbdkit_set_error (e);
}
