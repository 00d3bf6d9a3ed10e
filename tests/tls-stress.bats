# TLS under eager clients: well over 1000 TLS connections per run, each
# of which must be answered.  The clients send their first option the
# moment the handshake is done -- in the same write as their last
# handshake bytes where TLS allows it -- pipeline a request behind it,
# update keys, or close their side right behind a request: every place
# where bytes can wait inside the TLS layer while the event loop sees a
# quiet socket.  Two TLS implementations: Python's ssl (OpenSSL) in
# tests/tls-clients.py, and gnutls in tests/tls-client.c (which also
# does PSK).  A stall is counted when a connection gets no complete
# answer in 20 seconds; nothing here depends on timing to pass.

load helpers

CLIENT=$top_builddir/tests/tls-client
PYCLIENT=$top_srcdir/tests/tls-clients.py

setup_file() {
    make_tls_files "$BATS_FILE_TMPDIR"
}

stress_requires() {
    requires certtool psktool
    [ -x "$CLIENT" ] || skip "tests/tls-client is not built (make tests/tls-client)"
}

x509_server() {
    start_server --tls=require --tls-certificates="$BATS_FILE_TMPDIR/pki" memory 64M
}

psk_server() {
    start_server --tls=require --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" memory 64M
}

psk_key() {
    echo "alice:$(cut -d: -f2 "$BATS_FILE_TMPDIR/psk/keys.psk")"
}

# openssl_clients ARGS: tests/tls-clients.py against the running server.
openssl_clients() {
    run /usr/bin/python3 "$PYCLIENT" "$sock" x509 "$BATS_FILE_TMPDIR/pki" "$@"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *" 0 stalled, 0 errors"* ]]
}

# gnutls_clients ARGS: tests/tls-client against the running server.
gnutls_clients() {
    run "$CLIENT" "$sock" "$@"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *" 0 stalled, 0 errors"* ]]
}

@test "X.509, TLS 1.3, OpenSSL: 300 clients one at a time, each sending its option right after the handshake" {
    stress_requires
    x509_server
    openssl_clients --count 300 --parallel 1 --tls 1.3
}

@test "X.509, TLS 1.3, OpenSSL: the option in the same write as the last handshake bytes, a READ pipelined behind it, 8 at once" {
    stress_requires
    x509_server
    openssl_clients --count 200 --parallel 8 --tls 1.3 --same-write --pipeline
}

@test "X.509, TLS 1.2, OpenSSL, with and without a client certificate" {
    stress_requires
    x509_server
    openssl_clients --count 100 --parallel 1 --tls 1.2 --pipeline
    openssl_clients --count 100 --parallel 2 --no-client-cert
}

@test "PSK, TLS 1.3, gnutls: the option and a READ in the same write as the last handshake bytes" {
    stress_requires
    psk_server
    gnutls_clients --psk "$(psk_key)" --tls 1.3 --pipeline --count 200 --parallel 1
    gnutls_clients --psk "$(psk_key)" --tls 1.3 --pipeline --count 100 --parallel 8
}

@test "PSK and X.509, TLS 1.2, gnutls with False Start: the option before the server's Finished" {
    stress_requires
    psk_server
    gnutls_clients --psk "$(psk_key)" --tls 1.2 --false-start --pipeline --count 100 --parallel 1
    stop_server
    x509_server
    gnutls_clients --x509 "$BATS_FILE_TMPDIR/pki" --tls 1.2 --false-start --pipeline --count 100 --parallel 4
}

@test "X.509, TLS 1.3, gnutls: a key update and a READ in one write are answered" {
    stress_requires
    x509_server
    gnutls_clients --x509 "$BATS_FILE_TMPDIR/pki" --tls 1.3 --key-update --count 50
}

@test "close_notify in the same write as the last request: the request is still answered" {
    stress_requires
    x509_server
    gnutls_clients --x509 "$BATS_FILE_TMPDIR/pki" --tls 1.3 --close-with-request --count 50
    gnutls_clients --x509 "$BATS_FILE_TMPDIR/pki" --tls 1.2 --close-with-request --count 50
    stop_server
    psk_server
    gnutls_clients --psk "$(psk_key)" --close-with-request --count 50
}

@test "a plaintext client that shuts down its side right behind 20 requests gets all 20 replies" {
    start_server memory 1M
    run /usr/bin/python3 "$RAWCLIENT" "$sock" shutdown_behind_requests
    echo "$output"
    [ "$status" -eq 0 ]
}

# strace makes every system call of the server slow, so that the client
# often answers the server's handshake before the server reads again:
# then the whole TLS handshake, and the option behind it, are handled
# in one callback -- the case that once left replies unsent.
@test "a slowed server (under strace) answers 150 TLS clients one at a time" {
    stress_requires
    # Every system call stops a traced server: the loop watchdog
    # would count those stops as blocking.
    NBDKIT_LOOP_WATCHDOG_FILE= start_traced_server -f -- \
        --tls=require --tls-certificates="$BATS_FILE_TMPDIR/pki" memory 64M
    openssl_clients --count 150 --parallel 1 --tls 1.3 || {
        stop_traced_server; return 1; }
    stop_traced_server
}
