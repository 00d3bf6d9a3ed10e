/* nbdkit front end: the shared mappings of files in memory that
 * passthrough.c answers reads from without a copy and receives writes
 * into (passthrough-map.c).
 */

#ifndef NBDKIT_PASSTHROUGH_MAP_H
#define NBDKIT_PASSTHROUGH_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A mapping of a file in memory, one for each file, shared by the
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
  bool sendfile;                /* not sealed, and its reads may be sent
                                 * from the file (payload_in_file) */
  int fd;                       /* the file (a descriptor of its own),
                                 * for writes in place and replies
                                 * sent from it (sendfile) */
};

/* The mapping of fd (a reference), if fd holds size bytes: writable
 * too if write and the file allows it.  NULL if not.  Without the seal
 * against shrinking, only the kernel may touch it (recv into it, or a
 * pointer into it sent as the file's bytes by sendfile).
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
