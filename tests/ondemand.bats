# The ondemand backend: a persistent file system per export name, made
# on first use in dir=, locked while a client uses it, listed with
# NBD_OPT_LIST; export names that could leave dir= are refused.

load helpers

setup() {
    requires nbdcopy nbdsh nbdinfo mke2fs e2fsck
    exports=$BATS_TEST_TMPDIR/exports
    mkdir -p "$exports"
}

start_fails() {
    run timeout 300 "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" "$@"
}

# uri_of NAME: the URI of export NAME (percent-encoded already).
uri_of() {
    echo "nbd+unix:///$1?socket=$sock"
}

@test "data written to export a persists across connections and servers, and is not in b" {
    start_server ondemand dir="$exports" 20M
    nbdsh -u "$(uri_of a)" -c '
h.pwrite(b"kept in export a".ljust(4096, b"."), 8 << 20)
h.flush()'
    [ -f "$exports/a" ]
    nbdsh -u "$(uri_of a)" -c '
assert h.pread(4096, 8 << 20).startswith(b"kept in export a")'
    nbdsh -u "$(uri_of b)" -c '
assert h.get_size() == 20 * 1024 * 1024
assert not h.pread(4096, 8 << 20).startswith(b"kept in export a")'
    cmp -n 1024 "$exports/a" "$exports/b" || true
    stop_server
    start_server ondemand dir="$exports" 20M
    nbdsh -u "$(uri_of a)" -c '
assert h.pread(4096, 8 << 20).startswith(b"kept in export a")'
}

@test "a new export is an ext4 file system that e2fsck accepts, the same file as in dir=" {
    requires dumpe2fs
    start_server ondemand dir="$exports" 20M label=ONDEMAND
    nbdcopy "$(uri_of fresh)" "$BATS_TEST_TMPDIR/copy.img"
    e2fsck -fn "$BATS_TEST_TMPDIR/copy.img"
    dumpe2fs -h "$BATS_TEST_TMPDIR/copy.img" | grep -q "volume name:.*ONDEMAND"
    cmp "$BATS_TEST_TMPDIR/copy.img" "$exports/fresh"
    # Nothing else (no temporary file) is left in dir=.
    [ "$(ls -A "$exports")" = fresh ]
}

@test "the default export \"\" is the file 'default'" {
    start_server ondemand dir="$exports" 20M
    nbdsh -u "$uri" -c 'h.pwrite(b"dflt", 4 << 20)'
    [ -f "$exports/default" ]
    nbdsh -u "$(uri_of default)" -c 'assert h.pread(4, 4 << 20) == b"dflt"'
}

@test "NBD_OPT_LIST lists the default export \"\" and the existing exports" {
    start_server ondemand dir="$exports" 20M
    local list='
h.set_opt_mode(True)
h.connect_uri(os.environ["uri"])
names = []
h.opt_list(lambda name, description: names.append(name) or 0)
print(" ".join(sorted(repr(n) for n in names)))'
    run nbdsh -c "$list"
    [ "$status" -eq 0 ]
    [ "$output" = "''" ]
    nbdinfo --size "$(uri_of one)"
    nbdinfo --size "$(uri_of two)"
    nbdinfo --size "$(uri_of default)"
    run nbdsh -c "$list"
    [ "$status" -eq 0 ]
    [ "$output" = "'' 'one' 'two'" ]
}

@test "export names with '/', '.', ':' or over 255 bytes are refused, and nothing is made" {
    start_server ondemand dir="$exports" 20M
    local name long
    long=$(head -c 256 /dev/zero | tr '\0' x)
    for name in "..%2Fescape" "%2Ftmp%2Fabs" ".hidden" "a.b" ".." "x:y" "$long"; do
        run nbdinfo --size "$(uri_of "$name")"
        [ "$status" -ne 0 ] || { echo "$name accepted" >&2; return 1; }
    done
    wait_until grep -q "export name '../escape' refused: '/' cannot be" "$log"
    wait_until grep -q "export name '.hidden' refused: '.' cannot be" "$log"
    wait_until grep -q "export name 'x:y' refused: ':' cannot be" "$log"
    wait_until grep -q "refused: longer than NAME_MAX (255) bytes" "$log"
    [ -z "$(ls -A "$exports")" ]
    [ ! -e "$BATS_TEST_TMPDIR/escape" ]
    # 255 bytes is allowed.
    nbdinfo --size "$(uri_of "${long:1}")"
    [ -f "$exports/${long:1}" ]
}

@test "a second client of an export in use is refused, and gets it once the first is gone" {
    start_server ondemand dir="$exports" 20M
    nbdsh -c '
import os
u = os.environ["uri"].replace("///", "///a")
h.connect_uri(u)
h2 = nbd.NBD()
try:
    h2.connect_uri(u)
    assert False, "the second client got the export"
except nbd.Error as e:
    print(e)
h3 = nbd.NBD()
h3.connect_uri(os.environ["uri"].replace("///", "///b"))
h.shutdown()'
    wait_until grep -q "export 'a': filesystem is locked by another client" "$log"
    # The lock goes with the first connection's close.
    wait_until nbdinfo --size "$(uri_of a)"
}

@test "with wait=true a second client waits for the first, then gets the export" {
    start_server -v ondemand dir="$exports" 20M wait=true
    log=$log nbdsh -c '
import os, subprocess, time
u = os.environ["uri"].replace("///", "///a")
h.connect_uri(u)
p = subprocess.Popen(["nbdinfo", "--size", u])
log = os.environ["log"]
# Readiness only: until the backend says the second client waits.
for i in range(3000):
    if "is locked by another client: waiting" in open(log).read():
        break
    time.sleep(0.01)
else:
    assert False, "the second client never waited"
assert p.poll() is None, "the second client did not wait"
h.shutdown()
assert p.wait() == 0'
}

@test "command= makes new exports, with \$disk in dir=" {
    start_server ondemand dir="$exports" 1M tag=hello command='
        case "$disk" in "'"$exports"'"/*) ;; *) exit 9 ;; esac
        printf "%s %s" "$tag" "$size" > "$disk"; truncate -s 2M "$disk"'
    nbdsh -u "$(uri_of x)" -c '
assert h.get_size() == 2 * 1024 * 1024
assert h.pread(13, 0) == b"hello 1048576"'
}

@test "a failing command fails the open with its message, and leaves nothing in dir=" {
    start_server ondemand dir="$exports" 1M command='echo "disk full" >&2; exit 4'
    run nbdinfo --size "$(uri_of x)"
    [ "$status" -ne 0 ]
    wait_until grep -q "command= failed (exit status 4): disk full" "$log"
    [ -z "$(ls -A "$exports")" ]
}

@test "bad parameters are refused with a message and status 1" {
    start_fails ondemand 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"dir= is required"* ]]
    start_fails ondemand dir="$exports"
    [ "$status" -eq 1 ]
    [[ "$output" == *"size= is required"* ]]
    start_fails ondemand dir="$BATS_TEST_TMPDIR/none" 1M
    [ "$status" -eq 1 ]
    [[ "$output" == *"none"* ]]
    start_fails ondemand dir="$exports" 1M wait=perhaps
    [ "$status" -eq 1 ]
    [[ "$output" == *"perhaps"* ]]
    start_fails ondemand dir="$exports" 1M disk=x
    [ "$status" -eq 1 ]
    [[ "$output" == *"'disk' cannot be a parameter"* ]]
}
