#!/usr/bin/env bats
# The qcow2dec filter: a qcow2 image, made and filled by qemu-img and
# qemu-io, served read-only as the raw disk qemu-img convert makes of
# it; its block status; and the images it refuses or fails on.

load helpers

setup() {
    requires qemu-img qemu-io nbdcopy nbdinfo
}

# make_image PATH [qemu-img create options]: a 20 MiB image with data
# (some across cluster and L2 boundaries), zeroes written with
# write -z over data, and holes.  The raw view is PATH.raw.
make_image() {
    local img=$1; shift
    qemu-img create -q -f qcow2 "$@" "$img" 20M
    qemu-io -f qcow2 \
        -c 'write -P 0x55 0 1M' \
        -c 'write -P 0x66 3M 2M' \
        -c 'write -z 3M 1M' \
        -c 'write -P 0xaa 5M 70k' \
        -c 'write -P 0x11 19M 512' \
        -c 'write -P 0x22 20971008 512' \
        "$img" >/dev/null
    random_file "$img.rnd" 300000
    qemu-io -f qcow2 -c "write -s $img.rnd 7000000 300000" "$img" >/dev/null
    qemu-img convert -O raw "$img" "$img.raw"
}

# check_image IMAGE [nbdkit parameters]: the whole disk and random
# reads are the raw view byte for byte.
check_image() {
    local img=$1; shift
    start_server --filter=qcow2dec file "$img" "$@"
    [ "$(nbdinfo --size "$uri")" -eq "$(stat -c %s "$img.raw")" ]
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$img.raw"
    nbd_py "
import random
want = open('$img.raw', 'rb').read()
size = h.get_size()
rng = random.Random(7)
cases = [(0, 1), (size - 1, 1), (1048576 - 100, 200), (7000000, 300000),
         (100, 3 * 1048576), (6 * 1048576 + 1, 2 * 1048576)]
for _ in range(100):
    n = rng.randint(1, 200000)
    cases.append((rng.randint(0, size - n), n))
for off, n in cases:
    assert h.pread(n, off) == want[off:off + n], ('mismatch', off, n)
bufs = []
for i in range(24):
    off = (i * 797131) % (size - 65536)
    b = nbd.Buffer(65536)
    h.aio_pread(b, off)
    bufs.append((off, b))
while h.aio_in_flight() > 0:
    h.poll(-1)
for off, b in bufs:
    assert b.to_bytearray() == want[off:off + 65536], ('aio mismatch', off)
"
    stop_server
}

# poke FILE OFFSET HEX: overwrite bytes of FILE.
poke() {
    /usr/bin/python3 -c "
f = open('$1', 'r+b'); f.seek($2); f.write(bytes.fromhex('$3'))"
}

# qcow2_field FILE WHAT: l1 (the L1 table's offset), l2 (the first L2
# table's offset), size (the file's).
qcow2_field() {
    /usr/bin/python3 -c "
import struct, os
d = open('$1', 'rb').read()
l1 = struct.unpack('>Q', d[40:48])[0]
l2 = struct.unpack('>Q', d[l1:l1 + 8])[0] & 0x00fffffffffffe00
print({'l1': l1, 'l2': l2, 'size': len(d)}['$2'])"
}

# Like nbd_py, with base:allocation negotiated (for block_status).
nbd_meta_py() {
    /usr/bin/python3 -c "
import nbd, errno, sys
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri('$uri')
$1"
}

# expect_open_refused IMAGE TEXT: the open fails, with TEXT in the log,
# and the server stays up.
expect_open_refused() {
    start_server --filter=qcow2dec file "$1"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q -- "$2" "$log"
    kill -0 "$server_pid"
    stop_server
}

@test "qcow2dec: a version 3 image reads as qemu-img convert's raw view" {
    make_image "$BATS_TEST_TMPDIR/v3.qcow2"
    qemu-img info "$BATS_TEST_TMPDIR/v3.qcow2" | grep -q 'compat: 1.1'
    check_image "$BATS_TEST_TMPDIR/v3.qcow2"
}

@test "qcow2dec: a version 2 image (compat=0.10) reads as the raw view" {
    make_image "$BATS_TEST_TMPDIR/v2.qcow2" -o compat=0.10
    qemu-img info "$BATS_TEST_TMPDIR/v2.qcow2" | grep -q 'compat: 0.10'
    check_image "$BATS_TEST_TMPDIR/v2.qcow2"
}

@test "qcow2dec: 512-byte and 2 MiB clusters, and a cache of one L2 table" {
    make_image "$BATS_TEST_TMPDIR/small.qcow2" -o cluster_size=512
    check_image "$BATS_TEST_TMPDIR/small.qcow2" qcow2dec-l2-cache=1
    make_image "$BATS_TEST_TMPDIR/big.qcow2" -o cluster_size=2M
    check_image "$BATS_TEST_TMPDIR/big.qcow2"
}

@test "qcow2dec: a deflate-compressed image (qemu-img convert -c) reads as the raw view" {
    make_image "$BATS_TEST_TMPDIR/plain.qcow2"
    qemu-img convert -c -O qcow2 "$BATS_TEST_TMPDIR/plain.qcow2" \
        "$BATS_TEST_TMPDIR/c.qcow2"
    cp "$BATS_TEST_TMPDIR/plain.qcow2.raw" "$BATS_TEST_TMPDIR/c.qcow2.raw"
    qemu-img convert -c -O qcow2 -o compat=0.10,cluster_size=4k \
        "$BATS_TEST_TMPDIR/plain.qcow2" "$BATS_TEST_TMPDIR/c2.qcow2"
    cp "$BATS_TEST_TMPDIR/plain.qcow2.raw" "$BATS_TEST_TMPDIR/c2.qcow2.raw"
    check_image "$BATS_TEST_TMPDIR/c.qcow2"
    check_image "$BATS_TEST_TMPDIR/c2.qcow2" qcow2dec-l2-cache=1
}

@test "qcow2dec: a zstd-compressed image reads as the raw view, or fails with EIO without libzstd" {
    qemu-img create -q -f qcow2 -o compression_type=zstd \
        "$BATS_TEST_TMPDIR/probe.qcow2" 1M 2>/dev/null ||
        skip "this qemu-img cannot make zstd-compressed images"
    make_image "$BATS_TEST_TMPDIR/plain.qcow2"
    qemu-img convert -c -O qcow2 -o compression_type=zstd \
        "$BATS_TEST_TMPDIR/plain.qcow2" "$BATS_TEST_TMPDIR/z.qcow2"
    qemu-img info "$BATS_TEST_TMPDIR/z.qcow2" | grep -q 'compression type: zstd'
    cp "$BATS_TEST_TMPDIR/plain.qcow2.raw" "$BATS_TEST_TMPDIR/z.qcow2.raw"
    if grep -q '^#define HAVE_LIBZSTD 1' "$top_builddir/config.h"; then
        check_image "$BATS_TEST_TMPDIR/z.qcow2"
    else
        start_server --filter=qcow2dec file "$BATS_TEST_TMPDIR/z.qcow2"
        nbd_py "
try:
    h.pread(512, 0)
    sys.exit('a zstd cluster was read without libzstd')
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
"
        wait_until grep -q 'built without libzstd' "$log"
    fi
}

@test "qcow2dec: nbdinfo --map shows data, and holes for unallocated and zero clusters" {
    qemu-img create -q -f qcow2 "$BATS_TEST_TMPDIR/m.qcow2" 9M
    qemu-io -f qcow2 -c 'write -P 1 0 128k' -c 'write -P 2 1M 64k' \
        -c 'write -P 3 2M 1M' -c 'write -z 2M 512k' -c 'write -P 4 8320k 64k' \
        "$BATS_TEST_TMPDIR/m.qcow2" >/dev/null
    start_server --filter=qcow2dec file "$BATS_TEST_TMPDIR/m.qcow2"
    nbdinfo --map "$uri" | awk '{ print $1, $2, $3 }' > "$BATS_TEST_TMPDIR/map"
    cat > "$BATS_TEST_TMPDIR/want" <<'MAP'
0 131072 0
131072 917504 3
1048576 65536 0
1114112 983040 3
2097152 524288 3
2621440 524288 0
3145728 5373952 3
8519680 65536 0
8585216 851968 3
MAP
    # Adjacent extents of the same type may be merged or not: compare
    # the map cluster by cluster.
    expand() { awk '{ for (o = $1; o < $1 + $2; o += 65536) print o, $3 }' "$1"; }
    diff <(expand "$BATS_TEST_TMPDIR/want") <(expand "$BATS_TEST_TMPDIR/map")
    # A compressed image: the written clusters are data.
    stop_server
    qemu-img convert -c -O qcow2 "$BATS_TEST_TMPDIR/m.qcow2" "$BATS_TEST_TMPDIR/mc.qcow2"
    start_server --filter=qcow2dec file "$BATS_TEST_TMPDIR/mc.qcow2"
    nbdinfo --map "$uri" | awk '$3 == 0 { n += $2 } END { print n }' > "$BATS_TEST_TMPDIR/data"
    [ "$(cat "$BATS_TEST_TMPDIR/data")" -eq $(((128 + 64 + 512 + 64) * 1024)) ]
}

@test "qcow2dec: the export is read-only: writes, trims and zeroes fail with EPERM" {
    make_image "$BATS_TEST_TMPDIR/v3.qcow2"
    before=$(sha "$BATS_TEST_TMPDIR/v3.qcow2")
    start_server --filter=qcow2dec file "$BATS_TEST_TMPDIR/v3.qcow2"
    nbd_py "
assert h.is_read_only()
assert not h.can_trim() and not h.can_zero()
h.set_strict_mode(0)
for name, f in [('write', lambda: h.pwrite(b'x' * 512, 0)),
                ('trim', lambda: h.trim(512, 0)),
                ('zero', lambda: h.zero(512, 0))]:
    try:
        f()
        sys.exit(name + ' succeeded')
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, (name, e)
"
    stop_server
    [ "$(sha "$BATS_TEST_TMPDIR/v3.qcow2")" = "$before" ]
}

@test "qcow2dec: an image with a backing file is refused, naming it" {
    make_image "$BATS_TEST_TMPDIR/base.qcow2"
    qemu-img create -q -f qcow2 -b "$BATS_TEST_TMPDIR/base.qcow2" -F qcow2 \
        "$BATS_TEST_TMPDIR/top.qcow2"
    expect_open_refused "$BATS_TEST_TMPDIR/top.qcow2" "has a backing file"
    start_server --filter=qcow2dec file "$BATS_TEST_TMPDIR/top.qcow2"
    run nbdinfo --size "$uri"
    wait_until grep -q "backing file: $BATS_TEST_TMPDIR/base.qcow2" "$log"
    wait_until grep -q "qemu-img convert" "$log"
}

@test "qcow2dec: extended L2 entries, external data files, dirty, corrupt and encrypted images are refused" {
    d=$BATS_TEST_TMPDIR
    qemu-img create -q -f qcow2 -o extended_l2=on "$d/x.qcow2" 1M
    expect_open_refused "$d/x.qcow2" "extended L2 entries"
    qemu-img create -q -f qcow2 -o data_file="$d/data.raw" "$d/df.qcow2" 1M
    expect_open_refused "$d/df.qcow2" "external data file"
    # The incompatible feature bits: dirty (0), corrupt (1), unknown (7).
    for bits in "01:is dirty" "02:marked corrupt" "80:unknown incompatible"; do
        qemu-img create -q -f qcow2 "$d/f.qcow2" 1M
        poke "$d/f.qcow2" 79 "${bits%%:*}"
        expect_open_refused "$d/f.qcow2" "${bits#*:}"
    done
    # crypt_method 1 (AES), as old qemu wrote it.
    qemu-img create -q -f qcow2 "$d/e.qcow2" 1M
    poke "$d/e.qcow2" 32 00000001
    expect_open_refused "$d/e.qcow2" "is encrypted"
}

@test "qcow2dec: data that is not qcow2, and truncated images, fail the open cleanly" {
    d=$BATS_TEST_TMPDIR
    start_server --filter=qcow2dec memory 1M
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "not a qcow2 image" "$log"
    stop_server
    start_server --filter=qcow2dec memory 10
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "too short" "$log"
    stop_server
    make_image "$d/v3.qcow2"
    # Inside the header, and before the end of the L1 table.
    head -c 90 "$d/v3.qcow2" > "$d/t1.qcow2"
    expect_open_refused "$d/t1.qcow2" "truncated"
    head -c "$(qcow2_field "$d/v3.qcow2" l1)" "$d/v3.qcow2" > "$d/t2.qcow2"
    expect_open_refused "$d/t2.qcow2" "L1 table"
    # Cut after the L1 table: the clusters past the end fail with EIO.
    head -c 400000 "$d/v3.qcow2" > "$d/t3.qcow2"
    [ "$(qcow2_field "$d/v3.qcow2" l1)" -lt 400000 ]
    start_server --filter=qcow2dec file "$d/t3.qcow2"
    nbd_py "
try:
    h.pread(65536, 7000000)
    sys.exit('a read past the end of the image succeeded')
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
assert h.pread(4096, 10 * 1048576) == bytes(4096)
"
    wait_until grep -q "past the end of the image" "$log"
}

@test "qcow2dec: corrupt header fields are refused at open" {
    d=$BATS_TEST_TMPDIR
    for case in "4:00000001:version 1" "4:00000004:version 4" \
                "20:0000001e:cluster_bits 30" "20:00000008:cluster_bits 8" \
                "36:00000000:cannot map" "100:00000010:header_length" \
                "40:0000000000000200:not aligned" \
                "40:0000100000000000:past the end" \
                "24:ffffffffffffffff:too large" \
                "0:00000000:not a qcow2 image"; do
        IFS=: read -r off hex text <<< "$case"
        qemu-img create -q -f qcow2 "$d/h.qcow2" 1M
        poke "$d/h.qcow2" "$off" "$hex"
        expect_open_refused "$d/h.qcow2" "$text"
    done
}

@test "qcow2dec: L1 and L2 entries pointing past the end fail reads with EIO, not the rest" {
    d=$BATS_TEST_TMPDIR
    make_image "$d/v3.qcow2"
    l1=$(qcow2_field "$d/v3.qcow2" l1)
    l2=$(qcow2_field "$d/v3.qcow2" l2)
    # L2 entry 0 (disk offset 0) points 1 TiB into a small file;
    # entry 16 (1 MiB) is a compressed cluster past the end; entry 48
    # (3 MiB: write -z) has reserved bits.
    cp "$d/v3.qcow2" "$d/l2.qcow2"
    poke "$d/l2.qcow2" "$l2" 8000010000000000
    poke "$d/l2.qcow2" $((l2 + 16 * 8)) 4000000100000000
    poke "$d/l2.qcow2" $((l2 + 48 * 8)) 0000000000000011
    start_server --filter=qcow2dec file "$d/l2.qcow2"
    nbd_meta_py "
want = open('$d/v3.qcow2.raw', 'rb').read()
for off in [0, 65536 - 512, 1048576, 3 * 1048576]:
    try:
        h.pread(1024, off)
        sys.exit('read at %d succeeded' % off)
    except nbd.Error as e:
        assert e.errnum == errno.EIO, (off, e)
try:
    h.block_status(4 * 1048576, 0, lambda *a: 0)
    sys.exit('block status over a corrupt L2 entry succeeded')
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
# The rest of the disk is fine.
assert h.pread(65536, 65536) == want[65536:131072]
assert h.pread(300000, 7000000) == want[7000000:7300000]
"
    wait_until grep -q "corrupt qcow2 L2 entry" "$log"
    stop_server
    # L1 entry 0 points past the end: the first 512 MiB fail.
    cp "$d/v3.qcow2" "$d/l1.qcow2"
    poke "$d/l1.qcow2" "$l1" 8000010000000000
    start_server --filter=qcow2dec file "$d/l1.qcow2"
    nbd_py "
try:
    h.pread(512, 0)
    sys.exit('read succeeded')
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
"
    wait_until grep -q "corrupt qcow2 L1 entry" "$log"
}

@test "qcow2dec: a damaged compressed cluster fails with EIO, the others still read" {
    d=$BATS_TEST_TMPDIR
    make_image "$d/plain.qcow2"
    qemu-img convert -c -O qcow2 "$d/plain.qcow2" "$d/c.qcow2"
    # Overwrite the compressed data of the cluster at disk offset 64 KiB
    # (a pattern, so qemu-img compressed it) with garbage.
    at=$(/usr/bin/python3 -c "
import struct
d = open('$d/c.qcow2', 'rb').read()
l1 = struct.unpack('>Q', d[40:48])[0]
l2 = struct.unpack('>Q', d[l1:l1 + 8])[0] & 0x00fffffffffffe00
e = struct.unpack('>Q', d[l2 + 8 * (65536 // 65536):][:8])[0]
assert e & (1 << 62), hex(e)
print(e & ((1 << 54) - 1))")
    poke "$d/c.qcow2" "$at" "$(printf 'ff%.0s' $(seq 64))"
    start_server --filter=qcow2dec file "$d/c.qcow2"
    nbd_py "
want = open('$d/plain.qcow2.raw', 'rb').read()
try:
    h.pread(4096, 65536)
    sys.exit('read of the damaged cluster succeeded')
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
assert h.pread(65536, 0) == want[0:65536]
assert h.pread(300000, 7000000) == want[7000000:7300000]
assert h.pread(4096, 65536 + 65536) == want[65536 + 65536:65536 + 69632]
"
    wait_until grep -q "compressed cluster" "$log"
}

@test "qcow2dec: partition over qcow2dec serves a partition of a qcow2 disk" {
    requires sfdisk
    d=$BATS_TEST_TMPDIR
    random_file "$d/disk.img" 8M
    printf 'label: dos\nstart=2048, size=6144, type=83\n' |
        sfdisk -q "$d/disk.img" >/dev/null
    qemu-img convert -O qcow2 "$d/disk.img" "$d/disk.qcow2"
    start_server --filter=partition --filter=qcow2dec \
        file "$d/disk.qcow2" partition=1
    nbdcopy "$uri" "$d/out"
    dd if="$d/disk.img" bs=512 skip=2048 count=6144 status=none > "$d/want"
    cmp "$d/out" "$d/want"
}

@test "qcow2dec: bad parameters are refused naming the value" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=qcow2dec memory 1M qcow2dec-l2-cache=0
    [ "$status" -eq 1 ]
    [[ "$output" == *"qcow2dec-l2-cache=0"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=qcow2dec memory 1M qcow2dec-l2-cache=lots
    [ "$status" -eq 1 ]
    [[ "$output" == *"qcow2dec-l2-cache=lots"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=qcow2dec memory 1M qcow2dec-l2-cache=-3
    [ "$status" -eq 1 ]
    [[ "$output" == *"qcow2dec-l2-cache=-3"* ]]
}

@test "qcow2dec: --help shows the filter's parameter" {
    run "$NBDKIT" --filter=qcow2dec memory --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"qcow2dec-l2-cache=N"* ]]
}
