# Fuzzing target "qcow2": see tests/fuzz/README.  Owns the build of the
# qcow2dec filter's format functions for fuzzing
# (tests/fuzz/fuzz-qcow2.c): the libFuzzer binary tests/fuzz/fuzz-qcow2
# (make fuzz) and tests/fuzz-replay-qcow2 (make fuzz-replays), with
# zlib and libzstd when configure found them.

fuzz_qcow2_sources = \
	tests/fuzz/fuzz-qcow2.c \
	filters/qcow2dec/qcow2.c
fuzz_qcow2_headers = \
	tests/fuzz/fuzz-bug.h \
	filters/qcow2dec/qcow2.h

check_PROGRAMS += tests/fuzz-replay-qcow2
tests_fuzz_replay_qcow2_SOURCES = \
	$(fuzz_qcow2_sources) \
	$(fuzz_qcow2_headers) \
	tests/fuzz/replay-main.c
tests_fuzz_replay_qcow2_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/filters/qcow2dec -I$(top_srcdir)/tests/fuzz
tests_fuzz_replay_qcow2_CFLAGS = $(AM_CFLAGS) $(ZLIB_CFLAGS) $(LIBZSTD_CFLAGS)
tests_fuzz_replay_qcow2_LDADD = $(ZLIB_LIBS) $(LIBZSTD_LIBS)

tests/fuzz/fuzz-qcow2: $(fuzz_qcow2_sources) $(fuzz_qcow2_headers) \
		$(top_builddir)/config.h
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)cd $(top_srcdir) && $(FUZZ_CC) $(FUZZ_CFLAGS) \
	  $(FUZZ_WARNINGS) -I$(abs_top_builddir) -Ifilters/qcow2dec \
	  -Itests/fuzz $(ZLIB_CFLAGS) $(LIBZSTD_CFLAGS) \
	  -o $(abs_top_builddir)/$@ $(fuzz_qcow2_sources) \
	  $(ZLIB_LIBS) $(LIBZSTD_LIBS)

fuzz: tests/fuzz/fuzz-qcow2
fuzz-replays: tests/fuzz-replay-qcow2

CLEANFILES += tests/fuzz/fuzz-qcow2
EXTRA_DIST += \
	tests/fuzz/make-corpus-qcow2.py \
	tests/fuzz/qcow2.dict \
	tests/fuzz/corpus-qcow2
