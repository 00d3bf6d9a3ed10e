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

@test "each injected error is logged, as nbdkit logs it, without -v" {
    requires nbdsh
    run "$NBDKIT" -U - --filter=error memory 1M error-pread-rate=1 \
        error-zero=ENOSPC error-zero-rate=1 --run 'nbdsh -u "$uri" -c "
for f in (lambda: h.pread(512, 0), lambda: h.zero(512, 0)):
    try:
        f()
    except nbd.Error:
        pass
"'
    [ "$status" -eq 0 ]
    [[ "$output" == *"error: injecting EIO error into pread"* ]]
    [[ "$output" == *"error: injecting ENOSPC error into zero"* ]]
    [[ "$output" != *"into pwrite"* ]]
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

@test "ip deny=all refuses a unix-socket client; allow=anyunix lets it in" {
    start_server --filter=ip memory 1M deny=all
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "client refused" "$log"
    stop_server
    start_server --filter=ip memory 1M allow=anyunix deny=all
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
    wait_until grep -q "client refused" "$BATS_TEST_TMPDIR/log"
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
    wait_until grep -q "too many clients" "$log"
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

@test "exitwhen checks a pipe's descriptor" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=exitwhen memory 1M exit-when-pipe-closed=99
    [ "$status" -eq 1 ]
    [[ "$output" == *"exit-when-pipe-closed=99"* ]]
}

# ---- delay, as nbdkit's (nbdkit-delay-filter(1)) ----

# A client's read waits in the delay filter (the log filter above has
# seen it): stopping the server ends the wait at once.
@test "delay: stopping the server ends a delayed request at once (ESHUTDOWN), and the server exits" {
    requires nbdsh
    start_server --filter=log --filter=delay memory 1M delay-read=100 \
        logfile="$BATS_TEST_TMPDIR/ops.log"
    nbd_py "
try:
    h.pread(512, 0)
    print('served')
except nbd.Error as e:
    print(errno.errorcode.get(e.errnum, e.errnum))
" > "$BATS_TEST_TMPDIR/client.out" 2>&1 &
    local client=$!
    wait_until grep -q ' Read id=1 ' "$BATS_TEST_TMPDIR/ops.log"
    kill -TERM "$server_pid"
    # A sanity bound, far below the delay (and the server's 5 s grace).
    timeout 4 tail --pid="$server_pid" -f /dev/null
    wait "$server_pid" || true
    server_pid=
    wait "$client" || true
    cat "$BATS_TEST_TMPDIR/client.out" "$log"
    grep -qx ESHUTDOWN "$BATS_TEST_TMPDIR/client.out"
    grep -q "delay filter: .*shutting down" "$log"
}

@test "delay: delay-write= delays writes only; wdelay= writes, zeroes and trims" {
    requires nbdsh
    start_server --filter=delay --filter=log memory 1M delay-write=100 \
        logfile="$BATS_TEST_TMPDIR/ops.log"
    # The write waits; the zero and the trim behind it reach the layer
    # below.
    nbd_py "
w = h.aio_pwrite(b'x' * 512, 0)
z = h.aio_zero(512, 4096)
t = h.aio_trim(512, 8192)
done = set()
for i in range(300):            # a bound, not a timing: at most 30 s
    for c in (z, t):
        if c not in done and h.aio_command_completed(c):
            done.add(c)
    if len(done) == 2:
        break
    h.poll(100)
else:
    assert False, 'the zero or the trim was delayed'
assert not h.aio_command_completed(w)
"
    wait_until grep -q ' Zero id=' "$BATS_TEST_TMPDIR/ops.log"
    wait_until grep -q ' Trim id=' "$BATS_TEST_TMPDIR/ops.log"
    not grep -q ' Write id=' "$BATS_TEST_TMPDIR/ops.log"
    stop_server
    # wdelay= sets all three when it is given: a delay-zero= before it
    # is replaced, a delay-trim= after it counts.
    start_server --filter=delay --filter=log memory 1M delay-zero=0 \
        wdelay=100 delay-trim=0 logfile="$BATS_TEST_TMPDIR/ops2.log"
    nbd_py "
z = h.aio_zero(512, 4096)
h.trim(512, 8192)
assert not h.aio_command_completed(z)
"
    grep -q ' Trim id=' "$BATS_TEST_TMPDIR/ops2.log"
    not grep -q ' Zero id=' "$BATS_TEST_TMPDIR/ops2.log"
}

@test "delay: nbdkit's other spellings of the keys are taken" {
    requires nbdinfo
    local k
    for k in delay-reads delay-writes delay-zeroes delay-trims delay-discard \
             delay-discards delay-extent; do
        start_server --filter=delay memory 1M "$k=1ms"
        [ "$(nbdinfo --size "$uri")" -eq 1048576 ]
        stop_server
    done
}

@test "delay: delay-fast-zero=false offers fast zeroes, failed at once" {
    requires nbdinfo
    cat > "$BATS_TEST_TMPDIR/disk.sh" <<'SH'
#!/bin/bash
case "$1" in
    get_size) echo 1048576 ;;
    can_write|can_zero) exit 0 ;;
    can_fast_zero) exit 3 ;;
    pread) head -c "$3" /dev/zero ;;
    pwrite|zero) cat >/dev/null ;;
    open) echo h ;;
    *) exit 2 ;;
esac
SH
    chmod +x "$BATS_TEST_TMPDIR/disk.sh"
    start_server --filter=delay sh "$BATS_TEST_TMPDIR/disk.sh" \
        delay-zero=100 delay-fast-zero=false
    nbdinfo "$uri" | grep -q 'can_fast_zero: true'
    nbd_py "
try:
    h.zero(512, 0, nbd.CMD_FLAG_FAST_ZERO)
    assert False, 'the fast zero succeeded'
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
"
}

@test "delay: delay-close= is refused, saying it is not supported" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=delay memory 1M delay-close=1
    [ "$status" -eq 1 ]
    [[ "$output" == *"delay-close=1: not supported"* ]]
}

# ---- exitwhen, as nbdkit's (nbdkit-exitwhen-filter(1)) ----

@test "exitwhen: without an exit-when-* event the filter does nothing" {
    requires nbdinfo
    start_server --filter=exitwhen memory 1M
    [ "$(nbdinfo --size "$uri")" -eq 1048576 ]
    [ "$(nbdinfo --size "$uri")" -eq 1048576 ]
}

# exit-when-poll=1000: only the check of a connect or a close can see
# the event in time.
@test "exitwhen: an event is checked when a client connects: it is refused at once" {
    requires nbdsh
    start_server --filter=exitwhen memory 1M \
        exit-when-file-created="$BATS_TEST_TMPDIR/stop" exit-when-poll=1000
    nbd_py "
import subprocess
open('$BATS_TEST_TMPDIR/stop', 'w').close()
r = subprocess.run(['nbdinfo', '--size', '$uri'], capture_output=True)
assert r.returncode != 0, 'a new client was let in'
h.pwrite(b'still', 0)
assert h.pread(5, 0) == b'still'
"
    wait_until grep -q "exitwhen filter: .*refused" "$log"
    # The connected client has gone: the server exits.
    wait_until eval '! kill -0 $server_pid 2>/dev/null'
    wait "$server_pid"
    server_pid=
}

@test "exitwhen: an event is checked when a client disconnects: the server exits then" {
    requires nbdsh
    touch "$BATS_TEST_TMPDIR/run"
    start_server --filter=exitwhen memory 1M \
        exit-when-file-deleted="$BATS_TEST_TMPDIR/run" exit-when-poll=1000
    nbd_py "
import os
os.unlink('$BATS_TEST_TMPDIR/run')
h.pwrite(b'x', 0)
"
    wait_until eval '! kill -0 $server_pid 2>/dev/null'
    wait "$server_pid"
    server_pid=
}

@test "exitwhen: a script is run when clients connect, and once it says 88 new clients are refused" {
    requires nbdsh
    start_server --filter=exitwhen memory 1M \
        exit-when-script="test -f $BATS_TEST_TMPDIR/stop && exit 88; exit 0" \
        exit-when-poll=1000
    nbd_py "
import subprocess
open('$BATS_TEST_TMPDIR/stop', 'w').close()
# The script runs beside the connection that started it: a later
# client is refused.
for i in range(300):
    r = subprocess.run(['nbdinfo', '--size', '$uri'], capture_output=True)
    if r.returncode != 0:
        break
assert r.returncode != 0, 'new clients were still let in'
assert h.pread(512, 0) == bytes(512)
"
    wait_until eval '! kill -0 $server_pid 2>/dev/null'
    server_pid=
}

# ---- ip, spelled as nbdkit spells its rules (nbdkit-ip-filter(1)) ----

@test "ip: allunix/anyunix match a unix-socket client, the other kinds do not" {
    requires nbdinfo
    local r
    for r in allunix anyunix; do
        start_server --filter=ip memory 1M deny=$r
        not nbdinfo --size "$uri" 2>/dev/null
        stop_server
        start_server --filter=ip memory 1M allow=$r deny=all
        [ "$(nbdinfo --size "$uri")" -eq 1048576 ]
        stop_server
    done
    start_server --filter=ip memory 1M \
        deny=allipv4,anyipv4,allipv6,anyipv6,allvsock,anyvsock \
        deny=vsock-cid:1 deny=vsock-port:10809
    [ "$(nbdinfo --size "$uri")" -eq 1048576 ]
}

@test "ip: allipv4 matches an IPv4 client" {
    requires nbdinfo
    local port
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$NBDKIT" -f -i 127.0.0.1 -p "$port" -P "$BATS_TEST_TMPDIR/pid" \
        --filter=ip memory 1M allow=allipv4 deny=all 2>"$BATS_TEST_TMPDIR/log" &
    server_pid=$!
    wait_until test -s "$BATS_TEST_TMPDIR/pid"
    [ "$(nbdinfo --size "nbd://127.0.0.1:$port")" -eq 1048576 ]
    stop_server
    "$NBDKIT" -f -i 127.0.0.1 -p "$port" -P "$BATS_TEST_TMPDIR/pid2" \
        --filter=ip memory 1M deny=allipv4 2>"$BATS_TEST_TMPDIR/log" &
    server_pid=$!
    wait_until test -s "$BATS_TEST_TMPDIR/pid2"
    not nbdinfo --size "nbd://127.0.0.1:$port" 2>/dev/null
    wait_until grep -q "client refused" "$BATS_TEST_TMPDIR/log"
}

@test "ip: rules nbdkit does not know are refused, its vsock rules need numbers" {
    local r
    for r in unix vsock anyv4 anyv6 vsock-cid:x vsock-port: pid:abc uid:-1; do
        run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=ip memory 1M allow=$r
        [ "$status" -eq 1 ]
        [[ "$output" == *"$r"* ]]
    done
}
