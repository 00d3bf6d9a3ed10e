# The filter API is filters/filter.h alone: it includes nothing of the
# front end, no filter includes anything of nbdkit/, and each filter
# compiles with only filters/ and helper-protocol/ on the include path.

load helpers

@test "filters/filter.h includes nothing of the front end" {
    grep -n '#include' "$top_srcdir/filters/filter.h" | not grep -E 'nbdkit/|internal\.h'
}

@test "no filter includes a file of nbdkit/" {
    run grep -rnE '#include *"[^"]*(nbdkit/|internal\.h|stream\.h|backend-proc\.h)' \
        "$top_srcdir/filters"
    echo "$output"
    [ "$status" -eq 1 ]
}

@test "every filter compiles against filter.h alone" {
    [ -f "$top_builddir/config.h" ] || skip "no config.h in $top_builddir (not configured)"
    requires gcc pkg-config
    local f flags
    flags=$(pkg-config --cflags liblzma 2>/dev/null || true)
    for f in "$top_srcdir"/filters/*.c "$top_srcdir"/filters/*/*.c; do
        gcc -fsyntax-only -Wall -Wextra -Werror -Wno-unused-parameter \
            -I"$top_builddir" -I"$top_srcdir/filters" \
            -I"$top_srcdir/helper-protocol" -I"$(dirname "$f")" $flags "$f"
    done
}

@test "filters release payloads with payload_free, never free" {
    # A payload may be a slot of the backend's shared memory: free()
    # of one aborts the server.
    run grep -nE '\bfree \((payload|data|r->data)\)' \
        "$top_srcdir"/filters/*.c "$top_srcdir"/filters/*/*.c
    echo "$output"
    [ "$status" -eq 1 ]
}
