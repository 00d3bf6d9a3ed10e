# The NBD protocol as real clients see it: oldstyle and plain newstyle,
# --mask-handshake, export lists, names and descriptions, transmission
# flags, and many clients at once.

load helpers

@test "-o serves the oldstyle protocol to nbdsh" {
    requires nbdsh
    start_server -o memory 8M
    nbd_py '
assert h.get_protocol() == "oldstyle", h.get_protocol()
assert h.get_size() == 8 << 20
assert not h.get_structured_replies_negotiated()
d = os.urandom(1 << 20)
h.pwrite(d, 12345)
assert h.pread(1 << 20, 12345) == d
h.flush()
'
}

@test "-o -r: an oldstyle client sees a read-only export" {
    requires nbdsh
    start_server -o -r memory 1M
    nbd_py '
assert h.is_read_only()
try:
    h.pwrite(b"x", 0)
    sys.exit("a write to a read-only export worked")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
}

@test "--mask-handshake=0 makes the server plain newstyle" {
    requires nbdsh
    start_server --mask-handshake=0 memory 1M
    nbd_py '
assert h.get_protocol() == "newstyle", h.get_protocol()
assert h.get_handshake_flags() == 0
assert not h.get_structured_replies_negotiated()
h.pwrite(b"abc", 0)
assert h.pread(3, 0) == b"abc"
'
}

@test "--mask-handshake=1 offers fixed newstyle without NO_ZEROES" {
    requires nbdsh
    start_server --mask-handshake=1 memory 1M
    nbd_py '
assert h.get_protocol() == "newstyle-fixed"
assert h.get_handshake_flags() == nbd.HANDSHAKE_FLAG_FIXED_NEWSTYLE
assert h.get_structured_replies_negotiated()
'
}

@test "--no-sr: nbdsh gets simple replies, no DF and no contexts" {
    requires nbdsh
    start_server --no-sr memory 1M
    nbd_py '
assert not h.get_structured_replies_negotiated()
assert not h.can_df()
assert not h.can_meta_context("base:allocation")
h.pwrite(b"abc", 0)
assert h.pread(3, 0) == b"abc"
'
}

@test "nbdinfo --list shows every file of file dir= as an export" {
    requires nbdinfo nbdsh
    mkdir "$BATS_TEST_TMPDIR/d" "$BATS_TEST_TMPDIR/d/subdir"
    random_file "$BATS_TEST_TMPDIR/d/one.img" 1M
    truncate -s 2M "$BATS_TEST_TMPDIR/d/two.img"
    mkfifo "$BATS_TEST_TMPDIR/d/fifo"
    start_server file dir="$BATS_TEST_TMPDIR/d"
    run nbdinfo --list --json "$uri"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | grep -c '"export-name"')" -eq 2 ]
    echo "$output" | grep -q '"export-name": "one.img"'
    echo "$output" | grep -q '"export-name": "two.img"'
    # Each export is its own file.
    /usr/bin/python3 -c "
import nbd
h2 = nbd.NBD()
h2.connect_uri('nbd+unix:///one.img?socket=$sock')
assert h2.pread(1 << 20, 0) == open('$BATS_TEST_TMPDIR/d/one.img', 'rb').read()
h3 = nbd.NBD()
h3.connect_uri('nbd+unix:///two.img?socket=$sock')
assert h3.get_size() == 2 << 20
"
    # The default export and names outside the directory are refused.
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    run nbdinfo "nbd+unix:///..?socket=$sock"
    [ "$status" -ne 0 ]
    run nbdinfo "nbd+unix:///subdir?socket=$sock"
    [ "$status" -ne 0 ]
}

@test "export descriptions and the canonical name of the default export" {
    requires nbdsh nbdinfo
    truncate -s 1M "$BATS_TEST_TMPDIR/disk"
    start_server "$FAULTY" "$BATS_TEST_TMPDIR/disk" exports=first,second
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.set_full_info(True)
h.connect_uri('$uri')
assert h.get_canonical_export_name() == 'first', h.get_canonical_export_name()
assert h.get_export_description() == 'disk first'
"
    run nbdinfo --list "$uri"
    echo "$output"
    echo "$output" | grep -q 'export="first"'
    echo "$output" | grep -q 'description: disk second'
    # An export the backend does not have is refused.
    run nbdinfo "nbd+unix:///third?socket=$sock"
    [ "$status" -ne 0 ]
}

@test "transmission flags follow the backend: memory, file, null, -r" {
    requires nbdsh
    start_server memory 1M
    nbd_py '
assert h.can_multi_conn() and h.can_fua() and h.can_trim() and h.can_zero()
assert h.can_fast_zero() and h.can_flush() and h.can_cache()
assert not h.is_rotational() and not h.is_read_only()
h.pwrite(b"a" * 4096, 0, nbd.CMD_FLAG_FUA)
h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
assert h.pread(4096, 0) == bytes(4096)
h.cache(4096, 0)
'
    stop_server
    start_server -r memory 1M
    nbd_py '
assert h.is_read_only()
assert not (h.can_trim() or h.can_zero() or h.can_fua() or h.can_fast_zero())
'
}

@test "500 clients at once each write their own region, all verified" {
    requires nbdsh
    start_server memory 64M
    /usr/bin/python3 - <<PY
import nbd, os, hashlib
n, size = 500, 64 << 10
conns, data = [], []
for i in range(n):
    h = nbd.NBD()
    h.connect_uri("$uri")
    conns.append(h)
for i, h in enumerate(conns):
    d = os.urandom(size)
    data.append(d)
    h.aio_pwrite(d, i * size)
# Let every connection's write finish, all in flight together.
for h in conns:
    while h.aio_in_flight() > 0:
        h.poll(-1)
for i, h in enumerate(conns):
    # Each reads back another client's region.
    j = (i + 1) % n
    assert h.pread(size, j * size) == data[j], "region %d" % j
    h.shutdown()
whole = nbd.NBD()
whole.connect_uri("$uri")
got = whole.pread(n * size, 0)
assert hashlib.sha256(got).digest() == hashlib.sha256(b"".join(data)).digest()
PY
}
