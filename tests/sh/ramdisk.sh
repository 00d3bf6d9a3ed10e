#!/bin/sh -
# tests/sh/ramdisk.sh: an nbdkit sh backend script, used by tests/sh.bats
# and shown in nbdkit-sh-backend(1).  A writable disk kept as a sparse
# file in $tmpdir, read and written with dd(1).
#
#   nbdkit sh tests/sh/ramdisk.sh 64M        (the bare argument: size=)
#   nbdkit sh tests/sh/ramdisk.sh size=64M space=1M
#
# size=SIZE   the size of the disk (default 20M)
# space=SIZE  writes that end beyond this offset fail with ENOSPC, as a
#             thin-provisioned disk that ran out of space would
#
# Trim punches holes, zero punches holes or writes zeroes, and extents
# reports the holes of the file (with python3, which knows SEEK_HOLE).

disk=$tmpdir/disk

case "$1" in
    magic_config_key)
        echo size ;;
    config)
        case "$2" in
            size|space) echo "$3" > "$tmpdir/$2" ;;
            *) echo "EINVAL unknown parameter $2=$3 (use size= or space=)" >&2
               exit 1 ;;
        esac ;;
    config_complete)
        size=20M
        [ -f "$tmpdir/size" ] && size=$(cat "$tmpdir/size")
        truncate -s "$size" "$disk" ;;
    thread_model)
        echo parallel ;;
    open)
        echo "ramdisk-$3" ;;
    get_size)
        stat -L -c %s "$disk" ;;
    can_write|can_flush|can_trim|can_zero|can_extents|can_multi_conn)
        exit 0 ;;
    can_fua)
        echo native ;;
    pread)
        dd if="$disk" skip="$4" count="$3" bs=64K iflag=skip_bytes,count_bytes \
           status=none ;;
    pwrite)
        if [ -f "$tmpdir/space" ] &&
           [ $(($4 + $3)) -gt "$(numfmt --from=iec "$(cat "$tmpdir/space")")" ]
        then
            echo "ENOSPC Out of space: this disk holds only $(cat "$tmpdir/space")" >&2
            exit 1
        fi
        case ",$5," in
            *,fua,*) conv=notrunc,fdatasync ;;
            *) conv=notrunc ;;
        esac
        dd of="$disk" seek="$4" bs=64K oflag=seek_bytes conv=$conv status=none ;;
    flush)
        sync "$disk" ;;
    trim)
        fallocate -p -o "$4" -l "$3" "$disk" 2>/dev/null || : ;;
    zero)
        fallocate -p -o "$4" -l "$3" "$disk" 2>/dev/null ||
            head -c "$3" /dev/zero |
                dd of="$disk" seek="$4" bs=64K oflag=seek_bytes conv=notrunc \
                   status=none ;;
    extents)
        python3 - "$disk" "$4" "$3" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
pos, end = int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])
size = os.fstat(fd).st_size
while pos < end and pos < size:
    try:
        data = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        data = size
    if data > pos:
        print(pos, min(data, end) - pos, "hole,zero")
        pos = data
        continue
    hole = os.lseek(fd, pos, os.SEEK_HOLE)
    print(pos, min(hole, end) - pos)
    pos = hole
EOF
        ;;
    *)
        exit 2 ;;
esac
