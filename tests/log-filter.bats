#!/usr/bin/env bats
# The log filter (nbdkit-log-filter(1)): a line for each export opened
# and closed, two for each request (the call and its result).

load helpers

@test "the log filter needs logfile= and says so" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=log memory 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"logfile=FILE"* ]]
}

@test "a log file that cannot be opened stops the server at start" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=log memory 1M \
        logfile=/nonexistent/dir/log
    [ "$status" -eq 1 ]
    [[ "$output" == *"logfile=/nonexistent/dir/log"* ]]
}

@test "logscript= and a bad logappend= are refused naming the value" {
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=log memory 1M \
        logfile="$BATS_TEST_TMPDIR/log" logscript='echo hi'
    [ "$status" -eq 1 ]
    [[ "$output" == *"logscript=echo hi"* ]]
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" --filter=log memory 1M \
        logfile="$BATS_TEST_TMPDIR/log" logappend=perhaps
    [ "$status" -eq 1 ]
    [[ "$output" == *"logappend=perhaps"* ]]
}

@test "--help shows the log filter's parameters" {
    run "$NBDKIT" --filter=log memory --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"logfile=FILE"*"logappend=BOOL"* ]]
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
    ! grep -q "old line" "$BATS_TEST_TMPDIR/log"
    ! grep -q ' Connect ' "$BATS_TEST_TMPDIR/log"
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
