# The s3 backend against a real radosgw (Ceph's S3 service) of a
# one-node cluster on 127.0.0.1, started once for the file by
# ceph-cluster.bash.  A user is made with radosgw-admin; buckets and
# objects are made and checked with curl(1)'s own SigV4 signing (not
# the backend's), data by checksum.  Without the Ceph packages every
# test skips, saying why.

bats_require_minimum_version 1.5.0

load helpers
load ceph-cluster

BACKEND=$top_builddir/backends/s3/nbdkit-s3-backend
AK=NBDTESTACCESSKEY
SK=nbdtestsecretkey0123456789
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

setup_file() {
    export SKIP_BUILD=$BATS_FILE_TMPDIR/skip-build
    if [ ! -x "$BACKEND" ]; then
        echo "the s3 backend was not built (configure did not find libcurl >= 7.75: install libcurl4-gnutls-dev)" > "$SKIP_BUILD"
        return 0
    fi
    ceph_start rgw
    [ ! -s "$CEPH_SKIP" ] || return 0
    if ! timeout 60 radosgw-admin -c "$CEPH_CONF" user create --uid=nbdtest \
           --display-name=nbdtest --access-key="$AK" --secret-key="$SK" \
           > "$BATS_FILE_TMPDIR/user.log" 2>&1; then
        echo "radosgw-admin could not make the test user: $(tail -n 2 "$BATS_FILE_TMPDIR/user.log")" > "$CEPH_SKIP"
        return 0
    fi
    if [ "$(s3curl PUT /nbdtest)" != 200 ]; then
        echo "radosgw at $RGW_URL did not make the bucket nbdtest" > "$CEPH_SKIP"
        return 0
    fi
    echo "# Ceph cluster and radosgw up in ${CEPH_START_SECS}s" >&3
}

teardown_file() {
    ceph_stop
}

# s3curl METHOD PATH [FILE]: one request signed by curl(1) itself,
# prints the HTTP status (the body goes to $BATS_TEST_TMPDIR/body, or
# the file's content is sent with a PUT).
s3curl() {
    local m=$1 p=$2 f=${3:-} sum=$EMPTY_SHA
    local args=(-s -o "${BATS_TEST_TMPDIR:-$BATS_FILE_TMPDIR}/body" -w '%{http_code}'
                --aws-sigv4 aws:amz:us-east-1:s3 --user "$AK:$SK" -X "$m")
    if [ -n "$f" ]; then
        sum=$(sha256sum < "$f" | cut -d' ' -f1)
        args+=(--data-binary "@$f" -H 'Content-Type: application/octet-stream')
    fi
    curl "${args[@]}" -H "x-amz-content-sha256: $sum" "$RGW_URL$p"
}

# The keys under a prefix (the query in sorted order, as SigV4 wants).
s3list() {
    [ "$(s3curl GET "/nbdtest?list-type=2&prefix=$1")" = 200 ]
    grep -o '<Key>[^<]*</Key>' "$BATS_TEST_TMPDIR/body" | sed 's/<[^>]*>//g'
}

s3_requires() {
    [ ! -s "$SKIP_BUILD" ] || skip "$(cat "$SKIP_BUILD")"
    ceph_requires
    requires nbdinfo nbdsh nbdcopy curl "$@"
    unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN \
          AWS_PROFILE AWS_SHARED_CREDENTIALS_FILE AWS_REGION AWS_DEFAULT_REGION
    S3P=(endpoint-url="$RGW_URL" bucket=nbdtest)
    KEYS=(access-key="$AK" secret-key="$SK")
}

# ---- the command line (no service needed) ----

@test "s3: --dump-plugin and --help: the name, the magic key and every parameter of nbdkit's S3 plugin" {
    [ ! -s "$SKIP_BUILD" ] || skip "$(cat "$SKIP_BUILD")"
    run "$NBDKIT" s3 --dump-plugin
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx 'name=s3'
    echo "$output" | grep -qx 'magic_config_key=key'
    echo "$output" | grep -qx 'thread_model=parallel'
    echo "$output" | grep -q '^libcurl_version=[0-9]'
    run "$NBDKIT" s3 --help
    [ "$status" -eq 0 ]
    for k in access-key secret-key session-token endpoint-url bucket key \
             size object-size region profile write-whole-object; do
        echo "$output" | grep -qE "^(\[)?$k(\])?=" || { echo "no $k=" >&2; false; }
    done
}

@test "s3: every parameter is checked: a wrong value stops the server with status 1, named in the message" {
    [ ! -s "$SKIP_BUILD" ] || skip "$(cat "$SKIP_BUILD")"
    check() {   # check 'PATTERN' PARAMS...
        local pat=$1; shift
        run env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME=/nonexistent \
            "$NBDKIT" -U - s3 "$@" --run true
        [ "$status" -eq 1 ] || { echo "exit $status for $*: $output" >&2; return 1; }
        echo "$output" | grep -qF -- "$pat" ||
            { echo "no '$pat' in: $output" >&2; return 1; }
    }
    check 'the bucket is required: bucket=BUCKET' disk
    check 'the object is required: [key=]KEY' bucket=b
    check 'bucket=: the value must not be empty' bucket= disk
    check 'size= and object-size= go together' bucket=b disk size=1M
    check 'size= and object-size= go together' bucket=b disk object-size=64k
    check 'size=1048577 must be a multiple of object-size=65536' bucket=b disk size=1048577 object-size=64k
    check 'object-size=100: out of range (use 512 bytes to 64M' bucket=b disk size=1M object-size=100
    check 'size=1Q' bucket=b disk size=1Q object-size=1M
    check 'endpoint-url=ftp://x: not an http:// or https:// URL' bucket=b disk endpoint-url=ftp://x
    check 'access-key= is given without secret-key=' bucket=b disk access-key=a
    check 'secret-key= is given without access-key=' bucket=b disk secret-key=s
    check 'access-key=+/nonexistent/ak' bucket=b disk access-key=+/nonexistent/ak secret-key=s
    check 'retries=99: out of range (use 0 to 20)' bucket=b disk retries=99
    check 'write-whole-object=perhaps' bucket=b disk write-whole-object=perhaps
    check 'write-whole-object=true is for a disk that is one object' bucket=b disk size=1M object-size=64k write-whole-object=true
    check 'sslverify=perhaps' bucket=b disk sslverify=perhaps
    check 'no AWS credentials' bucket=b disk
    check "unknown parameter 'user'" bucket=b disk user=x
}

# ---- against radosgw ----

@test "s3: one object: read-only, read by byte ranges, same bytes; qemu-img compare" {
    s3_requires qemu-img
    random_file "$BATS_TEST_TMPDIR/one.img" 10M
    [ "$(s3curl PUT /nbdtest/one.img "$BATS_TEST_TMPDIR/one.img")" = 200 ]
    start_server s3 "${S3P[@]}" "${KEYS[@]}" one.img
    nbdinfo --json "$uri" > "$BATS_TEST_TMPDIR/info"
    grep -q '"export-size": 10485760' "$BATS_TEST_TMPDIR/info"
    grep -q '"is_read_only": true' "$BATS_TEST_TMPDIR/info"
    nbdcopy -C 4 "$uri" "$BATS_TEST_TMPDIR/out.img"
    [ "$(sha "$BATS_TEST_TMPDIR/out.img")" = "$(sha "$BATS_TEST_TMPDIR/one.img")" ]
    qemu-img compare -f raw -F raw "$BATS_TEST_TMPDIR/one.img" "$uri"
    nbdsh -u "$uri" -c '
import errno
want = open("'"$BATS_TEST_TMPDIR/one.img"'", "rb").read()
assert h.pread(1000, 12345) == want[12345:13345]
try:
    h.pwrite(b"x" * 512, 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
}

@test "s3: split: 64 MiB in and out with 1 and 4 connections and requests of several objects, objects KEY/%016x as nbdkit names them" {
    s3_requires
    random_file "$BATS_TEST_TMPDIR/in.img" 64M
    start_server s3 "${S3P[@]}" "${KEYS[@]}" key=split size=64M object-size=1M
    nbdinfo --json "$uri" > "$BATS_TEST_TMPDIR/info"
    grep -q '"is_read_only": false' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_multi_conn": true' "$BATS_TEST_TMPDIR/info"
    nbdcopy -C 4 "$BATS_TEST_TMPDIR/in.img" "$uri"
    nbdcopy -C 1 "$uri" "$BATS_TEST_TMPDIR/out1.img"
    [ "$(sha "$BATS_TEST_TMPDIR/out1.img")" = "$(sha "$BATS_TEST_TMPDIR/in.img")" ]
    nbdcopy -C 4 "$uri" "$BATS_TEST_TMPDIR/out4.img"
    [ "$(sha "$BATS_TEST_TMPDIR/out4.img")" = "$(sha "$BATS_TEST_TMPDIR/in.img")" ]
    # Requests of 4 objects each, fetched at once.
    nbdcopy -C 4 --request-size=4194304 "$uri" "$BATS_TEST_TMPDIR/out4m.img"
    [ "$(sha "$BATS_TEST_TMPDIR/out4m.img")" = "$(sha "$BATS_TEST_TMPDIR/in.img")" ]
    s3list split%2F > "$BATS_TEST_TMPDIR/keys"
    [ "$(wc -l < "$BATS_TEST_TMPDIR/keys")" -eq 64 ]
    [ "$(head -n 1 "$BATS_TEST_TMPDIR/keys")" = split/0000000000000000 ]
    [ "$(tail -n 1 "$BATS_TEST_TMPDIR/keys")" = split/000000000000003f ]
    # Object 5 is bytes 5M..6M of the disk, as curl fetches it.
    [ "$(s3curl GET /nbdtest/split/0000000000000005)" = 200 ]
    cmp "$BATS_TEST_TMPDIR/body" <(tail -c +$((5 * 1048576 + 1)) "$BATS_TEST_TMPDIR/in.img" | head -c 1048576)
}

@test "s3: split: unaligned writes (read-modify-write), zero and trim delete objects, extents list them" {
    s3_requires
    start_server s3 "${S3P[@]}" "${KEYS[@]}" key=sparse size=16M object-size=256k
    run nbdinfo --map=base:allocation "$uri"
    [ "$(echo "$output" | awk '{print $1, $2, $3}')" = "0 16777216 3" ]
    nbdsh -u "$uri" -c '
# Across the boundary of objects 1 and 2, and inside object 8.
h.pwrite(b"\x11" * 1000, 512 * 1024 - 500)
h.pwrite(b"\x22" * 10, 8 * 256 * 1024 + 7)
b = h.pread(2000, 512 * 1024 - 1000)
assert b == bytes(500) + b"\x11" * 1000 + bytes(500), b
assert h.pread(12, 8 * 256 * 1024 + 5) == b"\0\0" + b"\x22" * 10
h.flush()
'
    run nbdinfo --map=base:allocation "$uri"
    echo "$output"
    [ "$(echo "$output" | awk '{print $1, $2, $3}' | tr '\n' ';')" = \
      "0 262144 3;262144 524288 0;786432 1310720 3;2097152 262144 0;2359296 14417920 3;" ]
    [ "$(s3list sparse%2F | tr '\n' ' ')" = "sparse/0000000000000001 sparse/0000000000000002 sparse/0000000000000008 " ]
    # Zero part of object 8 (it stays), trim all of 1 and 2 (deleted).
    nbdsh -u "$uri" -c '
h.zero(4, 8 * 256 * 1024 + 8)
assert h.pread(12, 8 * 256 * 1024 + 5) == b"\0\0" + b"\x22" + bytes(4) + b"\x22" * 5
h.trim(512 * 1024, 256 * 1024)
assert h.pread(2000, 512 * 1024 - 1000) == bytes(2000)
'
    [ "$(s3list sparse%2F | tr '\n' ' ')" = "sparse/0000000000000008 " ]
    # Writing an object all zeroes deletes it too.
    nbdsh -u "$uri" -c 'h.zero(256 * 1024, 8 * 256 * 1024)'
    [ -z "$(s3list sparse%2F)" ]
    run nbdinfo --map=base:allocation "$uri"
    [ "$(echo "$output" | awk '{print $1, $2, $3}')" = "0 16777216 3" ]
}

@test "s3: wrong credentials are refused at start with the server's reason (HTTP 403)" {
    s3_requires
    run "$NBDKIT" -U - s3 "${S3P[@]}" access-key="$AK" secret-key=wrong key=k size=1M object-size=64k --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"HTTP 403 SignatureDoesNotMatch: the secret key does not match the access key"* ]]
    run "$NBDKIT" -U - s3 "${S3P[@]}" access-key=NOSUCHKEY secret-key="$SK" key=k size=1M object-size=64k --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"HTTP 403 InvalidAccessKeyId: the server does not know this access key"* ]]
    # The same for one object, whose HEAD has no body to say why.
    random_file "$BATS_TEST_TMPDIR/o" 4k
    [ "$(s3curl PUT /nbdtest/o "$BATS_TEST_TMPDIR/o")" = 200 ]
    run "$NBDKIT" -U - s3 "${S3P[@]}" access-key="$AK" secret-key=wrong o --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"HTTP 403 SignatureDoesNotMatch"* ]]
}

@test "s3: a missing object or bucket is refused at start (HTTP 404)" {
    s3_requires
    run "$NBDKIT" -U - s3 "${S3P[@]}" "${KEYS[@]}" nosuchobject --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"s3://nbdtest/nosuchobject: HTTP 404 NoSuchKey: no such object"* ]]
    run "$NBDKIT" -U - s3 endpoint-url="$RGW_URL" bucket=nosuchbucket "${KEYS[@]}" k --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"HTTP 404 NoSuchBucket: the bucket does not exist"* ]]
    run "$NBDKIT" -U - s3 endpoint-url="$RGW_URL" bucket=nosuchbucket "${KEYS[@]}" k size=1M object-size=64k --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"HTTP 404 NoSuchBucket: the bucket does not exist"* ]]
}

@test "s3: credentials from +FILE, from the environment, from a credentials file with profile=" {
    s3_requires
    random_file "$BATS_TEST_TMPDIR/c.img" 1M
    [ "$(s3curl PUT /nbdtest/c.img "$BATS_TEST_TMPDIR/c.img")" = 200 ]
    want=$(sha "$BATS_TEST_TMPDIR/c.img")
    # +FILE
    printf '%s\n' "$AK" > "$BATS_TEST_TMPDIR/ak"
    printf '%s\n' "$SK" > "$BATS_TEST_TMPDIR/sk"
    run "$NBDKIT" -U - s3 "${S3P[@]}" access-key=+"$BATS_TEST_TMPDIR/ak" \
        secret-key=+"$BATS_TEST_TMPDIR/sk" c.img --run 'nbdcopy "$uri" - | sha256sum'
    [ "$status" -eq 0 ]
    [ "${output%% *}" = "$want" ]
    # The environment.
    run env AWS_ACCESS_KEY_ID="$AK" AWS_SECRET_ACCESS_KEY="$SK" \
        "$NBDKIT" -U - s3 "${S3P[@]}" c.img --run 'nbdcopy "$uri" - | sha256sum'
    [ "$status" -eq 0 ]
    [ "${output%% *}" = "$want" ]
    run env AWS_ACCESS_KEY_ID="$AK" "$NBDKIT" -U - s3 "${S3P[@]}" c.img --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"AWS_ACCESS_KEY_ID is set in the environment without AWS_SECRET_ACCESS_KEY"* ]]
    # ~/.aws/credentials, default profile and another.
    mkdir -p "$BATS_TEST_TMPDIR/home/.aws"
    cat > "$BATS_TEST_TMPDIR/home/.aws/credentials" <<EOF
[default]
aws_access_key_id = NOSUCHKEY
aws_secret_access_key = nothing

[nbd]
aws_access_key_id = $AK
aws_secret_access_key = $SK
EOF
    run env HOME="$BATS_TEST_TMPDIR/home" "$NBDKIT" -U - s3 "${S3P[@]}" profile=nbd c.img \
        --run 'nbdcopy "$uri" - | sha256sum'
    [ "$status" -eq 0 ]
    [ "${output%% *}" = "$want" ]
    run env HOME="$BATS_TEST_TMPDIR/home" AWS_PROFILE=nbd "$NBDKIT" -U - s3 "${S3P[@]}" c.img \
        --run 'nbdcopy "$uri" - | sha256sum'
    [ "$status" -eq 0 ]
    [ "${output%% *}" = "$want" ]
    run env HOME="$BATS_TEST_TMPDIR/home" "$NBDKIT" -U - s3 "${S3P[@]}" c.img --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"InvalidAccessKeyId"* ]]
    run env HOME="$BATS_TEST_TMPDIR/home" "$NBDKIT" -U - s3 "${S3P[@]}" profile=other c.img --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"profile [other] is not in the AWS credentials file $BATS_TEST_TMPDIR/home/.aws/credentials"* ]]
    run env HOME="$BATS_TEST_TMPDIR/nohome" "$NBDKIT" -U - s3 "${S3P[@]}" c.img --run true
    [ "$status" -eq 1 ]
    [[ "$output" = *"no AWS credentials"*"$BATS_TEST_TMPDIR/nohome/.aws/credentials: No such file or directory"* ]]
}

@test "s3: two servers over one split disk: what one writes the other reads (multi-conn)" {
    s3_requires
    random_file "$BATS_TEST_TMPDIR/in.img" 16M
    start_server s3 "${S3P[@]}" "${KEYS[@]}" key=shared size=16M object-size=1M
    local uri1=$uri
    sock=$BATS_TEST_TMPDIR/sock2
    "$NBDKIT" -f -U "$sock" -P "$BATS_TEST_TMPDIR/pid2" s3 "${S3P[@]}" "${KEYS[@]}" \
        key=shared size=16M object-size=1M \
        </dev/null >/dev/null 2>"$BATS_TEST_TMPDIR/log2" 3>&- &
    local pid2=$!
    wait_until test -S "$sock"
    local uri2="nbd+unix:///?socket=$sock"
    nbdcopy -C 4 "$BATS_TEST_TMPDIR/in.img" "$uri1"
    nbdcopy -C 4 "$uri2" "$BATS_TEST_TMPDIR/out.img"
    [ "$(sha "$BATS_TEST_TMPDIR/out.img")" = "$(sha "$BATS_TEST_TMPDIR/in.img")" ]
    nbdsh -u "$uri2" -c 'h.pwrite(b"\x5a" * 65536, 1 << 20)'
    nbdsh -u "$uri1" -c 'assert h.pread(65536, 1 << 20) == b"\x5a" * 65536'
    kill -TERM "$pid2"
    wait "$pid2" || true
}

@test "s3: the backend killed during and between copies is restarted and no byte is lost" {
    s3_requires
    random_file "$BATS_TEST_TMPDIR/in" 32M
    start_server -v --backend-max-restarts=20 s3 "${S3P[@]}" "${KEYS[@]}" \
        key=killed size=32M object-size=1M
    kill_backend_during 3 nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    # A copy may end before a kill: one more, between the copies, for
    # sure.
    kill -KILL "$(backend_pid)"
    kill_backend_during 3 nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    wait_until grep -q "killed by signal SIGKILL" "$log"
    wait_until grep -q "backend restarted" "$log"
    echo "# backend kills: $(grep -c "killed by signal SIGKILL" "$log")" >&3
}

@test "s3: radosgw stopped and restarted under a copy: it completes after retries, or fails with EIO, never wrong data" {
    s3_requires
    random_file "$BATS_TEST_TMPDIR/in" 16M
    start_server -v s3 "${S3P[@]}" "${KEYS[@]}" key=outage size=16M object-size=1M retries=10
    nbdcopy "$BATS_TEST_TMPDIR/in" "$uri"
    rgw_stop
    # The copy starts while radosgw is down: its requests fail to
    # connect and are tried again with backoff while radosgw starts.
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/copy.err" &
    local copy=$!
    rgw_start
    local st=0
    wait "$copy" || st=$?
    if [ "$st" -eq 0 ]; then
        [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/out")" ]
    else
        echo "# the copy failed (radosgw came back after the retries)" >&3
        grep -q 'Input/output error' "$BATS_TEST_TMPDIR/copy.err"
    fi
    echo "# requests tried again during the outage: $(grep -c 'trying again in' "$log" || true)" >&3
    # And after it, the disk is whole.
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/after"
    [ "$(sha "$BATS_TEST_TMPDIR/in")" = "$(sha "$BATS_TEST_TMPDIR/after")" ]
}

# ---- write-whole-object=true: one object, writable through a local copy ----

# s3get KEY FILE: the object as radosgw has it now, into FILE.
s3get() {
    [ "$(s3curl GET "/nbdtest/$1")" = 200 ] && mv "$BATS_TEST_TMPDIR/body" "$2"
}

@test "s3: write-whole-object=true: nbdcopy in with --flush, read back by a fresh server and by curl, same checksum" {
    s3_requires
    random_file "$BATS_TEST_TMPDIR/old" 32M
    random_file "$BATS_TEST_TMPDIR/new" 32M
    [ "$(s3curl PUT /nbdtest/whole.img "$BATS_TEST_TMPDIR/old")" = 200 ]
    mkdir "$BATS_TEST_TMPDIR/tmp"
    TMPDIR=$BATS_TEST_TMPDIR/tmp start_server s3 "${S3P[@]}" "${KEYS[@]}" whole.img write-whole-object=true
    nbdinfo --json "$uri" > "$BATS_TEST_TMPDIR/info"
    grep -q '"is_read_only": false' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_flush": true' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_fua": true' "$BATS_TEST_TMPDIR/info"
    grep -q '"can_multi_conn": false' "$BATS_TEST_TMPDIR/info"
    # Nothing written yet: no local copy.
    [ -z "$(ls "$BATS_TEST_TMPDIR/tmp")" ]
    nbdcopy --flush "$BATS_TEST_TMPDIR/new" "$uri"
    s3get whole.img "$BATS_TEST_TMPDIR/got"
    [ "$(sha "$BATS_TEST_TMPDIR/got")" = "$(sha "$BATS_TEST_TMPDIR/new")" ]
    # The copy is in $TMPDIR while the server runs, and gone after.
    [ "$(ls "$BATS_TEST_TMPDIR/tmp" | grep -c '^nbdkit-s3-')" -eq 1 ]
    stop_server
    [ -z "$(ls "$BATS_TEST_TMPDIR/tmp")" ]
    # A fresh server, read-only (no opt-in), reads the new bytes.
    start_server s3 "${S3P[@]}" "${KEYS[@]}" whole.img
    nbdcopy -C 4 "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/out")" = "$(sha "$BATS_TEST_TMPDIR/new")" ]
}

@test "s3: write-whole-object=true: unaligned writes, zero and trim over a partly fetched object, flushed, read back" {
    s3_requires
    random_file "$BATS_TEST_TMPDIR/obj" 3M
    [ "$(s3curl PUT /nbdtest/rmw.img "$BATS_TEST_TMPDIR/obj")" = 200 ]
    cp "$BATS_TEST_TMPDIR/obj" "$BATS_TEST_TMPDIR/want"
    start_server s3 "${S3P[@]}" "${KEYS[@]}" rmw.img write-whole-object=true
    nbdsh -u "$uri" -c '
want = bytearray(open("'"$BATS_TEST_TMPDIR/want"'", "rb").read())
def w(buf, off):
    h.pwrite(buf, off)
    want[off:off + len(buf)] = buf
def z(n, off, trim=False):
    h.trim(n, off) if trim else h.zero(n, off)
    want[off:off + n] = bytes(n)
# Inside a block not fetched, across blocks, over whole blocks, at the
# very end (the object is not a multiple of any block).
w(b"\x11" * 1000, 12345)
w(b"\x22" * 300000, 200000)
w(b"\x33" * (512 * 1024), 1024 * 1024)
w(b"\x44" * 77, len(want) - 77)
z(5000, 250000)
z(600000, 1500000, trim=True)
assert h.pread(len(want), 0) == want
h.flush()
assert h.pread(len(want), 0) == want
open("'"$BATS_TEST_TMPDIR/want"'", "wb").write(want)
'
    s3get rmw.img "$BATS_TEST_TMPDIR/got"
    [ "$(sha "$BATS_TEST_TMPDIR/got")" = "$(sha "$BATS_TEST_TMPDIR/want")" ]
    stop_server
    start_server s3 "${S3P[@]}" "${KEYS[@]}" rmw.img
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/out"
    [ "$(sha "$BATS_TEST_TMPDIR/out")" = "$(sha "$BATS_TEST_TMPDIR/want")" ]
}

@test "s3: write-whole-object=true: a FUA write is in the object when answered; a plain one when the connection closes" {
    s3_requires
    random_file "$BATS_TEST_TMPDIR/obj" 1M
    [ "$(s3curl PUT /nbdtest/fua.img "$BATS_TEST_TMPDIR/obj")" = 200 ]
    local before
    before=$(sha "$BATS_TEST_TMPDIR/obj")
    start_server s3 "${S3P[@]}" "${KEYS[@]}" fua.img write-whole-object=true
    # The object is fetched by curl(1) while the connection is open.
    nbdsh -u "$uri" -c '
import hashlib, subprocess
def object_now():
    subprocess.run(["curl", "-sf", "-o", "'"$BATS_TEST_TMPDIR/now"'",
                    "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "'"$AK:$SK"'",
                    "-H", "x-amz-content-sha256: '"$EMPTY_SHA"'",
                    "'"$RGW_URL"'/nbdtest/fua.img"], check=True)
    return open("'"$BATS_TEST_TMPDIR/now"'", "rb").read()
want = bytearray(open("'"$BATS_TEST_TMPDIR/obj"'", "rb").read())
h.pwrite(b"\xaa" * 4096, 8192)
want[8192:12288] = b"\xaa" * 4096
assert hashlib.sha256(object_now()).hexdigest() == "'"$before"'", "a write without FUA was PUT"
h.pwrite(b"\xbb" * 4096, 65536, nbd.CMD_FLAG_FUA)
want[65536:69632] = b"\xbb" * 4096
assert object_now() == want, "the FUA write (and the one before) is not in the object"
h.pwrite(b"\xcc" * 100, 100)
want[100:200] = b"\xcc" * 100
open("'"$BATS_TEST_TMPDIR/want"'", "wb").write(want)
'
    # Closed without a flush: PUT at the close.
    wait_until eval 's3get fua.img "$BATS_TEST_TMPDIR/got" && [ "$(sha "$BATS_TEST_TMPDIR/got")" = "$(sha "$BATS_TEST_TMPDIR/want")" ]'
}

@test "s3: write-whole-object=true: the backend killed after unflushed writes takes up its local copy, nothing is lost" {
    s3_requires
    random_file "$BATS_TEST_TMPDIR/obj" 2M
    [ "$(s3curl PUT /nbdtest/crash.img "$BATS_TEST_TMPDIR/obj")" = 200 ]
    start_server -v s3 "${S3P[@]}" "${KEYS[@]}" crash.img write-whole-object=true
    nbdsh -u "$uri" -c '
import os, signal, subprocess
want = bytearray(open("'"$BATS_TEST_TMPDIR/obj"'", "rb").read())
h.pwrite(b"\x5a" * 70000, 300000)
want[300000:370000] = b"\x5a" * 70000
pid = int(subprocess.run(["pgrep", "-P", os.environ["server_pid"]],
                         capture_output=True, check=True).stdout.split()[0])
os.kill(pid, signal.SIGKILL)
# Served by the restarted backend from the same local copy.
assert h.pread(len(want), 0) == want
h.flush()
open("'"$BATS_TEST_TMPDIR/want"'", "wb").write(want)
'
    wait_until grep -q "killed by signal SIGKILL" "$log"
    wait_until grep -q "took up the local copy" "$log"
    s3get crash.img "$BATS_TEST_TMPDIR/got"
    [ "$(sha "$BATS_TEST_TMPDIR/got")" = "$(sha "$BATS_TEST_TMPDIR/want")" ]
}

@test "s3: write-whole-object: writes are refused (EPERM) without it and with -r, and fail saying why without room for the copy" {
    s3_requires
    random_file "$BATS_TEST_TMPDIR/obj" 64k
    [ "$(s3curl PUT /nbdtest/ro.img "$BATS_TEST_TMPDIR/obj")" = 200 ]
    for opts in "" "-r write-whole-object=true"; do
        set -- $opts
        local r=()
        if [ "${1:-}" = -r ]; then r=(-r); shift; fi
        start_server "${r[@]}" s3 "${S3P[@]}" "${KEYS[@]}" ro.img "$@"
        nbdsh -u "$uri" -c '
import errno
assert h.is_read_only()
try:
    h.pwrite(b"x" * 512, 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
'
        stop_server
    done
    s3get ro.img "$BATS_TEST_TMPDIR/got"
    cmp "$BATS_TEST_TMPDIR/got" "$BATS_TEST_TMPDIR/obj"
    # No room for the local copy: the write fails and says why.
    TMPDIR=/nonexistent/dir start_server s3 "${S3P[@]}" "${KEYS[@]}" ro.img write-whole-object=true
    nbdsh -u "$uri" -c '
import errno
try:
    h.pwrite(b"x" * 512, 0)
    assert False, "the write succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
'
    wait_until grep -q "cannot make the local copy /nonexistent/dir/nbdkit-s3-" "$log"
    wait_until grep -q "set TMPDIR to a directory with room for the object" "$log"
}
