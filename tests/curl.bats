# The curl backend (issue 19) against real servers on the loopback,
# started and stopped here: nginx, run as the test user with a private
# configuration on random free ports of 127.0.0.1 (HTTP, HTTPS with a
# certificate made by certtool, a Unix socket, a forward proxy), once
# for the whole file; per test, a small Python server that takes PUT
# with Content-Range, and pyftpdlib for FTP.  Where Debian's nbdkit and
# its curl plugin are installed, some results are compared with theirs.
# A server that cannot start makes the tests that need it skip, saying
# why.

bats_require_minimum_version 1.5.0

load helpers

BACKEND=$top_builddir/backends/curl/nbdkit-curl-backend
REF=/usr/bin/nbdkit

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Is process $1 there (a zombie is not)?
alive() {
    [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---- nginx, once per file ----

write_nginx_conf() {
    local d=$1 www=$1/www user_line=
    [ "$(id -u)" -eq 0 ] && user_line="user $(id -un) $(id -gn);"
    cat > "$d/nginx.conf" <<EOF
$user_line
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 512; }
http {
    log_format t '\$connection \$request_method \$uri \$status "\$http_user_agent" "\$http_range"';
    access_log $d/access.log t;
    client_body_temp_path $d/tmp-body;
    proxy_temp_path $d/tmp-proxy;
    fastcgi_temp_path $d/tmp-fastcgi;
    uwsgi_temp_path $d/tmp-uwsgi;
    scgi_temp_path $d/tmp-scgi;
    default_type application/octet-stream;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$HTTP_PORT;
        listen 127.0.0.1:$HTTPS_PORT ssl;
        listen unix:$d/http.sock;
        ssl_certificate $d/pki/server-cert.pem;
        ssl_certificate_key $d/pki/server-key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $www;
        location /norange/ { max_ranges 0; alias $www/; }
        location = /redirect.img { return 302 /disk.img; }
        location = /to-https.img { return 302 https://127.0.0.1:$HTTPS_PORT/disk.img; }
        location /auth/ {
            auth_basic "test"; auth_basic_user_file $d/htpasswd; alias $www/;
        }
        location /cookie/ {
            if (\$cookie_session != "s3cret") { return 403; }
            alias $www/;
        }
        location /header/ {
            if (\$http_x_token != "t0ken") { return 403; }
            alias $www/;
        }
        location /nohead/ {
            if (\$request_method = HEAD) { return 405; }
            alias $www/;
        }
        location /slow/ { limit_rate 4m; alias $www/; }
        location /crawl/ { limit_rate 1k; alias $www/; }
        location /dav/ { dav_methods PUT; alias $d/dav/; }
        location /fail/ { return 503; }
        location /setcookie/ {
            add_header Set-Cookie "jar=filled; Path=/";
            alias $www/;
        }
        location /needjar/ {
            if (\$cookie_jar != "filled") { return 403; }
            alias $www/;
        }
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location / {
            if (\$http_proxy_authorization != "Basic Ym9iOmJ1aWxkZXI=") {
                return 407;
            }
            proxy_pass http://127.0.0.1:$HTTP_PORT;
        }
    }
}
EOF
}

start_nginx() {
    local d=$BATS_FILE_TMPDIR/nginx
    rm -f "$d/nginx.pid"
    nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" -g 'daemon off;' \
        </dev/null >/dev/null 2>>"$d/stderr" 3>&- &
    echo $! > "$d/master.pid"
    wait_until eval 'port_open $HTTP_PORT && port_open $HTTPS_PORT &&
                     port_open $PROXY_PORT'
}

stop_nginx() {
    local d=$BATS_FILE_TMPDIR/nginx pid
    pid=$(cat "$d/master.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait_until eval '! alive $pid'
}

setup_file() {
    local d=$BATS_FILE_TMPDIR/nginx
    export SKIP_REASON=$BATS_FILE_TMPDIR/skip
    export WWW=$d/www
    mkdir -p "$d/www" "$d/dav"
    if [ ! -x "$BACKEND" ]; then
        echo "the curl backend was not built (configure did not find libcurl: install libcurl4-gnutls-dev)" > "$SKIP_REASON"
        return 0
    fi
    if ! command -v nginx >/dev/null; then
        echo "nginx is not installed (apt-get install nginx)" > "$SKIP_REASON"
        return 0
    fi
    if ! command -v certtool >/dev/null; then
        echo "certtool is not installed (apt-get install gnutls-bin)" > "$SKIP_REASON"
        return 0
    fi
    make_tls_files "$d"
    head -c 100M /dev/urandom > "$d/www/disk.img"
    head -c 16M /dev/urandom > "$d/www/mid.img"
    printf 'alice:{PLAIN}wonderland\n' > "$d/htpasswd"
    export HTTP_PORT HTTPS_PORT PROXY_PORT
    HTTP_PORT=$(free_port)
    HTTPS_PORT=$(free_port)
    PROXY_PORT=$(free_port)
    write_nginx_conf "$d"
    if ! start_nginx; then
        {
            echo "nginx did not start on 127.0.0.1:$HTTP_PORT, $HTTPS_PORT, $PROXY_PORT:"
            tail -n 5 "$d/error.log" "$d/stderr" 2>/dev/null | tr '\n' ' '
        } > "$SKIP_REASON"
        stop_nginx
        return 0
    fi
    export HTTP=http://127.0.0.1:$HTTP_PORT HTTPS=https://127.0.0.1:$HTTPS_PORT
    export NGINX_DIR=$d CA=$d/pki/ca-cert.pem
    # A small server that takes PUT with Content-Range (nginx does not).
    cat > "$BATS_FILE_TMPDIR/put-server.py" <<'EOF'
import http.server, os, re, sys
path = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def head(self, code, length, extra=()):
        self.send_response(code)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
    def do_HEAD(self):
        self.head(200, os.path.getsize(path))
    def do_GET(self):
        m = re.match(r"bytes=(\d+)-(\d+)$", self.headers.get("Range", ""))
        a, b = int(m.group(1)), int(m.group(2))
        with open(path, "rb") as f:
            f.seek(a)
            data = f.read(b - a + 1)
        self.head(206, len(data), [("Content-Range", "bytes %d-%d/%d" % (a, b, os.path.getsize(path)))])
        self.wfile.write(data)
    def do_PUT(self):
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)$", self.headers.get("Content-Range", ""))
        n = int(self.headers["Content-Length"])
        data = self.rfile.read(n)
        if not m or int(m.group(2)) - int(m.group(1)) + 1 != n:
            self.head(400, 0)
            return
        with open(path, "r+b") as f:
            f.seek(int(m.group(1)))
            f.write(data)
        with open(path + ".log", "a") as f:
            f.write(self.headers["Content-Range"] + "\n")
        self.head(204, 0)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
}

teardown_file() {
    stop_nginx
}

extra_pids=
teardown() {
    stop_server
    local p
    for p in $extra_pids; do
        kill "$p" 2>/dev/null || true
    done
}

curl_requires() {
    if [ -s "$SKIP_REASON" ]; then
        skip "$(cat "$SKIP_REASON")"
    fi
    requires nbdinfo nbdsh "$@"
}

# The curl plugin of Debian's nbdkit, to compare with.
requires_reference() {
    [ -x "$REF" ] && "$REF" curl --dump-plugin >/dev/null 2>&1 ||
        skip "no reference nbdkit with a curl plugin at $REF"
}

# ---- the command line ----

@test "--dump-plugin: libcurl's version, TLS library and protocols" {
    curl_requires
    run "$NBDKIT" curl --dump-plugin
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx 'name=curl'
    echo "$output" | grep -qx 'magic_config_key=url'
    echo "$output" | grep -qx 'thread_model=parallel'
    echo "$output" | grep -qE '^curl_version=[0-9]+\.[0-9]+'
    echo "$output" | grep -q '^curl_ssl_version=.'
    echo "$output" | grep -q '^curl_libz_version='
    echo "$output" | grep -qx 'curl_protocol_http=yes'
    echo "$output" | grep -qx 'curl_protocol_https=yes'
    echo "$output" | grep -qx 'curl_protocol_file=yes'
    [ "$(echo "$output" | grep -c '^curl_protocol_')" -ge 4 ]
    requires_reference
    ref=$("$REF" curl --dump-plugin)
    [ "$(echo "$ref" | grep '^magic_config_key=')" = "magic_config_key=url" ]
}

@test "--help describes every parameter of nbdkit's curl plugin" {
    curl_requires
    run "$NBDKIT" curl --help
    [ "$status" -eq 0 ]
    for k in url cainfo capath connections cookie cookiefile cookiejar \
             cookie-script cookie-script-renew followlocation header \
             header-script header-script-renew http-version password \
             protocols proxy proxy-password proxy-user sslverify \
             ssl-cipher-list ssl-version tcp-keepalive tcp-nodelay timeout \
             tls13-ciphers unix-socket-path user user-agent; do
        echo "$output" | grep -qE "^(\[)?$k(\])?=" || { echo "no $k=" >&2; false; }
    done
    requires_reference
    for k in $("$REF" curl --help 2>&1 | sed -n 's/^ *\([a-z0-9-]*\)=.*/\1/p' | sort -u); do
        echo "$output" | grep -qE "^(\[)?$k(\])?=" || { echo "reference has $k=" >&2; false; }
    done
}

@test "every parameter is checked: a wrong value stops the server, named in the message" {
    curl_requires
    check() {   # check 'PATTERN' PARAMS...
        local pat=$1; shift
        run "$NBDKIT" -r -U - curl "$@" --run true
        [ "$status" -eq 1 ] || { echo "exit $status for $*" >&2; return 1; }
        echo "$output" | grep -qF -- "$pat" ||
            { echo "no '$pat' in: $output" >&2; return 1; }
    }
    check 'the URL to serve is required'
    check 'url=: the value must not be empty' url=
    check 'url=http://[::1: not a URL' 'http://[::1'
    check "libcurl does not support the protocol 'gopherz'" gopherz://x/y
    check 'connections=0: out of range' "$HTTP/disk.img" connections=0
    check 'connections=many' "$HTTP/disk.img" connections=many
    check 'followlocation=maybe' "$HTTP/disk.img" followlocation=maybe
    check 'sslverify=nope' "$HTTP/disk.img" sslverify=nope
    check 'tcp-nodelay=2' "$HTTP/disk.img" tcp-nodelay=2
    check 'timeout=-1' "$HTTP/disk.img" timeout=-1
    check 'cookie-script-renew=soon' "$HTTP/disk.img" cookie-script=true cookie-script-renew=soon
    check 'header-script-renew=10: there is no header-script=' "$HTTP/disk.img" header-script-renew=10
    check 'header=NoColon: not an HTTP header' "$HTTP/disk.img" header=NoColon
    check "header=Bad Name: x: 'Bad Name' is not a valid header name" "$HTTP/disk.img" "header=Bad Name: x"
    check 'header= and header-script= cannot be used together' "$HTTP/disk.img" header='A: b' header-script=true
    check 'cookie= and cookie-script= cannot be used together' "$HTTP/disk.img" cookie=a=b cookie-script=true
    check "protocols=http,gopherz: unknown protocol 'gopherz'" "$HTTP/disk.img" protocols=http,gopherz
    check "url=$HTTP/disk.img: the protocol 'http' is not one of protocols=https" "$HTTP/disk.img" protocols=https
    check 'ssl-version=tlsv9: unknown value (use one of: default, tlsv1' "$HTTP/disk.img" ssl-version=tlsv9
    check 'http-version=7: unknown value' "$HTTP/disk.img" http-version=7
    check 'cainfo=/nonexistent/ca.pem: No such file or directory' "$HTTP/disk.img" cainfo=/nonexistent/ca.pem
    check 'capath=/etc/passwd: not a directory' "$HTTP/disk.img" capath=/etc/passwd
    check 'cookiefile=-' "$HTTP/disk.img" cookiefile=-
    check 'password=+/nonexistent/pw: /nonexistent/pw: No such file or directory' "$HTTP/disk.img" password=+/nonexistent/pw
    check 'password=-x: not a file descriptor number' "$HTTP/disk.img" password=-x
    check 'password=-1: descriptors 0, 1 and 2' "$HTTP/disk.img" password=-1
    check 'password=-9: the server did not inherit a file descriptor 9' "$HTTP/disk.img" password=-9
    check 'user-agent=' "$HTTP/disk.img" "user-agent=a
b"
    check "unknown parameter 'bogus'" "$HTTP/disk.img" bogus=1
}

@test "the nbdkit(1) example verbatim, with the URL changed: nbdkit -r curl http://127.0.0.1:PORT/disk.img" {
    curl_requires
    port_open 10809 && skip "port 10809 is in use on this machine"
    "$NBDKIT" -r curl "$HTTP/disk.img" 3>&-
    pid=$(pgrep -n -f -x "$NBDKIT -r curl $HTTP/disk.img")
    [ -n "$pid" ]
    extra_pids=$pid
    run nbdinfo --size nbd://127.0.0.1:10809
    kill "$pid"
    wait_until eval '! alive $pid'
    [ "$status" -eq 0 ]
    [ "$output" = 104857600 ]
}

# ---- reading ----

@test "nbdcopy of 100 MiB over HTTP, with connections=1 and connections=4, has the right checksum" {
    curl_requires nbdcopy
    want=$(sha "$WWW/disk.img")
    for c in 1 4; do
        start_server -r curl "$HTTP/disk.img" connections=$c
        [ "$(nbdinfo --size "$uri")" = 104857600 ]
        nbdcopy --connections=4 "$uri" "$BATS_TEST_TMPDIR/copy.img"
        [ "$(sha "$BATS_TEST_TMPDIR/copy.img")" = "$want" ]
        stop_server
        rm -f "$BATS_TEST_TMPDIR/copy.img"
    done
    requires_reference
    "$REF" -r -U - curl "$HTTP/disk.img" --run 'nbdcopy "$uri" "$BATS_TEST_TMPDIR/ref.img"'
    [ "$(sha "$BATS_TEST_TMPDIR/ref.img")" = "$want" ]
}

@test "connections=N: at most N connections to the web server, read-only exports are multi-conn" {
    curl_requires nbdcopy
    for c in 1 3; do
        start_server -r curl "$HTTP/disk.img" connections=$c user-agent="pool-$c-$$"
        nbd_py 'assert h.can_multi_conn(); assert h.is_read_only()'
        nbdcopy --connections=4 --requests=16 "$uri" null:
        stop_server
        n=$(grep "\"pool-$c-$$\"" "$NGINX_DIR/access.log" | awk '{print $1}' | sort -u | wc -l)
        echo "connections=$c: $n connections" >&2
        [ "$n" -ge 1 ] && [ "$n" -le "$c" ]
    done
}

@test "qemu-img info and compare through the backend" {
    curl_requires qemu-img
    start_server -r curl "$HTTP/disk.img"
    run qemu-img info --output=json "$uri"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q '"virtual-size": 104857600'
    echo "$output" | grep -q '"format": "raw"'
    run qemu-img compare -f raw -F raw "$uri" "$WWW/disk.img"
    [ "$status" -eq 0 ]
    echo "$output" | grep -q 'Images are identical'
}

@test "HTTPS: checked with cainfo=, refused without it, and sslverify=false" {
    curl_requires nbdcopy
    start_server -r curl "$HTTPS/mid.img" cainfo="$CA"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/copy.img"
    cmp "$BATS_TEST_TMPDIR/copy.img" "$WWW/mid.img"
    stop_server
    start_server -r curl "$HTTPS/mid.img"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "$HTTPS/mid.img: HEAD request for the size: .*certificate" "$log"
    stop_server
    start_server -r curl "https://localhost:$HTTPS_PORT/mid.img" sslverify=false \
        ssl-version=tlsv1.2 ssl-cipher-list=NORMAL http-version=1.1 \
        tcp-keepalive=true tcp-nodelay=false
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
}

@test "a server that does not do byte ranges is refused at open with a clear message, as nbdkit does" {
    curl_requires
    start_server -r curl "$HTTP/norange/mid.img"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "norange/mid.img: the server does not support byte range requests" "$log"
    requires_reference
    run "$REF" -r -U - curl "$HTTP/norange/mid.img" --run 'nbdinfo --size "$uri"'
    [ "$status" -ne 0 ]
    echo "$output" | grep -q "does not support 'range'"
}

@test "a redirect is followed; followlocation=false refuses it, naming where it leads" {
    curl_requires
    start_server -r curl "$HTTP/redirect.img"
    [ "$(nbdinfo --size "$uri")" = 104857600 ]
    nbd_py "assert h.pread(4096, 12345) == open('$WWW/disk.img','rb').read(12345 + 4096)[12345:]"
    stop_server
    start_server -r curl "$HTTP/redirect.img" followlocation=false
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "redirect.img: HEAD request for the size: the server redirects (HTTP 302) to $HTTP/disk.img" "$log"
}

@test "protocols= limits the protocols, those of redirects too" {
    curl_requires
    start_server -r curl "$HTTP/to-https.img" protocols=http,https cainfo="$CA"
    [ "$(nbdinfo --size "$uri")" = 104857600 ]
    stop_server
    start_server -r curl "$HTTP/to-https.img" protocols=http cainfo="$CA"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "to-https.img: HEAD request for the size: .*https" "$log"
}

@test "a server that refuses HEAD: the size comes from a GET stopped at the headers" {
    curl_requires
    start_server -r -v curl "$HTTP/nohead/mid.img"
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    nbd_py "assert h.pread(65536, 1 << 20) == open('$WWW/mid.img','rb').read((1 << 20) + 65536)[1 << 20:]"
    wait_until grep -q 'asking for the size with GET' "$log"
}

@test "404 at open: a clear error naming the URL, and the client is told there is no such export" {
    curl_requires
    start_server -r curl "$HTTP/missing.img"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    echo "$output" | grep -qi 'no export\|No such file'
    wait_until grep -q "error: $HTTP/missing.img: HEAD request for the size: HTTP 404 Not Found" "$log"
    # The server stays up for the next client.
    kill -0 "$server_pid"
}

@test "416 is EINVAL and a short range EIO, when the file shrinks under a connection" {
    curl_requires
    cp "$WWW/mid.img" "$WWW/shrink.img"
    start_server -r curl "$HTTP/shrink.img"
    nbd_py "
truncate = lambda: os.truncate('$WWW/shrink.img', 1 << 20)
assert h.get_size() == 16 << 20
truncate()
try:
    h.pread(4096, 8 << 20)
    assert False
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e
try:
    h.pread(8192, (1 << 20) - 4096)
    assert False
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
assert h.pread(4096, 0) == open('$WWW/mid.img','rb').read(4096)
"
    wait_until grep -q "shrink.img: GET of bytes 8388608-8392703: HTTP 416" "$log"
    wait_until grep -q "shrink.img: GET of bytes 1044480-1052671: the server sent 4096 of the 8192 bytes" "$log"
    rm -f "$WWW/shrink.img"
}

@test "5xx is EIO after the retries; -D curl.retries=N sets how many" {
    curl_requires
    start_server -r -v -D curl.retries=1 curl "$HTTP/fail/x.img"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "fail/x.img: HEAD request for the size: HTTP 503 Service Unavailable; trying again in 1 s (1 of 1)" "$log"
    wait_until grep -q "error: $HTTP/fail/x.img: HEAD request for the size: HTTP 503 Service Unavailable" "$log"
}

@test "the web server goes away in the middle of a copy and comes back: the reads are tried again" {
    curl_requires nbdcopy
    start_server -r -v curl "$HTTP/slow/mid.img" connections=1
    nbdcopy --connections=1 --requests=1 "$uri" "$BATS_TEST_TMPDIR/copy.img" 3>&- &
    copier=$!
    extra_pids=$copier
    wait_until eval '[ "$(grep -c "GET /slow/mid.img 206" "$NGINX_DIR/access.log")" -ge 3 ]'
    stop_nginx
    sleep 2
    start_nginx
    wait "$copier"
    cmp "$BATS_TEST_TMPDIR/copy.img" "$WWW/mid.img"
    wait_until grep -q "slow/mid.img: GET of bytes .*; trying again in" "$log"
}

@test "timeout= ends a request that takes too long, with EIO" {
    curl_requires
    start_server -r -D curl.retries=0 curl "$HTTP/crawl/mid.img" timeout=1
    nbd_py "
try:
    h.pread(1 << 20, 0)
    assert False
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
"
    wait_until grep -q "crawl/mid.img: GET of bytes 0-1048575: Timeout was reached" "$log"
}

# ---- authentication, cookies, headers ----

@test "basic authentication: user= with password=, +FILE and -FD; a wrong one is EPERM" {
    curl_requires
    start_server -r curl "$HTTP/auth/mid.img" user=alice password=wonderland
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    stop_server
    printf 'wonderland\n' > "$BATS_TEST_TMPDIR/pw"
    start_server -r curl "$HTTP/auth/mid.img" user=alice password=+"$BATS_TEST_TMPDIR/pw"
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    stop_server
    run "$NBDKIT" -r -U - curl "$HTTP/auth/mid.img" user=alice password=-4 \
        --run 'nbdinfo --size "$uri"' 4<"$BATS_TEST_TMPDIR/pw"
    [ "$status" -eq 0 ]
    [ "$output" = 16777216 ]
    start_server -r curl "$HTTP/auth/mid.img" user=alice password=rabbit
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    echo "$output" | grep -qi 'policy\|permitted'
    wait_until grep -q "auth/mid.img: HEAD request for the size: HTTP 401 Unauthorized (check user= and password=)" "$log"
    stop_server
    not grep -q rabbit "$log"
}

@test "password=- asks on the terminal, and a restarted backend does not ask again" {
    curl_requires
    sock=$BATS_TEST_TMPDIR/sock
    log=$BATS_TEST_TMPDIR/server.log
    run /usr/bin/python3 - "$NBDKIT" "$sock" "$HTTP/auth/mid.img" <<'EOF'
import os, select, signal, subprocess, sys, time
nbdkit, sock, url = sys.argv[1:]
pid, fd = os.forkpty()
if pid == 0:
    os.execv(nbdkit, [nbdkit, "-f", "-U", sock, "curl", url, "user=alice",
                      "password=-"])
out = b""
end = time.time() + 30
while b"password: " not in out and time.time() < end:
    if select.select([fd], [], [], 1)[0]:
        out += os.read(fd, 1024)
assert out.endswith(b"password: "), out
os.write(fd, b"wonderland\n")
uri = "nbd+unix:///?socket=" + sock
def size():
    for i in range(100):
        r = subprocess.run(["nbdinfo", "--size", uri], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.strip()
        time.sleep(0.1)
    return r.stderr
try:
    print("first", size())
    backend = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                             text=True).stdout.split()[0]
    os.kill(int(backend), signal.SIGKILL)
    time.sleep(1)
    print("after restart", size())
    if select.select([fd], [], [], 0.5)[0]:
        rest = os.read(fd, 4096)
        assert b"password:" not in rest, rest
finally:
    os.kill(pid, signal.SIGTERM)
    os.waitpid(pid, 0)
EOF
    echo "$output"
    [ "$status" -eq 0 ]
    echo "$output" | grep -qx 'first 16777216'
    echo "$output" | grep -qx 'after restart 16777216'
}

@test "a cookie and a header that the server requires: cookie=, cookie=+FILE, header=" {
    curl_requires
    start_server -r curl "$HTTP/cookie/mid.img"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "cookie/mid.img: HEAD request for the size: HTTP 403 Forbidden" "$log"
    stop_server
    start_server -r curl "$HTTP/cookie/mid.img" cookie='session=s3cret; other=1'
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    stop_server
    echo 'session=s3cret' > "$BATS_TEST_TMPDIR/cookie"
    start_server -r curl "$HTTP/cookie/mid.img" cookie=+"$BATS_TEST_TMPDIR/cookie"
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    stop_server
    start_server -r curl "$HTTP/header/mid.img" header='X-Other: 1' header='X-Token: t0ken' \
        user-agent=my-agent/1.0
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    nbd_py "assert h.pread(512, 0) == open('$WWW/mid.img','rb').read(512)"
    grep -q '^[0-9]* GET /header/mid.img 206 "my-agent/1.0" "bytes=0-511"' "$NGINX_DIR/access.log"
    stop_server
    start_server -r curl "$HTTP/header/mid.img" header='X-Token: wrong'
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
}

@test "cookie-script and header-script, with \$url and \$iteration, run again after *-script-renew" {
    curl_requires
    calls=$BATS_TEST_TMPDIR/calls
    start_server -r curl "$HTTP/cookie/mid.img" \
        cookie-script="echo \"cookie \$iteration \$url\" >> $calls; echo session=s3cret"
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    nbd_py "assert h.pread(512, 0) == open('$WWW/mid.img','rb').read(512)"
    [ "$(cat "$calls")" = "cookie 0 $HTTP/cookie/mid.img" ]
    stop_server
    : > "$calls"
    start_server -r curl "$HTTP/header/mid.img" header-script-renew=1 \
        header-script="echo \"header \$iteration\" >> $calls; printf 'X-Token: t0ken\nX-Another: yes\n'"
    nbd_py "
import time
assert h.pread(512, 0) == open('$WWW/mid.img','rb').read(512)
time.sleep(2.1)
assert h.pread(512, 4096) == open('$WWW/mid.img','rb').read(4608)[4096:]
"
    grep -qx 'header 0' "$calls"
    grep -qx 'header 1' "$calls"
    stop_server
    start_server -r curl "$HTTP/header/mid.img" \
        header-script='echo "no token for you" >&2; exit 1'
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "error: header-script failed: no token for you" "$log"
}

@test "cookiejar= saves the cookies the server set, cookiefile= sends them back" {
    curl_requires
    jar=$BATS_TEST_TMPDIR/jar
    start_server -r curl "$HTTP/setcookie/mid.img" cookiejar="$jar"
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    stop_server
    grep -q 'jar.*filled' "$jar"
    start_server -r curl "$HTTP/needjar/mid.img"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    stop_server
    start_server -r curl "$HTTP/needjar/mid.img" cookiefile="$jar"
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    nbd_py "assert h.pread(512, 512) == open('$WWW/mid.img','rb').read(1024)[512:]"
}

# ---- other ways to the server ----

@test "proxy= with proxy-user= and proxy-password=" {
    curl_requires
    echo builder > "$BATS_TEST_TMPDIR/ppw"
    start_server -r curl "$HTTP/mid.img" proxy="http://127.0.0.1:$PROXY_PORT" \
        proxy-user=bob proxy-password=+"$BATS_TEST_TMPDIR/ppw"
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    nbd_py "assert h.pread(65536, 65536) == open('$WWW/mid.img','rb').read(131072)[65536:]"
    stop_server
    start_server -r curl "$HTTP/mid.img" proxy="http://127.0.0.1:$PROXY_PORT"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "mid.img: HEAD request for the size: .*407" "$log"
}

@test "unix-socket-path=: HTTP over a Unix socket" {
    curl_requires
    start_server -r curl http://localhost/mid.img unix-socket-path="$NGINX_DIR/http.sock"
    [ "$(nbdinfo --size "$uri")" = 16777216 ]
    nbd_py "assert h.pread(4096, 0) == open('$WWW/mid.img','rb').read(4096)"
}

@test "file:// and ftp:// URLs are read (and served read-only: a PUT would replace the file)" {
    curl_requires nbdcopy
    start_server curl "file://$WWW/mid.img"
    nbd_py 'assert h.is_read_only()'
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/copy.img"
    cmp "$BATS_TEST_TMPDIR/copy.img" "$WWW/mid.img"
    stop_server
    start_server -r curl "file://$WWW/none.img"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "none.img: request for the size: " "$log"
    /usr/bin/python3 -c 'import pyftpdlib' 2>/dev/null ||
        skip "pyftpdlib is not installed (apt-get install python3-pyftpdlib)"
    stop_server
    port=$(free_port)
    /usr/bin/python3 -m pyftpdlib -i 127.0.0.1 -p "$port" -d "$WWW" \
        >"$BATS_TEST_TMPDIR/ftp.log" 2>&1 3>&- &
    extra_pids=$!
    wait_until port_open "$port" || skip "the FTP server did not start: $(cat "$BATS_TEST_TMPDIR/ftp.log")"
    start_server -r curl "ftp://127.0.0.1:$port/mid.img"
    nbdcopy "$uri" "$BATS_TEST_TMPDIR/ftp.img"
    cmp "$BATS_TEST_TMPDIR/ftp.img" "$WWW/mid.img"
    stop_server
    start_server -r curl "ftp://127.0.0.1:$port/none.img"
    run nbdinfo --size "$uri"
    [ "$status" -ne 0 ]
    wait_until grep -q "none.img: request for the size: Remote file not found" "$log"
}

# ---- writing ----

@test "writes are PUT requests with Content-Range; nginx, which refuses them, gives EPERM" {
    curl_requires
    head -c 4M /dev/urandom > "$BATS_TEST_TMPDIR/put.img"
    port=$(free_port)
    /usr/bin/python3 "$BATS_FILE_TMPDIR/put-server.py" "$port" "$BATS_TEST_TMPDIR/put.img" 3>&- &
    extra_pids=$!
    wait_until port_open "$port" || skip "the Python PUT server did not start on port $port"
    start_server curl "http://127.0.0.1:$port/put.img"
    nbd_py "
assert not h.is_read_only()
assert not h.can_multi_conn()
d = os.urandom(3 * 65536)
h.pwrite(d, 100000)
assert h.pread(len(d), 100000) == d
"
    grep -qx 'bytes 100000-296607/4194304' "$BATS_TEST_TMPDIR/put.img.log"
    stop_server
    cp "$WWW/mid.img" "$NGINX_DIR/dav/put.img"
    start_server curl "$HTTP/dav/put.img"
    nbd_py "
try:
    h.pwrite(b'x' * 512, 0)
    assert False
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
"
    wait_until grep -q "dav/put.img: PUT of bytes 0-511: HTTP 501 Not Implemented (the server does not take PUT: serve it with -r)" "$log"
    cmp "$NGINX_DIR/dav/put.img" "$WWW/mid.img"
}
