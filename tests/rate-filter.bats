#!/usr/bin/env bats
# The rate filter (nbdkit-rate-filter(1)): bandwidth limits with token
# buckets on timers.  No test measures how long anything takes: they
# check the data, that a limited connection does not hold up another,
# and that a new rate from a rate file lets a transfer finish.

load helpers

@test "a bad rate or burstiness is refused naming the value" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=rate memory 1M rate=fast
    [ "$status" -eq 1 ]
    [[ "$output" == *"rate=fast"*"bits per second"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=rate memory 1M connection-rate=10Q
    [ "$status" -eq 1 ]
    [[ "$output" == *"connection-rate=10Q"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=rate memory 1M rate=1M burstiness=0
    [ "$status" -eq 1 ]
    [[ "$output" == *"burstiness=0"* ]]
}

@test "--help shows the rate filter's parameters" {
    run "$NBDKIT" --filter=rate memory --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"connection-rate=BITSPERSEC"*"burstiness=SECS"* ]]
}

@test "data is copied byte for byte under a server-wide rate" {
    requires nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 4M
    # 256 Mbit/s with a small bucket: many requests wait on the timers.
    start_server --filter=rate memory 4M rate=256M burstiness=0.01
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
}

@test "two connections sharing the server's rate both get their data right" {
    requires nbdsh
    start_server --filter=rate memory 4M rate=128M connection-rate=96M \
        burstiness=0.01
    local half p q
    for half in 0 1; do
        /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.connect_uri('$uri')
for i in range(8):
    h.pwrite(bytes([$half * 8 + i + 1]) * 262144, ($half * 8 + i) * 262144)
h.shutdown()
" &
        [ $half -eq 0 ] && p=$! || q=$!
    done
    wait $p
    wait $q
    nbd_py '
for i in range(16):
    assert h.pread(262144, i * 262144) == bytes([i + 1]) * 262144, i
'
}

@test "a connection held back by its rate does not hold up another" {
    requires nbdsh
    # 1 Mbit/s per connection, 1 second of burst: writing 1 MiB
    # (8 Mbit) in 64 KiB pieces cannot finish in less than 7 seconds.
    start_server --filter=rate memory 4M connection-rate=1M burstiness=1
    local progress=$BATS_TEST_TMPDIR/progress
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.connect_uri('$uri')
for i in range(16):
    h.pwrite(bytes([i + 1]) * 65536, i * 65536)
    open('$progress', 'a').write('x')
h.shutdown()
" &
    local slow=$!
    wait_until test -s "$progress"
    # Another connection reads and writes while the first one waits.
    nbd_py '
h.pwrite(b"q" * 4096, 2 << 20)
assert h.pread(4096, 2 << 20) == b"q" * 4096
'
    local done_then
    done_then=$(stat -c %s "$progress")
    echo "the slow connection had done $done_then of 16 writes" >&2
    [ "$done_then" -lt 16 ]
    wait $slow
    nbd_py '
for i in range(16):
    assert h.pread(65536, i * 65536) == bytes([i + 1]) * 65536, i
'
}

@test "a new rate in the rate file applies to requests already waiting" {
    requires nbdsh
    # 8 kbit/s: a 1 MiB write would take more than 17 minutes.
    start_server --filter=rate memory 4M rate=8k burstiness=0.1 \
        rate-file="$BATS_TEST_TMPDIR/rate"
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.connect_uri('$uri')
h.pwrite(b'r' * 65536, 0)
for i in range(1, 16):
    h.pwrite(bytes([i]) * 65536, i * 65536)
open('$BATS_TEST_TMPDIR/done', 'w').write('done')
" &
    local writer=$!
    echo 1G > "$BATS_TEST_TMPDIR/rate.new"
    mv "$BATS_TEST_TMPDIR/rate.new" "$BATS_TEST_TMPDIR/rate"
    wait_until test -s "$BATS_TEST_TMPDIR/done"
    wait $writer
    nbd_py '
assert h.pread(65536, 0) == b"r" * 65536
for i in range(1, 16):
    assert h.pread(65536, i * 65536) == bytes([i]) * 65536, i
'
}

@test "a rate file that holds no rate is ignored" {
    requires nbdsh
    echo "not a rate" > "$BATS_TEST_TMPDIR/rate"
    start_server --filter=rate memory 1M connection-rate-file="$BATS_TEST_TMPDIR/rate"
    nbd_py '
h.pwrite(b"z" * 65536, 0)
assert h.pread(65536, 0) == b"z" * 65536
'
    kill -0 "$server_pid"
}
