# Bulk data through real clients: every byte checked with a checksum.

load helpers

copy_in_and_out() {
    local conns=$1
    random_file "$BATS_TEST_TMPDIR/in" 100M
    nbdcopy --connections="$conns" "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy --connections="$conns" "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
}

@test "nbdcopy of 100 MiB in and out of the memory backend, one connection" {
    requires nbdcopy
    start_server memory 100M
    copy_in_and_out 1
}

@test "nbdcopy of 100 MiB in and out of the memory backend, four connections" {
    requires nbdcopy
    start_server memory 100M
    copy_in_and_out 4
}

@test "nbdcopy of 100 MiB in and out of the file backend, one connection" {
    requires nbdcopy
    truncate -s 100M "$BATS_TEST_TMPDIR/disk"
    start_server file "$BATS_TEST_TMPDIR/disk"
    copy_in_and_out 1
    # The file holds exactly what was copied in.
    [ "$(sha "$BATS_TEST_TMPDIR/disk")" = "$(sha "$BATS_TEST_TMPDIR/in")" ]
}

@test "nbdcopy of 100 MiB in and out of the file backend, four connections" {
    requires nbdcopy
    truncate -s 100M "$BATS_TEST_TMPDIR/disk"
    start_server file "$BATS_TEST_TMPDIR/disk"
    copy_in_and_out 4
}

@test "qemu-img converts a disk in and out and compares it equal" {
    requires qemu-img
    random_file "$BATS_TEST_TMPDIR/in" 20M
    start_server memory 20M
    qemu-img convert -n -f raw -O raw "$BATS_TEST_TMPDIR/in" "$uri"
    qemu-img compare -f raw -F raw "$BATS_TEST_TMPDIR/in" "$uri"
    qemu-img convert -f raw -O raw "$uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
}

@test "qemu-img compare notices a difference" {
    requires qemu-img
    random_file "$BATS_TEST_TMPDIR/in" 4M
    start_server memory 4M
    qemu-img convert -n -f raw -O raw "$BATS_TEST_TMPDIR/in" "$uri"
    printf 'X' | dd of="$BATS_TEST_TMPDIR/in" bs=1 seek=1000000 conv=notrunc status=none
    run qemu-img compare -f raw -F raw "$BATS_TEST_TMPDIR/in" "$uri"
    [ "$status" -eq 1 ]
}

@test "qemu-io writes and reads back patterns" {
    requires qemu-io
    start_server memory 16M
    qemu-io -f raw -c 'write -P 0xa5 0 1M' -c 'write -P 0x5a 4M 64k' "$uri"
    run qemu-io -f raw -c 'read -P 0xa5 0 1M' -c 'read -P 0x5a 4M 64k' \
        -c 'read -P 0 2M 1M' "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | not grep -qi 'pattern verification failed'
}
