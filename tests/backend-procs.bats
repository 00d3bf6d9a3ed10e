# Several backend processes in one server: each is a struct backend_proc
# of its own (process, channel, supervisor, arena).  With
# -D nbdkit.backend_procs=N the server starts N alike and the
# connections take them in turn; a crash of one leaves the others and
# their clients alone.

load helpers

# An sh script that records the pid of the backend process running it
# at each open, and serves 1 MiB of zeroes.
opens_script() {
    cat > "$BATS_TEST_TMPDIR/disk.sh" <<'SH'
#!/bin/bash
case "$1" in
    open) echo "$PPID" >> "$OPENS"; echo handle ;;
    get_size) echo 1048576 ;;
    pread) head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
SH
    chmod +x "$BATS_TEST_TMPDIR/disk.sh"
}

@test "two backend processes serve the connections in turn" {
    requires nbdinfo
    opens_script
    export OPENS=$BATS_TEST_TMPDIR/opens
    start_server -D nbdkit.backend_procs=2 sh "$BATS_TEST_TMPDIR/disk.sh"
    [ "$(pgrep -P "$server_pid" | wc -l)" -eq 2 ]
    for i in 1 2 3 4; do
        nbdinfo --size "$uri" >/dev/null
    done
    # Four opens by two processes, each a child of the server,
    # alternating.
    [ "$(wc -l < "$OPENS")" -eq 4 ]
    [ "$(sort -u "$OPENS" | wc -l)" -eq 2 ]
    for pid in $(sort -u "$OPENS"); do
        pgrep -P "$server_pid" | grep -qx "$pid"
    done
    [ "$(sed -n 1p "$OPENS")" = "$(sed -n 3p "$OPENS")" ]
    [ "$(sed -n 2p "$OPENS")" = "$(sed -n 4p "$OPENS")" ]
    [ "$(sed -n 1p "$OPENS")" != "$(sed -n 2p "$OPENS")" ]
}

@test "memory served by two backend processes is one disk" {
    requires nbdsh
    start_server -D nbdkit.backend_procs=2 memory 16M
    # Written through the first process, read through the second.
    nbd_py '
data = os.urandom(1 << 20)
h.pwrite(data, 3 << 20)
h.flush()
open(os.environ["BATS_TEST_TMPDIR"] + "/data", "wb").write(data)
'
    nbd_py '
data = open(os.environ["BATS_TEST_TMPDIR"] + "/data", "rb").read()
assert h.pread(1 << 20, 3 << 20) == data
'
}

@test "a crash of one backend process leaves the other's client alone" {
    requires nbdsh
    start_server -v -D nbdkit.backend_procs=2 memory 16M
    second=$(sed -n 's/.*memory#1: started backend process \([0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$second" ]
    # A client of the first process keeps a connection open while the
    # second process is killed, and reads what it wrote before.
    /usr/bin/python3 -c "
import nbd, os, signal, time
h = nbd.NBD()
h.connect_uri('$uri')
data = os.urandom(65536)
h.pwrite(data, 0)
os.kill($second, signal.SIGKILL)
for i in range(100):
    assert h.pread(65536, 0) == data
"
    wait_until grep -q "memory#1: backend process $second was killed by signal SIGKILL" "$log"
    wait_until grep -q "memory#1: backend restarted" "$log"
    # The restarted second process serves the same disk.
    nbd_py 'assert h.get_size() == 16 << 20'
    nbd_py 'assert h.get_size() == 16 << 20'
    # (What is not in the log: once the server stopped, all of it is.)
    stop_server
    not grep -q "memory: backend restarted" "$log"
}

@test "-D nbdkit.backend_procs is checked" {
    run "$NBDKIT" -D nbdkit.backend_procs=0 -U - memory 1M --run true
    [ "$status" -eq 1 ]
    [[ "$output" == *"backend_procs=0: the number of backend processes must be 1 to 64"* ]]
}

@test "a backend run by hand suggests the command that runs it" {
    requires nbdinfo
    be=$top_builddir/backends/memory/nbdkit-memory-backend
    # By its path: that path, which nbdkit runs as it is.
    run env -u NBDKIT_HELPER_FD "$be"
    [ "$status" -eq 1 ]
    [[ "$output" == *"run it with 'nbdkit $be'"* ]]
    [[ "$output" == *"or 'nbdkit memory' where it is installed"* ]]
    cd "$top_builddir/backends/memory"
    run env -u NBDKIT_HELPER_FD ./nbdkit-memory-backend
    [[ "$output" == *"run it with 'nbdkit ./nbdkit-memory-backend'"* ]]
    # The suggestion works.
    run "$NBDKIT" -U - ./nbdkit-memory-backend 1M --run 'nbdinfo --size "$uri"'
    [ "$status" -eq 0 ]
    [ "$output" = 1048576 ]
    # Found on PATH: the backend's name.
    run env -u NBDKIT_HELPER_FD PATH="$PWD:$PATH" nbdkit-memory-backend
    [ "$status" -eq 1 ]
    [[ "$output" == *"run it with 'nbdkit memory' (see nbdkit(1))"* ]]
}
