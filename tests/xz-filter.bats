#!/usr/bin/env bats
# The xz filter: the uncompressed contents of an xz file, read-only,
# with random access by block.

load helpers

setup() {
    requires xz
}

# make_disk PATH: 6 MiB of random data with two runs of zeros.
make_disk() {
    random_file "$1" 2M
    head -c 1M /dev/zero >> "$1"
    random_file "$1.more" 2500000
    cat "$1.more" >> "$1"
    head -c 300000 /dev/zero >> "$1"
    random_file "$1.more" 500000
    cat "$1.more" >> "$1"
    rm -f "$1.more"
}

# The compressed offset of block N (from 1) of an xz file.
block_offset() {
    xz --robot -lvv "$1" | awk -v n="$2" '$1 == "block" && $4 == n { print $5 }'
}

# Read at random offsets (some across block boundaries, some spanning
# several blocks, some in flight at once) and compare with the file.
check_random_reads() {
    nbd_py "
import random
want = open('$1', 'rb').read()
size = h.get_size()
assert size == len(want), (size, len(want))
rng = random.Random(42)
MiB = 1024 * 1024
cases = [(0, 1), (size - 1, 1), (MiB - 10, 20), (2 * MiB - 4096, 8192),
         (MiB // 2, 3 * MiB), (0, min(size, 5 * MiB))]
for _ in range(60):
    n = rng.randint(1, 300000)
    off = rng.randint(0, size - n)
    cases.append((off, n))
for off, n in cases:
    if off >= size:
        continue
    n = min(n, size - off)
    got = h.pread(n, off)
    assert got == want[off:off + n], ('mismatch', off, n)
# Many reads in flight at once, several of the same block.
bufs = []
for i in range(16):
    off = ((i % 4) * MiB + i * 1000) % (size - 65536)
    b = nbd.Buffer(65536)
    h.aio_pread(b, off)
    bufs.append((off, b))
while h.aio_in_flight() > 0:
    h.poll(-1)
for off, b in bufs:
    assert b.to_bytearray() == want[off:off + 65536], ('aio mismatch', off)
"
}

@test "xz: the size is the uncompressed size and the data is the original" {
    make_disk "$BATS_TEST_TMPDIR/disk"
    xz --block-size=1MiB -k "$BATS_TEST_TMPDIR/disk"
    start_server --filter=xz file "$BATS_TEST_TMPDIR/disk.xz"
    [ "$(nbdinfo --size "$uri")" -eq "$(stat -c %s "$BATS_TEST_TMPDIR/disk")" ]
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/out")" = "$(sha "$BATS_TEST_TMPDIR/disk")" ]
}

@test "xz: random reads across block boundaries return the original bytes" {
    make_disk "$BATS_TEST_TMPDIR/disk"
    xz --block-size=1MiB -k "$BATS_TEST_TMPDIR/disk"
    start_server --filter=xz file "$BATS_TEST_TMPDIR/disk.xz"
    check_random_reads "$BATS_TEST_TMPDIR/disk"
}

@test "xz: a cache of one block still returns the right bytes" {
    make_disk "$BATS_TEST_TMPDIR/disk"
    xz --block-size=1MiB -k "$BATS_TEST_TMPDIR/disk"
    start_server --filter=xz file "$BATS_TEST_TMPDIR/disk.xz" xz-max-depth=1
    check_random_reads "$BATS_TEST_TMPDIR/disk"
}

@test "xz: concurrent reads of one block share one decompression" {
    make_disk "$BATS_TEST_TMPDIR/disk"
    xz --block-size=1MiB -k "$BATS_TEST_TMPDIR/disk"
    start_server -v --filter=xz file "$BATS_TEST_TMPDIR/disk.xz"
    nbd_py "
want = open('$BATS_TEST_TMPDIR/disk', 'rb').read()
MiB = 1024 * 1024
bufs = []
for i in range(32):
    # All in block 2 (1M..2M), half of them also in block 3.
    off = MiB + i * 30000 + (MiB - 40000 if i % 2 else 0)
    b = nbd.Buffer(65536)
    h.aio_pread(b, off)
    bufs.append((off, b))
while h.aio_in_flight() > 0:
    h.poll(-1)
for off, b in bufs:
    assert b.to_bytearray() == want[off:off + 65536], ('mismatch', off)
"
    # Each block was decompressed once, however the reads interleaved
    # (the cache holds 8 blocks, so none was dropped).
    [ "$(grep -c 'decompressed the block at uncompressed offset 1048576 ' "$log")" -eq 1 ]
    [ "$(grep -c 'decompressed the block at uncompressed offset 2097152 ' "$log")" -eq 1 ]
}

@test "xz: every check type (none, CRC32, CRC64, SHA-256) is verified and read" {
    make_disk "$BATS_TEST_TMPDIR/disk"
    for check in none crc32 crc64 sha256; do
        xz --block-size=1MiB --check=$check -c "$BATS_TEST_TMPDIR/disk" \
           > "$BATS_TEST_TMPDIR/disk.$check.xz"
        start_server --filter=xz file "$BATS_TEST_TMPDIR/disk.$check.xz"
        nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
        [ "$(sha "$BATS_TEST_TMPDIR/out")" = "$(sha "$BATS_TEST_TMPDIR/disk")" ]
        stop_server
    done
}

@test "xz: a small file made by plain xz (one block) is served" {
    random_file "$BATS_TEST_TMPDIR/small" 300000
    xz -k "$BATS_TEST_TMPDIR/small"
    start_server --filter=xz file "$BATS_TEST_TMPDIR/small.xz"
    [ "$(nbdinfo --size "$uri")" -eq 300000 ]
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/small"
    check_random_reads "$BATS_TEST_TMPDIR/small"
}

@test "xz: concatenated streams with stream padding read as one disk" {
    random_file "$BATS_TEST_TMPDIR/a" 1500000
    random_file "$BATS_TEST_TMPDIR/b" 2000000
    xz --block-size=512KiB -k "$BATS_TEST_TMPDIR/a"
    xz --block-size=700KiB --check=crc32 -k "$BATS_TEST_TMPDIR/b"
    {
        cat "$BATS_TEST_TMPDIR/a.xz"
        head -c 8 /dev/zero
        cat "$BATS_TEST_TMPDIR/b.xz"
        head -c 4 /dev/zero
    } > "$BATS_TEST_TMPDIR/ab.xz"
    cat "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b" > "$BATS_TEST_TMPDIR/ab"
    xz -t "$BATS_TEST_TMPDIR/ab.xz"
    start_server --filter=xz file "$BATS_TEST_TMPDIR/ab.xz"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/ab"
    check_random_reads "$BATS_TEST_TMPDIR/ab"
}

@test "xz: a file with a block bigger than xz-max-block is refused, saying how to fix it" {
    random_file "$BATS_TEST_TMPDIR/disk" 3M
    xz --block-size=2MiB -k "$BATS_TEST_TMPDIR/disk"
    start_server --filter=xz file "$BATS_TEST_TMPDIR/disk.xz" xz-max-block=1M
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "block of 2097152 bytes" "$log"
    wait_until grep -q "xz-max-block=1048576" "$log"
    wait_until grep -q -- "--block-size" "$log"
    stop_server
    # The same file with the limit raised is fine.
    start_server --filter=xz file "$BATS_TEST_TMPDIR/disk.xz" xz-max-block=2M
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/disk"
}

@test "xz: a corrupted block fails with EIO, the other blocks still read" {
    make_disk "$BATS_TEST_TMPDIR/disk"
    xz --block-size=1MiB -k "$BATS_TEST_TMPDIR/disk"
    at=$(block_offset "$BATS_TEST_TMPDIR/disk.xz" 2)
    [ -n "$at" ]
    # Flip a byte well inside block 2's compressed data.
    /usr/bin/python3 -c "
f = open('$BATS_TEST_TMPDIR/disk.xz', 'r+b')
f.seek($at + 5000)
b = f.read(1)
f.seek($at + 5000)
f.write(bytes([b[0] ^ 0x55]))
"
    start_server --filter=xz file "$BATS_TEST_TMPDIR/disk.xz"
    nbd_py "
want = open('$BATS_TEST_TMPDIR/disk', 'rb').read()
MiB = 1024 * 1024
assert h.pread(4096, 0) == want[0:4096]
assert h.pread(4096, 2 * MiB + 10) == want[2 * MiB + 10:2 * MiB + 4106]
for off, n in [(MiB, 512), (MiB + 700000, 4096), (MiB - 100, 200)]:
    try:
        h.pread(n, off)
        sys.exit('read of the corrupted block at %d succeeded' % off)
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
# The connection is still good.
assert h.pread(4096, 3 * MiB) == want[3 * MiB:3 * MiB + 4096]
"
    wait_until grep -q "corrupt" "$log"
}

@test "xz: a damaged index fails the open with the reason logged" {
    random_file "$BATS_TEST_TMPDIR/disk" 2M
    xz --block-size=1MiB -k "$BATS_TEST_TMPDIR/disk"
    # The index is just before the 12-byte footer: damage its CRC32.
    size=$(stat -c %s "$BATS_TEST_TMPDIR/disk.xz")
    printf '\xff\xff' | dd of="$BATS_TEST_TMPDIR/disk.xz" bs=1 \
        seek=$((size - 14)) conv=notrunc status=none
    start_server --filter=xz file "$BATS_TEST_TMPDIR/disk.xz"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "xz index" "$log"
}

@test "xz: the export is read-only: writes, trims and zeroes fail with EPERM" {
    random_file "$BATS_TEST_TMPDIR/disk" 2M
    xz --block-size=1MiB -k "$BATS_TEST_TMPDIR/disk"
    before=$(sha "$BATS_TEST_TMPDIR/disk.xz")
    start_server --filter=xz file "$BATS_TEST_TMPDIR/disk.xz"
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
    [ "$(sha "$BATS_TEST_TMPDIR/disk.xz")" = "$before" ]
}

@test "xz: cache requests load blocks and reads after them are right" {
    random_file "$BATS_TEST_TMPDIR/disk" 3M
    xz --block-size=1MiB -k "$BATS_TEST_TMPDIR/disk"
    start_server --filter=xz file "$BATS_TEST_TMPDIR/disk.xz"
    nbd_py "
want = open('$BATS_TEST_TMPDIR/disk', 'rb').read()
assert h.can_cache()
h.cache(2 * 1024 * 1024, 500000)
assert h.pread(1000000, 600000) == want[600000:1600000]
"
}

@test "xz: data that is not xz fails the open cleanly" {
    start_server --filter=xz memory 1M
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "not an xz file" "$log"
    # The server is still up for the next client.
    kill -0 "$server_pid"
    stop_server
    start_server --filter=xz memory 10
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "not an xz file" "$log"
}

@test "xz: partition over xz serves a partition of a compressed disk" {
    requires sfdisk
    random_file "$BATS_TEST_TMPDIR/disk.img" 8M
    printf 'label: dos\nstart=2048, size=6144, type=83\n' |
        sfdisk -q "$BATS_TEST_TMPDIR/disk.img" >/dev/null
    xz --block-size=1MiB -k "$BATS_TEST_TMPDIR/disk.img"
    start_server --filter=partition --filter=xz \
        file "$BATS_TEST_TMPDIR/disk.img.xz" partition=1
    [ "$(nbdinfo --size "$uri")" -eq $((6144 * 512)) ]
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    dd if="$BATS_TEST_TMPDIR/disk.img" bs=512 skip=2048 count=6144 status=none \
        > "$BATS_TEST_TMPDIR/want"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/want"
}

@test "xz: bad parameters are refused naming the value" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=xz memory 1M xz-max-depth=0
    [ "$status" -eq 1 ]
    [[ "$output" == *"xz-max-depth=0"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=xz memory 1M xz-max-block=lots
    [ "$status" -eq 1 ]
    [[ "$output" == *"xz-max-block=lots"* ]]
}

@test "xz: --help shows the filter's parameters" {
    run "$NBDKIT" --filter=xz memory --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"xz-max-block=SIZE"* ]]
    [[ "$output" == *"xz-max-depth=N"* ]]
}
