/* Fuzzing target "library" (tests/fuzz/README): libnbdkit-backend
 * reading the front end's frames.
 *
 * Linked with the library's own files (helper-protocol/backend-*.c and
 * wire.c), built with -DNBDKIT_FUZZING: nbdkit_backend_main runs in one
 * thread (no pool, no watcher of the channel), and a frame that breaks
 * the protocol ends the input through nbdkit__fuzz_protocol_error
 * instead of exiting the process.
 *
 * One input: the bytes the server sends on the channel.  If the first
 * byte has bit 0 set, the harness first sends an ATTACH_FD "shm" frame
 * passing a 1 MiB arena (a memfd), so that requests naming arena slots
 * reach the code that checks them; the byte is then dropped.  The input
 * is written into one end of a socketpair, which is then shut for
 * writing; nbdkit_backend_main runs on the other end with a small
 * in-memory backend (every callback, a 1 MiB disk) until the end of
 * the channel or a protocol error.  A thread reads the replies and
 * checks each frame as the server would: magic, a reply type, the
 * header decodes (hp_decode_header), and the payload length fits.
 *
 * Checked: no crash, no sanitizer report, no leak, every reply frame
 * well formed, the backend's callbacks never called with a request
 * outside the disk or with a NULL handle ("*** fuzz: BUG: ..." and
 * abort otherwise).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuzz-bug.h"
#include "backend-internal.h"
#include "byte-order.h"

extern int LLVMFuzzerInitialize (int *argc, char ***argv);
extern int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define DISK_SIZE (1024 * 1024)
#define ARENA_SIZE (1024 * 1024)

/* ---- the backend: a 1 MiB disk with every callback ---- */

static unsigned char disk[DISK_SIZE];
static int handles_open;

static void
check_range (void *h, uint32_t count, uint64_t offset, const char *what)
{
  if (h != disk)
    fuzz_bug ("%s called with handle %p, not the one open returned",
              what, h);
  if (offset > DISK_SIZE || count > DISK_SIZE - offset)
    fuzz_bug ("%s called past the end of the disk: offset %" PRIu64
              " count %" PRIu32, what, offset, count);
}

static int
fz_config (const char *key, const char *value)
{
  if (strcmp (key, "fail") == 0) {
    nbdkit_error ("config: asked to fail");
    return -1;
  }
  if (strcmp (key, "magic") == 0)
    nbdkit_set_magic_config_key (value);
  return 0;
}

static int
fz_list_exports (int readonly, int is_tls, struct nbdkit_exports *e)
{
  if (nbdkit_add_export (e, "", "the default") == -1 ||
      nbdkit_add_export (e, "second", NULL) == -1)
    return -1;
  return 0;
}

static const char *
fz_default_export (int readonly, int is_tls)
{
  return readonly ? "ro" : "";
}

static void *
fz_open (int readonly)
{
  const char *name = nbdkit_export_name ();

  if (name && strcmp (name, "fail") == 0) {
    nbdkit_error ("open: no export called fail");
    return NULL;
  }
  handles_open++;
  return disk;
}

static void
fz_close (void *h)
{
  if (h != disk)
    fuzz_bug ("close called with handle %p", h);
  handles_open--;
}

static int64_t
fz_get_size (void *h)
{
  return DISK_SIZE;
}

static const char *
fz_export_description (void *h)
{
  return "a disk for fuzzing";
}

static int
fz_block_size (void *h, uint32_t *min, uint32_t *pref, uint32_t *max)
{
  *min = 1;
  *pref = 4096;
  *max = 0xffffffff;
  return 0;
}

static int fz_yes (void *h) { return 1; }
static int fz_fua (void *h) { return NBDKIT_FUA_NATIVE; }
static int fz_cache (void *h) { return NBDKIT_CACHE_NATIVE; }

static int
fz_pread (void *h, void *buf, uint32_t count, uint64_t offset,
          uint32_t flags)
{
  check_range (h, count, offset, "pread");
  memcpy (buf, disk + offset, count);
  return 0;
}

static int
fz_pwrite (void *h, const void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  check_range (h, count, offset, "pwrite");
  /* Offset 0 of the disk fails, to reach the error replies. */
  if (offset == 0 && count == 1) {
    nbdkit_set_error (ENOSPC);
    return -1;
  }
  memcpy (disk + offset, buf, count);
  return 0;
}

static int
fz_flush (void *h, uint32_t flags)
{
  return 0;
}

static int
fz_trim (void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
  check_range (h, count, offset, "trim");
  memset (disk + offset, 0, count);
  return 0;
}

static int
fz_zero (void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
  check_range (h, count, offset, "zero");
  if (flags & NBDKIT_FLAG_FAST_ZERO && count > 65536) {
    nbdkit_set_error (ENOTSUP);
    return -1;
  }
  memset (disk + offset, 0, count);
  return 0;
}

static int
fz_cache_cb (void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
  check_range (h, count, offset, "cache");
  return 0;
}

/* Data and holes in 64 KiB pieces, more than one extent per request. */
static int
fz_extents (void *h, uint32_t count, uint64_t offset, uint32_t flags,
            struct nbdkit_extents *e)
{
  uint64_t at = offset & ~(uint64_t) 65535, end = offset + count;

  check_range (h, count, offset, "extents");
  for (; at < end; at += 65536)
    if (nbdkit_add_extent (e, at, 65536,
                           (at / 65536) % 2 ? NBDKIT_EXTENT_HOLE |
                           NBDKIT_EXTENT_ZERO : 0) == -1)
      return -1;
  return 0;
}

static const struct nbdkit_backend backend = {
  .name = "fuzz",
  .version = "1",
  .thread_model = NBDKIT_THREAD_MODEL_PARALLEL,
  .config = fz_config,
  .list_exports = fz_list_exports,
  .default_export = fz_default_export,
  .open = fz_open,
  .close = fz_close,
  .get_size = fz_get_size,
  .export_description = fz_export_description,
  .block_size = fz_block_size,
  .can_write = fz_yes, .can_flush = fz_yes, .can_trim = fz_yes,
  .can_zero = fz_yes, .can_fast_zero = fz_yes, .can_extents = fz_yes,
  .can_multi_conn = fz_yes, .can_fua = fz_fua, .can_cache = fz_cache,
  .pread = fz_pread,
  .pwrite = fz_pwrite,
  .flush = fz_flush,
  .trim = fz_trim,
  .zero = fz_zero,
  .cache = fz_cache_cb,
  .extents = fz_extents,
};

/* ---- the server's end ---- */

static jmp_buf input_end;

void
nbdkit__fuzz_protocol_error (const char *why)
{
  longjmp (input_end, 1);
}

/* Reads every reply frame until EOF, checking each. */
static void *
read_replies (void *arg)
{
  int fd = *(int *) arg;
  static unsigned char buf[256 * 1024];
  size_t have = 0;

  for (;;) {
    ssize_t r = read (fd, buf + have, sizeof buf - have);
    struct hp_header h;
    const char *why;

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    have += r;
    while (have >= HP_HEADER_SIZE) {
      size_t skip;

      if (hp_decode_header (buf, &h, &why) == -1)
        fuzz_bug ("the backend sent a bad frame: %s", why);
      if (!(h.type & HP_REPLY))
        fuzz_bug ("the backend sent a frame that is not a reply "
                  "(type %u)", h.type);
      if (h.payload_len > HP_MAX_PAYLOAD)
        fuzz_bug ("a reply payload of %" PRIu32 " bytes", h.payload_len);
      skip = HP_HEADER_SIZE + (size_t) h.payload_len;
      if (skip > have) {
        /* The header stays; the payload is read and dropped. */
        size_t left = skip - have;

        while (left > 0) {
          r = read (fd, buf + HP_HEADER_SIZE,
                    left < sizeof buf - HP_HEADER_SIZE
                    ? left : sizeof buf - HP_HEADER_SIZE);
          if (r == -1 && errno == EINTR)
            continue;
          if (r <= 0)
            fuzz_bug ("the channel ended inside a reply's payload");
          left -= r;
        }
        have = 0;
      }
      else {
        memmove (buf, buf + skip, have - skip);
        have -= skip;
      }
    }
  }
  if (have > 0)
    fuzz_bug ("the backend left %zu bytes of an unfinished frame", have);
  return NULL;
}

/* ATTACH_FD "shm" with a memfd of ARENA_SIZE bytes, the descriptor
 * going with its first byte.
 */
static void
send_arena (int fd)
{
  char json[64];
  unsigned char hdr[HP_HEADER_SIZE];
  struct hp_header h = { .type = HP_ATTACH_FD, .id = 1 };
  int mfd = memfd_create ("fuzz-arena", MFD_CLOEXEC);
  union {
    char buf[CMSG_SPACE (sizeof (int))];
    struct cmsghdr align;
  } u;
  struct iovec iov[2];
  struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2,
                        .msg_control = u.buf,
                        .msg_controllen = sizeof u.buf };
  struct cmsghdr *cmsg;

  if (mfd == -1 || ftruncate (mfd, ARENA_SIZE) == -1)
    fuzz_bug ("memfd: %s", strerror (errno));
  h.payload_len = snprintf (json, sizeof json,
                            "{\"purpose\":\"shm\",\"size\":%d}", ARENA_SIZE);
  hp_encode_header (&h, hdr);
  iov[0] = (struct iovec) { .iov_base = hdr, .iov_len = sizeof hdr };
  iov[1] = (struct iovec) { .iov_base = json, .iov_len = h.payload_len };
  cmsg = CMSG_FIRSTHDR (&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN (sizeof (int));
  memcpy (CMSG_DATA (cmsg), &mfd, sizeof mfd);
  if (sendmsg (fd, &msg, 0) != (ssize_t) (sizeof hdr + h.payload_len))
    fuzz_bug ("sendmsg: %s", strerror (errno));
  close (mfd);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  signal (SIGPIPE, SIG_IGN);
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *argv[] = { (char *) "fuzz-library", NULL };
  static int sv[2];
  char fdstr[16];
  pthread_t reader;
  int sndbuf = 4 * 1024 * 1024;

  if (size == 0)
    return 0;
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
    fuzz_bug ("socketpair: %s", strerror (errno));
  /* The whole input fits in the socket: written before the backend
   * reads (inputs are a few KiB).
   */
  setsockopt (sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (data[0] & 1)
    send_arena (sv[1]);
  data++;
  size--;
  while (size > 0) {
    ssize_t r = write (sv[1], data, size);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      fuzz_bug ("write: %s", strerror (errno));
    data += r;
    size -= r;
  }
  shutdown (sv[1], SHUT_WR);
  if (pthread_create (&reader, NULL, read_replies, &sv[1]) != 0)
    fuzz_bug ("pthread_create failed");

  snprintf (fdstr, sizeof fdstr, "%d", sv[0]);
  setenv (HP_ENV_FD, fdstr, 1);
  if (setjmp (input_end) == 0)
    nbdkit_backend_main (&backend, 1, argv);
  nbdkit__fuzz_reset ();
  if (handles_open != 0)
    fuzz_bug ("%d handles left open after the channel ended", handles_open);

  close (sv[0]);
  pthread_join (reader, NULL);
  close (sv[1]);
  return 0;
}
