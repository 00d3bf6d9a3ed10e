#!/usr/bin/env bats
# The blocksize filter: clients send any alignment and size, the layer
# below sees only whole blocks of minblock and pieces of at most
# maxdata/maxlen.  The log filter below it shows what it was sent.

load helpers

# Every request logged in $1 is aligned to $2, no longer than $3 if it
# has data (read, write) and no longer than $4 if not.
check_log_aligned() {
    /usr/bin/python3 - "$1" "$2" "$3" "$4" <<'EOF'
import re, sys
log, mb, maxdata, maxlen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
n = 0
for line in open(log):
    m = re.search(r" (Read|Write|Zero|Trim|Cache) id=\d+ offset=(0x[0-9a-f]+) count=(0x[0-9a-f]+)", line)
    if not m:
        continue
    n += 1
    off, count = int(m.group(2), 16), int(m.group(3), 16)
    assert off % mb == 0 and count % mb == 0, line
    assert count <= (maxdata if m.group(1) in ("Read", "Write") else maxlen), line
assert n > 0, "nothing was logged"
EOF
}

@test "nbdinfo shows the block sizes the filter offers" {
    requires nbdinfo
    start_server --filter=blocksize memory 10M minblock=4096
    run nbdinfo --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"block_size_minimum": 1,'
    echo "$output" | grep -q '"block_size_preferred": 4096,'
    echo "$output" | grep -q '"block_size_maximum": 33554432'
}

@test "unaligned writes at odd offsets read back byte for byte as a model says" {
    requires nbdsh
    start_server --filter=blocksize --filter=log memory 10M minblock=4096 \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
import random
rnd = random.Random(7)
size = 10 << 20
model = bytearray(size)
init = os.urandom(size)
h.pwrite(init, 0)
model[:] = init
for i in range(300):
    off = rnd.randrange(size - 1)
    n = rnd.randrange(1, min(size - off, 20000) + 1)
    kind = rnd.randrange(3)
    if kind == 0:
        d = os.urandom(n)
        h.pwrite(d, off)
        model[off:off + n] = d
    elif kind == 1:
        h.zero(n, off)
        model[off:off + n] = bytes(n)
    else:
        assert h.pread(n, off) == model[off:off + n], (off, n)
assert h.pread(size, 0) == model
'
    check_log_aligned "$BATS_TEST_TMPDIR/log" 4096 33554432 4294967295
}

@test "concurrent unaligned writes to one block all take effect" {
    requires nbdsh
    start_server --filter=blocksize memory 10M minblock=4096
    nbd_py '
base = 8192
h.pwrite(b"\xee" * 12288, base - 4096)
cookies = []
bufs = []
# 200 writes of 1 to 19 bytes, all in flight at once, into one block
# and across the next block boundary.
for i in range(200):
    off = base + 3 + i * 20
    b = nbd.Buffer.from_bytearray(bytearray([i % 251 + 1]) * (1 + i % 19))
    bufs.append(b)
    cookies.append(h.aio_pwrite(b, off))
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    assert h.aio_command_completed(c)
want = bytearray(b"\xee" * 12288)
for i in range(200):
    off = 4096 + 3 + i * 20
    n = 1 + i % 19
    want[off:off + n] = bytes([i % 251 + 1]) * n
assert h.pread(12288, base - 4096) == want
'
}

@test "concurrent overlapping aligned and unaligned writes leave one of their orders" {
    requires nbdsh
    start_server --filter=blocksize memory 1M minblock=4096
    nbd_py '
for round in range(20):
    h.pwrite(b"\x00" * 8192, 0)
    a = nbd.Buffer.from_bytearray(bytearray(b"A" * 8192))
    b = nbd.Buffer.from_bytearray(bytearray(b"B" * 100))
    ca = h.aio_pwrite(a, 0)
    cb = h.aio_pwrite(b, 1000)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    assert h.aio_command_completed(ca) and h.aio_command_completed(cb)
    d = h.pread(8192, 0)
    ab = b"A" * 1000 + b"B" * 100 + b"A" * 7092
    assert d in (ab, b"A" * 8192), d[:1200]
'
}

@test "large reads and writes are cut into pieces of maxdata and come back whole" {
    requires nbdsh
    start_server --filter=blocksize --filter=log memory 40M \
        minblock=512 maxdata=64k logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
d = os.urandom(32 << 20)
h.pwrite(d, 12345)
assert h.pread(32 << 20, 12345) == d
assert h.pread(1 << 20, 1 << 20) == d[(1 << 20) - 12345:(2 << 20) - 12345]
'
    check_log_aligned "$BATS_TEST_TMPDIR/log" 512 65536 4294967295
}

@test "long zeroes and trims are cut into pieces of maxlen" {
    requires nbdsh
    start_server --filter=blocksize --filter=log memory 10M \
        minblock=4096 maxlen=1M logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
d = os.urandom(10 << 20)
h.pwrite(d, 0)
h.zero((5 << 20) + 100, 1000)
want = bytearray(d)
want[1000:1000 + (5 << 20) + 100] = bytes((5 << 20) + 100)
assert h.pread(10 << 20, 0) == want
h.trim(3 << 20, (6 << 20) + 10)
got = h.pread(10 << 20, 0)
# The unaligned head and tail of the trim are left as they were; the
# memory disk reads trimmed blocks as zeros.
lo, hi = (6 << 20) + 4096, (9 << 20)
assert got[:(6 << 20) + 10] == want[:(6 << 20) + 10]
assert got[lo:hi] == bytes(hi - lo)
assert got[(9 << 20) + 10:] == want[(9 << 20) + 10:]
'
    check_log_aligned "$BATS_TEST_TMPDIR/log" 4096 33554432 1048576
}

@test "the size is rounded down to a whole block" {
    requires nbdinfo
    start_server --filter=blocksize memory 10001 minblock=4096
    [ "$(nbdinfo --size "$uri")" -eq 8192 ]
}

@test "block status at an unaligned offset starts at that offset" {
    requires nbdsh
    start_server --filter=blocksize memory 1M minblock=4096
    /usr/bin/python3 -c '
import nbd, os
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(os.environ["uri"])
h.pwrite(b"x" * 8192, 65536)
seen = []
def f(meta, off, entries, err):
    seen.append((off, entries))
h.block_status(100000, 65536 + 100, f)
off, entries = seen[0]
assert off == 65536 + 100
assert entries[0] == 8192 - 100, entries
assert sum(entries[0::2]) >= 100000 - 8192, entries
'
}

@test "a fast zero that is not aligned fails with ENOTSUP" {
    requires nbdsh
    start_server --filter=blocksize memory 1M minblock=4096
    nbd_py '
if h.can_fast_zero():
    try:
        h.zero(100, 10, nbd.CMD_FLAG_FAST_ZERO)
        sys.exit("the fast zero succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.ENOTSUP, e
    h.zero(8192, 4096, nbd.CMD_FLAG_FAST_ZERO)
'
}

@test "bad blocksize parameters exit 1 naming the value" {
    for p in minblock=3000 minblock=128k maxdata=64M maxdata=x maxlen=0 \
             "maxdata=1000 minblock=512"; do
        run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=blocksize memory 1M $p
        [ "$status" -eq 1 ]
        [[ "$output" == *"${p%% *}"* ]]
    done
}

@test "--help lists the blocksize parameters" {
    run "$NBDKIT" --filter=blocksize null --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"minblock=SIZE"*"maxdata=SIZE"*"maxlen=SIZE"* ]]
}
