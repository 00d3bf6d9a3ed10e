# The linuxdisk backend: a read-only GPT disk whose one partition is an
# ext2/3/4 file system made from a directory with mke2fs -d.  Checked
# on a copy made with nbdcopy: sfdisk for the partition table, e2fsck
# and dumpe2fs for the file system, debugfs to read the files back (no
# mounting: the tests run without the privileges for it).

load helpers

setup() {
    requires nbdcopy nbdsh mke2fs e2fsck debugfs dumpe2fs sfdisk
    export TMPDIR=$BATS_TEST_TMPDIR/tmp
    mkdir -p "$TMPDIR"
}

start_fails() {
    run timeout 300 "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" "$@"
}

make_tree() {
    files=$BATS_TEST_TMPDIR/files
    mkdir -p "$files/sub/deeper" "$files/emptydir"
    random_file "$files/small.bin" 1000
    random_file "$files/big.bin" $((3 * 1024 * 1024 + 123))
    : > "$files/empty"
    echo "hello" > "$files/name with spaces.txt"
    random_file "$files/sub/deeper/nested.bin" 20000
    ln -s small.bin "$files/link"
}

# Copy the disk to $img and its partition to $fs.
copy_disk() {
    img=$BATS_TEST_TMPDIR/disk.img
    fs=$BATS_TEST_TMPDIR/part.img
    nbdcopy "$uri" "$img"
    read -r start sectors < <(sfdisk --json "$img" | /usr/bin/python3 -c '
import json, sys
p = json.load(sys.stdin)["partitiontable"]["partitions"][0]
print(p["start"], p["size"])')
    dd if="$img" of="$fs" bs=512 skip="$start" count="$sectors" status=none
}

@test "the disk has one GPT partition of Linux file system data at 1 MiB" {
    make_tree
    start_server linuxdisk "$files"
    copy_disk
    run sfdisk --json "$img"
    /usr/bin/python3 -c '
import json, sys
t = json.loads(sys.argv[1])["partitiontable"]
assert t["label"] == "gpt", t
assert len(t["partitions"]) == 1, t
p = t["partitions"][0]
assert p["type"] == "0FC63DAF-8483-4772-8E79-3D69D8477DE4", p
assert p["start"] == 2048, p
' "$output"
    if command -v sgdisk >/dev/null; then
        sgdisk -v "$img" | grep -q "No problems found"
    fi
}

@test "the files of the directory are in the file system, byte for byte" {
    make_tree
    start_server linuxdisk "$files"
    copy_disk
    e2fsck -fn "$fs"
    local f out=$BATS_TEST_TMPDIR/out
    for f in small.bin big.bin empty "name with spaces.txt" \
             sub/deeper/nested.bin; do
        debugfs -R "dump \"/$f\" $out" "$fs" 2>/dev/null
        [ "$(sha "$out")" = "$(sha "$files/$f")" ] || {
            echo "$f differs" >&2
            return 1
        }
    done
    # And with cat, as one would read a file.
    [ "$(debugfs -R 'cat /small.bin' "$fs" 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$(sha "$files/small.bin")" ]
    debugfs -R 'stat /link' "$fs" 2>/dev/null | grep -q 'Fast link dest: "small.bin"'
    debugfs -R 'ls /' "$fs" 2>/dev/null | grep -q emptydir
}

@test "ext2 by default; type= and label= reach mke2fs" {
    make_tree
    start_server linuxdisk "$files"
    copy_disk
    run dumpe2fs -h "$fs"
    [[ "$output" != *"has_journal"* ]]
    stop_server
    start_server linuxdisk "$files" type=ext4 label=ROOTFS
    copy_disk
    run dumpe2fs -h "$fs"
    [[ "$output" == *"Filesystem volume name:   ROOTFS"* ]]
    [[ "$output" == *"has_journal"*"extent"* ]]
    e2fsck -fn "$fs"
}

@test "size= sets the size of the file system; size=+ leaves that much free" {
    make_tree
    start_server linuxdisk "$files" size=64M
    copy_disk
    [ "$(stat -c %s "$fs")" -eq $((64 * 1024 * 1024)) ]
    e2fsck -fn "$fs"
    stop_server
    start_server linuxdisk "$files" size=+32M
    copy_disk
    local bs free
    bs=$(dumpe2fs -h "$fs" 2>/dev/null | awk '/^Block size:/ { print $3 }')
    free=$(dumpe2fs -h "$fs" 2>/dev/null | awk '/^Free blocks:/ { print $3 }')
    [ $((bs * free)) -ge $((32 * 1024 * 1024)) ]
}

@test "the disk is read-only: a write fails with EPERM" {
    make_tree
    start_server linuxdisk "$files"
    nbdinfo --json "$uri" | grep -q '"is_read_only": true'
    nbd_py '
try:
    h.pwrite(b"x" * 512, 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errno == "EPERM", e'
}

@test "the image in TMPDIR is removed at once" {
    make_tree
    start_server linuxdisk "$files"
    nbdinfo --size "$uri"
    [ -z "$(ls -A "$TMPDIR")" ]
}

@test "bad parameters are refused with a message and status 1" {
    make_tree
    start_fails linuxdisk
    [ "$status" -eq 1 ]
    [[ "$output" == *"the directory to serve is required"* ]]
    start_fails linuxdisk "$BATS_TEST_TMPDIR/none"
    [ "$status" -eq 1 ]
    [[ "$output" == *"none"* ]]
    start_fails linuxdisk "$files" type=xfs
    [ "$status" -eq 1 ]
    [[ "$output" == *"type=xfs: not a file system this backend makes (use ext2, ext3 or ext4)"* ]]
    start_fails linuxdisk "$files" label=a-label-longer-than-16
    [ "$status" -eq 1 ]
    [[ "$output" == *"too long"* ]]
    start_fails linuxdisk "$files" size=1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"size=1048576: smaller than"* ]]
    start_fails linuxdisk "$files" size=3140K
    [ "$status" -eq 1 ]
    [[ "$output" == *"mke2fs failed (exit status 1)"* ]]
    [ -z "$(ls -A "$TMPDIR")" ]
    start_fails linuxdisk "$files" colour=blue
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown parameter 'colour'"* ]]
}

@test "without mke2fs on PATH, the message says so" {
    make_tree
    run timeout 300 env PATH=/nonexistent "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" \
        linuxdisk "$files"
    [ "$status" -eq 1 ]
    [[ "$output" == *"mke2fs is not on \$PATH"*"install e2fsprogs"* ]]
}

@test "a restarted backend makes the same disk, byte for byte" {
    make_tree
    start_server linuxdisk "$files" type=ext4
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/before.img"
    local pid
    pid=$(backend_pid)
    kill -KILL "$pid"
    wait_until grep -q "backend restarted" "$log"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/after.img"
    [ "$(backend_pid)" != "$pid" ]
    cmp "$BATS_TEST_TMPDIR/before.img" "$BATS_TEST_TMPDIR/after.img"
    [ -z "$(ls -A "$TMPDIR")" ]
}
