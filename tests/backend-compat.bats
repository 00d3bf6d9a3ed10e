# The memory, data, random, example1 and pattern backends behave as
# nbdkit 1.32's plugins of the same names (issue 16).  Every expected
# map, checksum and byte below was computed with Debian's nbdkit
# 1.32.5 (/usr/bin/nbdkit, plus nbdkit-plugin-dev for example1), and is
# hard-coded here so that the test needs no nbdkit of its own.

load helpers

# nbdinfo --map of the running server, one "offset:length:type" a line.
map() {
    nbdinfo --map "$uri" | awk '{print $1 ":" $2 ":" $3}' | tr '\n' ' '
}

# Block status of the range, through a new connection that asks for
# base:allocation: prints the extents of the reply as "length:type".
block_status() { # OFFSET COUNT [REQ_ONE]
    /usr/bin/python3 -c "
import nbd, sys
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri('$uri')
got = []
def cb(ctx, offset, entries, err):
    got.extend(entries)
h.block_status($2, $1, cb, nbd.CMD_FLAG_REQ_ONE if '${3:-}' else 0)
print(' '.join('%d:%d' % (got[i], got[i + 1]) for i in range(0, len(got), 2)))
"
}

# ---- memory: nbdkit's sparse array, 32K pages ----

@test "memory: written zeroes allocate their 32K page, data is data, the rest holes" {
    requires nbdsh nbdinfo
    start_server memory 1M
    nbd_py 'h.pwrite(b"\0" * 512, 0); h.pwrite(b"x" * 512, 100000)'
    run map
    echo "$output"
    [ "$output" = "0:32768:2 32768:65536:3 98304:32768:0 131072:917504:3 " ]
}

@test "memory: zero and trim free a page covered whole or left all zeroes" {
    requires nbdsh nbdinfo
    start_server memory 1M
    nbd_py '
h.pwrite(b"x" * 512, 0); h.zero(512, 0)                 # page 0: freed
h.pwrite(b"x" * 512, 65536); h.pwrite(b"y", 66536)
h.zero(512, 65536)                                      # page 2: data left
h.pwrite(b"\0" * 512, 131072); h.trim(100, 131072)      # page 4: freed
h.pwrite(b"z" * 65536, 196608); h.zero(65000, 196708)   # pages 6, 7: data
h.pwrite(b"x" * 10, 327680); h.pwrite(b"x" * 10, 360000)
h.zero(65536, 327680)                                   # pages 10, 11: freed
'
    run map
    echo "$output"
    [ "$output" = "0:65536:3 65536:32768:0 98304:98304:3 196608:65536:0 262144:786432:3 " ]
}

@test "memory: block status from inside a page, and with REQ_ONE" {
    requires nbdsh
    start_server memory 1M
    nbd_py 'h.pwrite(b"\0" * 512, 0); h.pwrite(b"\1", 40000)'
    # The part of page 0 after offset 512 holds only zeroes.
    run block_status 512 65536
    echo "$output"
    [[ "$output" == "32256:2 32768:0 "* ]]
    run block_status 40001 100000
    echo "$output"
    [[ "$output" == "25535:2 "* ]]
    run block_status 0 1048576 one
    echo "$output"
    [ "$output" = "32768:2" ]
    run block_status 40001 100000 one
    [ "$output" = "25535:2" ]
}

@test "memory: the last page of a disk whose size is not a multiple of 32K" {
    requires nbdsh nbdinfo
    start_server memory 100000
    nbd_py 'h.pwrite(b"\0" * 10, 99990); h.pwrite(b"\0", 65536)'
    run map
    [ "$output" = "0:65536:3 65536:34464:2 " ]
    nbd_py 'h.pwrite(b"\1" * 10, 99990); h.zero(1000, 99000)'
    run map
    [ "$output" = "0:65536:3 65536:32768:2 98304:1696:3 " ]
}

@test "memory: allocator=malloc and malloc,mlock=true report all data" {
    requires nbdsh nbdinfo
    start_server memory 1M allocator=malloc
    nbd_py 'h.pwrite(b"\0" * 512, 0); h.zero(512, 0); assert h.pread(4, 0) == bytes(4)'
    run map
    [ "$output" = "0:1048576:0 " ]
    stop_server
    if [ "$(id -u)" -ne 0 ] && [ "$(ulimit -l)" != unlimited ] &&
       [ "$(ulimit -l)" -lt 2048 ]; then
        skip "mlock of 1M needs root or ulimit -l of 2048 KiB"
    fi
    start_server memory 1M allocator=malloc,mlock=true
    nbd_py 'h.pwrite(b"ab", 7); assert h.pread(2, 7) == b"ab"; h.zero(10, 0)
assert h.pread(4, 7) == bytes(4)'
    run map
    [ "$output" = "0:1048576:0 " ]
}

@test "memory: bad allocators are refused, naming the value and the valid ones" {
    run "$NBDKIT" memory 1M allocator=foo
    [ "$status" -eq 1 ]
    [[ "$output" == *'"foo"'* && "$output" == *sparse* && "$output" == *malloc* ]]
    run "$NBDKIT" memory 1M allocator=sparse,mlock=true
    [ "$status" -eq 1 ]
    [[ "$output" == *"sparse,mlock=true"* ]]
    run "$NBDKIT" memory 1M allocator=malloc,foo=1
    [ "$status" -eq 1 ]
    [[ "$output" == *"foo=1"* && "$output" == *mlock* ]]
    run "$NBDKIT" memory 1M allocator=malloc,mlock=maybe
    [ "$status" -eq 1 ]
    [[ "$output" == *maybe* ]]
    # zstd: refused (see nbdkit-memory-backend(1)), and said so.
    run "$NBDKIT" memory 1M allocator=zstd
    [ "$status" -eq 1 ]
    [[ "$output" == *zstd* && "$output" == *sparse* ]]
    run "$NBDKIT" data 1 allocator=zstd
    [ "$status" -eq 1 ]
    run "$NBDKIT" memory --dump-plugin
    [[ "$output" == *mlock=yes* && "$output" == *zstd=no* ]]
    run "$NBDKIT" memory --help
    [[ "$output" == *"allocator=malloc[,mlock=true]"* ]]
}

# ---- data: the data plugin on its sparse array ----

data_map() { # expected-map DATA-ARGS...
    local want=$1
    shift
    start_server data "$@"
    run map
    stop_server
    echo "data $*: $output"
    [ "$output" = "$want" ]
}

@test "data: extents as nbdkit's data plugin, page by page" {
    requires nbdinfo
    data_map "0:1:0 " '1'
    data_map "0:32768:0 32768:1015808:3 " '1' size=1M
    data_map "0:32768:0 32768:1015808:3 " '@4096 1' size=1M
    data_map "0:32768:2 32768:1015808:3 " '0' size=1M
    data_map "0:1048576:3 " '0*100' size=1M
    data_map "0:32768:0 32768:32768:3 65536:1:0 " '(0 1)*1000 @^65536 2'
    data_map "0:32768:0 32768:32768:3 65536:32768:0 98304:950272:3 " \
        '(0 1)*1000 @^65536 2' size=1M
    data_map "0:32768:2 32768:67232:3 " base64=AAAA size=100000
}

@test "data: runs of zeroes, groups, names, files and slices" {
    requires nbdinfo
    data_map "0:32768:2 32768:65536:3 98304:32768:2 131072:32768:3 163840:32768:2 196608:32768:3 229376:32768:2 262144:32768:0 294912:5088:3 " \
        '0 @32768 0*10 @65536 le32:0 @98304 "\x00" @131072 (0 @10 0)
         @163840 (0 1 0 0)[2:4] @196608 1 @0x30000 0*32768
         @229376 <(head -c 3 /dev/zero) @262144 (0 0 1) -> \a \a' size=300000
    data_map "0:32768:0 32768:167232:3 " '@32760 (1 @30000 0 @40000 0)' size=200000
    data_map "0:32768:3 32768:32768:0 65536:134464:3 " \
        '0 0 0 0 0 0 0 0 0 0 @40000 $v 1' v='(0 @10 0)' size=200000
}

@test "data: writes, zero and trim after the start, as memory" {
    requires nbdsh nbdinfo
    start_server data '1 2 3' size=100000
    nbd_py 'h.pwrite(bytes(10), 50000); h.zero(3, 0); h.pwrite(b"\x09", 70000)
h.trim(1001, 69000)'
    run map
    [ "$output" = "0:32768:3 32768:32768:2 65536:34464:3 " ]
}

@test "data: allocator=malloc reports all data" {
    requires nbdinfo
    data_map "0:100000:0 " raw=abc size=100000 allocator=malloc
}

# ---- random: nbdkit's generator ----

@test "random: the same bytes as nbdkit's random plugin for the same seed" {
    requires nbdsh nbdcopy
    local a
    for a in "1M seed=0 8999da1ae07f0766e34b4a44115001765c6c074c82f45bc9c364bb28cd2b192f" \
             "1M seed=1 2c830f4f36648c8bd7d0ab7edccf2b9ce74f29801be65ec05093ba41dddab416" \
             "100000 seed=1 d6249c3145514cd70fd93bce7e02ca124d18e347a65abbaf080c63757fee73d0" \
             "1234567 seed=4294967295 24faf3dd9035063b5367942cfbd2afcec1a26478842bcbe677ea5a028b6b96e3" \
             "3M seed=12345 a22b3679a3ad44beb20d7d6ab02ad9593792bee8cc53ed859a24a826c9449ec8"; do
        set -- $a
        start_server random "$1" "$2"
        run bash -c 'nbdcopy "$uri" - | sha256sum'
        stop_server
        echo "random $1 $2: $output"
        [ "$output" = "$3  -" ]
    done
    start_server random 1M seed=1
    nbd_py '
assert h.pread(13, 7).hex() == "061772ad7bf81875ffb9f3d12d"
assert h.pread(9, 99991).hex() == "1b837fc832d7992259"
assert h.pread(8, 0).hex() == "1405517eae489606"
'
    stop_server
    # Seeds in octal and hexadecimal, as nbdkit reads them.
    start_server random 1M seed=0x10
    nbd_py 'assert h.pread(8, 0).hex() == "ffb9f3d12dc341c5"'
}

@test "random: a seed is a 32-bit number" {
    run "$NBDKIT" random 1M seed=4294967296
    [ "$status" -eq 1 ]
    [[ "$output" == *4294967296* ]]
    run "$NBDKIT" random 1M seed=-1
    [ "$status" -eq 1 ]
}

@test "random: trim and zero fail with EIO; no flush, FUA, fast zero or extents" {
    requires nbdsh
    start_server random 1M seed=1
    nbd_py '
assert h.can_trim() and h.can_zero()
assert not h.can_flush() and not h.can_fua() and not h.can_fast_zero()
for f in (lambda: h.trim(512, 0), lambda: h.zero(512, 0)):
    try:
        f()
        sys.exit("trim or zero succeeded")
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
h.pwrite(h.pread(100, 7), 7)
'
    run "$NBDKIT" random --dump-plugin
    [[ "$output" != *has_extents* && "$output" != *has_flush* ]]
    [[ "$output" == *has_trim=1* && "$output" == *has_zero=1* ]]
}

# ---- example1: the plugin's 100M disk ----

@test "example1: nbdkit's 100M disk with one empty partition, read-only" {
    requires nbdinfo nbdcopy
    start_server example1
    run nbdinfo "$uri"
    echo "$output"
    [[ "$output" == *"export-size: 104857600"* ]]
    [[ "$output" == *"startsector 128, 204545 sectors"* ]]
    [[ "$output" == *"is_read_only: true"* ]]
    [[ "$output" == *"can_multi_conn: false"* ]]
    [[ "$output" == *"can_cache: false"* ]]
    [[ "$output" == *"can_flush: false"* ]]
    run bash -c 'nbdcopy "$uri" - | sha256sum'
    [ "$output" = "1f0542dc2d0b986dbaa7d52cd6dc578f85644d2ede7a3afc9285dd35b72a8a21  -" ]
    run map
    [ "$output" = "0:104857600:0 " ]
    run "$NBDKIT" example1 --dump-plugin
    [[ "$output" == *thread_model=serialize_all_requests* ]]
}

# ---- pattern: no extents callback ----

@test "pattern: no extents callback, so all data, and the same bytes" {
    requires nbdinfo nbdcopy
    run "$NBDKIT" pattern --dump-plugin
    [[ "$output" != *has_extents* ]]
    start_server pattern 1000001
    run map
    [ "$output" = "0:1000001:0 " ]
    run block_status 13 100
    [ "$output" = "100:0" ]
    run bash -c 'nbdcopy "$uri" - | sha256sum'
    [ "$output" = "a09ef50310a601036a25927cafddccf7a848c0c4c426bf6e0ae735bea6e4aa71  -" ]
}
