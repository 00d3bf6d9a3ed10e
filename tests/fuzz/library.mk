# Fuzzing target "library" (tests/fuzz/README): libnbdkit-backend
# reading the front end's frames, built with -DNBDKIT_FUZZING (one
# thread, protocol errors end the input instead of the process).

fuzz_library_sources = \
	tests/fuzz/fuzz-library.c \
	helper-protocol/backend-main.c \
	helper-protocol/backend-ops.c \
	helper-protocol/backend-open.c \
	helper-protocol/backend-exports.c \
	helper-protocol/backend-workers.c \
	helper-protocol/backend-utils.c \
	helper-protocol/backend-lists.c \
	helper-protocol/wire.c
fuzz_library_headers = \
	tests/fuzz/fuzz-bug.h \
	helper-protocol/backend-internal.h \
	helper-protocol/nbdkit-backend.h \
	helper-protocol/helper-protocol.h \
	helper-protocol/byte-order.h

check_PROGRAMS += tests/fuzz-replay-library
tests_fuzz_replay_library_SOURCES = \
	$(fuzz_library_sources) $(fuzz_library_headers) \
	tests/fuzz/replay-main.c
tests_fuzz_replay_library_CPPFLAGS = $(AM_CPPFLAGS) -DNBDKIT_FUZZING \
	-I$(top_srcdir)/helper-protocol
tests_fuzz_replay_library_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) -pthread
tests_fuzz_replay_library_LDADD = $(JANSSON_LIBS) $(PTHREAD_LIBS)

tests/fuzz/fuzz-library: $(fuzz_library_sources) $(fuzz_library_headers)
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)cd $(top_srcdir) && $(FUZZ_CC) $(FUZZ_CFLAGS) \
	  $(FUZZ_WARNINGS) -DNBDKIT_FUZZING -I$(abs_top_builddir) \
	  -Ihelper-protocol $(JANSSON_CFLAGS) -pthread \
	  -o $(abs_top_builddir)/$@ $(fuzz_library_sources) $(JANSSON_LIBS)

fuzz: tests/fuzz/fuzz-library
fuzz-replays: tests/fuzz-replay-library
CLEANFILES += tests/fuzz/fuzz-library
EXTRA_DIST += tests/fuzz/library.mk tests/fuzz/make-corpus-library.py \
	tests/fuzz/corpus-library
