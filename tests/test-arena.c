/* Unit test of the front end's shared-memory arena allocator
 * (nbdkit/arena.c): slots never overlap, are page aligned, come from
 * the lowest free pages, run out cleanly, and quarantined slots are not
 * reused until released.  TAP on stdout.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int test_nr, failures;

static void
ok (int cond, const char *what)
{
  ++test_nr;
  printf ("%s %d - arena: %s\n", cond ? "ok" : "not ok", test_nr, what);
  if (!cond)
    failures++;
}

#define SIZE (4u << 20)         /* 1024 pages */
#define MAX_SLOTS 4096

struct slot { unsigned char *p; size_t len; };

/* The server's -D flags (options.c): none here, every default. */
int
server_debug_flag (const char *flag, int def)
{
  return def;
}

static void
count_release (void *opaque)
{
  ++*(int *) opaque;
}

int
main (void)
{
  static struct slot slots[MAX_SLOTS];
  static unsigned char owner[SIZE / 4096];
  size_t nr = 0, i, j;
  unsigned seed = 1;
  bool overlap = false, aligned = true, inside = true, content = true;
  void *a, *b, *c;
  struct arena *ar, *other;

  ok (arena_alloc (NULL, 4096) == NULL, "no slots without an arena");
  ar = arena_create (SIZE);
  ok (ar != NULL, "the arena is made");
  if (!ar)
    return EXIT_FAILURE;
  ok (arena_fd (ar) >= 0 && arena_size (ar) == SIZE, "fd and size");
  ok (arena_alloc (ar, 4096) == NULL, "no slots while no backend took it");
  arena_set_active (ar, true);

  /* Random allocations and frees; each slot is filled with its index
   * and checked when freed.
   */
  for (i = 0; i < 20000; ++i) {
    seed = seed * 1103515245 + 12345;
    if (nr > 0 && (nr == MAX_SLOTS || (seed >> 16) % 3 == 0)) {
      size_t k = (seed >> 8) % nr, pg;

      for (pg = 0; pg < slots[k].len; ++pg)
        if (slots[k].p[pg] != (unsigned char) (k & 0xff))
          content = false;
      for (pg = arena_offset (ar, slots[k].p) / 4096;
           pg < (arena_offset (ar, slots[k].p) + slots[k].len + 4095) / 4096;
           ++pg)
        owner[pg] = 0;
      arena_free (ar, slots[k].p);
      slots[k] = slots[--nr];
      /* The moved slot keeps its bytes: refill with its new index. */
      if (k < nr)
        memset (slots[k].p, (int) (k & 0xff), slots[k].len);
    }
    else {
      size_t len = 1 + (seed >> 4) % (200 * 1024), pg;
      unsigned char *p = arena_alloc (ar, len);

      if (!p)
        continue;
      if (arena_offset (ar, p) % 4096)
        aligned = false;
      if (!arena_contains (ar, p) || !arena_contains (ar, p + len - 1))
        inside = false;
      for (pg = arena_offset (ar, p) / 4096;
           pg < (arena_offset (ar, p) + len + 4095) / 4096; ++pg) {
        if (owner[pg])
          overlap = true;
        owner[pg] = 1;
      }
      memset (p, (int) (nr & 0xff), len);
      slots[nr].p = p;
      slots[nr].len = len;
      nr++;
    }
  }
  ok (!overlap, "slots never overlap");
  ok (aligned, "slots are page aligned");
  ok (inside, "slots lie inside the arena");
  ok (content, "a slot keeps what was written to it");
  for (i = 0; i < nr; ++i)
    arena_free (ar, slots[i].p);
  ok (arena_pages_in_use (ar) == 0, "everything freed");

  a = arena_alloc (ar, 1);
  ok (a != NULL && arena_offset (ar, a) == 0, "the lowest page comes first");
  b = arena_alloc (ar, SIZE);
  ok (b == NULL, "a request larger than what is free gets NULL");
  b = arena_alloc (ar, SIZE - 4096);
  ok (b != NULL, "all the rest in one slot");
  ok (arena_alloc (ar, 1) == NULL, "a full arena gets NULL");
  arena_quarantine (ar, a);
  ok (arena_alloc (ar, 1) == NULL, "a quarantined slot is not reused");
  arena_release_quarantine (ar);
  c = arena_alloc (ar, 1);
  ok (c == a, "after release it is");
  arena_free (ar, b);
  arena_free (ar, c);
  ok (arena_alloc (ar, HP_MAX_DATA + 1) == NULL, "nothing above the data maximum");
  ok (arena_alloc (ar, 0) == NULL, "nothing of size 0");

  j = 0;
  a = arena_payload_alloc (ar, 100);
  if (arena_contains (ar, a))
    j++;
  payload_free (a);
  arena_set_active (ar, false);
  a = arena_payload_alloc (ar, 100);
  if (a && !arena_contains (ar, a))
    j++;
  payload_free (a);
  ok (j == 2, "payloads come from the arena only while it is active");
  ok (arena_pages_in_use (ar) == 0, "payload_free released the slot");

  /* Two arenas (two backend processes): payload_free finds the right
   * one.
   */
  other = arena_create (SIZE);
  arena_set_active (other, true);
  arena_set_active (ar, true);
  a = arena_alloc (other, 8192);
  b = arena_alloc (ar, 4096);
  ok (a && b && arena_contains (other, a) && !arena_contains (ar, a),
      "a slot belongs to one arena");
  payload_free (a);
  payload_free (b);
  ok (arena_pages_in_use (other) == 0 && arena_pages_in_use (ar) == 0,
      "payload_free releases slots of either arena");

  /* A range that is not a buffer (passthrough.c's mapping of a memfd):
   * payload_free tells its owner, and frees nothing.
   */
  {
    static char range[8192];
    int released = 0;

    int fd = -1;
    uint64_t off = 0;

    ok (payload_range_add (range, sizeof range, count_release,
                           &released, -1) == 0, "a range is added");
    ok (!payload_in_file (range + 4096, &fd, &off),
        "a range without a file is not sent from one");
    payload_range_remove (range);
    ok (payload_range_add (range, sizeof range, count_release,
                           &released, 7) == 0, "a range of a file is added");
    ok (payload_in_file (range + 4096, &fd, &off) && fd == 7 && off == 4096,
        "a pointer into it is that file's bytes at its offset");
    ok (!payload_in_file (range + sizeof range, &fd, &off),
        "the byte past its end is not");
    payload_free (range + 4096);
    payload_free (range);
    ok (released == 2, "payload_free of a pointer into it calls release");
    payload_range_remove (range);
    a = malloc (16);
    payload_free (a);           /* malloc'd: freed as before */
    ok (released == 2, "after payload_range_remove it is no range");
  }

  printf ("1..%d\n", test_nr);
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
