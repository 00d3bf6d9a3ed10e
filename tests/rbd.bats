# The rbd backend against a real one-node Ceph cluster (monitor,
# manager and a bluestore OSD on a sparse file, on 127.0.0.1), started
# once for the file by ceph-cluster.bash; the last test kills every
# daemon and starts them again on the same data.  Images are made and checked with rbd(8); data
# goes in and out with nbdcopy and qemu-img and is compared by
# checksum.  Without the Ceph packages every test skips, saying why.

bats_require_minimum_version 1.5.0

load helpers
load ceph-cluster

BACKEND=$top_builddir/backends/rbd/nbdkit-rbd-backend

setup_file() {
    export SKIP_BUILD=$BATS_FILE_TMPDIR/skip-build
    if [ ! -x "$BACKEND" ]; then
        echo "the rbd backend was not built (configure did not find librbd: install librbd-dev)" > "$SKIP_BUILD"
        return 0
    fi
    ceph_start bluestore mgr
    [ -s "$CEPH_SKIP" ] || echo "# Ceph cluster (bluestore, mgr) up in ${CEPH_START_SECS}s" >&3
}

teardown_file() {
    ceph_stop
}

rbd_requires() {
    [ ! -s "$SKIP_BUILD" ] || skip "$(cat "$SKIP_BUILD")"
    ceph_requires
    requires nbdinfo nbdsh nbdcopy "$@"
    RBDP=(conf="$CEPH_CONF" keyring="$CEPH_KEYRING")
}

rbdc() {
    timeout 120 rbd -c "$CEPH_CONF" "$@"
}

# ---- the command line (no cluster needed) ----

@test "rbd: --dump-plugin and --help name the backend, its magic key and every parameter" {
    [ ! -s "$SKIP_BUILD" ] || skip "$(cat "$SKIP_BUILD")"
    run "$NBDKIT" rbd --dump-plugin
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx 'name=rbd'
    echo "$output" | grep -qx 'magic_config_key=image'
    echo "$output" | grep -qx 'thread_model=parallel'
    echo "$output" | grep -q '^librbd_version=[0-9]'
    run "$NBDKIT" rbd --help
    [ "$status" -eq 0 ]
    for k in image pool namespace snap conf cluster id keyring create size; do
        echo "$output" | grep -qE "^(\[)?$k(\])?=" || { echo "no $k=" >&2; false; }
    done
}

@test "rbd: every parameter is checked: a wrong value stops the server with status 1, named in the message" {
    [ ! -s "$SKIP_BUILD" ] || skip "$(cat "$SKIP_BUILD")"
    check() {   # check 'PATTERN' PARAMS...
        local pat=$1; shift
        run "$NBDKIT" -U - rbd "$@" --run true
        [ "$status" -eq 1 ] || { echo "exit $status for $*: $output" >&2; return 1; }
        echo "$output" | grep -qF -- "$pat" ||
            { echo "no '$pat' in: $output" >&2; return 1; }
    }
    check 'the image is required: [image=]IMAGE' pool=rbd
    check 'image=: the value must not be empty' image=
    check 'pool=a/b: a Ceph pool name cannot contain' pool=a/b disk
    check "image=x@s: a Ceph image name cannot contain '/' or '@'" x@s
    check 'namespace=: the value must not be empty' namespace= disk
    check 'create=true needs the size of the new image: size=SIZE' disk create=true
    check 'size=1048576 is only used with create=true' disk size=1M
    check 'size=0: an RBD image must not be empty' disk create=true size=0
    check 'size=1Q' disk create=true size=1Q
    check 'create=maybe' disk create=maybe
    check 'create=true and snap=s do not go together' disk create=true size=1M snap=s
    check '/nonexistent/ceph.conf' disk conf=/nonexistent/ceph.conf
    check '/nonexistent/keyring' disk keyring=/nonexistent/keyring
    check "unknown parameter 'user'" disk user=admin
}

# ---- against the cluster ----

@test "rbd: a cluster that refuses: no pool, a wrong key, no image" {
    rbd_requires
    run "$NBDKIT" -U - rbd "${RBDP[@]}" pool=nosuchpool disk --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"pool=nosuchpool: No such file or directory (no such pool in the cluster)"* ]]
    # A keyring with another key for client.admin.
    ceph-authtool "$BATS_TEST_TMPDIR/wrong" --create-keyring --gen-key -n client.admin >/dev/null
    run "$NBDKIT" -U - rbd conf="$CEPH_CONF" keyring="$BATS_TEST_TMPDIR/wrong" disk --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"cannot connect to the Ceph cluster as client.admin: Permission denied (check id= and keyring=)"* ]]
    run "$NBDKIT" -U - rbd "${RBDP[@]}" id=nobody disk --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"as client.nobody"* ]]
    # The server starts (the cluster is fine) but the image is not
    # there: the client's open is refused with ENOENT and the reason.
    start_server rbd "${RBDP[@]}" nosuchimage
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    [[ "$output" = *"No such file or directory"* ]]
    wait_until grep -q 'image rbd/nosuchimage does not exist' "$log"
}

@test "rbd: 256 MiB in with 4 connections and out with 1 and 4, by checksum; qemu-img compare" {
    rbd_requires qemu-img
    rbdc create --size 256M rbd/copy
    random_file "$BATS_TEST_TMPDIR/in.img" 256M
    start_server rbd "${RBDP[@]}" copy
    nbdinfo --json "$uri" | grep -q '"can_multi_conn": true'
    nbdcopy -C 4 "$BATS_TEST_TMPDIR/in.img" "$uri"
    nbdcopy -C 1 "$uri" "$BATS_TEST_TMPDIR/out1.img"
    [ "$(sha "$BATS_TEST_TMPDIR/out1.img")" = "$(sha "$BATS_TEST_TMPDIR/in.img")" ]
    rm "$BATS_TEST_TMPDIR/out1.img"
    nbdcopy -C 4 "$uri" "$BATS_TEST_TMPDIR/out4.img"
    [ "$(sha "$BATS_TEST_TMPDIR/out4.img")" = "$(sha "$BATS_TEST_TMPDIR/in.img")" ]
    qemu-img compare -f raw -F raw "$BATS_TEST_TMPDIR/in.img" "$uri"
    # And rbd(8) itself reads back the same bytes.
    rbdc export rbd/copy - 2>/dev/null | cmp - "$BATS_TEST_TMPDIR/in.img"
    stop_server
    rbdc rm --no-progress rbd/copy
}

@test "rbd: sparse image: block status from rbd_diff_iterate2, trim and zero read back as zeroes" {
    rbd_requires
    rbdc create --size 64M rbd/sparse
    start_server rbd "${RBDP[@]}" sparse
    # Nothing written: one hole.
    run nbdinfo --map=base:allocation "$uri"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | awk '{print $1, $2, $3}')" = "0 67108864 3" ]
    # Data at 8M and 40M (whole objects of 4M): data exactly there.
    nbdsh -u "$uri" -c '
h.pwrite(b"\xab" * (4 << 20), 8 << 20)
h.pwrite(b"\xcd" * (4 << 20), 40 << 20)
h.flush()
'
    run nbdinfo --map=base:allocation "$uri"
    echo "$output"
    [ "$(echo "$output" | awk '{print $1, $2, $3}' | tr '\n' ';')" = \
      "0 8388608 3;8388608 4194304 0;12582912 29360128 3;41943040 4194304 0;46137344 20971520 3;" ]
    # Trim the first object and zero the second: holes again, zeroes.
    nbdsh -u "$uri" -c '
h.trim(4 << 20, 8 << 20)
h.zero(4 << 20, 40 << 20)
assert h.pread(4 << 20, 8 << 20) == bytes(4 << 20)
assert h.pread(4 << 20, 40 << 20) == bytes(4 << 20)
'
    run nbdinfo --map=base:allocation "$uri"
    [ "$(echo "$output" | awk '{print $1, $2, $3}')" = "0 67108864 3" ]
    # A zero inside an object reads as zeroes, the rest stays.
    nbdsh -u "$uri" -c '
h.pwrite(b"\x11" * 8192, 1 << 20)
h.zero(4096, (1 << 20) + 1024)
b = h.pread(8192, 1 << 20)
assert b == b"\x11" * 1024 + bytes(4096) + b"\x11" * 3072, b[:16]
'
}

@test "rbd: snap= serves a snapshot read-only, unchanged by later writes" {
    rbd_requires
    rbdc create --size 16M rbd/snapimg
    random_file "$BATS_TEST_TMPDIR/v1" 16M
    random_file "$BATS_TEST_TMPDIR/v2" 16M
    start_server rbd "${RBDP[@]}" snapimg
    nbdcopy "$BATS_TEST_TMPDIR/v1" "$uri"
    stop_server
    rbdc snap create rbd/snapimg@one
    start_server rbd "${RBDP[@]}" snapimg
    nbdcopy "$BATS_TEST_TMPDIR/v2" "$uri"
    stop_server
    start_server rbd "${RBDP[@]}" image=snapimg snap=one
    nbdinfo --json "$uri" | grep -q '"is_read_only": true'
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/s.img"
    [ "$(sha "$BATS_TEST_TMPDIR/s.img")" = "$(sha "$BATS_TEST_TMPDIR/v1")" ]
    nbdsh -u "$uri" -c '
import errno
try:
    h.pwrite(b"x" * 512, 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
    stop_server
    # The image itself has the later data.
    rbdc export rbd/snapimg - 2>/dev/null | cmp - "$BATS_TEST_TMPDIR/v2"
    start_server rbd "${RBDP[@]}" image=snapimg snap=nosuch
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q 'image rbd/snapimg or its snapshot nosuch does not exist' "$log"
}

@test "rbd: create=true makes the image, reuses one of the same size, refuses another size" {
    rbd_requires
    run "$NBDKIT" -U - rbd "${RBDP[@]}" image=made create=true size=24M --run 'nbdinfo --size "$uri"'
    [ "$status" -eq 0 ]
    [ "$output" = 25165824 ]
    rbdc info rbd/made | grep -q 'size 24 MiB'
    run "$NBDKIT" -U - rbd "${RBDP[@]}" image=made create=true size=24M --run 'nbdinfo --size "$uri"'
    [ "$status" -eq 0 ]
    [ "$output" = 25165824 ]
    run "$NBDKIT" -U - rbd "${RBDP[@]}" image=made create=true size=32M --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"image rbd/made already exists with 25165824 bytes, not size=33554432"* ]]
}

@test "rbd: namespace= and pool=: the image in its namespace, not the pool's default one" {
    rbd_requires
    rbdc namespace create rbd/ns1
    rbdc create --size 8M rbd/ns1/nsimg
    run "$NBDKIT" -U - rbd "${RBDP[@]}" pool=rbd namespace=ns1 nsimg --run 'nbdinfo --size "$uri"'
    [ "$status" -eq 0 ]
    [ "$output" = 8388608 ]
    start_server rbd "${RBDP[@]}" nsimg
    run nbdinfo "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q 'image rbd/nsimg does not exist' "$log"
}

@test "rbd: two servers over one image: what one writes the other reads (multi-conn)" {
    rbd_requires
    rbdc create --size 32M rbd/shared
    random_file "$BATS_TEST_TMPDIR/in.img" 32M
    start_server rbd "${RBDP[@]}" shared
    local uri1=$uri pid1=$server_pid
    sock=$BATS_TEST_TMPDIR/sock2
    "$NBDKIT" -f -U "$sock" -P "$BATS_TEST_TMPDIR/pid2" rbd "${RBDP[@]}" shared \
        </dev/null >/dev/null 2>"$BATS_TEST_TMPDIR/log2" 3>&- &
    local pid2=$!
    wait_until test -S "$sock"
    local uri2="nbd+unix:///?socket=$sock"
    nbdcopy -C 4 "$BATS_TEST_TMPDIR/in.img" "$uri1"
    nbdcopy -C 4 "$uri2" "$BATS_TEST_TMPDIR/out.img"
    [ "$(sha "$BATS_TEST_TMPDIR/out.img")" = "$(sha "$BATS_TEST_TMPDIR/in.img")" ]
    # Interleaved: a write through the second, then a read through the
    # first with no flush between.
    nbdsh -u "$uri2" -c 'h.pwrite(b"\x5a" * 65536, 1 << 20)'
    nbdsh -u "$uri1" -c 'assert h.pread(65536, 1 << 20) == b"\x5a" * 65536'
    kill -TERM "$pid2"
    wait "$pid2" || true
}

@test "rbd: the backend killed during and between copies is restarted and no byte is lost" {
    rbd_requires
    rbdc create --size 32M rbd/killed
    random_file "$BATS_TEST_TMPDIR/in" 32M
    start_server -v --backend-max-restarts=20 rbd "${RBDP[@]}" killed
    kill_backend_during 3 nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    # A copy may end before a kill: one more, between the copies, for
    # sure.
    kill -KILL "$(backend_pid)"
    kill_backend_during 3 nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    wait_until grep -q "killed by signal SIGKILL" "$log"
    wait_until grep -q "backend restarted" "$log"
    echo "# backend kills: $(grep -c "killed by signal SIGKILL" "$log")" >&3
    stop_server
    rbdc export rbd/killed - 2>/dev/null | cmp - "$BATS_TEST_TMPDIR/in"
}

# Last: it stops the cluster under the file's other tests' images.
@test "rbd: the whole cluster (mon, mgr, OSD) killed and restarted under copies: they complete after it, or fail with EIO, never wrong data" {
    rbd_requires
    rbdc create --size 64M rbd/outage-r
    rbdc create --size 64M rbd/outage-w
    random_file "$BATS_TEST_TMPDIR/in-r" 64M
    random_file "$BATS_TEST_TMPDIR/in-w" 64M
    # One server to read from (slowed to 16 MB/s, so that the copy is
    # under way when the cluster goes), one to write to.
    start_server -v --filter=rate rbd "${RBDP[@]}" outage-r rate=128M
    nbdcopy "$BATS_TEST_TMPDIR/in-r" "$uri"
    sock=$BATS_TEST_TMPDIR/sock-w
    "$NBDKIT" -f -v -U "$sock" -P "$BATS_TEST_TMPDIR/pid-w" rbd "${RBDP[@]}" outage-w \
        </dev/null >/dev/null 2>"$BATS_TEST_TMPDIR/log-w" 3>&- &
    local pid_w=$!
    wait_until test -S "$sock"
    local uri_w="nbd+unix:///?socket=$sock"
    # The read copy is under way once the server (-v) has passed 32 of
    # its 256 reads of 256 KiB to the backend.
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out-r" 2>"$BATS_TEST_TMPDIR/err-r" &
    local copy_r=$!
    reads() { grep -c 'debug: rbd: pread ' "$log" || true; }
    wait_until eval '[ "$(reads)" -ge 32 ]' || true
    # Every daemon at once, as a power cut would; a copy in the other
    # direction starts while the cluster is down.
    ceph_stop_daemons -9
    echo "# every daemon killed with $(reads) of the 256 reads sent" >&3
    nbdcopy "$BATS_TEST_TMPDIR/in-w" "$uri_w" 2>"$BATS_TEST_TMPDIR/err-w" &
    local copy_w=$!
    local t0=$SECONDS
    ceph_restart
    echo "# the cluster was started again in $((SECONDS - t0))s" >&3
    local st_r=0 st_w=0
    wait "$copy_r" || st_r=$?
    wait "$copy_w" || st_w=$?
    if [ "$st_r" -eq 0 ]; then
        [ "$(sha "$BATS_TEST_TMPDIR/out-r")" = "$(sha "$BATS_TEST_TMPDIR/in-r")" ]
    else
        echo "# the read failed: $(cat "$BATS_TEST_TMPDIR/err-r")" >&3
        grep -q 'Input/output error' "$BATS_TEST_TMPDIR/err-r"
    fi
    if [ "$st_w" -ne 0 ]; then
        echo "# the write failed: $(cat "$BATS_TEST_TMPDIR/err-w")" >&3
        grep -q 'Input/output error' "$BATS_TEST_TMPDIR/err-w"
    fi
    # After it, through the same servers: the image read is whole, and
    # the one written holds what the copy wrote (when it succeeded).
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/after-r"
    [ "$(sha "$BATS_TEST_TMPDIR/after-r")" = "$(sha "$BATS_TEST_TMPDIR/in-r")" ]
    if [ "$st_w" -eq 0 ]; then
        nbdcopy "$uri_w" "$BATS_TEST_TMPDIR/after-w"
        [ "$(sha "$BATS_TEST_TMPDIR/after-w")" = "$(sha "$BATS_TEST_TMPDIR/in-w")" ]
    fi
    kill -TERM "$pid_w"
    wait "$pid_w" || true
    stop_server
    # And rbd(8), a client of its own, reads the same.
    rbdc export rbd/outage-r - 2>/dev/null | cmp - "$BATS_TEST_TMPDIR/in-r"
    [ "$st_w" -ne 0 ] || rbdc export rbd/outage-w - 2>/dev/null | cmp - "$BATS_TEST_TMPDIR/in-w"
}
