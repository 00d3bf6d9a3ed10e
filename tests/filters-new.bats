#!/usr/bin/env bats
# The multi-conn, noparallel and nocache filters
# (nbdkit-multi-conn-filter(1), nbdkit-noparallel-filter(1),
# nbdkit-nocache-filter(1)): what the export advertises, and what
# reaches the layer below, seen with the log filter placed under them
# or with an sh backend that records which requests overlap.  The
# expected results are those of nbdkit 1.32 (NBDKIT=/usr/bin/nbdkit
# runs the same checks against it, apart from the wording of errors).

load helpers

# ---- helpers ----

# The value of one field of the export, as nbdinfo reports it.
field() {
    nbdinfo --json "$uri" | /usr/bin/python3 -c "import json, sys; print(json.load(sys.stdin)['exports'][0]['$1'])"
}

# What reached the layer below (the log filter's logfile=$BATS_TEST_TMPDIR/log),
# in order, one word per request: c1Write c2Flush ...  (cN: the Nth connection).
below() {
    grep -E '(Flush|Write|Read|Zero|Trim|Cache) id' "$BATS_TEST_TMPDIR/log" |
        grep -v '\.\.\.[A-Z]' |
        sed -E 's/.*connection=([0-9]+) ([A-Za-z]+) .*/c\1\2/' |
        tr '\n' ' ' | sed 's/ $//'
}

# two_conns STEP...: connections a and b (to the exports $EXA and $EXB,
# default "") do the steps in order: aw (a writes), aW (a writes with
# FUA), ar (a reads), af (a flushes), ac (a caches), az (a zeroes),
# bw, ...
two_conns() {
    sock=$sock /usr/bin/python3 - "$@" <<'EOF'
import nbd, os, sys
def conn(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(os.environ["sock"])
    return h
a = conn(os.environ.get("EXA", ""))
b = conn(os.environ.get("EXB", ""))
for s in sys.argv[1:]:
    h = a if s[0] == "a" else b
    op = s[1]
    if op == "w": h.pwrite(b"x" * 512, 0)
    elif op == "W": h.pwrite(b"x" * 512, 0, nbd.CMD_FLAG_FUA)
    elif op == "r": assert len(h.pread(512, 0)) == 512
    elif op == "f": h.flush()
    elif op == "c": h.cache(512, 0)
    elif op == "z": h.zero(512, 0)
    else: raise Exception("bad step " + s)
a.shutdown()
b.shutdown()
EOF
}

# An sh backend without multi-conn: a writable 1M disk in a file,
# flush and native FUA, no cache.  Its flush fails with EIO while a
# file "fail" exists beside the script.
nomc_script() {
    local s=$BATS_TEST_TMPDIR/nomc.sh
    cat > "$s" <<'EOF'
#!/bin/sh -
disk=$tmpdir/disk
case "$1" in
    config_complete) truncate -s 1M "$disk" ;;
    thread_model) echo parallel ;;
    get_size) echo 1048576 ;;
    can_write|can_flush) exit 0 ;;
    can_multi_conn) exit 3 ;;
    can_cache) echo none ;;
    can_fua) echo native ;;
    pread) dd if="$disk" skip="$4" count="$3" iflag=skip_bytes,count_bytes status=none ;;
    pwrite) dd of="$disk" seek="$4" conv=notrunc oflag=seek_bytes status=none ;;
    flush)
        if [ -e "$(dirname "$0")/fail" ]; then
            echo "EIO flush failed" >&2
            exit 1
        fi ;;
    *) exit 2 ;;
esac
EOF
    chmod +x "$s"
    echo "$s"
}

# An sh backend that records overlapping requests in $BATS_TEST_TMPDIR/state:
# each pread, pwrite and flush leaves a marker there while it runs and
# appends to state/seen how many markers it saw on arrival, of all
# connections (all=N) and of its own (conn=N; open gives each
# connection a handle of its own).  The first request to get that far
# stays until it sees another request's marker ("overlap") or for
# state/hold seconds, so that on a server that lets requests overlap
# some do, whatever the timing.  Two requests that overlapped always
# leave a trace: "overlap", or all=2 or more in one of them.
conc_script() {
    local s=$BATS_TEST_TMPDIR/conc.sh state=$BATS_TEST_TMPDIR/state
    mkdir -p "$state"
    echo "${1:-1}" > "$state/hold"
    cat > "$s" <<EOF
#!/bin/sh -
dir=$state
EOF
    cat >> "$s" <<'EOF'
case "$1" in
    thread_model) echo parallel ;;
    open) echo "h$$" ;;
    get_size) echo 1048576 ;;
    can_write|can_flush|can_multi_conn) exit 0 ;;
    pread|pwrite|flush)
        if [ "$1" = pwrite ]; then cat >/dev/null; fi
        me=$dir/active.$2.$$
        : > "$me"
        all=$(ls "$dir" | grep -c '^active\.')
        mine=$(ls "$dir" | grep -c "^active\.$2\.")
        echo "$1 all=$all conn=$mine" >> "$dir/seen"
        if mkdir "$dir/first" 2>/dev/null; then
            i=0
            hold=$(cat "$dir/hold")
            while [ "$i" -lt $((hold * 10)) ]; do
                if [ "$(ls "$dir" | grep -c '^active\.')" -gt 1 ]; then
                    echo overlap >> "$dir/seen"
                    break
                fi
                sleep 0.1
                i=$((i + 1))
            done
        fi
        rm -f "$me"
        if [ "$1" = pread ]; then head -c "$3" /dev/zero; fi ;;
    *) exit 2 ;;
esac
EOF
    chmod +x "$s"
    echo "$s"
}

# pipelined N PER: N connections, each sending PER reads, a write and a
# flush at once.
pipelined() {
    sock=$sock /usr/bin/python3 - "$@" <<'EOF'
import nbd, os, sys
n, per = int(sys.argv[1]), int(sys.argv[2])
hs = []
for i in range(n):
    h = nbd.NBD()
    h.connect_unix(os.environ["sock"])
    hs.append(h)
bufs = []
for j in range(per):
    for i, h in enumerate(hs):
        b = nbd.Buffer(512)
        bufs.append(b)
        h.aio_pread(b, (i * per + j) * 512)
for i, h in enumerate(hs):
    h.aio_pwrite(b"w" * 512, 4096 * (i + 1))
    h.aio_flush()
for h in hs:
    while h.aio_in_flight() > 0:
        h.poll(-1)
for h in hs:
    h.shutdown()
EOF
}

seen() {
    cat "$BATS_TEST_TMPDIR/state/seen"
}

# Did any two requests run at the same time?
overlapped() {
    seen | grep -qE '^overlap$|all=[2-9]'
}

# ---- multi-conn ----

@test "multi-conn: bad values are refused naming the value and the choices" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=multi-conn null multi-conn-mode=plus
    [ "$status" -eq 1 ]
    [[ "$output" == *"multi-conn-mode=plus"*"auto, emulate, plugin, disable or unsafe"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=multi-conn null multi-conn-track-dirty=always
    [ "$status" -eq 1 ]
    [[ "$output" == *"multi-conn-track-dirty=always"*"connection (or conn), fast or off"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=multi-conn null multi-conn-exportname=maybe
    [ "$status" -eq 1 ]
    [[ "$output" == *"multi-conn-exportname=maybe"*"true or false"* ]]
}

@test "multi-conn, noparallel, nocache: --help lists their parameters" {
    run "$NBDKIT" --filter=multi-conn --filter=noparallel --filter=nocache null --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"multi-conn-mode="*"multi-conn-track-dirty="*"multi-conn-exportname="* ]]
    [[ "$output" == *"serialize="*"requests"*"all-requests"*"connections"* ]]
    [[ "$output" == *"cachemode="*"none"*"emulate"*"nop"* ]]
}

@test "multi-conn: what each mode advertises over a backend with multi-conn" {
    requires nbdinfo
    local m expect
    for m in auto:True emulate:True plugin:True disable:False unsafe:True; do
        start_server --filter=multi-conn memory 1M multi-conn-mode="${m%:*}"
        [ "$(field can_multi_conn)" = "${m#*:}" ] || { echo "mode ${m%:*}"; false; }
        stop_server
    done
}

@test "multi-conn: what each mode advertises over a backend without multi-conn" {
    requires nbdinfo
    local script m
    script=$(nomc_script)
    start_server sh "$script"
    [ "$(field can_multi_conn)" = False ]
    stop_server
    for m in auto:True emulate:True plugin:False disable:False unsafe:True; do
        start_server --filter=multi-conn sh "$script" multi-conn-mode="${m%:*}"
        [ "$(field can_multi_conn)" = "${m#*:}" ] || { echo "mode ${m%:*}"; false; }
        [ "$(field can_flush)" = True ]
        stop_server
    done
}

@test "multi-conn: emulation needs flush below; other modes do not" {
    requires nbdinfo
    local m
    for m in auto emulate; do
        start_server --filter=multi-conn eval multi-conn-mode=$m \
            get_size='echo 1048576' pread='head -c $3 /dev/zero'
        run nbdinfo "$uri"
        [ "$status" -ne 0 ]
        wait_until grep -q "emulating multi-conn requires" "$log"
        stop_server
    done
    start_server --filter=multi-conn eval multi-conn-mode=unsafe \
        get_size='echo 1048576' pread='head -c $3 /dev/zero'
    [ "$(field can_multi_conn)" = True ]
    [ "$(field can_flush)" = False ]
}

@test "multi-conn emulate: a flush flushes the connections that wrote or read" {
    requires nbdsh
    local script
    script=$(nomc_script)
    run_steps() {
        start_server --filter=multi-conn --filter=log "${backend[@]}" \
            logfile="$BATS_TEST_TMPDIR/log"
        two_conns "${steps[@]}"
        stop_server
        below
    }
    backend=(sh "$script")
    # b flushes: a wrote, so a is flushed; b did nothing, so it is not.
    steps=(aw bf); run run_steps
    [ "$output" = "c1Write c1Flush" ]
    # a read what b then wrote: both are flushed.
    steps=(ar bw bf); run run_steps
    [ "$output" = "c1Read c2Write c1Flush c2Flush" ]
    # Nothing written since: no flush reaches the backend.
    steps=(ar bf af aw af bf); run run_steps
    [ "$output" = "c1Read c1Write c1Flush" ]
    # Cached data counts as read (memory has multi-conn: emulate forced).
    backend=(memory 1M multi-conn-mode=emulate)
    steps=(ac bw bf); run run_steps
    [ "$output" = "c1Cache c2Write c1Flush c2Flush" ]
    steps=(ar bf); run run_steps
    [ "$output" = "c1Read" ]
}

@test "multi-conn emulate: a FUA write is a plain write and a flush of every dirty connection" {
    requires nbdsh
    local script
    script=$(nomc_script)
    start_server --filter=multi-conn --filter=log sh "$script" \
        logfile="$BATS_TEST_TMPDIR/log"
    two_conns ar bW
    stop_server
    [ "$(below)" = "c1Read c2Write c1Flush c2Flush" ]
    grep -q 'Write id=.* fua=0' "$BATS_TEST_TMPDIR/log"
    not grep -q 'fua=1' "$BATS_TEST_TMPDIR/log"
}

@test "multi-conn emulate: track-dirty=fast flushes every connection, off every time" {
    requires nbdsh
    local script
    script=$(nomc_script)
    start_server --filter=multi-conn --filter=log sh "$script" \
        logfile="$BATS_TEST_TMPDIR/log" multi-conn-track-dirty=fast
    two_conns aw bf af ar bf
    stop_server
    [ "$(below)" = "c1Write c1Flush c2Flush c1Read" ]
    start_server --filter=multi-conn --filter=log sh "$script" \
        logfile="$BATS_TEST_TMPDIR/log" multi-conn-track-dirty=off
    two_conns af ar bf
    stop_server
    [ "$(below)" = "c1Flush c2Flush c1Read c1Flush c2Flush" ]
}

@test "multi-conn plugin/disable: flushes are not replayed, clean ones are skipped" {
    requires nbdsh
    local script m
    script=$(nomc_script)
    for m in plugin disable unsafe; do
        # conn tracking over a backend without multi-conn: once written,
        # every later flush goes down (as nbdkit 1.32 does).
        start_server --filter=multi-conn --filter=log sh "$script" \
            logfile="$BATS_TEST_TMPDIR/log" multi-conn-mode=$m
        two_conns bf ar af aw bf af
        stop_server
        [ "$(below)" = "c1Read c1Write c2Flush c1Flush" ] || { echo "$m: $(below)"; false; }
        start_server --filter=multi-conn --filter=log sh "$script" \
            logfile="$BATS_TEST_TMPDIR/log" multi-conn-mode=$m multi-conn-track-dirty=fast
        two_conns bf aw bf af
        stop_server
        [ "$(below)" = "c1Write c2Flush" ] || { echo "$m fast: $(below)"; false; }
    done
    # Over a backend with multi-conn one flush makes all clean.
    start_server --filter=multi-conn --filter=log memory 1M \
        logfile="$BATS_TEST_TMPDIR/log" multi-conn-mode=plugin
    two_conns aw bf af
    stop_server
    [ "$(below)" = "c1Write c2Flush" ]
    # track-dirty=off: every flush goes down; FUA writes pass through.
    start_server --filter=multi-conn --filter=log memory 1M \
        logfile="$BATS_TEST_TMPDIR/log" multi-conn-mode=plugin multi-conn-track-dirty=off
    two_conns af aW
    stop_server
    [ "$(below)" = "c1Flush c1Write" ]
    grep -q 'Write id=.* fua=1' "$BATS_TEST_TMPDIR/log"
}

@test "multi-conn-exportname=true replays flushes only within one export name" {
    requires nbdsh
    local script
    script=$(nomc_script)
    start_server --filter=multi-conn --filter=log sh "$script" \
        logfile="$BATS_TEST_TMPDIR/log" multi-conn-exportname=true
    EXA=x EXB=y two_conns aw bf af
    stop_server
    [ "$(below)" = "c1Write c1Flush" ]
    start_server --filter=multi-conn --filter=log sh "$script" \
        logfile="$BATS_TEST_TMPDIR/log" multi-conn-exportname=true
    EXA=x EXB=x two_conns aw bf
    stop_server
    [ "$(below)" = "c1Write c1Flush" ]
    # Without it, all connections are one export whatever their names.
    start_server --filter=multi-conn --filter=log sh "$script" \
        logfile="$BATS_TEST_TMPDIR/log"
    EXA=x EXB=y two_conns aw bf
    stop_server
    [ "$(below)" = "c1Write c1Flush" ]
}

@test "multi-conn emulate: a failed replayed flush fails the client's and stays to do" {
    requires nbdsh
    local script
    script=$(nomc_script)       # its flush fails while $BATS_TEST_TMPDIR/fail exists
    start_server --filter=multi-conn --filter=log sh "$script" \
        logfile="$BATS_TEST_TMPDIR/log"
    sock=$sock /usr/bin/python3 - "$BATS_TEST_TMPDIR/fail" <<'EOF'
import errno, nbd, os, sys
def conn():
    h = nbd.NBD()
    h.connect_unix(os.environ["sock"])
    return h
a, b = conn(), conn()
a.pwrite(b"x" * 512, 0)
open(sys.argv[1], "w").close()
try:
    b.flush()
    assert False, "the flush did not fail"
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
os.unlink(sys.argv[1])
b.flush()
b.flush()
EOF
    stop_server
    # The second flush flushes the connection that wrote again; the
    # third has nothing to do.
    [ "$(below)" = "c1Write c1Flush c1Flush" ]
}

@test "multi-conn and noparallel keep data intact with several connections" {
    requires nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 8M
    start_server --filter=multi-conn --filter=noparallel memory 8M \
        multi-conn-mode=emulate serialize=all-requests
    nbdcopy --connections=4 --requests=8 "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    stop_server
    start_server --filter=noparallel --filter=multi-conn memory 8M \
        multi-conn-track-dirty=fast
    nbdcopy --connections=4 --requests=8 "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
}

# ---- noparallel ----

@test "noparallel: a bad serialize= is refused naming it and the modes" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=noparallel null serialize=sometimes
    [ "$status" -eq 1 ]
    [[ "$output" == *"serialize=sometimes"*"requests, all-requests or connections"* ]]
}

@test "the overlap check sees the requests of one client overlap without noparallel" {
    requires nbdsh
    local script
    script=$(conc_script 30)
    start_server sh "$script"
    pipelined 1 4
    seen
    overlapped
}

@test "noparallel (requests): one client's requests reach the backend one at a time" {
    requires nbdsh
    local script
    script=$(conc_script 1)
    start_server --filter=noparallel sh "$script"
    pipelined 1 4
    seen
    [ "$(seen | grep -c 'all=1 conn=1')" -eq 6 ]   # 4 reads, a write, a flush
    not overlapped
    [ "$(field can_multi_conn)" = True ]
}

@test "noparallel (requests): different clients still run side by side" {
    requires nbdsh
    local script
    script=$(conc_script 30)
    start_server --filter=noparallel sh "$script" serialize=requests
    pipelined 2 3
    seen
    overlapped
    [ "$(seen | grep -c 'conn=1$')" -eq 10 ]
}

@test "noparallel (all-requests): one request at a time across all clients" {
    requires nbdsh nbdinfo
    local script
    script=$(conc_script 1)
    start_server --filter=noparallel sh "$script" serialize=all-requests
    pipelined 3 3
    seen
    [ "$(seen | grep -c 'all=1 conn=1$')" -eq 15 ]
    not overlapped
    [ "$(field can_multi_conn)" = True ]
}

@test "noparallel (connections): a second client waits until the first has gone" {
    requires nbdsh nbdinfo
    local first second out=$BATS_TEST_TMPDIR/second.out
    start_server -v --filter=noparallel memory 1M serialize=connections
    [ "$(field can_multi_conn)" = False ]
    # The first client holds its connection until told to go.
    sock=$sock /usr/bin/python3 - "$BATS_TEST_TMPDIR" <<'EOF' 3>&- &
import nbd, os, sys, time
d = sys.argv[1]
h = nbd.NBD()
h.connect_unix(os.environ["sock"])
h.pwrite(b"1" * 512, 0)
open(d + "/first-connected", "w").close()
while not os.path.exists(d + "/first-go"):
    time.sleep(0.05)
h.shutdown()
EOF
    first=$!
    wait_until test -e "$BATS_TEST_TMPDIR/first-connected"
    nbdsh -u "$uri" -c 'print(h.pread(512, 0)[:1].decode())' > "$out" 2>&1 3>&- &
    second=$!
    # The server has the second client's open waiting; the client has
    # no answer for as long as the first stays.
    wait_until grep -q "noparallel filter: .*waiting" "$log"
    kill -0 "$second"
    [ ! -s "$out" ]
    touch "$BATS_TEST_TMPDIR/first-go"
    wait "$first"
    wait "$second"
    [ "$(cat "$out")" = 1 ]
}

@test "noparallel (connections): requests of the one client are serialized too" {
    requires nbdsh
    local script
    script=$(conc_script 1)
    start_server --filter=noparallel sh "$script" serialize=connections
    pipelined 1 4
    seen
    [ "$(seen | grep -c 'all=1 conn=1')" -eq 6 ]
    not overlapped
}

@test "noparallel (connections) placed first hides multi-conn whatever multi-conn says" {
    requires nbdinfo
    start_server --filter=noparallel --filter=multi-conn memory 1M \
        serialize=connections multi-conn-mode=unsafe
    [ "$(field can_multi_conn)" = False ]
}

# ---- nocache ----

@test "nocache: a bad cachemode= is refused naming it and the modes" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=nocache null cachemode=passthrough
    [ "$status" -eq 1 ]
    [[ "$output" == *"cachemode=passthrough"*"none, emulate or nop"* ]]
}

@test "nocache (none, the default): cache is not offered and is refused" {
    requires nbdsh nbdinfo
    start_server --filter=nocache memory 1M
    [ "$(field can_cache)" = False ]
    nbd_py '
h.set_strict_mode(0)
try:
    h.cache(512, 0)
    assert False, "a cache request was accepted"
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e
'
    stop_server
    start_server --filter=nocache memory 1M cachemode=none
    [ "$(field can_cache)" = False ]
}

@test "nocache emulate: cache is reads of the range below, in pieces" {
    requires nbdsh nbdinfo
    local script
    script=$(nomc_script)
    # The backend cannot cache: the filter offers it anyway.
    start_server sh "$script"
    [ "$(field can_cache)" = False ]
    stop_server
    start_server --filter=nocache sh "$script" cachemode=emulate
    [ "$(field can_cache)" = True ]
    stop_server
    start_server --filter=nocache --filter=log sh "$script" cachemode=emulate \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py 'h.cache(1000, 3)'
    stop_server
    [ "$(below)" = "c1Read" ]
    grep -q 'Read id=1 offset=0x3 count=0x3e8 ' "$BATS_TEST_TMPDIR/log"
    # A large request: pieces one after the other that cover it exactly,
    # none larger than a read may be (32M here; nbdkit's are 64M).
    start_server --filter=nocache --filter=log memory 100M cachemode=emulate \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py 'h.cache(80 * 1024 * 1024, 4096)'
    stop_server
    /usr/bin/python3 - "$BATS_TEST_TMPDIR/log" <<'EOF'
import re, sys
pieces = [(int(o, 16), int(c, 16)) for o, c in
          re.findall(r" Read id=\d+ offset=(0x[0-9a-f]+) count=(0x[0-9a-f]+)",
                     open(sys.argv[1]).read())]
print(pieces)
assert len(pieces) > 1
at = 4096
for o, c in pieces:
    assert o == at and 0 < c <= 32 * 1024 * 1024, (o, c)
    at += c
assert at == 4096 + 80 * 1024 * 1024
EOF
    not grep -q ' Cache id=' "$BATS_TEST_TMPDIR/log"
}

@test "nocache emulate: a read that fails below fails the cache request" {
    requires nbdsh
    start_server --filter=nocache --filter=error memory 1M cachemode=emulate \
        error-pread-rate=1
    nbd_py '
try:
    h.cache(512, 0)
    assert False, "the cache request succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
'
}

@test "nocache nop: cache is offered and nothing reaches the layer below" {
    requires nbdsh nbdinfo
    local script
    script=$(nomc_script)
    start_server --filter=nocache sh "$script" cachemode=nop
    [ "$(field can_cache)" = True ]
    stop_server
    start_server --filter=nocache --filter=log sh "$script" cachemode=nop \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py 'h.cache(65536, 0); h.cache(1, 1048575)'
    stop_server
    [ "$(below)" = "" ]
}
