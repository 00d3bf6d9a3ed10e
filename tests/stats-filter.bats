#!/usr/bin/env bats
# The stats filter (nbdkit-stats-filter(1)): counts, bytes and times of
# the requests, written to a file when the server exits.

load helpers

@test "the stats filter needs statsfile= and says so" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=stats memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"statsfile=FILE"* ]]
}

@test "a bad statsthreshold= or statsappend= is refused naming the value" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=stats memory 1M \
        statsfile="$BATS_TEST_TMPDIR/stats" statsthreshold=101
    [ "$status" -eq 1 ]
    [[ "$output" == *"statsthreshold=101"*"0 to 100"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=stats memory 1M \
        statsfile="$BATS_TEST_TMPDIR/stats" statsappend=sometimes
    [ "$status" -eq 1 ]
    [[ "$output" == *"statsappend=sometimes"* ]]
}

@test "a stats file that cannot be opened stops the server at start" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=stats memory 1M \
        statsfile=/nonexistent/dir/stats
    [ "$status" -eq 1 ]
    [[ "$output" == *"statsfile=/nonexistent/dir/stats"* ]]
}

@test "at exit the stats file holds the counts and bytes of a known workload" {
    requires nbdsh
    start_server --filter=stats memory 4M statsfile="$BATS_TEST_TMPDIR/stats"
    nbd_py '
for i in range(3):
    h.pwrite(b"w" * 4096, i * 4096)
for i in range(2):
    assert h.pread(8192, i * 8192)[:4096] == b"w" * 4096
h.zero(65536, 1 << 20)
h.trim(1 << 20, 2 << 20)
h.flush()
h.cache(4096, 0)
'
    # Nothing is written before the server exits.
    [ ! -s "$BATS_TEST_TMPDIR/stats" ]
    stop_server
    local S=$BATS_TEST_TMPDIR/stats
    cat "$S"
    grep -Eq '^total: 9 ops, [0-9]+\.[0-9]{6} s, 1\.09 MiB, ' "$S"
    grep -Eq '^read: 2 ops, [0-9]+\.[0-9]{6} s, 16\.00 KiB, .* op, .* total$' "$S"
    grep -Eq '^write: 3 ops, [0-9]+\.[0-9]{6} s, 12\.00 KiB, ' "$S"
    grep -Eq '^zero: 1 ops, [0-9.]+ s, 64\.00 KiB, ' "$S"
    grep -Eq '^trim: 1 ops, [0-9.]+ s, 1\.00 MiB, ' "$S"
    grep -Eq '^cache: 1 ops, [0-9.]+ s, 4\.00 KiB, ' "$S"
    grep -Eq '^flush: 1 ops, [0-9.]+ s, 0 bytes, 0 bytes/s op, 0 bytes/s total$' "$S"
    not grep -q '^extents:' "$S"
}

@test "the breakdown groups requests by size and alignment" {
    requires nbdsh
    start_server --filter=stats memory 4M statsfile="$BATS_TEST_TMPDIR/stats" \
        statsthreshold=100
    nbd_py '
for off in (0, 4096, 8192, 12288):
    h.pread(4096, off)
h.pread(512, 512)
'
    stop_server
    local S=$BATS_TEST_TMPDIR/stats
    cat "$S"
    grep -q '^    12 bits:  80\.0% (4 reqs, 16\.00 KiB total)$' "$S"
    grep -q '^         12 bit aligned: 100\.0% (4)$' "$S"
    grep -q '^         13 bit aligned:  50\.0% (2)$' "$S"
    grep -q '^         14 bit aligned:  25\.0% (1)$' "$S"
    grep -q '^     9 bits:  20\.0% (1 reqs, 512 bytes total)$' "$S"
    grep -q '^          9 bit aligned: 100\.0% (1)$' "$S"
}

@test "statsthreshold=0 leaves out the breakdown" {
    requires nbdsh
    start_server --filter=stats memory 1M statsfile="$BATS_TEST_TMPDIR/stats" \
        statsthreshold=0
    nbd_py 'h.pread(4096, 0)'
    stop_server
    grep -q '^read: 1 ops' "$BATS_TEST_TMPDIR/stats"
    not grep -q 'breakdown' "$BATS_TEST_TMPDIR/stats"
}

@test "failed requests are not counted" {
    requires nbdsh
    start_server --filter=stats --filter=error memory 1M \
        statsfile="$BATS_TEST_TMPDIR/stats" error-pwrite-rate=100%
    nbd_py '
h.pread(512, 0)
try:
    h.pwrite(b"x" * 512, 0)
except nbd.Error:
    pass
'
    stop_server
    grep -q '^total: 1 ops' "$BATS_TEST_TMPDIR/stats"
    not grep -q '^write:' "$BATS_TEST_TMPDIR/stats"
}

@test "data passes through the stats filter byte for byte, and is counted" {
    requires nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 6M
    start_server --filter=stats memory 6M statsfile="$BATS_TEST_TMPDIR/stats"
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
    stop_server
    cat "$BATS_TEST_TMPDIR/stats"
    grep -Eq '^write: [0-9]+ ops, [0-9.]+ s, 6\.00 MiB, ' "$BATS_TEST_TMPDIR/stats"
    grep -Eq '^read: [0-9]+ ops, [0-9.]+ s, 6\.00 MiB, ' "$BATS_TEST_TMPDIR/stats"
}

@test "statsappend=true adds to the file, the default replaces it" {
    echo "old stats" > "$BATS_TEST_TMPDIR/stats"
    start_server --filter=stats memory 1M statsfile="$BATS_TEST_TMPDIR/stats" \
        statsappend=true
    stop_server
    [ "$(head -n 1 "$BATS_TEST_TMPDIR/stats")" = "old stats" ]
    grep -q '^total: 0 ops' "$BATS_TEST_TMPDIR/stats"
    start_server --filter=stats memory 1M statsfile="$BATS_TEST_TMPDIR/stats"
    stop_server
    not grep -q "old stats" "$BATS_TEST_TMPDIR/stats"
    [ "$(grep -c '^total:' "$BATS_TEST_TMPDIR/stats")" -eq 1 ]
}
