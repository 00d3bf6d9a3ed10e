# Serving disks: what real clients see of each backend.

load helpers

@test "nbdinfo describes a 1 GiB memory disk as writable" {
    requires nbdinfo
    start_server memory 1G
    run nbdinfo --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"export-size": 1073741824'
    echo "$output" | grep -q '"is_read_only": false'
    echo "$output" | grep -q '"can_multi_conn": true'
}

@test "nbdsh reads back byte for byte what it wrote" {
    requires nbdsh
    start_server memory 64M
    nbd_py '
data = os.urandom(3 << 20)
h.pwrite(data, 12345)
assert h.pread(len(data), 12345) == data
assert h.pread(12345, 0) == bytes(12345)
'
}

@test "a write with FUA and a flush are accepted and keep the data" {
    requires nbdsh
    start_server memory 1M
    nbd_py '
h.pwrite(b"x" * 4096, 0, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(4096, 0) == b"x" * 4096
'
}

@test "trim and write-zeroes read back as zeroes" {
    requires nbdsh
    start_server memory 4M
    nbd_py '
h.pwrite(b"\xff" * (2 << 20), 0)
h.trim(1 << 20, 0)
h.zero(4096, 1 << 20)
h.zero(4096, (1 << 20) + 8192, nbd.CMD_FLAG_NO_HOLE)
d = h.pread(2 << 20, 0)
assert d[:1 << 20] == bytes(1 << 20)
assert d[1 << 20:(1 << 20) + 4096] == bytes(4096)
assert d[(1 << 20) + 4096:(1 << 20) + 8192] == b"\xff" * 4096
assert d[(1 << 20) + 8192:(1 << 20) + 12288] == bytes(4096)
'
}

@test "a memory disk of 2^63-1 bytes is served" {
    requires nbdsh
    start_server memory size=9223372036854775807
    nbd_py '
size = h.get_size()
assert size == 2**63 - 1, size
h.pwrite(b"end", size - 3)
assert h.pread(3, size - 3) == b"end"
'
}

@test "the null backend reads zeroes and discards writes" {
    requires nbdsh
    start_server null size=1M
    nbd_py '
h.pwrite(b"x" * 512, 0)
assert h.pread(512, 0) == bytes(512)
assert h.get_size() == 1 << 20
'
}

@test "example1 serves a fixed read-only disk with a partition table" {
    requires nbdsh
    start_server example1
    nbd_py '
assert h.is_read_only()
assert h.get_size() == 100 << 20
s = h.pread(512, 0)
assert s[510:512] == b"\x55\xaa"
assert s[0x1be + 4] == 0x83
assert h.pread(512, 7 * 512) == bytes(512)
try:
    h.pwrite(b"x", 0)
    sys.exit("a write on example1 succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
}

@test "the file backend serves the bytes of the file" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 5M
    start_server file "$BATS_TEST_TMPDIR/disk"
    nbd_py "
d = open('$BATS_TEST_TMPDIR/disk', 'rb').read()
assert h.get_size() == len(d)
assert h.pread(len(d), 0) == d
h.pwrite(b'new data', 4096)
h.flush()
"
    [ "$(dd if="$BATS_TEST_TMPDIR/disk" bs=1 skip=4096 count=8 status=none)" = "new data" ]
}

@test "a file that cannot be written is served read-only" {
    requires nbdsh
    dir=$(mktemp -d /tmp/nbdkit-ro.XXXXXX)
    chmod 755 "$dir"
    random_file "$dir/disk" 1M
    chmod 444 "$dir/disk"
    # root may write anything: run the backend as nobody instead.
    as=()
    [ "$(id -u)" -ne 0 ] || as=(--backend-user=nobody)
    start_server "${as[@]}" file "$dir/disk"
    nbd_py "
assert h.is_read_only()
assert h.pread(512, 0) == open('$dir/disk', 'rb').read(512)
"
    rm -rf "$dir"
}

@test "with -r a write fails with EPERM and the data is unchanged" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    before=$(sha "$BATS_TEST_TMPDIR/disk")
    start_server -r file "$BATS_TEST_TMPDIR/disk"
    nbd_py '
assert h.is_read_only()
for op in (lambda: h.pwrite(b"x" * 512, 0),
           lambda: h.zero(512, 0),
           lambda: h.trim(512, 0)):
    try:
        h.set_strict_mode(0)
        op()
        sys.exit("a write on a read-only export succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, e
'
    [ "$(sha "$BATS_TEST_TMPDIR/disk")" = "$before" ]
}

@test "a read past the end of the disk fails with EINVAL" {
    requires nbdsh
    start_server memory 1M
    nbd_py '
h.set_strict_mode(0)
try:
    h.pread(512, (1 << 20) - 256)
    sys.exit("an out of range read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e
'
}

@test "the export is listed by NBD_OPT_LIST" {
    requires nbdinfo
    start_server memory 1M
    run nbdinfo --list "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q 'export="":'
    echo "$output" | grep -q 'export-size: 1048576'
}

@test "a client may open the export under any name" {
    requires nbdinfo
    start_server -e disk memory 1M
    run nbdinfo --size "nbd+unix:///disk?socket=$sock"
    [ "$status" -eq 0 ]
    [ "$output" = 1048576 ]
}

@test "pipelined requests are answered with the right data" {
    requires nbdsh
    start_server memory 64M
    nbd_py '
blocks = [os.urandom(65536) for i in range(256)]
for i, b in enumerate(blocks):
    h.aio_pwrite(b, i * 65536)
assert h.aio_in_flight() > 1
while h.aio_in_flight() > 0:
    h.poll(-1)
bufs = [nbd.Buffer(65536) for i in range(256)]
for i, b in enumerate(bufs):
    h.aio_pread(b, i * 65536)
while h.aio_in_flight() > 0:
    h.poll(-1)
for i, b in enumerate(bufs):
    assert b.to_bytearray() == blocks[i], i
'
}

@test "eight clients at once each read back their own data" {
    requires nbdsh
    start_server memory 64M
    for i in 0 1 2 3 4 5 6 7; do
        nbd_py "
import random
random.seed($i)
d = bytes(random.getrandbits(8) for _ in range(1 << 20))
for k in range(4):
    h.pwrite(d, ($i * 4 + k) << 20)
for k in range(4):
    assert h.pread(1 << 20, ($i * 4 + k) << 20) == d
" &
    done
    for i in 0 1 2 3 4 5 6 7; do
        wait -n
    done
}
