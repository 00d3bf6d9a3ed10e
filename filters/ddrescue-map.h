/* filters/ddrescue-map.h: a GNU ddrescue mapfile, parsed (see
 * ddrescue-map.c).  Pure: no I/O, no server state.
 */

#ifndef NBDKIT_DDRESCUE_MAP_H
#define NBDKIT_DDRESCUE_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One run of rescued ('+') bytes: [start, end). */
struct ddr_range {
  uint64_t start, end;
};

struct ddr_map {
  struct ddr_range *ranges;     /* sorted, disjoint, merged */
  size_t nr;
  size_t blocks;                /* block lines read, of any status */
};

/* Parse the mapfile text (len bytes, need not be NUL-terminated)
 * into map.  0 on success; -1 with a message in err (naming the line)
 * on a malformed map or when memory is short.  map is then empty.
 */
extern int ddr_map_parse (const char *text, size_t len, struct ddr_map *map,
                          char *err, size_t errlen);
extern void ddr_map_free (struct ddr_map *map);

/* Is every byte of [offset, offset + count) rescued? */
extern bool ddr_map_covers (const struct ddr_map *map, uint64_t offset,
                            uint64_t count);

#endif /* NBDKIT_DDRESCUE_MAP_H */
