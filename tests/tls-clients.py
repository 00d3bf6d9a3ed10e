#!/usr/bin/python3
# tests/tls-clients.py: many eager TLS clients, counting the ones that
# never get an answer.
#
#   tls-clients.py SOCKET x509 CERTDIR [options]
#
# Each client does the NBD handshake up to NBD_OPT_STARTTLS, the TLS
# handshake with Python's ssl (OpenSSL) on the socket, and sends
# NBD_OPT_GO the moment the handshake is done; with --same-write the
# handshake runs through memory BIOs instead, and the option leaves in
# the very send(2) that carries the last handshake bytes.  With
# --pipeline it also sends a READ right behind the GO, before reading
# any reply, so that the request is already in the server's buffers
# when negotiation ends.  It then waits for the GO's replies (and the
# read's) and hangs up.
#
# A client that gets no complete answer within --timeout seconds is a
# stall; a client that gets a wrong answer is an error.  Prints one
# line, "N connections, N answered, N stalled, N errors", and exits 0
# only when every connection was answered.
#
# Options:
#   --count N         connections (default 1000)
#   --parallel N      at most N at once (default 8)
#   --tls 1.2|1.3|any the protocol version to offer (default any)
#   --same-write      last handshake bytes and NBD_OPT_GO in one send
#   --pipeline        a READ right behind the GO
#   --no-client-cert  do not present client-cert.pem
#   --timeout S       per-connection limit (default 20)
#   --max-stalls N    give up after N stalls (default 5): the run has
#                     failed already, and each stall costs --timeout

import argparse
import os
import socket
import ssl
import struct
import sys
import threading

NBD_MAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
NBD_OPT_STARTTLS = 5
NBD_OPT_GO = 7
NBD_REP_ACK = 1
NBD_REP_INFO = 3
NBD_REQUEST_MAGIC = 0x25609513
NBD_SIMPLE_REPLY_MAGIC = 0x67446698
NBD_CMD_READ = 0
NBD_CMD_DISC = 2


class Stall(Exception):
    pass


class Wrong(Exception):
    pass


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            raise Stall("timed out after %d of %d bytes" % (len(buf), n))
        if not chunk:
            raise Wrong("server closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


class SocketStream:
    """A TLS session on the socket itself (ssl.SSLSocket)."""

    def __init__(self, sock, ctx):
        self.tls = ctx.wrap_socket(sock, server_hostname="localhost",
                                   do_handshake_on_connect=False)
        self.pending = b""

    def handshake(self, same_write):
        try:
            self.tls.do_handshake()
        except socket.timeout:
            raise Stall("timed out in the TLS handshake")

    def write(self, data):
        self.pending += data

    def flush(self):
        if self.pending:
            self.tls.sendall(self.pending)
        self.pending = b""

    def read(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.tls.recv(n - len(buf))
            except socket.timeout:
                raise Stall("timed out after %d of %d bytes" % (len(buf), n))
            if not chunk:
                raise Wrong("TLS EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf


class BIOStream:
    """A TLS session over a blocking socket, driven through memory
    BIOs so that we choose how its bytes are grouped into writes."""

    def __init__(self, sock, ctx):
        self.sock = sock
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=False,
                                server_hostname="localhost")

    def _feed(self):
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise Stall("timed out waiting for TLS data")
        if not data:
            self.inc.write_eof()
        else:
            self.inc.write(data)

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def handshake(self, same_write):
        """Returns with the final handshake bytes still unsent when
        same_write is set."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self._feed()
        if not same_write:
            self.flush()

    def write(self, data):
        self.obj.write(data)

    def read(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.obj.read(n - len(buf))
            except ssl.SSLWantReadError:
                self.flush()
                self._feed()
                continue
            except ssl.SSLZeroReturnError:
                raise Wrong("TLS closed after %d of %d bytes" % (len(buf), n))
            if not chunk:
                raise Wrong("TLS EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf


def make_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(args.certdir, "ca-cert.pem"))
    if not args.no_client_cert:
        ctx.load_cert_chain(os.path.join(args.certdir, "client-cert.pem"),
                            os.path.join(args.certdir, "client-key.pem"))
    if args.tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif args.tls == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def one_connection(args, ctx):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(args.timeout)
    try:
        sock.connect(args.socket)
        greeting = recv_exact(sock, 18)
        if greeting[:8] != NBD_MAGIC:
            raise Wrong("bad greeting")
        sock.sendall(struct.pack(">I", 3))          # FIXED_NEWSTYLE|NO_ZEROES
        sock.sendall(struct.pack(">QII", IHAVEOPT, NBD_OPT_STARTTLS, 0))
        magic, opt, rep, length = struct.unpack(">QIII", recv_exact(sock, 20))
        if magic != REPLY_MAGIC or opt != NBD_OPT_STARTTLS or rep != NBD_REP_ACK:
            raise Wrong("STARTTLS refused: reply %#x" % rep)
        recv_exact(sock, length)

        tls = (BIOStream if args.same_write else SocketStream)(sock, ctx)
        tls.handshake(args.same_write)
        go = struct.pack(">QII", IHAVEOPT, NBD_OPT_GO, 6) + \
            struct.pack(">IH", 0, 0)
        tls.write(go)
        if args.pipeline:
            tls.write(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0,
                                  NBD_CMD_READ, 0x1234, 0, 4096))
        tls.flush()

        size = None
        while True:
            magic, opt, rep, length = struct.unpack(">QIII", tls.read(20))
            data = tls.read(length)
            if magic != REPLY_MAGIC or opt != NBD_OPT_GO:
                raise Wrong("bad option reply")
            if rep == NBD_REP_INFO and length >= 12 and data[:2] == b"\0\0":
                size = struct.unpack(">Q", data[2:10])[0]
            elif rep == NBD_REP_ACK:
                break
            elif rep & 0x80000000:
                raise Wrong("NBD_OPT_GO failed: %#x %r" % (rep, data))
        if size is None:
            raise Wrong("no NBD_INFO_EXPORT before the ACK")
        if args.pipeline:
            magic, err, handle = struct.unpack(">IIQ", tls.read(16))
            if magic != NBD_SIMPLE_REPLY_MAGIC or err or handle != 0x1234:
                raise Wrong("bad read reply: magic %#x error %d" % (magic, err))
            tls.read(4096)
        tls.write(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, NBD_CMD_DISC,
                              0, 0, 0))
        tls.flush()
        return "answered"
    except Stall as e:
        return "stalled: %s" % e
    except (Wrong, OSError, ssl.SSLError) as e:
        return "error: %s" % e
    finally:
        sock.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("socket")
    p.add_argument("mode", choices=["x509"])
    p.add_argument("certdir")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--tls", choices=["1.2", "1.3", "any"], default="any")
    p.add_argument("--same-write", action="store_true")
    p.add_argument("--pipeline", action="store_true")
    p.add_argument("--no-client-cert", action="store_true")
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--max-stalls", type=int, default=5)
    args = p.parse_args()
    ctx = make_context(args)

    lock = threading.Lock()
    counts = {"answered": 0, "stalled": 0, "errors": 0}
    todo = iter(range(args.count))

    def worker():
        while True:
            with lock:
                i = next(todo, None)
                if counts["stalled"] >= args.max_stalls:
                    i = None
            if i is None:
                return
            r = one_connection(args, ctx)
            with lock:
                if r == "answered":
                    counts["answered"] += 1
                else:
                    key = "stalled" if r.startswith("stalled") else "errors"
                    counts[key] += 1
                    if counts[key] <= 5:
                        print("connection %d %s" % (i, r), file=sys.stderr)

    threads = [threading.Thread(target=worker)
               for _ in range(max(1, args.parallel))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("%d connections, %d answered, %d stalled, %d errors" %
          (args.count, counts["answered"], counts["stalled"],
           counts["errors"]))
    sys.exit(0 if counts["answered"] == args.count else 1)


if __name__ == "__main__":
    main()
