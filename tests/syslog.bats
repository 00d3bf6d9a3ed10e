#!/usr/bin/env bats
# Errors sent to syslog: --log=syslog, and the defaults (syslog once
# forked into the background, stderr with -f).
#
# syslog(3) writes to the datagram socket /dev/log.  So that the test
# owns that socket without touching the machine's, everything runs in
# a private mount namespace (unshare -m, root only) where /dev is a
# tmpfs holding bind mounts of the real entries plus the test's own
# /dev/log, bound by a small python listener that writes each message
# as a line to a file.  The namespace, its mounts and the listener end
# with the test.  Without unshare or the privilege for it, the tests
# are skipped.
#
# The error logged is the offset filter's, when a client opens an
# export that the offset puts beyond the end of the disk: a message the
# server logs (with nbdkit_error) well after it has started.

load helpers

# The listener: bind /dev/log, then append each datagram to $1 as one
# line; "ready" is written to $2 once bound.
listener_py='
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
open(sys.argv[2], "w").write("ready\n")
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        m = s.recv(65536)
        out.write(m.replace(b"\n", b" ").rstrip(b"\0") + b"\n")
'

setup() {
    requires unshare mount nbdinfo
    [ "$(id -u)" = 0 ] || skip "needs root for a private mount namespace"
    unshare -m --propagation private true 2>/dev/null ||
        skip "cannot make a mount namespace here (unshare -m failed)"
    msgs=$BATS_TEST_TMPDIR/syslog
    : > "$msgs"
}

# in_private_dev SCRIPT: run the bash SCRIPT in a private mount
# namespace with a private /dev whose /dev/log is the listener's.
# $msgs, $NBDKIT and $d (the test's directory) are set in SCRIPT.
in_private_dev() {
    local d=$BATS_TEST_TMPDIR
    cat > "$d/ns.sh" <<EOF
set -eu
d='$d'
msgs='$msgs'
NBDKIT='$NBDKIT'
mkdir -p "\$d/realdev"
mount --rbind /dev "\$d/realdev"
mount -t tmpfs -o mode=755 devtmp /dev
for e in "\$d/realdev"/* "\$d/realdev"/.[!.]*; do
    [ -e "\$e" ] || [ -L "\$e" ] || continue
    n=\${e##*/}
    if [ -L "\$e" ]; then
        cp -P "\$e" "/dev/\$n"
    elif [ -d "\$e" ]; then
        mkdir "/dev/\$n" && mount --rbind "\$e" "/dev/\$n"
    else
        touch "/dev/\$n" && mount --bind "\$e" "/dev/\$n"
    fi
done
/usr/bin/python3 -c '$listener_py' "\$msgs" "\$d/ready" &
listener=\$!
stop_all() {
    if [ -s "\$d/pid" ]; then kill "\$(cat "\$d/pid")" 2>/dev/null || true; fi
    kill \$listener 2>/dev/null || true
}
trap stop_all EXIT
for i in \$(seq 300); do [ -s "\$d/ready" ] && break; sleep 0.1; done
[ -S /dev/log ]
$1
EOF
    unshare -m --propagation private bash "$d/ns.sh"
}

@test "--log=syslog sends errors to syslog as daemon.err, with the pid" {
    in_private_dev '
"$NBDKIT" -f --log=syslog -U "$d/sock" -P "$d/pid" \
    --filter=offset memory 1M offset=2M 2>"$d/stderr" &
for i in $(seq 300); do [ -s "$d/pid" ] && break; sleep 0.1; done
! nbdinfo --size "nbd+unix:///?socket=$d/sock" 2>/dev/null
for i in $(seq 300); do grep -q "beyond the end" "$msgs" && break; sleep 0.1; done
'
    cat "$msgs"
    pid=$(cat "$BATS_TEST_TMPDIR/pid")
    # LOG_DAEMON (3 << 3) | LOG_ERR (3) = 27; openlog's ident and LOG_PID.
    grep -q "^<27>.*nbdkit\[$pid\]: offset filter: .*offset=2097152 is beyond the end of the disk (size 1048576)" "$msgs"
    # ... and not to stderr as well.
    not grep -q "beyond the end" "$BATS_TEST_TMPDIR/stderr"
}

@test "in the background, errors go to syslog by default" {
    in_private_dev '
"$NBDKIT" -U "$d/sock" -P "$d/pid" --filter=offset memory 1M offset=2M \
    2>"$d/stderr"
! nbdinfo --size "nbd+unix:///?socket=$d/sock" 2>/dev/null
for i in $(seq 300); do grep -q "beyond the end" "$msgs" && break; sleep 0.1; done
'
    cat "$msgs"
    pid=$(cat "$BATS_TEST_TMPDIR/pid")
    grep -q "^<27>.*nbdkit\[$pid\]: offset filter: .*offset=2097152 is beyond the end" "$msgs"
    not grep -q "beyond the end" "$BATS_TEST_TMPDIR/stderr"
}

@test "with -f, errors go to stderr by default and not to syslog" {
    in_private_dev '
"$NBDKIT" -f -U "$d/sock" -P "$d/pid" --filter=offset memory 1M offset=2M \
    2>"$d/stderr" &
for i in $(seq 300); do [ -s "$d/pid" ] && break; sleep 0.1; done
! nbdinfo --size "nbd+unix:///?socket=$d/sock" 2>/dev/null
for i in $(seq 300); do grep -q "beyond the end" "$d/stderr" && break; sleep 0.1; done
# The server logged before it answered the client; a marker sent after
# that arrives after anything it sent to /dev/log.
/usr/bin/python3 -c "
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b\"<14>test: marker\", \"/dev/log\")"
for i in $(seq 300); do grep -q "test: marker" "$msgs" && break; sleep 0.1; done
'
    cat "$msgs"
    grep -q "offset filter: .*offset=2097152 is beyond the end" "$BATS_TEST_TMPDIR/stderr"
    grep -q "test: marker" "$msgs"
    not grep -q "beyond the end" "$msgs"
}
