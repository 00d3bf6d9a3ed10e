# The loop watchdog (nbdkit/loop-watchdog.c): a turn of the event loop
# that blocks is reported, in the log and in NBDKIT_LOOP_WATCHDOG_FILE;
# tests/run-tests sets that file for every server of the suite and
# fails when anything was written to it.  Here the blocking is real: a
# system call of the front end held for 50 ms by strace's fault
# injection.

load helpers

@test "a server in ordinary use reports no blocked turn of its loop" {
    export NBDKIT_LOOP_WATCHDOG_FILE=$BATS_TEST_TMPDIR/watchdog
    touch "$NBDKIT_LOOP_WATCHDOG_FILE"
    start_server -D nbdkit.loop_watchdog=1 memory 32M
    random_file "$BATS_TEST_TMPDIR/src" 32M
    nbdcopy "$BATS_TEST_TMPDIR/src" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/dst"
    [ "$(sha "$BATS_TEST_TMPDIR/src")" = "$(sha "$BATS_TEST_TMPDIR/dst")" ]
    stop_server
    not grep "the loop blocked" "$log"
    not grep -q "the loop blocked" "$NBDKIT_LOOP_WATCHDOG_FILE"
}

@test "a system call that blocks 50 ms on the loop is reported, in the log and the file" {
    export NBDKIT_LOOP_WATCHDOG_FILE=$BATS_TEST_TMPDIR/watchdog
    # Only the front end's main thread is traced (no -f): every writev
    # it makes after the first ones sleeps 50 ms before it runs.
    start_traced_server -e trace=writev \
        -e inject=writev:delay_enter=50000:when=5+ -- memory 1M
    nbdsh -u "$uri" -c 'for i in range(5): h.pread(4096, 0)'
    stop_traced_server
    cat "$log"
    grep -q "warning: loop watchdog: one turn of the event loop took .* asleep): the loop blocked" "$log"
    # It says where the loop slept: writev is system call 20 on x86_64,
    # and strace holds the thread in ptrace_stop.
    if [ "$(uname -m)" = x86_64 ]; then
        grep -q "the loop blocked: system call 20 .*ptrace_stop" "$log"
    fi
    grep -q "loop watchdog" "$NBDKIT_LOOP_WATCHDOG_FILE"
}

@test "without the flag or the file the watchdog is off" {
    unset NBDKIT_LOOP_WATCHDOG_FILE
    start_server -v memory 1M
    nbdinfo --size "$uri"
    stop_server
    not grep "loop watchdog" "$log"
    start_server -v -D nbdkit.loop_watchdog=1 memory 1M
    wait_until grep -q "loop watchdog: reporting turns of the loop over 10 ms" "$log"
}
