#!/usr/bin/env bats
# The ddrescue, pause, tls-fallback and scan filters
# (nbdkit-NAME-filter(1)), with real clients: data checked byte for
# byte, errors by their NBD error, bad parameters by their message and
# exit status 1.  No test depends on timing: waits are for events,
# bounded.

load helpers

# ---- ddrescue ----

# A 1 MiB image and its map: 64K rescued, 64K bad, 448K rescued in
# two adjacent blocks, 64K non-tried, 64K non-trimmed, a gap of 64K the
# map does not mention, 64K non-scraped, 128K rescued.
make_rescue() {
    head -c 1M /dev/urandom > "$BATS_TEST_TMPDIR/disk.img"
    cat > "$BATS_TEST_TMPDIR/disk.map" <<'MAP'
# Mapfile. Created by GNU ddrescue version 1.27
# Command line: ddrescue /dev/sdb disk.img disk.map
# current_pos  current_status  current_pass
0x000E0000     +               1
#      pos        size  status
0x00000000  0x00010000  +
0x00010000  0x00010000  -
0x00020000  0x00040000  +
0x00060000  0x00030000  +
0x00090000  0x00010000  ?
0x000A0000  0x00010000  *
0x000C0000  0x00010000  /
0x000E0000  0x00020000  +
MAP
}

ddrescue_py() {
    nbd_py "
want = open('$BATS_TEST_TMPDIR/disk.img', 'rb').read()
def fails(count, off):
    try:
        h.pread(count, off)
    except nbd.Error as e:
        assert e.errno == 'EIO', (off, e.errno)
        return True
    return False
$1"
}

@test "ddrescue: reads of rescued areas are the image's bytes" {
    requires nbdsh
    make_rescue
    start_server --filter=ddrescue file "$BATS_TEST_TMPDIR/disk.img" \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/disk.map"
    ddrescue_py "
import hashlib
for off, n in [(0, 0x10000), (0x20000, 0x70000), (0x5f000, 0x2000),
               (0xE0000, 0x20000), (0xFFE00, 0x200)]:
    got = h.pread(n, off)
    assert hashlib.sha256(got).digest() == hashlib.sha256(want[off:off + n]).digest(), off
"
}

@test "ddrescue: reads touching unrescued or unmapped areas fail with EIO" {
    requires nbdsh
    make_rescue
    start_server --filter=ddrescue file "$BATS_TEST_TMPDIR/disk.img" \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/disk.map"
    ddrescue_py "
# bad, non-tried, non-trimmed, unmapped, non-scraped
for off in (0x10000, 0x90000, 0xA0000, 0xB0000, 0xC0000, 0xCFE00):
    assert fails(512, off), off
# one byte over the edge of a rescued area, either side
assert fails(0x200, 0xFF00 + 0x100)
assert fails(0x200, 0x1FF00)
assert fails(0x100000, 0)
# and the server goes on
assert h.pread(512, 0) == want[:512]
"
}

@test "ddrescue: the export is read-only and cannot cache" {
    requires nbdsh nbdinfo
    make_rescue
    start_server --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/disk.map"
    nbdinfo --json "$uri" > "$BATS_TEST_TMPDIR/info"
    grep -q '"is_read_only": true' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_cache": false' "$BATS_TEST_TMPDIR/info"
    nbd_py "
try:
    h.pwrite(b'x' * 512, 0)
    sys.exit('a write succeeded')
except nbd.Error as e:
    assert e.errno == 'EPERM', e.errno
"
}

# bad_map NAME CONTENT EXPECTED-MESSAGE
bad_map() {
    printf "$2" > "$BATS_TEST_TMPDIR/$1.map"
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/$1.map"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$1.map: $3"* ]]
}

@test "ddrescue: a malformed mapfile is refused with the line that is wrong" {
    bad_map number '# c\n0x0 + 1\n0x0 0x100 +\n0x100 zz +\n' \
        "line 4: size 'zz' is not a number"
    bad_map position '0x0 + 1\n-5 0x100 +\n' "line 2: position '-5' is not a number"
    bad_map state '0x0 + 1\n\n0x0 0x100 Q\n' "line 3: status 'Q' is not one of"
    bad_map fields '0x0 + 1\n0x0 0x100 + junk\n' "line 2: 4 or more fields"
    bad_map short '0x0 + 1\n0x0 0x100\n' "line 2: 2 fields"
    bad_map overlap '0x0 + 1\n0x0 0x100 +\n0x80 0x100 -\n' \
        "line 3: block at 0x80 begins before the end of the block before it"
    bad_map huge '0x0 + 1\n0xffffffffffffffff 0x100 +\n' "line 2: block"
    bad_map nostatus '# only a comment\n' "the file ends at line 1 without a status line"
    bad_map status 'hello world\n' "line 1: a status line"
    { printf '0x0 + 1\n0x0 0x1'; printf '\0'; printf ' +\n'; } > "$BATS_TEST_TMPDIR/nul.map"
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/nul.map"
    [ "$status" -eq 1 ]
    [[ "$output" == *"line 2: contains a NUL byte"* ]]
}

@test "ddrescue: a missing, unreadable or repeated mapfile is refused" {
    make_rescue
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"needs ddrescue-mapfile=FILE"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/none.map"
    [ "$status" -eq 1 ]
    [[ "$output" == *"none.map: No such file or directory"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR"
    [ "$status" -eq 1 ]
    [[ "$output" == *"not a regular file"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ddrescue memory 1M \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/disk.map" \
        ddrescue-mapfile="$BATS_TEST_TMPDIR/disk.map"
    [ "$status" -eq 1 ]
    [[ "$output" == *"already given"* ]]
}

# ---- pause ----

# Python with h connected to $uri and c to the control socket $ctl.
pause_py() {
    /usr/bin/python3 -c "
import nbd, socket, select, os, sys
h = nbd.NBD()
h.connect_uri('$uri')
c = socket.socket(socket.AF_UNIX)
c.connect('$ctl')
def ask(cmds, n):
    c.sendall(cmds)
    got = b''
    while len(got) < n:
        b = c.recv(n - len(got))
        assert b, 'the control socket closed'
        got += b
    return got
def quiet():
    # No reply waiting on the control socket (none may come: this only
    # fails if one was sent).
    return select.select([c], [], [], 0.3)[0] == []
$1"
}

@test "pause: requests sent while paused are held, then done on resume" {
    requires nbdsh
    ctl=$BATS_TEST_TMPDIR/ctl
    start_server --filter=pause memory 4M pause-control="$ctl"
    [ -S "$ctl" ]
    pause_py "
d = os.urandom(1 << 20)
h.pwrite(d, 0)
assert ask(b'p', 1) == b'P'
assert ask(b'p', 1) == b'P'           # already paused: at once
buf = nbd.Buffer(1 << 20)
rd = h.aio_pread(buf, 0)
wr = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b'z' * 4096)), 2 << 20)
fl = h.aio_flush()
for i in range(5):
    h.poll(100)
assert h.aio_in_flight() == 3, h.aio_in_flight()
assert quiet()
assert ask(b' \t\nq?r', 3) == b'XXR'   # blanks: no reply; unknown: X
while h.aio_in_flight():
    h.poll(-1)
assert h.aio_command_completed(rd) and h.aio_command_completed(wr)
assert h.aio_command_completed(fl)
assert buf.to_bytearray() == d
assert h.pread(4096, 2 << 20) == b'z' * 4096
assert ask(b'r', 1) == b'R'           # not paused: still R
"
}

@test "pause: P is answered only once the requests in flight are done" {
    requires nbdsh
    ctl=$BATS_TEST_TMPDIR/ctl go=$BATS_TEST_TMPDIR/go
    head -c 1M /dev/urandom > "$BATS_TEST_TMPDIR/disk"
    # Reads wait in the backend until the file go exists.
    start_server --filter=pause eval get_size='echo 1048576' \
        pread="while [ ! -e $go ]; do sleep 0.05; done
               dd if=$BATS_TEST_TMPDIR/disk skip=\$4 count=\$3 iflag=skip_bytes,count_bytes status=none" \
        pause-control="$ctl"
    pause_py "
want = open('$BATS_TEST_TMPDIR/disk', 'rb').read()
buf = nbd.Buffer(4096)
rd = h.aio_pread(buf, 8192)
c.sendall(b'p')
assert quiet()                        # the read is still in the backend
open('$go', 'w').close()
assert ask(b'', 1) == b'P'
while h.aio_in_flight():
    h.poll(-1)
assert h.aio_command_completed(rd)
assert buf.to_bytearray() == want[8192:8192 + 4096]
assert ask(b'r', 1) == b'R'
assert h.pread(512, 0) == want[:512]
"
}

@test "pause: a second control client can resume, and a pause holds every connection" {
    requires nbdsh
    ctl=$BATS_TEST_TMPDIR/ctl
    start_server --filter=pause memory 1M pause-control="$ctl"
    pause_py "
c2 = socket.socket(socket.AF_UNIX)
c2.connect('$ctl')
assert ask(b'p', 1) == b'P'
h2 = nbd.NBD()
h2.connect_uri('$uri')
rd = h2.aio_pread(nbd.Buffer(512), 0)
for i in range(3):
    h2.poll(100)
assert h2.aio_in_flight() == 1
c2.sendall(b'r')
assert c2.recv(1) == b'R'
while h2.aio_in_flight():
    h2.poll(-1)
assert h2.aio_command_completed(rd)
"
}

@test "pause: the server stops while paused, failing the held requests" {
    requires nbdsh
    ctl=$BATS_TEST_TMPDIR/ctl
    start_server --filter=pause memory 1M pause-control="$ctl"
    pause_py "
assert ask(b'p', 1) == b'P'
rd = h.aio_pread(nbd.Buffer(512), 0)
os.kill($server_pid, 15)
try:
    while h.aio_in_flight():
        h.poll(-1)
    h.aio_command_completed(rd)
    sys.exit('the held read succeeded')
except nbd.Error as e:
    print(e)
"
    wait_until eval '! kill -0 $server_pid 2>/dev/null'
    [ ! -e "$ctl" ]
}

@test "pause: bad pause-control parameters are refused" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=pause memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"needs pause-control=SOCKET"* ]]
    touch "$BATS_TEST_TMPDIR/file"
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=pause memory 1M \
        pause-control="$BATS_TEST_TMPDIR/file"
    [ "$status" -eq 1 ]
    [[ "$output" == *"file: exists and is not a socket"* ]]
    [ -f "$BATS_TEST_TMPDIR/file" ]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=pause memory 1M \
        pause-control="/$(printf 'x%.0s' $(seq 120))"
    [ "$status" -eq 1 ]
    [[ "$output" == *"too long for a unix socket"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=pause memory 1M \
        pause-control="$BATS_TEST_TMPDIR/nodir/ctl"
    [ "$status" -eq 1 ]
    [[ "$output" == *"nodir/ctl: cannot create the socket"* ]]
}

# ---- tls-fallback ----

setup_file() {
    make_tls_files "$BATS_FILE_TMPDIR"
}

start_tls_fallback() {
    requires certtool psktool nbdsh
    start_server --tls=on --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" \
        --filter=tls-fallback "$@"
    tls_uri="nbds+unix://alice@/?socket=$sock&tls-psk-file=$BATS_FILE_TMPDIR/psk/keys.psk"
}

@test "tls-fallback: a TLS client reads the disk, a plaintext one the message" {
    head -c 4M /dev/urandom > "$BATS_TEST_TMPDIR/disk"
    start_tls_fallback file "$BATS_TEST_TMPDIR/disk"
    requires nbdcopy nbdinfo
    nbdcopy "$tls_uri" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/disk" "$BATS_TEST_TMPDIR/out"
    # Plaintext: whatever the export name, 512 bytes of message.
    for name in "" secret; do
        nbdcopy "nbd+unix:///$name?socket=$sock" "$BATS_TEST_TMPDIR/plain"
        [ "$(stat -c %s "$BATS_TEST_TMPDIR/plain")" -eq 512 ]
        msg='This NBD server requires TLS authentication before it will serve useful data.\n'
        { printf "$msg"; head -c $((512 - $(printf "$msg" | wc -c))) /dev/zero; } \
            > "$BATS_TEST_TMPDIR/want"
        cmp "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/plain"
    done
    nbdinfo --json "$uri" > "$BATS_TEST_TMPDIR/info"
    cat "$BATS_TEST_TMPDIR/info"
    grep -q '"is_read_only": true' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_cache": false' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_flush": false' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_multi_conn": false' "$BATS_TEST_TMPDIR/info"
}

@test "tls-fallback: plaintext writes fail with EPERM; TLS ones reach the disk" {
    start_tls_fallback memory 1M
    nbd_py "
try:
    h.pwrite(b'x' * 512, 0)
    sys.exit('a plaintext write succeeded')
except nbd.Error as e:
    assert e.errno == 'EPERM', e.errno
"
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri('$tls_uri')
assert h.get_tls_negotiated()
h.pwrite(b'y' * 4096, 4096)
assert h.pread(4096, 4096) == b'y' * 4096
assert h.get_size() == 1 << 20
"
}

@test "tls-fallback: tlsreadme= is what plaintext clients read, cut at 512 bytes" {
    start_tls_fallback memory 1M tlsreadme='Use TLS, please.'
    nbd_py "
d = h.pread(512, 0)
assert d == b'Use TLS, please.' + bytes(512 - 16), d
assert h.pread(8, 4) == b'TLS, ple'
"
    stop_server
    long=$(printf 'ab%.0s' $(seq 300))
    start_tls_fallback memory 1M tlsreadme="$long"
    nbd_py "assert h.pread(512, 0) == b'ab' * 256"
}

@test "tls-fallback: the layers below are never opened for a plaintext client" {
    start_tls_fallback --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log"
    nbd_py "assert h.pread(4, 0) == b'This'"
    nbd_py "assert h.get_size() == 512"
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri('$tls_uri')
assert h.get_size() == 1 << 20
"
    stop_server
    cat "$BATS_TEST_TMPDIR/log"
    # The log filter below saw only the TLS client.
    [ "$(grep -c ' Connect ' "$BATS_TEST_TMPDIR/log")" -eq 1 ]
    grep ' Connect ' "$BATS_TEST_TMPDIR/log" | grep -q 'tls=1'
}

@test "tls-fallback: a plaintext export listing shows only the empty name" {
    requires nbdinfo
    start_tls_fallback memory 1M
    nbdinfo --list --json "$uri" > "$BATS_TEST_TMPDIR/list"
    cat "$BATS_TEST_TMPDIR/list"
    [ "$(grep -c '"export-name"' "$BATS_TEST_TMPDIR/list")" -eq 1 ]
    grep -q '"export-name": ""' "$BATS_TEST_TMPDIR/list"
}

@test "tls-fallback: a backend serializing connections is refused" {
    requires certtool psktool
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --tls=on \
        --tls-psk="$BATS_FILE_TMPDIR/psk/keys.psk" --filter=tls-fallback \
        eval get_size='echo 512' pread='head -c $3 /dev/zero' \
        thread_model='echo serialize_connections'
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"requires parallel connection support"* ]]
}

# ---- scan ----

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
    ! grep ' Cache id=' "$BATS_TEST_TMPDIR/log" | grep -v 'count=0x100000 '
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
    ! grep -q ' Cache id=' "$BATS_TEST_TMPDIR/log"
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
    ! grep -q ' Cache id=' "$BATS_TEST_TMPDIR/log"
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
