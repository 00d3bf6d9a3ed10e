#!/usr/bin/env bats
# The scan filter (nbdkit-scan-filter(1)): cache requests (or reads)
# across the disk in the background, seen through the log filter below
# it.  Waits are for the log to show an event, bounded.

load helpers

# The steps the log shows sent below, as offsets, one a line.
logged() {
    grep " $1 id=" "$BATS_TEST_TMPDIR/log" | sed 's/.* offset=\(0x[0-9a-f]*\) .*/\1/' |
        sort -u
}

@test "scan: cache requests of scan-size cover the disk, the client reads right" {
    requires nbdsh
    head -c 8M /dev/urandom > "$BATS_TEST_TMPDIR/disk"
    start_server --filter=scan --filter=log file "$BATS_TEST_TMPDIR/disk" \
        scan-size=1M logfile="$BATS_TEST_TMPDIR/log"
    nbd_py "
import hashlib, time
want = open('$BATS_TEST_TMPDIR/disk', 'rb').read()
got = b''.join(h.pread(1 << 20, off) for off in range(0, 8 << 20, 1 << 20))
assert hashlib.sha256(got).digest() == hashlib.sha256(want).digest()
# Wait (bounded) for the scan to reach the last step.
for i in range(300):
    if ' Cache id=' in open('$BATS_TEST_TMPDIR/log').read() and \
       'offset=0x700000 ' in ''.join(l for l in open('$BATS_TEST_TMPDIR/log') if ' Cache ' in l):
        break
    time.sleep(0.1)
"
    stop_server
    # Every step is a cache request of 1M (the reads may skip some).
    [ "$(logged Cache | tail -n 1)" = 0x700000 ]
    grep ' Cache id=' "$BATS_TEST_TMPDIR/log" | not grep -v 'count=0x100000 '
}

@test "scan: the whole disk is prefetched in order, once" {
    requires nbdsh
    start_server --filter=scan --filter=log memory 4M scan-size=512k \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py "
import time
for i in range(300):
    if 'offset=0x380000 ' in ''.join(l for l in open('$BATS_TEST_TMPDIR/log') if ' Cache ' in l):
        break
    time.sleep(0.1)
"
    stop_server
    seq 0 524288 3670016 | xargs printf '0x%x\n' | sort > "$BATS_TEST_TMPDIR/want"
    logged Cache > "$BATS_TEST_TMPDIR/got"
    diff "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/got"
    [ "$(grep -c ' Cache id=' "$BATS_TEST_TMPDIR/log")" -eq 8 ]
}

@test "scan: without cache below, the scan reads" {
    requires nbdsh
    start_server --filter=scan --filter=nocache --filter=log memory 2M \
        scan-size=1M logfile="$BATS_TEST_TMPDIR/log"
    nbd_py "
import time
assert not h.can_cache()
for i in range(300):
    if 'offset=0x100000 ' in ''.join(l for l in open('$BATS_TEST_TMPDIR/log') if ' Read ' in l):
        break
    time.sleep(0.1)
"
    stop_server
    [ "$(logged Read | tr '\n' ' ')" = "0x0 0x100000 " ]
    not grep -q ' Cache id=' "$BATS_TEST_TMPDIR/log"
}

@test "scan: scan-forever stops when the client disconnects" {
    requires nbdsh
    start_server --filter=scan --filter=log memory 64k scan-size=4k \
        scan-forever=true logfile="$BATS_TEST_TMPDIR/log"
    nbd_py "
import time
for i in range(300):
    if sum(1 for l in open('$BATS_TEST_TMPDIR/log') if ' Cache id=' in l) > 40:
        break
    time.sleep(0.1)
"
    # Past the end it started over; the connection closes all the same.
    wait_until grep -q 'Disconnect' "$BATS_TEST_TMPDIR/log"
    [ "$(grep -c ' Cache id=.* offset=0x0 ' "$BATS_TEST_TMPDIR/log")" -ge 2 ]
}

@test "scan: an export other than the default one is not scanned" {
    requires nbdsh
    start_server --filter=scan --filter=log memory 1M \
        logfile="$BATS_TEST_TMPDIR/log"
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.connect_uri('nbd+unix:///other?socket=$sock')
h.pread(512, 0)
"
    stop_server
    grep -q 'not the default export, not scanning' "$log"
    not grep -q ' Cache id=' "$BATS_TEST_TMPDIR/log"
}

# scan_connect N: connect, wait (bounded) until the log shows N cache
# requests, disconnect.
scan_connect() {
    nbd_py "
import time
for i in range(300):
    if sum(1 for l in open('$BATS_TEST_TMPDIR/log') if ' Cache id=' in l) >= $1:
        break
    time.sleep(0.1)
"
}

@test "scan: scan-clock goes on where the last connection got to, or not" {
    requires nbdsh
    start_server --filter=scan --filter=log memory 4M scan-size=1M \
        logfile="$BATS_TEST_TMPDIR/log"
    scan_connect 4
    scan_connect 5
    stop_server
    # The second connection began at the last step of the first.
    [ "$(grep -c ' Cache id=' "$BATS_TEST_TMPDIR/log")" -eq 5 ]
    [ "$(grep -c ' Cache id=.* offset=0x300000 ' "$BATS_TEST_TMPDIR/log")" -eq 2 ]

    rm "$BATS_TEST_TMPDIR/log"
    start_server --filter=scan --filter=log memory 4M scan-size=1M \
        scan-clock=false logfile="$BATS_TEST_TMPDIR/log"
    scan_connect 4
    scan_connect 8
    stop_server
    [ "$(grep -c ' Cache id=' "$BATS_TEST_TMPDIR/log")" -eq 8 ]
    [ "$(grep -c ' Cache id=.* offset=0x0 ' "$BATS_TEST_TMPDIR/log")" -eq 2 ]
}

@test "scan: over a backend that is not parallel, it does nothing and says so" {
    requires nbdsh
    start_server --filter=scan --filter=log eval get_size='echo 1048576' \
        pread='head -c $3 /dev/zero' thread_model='echo serialize_requests' \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py "assert h.pread(512, 0) == bytes(512)"
    stop_server
    grep -q 'thread model is not parallel, not scanning' "$log"
    [ "$(grep -c ' Read id=' "$BATS_TEST_TMPDIR/log")" -eq 1 ]
}

@test "scan: bad parameters are refused" {
    for bad in scan-size=1000 scan-size=64M scan-size=256 scan-size=2X \
               scan-ahead=maybe scan-clock=2 scan-forever=; do
        run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=scan memory 1M "$bad"
        echo "$bad: $output"
        [ "$status" -eq 1 ]
        [[ "$output" == *"$bad"* ]]
    done
}
