# The shared-memory data path seen from the outside: the server and a
# real backend share an arena (docs/nbdkit-supervision.pod, THE DATA
# PATH); data must come out byte for byte the same with and without
# it, when it is too small, through filters, and across backend kills.
# tests/shm-backend.bats checks the backend side of the protocol alone.

load helpers

# The arena is the data path of backends that do their own I/O: the
# memory and file backends do so only without passthrough.
PT_OFF="-D nbdkit.passthrough=0"

arena_line="data through the shared-memory arena"

# Copy $1 bytes of random data in and out of the server; compare.
copy_round_trip() {
    random_file "$BATS_TEST_TMPDIR/in" "$1"
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
}

@test "the memory backend gets its data through the arena, byte for byte" {
    requires nbdcopy
    start_server -v $PT_OFF memory 64M
    wait_until grep -q "$arena_line" "$log"
    copy_round_trip 64M
}

@test "with -D nbdkit.shm=0 the data goes inline, byte for byte" {
    requires nbdcopy
    start_server -v $PT_OFF -D nbdkit.shm=0 memory 64M
    copy_round_trip 64M
    stop_server
    not grep -q "$arena_line" "$log"
}

@test "the file backend through the arena, byte for byte" {
    requires nbdcopy
    truncate -s 64M "$BATS_TEST_TMPDIR/disk"
    start_server -v $PT_OFF file "$BATS_TEST_TMPDIR/disk"
    wait_until grep -q "$arena_line" "$log"
    copy_round_trip 64M
}

@test "an arena too small for the requests in flight: they go inline, nothing is lost" {
    requires nbdcopy
    # 1 MiB holds four of nbdcopy's 256 KiB requests; it has 64 in flight.
    start_server -v $PT_OFF -D nbdkit.shm_mib=1 memory 64M
    wait_until grep -q "$arena_line (1048576 bytes)" "$log"
    copy_round_trip 64M
}

@test "through filters the payloads are copied into the arena, byte for byte" {
    requires nbdcopy
    start_server -v $PT_OFF --filter=offset --filter=cow memory 80M offset=16M
    wait_until grep -q "$arena_line" "$log"
    copy_round_trip 64M
}

@test "requests of every size up to 32 MiB, at unaligned offsets" {
    requires nbdsh
    start_server -v $PT_OFF memory 100M
    wait_until grep -q "$arena_line" "$log"
    nbd_py '
import random
rnd = random.Random(7)
model = bytearray(100 << 20)
for size in [1, 511, 4096, 4097, 65536, 262145, 1 << 20, (8 << 20) + 3,
             32 << 20]:
    off = rnd.randrange(0, (100 << 20) - size)
    data = rnd.randbytes(size)
    h.pwrite(data, off)
    model[off:off + size] = data
    assert h.pread(size, off) == data, size
for i in range(200):
    off = rnd.randrange(0, 100 << 20)
    size = rnd.randrange(1, min(1 << 20, (100 << 20) - off) + 1)
    assert h.pread(size, off) == model[off:off + size], (off, size)
'
}

@test "killing the backend during copies through the arena loses no byte" {
    requires nbdcopy
    start_server -v $PT_OFF --backend-max-restarts=20 memory 256M
    wait_until grep -q "$arena_line" "$log"
    random_file "$BATS_TEST_TMPDIR/in" 256M
    kill_backend_during 2 nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    kill_backend_during 2 nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    # Each incarnation that got killed had the arena, and the next too.
    [ "$(grep -c "$arena_line" "$log")" -ge 2 ]
    wait_until grep -q "backend restarted" "$log"
}

@test "the python backend gets its data through the arena, byte for byte" {
    requires nbdcopy
    [ -x /usr/bin/python3 ] || skip "/usr/bin/python3 is not installed"
    start_server -v $PT_OFF python "$top_srcdir/tests/python/ramdisk.py" size=8M
    wait_until grep -q "$arena_line" "$log"
    copy_round_trip 8M
}

@test "the perl backend does not offer the arena and works inline" {
    requires nbdcopy perl
    start_server -v $PT_OFF perl "$top_srcdir/tests/perl/ramdisk.pl" size=4M
    copy_round_trip 4M
    stop_server
    not grep -q "$arena_line" "$log"
}

@test "the arena gives back the memory of a burst of large requests" {
    requires nbdsh
    start_server $PT_OFF memory 256M
    # Six concurrent 32 MiB writes and reads touch 192 MiB of the arena;
    # once they are done the server keeps at most its first 32 MiB.
    nbd_py '
buf = os.urandom(32 << 20)
for i in range(2):
    for _ in range(6):
        h.aio_pwrite(buf, 0)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for _ in range(6):
        h.aio_pread(nbd.Buffer(32 << 20), 0)
    while h.aio_in_flight() > 0:
        h.poll(-1)
'
    shmem=$(awk '/^RssShmem:/ {print $2}' "/proc/$server_pid/status")
    echo "RssShmem: $shmem kB"
    [ "$shmem" -le $((40 * 1024)) ]
}
