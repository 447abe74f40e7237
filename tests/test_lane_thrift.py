"""The fast lane for framed Thrift (binary): the scanner gives the seqid's position per
frame. Same differential as tests/test_lane.py: lane on and off must answer every call
with the same bytes, send the upstream the same frames and count the same metrics."""
from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_lane import LOOPS, H, lane_used, loops

from xproto.codecs.thrift import Proto, app_exception_struct, build_message

CALL, REPLY, EXCEPTION, ONEWAY = 1, 2, 3, 4
STOP = b"\x00"


def framed(msg: bytes) -> bytes:
    return struct.pack(">I", len(msg)) + msg


def call(seqid: int, tag: bytes, kind: str = "req") -> bytes:
    body = b"\x0b\x00\x01" + struct.pack(">I", len(tag)) + tag + STOP
    if kind == "oneway":
        return framed(build_message(Proto.BINARY, "ping", ONEWAY, seqid, body))
    if kind == "odd":      # framed compact: the scanner declines, the general path takes it
        return framed(build_message(Proto.COMPACT, "say", CALL, seqid, STOP))
    return framed(build_message(Proto.BINARY, "say", CALL, seqid, body))


def reply(f: Any, how: int) -> bytes:
    """The fake upstream's answer to frame ``f`` (same protocol): a reply, or (how == 1) an
    exception reply, which the response scanner declines."""
    meta = f.meta
    proto = meta.proto
    if how == 1:
        return framed(build_message(proto, meta.name, EXCEPTION, f.request_id,
                                    app_exception_struct(proto, "boom", 6)))
    res = b"\x0b\x00\x00" + struct.pack(">I", 3) + b"ok!" + STOP if proto is Proto.BINARY else STOP
    return framed(build_message(proto, meta.name, REPLY, f.request_id, res))


@pytest.mark.parametrize("native", LOOPS)
def test_lane_used_for_framed_binary(native: bool) -> None:
    with loops(native):
        h = H("thrift")
        h.send(call(7, b"x"))
        assert lane_used(h)
        assert (h.down.lane.native is not None) == native
        (f,) = h.upstream_take()
        h.answer(reply(f, 0))
        assert list(h.answers()) == [7]
        h.assert_idle()


def run(lane: bool, frames: list[tuple[str, int]], cuts: list[int], seed: int) -> tuple[Any, ...]:
    h = H("thrift", lane=lane)
    data = b"".join(call(sid, b"t%d" % i, kind) for i, (kind, sid) in enumerate(frames))
    pos = 0
    for c in sorted({x % (len(data) + 1) for x in cuts}) + [len(data)]:
        if c > pos:
            h.send(data[pos:c])
            pos = c
    ups = h.upstream_take()
    rng = random.Random(seed)
    todo = [f for f in ups if f.meta.msg_type == CALL]
    rng.shuffle(todo)
    out = b"".join(reply(f, rng.randrange(4) == 0) for f in todo)
    i = 0
    while i < len(out):
        j = min(len(out), i + rng.randrange(1, 200))
        h.answer(out[i:j])
        i = j
    h.assert_idle()
    seen = [(f.meta.name, f.meta.msg_type, bytes(f.body)) for f in h.seen]
    return h.answers(), seen, h.metrics(), lane_used(h) if lane else None


@pytest.mark.parametrize("native", LOOPS)
@settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(["req", "req", "req", "oneway", "odd"]), min_size=1, max_size=20),
       cuts=st.lists(st.integers(0, 5000), max_size=6), seed=st.integers(0, 1 << 20))
def test_lane_matches_general_path(native: bool, kinds: list[str], cuts: list[int], seed: int) -> None:
    frames = [(k, (-(i + 1) if i % 3 == 0 else 1000 + i)) for i, k in enumerate(kinds)]
    with loops(native):
        a = run(True, frames, cuts, seed)
    b = run(False, frames, cuts, seed)
    assert a[0] == b[0]                 # every call answered once, with the same bytes
    assert a[1] == b[1]                 # the upstream got the same frames, in order
    assert a[2] == b[2]                 # the same metrics
    calls = [sid for k, sid in frames if k != "oneway"]
    assert sorted(a[0]) == sorted(calls) and all(len(v) == 1 for v in a[0].values())
    if "req" in kinds:
        assert a[3]
