# The small backends: pattern, zero, full and random.

load helpers

# ---- pattern ----

@test "pattern: every 8-byte word holds its own offset, big-endian" {
    requires nbdsh
    start_server pattern 1M
    nbd_py '
import struct
assert h.get_size() == 1 << 20
assert h.is_read_only()
d = h.pread(1 << 20, 0)
expect = b"".join(struct.pack(">Q", o) for o in range(0, 1 << 20, 8))
assert d == expect
# Reads that start and end inside words.
assert h.pread(13, 0x1003) == expect[0x1003:0x1003 + 13]
'
}

@test "pattern: a size that is not a multiple of 8 cuts the last word short" {
    requires nbdsh
    start_server pattern size=21
    nbd_py '
assert h.get_size() == 21
assert h.pread(21, 0) == bytes(8) + bytes(7) + b"\x08" + bytes(5)
'
}

@test "pattern: the last word of a 2^63-1 byte disk holds its offset" {
    requires nbdsh
    start_server pattern 9223372036854775807
    nbd_py '
size = h.get_size()
assert size == 2**63 - 1
assert h.pread(7, size - 7) == (size - 7).to_bytes(8, "big")[:7]
'
}

@test "pattern: a write fails with EPERM" {
    requires nbdsh
    start_server pattern 1M
    nbd_py '
try:
    h.pwrite(b"x", 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
}

@test "pattern: size is required and must be a size" {
    run "$NBDKIT" pattern
    [ "$status" -ne 0 ]
    [[ "$output" == *"size of the disk is required"* ]]
    run "$NBDKIT" pattern size=12Q
    [ "$status" -ne 0 ]
    [[ "$output" == *"12Q"* ]]
    run "$NBDKIT" pattern 1M colour=red
    [ "$status" -ne 0 ]
    [[ "$output" == *"unknown parameter 'colour'"* ]]
}

# ---- zero ----

@test "zero: without a size it serves an empty disk" {
    requires nbdsh
    start_server zero
    nbd_py 'assert h.get_size() == 0'
}

@test "zero: reads zeroes and refuses writes with EPERM" {
    requires nbdsh
    start_server zero 64M
    nbd_py '
assert h.get_size() == 64 << 20
assert h.is_read_only()
assert h.pread(1 << 20, 63 << 20) == bytes(1 << 20)
try:
    h.pwrite(b"x", 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
}

# ---- full ----

@test "full: reads zeroes, and writes, trims and zeroes fail with ENOSPC" {
    requires nbdsh
    start_server full 1M
    nbd_py '
assert h.get_size() == 1 << 20
assert not h.is_read_only()
assert h.pread(4096, 8192) == bytes(4096)
for what, op in [("write", lambda: h.pwrite(b"x" * 512, 0)),
                 ("write with FUA",
                  lambda: h.pwrite(b"x", 0, nbd.CMD_FLAG_FUA)),
                 ("trim", lambda: h.trim(4096, 0)),
                 ("zero", lambda: h.zero(4096, 0))]:
    try:
        op()
        assert False, what + " succeeded"
    except nbd.Error as e:
        assert e.errnum == errno.ENOSPC, (what, e)
h.flush()
assert h.pread(512, 0) == bytes(512)
'
}

@test "full: nbdcopy onto a full disk fails" {
    requires nbdcopy
    start_server full 1M
    head -c 65536 /dev/urandom > "$BATS_TEST_TMPDIR/in"
    run nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    [ "$status" -ne 0 ]
}

# ---- random ----

@test "random: the same seed gives the same bytes, another seed others" {
    requires nbdcopy
    start_server random 4M seed=1234
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/a"
    stop_server
    start_server random size=4M seed=1234
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/b"
    stop_server
    start_server random 4M seed=1235
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/c"
    [ "$(sha "$BATS_TEST_TMPDIR/a")" = "$(sha "$BATS_TEST_TMPDIR/b")" ]
    [ "$(sha "$BATS_TEST_TMPDIR/a")" != "$(sha "$BATS_TEST_TMPDIR/c")" ]
    [ "$(stat -c %s "$BATS_TEST_TMPDIR/a")" -eq $((4 << 20)) ]
}

@test "random: any range reads the same as the whole disk, and looks random" {
    requires nbdsh
    start_server random 1M seed=7
    nbd_py '
import zlib
whole = h.pread(1 << 20, 0)
for off, n in [(0, 1), (1, 7), (5, 13), (4093, 4099), ((1 << 20) - 3, 3)]:
    assert h.pread(n, off) == whole[off:off + n], (off, n)
# Random data does not compress, and uses every byte value.
assert len(zlib.compress(whole)) > len(whole) * 0.99
assert len(set(whole)) == 256
'
}

@test "random: without a seed two servers serve different data" {
    requires nbdsh
    start_server random 64k
    a=$(nbd_py 'print(h.pread(65536, 0).hex())')
    stop_server
    start_server random 64k
    b=$(nbd_py 'print(h.pread(65536, 0).hex())')
    [ "$a" != "$b" ]
}

@test "random: writing the same data succeeds, other data fails with EIO" {
    requires nbdsh
    start_server random 1M seed=99
    nbd_py '
d = h.pread(8192, 4000)
h.pwrite(d, 4000)
h.pwrite(d[1:100], 4001)
bad = bytes([d[0] ^ 1]) + d[1:]
try:
    h.pwrite(bad, 4000)
    assert False, "a changing write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
assert h.pread(8192, 4000) == d
'
}

@test "random: nbdcopy can copy the disk onto itself" {
    requires nbdcopy
    start_server random 8M seed=3
    nbdcopy "$uri" "$uri"
}

@test "random: a bad seed is refused with a message naming it" {
    run "$NBDKIT" random 1M seed=banana
    [ "$status" -ne 0 ]
    [[ "$output" == *banana* ]]
    run "$NBDKIT" random seed=1
    [ "$status" -ne 0 ]
    [[ "$output" == *"size of the disk is required"* ]]
}

@test "the small backends describe their parameters in --help" {
    local b
    for b in pattern zero full random; do
        run "$NBDKIT" "$b" --help
        [ "$status" -eq 0 ]
        [[ "$output" == *"size="* ]]
    done
    run "$NBDKIT" random --help
    [[ "$output" == *"seed="* ]]
}

@test "random: without a seed, a restarted backend serves the same data" {
    requires nbdsh
    start_server random 1M
    nbd_py '
open(os.environ["BATS_TEST_TMPDIR"] + "/before", "wb").write(h.pread(1 << 20, 0))
'
    old=$(backend_pid)
    kill -KILL "$old"
    wait_until eval '[ -n "$(backend_pid)" ] && [ "$(backend_pid)" != "$old" ]'
    nbd_py '
before = open(os.environ["BATS_TEST_TMPDIR"] + "/before", "rb").read()
assert h.pread(1 << 20, 0) == before
'
}
