#!/usr/bin/env bats
# The cache filter: reads and writes through a cache in a temporary
# file, in each mode, checked byte for byte through the server and, with
# the file backend, in the file below.

load helpers

# A random disk and a copy of it as it started.
make_disk() {
    disk=$BATS_TEST_TMPDIR/disk
    random_file "$disk" "$1"
    cp "$disk" "$BATS_TEST_TMPDIR/orig"
    export disk orig=$BATS_TEST_TMPDIR/orig
}

# Random writes, zeroes and reads against a model; the model is saved
# to $BATS_TEST_TMPDIR/model.  $1: flush at the end (1) or not (0);
# $2: "nozero" for writes and reads only (zeroes go below at once).
random_ops() {
    export model=$BATS_TEST_TMPDIR/model flush_at_end=$1 kinds=${2:-all}
    nbd_py '
import random
rnd = random.Random(11)
size = h.get_size()
model = bytearray(open(os.environ["orig"], "rb").read()) if "orig" in os.environ else bytearray(size)
for i in range(300):
    off = rnd.randrange(size - 1)
    n = rnd.randrange(1, min(size - off, 300000) + 1)
    k = rnd.randrange(4)
    if k == 2 and os.environ["kinds"] == "nozero":
        k = 0
    if k == 0 or k == 1:
        d = os.urandom(n)
        h.pwrite(d, off)
        model[off:off + n] = d
    elif k == 2:
        h.zero(n, off)
        model[off:off + n] = bytes(n)
    else:
        assert h.pread(n, off) == model[off:off + n], (i, off, n)
assert h.pread(size, 0) == model
if os.environ["flush_at_end"] == "1":
    h.flush()
open(os.environ["model"], "wb").write(model)
'
}

@test "writeback: writes stay in the cache until a flush writes them below" {
    requires nbdsh
    make_disk 10M
    start_server --filter=cache file "$disk"
    random_ops 0 nozero
    # Nothing reached the file yet...
    cmp "$disk" "$orig"
    # ...and a new connection sees the writes (one cache for all).
    nbd_py '
assert h.pread(h.get_size(), 0) == open(os.environ["model"], "rb").read()
h.flush()
'
    cmp "$disk" "$BATS_TEST_TMPDIR/model"
}

@test "writeback: a FUA write goes through to the disk at once" {
    requires nbdsh
    make_disk 1M
    start_server --filter=cache file "$disk"
    nbd_py '
h.pwrite(b"cached" * 100, 5000)
h.pwrite(b"durable" * 100, 300000, nbd.CMD_FLAG_FUA)
assert h.pread(700, 300000) == b"durable" * 100
'
    dd if="$disk" bs=1 skip=300000 count=700 status=none | grep -q '^\(durable\)*$'
    dd if="$disk" bs=1 skip=5000 count=600 status=none > "$BATS_TEST_TMPDIR/head"
    dd if="$orig" bs=1 skip=5000 count=600 status=none | cmp - "$BATS_TEST_TMPDIR/head"
}

@test "writethrough: every write is in the disk below before it is acknowledged" {
    requires nbdsh
    make_disk 10M
    start_server --filter=cache file "$disk" cache=writethrough cache-on-read=true
    random_ops 0
    cmp "$disk" "$BATS_TEST_TMPDIR/model"
    nbd_py '
assert h.pread(h.get_size(), 0) == open(os.environ["model"], "rb").read()
'
}

@test "unsafe: a flush does not write below, but the data reads back" {
    requires nbdsh
    make_disk 10M
    start_server --filter=cache file "$disk" cache=unsafe
    random_ops 1 nozero
    cmp "$disk" "$orig"
    nbd_py '
assert h.pread(h.get_size(), 0) == open(os.environ["model"], "rb").read()
'
}

@test "a small cache-max-size evicts blocks and loses no write" {
    requires nbdsh
    make_disk 10M
    start_server --filter=cache file "$disk" cache-max-size=1M
    nbd_py '
d = os.urandom(4 << 20)
for i in range(0, 4 << 20, 65536 * 3 + 7):
    h.pwrite(d[i:i + 65536 * 3 + 7], (1 << 20) + 333 + i)
want = bytearray(open(os.environ["orig"], "rb").read())
want[(1 << 20) + 333:(1 << 20) + 333 + (4 << 20)] = d
assert h.pread(10 << 20, 0) == want
h.flush()
open(os.environ["disk"] + ".want", "wb").write(want)
'
    cmp "$disk" "$disk.want"
    # The cache file never grew past the limit.
    for f in /proc/"$server_pid"/fd/*; do
        if [[ "$(readlink "$f")" == *nbdkit-cache-*"(deleted)"* ]]; then
            [ "$(stat -L -c %s "$f")" -le 1048576 ]
            found=1
        fi
    done
    [ -n "${found:-}" ]
}

@test "random writes, zeroes and reads with a small cache match a model in every mode" {
    requires nbdsh
    for m in writeback writethrough unsafe; do
        make_disk 4M
        start_server --filter=cache file "$disk" cache=$m \
            cache-max-size=256k cache-min-block-size=4k cache-on-read=true
        random_ops 1
        nbd_py '
assert h.pread(h.get_size(), 0) == open(os.environ["model"], "rb").read()
h.flush()
'
        if [ $m != unsafe ]; then
            cmp "$disk" "$BATS_TEST_TMPDIR/model"
        fi
        stop_server
    done
}

@test "many concurrent unaligned writes sharing blocks, with a tiny cache, all take effect" {
    requires nbdsh
    make_disk 4M
    start_server --filter=cache file "$disk" cache-max-size=64k \
        cache-min-block-size=4k cache-on-read=true
    nbd_py '
import random
rnd = random.Random(5)
want = bytearray(open(os.environ["orig"], "rb").read())
bufs, off = [], 17
while off < (4 << 20) - 20000:
    n = rnd.randrange(1, 20000)
    d = os.urandom(n)
    want[off:off + n] = d
    b = nbd.Buffer.from_bytearray(bytearray(d))
    bufs.append(b)
    h.aio_pwrite(b, off)
    if rnd.randrange(4) == 0:
        r = nbd.Buffer(4096)
        bufs.append(r)
        h.aio_pread(r, rnd.randrange(0, (4 << 20) - 4096))
    off += n + rnd.randrange(0, 3)
    while h.aio_in_flight() > 64:
        h.poll(-1)
while h.aio_in_flight() > 0:
    h.poll(-1)
assert h.pread(4 << 20, 0) == want
h.flush()
open(os.environ["disk"] + ".want", "wb").write(want)
'
    cmp "$disk" "$disk.want"
}

@test "cache-on-read=true serves later reads from the cache" {
    requires nbdsh
    make_disk 1M
    start_server --filter=cache file "$disk" cache-on-read=true
    nbd_py 'assert h.pread(65536, 65536) == open(os.environ["orig"], "rb").read()[65536:131072]'
    # Change the file under the server: the cached blocks do not see it.
    head -c 1M /dev/zero | dd of="$disk" conv=notrunc status=none
    nbd_py '
orig = open(os.environ["orig"], "rb").read()
assert h.pread(65536, 65536) == orig[65536:131072]
assert h.pread(65536, 0) == bytes(65536)
'
}

@test "without cache-on-read reads go below every time" {
    requires nbdsh
    make_disk 1M
    start_server --filter=cache file "$disk"
    nbd_py 'h.pread(65536, 65536)'
    head -c 1M /dev/zero | dd of="$disk" conv=notrunc status=none
    nbd_py 'assert h.pread(65536, 65536) == bytes(65536)'
}

@test "cache-on-read=PATH caches only while PATH exists" {
    requires nbdsh
    make_disk 1M
    start_server --filter=cache file "$disk" cache-on-read="$BATS_TEST_TMPDIR/on"
    nbd_py 'h.pread(65536, 0)'
    touch "$BATS_TEST_TMPDIR/on"
    nbd_py 'h.pread(65536, 65536)'
    head -c 1M /dev/zero | dd of="$disk" conv=notrunc status=none
    nbd_py '
orig = open(os.environ["orig"], "rb").read()
assert h.pread(65536, 0) == bytes(65536)
assert h.pread(65536, 65536) == orig[65536:131072]
'
}

@test "NBD_CMD_CACHE fills the cache" {
    requires nbdsh
    make_disk 1M
    start_server --filter=cache file "$disk"
    nbd_py '
assert h.can_cache()
h.cache(200000, 100)
'
    head -c 1M /dev/zero | dd of="$disk" conv=notrunc status=none
    nbd_py '
orig = open(os.environ["orig"], "rb").read()
assert h.pread(200000, 100) == orig[100:200100]
'
}

@test "block status shows blocks written to the cache as data" {
    requires nbdsh
    start_server --filter=cache memory 10M
    /usr/bin/python3 -c '
import nbd, os
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(os.environ["uri"])
h.pwrite(b"x" * 100000, 1 << 20)
seen = []
def f(meta, off, entries, err):
    seen.extend(entries)
pos = 0
while pos < (2 << 20):
    seen.clear()
    h.block_status((2 << 20) - pos, pos, f)
    for i in range(0, len(seen), 2):
        n, flags = seen[i], seen[i + 1]
        lo, hi = max(pos, 1 << 20), min(pos + n, (1 << 20) + 100000)
        assert lo >= hi or flags & nbd.STATE_HOLE == 0, (pos, n, flags)
        pos += n
'
}

@test "bad cache parameters exit 1 naming the value" {
    for p in cache=sometimes cache-max-size=12Q cache-max-size=64k \
             cache-min-block-size=1000 cache-min-block-size=8M \
             cache-high-threshold=150 cache-low-threshold=0 \
             cache-on-read=maybe; do
        run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=cache memory 1M "$p"
        [ "$status" -eq 1 ]
        [[ "$output" == *"$p"* ]]
    done
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=cache memory 1M \
        cache-high-threshold=50 cache-low-threshold=60
    [ "$status" -eq 1 ]
    [[ "$output" == *"low threshold"* ]]
}

@test "a cache directory that cannot be written stops the server with a clear error" {
    run env TMPDIR=/nonexistent "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=cache memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"/nonexistent"*"TMPDIR"* ]]
}

@test "--help lists the cache parameters" {
    run "$NBDKIT" --filter=cache null --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"cache=writeback|writethrough|unsafe"*"cache-max-size="*"cache-on-read="* ]]
}

# As nbdkit's cache filter: its block is the preferred block size, and
# it sets no minimum of its own.
@test "the cache's block is the preferred block size" {
    requires nbdsh
    start_server --filter=cache memory 1M
    nbd_py '
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
assert h.get_block_size(nbd.SIZE_PREFERRED) == 65536
'
}
