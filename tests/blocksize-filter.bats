#!/usr/bin/env bats
# The blocksize filter: clients send any alignment and size, the layer
# below sees only whole blocks of minblock and pieces of at most
# maxdata/maxlen.  The log filter below it shows what it was sent.

load helpers

# A backend that logs its reads and writes, in files of $st
# (make_backend SIZE sets $st and $backend):
#   calls        "pread COUNT OFFSET", "pwrite COUNT OFFSET", and
#                "pwrite-done COUNT OFFSET" once a write is done
#   disk         the data
#   extents      the extents, "OFFSET LENGTH TYPE" lines
#   block_size   "MIN PREFERRED MAX", the block size constraints
#   block-pwrite writes wait for the file go
make_backend() {
    st=$BATS_TEST_TMPDIR/st
    backend=$BATS_TEST_TMPDIR/backend.sh
    mkdir -p "$st"
    : > "$st/calls"
    echo "$1" > "$st/size"
    random_file "$st/disk" "$1"
    echo '#!/bin/bash' > "$backend"
    echo "st=$st" >> "$backend"
    cat >> "$backend" <<'EOF'
case "$1" in
    thread_model) echo parallel ;;
    open) echo h ;;
    get_size) cat "$st/size" ;;
    can_write|can_flush|can_trim|can_zero|can_extents|can_multi_conn) exit 0 ;;
    block_size) [ -e "$st/block_size" ] || exit 2; cat "$st/block_size" ;;
    pread)
        echo "pread $3 $4" >> "$st/calls"
        dd if="$st/disk" skip="$4" count="$3" iflag=skip_bytes,count_bytes \
           status=none ;;
    pwrite)
        echo "pwrite $3 $4" >> "$st/calls"
        if [ -e "$st/block-pwrite" ]; then
            while [ ! -e "$st/go" ]; do sleep 0.01; done
        fi
        dd of="$st/disk" seek="$4" oflag=seek_bytes conv=notrunc status=none
        echo "pwrite-done $3 $4" >> "$st/calls" ;;
    extents)
        awk -v o="$4" -v c="$3" '$1 + $2 > o && $1 < o + c' "$st/extents" ;;
    *) exit 2 ;;
esac
EOF
    chmod +x "$backend"
    export st
}

# The requests of these types (Read, Write, ...) the log filter logged
# in $1, as "Type offset=... count=...", in order, once the connection
# has ended (the log is written behind the requests).
logged() {
    local f=$1 re
    shift
    wait_until grep -q " Disconnect " "$f" || return 1
    re=$(IFS='|'; echo "$*")
    grep -E " ($re) id=" "$f" | sed -E 's/^.* (([A-Z][a-z]+) id=[0-9]+ (offset=0x[0-9a-f]+ count=0x[0-9a-f]+)).*$/\2 \3/' || true
}

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
# The memory disk allocates 32 KiB pages; as nbdkit 1.32 answers.
assert entries == [32768 - 100, 0, 69632, 3], entries
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

@test "reads are cut into a head block, maxdata pieces from the aligned offset, and a tail block" {
    requires nbdsh
    start_server --filter=blocksize --filter=log memory 1M \
        minblock=4096 maxdata=8192 logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
d = os.urandom(65536)
h.pwrite(d, 0)
assert h.pread(20000, 1000) == d[1000:21000]
'
    [ "$(logged "$BATS_TEST_TMPDIR/log" Read | sort)" = "Read offset=0x0 count=0x1000
Read offset=0x1000 count=0x2000
Read offset=0x3000 count=0x2000
Read offset=0x5000 count=0x1000" ]
}

@test "maxdata defaults to maxlen when only maxlen is given" {
    requires nbdsh
    start_server --filter=blocksize --filter=log memory 1M maxlen=8k \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
d = os.urandom(32768)
h.pwrite(d, 4096)
assert h.pread(32768, 4096) == d
'
    [ "$(logged "$BATS_TEST_TMPDIR/log" Read Write | sort)" = "Read offset=0x1000 count=0x2000
Read offset=0x3000 count=0x2000
Read offset=0x5000 count=0x2000
Read offset=0x7000 count=0x2000
Write offset=0x1000 count=0x2000
Write offset=0x3000 count=0x2000
Write offset=0x5000 count=0x2000
Write offset=0x7000 count=0x2000" ]
}

@test "cache requests are rounded out to blocks and cut into maxdata pieces" {
    requires nbdsh
    start_server --filter=blocksize --filter=log memory 1M \
        minblock=4096 maxdata=8192 maxlen=1M logfile="$BATS_TEST_TMPDIR/log"
    nbd_py 'h.cache(20000, 1000)'
    [ "$(logged "$BATS_TEST_TMPDIR/log" Cache | sort)" = "Cache offset=0x0 count=0x2000
Cache offset=0x2000 count=0x2000
Cache offset=0x4000 count=0x2000" ]
}

@test "a fast zero longer than maxlen fails with ENOTSUP without reaching below" {
    requires nbdsh
    start_server --filter=blocksize --filter=log memory 1M \
        minblock=4096 maxlen=8k logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
d = os.urandom(16384)
h.pwrite(d, 0)
if h.can_fast_zero():
    try:
        h.zero(16384, 0, nbd.CMD_FLAG_FAST_ZERO)
        sys.exit("the fast zero succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.ENOTSUP, e
    assert h.pread(16384, 0) == d
    # Within maxlen and aligned it is sent as it is.
    h.zero(8192, 4096, nbd.CMD_FLAG_FAST_ZERO)
    assert h.pread(16384, 0) == d[:4096] + bytes(8192) + d[12288:]
else:
    print("no fast zero")
'
    [ "$(logged "$BATS_TEST_TMPDIR/log" Zero)" = "Zero offset=0x1000 count=0x2000" ]
}

@test "extents come in whole blocks, a first part-block merged with what follows" {
    requires nbdsh
    make_backend 65536
    cat > "$st/extents" <<'EOF'
0 1000 hole,zero
1000 100
1100 3000 zero
4100 4092 hole,zero
8192 4096
12288 2048 zero
14336 2048 hole,zero
16384 49152 hole,zero
EOF
    start_server --filter=blocksize sh "$backend" minblock=4096
    /usr/bin/python3 -c '
import nbd, os
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(os.environ["uri"])
def status(count, off, flags=0):
    seen = []
    # The extents of the request, cut at its end.
    def f(meta, o, e, err):
        left = count
        for i in range(0, len(e), 2):
            if left:
                seen.extend([min(e[i], left), e[i + 1]])
                left -= min(e[i], left)
    h.block_status(count, off, f, flags)
    return seen
# A block of hole+zero, data and zero parts: data.
assert status(65536, 0) == [4096, 0], status(65536, 0)
assert status(20000, 100) == [3996, 0]
# Zero and hole+zero parts: zero.
assert status(4096, 12288) == [4096, 2]
assert status(3000, 5000) == [3000, 2]
# Whole blocks up to the first extent that is not; it is cut down.
assert status(61440, 4096) == [4096, 2]
assert status(40000, 20000) == [40000, 3]
# One extent: the layer below answers one, the block needs more.
assert status(65536, 0, nbd.CMD_FLAG_REQ_ONE) == [4096, 0]
assert status(3000, 5000, nbd.CMD_FLAG_REQ_ONE) == [3000, 2]
'
}

@test "a disk smaller than one block is served with size 0" {
    requires nbdinfo
    start_server --filter=blocksize memory 1000 minblock=4096
    [ "$(nbdinfo --size "$uri")" -eq 0 ]
}

@test "the preferred block size is the largest of below's, 4096 and minblock" {
    requires nbdinfo
    make_backend 1048576
    echo "512 16384 65536" > "$st/block_size"
    start_server --filter=blocksize sh "$backend" maxdata=8192
    run nbdinfo --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"block_size_minimum": 1,'
    echo "$output" | grep -q '"block_size_preferred": 16384,'
    stop_server
    start_server --filter=blocksize sh "$backend" minblock=32k
    run nbdinfo --json "$uri"
    echo "$output" | grep -q '"block_size_preferred": 32768,'
}

@test "aligned writes are not serialized; a read-modify-write waits for them" {
    requires nbdsh
    make_backend 65536
    touch "$st/block-pwrite"
    start_server --filter=blocksize sh "$backend" minblock=512
    nbd_py '
st = os.environ["st"]
def wait_for(n, what):
    for i in range(3000):
        if open(st + "/calls").read().count(what) >= n:
            return
        h.poll(10)
    sys.exit("never seen %d times: %s" % (n, what))
# The two aligned writes write the same: the backend may interleave
# them.
a = b = os.urandom(4096)
c = os.urandom(100)
ca = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(a)), 0)
wait_for(1, "pwrite 4096 0")
# The same blocks, while the first write is still below: sent at once.
cb = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b)), 0)
wait_for(2, "pwrite 4096 0")
cc = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(c)), 10)
open(st + "/go", "w").close()
while h.aio_in_flight() > 0:
    h.poll(-1)
for x in (ca, cb, cc):
    assert h.aio_command_completed(x)
got = h.pread(4096, 0)
assert got == a[:10] + c + a[110:]
assert open(st + "/disk", "rb").read(4096) == got
'
    # The read of the read-modify-write came after both writes were
    # done.
    [ "$(grep -c '^pwrite-done 4096 0$' "$st/calls")" -eq 2 ]
    [ "$(grep -n '^pwrite-done 4096 0$' "$st/calls" | tail -n 1 | cut -d: -f1)" -lt \
      "$(grep -n '^pread 512 0$' "$st/calls" | cut -d: -f1)" ]
}
