# Fuzzing target "luks": see tests/fuzz/README.  Owns the build of the
# luks filter's LUKS1 header parser for fuzzing (tests/fuzz/fuzz-luks.c):
# the libFuzzer binary tests/fuzz/fuzz-luks (make fuzz) and
# tests/fuzz-replay-luks (make fuzz-replays).

fuzz_luks_sources = \
	tests/fuzz/fuzz-luks.c \
	filters/luks/luks-header.c
fuzz_luks_headers = \
	filters/luks/luks-header.h \
	tests/fuzz/fuzz-bug.h

check_PROGRAMS += tests/fuzz-replay-luks
tests_fuzz_replay_luks_SOURCES = \
	$(fuzz_luks_sources) \
	$(fuzz_luks_headers) \
	tests/fuzz/replay-main.c
tests_fuzz_replay_luks_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/filters/luks -I$(top_srcdir)/tests/fuzz

tests/fuzz/fuzz-luks: $(fuzz_luks_sources) $(fuzz_luks_headers) \
		$(top_builddir)/config.h
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)cd $(top_srcdir) && $(FUZZ_CC) $(FUZZ_CFLAGS) \
	  $(FUZZ_WARNINGS) -I$(abs_top_builddir) -Ifilters/luks -Itests/fuzz \
	  -o $(abs_top_builddir)/$@ $(fuzz_luks_sources)

fuzz: tests/fuzz/fuzz-luks
fuzz-replays: tests/fuzz-replay-luks

CLEANFILES += tests/fuzz/fuzz-luks
EXTRA_DIST += \
	tests/fuzz/make-corpus-luks.py \
	tests/fuzz/luks.dict \
	tests/fuzz/corpus-luks
