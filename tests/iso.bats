# The iso backend: a read-only ISO 9660 image made from directories by
# xorriso (or genisoimage, mkisofs).  Checked on a copy made with
# nbdcopy: files extracted with xorriso -osirrox and isoinfo -x and
# compared by checksum.

load helpers

setup() {
    requires nbdcopy nbdinfo xorriso
    export TMPDIR=$BATS_TEST_TMPDIR/tmp
    mkdir -p "$TMPDIR"
}

start_fails() {
    run timeout 300 "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" "$@"
}

make_tree() {
    files=$BATS_TEST_TMPDIR/files
    mkdir -p "$files/sub/deeper"
    random_file "$files/small.bin" 1000
    random_file "$files/big.bin" $((3 * 1024 * 1024 + 123))
    echo "hello" > "$files/a file with a long name.txt"
    random_file "$files/sub/deeper/nested.bin" 20000
}

copy_iso() {
    iso=$BATS_TEST_TMPDIR/copy.iso
    nbdcopy "$uri" "$iso"
}

# extracted PATH-IN-ISO: the file, extracted with xorriso, to $out.
extracted() {
    out=$BATS_TEST_TMPDIR/out
    rm -f "$out"
    xorriso -osirrox on -indev "$iso" -extract "$1" "$out" 2>/dev/null
}

@test "the files of the directory are in the image, byte for byte (xorriso)" {
    make_tree
    start_server iso "$files"
    copy_iso
    local f
    for f in small.bin big.bin "a file with a long name.txt" \
             sub/deeper/nested.bin; do
        extracted "/$f"
        [ "$(sha "$out")" = "$(sha "$files/$f")" ] || {
            echo "$f differs" >&2
            return 1
        }
    done
}

@test "isoinfo reads the files back too" {
    requires isoinfo
    make_tree
    start_server iso "$files" params=-JrT
    copy_iso
    isoinfo -i "$iso" -R -x /big.bin > "$BATS_TEST_TMPDIR/big"
    [ "$(sha "$BATS_TEST_TMPDIR/big")" = "$(sha "$files/big.bin")" ]
    isoinfo -i "$iso" -R -f | grep -q '^/sub/deeper/nested.bin$'
}

@test "several dir= are merged into the root" {
    make_tree
    other=$BATS_TEST_TMPDIR/other
    mkdir -p "$other"
    random_file "$other/from-other.bin" 5000
    start_server iso dir="$files" dir="$other"
    copy_iso
    extracted /from-other.bin
    [ "$(sha "$out")" = "$(sha "$other/from-other.bin")" ]
    extracted /small.bin
    [ "$(sha "$out")" = "$(sha "$files/small.bin")" ]
}

@test "params= reaches the program: the volume id" {
    make_tree
    start_server iso "$files" params='-V "MY DISK"'
    copy_iso
    xorriso -indev "$iso" -pvd_info 2>/dev/null | grep -q "Volume Id    : MY DISK"
}

@test "prog=genisoimage makes the image instead" {
    requires genisoimage
    make_tree
    start_server iso "$files" prog=genisoimage params=-r
    copy_iso
    extracted /big.bin
    [ "$(sha "$out")" = "$(sha "$files/big.bin")" ]
}

@test "the image is read-only, and removed from TMPDIR at once" {
    requires nbdsh
    make_tree
    start_server iso "$files"
    nbdinfo --json "$uri" | grep -q '"is_read_only": true'
    nbd_py '
try:
    h.pwrite(b"x" * 512, 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errno == "EPERM", e'
    [ -z "$(ls -A "$TMPDIR")" ]
}

@test "a failing program stops the server with its message and status 1" {
    make_tree
    start_fails iso "$files" params=--no-such-option
    [ "$status" -eq 1 ]
    [[ "$output" == *"xorriso failed (exit status "*"--no-such-option"* ]]
    [ -z "$(ls -A "$TMPDIR")" ]
    start_fails iso "$files" prog=false
    [ "$status" -eq 1 ]
    [[ "$output" == *"false failed (exit status 1)"* ]]
    start_fails iso "$files" params='-o /dev/null'
    [ "$status" -eq 1 ]
    [[ "$output" == *"wrote no image on its standard output"* ]]
}

@test "without xorriso, genisoimage or mkisofs on PATH, the message says so" {
    make_tree
    run timeout 300 env PATH=/nonexistent "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" \
        iso "$files"
    [ "$status" -eq 1 ]
    [[ "$output" == *"none of xorriso, genisoimage and mkisofs is on \$PATH"* ]]
}

@test "bad parameters are refused with a message and status 1" {
    make_tree
    start_fails iso
    [ "$status" -eq 1 ]
    [[ "$output" == *"a directory is required"* ]]
    start_fails iso "$BATS_TEST_TMPDIR/none"
    [ "$status" -eq 1 ]
    [[ "$output" == *"none"* ]]
    start_fails iso "$files/small.bin"
    [ "$status" -eq 1 ]
    [[ "$output" == *"small.bin: not a directory"* ]]
    start_fails iso "$files" prog=
    [ "$status" -eq 1 ]
    [[ "$output" == *"prog=: empty"* ]]
    start_fails iso "$files" colour=blue
    [ "$status" -eq 1 ]
    [[ "$output" == *"unknown parameter 'colour'"* ]]
}

@test "a restarted backend makes the same image, byte for byte (xorriso)" {
    make_tree
    start_server iso "$files" params=-JrT
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/before.iso"
    local pid
    pid=$(backend_pid)
    kill -KILL "$pid"
    wait_until grep -q "backend restarted" "$log"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/after.iso"
    [ "$(backend_pid)" != "$pid" ]
    cmp "$BATS_TEST_TMPDIR/before.iso" "$BATS_TEST_TMPDIR/after.iso"
    [ -z "$(ls -A "$TMPDIR")" ]
}
