# Shared set-up for the bats files: where things are, starting and
# stopping a server on a private unix socket, and small checks.  Every
# test gets its own directory ($BATS_TEST_TMPDIR) and its own server.

export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH
top_srcdir=${top_srcdir:-$(cd "$BATS_TEST_DIRNAME/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
NBDKIT=${NBDKIT:-$top_builddir/nbdkit/nbdkit}
FAULTY=$top_srcdir/tests/faulty-backend
RAWCLIENT=$top_srcdir/tests/raw-client.py

# Skip the test unless these commands exist.
requires() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
    done
}

# not CMD...: fail if CMD succeeds.  Every negative check is written
# so, never "! CMD": bash's errexit ignores a "!" pipeline, so bats
# fails a test on one only when it is the test's last command.  A
# pipeline: "A | not B".
not() {
    if "$@"; then
        echo "# expected to fail, but succeeded: $*" >&2
        return 1
    fi
}

# Wait (bounded) until a command succeeds.  Readiness only: no test
# asserts on how long anything takes.
wait_until() {
    local i
    for i in $(seq 300); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# start_server [NBDKIT OPTIONS] BACKEND [PARAMS]: run the server in the
# foreground (in the background of the test) on a private unix socket.
# Sets $sock, $uri, $server_pid, $log.
start_server() {
    sock=$BATS_TEST_TMPDIR/sock
    log=$BATS_TEST_TMPDIR/server.log
    local pidfile=$BATS_TEST_TMPDIR/server.pid
    rm -f "$sock" "$pidfile"
    "$NBDKIT" -f -U "$sock" -P "$pidfile" "$@" </dev/null >/dev/null 2>"$log" 3>&- &
    server_pid=$!
    export server_pid
    uri="nbd+unix:///?socket=$sock"
    export uri
    if ! wait_until test -s "$pidfile"; then
        echo "the server did not start; its log:" >&2
        cat "$log" >&2
        return 1
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "the server exited at once; its log:" >&2
        cat "$log" >&2
        return 1
    fi
}

# start_traced_server [STRACE OPTIONS] -- [NBDKIT OPTIONS] BACKEND
# [PARAMS]: like start_server, with the server run under strace (which
# makes its system calls slow, or injects faults).  Sets $sock, $uri,
# $log, $server_pid (the server's, read from its pid file) and $tracer
# (strace's); skips when strace cannot trace here.  LeakSanitizer
# cannot run under ptrace, so a sanitizer build runs without it.
# Stop it with stop_traced_server.
start_traced_server() {
    local pidfile=$BATS_TEST_TMPDIR/server.pid strace_args=()
    requires strace
    while [ $# -gt 0 ] && [ "$1" != -- ]; do strace_args+=("$1"); shift; done
    shift
    sock=$BATS_TEST_TMPDIR/sock
    log=$BATS_TEST_TMPDIR/server.log
    uri="nbd+unix:///?socket=$sock"
    rm -f "$sock" "$pidfile"
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
    strace -qq -o /dev/null "${strace_args[@]}" \
        "$NBDKIT" -f -U "$sock" -P "$pidfile" "$@" \
        </dev/null >/dev/null 2>"$log" 3>&- &
    tracer=$!
    if ! wait_until test -s "$pidfile"; then
        cat "$log" >&2
        kill "$tracer" 2>/dev/null || true
        wait "$tracer" || true
        grep -q "ptrace\|PTRACE\|Operation not permitted\|inject" "$log" &&
            skip "strace cannot trace or inject here"
        return 1
    fi
    server_pid=$(cat "$pidfile")
}

stop_traced_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$tracer" || true
    server_pid=
}

# Stop the server with SIGTERM and check that it and its backend went.
stop_server() {
    [ -n "${server_pid:-}" ] || return 0
    local backends
    backends=$(pgrep -P "$server_pid" || true)
    kill -TERM "$server_pid" 2>/dev/null || true
    if ! wait_until eval '! kill -0 $server_pid 2>/dev/null'; then
        kill -KILL "$server_pid" 2>/dev/null
        echo "the server did not stop on SIGTERM" >&2
        server_pid=
        return 1
    fi
    wait "$server_pid" 2>/dev/null
    server_status=$?
    server_pid=
    local p
    for p in $backends; do
        if kill -0 "$p" 2>/dev/null; then
            echo "backend process $p outlived the server" >&2
            return 1
        fi
    done
}

teardown() {
    stop_server
}

# The backend process of the running server.
backend_pid() {
    pgrep -P "$server_pid" | head -n 1
}

# Zombie children of the server (none expected).
zombies() {
    ps -o stat= --ppid "$server_pid" 2>/dev/null | grep -c '^Z' || true
}

# A file of random bytes: random_file PATH SIZE (e.g. 100M).
random_file() {
    head -c "$2" /dev/urandom > "$1"
}

sha() {
    sha256sum < "$1" | cut -d' ' -f1
}

# make_tls_files DIR: made with certtool and psktool (nothing, when
# they are missing: the tests then skip).
#   DIR/pki      a CA, a server and a client certificate (X.509)
#   DIR/rogue    a client certificate of another CA, and the real CA
#   DIR/psk      keys.psk (user alice) and wrong.psk (another key)
make_tls_files() {
    command -v certtool >/dev/null && command -v psktool >/dev/null || return 0
    local d=$1
    mkdir -p "$d/pki" "$d/rogue" "$d/psk" "$d/rogue-ca"
    (
        cd "$d"
        certtool --generate-privkey --outfile pki/ca-key.pem 2>/dev/null
        printf 'cn = Test CA\nca\ncert_signing_key\nexpiration_days = 30\n' > ca.info
        certtool --generate-self-signed --load-privkey pki/ca-key.pem \
            --template ca.info --outfile pki/ca-cert.pem 2>/dev/null
        cert() {    # cert DIR NAME KIND CA-DIR
            certtool --generate-privkey --outfile "$1/$2-key.pem" 2>/dev/null
            printf 'organization = Test\ncn = %s\ndns_name = localhost\nip_address = 127.0.0.1\n%s\nencryption_key\nsigning_key\nexpiration_days = 30\n' \
                "$2" "$3" > "$2.info"
            certtool --generate-certificate \
                --load-ca-certificate "$4/ca-cert.pem" \
                --load-ca-privkey "$4/ca-key.pem" \
                --load-privkey "$1/$2-key.pem" --template "$2.info" \
                --outfile "$1/$2-cert.pem" 2>/dev/null
        }
        cert pki server tls_www_server pki
        cert pki client tls_www_client pki
        # The rogue CA signs a client certificate; the client still
        # trusts the real CA for the server's certificate.
        certtool --generate-privkey --outfile rogue-ca/ca-key.pem 2>/dev/null
        certtool --generate-self-signed --load-privkey rogue-ca/ca-key.pem \
            --template ca.info --outfile rogue-ca/ca-cert.pem 2>/dev/null
        cert rogue client tls_www_client rogue-ca
        cp pki/ca-cert.pem rogue/ca-cert.pem
        psktool -u alice -p psk/keys.psk >/dev/null
        psktool -u alice -p psk/wrong.psk >/dev/null
    )
}

# Run a python snippet with nbd imported and h connected to $uri.
nbd_py() {
    /usr/bin/python3 -c "
import nbd, errno, os, sys
h = nbd.NBD()
h.connect_uri('$uri')
$1"
}

# kill_backend_during N CMD...: kill the backend with SIGKILL N times
# while CMD runs (the server must run with -v: see below).  An
# incarnation is killed only after it has answered what was sent to it
# again (the server says so with -v) and made some progress (50 write
# calls), so that the copy moves on between the kills.
kill_backend_during() {
    local times=$1; shift
    (
        local pid= last=0
        for i in $(seq "$times"); do
            wait_until eval 'pid=$(pgrep -n -P "$server_pid") &&
                             [ "$pid" != "$last" ]' || exit 0
            wait_until eval '[ "$(grep -c "backend restarted" "$log")" -ge $((i - 1)) ]' ||
                exit 0
            wait_until eval '[ "$(backend_writes "$pid")" -ge 50 ]' || exit 0
            wait_until eval '[ "$(resends_answered)" -ge "$(restarts_resending)" ]' ||
                exit 0
            kill -KILL "$pid" 2>/dev/null || true
            last=$pid
        done
    ) 3>&- &
    local killer=$! status=0
    "$@" || status=$?
    # A fast command may end before every kill: stop waiting for it.
    kill "$killer" 2>/dev/null || true
    wait "$killer" || true
    return "$status"
}

# The number of write system calls the backend process $1 has made.
backend_writes() {
    awk '/^syscw:/ { print $2 }' "/proc/$1/io" 2>/dev/null || echo 0
}

# Restarts that had requests to send again, and how many of those
# rounds of requests have all been answered.
restarts_resending() {
    grep -c "; [1-9][0-9]* requests to send again" "$log" || true
}
resends_answered() {
    grep -c "sent again after the restart are all answered" "$log" || true
}
