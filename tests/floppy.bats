# The floppy backend: a read-only FAT32 disk made from a directory, as
# sfdisk, mtools and fsck.fat see it after nbdcopy copied it out, and
# as nbdsh reads it.

load helpers

export MTOOLS_SKIP_CHECK=1
export LC_ALL=C.UTF-8           # mtools prints the long names in UTF-8
export TZ=UTC                   # FAT times are local times

LONG="A Long File Name With Spaces.txt"
UNICODE="café ünïcode ☃.txt"

# A tree of files of several sizes: $files.
make_tree() {
    files=$BATS_TEST_TMPDIR/files
    mkdir -p "$files/sub/deeper" "$files/many" "$files/emptydir"
    random_file "$files/small.bin" 1000
    random_file "$files/exact.bin" 512
    random_file "$files/medium.bin" 70001
    random_file "$files/big.bin" $((3 * 1024 * 1024 + 123))
    : > "$files/empty"
    echo "plain 8.3 name" > "$files/README.TXT"
    random_file "$files/$LONG" 4097
    random_file "$files/$UNICODE" 333
    random_file "$files/sub/nested.bin" 20000
    random_file "$files/sub/deeper/another long name.dat" 1234
    local i
    for i in $(seq 1 100); do
        echo "$i" > "$files/many/a file with a long name $i.txt"
    done
}

# Copy the served disk to $img; $part is the partition for mtools.
copy_disk() {
    img=$BATS_TEST_TMPDIR/disk.img
    nbdcopy "$uri" "$img"
    local off
    off=$(sfdisk --json "$img" | /usr/bin/python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
print(t["partitions"][0]["start"] * t.get("sectorsize", 512))')
    part="$img@@$off"
}

# Python for nbd_py: print the sha256 of the whole disk.
disk_sha() {
    echo '
import hashlib
s, size, off = hashlib.sha256(), h.get_size(), 0
while off < size:
    n = min(size - off, 1 << 20)
    s.update(h.pread(n, off))
    off += n
print(s.hexdigest())'
}

# Python for nbd_py: locate(SHORT_NAME) finds a file of the root
# directory through the boot sector and returns its first cluster, its
# size and the disk offset of the end of its data.
locate_py() {
    echo '
import struct
def locate(short_name):
    part = 1 << 20
    b = h.pread(512, part)
    spc, reserved, nfats = b[13], struct.unpack("<H", b[14:16])[0], b[16]
    fat = struct.unpack("<I", b[36:40])[0]
    cs = spc * 512
    data = part + (reserved + nfats * fat) * 512
    root = h.pread(cs, data)
    for i in range(0, cs, 32):
        e = root[i:i + 32]
        if e[:11] == short_name:
            cl = (struct.unpack("<H", e[20:22])[0] << 16 |
                  struct.unpack("<H", e[26:28])[0])
            size = struct.unpack("<I", e[28:32])[0]
            return cl, size, data + (cl - 2) * cs + size
    assert False, short_name'
}

# Run a server that must fail to start: sets $status and $output.  In
# the foreground, and bounded, so that a server that starts after all
# fails the test instead of hanging it.
start_fails() {
    run timeout 300 "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" "$@"
}

serve_tree() {
    requires nbdcopy sfdisk mdir
    make_tree
    start_server floppy "$files" "$@"
    copy_disk
}

@test "the disk has one partition, of type c (FAT32 LBA), at 1 MiB" {
    serve_tree
    run sfdisk --json "$img"
    [ "$status" -eq 0 ]
    /usr/bin/python3 -c '
import json, sys
t = json.loads(sys.argv[1])["partitiontable"]
assert t["label"] == "dos", t
assert len(t["partitions"]) == 1, t
p = t["partitions"][0]
assert p["type"] == "c", p
assert p["start"] == 2048, p
' "$output"
    sfdisk -l "$img" | grep -q "W95 FAT32 (LBA)"
}

@test "mdir lists the long names, in the root and in subdirectories" {
    serve_tree
    run mdir -i "$part" ::
    [ "$status" -eq 0 ]
    [[ "$output" == *"$LONG"* ]]
    [[ "$output" == *"$UNICODE"* ]]
    [[ "$output" == *"README   TXT"* ]]
    run mdir -i "$part" ::/sub/deeper
    [ "$status" -eq 0 ]
    [[ "$output" == *"another long name.dat"* ]]
    run mdir -i "$part" ::/many
    [ "$status" -eq 0 ]
    [[ "$output" == *"a file with a long name 100.txt"* ]]
}

@test "every short name in a directory is a distinct 8.3 name with a ~N tail" {
    serve_tree
    run mdir -i "$part" ::/many
    [ "$status" -eq 0 ]
    # Short name and extension are the first 12 columns of each file.
    names=$(printf '%s\n' "$output" | grep 'a file with a long name' |
            cut -c1-12)
    [ "$(printf '%s\n' "$names" | wc -l)" -eq 100 ]
    [ "$(printf '%s\n' "$names" | sort -u | wc -l)" -eq 100 ]
    printf '%s\n' "$names" | grep -q '^AFILEW~1 TXT'
    printf '%s\n' "$names" | grep -q '^AFILE~10 TXT'
    printf '%s\n' "$names" | grep -q '^AFIL~100 TXT'
    run mdir -i "$part" ::
    [[ "$output" == *"ALONGF~1 TXT"*"$LONG"* ]]
}

@test "files copied out with mcopy are byte for byte the originals" {
    serve_tree
    local f out=$BATS_TEST_TMPDIR/out
    for f in small.bin exact.bin medium.bin big.bin empty README.TXT \
             "$LONG" "$UNICODE" sub/nested.bin \
             "sub/deeper/another long name.dat" \
             "many/a file with a long name 57.txt"; do
        rm -f "$out"
        mcopy -i "$part" "::/$f" "$out"
        [ "$(sha "$out")" = "$(sha "$files/$f")" ] || {
            echo "$f differs" >&2
            return 1
        }
    done
}

@test "fsck.fat finds no errors in the file system" {
    requires fsck.fat
    serve_tree label=CHECKED
    local fs=$BATS_TEST_TMPDIR/part.img
    dd if="$img" of="$fs" bs=1M skip=1 status=none
    run fsck.fat -n "$fs"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *"arning"* ]]
}

@test "the volume label is NBDKITFLOPY, or what label= says" {
    serve_tree
    run mlabel -s -i "$part" ::
    [[ "$output" == *"Volume label is NBDKITFLOPY"* ]]
    stop_server
    start_server floppy "$files" label=my-Disk
    copy_disk
    run mlabel -s -i "$part" ::
    [[ "$output" == *"Volume label is MY-DISK"* ]]
    minfo -i "$part" :: | grep -q 'MY-DISK'
}

@test "file times are the files' modification times" {
    requires nbdcopy sfdisk mdir
    files=$BATS_TEST_TMPDIR/files
    mkdir -p "$files"
    echo old > "$files/old.txt"
    touch -d '2001-02-03 04:05:06' "$files/old.txt"
    start_server floppy "$files"
    copy_disk
    run mdir -i "$part" ::
    [[ "$output" == *"OLD      TXT "*"2001-02-03   4:05"* ]]
}

@test "a write fails with EPERM: the disk is read-only" {
    requires nbdsh nbdinfo
    make_tree
    start_server floppy "$files"
    nbdinfo --json "$uri" | grep -q '"is_read_only": true'
    nbd_py '
try:
    h.pwrite(b"x" * 512, 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
}

@test "reads at random offsets and lengths match the copied disk" {
    requires nbdsh
    serve_tree
    nbd_py "
import random
img = open('$img', 'rb').read()
assert h.get_size() == len(img)
rnd = random.Random(7)
for i in range(300):
    n = rnd.randrange(1, 3 << 20)
    off = rnd.randrange(0, len(img) - n)
    assert h.pread(n, off) == img[off:off + n], (off, n)
# The whole data area in one go, spanning every region.
off = 1 << 20
n = min(len(img) - off, 32 << 20)
assert h.pread(n, off) == img[off:off + n]
"
}

@test "size= makes a larger disk whose free space is free in the file system" {
    requires fsck.fat
    serve_tree size=100M
    [ "$(stat -c %s "$img")" -eq $((100 * 1024 * 1024)) ]
    run mdir -i "$part" ::
    [[ "$output" == *"$LONG"* ]]
    free=$(printf '%s\n' "$output" | sed -n 's/ *\([0-9 ]*\) bytes free/\1/p' |
           tr -d ' ')
    [ "$free" -gt $((90 * 1024 * 1024)) ]
    mcopy -i "$part" ::/big.bin "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/out")" = "$(sha "$files/big.bin")" ]
    dd if="$img" of="$BATS_TEST_TMPDIR/part.img" bs=1M skip=1 status=none
    fsck.fat -n "$BATS_TEST_TMPDIR/part.img"
}

@test "block status says data throughout, as nbdkit's floppy plugin" {
    requires nbdinfo
    make_tree
    start_server floppy "$files" size=100M
    run nbdinfo --map "$uri"
    [ "$status" -eq 0 ]
    [ "$(printf '%s\n' "$output" | wc -l)" -eq 1 ]
    printf '%s\n' "$output" | grep -qw 'data'
    run "$NBDKIT" --dump-plugin floppy "$files"
    [[ "$output" != *has_extents* ]]
}

@test "a size too small for the files is an error that says what is needed" {
    make_tree
    start_fails floppy "$files" size=1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"size=1M: too small"*"at least "*" bytes"* ]]
}

@test "a file of 4 GiB - 1 is served whole" {
    requires nbdsh
    files=$BATS_TEST_TMPDIR/files
    mkdir -p "$files"
    truncate -s $((4 * 1024 * 1024 * 1024 - 1)) "$files/huge"
    printf END | dd of="$files/huge" bs=1 seek=$((4 * 1024 * 1024 * 1024 - 4)) \
                    conv=notrunc status=none
    start_server floppy "$files"
    nbd_py "$(locate_py)
cl, size, end = locate(b'HUGE       ')
assert size == 2**32 - 1, size
assert h.pread(4, end - 4) == b'\\0END'
assert h.pread(1, end) == b'\\0'
"
}

@test "a file larger than 4 GiB - 1 is an error naming it" {
    files=$BATS_TEST_TMPDIR/files
    mkdir -p "$files"
    truncate -s 4G "$files/too big.img"
    start_fails floppy "$files"
    [ "$status" -eq 1 ]
    [[ "$output" == *"too big.img: 4294967296 bytes is too large for FAT32"* ]]
}

@test "a name FAT cannot hold is an error naming the file" {
    files=$BATS_TEST_TMPDIR/files
    mkdir -p "$files"
    echo x > "$files/a:b"
    start_fails floppy "$files"
    [ "$status" -eq 1 ]
    [[ "$output" == *"files/a:b: the name contains ':'"* ]]
    rm "$files/a:b"
    echo x > "$files/name.txt"
    echo y > "$files/NAME.txt"
    start_fails floppy "$files"
    [ "$status" -eq 1 ]
    [[ "$output" == *"'NAME.txt' and 'name.txt' differ only in case"* ]]
}

@test "a directory with more entries than FAT allows is an error naming it" {
    files=$BATS_TEST_TMPDIR/files
    mkdir -p "$files/full"
    # Each name takes 1 short and 2 long name entries: 22000 * 3 > 65536.
    /usr/bin/python3 -c '
import sys
for i in range(22000):
    open("%s/a long name number %05d" % (sys.argv[1], i), "w").close()
' "$files/full"
    start_fails floppy "$files"
    [ "$status" -eq 1 ]
    [[ "$output" == *"files/full: its 22000 files need 66002 directory entries"*"65536"* ]]
}

@test "a file that went away while served fails with EIO" {
    requires nbdsh
    files=$BATS_TEST_TMPDIR/files
    mkdir -p "$files"
    random_file "$files/GONE.BIN" 10000
    start_server floppy "$files"
    nbd_py "$(locate_py)
cl, size, end = locate(b'GONE    BIN')
assert size == 10000
assert h.pread(size, end - size) == open('$files/GONE.BIN', 'rb').read()
os.unlink('$files/GONE.BIN')
try:
    h.pread(512, end - size)
    assert False, 'the read succeeded'
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
"
    wait_until grep -q 'GONE.BIN' "$log"
}

@test "symbolic links are left out" {
    requires nbdcopy sfdisk mdir
    files=$BATS_TEST_TMPDIR/files
    mkdir -p "$files"
    echo x > "$files/real.txt"
    ln -s real.txt "$files/link.txt"
    start_server floppy "$files"
    copy_disk
    run mdir -i "$part" ::
    [[ "$output" == *"REAL     TXT"* ]]
    [[ "$output" != *"LINK"* ]]
}

@test "a missing, unusable or wrong dir= is an error naming it" {
    start_fails floppy
    [ "$status" -eq 1 ]
    [[ "$output" == *"the directory to serve is required"* ]]
    start_fails floppy "$BATS_TEST_TMPDIR/nosuch"
    [ "$status" -eq 1 ]
    [[ "$output" == *"dir=$BATS_TEST_TMPDIR/nosuch: No such file"* ]]
    touch "$BATS_TEST_TMPDIR/afile"
    start_fails floppy dir="$BATS_TEST_TMPDIR/afile"
    [ "$status" -eq 1 ]
    [[ "$output" == *"dir=$BATS_TEST_TMPDIR/afile: not a directory"* ]]
    start_fails floppy "$BATS_TEST_TMPDIR" bogus=1
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown parameter 'bogus'"* ]]
}

@test "a bad label is an error naming it and saying what is allowed" {
    start_fails floppy "$BATS_TEST_TMPDIR" \
        label=ABCDEFGHIJKL
    [ "$status" -eq 1 ]
    [[ "$output" == *"label=ABCDEFGHIJKL: too long"*"at most 11"* ]]
    start_fails floppy "$BATS_TEST_TMPDIR" \
        'label=A*B'
    [ "$status" -eq 1 ]
    [[ "$output" == *"label=A*B: '*' cannot be in a FAT volume label"* ]]
    start_fails floppy "$BATS_TEST_TMPDIR" \
        label=été
    [ "$status" -eq 1 ]
    [[ "$output" == *"label=été: not ASCII"* ]]
}

@test "a restarted backend serves the same disk" {
    requires nbdsh
    make_tree
    start_server floppy "$files"
    nbd_py "$(disk_sha)" > "$BATS_TEST_TMPDIR/before"
    old=$(backend_pid)
    kill -KILL "$old"
    wait_until eval '[ -n "$(backend_pid)" ] && [ "$(backend_pid)" != "$old" ]'
    nbd_py "$(disk_sha)" > "$BATS_TEST_TMPDIR/after"
    cmp "$BATS_TEST_TMPDIR/before" "$BATS_TEST_TMPDIR/after"
}

@test "--help describes the parameters" {
    run "$NBDKIT" floppy --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"dir=]<DIRECTORY>"* ]]
    [[ "$output" == *"label=<LABEL>"* ]]
    [[ "$output" == *"size=<SIZE>"* ]]
}
