#!/usr/bin/env bats
# The retry filter: failed requests are sent again, with their data,
# until they succeed or the retries run out.  The error filter below
# it makes the failures.

load helpers

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
    grep -q "failed (EPERM) after 4 attempts" "$log"
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
    ! grep -q "retry 1 of" "$log"
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
