# Fuzzing target "tar": see tests/fuzz/README.  Owns the build of the
# tar filter's header parser and scanner for fuzzing
# (tests/fuzz/fuzz-tar.c): the libFuzzer binary tests/fuzz/fuzz-tar
# (make fuzz) and tests/fuzz-replay-tar (make fuzz-replays).  The
# parser is pure (filters/tar/tar-header.c): nothing else is linked.

fuzz_tar_sources = \
	tests/fuzz/fuzz-tar.c \
	filters/tar/tar-header.c
fuzz_tar_headers = \
	filters/tar/tar-header.h \
	tests/fuzz/fuzz-bug.h

check_PROGRAMS += tests/fuzz-replay-tar
tests_fuzz_replay_tar_SOURCES = \
	$(fuzz_tar_sources) \
	$(fuzz_tar_headers) \
	tests/fuzz/replay-main.c
tests_fuzz_replay_tar_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/filters/tar
tests_fuzz_replay_tar_CFLAGS = $(AM_CFLAGS)

tests/fuzz/fuzz-tar: $(fuzz_tar_sources) $(fuzz_tar_headers) \
		$(top_builddir)/config.h
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)cd $(top_srcdir) && $(FUZZ_CC) $(FUZZ_CFLAGS) \
	  $(FUZZ_WARNINGS) -I$(abs_top_builddir) -Ifilters/tar \
	  -o $(abs_top_builddir)/$@ $(fuzz_tar_sources)

fuzz: tests/fuzz/fuzz-tar
fuzz-replays: tests/fuzz-replay-tar

CLEANFILES += tests/fuzz/fuzz-tar
EXTRA_DIST += \
	tests/fuzz/make-corpus-tar.py \
	tests/fuzz/tar.dict \
	tests/fuzz/corpus-tar
