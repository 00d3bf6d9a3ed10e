# Passthrough: the memory and file backends hand their descriptor to
# the front end at OPEN, which then does the data I/O itself
# (docs/nbdkit-internals.pod).  Every test runs with passthrough on and
# off (-D nbdkit.passthrough=0), with real clients, every byte checked.
# On, a descriptor whose data is in memory (the memory backend's memfd,
# a file on tmpfs) has its small requests done on the loop's thread;
# WORKERS turns that off (and the reads from a mapping of the memfd),
# so that the worker pool's path is tested too.

load helpers

ON="-D nbdkit.passthrough=1"
WORKERS="-D nbdkit.passthrough=1 -D nbdkit.passthrough_inline=0 -D nbdkit.passthrough_mmap=0"
OFF="-D nbdkit.passthrough=0"

# A directory on tmpfs, for the file backend's in-memory case; its
# name is fixed per test ($$ is the same in a subshell), so that
# teardown removes it even when the test failed half-way.
shm_dir() {
    [ -d /dev/shm ] && [ -w /dev/shm ] || skip "no writable /dev/shm here"
    mkdir -p "$(shm_dir_name)" && shm_dir_name
}
shm_dir_name() {
    echo "/dev/shm/nbdkit-passthrough.$$.$BATS_TEST_NUMBER"
}

teardown() {
    stop_server
    rm -rf "$(shm_dir_name)"
}

# check_path MODE: after stop_server, the log says whether the front end
# did the I/O (on) or the backend did (off).
check_path() {
    if [ "$1" = "$ON" ]; then
        grep -q "passthrough: the front end does the I/O" "$log"
        grep -Eq "passthrough: [1-9][0-9]* requests were done in the front end" "$log"
    elif [ "$1" = "$WORKERS" ]; then
        grep -Eq "passthrough: [1-9][0-9]* requests were done in the front end on this descriptor, 0 of them on the loop" "$log"
        not grep -Eq "passthrough: .*, [1-9][0-9]* of them on the loop" "$log"
    else
        not grep -q "passthrough:" "$log"
    fi
}

# check_inline MODE: with ON, the log shows requests done on the loop's
# thread (the data was in memory).
check_inline() {
    if [ "$1" = "$ON" ]; then
        grep -q "in memory: small requests on the loop" "$log"
        grep -Eq "passthrough: .*, [1-9][0-9]* of them on the loop" "$log"
    fi
}

copy_in_and_out() {
    local conns=$1
    nbdcopy --connections="$conns" "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy --connections="$conns" "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
}

@test "nbdcopy in and out of the memory backend, 1 and 4 connections" {
    requires nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 64M
    for mode in "$ON" "$WORKERS" "$OFF"; do
        for conns in 1 4; do
            start_server -v $mode memory 64M
            copy_in_and_out "$conns"
            stop_server
            check_path "$mode"
            check_inline "$mode"
        done
    done
}

@test "nbdcopy in and out of the file backend, 1 and 4 connections" {
    requires nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 64M
    for mode in "$ON" "$OFF"; do
        for conns in 1 4; do
            rm -f "$BATS_TEST_TMPDIR/disk"
            truncate -s 64M "$BATS_TEST_TMPDIR/disk"
            start_server -v $mode file "$BATS_TEST_TMPDIR/disk"
            copy_in_and_out "$conns"
            stop_server
            check_path "$mode"
            cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/disk"
        done
    done
}

@test "nbdcopy in and out of a file on tmpfs, 1 and 4 connections" {
    requires nbdcopy
    local dir
    dir=$(shm_dir)
    random_file "$BATS_TEST_TMPDIR/in" 64M
    for mode in "$ON" "$WORKERS" "$OFF"; do
        for conns in 1 4; do
            rm -f "$dir/disk"
            truncate -s 64M "$dir/disk"
            start_server -v $mode file "$dir/disk"
            copy_in_and_out "$conns"
            stop_server
            check_path "$mode"
            check_inline "$mode"
            cmp "$BATS_TEST_TMPDIR/in" "$dir/disk"
            # Writes to a file on tmpfs are received in place, and
            # its reads sent from the file (sendfile).
            if [ "$mode" = "$ON" ]; then
                grep -Eq "[1-9][0-9]* writes received in place\)" "$log"
                grep -q "; reads without a copy for plain clients (sendfile)" "$log"
                grep -Eq "\([1-9][0-9]* reads without a copy," "$log"
            fi
        done
    done
    rm -rf "$dir"
}

# The file backend's file is not sealed: someone may shrink it while
# the server writes into its mapping.  Only the kernel writes there, so
# a page past the new end fails the recv (no SIGBUS), and the rest of
# the write goes by pwrite, which extends the file as a write would.
@test "a file on tmpfs shrunk under writes received in place" {
    requires nbdsh
    local dir
    dir=$(shm_dir)
    truncate -s 8M "$dir/disk"
    start_server -v file "$dir/disk"
    nbd_py '
import subprocess
data = os.urandom(1 << 20)
h.pwrite(data, 6 << 20)
subprocess.check_call(["truncate", "-s", "4M", "'"$dir/disk"'"])
h.pwrite(data, 5 << 20)
h.pwrite(data[::-1], 6 << 20)
h.pwrite(data, 1 << 20)
assert h.pread(1 << 20, 5 << 20) == data
assert h.pread(1 << 20, 6 << 20) == data[::-1]
assert h.pread(1 << 20, 1 << 20) == data
'
    kill -0 "$server_pid"
    stop_server
    grep -Eq "[1-9][0-9]* writes received in place\)" "$log"
    grep -q "a page of the mapping faulted; pwrite takes over" "$log"
    rm -rf "$dir"
}

# The file backend's file on tmpfs is not sealed: its large reads to a
# plain client are sent from the file by sendfile, the mapping never
# read; through TLS, or with -D nbdkit.passthrough_sendfile=0, they are
# copied.  Someone may shrink the file while a reply is still being
# sent: the rest of it is zeroes, and the server goes on.
@test "a file on tmpfs: reads by sendfile, not through TLS; shrunk under one" {
    requires nbdsh nbdcopy psktool
    local dir
    dir=$(shm_dir)
    random_file "$dir/disk" 32M
    cp "$dir/disk" "$BATS_TEST_TMPDIR/orig"
    mkdir -p "$BATS_TEST_TMPDIR/psk"
    psktool -u alice -p "$BATS_TEST_TMPDIR/psk/keys.psk" >/dev/null
    for how in plain readonly tls nosendfile; do
        case $how in
            plain) start_server -v file "$dir/disk" ;;
            readonly) start_server -v -r file "$dir/disk" ;;
            tls) start_server -v --tls=require \
                     --tls-psk="$BATS_TEST_TMPDIR/psk/keys.psk" file "$dir/disk"
                 uri="nbds+unix://alice@/?socket=$sock&tls-psk-file=$BATS_TEST_TMPDIR/psk/keys.psk" ;;
            nosendfile) start_server -v -D nbdkit.passthrough_sendfile=0 \
                            file "$dir/disk" ;;
        esac
        nbdcopy --connections=4 "$uri" "$BATS_TEST_TMPDIR/out"
        cmp "$BATS_TEST_TMPDIR/orig" "$BATS_TEST_TMPDIR/out"
        stop_server
        rm -f "$BATS_TEST_TMPDIR/out"
        case $how in
            plain|readonly)
                grep -Eq "\([1-9][0-9]* reads without a copy," "$log" ;;
            *)
                not grep -Eq "\([1-9][0-9]* reads without a copy," "$log" ;;
        esac
    done

    # A 32 MiB read that the client does not take yet: the socket fills
    # and the reply waits, half sent.  The file is cut to nothing, then
    # the client takes the reply: what was sent, then zeroes.
    start_server -v file "$dir/disk"
    nbd_py '
import subprocess
orig = open("'"$BATS_TEST_TMPDIR/orig"'", "rb").read()
buf = nbd.Buffer(32 << 20)
cookie = h.aio_pread(buf, 0)
subprocess.check_call(["truncate", "-s", "0", "'"$dir/disk"'"])
while not h.aio_command_completed(cookie):
    h.poll(-1)
got = buf.to_bytearray()
sent = len(got.rstrip(b"\0"))
assert got[:sent] == orig[:sent], "the bytes sent are the file'"'"'s"
assert sent < len(orig), "the rest are zeroes"
assert h.pread(4096, 0) == bytes(4096)
'
    kill -0 "$server_pid"
    stop_server
    grep -Eq "\([1-9][0-9]* reads without a copy," "$log"
    rm -rf "$dir"
}

@test "the null backend: /dev/zero reads zeroes and discards writes" {
    requires nbdsh nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 8M
    for mode in "$ON" "$WORKERS" "$OFF"; do
        start_server -v $mode null 64M
        nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
        nbdcopy --no-extents "$uri" "$BATS_TEST_TMPDIR/out"
        [ "$(stat -c %s "$BATS_TEST_TMPDIR/out")" -eq $((64 << 20)) ]
        cmp "$BATS_TEST_TMPDIR/out" <(head -c 64M /dev/zero)
        nbd_py '
h.pwrite(b"x" * 4096, 0, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 0) == bytes(4096)
h.zero(64 << 20, 0, nbd.CMD_FLAG_FAST_ZERO)
h.trim(1 << 20, 4096)
h.flush()
h.cache(4096, 0)
assert h.pread(1 << 20, 1 << 20) == bytes(1 << 20)
'
        stop_server
        check_path "$mode"
        check_inline "$mode"
        if [ "$mode" != "$OFF" ]; then
            grep -q "passthrough: .*/dev/zero: zeroes, writes discarded" "$log"
        fi
        rm -f "$BATS_TEST_TMPDIR/out"
    done
}

# A read that is all hole, to a client without structured replies, is
# answered with the bytes of a shared mapping of zero pages: every
# size up to 32 MiB, beside data, from memory and null, every byte
# checked.
@test "without structured replies, holes read as zeroes beside data" {
    requires nbdsh
    for backend in "memory 64M" "null 64M"; do
        for mode in "$ON" "$OFF"; do
            start_server $mode $backend
            nbdsh -c '
h.set_request_structured_replies(False)
h.connect_uri("'"$uri"'")
assert not h.get_structured_replies_negotiated()
data = "memory" in "'"$backend"'"
if data:
    h.pwrite(b"d" * 65536, 1 << 20)
for n in (512, 65536, 1 << 20, 32 << 20):
    assert h.pread(n, 2 << 20) == bytes(n), n
b = h.pread(32 << 20, 0)
if data:
    assert b[:1 << 20] == bytes(1 << 20)
    assert b[1 << 20:(1 << 20) + 65536] == b"d" * 65536
    assert b[(1 << 20) + 65536:] == bytes((31 << 20) - 65536)
else:
    assert b == bytes(32 << 20)
'
            stop_server
        done
    done
}

# The memory backend seals its memfd, and the front end answers large
# reads from a mapping of it, without a copy, when no filter is in the
# way: over plain sockets and TLS, every byte checked; with a filter,
# or -D nbdkit.passthrough_mmap=0, the reads are copied as before.
@test "memory: reads without a copy, plain and TLS; copied under a filter" {
    requires nbdcopy psktool
    random_file "$BATS_TEST_TMPDIR/in" 32M
    mkdir -p "$BATS_TEST_TMPDIR/psk"
    psktool -u alice -p "$BATS_TEST_TMPDIR/psk/keys.psk" >/dev/null
    tls_uri() {
        echo "nbds+unix://alice@/?socket=$sock&tls-psk-file=$BATS_TEST_TMPDIR/psk/keys.psk"
    }
    for how in plain tls filter nommap; do
        case $how in
            plain) start_server -v memory 32M ;;
            tls) start_server -v --tls=require \
                     --tls-psk="$BATS_TEST_TMPDIR/psk/keys.psk" memory 32M
                 uri=$(tls_uri) ;;
            filter) start_server -v --filter=noparallel memory 32M ;;
            nommap) start_server -v -D nbdkit.passthrough_mmap=0 memory 32M ;;
        esac
        nbdcopy --connections=4 "$BATS_TEST_TMPDIR/in" "$uri"
        nbdcopy --connections=4 "$uri" "$BATS_TEST_TMPDIR/out"
        cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
        # A sparse read: holes are not read through the mapping.
        /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri('$uri')
h.zero(1 << 20, 0)
assert h.pread(2 << 20, 0)[: 1 << 20] == bytes(1 << 20)
"
        stop_server
        rm -f "$BATS_TEST_TMPDIR/out"
        case $how in
            plain|tls)
                grep -q "; reads without a copy" "$log"
                grep -Eq "\([1-9][0-9]* reads without a copy," "$log" ;;
            *)
                not grep -Eq "\([1-9][0-9]* reads without a copy," "$log" ;;
        esac
    done
}

@test "qemu-img compare finds the copy equal" {
    requires qemu-img nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 16M
    for mode in "$ON" "$OFF"; do
        start_server -v $mode memory 16M
        nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
        qemu-img compare -f raw -F raw "$BATS_TEST_TMPDIR/in" "$uri"
        stop_server
        check_path "$mode"
    done
}

zero_trim_fua() {
    nbd_py '
data = os.urandom(4 << 20)
h.pwrite(data, 0, nbd.CMD_FLAG_FUA)
assert h.pread(4 << 20, 0) == data
h.zero(1 << 20, 1 << 20)
h.zero(4096, 3 << 20, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
h.trim(65536, 2 << 20)
h.flush()
got = h.pread(4 << 20, 0)
want = bytearray(data)
want[1 << 20 : 2 << 20] = bytes(1 << 20)
want[3 << 20 : (3 << 20) + 4096] = bytes(4096)
want[2 << 20 : (2 << 20) + 65536] = bytes(65536)
assert got == want
if h.can_fast_zero():
    h.zero(8192, 0, nbd.CMD_FLAG_FAST_ZERO)
    assert h.pread(8192, 0) == bytes(8192)
h.cache(1 << 20, 0)
'
}

@test "zero, trim and FUA writes read back as expected (memory)" {
    requires nbdsh
    for mode in "$ON" "$WORKERS" "$OFF"; do
        start_server -v $mode memory 8M
        zero_trim_fua
        stop_server
        check_path "$mode"
        check_inline "$mode"
    done
}

@test "zero, trim and FUA writes read back as expected (file)" {
    requires nbdsh
    for mode in "$ON" "$OFF"; do
        rm -f "$BATS_TEST_TMPDIR/disk"
        truncate -s 8M "$BATS_TEST_TMPDIR/disk"
        start_server -v $mode file "$BATS_TEST_TMPDIR/disk"
        zero_trim_fua
        stop_server
        check_path "$mode"
    done
}

@test "zero, trim and FUA writes read back as expected (file on tmpfs)" {
    requires nbdsh
    local dir
    dir=$(shm_dir)
    for mode in "$ON" "$WORKERS" "$OFF"; do
        rm -f "$dir/disk"
        truncate -s 8M "$dir/disk"
        start_server -v $mode file "$dir/disk"
        zero_trim_fua
        stop_server
        check_path "$mode"
        check_inline "$mode"
    done
    rm -rf "$dir"
}

@test "a FUA write is in the file when it is acknowledged" {
    requires nbdsh
    for mode in "$ON" "$OFF"; do
        truncate -s 1M "$BATS_TEST_TMPDIR/disk"
        start_server -v $mode file "$BATS_TEST_TMPDIR/disk"
        nbd_py '
data = os.urandom(65536)
h.pwrite(data, 131072, nbd.CMD_FLAG_FUA)
with open(os.environ["BATS_TEST_TMPDIR"] + "/disk", "rb") as f:
    f.seek(131072)
    assert f.read(65536) == data
'
        stop_server
        check_path "$mode"
        rm -f "$BATS_TEST_TMPDIR/disk"
    done
}

@test "filters over a passthrough backend see every request (cow, blocksize)" {
    requires nbdcopy nbdsh
    random_file "$BATS_TEST_TMPDIR/in" 8M
    for mode in "$ON" "$OFF"; do
        cp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/disk"
        start_server -v $mode --filter=blocksize --filter=cow file \
            "$BATS_TEST_TMPDIR/disk" minblock=4096
        nbd_py '
data = open(os.environ["BATS_TEST_TMPDIR"] + "/in", "rb").read()
assert h.pread(len(data), 0) == data
h.pwrite(b"x" * 100, 5000)
assert h.pread(100, 5000) == b"x" * 100
'
        stop_server
        check_path "$mode"
        # cow keeps the write: the file is as it was.
        cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/disk"
        # The filters traced their own calls above the backend's.
        grep -q "debug: blocksize: pwrite count=100 offset=5000" "$log"
        grep -q "debug: file: pread count=" "$log"
    done
}

@test "-r and a read-only descriptor: reads pass through, writes are refused" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    for mode in "$ON" "$OFF"; do
        for ro in "-r file $BATS_TEST_TMPDIR/disk" "file fd=7"; do
            start_server -v $mode $ro 7<"$BATS_TEST_TMPDIR/disk"
            nbd_py '
assert h.is_read_only()
data = open(os.environ["BATS_TEST_TMPDIR"] + "/disk", "rb").read()
assert h.pread(len(data), 0) == data
h.set_strict_mode(0)
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("a write succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
            stop_server
            check_path "$mode"
        done
    done
}

# kill_during N CMD...: SIGKILL each new incarnation of the backend,
# N times, 0.2 s apart, while CMD runs.
kill_during() {
    local times=$1; shift
    (
        local pid= last=
        for i in $(seq "$times"); do
            wait_until eval 'pid=$(backend_pid) && [ -n "$pid" ] &&
                             [ "$pid" != "$last" ]' || exit 0
            sleep 0.2
            kill -KILL "$pid" 2>/dev/null || true
            last=$pid
        done
    ) 3>&- &
    local killer=$! status=0
    "$@" || status=$?
    wait "$killer" || true
    return "$status"
}

kill_drill() {
    random_file "$BATS_TEST_TMPDIR/in" 256M
    kill_during 4 nbdcopy --connections=4 "$BATS_TEST_TMPDIR/in" "$uri"
    kill_during 4 nbdcopy --connections=4 "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    grep -q "killed by signal SIGKILL" "$log"
    [ "$(zombies)" -eq 0 ]
}

@test "SIGKILL of the memory backend during passthrough copies loses no byte" {
    requires nbdcopy
    start_server -v --backend-max-restarts=20 $ON memory 256M
    kill_drill
    stop_server
    check_path "$ON"
}

@test "SIGKILL of the file backend during passthrough copies loses no byte" {
    requires nbdcopy
    truncate -s 256M "$BATS_TEST_TMPDIR/disk"
    start_server -v --backend-max-restarts=20 $ON file "$BATS_TEST_TMPDIR/disk"
    kill_drill
    stop_server
    check_path "$ON"
    cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/disk"
}

# The proof that the backend does not see the data requests: with the
# backend process stopped (SIGSTOP), an open connection still reads,
# writes, zeroes and flushes.  Without passthrough this would wait for
# the backend (and the test fails on its timeout).
@test "a stopped backend does not stop the I/O of an open connection" {
    requires nbdsh
    for backend in "memory 8M" "file $BATS_TEST_TMPDIR/disk"; do
        truncate -s 8M "$BATS_TEST_TMPDIR/disk"
        start_server -v $ON $backend
        backend=$(backend_pid) timeout 20 /usr/bin/python3 -c "
import nbd, os, signal
h = nbd.NBD()
h.connect_uri('$uri')
pid = int(os.environ['backend'])
os.kill(pid, signal.SIGSTOP)
try:
    data = os.urandom(1 << 20)
    h.pwrite(data, 0, nbd.CMD_FLAG_FUA)
    assert h.pread(1 << 20, 0) == data
    h.zero(65536, 0)
    assert h.pread(65536, 0) == bytes(65536)
    h.flush()
finally:
    os.kill(pid, signal.SIGCONT)
"
        stop_server
        check_path "$ON"
        rm -f "$BATS_TEST_TMPDIR/disk"
    done
}

@test "the memory backend offers no passthrough with allocator=malloc" {
    requires nbdsh
    start_server -v $ON memory 1M allocator=malloc
    nbd_py 'h.pwrite(b"y" * 512, 0); assert h.pread(512, 0) == b"y" * 512'
    stop_server
    not grep -q "passthrough:" "$log"
}

@test "the file backend offers no passthrough with cache=none" {
    requires nbdsh
    truncate -s 1M "$BATS_TEST_TMPDIR/disk"
    start_server -v $ON file "$BATS_TEST_TMPDIR/disk" cache=none
    nbd_py 'h.pwrite(b"y" * 512, 0); assert h.pread(512, 0) == b"y" * 512'
    stop_server
    not grep -q "passthrough:" "$log"
}

# The descriptors a backend passes: each is matched to the frame it came
# with, and one that comes with a frame that does not take it is closed.
server_fds() {
    ls "/proc/$server_pid/fd" | wc -l
}

@test "a descriptor passed with a reply that takes none is closed" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    start_server -v "$FAULTY" "$BATS_TEST_TMPDIR/disk" fault=fd-on-pread
    nbd_py 'h.pread(512, 0)'
    before=$(server_fds)
    nbd_py '
data = open(os.environ["BATS_TEST_TMPDIR"] + "/disk", "rb").read()
for i in range(100):
    assert h.pread(4096, i * 4096) == data[i * 4096 : (i + 1) * 4096]
'
    after=$(server_fds)
    echo "descriptors: $before before, $after after"
    [ "$after" -le $((before + 2)) ]
    wait_until grep -q "closing a descriptor that came with a PREAD reply" "$log"
    stop_server
    not grep -q "passthrough:" "$log"
}

@test "an OPEN reply's descriptor is used only when the reply announces it" {
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    for how in offer silent nofd; do
        for mode in "$ON" "$OFF"; do
            start_server -v $mode "$FAULTY" "$BATS_TEST_TMPDIR/disk" openfd=$how
            nbd_py '
data = open(os.environ["BATS_TEST_TMPDIR"] + "/disk", "rb").read()
assert h.pread(len(data), 0) == data
h.pwrite(data[:4096], 8192, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 8192) == data[:4096]
'
            stop_server
            if [ "$how" = offer ] && [ "$mode" = "$ON" ]; then
                check_path "$ON"
            else
                not grep -q "passthrough: the front end does the I/O" "$log"
            fi
            if [ "$how" = silent ] && [ "$mode" = "$ON" ]; then
                grep -q "closing a descriptor that came with a OPEN reply" "$log"
            fi
            if [ "$how" = nofd ] && [ "$mode" = "$ON" ]; then
                grep -q "passthrough: the OPEN reply came without a descriptor" "$log"
            fi
        done
    done
}

# The memory backend's 32K pages: a zero or trim done by the front end
# frees the same pages as the backend's own (tests/backend-compat.bats
# has nbdkit's map for this sequence).
@test "memory: zero and trim free the same pages with and without passthrough" {
    requires nbdsh nbdinfo
    for mode in "$ON" "$WORKERS" "$OFF"; do
        start_server -v $mode memory 1M
        nbd_py '
h.pwrite(b"x" * 512, 0); h.zero(512, 0)
h.pwrite(b"x" * 512, 65536); h.pwrite(b"y", 66536)
h.zero(512, 65536)
h.pwrite(b"\0" * 512, 131072); h.trim(100, 131072)
h.pwrite(b"z" * 65536, 196608); h.zero(65000, 196708)
h.pwrite(b"x" * 10, 327680); h.pwrite(b"x" * 10, 360000)
h.zero(65536, 327680)
h.pwrite(b"q" * 100, 1048476); h.zero(100, 1048476)
'
        run bash -c "nbdinfo --map '$uri' | awk '{print \$1 \":\" \$2 \":\" \$3}' | tr '\n' ' '"
        echo "$mode: $output"
        [ "$output" = "0:65536:3 65536:32768:0 98304:98304:3 196608:65536:0 262144:786432:3 " ]
        stop_server
        check_path "$mode"
        check_inline "$mode"
    done
}

# Writes to the memory backend are received straight into its memfd
# (a shared mapping of it), when no filter is in the way and not over
# TLS.  Two connections write, zero and trim ranges of their own that
# share pages, many requests in flight, every byte checked; with
# passthrough_inline=0 the zeroes and trims run on the workers, and
# the writes received in place wait for them.
@test "memory: writes received in place beside zeroes and trims of the same pages" {
    requires nbdsh
    for mode in "$ON" "$ON -D nbdkit.passthrough_inline=0" \
                "$ON -D nbdkit.passthrough_in_place=0" "$OFF"; do
        start_server -v $mode memory 4M
        /usr/bin/python3 "$BATS_TEST_DIRNAME/in-place-mix.py" "$uri" \
                         $((4 << 20)) 2000
        stop_server
        case $mode in
            *in_place=0*|"$OFF")
                not grep -Eq "[1-9][0-9]* writes received in place\)" "$log" ;;
            *)
                grep -q "; writes received in place)" "$log"
                grep -Eq "[1-9][0-9]* writes received in place\)" "$log" ;;
        esac
    done
}

# The payload of a write received in place goes to the file as it
# comes: a client that stops in the middle of one, or goes away, leaves
# the server serving, and a FUA write or a write under a filter or over
# TLS is still right.
@test "memory: writes received in place: cut short, FUA, under a filter, TLS" {
    requires nbdsh psktool
    start_server -v memory 1M
    /usr/bin/python3 -c "
import socket, struct
s = socket.socket(socket.AF_UNIX)
s.connect('$sock')
def recv(n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        assert c
        b += c
    return b
recv(18)                                 # NBDMAGIC, IHAVEOPT, flags
s.sendall(struct.pack('>I', 1))          # fixed newstyle
s.sendall(b'IHAVEOPT' + struct.pack('>II', 1, 0))   # NBD_OPT_EXPORT_NAME
recv(8 + 2 + 124)
# NBD_CMD_WRITE of 256 KiB at 0, then half of it, then away.
s.sendall(struct.pack('>IHHQQI', 0x25609513, 0, 1, 1, 0, 262144))
s.sendall(b'\x01' * 131072)
s.close()
"
    nbd_py '
data = os.urandom(300000)
h.pwrite(data, 4096, nbd.CMD_FLAG_FUA)
assert h.pread(300000, 4096) == data
'
    stop_server
    grep -Eq "[1-9][0-9]* writes received in place\)" "$log"

    mkdir -p "$BATS_TEST_TMPDIR/psk"
    psktool -u alice -p "$BATS_TEST_TMPDIR/psk/keys.psk" >/dev/null
    for how in filter tls; do
        case $how in
            filter) start_server -v --filter=noparallel memory 1M ;;
            tls) start_server -v --tls=require \
                     --tls-psk="$BATS_TEST_TMPDIR/psk/keys.psk" memory 1M
                 uri="nbds+unix://alice@/?socket=$sock&tls-psk-file=$BATS_TEST_TMPDIR/psk/keys.psk" ;;
        esac
        /usr/bin/python3 -c "
import nbd, os
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri('$uri')
data = os.urandom(500000)
h.pwrite(data, 1000)
assert h.pread(500000, 1000) == data
"
        stop_server
        not grep -Eq "[1-9][0-9]* writes received in place\)" "$log"
    done
}
