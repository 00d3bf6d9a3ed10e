# tests/ceph-cluster.bash: a one-node Ceph cluster for the tests of the
# rbd and s3 backends, started from Debian's ceph packages on 127.0.0.1
# in a private directory, without systemd, and torn down after.  It
# owns the cluster's configuration, start, readiness and stop.
#
# A bats file loads it after helpers and calls, from setup_file,
#   ceph_start [rgw] [bluestore] [mgr]
# (a monitor and one OSD; with 'rgw' radosgw too; with 'bluestore' the
# OSD keeps its data in a sparse file under $CEPH_DIR instead of in
# memory, so that it survives a restart; with 'mgr' a manager too) and,
# from teardown_file,
#   ceph_stop
# ceph_start never fails: when the cluster cannot start it writes why to
# $CEPH_SKIP, and each test calls ceph_requires, which skips saying so.
# In between, a test may stop every daemon and start them again on the
# same data (ceph_stop_daemons, ceph_restart: needs 'bluestore'), or
# radosgw alone (rgw_stop, rgw_start).
# Set: $CEPH_DIR, $CEPH_CONF (the configuration, with the admin keyring
# named in it), $CEPH_KEYRING, $RGW_URL (http://127.0.0.1:PORT), and
# $CEPH_START_SECS (how long the start took, for the log).
#
# The daemons run as the test's user (root in CI) with every path of
# theirs (data, run dir, admin sockets, logs, crash dumps) under
# $CEPH_DIR, so nothing is left in /var or /run.  Without 'mgr' the
# monitor gets no manager: neither RBD I/O nor radosgw needs one.  The
# memstore OSD (the default) holds in RAM about twice what is written,
# enough for tests of some hundreds of MiB, and loses it when it stops.
# A bluestore OSD writes to a sparse 8 GiB file (only what is written
# takes room), with a 512 MiB cache.  A client that dies keeps its
# watch on an RBD image (and so the image's exclusive lock) until the
# OSD times it out: 5 s here (osd client watch timeout) instead of 30,
# so that a killed rbd backend's successor gets the lock sooner.

CEPH_BINS="ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd rados"

ceph_free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

ceph_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ceph ARGS: the ceph(8) tool against this cluster, bounded in time.
ceph_cmd() {
    timeout 60 ceph -c "$CEPH_CONF" --connect-timeout 20 "$@"
}

# ceph_fail MESSAGE: note why the cluster is not there, stop what runs.
ceph_fail() {
    local logs=
    logs=$(tail -n 3 "$CEPH_DIR"/log/*.log 2>/dev/null | tr '\n' ' ' | cut -c1-600)
    echo "$1${logs:+ (logs: $logs)}" > "$CEPH_SKIP"
    ceph_stop
}

ceph_start() {
    local with_rgw= store=memstore with_mgr= a b start d fsid mon_port osd_uuid osd_id
    for a in "$@"; do
        case $a in
            rgw) with_rgw=rgw ;;
            bluestore) store=bluestore ;;
            mgr) with_mgr=mgr ;;
            *) echo "ceph_start: unknown option '$a' (rgw, bluestore, mgr)" >&2
               return 1 ;;
        esac
    done
    export CEPH_WITH_RGW=$with_rgw CEPH_WITH_MGR=$with_mgr CEPH_STORE=$store
    export CEPH_DIR=$BATS_FILE_TMPDIR/ceph
    export CEPH_SKIP=$BATS_FILE_TMPDIR/ceph-skip
    export CEPH_CONF=$CEPH_DIR/ceph.conf
    export CEPH_KEYRING=$CEPH_DIR/keyring
    export RGW_URL=
    d=$CEPH_DIR
    rm -f "$CEPH_SKIP"
    for b in $CEPH_BINS; do
        if ! command -v "$b" >/dev/null; then
            echo "$b is not installed: the Ceph cluster for this test needs Debian's ceph-mon, ceph-osd and ceph-common (contrib/quickstart test installs them)" > "$CEPH_SKIP"
            return 0
        fi
    done
    if [ "$with_rgw" = rgw ] && ! command -v radosgw >/dev/null; then
        echo "radosgw is not installed (Debian package radosgw; contrib/quickstart test installs it)" > "$CEPH_SKIP"
        return 0
    fi
    if [ "$with_mgr" = mgr ] && ! command -v ceph-mgr >/dev/null; then
        echo "ceph-mgr is not installed (Debian package ceph-mgr; contrib/quickstart test installs it)" > "$CEPH_SKIP"
        return 0
    fi
    start=$(date +%s)
    # A bluestore OSD writes hundreds of MiB: on tmpfs, so that its
    # dirty pages do not make the disk throttle every other writer of
    # the suite (a server's log write on /tmp then sleeps for tens of
    # milliseconds, which the loop watchdog reports as blocked).
    if [ "$store" = bluestore ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
        mkdir -p "$d" && b=$(mktemp -d /dev/shm/nbdkit-ceph-osd.XXXXXX) &&
            ln -s "$b" "$d/osd"
    fi
    mkdir -p "$d"/{mon,osd/ceph-0,mgr/ceph-x,run,log,crash,rgw}
    fsid=$(cat /proc/sys/kernel/random/uuid)
    mon_port=$(ceph_free_port)
    cat > "$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
ms bind ipv6 = false
keyring = $CEPH_KEYRING
run dir = $d/run
admin socket = $d/run/\$cluster-\$name.\$pid.asok
log file = $d/log/\$name.log
crash dir = $d/crash
mon cluster log file = $d/log/\$cluster.\$channel.log
pid file = $d/run/\$name.pid
exporter sock dir = $d/run
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd objectstore = $store
memstore device bytes = 3221225472
bluestore block create = true
bluestore block size = 8589934592
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 536870912
osd memory target = 1073741824
osd data = $d/osd/\$cluster-\$id
mon data = $d/mon/\$cluster-\$id
mgr data = $d/mgr/\$cluster-\$id
rgw data = $d/rgw/\$cluster-\$id
osd max object name len = 256
osd client watch timeout = 5
mon data avail warn = 2
mon data avail crit = 1
osd max object namespace len = 64
debug ms = 0
[client]
rbd cache = false
EOF
    {
        ceph-authtool --create-keyring "$CEPH_KEYRING" --gen-key -n mon. \
            --cap mon 'allow *' &&
        ceph-authtool "$CEPH_KEYRING" --gen-key -n client.admin \
            --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' &&
        ceph-authtool "$CEPH_KEYRING" --gen-key -n osd.0 \
            --cap mon 'allow profile osd' --cap osd 'allow *' &&
        ceph-authtool "$CEPH_KEYRING" --gen-key -n client.rgw.a \
            --cap mon 'allow rw' --cap osd 'allow rwx' &&
        ceph-authtool "$CEPH_KEYRING" --gen-key -n mgr.x \
            --cap mon 'allow profile mgr' --cap osd 'allow *' &&
        monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" \
            --fsid "$fsid" "$d/monmap" &&
        ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$d/monmap" \
            --keyring "$CEPH_KEYRING"
    } > "$d/log/mkfs.log" 2>&1 || {
        ceph_fail "the Ceph monitor could not be made: $(tail -n 3 "$d/log/mkfs.log" | tr '\n' ' ')"
        return 0
    }
    ceph-mon -c "$CEPH_CONF" -i a >> "$d/log/start.log" 2>&1 || {
        ceph_fail "ceph-mon did not start"
        return 0
    }
    if ! ceph_cmd -s > "$d/log/status.log" 2>&1; then
        ceph_fail "the Ceph monitor on 127.0.0.1:$mon_port does not answer: $(tail -n 2 "$d/log/status.log" | tr '\n' ' ')"
        return 0
    fi
    # One OSD in memory.
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    osd_id=$(ceph_cmd osd new "$osd_uuid" 2>>"$d/log/start.log") && [ "$osd_id" = 0 ] &&
    ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" \
        >> "$d/log/start.log" 2>&1 &&
    ceph-osd -c "$CEPH_CONF" -i 0 >> "$d/log/start.log" 2>&1 || {
        ceph_fail "the Ceph OSD ($store) could not be made or started: $(tail -n 3 "$d/log/start.log" | tr '\n' ' ')"
        return 0
    }
    if ! wait_until eval 'ceph_cmd osd stat 2>/dev/null | grep -q "1 up"'; then
        ceph_fail "the Ceph OSD ($store) did not come up"
        return 0
    fi
    if [ "$with_mgr" = mgr ] &&
       ! ceph-mgr -c "$CEPH_CONF" -i x >> "$d/log/start.log" 2>&1; then
        ceph_fail "ceph-mgr did not start: $(tail -n 3 "$d/log/start.log" | tr '\n' ' ')"
        return 0
    fi
    if ! { ceph_cmd osd pool create rbd 8 &&
           ceph_cmd osd pool application enable rbd rbd; } \
           >> "$d/log/start.log" 2>&1; then
        ceph_fail "the pool rbd could not be made: $(tail -n 2 "$d/log/start.log" | tr '\n' ' ')"
        return 0
    fi
    if [ "$with_rgw" = rgw ]; then
        export RGW_PORT
        RGW_PORT=$(ceph_free_port)
        if ! rgw_start; then
            ceph_fail "radosgw did not start on 127.0.0.1:$RGW_PORT: $(tail -n 3 "$d/log/start.log" | tr '\n' ' ')"
            return 0
        fi
        RGW_URL=http://127.0.0.1:$RGW_PORT
    fi
    export CEPH_START_SECS=$(( $(date +%s) - start ))
    echo "ceph-cluster: started in $CEPH_START_SECS s" > "$d/log/started"
}

# Start radosgw (again) on $RGW_PORT; wait until it listens.
rgw_start() {
    radosgw -c "$CEPH_CONF" -n client.rgw.a \
        --rgw-frontends "beast endpoint=127.0.0.1:$RGW_PORT" \
        --rgw-dns-name=127.0.0.1 >> "$CEPH_DIR/log/start.log" 2>&1 &&
    wait_until ceph_port_open "$RGW_PORT"
}

# Every daemon's pid (by the pid files of $CEPH_DIR/run).
ceph_pids() {
    local f
    for f in "$CEPH_DIR"/run/*.pid; do
        [ -f "$f" ] && cat "$f"
    done
}

# Stop every daemon, keep their data: with SIGTERM (then SIGKILL for
# one that hangs), or with -9 all at once with SIGKILL, as a power cut
# would.
ceph_stop_daemons() {
    local sig=TERM pid pids
    [ "${1:-}" != -9 ] || sig=KILL
    pids=$(ceph_pids)
    for pid in $pids; do
        kill -"$sig" "$pid" 2>/dev/null || true
    done
    for pid in $pids; do
        wait_until eval '! kill -0 '"$pid"' 2>/dev/null' ||
            kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$CEPH_DIR"/run/*.pid
}

# Start the daemons stopped by ceph_stop_daemons again on their data
# (bluestore: a memstore OSD would come back empty), in the order of a
# cold start, and wait until the OSD is up and the pool's placement
# groups are active.  Returns non-zero, naming what failed, if not.
ceph_restart() {
    local d=$CEPH_DIR
    if [ "$CEPH_STORE" != bluestore ]; then
        echo "ceph_restart: the OSD is $CEPH_STORE; start the cluster with 'bluestore'" >&2
        return 1
    fi
    ceph-mon -c "$CEPH_CONF" -i a >> "$d/log/start.log" 2>&1 ||
        { echo "ceph-mon did not start again" >&2; return 1; }
    ceph-osd -c "$CEPH_CONF" -i 0 >> "$d/log/start.log" 2>&1 ||
        { echo "ceph-osd did not start again" >&2; return 1; }
    if [ "$CEPH_WITH_MGR" = mgr ]; then
        ceph-mgr -c "$CEPH_CONF" -i x >> "$d/log/start.log" 2>&1 ||
            { echo "ceph-mgr did not start again" >&2; return 1; }
    fi
    wait_until eval 'ceph_cmd osd stat 2>/dev/null | grep -q "1 up"' ||
        { echo "the OSD did not come up again" >&2; return 1; }
    if [ "$CEPH_WITH_RGW" = rgw ]; then
        rgw_start || { echo "radosgw did not start again" >&2; return 1; }
    fi
}

# Stop radosgw alone (the cluster stays), and wait until it is gone.
rgw_stop() {
    local pid
    pid=$(cat "$CEPH_DIR/run/client.rgw.a.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    wait_until eval '! kill -0 '"$pid"' 2>/dev/null' || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$CEPH_DIR/run/client.rgw.a.pid"
}

# Stop every daemon started from $CEPH_DIR, then remove the directory.
ceph_stop() {
    local d=${CEPH_DIR:-}
    [ -n "$d" ] && [ -d "$d" ] || return 0
    ceph_stop_daemons
    [ -L "$d/osd" ] && rm -rf "$(readlink "$d/osd")"
    rm -rf "$d"
}

# In each test: skip, saying why, when the cluster is not there.
ceph_requires() {
    if [ -s "$CEPH_SKIP" ]; then
        skip "no Ceph cluster: $(cat "$CEPH_SKIP")"
    fi
}
