#!/usr/bin/env bats
# The ddrescue filter (nbdkit-ddrescue-filter(1)): reads of areas the
# GNU ddrescue map marks as rescued pass through, byte for byte; the
# rest fail with EIO; a malformed map is refused naming the line.

load helpers

# A 1 MiB image and its map: 64K rescued, 64K bad, 448K rescued in
# two adjacent blocks, 64K non-tried, 64K non-trimmed, a gap of 64K the
# map does not mention, 64K non-scraped, 128K rescued.
make_rescue() {
    head -c 1M /dev/urandom > "$BATS_TEST_TMPDIR/disk.img"
    cat > "$BATS_TEST_TMPDIR/disk.map" <<'MAP'
# Mapfile. Created by GNU ddrescue version 1.27
# Command line: ddrescue /dev/sdb disk.img disk.map
# current_pos  current_status  current_pass
0x000E0000     +               1
#      pos        size  status
0x00000000  0x00010000  +
0x00010000  0x00010000  -
0x00020000  0x00040000  +
0x00060000  0x00030000  +
0x00090000  0x00010000  ?
0x000A0000  0x00010000  *
0x000C0000  0x00010000  /
0x000E0000  0x00020000  +
MAP
}

ddrescue_py() {
    nbd_py "
want = open('$BATS_TEST_TMPDIR/disk.img', 'rb').read()
def fails(count, off):
    try:
        h.pread(count, off)
    except nbd.Error as e:
        assert e.errno == 'EIO', (off, e.errno)
        return True
    return False
$1"
}

@test "ddrescue: reads of rescued areas are the image's bytes" {
    requires nbdsh
    make_rescue
    start_server --filter=ddrescue file "$BATS_TEST_TMPDIR/disk.img" \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/disk.map"
    ddrescue_py "
import hashlib
for off, n in [(0, 0x10000), (0x20000, 0x70000), (0x5f000, 0x2000),
               (0xE0000, 0x20000), (0xFFE00, 0x200)]:
    got = h.pread(n, off)
    assert hashlib.sha256(got).digest() == hashlib.sha256(want[off:off + n]).digest(), off
"
}

@test "ddrescue: reads touching unrescued or unmapped areas fail with EIO" {
    requires nbdsh
    make_rescue
    start_server --filter=ddrescue file "$BATS_TEST_TMPDIR/disk.img" \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/disk.map"
    ddrescue_py "
# bad, non-tried, non-trimmed, unmapped, non-scraped
for off in (0x10000, 0x90000, 0xA0000, 0xB0000, 0xC0000, 0xCFE00):
    assert fails(512, off), off
# one byte over the edge of a rescued area, either side
assert fails(0x200, 0xFF00 + 0x100)
assert fails(0x200, 0x1FF00)
assert fails(0x100000, 0)
# and the server goes on
assert h.pread(512, 0) == want[:512]
"
}

@test "ddrescue: the export is read-only and cannot cache" {
    requires nbdsh nbdinfo
    make_rescue
    start_server --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/disk.map"
    nbdinfo --json "$uri" > "$BATS_TEST_TMPDIR/info"
    grep -q '"is_read_only": true' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_cache": false' "$BATS_TEST_TMPDIR/info"
    nbd_py "
try:
    h.pwrite(b'x' * 512, 0)
    sys.exit('a write succeeded')
except nbd.Error as e:
    assert e.errno == 'EPERM', e.errno
"
}

# bad_map NAME CONTENT EXPECTED-MESSAGE
bad_map() {
    printf "$2" > "$BATS_TEST_TMPDIR/$1.map"
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/$1.map"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$1.map: $3"* ]]
}

@test "ddrescue: a malformed mapfile is refused with the line that is wrong" {
    bad_map number '# c\n0x0 + 1\n0x0 0x100 +\n0x100 zz +\n' \
        "line 4: size 'zz' is not a number"
    bad_map position '0x0 + 1\n-5 0x100 +\n' "line 2: position '-5' is not a number"
    bad_map state '0x0 + 1\n\n0x0 0x100 Q\n' "line 3: status 'Q' is not one of"
    bad_map fields '0x0 + 1\n0x0 0x100 + junk\n' "line 2: 4 or more fields"
    bad_map short '0x0 + 1\n0x0 0x100\n' "line 2: 2 fields"
    bad_map overlap '0x0 + 1\n0x0 0x100 +\n0x80 0x100 -\n' \
        "line 3: block at 0x80 begins before the end of the block before it"
    bad_map huge '0x0 + 1\n0xffffffffffffffff 0x100 +\n' "line 2: block"
    bad_map nostatus '# only a comment\n' "the file ends at line 1 without a status line"
    bad_map status 'hello world\n' "line 1: a status line"
    { printf '0x0 + 1\n0x0 0x1'; printf '\0'; printf ' +\n'; } > "$BATS_TEST_TMPDIR/nul.map"
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/nul.map"
    [ "$status" -eq 1 ]
    [[ "$output" == *"line 2: contains a NUL byte"* ]]
}

@test "ddrescue: a missing, unreadable or repeated mapfile is refused" {
    make_rescue
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"needs ddrescue-mapfile=FILE"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/none.map"
    [ "$status" -eq 1 ]
    [[ "$output" == *"none.map: No such file or directory"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR"
    [ "$status" -eq 1 ]
    [[ "$output" == *"not a regular file"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/disk.map" \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/disk.map"
    [ "$status" -eq 1 ]
    [[ "$output" == *"already given"* ]]
}
