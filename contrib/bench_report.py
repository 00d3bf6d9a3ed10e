# contrib/bench_report.py: the report of contrib/bench -- the rows of
# its tables, their formatting (text and markdown), the header with the
# machine's ceilings and the notes.  It measures nothing: contrib/bench
# hands it the results (backend -> peer -> row key -> value) and prints
# what it returns.  Imported by contrib/bench only (Python 3).

import os


def human_size(n):
    for unit, f in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n % f == 0:
            return f"{n // f}{unit}"
    return str(n)


def rows(cfg):
    """(key, label, better, precision, seq) for every row, in order;
    SEQ marks a throughput also shown as a fraction of the AF_UNIX
    ceiling."""
    mc = cfg.connections
    seq = [("seqwrite", "seq write"), ("seqread", "seq read")]
    conns = [("1", "1 conn"), ("mc", f"{mc} conns")]
    out = [(f"{k}_{t}", f"{what}, nbdcopy {c} (MiB/s)", "higher", 0, True)
           for k, what in seq for t, c in conns]
    out += [(f"cpu_{k}_{t}", f"server CPU per MiB {what}, {c} (us)",
             "lower", 1, False) for k, what in seq for t, c in conns]
    out += [(f"tls_{k}_1", f"TLS-PSK {what}, nbdcopy 1 conn (MiB/s)",
             "higher", 0, True) for k, what in seq]
    out += [(f"tls_cpu_{k}_1", f"server CPU per MiB TLS-PSK {what}, 1 conn"
             " (us)", "lower", 1, False) for k, what in seq]
    for tag, what in (("rr", "randread"), ("rw", "randwrite")):
        for qd in (1, 16):
            out += [
                (f"{tag}{qd}_iops", f"4K {what} QD{qd} (IOPS)", "higher", 0,
                 False),
                (f"{tag}{qd}_mean", f"4K {what} QD{qd} mean latency (us)",
                 "lower", 1, False),
                (f"{tag}{qd}_p99", f"4K {what} QD{qd} p99 latency (us)",
                 "lower", 1, False),
                (f"cpu_{tag}{qd}", f"server CPU per 4K {what} QD{qd} (us)",
                 "lower", 1, False),
            ]
    out.append(("connrate", "connect+handshake+4K read+disconnect (conn/s)",
                "higher", 0, False))
    out.append(("procs", "server processes", "-", 0, False))
    out.append(("pss_idle", "memory idle (PSS MiB)", "lower", 1, False))
    out.append(("threads_idle", "threads idle", "lower", 0, False))
    for n in cfg.idle_conns:
        out.append((f"pss_{n}", f"memory, {n} idle conns (PSS MiB)",
                    "lower", 1, False))
        out.append((f"threads_{n}", f"threads, {n} idle conns", "lower", 0,
                    False))
    return out


def fmt(v, prec):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.{prec}f}"


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        r = a / b
        return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"
    return "-"


def make_table(cfg, backend, results, peers):
    """RESULTS: peer -> row key -> value, for the peers measured on this
    backend.  Seq throughputs get the fraction of the AF_UNIX ceiling
    (cfg.ceilings) as a suffix."""
    peers = [p for p in peers if p in results]
    head = ["measurement", "better"] + peers
    others = [p for p in peers if p != "ours"]
    if "ours" in peers:
        head += [f"ours/{p}" for p in others]
    unix = (cfg.ceilings or {}).get("unix")
    body = []
    for key, label, better, prec, seq in rows(cfg):
        vals = [results.get(p, {}).get(key) for p in peers]
        if all(v is None for v in vals):
            continue
        line = [label, better] + [
            fmt(v, prec) + (f" ({100 * v / unix:.0f}%)"
                            if seq and unix and isinstance(v, float) else "")
            for v in vals]
        if "ours" in peers:
            ours = results.get("ours", {}).get(key)
            line += [ratio(ours, results.get(p, {}).get(key))
                     if better != "-" else "-" for p in others]
        body.append(line)
    return head, body


def render_text(head, body):
    w = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    out = ["  ".join(h.ljust(w[i]) if i < 2 else h.rjust(w[i])
                     for i, h in enumerate(head))]
    out.append("  ".join("-" * x for x in w))
    for r in body:
        out.append("  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i])
                             for i, c in enumerate(r)))
    return "\n".join(out)


def render_md(head, body):
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for r in body:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


def ceilings_line(c):
    if not c:
        return "ceilings: not measured (the reason is above the table)"
    w, r = c["cpus"]
    where = (f"CPU {w} to CPU {r}" if w != r else
             f"writer and reader both on CPU {w}, the only one allowed")
    return (f"ceilings: memcpy {c['memcpy']:.0f} MiB/s (one thread, 256 MiB"
            f" buffers); AF_UNIX stream {c['unix']:.0f} MiB/s (256 KiB "
            f"writes, {where}); best of {c['reps']} x {c['secs']} s.  Seq "
            "cells show (NN%) of the AF_UNIX ceiling")


def footnotes(cfg, peers):
    foot = [
        "Memory is the PSS (proportional set size, from "
        "/proc/PID/smaps_rollup) summed over the server's process tree "
        "(our front end + backend process), so pages shared between the "
        "processes count once.",
        "Ratios are ours/peer: above 1 is better for 'higher' rows, below "
        "1 is better for 'lower' rows.",
        "Reads use nbdcopy --no-extents (data is transferred even where "
        "the server reports holes); writes copy random data from tmpfs.",
        "Server CPU is the user+system time of the server's process tree "
        "(/proc/PID/stat of the server and its descendants, with the "
        "children they reaped) over one job, divided by the requests it "
        "completed (4K rows) or the MiB it copied (seq rows); resolution "
        "one clock tick per process.",
    ]
    if "ours-nopt" in peers and any(b in ("memory", "file")
                                    for b in cfg.backends):
        foot.append("ours-nopt is this server run with -D "
                    "nbdkit.passthrough=0 (memory and file only, data rows "
                    "only): the backend process does every read and write.")
    if "memory" in cfg.backends and any(p in ("ours", "ours-nopt", "nbdkit")
                                        for p in peers):
        foot.append("TLS-PSK rows: the memory server started again with "
                    "--tls=require --tls-psk=FILE (a fresh 256-bit key), "
                    "nbdcopy to nbds+unix://alice@/?socket=...&tls-psk-file"
                    "=FILE.")
    if "sh" in cfg.backends:
        foot.append("sh: one script for our sh backend and nbdkit's sh "
                    "plugin, running one dd per read from a file on tmpfs "
                    "(read-only, 4K randread QD1 only).")
    if "python" in cfg.backends:
        foot.append("python: one script for our python backend and "
                    "nbdkit's python plugin, answering pread with "
                    "os.preadv from a file on tmpfs (read-only, 4K randread"
                    " QD1 only).")
    if "qemu-nbd" in peers:
        if "memory" in cfg.backends:
            foot.append("qemu-nbd has no RAM backend: its 'memory' column "
                        "serves a raw file on /dev/shm.")
        if "null" in cfg.backends:
            foot.append("qemu-nbd's 'null' is the null-co block driver "
                        "(--image-opts driver=null-co).")
    return foot


def report(cfg, results, peers, vers, notes, elapsed):
    """The text and the markdown of the whole report.  VERS: label ->
    version line (each server, then the client)."""
    header = [
        f"machine: {os.cpu_count()} cores, Linux {os.uname().release}, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30}"
        " GiB RAM",
        ceilings_line(cfg.ceilings),
    ] + [f"{p}: {v}" for p, v in vers.items()] + [
        f"size {human_size(cfg.size)}, nbdcopy median of {cfg.reps}, random"
        f" I/O {cfg.runtime_ms / 1000:g} s per job, connection rate over "
        f"{cfg.conn_seconds:g} s; {'quick' if cfg.quick else 'full'} run "
        f"took {elapsed:.0f} s",
    ]
    text, md = ["\n".join(header)], ["\n".join("- " + h for h in header)]
    for backend in cfg.backends:
        head, body = make_table(cfg, backend, results.get(backend, {}),
                                peers)
        text.append(f"== backend: {backend} ==\n" + render_text(head, body))
        md.append(f"### Backend: {backend}\n\n" + render_md(head, body))
    allnotes = footnotes(cfg, peers) + notes
    text.append("Notes:\n" + "\n".join(f"- {n}" for n in allnotes))
    md.append("Notes:\n\n" + "\n".join(f"- {n}" for n in allnotes))
    return "\n\n".join(text), "\n\n".join(md) + "\n"
