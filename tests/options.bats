# The command line: options, their validation, and start-up errors.

load helpers

@test "--version and -V print the version" {
    run "$NBDKIT" --version
    [ "$status" -eq 0 ]
    [[ "$output" =~ ^nbdkit\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
    run "$NBDKIT" -V
    [ "$status" -eq 0 ]
    [[ "$output" =~ ^nbdkit\ [0-9] ]]
}

@test "--help describes the options" {
    run "$NBDKIT" --help
    [ "$status" -eq 0 ]
    echo "$output" | grep -q -- '--readonly'
    echo "$output" | grep -q -- '--backend-timeout'
}

@test "BACKEND --help shows the backend's parameters" {
    run "$NBDKIT" memory --help
    [ "$status" -eq 0 ]
    echo "$output" | grep -q 'size=<SIZE>'
    run "$NBDKIT" file --help
    [ "$status" -eq 0 ]
    echo "$output" | grep -q 'file=<FILENAME>'
}

@test "--dump-plugin describes the backend" {
    run "$NBDKIT" file --dump-plugin
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx 'name=file'
    echo "$output" | grep -qx 'thread_model=parallel'
    echo "$output" | grep -qx 'file_extents=yes'
    echo "$output" | grep -q '^path=/.*nbdkit-file-backend$'
}

@test "a bad size is refused with the value named, exit status 1" {
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" memory size=12Q
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "12Q"
    echo "$output" | grep -q "use k, M, G"
    [ ! -e "$BATS_TEST_TMPDIR/s" ]
}

@test "a missing file is refused with its path named" {
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" file /nonexistent/disk.img
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "/nonexistent/disk.img"
    echo "$output" | grep -q "No such file"
}

@test "an unknown backend parameter is refused" {
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" memory 1M colour=blue
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "colour"
}

@test "a required parameter that is missing is named" {
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" memory
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "size"
}

@test "an unknown backend is refused with its name" {
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" nosuchbackend
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "nosuchbackend"
}

@test "bad option values are refused with the value named" {
    run "$NBDKIT" -p notaport memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "notaport"
    run "$NBDKIT" -p 70000 memory 1M
    [ "$status" -eq 1 ]
    run "$NBDKIT" -t 2000 memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q -- "-t 2000"
    # -t 0 is the default, as nbdkit takes it.
    run "$NBDKIT" -t 0 -U - memory 1M --run 'echo served'
    [ "$status" -eq 0 ]
    [ "$output" = served ]
    run "$NBDKIT" -t abc memory 1M
    [ "$status" -eq 1 ]
    run "$NBDKIT" -D nodot memory 1M
    [ "$status" -eq 1 ]
    run "$NBDKIT" --backend-timeout=-3 memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q -- "-3"
    run "$NBDKIT" --backend-rlimit=colour=3 memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "colour"
    run "$NBDKIT" --backend-user=no-such-user-here memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "no-such-user-here"
}

@test "an unknown option is refused" {
    run "$NBDKIT" --no-such-option memory 1M
    [ "$status" -eq 1 ]
}

@test "-o with an export name, or with -n, is refused with an explanation" {
    run "$NBDKIT" -o -e foo memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "oldstyle protocol (-o) has no export names"
    run "$NBDKIT" -o -n memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "cannot both be given"
    run "$NBDKIT" --mask-handshake=lots memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "mask-handshake=lots"
}

@test "-P writes the server's pid once it is ready" {
    start_server memory 1M
    [ "$(cat "$BATS_TEST_TMPDIR/server.pid")" = "$server_pid" ]
}

@test "-U - serves on a private socket that is removed at exit" {
    requires nbdinfo
    export TMPDIR=$BATS_TEST_TMPDIR
    "$NBDKIT" -f -U - -P "$BATS_TEST_TMPDIR/pid" memory 1M 3>&- &
    server_pid=$!
    wait_until test -s "$BATS_TEST_TMPDIR/pid"
    priv=$(ls -d "$BATS_TEST_TMPDIR"/nbdkit*)
    [ -S "$priv/socket" ]
    run nbdinfo --size "nbd+unix:///?socket=$priv/socket"
    [ "$output" = 1048576 ]
    stop_server
    [ ! -e "$priv" ]
}

@test "-s serves one connection on stdin and stdout" {
    requires nbdsh
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.connect_command(['$NBDKIT', '-s', 'memory', '1M'])
h.pwrite(b'hello', 100)
assert h.pread(5, 100) == b'hello'
assert h.get_size() == 1 << 20
h.shutdown()
"
}

@test "-D flags are passed to the backend" {
    start_server -v -D memory.anything=1 memory 1M
    run "$NBDKIT" -D memory.x=notanumber memory 1M
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "notanumber"
}

@test "without -f the server forks and the parent exits once it is ready" {
    requires nbdinfo
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/sock" -P "$BATS_TEST_TMPDIR/pid" memory 1M
    [ "$status" -eq 0 ]
    # Ready when the parent returned: no waiting needed.
    run nbdinfo --size "nbd+unix:///?socket=$BATS_TEST_TMPDIR/sock"
    [ "$output" = 1048576 ]
    kill "$(cat "$BATS_TEST_TMPDIR/pid")"
}

@test "without -f a configuration error still exits 1" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/sock" memory size=bad
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "bad"
}

@test "the server listens on TCP on the loopback address" {
    requires nbdinfo
    port=$((20000 + RANDOM % 20000))
    "$NBDKIT" -f -i 127.0.0.1 -p "$port" -P "$BATS_TEST_TMPDIR/pid" memory 1M 3>&- &
    server_pid=$!
    wait_until test -s "$BATS_TEST_TMPDIR/pid" || skip "port $port is busy"
    run nbdinfo --size "nbd://127.0.0.1:$port"
    [ "$output" = 1048576 ]
}

@test "-s exits at once when its client has already gone" {
    run timeout 60 "$NBDKIT" -s memory 1M </dev/null
    [ "$status" -eq 0 ]
}

@test "the file backend refuses file= with dir=, and a dir= that is not one" {
    run "$NBDKIT" file file=/dev/null dir=/tmp
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "give only one of them"
    run "$NBDKIT" file dir=/etc/passwd
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "dir=/etc/passwd: not a directory"
}
