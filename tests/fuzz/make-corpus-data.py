#!/usr/bin/python3
# Make the seed corpus of the fuzzing target "data"
# (tests/fuzz/fuzz-data.c): each file is the text of data=, then, after
# a NUL byte each, NAME=VALUE parameters (the values of $NAME).  The
# expressions come from docs/nbdkit-data-backend.pod and tests/data.bats,
# with some that are wrong on purpose (the parser's error paths) and
# the pathological ones that blob.c's limits must bound.  Files and
# scripts are parsed but not evaluated by the harness.
#
#   tests/fuzz/make-corpus-data.py [DIRECTORY]  (default: corpus-data)
#
# The files are made the same way every time; run this again after
# changing it and commit the result.  The crash-* reproducers in the
# directory are kept by hand, not made here.

import os
import sys

SEEDS = {
    # Bytes, offsets and alignment.
    "mbr-bytes": "0 1 2 3 @0x1fe 0x55 0xaa",
    "bases": "255 0xff 0377 010 0xA",
    "offsets": "1 @+4 2 3 @+1 @-0 4 @^16",
    "back": "1 2 3 @-2 9",
    "align": "@^512 7 @^512",
    "offset-back-to-0": "@100 @0",
    "suffixes": "@1k 1 @+1M 2 @^1G",
    "sparse-1T": "@1T 1 @2T 2 3",
    "mbr-table": "@0x1b8 0xf8 0x21 0xdc 0xeb 0 0 0 0\n"
                 "2 0 0x83 0x20 0x20 0 1 0 0 0 0xff 0x7\n"
                 "@0x1fe 0x55 0xaa",
    # Strings and words.
    "strings": '"Hello, world!\\n" "tab\\there \\"q\\" \\\\ \\x41\\x7f '
               '\\101\\0z"',
    "string-escapes": '"\\a\\b\\f\\n\\r\\t\\v\\\'\\?\\x4\\xff\\7\\77\\377"',
    "words": "le16:0x1234 be16:0x1234 le32:0xdeadbeef be32:0xdeadbeef "
             "le64:1 be64:0xfffffffffffffffe le16:0xffff",
    "mbr-words": "@0x1be 0 0 2 0 0x83 0x20 0x20 0 le32:1 le32:2047\n"
                 "@0x1fe 0x55 0xaa",
    # Repeats and groups.
    "repeat-group": "( 0x55 0xAA )*2048",
    "repeat-string": '( "Hello" )*2000',
    "repeats": '1*3 "ab"*2 9*0',
    "repeat-align": "( 1 @^4 )*3",
    "repeat-nested": '( (1 2)*2 "x" )*2',
    "repeat-spaces": "1 * 3 ( 2 ) *2",
    "fill-1T": "0x55*1T 0xAA",
    "group-offset": "@10 ( @2 9 )",
    "group-overwrite": "1 2 3 4 @0 ( @+2 9 )",
    "group-hole": "( @1T 1 ) 2",
    "groups-nested": "((((1 @^8) 2)*3 @-1 3)*2)",
    # Slices.
    "slices": '"abcdef"[1:3] "xyz"[:] "xyz"[2:] "abc"[:2] ("Hello"*2)[3:7]',
    "slices-empty": '"abc"[9:9] "x" "ab"[2:2] <nonexistent[5:5] <(exit 1)[0:0]',
    "slice-of-group": "( 0x55*100 @50 1 2 3 )[40:60] ( @1M 1 )[1M:]",
    # Names.
    "names": '"ab" -> \\a \\a \\a*3 ( \\a "c" )',
    "names-sig": "( 0x55 0xaa ) -> \\sig  @0x1fe \\sig  @0x3fe \\sig",
    "names-odd": '1 -> \\1 "x" -> \\boot-signature \\1 \\boot-signature[0:1]',
    "name-undefined": "( 1 -> \\a ) \\a",
    # Variables (parameters after NUL bytes).
    "var": "$x @^8 $x\0x=1 2 3",
    "var-sector": '$sector*4\0sector="BOOT" @^512',
    "var-nested": "$a\0a=1 $b\0b=1 2",
    "var-pattern": "$pattern*16\0pattern=0x55 0xAA",
    "var-self": "$a\0a=1 $a",
    "var-bad": "$part\0part=300",
    "var-twice": "$v $v[1:]\0v=1 2\0v=3 4 5",
    # Comments.
    "comments": '# a comment\n1   # one\n2 "#" # two',
    # Files and scripts (parsed only).
    "files": "<f @^512 <f[2:] <r[10:20]",
    "scripts": '<(echo hi) <(printf "%s" "$(echo yo)")*3',
    "script-slice": "</dev/urandom[:10] <(while :; do echo -n x; done)[:10]",
    # Errors.
    "err-back": "1 2 3 4 @-9 1",
    "err-align0": "@^0",
    "err-byte": "256",
    "err-neg-word": "be32:-0x10 2",
    "err-word-range": "le16:0x10000",
    "err-octal": "09",
    "err-hex": "0xg",
    "err-too-large": "@8E",
    "err-past-end": "( @4E 1 )*2",
    "err-unclosed": '( 1 "abc',
    "err-escape": '"\\q"',
    "err-slice": '"abc"[2:1] "abc"[1:9]',
    "err-keyword": "le24:1",
    "err-dash": "-1",
    "err-star": "*3 @1*2",
    "err-assign": "1 -> a",
    # Pathological: bounded by blob.c's limits.
    "big-fill": "0*1000000000000",
    "big-dense": "(1 2 3)*100000000",
    "big-fragmented": "(1 @+1)*100000000",
    "big-nested": "((1 2 3)*1000)*1000000",
    "big-blit": "( 0x55*1G @+0 )",
    # Blits of many overlapping or scattered pieces: once quadratic
    # (every chunk looked at for every page), found by a fuzzing run.
    "slow-blit-align": "(0 @+922337203@^547758071)*000100002",
    "slow-blit-nested": "( 4 @1 ( @492323 ( ) 3 @-2 )*312 0 )*34",
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "corpus-data")
    os.makedirs(outdir, exist_ok=True)
    for name, text in sorted(SEEDS.items()):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(text.encode())
    print("%d seeds written to %s" % (len(SEEDS), outdir))


if __name__ == "__main__":
    main()
