#!/usr/bin/env bats
# The log filter (nbdkit-log-filter(1)): a line for each export opened
# and closed, two for each request (the call and its result).

load helpers

@test "without logfile= or logscript= the log filter does nothing (nbdkit: inactive)" {
    requires nbdsh
    start_server --filter=log memory 1M
    nbd_py '
h.pwrite(b"x" * 512, 0)
assert h.pread(512, 0) == b"x" * 512
'
    stop_server
    [ "$server_status" -eq 0 ]
}

@test "a log file that cannot be opened stops the server at start" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=log memory 1M \
        logfile=/nonexistent/dir/log
    [ "$status" -eq 1 ]
    [[ "$output" == *"logfile=/nonexistent/dir/log"* ]]
}

@test "a bad logappend= is refused naming the value" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=log memory 1M \
        logfile="$BATS_TEST_TMPDIR/log" logappend=perhaps
    [ "$status" -eq 1 ]
    [[ "$output" == *"logappend=perhaps"* ]]
}

@test "--help shows the log filter's parameters" {
    run "$NBDKIT" --filter=log memory --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"logfile=FILE"*"logscript=SCRIPT"*"logappend=BOOL"* ]]
}

@test "each request is logged with its offset, count and flags, then its result" {
    requires nbdsh
    start_server --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log"
    nbd_py '
h.pwrite(b"x" * 512, 1024, nbd.CMD_FLAG_FUA)
assert h.pread(512, 1024) == b"x" * 512
h.zero(4096, 8192, nbd.CMD_FLAG_NO_HOLE)
h.trim(4096, 65536)
h.flush()
h.cache(4096, 0)
'
    stop_server
    local L=$BATS_TEST_TMPDIR/log ts='^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}'
    cat "$L"
    grep -Eq "$ts connection=1 Write id=1 offset=0x400 count=0x200 fua=1 \.\.\.\$" "$L"
    grep -Eq "$ts connection=1 \.\.\.Write id=1 return=0\$" "$L"
    grep -Eq "$ts connection=1 Read id=2 offset=0x400 count=0x200 \.\.\.\$" "$L"
    grep -Eq "$ts connection=1 \.\.\.Read id=2 return=0\$" "$L"
    grep -Eq "$ts connection=1 Zero id=3 offset=0x2000 count=0x1000 trim=0 fua=0 fast=0 \.\.\.\$" "$L"
    grep -Eq "$ts connection=1 Trim id=4 offset=0x10000 count=0x1000 fua=0 \.\.\.\$" "$L"
    grep -Eq "$ts connection=1 Flush id=5 \.\.\.\$" "$L"
    grep -Eq "$ts connection=1 \.\.\.Flush id=5 return=0\$" "$L"
    grep -Eq "$ts connection=1 Cache id=6 offset=0x0 count=0x1000 \.\.\.\$" "$L"
    grep -Eq "$ts connection=1 Disconnect transactions=6\$" "$L"
}

@test "a connection is logged with its export name, size and capabilities" {
    requires nbdinfo
    start_server --filter=log memory 4M logfile="$BATS_TEST_TMPDIR/log"
    nbdinfo "$uri" >/dev/null
    stop_server
    cat "$BATS_TEST_TMPDIR/log"
    grep -Eq '^[-0-9]+ [0-9:.]+ Ready thread_model=[0-3]$' "$BATS_TEST_TMPDIR/log"
    grep -q ' connection=1 Connect export="" tls=0 size=0x400000 .* write=1 flush=1 .*trim=1 zero=2 fua=2 .*cache=2 fast_zero=1$' "$BATS_TEST_TMPDIR/log"
    grep -q ' connection=1 Disconnect transactions=0$' "$BATS_TEST_TMPDIR/log"
}

@test "connections are numbered in the order they are opened" {
    requires nbdsh
    start_server --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log"
    nbd_py 'h.pread(512, 0)'
    nbd_py 'h.pread(512, 512)'
    stop_server
    grep -q 'connection=1 Read id=1 offset=0x0 count=0x200' "$BATS_TEST_TMPDIR/log"
    grep -q 'connection=2 Read id=1 offset=0x200 count=0x200' "$BATS_TEST_TMPDIR/log"
    [ "$(grep -c ' Connect ' "$BATS_TEST_TMPDIR/log")" -eq 2 ]
    [ "$(grep -c ' Disconnect ' "$BATS_TEST_TMPDIR/log")" -eq 2 ]
}

@test "a failed request is logged with its error name" {
    requires nbdsh
    start_server --filter=log --filter=error memory 1M \
        logfile="$BATS_TEST_TMPDIR/log" error-pwrite=ENOSPC error-pwrite-rate=100%
    nbd_py '
try:
    h.pwrite(b"x" * 512, 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
'
    stop_server
    grep -q 'connection=1 \.\.\.Write id=1 return=-1 error=ENOSPC$' "$BATS_TEST_TMPDIR/log"
}

@test "extents are logged with their lengths and types" {
    requires nbdsh
    start_server --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log"
    /usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri('$uri')
h.pwrite(b'x' * 65536, 0)
h.block_status(1 << 20, 0, lambda *a: 0)
"
    stop_server
    cat "$BATS_TEST_TMPDIR/log"
    grep -q 'Extents id=2 offset=0x0 count=0x100000 req_one=0 \.\.\.$' "$BATS_TEST_TMPDIR/log"
    grep -q '\.\.\.Extents id=2 extents=(0x0 0x10000 "" 0x10000 0xf0000 "hole,zero") return=0$' "$BATS_TEST_TMPDIR/log"
}

@test "data passes through the log filter byte for byte" {
    requires nbdcopy
    random_file "$BATS_TEST_TMPDIR/in" 5M
    start_server --filter=log memory 8M logfile="$BATS_TEST_TMPDIR/log"
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    head -c 5M "$BATS_TEST_TMPDIR/out" | cmp - "$BATS_TEST_TMPDIR/in"
    stop_server
    # Every call has its result.
    [ "$(grep -c ' Write id=' "$BATS_TEST_TMPDIR/log")" -eq "$(grep -c ' \.\.\.Write id=.* return=0$' "$BATS_TEST_TMPDIR/log")" ]
    [ "$(grep -c ' Read id=' "$BATS_TEST_TMPDIR/log")" -eq "$(grep -c ' \.\.\.Read id=.* return=0$' "$BATS_TEST_TMPDIR/log")" ]
}

@test "logappend=true adds to the file, the default replaces it" {
    requires nbdinfo
    echo "old line" > "$BATS_TEST_TMPDIR/log"
    start_server --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log" logappend=true
    nbdinfo "$uri" >/dev/null
    stop_server
    [ "$(head -n 1 "$BATS_TEST_TMPDIR/log")" = "old line" ]
    grep -q ' Connect ' "$BATS_TEST_TMPDIR/log"
    start_server --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log"
    stop_server
    not grep -q "old line" "$BATS_TEST_TMPDIR/log"
    not grep -q ' Connect ' "$BATS_TEST_TMPDIR/log"
}

@test "the log filter below another shows the changed requests" {
    requires nbdsh
    start_server --filter=offset --filter=log memory 2M offset=1M \
        logfile="$BATS_TEST_TMPDIR/log"
    nbd_py 'h.pread(512, 0)'
    stop_server
    grep -q 'Read id=1 offset=0x100000 count=0x200 \.\.\.$' "$BATS_TEST_TMPDIR/log"
}

@test "log: a listing of the exports is logged as nbdkit logs it" {
    requires nbdinfo
    cat > "$BATS_TEST_TMPDIR/list.sh" <<'SH'
#!/bin/bash
case "$1" in
    list_exports) printf '%s\n' a 'b c' ;;
    get_size) echo 1048576 ;;
    open) echo h ;;
    pread) head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
SH
    chmod +x "$BATS_TEST_TMPDIR/list.sh"
    "$NBDKIT" -U - --filter=log sh "$BATS_TEST_TMPDIR/list.sh" \
        logfile="$BATS_TEST_TMPDIR/log" --run 'nbdinfo --list "$uri"' >/dev/null
    grep -q ' ListExports id=1 readonly=0 tls=0 \.\.\.$' "$BATS_TEST_TMPDIR/log"
    grep -q ' \.\.\.ListExports id=1 exports=(a "b c") return=0$' "$BATS_TEST_TMPDIR/log"
    grep -q ' connection=2 Connect export="b c" tls=0 ' "$BATS_TEST_TMPDIR/log"
}

@test "log: a listing that fails is logged with its error" {
    requires nbdinfo
    cat > "$BATS_TEST_TMPDIR/list.sh" <<'SH'
#!/bin/bash
case "$1" in
    list_exports) echo "EPERM listing is not allowed" >&2; exit 1 ;;
    get_size) echo 1048576 ;;
    open) echo h ;;
    *) exit 2 ;;
esac
SH
    chmod +x "$BATS_TEST_TMPDIR/list.sh"
    "$NBDKIT" -U - --filter=log sh "$BATS_TEST_TMPDIR/list.sh" \
        logfile="$BATS_TEST_TMPDIR/log" --run 'nbdinfo --list "$uri"' \
        >/dev/null 2>&1 || true
    grep -q ' \.\.\.ListExports id=1 return=-1 error=EPERM$' "$BATS_TEST_TMPDIR/log"
}

# ---- nbdkit's Fork and Preconnect entries, and logscript= ----

@test "log: Fork after Ready, and a Preconnect before each client's listing or export, as nbdkit logs them" {
    requires nbdsh
    "$NBDKIT" -U - --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log" \
        --run '/usr/bin/python3 -c "
import nbd, sys
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(sys.argv[1])
h.opt_list(lambda name, desc: 0)
h.opt_abort()
" "$uri"
nbdsh -u "$uri" -c "h.pread(512, 0)"'
    cat "$BATS_TEST_TMPDIR/log"
    # Without their timestamps, the entries as Debian's nbdkit 1.32 logs them.
    sed -E 's/^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6} //; s/ size=.*//' \
        "$BATS_TEST_TMPDIR/log" > "$BATS_TEST_TMPDIR/got"
    cat > "$BATS_TEST_TMPDIR/want" <<'EOF'
Ready thread_model=3
Fork
Preconnect id=1 readonly=0 ...
...Preconnect id=1 return=0
ListExports id=1 readonly=0 tls=0 ...
...ListExports id=1 exports=("") return=0
Preconnect id=2 readonly=0 ...
...Preconnect id=2 return=0
connection=1 Connect export="" tls=0
connection=1 Read id=1 offset=0x0 count=0x200 ...
connection=1 ...Read id=1 return=0
connection=1 Disconnect transactions=1
EOF
    diff -u "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/got"
}

@test "log: a client refused by a filter below is logged as a failed Preconnect" {
    requires nbdinfo
    "$NBDKIT" -U - --filter=log --filter=ip memory 1M deny=allunix \
        logfile="$BATS_TEST_TMPDIR/log" --run 'nbdinfo --size "$uri"' || true
    cat "$BATS_TEST_TMPDIR/log"
    grep -q ' Preconnect id=1 readonly=0 \.\.\.$' "$BATS_TEST_TMPDIR/log"
    grep -q ' \.\.\.Preconnect id=1 return=-1 error=EINVAL$' "$BATS_TEST_TMPDIR/log"
    not grep -q ' Connect ' "$BATS_TEST_TMPDIR/log"
}

@test "log: logscript= runs for each entry with nbdkit's shell variables, in order" {
    requires nbdsh
    local out=$BATS_TEST_TMPDIR/out
    # The variables of nbdkit-log-filter(1), LOG SCRIPT; lists are arrays.
    start_server --filter=log --filter=error memory 1M \
        error-trim=ENOSPC error-trim-rate=100% \
        logscript='echo "$type $act c=$connection id=$id off=$offset count=$count fua=$fua ret=$return err=$error n=${#extents[@]} ext=${extents[*]} tr=$transactions" >> '"$out"
    nbd_py "
h2 = nbd.NBD()
h2.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h2.connect_uri('$uri')
h2.pwrite(b'x' * 65536, 0, nbd.CMD_FLAG_FUA)
h2.block_status(131072, 0, lambda *a: 0)
try:
    h2.trim(512, 1024)
    assert False, 'the trim succeeded'
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
h2.shutdown()
"
    stop_server
    cat "$out"
    grep ' c=2 ' "$out" | grep -v '^PRINT Connect ' > "$BATS_TEST_TMPDIR/got"
    cat > "$BATS_TEST_TMPDIR/want" <<'EOF'
ENTER Write c=2 id=1 off=0x0 count=0x10000 fua=1 ret= err= n=0 ext= tr=
LEAVE Write c=2 id=1 off= count= fua= ret=0 err= n=0 ext= tr=
ENTER Extents c=2 id=2 off=0x0 count=0x20000 fua= ret= err= n=0 ext= tr=
LEAVE Extents c=2 id=2 off= count= fua= ret=0 err= n=6 ext=0x0 0x10000  0x10000 0x10000 hole,zero tr=
ENTER Trim c=2 id=3 off=0x400 count=0x200 fua=0 ret= err= n=0 ext= tr=
LEAVE Trim c=2 id=3 off= count= fua= ret=-1 err=ENOSPC n=0 ext= tr=
PRINT Disconnect c=2 id= off= count= fua= ret= err= n=0 ext= tr=3
EOF
    diff -u "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/got"
    # The entries that are not requests.
    head -n 2 "$out" | cut -d' ' -f1-2 | tr '\n' ' ' | grep -qx 'PRINT Ready PRINT Fork '
    grep -q '^ENTER Preconnect c= id=1 ' "$out"
    grep -q '^LEAVE Preconnect c= id=1 off= count= fua= ret=0 ' "$out"
    grep -q '^PRINT Connect c=1 id= ' "$out"
}

@test "log: logscript= with logfile= runs once for each line" {
    requires nbdsh
    start_server --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log" \
        logscript='echo "$act $id" >> '"$BATS_TEST_TMPDIR/out"
    nbd_py 'h.pread(512, 0); h.flush()'
    stop_server
    [ "$(grep -c ' Read id=1 ' "$BATS_TEST_TMPDIR/log")" -eq 1 ]
    [ "$(grep -c '^Read 1$' "$BATS_TEST_TMPDIR/out")" -eq 2 ]
    [ "$(grep -c '^Flush 2$' "$BATS_TEST_TMPDIR/out")" -eq 2 ]
    [ "$(wc -l < "$BATS_TEST_TMPDIR/out")" -eq "$(wc -l < "$BATS_TEST_TMPDIR/log")" ]
}

@test "log: a log script that is stuck does not hold up the clients" {
    requires nbdsh
    local fifo=$BATS_TEST_TMPDIR/fifo
    mkfifo "$fifo"
    # The script of the first read waits until the test lets it go.
    start_server --filter=log memory 1M \
        logscript='if [ "$act" = Read ] && [ "$type" = ENTER ] && [ "$id" = 2 ]; then read go < '"$fifo"'; fi; echo "$type $act $id" >> '"$BATS_TEST_TMPDIR/out"
    nbd_py '
for i in range(20):
    h.pwrite(b"y" * 512, i * 512)
    assert h.pread(512, i * 512) == b"y" * 512
'
    # All of it was served while the script was stuck, and no script
    # after it has run yet.
    not grep -q 'Read 2' "$BATS_TEST_TMPDIR/out"
    timeout 60 sh -c "echo go > \"$fifo\""
    stop_server
    # Then they all ran, in order.
    [ "$(grep -c '^ENTER Read ' "$BATS_TEST_TMPDIR/out")" -eq 20 ]
    [ "$(grep -c '^LEAVE Read ' "$BATS_TEST_TMPDIR/out")" -eq 20 ]
    grep -A1 '^ENTER Read 2$' "$BATS_TEST_TMPDIR/out" | tail -n 1 | grep -qx 'LEAVE Read 2'
}

@test "log: Preconnect says readonly=1 under -r, as nbdkit" {
    requires nbdinfo
    "$NBDKIT" -r -U - --filter=log memory 1M logfile="$BATS_TEST_TMPDIR/log" \
        --run 'nbdinfo --size "$uri" >/dev/null'
    grep -q ' Preconnect id=1 readonly=1 \.\.\.$' "$BATS_TEST_TMPDIR/log"
}
