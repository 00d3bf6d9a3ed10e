# The log writer (nbdkit/log-writer.c): once the loop runs, log lines
# are written by a thread of their own, so a stderr that nobody reads
# stalls neither the event loop nor the clients.  Lines that do not fit
# in its queue are dropped and counted, and everything queued is
# written before the server exits.
#
# stderr here is a FIFO that the test holds open on fd 5 without
# reading it: after 64 KiB (the pipe's buffer) every write to it waits.
# With -v every request logs a line, so 30000 requests make about
# 1.5 MiB of log, past the pipe and the writer's 1 MiB queue.

load helpers

setup() {
    requires nbdsh
    fifo=$BATS_TEST_TMPDIR/stderr
    mkfifo "$fifo"
    exec 5<>"$fifo"
    sock=$BATS_TEST_TMPDIR/sock
    export NBDKIT_LOOP_WATCHDOG_FILE=$BATS_TEST_TMPDIR/watchdog
    : > "$NBDKIT_LOOP_WATCHDOG_FILE"
}

teardown() {
    if [ -n "${pid:-}" ]; then
        # Drain stderr so that the server can finish its log and exit.
        [ -n "${reader:-}" ] || { cat <&5 > /dev/null & reader=$!; }
        kill -TERM "$pid" 2>/dev/null || true
        wait_until eval '! kill -0 $pid 2>/dev/null' ||
            kill -KILL "$pid" 2>/dev/null || true
    fi
    [ -z "${reader:-}" ] || kill "$reader" 2>/dev/null || true
    exec 5<&-
}

# 30000 reads of 512 bytes, each checked against what was written.
many_requests() {
    timeout 120 nbdsh -u "nbd+unix:///?socket=$sock" -c '
h.pwrite(bytes(range(256)) * 2, 4096)
for i in range(30000):
    assert h.pread(512, 4096) == bytes(range(256)) * 2
print("done")'
}

@test "a stderr nobody reads stalls neither the loop nor the clients" {
    "$NBDKIT" -f -v -U "$sock" memory 1M 2>"$fifo" </dev/null &
    pid=$!
    wait_until test -S "$sock"
    run many_requests
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = done ]
    # A new client is served while stderr is still full.
    nbdsh -u "nbd+unix:///?socket=$sock" -c 'assert h.get_size() == 1048576'
    not grep "the loop blocked" "$NBDKIT_LOOP_WATCHDOG_FILE"
}

# A line logged once stderr is read again: a new connection's, up to
# the first that gets through (the queue may still be full when one
# comes).
logged_again() {
    nbdinfo --size "nbd+unix:///?socket=$sock" > /dev/null &&
        [ "$(grep -c "new connection" "$BATS_TEST_TMPDIR/log")" -ge 2 ]
}

@test "lines past the queue are counted in their place; the last ones are written at exit" {
    requires nbdinfo
    "$NBDKIT" -f -v -U "$sock" memory 1M 2>"$fifo" </dev/null &
    pid=$!
    wait_until test -S "$sock"
    run many_requests
    [ "$status" -eq 0 ]
    # Now read stderr.  The lines dropped are counted where they were.
    cat <&5 > "$BATS_TEST_TMPDIR/log" &
    reader=$!
    wait_until grep -q "log lines were dropped: stderr was not being read" \
        "$BATS_TEST_TMPDIR/log"
    n=$(grep -o "warning: [0-9]* log lines" "$BATS_TEST_TMPDIR/log" |
            head -1 | tr -dc 0-9)
    [ "$n" -gt 0 ]
    # Once lines get through again, stop the server: it exits only
    # after writing its last lines.
    wait_until logged_again
    kill -TERM "$pid"
    wait_until eval '! kill -0 $pid 2>/dev/null'
    pid=
    wait_until grep -q "debug: shutting down" "$BATS_TEST_TMPDIR/log"
    wait_until grep -q "debug: .*backend process .* exited" "$BATS_TEST_TMPDIR/log"
}
