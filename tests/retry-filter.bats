#!/usr/bin/env bats
# The retry filter: failed requests are sent again, with their data,
# until they succeed or the retries run out.  The error filter below
# it makes the failures.

load helpers

# A backend that logs its calls and fails or changes on demand, all in
# files of $st (make_backend [SIZE] sets $st and $backend):
#   calls            each call: METHOD ARGS...; a pread that finished
#                    also logs "pread-done H COUNT OFFSET"
#   size, disk       the size and the data
#   fail-METHOD      N: the next N calls of METHOD fail (EIO); at each
#                    failure every file new-X becomes X (the backend
#                    changes, for the next open)
#   ro, nofua, nofast     what an open offers: read-only, no FUA, no
#                    fast zero
#   slowzero         a fast zero fails with ENOTSUP
#   block-OFFSET     a pread at OFFSET waits for the file go
make_backend() {
    st=$BATS_TEST_TMPDIR/st
    backend=$BATS_TEST_TMPDIR/backend.sh
    mkdir -p "$st"
    : > "$st/calls"
    echo "${1:-1048576}" > "$st/size"
    random_file "$st/disk" "${1:-1048576}"
    echo '#!/bin/bash' > "$backend"
    echo "st=$st" >> "$backend"
    cat >> "$backend" <<'EOF'
take () {
    local n
    exec 9>>"$st/lock"
    flock 9
    n=$(cat "$st/fail-$1" 2>/dev/null || echo 0)
    if [ "$n" -gt 0 ]; then
        echo $((n - 1)) > "$st/fail-$1"
        for f in "$st"/new-*; do
            [ -e "$f" ] && mv "$f" "$st/${f##*/new-}"
        done
        flock -u 9
        return 0
    fi
    flock -u 9
    return 1
}
case "$1" in
    open|close|pread|pwrite|zero|trim|flush|cache|extents)
        l="$*"; echo "${l% }" >> "$st/calls" ;;
esac
case "$1" in
    thread_model) echo parallel ;;
    open)
        take open && { echo "EIO the open fails" >&2; exit 1; }
        n=$(( $(cat "$st/opens" 2>/dev/null || echo 0) + 1 ))
        echo $n > "$st/opens"
        echo "h$n" ;;
    close) ;;
    get_size) cat "$st/size" ;;
    can_write) [ -e "$st/ro" ] && exit 3; exit 0 ;;
    can_flush|can_trim|can_zero|can_extents|can_multi_conn) exit 0 ;;
    can_fast_zero) [ -e "$st/nofast" ] && exit 3; exit 0 ;;
    can_fua) if [ -e "$st/nofua" ]; then echo none; else echo native; fi ;;
    can_cache) echo native ;;
    pread)
        if [ -e "$st/block-$4" ]; then
            while [ ! -e "$st/go" ]; do sleep 0.01; done
        fi
        take pread && { echo "EIO the read fails" >&2; exit 1; }
        dd if="$st/disk" skip="$4" count="$3" iflag=skip_bytes,count_bytes \
           status=none
        echo "pread-done $2 $3 $4" >> "$st/calls" ;;
    pwrite)
        take pwrite && { echo "EIO the write fails" >&2; exit 1; }
        dd of="$st/disk" seek="$4" oflag=seek_bytes conv=notrunc status=none ;;
    zero)
        take zero && { echo "EIO the zero fails" >&2; exit 1; }
        case ",$5," in
            *,fast,*) [ -e "$st/slowzero" ] &&
                          { echo "ENOTSUP not fast" >&2; exit 1; } ;;
        esac
        dd if=/dev/zero of="$st/disk" seek="$4" count="$3" oflag=seek_bytes \
           iflag=count_bytes conv=notrunc status=none ;;
    trim|flush|cache) ;;
    *) exit 2 ;;
esac
EOF
    chmod +x "$backend"
    export st
}

# The calls of these methods the backend logged, in order.
calls() {
    local re
    re=$(IFS='|'; echo "$*")
    grep -E "^($re)( |\$)" "$st/calls" || true
}

@test "a read that fails until the error file goes is retried and returns the data" {
    requires nbdsh
    fail=$BATS_TEST_TMPDIR/fail
    start_server -v --filter=retry --filter=error memory 10M \
        error-pread-rate=100% error-pread-file="$fail" \
        retries=1000 retry-delay=0.05 retry-exponential=no
    export fail log
    nbd_py '
import time
data = os.urandom(1 << 20)
h.pwrite(data, 4096)
open(os.environ["fail"], "w").close()
buf = nbd.Buffer(len(data))
cookie = h.aio_pread(buf, 4096)
# Wait (bounded) until the filter has retried at least once.
for i in range(600):
    if "retry 1 of" in open(os.environ["log"]).read():
        break
    h.poll(100)
else:
    sys.exit("no retry was logged")
assert not h.aio_command_completed(cookie)
os.unlink(os.environ["fail"])
while not h.aio_command_completed(cookie):
    h.poll(-1)
assert buf.to_bytearray() == data
'
}

@test "reads and writes that fail half of the time all succeed with the right data" {
    requires nbdsh
    start_server --filter=retry --filter=error memory 10M \
        error-pread-rate=50% error-pwrite-rate=50% \
        retries=60 retry-delay=1ms retry-exponential=no
    nbd_py '
import hashlib
want = bytearray(10 << 20)
for i in range(40):
    off = (i * 262147) % (9 << 20)
    d = os.urandom(65536 + i * 1000)
    h.pwrite(d, off)
    want[off:off + len(d)] = d
for i in range(40):
    off = (i * 524309) % (9 << 20)
    assert h.pread(1 << 20, off) == want[off:off + (1 << 20)], off
'
}

@test "when every retry fails the client gets the error of the last attempt" {
    requires nbdsh
    start_server -v --filter=retry --filter=error memory 10M \
        error-pread=EPERM error-pread-rate=100% retries=3 retry-delay=1ms
    nbd_py '
try:
    h.pread(512, 0)
    sys.exit("the read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
# The connection still works.
h.pwrite(b"ok", 0)
'
    wait_until grep -q "failed (EPERM) after 4 attempts" "$log"
}

@test "retries=0 passes the first error on at once" {
    requires nbdsh
    start_server -v --filter=retry --filter=error memory 1M \
        error-pwrite-rate=100% retries=0
    nbd_py '
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("the write succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
'
    stop_server
    not grep -q "retry 1 of" "$log"
}

@test "retry-readonly=yes refuses writes on the connection after a failure" {
    requires nbdsh
    fail=$BATS_TEST_TMPDIR/fail
    touch "$fail"
    start_server --filter=retry --filter=error memory 1M \
        error-pread-rate=100% error-pread-file="$fail" \
        retries=1 retry-delay=1ms retry-readonly=yes
    nbd_py '
h.pwrite(b"a" * 512, 0)
try:
    h.pread(512, 0)
    sys.exit("the read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
try:
    h.pwrite(b"b" * 512, 0)
    sys.exit("the write succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
    rm "$fail"
    # A new connection is writable again and kept the first write.
    nbd_py '
assert h.pread(512, 0) == b"a" * 512
h.pwrite(b"c" * 512, 0)
assert h.pread(512, 0) == b"c" * 512
'
}

@test "a bad retry parameter exits 1 naming the value" {
    for p in retries=-1 retries=many retry-delay=soon retry-exponential=maybe \
             retry-readonly=2; do
        run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=retry memory 1M "$p"
        [ "$status" -eq 1 ]
        [[ "$output" == *"$p"* ]]
    done
}

@test "--help lists the retry parameters" {
    run "$NBDKIT" --filter=retry null --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"retries=N"*"retry-delay="*"retry-exponential="*"retry-readonly="* ]]
}

@test "before each retry the layers below are closed and opened again" {
    requires nbdsh
    make_backend
    echo 1 > "$st/fail-pread"
    start_server --filter=retry sh "$backend" retry-delay=1ms
    nbd_py '
want = open(os.environ["st"] + "/disk", "rb").read()
assert h.pread(4096, 8192) == want[8192:12288]
'
    run calls open close pread
    [ "${lines[*]:0:5}" = "open false  false pread h1 4096 8192 close h1 open false  false pread h2 4096 8192" ]
}

@test "after a reopen a request past the new size fails without reaching the backend" {
    requires nbdsh
    make_backend
    # The failure shrinks the disk to 512k for the next open.
    echo 1 > "$st/fail-pread"
    echo 524288 > "$st/new-size"
    start_server --filter=retry sh "$backend" retry-delay=1ms retries=2
    nbd_py '
want = open(os.environ["st"] + "/disk", "rb").read()
try:
    h.pread(512, 600000)
    sys.exit("the read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
for f in (lambda: h.pwrite(b"x" * 512, 600000), lambda: h.zero(512, 600000),
          lambda: h.trim(512, 600000)):
    try:
        f()
        sys.exit("the request succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.ENOSPC, e
# Below the new size all is well; the client still sees 1M.
assert h.get_size() == 1048576
assert h.pread(4096, 4096) == want[4096:8192]
'
    # The read reached the backend once, the others never; each retry
    # reopened (the first open, then 2 for each of the 4 requests).
    run calls pread pwrite zero trim
    [ "${lines[*]}" = "pread h1 512 600000 pread h9 4096 4096" ]
    [ "$(calls open | wc -l)" -eq 9 ]
}

@test "a reopened backend without FUA or fast zero fails those requests" {
    requires nbdsh
    make_backend
    echo 1 > "$st/fail-pwrite"
    touch "$st/new-nofua" "$st/new-nofast"
    start_server --filter=retry sh "$backend" retry-delay=1ms retries=1
    nbd_py '
d = os.urandom(4096)
h.pwrite(d, 0)
assert h.pread(4096, 0) == d
assert open(os.environ["st"] + "/disk", "rb").read(4096) == d
# No fast zero now: ENOTSUP at once, not retried.
try:
    h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO)
    sys.exit("the fast zero succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
# No FUA now: EIO, after a retry.
for f in (lambda: h.zero(4096, 0, nbd.CMD_FLAG_FUA),
          lambda: h.pwrite(d, 0, nbd.CMD_FLAG_FUA)):
    try:
        f()
        sys.exit("the FUA request succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
assert h.pread(4096, 0) == d
'
    run calls pwrite zero
    [ "${lines[*]}" = "pwrite h1 4096 0 pwrite h2 4096 0" ]
    # The first open, the reopen for the write, one for each FUA request.
    [ "$(calls open | wc -l)" -eq 4 ]
}

@test "retry-readonly=yes reopens the layers below read-only" {
    requires nbdsh
    make_backend
    echo 1 > "$st/fail-pwrite"
    start_server --filter=retry sh "$backend" retry-delay=1ms retries=2 \
        retry-readonly=yes
    nbd_py '
want = open(os.environ["st"] + "/disk", "rb").read()
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("the write succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
assert h.pread(512, 0) == want[:512]
for f in (lambda: h.pwrite(b"x" * 512, 0), lambda: h.zero(512, 0),
          lambda: h.trim(512, 0)):
    try:
        f()
        sys.exit("the request succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, e
'
    run calls open close pwrite pread
    [ "${lines[*]:0:5}" = "open false  false pwrite h1 512 0 close h1 open true  false pread h2 512 0" ]
    # A new connection opens the backend writable again.
    nbd_py 'h.pwrite(b"y" * 512, 0)'
    [ "$(calls open | tail -n 1)" = "open false  false" ]
    [ "$(head -c 512 "$st/disk" | tr -d y | wc -c)" -eq 0 ]
}

@test "a reopen that fails counts as an attempt and the next request reopens" {
    requires nbdsh
    make_backend
    echo 1 > "$st/fail-pread"
    echo 2 > "$st/new-fail-open"
    start_server --filter=retry sh "$backend" retry-delay=1ms retries=2
    nbd_py '
want = open(os.environ["st"] + "/disk", "rb").read()
try:
    h.pread(512, 0)
    sys.exit("the read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ESHUTDOWN, e
assert h.pread(512, 1024) == want[1024:1536]
'
    run calls open close pread
    [ "${lines[*]:0:7}" = "open false  false pread h1 512 0 close h1 open false  false open false  false open false  false pread h2 512 1024" ]
}

@test "a fast zero that fails with ENOTSUP is retried like any error" {
    requires nbdsh
    make_backend
    touch "$st/slowzero"
    start_server --filter=retry sh "$backend" retry-delay=1ms retries=1
    nbd_py '
try:
    h.zero(512, 0, nbd.CMD_FLAG_FAST_ZERO)
    sys.exit("the fast zero succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
'
    run calls open zero
    [ "${lines[*]:0:4}" = "open false  false zero h1 512 0 may_trim,fast open false  false zero h2 512 0 may_trim,fast" ]
}

@test "a reopen is for one connection: the others keep their backend handles" {
    requires nbdsh
    make_backend
    start_server --filter=retry sh "$backend" retry-delay=1ms
    nbd_py '
want = open(os.environ["st"] + "/disk", "rb").read()
h2 = nbd.NBD()
h2.connect_uri(os.environ["uri"])
open(os.environ["st"] + "/fail-pread", "w").write("1")
assert h.pread(512, 0) == want[:512]
assert h2.pread(512, 512) == want[512:1024]
assert h.pread(512, 1024) == want[1024:1536]
'
    run calls open close pread
    [ "${lines[*]:0:8}" = "open false  false open false  false pread h1 512 0 close h1 open false  false pread h3 512 0 pread h2 512 512 pread h3 512 1024" ]
}

@test "a reopen waits for the requests in flight below and holds the new ones" {
    requires nbdsh
    make_backend
    touch "$st/block-8192"
    start_server -v --filter=retry sh "$backend" retry-delay=1ms
    export log
    nbd_py '
st = os.environ["st"]
want = open(st + "/disk", "rb").read()
def wait_for(what, f):
    for i in range(3000):
        if what in open(f).read():
            return
        h.poll(10)
    sys.exit("never seen: " + what)
b1, b2, b3 = nbd.Buffer(512), nbd.Buffer(512), nbd.Buffer(512)
c1 = h.aio_pread(b1, 8192)
wait_for("pread h1 512 8192", st + "/calls")
open(st + "/fail-pread", "w").write("1")
c2 = h.aio_pread(b2, 0)
wait_for("reopening the layers below", os.environ["log"])
# The reopen waits for the blocked read; a read sent now waits for the
# reopen.
c3 = h.aio_pread(b3, 16384)
open(st + "/go", "w").close()
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in (c1, c2, c3):
    assert h.aio_command_completed(c)
assert b1.to_bytearray() == want[8192:8704]
assert b2.to_bytearray() == want[0:512]
assert b3.to_bytearray() == want[16384:16896]
'
    run calls open close pread pread-done
    # The reads on the new handle may start in either order.
    [ "${lines[*]:0:6}" = "open false  false pread h1 512 8192 pread h1 512 0 pread-done h1 512 8192 close h1 open false  false" ]
    [ "$(calls pread | sort)" = "pread h1 512 0
pread h1 512 8192
pread h2 512 0
pread h2 512 16384" ]
}
