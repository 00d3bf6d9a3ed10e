# Fuzzing the front end's parsers (tests/fuzz/fuzz-server.c): the seed
# corpus replayed through the harness built with the normal compiler
# (tests/fuzz-replay), the crash reproducers kept in the corpus, and a
# short libFuzzer run under ASan and UBSan when clang can build one.

load helpers

REPLAY=$top_builddir/tests/fuzz-replay
CORPUS=$top_srcdir/tests/fuzz/corpus

# The seeds: the corpus less the crash reproducers.
seeds() {
    local f
    for f in "$CORPUS"/*; do
        case ${f##*/} in crash-*) ;; *) printf '%s\n' "$f" ;; esac
    done
}

replay() {
    [ -x "$REPLAY" ] || {
        echo "$REPLAY is not built (make check, or make tests/fuzz-replay)"
        return 1
    }
    run "$REPLAY" "$@"
    echo "$output" | tail -n 40
    [ "$status" -eq 0 ]
}

@test "every seed of the fuzzing corpus replays through the harness" {
    local files
    mapfile -t files < <(seeds)
    [ "${#files[@]}" -ge 8 ]
    FUZZ_NBDKIT_OPTIONS=quiet replay "${files[@]}"
    [[ "$output" == *"${#files[@]} inputs replayed"* ]]
}

@test "the seeds replay with other server options too" {
    local files o
    mapfile -t files < <(seeds)
    for o in tls=off,readonly,no-sr tls=require oldstyle mask=0; do
        echo "# FUZZ_NBDKIT_OPTIONS=$o"
        FUZZ_NBDKIT_OPTIONS=quiet,$o replay "${files[@]}"
    done
}

@test "the committed corpus is what make-corpus.py makes" {
    requires python3
    /usr/bin/python3 "$top_srcdir/tests/fuzz/make-corpus.py" \
        "$BATS_TEST_TMPDIR/corpus"
    local f
    for f in "$BATS_TEST_TMPDIR"/corpus/*; do
        cmp "$f" "$CORPUS/${f##*/}"
    done
    [ "$(ls "$BATS_TEST_TMPDIR/corpus" | wc -l)" -eq "$(seeds | wc -l)" ]
}

@test "the crash reproducers in the corpus no longer crash" {
    local files=("$CORPUS"/crash-*)
    [ -e "${files[0]}" ] || skip "no crash reproducers in tests/fuzz/corpus"
    local f
    for f in "${files[@]}"; do
        echo "# ${f##*/}"
        FUZZ_NBDKIT_OPTIONS=quiet replay "$f"
    done
}

@test "a bounded libFuzzer run (ASan, UBSan) finds nothing" {
    local cc=${FUZZ_CC:-clang}
    command -v "$cc" >/dev/null 2>&1 ||
        skip "$cc is not installed (apt-get install clang libclang-rt-dev)"
    printf 'int LLVMFuzzerTestOneInput (const char *d, unsigned long n) { return 0; }\n' \
        > "$BATS_TEST_TMPDIR/t.c"
    "$cc" -fsanitize=fuzzer,address -o "$BATS_TEST_TMPDIR/t" \
        "$BATS_TEST_TMPDIR/t.c" >/dev/null 2>&1 ||
        skip "$cc cannot build a libFuzzer program (apt-get install libclang-rt-dev)"
    # A make of its own, not the jobserver of a 'make check' around it.
    run env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
        make -s -C "$top_builddir" fuzz-run FUZZ_CC="$cc"
    echo "$output" | tail -n 120
    [ "$status" -eq 0 ]
    [[ "$output" == *"fuzz-run: no crash"* ]]
}

# The other targets (tests/fuzz/README): each corpus-T replays through
# tests/fuzz-replay-T, the harness built with the normal compiler (and
# the sanitizers when configured with --enable-sanitizers).
@test "every target's seed corpus and crash reproducers replay through its harness" {
    local dir target n=0
    for dir in "$top_srcdir"/tests/fuzz/corpus-*/; do
        [ -d "$dir" ] || continue
        target=${dir%/}
        target=${target##*/corpus-}
        echo "# target $target"
        [ -x "$top_builddir/tests/fuzz-replay-$target" ] || {
            echo "tests/fuzz-replay-$target is not built (make fuzz-replays)"
            return 1
        }
        run "$top_builddir/tests/fuzz-replay-$target" "$dir"
        echo "$output" | tail -n 40
        [ "$status" -eq 0 ]
        [[ "$output" == *" inputs replayed"* ]]
        n=$((n + 1))
    done
    # Every harness has a corpus.
    local h
    for h in "$top_srcdir"/tests/fuzz/fuzz-*.c; do
        h=${h##*/fuzz-}; h=${h%.c}
        case $h in server|backend|backend-disk) continue ;; esac
        [ -d "$top_srcdir/tests/fuzz/corpus-$h" ] || {
            echo "tests/fuzz/fuzz-$h.c has no corpus-$h"; return 1; }
    done
    [ "$n" -ge 1 ] || skip "no target other than server yet"
}

@test "every target's committed seeds are what its make-corpus-T.py makes" {
    requires python3
    local gen target f n=0
    for gen in "$top_srcdir"/tests/fuzz/make-corpus-*.py; do
        [ -e "$gen" ] || continue
        target=${gen##*/make-corpus-}
        target=${target%.py}
        echo "# target $target"
        rm -rf "$BATS_TEST_TMPDIR/corpus"
        /usr/bin/python3 "$gen" "$BATS_TEST_TMPDIR/corpus"
        for f in "$BATS_TEST_TMPDIR"/corpus/*; do
            cmp "$f" "$top_srcdir/tests/fuzz/corpus-$target/${f##*/}"
        done
        # No seed left over that the script no longer makes.
        for f in "$top_srcdir/tests/fuzz/corpus-$target"/*; do
            case ${f##*/} in crash-*) continue ;; esac
            [ -e "$BATS_TEST_TMPDIR/corpus/${f##*/}" ] || {
                echo "${f##*/} is not made by ${gen##*/}"; return 1; }
        done
        n=$((n + 1))
    done
    [ "$n" -ge 1 ] || skip "no make-corpus-T.py yet"
}

@test "contrib/fuzz refuses a bad target or option, naming it" {
    run "$top_srcdir/contrib/fuzz" no-such-target
    [ "$status" -eq 1 ]
    [[ "$output" == *"no-such-target: no such target"* ]]
    [[ "$output" == *server* ]]
    run "$top_srcdir/contrib/fuzz" server --minutes x
    [ "$status" -eq 1 ]
    [[ "$output" == *"--minutes x: expected a whole number"* ]]
    run "$top_srcdir/contrib/fuzz" server --bogus
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown option --bogus"* ]]
}
