# The backend side of the shared-memory data path (HP_FEATURE_SHM) and
# the batched channel I/O of libnbdkit-backend and of the python
# backend's module: tests/shm-driver.py stands in for the front end,
# starts the real backend programs and checks every byte.

load helpers

DRIVER=$top_srcdir/tests/shm-driver.py
MEMORY=$top_builddir/backends/memory/nbdkit-memory-backend
PYTHON=$top_builddir/backends/python/nbdkit-python-backend
RAMDISK=$top_srcdir/tests/python/ramdisk.py
READONLY=$top_srcdir/tests/python/readonly-v1.py

setup() {
    [ -x /usr/bin/python3 ] || skip "/usr/bin/python3 is not installed"
}

# No server to stop: the driver is the front end.
teardown() {
    :
}

# memory CHECK: run a check of the driver on the C memory backend.
memory() {
    run /usr/bin/python3 "$DRIVER" "$1" --memfd -- "$MEMORY" -- size=64M
    echo "$output"
    [ "$status" -eq 0 ]
}

# py_backend CHECK [PARAMS]: on the python backend with a RAM-disk script.
py_backend() {
    local check=$1
    shift
    run /usr/bin/python3 "$DRIVER" "$check" -- "$PYTHON" -- \
        script="$RAMDISK" "${@:-size=20M}"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "the C library offers shm in HELLO" {
    memory hello
}

@test "pipelined reads and writes in arena slots and inline match byte for byte (C)" {
    memory roundtrip
}

@test "a slot read that welcomes zeros reads zeros from an unwritten disk (C)" {
    memory zeros
}

@test "8 MiB writes and reads inline and in one slot match (C)" {
    memory large
}

@test "2000 requests written in one go are each answered once, correctly (C)" {
    memory flood
}

@test "a slot outside the arena gets EINVAL and the backend keeps serving (C)" {
    memory outside
}

@test "a slot request before any arena is attached gets EINVAL (C)" {
    memory no-arena
}

@test "an arena larger than its file, without a size or without an fd is refused (C)" {
    memory bad-attach
}

@test "a second ATTACH_FD shm replaces the first arena (C)" {
    memory reattach
}

@test "data written through slots survives kill -9 and reads back in the next incarnation" {
    run /usr/bin/python3 "$DRIVER" restart -- "$MEMORY" -- size=64M
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "the python backend offers shm in HELLO" {
    py_backend hello
}

@test "pipelined reads and writes in arena slots and inline match byte for byte (python)" {
    py_backend roundtrip
}

@test "8 MiB writes and reads inline and in one slot match (python)" {
    py_backend large
}

@test "2000 requests written in one go are each answered once, correctly (python)" {
    py_backend flood
}

@test "a slot outside the arena gets EINVAL and the backend keeps serving (python)" {
    py_backend outside
}

@test "a slot request before any arena is attached gets EINVAL (python)" {
    py_backend no-arena
}

@test "an arena larger than its file, without a size or without an fd is refused (python)" {
    py_backend bad-attach
}

@test "a second ATTACH_FD shm replaces the first arena (python)" {
    py_backend reattach
}

@test "slot reads of an API_VERSION 1 script match its data and a slot write gets EPERM" {
    run /usr/bin/python3 "$DRIVER" readonly-v1 -- "$PYTHON" -- \
        script="$READONLY"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "the perl backend does not ask for shm" {
    [ -x /usr/bin/perl ] || skip "/usr/bin/perl is not installed"
    run /usr/bin/python3 "$DRIVER" hello -- \
        "$top_builddir/backends/perl/nbdkit-perl-backend"
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *'"shm" is not among the features'* ]]
}
