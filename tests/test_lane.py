"""The proxy's fast lane (xproto/proxy/lane.py, xproto/proxy/_lane.c).

Mostly sans-I/O (as bench/bench_proxy_path.py): a real DownstreamConnection,
ListenerRuntime, Cluster, pool and UpstreamConnection on fake transports and a fake clock.
The core test is differential: the same pipelined stream, answered the same way, through
the lane and with the lane turned off must give the same bytes, answers and metrics.
Both loops are covered: the C one (when built) and the pure-Python one.
"""
from __future__ import annotations

import contextlib
import random
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_proxy_core import bolt_hb
from test_proxy_helpers import Client, Upstream, arun, listener, metric, proxy, until
from test_proxy_sansio import FakeLoop, FakeTransport

import xproto.proxy.lane as lane_mod
from xproto.codec import Reason, Role
from xproto.codecs import bolt as B
from xproto.frame import Frame
from xproto.metrics import Metrics
from xproto.pool.batch import Batch
from xproto.pool.cluster import Cluster, ClusterSettings
from xproto.pool.connection import UpstreamConnection
from xproto.proxy.downstream import DownstreamConnection
from xproto.proxy.listener import ListenerRuntime
from xproto.proxy.server import MetricsPoolStats
from xproto.registry import default_registry
from xproto.router import Route

pytestmark = pytest.mark.timeout(120)

REG = default_registry()
BOLT = REG.get("bolt")
DUBBO = REG.get("dubbo")
HAVE_NATIVE = lane_mod._NATIVE is not None
DHEADER = struct.Struct(">HBBqI")

PROTOS = ("dubbo", "bolt")
LOOPS = [pytest.param(True, id="c"), pytest.param(False, id="py")]

# --- frames --------------------------------------------------------------------------------


def dubbo_req(rid: int, body: bytes, oneway: bool = False, ser: int = 2) -> bytes:
    flag = 0x80 | (0 if oneway else 0x40) | ser
    return DHEADER.pack(0xDABB, flag, 0, rid, len(body)) + body


def dubbo_hb(rid: int) -> bytes:
    return DHEADER.pack(0xDABB, 0xE2, 0, rid, 1) + b"N"


def bolt_req(rid: int, body: bytes, oneway: bool = False, v2: bool = False) -> bytes:
    return BOLT.build(type=B.TYPE_ONEWAY if oneway else B.TYPE_REQUEST, cmdcode=B.CMD_REQUEST,
                      request_id=rid, timeout=3000, headers=[("service", "svc.A")], content=body,
                      version=2 if v2 else 1)


def request(proto: str, kind: str, rid: int, body: bytes) -> bytes:
    """kind: req, oneway, hb, odd (a two-way request the request scanner may decline:
    bolt v2; dubbo non-hessian)."""
    if proto == "dubbo":
        if kind == "hb":
            return dubbo_hb(rid)
        return dubbo_req(rid, body, oneway=kind == "oneway", ser=6 if kind == "odd" else 2)
    if kind == "hb":
        return bolt_hb(rid & 0xFFFFFFFF)
    return bolt_req(rid, body, oneway=kind == "oneway", v2=kind == "odd")


DUBBO_STATUSES = (20, 20, 30, 40, 60, 70, 80, 100, 55)
BOLT_STATUSES = (0, 0, 1, 2, 4, 7, 16, 300)


def body_of(proto: str, f: Frame) -> bytes:
    return bytes(f.raw[16:]) if proto == "dubbo" else bytes(BOLT.content(f))


def response(proto: str, uid: int, status_i: int, body: bytes, v2: bool = False) -> bytes:
    """The fake upstream's answer to request ``uid`` (bolt ``v2``: a response framing the
    response scanner declines, answered through ``Lane.exchange``)."""
    if proto == "dubbo":
        s = DUBBO_STATUSES[status_i % len(DUBBO_STATUSES)]
        rid = uid - (1 << 64) if uid >= 1 << 63 else uid
        b = b"R" + body
        return DHEADER.pack(0xDABB, 2, s, rid, len(b)) + b
    s = BOLT_STATUSES[status_i % len(BOLT_STATUSES)]
    return BOLT.build(type=B.TYPE_RESPONSE, cmdcode=B.CMD_RESPONSE, request_id=uid, status=s,
                      content=b"R" + body, version=2 if v2 else 1)


# --- the sans-I/O harness ----------------------------------------------------------------------

@contextlib.contextmanager
def loops(native: bool) -> Iterator[None]:
    """Select the C or the pure-Python loops for lanes created inside."""
    if native and not HAVE_NATIVE:
        pytest.skip("C loops not built (or XPROTO_PURE_PYTHON=1)")
    saved = lane_mod._NATIVE
    if not native:
        lane_mod._NATIVE = None
    try:
        yield
    finally:
        lane_mod._NATIVE = saved


class H:
    """One listener, one cluster with one endpoint, one open upstream connection, one client."""

    def __init__(self, proto: str, *, lane: bool | None = True, timeout: float = 5.0, max_pending: int = 10000,
                 id_start: int = 1, passthrough: bool = False, header_route: bool = False) -> None:
        self.proto = proto
        self.codec = codec = REG.get(proto)
        self.loop = FakeLoop()
        self.m = Metrics()
        batch = Batch()
        self.cl = Cluster(ClusterSettings(name="up", endpoints=[("127.0.0.1", 1)], id_start=id_start,
                                          id_passthrough=passthrough),
                          self.loop, batch, MetricsPoolStats(self.m, "up"))  # type: ignore[arg-type]
        route = Route("up", timeout, 0)
        self.lr = ListenerRuntime("l", [codec], lambda f: route, {"up": self.cl}, self.m,
                                  self.loop, batch, max_pending=max_pending,  # type: ignore[arg-type]
                                  fixed_route=None if header_route else route)
        if lane is not None:        # None: as the environment says (XPROTO_NO_LANE)
            self.lr.lanes_enabled = lane
        self.ep = self.cl.endpoints[0]
        pool = self.ep.pool_for(codec, codec.pool_mode)
        self.up = UpstreamConnection(pool, codec, pool.multiplex)
        pool.conns.append(self.up)
        self.ut = FakeTransport()
        self.up.connection_made(self.ut)
        self.down = DownstreamConnection(self.lr)
        self.dt = FakeTransport()
        self.down.connection_made(self.dt)
        self.up_dec = codec.new_decoder(Role.REQUESTS)
        self.seen: list[Frame] = []         # every frame the upstream received, in order

    def send(self, data: bytes) -> None:
        self.down.data_received(data)

    def upstream_take(self) -> list[Frame]:
        frames, used = self.up_dec.decode_all(self.ut.out)
        assert used == len(self.ut.out)
        self.ut.out.clear()
        self.seen.extend(frames)
        return frames

    def answer(self, data: bytes) -> None:
        self.up.data_received(data)

    def client_frames(self) -> list[Frame]:
        frames, used = self.codec.new_decoder(Role.RESPONSES).decode_all(self.dt.out)
        assert used == len(self.dt.out)
        return frames

    def answers(self) -> dict[int, list[bytes]]:
        d: dict[int, list[bytes]] = {}
        for f in self.client_frames():
            if not f.heartbeat:
                d.setdefault(f.request_id, []).append(bytes(f.raw))
        return d

    def status_of(self) -> dict[int, int]:
        return {f.request_id: f.status for f in self.client_frames() if not f.heartbeat}

    def up_stats(self) -> Any:
        return self.m.upstream("up", self.proto)

    def metrics(self) -> dict[str, Any]:
        d = self.m.downstream("l", self.proto)
        u = self.up_stats()
        return {"requests": d.requests, "responses": dict(d.responses), "hist": sum(d.hist.counts),
                "local": dict(d.local), "up_requests": u.requests, "up_responses": dict(u.responses),
                "unknown": u.unknown}

    def assert_idle(self) -> None:
        assert self.down.inflight == 0
        assert self.cl.inflight == 0
        assert self.ep.active == 0
        assert self.up.pending == {}
        assert len(self.lr.timeouts) == 0


def lane_used(h: H) -> bool:
    return h.down.lane is not None and h.up.fast is not None


# --- 1. when the lane is used ----------------------------------------------------------------

@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_lane_used_for_catch_all_route(proto: str, native: bool) -> None:
    with loops(native):
        h = H(proto)
        assert h.down.lane is not None and h.up.fast is None
        h.send(request(proto, "req", 7, b"x"))
        if native:
            assert h.up.fast.__qualname__ == "native_responses_for.<locals>.fast"
        else:
            assert h.up.fast is lane_mod.responses
        assert (h.down.lane.native is not None) == native
        (f,) = h.upstream_take()
        assert h.up.pending[f.request_id].__class__ is tuple      # tracked as a lane tuple
        h.answer(response(proto, f.request_id, 0, b"x"))
        assert list(h.answers()) == [7]
        h.assert_idle()


@pytest.mark.parametrize("proto", PROTOS)
def test_lane_not_used(proto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for kw in ({"header_route": True}, {"passthrough": True}, {"lane": False}):
        h = H(proto, **kw)
        h.send(request(proto, "req", 7, b"x"))
        assert h.down.lane is None and h.up.fast is None, kw
        (f,) = h.upstream_take()
        assert h.up.pending[f.request_id].__class__ is not tuple
    monkeypatch.setenv("XPROTO_NO_LANE", "1")
    h = H(proto, lane=None)
    assert not h.lr.lanes_enabled
    h.send(request(proto, "req", 7, b"x"))
    assert h.down.lane is None and h.up.fast is None


# thrift has a lane: tests/test_lane_thrift.py; http the ping-pong lane: tests/test_lane_http.py
@pytest.mark.parametrize("proto", ["kafka"])
def test_no_lane_for_other_protocols(proto: str) -> None:
    c = REG.get(proto)
    route = Route("up", 5.0, 0)
    loop = FakeLoop()
    cl = Cluster(ClusterSettings(name="up", endpoints=[("127.0.0.1", 1)]), loop)  # type: ignore[arg-type]
    lr = ListenerRuntime("l", [c], lambda f: route, {"up": cl}, Metrics(), loop,  # type: ignore[arg-type]
                         fixed_route=route)
    assert lane_mod.Lane.for_listener(lr, c) is None
    assert lr.lane(c) is None
    assert DownstreamConnection(lr).lane is None


# --- 2. differential: lane vs general path ------------------------------------------------------

_KINDS = st.sampled_from(["req", "req", "req", "req", "oneway", "hb", "odd"])
#: kind, pad, status, bolt v2 answer, fate (answered / never / after its timeout)
_OP = st.tuples(_KINDS, st.integers(0, 50), st.integers(0, 7), st.booleans(),
                st.sampled_from(["answer", "answer", "answer", "answer", "drop", "late"]))
MAXF = 24


def _ids(proto: str) -> Any:
    if proto == "dubbo":
        return st.integers(-(1 << 63), (1 << 63) - 1)
    return st.integers(0, (1 << 32) - 1)


def run_stream(proto: str, lane: bool, ops: list, ids: list[int], cuts: list[int], seed: int,
               id_start: int, clock: bool, max_pending: int = 10000,
               ) -> tuple[H, dict[int, list[bytes]], list[bytes], int, dict[int, str]]:
    h = H(proto, lane=lane, id_start=id_start, timeout=1.0, max_pending=max_pending)
    assert (h.down.lane is not None) == lane
    rng = random.Random(seed)
    stream = b""
    kinds: dict[int, str] = {}
    for k, (kind, pad, _s, _v2, _fate) in enumerate(ops):
        rid = ids[k]
        kinds[rid] = kind
        stream += request(proto, kind, rid, b"k%03d" % k + b"x" * pad)
    points = sorted({c for c in cuts if 0 < c < len(stream)})
    outstanding: list[Frame] = []
    late: list[Frame] = []
    after = [False]                         # past every deadline: answer the late ones

    def answer_some(count: int) -> None:
        picked = outstanding[:]
        rng.shuffle(picked)
        picked = picked[:count]
        for f in picked:
            outstanding.remove(f)
        data = b""
        for f in picked:
            body = body_of(proto, f)
            k = int(body[1:4])
            _kind, _pad, s, v2, fate = ops[k]
            if fate == "drop":
                continue
            if fate == "late" and not after[0]:
                late.append(f)
                continue
            data += response(proto, f.request_id, s, body, v2=v2 and proto == "bolt")
        # several answers per read, sometimes cut inside a frame
        while data:
            n = rng.randint(1, len(data)) if rng.random() < 0.5 else len(data)
            h.answer(data[:n])
            data = data[n:]

    for a, b in zip([0, *points], [*points, len(stream)]):
        if clock:
            h.loop.advance(rng.choice((0.0, 0.0, 0.3, 0.6)))    # some requests time out
        h.send(stream[a:b])
        for f in h.upstream_take():
            assert not f.heartbeat
            if f.kind.name == "REQUEST":
                outstanding.append(f)
        if outstanding and rng.random() < 0.6:
            answer_some(rng.randint(1, len(outstanding)))
    while outstanding:
        answer_some(rng.randint(1, len(outstanding)))
    h.loop.advance(1.1)                    # every deadline has passed
    late_seen = len(h.dt.out)
    outstanding[:] = late
    after[0] = True
    while outstanding:
        answer_some(rng.randint(1, len(outstanding)))   # late answers: counted, dropped
    assert len(h.dt.out) == late_seen
    hbs = sum(1 for f in h.client_frames() if f.heartbeat)
    seen = []
    for f in h.seen:                       # upstream frames modulo ids
        f.request_id = 0
        seen.append(h.codec.encode(f))
    return h, h.answers(), seen, hbs, kinds


@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_differential_lane_vs_general_path(proto: str, native: bool) -> None:
    with loops(native):
        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(ops=st.lists(_OP, min_size=1, max_size=MAXF),
               ids=st.lists(_ids(proto), min_size=MAXF, max_size=MAXF, unique=True),
               cuts=st.lists(st.integers(1, 3000), max_size=8),
               seed=st.integers(0, 2**32),
               near_wrap=st.booleans(),
               clock=st.booleans(),
               max_pending=st.sampled_from([10000, 10000, 3]))
        def prop(ops: list, ids: list[int], cuts: list[int], seed: int, near_wrap: bool, clock: bool,
                 max_pending: int) -> None:
            id_start = ((1 << DUBBO.request_id_bits) if proto == "dubbo" else (1 << 32)) - 5 if near_wrap else 1
            args = (ops, ids, cuts, seed, id_start, clock, max_pending)
            hl, al, sl, hbl, kinds = run_stream(proto, True, *args)
            hg, ag, sg, hbg, _ = run_stream(proto, False, *args)
            assert al == ag
            two_way = {rid for rid, k in kinds.items() if k in ("req", "odd")}
            assert set(al) == two_way
            assert all(len(v) == 1 for v in al.values())
            assert hbl == hbg == sum(1 for k in kinds.values() if k == "hb")
            assert sl == sg                      # same frames upstream, same order, modulo ids
            if max_pending > MAXF:
                assert len(sl) == sum(1 for k in kinds.values() if k != "hb")   # one-way ones too
            assert hl.metrics() == hg.metrics()
            assert hl.metrics()["hist"] == len(two_way)
            if clock or max_pending < MAXF:   # answers after their deadline; overflow
                m = hl.metrics()
                assert m["unknown"] <= m["local"].get("timeout", 0)
                return
            assert hl.metrics()["unknown"] == sum(1 for k, o in enumerate(ops) if o[4] == "late" and o[0] in ("req", "odd"))
            assert hl.metrics()["local"].get("timeout", 0) == sum(
                1 for k, o in enumerate(ops) if o[4] in ("late", "drop") and o[0] in ("req", "odd"))
            hl.assert_idle()
            hg.assert_idle()
        prop()


# --- 3. timeouts ------------------------------------------------------------------------------

TIMEOUT_STATUS = {"dubbo": 31, "bolt": 7}
RESET_STATUS = {"dubbo": 80, "bolt": 16}
OVERFLOW_STATUS = {"dubbo": 100, "bolt": 4}
DRAIN_STATUS = {"dubbo": 80, "bolt": 16}


def client_ids(proto: str, n: int) -> list[int]:
    return [-(1000 + i) if proto == "dubbo" and i % 2 else 1000 + i for i in range(n)]


@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_timeout_local_reply_and_late_answer_unknown(proto: str, native: bool) -> None:
    with loops(native):
        h = H(proto, timeout=1.0)
        ids = client_ids(proto, 6)
        h.send(b"".join(request(proto, "req", r, b"t%d" % i) for i, r in enumerate(ids[:3])))
        h.loop.advance(0.5)
        h.send(b"".join(request(proto, "req", r, b"t%d" % i) for i, r in enumerate(ids[3:])))
        ups = h.upstream_take()
        assert len(ups) == 6 and h.down.lane is not None and h.up.fast is not None
        h.answer(response(proto, ups[1].request_id, 0, b"ok"))      # one answered in time
        h.loop.advance(0.51)                                        # the first read's deadline
        st_ = h.status_of()
        assert set(st_) == {ids[0], ids[1], ids[2]}
        assert st_[ids[0]] == st_[ids[2]] == TIMEOUT_STATUS[proto]
        assert h.down.inflight == 3
        h.loop.advance(0.5)                                         # the second read's
        st_ = h.status_of()
        assert set(st_) == set(ids) and all(st_[r] == TIMEOUT_STATUS[proto] for r in ids if r != ids[1])
        assert all(len(v) == 1 for v in h.answers().values())
        h.assert_idle()
        n = len(h.dt.out)
        h.answer(response(proto, ups[0].request_id, 0, b"late") + response(proto, ups[4].request_id, 0, b"late"))
        assert len(h.dt.out) == n                                   # not delivered
        assert h.up_stats().unknown == 2
        assert h.m.downstream("l", proto).local == {"timeout": 5}
        h.assert_idle()


# --- 4. upstream lost ---------------------------------------------------------------------------

@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_upstream_lost_resets_each_lane_request(proto: str, native: bool) -> None:
    with loops(native):
        h = H(proto)
        ids = client_ids(proto, 5)
        h.send(b"".join(request(proto, "req", r, b"u") for r in ids))
        ups = h.upstream_take()
        h.answer(response(proto, ups[2].request_id, 0, b"u"))
        assert all(e.__class__ is tuple for e in h.up.pending.values()) and len(h.up.pending) == 4
        h.up.connection_lost(None)
        st_ = h.status_of()
        assert set(st_) == set(ids)
        assert all(st_[r] == RESET_STATUS[proto] for r in ids if r != ids[2])
        assert all(len(v) == 1 for v in h.answers().values())
        h.assert_idle()
        assert h.m.downstream("l", proto).local == {"upstream_reset": 4}


# --- 5. client gone -------------------------------------------------------------------------------

@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_client_gone_answers_dropped(proto: str, native: bool) -> None:
    with loops(native):
        h = H(proto, timeout=1.0)
        ids = client_ids(proto, 6)
        h.send(b"".join(request(proto, "req", r, b"c") for r in ids))
        ups = h.upstream_take()
        h.down.connection_lost(None)
        assert h.down.inflight == 0
        # as on the general path (Exchange.abandon): the requests' places are freed at once
        assert h.cl.inflight == 0 and not h.up.pending
        n = len(h.dt.out)
        # answers for some (one read, then one at a time), the rest time out
        h.answer(response(proto, ups[0].request_id, 0, b"c") + response(proto, ups[3].request_id, 3, b"c"))
        h.answer(response(proto, ups[5].request_id, 0, b"c"))
        h.loop.advance(2.0)
        assert len(h.dt.out) == n
        h.assert_idle()
        assert h.up_stats().unknown == 3   # late answers to abandoned requests, as general


# --- 6. listener max_pending --------------------------------------------------------------------

@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_max_pending_overflow(proto: str, native: bool) -> None:
    with loops(native):
        h = H(proto, max_pending=4)
        ids = client_ids(proto, 10)
        h.send(b"".join(request(proto, "req", r, b"m") for r in ids))
        ups = h.upstream_take()
        assert len(ups) == 4 and h.up.fast is not None
        assert [body_of(proto, f) for f in ups] == [b"m"] * 4
        st_ = h.status_of()
        assert set(st_) == set(ids[4:]) and all(s == OVERFLOW_STATUS[proto] for s in st_.values())
        h.answer(b"".join(response(proto, f.request_id, 0, b"m") for f in ups))
        st_ = h.status_of()
        assert set(st_) == set(ids) and all(len(v) == 1 for v in h.answers().values())
        assert h.m.downstream("l", proto).local == {"overflow": 6}
        h.assert_idle()


# --- 7. id wrap ---------------------------------------------------------------------------------

@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_id_wrap_never_reuses_ids_in_flight(proto: str, native: bool) -> None:
    top = (1 << 63) if proto == "dubbo" else (1 << 32)
    with loops(native):
        h = H(proto, id_start=top - 3)
        ids = client_ids(proto, 30)
        h.send(b"".join(request(proto, "req", r, b"w%d" % i) for i, r in enumerate(ids[:6])))
        first = h.upstream_take()
        assert [f.request_id for f in first] == [top - 3, top - 2, top - 1, 0, 1, 2]
        # answer two, keep four in flight; then the generator comes round again (as after
        # a full cycle of ids) onto the ids still in flight
        h.answer(response(proto, first[1].request_id, 0, b"w1") + response(proto, first[4].request_id, 0, b"w4"))
        h.up.next_id._next = top - 3
        h.send(b"".join(request(proto, "req", r, b"w%d" % (i + 6)) for i, r in enumerate(ids[6:18])))
        h.send(request(proto, "oneway", 5, b"o") + b"".join(
            request(proto, "req", r, b"w%d" % (i + 18)) for i, r in enumerate(ids[18:])))
        later = h.upstream_take()
        in_flight = [f.request_id for f in first if f not in (first[1], first[4])]
        two_way = [f for f in later if f.kind.name == "REQUEST"]
        uids = [f.request_id for f in two_way]
        assert len(uids) == 24 and len(set(uids)) == 24
        assert not set(uids) & set(in_flight)
        assert len(h.up.pending) == 28
        rest = [f for f in first if f.request_id in in_flight] + two_way
        random.Random(3).shuffle(rest)
        h.answer(b"".join(response(proto, f.request_id, 0, body_of(proto, f)) for f in rest))
        got = h.answers()
        assert set(got) == set(ids) and all(len(v) == 1 for v in got.values())
        for i, r in enumerate(ids):
            (raw,) = got[r]
            assert raw.endswith(b"Rw%d" % i), (i, raw)
        h.assert_idle()


# --- 8. drain -------------------------------------------------------------------------------------

@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_drain_now_answers_lane_requests(proto: str, native: bool) -> None:
    with loops(native):
        h = H(proto)
        ids = client_ids(proto, 5)
        h.send(b"".join(request(proto, "req", r, b"d") for r in ids[:3]) + request(proto, "odd", ids[3], b"d"))
        h.send(request(proto, "req", ids[4], b"d"))
        ups = h.upstream_take()
        h.answer(response(proto, ups[0].request_id, 0, b"d"))
        h.lr.draining = True
        h.down.drain_now(Reason.NO_HEALTHY_UPSTREAM, "proxy shutting down")
        st_ = h.status_of()
        assert set(st_) == set(ids)
        assert all(st_[r] == DRAIN_STATUS[proto] for r in ids[1:])
        assert all(len(v) == 1 for v in h.answers().values())
        assert h.down.inflight == 0 and h.cl.inflight == 0 and h.ep.active == 0
        assert not any(e.__class__ is tuple for e in h.up.pending.values())


# --- real sockets -------------------------------------------------------------------------------

def _echo(proto: str) -> Any:
    def respond(f: Frame) -> bytes:
        return response(proto, f.request_id & ((1 << 64) - 1), 0, body_of(proto, f))
    return respond


def _cfg(proto: str, addr: str, timeout: str | None = None, **lim: Any) -> dict:
    route: dict[str, Any] = {"cluster": "a"}
    if timeout:
        route["timeout"] = timeout
    extra: dict[str, Any] = {"limits": lim} if lim else {}
    return {"listeners": [listener([proto], [route], **extra)],
            "clusters": [{"name": "a", "endpoints": [addr]}]}


@pytest.mark.parametrize("proto", PROTOS)
def test_sockets_pipelined_through_the_lane(proto: str) -> None:
    async def body() -> None:
        up = await Upstream(proto, _echo(proto)).start()
        async with proxy(_cfg(proto, up.addr)) as p:
            lr = p.listeners["main"]
            c = await Client(proto).connect(p.listener_address("main"))
            ids = client_ids(proto, 40)
            c.send(b"".join(request(proto, "req", r, b"s%d" % i) for i, r in enumerate(ids)))
            got = {f.request_id: body_of(proto, f) for f in await c.recv(40)}
            assert got == {r: b"Rs%d" % i for i, r in enumerate(ids)}
            (down,) = lr.connections
            assert down.lane is not None
            assert metric(p, "xproto_downstream_requests_total", listener="main", protocol=proto, api="") == 40
            assert metric(p, "xproto_downstream_responses_total", listener="main", protocol=proto,
                          status="200") == 40
            assert metric(p, "xproto_upstream_requests_total", cluster="a", protocol=proto) == 40
            assert down.inflight == 0 and p.clusters["a"].inflight == 0
            c.close()
        await up.close()
    arun(body())


@pytest.mark.parametrize("proto", PROTOS)
def test_sockets_timeout_then_stop_answers_in_flight(proto: str) -> None:
    async def body() -> None:
        up = await Upstream(proto, _echo(proto)).start()
        up.mode = "silent"
        async with proxy(_cfg(proto, up.addr, timeout="200ms")) as p:
            c = await Client(proto).connect(p.listener_address("main"))
            ids = client_ids(proto, 4)
            c.send(b"".join(request(proto, "req", r, b"x") for r in ids[:2]))
            got = {f.request_id: f.status for f in await c.recv(2)}
            assert got == {r: TIMEOUT_STATUS[proto] for r in ids[:2]}
            # a route timeout long enough: the stop answers them
            (down,) = p.listeners["main"].connections
            assert down.lane is not None
            down.lane.timeout = 30.0
            c.send(b"".join(request(proto, "req", r, b"y") for r in ids[2:]))
            await until(lambda: len(up.requests()) == 4)
            await p.stop(0)
            got = {f.request_id: f.status for f in await c.recv(2)}
            assert got == {r: DRAIN_STATUS[proto] for r in ids[2:]}
            c.close()
        await up.close()
    arun(body())


# --- more sans-I/O edges ------------------------------------------------------------------------

def second_client(h: H) -> tuple[DownstreamConnection, FakeTransport]:
    d = DownstreamConnection(h.lr)
    t = FakeTransport()
    d.connection_made(t)
    return d, t


def answers_of(proto: str, t: FakeTransport) -> dict[int, bytes]:
    frames, used = REG.get(proto).new_decoder(Role.RESPONSES).decode_all(t.out)
    assert used == len(t.out)
    out: dict[int, bytes] = {}
    for f in frames:
        assert f.request_id not in out
        out[f.request_id] = body_of(proto, f)
    return out


@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_clients_sharing_the_upstream_answers_interleaved(proto: str, native: bool) -> None:
    """Answers of three clients (one of them gone) interleaved in one upstream read: each
    run goes to its own client, with its own ids (the same ids on every client)."""
    with loops(native):
        h = H(proto)
        d2, t2 = second_client(h)
        d3, t3 = second_client(h)
        ids = client_ids(proto, 6)
        for tag, d in ((b"a", h.down), (b"b", d2), (b"c", d3)):
            d.data_received(b"".join(request(proto, "req", r, tag + b"%d" % i) for i, r in enumerate(ids)))
        ups = h.upstream_take()
        assert len(ups) == 18 and len({f.request_id for f in ups}) == 18
        d3.connection_lost(None)
        order = [ups[i] for i in (0, 6, 7, 1, 12, 2, 8, 13, 14, 9, 3, 4, 5, 15, 10, 16, 11, 17)]
        data = b"".join(response(proto, f.request_id, i % 3, body_of(proto, f)) for i, f in enumerate(order))
        h.answer(data[:50])
        h.answer(data[50:])
        assert answers_of(proto, h.dt) == {r: b"Ra%d" % i for i, r in enumerate(ids)}
        assert answers_of(proto, t2) == {r: b"Rb%d" % i for i, r in enumerate(ids)}
        assert t3.out == b""
        assert d2.inflight == 0
        h.assert_idle()
        assert h.up_stats().unknown == 6   # the gone client's: abandoned, as on the general path
        d = h.m.downstream("l", proto)
        assert d.requests == 18 and sum(d.responses.values()) == 12 == sum(d.hist.counts)


@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_bad_bytes_after_lane_requests(proto: str, native: bool) -> None:
    with loops(native):
        h = H(proto)
        ids = client_ids(proto, 3)
        bad = b"\x01\x01\x00\x09" + b"\x00" * 30 if proto == "bolt" else b"\xda\xbb\xc2\x00" + b"\xff" * 12
        h.send(b"".join(request(proto, "req", r, b"b") for r in ids) + bad)
        ups = h.upstream_take()
        assert len(ups) == 3                   # what came before the bad bytes went out
        assert h.down.closed and h.dt.closed
        h.answer(b"".join(response(proto, f.request_id, 0, b"b") for f in ups))
        h.assert_idle()


@pytest.mark.parametrize("proto", PROTOS)
def test_upstream_back_pressure_holds_the_client(proto: str) -> None:
    h = H(proto)
    h.up.pause_writing()
    h.send(request(proto, "req", 1, b"p"))
    assert h.dt.paused and h.up.fast is not None
    h.up.resume_writing()
    assert not h.dt.paused
    (f,) = h.upstream_take()
    h.answer(response(proto, f.request_id, 0, b"p"))
    assert list(h.answers()) == [1]
    h.assert_idle()


@pytest.mark.parametrize("proto", PROTOS)
def test_two_endpoints_round_robin_per_read(proto: str) -> None:
    """Load balancing picks the connection per read; an endpoint without an open connection
    sends the read through the general path, which connects to that same endpoint."""
    codec = REG.get(proto)
    loop = FakeLoop()
    m = Metrics()
    batch = Batch()
    cl = Cluster(ClusterSettings(name="up", endpoints=[("127.0.0.1", 1), ("127.0.0.1", 2)]),
                 loop, batch, MetricsPoolStats(m, "up"))  # type: ignore[arg-type]
    route = Route("up", 5.0, 0)
    lr = ListenerRuntime("l", [codec], lambda f: route, {"up": cl}, m, loop, batch,  # type: ignore[arg-type]
                         fixed_route=route)
    spawned: list[Any] = []
    cl.spawn = spawned.append                 # type: ignore[method-assign]  # no real connect
    ups = []
    for ep in cl.endpoints[:1]:
        pool = ep.pool_for(codec, codec.pool_mode)
        up = UpstreamConnection(pool, codec, pool.multiplex)
        pool.conns.append(up)
        t = FakeTransport()
        up.connection_made(t)
        ups.append((up, t))
    down = DownstreamConnection(lr)
    dt = FakeTransport()
    down.connection_made(dt)
    down.data_received(request(proto, "req", 1, b"e"))      # rr -> endpoint 1: lane
    down.data_received(request(proto, "req", 2, b"e"))      # rr -> endpoint 2: no connection
    assert cl.held is None
    ep2 = cl.endpoints[1]
    (pool2,) = ep2.pools.values()
    (conn2,) = pool2.conns
    assert len(conn2.queued) == 1 and len(spawned) == 1
    for s in spawned:
        s.close()
    assert len(ups[0][0].pending) == 1 and ups[0][1].out
    assert cl.inflight == 2 and cl.endpoints[0].active == 1 and ep2.active == 1


@pytest.mark.parametrize("native", LOOPS)
@pytest.mark.parametrize("proto", PROTOS)
def test_half_closed_client_gets_its_answers_then_close(proto: str, native: bool) -> None:
    with loops(native):
        h = H(proto)
        ids = client_ids(proto, 3)
        h.send(b"".join(request(proto, "req", r, b"e") for r in ids))
        assert h.down.eof_received() is True
        ups = h.upstream_take()
        h.answer(b"".join(response(proto, f.request_id, 0, b"e") for f in ups[:2]))
        assert not h.dt.closed
        h.answer(response(proto, ups[2].request_id, 0, b"e"))
        assert set(h.answers()) == set(ids) and h.dt.closed
        h.assert_idle()
