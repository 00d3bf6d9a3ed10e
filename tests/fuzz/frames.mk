# Fuzzing target "frames": see tests/fuzz/README, and the header of
# tests/fuzz/fuzz-frames.c for what one input is.  The harness links
# the front end's files that read a backend's frames and stands in for
# the process, the log and the loop.

fuzz_frames_front_end = \
	nbdkit/arena.c \
	nbdkit/backend-channel.c \
	nbdkit/backend-info.c \
	nbdkit/backend-handles.c \
	nbdkit/backend-layer.c \
	nbdkit/backend-proc.c \
	nbdkit/buffer.c \
	nbdkit/filter-open.c \
	nbdkit/liveness.c \
	nbdkit/passthrough.c \
	nbdkit/passthrough-map.c \
	nbdkit/stream.c \
	nbdkit/supervisor.c
fuzz_frames_headers = \
	tests/fuzz/fuzz-bug.h \
	nbdkit/backend-proc.h \
	nbdkit/buffer.h \
	nbdkit/errors.h \
	nbdkit/internal.h \
	nbdkit/protocol.h \
	nbdkit/stream.h \
	nbdkit/passthrough-map.h \
	filters/filter.h \
	helper-protocol/byte-order.h \
	helper-protocol/helper-protocol.h

check_PROGRAMS += tests/fuzz-replay-frames
tests_fuzz_replay_frames_SOURCES = \
	tests/fuzz/fuzz-frames.c \
	tests/fuzz/frames-absent.c \
	tests/fuzz/replay-main.c \
	$(fuzz_frames_front_end) \
	$(fuzz_frames_headers)
tests_fuzz_replay_frames_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/nbdkit
tests_fuzz_replay_frames_CFLAGS = $(AM_CFLAGS) $(LIBEV_CFLAGS) \
	$(JANSSON_CFLAGS)
tests_fuzz_replay_frames_LDADD = libhpwire.la $(LIBEV_LIBS) $(JANSSON_LIBS)

fuzz_frames_files = \
	$(top_srcdir)/tests/fuzz/fuzz-frames.c \
	$(top_srcdir)/tests/fuzz/frames-absent.c \
	$(top_srcdir)/nbdkit/arena.c \
	$(top_srcdir)/nbdkit/backend-channel.c \
	$(top_srcdir)/nbdkit/backend-info.c \
	$(top_srcdir)/nbdkit/backend-handles.c \
	$(top_srcdir)/nbdkit/backend-layer.c \
	$(top_srcdir)/nbdkit/backend-proc.c \
	$(top_srcdir)/nbdkit/buffer.c \
	$(top_srcdir)/nbdkit/filter-open.c \
	$(top_srcdir)/nbdkit/liveness.c \
	$(top_srcdir)/nbdkit/passthrough.c \
	$(top_srcdir)/nbdkit/passthrough-map.c \
	$(top_srcdir)/nbdkit/stream.c \
	$(top_srcdir)/nbdkit/supervisor.c \
	$(top_srcdir)/helper-protocol/wire.c

fuzz_frames_deps = \
	$(top_builddir)/config.h \
	$(top_srcdir)/tests/fuzz/fuzz-bug.h \
	$(top_srcdir)/nbdkit/backend-proc.h \
	$(top_srcdir)/nbdkit/buffer.h \
	$(top_srcdir)/nbdkit/errors.h \
	$(top_srcdir)/nbdkit/internal.h \
	$(top_srcdir)/nbdkit/protocol.h \
	$(top_srcdir)/nbdkit/stream.h \
	$(top_srcdir)/filters/filter.h \
	$(top_srcdir)/helper-protocol/byte-order.h \
	$(top_srcdir)/helper-protocol/helper-protocol.h

tests/fuzz/fuzz-frames: $(fuzz_frames_files) $(fuzz_frames_deps)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_WARNINGS) \
	  -I$(top_builddir) -I$(top_srcdir)/helper-protocol \
	  -I$(top_srcdir)/nbdkit $(LIBEV_CFLAGS) $(JANSSON_CFLAGS) \
	  -o $@ $(fuzz_frames_files) $(LIBEV_LIBS) $(JANSSON_LIBS)

fuzz: tests/fuzz/fuzz-frames
fuzz-replays: tests/fuzz-replay-frames

CLEANFILES += tests/fuzz/fuzz-frames

EXTRA_DIST += \
	tests/fuzz/make-corpus-frames.py \
	tests/fuzz/frames.dict \
	tests/fuzz/corpus-frames
