# A hostile or broken client: every length checked, errors as the NBD
# specification says, and never a stall of the other clients.  The
# client is tests/raw-client.py over a real socket.

load helpers

raw() {
    run /usr/bin/python3 "$RAWCLIENT" "$sock" "$1"
    echo "$output"
    [ "$status" -eq 0 ]
    kill -0 "$server_pid"
}

@test "unknown client flags end the connection, the server goes on" {
    start_server memory 1M
    raw bad_client_flags
}

@test "a known option of 1 MiB is answered NBD_REP_ERR_TOO_BIG without being stored" {
    start_server memory 1M
    raw option_too_big
}

@test "an unknown option of 32 MiB is read, thrown away and answered NBD_REP_ERR_UNSUP" {
    start_server memory 1M
    raw big_unknown_option
}

@test "an option announced as 4 GiB ends the connection unread" {
    start_server memory 1M
    raw huge_option
}

@test "with NBD_FLAG_SEND_FUA every command is accepted with FUA" {
    start_server memory 1M
    raw fua_on_every_command
}

@test "a request out of bounds and too long is EINVAL, as nbdkit answers" {
    start_server memory 1M
    raw out_of_bounds_first
}

@test "an unknown option is answered NBD_REP_ERR_UNSUP" {
    start_server memory 1M
    raw unknown_option
}

@test "a client sending endless options is disconnected" {
    start_server memory 1M
    raw too_many_options
}

@test "NBD_OPT_GO with inconsistent lengths is answered NBD_REP_ERR_INVALID" {
    start_server memory 1M
    raw bad_go_lengths
}

@test "an export name over 4096 bytes is answered NBD_REP_ERR_TOO_BIG" {
    start_server memory 1M
    raw long_export_name
}

@test "invalid requests get the NBD error the specification names" {
    # Big enough that 64 MiB requests are in bounds, only too long.
    start_server memory 128M
    raw bad_requests
}

@test "a write on a read-only export fails with EPERM" {
    start_server -r memory 1M
    raw read_only_write
}

@test "a client that never reads its replies does not stall the others" {
    start_server memory 1M
    raw unread_replies_do_not_stall_others
}

@test "a client that disconnects in the middle of a request is forgotten" {
    start_server memory 1M
    raw disconnect_mid_request
}

@test "a request with a bad magic ends the connection" {
    start_server memory 1M
    raw bad_request_magic
}

@test "a client that is not fixed newstyle may only send NBD_OPT_EXPORT_NAME" {
    start_server memory 1M
    raw plain_newstyle_options
}

@test "a handshake flag that --mask-handshake removed is refused" {
    start_server --mask-handshake=1 memory 1M
    raw masked_flag_refused
}

@test "an export name that is not UTF-8 is answered NBD_REP_ERR_INVALID" {
    start_server memory 1M
    raw bad_utf8_name
}

@test "DF without structured replies is refused with EINVAL" {
    start_server memory 1M
    raw df_needs_structured_replies
}

@test "requests that break the backend's block size constraints get EINVAL" {
    truncate -s 1M "$BATS_TEST_TMPDIR/disk"
    start_server "$FAULTY" "$BATS_TEST_TMPDIR/disk" blocksize=512:4096:65536
    raw block_size_enforced
}

@test "NBD_OPT_LIST raises the option limit so that each export can be asked about" {
    truncate -s 1M "$BATS_TEST_TMPDIR/disk"
    start_server "$FAULTY" "$BATS_TEST_TMPDIR/disk" \
        exports=$(seq -s, -f 'disk%02g' 1 40)
    raw list_raises_option_limit
}

@test "a client dripping one byte at a time does not stall the others" {
    start_server memory 1M
    raw drip_does_not_stall_others
}

@test "NBD_OPT_INFO about another export keeps the metadata context" {
    start_server memory 1M
    raw info_keeps_meta_context
}

@test "pipelined writes a slow backend cannot take are not all read into memory" {
    start_server --filter=delay memory 1G delay-write=60
    raw writes_in_flight_bounded
}

@test "out of descriptors, the server pauses accepting instead of spinning" {
    requires prlimit
    start_server memory 1M
    prlimit --pid "$server_pid" --nofile=40:40
    raw accept_out_of_descriptors
    # One message per pause (0.1 s) at most, not one per turn of a
    # spinning loop.
    n=$(grep -c 'accept: Too many open files' "$log" || true)
    echo "accept failures logged: $n"
    [ "$n" -ge 1 ]
    [ "$n" -le 25 ]
}
