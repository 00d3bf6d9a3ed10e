# The file backend's parameters from nbdkit-file-plugin(1): directory=
# (dir=, exports in the directory's own order), fd= and dirfd= (a
# descriptor the server inherited, which the front end passes on to the
# backend process), cache=none and fadvise= (checked on the page cache
# with fincore), and the errors for wrong values.  Data is checked by
# checksums, failed requests by their NBD error.

load helpers

# The export names that nbdinfo --list shows, one a line.
list_exports() {
    nbdinfo --list --json "$1" | /usr/bin/python3 -c '
import json, sys
for e in json.load(sys.stdin)["exports"]:
    print(e["export-name"])'
}

# A directory with files of several kinds, made in an order that is not
# the name order (the order the directory lists them is the file
# system's).
make_dir() {
    local d=$1
    mkdir "$d" "$d/subdir"
    random_file "$d/zeta.img" 1M
    random_file "$d/alpha.img" 512K
    truncate -s 2M "$d/.hidden"
    ln -s alpha.img "$d/link"
    mkfifo "$d/fifo"
    random_file "$d/mid.img" 256K
}

# The names readdir gives for the regular files (links followed) of $1.
readdir_disks() {
    /usr/bin/python3 -c '
import os, stat, sys
d = sys.argv[1]
for n in os.listdir(d):
    try:
        m = os.stat(os.path.join(d, n)).st_mode
    except OSError:
        continue
    if stat.S_ISREG(m) or stat.S_ISBLK(m):
        print(n)' "$1"
}

# Resident bytes of a file in the page cache.
resident() {
    fincore -b -n -o RES "$1" | tr -d ' '
}

# Write the file back and drop it from the page cache.
drop_cache() {
    sync "$1"
    dd if="$1" iflag=nocache count=0 status=none
}

# Skip unless fincore can see the page cache of files here (not on
# tmpfs, where pages cannot be dropped).
requires_page_cache() {
    requires fincore
    [ "$(stat -f -c %T "$BATS_TEST_TMPDIR")" != tmpfs ] ||
        skip "$BATS_TEST_TMPDIR is on tmpfs"
    random_file "$BATS_TEST_TMPDIR/probe" 1M
    drop_cache "$BATS_TEST_TMPDIR/probe"
    [ "$(resident "$BATS_TEST_TMPDIR/probe")" -eq 0 ] ||
        skip "cannot drop files from the page cache here"
    cat "$BATS_TEST_TMPDIR/probe" >/dev/null
    [ "$(resident "$BATS_TEST_TMPDIR/probe")" -eq $((1 << 20)) ] ||
        skip "fincore does not see the page cache here"
}

@test "directory= lists the files in the directory's order, as nbdkit does" {
    requires nbdinfo nbdcopy
    make_dir "$BATS_TEST_TMPDIR/d"
    readdir_disks "$BATS_TEST_TMPDIR/d" > "$BATS_TEST_TMPDIR/expected"
    start_server file directory="$BATS_TEST_TMPDIR/d"
    list_exports "$uri" > "$BATS_TEST_TMPDIR/listed"
    diff -u "$BATS_TEST_TMPDIR/expected" "$BATS_TEST_TMPDIR/listed"
    # Dot files are served too; pipes and directories are not.
    grep -qx .hidden "$BATS_TEST_TMPDIR/listed"
    not grep -qx fifo "$BATS_TEST_TMPDIR/listed"
    not grep -qx subdir "$BATS_TEST_TMPDIR/listed"
    # Each export is its file.
    for f in zeta.img alpha.img link mid.img .hidden; do
        nbdcopy "nbd+unix:///$f?socket=$sock" "$BATS_TEST_TMPDIR/copy"
        [ "$(sha "$BATS_TEST_TMPDIR/copy")" = "$(sha "$BATS_TEST_TMPDIR/d/$f")" ]
    done
    # The same list as Debian's nbdkit gives, when it is installed.
    if [ -x /usr/bin/nbdkit ]; then
        /usr/bin/nbdkit -U - file directory="$BATS_TEST_TMPDIR/d" \
            --run 'nbdinfo --list --json "$uri"' |
            /usr/bin/python3 -c '
import json, sys
for e in json.load(sys.stdin)["exports"]:
    print(e["export-name"])' > "$BATS_TEST_TMPDIR/reference"
        diff -u "$BATS_TEST_TMPDIR/reference" "$BATS_TEST_TMPDIR/listed"
    fi
}

@test "dirfd=N serves the directory the server inherited on descriptor N" {
    requires nbdinfo nbdcopy qemu-img nbdsh
    make_dir "$BATS_TEST_TMPDIR/d"
    readdir_disks "$BATS_TEST_TMPDIR/d" > "$BATS_TEST_TMPDIR/expected"
    start_server file dirfd=7 7<"$BATS_TEST_TMPDIR/d"
    list_exports "$uri" > "$BATS_TEST_TMPDIR/listed"
    diff -u "$BATS_TEST_TMPDIR/expected" "$BATS_TEST_TMPDIR/listed"
    nbdcopy "nbd+unix:///zeta.img?socket=$sock" "$BATS_TEST_TMPDIR/copy"
    [ "$(sha "$BATS_TEST_TMPDIR/copy")" = "$(sha "$BATS_TEST_TMPDIR/d/zeta.img")" ]
    # Writes reach the file in the directory.
    random_file "$BATS_TEST_TMPDIR/new" 256K
    qemu-img convert -n -f raw "$BATS_TEST_TMPDIR/new" -O raw \
        "nbd+unix:///mid.img?socket=$sock"
    [ "$(sha "$BATS_TEST_TMPDIR/d/mid.img")" = "$(sha "$BATS_TEST_TMPDIR/new")" ]
    # Files added later are served; names that are not files of the
    # directory are refused with ENOENT.
    random_file "$BATS_TEST_TMPDIR/d/later.img" 64K
    list_exports "$uri" | grep -qx later.img
    /usr/bin/python3 -c "
import nbd, errno
for name in ['', 'nosuch', 'subdir', 'fifo', '../d/zeta.img', '..']:
    h = nbd.NBD()
    h.set_export_name(name)
    try:
        h.connect_unix('$sock')
        raise SystemExit('export %r was served' % name)
    except nbd.Error as e:
        assert e.errnum == errno.ENOENT, (name, e)
"
}

@test "fd=N serves the file the server inherited on descriptor N" {
    requires nbdcopy nbdinfo qemu-img
    random_file "$BATS_TEST_TMPDIR/src" 4M
    truncate -s 4M "$BATS_TEST_TMPDIR/disk"
    start_server file fd=7 7<>"$BATS_TEST_TMPDIR/disk"
    run qemu-img info --output=json "$uri"
    echo "$output"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"virtual-size": 4194304'
    nbdinfo "$uri" | grep -q 'is_read_only: false'
    nbdcopy "$BATS_TEST_TMPDIR/src" "$uri"
    [ "$(sha "$BATS_TEST_TMPDIR/disk")" = "$(sha "$BATS_TEST_TMPDIR/src")" ]
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/copy"
    [ "$(sha "$BATS_TEST_TMPDIR/copy")" = "$(sha "$BATS_TEST_TMPDIR/src")" ]
}

@test "fd=N open read-only is served read-only, and a write gets EPERM" {
    requires nbdinfo nbdsh nbdcopy
    random_file "$BATS_TEST_TMPDIR/disk" 1M
    before=$(sha "$BATS_TEST_TMPDIR/disk")
    start_server file fd=7 7<"$BATS_TEST_TMPDIR/disk"
    nbdinfo "$uri" | grep -q 'is_read_only: true'
    nbd_py '
h.set_strict_mode(0)
try:
    h.pwrite(b"x" * 512, 0)
    sys.exit("the write succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/copy"
    [ "$(sha "$BATS_TEST_TMPDIR/copy")" = "$before" ]
    [ "$(sha "$BATS_TEST_TMPDIR/disk")" = "$before" ]
}

@test "fd=N still serves the file after the backend restarted" {
    requires nbdsh nbdcopy
    random_file "$BATS_TEST_TMPDIR/disk" 2M
    start_server file fd=7 7<>"$BATS_TEST_TMPDIR/disk"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/copy"
    [ "$(sha "$BATS_TEST_TMPDIR/copy")" = "$(sha "$BATS_TEST_TMPDIR/disk")" ]
    old=$(backend_pid)
    kill -KILL "$old"
    wait_until eval '[ -n "$(backend_pid)" ] && [ "$(backend_pid)" != "$old" ]'
    random_file "$BATS_TEST_TMPDIR/src" 2M
    nbdcopy "$BATS_TEST_TMPDIR/src" "$uri"
    [ "$(sha "$BATS_TEST_TMPDIR/disk")" = "$(sha "$BATS_TEST_TMPDIR/src")" ]
}

@test "wrong fd= and dirfd= values are errors naming them" {
    truncate -s 1M "$BATS_TEST_TMPDIR/disk"
    mkdir "$BATS_TEST_TMPDIR/d"
    check() {   # check TEXT NBDKIT-ARGS...
        local text=$1; shift
        run "$NBDKIT" "$@"
        echo "$output"
        [ "$status" -eq 1 ]
        [[ "$output" == *"$text"* ]]
    }
    check "fd=foo: not a file descriptor number" file fd=foo
    check "fd=-3: not a file descriptor number" file fd=-3
    check "fd=2: file descriptors 0, 1 and 2" file fd=2
    check "fd=99: the server did not inherit a file descriptor 99" \
        file fd=99 99<&-
    check "dirfd=99: the server did not inherit" file dirfd=99 99<&-
    check "fd=7: the descriptor is not open for reading" \
        file fd=7 7>>"$BATS_TEST_TMPDIR/disk"
    check "fd=7: the descriptor is not a regular file or a block device" \
        file fd=7 7</dev/null
    check "fd=7: the descriptor is not a regular file or a block device" \
        file fd=7 7<"$BATS_TEST_TMPDIR/d"
    check "dirfd=7: the descriptor is not a directory" \
        file dirfd=7 7<"$BATS_TEST_TMPDIR/disk"
    check "give only one of them" \
        file fd=7 dir="$BATS_TEST_TMPDIR/d" 7<"$BATS_TEST_TMPDIR/disk"
    check "give only one of them" \
        file "$BATS_TEST_TMPDIR/disk" dirfd=7 7<"$BATS_TEST_TMPDIR/d"
    check "directory=$BATS_TEST_TMPDIR/disk: not a directory" \
        file directory="$BATS_TEST_TMPDIR/disk"
}

@test "wrong cache= and fadvise= values are errors naming the choices" {
    truncate -s 1M "$BATS_TEST_TMPDIR/disk"
    run "$NBDKIT" file "$BATS_TEST_TMPDIR/disk" cache=fast
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"cache=fast"*"default"*"none"* ]]
    run "$NBDKIT" file "$BATS_TEST_TMPDIR/disk" fadvise=willneed
    echo "$output"
    [ "$status" -eq 1 ]
    [[ "$output" == *"fadvise=willneed"*"normal"*"random"*"sequential"* ]]
    # Upper case is not accepted either (nor is it by nbdkit).
    run "$NBDKIT" file "$BATS_TEST_TMPDIR/disk" cache=NONE
    [ "$status" -eq 1 ]
}

@test "every value of cache= and fadvise= serves the same data" {
    requires nbdcopy
    random_file "$BATS_TEST_TMPDIR/disk" 3M
    want=$(sha "$BATS_TEST_TMPDIR/disk")
    for c in default none; do
        for a in normal random sequential; do
            start_server file "$BATS_TEST_TMPDIR/disk" cache=$c fadvise=$a
            nbdcopy "$uri" "$BATS_TEST_TMPDIR/copy"
            [ "$(sha "$BATS_TEST_TMPDIR/copy")" = "$want" ]
            random_file "$BATS_TEST_TMPDIR/src" 3M
            nbdcopy "$BATS_TEST_TMPDIR/src" "$uri"
            want=$(sha "$BATS_TEST_TMPDIR/src")
            [ "$(sha "$BATS_TEST_TMPDIR/disk")" = "$want" ]
            stop_server
        done
    done
}

@test "cache=none keeps what was written out of the page cache" {
    requires_page_cache
    requires nbdcopy
    size=$((32 << 20))
    random_file "$BATS_TEST_TMPDIR/src" 32M
    # The control: written through the default cache, it stays (but for
    # what reclaim may take back).
    truncate -s 32M "$BATS_TEST_TMPDIR/disk"
    start_server file "$BATS_TEST_TMPDIR/disk"
    nbdcopy "$BATS_TEST_TMPDIR/src" "$uri"
    stop_server
    [ "$(resident "$BATS_TEST_TMPDIR/disk")" -ge $((size * 3 / 4)) ]
    rm "$BATS_TEST_TMPDIR/disk"
    truncate -s 32M "$BATS_TEST_TMPDIR/disk"
    start_server file "$BATS_TEST_TMPDIR/disk" cache=none
    nbdcopy "$BATS_TEST_TMPDIR/src" "$uri"
    stop_server
    r=$(resident "$BATS_TEST_TMPDIR/disk")
    echo "resident after writing with cache=none: $r of $size"
    [ "$r" -le $((size / 4)) ]
    [ "$(sha "$BATS_TEST_TMPDIR/disk")" = "$(sha "$BATS_TEST_TMPDIR/src")" ]
}

@test "cache=none keeps what was read out of the page cache" {
    requires_page_cache
    requires nbdsh
    size=$((32 << 20))
    random_file "$BATS_TEST_TMPDIR/disk" 32M
    read_all='
import hashlib
m = hashlib.sha256()
for i in range(32):
    m.update(h.pread(1 << 20, i << 20))
print(m.hexdigest())'
    want=$(sha "$BATS_TEST_TMPDIR/disk")
    for c in default none; do
        drop_cache "$BATS_TEST_TMPDIR/disk"
        start_server file "$BATS_TEST_TMPDIR/disk" cache=$c
        [ "$(nbd_py "$read_all")" = "$want" ]
        stop_server
        r=$(resident "$BATS_TEST_TMPDIR/disk")
        echo "resident after reading with cache=$c: $r of $size"
        # Reclaim may take a few pages of the default's back even on an
        # idle machine; what tells the two apart is most against little.
        if [ $c = default ]; then
            [ "$r" -ge $((size * 3 / 4)) ]
        else
            [ "$r" -le $((size / 4)) ]
        fi
    done
}

@test "fadvise=random turns read-ahead off" {
    requires_page_cache
    requires nbdsh
    random_file "$BATS_TEST_TMPDIR/disk" 8M
    first_page() {  # resident bytes after reading the first 4K
        drop_cache "$BATS_TEST_TMPDIR/disk"
        start_server file "$BATS_TEST_TMPDIR/disk" "$@"
        nbd_py 'h.pread(4096, 0)'
        stop_server
        resident "$BATS_TEST_TMPDIR/disk"
    }
    normal=$(first_page fadvise=normal)
    [ "$normal" -gt 4096 ] || skip "no read-ahead here ($normal bytes)"
    [ "$(first_page fadvise=sequential)" -gt 4096 ]
    [ "$(first_page fadvise=random)" -eq 4096 ]
}

@test "nbdkit file --help names the new parameters" {
    run "$NBDKIT" file --help
    [ "$status" -eq 0 ]
    for p in "file=<FILENAME>" "dir=" "directory=" "fd=" "dirfd=" \
             "cache=default|none" "fadvise=normal|random|sequential"; do
        [[ "$output" == *"$p"* ]]
    done
}

# As nbdkit's file plugin: zero requests, but no fast zero (nbdinfo
# prints can_fast_zero: false), on a disk file and on tmpfs alike.
@test "the file backend offers zero requests, not fast zero" {
    requires nbdsh
    truncate -s 1M "$BATS_TEST_TMPDIR/disk"
    start_server file "$BATS_TEST_TMPDIR/disk"
    nbd_py '
assert h.can_zero()
assert not h.can_fast_zero()
h.pwrite(b"x" * 4096, 0)
h.zero(4096, 0)
assert h.pread(4096, 0) == bytes(4096)
'
}
