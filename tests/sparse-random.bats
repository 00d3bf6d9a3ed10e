# The sparse-random backend: runs of random data and holes, the same
# for the same seed, block status that tells them apart, and writes
# that must not change the disk.

load helpers

# Python for nbd_py (with base:allocation): the extents of the whole
# disk as (offset, length, is_hole), and checks that holes read as
# zeroes and data blocks as one non-zero byte repeated (or, with
# random=True, many different bytes).
check_shape() {
    cat <<EOF
import hashlib
random_content = $1
size = h.get_size()
ext = []
def cb(meta, off, entries, err):
    global pos
    for i in range(0, len(entries), 2):
        ext.append((pos, entries[i], entries[i + 1] & 1))
        pos += entries[i]
pos = 0
while pos < size:
    h.block_status(min(size - pos, 1 << 30), pos, cb)
assert pos == size
data = 0
for off, length, hole in ext:
    assert off % 4096 == 0 and (length % 4096 == 0 or off + length == size)
    for b in range(off, off + length, 4096):
        n = min(4096, off + length - b)
        buf = h.pread(n, b)
        if hole:
            assert buf == bytes(n), b
        elif random_content:
            assert len(set(buf)) > 100, b
        else:
            assert len(set(buf)) == 1 and buf[0] != 0, b
    if not hole:
        data += length
print("data %d" % data)
EOF
}

nbd_meta_py() {
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.add_meta_context('base:allocation')
h.connect_uri('$uri')
$1"
}

disk_sha() {
    nbdcopy "$uri" - | sha256sum | cut -d' ' -f1
}

@test "sparse-random: holes read as zeroes, data as a repeated non-zero byte" {
    requires nbdsh
    start_server sparse-random size=32M seed=7 runlength=128k percent=30
    run nbd_meta_py "$(check_shape False)"
    echo "$output"
    [ "$status" -eq 0 ]
    data=${output#data }
    # About 30% data (runs of 128 KiB on average: about 80 cycles).
    [ "$data" -gt $((32 * 1024 * 1024 * 15 / 100)) ]
    [ "$data" -lt $((32 * 1024 * 1024 * 45 / 100)) ]
}

@test "sparse-random: random-content=true fills each data block with random bytes" {
    requires nbdsh
    start_server sparse-random 16M seed=3 runlength=128k percent=50 random-content=true
    run nbd_meta_py "$(check_shape True)"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "sparse-random: percent=0 is all hole and percent=100 all data" {
    requires nbdinfo
    start_server sparse-random 10M percent=0
    [ "$(nbdinfo --map "$uri" | awk '{ print $1, $2, $4 }')" = "0 10485760 hole,zero" ]
    stop_server
    start_server sparse-random 10M percent=100
    [ "$(nbdinfo --map "$uri" | awk '{ print $1, $2, $4 }')" = "0 10485760 data" ]
}

@test "sparse-random: percent= sets the share of data" {
    requires nbdinfo
    start_server sparse-random 1G seed=11 runlength=64k percent=25
    pct=$(nbdinfo --map --totals "$uri" | awk '$3 == 0 { print $1 }')
    echo "data bytes: $pct"
    # 1 GiB in runs of 64 KiB on average: thousands of runs, close to 25%.
    [ "$pct" -gt $((1024 * 1024 * 1024 * 20 / 100)) ]
    [ "$pct" -lt $((1024 * 1024 * 1024 * 30 / 100)) ]
}

@test "sparse-random: the same seed gives the same disk, another seed another" {
    requires nbdcopy
    start_server sparse-random 32M seed=42 runlength=1M random-content=true
    a=$(disk_sha)
    stop_server
    start_server sparse-random 32M seed=42 runlength=1M random-content=true
    [ "$(disk_sha)" = "$a" ]
    stop_server
    start_server sparse-random 32M seed=43 runlength=1M random-content=true
    [ "$(disk_sha)" != "$a" ]
}

@test "sparse-random: without seed= a restarted backend serves the same disk" {
    requires nbdcopy
    start_server sparse-random 16M runlength=256k percent=50
    a=$(disk_sha)
    kill -KILL "$(backend_pid)"
    wait_until grep -q "backend restarted" "$log"
    [ "$(disk_sha)" = "$a" ]
}

@test "sparse-random: copying the disk onto itself succeeds" {
    requires nbdcopy qemu-img
    start_server sparse-random 256M seed=5 runlength=1M
    nbdcopy "$uri" "$uri"
    qemu-img convert -n -f raw -O raw "$uri" "$uri"
}

@test "sparse-random: writes that change the disk, and zero or trim of data, fail with EIO" {
    requires nbdsh
    start_server sparse-random 64M seed=9 runlength=1M percent=50
    nbd_meta_py '
import errno
ext = []
def cb(meta, off, entries, err):
    ext.extend(entries)
h.block_status(64 << 20, 0, cb)
off, data, hole = 0, None, None
for i in range(0, len(ext), 2):
    if ext[i + 1] & 1 and hole is None: hole = off
    if not ext[i + 1] & 1 and data is None: data = off
    off += ext[i]
assert data is not None and hole is not None
def fails(f):
    try:
        f()
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
        return
    assert False
buf = h.pread(4096, data)
h.pwrite(buf, data)                              # the same bytes: fine
h.pwrite(bytes(4096), hole, nbd.CMD_FLAG_FUA)    # zeroes on a hole: fine
h.zero(4096, hole)
h.trim(4096, hole)
h.flush()
fails(lambda: h.pwrite(bytes(4096), data))
fails(lambda: h.pwrite(b"x", hole))
fails(lambda: h.zero(4096, data))
fails(lambda: h.trim(4096, data))
assert h.pread(4096, data) == buf
assert h.can_multi_conn() and h.can_fua() and not h.can_fast_zero()
'
    wait_until grep -q "data written does not match expected" "$log"
    wait_until grep -q "trying to trim or zero non-hole" "$log"
}

@test "sparse-random: bad parameters are refused with status 1" {
    run "$NBDKIT" sparse-random
    [ "$status" -eq 1 ]
    [[ "$output" == *"size of the disk is required"* ]]
    run "$NBDKIT" sparse-random 1M percent=101
    [ "$status" -eq 1 ]
    [[ "$output" == *"percent=101: the percentage of data must be a number from 0 to 100"* ]]
    run "$NBDKIT" sparse-random 1M percent=x
    [ "$status" -eq 1 ]
    [[ "$output" == *"percent=x:"* ]]
    run "$NBDKIT" sparse-random 1M runlength=0
    [ "$status" -eq 1 ]
    [[ "$output" == *"runlength=0: the average length of a run of data must be more than 0"* ]]
    run "$NBDKIT" sparse-random 1M random-content=maybe
    [ "$status" -eq 1 ]
    [[ "$output" == *"random-content=maybe: not a boolean"* ]]
    run "$NBDKIT" sparse-random 1M seed=-1
    [ "$status" -eq 1 ]
    [[ "$output" == *"seed=-1"* ]]
    run "$NBDKIT" sparse-random 1M colour=red
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown parameter 'colour'"* ]]
    run "$NBDKIT" sparse-random 1E runlength=4k percent=50
    [ "$status" -eq 1 ]
    [[ "$output" == *"use a larger runlength="* ]]
}
