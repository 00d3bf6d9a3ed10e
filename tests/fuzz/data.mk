# Fuzzing target "data": see tests/fuzz/README.  Owns the build of the
# data backend's format parser and evaluator for fuzzing
# (tests/fuzz/fuzz-data.c): the libFuzzer binary tests/fuzz/fuzz-data
# (make fuzz) and tests/fuzz-replay-data (make fuzz-replays).  Both
# build blob.c with the lower limits the harness's header explains.

fuzz_data_limits = -DBLOB_MAX_DATA='UINT64_C(67108864)' \
	-DBLOB_MAX_CHUNKS='UINT64_C(131072)'

fuzz_data_sources = \
	tests/fuzz/fuzz-data.c \
	backends/data/format.c \
	backends/data/format-eval.c \
	backends/data/blob.c \
	backends/sparse-file.c \
	helper-protocol/backend-utils.c \
	helper-protocol/backend-lists.c \
	helper-protocol/wire.c
fuzz_data_headers = \
	backends/data/format.h \
	backends/data/format-tree.h \
	backends/data/blob.h \
	backends/sparse-file.h \
	helper-protocol/backend-internal.h \
	helper-protocol/nbdkit-backend.h \
	helper-protocol/helper-protocol.h

check_PROGRAMS += tests/fuzz-replay-data
tests_fuzz_replay_data_SOURCES = \
	$(fuzz_data_sources) \
	$(fuzz_data_headers) \
	tests/fuzz/replay-main.c
tests_fuzz_replay_data_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/backends/data $(fuzz_data_limits)
tests_fuzz_replay_data_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) -pthread
tests_fuzz_replay_data_LDADD = $(JANSSON_LIBS) $(PTHREAD_LIBS)

tests/fuzz/fuzz-data: $(fuzz_data_sources) $(fuzz_data_headers) \
		$(top_builddir)/config.h
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)cd $(top_srcdir) && $(FUZZ_CC) $(FUZZ_CFLAGS) \
	  $(FUZZ_WARNINGS) -I$(abs_top_builddir) -Ihelper-protocol \
	  -Ibackends/data $(fuzz_data_limits) $(JANSSON_CFLAGS) -pthread \
	  -o $(abs_top_builddir)/$@ $(fuzz_data_sources) $(JANSSON_LIBS)

fuzz: tests/fuzz/fuzz-data
fuzz-replays: tests/fuzz-replay-data

CLEANFILES += tests/fuzz/fuzz-data
EXTRA_DIST += \
	tests/fuzz/make-corpus-data.py \
	tests/fuzz/data.dict \
	tests/fuzz/corpus-data
