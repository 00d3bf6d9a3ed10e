# Structured replies and block status (base:allocation).

load helpers

@test "structured replies are negotiated and reads still return the data" {
    requires nbdsh
    start_server memory 8M
    nbd_py '
assert h.get_structured_replies_negotiated()
d = os.urandom(1 << 20)
h.pwrite(d, 3 << 20)
assert h.pread(1 << 20, 3 << 20) == d
'
}

@test "block status shows the holes and data of the memory backend" {
    requires nbdinfo
    start_server memory 8M
    nbd_py 'h.pwrite(b"x" * 65536, 1 << 20); h.pwrite(b"y" * 4096, 4 << 20)'
    run nbdinfo --map "$uri"
    [ "$status" -eq 0 ]
    echo "$output"
    [ "$(echo "$output" | awk '$4 == "data" {print $1, $2}' | tr '\n' ' ')" \
        = "1048576 65536 4194304 32768 " ]
    echo "$output" | grep -q '^ *0 *1048576 *3 *hole,zero'
}

@test "block status of any range of a memory disk, aligned or not, matches what was written" {
    requires nbdsh
    # An odd size, so that ranges end inside a page.
    start_server memory 12583013
    nbd_py '
import random
rnd = random.Random(3)
size = h.get_size()
page = 32768
written = set()
for i in range(40):
    off = rnd.randrange(0, size - 1)
    n = rnd.randrange(1, 200000)
    n = min(n, size - off)
    h.pwrite(b"\x01" * n, off)
    written.update(range(off // page, (off + n - 1) // page + 1))
h.trim(3 * page, 64 * page)
written.difference_update(range(64, 67))
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(os.environ["uri"])
def check(off, count, flags=0):
    got = []
    def cb(ctx, offset, entries, err):
        got.extend(entries)
    h.block_status(count, off, cb, flags)
    pos = off
    for i in range(0, len(got), 2):
        length, typ = got[i], got[i + 1]
        assert length > 0, got
        end = min(pos + length, off + count)
        pages = range(pos // page, (end - 1) // page + 1)
        if typ & 1:
            # A hole: nothing written in it.
            assert not any(p in written for p in pages), (off, count, pos, length)
        else:
            # Data: at this granularity, something of each page written
            # (data is always a safe answer only if it is true here).
            assert all(p in written for p in pages), (off, count, pos, length)
        pos += length
        if flags:
            break
    assert pos >= off + 1
    if not flags:
        assert pos >= off + count, (off, count, pos)
for i in range(300):
    off = rnd.randrange(0, size - 1)
    count = rnd.randrange(1, min(size - off, 3 << 20) + 1)
    check(off, count, nbd.CMD_FLAG_REQ_ONE if i % 3 == 0 else 0)
check(0, size)
check(size - 1, 1)
'
}

@test "block status of the file backend follows the file's holes" {
    requires nbdinfo
    truncate -s 4M "$BATS_TEST_TMPDIR/disk"
    printf 'data' | dd of="$BATS_TEST_TMPDIR/disk" bs=1 seek=2097152 conv=notrunc status=none
    start_server file "$BATS_TEST_TMPDIR/disk"
    run nbdinfo --map "$uri"
    [ "$status" -eq 0 ]
    echo "$output"
    echo "$output" | grep -q 'data'
    echo "$output" | grep -q 'hole,zero'
}

@test "a backend without extents is reported allocated" {
    requires nbdinfo
    start_server example1
    run nbdinfo --map "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -Eq '^ *0 *104857600 *0 *data'
}

@test "block status with REQ_ONE returns one extent" {
    requires nbdsh
    start_server memory 8M
    nbd_py '
h.pwrite(b"x" * 4096, 0)
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(os.environ["uri"])
got = []
def cb(ctx, offset, entries, err):
    got.append(entries)
h.block_status(8 << 20, 0, cb, nbd.CMD_FLAG_REQ_ONE)
assert len(got) == 1 and len(got[0]) == 2, got
assert got[0][0] == 32768 and got[0][1] == 0, got
'
}

@test "qemu-img map sees the same allocation" {
    requires qemu-img
    start_server memory 4M
    nbd_py 'h.pwrite(b"z" * 65536, 1 << 20)'
    run qemu-img map --output=json -f raw "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"start": 1048576, "length": 65536, .*"data": true'
}

@test "--no-sr turns structured replies and block status off" {
    requires nbdinfo
    start_server --no-sr memory 1M
    run nbdinfo "$uri"
    echo "$output" | grep -q 'using simple packets'
    run nbdinfo --map "$uri"
    [ "$status" -ne 0 ]
}

@test "metadata contexts are listed and set as the specification says" {
    start_server memory 1M
    run /usr/bin/python3 "$RAWCLIENT" "$sock" meta_contexts
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "SET_META_CONTEXT before structured replies is refused" {
    start_server memory 1M
    run /usr/bin/python3 "$RAWCLIENT" "$sock" meta_context_needs_structured_replies
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "errors carry a message in NBD_REPLY_TYPE_ERROR" {
    start_server memory 1M
    run /usr/bin/python3 "$RAWCLIENT" "$sock" error_messages
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "a read the backend fails is NBD_REPLY_TYPE_ERROR_OFFSET with its message" {
    truncate -s 1M "$BATS_TEST_TMPDIR/disk"
    start_server "$FAULTY" "$BATS_TEST_TMPDIR/disk" fault=eio-on-pread
    run /usr/bin/python3 "$RAWCLIENT" "$sock" backend_error_offset
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "a read of a hole is one NBD_REPLY_TYPE_OFFSET_HOLE chunk" {
    start_server memory 8M
    run /usr/bin/python3 "$RAWCLIENT" "$sock" hole_reads
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "reads of holes in a sparse file return zeros through every client" {
    requires qemu-img nbdcopy
    truncate -s 16M "$BATS_TEST_TMPDIR/disk"
    random_file "$BATS_TEST_TMPDIR/part" 1M
    dd if="$BATS_TEST_TMPDIR/part" of="$BATS_TEST_TMPDIR/disk" bs=1M seek=5 \
        conv=notrunc status=none
    start_server file "$BATS_TEST_TMPDIR/disk"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/copy1"
    [ "$(sha "$BATS_TEST_TMPDIR/copy1")" = "$(sha "$BATS_TEST_TMPDIR/disk")" ]
    qemu-img convert -f raw -O raw "$uri" "$BATS_TEST_TMPDIR/copy2"
    [ "$(sha "$BATS_TEST_TMPDIR/copy2")" = "$(sha "$BATS_TEST_TMPDIR/disk")" ]
    # Without structured replies a hole comes back as zero bytes.
    stop_server
    start_server --no-sr file "$BATS_TEST_TMPDIR/disk"
    nbd_py "
assert not h.get_structured_replies_negotiated()
assert h.pread(1 << 20, 0) == bytes(1 << 20)
assert h.pread(1 << 20, 5 << 20) == open('$BATS_TEST_TMPDIR/part', 'rb').read()
"
}

@test "qemu-img map shows the data and the holes of a sparse file" {
    requires qemu-img
    truncate -s 8M "$BATS_TEST_TMPDIR/disk"
    printf 'data' | dd of="$BATS_TEST_TMPDIR/disk" bs=1 seek=3145728 \
        conv=notrunc status=none
    start_server file "$BATS_TEST_TMPDIR/disk"
    run qemu-img map --output=json -f raw "$uri"
    echo "$output"
    [ "$status" -eq 0 ]
    # Data at 3 MiB, zero holes before and after.
    echo "$output" | grep -q '"start": 0, "length": 3145728, .*"data": false'
    echo "$output" | grep -Eq '"start": 3145728, "length": [0-9]+, .*"data": true'
}

@test "the last extent of a block status reply goes on past the request, as nbdkit's" {
    requires nbdsh
    start_server memory 1M
    # 512 bytes of data end the first 32 KiB page; the next page is a
    # hole.  A 1024-byte query at 32256 learns the whole hole.
    nbd_py '
h.pwrite(b"x" * 512, 32256)
h2 = nbd.NBD()
h2.add_meta_context("base:allocation")
h2.connect_uri(os.environ["uri"])
got = []
h2.block_status(1024, 32256, lambda ctx, off, ents, err: got.append(ents) or 0)
assert got == [[512, 0, 32768, 3]], got
'
}
