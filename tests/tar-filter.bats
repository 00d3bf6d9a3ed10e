#!/usr/bin/env bats
# The tar filter: one entry of a tar file, found by reading its headers
# at open; reads and writes go to the entry's bytes in the tar file.

load helpers

setup() {
    requires tar
    tar --version | head -n 1 | grep -q 'GNU tar' || skip "tar is not GNU tar"
    d=$BATS_TEST_TMPDIR/d
    mkdir -p "$d"
}

# make_tree: files in $d: small ones around a 3 MiB disk image.
make_tree() {
    printf 'the manifest\n' > "$d/disk.mf"
    random_file "$d/disk.img" 3000000
    random_file "$d/other" 70000
}

# serve_and_compare TAR ENTRY FILE [PARAMS]: serve ENTRY of TAR, check
# its size and bytes (nbdcopy, and nbdsh reads) against FILE.
serve_and_compare() {
    local tarfile=$1 entry=$2 want=$3
    shift 3
    start_server --filter=tar file "$tarfile" tar-entry="$entry" "$@"
    [ "$(nbdinfo --size "$uri")" -eq "$(stat -c %s "$want")" ]
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$want"
    nbd_py "
want = open('$want', 'rb').read()
size = h.get_size()
for off, n in [(0, 1), (size - 1, 1), (size // 3, 4097), (0, size)]:
    if n > 0 and off + n <= size:
        assert h.pread(n, off) == want[off:off + n], (off, n)
"
    stop_server
}

@test "tar: an entry of a GNU tar file is served byte for byte" {
    make_tree
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" disk.mf disk.img other
    serve_and_compare "$BATS_TEST_TMPDIR/t.tar" disk.img "$d/disk.img"
    serve_and_compare "$BATS_TEST_TMPDIR/t.tar" other "$d/other"
    serve_and_compare "$BATS_TEST_TMPDIR/t.tar" disk.mf "$d/disk.mf"
}

@test "tar: ustar, pax, v7 and gnu formats are all read" {
    make_tree
    for fmt in ustar pax v7 gnu oldgnu posix; do
        tar cf "$BATS_TEST_TMPDIR/t-$fmt.tar" --format=$fmt -C "$d" disk.mf disk.img other
        serve_and_compare "$BATS_TEST_TMPDIR/t-$fmt.tar" disk.img "$d/disk.img"
        serve_and_compare "$BATS_TEST_TMPDIR/t-$fmt.tar" other "$d/other"
    done
}

@test "tar: long names (GNU long name, pax path, ustar prefix) are found" {
    make_tree
    long=$(printf 'directory-with-a-rather-long-name-%02d/' 1 2 3 4)
    mkdir -p "$d/$long"
    cp "$d/disk.img" "$d/${long}a-disk-image-with-a-long-name-too.img"
    name="${long}a-disk-image-with-a-long-name-too.img"
    [ ${#name} -gt 100 ]
    for fmt in gnu pax ustar; do
        tar cf "$BATS_TEST_TMPDIR/t-$fmt.tar" --format=$fmt -C "$d" disk.mf "$long" other
        tar tf "$BATS_TEST_TMPDIR/t-$fmt.tar" | grep -qxF "$name"
        serve_and_compare "$BATS_TEST_TMPDIR/t-$fmt.tar" "$name" "$d/$name"
        serve_and_compare "$BATS_TEST_TMPDIR/t-$fmt.tar" other "$d/other"
    done
    # A name over 255 bytes: GNU and pax only.
    deep=$(printf 'd%03d-with-some-padding-to-be-long/' $(seq 1 8))
    mkdir -p "$d/$deep"
    printf 'deep down\n' > "$d/${deep}f.txt"
    for fmt in gnu pax; do
        tar cf "$BATS_TEST_TMPDIR/deep-$fmt.tar" --format=$fmt -C "$d" "$deep" disk.img
        serve_and_compare "$BATS_TEST_TMPDIR/deep-$fmt.tar" "${deep}f.txt" "$d/${deep}f.txt"
        serve_and_compare "$BATS_TEST_TMPDIR/deep-$fmt.tar" disk.img "$d/disk.img"
    done
}

@test "tar: a write through nbdsh changes the entry, and tar x extracts it" {
    make_tree
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" disk.mf disk.img other
    size=$(stat -c %s "$BATS_TEST_TMPDIR/t.tar")
    start_server --filter=tar file "$BATS_TEST_TMPDIR/t.tar" tar-entry=disk.img
    nbd_py "
assert not h.is_read_only()
size = h.get_size()
h.pwrite(b'A' * 4096, 0)
h.pwrite(b'middle', 1234567)
h.pwrite(b'Z' * 10, size - 10)
h.zero(8192, 65536)
h.flush()
"
    stop_server
    # Make the same changes to the original, then compare with tar x.
    /usr/bin/python3 -c "
f = open('$d/disk.img', 'r+b')
f.seek(0); f.write(b'A' * 4096)
f.seek(1234567); f.write(b'middle')
f.seek(3000000 - 10); f.write(b'Z' * 10)
f.seek(65536); f.write(bytes(8192))
"
    [ "$(stat -c %s "$BATS_TEST_TMPDIR/t.tar")" -eq "$size" ]
    mkdir "$BATS_TEST_TMPDIR/x"
    tar xf "$BATS_TEST_TMPDIR/t.tar" -C "$BATS_TEST_TMPDIR/x"
    cmp "$BATS_TEST_TMPDIR/x/disk.img" "$d/disk.img"
    cmp "$BATS_TEST_TMPDIR/x/disk.mf" "$d/disk.mf"
    cmp "$BATS_TEST_TMPDIR/x/other" "$d/other"
}

@test "tar: writes cannot go past the entry, and the tar file keeps its size" {
    make_tree
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" disk.img other
    before=$(sha "$BATS_TEST_TMPDIR/t.tar")
    start_server --filter=tar file "$BATS_TEST_TMPDIR/t.tar" tar-entry=disk.img
    nbd_py "
size = h.get_size()
assert size == 3000000, size
h.set_strict_mode(0)
for off, n in [(size - 1, 2), (size, 512), (size + 4096, 512)]:
    try:
        h.pwrite(b'x' * n, off)
        sys.exit('a write at %d of %d bytes succeeded' % (off, n))
    except nbd.Error as e:
        assert e.errnum in (errno.EINVAL, errno.ENOSPC), e
assert h.get_size() == size
"
    stop_server
    [ "$(sha "$BATS_TEST_TMPDIR/t.tar")" = "$before" ]
    tar xf "$BATS_TEST_TMPDIR/t.tar" -C "$BATS_TEST_TMPDIR" other
    cmp "$BATS_TEST_TMPDIR/other" "$d/other"
}

@test "tar: with -r the entry is read-only and writes fail with EPERM" {
    make_tree
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" disk.img
    before=$(sha "$BATS_TEST_TMPDIR/t.tar")
    start_server -r --filter=tar file "$BATS_TEST_TMPDIR/t.tar" tar-entry=disk.img
    nbd_py "
assert h.is_read_only()
h.set_strict_mode(0)
try:
    h.pwrite(b'x' * 512, 0)
    sys.exit('the write succeeded')
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
"
    [ "$(sha "$BATS_TEST_TMPDIR/t.tar")" = "$before" ]
}

@test "tar: an entry that is not there refuses the open and the server stays up" {
    make_tree
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" disk.img other
    start_server --filter=tar file "$BATS_TEST_TMPDIR/t.tar" tar-entry=missing.img
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the entry 'missing.img' is not in the tar file" "$log"
    kill -0 "$server_pid"
    stop_server
    # A name must match exactly as tar tf lists it.
    start_server --filter=tar file "$BATS_TEST_TMPDIR/t.tar" tar-entry=./disk.img
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the entry './disk.img' is not in the tar file" "$log"
}

@test "tar: a directory or a link is refused as not a regular file" {
    make_tree
    mkdir "$d/sub"
    ln -s disk.img "$d/link"
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" sub link disk.img
    start_server --filter=tar file "$BATS_TEST_TMPDIR/t.tar" tar-entry=sub/
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the tar entry 'sub/' is not a regular file (its type is '5')" "$log"
    stop_server
    start_server --filter=tar file "$BATS_TEST_TMPDIR/t.tar" tar-entry=link
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "not a regular file (its type is '2')" "$log"
    stop_server
    # A symlink with a long name and a long target: GNU tar writes a
    # long link name ('K') and a long name ('L') before its header.
    long=$(printf 'a-long-link-name-%03d-' $(seq 1 8))
    target=$(printf 'a-long-target-%03d-' $(seq 1 8))
    ln -s "$target" "$d/$long"
    tar cf "$BATS_TEST_TMPDIR/k.tar" --format=gnu -C "$d" "$long" disk.img
    start_server --filter=tar file "$BATS_TEST_TMPDIR/k.tar" tar-entry="$long"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the tar entry '$long' is not a regular file (its type is '2')" "$log"
    stop_server
    serve_and_compare "$BATS_TEST_TMPDIR/k.tar" disk.img "$d/disk.img"
}

@test "tar: a damaged header refuses the open with the reason" {
    make_tree
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" other disk.img
    # The second header (after other's 70000 bytes): damage its name.
    at=$((512 + (70000 + 511) / 512 * 512))
    printf 'X' | dd of="$BATS_TEST_TMPDIR/t.tar" bs=1 seek=$((at + 3)) \
        conv=notrunc status=none
    not tar tf "$BATS_TEST_TMPDIR/t.tar" >/dev/null 2>&1
    start_server --filter=tar file "$BATS_TEST_TMPDIR/t.tar" tar-entry=disk.img
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the tar header at offset $at: the header checksum is wrong" "$log"
    stop_server
    # Not a tar file at all.
    random_file "$BATS_TEST_TMPDIR/junk" 100000
    start_server --filter=tar file "$BATS_TEST_TMPDIR/junk" tar-entry=disk.img
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the tar header at offset 0:" "$log"
    stop_server
    start_server --filter=tar memory 100 tar-entry=disk.img
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "not a tar file: 100 bytes" "$log"
}

@test "tar: a damaged pax record refuses the open" {
    make_tree
    tar cf "$BATS_TEST_TMPDIR/t.tar" --format=pax -C "$d" disk.img
    # The pax header's data is the second block (it has no checksum):
    # make its first record's length larger than the header.
    /usr/bin/python3 -c "
f = open('$BATS_TEST_TMPDIR/t.tar', 'r+b')
f.seek(512); data = bytearray(f.read(512))
i = data.index(b' ')
data[0:i] = b'9' * i
f.seek(512); f.write(data)
"
    start_server --filter=tar file "$BATS_TEST_TMPDIR/t.tar" tar-entry=disk.img
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the pax extended header at offset 0:" "$log"
}

@test "tar: a truncated tar file refuses the open as truncated" {
    make_tree
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" other disk.img
    # Cut inside disk.img's data, then inside its header.
    head -c 2000000 "$BATS_TEST_TMPDIR/t.tar" > "$BATS_TEST_TMPDIR/cut.tar"
    start_server --filter=tar file "$BATS_TEST_TMPDIR/cut.tar" tar-entry=disk.img
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the tar file is truncated: the entry 'disk.img' (3000000 bytes" "$log"
    stop_server
    head -c $((512 + 70144 + 100)) "$BATS_TEST_TMPDIR/t.tar" > "$BATS_TEST_TMPDIR/cut.tar"
    start_server --filter=tar file "$BATS_TEST_TMPDIR/cut.tar" tar-entry=disk.img
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the tar file is truncated: it ends at 70756 bytes" "$log"
    stop_server
    # Cut just after an entry, before the end-of-archive blocks: the
    # entry before is still there, a later one is not.
    head -c $((512 + 70144)) "$BATS_TEST_TMPDIR/t.tar" > "$BATS_TEST_TMPDIR/cut.tar"
    serve_and_compare "$BATS_TEST_TMPDIR/cut.tar" other "$d/other"
    start_server --filter=tar file "$BATS_TEST_TMPDIR/cut.tar" tar-entry=disk.img
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the entry 'disk.img' is not in the tar file" "$log"
}

@test "tar: tar-limit bounds how far the filter looks for the entry" {
    make_tree
    random_file "$d/big" 1M
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" big disk.img
    start_server --filter=tar file "$BATS_TEST_TMPDIR/t.tar" tar-entry=disk.img \
        tar-limit=512K
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the entry 'disk.img' was not found in the first 524288 bytes of the tar file (tar-limit=524288)" "$log"
    stop_server
    # The entry's header is at 1 MiB + 512: a limit past it is enough.
    serve_and_compare "$BATS_TEST_TMPDIR/t.tar" disk.img "$d/disk.img" tar-limit=1100K
    serve_and_compare "$BATS_TEST_TMPDIR/t.tar" disk.img "$d/disk.img" tar-limit=0
}

@test "tar: sizes of 8 GiB and more (pax size, GNU base-256) are read" {
    # GNU tar would have to read 9 GiB to make these: python's tarfile
    # writes the same headers, and the data is a hole.
    for fmt in PAX_FORMAT GNU_FORMAT; do
        /usr/bin/python3 -c "
import tarfile, os
size = 9 * 1024**3 + 5
ti = tarfile.TarInfo('big.img')
ti.size = size
with open('$BATS_TEST_TMPDIR/big.tar', 'wb') as f:
    f.write(tarfile.TarInfo('a').tobuf(tarfile.$fmt))
    hdr = ti.tobuf(tarfile.$fmt)
    f.write(hdr)
    start = 512 + len(hdr)
    f.seek(start + size - 5)
    f.write(b'tail!')
    f.write(bytes(512 - (size % 512) + 1024))
"
        tar tvf "$BATS_TEST_TMPDIR/big.tar" | grep -q ' 9663676421 .*big.img'
        start_server --filter=tar file "$BATS_TEST_TMPDIR/big.tar" tar-entry=big.img
        [ "$(nbdinfo --size "$uri")" -eq 9663676421 ]
        nbdsh -u "$uri" -c "assert h.pread(5, 9663676416) == b'tail!'" \
            -c "assert h.pread(512, 0) == bytes(512)"
        stop_server
    done
}

@test "tar: an entry of a tar file inside a gzip file, and of a tar.xz" {
    requires gzip xz
    make_tree
    tar czf "$BATS_TEST_TMPDIR/t.tar.gz" -C "$d" disk.mf disk.img
    start_server --filter=tar --filter=gzip file "$BATS_TEST_TMPDIR/t.tar.gz" \
        tar-entry=disk.img
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$d/disk.img"
    stop_server
    tar cf - -C "$d" disk.mf disk.img | xz --block-size=1MiB > "$BATS_TEST_TMPDIR/t.tar.xz"
    start_server --filter=tar --filter=xz file "$BATS_TEST_TMPDIR/t.tar.xz" \
        tar-entry=disk.mf
    nbdsh -u "$uri" -c "assert h.pread(h.get_size(), 0) == b'the manifest\n'"
}

@test "tar: bad parameters are refused naming the value, with status 1" {
    make_tree
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" disk.img
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=tar file "$BATS_TEST_TMPDIR/t.tar"
    [ "$status" -eq 1 ]
    [[ "$output" == *"the tar filter needs tar-entry=PATH"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=tar file "$BATS_TEST_TMPDIR/t.tar" \
        tar-entry=disk.img tar-limit=lots
    [ "$status" -eq 1 ]
    [[ "$output" == *"tar-limit=lots"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=tar file "$BATS_TEST_TMPDIR/t.tar" \
        tar-entry=disk.img tar-limit=-1
    [ "$status" -eq 1 ]
    [[ "$output" == *"tar-limit=-1"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=tar file "$BATS_TEST_TMPDIR/t.tar" \
        tar-entry=disk.img tar-entry=other
    [ "$status" -eq 1 ]
    [[ "$output" == *"tar-entry=other: tar-entry= was already given"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=tar file "$BATS_TEST_TMPDIR/t.tar" \
        tar-entry=
    [ "$status" -eq 1 ]
    [[ "$output" == *"tar-entry=: the entry name is empty"* ]]
}

@test "tar: nbdkit's tar= parameter is accepted and ignored" {
    make_tree
    tar cf "$BATS_TEST_TMPDIR/t.tar" -C "$d" disk.img
    serve_and_compare "$BATS_TEST_TMPDIR/t.tar" disk.img "$d/disk.img" tar=gtar
}

@test "tar: --help shows the filter's parameters" {
    run "$NBDKIT" --filter=tar memory --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"tar-entry=PATH"* ]]
    [[ "$output" == *"tar-limit=SIZE"* ]]
}
