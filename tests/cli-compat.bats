# The command line as nbdkit's (issue 16, "Command line and probing"
# and "--run"): --short-options, --long-options, -4, -6, --swap,
# nbdkit's plugin names, the versions reported, --dump-plugin, and the
# URIs of --run and --print-uri.  Where Debian's nbdkit is installed
# (/usr/bin/nbdkit, or /usr/sbin/nbdkit), the output is compared with
# its output.

bats_require_minimum_version 1.5.0

load helpers

REF=/usr/bin/nbdkit
[ -x "$REF" ] || REF=/usr/sbin/nbdkit

requires_reference() {
    [ -x "$REF" ] || skip "no reference nbdkit at $REF to compare with"
}

free_port() {
    echo $((20000 + RANDOM % 20000))
}

@test "--short-options prints every short option, one a line, as nbdkit does" {
    run "$NBDKIT" --short-options
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx -- -U
    echo "$output" | grep -qx -- -4
    echo "$output" | grep -qx -- -6
    echo "$output" | not grep -v -- '^-[[:alnum:]]$'
    requires_reference
    [ "$output" = "$("$REF" --short-options)" ]
}

@test "--long-options prints every long option, nbdkit's first in nbdkit's order" {
    run "$NBDKIT" --long-options
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx -- --unix
    echo "$output" | grep -qx -- --swap
    echo "$output" | grep -qx -- --backend-timeout
    echo "$output" | not grep -qx -- --long-options
    echo "$output" | not grep -v -- '^--[a-z0-9-]*$'
    requires_reference
    ref=$("$REF" --long-options)
    [ "$(echo "$output" | head -n "$(echo "$ref" | wc -l)")" = "$ref" ]
}

@test "every option --long-options lists is accepted, and --help mentions the new ones" {
    run "$NBDKIT" --help
    for o in --ipv4-only --ipv6-only --swap --short-options --long-options; do
        echo "$output" | grep -q -- "$o"
    done
    for o in $("$NBDKIT" --long-options); do
        run "$NBDKIT" "$o" 2>&1
        echo "$output" | not grep -q "unrecognized option"
    done
}

@test "-4 listens on IPv4 only and -6 on IPv6 only" {
    requires nbdinfo
    port=$(free_port)
    run "$NBDKIT" -4 -p "$port" memory 1M --run '
        nbdinfo --size nbd://127.0.0.1:$port
        nbdinfo --size "nbd://[::1]:$port" 2>/dev/null || echo "no IPv6"'
    [ "$status" -eq 0 ] || skip "port $port is busy"
    [ "$output" = "1048576
no IPv6" ]
    run "$NBDKIT" -6 -p "$port" memory 1M --run '
        nbdinfo --size "nbd://[::1]:$port" 2>/dev/null || echo "no IPv6 here"
        nbdinfo --size nbd://127.0.0.1:$port 2>/dev/null || echo "no IPv4"'
    [ "$status" -eq 0 ]
    [ "${lines[1]}" = "no IPv4" ]
}

@test "the last of -4 and -6 counts, and -4 with an IPv6 -i is an error naming both" {
    requires nbdinfo
    port=$(free_port)
    run "$NBDKIT" -6 -4 -i localhost -p "$port" memory 1M \
        --run 'nbdinfo --size nbd://127.0.0.1:$port'
    [ "$status" -eq 0 ] || skip "port $port is busy"
    [ "$output" = 1048576 ]
    run "$NBDKIT" -4 -i ::1 -p "$port" memory 1M --run true
    [ "$status" -eq 1 ]
    echo "$output" | grep -q '::1.*IPv4 (-4)'
}

@test "--swap locks the server into memory, and says so when it cannot" {
    requires nbdinfo
    run "$NBDKIT" --swap -U - memory 1M --run 'nbdinfo --size "$uri"'
    [ "$status" -eq 0 ]
    [ "$output" = 1048576 ]
    [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null ||
        skip "needs root and setpriv to try as an unprivileged user"
    # AddressSanitizer makes mlockall do nothing (its shadow memory
    # cannot be locked), so it cannot fail there.
    ! ldd "$NBDKIT" | grep -q asan ||
        skip "a sanitizer build: mlockall is a no-op under AddressSanitizer"
    run setpriv --reuid=65534 --regid=65534 --clear-groups \
        sh -c 'ulimit -l 0; exec "$1" --swap -U - memory 1M --run true' sh "$NBDKIT"
    [ "$status" -eq 1 ]
    echo "$output" | grep -q -- '--swap: mlockall: .*ulimit -l'
}

@test "nbdkit's plugin names run the backend of the same name" {
    requires nbdinfo
    for name in /usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-memory-plugin.so \
                /no/such/dir/nbdkit-memory-plugin.so \
                nbdkit-memory-plugin.so nbdkit-memory-plugin; do
        run "$NBDKIT" -U - "$name" 2M --run 'nbdinfo --size "$uri"'
        [ "$status" -eq 0 ]
        [ "$output" = 2097152 ]
    done
    run "$NBDKIT" nbdkit-memory-plugin.so --dump-plugin
    echo "$output" | grep -qx name=memory
}

@test "an executable named like a plugin is run as it is" {
    mkdir "$BATS_TEST_TMPDIR/d"
    printf '#!/bin/sh\nexit 3\n' > "$BATS_TEST_TMPDIR/d/nbdkit-memory-plugin.so"
    chmod +x "$BATS_TEST_TMPDIR/d/nbdkit-memory-plugin.so"
    run "$NBDKIT" "$BATS_TEST_TMPDIR/d/nbdkit-memory-plugin.so" --dump-plugin
    [ "$status" -eq 1 ]
    echo "$output" | not grep -q name=memory
}

@test "-D flags reach a backend given by its plugin name" {
    run "$NBDKIT" -v -D memory.x=1 -U - nbdkit-memory-plugin.so 1M --run true
    [ "$status" -eq 0 ]
    echo "$output" | not grep -q "was not used"
}

@test "--version prints nbdkit 1.32's, then a line per filter and the backend" {
    run "$NBDKIT" --version
    [ "$status" -eq 0 ]
    [ "$output" = "nbdkit 1.32.0" ]
    run "$NBDKIT" --filter=log --filter=delay --version memory logfile=/dev/null
    [ "$status" -eq 0 ]
    [ "$output" = "nbdkit 1.32.0
log 1.32.0
delay 1.32.0
memory 1.32.0" ]
    requires_reference
    ref=$("$REF" --filter=log --filter=delay --version memory logfile=/dev/null)
    [ "$(echo "$output" | cut -d' ' -f1)" = "$(echo "$ref" | cut -d' ' -f1)" ]
    [ "$(echo "$output" | cut -d. -f1-2)" = "$(echo "$ref" | cut -d. -f1-2)" ]
}

@test "--dump-config reports version 1.32 for tools, and this package's own version beside it" {
    run "$NBDKIT" --dump-config
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx version=1.32.0
    echo "$output" | grep -qx version_major=1
    echo "$output" | grep -qx version_minor=32
    echo "$output" | grep -q '^package_version=[0-9]'
    requires_reference
    for k in version_major version_minor; do
        [ "$(echo "$output" | grep "^$k=")" = "$("$REF" --dump-config | grep "^$k=")" ]
    done
}

@test "--dump-plugin prints max_thread_model and the versions as nbdkit does" {
    run "$NBDKIT" --dump-plugin memory
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx version=1.32.0
    echo "$output" | grep -q '^package_version='
    echo "$output" | grep -qx max_thread_model=parallel
    [ "$(echo "$output" | grep -n '^max_thread_model=' | cut -d: -f1)" -lt \
      "$(echo "$output" | grep -n '^thread_model=' | cut -d: -f1)" ]
    requires_reference
    [ "$(echo "$output" | grep thread_model)" = "$("$REF" --dump-plugin memory | grep thread_model)" ]
}

@test "--dump-plugin with -s is refused with nbdkit's message, nothing on stdout" {
    run --separate-stderr "$NBDKIT" -s --dump-plugin memory
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    [ "$stderr" = "nbdkit: --dump-plugin, -p, --run, -s, -U or --vsock options cannot be used in this combination" ]
    requires_reference
    run --separate-stderr "$REF" -s --dump-plugin memory
    [ "$stderr" = "nbdkit: --dump-plugin, -p, --run, -s, -U or --vsock options cannot be used in this combination" ]
}

@test "--dump-plugin with -p, --run, -U or --vsock dumps, as nbdkit does" {
    for o in "-p 10809" "--run false" "-U -" "--vsock"; do
        run $NBDKIT $o --dump-plugin memory
        [ "$status" -eq 0 ]
        echo "$output" | grep -qx name=memory
    done
}

@test "--run sets \$uri and \$nbd to nbdkit's URI for a unix socket, and no \$tls without TLS" {
    run "$NBDKIT" -U - memory 1M --run \
        'echo "$uri"; echo "$nbd"; echo "${tls-unset}"; echo "$unixsocket"; echo "[$port]"'
    [ "$status" -eq 0 ]
    sock=${lines[3]}
    [ "${lines[0]}" = "nbd+unix://?socket=$sock" ]
    [ "${lines[1]}" = "${lines[0]}" ]
    [ "${lines[2]}" = unset ]
    [ "${lines[4]}" = "[]" ]
}

@test "--run writes a TCP URI as nbd://localhost:PORT, also with -i 127.0.0.1" {
    port=$(free_port)
    run "$NBDKIT" -p "$port" -i 127.0.0.1 memory 1M --run 'echo "$uri $nbd $port"'
    [ "$status" -eq 0 ] || skip "port $port is busy"
    [ "$output" = "nbd://localhost:$port nbd://localhost:$port $port" ]
}

@test "--run with an export name adds /NAME, percent-encoded as nbdkit does" {
    run "$NBDKIT" -U - -e 'dir/a b?' memory 1M --run 'echo "$uri"; echo "$unixsocket"'
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "nbd+unix:///dir/a%20b%3F?socket=${lines[1]}" ]
}

@test "a relative -U path is made absolute in \$unixsocket and the URI" {
    cd "$BATS_TEST_TMPDIR"
    run "$NBDKIT" -U rel.sock memory 1M --run 'echo "$unixsocket $uri"'
    [ "$status" -eq 0 ]
    [ "$output" = "$BATS_TEST_TMPDIR/rel.sock nbd+unix://?socket=$BATS_TEST_TMPDIR/rel.sock" ]
    rm -f rel.sock
}

@test "--run with --tls=require gives nbds URIs and tls=2; --tls=on gives nbd and tls=1" {
    requires psktool
    psktool -u alice -p "$BATS_TEST_TMPDIR/keys.psk" >/dev/null 2>&1
    run "$NBDKIT" -U - --tls=require --tls-psk="$BATS_TEST_TMPDIR/keys.psk" \
        memory 1M --run 'echo "$uri $nbd $tls"'
    [ "$status" -eq 0 ]
    [[ "$output" =~ ^nbds\+unix://\?socket=[^\ ]+\ nbds\+unix://\?socket=[^\ ]+\ 2$ ]]
    port=$(free_port)
    run "$NBDKIT" -p "$port" --tls=on --tls-psk="$BATS_TEST_TMPDIR/keys.psk" \
        memory 1M --run 'echo "$uri $tls"'
    [ "$status" -eq 0 ] || skip "port $port is busy"
    [ "$output" = "nbd://localhost:$port 1" ]
}

@test "the --run variables are the same as Debian's nbdkit's" {
    requires_reference
    cmd='echo "$uri"; echo "$nbd"; echo "${tls-unset}"; echo "$port"; echo "$exportname"'
    # Neither server removes its socket at exit: a fresh one for each run.
    for opts in "-U $BATS_TEST_TMPDIR/s" "-U $BATS_TEST_TMPDIR/s -e x/y%z"; do
        ours=$("$NBDKIT" $opts memory 1M --run "$cmd")
        rm -f "$BATS_TEST_TMPDIR/s"
        ref=$("$REF" $opts memory 1M --run "$cmd")
        rm -f "$BATS_TEST_TMPDIR/s"
        [ "$ours" = "$ref" ]
    done
    port=$(free_port)
    ours=$("$NBDKIT" -p "$port" -i 127.0.0.1 memory 1M --run "$cmd") ||
        skip "port $port is busy"
    ref=$("$REF" -p "$port" -i 127.0.0.1 memory 1M --run "$cmd")
    [ "$ours" = "$ref" ]
}

@test "--print-uri prints the URI in nbdkit's form" {
    "$NBDKIT" -f -U "$BATS_TEST_TMPDIR/s" -e disk --print-uri memory 1M \
        > "$BATS_TEST_TMPDIR/out" 3>&- &
    server_pid=$!
    wait_until test -s "$BATS_TEST_TMPDIR/out"
    [ "$(cat "$BATS_TEST_TMPDIR/out")" = "nbd+unix:///disk?socket=$BATS_TEST_TMPDIR/s" ]
}

@test "-t 1 handles a connection's requests one at a time, in order" {
    requires nbdsh
    # A read at offset 0 is slow in the backend; a read past the end is
    # refused by the server without the backend.  Handled in parallel,
    # the refusal would come first.
    cat > "$BATS_TEST_TMPDIR/slow.sh" <<'SH'
#!/bin/bash
case "$1" in
    get_size) echo 1048576 ;;
    open) echo h ;;
    thread_model) echo parallel ;;
    pread) [ "$4" = 0 ] && sleep 1; head -c "$3" /dev/zero ;;
    *) exit 2 ;;
esac
SH
    chmod +x "$BATS_TEST_TMPDIR/slow.sh"
    "$NBDKIT" -U - -t 1 sh "$BATS_TEST_TMPDIR/slow.sh" --run '/usr/bin/python3 -c "
import nbd
h = nbd.NBD()
h.set_strict_mode(0)
h.connect_uri(\"$uri\")
order = []
def done(n):
    return lambda err: order.append(n) or 1
h.aio_pread(nbd.Buffer(512), 0, completion=done(0))
h.aio_pread(nbd.Buffer(512), 4 << 20, completion=done(1))
h.aio_pread(nbd.Buffer(512), 4096, completion=done(2))
while h.aio_in_flight() > 0:
    h.poll(-1)
assert order == [0, 1, 2], order
"'
}

@test "an unknown backend's message lists the backends found and where it looked" {
    run "$NBDKIT" -U - nosuchbackend --run true
    [ "$status" -eq 1 ]
    echo "$output"
    echo "$output" | grep -q "backend 'nosuchbackend' not found"
    echo "$output" | grep -q "the backends in $top_builddir/backends are: .*memory"
    echo "$output" | grep -q "such as ./nbdkit-nosuchbackend-backend"
    mkdir "$BATS_TEST_TMPDIR/empty"
    run env NBDKIT_BACKEND_DIR="$BATS_TEST_TMPDIR/empty" "$NBDKIT" -U - memory 1M --run true
    [ "$status" -eq 1 ]
    echo "$output" | grep -q "the backends in $BATS_TEST_TMPDIR/empty are: none"
}

@test "--dump-config of the build tree's server names the build tree's backends" {
    run "$NBDKIT" --dump-config
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx "backenddir=$top_builddir/backends"
    echo "$output" | grep -qx "plugindir=$top_builddir/backends"
    # The filters are compiled in: there is no directory of them.
    echo "$output" | grep -qx "filterdir="
}
