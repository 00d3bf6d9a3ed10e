#!/usr/bin/env bats
# The gzip filter: the uncompressed contents of a gzip file, read-only,
# uncompressed once into a temporary file at the first open.

load helpers

setup() {
    requires gzip
}

# make_disk PATH: 5 MiB of random data, a run of zeros, more random.
make_disk() {
    random_file "$1" 5M
    head -c 3M /dev/zero >> "$1"
    random_file "$1.more" 1234567
    cat "$1.more" >> "$1"
    rm -f "$1.more"
}

# Reads at random offsets (and several in flight at once), compared
# with the file.
check_random_reads() {
    nbd_py "
import random
want = open('$1', 'rb').read()
size = h.get_size()
assert size == len(want), (size, len(want))
rng = random.Random(7)
cases = [(0, 1), (size - 1, 1), (0, min(size, 4 << 20))]
for _ in range(50):
    n = rng.randint(1, 200000)
    off = rng.randint(0, size - n)
    cases.append((off, n))
for off, n in cases:
    n = min(n, size - off)
    assert h.pread(n, off) == want[off:off + n], ('mismatch', off, n)
bufs = []
for i in range(16):
    off = rng.randint(0, size - 65536)
    b = nbd.Buffer(65536)
    h.aio_pread(b, off)
    bufs.append((off, b))
while h.aio_in_flight() > 0:
    h.poll(-1)
for off, b in bufs:
    assert b.to_bytearray() == want[off:off + 65536], ('aio mismatch', off)
"
}

@test "gzip: the size is the uncompressed size and the data is the original" {
    make_disk "$BATS_TEST_TMPDIR/disk"
    gzip -k "$BATS_TEST_TMPDIR/disk"
    start_server --filter=gzip file "$BATS_TEST_TMPDIR/disk.gz"
    [ "$(nbdinfo --size "$uri")" -eq "$(stat -c %s "$BATS_TEST_TMPDIR/disk")" ]
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/disk"
    check_random_reads "$BATS_TEST_TMPDIR/disk"
}

@test "gzip: data that compresses a thousand times is uncompressed in bounded pieces" {
    head -c 40M /dev/zero > "$BATS_TEST_TMPDIR/zeros"
    printf 'the end' >> "$BATS_TEST_TMPDIR/zeros"
    gzip -9 -k "$BATS_TEST_TMPDIR/zeros"
    # The whole file fits in one chunk read from below.
    [ "$(stat -c %s "$BATS_TEST_TMPDIR/zeros.gz")" -lt 1000000 ]
    start_server --filter=gzip file "$BATS_TEST_TMPDIR/zeros.gz"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/zeros"
}

@test "gzip: a small file and an empty one are served" {
    printf 'hello, world\n' > "$BATS_TEST_TMPDIR/small"
    gzip -k "$BATS_TEST_TMPDIR/small"
    : > "$BATS_TEST_TMPDIR/empty"
    gzip -k "$BATS_TEST_TMPDIR/empty"
    start_server --filter=gzip file "$BATS_TEST_TMPDIR/small.gz"
    [ "$(nbdinfo --size "$uri")" -eq 13 ]
    nbdsh -u "$uri" -c "assert h.pread(13, 0) == b'hello, world\n'"
    stop_server
    start_server --filter=gzip file "$BATS_TEST_TMPDIR/empty.gz"
    [ "$(nbdinfo --size "$uri")" -eq 0 ]
}

@test "gzip: concatenated members are served one after the other, as gzip -d does" {
    random_file "$BATS_TEST_TMPDIR/a" 1500000
    random_file "$BATS_TEST_TMPDIR/b" 2000000
    printf 'third' > "$BATS_TEST_TMPDIR/c"
    gzip -k "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b" "$BATS_TEST_TMPDIR/c"
    cat "$BATS_TEST_TMPDIR"/a.gz "$BATS_TEST_TMPDIR"/b.gz "$BATS_TEST_TMPDIR"/c.gz \
        > "$BATS_TEST_TMPDIR/abc.gz"
    gzip -dc "$BATS_TEST_TMPDIR/abc.gz" > "$BATS_TEST_TMPDIR/want"
    cmp "$BATS_TEST_TMPDIR/want" <(cat "$BATS_TEST_TMPDIR"/a "$BATS_TEST_TMPDIR"/b "$BATS_TEST_TMPDIR"/c)
    start_server -v --filter=gzip file "$BATS_TEST_TMPDIR/abc.gz"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/want"
    wait_until grep -q "gzip: 3 member(s)" "$log"
    stop_server
    # Zero padding after the last member is ignored, as gzip -d does.
    head -c 1000 /dev/zero >> "$BATS_TEST_TMPDIR/abc.gz"
    start_server --filter=gzip file "$BATS_TEST_TMPDIR/abc.gz"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/want"
}

@test "gzip: clients that open at once share one decompression" {
    make_disk "$BATS_TEST_TMPDIR/disk"
    gzip -k "$BATS_TEST_TMPDIR/disk"
    start_server -v --filter=gzip file "$BATS_TEST_TMPDIR/disk.gz"
    local pids=()
    for i in 1 2 3 4; do
        nbdcopy "$uri" "$BATS_TEST_TMPDIR/out$i" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    for i in 1 2 3 4; do
        cmp "$BATS_TEST_TMPDIR/out$i" "$BATS_TEST_TMPDIR/disk"
    done
    # A later client is answered from the same copy.
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out5"
    cmp "$BATS_TEST_TMPDIR/out5" "$BATS_TEST_TMPDIR/disk"
    [ "$(grep -c 'gzip: 1 member(s)' "$log")" -eq 1 ]
}

@test "gzip: the export is read-only: writes, trims and zeroes fail with EPERM" {
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    gzip -k "$BATS_TEST_TMPDIR/disk"
    before=$(sha "$BATS_TEST_TMPDIR/disk.gz")
    start_server --filter=gzip file "$BATS_TEST_TMPDIR/disk.gz"
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
    [ "$(sha "$BATS_TEST_TMPDIR/disk.gz")" = "$before" ]
}

@test "gzip: corrupt data refuses the open, says why, and the server stays up" {
    make_disk "$BATS_TEST_TMPDIR/disk"
    gzip -k "$BATS_TEST_TMPDIR/disk"
    # Flip bytes in the middle of the deflate data.
    printf '\xde\xad\xbe\xef' | dd of="$BATS_TEST_TMPDIR/disk.gz" bs=1 \
        seek=2000000 conv=notrunc status=none
    not gzip -t "$BATS_TEST_TMPDIR/disk.gz" 2>/dev/null
    start_server --filter=gzip file "$BATS_TEST_TMPDIR/disk.gz"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "gzip filter: the gzip data is corrupt" "$log"
    # Every later open is refused the same way (it tries again).
    run nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$status" -ne 0 ]
    [ "$(grep -c 'gzip data is corrupt' "$log")" -eq 2 ]
    kill -0 "$server_pid"
}

@test "gzip: a damaged CRC in the trailer refuses the open" {
    random_file "$BATS_TEST_TMPDIR/disk" 100000
    gzip -k "$BATS_TEST_TMPDIR/disk"
    size=$(stat -c %s "$BATS_TEST_TMPDIR/disk.gz")
    printf '\x00\x00\x00\x00' | dd of="$BATS_TEST_TMPDIR/disk.gz" bs=1 \
        seek=$((size - 8)) conv=notrunc status=none
    start_server --filter=gzip file "$BATS_TEST_TMPDIR/disk.gz"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "incorrect data check" "$log"
}

@test "gzip: a truncated file refuses the open as truncated" {
    make_disk "$BATS_TEST_TMPDIR/disk"
    gzip -k "$BATS_TEST_TMPDIR/disk"
    size=$(stat -c %s "$BATS_TEST_TMPDIR/disk.gz")
    for keep in $((size / 2)) $((size - 3)) 5; do
        head -c "$keep" "$BATS_TEST_TMPDIR/disk.gz" > "$BATS_TEST_TMPDIR/cut.gz"
        start_server --filter=gzip file "$BATS_TEST_TMPDIR/cut.gz"
        run nbdinfo --size "$uri"
        [ "$status" -ne 0 ]
        wait_until grep -q "gzip data is truncated" "$log"
        stop_server
    done
}

@test "gzip: data that is not gzip refuses the open cleanly" {
    random_file "$BATS_TEST_TMPDIR/junk" 100000
    start_server --filter=gzip file "$BATS_TEST_TMPDIR/junk"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "not a gzip file (it does not start with the gzip magic bytes" "$log"
    kill -0 "$server_pid"
    stop_server
    start_server --filter=gzip memory 0
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "not a gzip file: the file is empty" "$log"
}

@test "gzip: tar over gzip serves a file inside a .tar.gz" {
    requires tar
    mkdir "$BATS_TEST_TMPDIR/d"
    make_disk "$BATS_TEST_TMPDIR/d/disk.img"
    printf 'readme\n' > "$BATS_TEST_TMPDIR/d/README"
    tar czf "$BATS_TEST_TMPDIR/t.tar.gz" -C "$BATS_TEST_TMPDIR/d" README disk.img
    start_server --filter=tar --filter=gzip file "$BATS_TEST_TMPDIR/t.tar.gz" \
        tar-entry=disk.img
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/d/disk.img"
}

@test "gzip: a TMPDIR that does not exist stops the server with status 1" {
    random_file "$BATS_TEST_TMPDIR/disk" 1000
    gzip -k "$BATS_TEST_TMPDIR/disk"
    TMPDIR=$BATS_TEST_TMPDIR/nowhere run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" \
        --filter=gzip file "$BATS_TEST_TMPDIR/disk.gz"
    [ "$status" -eq 1 ]
    [[ "$output" == *gzip* ]]
    [[ "$output" == *nowhere* ]]
}

@test "gzip: --help names the filter" {
    run "$NBDKIT" --filter=gzip memory --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"gzip filter"* ]]
}
