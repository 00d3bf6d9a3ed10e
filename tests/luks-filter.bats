#!/usr/bin/env bats
# The luks filter: LUKS1 disks made by qemu-img, decrypted on read and
# encrypted on write, checked against qemu's own reading and writing.

load helpers

setup() {
    requires qemu-img qemu-io nbdinfo nbdcopy
    d=$BATS_TEST_TMPDIR
    printf 'PASS\n' > "$d/pw"
}

# make_luks PATH [OPTIONS]: a 10M LUKS1 disk with passphrase PASS (a
# short PBKDF2 time, so that the tests stay fast).  qemu-img times
# PBKDF2 with the thread's CPU clock, whose ticks are coarse: when a
# first round takes less than a tick it fails ("Unable to get accurate
# CPU usage"), so it is tried again.
make_luks() {
    local i
    for i in 1 2 3 4 5 6; do
        rm -f "$1"
        qemu-img create -q -f luks --object secret,id=sec0,data=PASS \
            -o key-secret=sec0,iter-time=10${2:+,$2} "$1" 10M && return 0
    done
    return 1
}

# The disks, made once for the file (qemu-img's timing of PBKDF2 costs
# seconds of CPU per disk); each test works on a copy.
declare -A variants=(
    [default]=""
    [xts128sha1]="cipher-alg=aes-128,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha1"
    [cbcessiv]="cipher-alg=aes-256,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256,hash-alg=sha512"
    [cbcplain]="cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=plain,hash-alg=md5"
)

setup_file() {
    local v
    command -v qemu-img >/dev/null || return 0
    for v in "${!variants[@]}"; do
        make_luks "$BATS_FILE_TMPDIR/$v.luks" "${variants[$v]}"
    done
}

# disk VARIANT: a fresh copy of that disk as $d/disk.luks.
disk() {
    cp "$BATS_FILE_TMPDIR/$1.luks" "$d/disk.luks"
}

# qemu_io PATH COMMAND: run a qemu-io command on the decrypted disk.
qemu_io() {
    qemu-io --object secret,id=sec0,data=PASS \
        --image-opts "driver=luks,key-secret=sec0,file.filename=$1" \
        -c "$2" >/dev/null
}

# qemu_read PATH OUT: the decrypted disk, as qemu reads it.
qemu_read() {
    qemu-img convert --object secret,id=sec0,data=PASS --image-opts \
        "driver=luks,key-secret=sec0,file.filename=$1" -O raw "$2"
}

# Written by qemu, read by us; written by us, read by qemu.
round_trip() {
    local disk=$d/disk.luks
    disk "$1"
    qemu_io "$disk" "write -P 0x5a 0 1M"
    qemu_io "$disk" "write -P 0xa7 3000000 777777"
    start_server --filter=luks file "$disk" passphrase=+"$d/pw"
    [ "$(nbdinfo --size "$uri")" -eq $((10 * 1024 * 1024)) ]
    nbdcopy "$uri" "$d/ours"
    qemu_read "$disk" "$d/theirs"
    cmp "$d/ours" "$d/theirs"
    # Now we write: random data over the middle, unaligned.
    random_file "$d/data" 2000000
    nbd_py "
h.set_strict_mode(0)
h.pwrite(open('$d/data', 'rb').read(), 1234567)
h.flush()
"
    qemu_read "$disk" "$d/after"
    cmp -n 1234567 "$d/after" "$d/theirs"
    cmp -i 0:1234567 -n 2000000 "$d/data" "$d/after"
    cmp -i 3234567:3234567 "$d/after" "$d/theirs"
}

@test "luks: aes-256-xts-plain64 with sha256 (qemu's default) both ways" {
    round_trip default
}

@test "luks: aes-128-xts-plain64 with sha1 both ways" {
    round_trip xts128sha1
}

@test "luks: aes-256-cbc-essiv:sha256 with sha512 both ways" {
    round_trip cbcessiv
}

@test "luks: aes-128-cbc-plain with md5 both ways" {
    round_trip cbcplain
}

@test "luks: a whole disk copied in through nbdcopy reads back through qemu" {
    disk default
    random_file "$d/data" 10M
    start_server --filter=luks file "$d/disk.luks" passphrase=+"$d/pw"
    nbdcopy "$d/data" "$uri"
    qemu_read "$d/disk.luks" "$d/back"
    cmp "$d/data" "$d/back"
}

@test "luks: small unaligned writes and zeroes in parallel stay correct" {
    disk default
    start_server --filter=luks file "$d/disk.luks" passphrase=+"$d/pw"
    nbd_py "
import random
h.set_strict_mode(0)
assert h.can_zero() and not h.can_trim()
rng = random.Random(7)
size = h.get_size()
# qemu-img leaves the payload unwritten: it decrypts to noise.
want = bytearray(h.pread(size, 0))
for i in range(200):
    off = rng.randrange(0, 65536)
    n = rng.randint(1, 3000)
    if i % 5 == 0:
        h.aio_zero(n, off)
        want[off:off + n] = bytes(n)
    else:
        b = bytes([rng.randrange(256) for _ in range(n)])
        h.aio_pwrite(b, off)
        want[off:off + n] = b
    # Overlapping writes in flight at once land in order only when
    # they are waited for; keep at most one per sector range in flight.
    while h.aio_in_flight() > 0:
        h.poll(-1)
assert h.pread(70000, 0) == bytes(want[:70000])
# Many non-overlapping unaligned writes in one sector's neighbourhood
# at once: each read-modify-write must keep the others' bytes.
for i in range(64):
    h.aio_pwrite(bytes([i + 1]) * 100, 200000 + i * 100)
while h.aio_in_flight() > 0:
    h.poll(-1)
for i in range(64):
    want[200000 + i * 100:200000 + i * 100 + 100] = bytes([i + 1]) * 100
assert h.pread(6400, 200000) == bytes(want[200000:206400])
h.zero(3 * 1024 * 1024 + 5, 1000001)
want[1000001:1000001 + 3 * 1024 * 1024 + 5] = bytes(3 * 1024 * 1024 + 5)
h.flush()
open('$d/want', 'wb').write(want)
"
    qemu_read "$d/disk.luks" "$d/back"
    cmp "$d/want" "$d/back"
}

@test "luks: a disk made by cryptsetup (LUKS1) is read" {
    requires cryptsetup
    head -c 20M /dev/zero > "$d/disk.img"
    printf PASS | cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 \
        --key-file - "$d/disk.img" || skip "cryptsetup cannot format here"
    start_server --filter=luks file "$d/disk.img" passphrase=+"$d/pw"
    size=$(nbdinfo --size "$uri")
    [ "$size" -gt 0 ] && [ $((size % 512)) -eq 0 ]
    random_file "$d/data" "$size"
    nbdcopy "$d/data" "$uri"
    nbdcopy "$uri" "$d/back"
    cmp "$d/data" "$d/back"
}

@test "luks: a LUKS2 disk is refused, saying so" {
    requires cryptsetup
    head -c 20M /dev/zero > "$d/disk.img"
    printf PASS | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 \
        --pbkdf-force-iterations 1000 --key-file - "$d/disk.img" ||
        skip "cryptsetup cannot format here"
    start_server --filter=luks file "$d/disk.img" passphrase=+"$d/pw"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "LUKS version 2 header, but this filter only supports LUKSv1" "$log"
}

@test "luks: the passphrase from a file, literal, and from a descriptor" {
    disk default
    qemu_io "$d/disk.luks" "write -P 0x33 0 64k"
    qemu_read "$d/disk.luks" "$d/want"
    start_server --filter=luks file "$d/disk.luks" passphrase=+"$d/pw"
    nbdcopy "$uri" "$d/a"
    stop_server
    start_server --filter=luks file "$d/disk.luks" passphrase=PASS
    nbdcopy "$uri" "$d/b"
    stop_server
    "$NBDKIT" -U - --filter=luks file "$d/disk.luks" passphrase=-7 \
        --run 'nbdcopy "$uri" '"$d/c" 7<"$d/pw"
    cmp "$d/a" "$d/want"
    cmp "$d/b" "$d/want"
    cmp "$d/c" "$d/want"
}

@test "luks: a wrong passphrase is refused at open" {
    disk default
    printf 'WRONG\n' > "$d/bad"
    start_server --filter=luks file "$d/disk.luks" passphrase=+"$d/bad"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "LUKS passphrase is not correct, no key slot could be unlocked" "$log"
    # The server is still up for the next client.
    kill -0 "$server_pid"
}

@test "luks: a corrupt header is refused at open, never served" {
    disk default
    cp "$d/disk.luks" "$d/orig.luks"
    # Key slot 0's stripes (offset 208 + 44): far too many.
    printf '\xff\xff\xff\xff' | dd of="$d/disk.luks" bs=1 seek=252 \
        conv=notrunc status=none
    start_server --filter=luks file "$d/disk.luks" passphrase=+"$d/pw"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "the LUKS header is damaged: key slot 0" "$log"
    stop_server
    # The payload offset (at 104) beyond the end of the disk.
    cp "$d/orig.luks" "$d/disk.luks"
    printf '\x7f\xff\xff\xff' | dd of="$d/disk.luks" bs=1 seek=104 \
        conv=notrunc status=none
    start_server --filter=luks file "$d/disk.luks" passphrase=+"$d/pw"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "payload offset .* is beyond the end of the disk" "$log"
    stop_server
    # The master key digest: no slot opens.
    cp "$d/orig.luks" "$d/disk.luks"
    printf 'XXXX' | dd of="$d/disk.luks" bs=1 seek=112 conv=notrunc status=none
    start_server --filter=luks file "$d/disk.luks" passphrase=+"$d/pw"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "passphrase is not correct" "$log"
    stop_server
    # Not LUKS at all, and a disk too short for a header.
    start_server --filter=luks memory 1M passphrase=PASS
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "does not contain a LUKS header" "$log"
    stop_server
    head -c 100 "$d/orig.luks" > "$d/short"
    start_server --filter=luks file "$d/short" passphrase=PASS
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "LUKS header is truncated" "$log"
}

@test "luks: an unsupported cipher or mode is refused naming it" {
    disk default
    # The cipher name (at 8) and the mode (at 40), as other tools write
    # them.
    printf 'twofish\0' | dd of="$d/disk.luks" bs=1 seek=8 conv=notrunc status=none
    start_server --filter=luks file "$d/disk.luks" passphrase=PASS
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q 'LUKS cipher "twofish" is not supported' "$log"
    stop_server
    disk default
    printf 'ctr-plain64\0' | dd of="$d/disk.luks" bs=1 seek=40 conv=notrunc status=none
    start_server --filter=luks file "$d/disk.luks" passphrase=PASS
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q 'LUKS cipher mode "ctr-plain64" is not supported' "$log"
}

@test "luks: bad parameters are refused naming the value" {
    run "$NBDKIT" -U "$d/s" --filter=luks memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"needs the passphrase parameter"* ]]
    run "$NBDKIT" -U "$d/s" --filter=luks memory 1M passphrase=+"$d/missing"
    [ "$status" -eq 1 ]
    [[ "$output" == *"passphrase=+$d/missing"* ]]
    run "$NBDKIT" -U "$d/s" --filter=luks memory 1M passphrase=-
    [ "$status" -eq 1 ]
    [[ "$output" == *"stdin is not a tty"* ]]
    run "$NBDKIT" -U "$d/s" --filter=luks memory 1M passphrase=-x
    [ "$status" -eq 1 ]
    [[ "$output" == *"passphrase=-x: not a file descriptor number"* ]]
    run "$NBDKIT" -U "$d/s" --filter=luks memory 1M passphrase=-99
    [ "$status" -eq 1 ]
    [[ "$output" == *"passphrase=-99: the server did not inherit"* ]]
    run "$NBDKIT" -U "$d/s" --filter=luks memory 1M passphrase=-1
    [ "$status" -eq 1 ]
    [[ "$output" == *"passphrase=-1: descriptors 0, 1 and 2"* ]]
}

@test "luks: --help shows the filter's parameter" {
    run "$NBDKIT" --filter=luks memory --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"passphrase=SECRET"* ]]
}
