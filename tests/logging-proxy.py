#!/usr/bin/python3
# A proxy for the TLS tests: listens on a unix socket, forwards each
# connection to another unix socket, and appends every byte it carries,
# both ways, to a log file, so that a test can check what an observer
# on the wire would see.  Usage: logging-proxy.py LISTEN TARGET LOGFILE
# Standard library only; runs until killed.

import os
import selectors
import socket
import sys

listen_path, target_path, log_path = sys.argv[1:4]
log = open(log_path, "ab", buffering=0)
sel = selectors.DefaultSelector()
peers = {}

srv = socket.socket(socket.AF_UNIX)
srv.bind(listen_path)
srv.listen(16)
sel.register(srv, selectors.EVENT_READ)


def drop(s):
    other = peers.pop(s, None)
    for x in (s, other):
        if x is not None:
            try:
                sel.unregister(x)
            except (KeyError, ValueError):
                pass
            x.close()
    if other is not None:
        peers.pop(other, None)


while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is srv:
            client, _ = srv.accept()
            server = socket.socket(socket.AF_UNIX)
            server.connect(target_path)
            peers[client], peers[server] = server, client
            sel.register(client, selectors.EVENT_READ)
            sel.register(server, selectors.EVENT_READ)
            continue
        if s not in peers:
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            drop(s)
            continue
        log.write(data)
        peers[s].sendall(data)
