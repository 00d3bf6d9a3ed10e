#!/usr/bin/env bats
# The readahead filter (nbdkit-readahead-filter(1)).  Over a backend
# that can cache, it sends cache requests ahead of reads, as nbdkit's
# filter does; over one that cannot (the eval backend here, reading a
# file with dd), it reads ahead into a buffer, which must never give
# stale data.

load helpers

# An 8 MiB disk in a file, served by the eval backend without cache:
# start_eval_disk FILTER-OPTIONS... [-- PARAMETERS...]
start_eval_disk() {
    local disk=$BATS_TEST_TMPDIR/disk opts=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    random_file "$disk" 8M
    start_server "${opts[@]}" eval get_size='echo 8388608' \
        pread="dd if=$disk skip=\$4 count=\$3 iflag=skip_bytes,count_bytes status=none" \
        pwrite="dd of=$disk seek=\$4 oflag=seek_bytes conv=notrunc status=none" \
        "$@"
}

@test "the readahead filter takes no parameters" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=readahead memory 1M window=1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"window"* ]]
}

@test "without cache below, data is read byte for byte through the buffer" {
    requires nbdcopy nbdinfo
    start_eval_disk --filter=readahead
    nbdinfo --json "$uri" | grep -q '"can_cache": false'
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/disk" "$BATS_TEST_TMPDIR/out"
    # Small sequential reads, and reads that go back.
    nbd_py "
want = open('$BATS_TEST_TMPDIR/disk', 'rb').read()
for off in list(range(0, 1 << 20, 4096)) + [8192, 0, 5000, 7 << 20]:
    assert h.pread(4096, off) == want[off:off + 4096], off
assert h.pread(1000, (8 << 20) - 1000) == want[-1000:]
"
}

@test "without cache below, small sequential reads become fewer, larger reads below" {
    requires nbdsh
    start_eval_disk --filter=readahead --filter=log -- logfile="$BATS_TEST_TMPDIR/log"
    nbd_py "
want = open('$BATS_TEST_TMPDIR/disk', 'rb').read()
for off in range(0, 65536, 4096):
    assert h.pread(4096, off) == want[off:off + 4096], off
"
    stop_server
    cat "$BATS_TEST_TMPDIR/log"
    [ "$(grep -c ' Read id=' "$BATS_TEST_TMPDIR/log")" -lt 16 ]
    grep ' Read id=1 ' "$BATS_TEST_TMPDIR/log" | grep -vq 'count=0x1000 '
}

@test "without cache below, a write between reads is never hidden by the buffer" {
    requires nbdsh
    start_eval_disk --filter=readahead
    nbd_py "
import random
random.seed(7)
model = bytearray(open('$BATS_TEST_TMPDIR/disk', 'rb').read())
size = len(model)
off = 0
for step in range(400):
    op = random.random()
    if op < 0.6:                          # mostly sequential reads
        n = random.choice((512, 4096, 8192))
        if off + n > size or random.random() < 0.1:
            off = random.randrange(0, size - 65536, 512)
        assert h.pread(n, off) == model[off:off + n], (step, off, n)
        off += n
    elif op < 0.85:                       # a write just ahead
        n = random.choice((512, 4096))
        w = min(off + random.randrange(0, 65536, 512), size - n)
        data = os.urandom(n)
        h.pwrite(data, w)
        model[w:w + n] = data
    else:                                 # zeroes just ahead
        n = 4096
        w = min(off + random.randrange(0, 32768, 512), size - n)
        h.zero(n, w)
        model[w:w + n] = bytes(n)
"
}

@test "without cache below, a write on another connection drops the buffer" {
    requires nbdsh
    start_eval_disk --filter=readahead
    nbd_py "
want = bytearray(open('$BATS_TEST_TMPDIR/disk', 'rb').read())
other = nbd.NBD()
other.connect_uri('$uri')
assert h.pread(4096, 0) == want[0:4096]          # reads ahead
assert h.pread(4096, 4096) == want[4096:8192]
other.pwrite(b'o' * 4096, 16384)
assert h.pread(4096, 16384) == b'o' * 4096
other.zero(4096, 8192)
assert h.pread(4096, 8192) == bytes(4096)
assert h.pread(4096, 12288) == want[12288:16384]
"
}

@test "with cache below, reads are passed down and followed by cache requests" {
    requires nbdsh
    start_server --filter=readahead --filter=log memory 8M \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
h.pwrite(b"c" * (1 << 20), 0)
for off in range(0, 1 << 20, 65536):
    assert h.pread(65536, off) == b"c" * 65536, off
'
    stop_server
    local L=$BATS_TEST_TMPDIR/log
    # Every client read reaches the layer below as it was.
    [ "$(grep -c ' Read id=.* count=0x10000 ' "$L")" -eq 16 ]
    # The first read is followed by a cache request of what comes next.
    grep -q ' Cache id=[0-9]* offset=0x10000 ' "$L"
    # No byte is asked to be cached twice in a sequential run.
    grep ' Cache id=' "$L" | sed 's/.*offset=\(0x[0-9a-f]*\).*/\1/' | sort | uniq -d > "$BATS_TEST_TMPDIR/dups"
    [ ! -s "$BATS_TEST_TMPDIR/dups" ]
}

@test "with cache below, data is copied byte for byte with writes in between" {
    requires nbdcopy nbdsh
    random_file "$BATS_TEST_TMPDIR/in" 6M
    start_server --filter=readahead memory 6M
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
    nbd_py "
want = bytearray(open('$BATS_TEST_TMPDIR/in', 'rb').read())
for off in range(0, 1 << 20, 8192):
    assert h.pread(8192, off) == want[off:off + 8192], off
    h.pwrite(b'w' * 512, off + 8192)
    want[off + 8192:off + 8704] = b'w' * 512
"
}

@test "without cache below, a read ahead racing a write is not kept" {
    requires nbdsh
    start_eval_disk --filter=readahead
    nbd_py "
want = bytearray(open('$BATS_TEST_TMPDIR/disk', 'rb').read())
for k in range(20):
    base = k * 262144
    buf = nbd.Buffer(4096)
    # The read starts a read ahead; the write arrives while it is below.
    r = h.aio_pread(buf, base)
    w = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b'%c' % (65 + k)) * 4096), base + 16384)
    while not h.aio_command_completed(r):
        h.poll(-1)
    while not h.aio_command_completed(w):
        h.poll(-1)
    want[base + 16384:base + 20480] = bytes([65 + k]) * 4096
    for off in range(base + 4096, base + 32768, 4096):
        assert h.pread(4096, off) == want[off:off + 4096], (k, off)
"
}

# What nbdkit's filter sends below after each read (one cache request
# of the window after it; the window starts at 32K, doubles when a read
# starts past the last window, stays while reads go forward, goes back
# to 32K when they go back, and is at most 4M), as Debian's nbdkit 1.32
# sends it for these reads.
@test "with cache below, one cache request per read, of nbdkit's adaptive window" {
    requires nbdsh
    start_server --filter=readahead --filter=log memory 64M \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
M = 1 << 20
for off in [0, 4096, 1*M, 2*M, 3*M, 4*M, 5*M, 6*M, 8*M, 16*M, 24*M, 24*M + 4096,
            0, 512, 64*M - 4096 - 8192, 64*M - 4096]:
    h.pread(4096, off)
'
    # The cache requests are sent in the background: all are in once
    # the connection is closed below.
    wait_until grep -q ' Disconnect ' "$BATS_TEST_TMPDIR/log"
    stop_server
    grep -o ' Cache id=.*' "$BATS_TEST_TMPDIR/log" | sed 's/ id=[0-9]*//' \
        > "$BATS_TEST_TMPDIR/got"
    cat > "$BATS_TEST_TMPDIR/want" <<'EOF'
 Cache offset=0x1000 count=0x8000 ...
 Cache offset=0x2000 count=0x8000 ...
 Cache offset=0x101000 count=0x8000 ...
 Cache offset=0x201000 count=0x10000 ...
 Cache offset=0x301000 count=0x20000 ...
 Cache offset=0x401000 count=0x40000 ...
 Cache offset=0x501000 count=0x80000 ...
 Cache offset=0x601000 count=0x100000 ...
 Cache offset=0x801000 count=0x200000 ...
 Cache offset=0x1001000 count=0x400000 ...
 Cache offset=0x1801000 count=0x400000 ...
 Cache offset=0x1802000 count=0x400000 ...
 Cache offset=0x1000 count=0x400000 ...
 Cache offset=0x1200 count=0x8000 ...
 Cache offset=0x3ffe000 count=0x2000 ...
EOF
    diff -u "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/got"
    # Every read reached the layer below as the client sent it.
    [ "$(grep -c ' Read id=.* count=0x1000 ' "$BATS_TEST_TMPDIR/log")" -eq 16 ]
}

@test "with cache below, the window is the server's, shared by its clients" {
    requires nbdsh
    start_server --filter=readahead --filter=log memory 64M \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py 'h.pread(4096, 0); h.pread(4096, 1 << 20); h.pread(4096, 2 << 20)'
    wait_until grep -q 'connection=1 Disconnect ' "$BATS_TEST_TMPDIR/log"
    nbd_py 'h.pread(4096, 3 << 20)'
    wait_until grep -q 'connection=2 Disconnect ' "$BATS_TEST_TMPDIR/log"
    stop_server
    cat "$BATS_TEST_TMPDIR/log"
    # The second client goes on with the window the first one grew
    # (32K, 64K, 128K).
    grep -q 'connection=2 Cache id=[0-9]* offset=0x301000 count=0x20000 ' "$BATS_TEST_TMPDIR/log"
}

@test "with cache below but a backend that is not parallel, the filter does nothing and says so" {
    requires nbdsh
    cat > "$BATS_TEST_TMPDIR/disk.sh" <<'SH'
#!/bin/bash
case "$1" in
    thread_model) echo serialize_requests ;;
    get_size) echo 1048576 ;;
    can_cache) echo native ;;
    cache) exit 0 ;;
    pread) head -c "$3" /dev/zero ;;
    open) echo h ;;
    *) exit 2 ;;
esac
SH
    chmod +x "$BATS_TEST_TMPDIR/disk.sh"
    start_server --filter=readahead --filter=log sh "$BATS_TEST_TMPDIR/disk.sh" \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py 'h.pread(512, 0); h.pread(512, 512); h.pread(512, 1 << 19)'
    wait_until grep -q ' Disconnect ' "$BATS_TEST_TMPDIR/log"
    stop_server
    cat "$BATS_TEST_TMPDIR/log" "$log"
    [ "$(grep -c ' Read id=' "$BATS_TEST_TMPDIR/log")" -eq 3 ]
    not grep -q ' Cache id=' "$BATS_TEST_TMPDIR/log"
    grep -q 'readahead: warning: .*not parallel' "$log"
}
