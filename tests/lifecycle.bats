# Start and stop: signals, clean-up, and nothing left behind.

load helpers

@test "SIGTERM stops the server and its backend cleanly" {
    start_server memory 1M
    backend=$(backend_pid)
    [ -n "$backend" ]
    stop_server
    [ "$server_status" -eq 0 ]
    not kill -0 "$backend" 2>/dev/null
}

@test "SIGINT and SIGQUIT stop the server too" {
    for sig in INT QUIT; do
        start_server memory 1M
        kill -$sig "$server_pid"
        wait_until eval '! kill -0 $server_pid 2>/dev/null'
        wait "$server_pid" || status=$?
        [ "${status:-0}" -eq 0 ]
        server_pid=
    done
}

@test "SIGTERM with a client connected closes it and exits" {
    requires nbdsh
    start_server memory 1M
    /usr/bin/python3 -c "
import nbd, time, sys
h = nbd.NBD()
h.connect_uri('$uri')
open('$BATS_TEST_TMPDIR/connected', 'w').close()
time.sleep(60)
" 3>&- &
    client=$!
    wait_until test -e "$BATS_TEST_TMPDIR/connected"
    stop_server
    [ "$server_status" -eq 0 ]
    kill "$client" 2>/dev/null || true
}

@test "SIGPIPE from a vanished client does not stop the server" {
    requires nbdsh
    start_server memory 64M
    /usr/bin/python3 -c "
import socket, struct
s = socket.socket(socket.AF_UNIX); s.connect('$sock')
s.recv(18); s.sendall(struct.pack('>I', 3))
s.sendall(struct.pack('>QII', 0x49484156454F5054, 7, 6) + b'\0' * 6)
import time; time.sleep(0.2)
s.recv(65536)
# 50 reads of 1 MiB, then vanish without reading the replies
for i in range(50):
    s.sendall(struct.pack('>IHHQQI', 0x25609513, 0, 0, i, 0, 1 << 20))
s.close()
"
    nbd_py 'assert h.pread(512, 0) == bytes(512)'
    kill -0 "$server_pid"
}

@test "no zombie processes are left" {
    start_server memory 1M
    [ "$(zombies)" -eq 0 ]
}

# With -s the connection is the server: however the client ends it,
# the server exits 0 -- and frees the backend's handles only once the
# connection that owns them is gone (it once crashed here, exit 139).
@test "with -s, a client that ends after NBD_OPT_GO in any way leaves the server exiting 0" {
    local go='\0\0\0\3IHAVEOPT\0\0\0\7\0\0\0\6\0\0\0\0\0\0'
    local req='\x25\x60\x95\x13\0\0'
    local ending
    for ending in '' \
        "$req\0\2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0" \
        "$req\0\0\0\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\0\0\0\x10\0" \
        "$req\0\0\0\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\0\0\0\x10\0$req\0\2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0" \
        "$req\0\1\0\0\0\0\0\0\0\0\0\2\0\0\0\0\0\0\0\0\0\0\x10\0abc" \
        "$req\0"; do
        run bash -c "printf '$go$ending' | '$NBDKIT' -f -s memory 1M >/dev/null"
        echo "ending '$ending': status $status: $output"
        [ "$status" -eq 0 ]
    done
    run bash -c "printf '\0\0\0\3IHAVEOPT\0\0\0\2\0\0\0\0' | '$NBDKIT' -f -s memory 1M >/dev/null"
    [ "$status" -eq 0 ]
}
