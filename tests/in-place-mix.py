#!/usr/bin/python3
# Writes, zeroes and trims from two connections at once, in ranges of
# their own that share the memory backend's 32 KiB pages, with many
# requests in flight; then every byte is compared with a model.
#
# Usage: in-place-mix.py URI SIZE OPS
#
# Connection 0 owns runs of 100 KiB, connection 1 the runs of 20 KiB
# between them, so that a zero or trim of one connection leaves pages
# that the other is writing half zeroes: the front end's check that a
# page is all zeroes (to punch it whole) must not lose the other's
# bytes.  Writes of up to 100 KiB are received straight into the file
# when the server does that (large ones with recv, small ones from its
# input buffer).  No two requests in flight touch the same run.

import os
import random
import sys

import nbd

uri, size, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(int.from_bytes(os.urandom(4), "little"))

runs = []                       # (owner, start, length)
off, owner = 0, 0
while off < size:
    n = min(100 * 1024 if owner == 0 else 20 * 1024, size - off)
    runs.append((owner, off, n))
    off += n
    owner ^= 1

model = bytearray(size)
handles = []
for _ in range(2):
    h = nbd.NBD()
    h.connect_uri(uri)
    handles.append(h)

busy = set()                    # runs with a request in flight
issued = [0, 0]
MAX_IN_FLIGHT = 8


def issue(c):
    h = handles[c]
    free = [i for i, r in enumerate(runs) if r[0] == c and i not in busy]
    if not free:
        return False
    i = rng.choice(free)
    _, start, length = runs[i]
    n = rng.randint(1, length)
    o = start + rng.randint(0, length - n)
    what = rng.random()
    busy.add(i)

    def done(*args, i=i):
        busy.discard(i)
        return 1

    if what < 0.6:
        data = os.urandom(n)
        model[o:o + n] = data
        flags = nbd.CMD_FLAG_FUA if rng.random() < 0.1 else 0
        h.aio_pwrite(data, o, completion=done, flags=flags)
    elif what < 0.8:
        model[o:o + n] = bytes(n)
        h.aio_zero(n, o, completion=done)
    else:
        model[o:o + n] = bytes(n)
        h.aio_trim(n, o, completion=done)
    issued[c] += 1
    return True


while issued[0] < ops or issued[1] < ops or busy:
    for c in range(2):
        h = handles[c]
        while (issued[c] < ops and h.aio_in_flight() < MAX_IN_FLIGHT and
               issue(c)):
            pass
    for h in handles:
        if h.aio_in_flight() > 0:
            h.poll(0)
    # Block on one of them when nothing else can be issued.
    for h in handles:
        if h.aio_in_flight() > 0:
            h.poll(1)
            break

for h in handles:
    while h.aio_in_flight() > 0:
        h.poll(-1)
    h.flush()

h = handles[0]
got = bytearray()
step = 1 << 20
for o in range(0, size, step):
    got += h.pread(min(step, size - o), o)
if got != model:
    bad = next(i for i in range(size) if got[i] != model[i])
    sys.exit("in-place-mix: byte %d differs: got %d, wanted %d" %
             (bad, got[bad], model[bad]))
for h in handles:
    h.shutdown()
print("in-place-mix: %d requests, every byte as expected" % sum(issued))
