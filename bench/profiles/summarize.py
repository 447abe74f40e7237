"""Summarise ``py-spy record -f raw`` output: the top-N frames by self and inclusive samples.

py-spy attributes time spent in C (a syscall in ``transport.write``, a builtin) to the
Python line that called it: ``Writable.flush`` is the write syscalls."""
from __future__ import annotations

import collections
import sys

self_t: collections.Counter[str] = collections.Counter()
incl: collections.Counter[str] = collections.Counter()
total = 0
with open(sys.argv[1]) as f:
    for line in f:
        line = line.rstrip()
        if not line:
            continue
        stack, _, n_ = line.rpartition(" ")
        n = int(n_)
        total += n
        frames = stack.split(";")
        self_t[frames[-1]] += n
        for fr in set(frames):
            incl[fr] += n
N = int(sys.argv[2]) if len(sys.argv) > 2 else 25
skip = ("click/", "runpy", "cli.py")
print(f"samples {total}")
print("-- self --")
for fr, n in self_t.most_common(N):
    if fr and not any(s in fr for s in skip):
        print(f"{100 * n / total:5.1f}%  {fr}")
print("-- inclusive --")
for fr, n in incl.most_common(N + 12):
    if fr and not any(s in fr for s in skip):
        print(f"{100 * n / total:5.1f}%  {fr}")
