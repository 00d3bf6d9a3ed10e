# Supervision: a backend that crashes, hangs or lies never takes the
# server down, never returns wrong data, never loses an acknowledged
# write.  The misbehaving backend is a real process speaking the real
# protocol (tests/faulty-backend).

load helpers

copy_with_kills() {
    random_file "$BATS_TEST_TMPDIR/in" 256M
    kill_backend_during 3 nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    kill_backend_during 3 nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    grep -q "killed by signal SIGKILL" "$log"
    grep -q "backend restarted" "$log"
    [ "$(zombies)" -eq 0 ]
}

# These two kill the backend while it does the data I/O, so without
# passthrough (tests/passthrough.bats kills it during passthrough).
@test "killing the memory backend during copies loses no byte" {
    requires nbdcopy
    start_server -v --backend-max-restarts=20 -D nbdkit.passthrough=0 \
        memory 256M
    copy_with_kills
}

@test "killing the file backend during copies loses no byte" {
    requires nbdcopy
    truncate -s 256M "$BATS_TEST_TMPDIR/disk"
    start_server -v --backend-max-restarts=20 -D nbdkit.passthrough=0 \
        file "$BATS_TEST_TMPDIR/disk"
    copy_with_kills
}

@test "the memory backend keeps its data across a restart" {
    requires nbdsh
    start_server memory 16M
    nbd_py '
data = os.urandom(1 << 20)
h.pwrite(data, 5 << 20)
open(os.environ["BATS_TEST_TMPDIR"] + "/data", "wb").write(data)
'
    old=$(backend_pid)
    kill -KILL "$old"
    wait_until eval '[ -n "$(backend_pid)" ] && [ "$(backend_pid)" != "$old" ]'
    nbd_py '
data = open(os.environ["BATS_TEST_TMPDIR"] + "/data", "rb").read()
assert h.pread(1 << 20, 5 << 20) == data
'
}

@test "a backend that crashes on every restart makes the server give up" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    start_server --backend-max-restarts=3 "$FAULTY" "$BATS_TEST_TMPDIR/disk" \
        fault=crash-on-restart once="$BATS_TEST_TMPDIR/started"
    kill -KILL "$(backend_pid)"
    # Every request from now on fails: the backend cannot be started.
    nbd_py '
try:
    h.pread(512, 0)
    sys.exit("a read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
' || true
    wait_until eval '! kill -0 $server_pid 2>/dev/null'
    wait "$server_pid" || server_status=$?
    server_pid=
    [ "$server_status" -eq 1 ]
    grep -q "restarting the backend in 0.1 seconds" "$log"
    grep -q "restarting the backend in 0.2 seconds" "$log"
    grep -q "restarting the backend in 0.4 seconds" "$log"
    grep -q "crashing at restart as asked" "$log"
    grep -q "the backend failed 3 times within 10 seconds; giving up" "$log"
}

@test "with --backend-failure=error the server keeps serving errors" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    start_server --backend-max-restarts=1 --backend-failure=error \
        "$FAULTY" "$BATS_TEST_TMPDIR/disk" \
        fault=crash-on-restart once="$BATS_TEST_TMPDIR/started"
    nbd_py '
import subprocess, signal
pid = int(subprocess.check_output(["pgrep", "-P", os.environ["server_pid"]]))
os.kill(pid, signal.SIGKILL)
for i in range(3):
    try:
        h.pread(512, 0)
        sys.exit("a read succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
'
    wait_until grep -q "giving up: every request now fails with EIO" "$log"
    kill -0 "$server_pid"
}

@test "a backend that crashes at the first start is a configuration error" {
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" "$FAULTY" \
        "$BATS_TEST_TMPDIR/disk" fault=crash-on-start
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "crashing at start as asked"
    [ ! -e "$BATS_TEST_TMPDIR/s" ]
}

fault_once() {
    random_file "$BATS_TEST_TMPDIR/disk" 4M
    touch "$BATS_TEST_TMPDIR/once"
    start_server "$@" "$FAULTY" "$BATS_TEST_TMPDIR/disk" \
        fault="$FAULT" once="$BATS_TEST_TMPDIR/once"
    nbd_py '
d = open(os.environ["BATS_TEST_TMPDIR"] + "/disk", "rb").read()
assert h.pread(65536, 4096) == d[4096:4096 + 65536]
h.pwrite(b"after", 0)
assert h.pread(5, 0) == b"after"
'
    [ ! -e "$BATS_TEST_TMPDIR/once" ]    # the fault did strike
    [ "$(zombies)" -eq 0 ]
}

@test "a backend that hangs is restarted after --backend-timeout" {
    requires nbdsh
    FAULT=hang-on-pread fault_once --backend-timeout=1
    wait_until grep -q "did not answer PREAD within" "$log"
    wait_until grep -q "backend restarted" "$log"
}

@test "a backend that writes a garbage frame is restarted, no garbage is served" {
    requires nbdsh
    FAULT=garbage-on-pread fault_once
    wait_until grep -q "backend protocol error: bad magic" "$log"
}

@test "a reply to an id that is not in flight restarts the backend" {
    requires nbdsh
    FAULT=bad-id-on-pread fault_once
    wait_until grep -q "backend protocol error: a reply to a request id that is not in flight" "$log"
}

@test "a read reply of the wrong length restarts the backend" {
    requires nbdsh
    FAULT=short-on-pread fault_once
    wait_until grep -q "backend protocol error: PREAD reply length differs" "$log"
}

@test "a backend that crashes once in a read: the read is answered" {
    requires nbdsh
    FAULT=crash-on-pread fault_once
    wait_until grep -q "exited with status 1" "$log"
}

@test "the backend sees only its channel, stderr and /dev/null" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    start_server "$FAULTY" "$BATS_TEST_TMPDIR/disk"
    # Hold a client connection open while we look.
    /usr/bin/python3 -c "
import nbd, time
h = nbd.NBD(); h.connect_uri('$uri')
open('$BATS_TEST_TMPDIR/connected', 'w').close()
time.sleep(30)
" 3>&- &
    client=$!
    wait_until test -e "$BATS_TEST_TMPDIR/connected"
    b=$(backend_pid)
    fds=$(ls /proc/$b/fd | sort -n | tr '\n' ' ')
    # 0-3 from the server, 4 is the backend's own open of the disk.
    [ "$fds" = "0 1 2 3 4 " ]
    [ "$(readlink /proc/$b/fd/0)" = /dev/null ]
    [ "$(readlink /proc/$b/fd/1)" = /dev/null ]
    [[ "$(readlink /proc/$b/fd/2)" == pipe:* ]]
    [[ "$(readlink /proc/$b/fd/3)" == socket:* ]]
    [ "$(readlink /proc/$b/fd/4)" = "$BATS_TEST_TMPDIR/disk" ]
    grep -q '^NoNewPrivs:[[:space:]]*1' /proc/$b/status
    # Its own process group.
    [ "$(ps -o pgid= -p "$b" | tr -d ' ')" = "$b" ]
    kill "$client"
}

@test "the backend inherits the server's environment, or a minimal one with --backend-clean-environment" {
    NBDKIT_HELPER_FD=99 SECRET_TOKEN=visible start_server memory 1M
    b=$(backend_pid)
    tr '\0' '\n' < /proc/$b/environ > "$BATS_TEST_TMPDIR/env"
    grep -qx 'SECRET_TOKEN=visible' "$BATS_TEST_TMPDIR/env"
    grep -qx 'PATH=.*' "$BATS_TEST_TMPDIR/env"
    # The channel's variable names fd 3, whatever the server inherited.
    [ "$(grep -c '^NBDKIT_HELPER_FD=' "$BATS_TEST_TMPDIR/env")" = 1 ]
    grep -qx 'NBDKIT_HELPER_FD=3' "$BATS_TEST_TMPDIR/env"
    stop_server

    SECRET_TOKEN=do-not-leak LC_ALL=C.UTF-8 start_server \
        --backend-clean-environment memory 1M
    b=$(backend_pid)
    tr '\0' '\n' < /proc/$b/environ > "$BATS_TEST_TMPDIR/env"
    not grep -q SECRET_TOKEN "$BATS_TEST_TMPDIR/env"
    grep -qx 'PATH=.*' "$BATS_TEST_TMPDIR/env"
    grep -qx 'LC_ALL=C.UTF-8' "$BATS_TEST_TMPDIR/env"
    grep -qx 'NBDKIT_HELPER_FD=3' "$BATS_TEST_TMPDIR/env"
}

@test "the memory backend holds the server's memfd and nothing else" {
    start_server memory 1M
    b=$(backend_pid)
    fds=$(ls /proc/$b/fd | sort -n | tr '\n' ' ')
    # 0-2, the channel (3), the library's epoll set that watches the
    # channel, and the memfd.
    [ "$fds" = "0 1 2 3 4 5 " ]
    links=$(for fd in 4 5; do readlink /proc/$b/fd/$fd; done | sort)
    echo "$links"
    [[ "$links" == "/memfd:nbdkit-memory"*$'\n'"anon_inode:[eventpoll]" ]]
}

@test "--backend-rlimit limits the backend" {
    # AddressSanitizer reserves terabytes of address space: no as= there.
    if ldd "$top_builddir/backends/memory/nbdkit-memory-backend" | grep -q asan
    then
        start_server --backend-rlimit=nofile=64,cpu=3600 memory 1M
        b=$(backend_pid)
        grep -E '^Max cpu time +3600 +3600' /proc/$b/limits
    else
        start_server --backend-rlimit=nofile=64,as=4G memory 1M
        b=$(backend_pid)
        grep -E '^Max address space +4294967296 +4294967296' /proc/$b/limits
    fi
    grep -E '^Max open files +64 +64' /proc/$b/limits
}

@test "-v logs each start and exit of the backend with its pid" {
    start_server -v memory 1M
    b=$(backend_pid)
    wait_until grep -q "started backend process $b" "$log"
    kill -KILL "$b"
    wait_until grep -q "backend restarted" "$log"
    wait_until grep -q "backend process $b was killed by signal SIGKILL" "$log"
}

@test "a read caught by crash after crash is sent again to each new backend" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    echo 3 > "$BATS_TEST_TMPDIR/countdown"
    # The backend crashes on the first three reads it is sent: the one
    # read is sent to four incarnations in turn, within the limit of 5
    # restarts, and gets its data.
    start_server --backend-max-restarts=5 "$FAULTY" "$BATS_TEST_TMPDIR/disk" \
        fault=crash-on-pread countdown="$BATS_TEST_TMPDIR/countdown"
    nbd_py '
d = open(os.environ["BATS_TEST_TMPDIR"] + "/disk", "rb").read()
assert h.pread(4096, 8192) == d[8192:12288]
'
    [ "$(cat "$BATS_TEST_TMPDIR/countdown")" = 0 ]
    [ "$(grep -c 'crashing on pread as asked' "$log")" -eq 3 ]
}

# A backend killed while it re-opens the handles of the one before (a
# kill, then a crash in the re-open) leaves them to the next one: the
# client's connection goes on, with its data, and gets no error.
@test "a backend that dies while it re-opens the handles: the next one does" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    echo 0 > "$BATS_TEST_TMPDIR/countdown"
    start_server -v "$FAULTY" "$BATS_TEST_TMPDIR/disk" \
        fault=crash-on-open countdown="$BATS_TEST_TMPDIR/countdown"
    nbd_py '
import signal, subprocess, time
d = open(os.environ["BATS_TEST_TMPDIR"] + "/disk", "rb").read()
assert h.pread(4096, 0) == d[:4096]
# The next two OPENs crash: the re-opens of two incarnations in turn.
with open(os.environ["BATS_TEST_TMPDIR"] + "/countdown", "w") as f:
    f.write("2")
pid = subprocess.check_output(["pgrep", "-n", "-P",
                               os.environ["server_pid"]]).split()[0]
os.kill(int(pid), signal.SIGKILL)
assert h.pread(4096, 8192) == d[8192:12288]
data = os.urandom(4096)
h.pwrite(data, 65536)
assert h.pread(4096, 65536) == data
'
    [ "$(cat "$BATS_TEST_TMPDIR/countdown")" = 0 ]
    [ "$(grep -c 'crashing on open as asked' "$log")" -eq 2 ]
    wait_until grep -q "stopped before it re-opened export" "$log"
    stop_server
    not grep -q "could not re-open" "$log"
}

@test "past the restart limit the read that keeps crashing the backend fails" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    echo 100 > "$BATS_TEST_TMPDIR/countdown"
    start_server --backend-max-restarts=2 --backend-failure=error \
        "$FAULTY" "$BATS_TEST_TMPDIR/disk" \
        fault=crash-on-pread countdown="$BATS_TEST_TMPDIR/countdown"
    nbd_py '
try:
    h.pread(4096, 0)
    sys.exit("the read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
'
    wait_until grep -q 'giving up' "$log"
}

# Kill the backend 5 times, 0.2 s apart, while "$@" runs.
rapid_kills() {
    (
        for i in 1 2 3 4 5; do
            sleep 0.2
            pkill -KILL -P "$server_pid" 2>/dev/null || true
        done
    ) 3>&- &
    local killer=$! status=0
    "$@" || status=$?
    wait "$killer" || true
    return "$status"
}

rapid_kills_copy() {
    random_file "$BATS_TEST_TMPDIR/in" 256M
    rapid_kills nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    [ "$(zombies)" -eq 0 ]
}

@test "kills 0.2 s apart during a copy into memory lose nothing" {
    requires nbdcopy
    start_server memory 256M
    rapid_kills_copy
}

@test "kills 0.2 s apart during a copy into a file lose nothing" {
    requires nbdcopy
    truncate -s 256M "$BATS_TEST_TMPDIR/disk"
    start_server file "$BATS_TEST_TMPDIR/disk"
    rapid_kills_copy
}
