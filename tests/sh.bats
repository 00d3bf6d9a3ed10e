# The sh backend: scripts in the nbdkit-sh-plugin(3) convention, one
# process per method, as real clients see them.  tests/sh/ramdisk.sh is
# the example script of nbdkit-sh-backend(1); the other scripts are
# written by each test into its own directory.

load helpers

ramdisk=$top_srcdir/tests/sh/ramdisk.sh

# script NAME: write stdin to $BATS_TEST_TMPDIR/NAME, executable; sets
# $script to its path.
script() {
    script=$BATS_TEST_TMPDIR/$1
    cat > "$script"
    chmod +x "$script"
}

@test "the example script reads back byte for byte what nbdsh wrote" {
    requires nbdsh dd truncate
    start_server sh "$ramdisk" size=8M
    nbd_py '
assert h.get_size() == 8 << 20
assert not h.is_read_only()
data = os.urandom(3 << 20)
h.pwrite(data, 12345)
assert h.pread(len(data), 12345) == data
assert h.pread(12345, 0) == bytes(12345)
h.pwrite(b"x" * 4096, 0, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(4096, 0) == b"x" * 4096
'
}

@test "trim and write-zeroes on the example script read back as zeroes" {
    requires nbdsh dd truncate
    start_server sh "$ramdisk" size=4M
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

@test "nbdcopy copies 20 MiB of random data in and out of the example script" {
    requires nbdcopy dd truncate
    random_file "$BATS_TEST_TMPDIR/in" 20M
    start_server sh "$ramdisk" 20M
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
}

@test "the extents the script prints are the map nbdinfo shows" {
    requires nbdinfo nbdsh dd truncate
    start_server sh "$ramdisk" 8M
    nbd_py 'h.pwrite(b"a" * 65536, 1 << 20)'
    run nbdinfo --map "$uri"
    [ "$status" -eq 0 ]
    echo "$output"
    echo "$output" | grep -Eq '^ *0 +1048576 +3 +hole,zero'
    echo "$output" | grep -Eq '^ *1048576 +65536 +0 +data'
}

@test "an ENOSPC from the script reaches the client, its message the log" {
    requires nbdsh dd truncate numfmt
    start_server sh "$ramdisk" size=4M space=1M
    nbd_py '
h.pwrite(b"y" * 4096, 0)
try:
    h.pwrite(b"x" * 4096, 2 << 20)
    sys.exit("a write past the space left succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
assert h.pread(4096, 0) == b"y" * 4096
'
    wait_until grep -q 'pwrite: Out of space: this disk holds only 1M' "$log"
}

@test "a script that exits 2 for can_write serves a read-only export" {
    requires nbdsh nbdinfo
    script noncw.sh <<'EOF'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    pread) head -c "$3" /dev/zero ;;
    pwrite) echo "EIO pwrite must not be called" >&2; exit 1 ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    run nbdinfo --json "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"is_read_only": true'
    nbd_py '
assert h.is_read_only()
h.set_strict_mode(0)
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("a write on a read-only export succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
    stop_server
    not grep -q 'must not be called' "$log"
}

@test "a script that exits 3 for can_trim gets no trim requests" {
    requires nbdsh
    script notrim.sh <<'EOF'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    pread) head -c "$3" /dev/zero ;;
    pwrite) cat > /dev/null ;;
    can_write) exit 0 ;;
    can_trim) exit 3 ;;
    trim) echo "EIO trim must not be called" >&2; exit 1 ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    nbd_py '
assert not h.is_read_only()
assert not h.can_trim()
h.pwrite(b"x" * 512, 0)
h.set_strict_mode(0)
try:
    h.trim(512, 0)
    sys.exit("a trim succeeded on an export without trim")
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e
'
    stop_server
    not grep -q 'must not be called' "$log"
}

@test "a script's magic_config_key names the bare arguments after it" {
    requires nbdinfo
    script magic.sh <<'EOF'
#!/bin/sh
case "$1" in
    magic_config_key) echo disksize ;;
    config)
        [ "$2" = disksize ] || { echo "EINVAL unexpected key $2" >&2; exit 1; }
        echo "$3" > "$tmpdir/size" ;;
    get_size) cat "$tmpdir/size" ;;
    pread) head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script" 3M
    run nbdinfo --size "$uri"
    [ "$status" -eq 0 ]
    [ "$output" = 3145728 ]
}

@test "a parameter the script rejects stops the server with its message" {
    requires dd truncate
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/sock" sh "$ramdisk" colour=blue
    [ "$status" -ne 0 ]
    echo "$output"
    echo "$output" | grep -q 'unknown parameter colour=blue'
}

@test "the exports of list_exports are what nbdinfo --list shows" {
    requires nbdinfo nbdsh
    script exports.sh <<'EOF'
#!/bin/sh
case "$1" in
    list_exports) printf 'INTERLEAVED\nsmall\nthe small one\nlarge\nthe large one\n' ;;
    default_export) echo large ;;
    open) echo "$3" ;;
    get_size) case "$2" in small) echo 1M ;; *) echo 2M ;; esac ;;
    pread) head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    run nbdinfo --list "$uri"
    [ "$status" -eq 0 ]
    echo "$output"
    echo "$output" | grep -q 'export="small":'
    echo "$output" | grep -q 'description: the small one'
    echo "$output" | grep -q 'export="large":'
    [ "$(nbdinfo --size "nbd+unix:///small?socket=$sock")" = 1048576 ]
    # The default export is the one default_export names.
    [ "$(nbdinfo --size "$uri")" = 2097152 ]
}

@test "a pread blocked in one connection does not stall another" {
    requires nbdsh mkfifo
    mkfifo "$BATS_TEST_TMPDIR/fifo"
    script slow.sh <<EOF
#!/bin/sh
case "\$1" in
    thread_model) echo parallel ;;
    open) echo "\$3" ;;
    get_size) echo 1M ;;
    pread)
        if [ "\$2" = slow ]; then
            touch "$BATS_TEST_TMPDIR/slow-started"
            cat "$BATS_TEST_TMPDIR/fifo" > /dev/null
        fi
        head -c "\$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    slow_uri="nbd+unix:///slow?socket=$sock"
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.connect_uri('$slow_uri')
assert h.pread(512, 0) == bytes(512)
open('$BATS_TEST_TMPDIR/slow-done', 'w').close()
" &
    slow_client=$!
    wait_until test -e "$BATS_TEST_TMPDIR/slow-started"
    # The slow read is stuck in its script; a read on another
    # connection completes all the same.
    uri="nbd+unix:///fast?socket=$sock" nbd_py 'assert h.pread(512, 0) == bytes(512)'
    [ ! -e "$BATS_TEST_TMPDIR/slow-done" ]
    echo release > "$BATS_TEST_TMPDIR/fifo"
    wait "$slow_client"
    [ -e "$BATS_TEST_TMPDIR/slow-done" ]
}

@test "a pread blocked in a connection does not hold back its next request" {
    requires nbdsh mkfifo
    mkfifo "$BATS_TEST_TMPDIR/fifo"
    script slow.sh <<EOF
#!/bin/sh
case "\$1" in
    thread_model) echo parallel ;;
    get_size) echo 1M ;;
    pread)
        if [ "\$4" = 0 ]; then
            touch "$BATS_TEST_TMPDIR/slow-started"
            cat "$BATS_TEST_TMPDIR/fifo" > /dev/null
        fi
        head -c "\$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    # The backend's reader runs the first read itself, keeping the lead
    # (nothing else was buffered); the second must still be read and
    # answered while the first is stuck in its script.
    fifo="$BATS_TEST_TMPDIR/fifo" started="$BATS_TEST_TMPDIR/slow-started" \
        nbd_py '
import time
slow = h.aio_pread(nbd.Buffer(512), 0)
while not os.path.exists(os.environ["started"]):
    time.sleep(0.05)
fast = h.aio_pread(nbd.Buffer(512), 4096)
deadline = time.time() + 60
while not h.aio_command_completed(fast):
    assert time.time() < deadline, "the second read was held back"
    h.poll(1000)
assert not h.aio_command_completed(slow)
with open(os.environ["fifo"], "w") as f:
    f.write("release\n")
while not h.aio_command_completed(slow):
    h.poll(-1)
'
}

@test "a script failing without an errno name gives the client EIO" {
    requires nbdsh
    script crash.sh <<'EOF'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    pread)
        if [ "$4" -ge 4096 ]; then
            echo "the backing store went away" >&2
            exit 1
        fi
        head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    nbd_py '
assert h.pread(512, 0) == bytes(512)
try:
    h.pread(512, 4096)
    sys.exit("a failing read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
assert h.pread(512, 512) == bytes(512)
'
    wait_until grep -q 'pread: the backing store went away' "$log"
}

@test "a script killed by a signal, or naming EPERM, fails the request so" {
    requires nbdsh
    script signal.sh <<'EOF'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    can_write) exit 0 ;;
    pread) kill -KILL $$ ;;
    pwrite) echo "EPERM writes are not allowed today" >&2; exit 1 ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    nbd_py '
for op, err in ((lambda: h.pread(512, 0), errno.EIO),
                (lambda: h.pwrite(b"x" * 512, 0), errno.EPERM)):
    try:
        op()
        sys.exit("a failing request succeeded")
    except nbd.Error as e:
        assert e.errnum == err, e
'
    wait_until grep -q 'pread: killed by signal 9' "$log"
    wait_until grep -q 'pwrite: writes are not allowed today' "$log"
}

@test "a script printing too few bytes for pread fails the read" {
    requires nbdsh
    script short.sh <<'EOF'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    pread) head -c 100 /dev/zero ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    nbd_py '
try:
    h.pread(512, 0)
    sys.exit("a short read succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
'
    wait_until grep -q 'pread: the script printed 100 bytes, but 512 were asked for' "$log"
}

@test "a script sees a private \$tmpdir, removed when the server stops" {
    requires nbdsh
    script tmpdir.sh <<EOF
#!/bin/sh
case "\$1" in
    config_complete) echo "\$tmpdir" > "$BATS_TEST_TMPDIR/where" ;;
    get_size) echo 1M ;;
    pread) head -c "\$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    dir=$(cat "$BATS_TEST_TMPDIR/where")
    [ -d "$dir" ]
    [ "$(stat -c %a "$dir")" = 700 ]
    stop_server
    [ ! -e "$dir" ]
}

@test "a script without a #! line runs under /bin/sh" {
    requires nbdinfo
    script noshebang.sh <<'EOF'
case "$1" in
    get_size) echo 5M ;;
    pread) head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    [ "$(nbdinfo --size "$uri")" = 5242880 ]
}

@test "a script whose #! line is nbdkit sh is a server of its own" {
    requires nbdinfo
    line="#!$NBDKIT sh"
    # The kernel reads at most 255 bytes of a "#!" line (127 before 5.1).
    [ ${#line} -lt 127 ] || skip "the path of nbdkit is too long for a #! line"
    script shebang.sh <<EOF
$line
case "\$1" in
    get_size) echo 7M ;;
    pread) head -c "\$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF
    sock=$BATS_TEST_TMPDIR/sock
    pidfile=$BATS_TEST_TMPDIR/shebang.pid
    "$script" -f -U "$sock" -P "$pidfile" </dev/null >/dev/null \
        2>"$BATS_TEST_TMPDIR/server.log" 3>&- &
    server_pid=$!
    wait_until test -s "$pidfile"
    [ "$(nbdinfo --size "nbd+unix:///?socket=$sock")" = 7340032 ]
}

@test "exit status 4 shuts the server down, the request succeeding" {
    requires nbdsh
    script shutdown.sh <<'EOF'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    pread) head -c "$3" /dev/zero ;;
    can_flush) exit 0 ;;
    flush) exit 4 ;;
    *) exit 2 ;;
esac
EOF
    start_server sh "$script"
    nbd_py 'h.flush()'
    wait_until eval '! kill -0 $server_pid 2>/dev/null'
    rc=0
    wait "$server_pid" || rc=$?
    [ "$rc" -eq 0 ]
    server_pid=
}

@test "a missing script is an error that names it" {
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/sock" sh "$BATS_TEST_TMPDIR/nosuch.sh"
    [ "$status" -ne 0 ]
    echo "$output"
    echo "$output" | grep -q "nosuch.sh"
}

@test "a script that is not executable is an error that says so" {
    printf 'exit 2\n' > "$BATS_TEST_TMPDIR/plain.sh"
    chmod 644 "$BATS_TEST_TMPDIR/plain.sh"
    run "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/sock" sh "$BATS_TEST_TMPDIR/plain.sh"
    [ "$status" -ne 0 ]
    echo "$output"
    echo "$output" | grep -q "plain.sh: the script is not executable"
    echo "$output" | grep -q "chmod +x"
}

@test "nbdkit sh --help describes the script parameter" {
    run "$NBDKIT" sh --help
    [ "$status" -eq 0 ]
    echo "$output"
    echo "$output" | grep -q 'script=<FILENAME>'
    echo "$output" | grep -q 'magic_config_key'
}

@test "the data a script keeps in \$tmpdir survives a crash of the backend" {
    requires nbdsh dd truncate
    start_server sh "$ramdisk" 4M
    nbd_py 'h.pwrite(b"kept" * 1024, 8192)'
    old=$(backend_pid)
    kill -KILL "$old"
    wait_until eval '[ -n "$(backend_pid)" ] && [ "$(backend_pid)" != "$old" ]'
    nbd_py 'assert h.pread(4096, 8192) == b"kept" * 1024'
}

# nbdkit(1)'s own example: the script on standard input.
@test "nbdkit sh - reads the script from standard input, as nbdkit does" {
    requires nbdinfo nbdsh
    printf '%s\n' 'case "$1" in' '  get_size) echo 1M ;;' \
        '  pread) head -c "$3" /dev/zero ;;' '  *) exit 2 ;;' 'esac' \
        > "$BATS_TEST_TMPDIR/inline"
    run "$NBDKIT" -U - sh - \
        --run 'nbdinfo --size "$uri" && nbdsh -u "$uri" -c "h.pread(4, 0)"' \
        < "$BATS_TEST_TMPDIR/inline"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = 1048576 ]
}

@test "script=- and <(...) process substitution give the backend a copy, removed at exit" {
    requires nbdinfo
    printf '%s\n' 'case "$1" in' '  get_size) echo 2M ;;' \
        '  pread) head -c "$3" /dev/zero ;;' '  *) exit 2 ;;' 'esac' \
        > "$BATS_TEST_TMPDIR/inline"
    run bash -c '"$1" -v -U - sh <(cat "$2") --run "nbdinfo --size \"\$uri\""' \
        _ "$NBDKIT" "$BATS_TEST_TMPDIR/inline"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *2097152* ]]
    copy=$(echo "$output" | sed -n 's/.*: saved as \(.*inline-script.sh\)$/\1/p' | head -n 1)
    [ -n "$copy" ]
    [ ! -e "$copy" ]
    [ ! -e "$(dirname "$copy")" ]
    run "$NBDKIT" -U - sh script=- --run 'nbdinfo --size "$uri"' \
        < "$BATS_TEST_TMPDIR/inline"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = 2097152 ]
}

@test "with -s, script=- is refused: standard input is the client" {
    run "$NBDKIT" -s sh - </dev/null
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"script=-: with -s standard input is the client's connection"* ]]
}

# calls_of METHOD: how many times the script logged METHOD.
calls_of() {
    grep -cx "$1" "$BATS_TEST_TMPDIR/calls" || true
}

@test "a script sees the environment the server was started with" {
    requires nbdinfo
    script env.sh <<'EOF2'
#!/bin/sh
case "$1" in
    get_size) echo "${DISK_SIZE:-1M}" ;;
    pread) head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF2
    DISK_SIZE=3M start_server sh "$script"
    [ "$(nbdinfo --size "$uri")" = 3145728 ]
    stop_server
    DISK_SIZE=3M start_server --backend-clean-environment sh "$script"
    [ "$(nbdinfo --size "$uri")" = 1048576 ]
}

@test "an errno name on stderr is recognized in any case, and only at the start" {
    requires nbdsh
    script errs.sh <<'EOF2'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    pread)
        case "$4" in
            0) echo 'enospc no room here' >&2 ;;
            512) echo 'Eperm' >&2 ;;
            1024) echo 'EINVALID is not a name' >&2 ;;
            *) echo ' EROFS after a blank' >&2 ;;
        esac
        exit 1 ;;
    *) exit 2 ;;
esac
EOF2
    start_server sh "$script"
    nbd_py '
for off, want in ((0, errno.ENOSPC), (512, errno.EPERM), (1024, errno.EIO),
                  (2048, errno.EIO)):
    try:
        h.pread(1, off)
        sys.exit("a failing read succeeded")
    except nbd.Error as e:
        assert e.errnum == want, (off, e)
'
    wait_until grep -q 'pread: no room here' "$log"
}

@test "an error of several lines on stderr is one line in the log" {
    requires nbdsh
    # Each newline became "; " in place, one byte longer: the message
    # overran itself and the backend died of SIGSEGV (found by fuzzing:
    # tests/fuzz/corpus-sh-output/crash-stderr-lines).
    script lines.sh <<'EOF2'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    pread) printf 'warning: first\nEPERM second\nthird\n\n  fourth\n' >&2
           exit 1 ;;
    *) exit 2 ;;
esac
EOF2
    start_server sh "$script"
    nbd_py '
for i in range(3):
    try:
        h.pread(1, 0)
        sys.exit("a failing read succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, e
'
    wait_until grep -q 'pread: warning: first; second; third; fourth' "$log"
    stop_server
    not grep -q 'killed by signal' "$log"
}

@test "open loses exactly one trailing newline of the handle it prints" {
    requires nbdinfo
    script handle.sh <<'EOF2'
#!/bin/sh
case "$1" in
    open) printf ' h \n\n' ;;
    get_size) echo "${#2}M" ;;
    pread) head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF2
    start_server sh "$script"
    # The handle is " h \n": 4 characters.
    [ "$(nbdinfo --size "$uri")" = 4194304 ]
}

@test "each can_* method runs at most once per connection" {
    requires nbdsh
    script caps.sh <<EOF2
#!/bin/sh
echo "\$1" >> "$BATS_TEST_TMPDIR/calls"
case "\$1" in
    get_size) echo 1M ;;
    pread) head -c "\$3" /dev/zero ;;
    pwrite|zero|trim|flush|cache) cat > /dev/null ;;
    can_fua|can_cache) echo native ;;
    can_*|is_rotational) exit 0 ;;
    *) exit 2 ;;
esac
EOF2
    start_server sh "$script"
    nbd_py '
h.pwrite(b"x" * 512, 0, nbd.CMD_FLAG_FUA)
h.zero(512, 0)
h.trim(512, 0)
h.flush()
h.cache(512, 0)
'
    [ "$(calls_of open)" = 1 ]
    for m in can_write can_flush can_trim can_zero can_fast_zero \
             can_extents can_multi_conn can_fua can_cache is_rotational; do
        echo "$m: $(calls_of "$m")"
        [ "$(calls_of "$m")" = 1 ]
    done
}

@test "serialize_connections never advertises multi-conn, as in nbdkit" {
    requires nbdinfo
    script serial.sh <<'EOF2'
#!/bin/sh
case "$1" in
    thread_model) echo serialize_connections ;;
    get_size) echo 1M ;;
    pread) head -c "$3" /dev/zero ;;
    can_multi_conn) exit 0 ;;
    *) exit 2 ;;
esac
EOF2
    start_server sh "$script"
    nbdinfo "$uri" | grep -q 'can_multi_conn: false'
    for ref in /usr/bin/nbdkit; do
        [ -x "$ref" ] || continue
        "$ref" -U - sh "$script" --run 'nbdinfo $uri' |
            grep -q 'can_multi_conn: false'
    done
}

@test "NAMES+DESCRIPTIONS with an odd number of lines leaves the last name without a description" {
    requires nbdinfo
    script odd.sh <<'EOF2'
#!/bin/sh
case "$1" in
    list_exports) printf 'NAMES+DESCRIPTIONS\na\nb\nthe a one\n' ;;
    open) echo "$3" ;;
    get_size) echo 1M ;;
    pread) head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF2
    start_server sh "$script"
    nbdinfo --list "$uri" > "$BATS_TEST_TMPDIR/list"
    cat "$BATS_TEST_TMPDIR/list"
    grep -q 'export="a":' "$BATS_TEST_TMPDIR/list"
    grep -q 'export="b":' "$BATS_TEST_TMPDIR/list"
    [ "$(grep -c 'description:' "$BATS_TEST_TMPDIR/list")" = 1 ]
    grep -q 'description: the a one' "$BATS_TEST_TMPDIR/list"
}

@test "a failing default_export without list_exports lists no export" {
    requires nbdinfo
    script nodefault.sh <<'EOF2'
#!/bin/sh
case "$1" in
    default_export) echo 'EINVAL no default here' >&2; exit 1 ;;
    open) echo "$3" ;;
    get_size) echo 1M ;;
    pread) head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF2
    start_server sh "$script"
    run nbdinfo --list "$uri"
    echo "$output"
    [ "$status" -eq 0 ]
    echo "$output" | not grep -q 'export='
    wait_until grep -q 'default_export: no default here' "$log"
    # A named export still opens.
    [ "$(nbdinfo --size "nbd+unix:///x?socket=$sock")" = 1048576 ]
}

@test "exit status 7 answers the request, then the client's requests fail with ESHUTDOWN" {
    requires nbdsh
    script soft.sh <<'EOF2'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    pread) head -c "$3" /dev/zero; [ "$4" = 512 ] && exit 7; exit 0 ;;
    *) exit 2 ;;
esac
EOF2
    start_server sh "$script"
    nbd_py '
assert h.pread(512, 512) == bytes(512)
try:
    h.pread(512, 0)
    sys.exit("a read after the disconnect succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ESHUTDOWN, e
'
    # Another client is not affected.
    nbd_py 'assert h.pread(512, 0) == bytes(512)'
}

@test "exit status 8 fails the request and every later request of the client" {
    requires nbdsh
    script hard.sh <<'EOF2'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    pread)
        case "$4" in
            512) exit 6 ;;
            1024) echo 'ENOSPC full' >&2; exit 8 ;;
        esac
        head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF2
    start_server sh "$script"
    nbd_py "
try:
    h.pread(512, 1024)
    sys.exit('the read succeeded')
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
try:
    h.pread(512, 0)
    sys.exit('a read after the disconnect succeeded')
except nbd.Error as e:
    assert e.errnum == errno.ESHUTDOWN, e
"
}

@test "exit status 6 drops the client at once, without an answer" {
    requires nbdsh
    script drop.sh <<'EOF2'
#!/bin/sh
case "$1" in
    get_size) echo 1M ;;
    pread) [ "$4" = 512 ] && exit 6; head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
EOF2
    start_server sh "$script"
    nbd_py "
try:
    h.pread(512, 512)
    sys.exit('the read succeeded')
except nbd.Error as e:
    pass
# The server closed the connection: the handle is no longer usable.
assert h.aio_is_dead() or h.aio_is_closed(), 'the connection is still open'
"
    wait_until eval "grep -q 'the backend disconnected the client' '$log' ||
                     grep -q 'exit status 6' '$log'"
    # Another client is not affected.
    nbd_py 'assert h.pread(512, 0) == bytes(512)'
}

# A script that records each method called.
calls_script() {
    cat > "$BATS_TEST_TMPDIR/calls.sh" <<'SH'
#!/bin/bash
echo "$1" >> "$CALLS"
case "$1" in
    get_size) echo 1048576 ;;
    open) echo h ;;
    default_export) echo "" ;;
    export_description) echo "a disk" ;;
    pread) head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
SH
    chmod +x "$BATS_TEST_TMPDIR/calls.sh"
    export CALLS=$BATS_TEST_TMPDIR/calls
    rm -f "$CALLS"
}

# The calls of one run, without those of the server's start and end.
connection_calls() {
    grep -Ev '^(load|unload|config.*|get_ready|after_fork|thread_model|magic_config_key|can_.*|is_rotational|block_size|get_size)$' "$CALLS" | tr '\n' ' '
}

@test "sh: preconnect and default_export once per connection, as nbdkit" {
    requires nbdinfo
    calls_script
    "$NBDKIT" -U - sh "$BATS_TEST_TMPDIR/calls.sh" \
        --run 'nbdinfo "$uri" >/dev/null'
    # nbdinfo asks NBD_OPT_INFO, then NBD_OPT_GO, on one connection.
    [ "$(grep -c '^preconnect$' "$CALLS")" -eq 1 ]
    [ "$(grep -c '^default_export$' "$CALLS")" -eq 1 ]
    [ "$(grep -c '^open$' "$CALLS")" -eq 2 ]
    calls_script
    "$NBDKIT" -U - sh "$BATS_TEST_TMPDIR/calls.sh" \
        --run 'nbdinfo --list "$uri" >/dev/null'
    # As nbdkit 1.32: the listing without list_exports, then the open of
    # the default export, asking default_export once.
    [ "$(connection_calls)" = "preconnect list_exports default_export open export_description close " ]
}

@test "sh: export_description only when the client asks for it" {
    requires nbdsh
    calls_script
    "$NBDKIT" -U - sh "$BATS_TEST_TMPDIR/calls.sh" \
        --run 'nbdsh -u "$uri" -c "h.pread(512, 0)"'
    not grep -q '^export_description$' "$CALLS"
    calls_script
    "$NBDKIT" -U - sh "$BATS_TEST_TMPDIR/calls.sh" \
        --run 'nbdsh -c "h.set_full_info(True)" -u "$uri" -c "assert h.get_export_description() == \"a disk\""'
    grep -q '^export_description$' "$CALLS"
}

@test "sh: a failing preconnect refuses the connection" {
    requires nbdinfo
    cat > "$BATS_TEST_TMPDIR/refuse.sh" <<'SH'
#!/bin/bash
case "$1" in
    preconnect) echo "EPERM not you" >&2; exit 1 ;;
    get_size) echo 1048576 ;;
    open) echo h ;;
    *) exit 2 ;;
esac
SH
    chmod +x "$BATS_TEST_TMPDIR/refuse.sh"
    run "$NBDKIT" -U - sh "$BATS_TEST_TMPDIR/refuse.sh" --run 'nbdinfo "$uri"'
    [ "$status" -ne 0 ]
    [[ "$output" == *"not you"* ]]
}
