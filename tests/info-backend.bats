# The info backend: a disk that holds the client's export name, its
# address (checked against the socket the test connected from) or a
# time, read with real clients.

load helpers

# start_tcp_server BACKEND [PARAMS]: the server on 127.0.0.1 or ::1
# ($host) at a free port ($port), for teardown to stop.
start_tcp_server() {
    local pidfile=$BATS_TEST_TMPDIR/server.pid try
    log=$BATS_TEST_TMPDIR/server.log
    for try in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 20000))
        rm -f "$pidfile"
        "$NBDKIT" -f -i "$host" -p "$port" -P "$pidfile" "$@" \
            </dev/null >/dev/null 2>"$log" 3>&- &
        server_pid=$!
        wait_until eval 'test -s "$pidfile" || ! kill -0 $server_pid 2>/dev/null'
        test -s "$pidfile" && kill -0 "$server_pid" 2>/dev/null && return 0
        wait "$server_pid" || true
        server_pid=
    done
    cat "$log" >&2
    return 1
}

# Connect from a socket of our own, so that we know the client's
# address, and check that the disk holds it as nbdkit writes it.
check_address() {
    /usr/bin/python3 - "$host" "$port" <<'EOF'
import nbd, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.connect((host, port))
me = s.getsockname()
h = nbd.NBD()
h.connect_socket(s.detach())
got = bytes(h.pread(h.get_size(), 0))
want = ("[%s]:%d" if fam == socket.AF_INET6 else "%s:%d") % (me[0], me[1])
assert got == want.encode(), (got, want)
assert h.is_read_only()
print(got.decode())
EOF
}

@test "info: mode=address over IPv4 is the client's address and port" {
    requires nbdsh
    host=127.0.0.1
    start_tcp_server info mode=address
    run check_address
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == 127.0.0.1:* ]]
}

@test "info: mode=address over IPv6 is [address]:port" {
    requires nbdsh
    /usr/bin/python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null ||
        skip "no IPv6 loopback here"
    host=::1
    start_tcp_server info address
    run check_address
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == "[::1]:"* ]]
}

@test "info: mode=address over a unix socket is 'unix'" {
    requires nbdcopy
    start_server info mode=address
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(cat "$BATS_TEST_TMPDIR/out")" = unix ]
}

@test "info: the default mode serves the export name, byte for byte" {
    requires nbdsh
    start_server info
    /usr/bin/python3 - "$sock" <<'EOF'
import nbd, sys
for name in ["hello", "hello world", "ünïcode ☃", "x" * 4000]:
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sys.argv[1])
    assert h.get_size() == len(name.encode()), name
    assert bytes(h.pread(h.get_size(), 0)) == name.encode(), name
    assert h.is_read_only() and h.can_multi_conn() and h.can_cache()
    h.shutdown()
# The empty export name is an empty disk.
h = nbd.NBD()
h.connect_unix(sys.argv[1])
assert h.get_size() == 0
EOF
}

@test "info: mode=base64exportname decodes the export name into any bytes" {
    requires nbdsh base64
    start_server info mode=base64exportname
    head -c 3000 /dev/urandom > "$BATS_TEST_TMPDIR/blob"
    b64=$(base64 -w0 < "$BATS_TEST_TMPDIR/blob")
    /usr/bin/python3 - "$sock" "$b64" "$BATS_TEST_TMPDIR/out" <<'EOF'
import nbd, sys
h = nbd.NBD()
h.set_export_name(sys.argv[2])
h.connect_unix(sys.argv[1])
open(sys.argv[3], "wb").write(h.pread(h.get_size(), 0))
EOF
    cmp "$BATS_TEST_TMPDIR/blob" "$BATS_TEST_TMPDIR/out"
    # As nbdkit: padding is required, white space is skipped.
    /usr/bin/python3 - "$sock" <<'EOF'
import nbd, sys
for name, want in (("YQ==", b"a"), ("Y Q==\n", b"a"), ("YWJj", b"abc"),
                   ("YQ", None), ("YQ=", None), ("YWI", None)):
    h = nbd.NBD()
    h.set_export_name(name)
    try:
        h.connect_unix(sys.argv[1])
    except nbd.Error:
        assert want is None, name
        continue
    assert bytes(h.pread(h.get_size(), 0)) == want, name
EOF
}

@test "info: an export name that is not base64 is refused at open" {
    requires nbdsh
    start_server info mode=base64exportname
    run /usr/bin/python3 - "$sock" <<'EOF'
import nbd, sys
h = nbd.NBD()
h.set_export_name("not base64!")
try:
    h.connect_unix(sys.argv[1])
except nbd.Error as e:
    print("refused:", e.string)
    sys.exit(0)
sys.exit(1)
EOF
    [ "$status" -eq 0 ]
    [[ "$output" == refused:* ]]
    grep -q "export name 'not base64!' is not base64" "$log"
}

@test "info: the time modes serve 12 bytes: seconds and microseconds" {
    requires nbdsh
    start_server info mode=time
    nbd_py '
import struct, time
assert h.get_size() == 12
before = time.time()
s, us = struct.unpack(">QI", h.pread(12, 0))
after = time.time()
assert us < 1000000
assert int(before) - 1 <= s <= int(after) + 1, (before, s, after)
assert not h.can_multi_conn()
'
    stop_server
    for m in uptime conntime; do
        start_server info mode=$m
        nbd_py '
import struct
assert h.get_size() == 12
a = struct.unpack(">QI", h.pread(12, 0))
b = struct.unpack(">QI", h.pread(12, 0))
assert a[1] < 1000000 and b[1] < 1000000
# The clock goes forward and starts near zero (a test, not an hour).
assert a <= b and a[0] < 3600, (a, b)
'
        stop_server
    done
}

@test "info: the uptime counts from the server's start, not the backend's" {
    # Both clocks are CLOCK_MONOTONIC: the uptime read after the restart
    # must be at least the first one plus the time the client saw pass
    # between the two reads (a count restarted with the backend is less).
    requires nbdsh
    start_server info mode=uptime
    nbd_py '
import struct, time
a = struct.unpack(">QI", h.pread(12, 0))
t1 = time.monotonic()
open("'"$BATS_TEST_TMPDIR"'/a", "w").write("%d %d %r" % (a[0], a[1], t1))
'
    kill -KILL "$(backend_pid)"
    wait_until grep -q "backend restarted" "$log"
    nbd_py '
import struct, time
s, us, t1 = open("'"$BATS_TEST_TMPDIR"'/a").read().split()
a = int(s) + int(us) / 1e6
t2 = time.monotonic()
s, us = struct.unpack(">QI", h.pread(12, 0))
b = s + us / 1e6
assert b + 1e-6 >= a + (t2 - float(t1)), (a, b, t2 - float(t1))
'
}

@test "info: writes are refused, the disk is read-only" {
    requires nbdsh
    start_server info
    /usr/bin/python3 - "$sock" <<'EOF'
import nbd, errno, sys
h = nbd.NBD()
h.set_export_name("abc")
h.connect_unix(sys.argv[1])
assert h.is_read_only()
try:
    h.pwrite(b"x", 0)
    assert False
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
EOF
}

@test "info: bad parameters are refused with status 1" {
    run "$NBDKIT" info mode=foo
    [ "$status" -eq 1 ]
    [[ "$output" == *"mode=foo: unknown mode (use exportname, base64exportname, address, time, uptime or conntime)"* ]]
    run "$NBDKIT" info colour=red
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown parameter 'colour'"* ]]
    run "$NBDKIT" info bogus
    [ "$status" -eq 1 ]
    [[ "$output" == *"mode=bogus: unknown mode"* ]]
}
