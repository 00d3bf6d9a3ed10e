# contrib/example-node: the example backend in JavaScript, written from
# the protocol page alone, served by the real server to real clients.

load helpers

EXAMPLE=$top_srcdir/contrib/example-node/nbdkit-example-node-backend

setup() {
    requires node
}

@test "the Node.js example serves a writable RAM disk of the size asked" {
    requires nbdinfo
    start_server "$EXAMPLE" size=1M
    run nbdinfo --json "$uri"
    echo "$output"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"export-size": 1048576'
    echo "$output" | grep -q '"is_read_only": false'
    echo "$output" | grep -q '"can_trim": true'
    echo "$output" | grep -q '"can_zero": true'
    echo "$output" | grep -q '"can_flush": true'
}

@test "the Node.js example reads back byte for byte what nbdsh wrote" {
    requires nbdsh
    start_server "$EXAMPLE" size=1M
    nbd_py '
assert h.pread(1 << 20, 0) == bytes(1 << 20)
data = os.urandom(300001)
h.pwrite(data, 12345)
assert h.pread(300001, 12345) == data
h.pwrite(b"last", (1 << 20) - 4, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(4, (1 << 20) - 4) == b"last"
assert h.pread(12345, 0) == bytes(12345)
'
}

@test "the Node.js example zeroes and trims ranges" {
    requires nbdsh
    start_server "$EXAMPLE" 1M
    nbd_py '
h.pwrite(b"\xff" * (1 << 20), 0)
h.zero(100000, 1000)
h.zero(4096, 200000, nbd.CMD_FLAG_NO_HOLE)
h.trim(65536, 65536 * 4)
d = h.pread(1 << 20, 0)
assert d[:1000] == b"\xff" * 1000
assert d[1000:101000] == bytes(100000)
assert d[101000:200000] == b"\xff" * 99000
assert d[200000:204096] == bytes(4096)
assert d[204096:65536 * 4] == b"\xff" * (65536 * 4 - 204096)
assert d[65536 * 4:65536 * 5] == bytes(65536)
assert d[65536 * 5:] == b"\xff" * ((1 << 20) - 65536 * 5)
'
}

@test "nbdcopy copies a file through the Node.js example unchanged" {
    requires nbdcopy
    start_server "$EXAMPLE" size=8M
    random_file "$BATS_TEST_TMPDIR/in" 8M
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
}

@test "with -r the Node.js example refuses writes with EPERM" {
    requires nbdsh
    start_server -r "$EXAMPLE" size=64k
    nbd_py '
assert h.is_read_only()
try:
    h.pwrite(b"x", 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
}

@test "the Node.js example checks its parameters" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" "$EXAMPLE" --run true
    [ "$status" -ne 0 ]
    [[ "$output" == *"size of the disk is required"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" "$EXAMPLE" size=12Q --run true
    [ "$status" -ne 0 ]
    [[ "$output" == *"12Q"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" "$EXAMPLE" 1M colour=red --run true
    [ "$status" -ne 0 ]
    [[ "$output" == *"unknown parameter 'colour'"* ]]
    run "$NBDKIT" "$EXAMPLE" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"size=<SIZE>"* ]]
}

@test "run by hand, the Node.js example explains that nbdkit starts it" {
    run env -u NBDKIT_HELPER_FD "$EXAMPLE"
    [ "$status" -eq 1 ]
    [[ "$output" == *"started by nbdkit"* ]]
}

@test "the Node.js example ends when the server stops" {
    requires nbdinfo
    start_server "$EXAMPLE" size=1M
    nbdinfo --size "$uri"
    pid=$(backend_pid)
    [ -n "$pid" ]
    stop_server
    not kill -0 "$pid" 2>/dev/null
}
