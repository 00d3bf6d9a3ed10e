# Captive use (nbdkit-captive(1)) and probing (nbdkit-probing(1)):
# --run with its variables and exit statuses, --print-uri,
# --exit-with-parent, --dump-config, --dump-plugin, --version.

load helpers

@test "--run exports uri, nbd, port, unixsocket, exportname and tls" {
    run "$NBDKIT" -U - -e disk1 memory 1M --run '
        echo "uri=$uri"; echo "nbd=$nbd"; echo "port=[$port]"
        echo "unixsocket=$unixsocket"; echo "exportname=$exportname"
        echo "tls=${tls-unset}"; echo "certs=[${tls_certificates-unset}]"'
    echo "$output"
    [ "$status" -eq 0 ]
    sock=$(echo "$output" | sed -n 's/^unixsocket=//p')
    [ -n "$sock" ]
    echo "$output" | grep -qx "uri=nbd+unix:///disk1?socket=$sock"
    echo "$output" | grep -qx "nbd=nbd+unix:///disk1?socket=$sock"
    echo "$output" | grep -qx "port=\[\]"
    echo "$output" | grep -qx "exportname=disk1"
    echo "$output" | grep -qx "tls=unset"
    echo "$output" | grep -qx "certs=\[unset\]"
    # -U - : the private socket is gone once the server is.
    [ ! -e "$sock" ]
}

@test "--run on TCP sets \$port and a nbd:// URI" {
    port=$((20000 + RANDOM % 20000))
    run "$NBDKIT" -i 127.0.0.1 -p "$port" memory 1M --run 'echo "$uri $port"'
    echo "$output"
    [ "$status" -eq 0 ] || skip "port $port is busy"
    [ "$output" = "nbd://localhost:$port $port" ]
}

@test "--run: the client sees the disk through \$uri" {
    requires nbdinfo
    run "$NBDKIT" -U - memory 3M --run 'nbdinfo --size "$uri"'
    [ "$status" -eq 0 ]
    [ "$output" = 3145728 ]
}

@test "the exit status of --run is the command's: 0, 2, and 128+N for a signal" {
    run "$NBDKIT" -U - memory 1M --run 'exit 0'
    [ "$status" -eq 0 ]
    run "$NBDKIT" -U - memory 1M --run 'exit 2'
    [ "$status" -eq 2 ]
    run "$NBDKIT" -U - memory 1M --run 'kill -TERM $$'
    [ "$status" -eq $((128 + 15)) ]
    run "$NBDKIT" -U - memory 1M --run 'kill -KILL $$'
    [ "$status" -eq $((128 + 9)) ]
}

# As nbdkit: the command's exit is the server's, even when the server
# stopped first (exitlast, a SIGTERM): it waits for the command.
@test "--run: a server that stops first waits for the command's status" {
    requires nbdinfo
    run "$NBDKIT" -U - --filter=exitlast memory 1M --run '
        nbdinfo --size "$uri"
        for i in $(seq 100); do [ -S "$unixsocket" ] || break; sleep 0.1; done
        nbdinfo --size "$uri" 2>/dev/null && exit 9
        echo "the command ran on"
        exit 3'
    [ "$status" -eq 3 ]
    [[ "$output" == *"1048576"* ]]
    [[ "$output" == *"the command ran on"* ]]
    run "$NBDKIT" -U - -P "$BATS_TEST_TMPDIR/pid" memory 1M --run '
        for i in $(seq 100); do [ -s "'"$BATS_TEST_TMPDIR/pid"'" ] && break; sleep 0.1; done
        kill -TERM "$(cat "'"$BATS_TEST_TMPDIR/pid"'")"
        for i in $(seq 100); do [ -S "$unixsocket" ] || break; sleep 0.1; done
        echo "after the server"
        exit 4'
    [ "$status" -eq 4 ]
    [[ "$output" == *"after the server"* ]]
}

@test "--run with TLS sets tls and tls_certificates" {
    requires certtool
    mkdir "$BATS_TEST_TMPDIR/pki"
    cd "$BATS_TEST_TMPDIR/pki"
    certtool --generate-privkey --outfile server-key.pem 2>/dev/null
    printf 'cn = localhost\ntls_www_server\nencryption_key\nsigning_key\n' > t
    certtool --generate-self-signed --load-privkey server-key.pem \
        --template t --outfile server-cert.pem 2>/dev/null
    run "$NBDKIT" -U - --tls=require --tls-certificates="$BATS_TEST_TMPDIR/pki" \
        memory 1M --run 'echo "$tls $tls_certificates $uri"'
    echo "$output"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q "^2 $BATS_TEST_TMPDIR/pki nbds+unix://?socket="
}

@test "--run cannot be combined with -s" {
    run "$NBDKIT" -s memory 1M --run true
    [ "$status" -eq 1 ]
    echo "$output" | grep -q -- "--run cannot be combined with -s"
}

@test "--print-uri prints the URI once the server is ready" {
    requires nbdinfo
    "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" --print-uri memory 1M \
        > "$BATS_TEST_TMPDIR/out" 3>&- &
    server_pid=$!
    wait_until test -s "$BATS_TEST_TMPDIR/out"
    [ "$(cat "$BATS_TEST_TMPDIR/out")" = "nbd+unix://?socket=$BATS_TEST_TMPDIR/s" ]
    [ "$(nbdinfo --size "$(cat "$BATS_TEST_TMPDIR/out")")" = 1048576 ]
}

@test "--exit-with-parent: the server exits when its parent is killed" {
    # The parent is a shell that starts the server and waits.
    sh -c 'echo $$ > "$1/parent"; exec "$2" -U "$1/s" --exit-with-parent -P "$1/pid" memory 1M & wait' \
        sh "$BATS_TEST_TMPDIR" "$NBDKIT" 3>&- &
    wait_until test -s "$BATS_TEST_TMPDIR/pid"
    pid=$(cat "$BATS_TEST_TMPDIR/pid")
    kill -0 "$pid"
    kill -KILL "$(cat "$BATS_TEST_TMPDIR/parent")"
    wait_until eval '! kill -0 '"$pid"' 2>/dev/null'
}

@test "--exit-with-parent with --run and -U -" {
    requires nbdinfo
    run "$NBDKIT" --exit-with-parent -U - memory 1M --run 'nbdinfo --size "$uri"'
    [ "$status" -eq 0 ]
    [ "$output" = 1048576 ]
}

@test "--dump-config prints nbdkit's keys" {
    run "$NBDKIT" --dump-config
    [ "$status" -eq 0 ]
    echo "$output"
    for key in binary version version_major version_minor libdir plugindir \
               filterdir host_cpu host_os tls exit_with_parent; do
        echo "$output" | grep -q "^$key="
    done
    echo "$output" | grep -qx "binary=$NBDKIT"
    echo "$output" | grep -qx "tls=yes"
}

@test "BACKEND --dump-plugin prints the backend's fields" {
    run "$NBDKIT" memory --dump-plugin
    [ "$status" -eq 0 ]
    echo "$output"
    for key in path name version api_version thread_model has_pread \
               has_pwrite has_extents; do
        echo "$output" | grep -q "^$key="
    done
    echo "$output" | grep -qx "name=memory"
    echo "$output" | grep -qx "has_pread=1"
    run "$NBDKIT" nosuchbackend --dump-plugin
    [ "$status" -eq 1 ]
}

@test "BACKEND --version prints the server's and the backend's versions" {
    run "$NBDKIT" memory --version
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "nbdkit 1.32.0" ]
    echo "${lines[1]}" | grep -q "^memory "
    run "$NBDKIT" nosuchbackend --version
    [ "$status" -eq 1 ]
}

@test "--run runs as the invoking user while -u and -g drop the server's" {
    [ "$(id -u)" -eq 0 ] || skip "needs root to change user"
    id nobody >/dev/null 2>&1 || skip "no user nobody"
    requires nbdinfo
    # Once nbdinfo was answered, the server is past the change of user.
    run "$NBDKIT" -u nobody -g "$(id -gn nobody)" -U - memory 1M --run '
        nbdinfo --size "$uri"
        echo "run=$(id -u)"
        echo "server=$(ps -o user= -p $PPID)"'
    [ "$status" -eq 0 ]
    [[ "$output" == *"run=0"* ]]
    [[ "$output" == *"server=nobody"* ]]
    [[ "$output" == *"1048576"* ]]
}
