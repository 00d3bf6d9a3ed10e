# The split backend: files concatenated into one disk, read, written,
# zeroed, trimmed and mapped through real clients, and checked byte for
# byte against the files.

load helpers

# Three files of awkward sizes, an empty one, and a sparse one with one
# block of data: $d/f1 .. $d/f5, and $d/all, their concatenation.
make_files() {
    d=$BATS_TEST_TMPDIR
    random_file "$d/f1" 1000000
    random_file "$d/f2" 777
    : > "$d/f3"
    random_file "$d/f4" 65536
    truncate -s 5M "$d/f5"
    head -c 4096 /dev/urandom | dd of="$d/f5" bs=4096 seek=300 conv=notrunc 2>/dev/null
    cat "$d/f1" "$d/f2" "$d/f3" "$d/f4" "$d/f5" > "$d/all"
    files=("$d/f1" "$d/f2" "$d/f3" "$d/f4" "$d/f5")
}

@test "split: the disk is the files one after the other, byte for byte" {
    requires nbdcopy nbdinfo
    make_files
    start_server split "${files[@]}"
    [ "$(nbdinfo --size "$uri")" -eq "$(stat -c %s "$d/all")" ]
    nbdcopy "$uri" "$d/out"
    cmp "$d/out" "$d/all"
}

@test "split: file= and bare names mean the same" {
    requires nbdcopy
    make_files
    start_server split file="$d/f1" "$d/f2" file="$d/f4"
    nbdcopy "$uri" "$d/out"
    cat "$d/f1" "$d/f2" "$d/f4" | cmp - "$d/out"
}

@test "split: qemu-img reads the same bytes" {
    # qemu's NBD client rounds block status to sectors, so with files of
    # odd sizes it can take the first bytes of a data extent for a hole
    # (it does so with nbdkit's split plugin too): give it whole sectors.
    requires qemu-img
    make_files
    random_file "$d/f6" 1M
    start_server split "$d/f4" "$d/f6" "$d/f3" "$d/f5"
    qemu-img convert -f raw -O raw "$uri" "$d/out"
    cat "$d/f4" "$d/f6" "$d/f5" | cmp - "$d/out"
}

@test "split: reads and writes that cross file boundaries go to both files" {
    requires nbdsh
    make_files
    start_server split "$d/f1" "$d/f2" "$d/f3" "$d/f4"
    nbd_py '
import os
d = os.environ["BATS_TEST_TMPDIR"]
# A write from the end of f1 through all of f2 and the empty f3 into f4.
off = 1000000 - 100
data = os.urandom(100 + 777 + 200)
h.pwrite(data, off)
assert h.pread(len(data), off) == data
h.flush()
f1 = open(d + "/f1", "rb").read()
f2 = open(d + "/f2", "rb").read()
f4 = open(d + "/f4", "rb").read()
assert f1[-100:] == data[:100]
assert f2 == data[100:877]
assert f4[:200] == data[877:]
assert len(f1) == 1000000 and len(f2) == 777 and len(f4) == 65536
'
    cat "$d/f1" "$d/f2" "$d/f3" "$d/f4" > "$d/expect"
    nbdcopy "$uri" "$d/out"
    cmp "$d/out" "$d/expect"
}

@test "split: block status reports each file's holes and data" {
    requires nbdinfo
    make_files
    start_server split "$d/f4" "$d/f5"
    nbdinfo --map --json "$uri" > "$d/map"
    /usr/bin/python3 - "$d/map" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
ext = [(e["offset"], e["length"], e["type"]) for e in m]
base = 65536
# f4 is data; f5 is a hole, one 4 KiB block of data at 300 * 4096, a hole.
assert ext[0] == (0, base + 300 * 4096, 0) or ext[0][2] == 0, ext
data = [(o, l) for o, l, t in ext if t == 0]
holes = [(o, l) for o, l, t in ext if t == 3]
assert data == [(0, base), (base + 300 * 4096, 4096)], ext
assert holes == [(base, 300 * 4096),
                 (base + 301 * 4096, 5 * 1024 * 1024 - 301 * 4096)], ext
EOF
}

@test "split: trim punches a hole and zero zeroes, in the right file" {
    requires nbdsh
    make_files
    start_server split "$d/f4" "$d/f1"
    nbd_py '
import os
d = os.environ["BATS_TEST_TMPDIR"]
# Zero across the boundary, trim inside f1.
h.zero(8192, 65536 - 4096)
h.trim(65536, 65536 + 131072)
h.flush()
f4 = open(d + "/f4", "rb").read()
f1 = open(d + "/f1", "rb").read()
assert f4[-4096:] == bytes(4096)
assert f1[:4096] == bytes(4096)
assert h.pread(8192, 65536 - 4096) == bytes(8192)
# The trimmed range is a hole in f1 now (tmpfs and ext4 punch).
assert f1[131072:131072 + 65536] == bytes(65536)
assert len(f4) == 65536 and len(f1) == 1000000
'
}

@test "split: FUA writes and flush reach the files" {
    requires nbdsh
    make_files
    start_server split "$d/f2" "$d/f4"
    nbd_py '
import errno, os
d = os.environ["BATS_TEST_TMPDIR"]
assert h.can_flush() and h.can_fua() and h.can_trim() and h.can_multi_conn()
assert h.can_fast_zero()
# A fast zero on a file system that zeroes ranges (tmpfs, ext4, xfs):
# done; elsewhere ENOTSUP with the data left alone.
h.pwrite(b"z" * 4096, 0)
try:
    h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO)
    assert h.pread(4096, 0) == bytes(4096)
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
    assert h.pread(4096, 0) == b"z" * 4096
h.pwrite(b"x" * 1000, 500, nbd.CMD_FLAG_FUA)
f2 = open(d + "/f2", "rb").read()
f4 = open(d + "/f4", "rb").read()
assert f2[500:] == b"x" * 277 and f4[:723] == b"x" * 723
'
}

@test "split: with -r the export is read-only and read-only files serve" {
    requires nbdsh
    make_files
    chmod a-w "${files[@]}"
    start_server -r split "${files[@]}"
    nbd_py '
import errno
assert h.is_read_only()
try:
    h.pwrite(b"x", 0)
    assert False
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
    nbdcopy "$uri" "$d/out"
    cmp "$d/out" "$d/all"
}

@test "split: bad parameters are refused with status 1" {
    run "$NBDKIT" split
    [ "$status" -eq 1 ]
    [[ "$output" == *"no files given"* ]]
    run "$NBDKIT" split "$BATS_TEST_TMPDIR/missing"
    [ "$status" -eq 1 ]
    [[ "$output" == *"missing: No such file or directory"* ]]
    run "$NBDKIT" split colour=red
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown parameter 'colour'"* ]]
    run "$NBDKIT" split file=
    [ "$status" -eq 1 ]
    [[ "$output" == *"file=: the file name is empty"* ]]
}

@test "split: --help lists file=" {
    run "$NBDKIT" split --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"[file=]<FILENAME>"* ]]
}
