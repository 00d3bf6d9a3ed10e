# The eval backend: the methods of an sh script given as shell snippets
# on the command line, as real clients see them.

load helpers

# The nbdkit-eval-plugin(1) example: a file served with dd.  The disk is
# $BATS_TEST_TMPDIR/disk, given as file= to the config snippet.
file_methods=(
    config='ln -sf "$(realpath "$3")" "$tmpdir/file"'
    get_size='stat -Lc %s "$tmpdir/file"'
    pread='dd if="$tmpdir/file" skip=$4 count=$3 bs=64K iflag=count_bytes,skip_bytes status=none'
    pwrite='dd of="$tmpdir/file" seek=$4 bs=64K conv=notrunc oflag=seek_bytes status=none'
)

@test "get_size and pread snippets serve a read-only disk of zeroes" {
    requires nbdsh
    start_server eval get_size='echo 64M' \
        pread='dd if=/dev/zero count=$3 iflag=count_bytes status=none'
    nbd_py '
assert h.get_size() == 64 << 20
assert h.is_read_only()
assert h.pread(1 << 20, 5 << 20) == bytes(1 << 20)
'
}

@test "snippets serving a file read back what nbdcopy wrote, and the file has it" {
    requires nbdcopy dd realpath
    random_file "$BATS_TEST_TMPDIR/in" 20M
    truncate -s 20M "$BATS_TEST_TMPDIR/disk"
    start_server eval "${file_methods[@]}" file="$BATS_TEST_TMPDIR/disk"
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/disk")" ]
}

@test "a user parameter may come before the config snippet that takes it" {
    requires nbdsh dd realpath
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    start_server eval file="$BATS_TEST_TMPDIR/disk" "${file_methods[@]}"
    nbd_py "
assert not h.is_read_only()
assert h.pread(4096, 8192) == open('$BATS_TEST_TMPDIR/disk', 'rb').read()[8192:12288]
"
}

@test "without a pwrite snippet a write fails with EPERM" {
    requires nbdsh nbdinfo
    start_server eval get_size='echo 1M' pread='head -c $3 /dev/zero'
    run nbdinfo --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"is_read_only": true'
    nbd_py '
h.set_strict_mode(0)
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("a write on a read-only export succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
}

@test "can_write=exit 3 makes an export with a pwrite snippet read-only" {
    requires nbdsh
    start_server eval get_size='echo 1M' pread='head -c $3 /dev/zero' \
        pwrite='cat >/dev/null' can_write='exit 3'
    nbd_py 'assert h.is_read_only()'
}

@test "trim and zero snippets imply can_trim and can_zero, and get the flags" {
    requires nbdsh
    log2=$BATS_TEST_TMPDIR/calls
    start_server eval get_size='echo 1M' pread='head -c $3 /dev/zero' \
        pwrite='cat >/dev/null' \
        trim="echo trim \$4 \$3 \$5 >> $log2" \
        zero="echo zero \$4 \$3 \$5 >> $log2" \
        flush="echo flush \$# >> $log2" can_fua='echo native'
    nbd_py '
assert h.can_trim() and h.can_zero() and h.can_flush() and h.can_fua()
h.trim(4096, 0)
h.zero(4096, 8192, nbd.CMD_FLAG_FUA)
h.zero(4096, 16384, nbd.CMD_FLAG_NO_HOLE)
h.flush()
'
    cat "$log2"
    [ "$(cat "$log2")" = "trim 0 4096
zero 8192 4096 fua,may_trim
zero 16384 4096
flush 2" ]
}

@test "an ENOSPC from a pwrite snippet reaches the client, its message the log" {
    requires nbdsh
    start_server eval get_size='echo 1M' pread='head -c $3 /dev/zero' \
        pwrite='cat >/dev/null; echo "ENOSPC Out of space" >&2; exit 1'
    nbd_py '
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("a failing write succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
'
    wait_until grep -q 'pwrite: Out of space' "$log"
}

@test "missing= stands in for every method not given" {
    requires nbdinfo
    start_server eval missing='
case "$1" in
    get_size) echo 3M ;;
    pread) head -c $3 /dev/zero ;;
    *) exit 2 ;;
esac'
    [ "$(nbdinfo --size "$uri")" = 3145728 ]
}

@test "an unknown parameter without config= is an error naming it" {
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/sock" eval get_size='echo 1M' \
        pread='head -c $3 /dev/zero' colour=blue
    [ "$status" -ne 0 ]
    echo "$output"
    echo "$output" | grep -q "unknown parameter 'colour=blue'"
}

@test "a method given twice is an error" {
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/sock" eval get_size='echo 1M' \
        get_size='echo 2M' pread='head -c $3 /dev/zero'
    [ "$status" -ne 0 ]
    echo "$output"
    echo "$output" | grep -q 'get_size= is given twice'
}

@test "a failing config_complete snippet stops the server with its message" {
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/sock" eval get_size='echo 1M' \
        pread='head -c $3 /dev/zero' \
        config_complete='echo "EINVAL you forgot the disk" >&2; exit 1'
    [ "$status" -ne 0 ]
    echo "$output"
    echo "$output" | grep -q 'config_complete: you forgot the disk'
}

@test "nbdkit eval --help lists the methods" {
    run "$NBDKIT" eval --help
    [ "$status" -eq 0 ]
    echo "$output"
    echo "$output" | grep -q "get_size='CODE'"
    echo "$output" | grep -q "pread='CODE'"
    echo "$output" | grep -q "missing='CODE'"
    echo "$output" | grep -q 'list_exports'
}
