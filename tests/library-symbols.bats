# libnbdkit-backend is linked into backends written by others: every
# name it exports must be its own (nbdkit_ for the API of
# nbdkit-backend.h, nbdkit__ for the library's internals, hp_ for the
# codec of helper-protocol.h), so that a backend's own "verbose" or
# "send_reply" cannot collide with it.

load helpers

@test "libnbdkit-backend exports only nbdkit_, nbdkit__ and hp_ names" {
    requires nm
    archive=$top_builddir/.libs/libnbdkit-backend.a
    [ -f "$archive" ] || skip "$archive is not built"
    nm -g --defined-only "$archive" > "$BATS_TEST_TMPDIR/nm.out"
    # Defined, global symbols: "ADDRESS TYPE NAME" (weak ones included).
    awk 'NF == 3 && $2 ~ /^[A-Z]$/ { print $3 }' "$BATS_TEST_TMPDIR/nm.out" \
        > "$BATS_TEST_TMPDIR/symbols"
    # Sanity: the listing is not empty and holds the public API.
    grep -qx nbdkit_backend_main "$BATS_TEST_TMPDIR/symbols"
    # A sanitizer build adds the toolchain's own (__odr_asan.NAME for each
    # global, __asan_*, __ubsan_*, __sanitizer_*): not ours to name.
    bad=$(grep -Ev '^(nbdkit_|hp_|__odr_asan\.(nbdkit_|hp_)|__asan_|__ubsan_|__sanitizer_)' \
          "$BATS_TEST_TMPDIR/symbols" || true)
    if [ -n "$bad" ]; then
        echo "symbols of libnbdkit-backend without the nbdkit_/nbdkit__/hp_ prefix:" >&2
        echo "$bad" >&2
        return 1
    fi
}
