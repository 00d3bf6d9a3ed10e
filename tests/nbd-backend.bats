#!/usr/bin/env bats
# The nbd backend (issue 19, item 3), a proxy to another NBD server as
# nbdkit-nbd-plugin: this server in front of another instance of
# itself, of qemu-nbd and of nbd-server, each started here on a
# private unix socket or a free loopback port (never a machine's
# service), and reached over unix sockets, TCP, an NBD URI, socket
# activation (command=) and an inherited socket (socket-fd=); TLS with
# pre-shared keys and X.509; checksummed nbdcopy copies in and out on 1
# and 4 connections; block status and capabilities as the upstream
# server has them; its errors passed through; the upstream server
# killed and restarted with retry=; and the checks of the parameters.
# Where Debian's nbdkit and its nbd plugin are installed, the same is
# run through it and the outputs compared; the expectations written
# here were taken from nbdkit 1.32.5.

load helpers

NBD_BACKEND=$top_builddir/backends/nbd/nbdkit-nbd-backend
REF=/usr/bin/nbdkit

setup_file() {
    make_tls_files "$BATS_FILE_TMPDIR"
}

setup() {
    [ -x "$NBD_BACKEND" ] ||
        skip "the nbd backend was not built: configure found no libnbd (apt-get install libnbd-dev, then configure again)"
    requires nbdinfo nbdsh nbdcopy
    upstream_pids=()
    upstream_pidfiles=()
}

teardown() {
    local p f status=0
    stop_server || status=1
    for p in "${upstream_pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    # nbd-server forks into the background and forks once per client.
    for f in "${upstream_pidfiles[@]}"; do
        p=$(cat "$f" 2>/dev/null) || continue
        pkill -TERM -P "$p" 2>/dev/null || true
        kill -TERM "$p" 2>/dev/null || true
        wait_until eval '! kill -0 '"$p"' 2>/dev/null' || kill -KILL "$p" || true
    done
    return "$status"
}

# Debian's nbdkit with its nbd plugin, to compare with.
requires_reference() {
    [ -x "$REF" ] && "$REF" nbd --dump-plugin >/dev/null 2>&1 ||
        skip "no Debian nbdkit with the nbd plugin at $REF to compare with (apt-get install nbdkit)"
}

free_port() {
    /usr/bin/python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

port_open() {
    /usr/bin/python3 -c '
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null
}

# upstream_nbdkit NAME [NBDKIT ARGS]: another instance of this server,
# on the unix socket $BATS_TEST_TMPDIR/NAME.sock unless the arguments
# say -p.  Its pid is $up_pid.
upstream_nbdkit() {
    local name=$1; shift
    local pidfile=$BATS_TEST_TMPDIR/$name.pid listen=()
    case " $* " in
        *" -p "*) ;;
        *) listen=(-U "$BATS_TEST_TMPDIR/$name.sock"); rm -f "$BATS_TEST_TMPDIR/$name.sock" ;;
    esac
    rm -f "$pidfile"
    "$NBDKIT" -f -P "$pidfile" "${listen[@]}" "$@" \
        </dev/null >/dev/null 2>>"$BATS_TEST_TMPDIR/$name.log" 3>&- &
    up_pid=$!
    upstream_pids+=("$up_pid")
    if ! wait_until test -s "$pidfile"; then
        cat "$BATS_TEST_TMPDIR/$name.log" >&2
        return 1
    fi
}

# upstream_qemu_nbd unix|tcp IMAGE [QEMU-NBD ARGS]: qemu-nbd serving the
# raw IMAGE, on $BATS_TEST_TMPDIR/qemu.sock or on port $up_port.
upstream_qemu_nbd() {
    local how=$1 img=$2 log=$BATS_TEST_TMPDIR/qemu-nbd.log where=()
    shift 2
    requires qemu-nbd
    if [ "$how" = unix ]; then
        rm -f "$BATS_TEST_TMPDIR/qemu.sock"
        where=(-k "$BATS_TEST_TMPDIR/qemu.sock")
    else
        up_port=$(free_port)
        where=(-b 127.0.0.1 -p "$up_port")
    fi
    qemu-nbd -f raw --persistent -e 8 "${where[@]}" "$@" "$img" \
        </dev/null >"$log" 2>&1 3>&- &
    up_pid=$!
    upstream_pids+=("$up_pid")
    if [ "$how" = unix ]; then
        wait_until test -S "$BATS_TEST_TMPDIR/qemu.sock"
    else
        wait_until port_open "$up_port"
    fi || skip "qemu-nbd did not start: $(cat "$log")"
}

# upstream_nbd_server unix|tcp IMAGE [OPTION=VALUE ...]: nbd-server
# serving IMAGE as export "disk", with a private configuration, as the
# user running the tests, on $BATS_TEST_TMPDIR/nbd-server/sock or on
# port $up_port.
upstream_nbd_server() {
    local how=$1 img=$2 d=$BATS_TEST_TMPDIR/nbd-server o
    shift 2
    requires nbd-server
    mkdir -p "$d"
    rm -f "$d/sock" "$d/pid"
    {
        echo "[generic]"
        if [ "$how" = unix ]; then
            echo "    unixsock = $d/sock"
        else
            up_port=$(free_port)
            echo "    listenaddr = 127.0.0.1"
            echo "    port = $up_port"
        fi
        echo "    allowlist = true"
        echo "[disk]"
        echo "    exportname = $img"
        for o in trim=true flush=true fua=true "$@"; do
            echo "    ${o%%=*} = ${o#*=}"
        done
    } > "$d/config"
    nbd-server -C "$d/config" -p "$d/pid" </dev/null >"$d/log" 2>&1 3>&- ||
        skip "nbd-server did not start: $(cat "$d/log")"
    upstream_pidfiles+=("$d/pid")
    wait_until test -s "$d/pid" ||
        skip "nbd-server did not start: $(cat "$d/log")"
    if [ "$how" = unix ]; then
        wait_until test -S "$d/sock"
    else
        wait_until port_open "$up_port"
    fi || skip "nbd-server does not listen: $(cat "$d/log")"
}

# A 32 MiB disk image of random data with runs of zeroes.
make_image() {
    random_file "$1" 12M
    head -c 4M /dev/zero >> "$1"
    random_file "$1.more" 8M
    cat "$1.more" >> "$1"
    head -c 8M /dev/zero >> "$1"
    rm -f "$1.more"
}

# Copy a new image into the proxy and back out with nbdcopy, on 1 then
# 4 connections, checking the checksums; $1 (if given) is the file the
# upstream server serves, which must end up with the same data.
copy_in_and_out() {
    local src=$BATS_TEST_TMPDIR/src.img out=$BATS_TEST_TMPDIR/out.img c
    for c in 1 4; do
        make_image "$src"
        nbdcopy -C "$c" "$src" "$uri"
        rm -f "$out"
        nbdcopy -C "$c" "$uri" "$out"
        [ "$(sha "$out")" = "$(sha "$src")" ]
        if [ -n "${1:-}" ]; then
            [ "$(sha "$1")" = "$(sha "$src")" ]
        fi
    done
}

# What nbdinfo says of an export, without its URI (which names the
# socket) and, with --no-block-size, without the block size lines.
info() {
    local filter='uri:'
    if [ "$1" = --no-block-size ]; then filter='uri:|block_size'; shift; fi
    nbdinfo "$1" | grep -Ev "$filter"
}

map() {
    nbdinfo --map "$1"
}

# Block status with REQ_ONE, and without, from offset $2 over $3 bytes.
req_one() {
    /usr/bin/python3 -c '
import nbd, sys
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(sys.argv[1])
for flags in (nbd.CMD_FLAG_REQ_ONE, 0):
    got = []
    def cb(ctx, off, entries, err):
        got.extend(entries)
    h.block_status(int(sys.argv[3]), int(sys.argv[2]), cb, flags)
    print(flags, got)' "$@"
}

# ---- through another instance of this server ----

@test "nbd: proxy of this server on a unix socket: data, map and capabilities as upstream" {
    upstream_nbdkit up memory 32M
    start_server nbd socket="$BATS_TEST_TMPDIR/up.sock"
    copy_in_and_out
    local direct="nbd+unix:///?socket=$BATS_TEST_TMPDIR/up.sock"
    [ "$(map "$uri")" = "$(map "$direct")" ]
    [ "$(info "$uri")" = "$(info "$direct")" ]
    # Block status with REQ_ONE passed on: one extent, as upstream.
    [ "$(req_one "$uri" 1000 33000000)" = "$(req_one "$direct" 1000 33000000)" ]
    req_one "$uri" 1000 33000000 | grep -q '^8 \[[0-9]*, [0-9]*\]$'
}

@test "nbd: proxy of this server over TCP, by hostname= and port= and by URI" {
    local port
    port=$(free_port)
    upstream_nbdkit up -p "$port" -i 127.0.0.1 data '1 @1048576 2 @4194304 3' size=32M
    start_server nbd hostname=127.0.0.1 port="$port"
    [ "$(map "$uri")" = "$(map "nbd://127.0.0.1:$port")" ]
    [ "$(info "$uri")" = "$(info "nbd://127.0.0.1:$port")" ]
    copy_in_and_out
    stop_server
    start_server nbd "nbd://127.0.0.1:$port"
    [ "$(nbdinfo --size "$uri")" = 33554432 ]
}

@test "nbd: the upstream's errors pass through with their NBD error code" {
    upstream_nbdkit full full 1M
    upstream_nbdkit eio --filter=error memory 1M error=EIO error-pread-rate=100%
    start_server nbd socket="$BATS_TEST_TMPDIR/full.sock"
    nbd_py '
for f in (lambda: h.pwrite(b"x" * 512, 0), lambda: h.zero(512, 0),
          lambda: h.zero(512, 0, nbd.CMD_FLAG_FAST_ZERO)):
    try:
        f()
        sys.exit("no error")
    except nbd.Error as e:
        assert e.errno == "ENOSPC", e.errno
assert h.pread(512, 0) == bytes(512)
'
    stop_server
    start_server nbd socket="$BATS_TEST_TMPDIR/eio.sock"
    nbd_py '
try:
    h.pread(512, 0)
    sys.exit("no error")
except nbd.Error as e:
    assert e.errno == "EIO", e.errno
h.pwrite(b"y" * 512, 0)
'
}

@test "nbd: flags pass through: FUA, may-trim, fast zero, cache, flush, trim" {
    upstream_nbdkit up --filter=log memory 8M logfile="$BATS_TEST_TMPDIR/up-requests.log"
    start_server nbd socket="$BATS_TEST_TMPDIR/up.sock"
    nbd_py '
h.pwrite(b"a" * 65536, 0, nbd.CMD_FLAG_FUA)
h.zero(65536, 0, nbd.CMD_FLAG_FUA)
h.zero(4096, 65536, nbd.CMD_FLAG_NO_HOLE)
h.zero(4096, 131072, nbd.CMD_FLAG_FAST_ZERO)
h.trim(4096, 196608, nbd.CMD_FLAG_FUA)
h.cache(4096, 0)
h.flush()
assert h.pread(65536, 0) == bytes(65536)
'
    local log=$BATS_TEST_TMPDIR/up-requests.log
    cat "$log"
    wait_until grep -q 'Write .*count=0x10000 .*fua=1' "$log"
    wait_until grep -q 'Zero .*count=0x10000 .*fua=1' "$log"
    wait_until grep -q 'Zero .*offset=0x10000 .*trim=0' "$log"
    wait_until grep -q 'Zero .*offset=0x20000 .*fast=1' "$log"
    wait_until grep -q 'Trim .*offset=0x30000 .*fua=1' "$log"
    wait_until grep -q 'Cache ' "$log"
    wait_until grep -q 'Flush ' "$log"
}

@test "nbd: -r serves a writable upstream read-only; a read-only upstream refuses writes with EPERM" {
    upstream_nbdkit up memory 1M
    start_server -r nbd socket="$BATS_TEST_TMPDIR/up.sock"
    nbdinfo "$uri" | grep -q 'is_read_only: true'
    stop_server
    upstream_nbdkit ro -r memory 1M
    start_server nbd socket="$BATS_TEST_TMPDIR/ro.sock"
    nbdinfo "$uri" | grep -q 'is_read_only: true'
    nbd_py '
try:
    h.pwrite(b"x", 0)
    sys.exit("wrote")
except nbd.Error as e:
    assert e.errno == "EPERM", e.errno
'
}

@test "nbd: export=, and dynamic-export=true lists and opens the upstream's exports" {
    mkdir "$BATS_TEST_TMPDIR/dir"
    truncate -s 1M "$BATS_TEST_TMPDIR/dir/one"
    truncate -s 2M "$BATS_TEST_TMPDIR/dir/two"
    upstream_nbdkit up file dir="$BATS_TEST_TMPDIR/dir"
    start_server nbd socket="$BATS_TEST_TMPDIR/up.sock" export=two
    [ "$(nbdinfo --size "$uri")" = 2097152 ]
    nbdinfo --list "$uri" | grep -q '^export="two":'
    [ "$(nbdinfo --list "$uri" | grep -c '^export=')" = 1 ]
    stop_server
    start_server nbd socket="$BATS_TEST_TMPDIR/up.sock" dynamic-export=true
    [ "$(nbdinfo --list "$uri" | grep -c '^export=')" = 2 ]
    [ "$(nbdinfo --size "nbd+unix:///one?socket=$sock")" = 1048576 ]
    [ "$(nbdinfo --size "nbd+unix:///two?socket=$sock")" = 2097152 ]
}

@test "nbd: the upstream's default export keeps its canonical name with dynamic-export=true" {
    requires_reference
    # This server's exportname filter is not Debian's: use Debian's.
    rm -f "$BATS_TEST_TMPDIR/e.sock"
    "$REF" -f -U "$BATS_TEST_TMPDIR/e.sock" -P "$BATS_TEST_TMPDIR/e.pid" \
        --filter=exportname memory 1M default-export=bar exportname=bar 3>&- &
    upstream_pids+=($!)
    wait_until test -s "$BATS_TEST_TMPDIR/e.pid"
    start_server nbd socket="$BATS_TEST_TMPDIR/e.sock" dynamic-export=true
    nbdinfo "$uri" | grep -q '^export="bar":'
}

@test "nbd: shared=true: one upstream connection for all clients, made at start with retry=" {
    # The upstream comes up 2 seconds after the proxy: retry=5 waits.
    rm -f "$BATS_TEST_TMPDIR/late.sock"
    ( sleep 2; exec "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/late.sock" memory 32M ) \
        </dev/null >/dev/null 2>&1 3>&- &
    upstream_pids+=($!)
    start_server nbd socket="$BATS_TEST_TMPDIR/late.sock" shared=true retry=5
    copy_in_and_out
    # Without retry=, a shared connection that cannot be made stops the
    # server from starting, with the reason.
    run "$NBDKIT" -U - nbd socket="$BATS_TEST_TMPDIR/none.sock" shared=true --run true
    [ "$status" -ne 0 ]
    [[ "$output" == *"nbd_connect_unix: connect: No such file or directory"* ]]
}


# ---- the upstream server going away ----

# kill_and_restart SHARED: with the proxy at $sock in front of the
# upstream this server at $BATS_TEST_TMPDIR/up.sock (pid $up_pid), kill
# the upstream: the client's requests fail cleanly with EINVAL and its
# connection is not made again, even once the upstream is back; a new
# client connection (shared=false) is made again, with the proxy's
# retry=, when the upstream comes back 2 seconds after it connects; with
# shared=true its requests fail too.  All of which nbdkit 1.32 does.
kill_and_restart() {
    timeout 60 /usr/bin/python3 - "$sock" "$BATS_TEST_TMPDIR/up.sock" \
        "$up_pid" "$UPSTREAM_NBDKIT" "$1" <<'EOF'
import os, signal, subprocess, sys, threading, time
import nbd
sock, upsock, up_pid, nbdkit, shared = sys.argv[1:6]
procs = []
def start_upstream(delay=0):
    time.sleep(delay)
    if os.path.exists(upsock):
        os.unlink(upsock)
    procs.append(subprocess.Popen([nbdkit, "-f", "-U", upsock, "memory", "1M"],
                                  stdin=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    while not os.path.exists(upsock):
        time.sleep(0.05)
def fails(what, op):
    try:
        op()
    except nbd.Error as e:
        assert e.errno == "EINVAL", (what, e.errno, e.string)
        return
    sys.exit(what + ": worked without the upstream's connection")
try:
    h = nbd.NBD()
    h.connect_unix(sock)
    h.pwrite(b"a" * 512, 0)
    assert h.pread(512, 0) == b"a" * 512
    os.kill(int(up_pid), signal.SIGKILL)
    time.sleep(0.5)
    fails("pread", lambda: h.pread(512, 0))
    fails("pwrite", lambda: h.pwrite(b"b" * 512, 0))
    fails("flush", lambda: h.flush())
    start_upstream()
    fails("pread after the restart", lambda: h.pread(512, 0))
    procs[-1].kill()
    procs[-1].wait()
    # A new client while the upstream is down; it is back 2 seconds later.
    t = threading.Thread(target=start_upstream, args=(2,))
    t.start()
    t0 = time.monotonic()
    h2 = nbd.NBD()
    h2.connect_unix(sock)
    if shared == "true":
        fails("pread of a new client", lambda: h2.pread(512, 0))
    else:
        assert time.monotonic() - t0 >= 1, "connected before the upstream was back"
        assert h2.pread(512, 0) == bytes(512)
    t.join()
finally:
    for p in procs:
        p.kill()
        p.wait()
EOF
}

UPSTREAM_NBDKIT=$NBDKIT

@test "nbd: upstream killed: requests fail with EINVAL, a new client reconnects with retry=" {
    requires timeout
    upstream_nbdkit up memory 1M
    start_server nbd socket="$BATS_TEST_TMPDIR/up.sock" retry=5
    kill_and_restart false
}

@test "nbd: upstream killed under shared=true: requests of every client fail with EINVAL" {
    requires timeout
    upstream_nbdkit up memory 1M
    start_server nbd socket="$BATS_TEST_TMPDIR/up.sock" retry=5 shared=true
    kill_and_restart true
}

@test "nbd: upstream killed: Debian's nbdkit nbd plugin does the same (shared=false and true)" {
    requires timeout
    requires_reference
    upstream_nbdkit up memory 1M
    NBDKIT=$REF start_server nbd socket="$BATS_TEST_TMPDIR/up.sock" retry=5
    kill_and_restart false
    stop_server
    upstream_nbdkit up memory 1M
    NBDKIT=$REF start_server nbd socket="$BATS_TEST_TMPDIR/up.sock" retry=5 shared=true
    kill_and_restart true
}

# A read in flight when the upstream dies completes with EINVAL.
read_in_flight() {
    timeout 30 /usr/bin/python3 - "$uri" "$up_pid" <<'EOF'
import os, signal, sys, time
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
buf = nbd.Buffer(512)
cookie = h.aio_pread(buf, 0)
time.sleep(0.5)
os.kill(int(sys.argv[2]), signal.SIGKILL)
try:
    while not h.aio_command_completed(cookie):
        h.poll(-1)
    sys.exit("the read completed without the upstream")
except nbd.Error as e:
    assert e.errno == "EINVAL", (e.errno, e.string)
EOF
}

@test "nbd: a read in flight when the upstream dies fails with EINVAL (as nbdkit's)" {
    requires timeout
    upstream_nbdkit up --filter=delay memory 1M rdelay=3
    start_server nbd socket="$BATS_TEST_TMPDIR/up.sock"
    read_in_flight
    if [ -x "$REF" ] && "$REF" nbd --dump-plugin >/dev/null 2>&1; then
        stop_server
        upstream_nbdkit up --filter=delay memory 1M rdelay=3
        NBDKIT=$REF start_server nbd socket="$BATS_TEST_TMPDIR/up.sock"
        read_in_flight
    fi
}

# ---- qemu-nbd ----

@test "nbd: proxy of qemu-nbd on a unix socket: copies, map, description, block sizes" {
    local img=$BATS_TEST_TMPDIR/disk.img
    truncate -s 32M "$img"
    upstream_qemu_nbd unix "$img" -D "qemu's disk"
    local direct="nbd+unix:///?socket=$BATS_TEST_TMPDIR/qemu.sock"
    start_server nbd socket="$BATS_TEST_TMPDIR/qemu.sock"
    nbdinfo "$uri" | grep -q "description: qemu's disk"
    nbdinfo "$uri" | grep -q "block_size_preferred: 4096"
    copy_in_and_out "$img"
    [ "$(map "$uri")" = "$(map "$direct")" ]
    [ "$(info "$uri")" = "$(info "$direct")" ]
    [ "$(req_one "$uri" 1000 33000000)" = "$(req_one "$direct" 1000 33000000)" ]
}

@test "nbd: proxy of qemu-nbd over TCP, read-only, by URI with an export name" {
    local img=$BATS_TEST_TMPDIR/disk.img
    make_image "$img"
    upstream_qemu_nbd tcp "$img" -r -x exp
    start_server nbd "nbd://127.0.0.1:$up_port/exp"
    nbdinfo "$uri" | grep -q 'is_read_only: true'
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out.img"
    [ "$(sha "$BATS_TEST_TMPDIR/out.img")" = "$(sha "$img")" ]
    [ "$(map "$uri")" = "$(map "nbd://127.0.0.1:$up_port/exp")" ]
}

@test "nbd: command= runs qemu-nbd with its arg=s (socket activation), and stops it" {
    requires qemu-nbd
    local img=$BATS_TEST_TMPDIR/disk.img child
    truncate -s 32M "$img"
    start_server nbd command=qemu-nbd arg=-f arg=raw arg="$img"
    copy_in_and_out "$img"
    child=$(pgrep -P "$(backend_pid)")
    [ -n "$child" ]
    stop_server
    wait_until eval '! kill -0 '"$child"' 2>/dev/null'
}

@test "nbd: command= runs this server too; socket-fd= takes an inherited socket" {
    start_server nbd command="$NBDKIT" arg=memory arg=32M
    copy_in_and_out
    stop_server
    upstream_nbdkit up memory 32M
    # A wrapper that connects descriptor 3 to the upstream, then runs
    # the server.
    cat > "$BATS_TEST_TMPDIR/with-socket" <<EOF
#!/usr/bin/python3
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("$BATS_TEST_TMPDIR/up.sock")
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.execv("$NBDKIT", ["$NBDKIT"] + sys.argv[1:])
EOF
    chmod +x "$BATS_TEST_TMPDIR/with-socket"
    NBDKIT=$BATS_TEST_TMPDIR/with-socket start_server nbd socket-fd=3
    copy_in_and_out
}

# ---- nbd-server ----

@test "nbd: proxy of nbd-server on a unix socket: copies, map, capabilities" {
    local img=$BATS_TEST_TMPDIR/disk.img
    truncate -s 32M "$img"
    upstream_nbd_server unix "$img"
    start_server nbd socket="$BATS_TEST_TMPDIR/nbd-server/sock" export=disk
    [ "$(nbdinfo --size "$uri")" = 33554432 ]
    copy_in_and_out "$img"
    # nbd-server has no block status (nbdinfo --map refuses to ask
    # it): through the proxy, the whole disk is data.
    not nbdinfo --map "nbd+unix:///disk?socket=$BATS_TEST_TMPDIR/nbd-server/sock"
    [ "$(map "$uri" | tr -s ' ')" = " 0 33554432 0 data" ]
    nbdinfo "$uri" | grep -q 'can_trim: true'
    nbdinfo "$uri" | grep -q 'can_fua: true'
    nbdinfo "$uri" | grep -q 'can_multi_conn: true'
}

@test "nbd: proxy of nbd-server over TCP (hostname=localhost, port=)" {
    local img=$BATS_TEST_TMPDIR/disk.img
    truncate -s 32M "$img"
    upstream_nbd_server tcp "$img"
    start_server nbd hostname=localhost port="$up_port" export=disk
    copy_in_and_out "$img"
}

# ---- TLS ----

tls_requires() {
    requires certtool psktool
    [ -f "$BATS_FILE_TMPDIR/psk/keys.psk" ] || skip "no TLS credentials were made"
}

@test "nbd: TLS to the upstream with a pre-shared key (tls=require, tls-psk=, tls-username=)" {
    tls_requires
    local port
    port=$(free_port)
    upstream_nbdkit up -p "$port" -i 127.0.0.1 --tls=require \
        --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" memory 32M
    start_server nbd hostname=127.0.0.1 port="$port" tls=require \
        tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" tls-username=alice
    copy_in_and_out
    stop_server
    # The wrong key, or no TLS, gets no connection (and no data).
    start_server nbd hostname=127.0.0.1 port="$port" tls=require \
        tls-psk="$BATS_FILE_TMPDIR/psk/wrong.psk" tls-username=alice
    not nbdinfo --size "$uri"
    wait_until grep -q 'gnutls_handshake' "$log"
    stop_server
    start_server nbd hostname=127.0.0.1 port="$port"
    not nbdinfo --size "$uri"
    wait_until grep -q 'server requires TLS' "$log"
}

@test "nbd: TLS to the upstream with X.509 (tls-certificates=, checked against localhost)" {
    tls_requires
    local port
    port=$(free_port)
    upstream_nbdkit up -p "$port" -i 127.0.0.1 --tls=require \
        --tls-certificates="$BATS_FILE_TMPDIR/pki" memory 32M
    start_server nbd "nbds://localhost:$port/" \
        tls-certificates="$BATS_FILE_TMPDIR/pki"
    copy_in_and_out
    stop_server
    # Another CA: the server's certificate is not trusted...
    mkdir "$BATS_TEST_TMPDIR/other"
    cp "$BATS_FILE_TMPDIR/rogue-ca/ca-cert.pem" "$BATS_TEST_TMPDIR/other/"
    start_server nbd hostname=localhost port="$port" tls=require \
        tls-certificates="$BATS_TEST_TMPDIR/other"
    not nbdinfo --size "$uri"
    stop_server
    # ... unless tls-verify=false.
    start_server nbd hostname=localhost port="$port" tls=require \
        tls-certificates="$BATS_TEST_TMPDIR/other" tls-verify=false
    [ "$(nbdinfo --size "$uri")" = 33554432 ]
}

@test "nbd: TLS for the clients in front of a plaintext upstream" {
    tls_requires
    upstream_nbdkit up memory 8M
    start_server --tls=require --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" \
        nbd socket="$BATS_TEST_TMPDIR/up.sock"
    /usr/bin/python3 -c "
import nbd, os
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri('nbds+unix://alice@/?socket=$sock&tls-psk-file=$BATS_FILE_TMPDIR/psk/keys.psk')
assert h.get_tls_negotiated()
d = os.urandom(1 << 20)
h.pwrite(d, 4096)
assert h.pread(1 << 20, 4096) == d
"
}

# ---- compared with Debian's nbdkit ----

# nbdinfo, nbdinfo --map and nbdinfo --list through Debian's nbdkit
# nbd plugin and through this server, with the same parameters.
compare_with_reference() {
    local filter=cat out_ref out_ours
    if [ "$1" = --no-block-size ]; then filter='grep -v block_size'; shift; fi
    out_ref=$("$REF" -U - nbd "$@" --run 'nbdinfo "$uri"; nbdinfo --map "$uri"; nbdinfo --list "$uri"' 2>&1 |
              grep -v 'uri:' | $filter)
    out_ours=$("$NBDKIT" -U - nbd "$@" --run 'nbdinfo "$uri"; nbdinfo --map "$uri"; nbdinfo --list "$uri"' 2>&1 |
               grep -v 'uri:' | $filter)
    echo "Debian's nbdkit:"; echo "$out_ref"; echo "this one:"; echo "$out_ours"
    [ "$out_ref" = "$out_ours" ]
}

@test "nbd: nbdinfo through Debian's nbdkit nbd plugin and through this one are the same" {
    requires_reference
    upstream_nbdkit up data '1 @1048576 2 @4194304 3' size=32M
    compare_with_reference socket="$BATS_TEST_TMPDIR/up.sock"
    upstream_nbdkit ro -r --filter=nozero --filter=noextents memory 1M
    compare_with_reference socket="$BATS_TEST_TMPDIR/ro.sock"
    if command -v qemu-nbd >/dev/null; then
        truncate -s 32M "$BATS_TEST_TMPDIR/q.img"
        upstream_qemu_nbd unix "$BATS_TEST_TMPDIR/q.img" -D description -x exp
        compare_with_reference socket="$BATS_TEST_TMPDIR/qemu.sock" export=exp
        compare_with_reference command=qemu-nbd arg=-f arg=raw arg="$BATS_TEST_TMPDIR/q.img"
    fi
    if command -v nbd-server >/dev/null; then
        truncate -s 32M "$BATS_TEST_TMPDIR/n.img"
        upstream_nbd_server unix "$BATS_TEST_TMPDIR/n.img"
        # nbd-server sends no block size constraints; nbdkit then sends
        # none to its clients either, while this server's front end
        # always answers a client that asks with the defaults.
        compare_with_reference --no-block-size \
            socket="$BATS_TEST_TMPDIR/nbd-server/sock" export=disk
    fi
}

@test "nbd: --dump-plugin prints the libnbd lines as nbdkit does" {
    run "$NBDKIT" nbd --dump-plugin
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '^name=nbd$'
    echo "$output" | grep -q '^magic_config_key=uri$'
    echo "$output" | grep -q '^thread_model=parallel$'
    echo "$output" | grep -Eq '^libnbd_version=[0-9]+\.[0-9]+\.[0-9]+$'
    local ours
    ours=$(echo "$output" | grep '^libnbd_')
    requires_reference
    [ "$ours" = "$("$REF" nbd --dump-plugin | grep '^libnbd_')" ]
}

@test "nbd: --help describes every parameter" {
    run "$NBDKIT" nbd --help
    [ "$status" -eq 0 ]
    local p
    for p in '[uri=]' socket= hostname= port= vsock= command= arg= socket-fd= \
             export= dynamic-export= retry= shared= tls= tls-certificates= \
             tls-verify= tls-username= tls-psk=; do
        echo "$output" | grep -qF -- "$p" || { echo "no $p"; return 1; }
    done
}

@test "nbd: bad parameters are refused, naming the value" {
    local long_socket long_export
    long_socket=/$(printf 'x%.0s' {1..120})
    long_export=$(printf 'e%.0s' {1..4100})
    local cases=(
        'retry=-1|retry=-1'
        'retry=abc|retry=abc'
        'shared=maybe|maybe'
        'tls=maybe|tls=maybe'
        'tls-verify=perhaps|perhaps'
        'dynamic-export=2|2'
        'vsock=abc|vsock=abc'
        'vsock=4294967296|vsock=4294967296'
        'uri=foo|uri=foo'
        'http://example.com/|http://example.com/'
        'socket=|socket='
        'hostname=|hostname='
        'command=|command='
        'socket=/x hostname=y|hostname=y'
        'uri=nbd://x command=y|command=y'
        'hostname=localhost port=99999|port=99999'
        'hostname=localhost port=no-such-service|port=no-such-service'
        'vsock=2 port=http|port=http'
        'socket=/x port=10809|port=10809'
        'socket=/x arg=foo|arg=foo'
        'socket=/x dynamic-export=true shared=true|dynamic-export'
        'command=qemu-nbd dynamic-export=true|dynamic-export'
        'socket=/x dynamic-export=true export=foo|export=foo'
        'uri=nbd://x/y export=foo|export=foo'
        'socket=/x tls-psk=/nonexistent|tls-psk=/nonexistent'
        'socket=/x tls-certificates=/nonexistent|tls-certificates=/nonexistent'
        'socket=/x foo=bar|foo'
        "socket=$long_socket|socket=/xxx"
        "socket=/x export=$long_export|export=eee"
        '|socket='
    )
    local c args want
    for c in "${cases[@]}"; do
        args=${c%|*}
        want=${c##*|}
        # shellcheck disable=SC2086
        run "$NBDKIT" -U - nbd $args --run true
        echo "nbdkit nbd $args: $output"
        [ "$status" -ne 0 ]
        [[ "$output" == *"$want"* ]]
    done
}
