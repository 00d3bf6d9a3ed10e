# The ssh backend against a real OpenSSH sshd on the loopback, started
# once for the whole file as the test user (root in CI) with a private
# configuration: a free port of 127.0.0.1, a host key and a client key
# made here, known_hosts files made here, no PAM, no systemd, the SFTP
# subsystem built into sshd (internal-sftp, starting in the test's
# directory, which stands in for the remote home directory).  The
# remote files are files of this machine, so the tests check them
# directly.  When sshd cannot start, every test skips saying why.
# Where Debian's nbdkit and its ssh plugin are installed, some results
# are compared with theirs.

bats_require_minimum_version 1.5.0

load helpers

BACKEND=$top_builddir/backends/ssh/nbdkit-ssh-backend
REF=/usr/bin/nbdkit
SSHD=/usr/sbin/sshd

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---- sshd, once per file ----

write_sshd_config() {
    local d=$1
    cat > "$d/sshd_config" <<EOF
Port $SSH_PORT
Port $SSH_RO_PORT
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
MaxStartups 100
MaxSessions 100
LogLevel VERBOSE
Subsystem sftp internal-sftp -d $d/home
# The second port serves SFTP read-only: a file the user cannot write,
# also for root.
Match LocalPort $SSH_RO_PORT
    ForceCommand internal-sftp -R -d $d/home
EOF
}

stop_sshd() {
    local d=$BATS_FILE_TMPDIR/sshd pid
    pid=$(cat "$d/sshd.bgpid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait_until eval '! kill -0 '"$pid"' 2>/dev/null' || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$d/sshd.bgpid"
    if [ -f "$d/made-run-sshd" ]; then
        rmdir /run/sshd 2>/dev/null || true
    fi
}

setup_file() {
    local d=$BATS_FILE_TMPDIR/sshd
    export SKIP_REASON=$BATS_FILE_TMPDIR/skip
    export SSHD_DIR=$d
    mkdir -p "$d/home"
    if [ ! -x "$BACKEND" ]; then
        echo "the ssh backend was not built (configure did not find libssh: install libssh-dev)" > "$SKIP_REASON"
        return 0
    fi
    if [ ! -x "$SSHD" ]; then
        echo "sshd is not installed at $SSHD (apt-get install openssh-server)" > "$SKIP_REASON"
        return 0
    fi
    if ! command -v ssh-keygen >/dev/null; then
        echo "ssh-keygen is not installed (apt-get install openssh-client)" > "$SKIP_REASON"
        return 0
    fi
    ssh-keygen -q -t ed25519 -N '' -C host -f "$d/host_key"
    ssh-keygen -q -t ed25519 -N '' -C other-host -f "$d/other_host_key"
    ssh-keygen -q -t ed25519 -N '' -C client -f "$d/client_key"
    ssh-keygen -q -t ed25519 -N '' -C stranger -f "$d/stranger_key"
    cp "$d/client_key.pub" "$d/authorized_keys"
    # sshd run by root needs its privilege separation directory, which
    # the system service would make.
    if [ "$(id -u)" -eq 0 ] && [ ! -d /run/sshd ]; then
        mkdir -m 0755 /run/sshd && touch "$d/made-run-sshd"
    fi
    export SSH_PORT SSH_RO_PORT
    SSH_PORT=$(free_port)
    SSH_RO_PORT=$(free_port)
    write_sshd_config "$d"
    if ! "$SSHD" -t -f "$d/sshd_config" > "$d/check.log" 2>&1; then
        echo "sshd refuses its test configuration: $(tr '\n' ' ' < "$d/check.log")" > "$SKIP_REASON"
        return 0
    fi
    "$SSHD" -D -e -f "$d/sshd_config" </dev/null >/dev/null 2>"$d/sshd.log" 3>&- &
    echo $! > "$d/sshd.bgpid"
    if ! wait_until eval 'port_open $SSH_PORT && port_open $SSH_RO_PORT'; then
        echo "sshd did not start on 127.0.0.1:$SSH_PORT and $SSH_RO_PORT: $(tail -n 5 "$d/sshd.log" | tr '\n' ' ')" > "$SKIP_REASON"
        stop_sshd
        return 0
    fi
    local p
    for p in "$SSH_PORT" "$SSH_RO_PORT"; do
        printf '[127.0.0.1]:%s %s\n' "$p" "$(cut -d' ' -f1,2 "$d/host_key.pub")"
    done > "$d/known_hosts"
    printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$d/other_host_key.pub")" > "$d/wrong_known_hosts"
    printf 'otherhost.example %s\n' "$(cut -d' ' -f1,2 "$d/other_host_key.pub")" > "$d/unrelated_known_hosts"
    : > "$d/empty_known_hosts"
    # One login with ssh(1) proves the set-up before any test relies on it.
    if command -v ssh >/dev/null &&
       not ssh -F none -i "$d/client_key" -o IdentitiesOnly=yes -o BatchMode=yes \
           -o UserKnownHostsFile="$d/known_hosts" -p "$SSH_PORT" \
           "$(id -un)@127.0.0.1" true > "$d/ssh.log" 2>&1; then
        echo "ssh(1) cannot log in to the test sshd: $(tr '\n' ' ' < "$d/ssh.log") $(tail -n 5 "$d/sshd.log" | tr '\n' ' ')" > "$SKIP_REASON"
        stop_sshd
        return 0
    fi
    random_file "$d/disk.img" 64M
}

teardown_file() {
    stop_sshd
}

ssh_requires() {
    if [ -s "$SKIP_REASON" ]; then
        skip "$(cat "$SKIP_REASON")"
    fi
    requires nbdinfo nbdsh "$@"
    # The parameters every test connects with (SSHB: without
    # known-hosts=).
    SSHB=(host=127.0.0.1 port="$SSH_PORT" identity="$SSHD_DIR/client_key"
          config=)
    SSHP=("${SSHB[@]}" known-hosts="$SSHD_DIR/known_hosts")
    DISK=$SSHD_DIR/disk.img
}

requires_reference() {
    [ -x "$REF" ] && "$REF" ssh --dump-plugin >/dev/null 2>&1 ||
        skip "no reference nbdkit with an ssh plugin at $REF"
}

# ---- the command line ----

@test "ssh: --dump-plugin and --help: the name, the magic key path, every parameter of nbdkit's plugin" {
    ssh_requires
    run "$NBDKIT" ssh --dump-plugin
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx 'name=ssh'
    echo "$output" | grep -qx 'magic_config_key=path'
    echo "$output" | grep -qx 'thread_model=serialize_requests'
    echo "$output" | grep -q '^libssh_version=0\.'
    run "$NBDKIT" ssh --help
    [ "$status" -eq 0 ]
    for k in host path port user password identity known-hosts \
             verify-remote-host config compression create create-mode \
             create-size timeout; do
        echo "$output" | grep -qE "^(\[)?$k(\])?=" || { echo "no $k=" >&2; false; }
    done
    requires_reference
    [ "$("$REF" ssh --dump-plugin | grep '^thread_model=')" = thread_model=serialize_requests ]
    for k in $("$REF" ssh --help 2>&1 | sed -n 's/^ *\[\{0,1\}\([a-z][a-z0-9-]*\)\]\{0,1\}=.*/\1/p' | sort -u); do
        echo "$output" | grep -qE "^(\[)?$k(\])?=" || { echo "reference has $k=" >&2; false; }
    done
}

@test "ssh: every parameter is checked: a wrong value stops the server with status 1, named in the message" {
    ssh_requires
    check() {   # check 'PATTERN' PARAMS...
        local pat=$1; shift
        run "$NBDKIT" -r -U - ssh "$@" --run true
        [ "$status" -eq 1 ] || { echo "exit $status for $*: $output" >&2; return 1; }
        echo "$output" | grep -qF -- "$pat" ||
            { echo "no '$pat' in: $output" >&2; return 1; }
    }
    check 'the remote host is required: host=HOST' disk.img
    check 'the remote file is required: [path=]PATH' host=127.0.0.1
    check 'host=: the value must not be empty' host= disk.img
    check 'path=: the value must not be empty' host=127.0.0.1 path=
    check 'port=0: not a port number (use 1 to 65535' host=127.0.0.1 disk.img port=0
    check 'port=70000: not a port number' host=127.0.0.1 disk.img port=70000
    check 'port=22x: not a port number' host=127.0.0.1 disk.img port=22x
    check 'port=nosuchservice: no such TCP service' host=127.0.0.1 disk.img port=nosuchservice
    check 'verify-remote-host=maybe: not a boolean' host=127.0.0.1 disk.img verify-remote-host=maybe
    check 'compression=2: not a boolean' host=127.0.0.1 disk.img compression=2
    check 'create=true needs the size of the new file: create-size=SIZE' host=127.0.0.1 disk.img create=true
    check 'create-size=1048576 is only used with create=true' host=127.0.0.1 disk.img create-size=1M
    check 'create-size=1Q' host=127.0.0.1 disk.img create=true create-size=1Q
    check 'create-mode=0999: not a file mode' host=127.0.0.1 disk.img create=true create-size=1M create-mode=0999
    check 'create-mode=0644 is only used with create=true' host=127.0.0.1 disk.img create-mode=0644
    check 'timeout=0: out of range (use a number of seconds from 1' host=127.0.0.1 disk.img timeout=0
    check 'timeout=soon' host=127.0.0.1 disk.img timeout=soon
    check 'identity=/nonexistent/key: No such file or directory' host=127.0.0.1 disk.img identity=/nonexistent/key
    check 'known-hosts=/nonexistent/kh: No such file or directory' host=127.0.0.1 disk.img known-hosts=/nonexistent/kh
    check 'config=/nonexistent/cfg: No such file or directory' host=127.0.0.1 disk.img config=/nonexistent/cfg
    check 'identity=id-%u: the name must be absolute' host=127.0.0.1 disk.img identity=id-%u
    check 'password=+/nonexistent/pw: /nonexistent/pw: No such file or directory' host=127.0.0.1 disk.img password=+/nonexistent/pw
    check 'password=-x: not a file descriptor number' host=127.0.0.1 disk.img password=-x
    check 'user=a
b: control characters' host=127.0.0.1 disk.img "user=a
b"
    check "unknown parameter 'bogus'" host=127.0.0.1 disk.img bogus=1
}

# ---- reading ----

@test "ssh: nbdinfo shows the size of the remote file, and its capabilities" {
    ssh_requires
    start_server ssh "${SSHP[@]}" "$DISK"
    [ "$(nbdinfo --size "$uri")" = 67108864 ]
    run nbdinfo "$uri"
    echo "$output"
    echo "$output" | grep -q 'is_read_only: false'
    echo "$output" | grep -q 'can_flush: true'
    echo "$output" | grep -q 'can_multi_conn: true'
    echo "$output" | grep -q 'can_trim: false'
}

@test "ssh: the capabilities are those of nbdkit's ssh plugin" {
    ssh_requires
    requires_reference
    ours=$("$NBDKIT" -U - ssh "${SSHP[@]}" "$DISK" --run 'nbdinfo "$uri"' |
           grep -E '^\s*(export-size|is_read_only|can_[a-z_]*):')
    ref=$("$REF" -U - ssh "${SSHP[@]}" "$DISK" --run 'nbdinfo "$uri"' |
          grep -E '^\s*(export-size|is_read_only|can_[a-z_]*):')
    diff <(echo "$ref") <(echo "$ours")
}

@test "ssh: nbdcopy of 64 MiB has the checksum of the remote file" {
    ssh_requires nbdcopy
    start_server -r ssh "${SSHP[@]}" "$DISK"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/copy.img"
    [ "$(sha "$BATS_TEST_TMPDIR/copy.img")" = "$(sha "$DISK")" ]
}

@test "ssh: qemu-img compare finds the export identical to the remote file" {
    ssh_requires qemu-img
    start_server -r ssh "${SSHP[@]}" "$DISK"
    qemu-img compare -f raw -F raw "$DISK" "$uri"
}

@test "ssh: a relative path is relative to the remote starting directory; path= may be named" {
    ssh_requires
    random_file "$SSHD_DIR/home/rel-$BATS_TEST_NUMBER.img" 1M
    start_server -r ssh "${SSHP[@]}" "rel-$BATS_TEST_NUMBER.img"
    [ "$(nbdinfo --size "$uri")" = 1048576 ]
    stop_server
    start_server -r ssh "${SSHP[@]}" path="rel-$BATS_TEST_NUMBER.img" compression=true timeout=30
    nbdsh -u "$uri" -c 'import sys; sys.stdout.buffer.write(h.pread(1048576, 0))' > "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/out" "$SSHD_DIR/home/rel-$BATS_TEST_NUMBER.img"
    rm -f "$SSHD_DIR/home/rel-$BATS_TEST_NUMBER.img"
}

@test "ssh: the nbdkit(1) example verbatim, host changed: nbdkit ssh host=HOST /ABSOLUTE/PATH" {
    ssh_requires
    # SSHP: host=127.0.0.1 and the test server's port, user, key and
    # known_hosts; the path is absolute, as in the example.
    start_server ssh "${SSHP[@]}" "$DISK"
    [ "$(nbdinfo --size "$uri")" = "$(stat -c %s "$DISK")" ]
    nbdcopy "$uri" - | cmp - "$DISK"
}

# ---- writing ----

@test "ssh: nbdcopy writes 64 MiB into the remote file, which is then byte-for-byte the same" {
    ssh_requires nbdcopy qemu-img
    truncate -s 64M "$BATS_TEST_TMPDIR/remote.img"
    random_file "$BATS_TEST_TMPDIR/in.img" 64M
    start_server ssh "${SSHP[@]}" "$BATS_TEST_TMPDIR/remote.img"
    nbdcopy "$BATS_TEST_TMPDIR/in.img" "$uri"
    cmp "$BATS_TEST_TMPDIR/in.img" "$BATS_TEST_TMPDIR/remote.img"
    qemu-img compare -f raw -F raw "$BATS_TEST_TMPDIR/in.img" "$uri"
    # A flush (fsync@openssh.com), a zero (emulated by writing) and FUA.
    nbd_py '
h.flush()
h.zero(65536, 4096)
h.pwrite(b"\xab" * 512, 1024, nbd.CMD_FLAG_FUA)
'
    stop_server
    [ "$(dd if="$BATS_TEST_TMPDIR/remote.img" bs=1 skip=4096 count=65536 status=none | tr -d '\0' | wc -c)" -eq 0 ]
    [ "$(dd if="$BATS_TEST_TMPDIR/remote.img" bs=1 skip=1024 count=512 status=none | tr -d '\253' | wc -c)" -eq 0 ]
}

@test "ssh: -r serves the file read-only: a write fails with EPERM on the server" {
    ssh_requires
    cp "$DISK" "$BATS_TEST_TMPDIR/ro.img"
    start_server -r ssh "${SSHP[@]}" "$BATS_TEST_TMPDIR/ro.img"
    nbdinfo "$uri" | grep -q 'is_read_only: true'
    nbd_py '
h.set_strict_mode(0)
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("wrote")
except nbd.Error as e:
    assert e.errno in ("EPERM", "EROFS"), e.errno
'
    cmp "$DISK" "$BATS_TEST_TMPDIR/ro.img"
}

@test "ssh: a remote file the server does not let the user write is served read-only" {
    ssh_requires
    cp "$DISK" "$BATS_TEST_TMPDIR/ro.img"
    # The second port's SFTP server (sftp-server -R) refuses to open for
    # writing, with "permission denied", as for a file of mode 0444.
    start_server -v ssh "${SSHP[@]}" port="$SSH_RO_PORT" "$BATS_TEST_TMPDIR/ro.img"
    nbdinfo "$uri" | grep -q 'is_read_only: true'
    nbd_py '
h.set_strict_mode(0)
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("wrote")
except nbd.Error as e:
    assert e.errno in ("EPERM", "EROFS"), e.errno
'
    wait_until grep -q "cannot be opened for writing (permission denied): serving it read-only" "$log"
    cmp "$DISK" "$BATS_TEST_TMPDIR/ro.img"
    # nbdkit's plugin opens for writing without -r, and fails.
    requires_reference
    run "$REF" -U - ssh "${SSHP[@]}" port="$SSH_RO_PORT" "$BATS_TEST_TMPDIR/ro.img" --run 'nbdinfo "$uri"'
    [ "$status" -ne 0 ]
    run "$REF" -r -U - ssh "${SSHP[@]}" port="$SSH_RO_PORT" "$BATS_TEST_TMPDIR/ro.img" --run 'nbdinfo --size "$uri"'
    [ "$output" = 67108864 ]
}

@test "ssh: create=true creates the file with create-size= and create-mode=, once per server run" {
    ssh_requires nbdcopy
    f=$BATS_TEST_TMPDIR/new.img
    echo "old contents" > "$f"
    start_server -v ssh "${SSHP[@]}" "$f" create=true create-size=3M create-mode=0640
    # Created at the first connection, not at start-up.
    [ "$(stat -c %s "$f")" = 13 ]
    [ "$(nbdinfo --size "$uri")" = 3145728 ]
    [ "$(stat -c %s "$f")" = 3145728 ]
    [ "$(stat -c %a "$f")" = 640 ]
    [ "$(tr -d '\0' < "$f" | wc -c)" -eq 0 ]
    # Written data survives later connections and a backend restart.
    random_file "$BATS_TEST_TMPDIR/in" 3M
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    [ "$(nbdinfo --size "$uri")" = 3145728 ]
    kill -KILL "$(backend_pid)"
    wait_until grep -q "backend restarted" "$log"
    [ "$(nbdinfo --size "$uri")" = 3145728 ]
    cmp "$BATS_TEST_TMPDIR/in" "$f"
}

# ---- errors ----

@test "ssh: a missing remote file fails at connect, naming the host and the path; so does a directory" {
    ssh_requires
    start_server ssh "${SSHP[@]}" "$BATS_TEST_TMPDIR/nonexistent.img"
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "127.0.0.1:$BATS_TEST_TMPDIR/nonexistent.img (port $SSH_PORT): cannot open the remote file: no such file" "$log"
    stop_server
    start_server ssh "${SSHP[@]}" "$BATS_TEST_TMPDIR"
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "127.0.0.1:$BATS_TEST_TMPDIR (port $SSH_PORT): is a directory" "$log"
}

@test "ssh: a host key other than the known one is refused; an unknown one too" {
    ssh_requires
    start_server ssh "${SSHB[@]}" known-hosts="$SSHD_DIR/wrong_known_hosts" "$DISK"
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "is not the one $SSHD_DIR/wrong_known_hosts knows for it: refusing to connect" "$log"
    stop_server
    start_server ssh "${SSHB[@]}" known-hosts="$SSHD_DIR/empty_known_hosts" "$DISK"
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "is not in the known hosts" "$log"
}

@test "ssh: known-hosts= is repeatable; verify-remote-host=false connects without checking" {
    ssh_requires
    start_server ssh "${SSHB[@]}" known-hosts="$SSHD_DIR/unrelated_known_hosts" \
        known-hosts="$SSHD_DIR/known_hosts" "$DISK"
    [ "$(nbdinfo --size "$uri")" = 67108864 ]
    stop_server
    start_server ssh "${SSHB[@]}" known-hosts="$SSHD_DIR/wrong_known_hosts" \
        verify-remote-host=false "$DISK"
    [ "$(nbdinfo --size "$uri")" = 67108864 ]
}

@test "ssh: identity= is repeatable: a key the server does not know, then the right one" {
    ssh_requires
    start_server ssh host=127.0.0.1 port="$SSH_PORT" config= \
        known-hosts="$SSHD_DIR/known_hosts" identity="$SSHD_DIR/stranger_key" \
        identity="$SSHD_DIR/client_key" "$DISK"
    [ "$(nbdinfo --size "$uri")" = 67108864 ]
    stop_server
    start_server ssh host=127.0.0.1 port="$SSH_PORT" config= \
        known-hosts="$SSHD_DIR/known_hosts" identity="$SSHD_DIR/stranger_key" "$DISK"
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "authentication failed" "$log"
}

@test "ssh: password=+FILE with a wrong password fails to authenticate" {
    ssh_requires
    printf 'not-the-password\n' > "$BATS_TEST_TMPDIR/pw"
    start_server ssh host=127.0.0.1 port="$SSH_PORT" config= \
        known-hosts="$SSHD_DIR/known_hosts" identity="$SSHD_DIR/stranger_key" \
        password=+"$BATS_TEST_TMPDIR/pw" "$DISK"
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "authentication failed (tried: publickey password" "$log"
    grep -q "Failed password for" "$SSHD_DIR/sshd.log"
}

@test "ssh: the right password logs in" {
    ssh_requires
    skip "needs a password for the test user $(id -un) in /etc/shadow, which the tests do not change (sshd checks passwords against the system's accounts); the key login and the wrong password are tested"
}

@test "ssh: a server that is not listening: the error names the host" {
    ssh_requires
    port=$(free_port)
    start_server ssh host=127.0.0.1 port="$port" config= "$DISK"
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "127.0.0.1:$DISK (port $port): cannot connect" "$log"
}

# ---- supervision ----

@test "ssh: the backend killed with SIGKILL during copies in and out: identical checksums" {
    ssh_requires nbdcopy
    truncate -s 64M "$BATS_TEST_TMPDIR/remote.img"
    random_file "$BATS_TEST_TMPDIR/in" 64M
    start_server -v --backend-max-restarts=20 ssh "${SSHP[@]}" "$BATS_TEST_TMPDIR/remote.img"
    kill_backend_during 2 nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    kill_backend_during 2 nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/remote.img")" ]
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    wait_until grep -q "killed by signal SIGKILL" "$log"
    wait_until grep -q "backend restarted" "$log"
    [ "$(zombies)" -eq 0 ]
}
