# The partitioning backend: MBR and GPT disks made from files, checked
# with sfdisk, sgdisk and qemu-img, and each partition copied back out
# through --filter=partition and compared with its file.

load helpers

# Files of odd sizes (not whole sectors): $d/p1 .. $d/pN.
make_parts() {
    d=$BATS_TEST_TMPDIR
    local i
    for i in $(seq 1 "$1"); do
        random_file "$d/p$i" $((i * 100 * 1024 + i * 7))
    done
}

# check_partition N FILE [BACKEND ARGS]: partition N of the disk, read
# through the partition filter, is FILE followed by zeroes up to a
# whole sector.
check_partition() {
    local n=$1 f=$2 size out=$BATS_TEST_TMPDIR/part.out
    shift 2
    "$NBDKIT" -U - --filter=partition partitioning "$@" partition="$n" \
        --run 'nbdcopy "$uri" '"$out"
    size=$(stat -c %s "$f")
    [ "$(stat -c %s "$out")" -eq $(( (size + 511) / 512 * 512 )) ]
    cmp -n "$size" "$out" "$f"
    [ "$(tail -c +$((size + 1)) "$out" | tr -d '\0' | wc -c)" -eq 0 ]
}

@test "partitioning: two files make an MBR disk that sfdisk reads" {
    requires nbdcopy sfdisk
    make_parts 2
    start_server partitioning "$d/p1" "$d/p2"
    nbdcopy "$uri" "$d/disk"
    sfdisk --dump "$d/disk" > "$d/dump"
    cat "$d/dump"
    grep -q '^label: dos' "$d/dump"
    grep -q 'disk1 : start= *2048, size= *201, type=83, bootable' "$d/dump"
    grep -q 'disk2 : start= *4096, size= *401, type=83$' "$d/dump"
    sfdisk --verify "$d/disk"
    # The partitions hold the files.
    dd if="$d/disk" bs=512 skip=2048 count=201 status=none | cmp -n "$(stat -c %s "$d/p1")" - "$d/p1"
    dd if="$d/disk" bs=512 skip=4096 count=401 status=none | cmp -n "$(stat -c %s "$d/p2")" - "$d/p2"
}

@test "partitioning: each MBR partition read back through the partition filter is its file" {
    requires nbdcopy
    make_parts 3
    for i in 1 2 3; do
        check_partition "$i" "$d/p$i" "$d/p1" "$d/p2" "$d/p3"
    done
}

@test "partitioning: more than 4 files in an MBR make logical partitions 5 and up" {
    requires nbdcopy sfdisk
    make_parts 6
    args=(partition-type=mbr "$d/p1" "$d/p2" "$d/p3" "$d/p4" "$d/p5" "$d/p6")
    start_server partitioning "${args[@]}"
    nbdcopy "$uri" "$d/disk"
    sfdisk -J "$d/disk" > "$d/json"
    /usr/bin/python3 - "$d/json" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))["partitiontable"]
assert t["label"] == "dos", t
p = t["partitions"]
types = [x["type"] for x in p]
assert types == ["83", "83", "83", "f", "83", "83", "83"], types
assert [x["node"][-1] for x in p] == list("1234567"), p
# The extended partition holds every logical one.
ext = p[3]
for x in p[4:]:
    assert ext["start"] < x["start"] and x["start"] + x["size"] <= ext["start"] + ext["size"], (ext, x)
EOF
    sfdisk --verify "$d/disk"
    stop_server
    check_partition 1 "$d/p1" "${args[@]}"
    check_partition 3 "$d/p3" "${args[@]}"
    check_partition 5 "$d/p4" "${args[@]}"
    check_partition 7 "$d/p6" "${args[@]}"
}

@test "partitioning: a GPT disk passes sgdisk's verify, with names and type GUIDs" {
    requires nbdcopy sfdisk
    make_parts 3
    swap=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F
    start_server partitioning partition-type=gpt "$d/p1" type-guid=$swap \
        "$d/p2" type-guid=default "$d/p3"
    nbdcopy "$uri" "$d/disk"
    sfdisk --dump "$d/disk" > "$d/dump"
    cat "$d/dump"
    grep -q '^label: gpt' "$d/dump"
    grep -q 'disk1 : start= *2048, size= *201, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=.*, name="p1", attrs="LegacyBIOSBootable"' "$d/dump"
    grep -q "disk2 : start= *4096, size= *401, type=$swap, uuid=.*, name=\"p2\"\$" "$d/dump"
    grep -q 'disk3 : start= *6144, size= *601, type=0FC63DAF' "$d/dump"
    sfdisk --verify "$d/disk"
    if command -v sgdisk >/dev/null; then
        # sgdisk checks both headers' and the entries' CRC-32.
        run sgdisk -v "$d/disk"
        echo "$output"
        [ "$status" -eq 0 ]
        [[ "$output" == *"No problems found"* ]]
        [[ "$output" != *"CRC"* ]]
    fi
    stop_server
    for i in 1 2 3; do
        check_partition "$i" "$d/p$i" partition-type=gpt "$d/p1" "$d/p2" "$d/p3"
    done
}

@test "partitioning: sgdisk notices one changed byte of the entries: the CRC is real" {
    requires nbdcopy sgdisk
    make_parts 1
    start_server partitioning partition-type=gpt "$d/p1"
    nbdcopy "$uri" "$d/disk"
    # Change a byte of the first partition entry's name: the entries'
    # CRC in the primary header no longer matches.
    printf 'X' | dd of="$d/disk" bs=1 seek=$((1024 + 56)) conv=notrunc status=none
    run sgdisk -v "$d/disk"
    echo "$output"
    [[ "$output" == *"The CRC for the main partition table is invalid"* ]]
    [[ "$output" == *"Main header: OK"* ]]
    [[ "$output" == *"Backup partition table: OK"* ]]
}

@test "partitioning: more than 4 files default to GPT" {
    requires nbdcopy sfdisk
    make_parts 5
    start_server partitioning "$d/p1" "$d/p2" "$d/p3" "$d/p4" "$d/p5"
    nbdcopy "$uri" "$d/disk"
    [ "$(sfdisk -J "$d/disk" | /usr/bin/python3 -c 'import json,sys; t=json.load(sys.stdin)["partitiontable"]; print(t["label"], len(t["partitions"]))')" = "gpt 5" ]
}

@test "partitioning: qemu-img sees a raw disk of the right size and the same bytes" {
    requires qemu-img nbdcopy
    make_parts 2
    start_server partitioning alignment=4k "$d/p1" mbr-id=0x82 "$d/p2"
    qemu-img info --output=json "$uri" > "$d/info"
    size=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtual-size"])' "$d/info")
    [ "$size" -eq "$(nbdinfo --size "$uri")" ]
    qemu-img convert -f raw -O raw "$uri" "$d/q.img"
    nbdcopy "$uri" "$d/n.img"
    cmp "$d/q.img" "$d/n.img"
    sfdisk --dump "$d/n.img" | grep -q 'n.img2 : start= *216, size= *401, type=82'
    sfdisk --dump "$d/n.img" | grep -q 'n.img1 : start= *8, size= *201, type=83'
}

@test "partitioning: writes go to the files, the table and padding are read-only" {
    requires nbdsh
    make_parts 2
    cp "$d/p2" "$d/p2.orig"
    start_server partitioning "$d/p1" "$d/p2"
    nbd_py '
import errno, os
d = os.environ["BATS_TEST_TMPDIR"]
mbr = h.pread(512, 0)
h.pwrite(mbr, 0)                      # the same bytes: accepted
h.pwrite(bytes(512), 512)             # zeroes in padding: accepted
for off, buf in ((0, b"\x00" * 512), (1024, b"x"), (2048 * 512 + 102407, b"x")):
    try:
        h.pwrite(buf, off)
        assert False, off
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
# A write of partition 2 lands in p2.
data = os.urandom(1000)
h.pwrite(data, 4096 * 512 + 5000)
h.flush()
assert open(d + "/p2", "rb").read()[5000:6000] == data
# A write that runs from the partition into its padding is refused
# whole: the file is unchanged.
before = open(d + "/p1", "rb").read()
try:
    h.pwrite(b"y" * 600, 2048 * 512 + len(before) - 100)
    assert False
except nbd.Error as e:
    assert e.errnum == errno.EIO
assert open(d + "/p1", "rb").read() == before
assert h.can_flush() and h.can_multi_conn() and not h.can_trim()
'
    wait_until grep -q "the partition table is read-only" "$log"
    wait_until grep -q "padding" "$log"
}

@test "partitioning: with -r the disk is read-only" {
    requires nbdsh
    make_parts 1
    chmod a-w "$d/p1"
    start_server -r partitioning "$d/p1"
    nbd_py '
import errno
assert h.is_read_only()
try:
    h.pwrite(b"x", 2048 * 512)
    assert False
except nbd.Error as e:
    assert e.errnum == errno.EPERM
'
}

@test "partitioning: bad parameters are refused with status 1" {
    make_parts 1
    : > "$d/empty"
    run "$NBDKIT" partitioning
    [ "$status" -eq 1 ]
    [[ "$output" == *"no files given"* ]]
    run "$NBDKIT" partitioning "$d/empty"
    [ "$status" -eq 1 ]
    [[ "$output" == *"zero length partitions are not allowed"* ]]
    run "$NBDKIT" partitioning "$d/missing"
    [ "$status" -eq 1 ]
    [[ "$output" == *"missing: No such file or directory"* ]]
    run "$NBDKIT" partitioning partition-type=apm "$d/p1"
    [ "$status" -eq 1 ]
    [[ "$output" == *"partition-type=apm: unknown partition table type (use mbr or gpt)"* ]]
    run "$NBDKIT" partitioning alignment=1000 "$d/p1"
    [ "$status" -eq 1 ]
    [[ "$output" == *"alignment=1000: the alignment must be a power of 2 from 512 to 1M"* ]]
    run "$NBDKIT" partitioning alignment=2M "$d/p1"
    [ "$status" -eq 1 ]
    [[ "$output" == *"alignment=2M:"* ]]
    run "$NBDKIT" partitioning mbr-id=0x100 "$d/p1"
    [ "$status" -eq 1 ]
    [[ "$output" == *"mbr-id=0x100: the MBR partition type must be from 0x01 to 0xff"* ]]
    run "$NBDKIT" partitioning mbr-id=xyz "$d/p1"
    [ "$status" -eq 1 ]
    [[ "$output" == *"mbr-id=xyz"* ]]
    run "$NBDKIT" partitioning type-guid=foo "$d/p1"
    [ "$status" -eq 1 ]
    [[ "$output" == *"type-guid=foo: not a GUID"* ]]
    run "$NBDKIT" partitioning colour=red "$d/p1"
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown parameter 'colour'"* ]]
}
