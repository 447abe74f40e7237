"""The fast lane's optional C loops (xproto/proxy/_lane.c) against a pure-Python model
built only from the codecs' scanners (whose contract tests/test_scanner.py checks against
the decoders): same stop position, same ids, same patched bytes, same pending entries."""
from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_scanner import bolt_cases, dubbo_cases
from test_scanner_thrift import messages as thrift_messages

from xproto.codec import Role
from xproto.limits import DEFAULT_LIMITS, Limits
from xproto.registry import default_registry

lane_c = pytest.importorskip("xproto.proxy._lane")

REG = default_registry()
PROPS = settings(deadline=None, max_examples=200,
                 suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow,
                                        HealthCheck.filter_too_much])


class LB:
    """A stand-in for a LaneBatch: only its identity matters to the loops."""


def ref_requests(sc: Any, src: Any, pos: int, nxt: int, room: int, lb: Any) -> tuple[Any, ...]:
    n = len(src)
    out = None
    pending: dict[int, Any] = {}
    sent = waiting = 0
    while pos < n:
        r = sc.scan(src, pos, n)
        if r is None:
            break
        end, rid, expects = r[:3]
        if expects and waiting >= room:
            break
        if out is None:
            out = bytearray(src)
        sc.pack_id(out, pos + sc.id_offset if sc.id_offset >= 0 else r[3], nxt & sc.id_mask)
        if expects:
            pending[nxt] = (lb, rid, pos)
            waiting += 1
        nxt += 1
        sent += 1
        pos = end
    return pos, nxt, sent, waiting, out, pending


def ref_responses(sc: Any, src: Any, pos: int, pending: dict[int, Any], hb: int, lb: Any,
                  others: list[int]) -> tuple[Any, ...]:
    n = len(src)
    out = None
    k = 0
    next_lb = None
    while pos < n:
        r = sc.scan(src, pos, n)
        if r is None:
            break
        end, rid, status = r[:3]
        if rid == hb:
            break
        ent = pending.get(rid)
        if ent is None or ent.__class__ is not tuple or len(ent) != 3:
            break
        if lb is None:
            lb = ent[0]
        elif ent[0] is not lb:
            next_lb = ent[0]
            break
        if out is None:
            out = bytearray(src)
        sc.pack_id(out, pos + sc.id_offset if sc.id_offset >= 0 else r[3], ent[1] & sc.id_mask)
        if status != 200:
            others.append(status)
        del pending[rid]
        k += 1
        pos = end
    return pos, k, lb, next_lb, out


def _stream(draw: Any, cases: Any, role: Role) -> tuple[bytes, Limits]:
    """Several frames of one role (mostly plain, some changed), limits of the first."""
    frames = []
    limits = DEFAULT_LIMITS
    for i in range(draw(st.integers(1, 6))):
        while True:
            frame, lim, r, _how = draw(cases)
            if r is role:
                break
        if i == 0:
            limits = lim
        frames.append(frame)
    return b"".join(frames), limits


@st.composite
def thrift_cases(draw: Any) -> tuple[bytes, Limits, Role, str]:
    frame, role = draw(thrift_messages())
    lim = draw(st.sampled_from([DEFAULT_LIMITS, Limits(thrift_max_frame=max(len(frame) - 4, 1)),
                                Limits(thrift_max_name=4)]))
    return frame, lim, role, ""


CASES = [("dubbo", dubbo_cases()), ("bolt", bolt_cases()), ("thrift", thrift_cases())]


@pytest.mark.parametrize("proto,cases", CASES)
@PROPS
@given(data=st.data())
def test_requests_loop(proto: str, cases: Any, data: Any) -> None:
    codec = REG.get(proto)
    src, limits = _stream(data.draw, cases, Role.REQUESTS)
    sc = codec.scanner(Role.REQUESTS, limits)
    assert sc.native
    src = data.draw(st.sampled_from([bytes, bytearray]))(src)
    nxt = data.draw(st.integers(1, 1 << 20))
    room = data.draw(st.integers(0, 8))
    lb = LB()
    want = ref_requests(sc, src, 0, nxt, room, lb)
    pending: dict[int, Any] = {}
    got = lane_c.requests(sc.native, src, None, 0, nxt, room, pending, lb, *sc.native_limits)
    assert got[:4] == want[:4]
    assert got[4] == want[4]
    assert pending == want[5]
    for ent in pending.values():
        assert ent[0] is lb


@pytest.mark.parametrize("proto,cases", CASES)
@PROPS
@given(data=st.data())
def test_responses_loop(proto: str, cases: Any, data: Any) -> None:
    codec = REG.get(proto)
    src, limits = _stream(data.draw, cases, Role.RESPONSES)
    sc = codec.scanner(Role.RESPONSES, limits)
    src = data.draw(st.sampled_from([bytes, bytearray]))(src)
    # pending entries for the ids in the stream: batch A, batch B, a general-path request,
    # a malformed tuple, or none
    a, b = LB(), LB()
    rng = random.Random(data.draw(st.integers(0, 1 << 30)))
    pending: dict[int, Any] = {}
    pos = 0
    ids = []
    while True:
        r = sc.scan(src, pos, len(src))
        if r is None:
            break
        ids.append(r[1])
        pos = r[0]
    if pos < len(src):
        ids.append(rng.randrange(1 << 31))
    for rid in ids:
        what = rng.choice(["a", "a", "a", "b", "obj", "short", "none"])
        down_id = rng.choice([rng.randrange(-(1 << 63), 1 << 63), rng.randrange(1 << 32), -1])
        if proto == "bolt":
            down_id &= 0xFFFFFFFF
        if what == "a":
            pending[rid] = (a, down_id, 0)
        elif what == "b":
            pending[rid] = (b, down_id, 0)
        elif what == "obj":
            pending[rid] = object()
        elif what == "short":
            pending[rid] = (a, down_id)
    hb = rng.choice([-1, ids[0] if ids else -1])
    lb = rng.choice([None, a])
    ref_pending = dict(pending)
    ref_others: list[int] = []
    want = ref_responses(sc, src, 0, ref_pending, hb, lb, ref_others)
    others: list[int] = []
    got = lane_c.responses(sc.native, src, None, 0, pending, hb, lb, others, sc.status_table,
                           *sc.native_limits)
    assert got[0] == want[0] and got[1] == want[1]
    assert got[2] is want[2] and got[3] is want[3]
    assert got[4] == want[4]
    assert pending == ref_pending
    assert others == ref_others


def test_bad_arguments_raise() -> None:
    with pytest.raises(TypeError):
        lane_c.requests(1, b"", None, 0, 1, 1, [], None, 1, 1)
    with pytest.raises(TypeError):
        lane_c.responses(1, b"", None, 0, {}, -1, None, (), (), 1, 1)
    with pytest.raises(TypeError):
        lane_c.requests(1, b"")
    with pytest.raises(ValueError):    # the buffer ids are patched into must cover src
        lane_c.requests(1, b"x" * 32, bytearray(8), 0, 1, 1, {}, None, 100, 100)
    with pytest.raises(ValueError):
        lane_c.responses(1, b"x" * 32, bytearray(8), 0, {}, -1, None, [], (), 100, 100)


@pytest.mark.parametrize("proto", ["dubbo", "bolt"])
def test_plain_round_trip(proto: str) -> None:
    """16 plain requests out, their 16 answers back: every one taken, ids patched."""
    import struct
    codec = REG.get(proto)
    if proto == "dubbo":
        req = [struct.pack(">HBBqI", 0xDABB, 0xC2, 0, 100 + i, 3) + b"abc" for i in range(16)]
        resp = lambda uid, st: struct.pack(">HBBqI", 0xDABB, 0x02, st, uid, 1) + b"N"
        ok, bad = 20, 70
    else:
        req = [struct.pack(">BBHBIBiHHI", 1, 1, 1, 1, 100 + i, 1, 3000, 0, 0, 2) + b"xy" for i in range(16)]
        resp = lambda uid, st: struct.pack(">BBHBIBHHHI", 1, 0, 2, 1, uid, 1, st, 0, 0, 1) + b"z"
        ok, bad = 0, 1
    sc = codec.scanner(Role.REQUESTS)
    lb = LB()
    pending: dict[int, Any] = {}
    src = b"".join(req)
    pos, nxt, sent, waiting, _out = lane_c.requests(sc.native, src, None, 0, 7, 100, pending, lb,
                                                   *sc.native_limits)
    assert (pos, nxt, sent, waiting) == (len(src), 23, 16, 16)
    assert sorted(pending) == list(range(7, 23))
    assert [pending[7 + i][1] for i in range(16)] == [100 + i for i in range(16)]
    rsc = codec.scanner(Role.RESPONSES)
    answers = b"".join(resp(uid, ok if uid % 5 else bad) for uid in range(7, 23))
    others: list[int] = []
    pos, k, glb, nlb, rout = lane_c.responses(rsc.native, answers, None, 0, pending, -1, None, others,
                                              rsc.status_table, *rsc.native_limits)
    assert (pos, k, glb, nlb) == (len(answers), 16, lb, None)
    assert not pending
    assert len(others) == 3 and all(o != 200 for o in others)
    back = [f.request_id for f in codec.new_decoder(Role.RESPONSES).decode_all(bytes(rout))[0]]
    assert back == [100 + i for i in range(16)]
