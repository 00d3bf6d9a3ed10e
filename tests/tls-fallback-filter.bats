#!/usr/bin/env bats
# The tls-fallback filter (nbdkit-tls-fallback-filter(1)): with
# --tls=on and a PSK made by psktool (as in tests/tls.bats), TLS clients
# see the backend, plaintext ones a 512-byte message export.

load helpers

# A pre-shared key for user alice (only the PSK of make_tls_files:
# the tests need no certificates).
setup_file() {
    command -v psktool >/dev/null || return 0
    mkdir -p "$BATS_FILE_TMPDIR/psk"
    psktool -u alice -p "$BATS_FILE_TMPDIR/psk/keys.psk" >/dev/null
}

start_tls_fallback() {
    requires psktool nbdsh
    start_server --tls=on --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" \
        --filter=tls-fallback "$@"
    tls_uri="nbds+unix://alice@/?socket=$sock&tls-psk-file=$BATS_FILE_TMPDIR/psk/keys.psk"
}

@test "tls-fallback: a TLS client reads the disk, a plaintext one the message" {
    head -c 4M /dev/urandom > "$BATS_TEST_TMPDIR/disk"
    start_tls_fallback file "$BATS_TEST_TMPDIR/disk"
    requires nbdcopy nbdinfo
    nbdcopy "$tls_uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/disk" "$BATS_TEST_TMPDIR/out"
    # Plaintext: whatever the export name, 512 bytes of message.
    for name in "" secret; do
        nbdcopy "nbd+unix:///$name?socket=$sock" "$BATS_TEST_TMPDIR/plain"
        [ "$(stat -c %s "$BATS_TEST_TMPDIR/plain")" -eq 512 ]
        msg='This NBD server requires TLS authentication before it will serve useful data.\n'
        { printf "$msg"; head -c $((512 - $(printf "$msg" | wc -c))) /dev/zero; } \
            > "$BATS_TEST_TMPDIR/want"
        cmp "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/plain"
    done
    nbdinfo --json "$uri" > "$BATS_TEST_TMPDIR/info"
    cat "$BATS_TEST_TMPDIR/info"
    grep -q '"is_read_only": true' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_cache": false' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_flush": false' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_multi_conn": false' "$BATS_TEST_TMPDIR/info"
}

@test "tls-fallback: plaintext writes fail with EPERM; TLS ones reach the disk" {
    start_tls_fallback memory 1M
    nbd_py "
try:
    h.pwrite(b'x' * 512, 0)
    sys.exit('a plaintext write succeeded')
except nbd.Error as e:
    assert e.errno == 'EPERM', e.errno
"
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri('$tls_uri')
assert h.get_tls_negotiated()
h.pwrite(b'y' * 4096, 4096)
assert h.pread(4096, 4096) == b'y' * 4096
assert h.get_size() == 1 << 20
"
}

@test "tls-fallback: tlsreadme= is what plaintext clients read, cut at 512 bytes" {
    start_tls_fallback memory 1M tlsreadme='Use TLS, please.'
    nbd_py "
d = h.pread(512, 0)
assert d == b'Use TLS, please.' + bytes(512 - 16), d
assert h.pread(8, 4) == b'TLS, ple'
"
    stop_server
    long=$(printf 'ab%.0s' $(seq 300))
    start_tls_fallback memory 1M tlsreadme="$long"
    nbd_py "assert h.pread(512, 0) == b'ab' * 256"
}

@test "tls-fallback: the layers below are never opened for a plaintext client" {
    start_tls_fallback --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log"
    nbd_py "assert h.pread(4, 0) == b'This'"
    nbd_py "assert h.get_size() == 512"
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri('$tls_uri')
assert h.get_size() == 1 << 20
"
    stop_server
    cat "$BATS_TEST_TMPDIR/log"
    # The log filter below saw only the TLS client.
    [ "$(grep -c ' Connect ' "$BATS_TEST_TMPDIR/log")" -eq 1 ]
    grep ' Connect ' "$BATS_TEST_TMPDIR/log" | grep -q 'tls=1'
}

@test "tls-fallback: a plaintext export listing shows only the empty name" {
    requires nbdinfo
    start_tls_fallback memory 1M
    nbdinfo --list --json "$uri" > "$BATS_TEST_TMPDIR/list"
    cat "$BATS_TEST_TMPDIR/list"
    [ "$(grep -c '"export-name"' "$BATS_TEST_TMPDIR/list")" -eq 1 ]
    grep -q '"export-name": ""' "$BATS_TEST_TMPDIR/list"
}

@test "tls-fallback: a backend serializing connections is refused" {
    requires psktool
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --tls=on \
        --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" --filter=tls-fallback \
        eval get_size='echo 512' pread='head -c $3 /dev/zero' \
        thread_model='echo serialize_connections'
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"requires parallel connection support"* ]]
}
