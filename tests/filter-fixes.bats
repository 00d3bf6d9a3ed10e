#!/usr/bin/env bats
# Regression tests for bugs fixed after review: exitwhen watching the
# server's own stdio across forking into the background; the offset
# and partition filters' messages; partition's GPT detection; nozero's
# FUA on emulated zeroes; cow's block status of zeroed blocks and its
# overlay set-up; the delay parser's message; and -U's message about a
# socket file that is still there.

load helpers

# Is process $1 gone?  A daemonized server is reaped by whatever
# adopted it, perhaps later: a zombie counts as gone.
gone() {
    ! kill -0 "$1" 2>/dev/null ||
        [[ "$(ps -o stat= -p "$1" 2>/dev/null)" == Z* ]]
}

# Servers the tests start in the background (not via start_server).
teardown() {
    local f
    for f in "$BATS_TEST_TMPDIR"/*.pid; do
        [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    [ -n "${holder:-}" ] && kill "$holder" 2>/dev/null
    stop_server
}

# ---- exitwhen ----

@test "exitwhen: a pipe on stdin is still watched after forking into the background" {
    requires nbdinfo
    local d=$BATS_TEST_TMPDIR
    mkfifo "$d/fifo"
    sleep 600 > "$d/fifo" 3>&- &
    holder=$!
    # Without -f: the server replaces its stdin by /dev/null once ready.
    "$NBDKIT" -U "$d/sock" -P "$d/server.pid" --filter=exitwhen memory 1M \
        exit-when-pipe-closed=0 < "$d/fifo" 3>&-
    pid=$(cat "$d/server.pid")
    # It serves (it did not take /dev/null for a closed pipe) ...
    [ "$(nbdinfo --size "nbd+unix:///?socket=$d/sock")" = 1048576 ]
    not gone "$pid"
    # ... and exits once the writer closes the pipe.
    kill "$holder"
    wait "$holder" 2>/dev/null || true
    holder=
    wait_until gone "$pid"
}

@test "exitwhen: stdout as a pipe's write end counts as closed when the reader goes" {
    requires nbdinfo
    local d=$BATS_TEST_TMPDIR
    mkfifo "$d/fifo"
    sleep 600 < "$d/fifo" 3>&- &
    holder=$!
    "$NBDKIT" -U "$d/sock" -P "$d/server.pid" --filter=exitwhen memory 1M \
        exit-when-pipe-closed=1 > "$d/fifo" 3>&-
    pid=$(cat "$d/server.pid")
    [ "$(nbdinfo --size "nbd+unix:///?socket=$d/sock")" = 1048576 ]
    not gone "$pid"
    kill "$holder"
    wait "$holder" 2>/dev/null || true
    holder=
    wait_until gone "$pid"
}

@test "exitwhen: with -s, stdin and stdout are the client's and cannot be watched" {
    run "$NBDKIT" -s --filter=exitwhen memory 1M exit-when-pipe-closed=0 </dev/null
    [ "$status" -eq 1 ]
    [[ "$output" == *"exit-when-pipe-closed=0: with -s"* ]]
}

# ---- offset ----

@test "offset: an offset beyond the disk is logged as an error naming the values" {
    requires nbdinfo
    start_server --filter=offset memory 1M offset=2M
    not nbdinfo --size "$uri" 2>/dev/null
    cat "$log"
    # Without -v: logged as an error, not only as a debug message.
    wait_until grep -q "offset filter: .*offset=2097152 is beyond the end of the disk (size 1048576)" "$log"
    stop_server
    not grep -q "range=-1" "$log"
    start_server --filter=offset memory 1M offset=512K range=768K
    not nbdinfo --size "$uri" 2>/dev/null
    cat "$log"
    wait_until grep -q "offset=524288 range=786432: the range ends at 1310720, beyond the end of the disk (size 1048576)" "$log"
}

# ---- partition ----

# mkdisk PATH KIND: a 4 MiB disk with a partition table, each partition
# filled with its own byte.  KIND "logical": MBR with an extended
# partition holding one logical partition (5, byte 0x55).  KIND
# "hybrid": MBR entry 1 type 0x83 (byte 0x11 at sector 2048), entry 2
# type 0xee; the GPT's entry 1 is at sector 4096 (byte 0x22).
mkdisk() {
    /usr/bin/python3 - "$1" "$2" <<'PY'
import struct, sys
path, kind = sys.argv[1], sys.argv[2]
disk = bytearray(4 * 1024 * 1024)
def entry(i, type_, start, n, at=0):
    o = at + 446 + 16 * i
    disk[o + 4] = type_
    disk[o + 8:o + 16] = struct.pack("<II", start, n)
def sig(at):
    disk[at + 510:at + 512] = b"\x55\xaa"
sig(0)
if kind == "logical":
    entry(0, 0x05, 2048, 4096)
    entry(0, 0x83, 1, 1024, at=2048 * 512)   # EBR: partition 5
    sig(2048 * 512)
    disk[2049 * 512:(2049 + 1024) * 512] = b"\x55" * (1024 * 512)
else:
    entry(0, 0x83, 2048, 1024)
    entry(1, 0xee, 1, 8191)
    disk[2048 * 512:3072 * 512] = b"\x11" * (1024 * 512)
    h = bytearray(512)
    h[0:8] = b"EFI PART"
    h[72:88] = struct.pack("<QII", 2, 128, 128)
    disk[512:1024] = h
    e = bytearray(128)
    e[0:16] = b"\x01" * 16                     # any type: in use
    e[32:48] = struct.pack("<QQ", 4096, 4096 + 1023)
    disk[1024:1152] = e
    disk[4096 * 512:5120 * 512] = b"\x22" * (1024 * 512)
open(path, "wb").write(disk)
PY
}

@test "partition: a missing logical partition is reported in good English" {
    requires nbdinfo
    mkdisk "$BATS_TEST_TMPDIR/disk" logical
    start_server --filter=partition file "$BATS_TEST_TMPDIR/disk" partition=5
    nbd_py "assert h.get_size() == 1024 * 512 and h.pread(512, 0) == b'\x55' * 512"
    stop_server
    start_server --filter=partition file "$BATS_TEST_TMPDIR/disk" partition=6
    not nbdinfo --size "$uri" 2>/dev/null
    cat "$log"
    wait_until grep -q "there is no partition 6 (the disk has 1 logical partition, number 5)" "$log"
}

@test "partition: a protective 0xee entry in any MBR slot means GPT" {
    mkdisk "$BATS_TEST_TMPDIR/disk" hybrid
    start_server --filter=partition file "$BATS_TEST_TMPDIR/disk" partition=1
    # GPT entry 1, not MBR entry 1.
    nbd_py "assert h.get_size() == 1024 * 512 and h.pread(512, 0) == b'\x22' * 512"
}

@test "partition: bad numbers are refused saying what is allowed" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=partition memory 1M partition=0
    [ "$status" -eq 1 ]
    [[ "$output" == *"partition=0: use a partition number from 1 to 1004"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=partition memory 1M partition=1 \
        partition-sectorsize=abc
    [ "$status" -eq 1 ]
    [[ "$output" == *"partition-sectorsize=abc: the sector size must be 512 or 4096"* ]]
    [[ "$output" != *"0 to 4096"* ]]
}

# ---- nozero ----

@test "nozero zeromode=emulate: with FUA, every write of the emulation carries FUA" {
    start_server --filter=nozero --filter=log memory 4M zeromode=emulate \
        logfile="$BATS_TEST_TMPDIR/ops.log"
    nbd_py "
if not h.can_fua():
    sys.exit(0)
h.zero(3 * 1024 * 1024, 0, nbd.CMD_FLAG_FUA)
open('$BATS_TEST_TMPDIR/fua', 'w').write('yes')
"
    [ -f "$BATS_TEST_TMPDIR/fua" ] || skip "the memory backend does not offer FUA"
    cat "$BATS_TEST_TMPDIR/ops.log"
    [ "$(grep -c ' Write .* fua=1 \.\.\.' "$BATS_TEST_TMPDIR/ops.log")" -eq 3 ]
    not grep -q ' Write .* fua=0' "$BATS_TEST_TMPDIR/ops.log"
}

# ---- cow ----

@test "cow: block status reports zeroed overlay blocks as zero, written ones as data" {
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    start_server --filter=cow file "$BATS_TEST_TMPDIR/disk" cow-block-size=4096
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri('$uri')
def status(off, n):
    out = []
    def cb(meta, offset, entries, err):
        out.extend(entries)
        return 0
    h.block_status(n, off, cb)
    return out[1] & nbd.STATE_ZERO, out[0]
# Whole blocks zeroed: zero.
h.zero(65536, 65536)
z, n = status(65536, 65536)
assert z and n == 65536, (z, n)
# Part of a zeroed block zeroed again: still zero.
h.zero(100, 65536 + 8192 + 10)
assert status(65536 + 8192, 4096)[0]
# Written: data (the rest of the zeroed run stays zero).
h.pwrite(b'x', 65536 + 4096)
assert not status(65536 + 4096, 4096)[0]
assert status(65536 + 8192, 4096)[0]
# A block from below zeroed only in part holds data: not zero.
h.zero(100, 200000)
assert not status(200000 // 4096 * 4096, 4096)[0]
assert h.pread(100, 200000) == bytes(100)
assert h.pread(4096, 65536) == bytes(4096)
"
}

@test "cow: an overlay that cannot be set up fails the open, and the next open tries again" {
    requires nbdinfo
    # The overlay (sized to the disk at the first open) cannot grow past
    # the file size limit; SIGXFSZ ignored so ftruncate fails with EFBIG.
    local d=$BATS_TEST_TMPDIR
    ( trap '' XFSZ; ulimit -f 1024
      exec "$NBDKIT" -f -U "$d/sock" -P "$d/server.pid" --filter=cow \
          null 100M </dev/null >/dev/null 2>"$d/server.log" 3>&- ) &
    wait_until test -s "$d/server.pid"
    not nbdinfo --size "nbd+unix:///?socket=$d/sock" 2>/dev/null
    not nbdinfo --size "nbd+unix:///?socket=$d/sock" 2>/dev/null
    cat "$d/server.log"
    [ "$(grep -c "cow filter: cannot size the overlay to 104857600 bytes" "$d/server.log")" -eq 2 ]
}

# ---- delay ----

@test "delay: a bad delay's message lists every unit accepted" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=delay memory 1M rdelay=5x
    [ "$status" -eq 1 ]
    [[ "$output" == *"rdelay=5x"* ]]
    [[ "$output" == *"1.5s"* && "$output" == *"ms"* && "$output" == *"250us"* ]]
}

# ---- -U PATH ----

@test "-U PATH: like nbdkit the socket file stays at exit, and a new start on it says what to do" {
    requires nbdinfo
    start_server memory 1M
    [ "$(nbdinfo --size "$uri")" = 1048576 ]
    stop_server
    [ -S "$sock" ]
    run "$NBDKIT" -f -U "$sock" memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"-U $sock: bind: Address already in use"* ]]
    [[ "$output" == *"remove it first"* ]]
    rm "$sock"
    start_server memory 1M
    [ "$(nbdinfo --size "$uri")" = 1048576 ]
}

@test "-U PATH: an existing file (a stale socket) is not removed and the start fails" {
    local d=$BATS_TEST_TMPDIR
    /usr/bin/python3 -c "
import socket
socket.socket(socket.AF_UNIX).bind('$d/stale')"
    [ -S "$d/stale" ]
    run "$NBDKIT" -f -U "$d/stale" memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"-U $d/stale: bind: Address already in use"* ]]
    [[ "$output" == *"remove it first"* ]]
    [ -S "$d/stale" ]
}
