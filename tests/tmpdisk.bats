# The tmpdisk backend: each connection gets its own fresh, empty file
# system, made by mkfs (or command=) in $TMPDIR and gone when the
# connection closes.  Checked on copies made with nbdcopy, with
# dumpe2fs, e2fsck, debugfs and file.

load helpers

setup() {
    requires nbdcopy nbdsh mke2fs dumpe2fs e2fsck debugfs
    export TMPDIR=$BATS_TEST_TMPDIR/tmp
    mkdir -p "$TMPDIR"
}

# Run a server that must fail to start: sets $status and $output.
start_fails() {
    run timeout 300 "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" "$@"
}

@test "each connection gets an empty, valid ext4 file system" {
    start_server tmpdisk 20M
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/a.img"
    run dumpe2fs -h "$BATS_TEST_TMPDIR/a.img"
    [ "$status" -eq 0 ]
    [[ "$output" == *"Filesystem features:"*"has_journal"*"extent"* ]]
    [[ "$output" == *"Block count:"* ]]
    [ "$(stat -c %s "$BATS_TEST_TMPDIR/a.img")" -eq $((20 * 1024 * 1024)) ]
    e2fsck -fn "$BATS_TEST_TMPDIR/a.img"
    # Empty: the root holds only lost+found.
    run debugfs -R 'ls /' "$BATS_TEST_TMPDIR/a.img"
    [[ "$output" == *"lost+found"* ]]
    [ "$(debugfs -R 'ls /' "$BATS_TEST_TMPDIR/a.img" 2>/dev/null |
         tr -s ' ' '\n' | grep -cv '^$\|^(\|^[0-9]')" -eq 3 ]
}

@test "two connections at once get independent disks; writes go with their connection" {
    start_server tmpdisk 20M
    nbd_py '
h2 = nbd.NBD()
h2.connect_uri(os.environ["uri"])
before = h2.pread(4096, 1 << 20)
h.pwrite(b"written by the first connection".ljust(4096, b"!"), 1 << 20)
h.flush()
assert h.pread(4096, 1 << 20).startswith(b"written by the first")
assert h2.pread(4096, 1 << 20) == before
# Different file systems: their UUIDs (in the superblock at 1024) differ.
assert h.pread(16, 1024 + 104) != h2.pread(16, 1024 + 104)
h2.shutdown()
'
    # A new connection gets a fresh disk, without the write.
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/b.img"
    not grep -q "written by the first" "$BATS_TEST_TMPDIR/b.img"
    e2fsck -fn "$BATS_TEST_TMPDIR/b.img"
}

@test "label= and type= reach mkfs" {
    start_server tmpdisk 20M label=SCRATCH type=ext2
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/a.img"
    run dumpe2fs -h "$BATS_TEST_TMPDIR/a.img"
    [[ "$output" == *"Filesystem volume name:   SCRATCH"* ]]
    [[ "$output" != *"has_journal"* ]]
    e2fsck -fn "$BATS_TEST_TMPDIR/a.img"
}

@test "type=vfat makes a FAT file system with its label" {
    requires mkfs.vfat file
    start_server tmpdisk 20M type=vfat label=SCRATCH
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/a.img"
    run file -s "$BATS_TEST_TMPDIR/a.img"
    echo "$output"
    [[ "$output" == *"FAT"* ]]
    [[ "$output" == *"SCRATCH"* ]]
}

@test "command= makes \$disk with \$size, \$type, \$label and the other parameters" {
    start_server tmpdisk 3M label=L1 colour=blue command='
        case "$disk" in "$TMPDIR"/*) ;; *) exit 9 ;; esac
        [ ! -e "$disk" ] || exit 8
        printf "%s|%s|%s|%s|" "$size" "$type" "$label" "$colour" > "$disk"
        truncate -s 5M "$disk"'
    nbd_py '
assert h.get_size() == 5 * 1024 * 1024, h.get_size()
assert h.pread(21, 0) == b"3145728||L1|blue|\0\0\0\0", h.pread(21, 0)'
}

@test "the disks are removed: nothing is left in TMPDIR, even after a failed mkfs" {
    start_server tmpdisk 20M
    nbd_py '
import os
assert os.listdir(os.environ["TMPDIR"]) == [], os.listdir(os.environ["TMPDIR"])
h.pwrite(b"x" * 512, 0)'
    [ -z "$(ls -A "$TMPDIR")" ]
    stop_server
    start_server tmpdisk 20M type=nosuchfs
    run nbdsh -u "$uri" -c 'pass'
    [ "$status" -ne 0 ]
    [ -z "$(ls -A "$TMPDIR")" ]
}

@test "a failing mkfs fails the connection, with the message of mkfs" {
    start_server tmpdisk 20M type=nosuchfs
    run nbdsh -u "$uri" -c 'pass'
    [ "$status" -ne 0 ]
    wait_until grep -q "tmpdisk: error: mkfs failed (exit status 1): .*mkfs.nosuchfs" "$log"
    stop_server
    start_server tmpdisk 20M command='echo "no room at the inn" >&2; exit 3'
    run nbdsh -u "$uri" -c 'pass'
    [ "$status" -ne 0 ]
    wait_until grep -q "command= failed (exit status 3): no room at the inn" "$log"
}

@test "bad parameters are refused with a message and status 1" {
    start_fails tmpdisk
    [ "$status" -eq 1 ]
    [[ "$output" == *"size= is required"* ]]
    start_fails tmpdisk 1M disk=/tmp/x
    [ "$status" -eq 1 ]
    [[ "$output" == *"disk=/tmp/x: 'disk' cannot be a parameter"* ]]
    start_fails tmpdisk 1M bad-key=x
    [ "$status" -eq 1 ]
    [[ "$output" == *"bad-key=x: unknown parameter, and not a shell variable name"* ]]
    start_fails tmpdisk size=12Q
    [ "$status" -eq 1 ]
    [[ "$output" == *"12Q"* ]]
    start_fails tmpdisk 1M 'type=ext4;rm'
    [ "$status" -eq 1 ]
    [[ "$output" == *"type=ext4;rm: ';' cannot be in a file system type"* ]]
    start_fails tmpdisk 1M command=
    [ "$status" -eq 1 ]
    [[ "$output" == *"command=: empty"* ]]
}

# Two connections write, the backend is killed twice (SIGKILL, as a
# crash), and each connection reads its whole disk back unchanged after
# each restart, then writes on; a new connection still gets a new disk.
# The server gives each handle's descriptor back with its re-open.
disks_survive_kills() {
    start_server -v "$@" tmpdisk 20M
    nbd_py '
import hashlib, signal, subprocess, time
log = os.environ["BATS_TEST_TMPDIR"] + "/server.log"

def whole(c):
    return hashlib.sha256(b"".join(c.pread(1 << 20, i << 20)
                                   for i in range(20))).hexdigest()

def restarts():
    return open(log, errors="replace").read().count("backend restarted")

def kill_backend():
    n = restarts()
    pid = int(subprocess.run(["pgrep", "-P", os.environ["server_pid"]],
                             capture_output=True, text=True,
                             check=True).stdout.split()[0])
    os.kill(pid, signal.SIGKILL)
    # Readiness only: the restarted backend has re-opened the handles.
    for _ in range(300):
        if restarts() > n:
            return
        time.sleep(0.1)
    sys.exit("the backend did not restart")

h2 = nbd.NBD()
h2.connect_uri(os.environ["uri"])
data, data2 = os.urandom(1 << 20), os.urandom(1 << 20)
h.pwrite(data, 5 << 20)
h2.pwrite(data2, 5 << 20)
h.pwrite(b"first".ljust(4096, b"1"), 19 << 20, nbd.CMD_FLAG_FUA)
h2.pwrite(b"second".ljust(4096, b"2"), 19 << 20)
h2.flush()
uuid, uuid2 = h.pread(16, 1024 + 104), h2.pread(16, 1024 + 104)
assert uuid != uuid2
for k in range(2):
    sums = whole(h), whole(h2)
    kill_backend()
    assert (whole(h), whole(h2)) == sums, "a disk changed in the restart"
    assert h.pread(1 << 20, 5 << 20) == data
    assert h2.pread(1 << 20, 5 << 20) == data2
    # And the restarted backend serves writes on the same disk.
    data = os.urandom(1 << 20)
    h.pwrite(data, 5 << 20)
    h.flush()
    assert h.pread(1 << 20, 5 << 20) == data
# A new connection: a new disk, not one of those.
h3 = nbd.NBD()
h3.connect_uri(os.environ["uri"])
assert h3.pread(16, 1024 + 104) not in (uuid, uuid2)
assert h3.pread(1 << 20, 5 << 20) not in (data, data2)
assert not h3.pread(6, 19 << 20).startswith((b"first", b"second"))
h3.shutdown()
h2.shutdown()
'
    [ "$(grep -c "backend process .* was killed by signal SIGKILL" "$log")" -eq 2 ]
    [ "$(grep -c "giving the handle's descriptor back" "$log")" -ge 4 ]
    # Passthrough on: the front end did the I/O; off: only kept them.
    if [ "$*" = "" ]; then
        wait_until grep -q "passthrough: the front end does the I/O" "$log"
    else
        wait_until grep -q "keeping the handle's descriptor for a re-open" "$log"
    fi
    # A new connection after the restarts: an empty, valid file system.
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/new.img"
    e2fsck -fn "$BATS_TEST_TMPDIR/new.img"
    not grep -q "first\|second" "$BATS_TEST_TMPDIR/new.img"
    [ -z "$(ls -A "$TMPDIR")" ]
    stop_server
    [ "$*" = "" ] || ! grep -q "passthrough: the front end does the I/O" "$log"
}

@test "a crash of the backend loses no connection's disk (passthrough)" {
    disks_survive_kills
}

@test "a crash of the backend loses no connection's disk (passthrough off)" {
    disks_survive_kills -D nbdkit.passthrough=0
}
