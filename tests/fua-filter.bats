#!/usr/bin/env bats
# The fua filter (nbdkit-fua-filter(1)): what the export offers for FUA
# and flush, and what reaches the layer below (seen with the log filter
# placed under it).

load helpers

# can_fua / can_flush of the export, as nbdinfo reports them.
can() {
    nbdinfo --json "$uri" | /usr/bin/python3 -c "import json, sys; print(json.load(sys.stdin)['exports'][0]['$1'])"
}

below() {
    cat "$BATS_TEST_TMPDIR/log"
}

@test "a bad fuamode= is refused with the list of modes" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=fua memory 1M fuamode=sometimes
    [ "$status" -eq 1 ]
    [[ "$output" == *"fuamode=sometimes"*"none, emulate, native, force, pass or discard"* ]]
}

@test "by default (fuamode=none) the export offers no FUA, but flush" {
    requires nbdinfo
    start_server --filter=fua memory 1M
    [ "$(can can_fua)" = False ]
    [ "$(can can_flush)" = True ]
    stop_server
    start_server --filter=fua memory 1M fuamode=none
    [ "$(can can_fua)" = False ]
}

@test "with fuamode=none a FUA write is refused and a flush goes down" {
    requires nbdsh
    start_server --filter=fua --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
h.set_strict_mode(0)
try:
    h.pwrite(b"x" * 512, 0, nbd.CMD_FLAG_FUA)
    assert False, "a FUA write was accepted"
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e
h.pwrite(b"y" * 512, 0)
h.flush()
assert h.pread(512, 0) == b"y" * 512
'
    stop_server
    below | grep -q 'Write id=1 offset=0x0 count=0x200 fua=0'
    below | grep -q 'Flush id=2'
}

@test "with fuamode=emulate FUA writes succeed, done as a write and a flush below" {
    requires nbdsh nbdinfo
    start_server --filter=fua --filter=log memory 1M fuamode=emulate \
        logfile="$BATS_TEST_TMPDIR/log"
    [ "$(can can_fua)" = True ]
    nbd_py '
data = os.urandom(65536)
h.pwrite(data, 4096, nbd.CMD_FLAG_FUA)
h.zero(4096, 131072, nbd.CMD_FLAG_FUA)
h.trim(4096, 262144, nbd.CMD_FLAG_FUA)
h.pwrite(b"n" * 512, 0)
assert h.pread(65536, 4096) == data
assert h.pread(4096, 131072) == bytes(4096)
assert h.pread(512, 0) == b"n" * 512
'
    stop_server
    below
    # Each FUA request arrives below without FUA, followed by a flush.
    [ "$(below | grep -c ' fua=1')" -eq 0 ]
    below | grep -A2 'Write id=1 offset=0x1000 count=0x10000 fua=0' | grep -q 'Flush id=2'
    below | grep -A2 'Zero id=3 offset=0x20000 count=0x1000 trim=. fua=0' | grep -q 'Flush id=4'
    below | grep -A2 'Trim id=5 offset=0x40000 count=0x1000 fua=0' | grep -q 'Flush id=6'
    # A write without FUA gets no flush.
    [ "$(below | grep -c ' Flush id=')" -eq 3 ]
}

@test "fuamode=emulate over a backend that cannot flush fails the open" {
    requires nbdinfo
    start_server --filter=fua eval fuamode=emulate get_size='echo 1048576' \
        pread='dd if=/dev/zero count=$3 iflag=count_bytes status=none' \
        pwrite='cat >/dev/null'
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "cannot flush" "$log"
    kill -0 "$server_pid"
}

@test "with fuamode=native the FUA flag is passed down" {
    requires nbdsh
    start_server --filter=fua --filter=log memory 1M fuamode=native \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
h.pwrite(b"f" * 512, 0, nbd.CMD_FLAG_FUA)
h.pwrite(b"g" * 512, 512)
assert h.pread(1024, 0) == b"f" * 512 + b"g" * 512
'
    stop_server
    below | grep -q 'Write id=1 offset=0x0 count=0x200 fua=1'
    below | grep -q 'Write id=2 offset=0x200 count=0x200 fua=0'
    below | not grep -q 'Flush'
}

@test "with fuamode=force every write has FUA below and flush does nothing" {
    requires nbdsh
    start_server --filter=fua --filter=log memory 1M fuamode=force \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
h.pwrite(b"f" * 512, 0)
h.zero(512, 4096)
h.flush()
assert h.pread(512, 0) == b"f" * 512
'
    stop_server
    below | grep -q 'Write id=1 offset=0x0 count=0x200 fua=1'
    below | grep -q 'Zero id=2 offset=0x1000 count=0x200 trim=.* fua=1'
    below | not grep -q 'Flush'
}

@test "with fuamode=discard FUA is dropped and flush does nothing" {
    requires nbdsh nbdinfo
    start_server --filter=fua --filter=log memory 1M fuamode=discard \
        logfile="$BATS_TEST_TMPDIR/log"
    [ "$(can can_fua)" = True ]
    [ "$(can can_flush)" = True ]
    nbd_py '
h.pwrite(b"d" * 512, 0, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(512, 0) == b"d" * 512
'
    stop_server
    below | grep -q 'Write id=1 offset=0x0 count=0x200 fua=0'
    below | not grep -q 'Flush'
}

@test "with fuamode=pass FUA and flush go down unchanged" {
    requires nbdsh
    start_server --filter=fua --filter=log memory 1M fuamode=pass \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
h.pwrite(b"p" * 512, 0, nbd.CMD_FLAG_FUA)
h.flush()
'
    stop_server
    below | grep -q 'Write id=1 offset=0x0 count=0x200 fua=1'
    below | grep -q 'Flush id=2'
}

@test "data passes through the fua filter byte for byte in every mode" {
    requires nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 3M
    local m
    for m in none emulate native force pass discard; do
        start_server --filter=fua memory 3M fuamode=$m
        nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
        nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
        cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
        stop_server
    done
}

@test "a read-only export offers no FUA whatever the mode" {
    requires nbdinfo
    start_server -r --filter=fua memory 1M fuamode=native
    [ "$(can can_fua)" = False ]
}
