# Liveness and orderly exit of the backend: PING finds a backend that is
# stopped (not merely slow) and gets it restarted, --backend-ping-*
# options are checked, only backends that offer "ping" are pinged, and
# at SIGTERM the backend is sent SHUTDOWN (docs/nbdkit-supervision.pod,
# docs/nbdkit-helper-protocol.pod).

load helpers

# script NAME: write stdin to $BATS_TEST_TMPDIR/NAME, executable; sets
# $script to its path.
script() {
    script=$BATS_TEST_TMPDIR/$1
    cat > "$script"
    chmod +x "$script"
}

@test "a backend stopped with SIGSTOP is found by ping and restarted" {
    requires nbdcopy nbdsh
    random_file "$BATS_TEST_TMPDIR/in" 4M
    start_server --backend-ping-interval=1 --backend-ping-timeout=2 memory 4M
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    old=$(backend_pid)
    # A client stays connected; its read, sent while the backend is
    # stopped, is answered by the next incarnation.
    /usr/bin/python3 -c "
import nbd, os, time
h = nbd.NBD(); h.connect_uri('$uri')
open('$BATS_TEST_TMPDIR/connected', 'w').close()
while not os.path.exists('$BATS_TEST_TMPDIR/stopped'):
    time.sleep(0.05)
open('$BATS_TEST_TMPDIR/out', 'wb').write(h.pread(4 << 20, 0))
" &
    client=$!
    wait_until test -e "$BATS_TEST_TMPDIR/connected"
    kill -STOP "$old"
    touch "$BATS_TEST_TMPDIR/stopped"
    wait_until grep -q "backend memory did not answer a ping in 2 s: killing it" "$log"
    wait_until grep -q "backend restarted" "$log"
    wait "$client"
    cat "$log"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    wait_until grep -q "backend process $old was killed by signal SIGKILL" "$log"
    [ "$(backend_pid)" != "$old" ]
    # A new client reads the same bytes.
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out2"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out2")" ]
}

@test "a slow request is not a hang: pings are answered while pread sleeps" {
    requires nbdsh
    # The read at 0 sleeps 5 s, the one at 8192 1 s.  With -t 1 the
    # script runs one at a time, on the backend's one worker thread: the
    # second read waits, and the library's reading thread answers the
    # pings meanwhile.
    script slow.sh <<'EOF'
#!/bin/sh -
case "$1" in
    get_size) echo 1048576 ;;
    pread) if [ "$4" = 0 ]; then sleep 5; else sleep 1; fi
           head -c "$3" /dev/zero | tr '\0' p ;;
    *) exit 2 ;;
esac
EOF
    start_server -v -t 1 --backend-ping-interval=1 --backend-ping-timeout=2 \
        sh "$script"
    pid=$(backend_pid)
    nbd_py '
b1, b2 = nbd.Buffer(4096), nbd.Buffer(4096)
c1, c2 = h.aio_pread(b1, 0), h.aio_pread(b2, 8192)
while h.aio_in_flight() > 0:
    h.poll(-1)
assert h.aio_command_completed(c1) and h.aio_command_completed(c2)
assert b1.to_bytearray() == b"p" * 4096
assert b2.to_bytearray() == b"p" * 4096
'
    cat "$log"
    wait_until grep -q "pinging the backend every 1 seconds (timeout 2 seconds)" "$log"
    [ "$(backend_pid)" = "$pid" ]
    stop_server
    not grep -q "did not answer a ping" "$log"
    not grep -q "restarting the backend" "$log"
}

@test "bad --backend-ping-interval and --backend-ping-timeout values are refused" {
    local a
    for a in --backend-ping-interval=abc --backend-ping-interval=-1 \
             --backend-ping-interval=5x --backend-ping-timeout=0 \
             --backend-ping-timeout=xyz --backend-ping-timeout=-2; do
        run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" "$a" memory 1M
        echo "$a: $status: $output"
        [ "$status" -eq 1 ]
        echo "$output" | grep -q -- "^nbdkit: ${a%%=*} ${a#*=}: expected a number of seconds"
        [ ! -e "$BATS_TEST_TMPDIR/s" ]
    done
    run "$NBDKIT" --help
    echo "$output" | grep -q -- --backend-ping-interval
    echo "$output" | grep -q -- --backend-ping-timeout
}

@test "--backend-ping-interval=0 turns pinging off" {
    start_server -v --backend-ping-interval=0 memory 1M
    sleep 1
    stop_server
    not grep -q "pinging the backend" "$log"
}

@test "a backend that does not offer ping is never pinged" {
    requires nbdsh
    # The faulty backend answers any message it does not know with an
    # error, which for a PING is a protocol violation: a ping would
    # restart it.
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    start_server -v --backend-ping-interval=0.2 --backend-ping-timeout=1 \
        "$FAULTY" "$BATS_TEST_TMPDIR/disk"
    pid=$(backend_pid)
    sleep 2
    nbd_py '
d = open(os.environ["BATS_TEST_TMPDIR"] + "/disk", "rb").read()
assert h.pread(4096, 0) == d[:4096]
'
    cat "$log"
    [ "$(backend_pid)" = "$pid" ]
    stop_server
    not grep -q "pinging the backend" "$log"
    not grep -q "protocol error" "$log"
    not grep -q "restarting the backend" "$log"
}

@test "at SIGTERM the backend is sent SHUTDOWN, answers, unloads and exits" {
    requires nbdsh
    script unload.sh <<'EOF'
#!/bin/sh -
case "$1" in
    config) [ "$2" = marker ] && echo "$3" > "$tmpdir/marker" ;;
    get_size) echo 1048576 ;;
    pread) head -c "$3" /dev/zero ;;
    unload) echo unloaded > "$(cat "$tmpdir/marker")" ;;
    *) exit 2 ;;
esac
EOF
    start_server -v sh "$script" marker="$BATS_TEST_TMPDIR/unloaded"
    nbd_py 'assert h.pread(512, 0) == bytes(512)'
    stop_server
    cat "$log"
    [ "$server_status" -eq 0 ]
    grep -q "sh: sending SHUTDOWN" "$log"
    grep -q "sh: debug: SHUTDOWN: closing the handles and exiting" "$log"
    grep -q "sh: the backend answered SHUTDOWN" "$log"
    grep -q "backend process .* exited$" "$log"
    not grep -q "did not stop within" "$log"
    [ "$(cat "$BATS_TEST_TMPDIR/unloaded")" = unloaded ]
}

@test "the python and perl backends answer SHUTDOWN, then unload" {
    requires nbdsh
    [ -x /usr/bin/python3 ] || skip "/usr/bin/python3 is not installed"
    cat > "$BATS_TEST_TMPDIR/p.py" <<'EOF'
import os
marker = None
def config(key, value):
    global marker
    marker = value
def open(readonly):
    return 1
def get_size(h):
    return 1048576
def pread(h, count, offset):
    return bytearray(count)
def unload():
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"unloaded\n")
    os.close(fd)
EOF
    start_server -v python "$BATS_TEST_TMPDIR/p.py" \
        marker="$BATS_TEST_TMPDIR/python-unloaded"
    nbd_py 'assert h.pread(512, 0) == bytes(512)'
    stop_server
    cat "$log"
    grep -q "python: the backend answered SHUTDOWN" "$log"
    not grep -q "pinging the backend" "$log"
    [ "$(cat "$BATS_TEST_TMPDIR/python-unloaded")" = unloaded ]

    [ -x /usr/bin/perl ] || skip "/usr/bin/perl is not installed"
    cat > "$BATS_TEST_TMPDIR/p.pl" <<'EOF'
my $marker;
sub config { my ($k, $v) = @_; $marker = $v; }
sub open { return 1; }
sub get_size { return 1048576; }
sub pread { my ($h, $count, $offset) = @_; return "\0" x $count; }
sub unload {
    CORE::open (my $f, '>', $marker) or die "$marker: $!";
    print $f "unloaded\n";
    close $f;
}
EOF
    start_server -v perl "$BATS_TEST_TMPDIR/p.pl" \
        marker="$BATS_TEST_TMPDIR/perl-unloaded"
    nbd_py 'assert h.pread(512, 0) == bytes(512)'
    stop_server
    cat "$log"
    grep -q "perl: the backend answered SHUTDOWN" "$log"
    [ "$(cat "$BATS_TEST_TMPDIR/perl-unloaded")" = unloaded ]
}

@test "the systemd watchdog pings with PING: the script runs no method for it" {
    requires nbdinfo
    script calls.sh <<EOF
#!/bin/sh -
echo "\$1" >> "$BATS_TEST_TMPDIR/calls"
case "\$1" in
    get_size) echo 1048576 ;;
    pread) head -c "\$3" /dev/zero ;;
    default_export) echo "" ;;
    *) exit 2 ;;
esac
EOF
    /usr/bin/python3 - "$NBDKIT" "$BATS_TEST_TMPDIR" "$script" <<'PY'
import os, socket, subprocess, sys
nbdkit, d, script = sys.argv[1:4]
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.bind(d + "/notify")
n.settimeout(60)
env = dict(os.environ, NOTIFY_SOCKET=d + "/notify", WATCHDOG_USEC="200000")
p = subprocess.Popen([nbdkit, "-f", "-U", d + "/s", "sh", script], env=env)
assert n.recv(4096).decode() == "READY=1"
pings = 0
while pings < 6:
    pings += n.recv(4096).decode() == "WATCHDOG=1"
p.terminate()
assert p.wait() == 0
PY
    cat "$BATS_TEST_TMPDIR/calls"
    not grep -q default_export "$BATS_TEST_TMPDIR/calls"
}
