# Running as a service (nbdkit-service(1)): socket activation,
# sd_notify with a NOTIFY_SOCKET the test owns, logging, inetd-style -s,
# -u/-g, --vsock, --selinux-label, and the systemd unit files.

load helpers

# Run the server with sockets passed as systemd does (LISTEN_FDS,
# LISTEN_PID = the server's own pid), from a small python launcher:
# activate_server SOCKET-PATH... -- NBDKIT-ARGS...
activate_server() {
    log=$BATS_TEST_TMPDIR/server.log
    /usr/bin/python3 - "$NBDKIT" "$@" 2>"$log" 3>&- <<'PY' &
import os, socket, sys
nbdkit, args = sys.argv[1], sys.argv[2:]
paths = args[:args.index("--")]
rest = args[args.index("--") + 1:]
socks = []
for p in paths:
    s = socket.socket(socket.AF_UNIX)
    s.bind(p)
    s.listen(8)
    socks.append(s)
for i, s in enumerate(socks):
    if s.fileno() != 3 + i:
        os.dup2(s.fileno(), 3 + i)
    os.set_inheritable(3 + i, True)
env = dict(os.environ, LISTEN_FDS=str(len(socks)), LISTEN_PID=str(os.getpid()))
os.execve(nbdkit, [nbdkit] + rest, env)
PY
    server_pid=$!
}

@test "socket activation: the server serves on every socket passed" {
    requires nbdinfo
    activate_server "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b" -- -v memory 2M
    wait_until test -S "$BATS_TEST_TMPDIR/b"
    [ "$(nbdinfo --size "nbd+unix:///?socket=$BATS_TEST_TMPDIR/a")" = 2097152 ]
    [ "$(nbdinfo --size "nbd+unix:///?socket=$BATS_TEST_TMPDIR/b")" = 2097152 ]
    # -f is implied: still the same process, in the foreground.
    kill -0 "$server_pid"
    grep -q "socket activation: listening on file descriptor 4" "$log"
}

@test "socket activation refuses -i, -p, --run, -s and -U" {
    for opt in "-p 10809" "-i 127.0.0.1" "-U $BATS_TEST_TMPDIR/x" "-s" \
               "--run true"; do
        rm -f "$BATS_TEST_TMPDIR/a"
        # shellcheck disable=SC2086
        activate_server "$BATS_TEST_TMPDIR/a" -- $opt memory 1M
        wait "$server_pid" || status=$?
        [ "$status" -eq 1 ]
        grep -q "socket activation (LISTEN_FDS is set)" "$log"
    done
    server_pid=
}

@test "socket activation with systemd-socket-activate" {
    requires systemd-socket-activate nbdinfo
    systemd-socket-activate -l "$BATS_TEST_TMPDIR/sa" "$NBDKIT" memory 1M \
        2>/dev/null 3>&- &
    server_pid=$!
    wait_until test -S "$BATS_TEST_TMPDIR/sa"
    [ "$(nbdinfo --size "nbd+unix:///?socket=$BATS_TEST_TMPDIR/sa")" = 1048576 ]
}

@test "sd_notify: READY=1, STATUS, WATCHDOG=1 pings and STOPPING=1" {
    requires nbdinfo
    /usr/bin/python3 - "$NBDKIT" "$BATS_TEST_TMPDIR" <<'PY'
import os, socket, subprocess, sys
nbdkit, d = sys.argv[1], sys.argv[2]
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.bind(d + "/notify")
n.settimeout(60)
env = dict(os.environ, NOTIFY_SOCKET=d + "/notify", WATCHDOG_USEC="200000")
p = subprocess.Popen([nbdkit, "-f", "-U", d + "/s", "memory", "1M"], env=env)
msgs = [n.recv(4096).decode()]
assert msgs[0] == "READY=1", msgs
# While a client is connected the status says so.
h = subprocess.Popen(["/usr/bin/python3", "-c",
    "import nbd, time; h = nbd.NBD(); h.connect_uri('nbd+unix:///?socket=%s/s'); "
    "print('c', flush=True); time.sleep(30)" % d], stdout=subprocess.PIPE)
h.stdout.readline()
while "1 connection," not in msgs[-1]:
    msgs.append(n.recv(4096).decode())
h.kill()
pings = 0
while pings < 3:
    m = n.recv(4096).decode()
    msgs.append(m)
    pings += m == "WATCHDOG=1"
p.terminate()
assert p.wait() == 0
while msgs[-1] != "STOPPING=1":
    msgs.append(n.recv(4096).decode())
print(msgs)
assert any(m.startswith("STATUS=serving, 0 connections") for m in msgs)
PY
}

@test "--log=null drops errors; --log=stderr keeps them after forking" {
    run "$NBDKIT" -f --log=null -U "$BATS_TEST_TMPDIR/s" memory size=bad
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    run "$NBDKIT" --log=stderr -U "$BATS_TEST_TMPDIR/s" memory size=bad
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "bad"
    run "$NBDKIT" --log=journal memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q -- "--log=journal: expected stderr, syslog or null"
}

@test "under journald, messages carry their syslog priority" {
    requires nbdinfo
    mkdir "$BATS_TEST_TMPDIR/d"
    err=$BATS_TEST_TMPDIR/stderr
    : > "$err"
    js=$(stat -c '%d:%i' "$err")
    JOURNAL_STREAM=$js "$NBDKIT" -f -v -U "$BATS_TEST_TMPDIR/s" \
        -P "$BATS_TEST_TMPDIR/pid" file dir="$BATS_TEST_TMPDIR/d" \
        2>>"$err" 3>&- &
    server_pid=$!
    wait_until test -s "$BATS_TEST_TMPDIR/pid"
    # The default export of dir= cannot be opened: an error is logged.
    run nbdinfo "nbd+unix:///?socket=$BATS_TEST_TMPDIR/s"
    [ "$status" -ne 0 ]
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    server_pid=
    cat "$err"
    grep -q '^<3>.*there is no default export' "$err"
    grep -q '^<7>nbdkit: debug: ' "$err"
    # Every line the server wrote starts with a priority.
    not grep -v '^<[0-7]>' "$err"
}

@test "-s works under an inetd-style launcher (socat)" {
    requires socat nbdinfo
    socat "UNIX-LISTEN:$BATS_TEST_TMPDIR/s,fork" \
        "EXEC:$NBDKIT -s memory 3M" 3>&- &
    server_pid=$!
    wait_until test -S "$BATS_TEST_TMPDIR/s"
    [ "$(nbdinfo --size "nbd+unix:///?socket=$BATS_TEST_TMPDIR/s")" = 3145728 ]
    [ "$(nbdinfo --size "nbd+unix:///?socket=$BATS_TEST_TMPDIR/s")" = 3145728 ]
}

@test "-u and -g drop the privileges of the server and its backend" {
    [ "$(id -u)" -eq 0 ] || skip "needs root"
    requires nbdinfo
    # The pid file is written once the server runs as nobody.
    chmod 1777 "$BATS_TEST_TMPDIR"
    start_server -u nobody -g nogroup memory 1M
    [ "$(nbdinfo --size "$uri")" = 1048576 ]
    [ "$(awk '/^Uid:/ {print $2}' /proc/$server_pid/status)" = "$(id -u nobody)" ]
    [ "$(awk '/^Gid:/ {print $2}' /proc/$server_pid/status)" = "$(getent group nogroup | cut -d: -f3)" ]
    bpid=$(backend_pid)
    [ "$(awk '/^Uid:/ {print $2}' /proc/$bpid/status)" = "$(id -u nobody)" ]
}

@test "-u with an unknown user, or without root, is refused" {
    run "$NBDKIT" -u no-such-user-here memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q -- "-u no-such-user-here: no such user"
    if [ "$(id -u)" -eq 0 ]; then
        run setpriv --reuid=nobody --regid=nogroup --clear-groups \
            "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/x" -u root memory 1M
        [ "$status" -eq 1 ]
        echo "$output" | grep -q "cannot change"
    fi
}

@test "--vsock serves where the kernel has AF_VSOCK, or says why not" {
    run timeout 5 "$NBDKIT" -f --vsock -p 10809 memory 1M --run true
    echo "$output"
    if [ "$status" -ne 0 ]; then
        echo "$output" | grep -q -- "--vsock"
    fi
    run "$NBDKIT" --vsock -p -1 memory 1M
    [ "$status" -eq 1 ]
}

@test "--selinux-label is applied, or refused with the reason, never ignored" {
    label=system_u:object_r:svirt_socket_t:s0
    if "$NBDKIT" --dump-config | grep -qx selinux=no; then
        run "$NBDKIT" --selinux-label=$label memory 1M
        [ "$status" -eq 1 ]
        echo "$output" | grep -q "without SELinux support"
    elif ! command -v selinuxenabled >/dev/null || ! selinuxenabled; then
        # Built with libselinux on a system without SELinux.
        run "$NBDKIT" --selinux-label=$label memory 1M
        [ "$status" -eq 1 ]
        echo "$output" | grep -q "SELinux is not enabled on this system"
    else
        run "$NBDKIT" --selinux-label=not-a-context memory 1M
        [ "$status" -eq 1 ]
        echo "$output" | grep -q "not a valid SELinux context"
        start_server --selinux-label=$label memory 1M
        [ "$(nbdinfo --size "$uri")" = 1048576 ]
    fi
}

@test "the generated unit files start the configured nbdkit" {
    # tests/packaging.bats verifies them as installed, in a private root.
    for u in nbdkit.service nbdkit@.service; do
        f=$top_builddir/contrib/systemd/$u
        [ -f "$f" ] || skip "$f is not generated (run make)"
        grep -q '^ExecStart=/.*/nbdkit ' "$f"
        not grep -n '@[a-zA-Z_]*@' "$f"
    done
}
