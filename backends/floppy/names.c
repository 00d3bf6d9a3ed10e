/* nbdkit floppy backend: VFAT names.
 *
 * Owns the two names every file has on the disk: the long name (UTF-16,
 * stored in LFN entries with the checksum of the short name) and the
 * 8.3 short name, generated as Windows does: upper case, characters a
 * short name cannot hold replaced by '_', spaces and extra dots
 * dropped, and a numeric tail "~N" whenever the name lost something or
 * the short name would clash with another in the same directory.  A
 * name that already is a valid upper-case 8.3 name gets no LFN entry.
 * Names FAT cannot hold (not UTF-8, forbidden characters, longer than
 * 255 UTF-16 units, a trailing dot or space, two names differing only
 * in case) are errors naming the file.
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbdkit-backend.h"
#include "floppy.h"

/* ---- long names ---- */

/* Decode one UTF-8 character at s; returns its length, 0 if invalid. */
static size_t
utf8_decode (const unsigned char *s, uint32_t *cp)
{
  size_t len, i;
  uint32_t c;

  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  if (s[0] >= 0xc2 && s[0] <= 0xdf) { len = 2; c = s[0] & 0x1f; }
  else if (s[0] >= 0xe0 && s[0] <= 0xef) { len = 3; c = s[0] & 0x0f; }
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) { len = 4; c = s[0] & 0x07; }
  else
    return 0;
  for (i = 1; i < len; ++i) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    c = (c << 6) | (s[i] & 0x3f);
  }
  if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
      (c >= 0xd800 && c <= 0xdfff))
    return 0;
  *cp = c;
  return len;
}

int
utf8_to_lfn (const char *path, const char *name, uint16_t **lfn, size_t *len)
{
  const unsigned char *s = (const unsigned char *) name;
  uint16_t units[FAT_MAX_LFN_UNITS + 2];
  size_t n = 0, k;
  uint32_t cp;

  *lfn = NULL;
  *len = 0;
  while (*s) {
    k = utf8_decode (s, &cp);
    if (k == 0) {
      nbdkit_error ("%s: the name is not valid UTF-8, and FAT long names "
                    "are Unicode: rename the file", path);
      return -1;
    }
    if (cp < 0x20 || (cp < 0x80 && strchr ("\"*/:<>?\\|", (int) cp))) {
      if (cp < 0x20)
        nbdkit_error ("%s: the name contains the control character 0x%02x, "
                      "which FAT does not allow: rename the file",
                      path, (unsigned) cp);
      else
        nbdkit_error ("%s: the name contains '%c', which FAT does not "
                      "allow in a name (nor any of \\ / : * ? \" < > |): "
                      "rename the file", path, (int) cp);
      return -1;
    }
    if (n + (cp >= 0x10000 ? 2 : 1) > FAT_MAX_LFN_UNITS) {
      nbdkit_error ("%s: the name is longer than the %d UTF-16 characters "
                    "of a FAT long name: rename the file",
                    path, FAT_MAX_LFN_UNITS);
      return -1;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      units[n++] = (uint16_t) (0xd800 | (cp >> 10));
      units[n++] = (uint16_t) (0xdc00 | (cp & 0x3ff));
    }
    else
      units[n++] = (uint16_t) cp;
    s += k;
  }
  if (n > 0 && (units[n-1] == '.' || units[n-1] == ' ')) {
    nbdkit_error ("%s: the name ends with a %s, which FAT drops from "
                  "names: rename the file",
                  path, units[n-1] == '.' ? "dot" : "space");
    return -1;
  }
  *lfn = malloc ((n ? n : 1) * sizeof **lfn);
  if (!*lfn) {
    nbdkit_error ("out of memory");
    return -1;
  }
  memcpy (*lfn, units, n * sizeof **lfn);
  *len = n;
  return 0;
}

size_t
lfn_entries (const struct node *n)
{
  return n->lfn ? (n->lfn_len + 12) / 13 : 0;
}

uint8_t
short_name_checksum (const char short_name[11])
{
  uint8_t sum = 0;
  int i;

  for (i = 0; i < 11; ++i)
    sum = (uint8_t) (((sum & 1) << 7) + (sum >> 1) +
                     (uint8_t) short_name[i]);
  return sum;
}

/* Write the LFN entries of n at p, the part with the end of the name
 * first, as they precede the short entry.
 */
void
write_lfn_entries (const struct node *n, unsigned char *p)
{
  static const int pos[13] = { 1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24,
                               28, 30 };
  size_t count = lfn_entries (n), i, j;
  uint8_t sum = short_name_checksum (n->short_name);

  for (i = 0; i < count; ++i, p += FAT_DIRENT_SIZE) {
    size_t seq = count - i;     /* 1-based part number */

    memset (p, 0, FAT_DIRENT_SIZE);
    p[0] = (unsigned char) (seq | (i == 0 ? 0x40 : 0));
    p[11] = 0x0f;               /* ATTR_LONG_NAME */
    p[13] = sum;
    for (j = 0; j < 13; ++j) {
      size_t idx = (seq - 1) * 13 + j;
      uint16_t c = idx < n->lfn_len ? n->lfn[idx]
        : idx == n->lfn_len ? 0x0000 : 0xffff;

      p[pos[j]] = (unsigned char) (c & 0xff);
      p[pos[j] + 1] = (unsigned char) (c >> 8);
    }
  }
}

/* ---- short names ---- */

/* A character a short name may hold, besides A-Z and 0-9. */
static bool
short_special (int c)
{
  return c && strchr ("!#$%&'()-@^_`{}~", c) != NULL;
}

static bool
short_char (int c)
{
  return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
    short_special (c);
}

/* Whether name already is an upper-case 8.3 name; if so, fill sn. */
static bool
exact_short_name (const char *name, char sn[11])
{
  const char *dot = strchr (name, '.');
  size_t base = dot ? (size_t) (dot - name) : strlen (name);
  size_t ext = dot ? strlen (dot + 1) : 0;
  size_t i;

  if (base < 1 || base > 8 || (dot && (ext < 1 || ext > 3)))
    return false;
  for (i = 0; i < base; ++i)
    if (!short_char ((unsigned char) name[i]))
      return false;
  for (i = 0; i < ext; ++i)
    if (!short_char ((unsigned char) dot[1 + i]))
      return false;
  memset (sn, ' ', 11);
  memcpy (sn, name, base);
  if (dot)
    memcpy (sn + 8, dot + 1, ext);
  return true;
}

/* The basis of a short name: up to 8 + 3 upper-case characters.
 * Returns whether information was lost (needs a numeric tail).
 */
static bool
short_basis (const char *name, char base[9], size_t *base_len,
             char ext[4], size_t *ext_len)
{
  const unsigned char *s = (const unsigned char *) name;
  const unsigned char *last_dot;
  bool lossy = false;
  size_t bl = 0, el = 0;

  while (*s == '.') {           /* leading dots are dropped */
    s++;
    lossy = true;
  }
  last_dot = (const unsigned char *) strrchr ((const char *) s, '.');

  for (; *s; ++s) {
    int c = *s;
    bool in_ext = last_dot && s > last_dot;

    if (s == last_dot)
      continue;
    if (c >= 0x80) {            /* one '_' per non-ASCII character */
      if ((c & 0xc0) == 0x80)
        continue;
      c = '_';
      lossy = true;
    }
    else if (c == ' ' || c == '.') {
      lossy = true;
      continue;
    }
    else if (c >= 'a' && c <= 'z')
      c = c - 'a' + 'A';
    else if (!short_char (c)) {
      c = '_';
      lossy = true;
    }
    if (in_ext) {
      if (el < 3)
        ext[el++] = (char) c;
      else
        lossy = true;
    }
    else {
      if (bl < 8)
        base[bl++] = (char) c;
      else
        lossy = true;
    }
  }
  if (bl == 0) {
    base[bl++] = '_';
    lossy = true;
  }
  base[bl] = ext[el] = '\0';
  *base_len = bl;
  *ext_len = el;
  return lossy;
}

/* A small open-addressing table keyed by 11-byte short names. */
struct name_table {
  char (*keys)[11];
  uint32_t *values;
  bool *used;
  size_t mask;
};

static int
table_init (struct name_table *t, size_t entries)
{
  size_t size = 16;

  while (size < 2 * entries)
    size *= 2;
  t->keys = calloc (size, sizeof *t->keys);
  t->values = calloc (size, sizeof *t->values);
  t->used = calloc (size, sizeof *t->used);
  t->mask = size - 1;
  if (!t->keys || !t->values || !t->used) {
    nbdkit_error ("out of memory");
    return -1;
  }
  return 0;
}

static void
table_free (struct name_table *t)
{
  free (t->keys);
  free (t->values);
  free (t->used);
}

/* The slot of key: the one holding it, or the free one it would take. */
static size_t
table_slot (const struct name_table *t, const char key[11])
{
  uint32_t h = 2166136261u;
  size_t i;

  for (i = 0; i < 11; ++i)
    h = (h ^ (unsigned char) key[i]) * 16777619u;
  for (i = h & t->mask; t->used[i]; i = (i + 1) & t->mask)
    if (memcmp (t->keys[i], key, 11) == 0)
      break;
  return i;
}

static void
table_set (struct name_table *t, size_t slot, const char key[11],
           uint32_t value)
{
  memcpy (t->keys[slot], key, 11);
  t->used[slot] = true;
  t->values[slot] = value;
}

static void
make_short (char sn[11], const char *base, size_t bl, const char *tail,
            const char *ext, size_t el)
{
  size_t tl = strlen (tail);

  memset (sn, ' ', 11);
  if (bl + tl > 8)
    bl = 8 - tl;
  memcpy (sn, base, bl);
  memcpy (sn + bl, tail, tl);
  memcpy (sn + 8, ext, el);
}

static int
ascii_casecmp (const char *a, const char *b)
{
  for (;; ++a, ++b) {
    int ca = (unsigned char) *a, cb = (unsigned char) *b;

    if (ca >= 'A' && ca <= 'Z') ca += 'a' - 'A';
    if (cb >= 'A' && cb <= 'Z') cb += 'a' - 'A';
    if (ca != cb || ca == 0)
      return ca - cb;
  }
}

static const struct node *sort_nodes;   /* for qsort: main thread only */

static int
by_folded_name (const void *a, const void *b)
{
  return ascii_casecmp (sort_nodes[*(const size_t *) a].name,
                        sort_nodes[*(const size_t *) b].name);
}

/* FAT looks names up without regard to case: two names that differ
 * only in case cannot both be reached.
 */
static int
check_case_clashes (struct tree *tree, const struct node *dir)
{
  size_t *idx, i;
  int r = 0;

  if (dir->nr_children < 2)
    return 0;
  idx = malloc (dir->nr_children * sizeof *idx);
  if (!idx) {
    nbdkit_error ("out of memory");
    return -1;
  }
  memcpy (idx, dir->children, dir->nr_children * sizeof *idx);
  sort_nodes = tree->nodes;
  qsort (idx, dir->nr_children, sizeof *idx, by_folded_name);
  for (i = 1; i < dir->nr_children; ++i) {
    const struct node *a = &tree->nodes[idx[i-1]], *b = &tree->nodes[idx[i]];

    if (ascii_casecmp (a->name, b->name) == 0) {
      nbdkit_error ("%s: '%s' and '%s' differ only in case, which FAT "
                    "cannot tell apart: rename one of them",
                    dir->path, a->name, b->name);
      r = -1;
      break;
    }
  }
  free (idx);
  return r;
}

int
assign_short_names (struct tree *tree, size_t dir_idx)
{
  struct node *dir = &tree->nodes[dir_idx];
  struct name_table taken, tails;
  size_t i;
  int r = -1;

  if (check_case_clashes (tree, dir) == -1)
    return -1;
  if (table_init (&taken, dir->nr_children) == -1 ||
      table_init (&tails, dir->nr_children) == -1)
    goto out;

  /* Names that are already short names keep them, and no LFN. */
  for (i = 0; i < dir->nr_children; ++i) {
    struct node *n = &tree->nodes[dir->children[i]];

    if (exact_short_name (n->name, n->short_name)) {
      free (n->lfn);
      n->lfn = NULL;
      n->lfn_len = 0;
      table_set (&taken, table_slot (&taken, n->short_name),
                 n->short_name, 0);
    }
  }

  for (i = 0; i < dir->nr_children; ++i) {
    struct node *n = &tree->nodes[dir->children[i]];
    char base[9], ext[4], key[11], tail[16];
    size_t bl, el, slot, tslot;
    uint32_t num;
    bool lossy;

    if (!n->lfn)
      continue;
    lossy = short_basis (n->name, base, &bl, ext, &el);
    make_short (n->short_name, base, bl, "", ext, el);
    if (!lossy) {
      slot = table_slot (&taken, n->short_name);
      if (!taken.used[slot]) {
        table_set (&taken, slot, n->short_name, 0);
        continue;
      }
    }
    /* A numeric tail: remember per basis where to go on from. */
    memcpy (key, n->short_name, 11);
    tslot = table_slot (&tails, key);
    num = tails.used[tslot] ? tails.values[tslot] : 1;
    for (;; ++num) {
      if (num > 999999) {
        nbdkit_error ("%s: too many names in this directory give the "
                      "short name %.8s.%.3s: rename some of them",
                      n->path, key, key + 8);
        goto out;
      }
      snprintf (tail, sizeof tail, "~%" PRIu32, num);
      make_short (n->short_name, base, bl, tail, ext, el);
      slot = table_slot (&taken, n->short_name);
      if (!taken.used[slot])
        break;
    }
    table_set (&taken, slot, n->short_name, 0);
    table_set (&tails, tslot, key, num + 1);
  }
  r = 0;

 out:
  table_free (&taken);
  table_free (&tails);
  return r;
}
