# The data backend: the data format, byte for byte, and the disk it
# makes (writable, sparse, kept across a restart of the backend).

load helpers

# check_data PYTHON-BYTES [PARAMS...]: 'nbdkit data PARAMS' serves
# exactly the bytes of the Python expression, size included.
check_data() {
    local expect=$1
    shift
    start_server data "$@"
    nbd_py "
expect = $expect
size = h.get_size()
assert size == len(expect), ('size', size, len(expect))
got = h.pread(size, 0) if size else b''
if got != expect:
    at = next(i for i in range(size) if got[i] != expect[i])
    assert False, ('differs at', at, got[at:at + 16], expect[at:at + 16])
"
    stop_server
}

# same_as_nbdkit PARAMS...: 'nbdkit data PARAMS' serves the same bytes
# (a checksum of the whole disk, size included) as Debian's nbdkit
# with its data plugin.
same_as_nbdkit() {
    requires nbdcopy sha256sum
    [ -x /usr/bin/nbdkit ] && /usr/bin/nbdkit data --dump-plugin >/dev/null 2>&1 ||
        skip "Debian's nbdkit with its data plugin is not installed"
    local ref ours
    ref=$(/usr/bin/nbdkit -U - data "$@" --run 'nbdcopy "$uri" - | sha256sum')
    ours=$("$NBDKIT" -U - data "$@" --run 'nbdcopy "$uri" - | sha256sum')
    echo "nbdkit: $ref, ours: $ours"
    [ -n "$ref" ] && [ "$ref" = "$ours" ]
}

# bad_data MESSAGE PARAMS...: the server refuses to start, and says
# MESSAGE (a substring).
bad_data() {
    local message=$1
    shift
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/bad.sock" data "$@" --run true
    echo "$output"
    [ "$status" -ne 0 ]
    [[ "$output" == *"$message"* ]]
}

@test "bytes in decimal, hexadecimal and octal go where @ puts them" {
    requires nbdsh
    check_data 'bytes([0, 1, 2, 3]) + bytes(0x1fe - 4) + b"\x55\xaa"' \
               '0 1 2 3 @0x1fe 0x55 0xaa'
    check_data 'bytes([255, 255, 255, 8, 10])' '255 0xff 0377 010 0xA'
}

@test "relative offsets and alignment move the offset" {
    requires nbdsh
    check_data 'b"\x01" + bytes(4) + b"\x02\x03" + bytes(1) + b"\x04" + bytes(7)' \
               '1 @+4 2 3 @+1 @-0 4 @^16'
    check_data 'b"\x01\x09\x03"' '1 2 3 @-2 9'
    check_data 'b"\x07" + bytes(511)' '@^512 7 @^512'
    check_data 'bytes(100)' '@100 @0'
}

@test "strings are written with the escapes of C" {
    requires nbdsh
    check_data 'b"Hello, world!\n" + b"tab\there \"q\" \\ \x41\x7f A\0z"' \
               '"Hello, world!\n" "tab\there \"q\" \\ \x41\x7f \101\0z"'
}

@test "words are written in the byte order and width asked for" {
    requires nbdsh
    check_data '(0x1234).to_bytes(2, "little") + (0x1234).to_bytes(2, "big") + (0xdeadbeef).to_bytes(4, "little") + (0xdeadbeef).to_bytes(4, "big") + (1).to_bytes(8, "little") + (2**64 - 2).to_bytes(8, "big") + b"\xff\xff"' \
               'le16:0x1234 be16:0x1234 le32:0xdeadbeef be32:0xdeadbeef le64:1 be64:0xfffffffffffffffe le16:0xffff'
}

@test "a repeated byte, string or group is written N times" {
    requires nbdsh
    check_data 'b"\x55\xaa" * 2048' '( 0x55 0xAA )*2048'
    check_data '(b"Hello" * 2000)[:8192]' '( "Hello" )*2000' size=8192
    check_data 'b"\x01" * 3 + b"ab" * 2 + bytes(0)' '1*3 "ab"*2 9*0'
    check_data '(b"\x01" + bytes(3)) * 3' '( 1 @^4 )*3'
    check_data '(b"\x01\x02" * 2 + b"x") * 2' '( (1 2)*2 "x" )*2'
}

@test "offsets inside a group are relative to the group" {
    requires nbdsh
    check_data 'bytes(10) + bytes(2) + b"\x09"' '@10 ( @2 9 )'
    # A group replaces all the bytes it covers, its zeroes too.
    check_data 'bytes(2) + b"\x09\x04"' '1 2 3 4 @0 ( @+2 9 )'
}

@test "slices take bytes N to M-1 of a value" {
    requires nbdsh
    check_data 'b"bc" + b"xyz" + b"z" + b"ab" + b"loHe"' \
               '"abcdef"[1:3] "xyz"[:] "xyz"[2:] "abc"[:2] ("Hello"*2)[3:7]'
}

@test "names hold a value for later, within their group" {
    requires nbdsh
    check_data 'b"ab" * 4 + b"abc"' \
               '"ab" -> \a \a \a*3 ( \a "c" )'
    check_data 'bytes(0x1fe) + b"\x55\xaa" + bytes(0x1fe) + b"\x55\xaa"' \
               '( 0x55 0xaa ) -> \sig  @0x1fe \sig  @0x3fe \sig'
    bad_data "the name '\\a' is not defined here" '( 1 -> \a ) \a'
}

@test "variables come from parameters and are in the data format" {
    requires nbdsh
    check_data 'b"\x01\x02\x03" + bytes(5) + b"\x01\x02\x03"' \
               '$x @^8 $x' x='1 2 3'
    check_data '(b"BOOT" + bytes(508)) * 4' '$sector*4' sector='"BOOT" @^512'
    check_data 'b"\x01\x01\x02"' '$a' a='1 $b' b='1 2'
}

@test "comments run from # to the end of the line" {
    requires nbdsh
    check_data 'b"\x01\x02#"' '# a comment
1   # one
2 "#" # two'
}

@test "files and the output of scripts are included" {
    requires nbdsh
    printf 'FILE' > "$BATS_TEST_TMPDIR/f"
    head -c 1000 /dev/urandom > "$BATS_TEST_TMPDIR/r"
    cd "$BATS_TEST_TMPDIR"
    check_data 'b"FILE" + bytes(508) + b"LE" + open("r","rb").read()[10:20]' \
               '<f @^512 <f[2:] <r[10:20]'
    check_data 'b"hi\n" + b"yo" * 3' '<(echo hi) <(printf "%s" "$(echo yo)")*3'
    bad_data "the script failed with exit status 3" '<(exit 3)'
    bad_data "cannot open 'nonexistent'" '<nonexistent'
}

@test "raw= and base64= give the bytes directly" {
    requires nbdsh
    check_data 'b"Hello, world!"' raw='Hello, world!'
    check_data 'b"123" + bytes(1021)' base64=MTIz size=1k
    check_data 'b"hello nbdkit user"' base64='aGVsbG8gbmJka2l0IHVzZXI='
    check_data 'b"hi"' base64='aGk'
}

@test "size= truncates and extends the data" {
    requires nbdsh
    check_data 'b"\x01\x02"' '1 2 3 4' size=2
    check_data 'b"\x01" + bytes(4095)' '1' size=4k
    check_data 'b""' '1 2 3' size=0
}

@test "an offset of 1T makes a sparse disk that costs almost no memory" {
    requires nbdsh
    start_server data '@1T 1 @2T 2 3' size=3T
    nbd_py '
assert h.get_size() == 3 << 40
assert h.pread(2, (1 << 40) - 1) == b"\x00\x01"
assert h.pread(4, (2 << 40) - 1) == b"\x00\x02\x03\x00"
'
    # The backend's memory: far below a terabyte.
    rss=$(ps -o rss= -p "$(backend_pid)")
    [ "$rss" -lt 200000 ]
}

@test "a group with a large hole is built as fast as nbdkit builds it" {
    requires nbdsh
    # The hole of '( @1T 1 )' is copied in as holes, not page by page
    # (that took 90 s, nbdkit takes 40 ms); found by fuzzing
    # (tests/fuzz/corpus-data/crash-blit-hole).
    local t0=$SECONDS
    start_server data '( @1T 1 ) ( @4T 2 )[0:1] 3'
    nbd_py '
assert h.get_size() == (1 << 40) + 3
assert h.pread(4, (1 << 40) - 1) == b"\x00\x01\x00\x03"
'
    [ $((SECONDS - t0)) -lt 20 ]
    stop_server
    same_as_nbdkit '( @1099511627776 1 ) 2' size=1M
    same_as_nbdkit '0x55*40000 @0 ( @70000 1 )' size=1M
}

@test "a run of one byte, however long, is built without a buffer" {
    requires nbdsh
    start_server data '0x55*1T 0xAA' size=8M
    nbd_py '
assert h.get_size() == 8 << 20
assert h.pread(8 << 20, 0) == b"\x55" * (8 << 20)
'
}

@test "block status reports the parts never written as holes" {
    requires nbdinfo
    start_server data '@1M 1 2 3 @4M'
    run nbdinfo --map "$uri"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" =~ ^\ +0\ +1048576\ +3\ +hole,zero$ ]]
    [[ "${lines[1]}" =~ ^\ +1048576\ +[0-9]+\ +0\ +data$ ]]
    [[ "${lines[2]}" =~ hole,zero$ ]]
}

@test "the disk is writable, and trim and zero read back as zeroes" {
    requires nbdsh
    start_server data '( "abcdefgh" )*512' size=1M
    nbd_py '
assert not h.is_read_only()
data = os.urandom(100000)
h.pwrite(data, 1000)
assert h.pread(100000, 1000) == data
assert h.pread(1000, 0) == (b"abcdefgh" * 125)
h.trim(4096, 4096)
h.zero(4096, 8192)
h.zero(4096, 8192 + 4096, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(3 * 4096, 4096) == bytes(3 * 4096)
h.pwrite(b"end", (1 << 20) - 3, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(3, (1 << 20) - 3) == b"end"
'
}

@test "with -r a write fails with EPERM" {
    requires nbdsh
    start_server -r data '1 2 3'
    nbd_py '
try:
    h.pwrite(b"x", 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
assert h.pread(3, 0) == b"\x01\x02\x03"
'
}

@test "a restarted backend keeps the disk, writes included" {
    requires nbdsh
    start_server data '<(head -c 4096 /dev/urandom)' size=1M
    nbd_py '
h.pwrite(b"written", 100000)
open(os.environ["BATS_TEST_TMPDIR"] + "/before", "wb").write(h.pread(1 << 20, 0))
'
    old=$(backend_pid)
    kill -KILL "$old"
    wait_until eval '[ -n "$(backend_pid)" ] && [ "$(backend_pid)" != "$old" ]'
    nbd_py '
before = open(os.environ["BATS_TEST_TMPDIR"] + "/before", "rb").read()
assert h.pread(1 << 20, 0) == before
assert h.pread(7, 100000) == b"written"
'
}

@test "the partition table of nbdkit(1) is read by sfdisk" {
    requires nbdcopy sfdisk
    start_server data data="@0x1b8 0xf8 0x21 0xdc 0xeb 0 0 0 0
                            2 0 0x83 0x20 0x20 0 1 0 0 0 0xff 0x7
                            @0x1fe 0x55 0xaa" size=1M
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/disk"
    [ "$(stat -c %s "$BATS_TEST_TMPDIR/disk")" -eq 1048576 ]
    run sfdisk -l "$BATS_TEST_TMPDIR/disk"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"Disklabel type: dos"* ]]
    [[ "$output" == *"Disk identifier: 0xebdc21f8"* ]]
    [[ "$output" =~ disk1\ +1\ +2047\ +2047\ +1023.5K\ +83\ +Linux ]]
    run sfdisk --dump "$BATS_TEST_TMPDIR/disk"
    [[ "$output" == *"start=           1, size=        2047, type=83"* ]]
}

@test "the same partition written with words gives the same table" {
    requires nbdcopy
    start_server data '@0x1be 0 0 2 0 0x83 0x20 0x20 0 le32:1 le32:2047
                       @0x1fe 0x55 0xaa' size=1M
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/a"
    stop_server
    start_server data data="@0x1be 0 0 2 0 0x83 0x20 0x20 0 1 0 0 0 0xff 0x7
                            @0x1fe 0x55 0xaa" size=1M
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/b"
    cmp "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
}

@test "errors in the data name the token and where it is" {
    bad_data "data=, at character 9 near '@-9 1': moves the offset 4 before the start" \
             '1 2 3 4 @-9 1'
    bad_data "at character 3 near '300': the byte 300 is out of range" '1 300'
    bad_data "at character 3 near '\"abc': the string has no closing '\"'" '1 "abc'
    bad_data "at character 1 near '( 1 2': this '(' has no matching ')'" '( 1 2'
    bad_data "')' without a matching '('" '1 )'
    bad_data "unknown word 'foo'" '1 foo'
    bad_data "'08' is not an octal number" '08'
    bad_data "'12ab' is not a valid byte" '12ab'
    bad_data "'*' must follow a value" '@0x10*2'
    bad_data "unexpected '-'" data='-1'
    bad_data "70000 does not fit in 16 bits (the range is 0 to 65535)" 'le16:70000'
    bad_data "'le32' must be followed by ':'" 'le32 5'
    bad_data "the slice [2:5] is outside the 3 bytes it slices" '"abc"[2:5]'
    bad_data "the slice [3:1] ends before it starts" '"abc"[3:1]'
    bad_data "unknown escape '\\q'" '"a\qb"'
    bad_data "there is no variable 'nope'" '$nope'
    bad_data "variable a, at character 1 near '\$a': the variable 'a' refers to itself" \
             '$a' a='$a'
    bad_data "offset 9223372036854775808 is larger than 2^63-1" '@8E'
    bad_data "would go past 2^63-1 bytes" '( @4E 1 )*2'
    bad_data "the alignment must be at least 1" '@^0'
}

@test "parameters are checked" {
    bad_data "the contents of the disk are required" size=1M
    bad_data "data= and raw= cannot both be given" '1 2' raw=x
    bad_data "base64=: character 4 ('!') is not base64" base64='abc!'
    bad_data "base64=: the input is truncated" base64=a
    bad_data "12Q" '1' size=12Q
    bad_data "allocator=fancy: unknown allocator" '1' allocator=fancy
    bad_data "unknown parameter 'x' (variables are for data=" raw=1 x=2
    bad_data "unknown parameter 'x.y'" '1' x.y=3
    # A parameter that no $NAME uses is only a warning.
    run "$NBDKIT" -U "$BATS_TEST_TMPDIR/s" data '1' szie=4 --run true
    [ "$status" -eq 0 ]
    [[ "$output" == *"warning: parameter szie= is not used"* ]]
}

@test "--help lists the parameters and --dump-plugin says base64 works" {
    run "$NBDKIT" data --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"base64="* ]]
    [[ "$output" == *"size="* ]]
    run "$NBDKIT" data --dump-plugin
    [ "$status" -eq 0 ]
    [[ "$output" == *"data_base64=yes"* ]]
}

@test "names after a backslash are letters, digits, '-' and '_' in any order" {
    requires nbdsh
    check_data 'b"ab\x01ab\x01"' \
               '"ab" -> \1  1 -> \a-number_2  \1 \a-number_2 \1 \a-number_2'
    check_data 'bytes(0x1fe) + b"\x55\xaa"' \
               '( 0x55 0xAA ) -> \boot-signature ( @0x1fe \boot-signature ) -> \-s- \-s-'
    same_as_nbdkit '"ab" -> \1  1 -> \a-number_2  \1 \a-number_2 \1 \a-number_2'
}

@test "spaces are allowed on both sides of *" {
    requires nbdsh
    check_data 'b"\x55" * 16 + b"\x01\x02" * 3 + b"ab" * 2' \
               '0x55 * 16 ( 1 2 ) * 3 "ab"*	2'
    same_as_nbdkit '0x55 * 16 ( 1 2 ) * 3 "ab" *2 ( 3 )* 2'
}

@test "a negative number in a word is refused, and the message names it" {
    bad_data "le16:-1: negative numbers are not allowed" 'le16:-1'
    bad_data "at character 3 near 'be32:-0x10 2': be32:-0x10: negative numbers are not allowed" \
             '1 be32:-0x10 2'
    bad_data "-1 is le64:0xffffffffffffffff" 'le64:-1'
    if [ -x /usr/bin/nbdkit ]; then
        # Debian's nbdkit refuses it too.
        run /usr/bin/nbdkit -U - data 'le32:-1' --run true
        [ "$status" -ne 0 ]
    fi
}

@test "a slice [N:N] is empty whatever N, and its value is not even read" {
    requires nbdsh
    check_data 'b"x"' '"abc"[9:9] "x" "ab"[2:2] <nonexistent[5:5] <(exit 1)[0:0]'
    same_as_nbdkit '"abc"[9:9] "x" "ab"[2:2] <nonexistent[5:5]'
}

@test "a slice of a file or a script reads only the bytes it needs" {
    requires nbdsh
    cd "$BATS_TEST_TMPDIR"
    # An endless script, sliced, twice; then killed, not left running.
    check_data 'b"x" * 15 + b"y\n" * 2048' \
               '<(while :; do echo -n x; done)[:10]
                <(while :; do echo -n x; done)[5:10]
                <(echo $$ > yes.pid; exec yes)[:4096]'
    pid=$(cat yes.pid)
    [ -n "$pid" ]
    not kill -0 "$pid" 2>/dev/null
    # An endless device.
    start_server data '</dev/urandom[:10] </dev/urandom[1M:1M] @^512'
    nbd_py 'assert h.get_size() == 512
assert h.pread(502, 10) == bytes(502)'
    stop_server
    # A file: only its bytes from 1000 to 4999, byte for byte.
    random_file big 1M
    start_server data '<big[1000:5000]'
    nbdcopy "$uri" got
    [ "$(sha got)" = "$(dd if=big bs=1000 skip=1 count=4 status=none | sha256sum | cut -d' ' -f1)" ]
    stop_server
    bad_data "the slice [1:9] is outside the 3 bytes it slices" '<(echo hi)[1:9]'
    # The example of nbdkit-data-plugin(1): 32K of an endless counter.
    same_as_nbdkit '<( i=0; while :; do printf "%04d" $i; i=$((i+1)); done )[:32768]'
}

@test "variables also come from the environment; a parameter wins" {
    requires nbdsh
    export pattern='0x55 0xAA' v='9' w='1 $v'
    check_data 'b"\x55\xaa" * 16' '$pattern*16'
    check_data 'b"\x03\x01\x03"' '$v $w' v=3
    export v=300
    bad_data "variable v (from the environment), at character 1 near '300'" '$v'
    unset v
    bad_data "there is no variable 'v'" '$v'
    export v='1 2'
    same_as_nbdkit '$pattern*16 $v'
    same_as_nbdkit '$v' v=3
}

@test "-D data.AST=1 prints the expression as nbdkit's data plugin does" {
    run "$NBDKIT" -U - -v -D data.AST=1 data '0 1 2 3 @0x1fe 0x55 0xaa' --run true
    [ "$status" -eq 0 ]
    ast=$(echo "$output" | sed -n '/BEGIN AST/,/END AST/p' | sed 's/^.*debug: //')
    echo "$ast"
    [ "$ast" = 'BEGIN AST (-D data.AST=1)
(
    "\x00\x01\x02\x03"
    @510
    "U\xaa"
)
END AST' ]
    # Empty strings print (nbdkit leaves them out); memcpy was given
    # their NULL bytes, which UBSan refused (found by fuzzing:
    # tests/fuzz/corpus-data/crash-ast-empty-string).
    run "$NBDKIT" -U - -v -D data.AST=1 data '"" "" @4 "ab" ""' --run true
    [ "$status" -eq 0 ]
    [[ "$output" == *'debug: '*'    "ab"'* ]]
    [[ "$output" != *"runtime error"* ]]
    # Without the flag, nothing.
    run "$NBDKIT" -U - -v data '1 2 3' --run true
    [[ "$output" != *"BEGIN AST"* ]]
}
