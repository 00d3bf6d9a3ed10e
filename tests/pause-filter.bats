#!/usr/bin/env bats
# The pause filter (nbdkit-pause-filter(1)): the control socket's p and
# r, requests held while paused, and P only once nothing is in flight
# below.  No check depends on timing to pass: a held request cannot
# complete however long one waits, so a slow machine can only let a
# broken filter through, never fail a good one.

load helpers

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
    started=$BATS_TEST_TMPDIR/started
    head -c 1M /dev/urandom > "$BATS_TEST_TMPDIR/disk"
    # Reads say they have reached the backend, then wait there until
    # the file go exists.
    start_server --filter=pause eval get_size='echo 1048576' \
        pread="touch $started; while [ ! -e $go ]; do sleep 0.05; done
               dd if=$BATS_TEST_TMPDIR/disk skip=\$4 count=\$3 iflag=skip_bytes,count_bytes status=none" \
        pause-control="$ctl"
    pause_py "
want = open('$BATS_TEST_TMPDIR/disk', 'rb').read()
buf = nbd.Buffer(4096)
rd = h.aio_pread(buf, 8192)
# The pause must come after the read is in flight below: the two
# sockets race otherwise.
while not os.path.exists('$started'):
    h.poll(100)
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
