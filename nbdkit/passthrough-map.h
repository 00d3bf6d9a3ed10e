/* nbdkit front end: the shared mappings of sealed memfds that
 * passthrough.c reads from without a copy and receives writes into
 * (passthrough-map.c).
 */

#ifndef NBDKIT_PASSTHROUGH_MAP_H
#define NBDKIT_PASSTHROUGH_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A mapping of a sealed memfd, one for each file, shared by the
 * handles on it: its pages are faulted in once, not once per
 * connection.
 */
struct pt_map {
  struct pt_map *next;
  dev_t dev;
  ino_t ino;
  char *base;
  size_t len;
  unsigned refs;                /* one per passthrough, per reply and
                                 * per write received in place */
  bool writable;                /* mapped for writing too */
  bool sealed;                  /* against shrinking: may be read */
  int fd;                       /* writable: the file, for writes in
                                 * place (a descriptor of its own) */
};

/* The mapping of fd (a reference), if fd holds size bytes and is
 * sealed against shrinking, writable too if write and the file allows
 * it; or, without the seal, if write and the file can be mapped for
 * writing.  NULL if not.
 */
extern struct pt_map *pt_map_get (int fd, uint64_t size, bool write);
/* Drop a reference; also what payload_free of a pointer into the
 * mapping does.
 */
extern void pt_map_put (void *m);
/* Are the pages of [off, off+count) all in memory (1), none of them
 * (0), or some (-1)?
 */
extern int pt_map_pages_in_memory (const struct pt_map *m, uint64_t off,
                                   uint32_t count);

#endif /* NBDKIT_PASSTHROUGH_MAP_H */
