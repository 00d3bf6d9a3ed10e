# The permissions of the -U socket (nbdkit-security(1), "THE UNIX
# SOCKET"): by default 0755 less the umask, as nbdkit (only the owner
# may connect: connecting needs write permission); exactly
# --unix-socket-mode=MODE when given; -U - in a private 0700
# directory.  Modes are read with stat; who may connect is tried with
# real clients (nbdinfo), as root and, where the tests run as root, as
# the unprivileged user 65534 (setpriv).

load helpers

setup() {
    requires nbdinfo
    # A directory every user may enter, so that only the socket's own
    # mode decides who connects (the bats directories are private).
    dir=$(mktemp -d /tmp/nbdkit-socket-perms.XXXXXX)
    chmod 0755 "$dir"
}

teardown() {
    stop_server
    rm -rf "$dir"
}

# as_other [GID] CMD...: run CMD as user 65534 with group GID (65534
# unless given), no supplementary groups.  Skips unless root.
can_switch_user() {
    [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null ||
        skip "needs root and setpriv to connect as another user"
}
as_other() {
    local gid=65534
    case "$1" in [0-9]*) gid=$1; shift ;; esac
    setpriv --reuid=65534 --regid="$gid" --clear-groups "$@"
}

mode_of() {
    stat -c %a "$1"
}

@test "by default the socket is 0755 less the umask, never wider, as nbdkit's" {
    for u in 0000 0002 0022 0077; do
        rm -f "$dir/sock"
        run sh -c 'umask "$1"; shift; exec "$@"' sh "$u" \
            "$NBDKIT" -U "$dir/sock" memory 1M \
            --run 'stat -c %a "$unixsocket"; umask; nbdinfo --size "$uri"'
        echo "umask $u: $output"
        [ "$status" -eq 0 ]
        case "$u" in
            0077) [ "${lines[0]}" = 700 ] ;;
            *) [ "${lines[0]}" = 755 ] ;;
        esac
        # The server's umask is given back: --run sees the caller's.
        [ "${lines[1]}" = "$u" ]
        [ "${lines[2]}" = 1048576 ]
    done
}

@test "by default another user cannot connect, even with umask 0" {
    can_switch_user
    run sh -c 'umask 0; exec "$@"' sh "$NBDKIT" -U "$dir/sock" memory 1M \
        --run 'setpriv --reuid=65534 --regid=65534 --clear-groups \
                   nbdinfo --size "$uri"; echo "other: $?"
               nbdinfo --size "$uri"'
    echo "$output"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q "Permission denied"
    echo "$output" | grep -q "^other: [1-9]"
    [ "${lines[-1]}" = 1048576 ]
}

@test "--unix-socket-mode=0600 makes the socket 0600 whatever the umask" {
    for u in 0000 0077; do
        rm -f "$dir/sock"
        run sh -c 'umask "$1"; shift; exec "$@"' sh "$u" \
            "$NBDKIT" --unix-socket-mode=0600 -U "$dir/sock" memory 1M \
            --run 'stat -c "%a %F" "$unixsocket"; nbdinfo --size "$uri"'
        echo "$output"
        [ "$status" -eq 0 ]
        [ "${lines[0]}" = "600 socket" ]
        [ "${lines[1]}" = 1048576 ]
    done
}

@test "--unix-socket-mode=0660 lets the socket's group connect, and nobody else" {
    can_switch_user
    "$NBDKIT" -f --unix-socket-mode 660 -U "$dir/sock" -P "$dir/pid" \
        memory 1M </dev/null >/dev/null 2>"$dir/log" 3>&- &
    server_pid=$!
    wait_until test -s "$dir/pid"
    [ "$(mode_of "$dir/sock")" = 660 ]
    group=$(stat -c %g "$dir/sock")
    uri="nbd+unix:///?socket=$dir/sock"
    # The socket's group (the server's, here root's) may connect ...
    [ "$(as_other "$group" nbdinfo --size "$uri")" = 1048576 ]
    # ... another group may not.
    run as_other nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    echo "$output" | grep -q "Permission denied"
}

@test "--unix-socket-mode=0666 lets any user connect" {
    can_switch_user
    run "$NBDKIT" --unix-socket-mode 0666 -U "$dir/sock" memory 1M \
        --run 'stat -c %a "$unixsocket"
               setpriv --reuid=65534 --regid=65534 --clear-groups \
                   nbdinfo --size "$uri"'
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = 666 ]
    [ "${lines[1]}" = 1048576 ]
}

@test "-U - keeps its private 0700 directory, with or without --unix-socket-mode" {
    for m in "" --unix-socket-mode=0666; do
        run sh -c 'umask 0; exec "$@"' sh "$NBDKIT" $m -U - memory 1M \
            --run 'stat -c %a "$(dirname "$unixsocket")" "$unixsocket"
                   echo "dir=$(dirname "$unixsocket")"
                   nbdinfo --size "$uri"'
        echo "$output"
        [ "$status" -eq 0 ]
        [ "${lines[0]}" = 700 ]
        if [ -n "$m" ]; then [ "${lines[1]}" = 666 ]; else [ "${lines[1]}" = 755 ]; fi
        [ "${lines[3]}" = 1048576 ]
        # Removed at exit.
        [ ! -e "${lines[2]#dir=}" ]
    done
    [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null || return 0
    # The directory keeps other users out whatever the socket's mode.
    run "$NBDKIT" --unix-socket-mode=0666 -U - memory 1M \
        --run 'setpriv --reuid=65534 --regid=65534 --clear-groups \
                   nbdinfo --size "$uri"'
    [ "$status" -ne 0 ]
    echo "$output" | grep -q "Permission denied"
}

@test "--unix-socket-mode: a bad mode, or no -U, is a usage error naming it" {
    for m in 0999 1777 8 "" u+rw 0x600 -1 07777; do
        run "$NBDKIT" --unix-socket-mode="$m" -U "$dir/sock" memory 1M --run true
        [ "$status" -eq 1 ]
        echo "$output" | grep -q -- "--unix-socket-mode=$m: expected permissions in octal"
        [ ! -e "$dir/sock" ]
    done
    for other in "" "-p 10809" -s --vsock; do
        run "$NBDKIT" --unix-socket-mode=0600 $other memory 1M
        [ "$status" -eq 1 ]
        echo "$output" | grep -q -- "--unix-socket-mode is the mode of the -U socket: it needs -U"
    done
}

@test "--help, --long-options and bash completion know --unix-socket-mode" {
    run "$NBDKIT" --help
    echo "$output" | grep -q -- "--unix-socket-mode MODE"
    run "$NBDKIT" --long-options
    echo "$output" | grep -qx -- --unix-socket-mode
    grep -q -- "--unix-socket-mode" "$top_srcdir/contrib/bash-completion/nbdkit"
}
