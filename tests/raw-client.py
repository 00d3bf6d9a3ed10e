#!/usr/bin/python3
# A deliberately rude NBD client for the hardening tests: it speaks the
# protocol byte by byte over a real unix socket so that it can send what
# libnbd never would (oversized options, bad lengths, unknown commands,
# half a request).  Usage: raw-client.py SOCKET CASE.  Exit 0 when the
# server behaved as the specification says; otherwise a message and 1.

import socket
import struct
import sys

OPTS_MAGIC = 0x49484156454F5054
REQ_MAGIC = 0x25609513
REP_ERR = 0x80000000
ERR_UNSUP, ERR_INVALID, ERR_TOO_BIG = REP_ERR | 1, REP_ERR | 3, REP_ERR | 9
NBD_EPERM, NBD_EINVAL, NBD_ENOSPC, NBD_EOVERFLOW = 1, 22, 28, 75
CMD_READ, CMD_WRITE, CMD_FLUSH = 0, 1, 3

path = sys.argv[1]


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def check(what, got, want):
    if got != want:
        fail("%s: got %r, want %r" % (what, got, want))


def recvn(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes"
                           % (len(buf), n))
        buf += chunk
    return buf


def connect(flags=3):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(path)
    greeting = recvn(s, 18)
    check("greeting", greeting[:16],
          b"NBDMAGIC" + struct.pack(">Q", OPTS_MAGIC))
    s.sendall(struct.pack(">I", flags))
    return s


def send_opt(s, opt, data=b""):
    s.sendall(struct.pack(">QII", OPTS_MAGIC, opt, len(data)) + data)


def opt_reply(s):
    _, opt, typ, length = struct.unpack(">QIII", recvn(s, 20))
    return opt, typ, recvn(s, length)


def go(s, name=b""):
    send_opt(s, 7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
    size = flags = None
    while True:
        _, typ, data = opt_reply(s)
        if typ == 3 and struct.unpack(">H", data[:2])[0] == 0:
            size, flags = struct.unpack(">QH", data[2:12])
        elif typ == 1:
            return size, flags
        elif typ & REP_ERR:
            fail("NBD_OPT_GO failed: 0x%x %r" % (typ, data))


def request(s, cmd, offset, count, flags=0, data=b"", cookie=1):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, offset,
                          count) + data)


def reply(s):
    magic, error, cookie = struct.unpack(">IIQ", recvn(s, 16))
    check("reply magic", magic, 0x67446698)
    return error, cookie


def closed(s):
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return True


def still_serving():
    """A fresh connection works end to end."""
    s = connect()
    size, _ = go(s)
    request(s, CMD_READ, 0, 512)
    check("read after the abuse", reply(s)[0], 0)
    recvn(s, 512)


def transmission():
    s = connect()
    size, flags = go(s)
    return s, size, flags


# ---- the cases ----

def case_bad_client_flags():
    s = connect(flags=0xff00)
    if not closed(s):
        fail("unknown client flags were accepted")
    still_serving()


def case_option_too_big():
    s = connect()
    # A known option too long to keep: NBD_REP_ERR_TOO_BIG.
    send_opt(s, 7, b"x" * (1 << 20))
    check("1 MiB NBD_OPT_GO", opt_reply(s)[1], ERR_TOO_BIG)
    go(s)                       # still in step with the server


def case_big_unknown_option():
    s = connect()
    # An unknown option is read and thrown away whatever its length (up
    # to a bound), and answered NBD_REP_ERR_UNSUP, as nbdkit does.
    send_opt(s, 1234, b"x" * (32 << 20))
    check("32 MiB unknown option", opt_reply(s)[1], ERR_UNSUP)
    go(s)


def case_huge_option():
    s = connect()
    # 4 GiB announced: not read; the connection ends.
    s.sendall(struct.pack(">QII", OPTS_MAGIC, 1234, 0xffffffff) +
              b"x" * 65536)
    if not closed(s):
        fail("an option of 4 GiB was read")
    still_serving()


def case_fua_on_every_command():
    s, size, flags = transmission()
    if not flags & (1 << 3):
        fail("NBD_FLAG_SEND_FUA is not set")
    # The specification: with NBD_FLAG_SEND_FUA, every command MUST be
    # accepted with FUA.
    request(s, CMD_READ, 0, 512, flags=1, cookie=1)
    check("read with FUA", reply(s), (0, 1))
    recvn(s, 512)
    request(s, CMD_FLUSH, 0, 0, flags=1, cookie=2)
    check("flush with FUA", reply(s), (0, 2))
    request(s, 5, 0, 512, flags=1, cookie=3)
    check("cache with FUA", reply(s), (0, 3))


def case_out_of_bounds_first():
    s, size, _ = transmission()
    # Too long and out of bounds: out of bounds is the first thing
    # wrong, EINVAL (as nbdkit), not EOVERFLOW.
    request(s, CMD_READ, 1, 0xffffffff)
    check("read at 1 of 0xffffffff bytes", reply(s)[0], NBD_EINVAL)


def case_unknown_option():
    s = connect()
    send_opt(s, 1234)
    check("unknown option", opt_reply(s)[1], ERR_UNSUP)
    go(s)


def case_too_many_options():
    s = connect()
    n = 0
    try:
        for _ in range(1000):
            send_opt(s, 1234)
            opt_reply(s)
            n += 1
    except (EOFError, ConnectionResetError, BrokenPipeError):
        pass
    if n >= 1000:
        fail("the server answered 1000 options")
    still_serving()


def case_bad_go_lengths():
    s = connect()
    send_opt(s, 7, struct.pack(">I", 1000) + b"ab")
    check("name length beyond the option", opt_reply(s)[1], ERR_INVALID)
    send_opt(s, 7, struct.pack(">I", 0) + struct.pack(">H", 5))
    check("info count beyond the option", opt_reply(s)[1], ERR_INVALID)
    go(s)


def case_long_export_name():
    s = connect()
    name = b"a" * 5000
    send_opt(s, 7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
    check("5000 byte export name", opt_reply(s)[1], ERR_TOO_BIG)
    go(s)


def case_bad_requests():
    s, size, _ = transmission()
    request(s, CMD_READ, size, 1)
    check("read past the end", reply(s)[0], NBD_EINVAL)
    request(s, CMD_READ, 0, 0)
    check("read of 0 bytes", reply(s)[0], NBD_EINVAL)
    request(s, CMD_READ, 0, 64 << 20)
    check("read of 64 MiB", reply(s)[0], NBD_EOVERFLOW)
    request(s, 99, 0, 1)
    check("unknown command", reply(s)[0], NBD_EINVAL)
    request(s, CMD_READ, 0, 1, flags=0x80)
    check("unknown flag", reply(s)[0], NBD_EINVAL)
    request(s, 7, 0, 512)
    check("block status without a context", reply(s)[0], NBD_EINVAL)
    request(s, CMD_READ, 2**64 - 512, 1024)
    check("offset + count overflowing", reply(s)[0], NBD_EINVAL)
    request(s, CMD_FLUSH, 5, 0)
    check("flush with an offset", reply(s)[0], NBD_EINVAL)
    request(s, CMD_WRITE, size - 1, 2, data=b"zz")
    check("write past the end", reply(s)[0], NBD_ENOSPC)
    # A refused write's payload is skipped: the stream stays in step.
    request(s, CMD_WRITE, 0, 40 << 20, data=b"z" * (40 << 20))
    check("write of 40 MiB", reply(s)[0], NBD_EOVERFLOW)
    # (Requests in flight together may be answered in any order, so
    # the read waits for the write's reply.)
    request(s, CMD_WRITE, 0, 4, data=b"abcd", cookie=5)
    check("write after the refusals", reply(s), (0, 5))
    request(s, CMD_READ, 0, 4, cookie=6)
    check("read after the refusals", reply(s), (0, 6))
    check("data", recvn(s, 4), b"abcd")


def case_read_only_write():
    s, size, flags = transmission()
    if not flags & 2:
        fail("the export is not flagged read-only")
    request(s, CMD_WRITE, 0, 4, data=b"abcd")
    check("write on a read-only export", reply(s)[0], NBD_EPERM)


def case_unread_replies_do_not_stall_others():
    # Client A pipelines thousands of reads and never reads a reply.
    a, size, _ = transmission()
    a.setblocking(False)
    burst = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, i, 0,
                                 65536) for i in range(200000))
    sent = 0
    try:
        while sent < len(burst):
            sent += a.send(burst[sent:])
    except BlockingIOError:
        pass
    if sent >= len(burst):
        fail("the server read 200000 requests without their replies being read")
    # Client B is served all the same.
    b, _, _ = transmission()
    for i in range(100):
        request(b, CMD_READ, i * 512, 512, cookie=i)
        check("B's reply", reply(b), (0, i))
        recvn(b, 512)
    a.close()
    still_serving()


def case_disconnect_mid_request():
    s, _, _ = transmission()
    s.sendall(struct.pack(">IHH", REQ_MAGIC, 0, CMD_WRITE))
    s.close()
    s, _, _ = transmission()
    request(s, CMD_WRITE, 0, 1 << 20, data=b"q" * 1000)
    s.close()
    still_serving()


def case_bad_request_magic():
    s, _, _ = transmission()
    s.sendall(b"\0" * 28)
    if not closed(s):
        fail("a request with a bad magic was accepted")
    still_serving()


def meta_query(opt, queries, name=b""):
    data = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
    for q in queries:
        data += struct.pack(">I", len(q)) + q
    return data


def meta_replies(s):
    names = []
    while True:
        _, typ, data = opt_reply(s)
        if typ == 4:
            names.append((struct.unpack(">I", data[:4])[0], data[4:]))
        elif typ == 1:
            return names
        else:
            return typ


def case_meta_context_needs_structured_replies():
    s = connect()
    send_opt(s, 10, meta_query(10, [b"base:allocation"]))
    check("SET_META_CONTEXT before STRUCTURED_REPLY", opt_reply(s)[1],
          ERR_INVALID)
    go(s)


def case_meta_contexts():
    s = connect()
    send_opt(s, 8)
    check("STRUCTURED_REPLY", opt_reply(s)[1], 1)
    send_opt(s, 9, meta_query(9, []))
    check("LIST with no query", meta_replies(s), [(1, b"base:allocation")])
    send_opt(s, 9, meta_query(9, [b"base:"]))
    check("LIST base:", meta_replies(s), [(1, b"base:allocation")])
    send_opt(s, 9, meta_query(9, [b"qemu:dirty-bitmap:x"]))
    check("LIST of an unknown namespace", meta_replies(s), [])
    send_opt(s, 10, meta_query(10, [b"base:"]))
    check("SET base: selects nothing", meta_replies(s), [])
    send_opt(s, 10, struct.pack(">II", 0, 1) + struct.pack(">I", 99) + b"x")
    check("SET with a query longer than the option", opt_reply(s)[1],
          ERR_INVALID)
    send_opt(s, 10, meta_query(10, [b"base:allocation"]))
    check("SET base:allocation", meta_replies(s), [(1, b"base:allocation")])
    size, flags = go(s)
    if not flags & (1 << 7):
        fail("NBD_FLAG_SEND_DF is not set with structured replies")
    # BLOCK_STATUS answered with one chunk of base:allocation.
    request(s, 7, 0, 4096, cookie=9)
    magic, fl, typ, cookie, length = struct.unpack(">IHHQI", recvn(s, 20))
    check("block status chunk", (magic, fl, typ, cookie),
          (0x668e33ef, 1, 5, 9))
    payload = recvn(s, length)
    check("context id", struct.unpack(">I", payload[:4])[0], 1)
    lengths = [struct.unpack(">I", payload[i:i + 4])[0]
               for i in range(4, length, 8)]
    # As nbdkit (and as clients allow), the last descriptor may go on
    # past the request; those before it lie inside it.
    if not lengths or 0 in lengths or sum(lengths[:-1]) >= 4096 or \
       sum(lengths) > size:
        fail("block status descriptors %r for 4096 bytes" % lengths)
    # An error is an NBD_REPLY_TYPE_ERROR chunk.
    request(s, CMD_READ, size, 512, cookie=10)
    magic, fl, typ, cookie, length = struct.unpack(">IHHQI", recvn(s, 20))
    check("error chunk", (magic, fl, typ, cookie), (0x668e33ef, 1, 32769, 10))
    check("error value", struct.unpack(">I", recvn(s, length)[:4])[0],
          NBD_EINVAL)


def structured_transmission(name=b""):
    s = connect()
    send_opt(s, 8)
    check("STRUCTURED_REPLY", opt_reply(s)[1], 1)
    size, flags = go(s, name)
    return s, size, flags


def chunk(s):
    """One structured reply chunk: (flags, type, cookie, payload)."""
    magic, fl, typ, cookie, length = struct.unpack(">IHHQI", recvn(s, 20))
    check("structured reply magic", magic, 0x668e33ef)
    return fl, typ, cookie, recvn(s, length)


def error_chunk(payload):
    err, mlen = struct.unpack(">IH", payload[:6])
    return err, payload[6:6 + mlen].decode(), payload[6 + mlen:]


def case_error_messages():
    s, size, _ = structured_transmission()
    request(s, CMD_READ, size, 512, cookie=1)
    fl, typ, cookie, p = chunk(s)
    check("error chunk", (fl, typ, cookie), (1, 32769, 1))
    err, msg, rest = error_chunk(p)
    check("error", err, NBD_EINVAL)
    if "end of the export" not in msg:
        fail("the message does not say why: %r" % msg)
    request(s, CMD_READ, 0, 512, flags=0x40, cookie=2)
    fl, typ, cookie, p = chunk(s)
    check("unknown flag", (typ, error_chunk(p)[0]), (32769, NBD_EINVAL))
    if not error_chunk(p)[1]:
        fail("no message for an unknown flag")


def case_backend_error_offset():
    s, size, _ = structured_transmission()
    request(s, CMD_READ, 4096, 512, cookie=3)
    fl, typ, cookie, p = chunk(s)
    check("error offset chunk", (fl, typ, cookie), (1, 32770, 3))
    err, msg, rest = error_chunk(p)
    check("error", err, 5)
    check("offset", struct.unpack(">Q", rest)[0], 4096)
    if "injected read error" not in msg:
        fail("the backend's message is not passed on: %r" % msg)


def case_hole_reads():
    s, size, _ = structured_transmission()
    request(s, CMD_WRITE, 0, 4096, data=b"d" * 4096, cookie=1)
    check("write", chunk(s)[:3], (1, 0, 1))
    request(s, CMD_READ, 1 << 20, 1 << 20, cookie=2)
    fl, typ, cookie, p = chunk(s)
    check("hole chunk", (fl, typ, cookie), (1, 2, 2))
    check("hole", struct.unpack(">QI", p), (1 << 20, 1 << 20))
    request(s, CMD_READ, 0, 1 << 20, flags=4, cookie=3)    # DF
    fl, typ, cookie, p = chunk(s)
    check("data chunk", (fl, typ, cookie), (1, 1, 3))
    check("data offset", struct.unpack(">Q", p[:8])[0], 0)
    check("data", p[8:], b"d" * 4096 + bytes((1 << 20) - 4096))


def case_df_needs_structured_replies():
    s, size, flags = transmission()
    if flags & (1 << 7):
        fail("NBD_FLAG_SEND_DF offered without structured replies")
    request(s, CMD_READ, 0, 512, flags=4)
    check("DF without structured replies", reply(s)[0], NBD_EINVAL)


def case_plain_newstyle_options():
    # A client that did not say fixed newstyle may only send EXPORT_NAME.
    s = connect(flags=0)
    send_opt(s, 1234)
    if not closed(s):
        fail("an option from a plain newstyle client was answered")
    s = connect(flags=0)
    send_opt(s, 1)
    size, eflags = struct.unpack(">QH", recvn(s, 10))
    recvn(s, 124)
    request(s, CMD_READ, 0, 512)
    check("read over plain newstyle", reply(s)[0], 0)


def case_masked_flag_refused():
    # Run with --mask-handshake=1: NO_ZEROES is not offered.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(path)
    check("offered flags", struct.unpack(">H", recvn(s, 18)[16:])[0], 1)
    s.sendall(struct.pack(">I", 3))
    if not closed(s):
        fail("a flag that was not offered was accepted")


def case_bad_utf8_name():
    s = connect()
    for name in (b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80",
                 b"\xf4\x90\x80\x80"):
        send_opt(s, 7, struct.pack(">I", len(name)) + name +
                 struct.pack(">H", 0))
        check("export name %r" % name, opt_reply(s)[1], ERR_INVALID)
    go(s)


def case_block_size_enforced():
    # The backend says minimum 512, maximum 65536.
    s = connect()
    send_opt(s, 7, struct.pack(">IH", 0, 1) + struct.pack(">H", 3))
    sizes = None
    while True:
        _, typ, data = opt_reply(s)
        if typ == 3 and struct.unpack(">H", data[:2])[0] == 3:
            sizes = struct.unpack(">III", data[2:])
        elif typ == 3 and struct.unpack(">H", data[:2])[0] == 0:
            size = struct.unpack(">Q", data[2:10])[0]
        elif typ == 1:
            break
        else:
            fail("NBD_OPT_GO failed: 0x%x" % typ)
    check("NBD_INFO_BLOCK_SIZE", sizes, (512, 4096, 65536))
    request(s, CMD_READ, 100, 512, cookie=1)
    check("unaligned offset", reply(s), (NBD_EINVAL, 1))
    request(s, CMD_READ, 512, 100, cookie=2)
    check("unaligned length", reply(s), (NBD_EINVAL, 2))
    request(s, CMD_READ, 0, 131072, cookie=3)
    check("longer than the maximum", reply(s), (NBD_EINVAL, 3))
    request(s, CMD_WRITE, 0, 131072, data=b"w" * 131072, cookie=4)
    check("write longer than the maximum", reply(s), (NBD_EINVAL, 4))
    request(s, CMD_WRITE, 1024, 512, data=b"a" * 512, cookie=5)
    check("aligned write", reply(s), (0, 5))
    request(s, CMD_READ, 1024, 512, cookie=6)
    check("aligned read", reply(s), (0, 6))
    check("data", recvn(s, 512), b"a" * 512)


def case_info_name_is_canonical():
    # The backend's default export is called "first".
    s = connect()
    send_opt(s, 6, struct.pack(">I", 0) + struct.pack(">HHH", 2, 1, 2))
    infos = {}
    while True:
        _, typ, data = opt_reply(s)
        if typ == 3:
            infos[struct.unpack(">H", data[:2])[0]] = data[2:]
        elif typ == 1:
            break
        else:
            fail("NBD_OPT_INFO failed: 0x%x" % typ)
    check("NBD_INFO_NAME", infos.get(1), b"first")
    check("NBD_INFO_DESCRIPTION", infos.get(2), b"disk first")
    go(s, b"second")


def case_list_raises_option_limit():
    # 40 exports: listing them allows asking about each one.
    s = connect()
    send_opt(s, 3)
    names = []
    while True:
        _, typ, data = opt_reply(s)
        if typ == 2:
            n = struct.unpack(">I", data[:4])[0]
            names.append(data[4:4 + n])
        elif typ == 1:
            break
        else:
            fail("NBD_OPT_LIST failed: 0x%x" % typ)
    check("exports listed", len(names), 40)
    for n in names:
        send_opt(s, 6, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
        while True:
            _, typ, _ = opt_reply(s)
            if typ == 1:
                break
            if typ & REP_ERR:
                fail("NBD_OPT_INFO %r failed: 0x%x" % (n, typ))
    go(s, names[-1])


def case_drip_does_not_stall_others():
    # Client A sends its handshake and a request one byte at a time,
    # stopping half way at every stage to let client B work in between.
    a = socket.socket(socket.AF_UNIX)
    a.settimeout(30)
    a.connect(path)
    recvn(a, 18)
    script = [struct.pack(">I", 3),
              struct.pack(">QII", OPTS_MAGIC, 7, 6) + struct.pack(">IH", 0, 0),
              None,                     # the replies to GO
              struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 77, 0, 512)]
    for part in script:
        if part is None:
            while True:
                _, typ, _ = opt_reply(a)
                if typ == 1:
                    break
            continue
        for i, byte in enumerate(part):
            a.sendall(bytes([byte]))
            if i == len(part) // 2:
                b, _, _ = transmission()
                request(b, CMD_READ, 0, 512, cookie=5)
                check("B's reply while A drips", reply(b), (0, 5))
                recvn(b, 512)
                b.close()
    check("A's reply", reply(a), (0, 77))
    recvn(a, 512)


def case_tls_required():
    # --tls=require: every option but STARTTLS and ABORT is refused.
    s = connect()
    for opt, data in ((7, struct.pack(">IH", 0, 0)), (3, b""), (8, b""),
                      (6, struct.pack(">IH", 0, 0))):
        send_opt(s, opt, data)
        _, typ, msg = opt_reply(s)
        check("option %d without TLS" % opt, typ, REP_ERR | 5)
    # NBD_OPT_EXPORT_NAME cannot be refused: the connection ends, and
    # no export data was ever sent.
    send_opt(s, 1)
    if not closed(s):
        fail("NBD_OPT_EXPORT_NAME without TLS was answered")


def case_starttls_unsupported():
    s = connect()
    send_opt(s, 5)
    check("STARTTLS without --tls", opt_reply(s)[1], ERR_UNSUP)
    go(s)


def case_starttls_then_stall():
    # Start TLS, send the first bytes of a ClientHello, then stall
    # (until killed), having said so in the file named by argv[3].
    s = connect()
    send_opt(s, 5)
    check("STARTTLS", opt_reply(s)[1], 1)
    s.sendall(b"\x16\x03\x01\x02")
    open(sys.argv[3], "w").close()
    import time
    time.sleep(600)


def case_info_keeps_meta_context():
    # SET_META_CONTEXT for "", INFO about another export, GO "": the
    # context still applies.
    s = connect()
    send_opt(s, 8)
    check("STRUCTURED_REPLY", opt_reply(s)[1], 1)
    send_opt(s, 10, meta_query(10, [b"base:allocation"]))
    check("SET base:allocation", meta_replies(s), [(1, b"base:allocation")])
    send_opt(s, 6, struct.pack(">I", 5) + b"other" + struct.pack(">H", 0))
    while opt_reply(s)[1] != 1:
        pass
    go(s)
    request(s, 7, 0, 4096, cookie=4)
    magic, fl, typ, cookie, length = struct.unpack(">IHHQI", recvn(s, 20))
    check("block status after INFO", (typ, cookie), (5, 4))
    recvn(s, length)


def case_shutdown_behind_requests():
    """Requests sent together with the end of the client's side
    (shutdown SHUT_WR): every one is still answered."""
    s, _, _ = transmission()
    for i in range(10):
        request(s, CMD_WRITE, i * 4096, 4096, data=bytes([65 + i]) * 4096,
                cookie=i)
        check("first write %d" % i, reply(s), (0, i))
    batch = b""
    for i in range(10):
        batch += struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 200 + i,
                             i * 4096, 4096)
        batch += struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 100 + i,
                             (20 + i) * 4096, 4096) + b"z" * 4096
    s.sendall(batch)
    s.shutdown(socket.SHUT_WR)
    writes = set()
    reads = {}
    while len(writes) + len(reads) < 20:
        error, cookie = reply(s)
        check("error of reply %d" % cookie, error, 0)
        if cookie >= 200:
            reads[cookie] = recvn(s, 4096)
        else:
            writes.add(cookie)
    check("write replies", writes, set(range(100, 110)))
    for i in range(10):
        check("read %d" % i, reads[200 + i], bytes([65 + i]) * 4096)
    check("closed after the replies", closed(s), True)


def case_writes_in_flight_bounded():
    """Pipelined 32 MiB writes to a server whose delay filter holds
    each for a minute: the server stops reading once 64 MiB of them
    are in its chain, instead of taking in all 40 (1.25 GiB)."""
    import threading
    import time
    s, size, _ = transmission()
    payload = b"\x5a" * (32 * 1024 * 1024)
    sent = [0]

    def sender():
        try:
            for i in range(40):
                request(s, CMD_WRITE, 0, len(payload), cookie=i)
                s.sendall(payload)
                sent[0] += 28 + len(payload)
        except OSError:
            pass

    s.settimeout(None)
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    # Until the sender has made no progress for 3 s (or sent it all).
    last, still = -1, 0
    while t.is_alive() and still < 30:
        time.sleep(0.1)
        if sent[0] == last:
            still += 1
        else:
            last, still = sent[0], 0
    mib = sent[0] / 1048576
    print("the client got %.0f MiB of writes into the socket" % mib)
    # 64 MiB in the chain, one more write read, socket buffers.
    if mib > 160:
        fail("the server read %.0f MiB of writes that it could not "
             "pass on" % mib)


def case_accept_out_of_descriptors():
    """More clients than the server has descriptors for: it logs the
    failed accept once per pause rather than spinning, and serves again
    once they leave."""
    import time
    conns = []
    for i in range(80):
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(30)
        c.connect(path)
        conns.append(c)
    time.sleep(1.5)
    for c in conns:
        c.close()
    time.sleep(0.3)
    still_serving()


cases = {name[5:]: fn for name, fn in globals().items()
         if name.startswith("case_")}
if len(sys.argv) < 3 or sys.argv[2] not in cases:
    print("usage: raw-client.py SOCKET CASE; cases:", " ".join(sorted(cases)))
    sys.exit(2)
cases[sys.argv[2]]()
print("PASS")
