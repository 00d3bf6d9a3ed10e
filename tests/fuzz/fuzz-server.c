/* The fuzzing harness of the nbdkit front end: arbitrary bytes from a
 * client, through the real handshake and transmission parsers.
 *
 * HOW TO
 * ------
 * From the build directory.  Build the libFuzzer binary (clang, with
 * ASan and UBSan; FUZZ_CC=clang-NN for another clang):
 *
 *     make fuzz          # builds tests/fuzz/fuzz-server
 *
 * Run it briefly, as tests/fuzz.bats does, on a copy of the seed corpus
 * (the committed tests/fuzz/corpus is never written to):
 *
 *     make fuzz-run      # 50000 inputs, at most 60 s, seed 1
 *     make fuzz-run FUZZ_RUNS=1000000 FUZZ_TIME=600 FUZZ_SEED=0
 *                        # longer, with a random seed; FUZZ_ARGS=...
 *                        # passes more libFuzzer flags
 *
 * A longer campaign that keeps what it finds in a corpus of your own
 * (libFuzzer adds new inputs to the first directory it is given, so
 * never name tests/fuzz/corpus there), on both cores:
 *
 *     cp -R $(top_srcdir)/tests/fuzz/corpus /tmp/corpus
 *     tests/fuzz/fuzz-server -max_len=8192 -timeout=10 -close_fd_mask=2 \
 *         -dict=$(top_srcdir)/tests/fuzz/nbd.dict -max_total_time=600 \
 *         -jobs=2 -workers=2 /tmp/corpus
 *
 * On a crash libFuzzer saves the input as crash-<sha1> (in the current
 * directory, or as -artifact_prefix says; make fuzz-run saves it as
 * tests/fuzz-crash-<sha1> in the build directory) and prints the
 * report; a bug that the harness itself detects is explained on the
 * line "*** fuzz: BUG: ...".  Replay a crash file, or the corpus, with
 * the libFuzzer binary or with tests/fuzz-replay (built by 'make check'
 * with the normal compiler; with sanitizers only when configured with
 * --enable-sanitizers):
 *
 *     tests/fuzz/fuzz-server tests/fuzz-crash-<sha1>
 *     tests/fuzz-replay tests/fuzz-crash-<sha1>
 *     tests/fuzz-replay $(top_srcdir)/tests/fuzz/corpus
 *
 * Keep a fixed bug's reproducer, if small, as
 * tests/fuzz/corpus/crash-<what>: tests/fuzz.bats replays it.  The seeds
 * are made by tests/fuzz/make-corpus.py (run it again after changing
 * it).  $FUZZ_NBDKIT_OPTIONS sets the server's options for a whole run,
 * a comma-separated list of oldstyle, readonly, no-sr, mask=N,
 * tls=off|on|require (default on, with a pre-shared key), quiet (no
 * debug messages) and lenient (see fuzz-backend.c); the server's debug
 * messages go to stderr, which -close_fd_mask=2 silences.
 *
 * WHAT IT DOES
 * ------------
 * Linked with the real nbdkit/handshake.c, transmit.c, conn.c,
 * buffer.c, log.c, loop.c and tls.c; tests/fuzz/fuzz-backend.c stands
 * in for the rest of the front end and for the backend.  Each input: a
 * socketpair; conn_new on one end; the input written into the other
 * end in chunks of varying sizes, one per turn of the loop, then
 * shutdown (SHUT_WR); the loop run until the connection is closed and
 * every backend request is answered, while everything the server
 * writes is read and thrown away (so it never blocks).  Then:
 *   - the connection must have closed (else it was stuck: nothing left
 *     to wake it),
 *   - no backend request may be left and no handle open,
 *   - under ASan, struct conn must have been freed.
 * The stand-in backend aborts on a request that breaks the helper
 * protocol or what transmit.c promises to validate.
 *
 * An input that begins with the five bytes FF 'F' 'Z' and a 16-bit
 * big-endian MODE runs with the options of the MODE bits (MODE_* below:
 * oldstyle, read-only, no structured replies, TLS off or required, a
 * masked handshake flag, a shutdown once the input is sent, a client
 * that hangs up without reading, a default export that cannot be
 * opened).
 */

#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "fuzz-backend.h"

#if defined(__SANITIZE_ADDRESS__)
# define HAVE_ASAN 1
#elif defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define HAVE_ASAN 1
# endif
#endif
#ifdef HAVE_ASAN
# include <sanitizer/asan_interface.h>
#endif

extern int LLVMFuzzerInitialize (int *argc, char ***argv);
extern int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* An input may begin with MODE_MAGIC and two bytes (big-endian) of
 * MODE_* bits that change how that input runs (on top of the options of
 * $FUZZ_NBDKIT_OPTIONS), so that one campaign covers them all.  A
 * newstyle client's first four bytes are its flags, which these are not
 * (the server hangs up on them), and an oldstyle client begins with the
 * request magic: nothing meaningful is lost.
 */
#define MODE_MAGIC          "\xff" "FZ"
#define MODE_LEN            5
#define MODE_OLDSTYLE       0x0001
#define MODE_READONLY       0x0002
#define MODE_NO_SR          0x0004
#define MODE_TLS_OFF        0x0008
#define MODE_TLS_REQUIRE    0x0010
#define MODE_NO_FIXED       0x0020  /* --mask-handshake less fixed newstyle */
#define MODE_NO_NO_ZEROES   0x0040  /* --mask-handshake less no zeroes */
#define MODE_DRAIN          0x0080  /* conn_drain_all after the input */
#define MODE_HANGUP         0x0100  /* the client closes after its input,
                                     * reading nothing */
#define MODE_NO_DEFAULT     0x0200  /* the export "" cannot be opened */

/* The client's end of the socketpair. */
static int cfd = -1;
static ev_io client_rd;
static ev_idle client_wr;
static const uint8_t *in_data;
static size_t in_len, in_off, in_chunk;
static bool drain_after_input, hangup_after_input;
static unsigned char sink[64 * 1024];

/* The input goes in one chunk per turn of the loop, of these sizes in
 * turn, so that the server reads requests in pieces and waits for the
 * rest, and backend replies come in between.
 */
static const size_t chunk_sizes[] = { 1, 3, 28, 300, 4096, 17, 64, 1000,
                                      8192, 2 };
#define NR_CHUNK_SIZES (sizeof chunk_sizes / sizeof chunk_sizes[0])

/* The client's watchers do not keep the loop running: the loop ends
 * when the server side has nothing left to do.
 */
static void
client_rd_start (void)
{
  if (!ev_is_active (&client_rd)) {
    ev_io_start (loop, &client_rd);
    ev_unref (loop);
  }
}

static void
client_rd_stop (void)
{
  if (ev_is_active (&client_rd)) {
    ev_ref (loop);
    ev_io_stop (loop, &client_rd);
  }
}

static void
client_wr_start (void)
{
  if (!ev_is_active (&client_wr)) {
    ev_idle_start (loop, &client_wr);
    ev_unref (loop);
  }
}

static void
client_wr_stop (void)
{
  if (ev_is_active (&client_wr)) {
    ev_ref (loop);
    ev_idle_stop (loop, &client_wr);
  }
}

/* Send the next chunk; after the last, shut down the writing side. */
static void
client_push (void)
{
  if (in_off < in_len) {
    size_t n = chunk_sizes[in_chunk % NR_CHUNK_SIZES];
    ssize_t r;

    if (n > in_len - in_off)
      n = in_len - in_off;
    r = send (cfd, in_data + in_off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r > 0) {
      in_off += r;
      in_chunk++;
    }
    else if (r == -1 && (errno == EINTR || errno == EAGAIN ||
                         errno == EWOULDBLOCK)) {
      fuzz_backend_client_sending (false);
      return;                   /* again at the next turn */
    }
    else
      in_off = in_len;          /* the server hung up */
    if (in_off < in_len)
      return;
  }
  client_wr_stop ();
  fuzz_backend_client_sending (false);
  if (hangup_after_input) {
    client_rd_stop ();
    close (cfd);
    cfd = -1;
  }
  else
    shutdown (cfd, SHUT_WR);
  if (drain_after_input) {
    /* What a signal does to the server (loop.c, server_quit), without
     * the part that is forever.
     */
    conn_drain_all ();
  }
}

static void
client_drain (void)
{
  for (;;) {
    ssize_t r = read (cfd, sink, sizeof sink);

    if (r > 0)
      continue;
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    client_rd_stop ();          /* EOF: the server closed */
    return;
  }
}

static void
on_client_readable (struct ev_loop *l, ev_io *w, int revents)
{
  client_drain ();
}

static void
on_client_writable (struct ev_loop *l, ev_idle *w, int revents)
{
  client_push ();
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  static bool done;

  if (!done) {
    done = true;
    signal (SIGPIPE, SIG_IGN);
    fuzz_backend_init ();
  }
  return 0;
}

/* The options of one input, from those of the process and the mode. */
static void
set_mode (unsigned mode)
{
  drain_after_input = mode & MODE_DRAIN;
  hangup_after_input = mode & MODE_HANGUP;
  fuzz_backend_set_no_default (mode & MODE_NO_DEFAULT);
  if (mode & MODE_OLDSTYLE)
    opt.oldstyle = true;
  if (mode & MODE_READONLY)
    opt.readonly = true;
  if (mode & MODE_NO_SR)
    opt.no_sr = true;
  if (mode & MODE_TLS_OFF)
    opt.tls = TLS_OFF;
  if (mode & MODE_TLS_REQUIRE)
    opt.tls = TLS_REQUIRE;
  if (opt.oldstyle)
    opt.tls = TLS_OFF;          /* as main.c insists */
  if (mode & MODE_NO_FIXED)
    opt.mask_handshake &= ~NBD_FLAG_FIXED_NEWSTYLE;
  if (mode & MODE_NO_NO_ZEROES)
    opt.mask_handshake &= ~NBD_FLAG_NO_ZEROES;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct options saved;
  struct conn *conn;
  int sv[2];

  LLVMFuzzerInitialize (NULL, NULL);
  fuzz_backend_reset ();
  saved = opt;
  set_mode (0);
  if (size >= MODE_LEN && memcmp (data, MODE_MAGIC, 3) == 0) {
    set_mode (data[3] << 8 | data[4]);
    data += MODE_LEN;
    size -= MODE_LEN;
  }

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                  sv) == -1)
    fuzz_bug ("socketpair: %s", strerror (errno));
  cfd = sv[1];
  in_data = data;
  in_len = size;
  in_off = in_chunk = 0;
  ev_io_init (&client_rd, on_client_readable, cfd, EV_READ);
  ev_idle_init (&client_wr, on_client_writable);
  client_rd_start ();
  client_wr_start ();
  fuzz_backend_client_sending (size > 0);

  conn = conn_new (sv[0], sv[0], "fuzz");
  ev_run (loop, 0);

  if (nr_connections != 0)
    fuzz_bug ("the connection is stuck: the loop has nothing left to do "
              "but the connection is still open (%zu of %zu bytes of "
              "input sent)", in_off, in_len);
  client_rd_stop ();
  client_wr_stop ();
  if (cfd >= 0)
    close (cfd);
  cfd = -1;
  fuzz_backend_check_idle ();
#ifdef HAVE_ASAN
  if (conn && !__asan_address_is_poisoned (conn))
    fuzz_bug ("the connection was closed and all its requests answered, "
              "but struct conn was never freed (a reference leaked)");
#else
  (void) conn;
#endif
  opt = saved;
  return 0;
}
