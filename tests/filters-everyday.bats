#!/usr/bin/env bats
# The protect, exportname, cacheextents, swab, checkwrite and
# blocksize-policy filters (nbdkit-NAME-filter(1)): data checked byte
# for byte, errors by their NBD error, lists and block sizes as
# nbdinfo sees them.  The expected results are those of nbdkit 1.32
# (NBDKIT=/usr/bin/nbdkit runs most of them against it; the tests of
# our differences say so).

load helpers

# The value of one field of the export, as nbdinfo --json reports it
# ("none" if it is absent).
field() {
    nbdinfo --json "${2:-$uri}" | /usr/bin/python3 -c "import json, sys; print(json.load(sys.stdin)['exports'][0].get('$1', 'none'))"
}

# A bad parameter: exit status 1 and this message.
bad_param() {
    local msg=$1; shift
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" "$@"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$msg"* ]]
}

# ---- protect ----

@test "protect: writes that change a protected range fail with EPERM, others pass" {
    requires nbdsh
    start_server --filter=protect memory 64K protect=4096-8191 protect=0x8000-
    nbdsh -u "$uri" -c '
import errno
def eperm(f):
    try:
        f()
        assert False, "no error"
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, e
h.pwrite(b"a" * 4096, 0)                   # unprotected
eperm(lambda: h.pwrite(b"b" * 8, 4090))    # straddles 4096
eperm(lambda: h.pwrite(b"c", 8191))         # last protected byte
h.pwrite(b"d", 8192)                        # just after
eperm(lambda: h.pwrite(b"e", 65535))        # open end: to the end
h.pwrite(b"\0" * 100, 4096)                 # the same data (zeros): allowed
h.zero(4096, 4096)                          # already zero: allowed
h.trim(4096, 4096)
assert h.pread(4096, 0) == b"a" * 4096
assert h.pread(1, 8192) == b"d"
assert h.pread(4096, 4096) == bytes(4096)
'
}

@test "protect: writes of the same bytes pass; zero and trim of non-zero data fail" {
    requires nbdsh
    local img=$BATS_TEST_TMPDIR/disk.img
    head -c 65536 /dev/urandom > "$img"
    cp "$img" "$BATS_TEST_TMPDIR/orig.img"
    start_server --filter=protect file "$img" protect=~1024-2047
    nbdsh -u "$uri" -c '
import errno
data = open("'"$img"'", "rb").read()
h.pwrite(data[0:4096], 0)           # identical: passes
h.pwrite(b"x" * 1024, 1024)         # the unprotected hole
for f in (lambda: h.zero(512, 0), lambda: h.trim(512, 4096),
          lambda: h.pwrite(b"y", 2048), lambda: h.pwrite(b"y", 1023)):
    try:
        f()
        assert False
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, e
'
    cmp -n 1024 "$img" "$BATS_TEST_TMPDIR/orig.img"
    cmp -i 2048 "$img" "$BATS_TEST_TMPDIR/orig.img"
    [ "$(head -c 2048 "$img" | tail -c 1024)" = "$(printf 'x%.0s' $(seq 1024))" ]
}

@test "protect: a bad range is refused with status 1" {
    bad_param "protect=5-3" --filter=protect memory 1M protect=5-3
    bad_param "protect=12" --filter=protect memory 1M protect=12
    bad_param "protect=1-zz" --filter=protect memory 1M protect=1-zz
}

# ---- exportname ----

@test "exportname: exportname-list modes as NBD_OPT_LIST shows them" {
    requires nbdinfo
    start_server --filter=exportname memory 1M exportname-list=explicit \
        exportname=a exportname=b exportdesc=fixed:hello
    run nbdinfo --list --json "$uri"
    [ "$status" -eq 0 ]
    names=$(echo "$output" | /usr/bin/python3 -c 'import json,sys; print(" ".join(e["export-name"] + "=" + e.get("description","") for e in json.load(sys.stdin)["exports"]))')
    [ "$names" = "a=hello b=hello" ]
    stop_server
    start_server --filter=exportname memory 1M exportname-list=empty
    run nbdinfo --list --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"exports": \[\]'
    stop_server
    start_server --filter=exportname memory 1M exportname-list=error
    run nbdinfo --list "$uri"
    [ "$status" -ne 0 ]
    stop_server
    start_server --filter=exportname memory 1M exportname-list=defaultonly
    run nbdinfo --list --json "$uri"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | grep -c '"export-name": ""')" -eq 1 ]
}

@test "exportname: default-export= is what an empty name opens below" {
    requires nbdinfo nbdsh
    local d=$BATS_TEST_TMPDIR/dir
    mkdir "$d"
    printf 'one%509s' "" > "$d/file1"
    printf 'two%1021s' "" > "$d/file2"
    start_server --filter=exportname file dir="$d" default-export=file2 \
        exportname-list=defaultonly
    [ "$(field export-size)" = 1024 ]
    [ "$(field export-name)" = file2 ]
    [ "$(nbdsh -u "$uri" -c 'print(h.pread(3, 0).decode())')" = two ]
    [ "$(field export-size "nbd+unix:///file1?socket=$sock")" = 512 ]
    run nbdinfo --list --json "$uri"
    echo "$output" | grep -q '"export-name": "file2"'
}

@test "exportname: exportname-strict=true refuses the names not listed" {
    requires nbdinfo
    start_server --filter=exportname memory 1M exportname-strict=true \
        exportname=a
    nbdinfo "nbd+unix:///a?socket=$sock" >/dev/null
    run nbdinfo "nbd+unix:///b?socket=$sock"
    [ "$status" -ne 0 ]
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    stop_server
    # The name asked is checked: "" too, even with default-export=.
    start_server --filter=exportname memory 1M exportname-strict=true \
        exportname=a default-export=a
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    stop_server
    start_server --filter=exportname memory 1M exportname-strict=true \
        exportname=a exportname= default-export=a
    [ "$(field export-name)" = a ]
}

@test "exportname: exportdesc=script: runs the script with \$name" {
    requires nbdinfo
    start_server --filter=exportname memory 1M default-export=zz \
        exportdesc='script:echo "desc of $name"'
    [ "$(field description)" = "desc of zz" ]
    run nbdinfo --list --json "$uri"
    echo "$output" | grep -q '"description": "desc of '
    stop_server
    start_server --filter=exportname memory 1M exportdesc='script:exit 1'
    [ "$(field description)" = none ]
    stop_server
    start_server --filter=exportname memory 1M exportdesc=none
    [ "$(field description)" = none ]
}

@test "exportname: bad parameters are refused with status 1" {
    bad_param "exportname-list=bogus" --filter=exportname memory 1M exportname-list=bogus
    bad_param "exportdesc=bogus" --filter=exportname memory 1M exportdesc=bogus
    bad_param "exportname-strict=bogus" --filter=exportname memory 1M exportname-strict=bogus
}

# ---- cacheextents ----

@test "cacheextents: block status answers as below, and after writes too" {
    requires nbdsh qemu-img
    start_server --filter=cacheextents --filter=log memory 8M \
        logfile="$BATS_TEST_TMPDIR/log"
    nbdsh -u "$uri" -c '
h.pwrite(b"x" * 65536, 1048576)
h.pwrite(b"y" * 65536, 4194304)
'
    qemu-img map --output=json "$uri" > "$BATS_TEST_TMPDIR/map1"
    grep -q '"start": 1048576, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true' "$BATS_TEST_TMPDIR/map1"
    # qemu-img asks one extent at a time: the cache answers most of them.
    n=$(grep -c 'Extents id=[0-9]* offset' "$BATS_TEST_TMPDIR/log")
    [ "$n" -lt 5 ]
    nbdsh -u "$uri" -c 'h.zero(65536, 1048576)'
    qemu-img map --output=json "$uri" > "$BATS_TEST_TMPDIR/map2"
    not grep -q '"start": 1048576, "length": 65536, "depth": 0, "present": true, "zero": false' "$BATS_TEST_TMPDIR/map2"
}

@test "cacheextents: REQ_ONE answers one extent from the cache" {
    requires nbdsh
    start_server --filter=cacheextents memory 8M
    nbdsh --base-allocation -u "$uri" -c '
h.pwrite(b"x" * 65536, 65536)
ext = []
def cb(meta, off, e, err):
    ext.append(list(e))
h.block_status(8 << 20, 0, cb)
h.block_status(1 << 20, 65536, cb, nbd.CMD_FLAG_REQ_ONE)
assert len(ext[1]) == 2 and ext[1][0] == 65536 and ext[1][1] == 0, ext
'
}

# ---- swab ----

@test "swab: 16, 32 and 64-bit words are swapped byte for byte" {
    requires nbdsh
    local img=$BATS_TEST_TMPDIR/disk.img
    head -c 65536 /dev/urandom > "$img"
    for bits in 16 32 64; do
        start_server --filter=swab file "$img" swab-bits=$bits
        nbdsh -u "$uri" -c '
import sys
w = '$bits' // 8
data = open("'"$img"'", "rb").read()
want = b"".join(data[i:i+w][::-1] for i in range(0, len(data), w))
assert h.pread(65536, 0) == want
new = bytes(range(256)) * 4
h.pwrite(new, 4096)
h.flush()
below = open("'"$img"'", "rb").read()[4096:5120]
assert below == b"".join(new[i:i+w][::-1] for i in range(0, len(new), w))
assert h.pread(1024, 4096) == new
'
        stop_server
    done
}

@test "swab: the size is rounded down and unaligned requests fail with EINVAL" {
    requires nbdsh nbdinfo
    start_server --filter=swab pattern 1027 swab-bits=32
    [ "$(field export-size)" = 1024 ]
    [ "$(field block_size_minimum)" = 4 ]
    nbdsh -u "$uri" -c '
import errno
h.set_strict_mode(0)
try:
    h.pread(2, 1)
    assert False
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e
# pattern: each 8 bytes hold their offset, big endian; swapped per 32 bits
assert h.pread(16, 8) == bytes([0, 0, 0, 0, 8, 0, 0, 0])+bytes([0, 0, 0, 0, 16, 0, 0, 0])
'
}

@test "swab: swab-bits=64 makes the pattern backend little endian" {
    requires nbdsh
    start_server --filter=swab pattern 1M swab-bits=64
    nbdsh -u "$uri" -c '
import struct
assert struct.unpack("<Q", h.pread(8, 8192))[0] == 8192
'
}

@test "swab: a bad swab-bits is refused with status 1" {
    bad_param "swab-bits=12" --filter=swab memory 1M swab-bits=12
    bad_param "swab-bits=x" --filter=swab memory 1M swab-bits=x
}

# ---- checkwrite ----

@test "checkwrite: copying the export onto itself passes; nothing is written" {
    requires nbdcopy qemu-img
    local img=$BATS_TEST_TMPDIR/disk.img
    truncate -s 4M "$img"
    head -c 100000 /dev/urandom | dd of="$img" bs=1 seek=70000 conv=notrunc status=none
    cp "$img" "$BATS_TEST_TMPDIR/orig.img"
    start_server --filter=checkwrite file "$img"
    nbdcopy "$uri" "$uri"
    qemu-img convert -n "$uri" "$uri"
    cmp "$img" "$BATS_TEST_TMPDIR/orig.img"
    [ "$(field is_read_only)" = False ]
}

@test "checkwrite: different data, and zeroing data, fail with EIO" {
    requires nbdsh
    start_server --filter=checkwrite data "@32768 1 2 3"
    nbdsh -u "$uri" -c '
import errno
h.pwrite(bytes([1, 2, 3]), 32768)
h.pwrite(bytes(100), 0)
h.zero(32768, 0)
h.trim(4096, 0)
h.flush()
for f in (lambda: h.pwrite(b"x", 32768), lambda: h.zero(4, 32767),
          lambda: h.trim(4, 32767), lambda: h.pwrite(b"x", 0)):
    try:
        f()
        assert False
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
assert h.pread(3, 32768) == bytes([1, 2, 3])
'
}

# ---- blocksize-policy ----

@test "blocksize-policy: the advertised block sizes" {
    requires nbdinfo
    start_server --filter=blocksize-policy memory 1M blocksize-preferred=64K
    [ "$(field block_size_minimum)" = 1 ]
    [ "$(field block_size_preferred)" = 65536 ]
    stop_server
    start_server --filter=blocksize-policy memory 1M blocksize-minimum=512 \
        blocksize-maximum=1M
    [ "$(field block_size_minimum)" = 512 ]
    [ "$(field block_size_preferred)" = 4096 ]
    [ "$(field block_size_maximum)" = 1048576 ]
}

@test "without constraints from below, no block sizes are advertised (as nbdkit)" {
    requires nbdinfo
    start_server memory 1M
    [ "$(field block_size_minimum)" = none ]
    [ "$(field block_size_preferred)" = none ]
}

@test "blocksize-policy: allow passes bad requests down; error fails them with EINVAL" {
    requires nbdsh
    start_server --filter=blocksize-policy memory 1M blocksize-minimum=512 \
        blocksize-maximum=64K
    nbdsh -u "$uri" -c '
h.set_strict_mode(0)
h.pwrite(b"abc", 1)
assert h.pread(3, 1) == b"abc"
h.pread(128 * 1024, 0)
'
    stop_server
    start_server --filter=blocksize-policy memory 1M blocksize-minimum=512 \
        blocksize-maximum=64K blocksize-error-policy=error
    nbdsh -u "$uri" -c '
import errno
h.set_strict_mode(0)
for f in (lambda: h.pwrite(b"abc", 1), lambda: h.pread(512, 1),
          lambda: h.pread(128 * 1024, 0), lambda: h.zero(100, 0),
          lambda: h.trim(512, 100)):
    try:
        f()
        assert False
    except nbd.Error as e:
        assert e.errnum == errno.EINVAL, e
h.pwrite(b"a" * 512, 512)
assert h.pread(512, 512) == b"a" * 512
'
}

@test "blocksize-policy over blocksize: small writes of clients that ignore the minimum are done by read-modify-write" {
    requires nbdsh nbdinfo
    start_server --filter=blocksize-policy --filter=blocksize memory 1M \
        blocksize-minimum=64K minblock=64K
    [ "$(field block_size_minimum)" = 65536 ]
    nbdsh -u "$uri" -c '
h.set_strict_mode(0)
h.pwrite(b"abc", 5)
assert h.pread(10, 0) == bytes(5) + b"abc" + bytes(2)
'
}

@test "blocksize-policy: a write over blocksize-write-disconnect drops the client" {
    requires nbdsh
    [ "$NBDKIT" != /usr/bin/nbdkit ] || skip "nbdkit 1.32 has no blocksize-write-disconnect"
    start_server --filter=blocksize-policy memory 1M \
        blocksize-write-disconnect=64K
    nbdsh -u "$uri" -c '
import errno
h.set_strict_mode(0)
h.pwrite(b"a" * 65536, 0)
try:
    h.pwrite(b"a" * 65537, 0)
    assert False
except nbd.Error as e:
    assert e.errnum in (errno.ENOTCONN, errno.ESHUTDOWN), e
assert not h.aio_is_ready()
'
}

@test "blocksize-policy: bad parameters are refused with status 1" {
    bad_param "blocksize-minimum=3" --filter=blocksize-policy memory 1M blocksize-minimum=3
    bad_param "blocksize-minimum=128K" --filter=blocksize-policy memory 1M blocksize-minimum=128K
    bad_param "blocksize-preferred=256" --filter=blocksize-policy memory 1M blocksize-preferred=256
    bad_param "blocksize-error-policy=foo" --filter=blocksize-policy memory 1M blocksize-error-policy=foo
    bad_param "blocksize-preferred=8192" --filter=blocksize-policy memory 1M blocksize-preferred=8192 blocksize-maximum=4096
    bad_param "blocksize-minimum=foo" --filter=blocksize-policy memory 1M blocksize-minimum=foo
}
