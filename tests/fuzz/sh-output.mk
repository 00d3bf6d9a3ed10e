# Fuzzing target "sh-output": see tests/fuzz/README.  Owns the build of
# the sh and eval backends' parsing of what scripts print for fuzzing
# (tests/fuzz/fuzz-sh-output.c): the libFuzzer binary
# tests/fuzz/fuzz-sh-output (make fuzz) and tests/fuzz-replay-sh-output
# (make fuzz-replays).

fuzz_sh_output_sources = \
	tests/fuzz/fuzz-sh-output.c \
	backends/sh/parse.c \
	helper-protocol/backend-utils.c \
	helper-protocol/backend-lists.c \
	helper-protocol/wire.c
fuzz_sh_output_headers = \
	backends/sh/parse.h \
	backends/sh/methods.h \
	backends/sh/call.h \
	helper-protocol/backend-internal.h \
	helper-protocol/nbdkit-backend.h \
	helper-protocol/helper-protocol.h

check_PROGRAMS += tests/fuzz-replay-sh-output
tests_fuzz_replay_sh_output_SOURCES = \
	$(fuzz_sh_output_sources) \
	$(fuzz_sh_output_headers) \
	tests/fuzz/replay-main.c
tests_fuzz_replay_sh_output_CPPFLAGS = $(AM_CPPFLAGS) \
	-I$(top_srcdir)/backends/sh
tests_fuzz_replay_sh_output_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) -pthread
tests_fuzz_replay_sh_output_LDADD = $(JANSSON_LIBS) $(PTHREAD_LIBS)

tests/fuzz/fuzz-sh-output: $(fuzz_sh_output_sources) \
		$(fuzz_sh_output_headers) $(top_builddir)/config.h
	@$(MKDIR_P) tests/fuzz
	$(AM_V_CCLD)cd $(top_srcdir) && $(FUZZ_CC) $(FUZZ_CFLAGS) \
	  $(FUZZ_WARNINGS) -I$(abs_top_builddir) -Ihelper-protocol \
	  -Ibackends/sh $(JANSSON_CFLAGS) -pthread \
	  -o $(abs_top_builddir)/$@ $(fuzz_sh_output_sources) $(JANSSON_LIBS)

fuzz: tests/fuzz/fuzz-sh-output
fuzz-replays: tests/fuzz-replay-sh-output

CLEANFILES += tests/fuzz/fuzz-sh-output
EXTRA_DIST += \
	tests/fuzz/make-corpus-sh-output.py \
	tests/fuzz/sh-output.dict \
	tests/fuzz/corpus-sh-output
