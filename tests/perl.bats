# The perl backend: nbdkit perl plugin scripts (tests/perl/*.pl) served
# unchanged, as real clients see them.

load helpers

scripts=$top_srcdir/tests/perl

setup() {
    [ -x /usr/bin/perl ] || skip "/usr/bin/perl is not installed"
}

@test "a perl RAM-disk script reads back byte for byte what nbdsh wrote" {
    requires nbdsh
    start_server perl "$scripts/ramdisk.pl" size=8M
    nbd_py '
assert h.get_size() == 8 << 20
data = os.urandom(3 << 20)
h.pwrite(data, 12345)
assert h.pread(len(data), 12345) == data
assert h.pread(12345, 0) == bytes(12345)
h.pwrite(b"x" * 4096, 0, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(4096, 0) == b"x" * 4096
h.trim(4096, 0)
h.zero(4096, 16384, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(4096, 0) == bytes(4096)
d = data[16383 - 12345:16384 - 12345] + bytes(4096) + \
    data[20480 - 12345:20481 - 12345]
assert h.pread(4098, 16383) == d
'
}

@test "nbdcopy copies 4 MiB of random data in and out of a perl RAM disk" {
    requires nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 4M
    start_server perl "$scripts/ramdisk.pl"
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
}

@test "parameters after the perl script reach its config sub" {
    requires nbdinfo
    start_server perl "$scripts/ramdisk.pl" size=1M note=hello note=world
    run nbdinfo --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"export-size": 1048576'
    echo "$output" | grep -q '"description": "a perl RAM disk; notes: hello world"'
    echo "$output" | grep -q '"can_multi_conn": true'
    echo "$output" | grep -q '"can_fua": true'
}

@test "a die in the perl config sub stops the server with its message" {
    run "$NBDKIT" -U - perl "$scripts/ramdisk.pl" colour=blue --run true
    echo "$output"
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "config: unknown parameter colour=blue"
}

@test "Nbdkit::set_error(ENOSPC) before die gives the client ENOSPC" {
    requires nbdsh
    start_server perl "$scripts/errors.pl"
    nbd_py '
h.pwrite(b"a" * 4096, 0)
try:
    h.pwrite(b"b" * 4096, (2 << 20) + 4096)
    sys.exit("the write succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
assert h.pread(4096, 0) == b"a" * 4096
'
}

@test "a plain die gives the client EIO and its message reaches the log" {
    requires nbdsh
    start_server perl "$scripts/errors.pl"
    nbd_py '
try:
    h.pread(4096, 3 << 20)
    sys.exit("the read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
'
    cat "$log"
    wait_until grep -q "error: pread: the sector at 3145728 is unreadable" "$log"
}

@test "a perl script without pwrite is read-only and a write fails with EPERM" {
    requires nbdsh
    start_server perl "$scripts/readonly.pl"
    nbd_py '
assert h.is_read_only()
d = h.pread(2048, 511)
assert d == bytes((o // 512) & 0xff for o in range(511, 511 + 2048))
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("the write succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
}

@test "list_exports of a perl script is what nbdinfo --list shows" {
    requires nbdinfo
    start_server perl "$scripts/exports.pl"
    run nbdinfo --list --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output"
    echo "$output" | grep -q '"export-name": "alpha"'
    echo "$output" | grep -q '"description": "the first disk"'
    echo "$output" | grep -q '"export-name": "beta"'
    echo "$output" | grep -q '"export-size": 2097152'
}

@test "a perl script with a syntax error stops the server with status 1 and the error" {
    run "$NBDKIT" -U - perl "$scripts/syntax-error.pl" --run true
    echo "$output"
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "syntax error at $scripts/syntax-error.pl line 6"
}

@test "perl --help and --dump-plugin describe the backend" {
    run "$NBDKIT" perl --help
    [ "$status" -eq 0 ]
    echo "$output" | grep -q "script=<FILENAME>"
    run "$NBDKIT" perl --dump-plugin
    [ "$status" -eq 0 ]
    echo "$output" | grep -q "^name=perl$"
    echo "$output" | grep -q "^magic_config_key=script$"
    echo "$output" | grep -q "^perl_version=5\."
}

@test "data written and flushed by a file-backed perl script survives kill -9 of the backend" {
    requires nbdsh
    truncate -s 4M "$BATS_TEST_TMPDIR/disk"
    start_server perl "$scripts/filedisk.pl" file="$BATS_TEST_TMPDIR/disk"
    nbd_py '
import signal, subprocess
data = os.urandom(1 << 20)
h.pwrite(data, 1 << 20)
h.flush()
old = int(subprocess.check_output(["pgrep", "-P", os.environ["server_pid"]]))
os.kill(old, signal.SIGKILL)
assert h.pread(1 << 20, 1 << 20) == data
'
    wait_until grep -q "killed by signal SIGKILL" "$log"
}
