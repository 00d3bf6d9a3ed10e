#!/usr/bin/env bats
# The filter framework (--filter, parameters, --help, stacking order)
# and the filters that change what the disk is: offset, truncate,
# partition, noextents, nozero, cow.

load helpers

# A 12M disk of random data with an MBR: primary 1 (sectors 2048+4096),
# extended 2 (8192+8192) holding logical 5 (10240+2048) and 6
# (14336+1024).
make_mbr_disk() {
    requires sfdisk
    random_file "$1" 12M
    printf 'label: dos\nstart=2048, size=4096, type=83\nstart=8192, size=8192, type=5\nstart=10240, size=2048, type=83\nstart=14336, size=1024, type=83\n' |
        sfdisk -q "$1" >/dev/null
}

# The bytes of sectors START+COUNT of a file.
sectors() {
    dd if="$1" bs=512 skip="$2" count="$3" status=none
}

@test "an unknown filter is refused with the list of filters" {
    run "$NBDKIT" --filter=nosuch memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"--filter=nosuch: no such filter"*"partition"* ]]
}

@test "--help after a filter shows the filter's parameters" {
    run "$NBDKIT" --filter=offset --filter=truncate memory --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"offset filter"*"range=SIZE"* ]]
    [[ "$output" == *"truncate filter"*"round-up=N"* ]]
}

@test "a bad filter parameter exits 1 naming the value" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=offset memory 1M offset=12Q
    [ "$status" -eq 1 ]
    [[ "$output" == *"offset=12Q"* ]]
}

@test "a key no filter takes goes to the backend, which names it" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=offset memory 1M bogus=1
    [ "$status" -eq 1 ]
    [[ "$output" == *"bogus"* ]]
}

@test "a filter that needs a parameter says so" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=partition memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"partition=N"* ]]
}

@test "offset and range serve that part of the disk, writes included" {
    random_file "$BATS_TEST_TMPDIR/disk" 4M
    start_server --filter=offset file "$BATS_TEST_TMPDIR/disk" offset=1M range=2M
    [ "$(nbdinfo --size "$uri")" -eq $((2 * 1024 * 1024)) ]
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    dd if="$BATS_TEST_TMPDIR/disk" bs=1M skip=1 count=2 status=none > "$BATS_TEST_TMPDIR/want"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/want"
    nbd_py "h.pwrite(b'filtered', 0)"
    [ "$(dd if="$BATS_TEST_TMPDIR/disk" bs=1 skip=$((1024 * 1024)) count=8 status=none)" = filtered ]
}

@test "an offset beyond the end fails the open, not the server" {
    start_server --filter=offset memory 1M offset=2M
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    kill -0 "$server_pid"
}

@test "truncate grows the disk with zeros and refuses data past the end" {
    start_server --filter=truncate memory 1M truncate=1536K
    [ "$(nbdinfo --size "$uri")" -eq $((1536 * 1024)) ]
    nbd_py "
h.pwrite(b'x' * 512, 1024 * 1024 - 512)
d = h.pread(2048, 1024 * 1024 - 1024)
assert d == bytes(512) + b'x' * 512 + bytes(1024), d
h.pwrite(b'y' * 512 + bytes(512), 1024 * 1024 - 512)   # zeros past the end
assert h.pread(512, 1024 * 1024 - 512) == b'y' * 512
h.pwrite(bytes(4096), 1024 * 1024 + 4096)       # zeros: fine
try:
    h.pwrite(b'y', 1024 * 1024 + 10)
    sys.exit('a write of data past the end succeeded')
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
h.zero(8192, 1024 * 1024 + 8192)
"
}

@test "truncate round-up and round-down change the size" {
    start_server --filter=truncate memory 1000000 round-up=4096
    [ "$(nbdinfo --size "$uri")" -eq 1003520 ]
    stop_server
    start_server --filter=truncate memory 1000000 round-down=4096
    [ "$(nbdinfo --size "$uri")" -eq 999424 ]
}

@test "partition serves each primary and logical MBR partition" {
    make_mbr_disk "$BATS_TEST_TMPDIR/disk"
    local n start count
    for n in "1 2048 4096" "5 10240 2048" "6 14336 1024"; do
        set -- $n
        stop_server
        start_server --filter=partition file "$BATS_TEST_TMPDIR/disk" partition=$1
        [ "$(nbdinfo --size "$uri")" -eq $(($3 * 512)) ]
        rm -f "$BATS_TEST_TMPDIR/out"
        nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
        sectors "$BATS_TEST_TMPDIR/disk" "$2" "$3" > "$BATS_TEST_TMPDIR/want"
        cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/want"
    done
}

@test "partition serves a GPT partition" {
    requires sfdisk
    random_file "$BATS_TEST_TMPDIR/disk" 12M
    printf 'label: gpt\nstart=2048, size=4096\nstart=8192, size=2048\n' |
        sfdisk -q "$BATS_TEST_TMPDIR/disk" >/dev/null
    start_server --filter=partition file "$BATS_TEST_TMPDIR/disk" partition=2
    [ "$(nbdinfo --size "$uri")" -eq $((2048 * 512)) ]
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    sectors "$BATS_TEST_TMPDIR/disk" 8192 2048 > "$BATS_TEST_TMPDIR/want"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/want"
}

@test "a partition that is not there fails the open with the reason logged" {
    make_mbr_disk "$BATS_TEST_TMPDIR/disk"
    start_server --filter=partition file "$BATS_TEST_TMPDIR/disk" partition=3
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "partition 3 is not in use" "$log"
    stop_server
    start_server --filter=partition memory 1M partition=1
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "no partition table" "$log"
}

@test "filters stack in command-line order: the first is nearest the client" {
    requires sfdisk
    # A partitioned disk that begins 1M into the file.
    random_file "$BATS_TEST_TMPDIR/file" 13M
    truncate -s 12M "$BATS_TEST_TMPDIR/inner"
    printf 'label: dos\nstart=2048, size=4096, type=83\n' |
        sfdisk -q "$BATS_TEST_TMPDIR/inner" >/dev/null
    dd if="$BATS_TEST_TMPDIR/inner" of="$BATS_TEST_TMPDIR/file" bs=512 count=1 \
       seek=2048 conv=notrunc status=none
    start_server --filter=partition --filter=offset \
        file "$BATS_TEST_TMPDIR/file" offset=1M partition=1
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    sectors "$BATS_TEST_TMPDIR/file" $((2048 + 2048)) 4096 > "$BATS_TEST_TMPDIR/want"
    cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/want"
    stop_server
    # The other way round the partition table is looked for at 0.
    start_server --filter=offset --filter=partition \
        file "$BATS_TEST_TMPDIR/file" offset=1M partition=1
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
}

@test "noextents: a sparse disk maps as all data" {
    start_server --filter=noextents memory 10M
    nbd_py "h.pwrite(b'a' * 4096, 0)"
    run nbdinfo --map "$uri"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | wc -l)" -eq 1 ]
    [[ "$output" == *"data"* ]]
    [[ "$output" != *"hole"* ]]
}

@test "nozero: by default the export cannot zero; emulate zeroes by writing" {
    start_server --filter=nozero memory 1M
    nbd_py "assert not h.can_zero()"
    stop_server
    start_server --filter=nozero memory 4M zeromode=emulate
    nbd_py "
assert h.can_zero()
h.pwrite(b'z' * (3 * 1024 * 1024), 0)
h.zero(2 * 1024 * 1024 + 5, 100)
d = h.pread(3 * 1024 * 1024, 0)
assert d[:100] == b'z' * 100 and d[100:100 + 2 * 1024 * 1024 + 5] == bytes(2 * 1024 * 1024 + 5)
assert d[100 + 2 * 1024 * 1024 + 5:] == b'z' * (1024 * 1024 - 105)
"
}

@test "nozero fastzeromode=slow fails fast zeroes with ENOTSUP" {
    start_server --filter=nozero memory 1M zeromode=plain fastzeromode=slow
    nbd_py "
assert h.can_fast_zero()
try:
    h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO)
    sys.exit('a fast zero succeeded')
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
h.zero(4096, 0)
"
}

@test "nozero: a bad zeromode is refused naming it" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=nozero memory 1M zeromode=fast
    [ "$status" -eq 1 ]
    [[ "$output" == *"zeromode=fast"* ]]
}

@test "cow makes a read-only file writable without changing it" {
    random_file "$BATS_TEST_TMPDIR/disk" 4M
    local before
    before=$(sha "$BATS_TEST_TMPDIR/disk")
    start_server --filter=cow file "$BATS_TEST_TMPDIR/disk" cow-block-size=4096
    nbd_py "
orig = open('$BATS_TEST_TMPDIR/disk', 'rb').read()
want = bytearray(orig)
assert not h.is_read_only()
for off, data in [(1000, b'hello'), (4090, b'X' * 70000), (0, b'Q' * 4096)]:
    h.pwrite(data, off)
    want[off:off + len(data)] = data
h.zero(10000, 200000)
want[200000:210000] = bytes(10000)
h.trim(4096, 409600)
want[409600:409600 + 4096] = bytes(4096)
assert h.pread(len(want), 0) == want
"
    [ "$(sha "$BATS_TEST_TMPDIR/disk")" = "$before" ]
}

@test "cow: concurrent partial writes of one block all take effect" {
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    start_server --filter=cow file "$BATS_TEST_TMPDIR/disk"
    nbd_py "
want = bytearray(open('$BATS_TEST_TMPDIR/disk', 'rb').read())
cookies = []
for i in range(64):
    data = bytes([i + 1]) * 100
    cookies.append(h.aio_pwrite(data, 1000 + i * 200))
    want[1000 + i * 200:1100 + i * 200] = data
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    assert h.aio_command_completed(c)
assert h.pread(len(want), 0) == want
"
}

@test "cow gives a read-only view when the server is read-only" {
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    start_server -r --filter=cow file "$BATS_TEST_TMPDIR/disk"
    nbd_py "assert h.is_read_only()"
}

# nbdkit's cow filter reports blocks trimmed whole as holes that read
# as zeros; a block trimmed in part, or written after, is data.  The
# map is Debian's nbdkit 1.32's for the same requests.
@test "cow: trimmed overlay blocks are reported as hole and zero" {
    requires nbdinfo nbdsh
    start_server --filter=cow pattern 1M
    nbd_py '
h.trim(65536, 0)
h.trim(4096, 131072)
h.trim(65536, 786432)
h.pwrite(b"x" * 512, 786432)
h.trim(200000, 300000)
h.trim(65536, 917504)
h.trim(512, 917504)
assert h.pread(65536, 0) == bytes(65536)
assert h.pread(4096, 131072) == bytes(4096)
assert h.pread(131072, 327680) == bytes(131072)
assert h.pread(512, 786432 + 512) == bytes(512)
'
    nbdinfo --map "$uri" > "$BATS_TEST_TMPDIR/map"
    cat "$BATS_TEST_TMPDIR/map"
    cat > "$BATS_TEST_TMPDIR/want" <<'EOF'
         0       65536    3  hole,zero
     65536      262144    0  data
    327680      131072    3  hole,zero
    458752      589824    0  data
EOF
    diff -u "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/map"
}
