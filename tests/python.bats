# The python backend: nbdkit python plugin scripts (tests/python/*.py)
# served unchanged, as real clients see them.

load helpers

scripts=$top_srcdir/tests/python

setup() {
    [ -x /usr/bin/python3 ] || skip "/usr/bin/python3 is not installed"
}

@test "a RAM-disk script reads back byte for byte what nbdsh wrote" {
    requires nbdsh
    start_server python "$scripts/ramdisk.py" size=8M
    nbd_py '
assert h.get_size() == 8 << 20
data = os.urandom(3 << 20)
h.pwrite(data, 12345)
assert h.pread(len(data), 12345) == data
assert h.pread(12345, 0) == bytes(12345)
h.pwrite(b"x" * 4096, 0, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(4096, 0) == b"x" * 4096
'
}

@test "trim and write-zeroes on a RAM-disk script read back as zeroes" {
    requires nbdsh
    start_server python "$scripts/ramdisk.py" size=4M
    nbd_py '
h.pwrite(b"\xff" * (2 << 20), 0)
h.trim(1 << 20, 0)
h.zero(4096, 1 << 20)
h.zero(4096, (1 << 20) + 8192, nbd.CMD_FLAG_NO_HOLE)
d = h.pread(2 << 20, 0)
assert d[:1 << 20] == bytes(1 << 20)
assert d[1 << 20:(1 << 20) + 4096] == bytes(4096)
assert d[(1 << 20) + 4096:(1 << 20) + 8192] == b"\xff" * 4096
assert d[(1 << 20) + 8192:(1 << 20) + 12288] == bytes(4096)
'
}

@test "nbdcopy copies 20 MiB of random data in and out of a RAM-disk script" {
    requires nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 20M
    start_server python "$scripts/ramdisk.py"
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
}

@test "the capabilities of a RAM-disk script follow its functions" {
    requires nbdinfo
    start_server python "$scripts/ramdisk.py" size=1M
    run nbdinfo --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"export-size": 1048576'
    echo "$output" | grep -q '"is_read_only": false'
    echo "$output" | grep -q '"can_flush": true'
    echo "$output" | grep -q '"can_fua": true'
    echo "$output" | grep -q '"can_trim": true'
    echo "$output" | grep -q '"can_zero": true'
    echo "$output" | grep -q '"can_multi_conn": true'
    echo "$output" | grep -q '"can_cache": false'
}

@test "the extents of a script reach nbdinfo --map" {
    requires nbdinfo nbdsh
    start_server python "$scripts/ramdisk.py" size=1M
    nbd_py 'h.pwrite(b"x" * 70000, 3 * 65536)'
    run nbdinfo --map "$uri"
    [ "$status" -eq 0 ]
    echo "$output"
    [ "$(echo "$output" | awk '{print $1, $2, $3}')" = "0 196608 3
196608 131072 0
327680 720896 3" ]
}

@test "parameters after the script reach its config function" {
    requires nbdinfo
    start_server python "$scripts/ramdisk.py" size=2M note=hello
    run nbdinfo --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"export-size": 2097152'
    echo "$output" | grep -q "configured with \[('size', '2M'), ('note', 'hello')\]"
}

@test "nbdkit.debug messages reach the log with -v" {
    requires nbdinfo
    start_server -v python "$scripts/ramdisk.py" size=1M note=hello
    nbdinfo --size "$uri"
    wait_until grep -q "python: debug: note=hello" "$log"
}

@test "with -r a script with pwrite is served read-only" {
    requires nbdsh
    start_server -r python "$scripts/ramdisk.py" size=1M
    nbd_py '
assert h.is_read_only()
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("the write succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
assert h.pread(512, 0) == bytes(512)
'
}

@test "an exception in config stops the server with the script's message" {
    run "$NBDKIT" -U - python "$scripts/ramdisk.py" colour=blue --run true
    [ "$status" -eq 1 ]
    echo "$output"
    echo "$output" | grep -q "unknown parameter colour=blue"
}

@test "set_error(ENOSPC) before raising gives the client ENOSPC" {
    requires nbdsh
    start_server python "$scripts/errors.py"
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

@test "a plain exception gives the client EIO and its traceback reaches the log" {
    requires nbdsh
    start_server python "$scripts/errors.py"
    nbd_py '
try:
    h.pread(4096, 3 << 20)
    sys.exit("the read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
'
    cat "$log"
    wait_until grep -q "Traceback (most recent call last)" "$log"
    wait_until grep -q "ValueError: the sector at 3145728 is unreadable" "$log"
    wait_until grep -q 'errors.py", line [0-9]*, in pread' "$log"
}

@test "an OSError's errno reaches the client (EROFS as EPERM)" {
    requires nbdsh
    start_server python "$scripts/errors.py"
    nbd_py '
try:
    h.trim(4096, 0)
    sys.exit("the trim succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
}

@test "a zero that asks for EOPNOTSUPP falls back to writing zeroes" {
    requires nbdsh
    start_server python "$scripts/errors.py"
    nbd_py '
h.pwrite(b"\x01" * 8192, 0)
h.zero(4096, 2048)
d = h.pread(8192, 0)
assert d == b"\x01" * 2048 + bytes(4096) + b"\x01" * 2048, d
'
}

@test "list_exports and default_export are what nbdinfo --list shows" {
    requires nbdinfo
    start_server python "$scripts/exports.py"
    run nbdinfo --list --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output"
    echo "$output" | grep -q '"export-name": "alpha"'
    echo "$output" | grep -q '"description": "the first disk"'
    echo "$output" | grep -q '"export-name": "beta"'
    echo "$output" | grep -q '"export-size": 2097152'
    run nbdinfo --size "nbd+unix:///?socket=$sock"
    [ "$output" = 1048576 ]
}

@test "an export the script refuses cannot be opened" {
    requires nbdinfo
    start_server python "$scripts/exports.py"
    run nbdinfo --size "nbd+unix:///gamma?socket=$sock"
    [ "$status" -ne 0 ]
    run nbdinfo --size "nbd+unix:///beta?socket=$sock"
    [ "$output" = 2097152 ]
}

@test "a script without pwrite is read-only and a write fails with EPERM" {
    requires nbdsh
    start_server python "$scripts/readonly-v1.py"
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

@test "a script with a syntax error stops the server with status 1 and the error" {
    run "$NBDKIT" -U - python "$scripts/syntax-error.py" --run true
    echo "$output"
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "syntax-error.py"
    echo "$output" | grep -q "SyntaxError"
}

@test "a missing script stops the server with status 1" {
    run "$NBDKIT" -U - python "$BATS_TEST_TMPDIR/nosuch.py" --run true
    echo "$output"
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "nosuch.py: cannot read the script"
    run "$NBDKIT" -U - python --run true
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "no script given"
}

@test "python --help and --dump-plugin describe the backend" {
    run "$NBDKIT" python --help
    [ "$status" -eq 0 ]
    echo "$output" | grep -q "script=<FILENAME>"
    run "$NBDKIT" python --dump-plugin
    [ "$status" -eq 0 ]
    echo "$output" | grep -q "^name=python$"
    echo "$output" | grep -q "^magic_config_key=script$"
    echo "$output" | grep -q "^python_version=3\."
    echo "$output" | grep -q "^has_pread=1$"
}

@test "data written and flushed by a file-backed script survives kill -9 of the backend" {
    requires nbdsh
    truncate -s 4M "$BATS_TEST_TMPDIR/disk"
    start_server python "$scripts/filedisk.py" file="$BATS_TEST_TMPDIR/disk"
    nbd_py '
import signal, subprocess
data = os.urandom(1 << 20)
h.pwrite(data, 1 << 20)
h.flush()
old = int(subprocess.check_output(["pgrep", "-P", os.environ["server_pid"]]))
os.kill(old, signal.SIGKILL)
assert h.pread(1 << 20, 1 << 20) == data
h.pwrite(b"after", 0, nbd.CMD_FLAG_FUA)
assert h.pread(5, 0) == b"after"
'
    [ "$(head -c 5 "$BATS_TEST_TMPDIR/disk")" = after ]
    wait_until grep -q "killed by signal SIGKILL" "$log"
}

@test "a RAM-disk script restarted after kill -9 serves again, empty" {
    requires nbdsh
    start_server python "$scripts/ramdisk.py" size=1M
    nbd_py 'h.pwrite(b"x" * 512, 0)'
    old=$(backend_pid)
    kill -KILL "$old"
    wait_until eval '[ -n "$(backend_pid)" ] && [ "$(backend_pid)" != "$old" ]'
    nbd_py '
assert h.get_size() == 1 << 20
assert h.pread(512, 0) == bytes(512)
'
}
