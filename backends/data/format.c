/* nbdkit data backend: the data format, a recursive-descent parser
 * into a tree of nodes (format-tree.h); format-eval.c evaluates that
 * tree into a blob.  Parsing has no side effects.
 *
 * Grammar (whitespace and '#' comments between any two items):
 *
 *   sequence := item*
 *   item     := offset | value postfix* [ '->' '\' NAME ]
 *   offset   := '@' NUM | '@+' NUM | '@-' NUM | '@^' NUM
 *   value    := BYTE | '"' STRING '"' | WORDTYPE ':' NUM
 *             | '<' FILE | '<(' SCRIPT ')' | '(' sequence ')'
 *             | '\' NAME | '$' NAME
 *   postfix  := '*' NUM | '[' [NUM] ':' [NUM] ']'
 *
 * A sequence writes its items one after the other from offset 0 of its
 * own, and is as long as the furthest offset it reached; a value put in
 * a sequence replaces the bytes it covers.  Names ('-> \NAME') belong to
 * the sequence that assigns them and to the sequences inside it.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdkit-backend.h"
#include "format.h"
#include "format-tree.h"

/* ---- messages ---- */

/* "data=, at character 7 near '@-x 3': MESSAGE" */
void
node_error_at (const char *text, const char *what, size_t pos,
               const char *fmt, ...)
{
  char msg[512], near[24];
  size_t i;
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  for (i = 0; i < sizeof near - 1 && text[pos + i] &&
         text[pos + i] != '\n'; i++)
    near[i] = text[pos + i];
  near[i] = '\0';
  if (text[pos] == '\0')
    nbdkit_error ("%s, at the end: %s", what, msg);
  else
    nbdkit_error ("%s, at character %zu near '%s%s': %s", what, pos + 1,
                  near, text[pos + i] && text[pos + i] != '\n' ? "..." : "",
                  msg);
}

/* ---- the tree ---- */

void
data_format_free (struct node *n)
{
  size_t i;

  if (!n)
    return;
  for (i = 0; i < n->n; i++)
    data_format_free (n->items[i]);
  free (n->items);
  data_format_free (n->child);
  free (n->bytes);
  free (n->str);
  free (n);
}

/* ---- parser ---- */

struct parser {
  const char *text;
  const char *what;
  size_t pos;
  int depth;
};

#define error_at(p, at, ...) node_error_at ((p)->text, (p)->what, (at), __VA_ARGS__)

static struct node *
new_node (struct parser *p, enum node_type type, size_t pos)
{
  struct node *n = calloc (1, sizeof *n);

  if (!n) {
    nbdkit_error ("out of memory parsing %s", p->what);
    return NULL;
  }
  n->type = type;
  n->text = p->text;
  n->what = p->what;
  n->pos = pos;
  return n;
}

static int
peek (const struct parser *p)
{
  return (unsigned char) p->text[p->pos];
}

static void
skip_space (struct parser *p)
{
  for (;;) {
    int c = peek (p);

    if (c == '#') {
      while (peek (p) && peek (p) != '\n')
        p->pos++;
    }
    else if (c && isspace (c))
      p->pos++;
    else
      return;
  }
}

static bool
is_name_start (int c)
{
  return isalpha (c) || c == '_';
}

static bool
is_name_char (int c)
{
  return isalnum (c) || c == '_';
}

bool
data_format_is_name (const char *s)
{
  if (!is_name_start ((unsigned char) *s))
    return false;
  while (*++s)
    if (!is_name_char ((unsigned char) *s))
      return false;
  return true;
}

/* A number: decimal, 0x hexadecimal, or octal with a leading 0; with
 * suffix_ok, optionally followed by one of k M G T P E (powers of
 * 1024, either case).  what says what it is, for messages.
 */
static int
parse_number (struct parser *p, bool suffix_ok, const char *what,
              uint64_t *r)
{
  static const char suffixes[] = "kmgtpe";
  size_t start = p->pos, end = p->pos, i = p->pos;
  int len, base = 10;
  uint64_t v = 0;

  if (!isdigit (peek (p))) {
    if (peek (p))
      error_at (p, start, "expected %s (a number)", what);
    else
      error_at (p, start, "expected %s (a number), found the end", what);
    return -1;
  }
  while (is_name_char ((unsigned char) p->text[end]))
    end++;
  len = (int) (end - start);
  if (p->text[i] == '0' && (p->text[i + 1] == 'x' || p->text[i + 1] == 'X')) {
    base = 16;
    i += 2;
    if (!isxdigit ((unsigned char) p->text[i])) {
      error_at (p, start, "'%.*s' is not a hexadecimal number", len,
                p->text + start);
      return -1;
    }
  }
  else if (p->text[i] == '0' && isdigit ((unsigned char) p->text[i + 1])) {
    base = 8;
    i++;
  }
  for (; i < end; i++) {
    int c = (unsigned char) p->text[i], d;

    if (isdigit (c))
      d = c - '0';
    else if (isxdigit (c) && base == 16)
      d = tolower (c) - 'a' + 10;
    else
      break;
    if (d >= base) {
      error_at (p, start, "'%.*s' is not an octal number (a number with "
                "a leading 0 is octal)", len, p->text + start);
      return -1;
    }
    if (v > (UINT64_MAX - d) / base) {
      error_at (p, start, "the number '%.*s' is too large", len,
                p->text + start);
      return -1;
    }
    v = v * base + d;
  }
  if (i < end) {
    const char *s = suffix_ok && i + 1 == end
      ? strchr (suffixes, tolower ((unsigned char) p->text[i])) : NULL;
    int shift;

    if (!s) {
      error_at (p, start, "'%.*s' is not a valid %s%s", len, p->text + start,
                what, suffix_ok ? " (a number with an optional suffix "
                "k, M, G, T, P or E)" : " (a decimal, 0x hexadecimal or "
                "0 octal number)");
      return -1;
    }
    shift = 10 * (int) (s - suffixes + 1);
    if (v > (UINT64_MAX >> shift)) {
      error_at (p, start, "the number '%.*s' is too large", len,
                p->text + start);
      return -1;
    }
    v <<= shift;
  }
  p->pos = end;
  *r = v;
  return 0;
}

/* A number that is an offset or a length: at most 2^63-1. */
static int
parse_offset (struct parser *p, const char *what, uint64_t *r)
{
  size_t start = p->pos;

  if (parse_number (p, true, what, r) == -1)
    return -1;
  if (*r > (uint64_t) INT64_MAX) {
    error_at (p, start, "%s %" PRIu64 " is larger than 2^63-1, the "
              "largest disk there can be", what, *r);
    return -1;
  }
  return 0;
}

/* $VAR: letters, digits and '_', not starting with a digit (a
 * parameter key or an environment variable).  \NAME (label): letters,
 * digits, '-' and '_' in any order, as nbdkit's data plugin.
 */
static bool
is_label_char (int c)
{
  return isalnum (c) || c == '_' || c == '-';
}

static int
parse_name (struct parser *p, const char *sigil, char **r)
{
  size_t start = p->pos;
  bool label = sigil[strlen (sigil) - 1] == '\\';

  if (label ? !is_label_char (peek (p)) : !is_name_start (peek (p))) {
    error_at (p, start, label
              ? "expected a name after '%s' (letters, digits, '-' and '_')"
              : "expected a name after '%s' (letters, digits and "
              "'_', not starting with a digit)", sigil);
    return -1;
  }
  while (label ? is_label_char (peek (p)) : is_name_char (peek (p)))
    p->pos++;
  *r = strndup (p->text + start, p->pos - start);
  if (!*r) {
    nbdkit_error ("out of memory parsing %s", p->what);
    return -1;
  }
  return 0;
}

static int
add_byte (unsigned char **buf, size_t *len, size_t *cap, int c)
{
  if (*len == *cap) {
    size_t ncap = *cap ? *cap * 2 : 32;
    unsigned char *b = realloc (*buf, ncap);

    if (!b)
      return -1;
    *buf = b;
    *cap = ncap;
  }
  (*buf)[(*len)++] = c;
  return 0;
}

/* "STRING" with the escapes of C. */
static struct node *
parse_string (struct parser *p)
{
  size_t start = p->pos, cap = 0;
  struct node *n = new_node (p, N_BYTES, start);

  if (!n)
    return NULL;
  p->pos++;                     /* the opening quote */
  for (;;) {
    int c = peek (p), v;
    size_t esc = p->pos;

    if (c == '\0') {
      error_at (p, start, "the string has no closing '\"'");
      goto err;
    }
    p->pos++;
    if (c == '"')
      break;
    if (c == '\\') {
      c = peek (p);
      p->pos++;
      switch (c) {
      case '\\': case '"': case '\'': case '?': v = c; break;
      case 'a': v = '\a'; break;
      case 'b': v = '\b'; break;
      case 'f': v = '\f'; break;
      case 'n': v = '\n'; break;
      case 'r': v = '\r'; break;
      case 't': v = '\t'; break;
      case 'v': v = '\v'; break;
      case 'x':
        if (!isxdigit (peek (p))) {
          error_at (p, esc, "'\\x' must be followed by one or two "
                    "hexadecimal digits");
          goto err;
        }
        for (v = 0; p->pos - esc < 4 && isxdigit (peek (p)); p->pos++)
          v = v * 16 + (isdigit (peek (p)) ? peek (p) - '0'
                                           : tolower (peek (p)) - 'a' + 10);
        break;
      case '0': case '1': case '2': case '3':
      case '4': case '5': case '6': case '7':
        v = c - '0';
        if (peek (p) >= '0' && peek (p) <= '7')
          v = v * 8 + (p->text[p->pos++] - '0');
        if (peek (p) >= '0' && peek (p) <= '7')
          v = v * 8 + (p->text[p->pos++] - '0');
        if (v > 255) {
          error_at (p, esc, "the octal escape is larger than \\377");
          goto err;
        }
        break;
      case '\0':
        error_at (p, start, "the string has no closing '\"'");
        goto err;
      default:
        error_at (p, esc, "unknown escape '\\%c' in a string (use \\\\, "
                  "\\\", \\n, \\t, \\xHH, \\NNN, ...)", c);
        goto err;
      }
      c = v;
    }
    if (add_byte (&n->bytes, &n->len, &cap, c) == -1) {
      nbdkit_error ("out of memory parsing %s", p->what);
      goto err;
    }
  }
  return n;
 err:
  data_format_free (n);
  return NULL;
}

/* le16:N, be32:N, ...: a word of that width and byte order.  As in
 * nbdkit's data plugin, N is not negative.
 */
static struct node *
parse_word (struct parser *p, size_t start, int bits, bool little)
{
  struct node *n;
  uint64_t v, max = bits == 64 ? UINT64_MAX : (UINT64_C (1) << bits) - 1;
  size_t numpos = p->pos;
  int i;

  if (peek (p) == '-') {
    size_t end = p->pos + 1;

    while (is_name_char ((unsigned char) p->text[end]))
      end++;
    error_at (p, start, "%.*s: negative numbers are not allowed in a word "
              "(write it in two's complement: -1 is %.*s0x%" PRIx64 ")",
              (int) (end - start), p->text + start,
              (int) (numpos - start), p->text + start, max);
    return NULL;
  }
  if (parse_number (p, false, "a word value", &v) == -1)
    return NULL;
  if (v > max) {
    error_at (p, numpos, "%" PRIu64 " does not fit in %d bits (the range "
              "is 0 to %" PRIu64 ")", v, bits, max);
    return NULL;
  }
  n = new_node (p, N_BYTES, start);
  if (!n)
    return NULL;
  n->len = bits / 8;
  n->bytes = malloc (n->len);
  if (!n->bytes) {
    data_format_free (n);
    nbdkit_error ("out of memory parsing %s", p->what);
    return NULL;
  }
  for (i = 0; i < bits / 8; i++)
    n->bytes[little ? i : bits / 8 - 1 - i] = (v >> (8 * i)) & 0xff;
  return n;
}

/* A keyword: le16: be16: le32: be32: le64: be64: */
static struct node *
parse_keyword (struct parser *p)
{
  static const struct { const char *kw; int bits; bool little; } words[] = {
    { "le16", 16, true }, { "be16", 16, false },
    { "le32", 32, true }, { "be32", 32, false },
    { "le64", 64, true }, { "be64", 64, false },
  };
  size_t start = p->pos, len, i;

  while (is_name_char (peek (p)))
    p->pos++;
  len = p->pos - start;
  for (i = 0; i < sizeof words / sizeof words[0]; i++) {
    if (strlen (words[i].kw) == len &&
        strncmp (p->text + start, words[i].kw, len) == 0) {
      if (peek (p) != ':') {
        error_at (p, start, "'%s' must be followed by ':' and a number, "
                  "e.g. %s:0x1234", words[i].kw, words[i].kw);
        return NULL;
      }
      p->pos++;
      return parse_word (p, start, words[i].bits, words[i].little);
    }
  }
  error_at (p, start, "unknown word '%.*s' (expected a byte, a string, "
            "le16:, be16:, le32:, be32:, le64:, be64:, @, <, (, \\NAME "
            "or $VAR)", (int) len, p->text + start);
  return NULL;
}

/* <FILE: the name ends at whitespace or at one of ( ) [ ] * */
static struct node *
parse_file (struct parser *p, size_t start)
{
  size_t from = p->pos;
  struct node *n;

  while (peek (p) && !isspace (peek (p)) && !strchr ("()[]*", peek (p)))
    p->pos++;
  if (p->pos == from) {
    error_at (p, start, "'<' must be followed by a file name, or by "
              "'(' and a shell script");
    return NULL;
  }
  n = new_node (p, N_FILE, start);
  if (n && !(n->str = strndup (p->text + from, p->pos - from))) {
    data_format_free (n);
    nbdkit_error ("out of memory parsing %s", p->what);
    return NULL;
  }
  return n;
}

/* <(SCRIPT): up to the ')' that balances the '('. */
static struct node *
parse_script (struct parser *p, size_t start)
{
  size_t from = ++p->pos;       /* after '(' */
  int depth = 1;
  struct node *n;

  for (;; p->pos++) {
    int c = peek (p);

    if (c == '\0') {
      error_at (p, start, "the script has no closing ')'");
      return NULL;
    }
    if (c == '(')
      depth++;
    else if (c == ')' && --depth == 0)
      break;
  }
  n = new_node (p, N_SCRIPT, start);
  if (n && !(n->str = strndup (p->text + from, p->pos - from))) {
    data_format_free (n);
    nbdkit_error ("out of memory parsing %s", p->what);
    return NULL;
  }
  p->pos++;                     /* the ')' */
  return n;
}

static struct node *parse_sequence (struct parser *p, size_t open);

static struct node *
parse_value (struct parser *p)
{
  size_t start = p->pos;
  int c = peek (p);
  struct node *n;
  uint64_t v;

  if (isdigit (c)) {
    if (parse_number (p, false, "byte", &v) == -1)
      return NULL;
    if (v > 255) {
      error_at (p, start, "the byte %" PRIu64 " is out of range (a byte is "
                "0 to 255; for larger numbers use le16:, be32: and the "
                "like)", v);
      return NULL;
    }
    n = new_node (p, N_BYTES, start);
    if (n && !(n->bytes = malloc (1))) {
      nbdkit_error ("out of memory parsing %s", p->what);
      data_format_free (n);
      return NULL;
    }
    if (!n)
      return NULL;
    n->bytes[0] = v;
    n->len = 1;
    return n;
  }
  switch (c) {
  case '"':
    return parse_string (p);
  case '<':
    p->pos++;
    return peek (p) == '(' ? parse_script (p, start) : parse_file (p, start);
  case '(':
    p->pos++;
    return parse_sequence (p, start);
  case '\\':
  case '$':
    p->pos++;
    n = new_node (p, c == '\\' ? N_NAME : N_VAR, start);
    if (n && parse_name (p, c == '\\' ? "\\" : "$", &n->str) == -1) {
      data_format_free (n);
      return NULL;
    }
    return n;
  }
  if (is_name_start (c))
    return parse_keyword (p);
  if (c == '*' || c == '[')
    error_at (p, start, "'%c' must follow a value (a byte, a string, a "
              "word, a file, a name or '( ... )'), not an offset or a "
              "name assignment", c);
  else if (c == '-')
    error_at (p, start, "unexpected '-' (use @-N to move back)");
  else if (c == ')')
    error_at (p, start, "')' without a matching '('");
  else if (isprint (c))
    error_at (p, start, "unexpected character '%c'", c);
  else
    error_at (p, start, "unexpected character 0x%02x", c);
  return NULL;
}

static struct node *
wrap (struct parser *p, enum node_type type, size_t pos, struct node *child)
{
  struct node *n = new_node (p, type, pos);

  if (!n) {
    data_format_free (child);
    return NULL;
  }
  n->child = child;
  return n;
}

/* value postfix* [-> \NAME] */
static struct node *
parse_postfix (struct parser *p)
{
  size_t start = p->pos;
  struct node *n = parse_value (p);

  while (n) {
    size_t at;

    skip_space (p);
    at = p->pos;
    if (peek (p) == '*') {
      p->pos++;
      skip_space (p);
      n = wrap (p, N_REPEAT, at, n);
      if (n && parse_offset (p, "repeat count", &n->u) == -1)
        goto err;
    }
    else if (peek (p) == '[') {
      p->pos++;
      n = wrap (p, N_SLICE, at, n);
      if (!n)
        return NULL;
      skip_space (p);
      if (peek (p) != ':' && parse_offset (p, "slice start", &n->u) == -1)
        goto err;
      skip_space (p);
      if (peek (p) != ':') {
        error_at (p, p->pos, "expected ':' in the slice [N:M]");
        goto err;
      }
      p->pos++;
      skip_space (p);
      if (peek (p) != ']') {
        if (parse_offset (p, "slice end", &n->to) == -1)
          goto err;
        n->has_to = true;
        skip_space (p);
      }
      if (peek (p) != ']') {
        error_at (p, p->pos, "expected ']' at the end of the slice [N:M]");
        goto err;
      }
      p->pos++;
      if (n->has_to && n->to < n->u) {
        error_at (p, at, "the slice [%" PRIu64 ":%" PRIu64 "] ends before "
                  "it starts", n->u, n->to);
        goto err;
      }
    }
    else if (peek (p) == '-' && p->text[p->pos + 1] == '>') {
      p->pos += 2;
      skip_space (p);
      if (peek (p) != '\\') {
        error_at (p, p->pos, "'->' must be followed by \\NAME");
        goto err;
      }
      p->pos++;
      n = wrap (p, N_ASSIGN, start, n);
      if (n && parse_name (p, "->\\", &n->str) == -1)
        goto err;
      return n;                 /* nothing may follow an assignment */
    }
    else
      return n;
  }
  return NULL;
 err:
  data_format_free (n);
  return NULL;
}

/* @N @+N @-N @^N */
static struct node *
parse_offset_item (struct parser *p)
{
  size_t start = p->pos++;
  enum node_type t = N_ABS;
  const char *what = "offset";
  struct node *n;

  switch (peek (p)) {
  case '+': t = N_FWD; what = "offset after '@+'"; p->pos++; break;
  case '-': t = N_BACK; what = "offset after '@-'"; p->pos++; break;
  case '^': t = N_ALIGN; what = "alignment after '@^'"; p->pos++; break;
  }
  n = new_node (p, t, start);
  if (!n)
    return NULL;
  if (!isdigit (peek (p))) {
    error_at (p, start, "'@' must be followed by an offset, or by '+', "
              "'-' or '^' and a number");
    goto err;
  }
  if (parse_offset (p, what, &n->u) == -1)
    goto err;
  if (t == N_ALIGN && n->u == 0) {
    error_at (p, start, "the alignment must be at least 1");
    goto err;
  }
  return n;
 err:
  data_format_free (n);
  return NULL;
}

/* Items up to the end (open == SIZE_MAX) or to the ')' that closes the
 * '(' at open.
 */
static struct node *
parse_sequence (struct parser *p, size_t open)
{
  struct node *seq = new_node (p, N_SEQ, open == SIZE_MAX ? 0 : open);
  size_t cap = 0;

  if (!seq)
    return NULL;
  if (++p->depth > MAX_DEPTH) {
    error_at (p, open, "'( ... )' nested more than %d deep", MAX_DEPTH);
    goto err;
  }
  for (;;) {
    struct node *item;

    skip_space (p);
    if (peek (p) == '\0') {
      if (open != SIZE_MAX) {
        error_at (p, open, "this '(' has no matching ')'");
        goto err;
      }
      break;
    }
    if (peek (p) == ')' && open != SIZE_MAX) {
      p->pos++;
      break;
    }
    item = peek (p) == '@' ? parse_offset_item (p) : parse_postfix (p);
    if (!item)
      goto err;
    if (seq->n == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      struct node **v = realloc (seq->items, ncap * sizeof *v);

      if (!v) {
        data_format_free (item);
        nbdkit_error ("out of memory parsing %s", p->what);
        goto err;
      }
      seq->items = v;
      cap = ncap;
    }
    seq->items[seq->n++] = item;
  }
  p->depth--;
  return seq;
 err:
  data_format_free (seq);
  return NULL;
}

struct node *
data_format_parse (const char *text, const char *what)
{
  struct parser p = { .text = text, .what = what };

  return parse_sequence (&p, SIZE_MAX);
}

/* ---- -D data.AST=1: the tree, printed as nbdkit's data plugin does ---- */

struct printer {
  const struct data_var *vars;
  size_t nvars;
  char line[4096];
};

static void ast_node (struct printer *pr, const struct node *n, int indent,
                      const char *suffix);

static void
ast_line (struct printer *pr, int indent, const char *fmt, ...)
{
  va_list ap;
  int k = indent < 200 ? indent : 200;

  memset (pr->line, ' ', k);
  va_start (ap, fmt);
  vsnprintf (pr->line + k, sizeof pr->line - k, fmt, ap);
  va_end (ap);
  nbdkit_debug ("%s", pr->line);
}

/* "..." with the printable ASCII characters as they are, others \xNN. */
static void
ast_string (struct printer *pr, int indent, const unsigned char *b,
            size_t len, const char *suffix)
{
  char s[1024];
  size_t i, k = 0;

  for (i = 0; i < len && k < sizeof s - 16; i++) {
    if (b[i] >= 32 && b[i] < 127 && b[i] != '"' && b[i] != '\\')
      s[k++] = b[i];
    else
      k += snprintf (s + k, sizeof s - k, "\\x%02x", b[i]);
  }
  s[k] = '\0';
  ast_line (pr, indent, "\"%s%s\"%s", s, i < len ? "..." : "", suffix);
}

/* Consecutive bytes and strings of a sequence, as one string. */
static size_t
ast_bytes_run (struct printer *pr, const struct node *seq, size_t i,
               int indent)
{
  size_t j, len = 0, k = 0;
  unsigned char *b;

  for (j = i; j < seq->n && seq->items[j]->type == N_BYTES; j++)
    len += seq->items[j]->len;
  if (j == i + 1 && seq->items[i]->len == 1) {
    ast_line (pr, indent, "%u", seq->items[i]->bytes[0]);
    return j;
  }
  b = malloc (len ? len : 1);
  if (!b)
    return j;
  for (; i < j; i++) {
    if (seq->items[i]->len > 0)         /* "" has no bytes at all */
      memcpy (b + k, seq->items[i]->bytes, seq->items[i]->len);
    k += seq->items[i]->len;
  }
  ast_string (pr, indent, b, len, "");
  free (b);
  return j;
}

static void
ast_node (struct printer *pr, const struct node *n, int indent,
          const char *suffix)
{
  char sfx[128];
  size_t i;

  switch (n->type) {
  case N_SEQ:
    for (i = 0; i < n->n && n->items[i]->type == N_BYTES; i++)
      ;
    if (indent == 0 && !*suffix && n->n > 0 && i == n->n) {
      ast_bytes_run (pr, n, 0, 0);      /* only bytes: one string */
      break;
    }
    if (n->n == 1 && n->items[0]->type != N_SEQ) {
      ast_node (pr, n->items[0], indent, suffix);
      break;
    }
    ast_line (pr, indent, "(");
    for (i = 0; i < n->n; ) {
      if (n->items[i]->type == N_BYTES)
        i = ast_bytes_run (pr, n, i, indent + 4);
      else
        ast_node (pr, n->items[i++], indent + 4, "");
    }
    ast_line (pr, indent, ")%s", suffix);
    break;
  case N_BYTES:
    if (n->len == 1)
      ast_line (pr, indent, "%u%s", n->bytes[0], suffix);
    else
      ast_string (pr, indent, n->bytes, n->len, suffix);
    break;
  case N_ABS: ast_line (pr, indent, "@%" PRIu64, n->u); break;
  case N_FWD: ast_line (pr, indent, "@+%" PRIu64, n->u); break;
  case N_BACK: ast_line (pr, indent, "@-%" PRIu64, n->u); break;
  case N_ALIGN: ast_line (pr, indent, "@^%" PRIu64, n->u); break;
  case N_FILE: ast_line (pr, indent, "<%s%s", n->str, suffix); break;
  case N_SCRIPT: ast_line (pr, indent, "<(%s)%s", n->str, suffix); break;
  case N_NAME: ast_line (pr, indent, "\\%s%s", n->str, suffix); break;
  case N_VAR:
    for (i = 0; i < pr->nvars; i++)
      if (strcmp (pr->vars[i].name, n->str) == 0 && pr->vars[i].tree) {
        ast_node (pr, pr->vars[i].tree, indent, suffix);
        return;
      }
    ast_line (pr, indent, "$%s%s", n->str, suffix);
    break;
  case N_ASSIGN:
    snprintf (sfx, sizeof sfx, " -> \\%s%s", n->str, suffix);
    ast_node (pr, n->child, indent, sfx);
    break;
  case N_REPEAT:
    if (n->child->type == N_BYTES && n->child->len == 1) {
      ast_line (pr, indent, "fill(%u*%" PRIu64 ")%s", n->child->bytes[0],
                n->u, suffix);
      break;
    }
    snprintf (sfx, sizeof sfx, " *%" PRIu64 "%s", n->u, suffix);
    goto group;
  case N_SLICE:
    if (n->has_to)
      snprintf (sfx, sizeof sfx, "[%" PRIu64 ":%" PRIu64 "]%s", n->u, n->to,
                suffix);
    else
      snprintf (sfx, sizeof sfx, "[%" PRIu64 ":-1]%s", n->u, suffix);
  group:
    if (n->child->type == N_SEQ && !(n->child->n == 1 &&
                                     n->child->items[0]->type != N_SEQ))
      ast_node (pr, n->child, indent, sfx);
    else {
      ast_line (pr, indent, "(");
      ast_node (pr, n->child, indent + 4, "");
      ast_line (pr, indent, ")%s", sfx);
    }
    break;
  }
}

void
data_format_print_ast (const struct node *tree,
                       const struct data_var *vars, size_t nvars)
{
  struct printer *pr = malloc (sizeof *pr);

  if (!pr)
    return;
  pr->vars = vars;
  pr->nvars = nvars;
  nbdkit_debug ("BEGIN AST (-D data.AST=1)");
  ast_node (pr, tree, 0, "");
  nbdkit_debug ("END AST");
  free (pr);
}
