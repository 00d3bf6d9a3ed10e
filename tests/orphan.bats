# Backends die with the server: when the front end is killed with
# SIGKILL (nothing of it runs any more), its backend and every process
# the backend started are gone within a second.  The backend leads a
# process group of its own; the test kills the front end and watches
# that group empty.

load helpers

# The processes of group $1 that are still alive (a zombie is dead: it
# only waits for its new parent, init, to reap it).
group_alive() {
    local p st
    for p in $(pgrep -g "$1"); do
        st=$(ps -o stat= -p "$p" 2>/dev/null) || continue
        case "$st" in Z*) ;; *) echo "$p" ;; esac
    done
}

# kill_front_end_and_check: SIGKILL the front end ($server_pid), then
# the backend's group ($pgid) must have no live process within 2 s.
kill_front_end_and_check() {
    local i left
    kill -KILL "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    for i in $(seq 20); do
        left=$(group_alive "$pgid")
        [ -z "$left" ] && break
        sleep 0.1
    done
    if [ -n "$left" ]; then
        echo "still running 2 s after the front end was killed:" >&2
        ps -o pid,ppid,pgid,stat,args -p "$(echo $left | tr ' ' ,)" >&2
        return 1
    fi
}

# Sets $pgid once the backend of the front end leads a process group
# of its own (its pid).
backend_group() {
    local b g
    b=$(pgrep -P "$server_pid" | head -n 1)
    [ -n "$b" ] || return 1
    g=$(ps -o pgid= -p "$b" | tr -d ' ')
    [ "$g" = "$b" ] || return 1
    pgid=$b
}

# find_backend_group N: the backend's group, once it has N live
# processes (the backend and what it started).
find_backend_group() {
    wait_until backend_group
    wait_until eval '[ "$(group_alive "$pgid" | wc -l)" -ge '"$1"' ]'
}

teardown() {
    [ -n "${client_pid:-}" ] && { kill "$client_pid" 2>/dev/null; wait "$client_pid" 2>/dev/null || true; }
    # Whatever a failed test left behind (never the test's own group).
    if [ -n "${pgid:-}" ] && [ "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]; then
        kill -KILL -- "-$pgid" 2>/dev/null
    fi
    stop_server
}

@test "a data backend running an endless command dies with the front end" {
    requires pgrep ps
    # The command runs at start-up and never ends: the server never gets
    # ready, so it is started here rather than with start_server.
    log=$BATS_TEST_TMPDIR/server.log
    "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/sock" \
        data '<(while :; do sleep 0.1; done)' </dev/null >/dev/null 2>"$log" 3>&- &
    server_pid=$!
    find_backend_group 2
    kill_front_end_and_check
}

@test "an sh backend whose script loops in pread dies with the front end" {
    requires pgrep ps nbdsh
    script=$BATS_TEST_TMPDIR/loop.sh
    cat > "$script" <<EOF
#!/bin/sh
case "\$1" in
    get_size) echo 1M ;;
    pread) : > "$BATS_TEST_TMPDIR/pread"; while :; do sleep 0.1; done ;;
    *) exit 2 ;;
esac
EOF
    chmod +x "$script"
    start_server sh "$script"
    find_backend_group 1
    nbd_py 'h.pread(512, 0)' >/dev/null 2>&1 &
    client_pid=$!
    wait_until test -e "$BATS_TEST_TMPDIR/pread"
    # The backend, the script's shell and its sleep.
    wait_until eval '[ "$(group_alive "$pgid" | wc -l)" -ge 2 ]'
    kill_front_end_and_check
}

@test "an idle memory backend dies with the front end" {
    requires pgrep ps
    start_server memory 1M
    find_backend_group 1
    kill_front_end_and_check
}

# The supervisor's own SIGKILL (a backend found hung by ping, a
# protocol error, a stop that timed out) takes the backend's whole
# process group: a script the backend was running does not go on
# after it.
@test "a hung backend killed by the supervisor takes its running script with it" {
    requires pgrep ps nbdsh
    script=$BATS_TEST_TMPDIR/loop.sh
    cat > "$script" <<EOF
#!/bin/sh
case "\$1" in
    get_size) echo 1M ;;
    pread) echo \$\$ > "$BATS_TEST_TMPDIR/pread"; while :; do sleep 0.1; done ;;
    *) exit 2 ;;
esac
EOF
    chmod +x "$script"
    start_server --backend-ping-interval=1 --backend-ping-timeout=2 \
        sh "$script"
    find_backend_group 1
    nbd_py 'h.pread(512, 0)' >/dev/null 2>&1 &
    client_pid=$!
    wait_until test -s "$BATS_TEST_TMPDIR/pread"
    scriptpid=$(cat "$BATS_TEST_TMPDIR/pread")
    kill -0 "$scriptpid"
    # Stopped, the backend answers no ping: the supervisor kills it.
    kill -STOP "$pgid"
    wait_until grep -q "did not answer a ping" "$log"
    wait_until eval '! kill -0 $scriptpid 2>/dev/null ||
                     ps -o stat= -p $scriptpid | grep -q "^Z"'
}
