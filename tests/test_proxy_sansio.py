"""The per-connection logic driven without sockets or a running loop: a fake transport, a
fake clock and a fake cluster (what the fuzzer does, issue 5)."""
from __future__ import annotations

import heapq
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_proxy_core import BOLT, bolt_hb, bolt_req

from xproto.codec import Reason, Role
from xproto.codecs import bolt as B
from xproto.frame import Frame
from xproto.metrics import Metrics
from xproto.proxy.downstream import DownstreamConnection
from xproto.proxy.listener import FixedRoute, ListenerRuntime
from xproto.registry import default_registry


class FakeHandle:
    def __init__(self, when: float, cb: Any, args: tuple) -> None:
        self.when, self.cb, self.args, self.cancelled = when, cb, args, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: FakeHandle) -> bool:
        return self.when < other.when


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, cb: Any, *args: Any) -> FakeHandle:
        h = FakeHandle(self.now + delay, cb, args)
        heapq.heappush(self.timers, h)
        return h

    def call_at(self, when: float, cb: Any, *args: Any) -> FakeHandle:
        return self.call_later(when - self.now, cb, *args)

    def advance(self, dt: float) -> None:
        self.now += dt
        while self.timers and self.timers[0].when <= self.now:
            h = heapq.heappop(self.timers)
            if not h.cancelled:
                h.cb(*h.args)


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.out += data

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("fake", 0) if name == "peername" else None

    def frames(self) -> list[Frame]:
        frames, used = BOLT.new_decoder(Role.RESPONSES).decode_all(self.out)
        assert used == len(self.out)
        return frames


class FakeSettings:
    protocol = None


class FakeCluster:
    name = "c"
    settings = FakeSettings()

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, ex: Any, codec: Any) -> None:
        self.sent.append(ex)
        if not ex.expects:       # as the real pool does once a one-way request is written
            ex.written()


def make(route_ok: bool = True, **kw: Any) -> tuple[DownstreamConnection, FakeTransport, FakeLoop, FakeCluster, Metrics]:
    loop = FakeLoop()
    m = Metrics()
    cl = FakeCluster()

    def route(frame: Frame) -> Any:
        if frame.headers.get("service") == "svc.A":
            return FixedRoute("c", 1.0)
        return None
    lr = ListenerRuntime("l", [BOLT], route, {"c": cl}, m, loop, **kw)  # type: ignore[arg-type]
    conn = DownstreamConnection(lr)
    t = FakeTransport()
    conn.connection_made(t)
    return conn, t, loop, cl, m


def response_to(ex: Any, content: bytes) -> Frame:
    raw = BOLT.build(type=B.TYPE_RESPONSE, cmdcode=B.CMD_RESPONSE, request_id=999, status=0, content=content)
    f = BOLT.new_decoder(Role.RESPONSES).decode(raw)
    assert isinstance(f, Frame)
    return f


def test_byte_by_byte_requests_answers_and_local_replies() -> None:
    conn, t, loop, cl, m = make()
    stream = bolt_req(1, "svc.A") + bolt_req(2, "svc.Z") + bolt_hb(3) + bolt_req(4, "svc.A")
    for i in range(len(stream)):
        conn.data_received(stream[i:i + 1])
    assert [ex.down_id for ex in cl.sent] == [1, 4]
    got = {f.request_id: f for f in t.frames()}
    assert got[2].status == 6 and got[3].heartbeat            # no route, heartbeat: at once
    cl.sent[1].on_response(response_to(cl.sent[1], b"four"))
    assert {f.request_id: bytes(BOLT.content(f)) for f in t.frames()}[4] == b"four"
    loop.advance(1.01)                                         # request 1 times out
    f1 = [f for f in t.frames() if f.request_id == 1]
    assert len(f1) == 1 and f1[0].status == 7
    cl.sent[0].on_response(response_to(cl.sent[0], b"late"))   # a late answer: ignored
    assert len([f for f in t.frames() if f.request_id == 1]) == 1
    assert conn.inflight == 0 and not t.closed
    assert m.registry.get_sample_value("xproto_local_replies_total",
                                       {"listener": "l", "protocol": "bolt", "reason": "timeout"}) == 1


def test_failure_answers_once_and_bad_bytes_close() -> None:
    conn, t, loop, cl, _m = make()
    conn.data_received(bolt_req(1, "svc.A"))
    ex = cl.sent[0]
    ex.on_failure(Reason.UPSTREAM_RESET, "gone")
    ex.on_failure(Reason.UPSTREAM_RESET, "gone again")
    ex.on_response(response_to(ex, b"x"))
    (f,) = t.frames()
    assert f.request_id == 1 and f.status == 16
    conn.data_received(b"\x01\x01\x00\x09" + b"\x00" * 30)
    assert t.closed and conn.closed
    loop.advance(100)                                          # no timer left behind fires
    assert len(t.frames()) == 1


def test_downstream_gone_abandons_pending() -> None:
    conn, t, loop, cl, _m = make()
    conn.data_received(bolt_req(1, "svc.A") + bolt_req(2, "svc.A"))
    conn.connection_lost(None)
    assert all(ex.done for ex in cl.sent)
    loop.advance(5)
    assert t.out == b""


def test_overflow_and_write_back_pressure() -> None:
    conn, t, _loop, _cl, _m = make(max_pending=1)
    conn.data_received(bolt_req(1, "svc.A") + bolt_req(2, "svc.A"))
    (f,) = t.frames()
    assert f.request_id == 2 and f.status == 4
    conn.pause_writing()
    assert t.paused
    conn.resume_writing()
    assert not t.paused


def test_a_failure_while_answering_still_answers(monkeypatch) -> None:
    conn, t, _loop, cl, _m = make()
    conn.data_received(bolt_req(1, "svc.A"))

    def broken(self: Any, ex: Any, frame: Frame) -> None:
        raise RuntimeError("bug")
    monkeypatch.setattr(DownstreamConnection, "respond", broken)
    cl.sent[0].on_response(response_to(cl.sent[0], b"x"))
    (f,) = t.frames()
    assert f.request_id == 1 and f.status == 16 and conn.inflight == 0


# --- property: whatever the bytes and however they are chunked, answers are exactly once ----

_op = st.one_of(
    st.tuples(st.just("req"), st.sampled_from(["svc.A", "svc.Z"]), st.booleans()),
    st.tuples(st.just("hb"), st.just(""), st.just(False)),
    st.tuples(st.just("junk"), st.binary(min_size=1, max_size=12).map(bytes.hex), st.just(False)),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_op, min_size=1, max_size=12),
       cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=8),
       fates=st.lists(st.sampled_from(["respond", "fail", "timeout", "late"]), min_size=12, max_size=12))
def test_exactly_one_answer_per_request_property(ops: list, cuts: list, fates: list) -> None:
    conn, t, loop, cl, _m = make()
    stream = b""
    expected: list[int] = []        # ids that must be answered if no junk came before them
    junk_at = None
    for k, (op, arg, oneway) in enumerate(ops):
        rid = 1000 + k
        if op == "req":
            stream += bolt_req(rid, arg, oneway=oneway)
            if not oneway and junk_at is None:
                expected.append(rid)
        elif op == "hb":
            stream += bolt_hb(rid)
            if junk_at is None:
                expected.append(rid)
        else:
            junk_at = len(stream) if junk_at is None else junk_at
            stream += bytes.fromhex(arg)
    points = sorted({c for c in cuts if c < len(stream)})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    for piece in pieces:
        conn.data_received(piece)          # never raises
    late = []
    for k, ex in enumerate(list(cl.sent)):
        fate = fates[k % len(fates)]
        if fate == "respond":
            ex.on_response(response_to(ex, b"ok"))
        elif fate == "fail":
            ex.on_failure(Reason.UPSTREAM_RESET, "x")
        elif fate == "late":
            late.append(ex)
    loop.advance(2.0)                      # every route timeout (1 s) has passed
    for ex in late:
        ex.on_response(response_to(ex, b"late"))
    answers: dict[int, int] = {}
    for f in t.frames():
        answers[f.request_id] = answers.get(f.request_id, 0) + 1
    assert all(v == 1 for v in answers.values()), answers      # never twice
    if not t.closed:
        # junk that still frames as bolt may be routed and answered too; but every
        # request before any junk is answered exactly once
        assert all(answers.get(r) == 1 for r in expected), (expected, answers)
        assert conn.inflight == 0
    loop.advance(60.0)                     # a partial frame's frame_timeout closes the connection
    assert all(h.cancelled for h in loop.timers)
    assert len(t.frames()) == sum(answers.values())          # and answers nothing more


def test_synchronous_failures_answer_two_way_and_drop_one_way() -> None:
    conn, t, _loop, cl, _m = make()

    def failing_send(ex: Any, codec: Any) -> None:
        ex.on_failure(Reason.OVERFLOW, "full")
    cl.send = failing_send  # type: ignore[method-assign]
    conn.data_received(bolt_req(1, "svc.A", oneway=True) + bolt_req(2, "svc.A") + bolt_req(3, "svc.A", oneway=True))
    (f,) = t.frames()
    assert f.request_id == 2 and f.status == 4
    assert conn.inflight == 0 and not t.closed


HTTP_ = default_registry().get("http")


def _http_make() -> tuple[DownstreamConnection, FakeTransport, FakeLoop, FakeCluster]:
    loop = FakeLoop()
    cl = FakeCluster()

    def route(frame: Frame) -> Any:
        return FixedRoute("c", 1.0) if frame.headers[":path"].startswith("/a") else None
    lr = ListenerRuntime("l", [HTTP_], route, {"c": cl}, Metrics(), loop)  # type: ignore[arg-type]
    conn = DownstreamConnection(lr)
    t = FakeTransport()
    conn.connection_made(t)
    return conn, t, loop, cl


def _http_responses(data: bytes, n: int) -> list[Frame]:
    d = HTTP_.new_decoder(Role.RESPONSES)
    for _ in range(n):
        d.request_sent(HTTP_.new_decoder(Role.REQUESTS).decode(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"))
    frames, used = d.decode_all(data)
    assert used == len(data)
    return frames


@settings(max_examples=100, deadline=None)
@given(paths=st.lists(st.sampled_from(["/a1", "/a2", "/z"]), min_size=1, max_size=8),
       cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=6),
       fates=st.lists(st.sampled_from(["respond", "fail", "timeout", "late"]), min_size=8, max_size=8),
       order=st.randoms(use_true_random=False))
def test_http_answers_in_request_order_property(paths: list, cuts: list, fates: list, order: Any) -> None:
    conn, t, loop, cl = _http_make()
    stream = b"".join(f"GET {p} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for p in paths)
    points = sorted({c for c in cuts if c < len(stream)})
    for a, b in zip([0, *points], [*points, len(stream)]):
        conn.data_received(stream[a:b])
    exs = list(cl.sent)
    fate_of = {id(ex): fates[k % len(fates)] for k, ex in enumerate(exs)}
    order.shuffle(exs)                     # upstream answers come in any order
    for ex in exs:
        fate = fate_of[id(ex)]
        if fate == "respond":
            path = ex.frame.headers[":path"].encode()
            raw = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(path), path)
            d = HTTP_.new_decoder(Role.RESPONSES)
            d.request_sent(ex.frame)
            ex.on_response(d.decode(raw))
        elif fate == "fail":
            ex.on_failure(Reason.UPSTREAM_RESET, "x")
    loop.advance(2.0)
    got = _http_responses(bytes(t.out), len(paths))
    assert len(got) == len(paths)          # one answer each, nothing more
    fates_in_order = [fate_of[id(ex)] for ex in cl.sent]
    routed = iter(fates_in_order)
    for p, f in zip(paths, got):
        if p == "/z":
            assert f.status == 404
            continue
        fate = next(routed)
        if fate == "respond":
            assert f.status == 200 and bytes(f.body) == p.encode()
        elif fate == "fail":
            assert f.status == 502
        else:
            assert f.status == 504
    assert conn.inflight == 0 and not t.closed


# --- the timeout wheel (issue 6: no call_later per request) ----------------------------------

class _Item:
    def __init__(self, log: list[Any], name: str, loop: FakeLoop) -> None:
        self.log, self.name, self.loop = log, name, loop

    def on_timeout(self) -> None:
        self.log.append((self.name, self.loop.now))


def test_timeout_wheel_fires_never_early_at_most_one_slot_late_and_cancels() -> None:
    from xproto.proxy.timeouts import TimeoutWheel
    loop = FakeLoop()
    w = TimeoutWheel(loop, resolution=0.01)  # type: ignore[arg-type]
    log: list[Any] = []
    a, b, c = (_Item(log, n, loop) for n in "abc")
    w.add(a, 1.003)
    sb = w.add(b, 0.5)
    w.add(c, 1.0)
    assert len([h for h in loop.timers if not h.cancelled]) == 1   # one loop timer, not three
    w.cancel(b, sb)
    loop.advance(0.999)
    assert log == []
    loop.advance(0.001)
    assert [n for n, _ in log] == ["c"]
    loop.advance(0.005)
    assert [n for n, _ in log] == ["c"]                             # 1.005: a's slot ends at 1.01
    loop.advance(0.0051)
    assert [n for n, _ in log] == ["c", "a"] and 1.003 <= log[1][1] <= 1.013
    loop.advance(10)
    assert len(log) == 2 and len(w) == 0
    assert all(h.cancelled for h in loop.timers)                    # nothing left armed


def test_request_timeouts_share_one_loop_timer() -> None:
    conn, t, loop, cl, _m = make()
    for rid in range(1, 51):
        conn.data_received(bolt_req(rid, "svc.A"))
    assert len(cl.sent) == 50
    assert len([h for h in loop.timers if not h.cancelled]) == 1
    loop.advance(1.01)
    assert sorted(f.request_id for f in t.frames()) == list(range(1, 51))
    assert all(f.status == 7 for f in t.frames())
