# TLS: X.509 certificates and pre-shared keys, made here with certtool
# and psktool; real clients (nbdsh, nbdinfo, qemu-img) over TLS; the
# refusals; and a check that no payload crosses the wire in plaintext.

load helpers

# A CA, a server and a client certificate, a second CA with a client
# certificate the first CA never signed, and a PSK file.
setup_file() {
    make_tls_files "$BATS_FILE_TMPDIR"
}

tls_requires() {
    requires certtool psktool nbdsh
}

# Run python with nbd: $1 is the URI to connect h to, $2 the code.
nbd_tls_py() {
    /usr/bin/python3 -c "
import nbd, errno, os, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri('$1')
$2"
}

x509_uri() {
    echo "nbds+unix:///?socket=$sock&tls-certificates=$BATS_FILE_TMPDIR/${1:-pki}"
}

psk_uri() {
    echo "nbds+unix://alice@/?socket=$sock&tls-psk-file=$BATS_FILE_TMPDIR/psk/${1:-keys.psk}"
}

@test "--tls=require with X.509: nbdsh reads and writes over TLS" {
    tls_requires
    start_server --tls=require --tls-certificates="$BATS_FILE_TMPDIR/pki" memory 64M
    nbd_tls_py "$(x509_uri)" '
assert h.get_tls_negotiated()
assert h.get_structured_replies_negotiated()
d = os.urandom(5 << 20)
h.pwrite(d, 123456)
assert h.pread(5 << 20, 123456) == d
h.flush()
'
}

@test "--tls=require with PSK: nbdsh reads and writes over TLS" {
    tls_requires
    start_server --tls=require --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" memory 64M
    nbd_tls_py "$(psk_uri)" '
assert h.get_tls_negotiated()
d = os.urandom(1 << 20)
h.pwrite(d, 0)
assert h.pread(1 << 20, 0) == d
'
}

@test "a plaintext client of --tls=require gets NBD_REP_ERR_TLS_REQD and no data" {
    tls_requires
    start_server --tls=require --tls-certificates="$BATS_FILE_TMPDIR/pki" memory 1M
    run /usr/bin/python3 "$RAWCLIENT" "$sock" tls_required
    echo "$output"
    [ "$status" -eq 0 ]
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
}

@test "a wrong pre-shared key is refused, and the server goes on" {
    tls_requires
    start_server --tls=require --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" memory 1M
    run nbd_tls_py "$(psk_uri wrong.psk)" 'sys.exit("connected with the wrong key")'
    [ "$status" -ne 0 ]
    echo "$output" | grep -q "nbd.Error"
    nbd_tls_py "$(psk_uri)" 'assert h.get_size() == 1 << 20'
}

@test "--tls-verify-peer refuses an untrusted client certificate" {
    tls_requires
    start_server --tls=require --tls-verify-peer \
        --tls-certificates="$BATS_FILE_TMPDIR/pki" memory 1M
    run nbd_tls_py "$(x509_uri rogue)" 'sys.exit("connected with a rogue certificate")'
    [ "$status" -ne 0 ]
    echo "$output" | grep -q "nbd.Error"
    nbd_tls_py "$(x509_uri)" 'assert h.get_tls_negotiated()'
}

@test "--tls=on serves both TLS and plaintext clients" {
    tls_requires
    start_server --tls=on --tls-certificates="$BATS_FILE_TMPDIR/pki" memory 1M
    nbd_tls_py "$(x509_uri)" '
assert h.get_tls_negotiated()
h.pwrite(b"secret", 0)'
    nbd_py '
assert not h.get_tls_negotiated()
assert h.pread(6, 0) == b"secret"'
}

@test "--tls=off (the default) answers STARTTLS with NBD_REP_ERR_UNSUP" {
    tls_requires
    start_server memory 1M
    run nbd_tls_py "$(x509_uri)" 'sys.exit("TLS without --tls")'
    [ "$status" -ne 0 ]
    run /usr/bin/python3 "$RAWCLIENT" "$sock" starttls_unsupported
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "a client that stalls in its TLS handshake does not stall the others" {
    tls_requires
    start_server --tls=require --tls-certificates="$BATS_FILE_TMPDIR/pki" memory 1M
    /usr/bin/python3 "$RAWCLIENT" "$sock" starttls_then_stall \
        "$BATS_TEST_TMPDIR/stalled" 3>&- &
    staller=$!
    wait_until test -e "$BATS_TEST_TMPDIR/stalled"
    nbd_tls_py "$(x509_uri)" '
assert h.get_tls_negotiated()
h.pwrite(b"x" * 4096, 0)
assert h.pread(4096, 0) == b"x" * 4096'
    kill "$staller"
    kill -0 "$server_pid"
}

@test "qemu-img converts a disk over TLS with X.509 and with PSK" {
    tls_requires
    requires qemu-img
    random_file "$BATS_TEST_TMPDIR/src" 8M
    cp "$BATS_TEST_TMPDIR/src" "$BATS_TEST_TMPDIR/disk"
    start_server --tls=require --tls-certificates="$BATS_FILE_TMPDIR/pki" \
        file "$BATS_TEST_TMPDIR/disk"
    qemu-img convert -O raw \
        --object "tls-creds-x509,id=tls0,endpoint=client,dir=$BATS_FILE_TMPDIR/pki" \
        --image-opts "driver=nbd,server.type=unix,server.path=$sock,tls-creds=tls0,tls-hostname=localhost" \
        "$BATS_TEST_TMPDIR/copy1"
    [ "$(sha "$BATS_TEST_TMPDIR/copy1")" = "$(sha "$BATS_TEST_TMPDIR/src")" ]
    stop_server
    start_server --tls=require --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" \
        file "$BATS_TEST_TMPDIR/disk"
    qemu-img convert -O raw \
        --object "tls-creds-psk,id=tls0,endpoint=client,dir=$BATS_FILE_TMPDIR/psk,username=alice" \
        --image-opts "driver=nbd,server.type=unix,server.path=$sock,tls-creds=tls0,tls-hostname=localhost" \
        "$BATS_TEST_TMPDIR/copy2"
    [ "$(sha "$BATS_TEST_TMPDIR/copy2")" = "$(sha "$BATS_TEST_TMPDIR/src")" ]
}

@test "over TLS the payload never appears on the wire; without TLS it does" {
    tls_requires
    start_server --tls=on --tls-certificates="$BATS_FILE_TMPDIR/pki" memory 4M
    /usr/bin/python3 "$top_srcdir/tests/logging-proxy.py" \
        "$BATS_TEST_TMPDIR/proxy" "$sock" "$BATS_TEST_TMPDIR/wire" 3>&- &
    proxy=$!
    wait_until test -S "$BATS_TEST_TMPDIR/proxy"
    canary='nbdkit-plaintext-canary-'
    nbd_tls_py "nbds+unix:///?socket=$BATS_TEST_TMPDIR/proxy&tls-certificates=$BATS_FILE_TMPDIR/pki" "
assert h.get_tls_negotiated()
h.pwrite(b'$canary' * 1000, 0)
assert h.pread(24000, 0) == b'$canary' * 1000
h.shutdown()"
    test -s "$BATS_TEST_TMPDIR/wire"
    run grep -c "$canary" "$BATS_TEST_TMPDIR/wire"
    [ "$output" = 0 ]
    # The same through the same proxy in plaintext: the canary shows,
    # so the check above could have failed.
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.connect_uri('nbd+unix:///?socket=$BATS_TEST_TMPDIR/proxy')
h.pwrite(b'$canary' * 10, 0)
h.shutdown()"
    kill "$proxy"
    grep -q "$canary" "$BATS_TEST_TMPDIR/wire"
}

@test "the backend learns whether a connection uses TLS" {
    tls_requires
    truncate -s 1M "$BATS_TEST_TMPDIR/disk"
    start_server --tls=on --tls-certificates="$BATS_FILE_TMPDIR/pki" \
        "$FAULTY" "$BATS_TEST_TMPDIR/disk" tlslog="$BATS_TEST_TMPDIR/tlslog"
    nbd_tls_py "$(x509_uri)" 'assert h.get_tls_negotiated()'
    nbd_py 'assert not h.get_tls_negotiated()'
    [ "$(cat "$BATS_TEST_TMPDIR/tlslog")" = "$(printf 'True\nFalse')" ]
}

@test "-D nbdkit.tls.session=1 logs the session's parameters" {
    tls_requires
    start_server --tls=require --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" \
        -D nbdkit.tls.session=1 memory 1M
    nbd_tls_py "$(psk_uri)" 'assert h.get_tls_negotiated()'
    grep "TLS session: (TLS1" "$log"
    wait_until grep -q "PSK user alice" "$log"
}

@test "PSK sessions prefer AES-GCM on a CPU with AES; ChaCha20 still works" {
    tls_requires
    grep -qw aes /proc/cpuinfo || skip "this CPU has no AES instructions"
    client=$top_builddir/tests/tls-client
    [ -x "$client" ] || skip "tests/tls-client is not built"
    start_server --tls=require --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" \
        -D nbdkit.tls.session=1 memory 1M
    nbd_tls_py "$(psk_uri)" 'assert h.get_tls_negotiated()'
    wait_until grep -q "TLS session: (TLS1.3)--(AES-128-GCM), PSK user alice" "$log"
    not grep -q "CHACHA20" "$log"
    # A client that offers only ChaCha20 gets it.
    key="alice:$(cut -d: -f2 "$BATS_FILE_TMPDIR/psk/keys.psk")"
    "$client" "$sock" --psk "$key" --tls 1.3 --count 1 \
        --cipher CHACHA20-POLY1305
    wait_until grep -q "TLS session: (TLS1.3)--(CHACHA20-POLY1305), PSK user alice" "$log"
    stop_server
    # With a priority of the user's own, the client's order decides, as
    # in nbdkit: ChaCha20 for gnutls's clients.
    start_server --tls=require --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" \
        --tls-priority=NORMAL -D nbdkit.tls.session=1 memory 1M
    nbd_tls_py "$(psk_uri)" 'assert h.get_tls_negotiated()'
    wait_until grep -q "TLS session: (TLS1.3)--(CHACHA20-POLY1305), PSK user alice" "$log"
}

@test "bad TLS options are refused with the value named" {
    run "$NBDKIT" --tls=maybe memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q -- "--tls=maybe: expected off, on or require"
    run "$NBDKIT" -o --tls=on memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "oldstyle protocol (-o) has no TLS"
    run "$NBDKIT" --tls=on --tls-certificates=/nonexistent memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "/nonexistent"
    printf 'alice:xyz\n' > "$BATS_TEST_TMPDIR/bad.psk"
    run "$NBDKIT" --tls=on --tls-psk="$BATS_TEST_TMPDIR/bad.psk" memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "line 1 is not USERNAME:HEXKEY"
    run "$NBDKIT" --tls=on --tls-priority=NOSUCHTHING \
        --tls-certificates="$BATS_FILE_TMPDIR/pki" memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "tls-priority=NOSUCHTHING"
}
