#!/usr/bin/env bats
# Filters for testing and for who may connect and how long the server
# lives: error, delay, ip, limit, exitlast, exitwhen.

load helpers

@test "error-pread-rate=100% fails every read with EIO, writes work" {
    start_server --filter=error memory 1M error-pread-rate=100%
    nbd_py "
h.pwrite(b'ok', 0)
try:
    h.pread(512, 0)
    sys.exit('a read succeeded')
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
"
}

@test "error= picks the error, and error-file= turns it on and off" {
    start_server --filter=error memory 1M error=ENOSPC error-rate=1 \
        error-file="$BATS_TEST_TMPDIR/fail"
    nbd_py "
h.pwrite(b'a', 0)
open('$BATS_TEST_TMPDIR/fail', 'w').close()
try:
    h.pwrite(b'b', 0)
    sys.exit('a write succeeded while the error file existed')
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
os.unlink('$BATS_TEST_TMPDIR/fail')
h.pwrite(b'c', 0)
assert h.pread(1, 0) == b'c'
"
}

@test "the error filter refuses an unknown error name and a bad rate" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=error memory 1M error=EBADF
    [ "$status" -eq 1 ]
    [[ "$output" == *"error=EBADF"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=error memory 1M error-rate=150%
    [ "$status" -eq 1 ]
    [[ "$output" == *"error-rate=150%"* ]]
}

@test "a delayed write does not hold up another connection's reads" {
    start_server --filter=delay memory 1M delay-write=8
    nbd_py "
b = nbd.NBD()
b.connect_uri('$uri')
slow = h.aio_pwrite(b'w' * 512, 0)
# The other connection reads (not delayed) while the write waits.
for i in range(20):
    b.pread(512, 4096)
assert not h.aio_command_completed(slow), 'the write was not delayed'
while not h.aio_command_completed(slow):
    h.poll(-1)
assert b.pread(512, 0) == b'w' * 512
"
}

@test "the delay filter refuses a delay that is not one" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=delay memory 1M rdelay=soon
    [ "$status" -eq 1 ]
    [[ "$output" == *"rdelay=soon"* ]]
}

@test "ip deny=all refuses a unix-socket client; allow=unix lets it in" {
    start_server --filter=ip memory 1M deny=all
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    grep -q "client refused" "$log"
    stop_server
    start_server --filter=ip memory 1M allow=unix deny=all
    [ "$(nbdinfo --size "$uri")" -eq 1048576 ]
}

@test "ip rules on the client's uid (SO_PEERCRED)" {
    start_server --filter=ip memory 1M deny=uid:$(id -u)
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    stop_server
    start_server --filter=ip memory 1M allow=uid:$(id -u) deny=all
    [ "$(nbdinfo --size "$uri")" -eq 1048576 ]
}

@test "ip deny refuses a loopback TCP client by address" {
    local port
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$NBDKIT" -f -i 127.0.0.1 -p "$port" -P "$BATS_TEST_TMPDIR/pid" \
        --filter=ip memory 1M deny=127.0.0.0/8 2>"$BATS_TEST_TMPDIR/log" &
    server_pid=$!
    wait_until test -s "$BATS_TEST_TMPDIR/pid"
    run nbdinfo --size "nbd://127.0.0.1:$port"
    [ "$status" -ne 0 ]
    grep -q "client refused" "$BATS_TEST_TMPDIR/log"
}

@test "ip refuses a rule it cannot parse" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ip memory 1M allow=10.0.0.0/33
    [ "$status" -eq 1 ]
    [[ "$output" == *"10.0.0.0/33"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ip memory 1M deny=somewhere
    [ "$status" -eq 1 ]
    [[ "$output" == *"somewhere"* ]]
}

@test "limit=1 refuses a second client while the first is connected" {
    start_server --filter=limit memory 1M limit=1
    nbd_py "
import subprocess
r = subprocess.run(['nbdinfo', '--size', '$uri'], capture_output=True)
assert r.returncode != 0, 'a second client got in'
h.shutdown()
"
    # The first client has gone: one may connect again.
    wait_until nbdinfo --size "$uri"
    grep -q "too many clients" "$log"
}

@test "exitlast: the server exits when its last client disconnects" {
    start_server --filter=exitlast memory 1M
    nbd_py "
b = nbd.NBD()
b.connect_uri('$uri')
h.shutdown()
"
    wait_until eval '! kill -0 $server_pid 2>/dev/null'
    wait "$server_pid"
    [ "$?" -eq 0 ]
    server_pid=
}

@test "exitwhen: the server exits once the file is created" {
    start_server --filter=exitwhen memory 1M \
        exit-when-file-created="$BATS_TEST_TMPDIR/stop" exit-when-poll=0.1
    nbdinfo --size "$uri"
    touch "$BATS_TEST_TMPDIR/stop"
    wait_until eval '! kill -0 $server_pid 2>/dev/null'
    server_pid=
}

@test "exitwhen waits for a connected client, and refuses new ones" {
    start_server --filter=exitwhen memory 1M \
        exit-when-script="test -f $BATS_TEST_TMPDIR/stop && exit 88; exit 0" \
        exit-when-poll=0.1
    nbd_py "
import subprocess, time
open('$BATS_TEST_TMPDIR/stop', 'w').close()
# Once the event is seen new clients are refused ...
for i in range(300):
    r = subprocess.run(['nbdinfo', '--size', '$uri'], capture_output=True)
    if r.returncode != 0:
        break
    time.sleep(0.1)
assert r.returncode != 0, 'new clients were still let in'
# ... but this one is still served.
h.pwrite(b'still', 0)
assert h.pread(5, 0) == b'still'
h.shutdown()
"
    wait_until eval '! kill -0 $server_pid 2>/dev/null'
    server_pid=
}

@test "exitwhen needs an event, and checks a pipe's descriptor" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=exitwhen memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"at least one exit-when"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=exitwhen memory 1M exit-when-pipe-closed=99
    [ "$status" -eq 1 ]
    [[ "$output" == *"exit-when-pipe-closed=99"* ]]
}
