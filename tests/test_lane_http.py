"""The ping-pong lane for HTTP/1.1 (xproto/proxy/lane_pingpong.py).

Sans-I/O like tests/test_lane.py: a real ListenerRuntime whose single route catches
everything, a real Cluster with its PingPongPools and UpstreamConnections, and real
DownstreamConnections, all on fake transports and a fake clock. Connections the pool opens
are connected by the harness (no socket), at the end of the step that opened them.

The core test is differential: one script of client reads (plain requests, pipelined ones,
requests split over reads, HEAD, ``Connection: close``, chunked bodies, garbage...), clock
ticks, client half-closes and closes, and upstream answers (plain, chunked, 204, 100 Continue,
``Connection: close``, split, reset, never) runs with the lane on and off: every client must
get the same bytes at the same step and be closed at the same step, every upstream
connection must receive the same bytes, and the metrics must be the same. Both head scanners
are covered (``SCANNERS``: the C one when built, with which the lane reads messages with the C
``scan_message``; and ``_scan_head_py`` with the Python closures), and two tests go through
real sockets (an HTTP client, a graceful stop).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import random
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_proxy_helpers import Upstream, arun, listener, metric, proxy, until
from test_proxy_sansio import FakeLoop, FakeTransport

import xproto.codecs.http as http_mod
from xproto.codec import Reason, Role
from xproto.metrics import DURATION_BUCKETS, Metrics
from xproto.pool.batch import Batch
from xproto.pool.cluster import Cluster, ClusterSettings
from xproto.pool.connection import CLOSED, CONNECTING, OPEN, UpstreamConnection
from xproto.proxy.downstream import DownstreamConnection
from xproto.proxy.exchange import Exchange
from xproto.proxy.lane_pingpong import PingPongCall, PingPongLane
from xproto.proxy.listener import ListenerRuntime
from xproto.proxy.server import MetricsPoolStats
from xproto.registry import default_registry
from xproto.router import Route

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.environ.get(http_mod.SLOW_ENV, "") not in ("", "0"),
                       reason="XPROTO_HTTP_SLOW=1: no message scanner, no ping-pong lane"),
]

REG = default_registry()
HTTP = REG.get("http")
SCANNERS = [pytest.param("c", id="c-scan"), pytest.param("py", id="py-scan")]
TIMEOUT = 1.0


@contextlib.contextmanager
def scanner(kind: str) -> Iterator[None]:
    """Select the head scanner for lanes (and decoders) created inside: ``message_scanner``
    captures ``_scan_head`` when the listener builds its lane."""
    if kind == "c" and http_mod._scan_head_c is None:
        pytest.skip("C head scanner not built (or XPROTO_PURE_PYTHON=1)")
    saved = http_mod._scan_head
    http_mod._scan_head = http_mod._scan_head_c if kind == "c" else http_mod._scan_head_py
    try:
        yield
    finally:
        http_mod._scan_head = saved


# --- messages ------------------------------------------------------------------------------------

def request_bytes(kind: str, k: int) -> bytes:
    """Request number ``k`` (its path is ``/r<k>``: the upstream's answer plan is keyed by it)."""
    path = b"/r%d" % k
    body = b"b%d-" % k + b"x" * (k % 5)
    if kind == "get":
        return b"GET %s HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n" % path
    if kind == "ka":
        return b"GET %s HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n" % path
    if kind == "post":
        return b"POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (path, len(body), body)
    if kind == "expect":
        return (b"PUT %s HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n%s"
                % (path, len(body), body))
    if kind == "head":
        return b"HEAD %s HTTP/1.1\r\nHost: h\r\n\r\n" % path
    if kind == "close":
        return b"GET %s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % path
    if kind == "chunked":
        return (b"POST %s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                % (path, len(body), body))
    if kind == "http10":
        return b"GET %s HTTP/1.0\r\nHost: h\r\n\r\n" % path
    if kind == "getbody":
        return b"GET %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (path, len(body), body)
    if kind == "lower":
        return b"PATCH %s HTTP/1.1\r\nhost: h\r\ncontent-length: %d\r\n\r\n%s" % (path, len(body), body)
    if kind == "options":
        return b"OPTIONS %s HTTP/1.1\r\nHost: h\r\n\r\n" % path
    if kind == "tab":                                # outside the fast subset: llhttp
        return b"DELETE %s HTTP/1.1\r\nHost: h\r\nX-T: a\tb\r\n\r\n" % path
    if kind == "big":
        big = body * (3000 // len(body))
        return b"PUT %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (path, len(big), big)
    if kind == "badcl":                              # a 400, then the client is closed
        return b"POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n" % path
    raise AssertionError(kind)


GARBAGE = b"BLAH /nope\r\n\r\n"


def plain(status: int, reason: bytes, body: bytes, head_only: bool = False, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d %s\r\nServer: up\r\n%sContent-Length: %d\r\n\r\n" % (status, reason, extra, len(body))
            + (b"" if head_only else body))


def response_reads(plan: str, method: str, path: str) -> list[bytes]:
    """The upstream's answer to a request, as the reads the proxy gets (``reset`` and
    ``never`` are played by the harness)."""
    head_only = method == "HEAD"
    body = b"<" + path.encode() + b">"
    if plan == "200":
        return [plain(200, b"OK", body, head_only)]
    if plan == "404":
        return [plain(404, b"Not Found", body, head_only)]
    if plan == "503":
        return [plain(503, b"Service Unavailable", body, head_only)]
    if plan == "418":                                # status_to_http: 400
        return [plain(418, b"I m a teapot", body, head_only)]
    if plan == "302":                                # status_to_http: 200
        return [plain(302, b"Found", body, head_only, b"Location: /x\r\n")]
    if plan == "chunked":
        return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + (b"" if head_only else b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))]
    if plan == "204":
        return [b"HTTP/1.1 204 No Content\r\nServer: up\r\n\r\n"]
    if plan == "100":                                # interim, then the final one: two reads
        return [b"HTTP/1.1 100 Continue\r\n\r\n", plain(200, b"OK", body, head_only)]
    if plan == "100+":                               # both in one read
        return [b"HTTP/1.1 100 Continue\r\n\r\n" + plain(200, b"OK", body, head_only)]
    if plan == "close":
        return [plain(200, b"OK", body, head_only, b"Connection: close\r\n")]
    if plan == "split":
        r = plain(200, b"OK", body, head_only)
        return [r[:len(r) // 2], r[len(r) // 2:]]
    if plan == "http10":
        return [b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + (b"" if head_only else body)]
    if plan == "cl0":
        return [plain(200, b"OK", b"", head_only)]
    if plan == "big":
        return [plain(200, b"OK", body * (5000 // len(body)), head_only)]
    if plan == "lower":
        return [b"HTTP/1.1 201 Created\r\ncontent-length: %d\r\n\r\n" % len(body) + (b"" if head_only else body)]
    if plan == "ka":
        return [plain(500, b"Internal Server Error", body, head_only, b"Connection: keep-alive\r\n")]
    if plan == "tab":                                # outside the fast subset: llhttp
        return [plain(200, b"OK", body, head_only, b"X-T: a\tb\r\n")]
    if plan == "junk":                               # not HTTP: the connection is dropped
        return [b"NOT HTTP AT ALL\r\n\r\n"]
    if plan == "double":                             # an answer too many: unknown, dropped
        r = plain(200, b"OK", body, head_only)
        return [r + r]
    if plan == "trail":                              # the start of something more
        return [plain(200, b"OK", body, head_only) + b"HTTP/1.1 2"]
    raise AssertionError(plan)


# --- the sans-I/O harness --------------------------------------------------------------------------

class Up:
    """One upstream connection as the fake server sees it."""

    def __init__(self, conn: UpstreamConnection, t: FakeTransport, index: int) -> None:
        self.conn = conn
        self.t = t
        self.index = index
        self.port = conn.endpoint.port
        self.dec = HTTP.new_decoder(Role.REQUESTS)
        self.wire = bytearray()          # every byte received
        self.todo: deque[Any] = deque()  # requests to answer, oldest first
        self.got: list[Any] = []

    def take(self) -> None:
        out = self.t.out
        if not out:
            return
        frames, used = self.dec.decode_all(bytes(out))
        assert used == len(out), "the upstream got a partial or undecodable request"
        self.wire += out
        out.clear()
        self.got.extend(frames)
        self.todo.extend(frames)


class Cli:
    def __init__(self, down: DownstreamConnection, t: FakeTransport) -> None:
        self.down = down
        self.t = t
        self.eof = False

    @property
    def gone(self) -> bool:
        return self.eof or self.t.closed or self.down.closed

    def send(self, data: bytes) -> None:
        self.down.data_received(data)

    def half_close(self) -> None:
        self.eof = True
        if not self.down.eof_received():
            # asyncio closes the transport when eof_received returns a false value
            self.t.close()
            self.down.connection_lost(None)

    def close(self) -> None:
        self.t.close()
        self.down.connection_lost(None)


class Loop(FakeLoop):
    """The fake clock, with ``call_soon`` (run by ``advance(0)``: the end of a loop turn)."""

    def call_soon(self, cb: Any, *args: Any) -> Any:
        return self.call_later(0.0, cb, *args)


class HH:
    """One listener (catch-all route, timeout ``timeout``), one cluster of ``endpoints``
    endpoints (``conns[i]`` connections opened up front on endpoint ``i``; the pool opens
    more up to ``max_conns``), ``clients`` clients. ``deferred``: upstream writes wait for
    the end of the loop turn, as in the proxy (``Batch(loop)``)."""

    def __init__(self, lane: bool | None = True, *, timeout: float = TIMEOUT, endpoints: int = 1,
                 conns: list[int] | None = None, max_conns: int = 1, cl_max_pending: int = 10000,
                 lb: str = "round_robin", clients: int = 1, autoconnect: bool = True,
                 fixed: bool = True, deferred: bool = False, protocols: tuple[str, ...] = ("http",),
                 idle_timeout: float = 0.0, frame_timeout: float = 30.0) -> None:
        self.loop = Loop()
        self.m = Metrics()
        self.deferred = deferred
        self.batch = Batch(self.loop if deferred else None)
        self.cl = Cluster(ClusterSettings(name="up", endpoints=[("127.0.0.1", i + 1) for i in range(endpoints)],
                                          lb=lb, max_connections=max_conns, max_pending=cl_max_pending),
                          self.loop, self.batch, MetricsPoolStats(self.m, "up"),  # type: ignore[arg-type]
                          rng=random.Random(5))
        self.cl.spawn = self._spawn                              # type: ignore[method-assign]
        route = Route("up", timeout, 0)
        self.drained = 0
        candidates = [REG.get(p) for p in protocols]
        self.lr = ListenerRuntime("l", candidates, lambda f: route, {"up": self.cl}, self.m, self.loop,  # type: ignore[arg-type]
                                  self.batch, fixed_route=route if fixed else None,
                                  on_drained=self._drained, idle_timeout=idle_timeout,
                                  frame_timeout=frame_timeout)
        if lane is not None:         # None: as the environment says (XPROTO_NO_LANE)
            self.lr.lanes_enabled = lane
        self.autoconnect = autoconnect
        self.connecting: list[UpstreamConnection] = []
        self.ups: list[Up] = []
        for ep, n in zip(self.cl.endpoints, conns if conns is not None else [1] * endpoints, strict=True):
            pool = ep.pool_for(HTTP, HTTP.pool_mode)
            for _ in range(n):
                pool.open()
        self.connect()
        self.clients = [self.client() for _ in range(clients)]

    def _drained(self) -> None:
        self.drained += 1

    def _spawn(self, coro: Any) -> None:
        conn = coro.cr_frame.f_locals["conn"]
        coro.close()
        self.connecting.append(conn)

    def connect(self) -> None:
        while self.connecting:
            conn = self.connecting.pop(0)
            if conn.state != CONNECTING:
                continue
            t = FakeTransport()
            self.ups.append(Up(conn, t, len(self.ups)))
            conn.connection_made(t)
        self.take()

    def client(self) -> Cli:
        d = DownstreamConnection(self.lr)
        t = FakeTransport()
        d.connection_made(t)
        return Cli(d, t)

    @property
    def c(self) -> Cli:
        return self.clients[0]

    @property
    def lane(self) -> PingPongLane | None:
        return self.lr._lanes.get(HTTP)

    def pool(self, ep: int = 0) -> Any:
        return self.cl.endpoints[ep].pool_for(HTTP, HTTP.pool_mode)

    def take(self) -> None:
        for up in self.ups:
            up.take()

    def settle(self) -> None:
        """What asyncio would do next: connections the proxy closed are lost, opened ones
        connect (``autoconnect``); then the upstream reads what it was sent."""
        for _ in range(100):
            changed = False
            if self.deferred:
                self.loop.advance(0.0)       # the end of the loop turn: deferred writes go out
            for up in self.ups:
                if up.conn.state == OPEN and up.t.closed:
                    up.conn.connection_lost(None)
                    changed = True
                if up.conn.state == CLOSED:
                    up.todo.clear()
            if self.autoconnect and self.connecting:
                self.connect()
                changed = True
            self.take()
            if not changed:
                return
        raise AssertionError("the harness does not settle")

    def reply(self, up: Up, reads: list[bytes] | str) -> None:
        """The upstream answers on ``up``: reads, or ``reset``."""
        if reads == "reset":
            up.t.close()
            up.conn.connection_lost(None)
            return
        for r in reads:
            if up.conn.state != OPEN:
                break
            up.conn.data_received(r)

    def answer(self, n: int, plans: dict[int, str]) -> int:
        """Answer up to ``n`` requests, oldest first on each connection, connections in
        the order they were opened; the plan comes from the request's path."""
        self.settle()
        done = 0
        for up in self.ups:
            while up.todo and done < n:
                if up.conn.state != OPEN:
                    up.todo.clear()
                    break
                f = up.todo.popleft()
                done += 1
                plan = plans[int(f.meta.path[2:])]
                if plan == "never":
                    continue
                self.reply(up, "reset" if plan == "reset" else response_reads(plan, f.meta.method, f.meta.path))
                self.settle()
        return done

    def outstanding(self) -> int:
        return sum(len(up.todo) for up in self.ups if up.conn.state == OPEN)

    def up_stats(self) -> Any:
        return self.m.upstream("up", "http")

    def metrics(self) -> dict[str, Any]:
        d = self.m.downstream("l", "http")
        u = self.up_stats()
        return {"requests": d.requests, "responses": dict(d.responses), "hist": list(d.hist.counts),
                "hist_sum": round(d.hist.sum, 9), "local": dict(d.local), "decode_errors": d.decode_errors,
                "up_requests": u.requests, "up_responses": dict(u.responses), "unknown": u.unknown,
                "connect_failures": u.connect_failures}

    def outcome(self) -> dict[str, Any]:
        """Everything observable from outside: what each client got and whether it is
        closed, what each upstream connection got, which endpoint it belongs to, whether it
        is still open, the metrics."""
        self.take()
        return {"clients": [(bytes(c.t.out), c.t.closed) for c in self.clients],
                "ups": [(up.port, bytes(up.wire), up.conn.state, up.t.closed) for up in self.ups],
                "metrics": self.metrics(), "drained": self.drained}

    def assert_idle(self) -> None:
        for c in self.clients:
            if not c.down.closed:
                assert c.down.inflight == 0
                assert not c.down.order
            assert not c.down.lane_batches
        assert self.cl.inflight == 0
        assert all(ep.active == 0 for ep in self.cl.endpoints)
        assert all(up.conn.current is None for up in self.ups if up.conn.state == OPEN)
        assert len(self.lr.timeouts) == 0


def both(script: Callable[[HH], Any], **kw: Any) -> tuple[tuple[HH, Any], tuple[HH, Any]]:
    """Run ``script`` on a harness with the lane on, then off; outcomes must agree."""
    hl = HH(True, **kw)
    assert (hl.c.down.lane is not None) == (len(kw.get("protocols", "1")) == 1)
    xl = script(hl)
    hg = HH(False, **kw)
    assert hg.c.down.lane is None
    xg = script(hg)
    assert hl.outcome() == hg.outcome()
    return (hl, xl), (hg, xg)


@contextlib.contextmanager
def lane_counter() -> Iterator[dict[str, int]]:
    """Counts reads the lane forwarded (``requests`` that made a PingPongCall) and answered
    (``responses`` that returned ``n``); patched on the class before lanes are created
    (``conn.fast`` binds ``responses`` on first use)."""
    counts = {"requests": 0, "responses": 0}
    req0, resp0 = PingPongLane.requests, PingPongLane.responses

    def requests(self: PingPongLane, down: DownstreamConnection, data: bytes) -> None:
        before = len(down.lane_batches)
        req0(self, down, data)
        if len(down.lane_batches) > before:
            counts["requests"] += 1

    def responses(self: PingPongLane, conn: UpstreamConnection, src: Any, pos: int, n: int) -> int:
        r = resp0(self, conn, src, pos, n)
        if r == n and r != pos:
            counts["responses"] += 1
        return r

    PingPongLane.requests = requests        # type: ignore[method-assign]
    PingPongLane.responses = responses      # type: ignore[method-assign]
    try:
        yield counts
    finally:
        PingPongLane.requests = req0        # type: ignore[method-assign]
        PingPongLane.responses = resp0      # type: ignore[method-assign]


GET0 = request_bytes("get", 0)


# --- 1. the lane is really taken -------------------------------------------------------------------

@pytest.mark.parametrize("scan", SCANNERS)
@pytest.mark.parametrize("kind,plan,status", [("get", "200", 200), ("post", "404", 404), ("ka", "503", 503),
                                              ("expect", "418", 400), ("get", "302", 200)])
def test_lane_taken_byte_for_byte(scan: str, kind: str, plan: str, status: int,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with scanner(scan):
        req = request_bytes(kind, 0)
        (resp,) = response_reads(plan, "GET", "/r0")

        def script(h: HH) -> Any:
            h.loop.advance(10.0)
            h.c.send(req)
            up = h.ups[0]
            current = up.conn.current
            sent = bytes(up.t.out)
            state = (current.__class__, sent, list(h.c.down.order), h.c.down.inflight, h.cl.inflight,
                     h.cl.endpoints[0].active)
            h.loop.advance(0.003)
            up.conn.data_received(resp)
            h.settle()
            return state, up.conn.current, list(h.pool().free) == [up.conn]

        made: list[Any] = []
        decodes: list[Any] = []
        ex_init = Exchange.__init__
        dec0 = http_mod.HttpDecoder.decode

        def counting_init(self: Exchange, *a: Any) -> None:
            made.append(self)
            ex_init(self, *a)

        def counting_decode(self: Any, *a: Any) -> Any:
            decodes.append(self)
            return dec0(self, *a)
        monkeypatch.setattr(Exchange, "__init__", counting_init)
        monkeypatch.setattr(http_mod.HttpDecoder, "decode", counting_decode)
        with lane_counter() as counts:
            hl = HH(True)
            (cls, sent, order, inflight, cl_inflight, active), current, free = script(hl)
            assert counts == {"requests": 1, "responses": 1}
        # no Exchange, no frame decoded by the proxy (the fake upstream's decoders aside):
        # the lane forwarded the bytes
        harness = {id(up.dec) for up in hl.ups}
        assert made == [] and [d for d in decodes if id(d) not in harness] == []
        assert cls is PingPongCall and sent == req and order == [] and inflight == 1
        assert cl_inflight == 1 and active == 1
        assert current is None and free
        assert bytes(hl.c.t.out) == resp and not hl.c.t.closed
        hl.assert_idle()
        m = hl.metrics()
        assert m["requests"] == 1 and m["responses"] == {status: 1} and m["up_responses"] == {status: 1}
        assert m["up_requests"] == 1 and sum(m["hist"]) == 1 and m["local"] == {}
        assert m["hist_sum"] == pytest.approx(0.003)
        assert m["hist"][bisect_left(DURATION_BUCKETS, 0.003)] == 1
        # the general path, same traffic: an Exchange, the same bytes and metrics
        hg = HH(False)
        (gcls, gsent, *_), _, _ = script(hg)
        assert made and gcls is Exchange and gsent == req
        assert hl.outcome() == hg.outcome()


@pytest.mark.parametrize("scan", SCANNERS)
def test_keep_alive_sequence_stays_on_the_lane(scan: str) -> None:
    """Many requests one after the other from two clients sharing one upstream
    connection: every one on the lane, answers byte for byte, one connection."""
    with scanner(scan), lane_counter() as counts:
        def script(h: HH) -> None:
            for i in range(20):
                c = h.clients[i % 2]
                c.send(request_bytes("post" if i % 3 == 0 else "get", i))
                h.loop.advance(0.001 * (i % 4))
                h.answer(1, {i: ("200", "404", "503")[i % 3]})
        (hl, _), _ = both(script, clients=2)
        assert counts["requests"] == counts["responses"] == 20
        assert len(hl.ups) == 1 and hl.ups[0].conn.state == OPEN
        assert hl.metrics()["requests"] == 20 and sum(hl.metrics()["hist"]) == 20
        hl.assert_idle()


@pytest.mark.parametrize("scan", SCANNERS)
@pytest.mark.parametrize("plan", ["chunked", "204", "100", "100+", "close", "split", "http10"])
def test_declined_responses_leave_the_lane(scan: str, plan: str) -> None:
    """The request goes on the lane; an answer the response scanner declines is answered by
    the general path (the call becomes an Exchange) with the same bytes; except for the
    interim ``100 Continue`` (one read or two), after which the lane takes the final
    response."""
    with scanner(scan), lane_counter() as counts:
        def script(h: HH) -> Any:
            h.c.send(GET0)
            cls = h.ups[0].conn.current.__class__
            h.answer(1, {0: plan})
            h.c.send(request_bytes("get", 1))      # the connection goes on (or not)
            h.answer(1, {1: "200"})
            return cls
        (hl, cls), (hg, gcls) = both(script)
        assert cls is PingPongCall and gcls is Exchange
        # the answer after a declined one: on the lane again unless the upstream connection
        # closed (a new one is opened by the general path)
        want = {"chunked": (2, 1), "204": (2, 1), "100": (2, 2), "100+": (2, 2), "close": (1, 0),
                "split": (2, 1), "http10": (1, 0)}[plan]
        assert (counts["requests"], counts["responses"]) == want
        hl.assert_idle()
        hg.assert_idle()
        # an upstream response that closes its connection closes the client's too (after it)
        reads = response_reads(plan, "GET", "/r0")
        first = reads[0].split(b"\r\n\r\n", 1)[1] if plan == "100+" else b"".join(reads[plan == "100":])
        assert hl.c.t.out.startswith(first)                  # interim responses are not passed on
        assert hl.c.t.closed == (plan in ("close", "http10"))


@pytest.mark.parametrize("scan", SCANNERS)
@pytest.mark.parametrize("kind", ["head", "close", "chunked", "http10", "tab", "two", "one-and-a-half"])
def test_requests_the_lane_declines(scan: str, kind: str) -> None:
    """HEAD, ``Connection: close``, chunked bodies, HTTP/1.0, heads outside the fast subset,
    and reads of more than one request (a free connection waiting for each) take the
    general path."""
    with scanner(scan), lane_counter() as counts:
        def script(h: HH) -> Any:
            if kind == "two":
                h.c.send(request_bytes("get", 0) + request_bytes("get", 1))
            elif kind == "one-and-a-half":
                h.c.send(request_bytes("get", 0) + request_bytes("get", 1)[:10])
            else:
                h.c.send(request_bytes(kind, 0))
            h.settle()
            classes = [u.conn.current.__class__ for u in h.ups if u.got]
            h.answer(2, {0: "200", 1: "200"})
            return classes
        (hl, classes), _ = both(script, max_conns=2, conns=[2])
        assert classes and all(c is Exchange for c in classes) and counts["requests"] == 0
        method = "HEAD" if kind == "head" else "GET"
        assert bytes(hl.c.t.out).startswith(response_reads("200", method, "/r0")[0])
        if kind != "one-and-a-half":
            hl.assert_idle()


def test_lane_request_behind_a_pending_write() -> None:
    """In the proxy, upstream writes wait for the end of the loop turn: a connection freed
    in the same turn (an upstream that answered early) still has a request to write; a
    lane request taking it goes out after that one."""
    tab = request_bytes("tab", 0)                     # the general path
    get = request_bytes("get", 1)                     # the lane

    def script(h: HH) -> Any:
        a, b = h.clients
        a.send(tab)
        up = h.ups[0]
        pending = (up.conn.dirty, bytes(up.t.out))
        up.conn.data_received(response_reads("200", "DELETE", "/r0")[0])   # an early answer
        b.send(get)
        h.settle()
        wire = bytes(up.wire)
        up.todo.popleft()                                   # answered already
        h.answer(1, {1: "200"})
        return pending, wire
    with lane_counter() as counts:
        (hl, (pending, wire)), _ = both(script, clients=2, deferred=True)
    assert pending == (True, b"") and counts["requests"] == counts["responses"] == 1
    assert wire == tab + get
    assert bytes(hl.clients[1].t.out) == response_reads("200", "GET", "/r1")[0]
    hl.assert_idle()


def test_lane_off_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert HH(True).c.down.lane is not None
    assert HH(False).c.down.lane is None
    assert HH(True, fixed=False).c.down.lane is None           # header routes
    monkeypatch.setenv("XPROTO_NO_LANE", "1")
    h = HH(None)
    assert not h.lr.lanes_enabled and h.c.down.lane is None
    monkeypatch.delenv("XPROTO_NO_LANE")
    monkeypatch.setenv("XPROTO_HTTP_SLOW", "1")                 # no message scanner
    assert HTTP.message_scanner(Role.REQUESTS) is None
    h = HH(True)
    assert h.c.down.lane is None
    h.c.send(GET0)
    assert h.ups[0].conn.current.__class__ is Exchange


# --- 2. specific cases -----------------------------------------------------------------------------

def holder(h: HH, path: str) -> Up:
    """The upstream connection the request with ``path`` went to."""
    h.settle()
    (up,) = [u for u in h.ups if any(f.meta.path == path for f in u.got)]
    return up


@pytest.mark.parametrize("scan", SCANNERS)
@pytest.mark.parametrize("conns", [1, 2])
def test_pipelined_request_while_a_lane_call_is_in_flight(scan: str, conns: int) -> None:
    """A second request while the first is on the lane: the first leaves the lane (it keeps
    its place: first in order), the second takes the general path (another connection, free
    or opened), the answers go out in order even when the second comes first."""
    with scanner(scan):
        def script(h: HH) -> Any:
            c = h.c
            c.send(request_bytes("get", 0))
            u0 = holder(h, "/r0")
            first = u0.conn.current.__class__
            h.loop.advance(0.1)
            c.send(request_bytes("post", 1))             # a second request: pipelined
            u1 = holder(h, "/r1")
            assert u1 is not u0
            after = (u0.conn.current.__class__, u1.conn.current.__class__, len(c.down.order), c.down.inflight)
            # the second one is answered first: held until the first is answered
            h.reply(u1, response_reads("404", "POST", "/r1"))
            held = bytes(c.t.out)
            h.loop.advance(0.2)
            h.reply(u0, response_reads("200", "GET", "/r0"))
            h.settle()
            return first, after, held
        (hl, (first, after, held)), (hg, (gfirst, _, gheld)) = both(script, max_conns=2, conns=[conns])
        assert first is PingPongCall and gfirst is Exchange
        assert after == (Exchange, Exchange, 2, 2)    # the lane call left the lane, first in order
        assert held == gheld == b""
        want = response_reads("200", "GET", "/r0")[0] + response_reads("404", "POST", "/r1")[0]
        assert bytes(hl.c.t.out) == want
        hl.assert_idle()
        hg.assert_idle()


@pytest.mark.parametrize("scan", SCANNERS)
def test_deadline_kept_when_a_call_leaves_the_lane(scan: str) -> None:
    """A lane call that becomes an Exchange later (a pipelined request) keeps the deadline
    it had from its arrival; the second request has its own."""
    with scanner(scan):
        def script(h: HH) -> Any:
            c = h.c
            c.send(request_bytes("get", 0))
            h.loop.advance(0.6)
            c.send(request_bytes("get", 1))
            h.settle()
            h.loop.advance(0.41)                          # t = 1.01: the first's deadline
            h.settle()
            one = bytes(c.t.out)
            h.loop.advance(0.4)                           # t = 1.41: not the second's yet
            h.settle()
            still = bytes(c.t.out)
            h.loop.advance(0.2)                           # t = 1.61: the second's
            h.settle()
            return one, still
        (hl, (one, still)), _ = both(script, max_conns=2, conns=[2])
        assert one.startswith(b"HTTP/1.1 504 ") and one.count(b"HTTP/1.1") == 1 and still == one
        assert bytes(hl.c.t.out).count(b"HTTP/1.1 504 ") == 2
        assert hl.metrics()["local"] == {"timeout": 2}
        hl.assert_idle()


@pytest.mark.parametrize("scan", SCANNERS)
def test_timeout_of_a_lane_call(scan: str) -> None:
    with scanner(scan):
        def script(h: HH) -> Any:
            h.c.send(GET0)
            h.loop.advance(TIMEOUT - 0.01)
            before = bytes(h.c.t.out)
            h.loop.advance(0.02)
            closed = h.ups[0].t.closed
            h.settle()
            # the next request: a fresh connection
            h.c.send(request_bytes("get", 1))
            h.settle()
            h.answer(1, {1: "200"})
            return before, closed
        (hl, (before, closed)), (hg, _) = both(script)
        assert before == b"" and closed          # the spent upstream connection is closed
        out = bytes(hl.c.t.out)
        assert out.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n") and b"x-xproto-local-reply: timeout" in out
        assert out.endswith(response_reads("200", "GET", "/r1")[0])
        assert hl.metrics()["local"] == {"timeout": 1} and hl.metrics()["responses"] == {504: 1, 200: 1}
        assert len(hl.ups) == 2 and hl.ups[0].conn.state == CLOSED
        hl.assert_idle()
        hg.assert_idle()


@pytest.mark.parametrize("scan", SCANNERS)
def test_upstream_reset_during_a_lane_call(scan: str) -> None:
    with scanner(scan):
        def script(h: HH) -> Any:
            h.c.send(GET0)
            h.loop.advance(0.05)
            h.reply(h.ups[0], "reset")
            h.settle()
        (hl, _), (hg, _) = both(script)
        out = bytes(hl.c.t.out)
        assert out.startswith(b"HTTP/1.1 502 Bad Gateway\r\n") and not hl.c.t.closed
        assert hl.metrics()["local"] == {"upstream_reset": 1}
        hl.assert_idle()
        hg.assert_idle()


@pytest.mark.parametrize("scan", SCANNERS)
def test_client_gone_during_a_lane_call(scan: str) -> None:
    with scanner(scan):
        def script(h: HH) -> Any:
            h.c.send(GET0)
            had = set(h.c.down.lane_batches)
            h.c.close()
            state = (h.ups[0].t.closed, h.cl.inflight, h.cl.endpoints[0].active, set(h.c.down.lane_batches),
                     len(h.lr.timeouts), h.c.down.inflight)
            h.settle()
            h.loop.advance(TIMEOUT * 3)           # nothing fires for it
            return had, state
        (hl, (had, state)), (_, (_, gstate)) = both(script)
        assert len(had) == 1 and next(iter(had)).__class__ is PingPongCall
        assert state == gstate == (True, 0, 0, set(), 0, 0)
        assert hl.c.t.out == b""
        assert hl.ups[0].conn.state == CLOSED
        hl.assert_idle()


@pytest.mark.parametrize("scan", SCANNERS)
def test_drain_answers_a_lane_call(scan: str) -> None:
    with scanner(scan):
        def script(h: HH) -> Any:
            h.c.send(GET0)
            h.loop.advance(0.05)
            h.lr.draining = True
            h.c.down.drain_now(Reason.NO_HEALTHY_UPSTREAM, "proxy shutting down")
            h.settle()
            h.loop.advance(TIMEOUT * 3)
        (hl, _), (hg, _) = both(script)
        out = bytes(hl.c.t.out)
        assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and out.endswith(b"proxy shutting down\n")
        assert hl.metrics()["local"] == {"no_healthy_upstream": 1}
        assert hl.drained == hg.drained == 1
        assert hl.ups[0].conn.state == CLOSED       # its answer could never come: spent
        hl.assert_idle()


@pytest.mark.parametrize("scan", SCANNERS)
def test_graceful_drain_counts_a_lane_answer(scan: str) -> None:
    """Stopping: the listener drains while a lane call is in flight; its answer from the
    upstream (through the lane) tells the listener the connection has nothing in flight."""
    with scanner(scan), lane_counter() as counts:
        def script(h: HH) -> Any:
            h.c.send(GET0)
            h.lr.draining = True
            before = h.drained
            h.answer(1, {0: "200"})
            return before
        (hl, before), (hg, gbefore) = both(script)
        assert counts["responses"] == 1
        assert before == gbefore == 0 and hl.drained == hg.drained == 1
        assert bytes(hl.c.t.out) == response_reads("200", "GET", "/r0")[0]
        hl.assert_idle()


@pytest.mark.parametrize("scan", SCANNERS)
def test_half_closed_client_gets_its_answer_then_close(scan: str) -> None:
    with scanner(scan):
        def script(h: HH) -> Any:
            h.c.send(GET0)
            h.c.half_close()
            before = h.c.t.closed
            h.answer(1, {0: "200"})
            return before
        (hl, before), _ = both(script)
        assert before is False
        assert bytes(hl.c.t.out) == response_reads("200", "GET", "/r0")[0] and hl.c.t.closed
        assert hl.ups[0].conn.state == OPEN and hl.pool().free == [hl.ups[0].conn]
        hl.assert_idle()


@pytest.mark.parametrize("scan", SCANNERS)
def test_cluster_max_pending_overflow(scan: str) -> None:
    with scanner(scan), lane_counter() as counts:
        def script(h: HH) -> Any:
            a, b = h.clients
            a.send(request_bytes("get", 0))
            b.send(request_bytes("get", 1))           # the cluster is full: overflow
            over = bytes(b.t.out)
            h.answer(5, {0: "200", 2: "200"})
            b.send(request_bytes("get", 2))           # room again
            h.answer(5, {0: "200", 2: "200"})
            return over
        (hl, over), _ = both(script, clients=2, cl_max_pending=1, max_conns=2, conns=[2])
        assert over.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and b"overflow" in over
        assert counts["requests"] == 2
        assert hl.metrics()["local"] == {"overflow": 1}
        hl.assert_idle()


@pytest.mark.parametrize("scan", SCANNERS)
@pytest.mark.parametrize("autoconnect", [True, False])
def test_no_free_upstream_connection_waits_in_the_pool(scan: str, autoconnect: bool) -> None:
    """All connections busy: the request waits in the pool (max connections reached), or
    for the connection the pool opens, and is answered once it frees / connects."""
    with scanner(scan), lane_counter() as counts:
        def script(h: HH) -> Any:
            a, b, c = h.clients
            a.send(request_bytes("get", 0))
            b.send(request_bytes("post", 1))
            c.send(request_bytes("get", 2))
            h.settle()
            waiting = [len(h.pool().waiting), [len(u.todo) for u in h.ups], len(h.connecting)]
            h.answer(1, {0: "200", 1: "404", 2: "200"})     # a's: the connection takes b's
            mid = [bytes(x.t.out) != b"" for x in h.clients]
            h.connect()
            while h.answer(1, {0: "200", 1: "404", 2: "200"}):
                pass
            return waiting, mid
        (hl, (waiting, mid)), (_, (gwaiting, gmid)) = both(script, clients=3, max_conns=1 if autoconnect else 2,
                                                           autoconnect=autoconnect)
        assert waiting == gwaiting and mid == gmid
        if autoconnect:
            assert waiting == [2, [1], 0] and mid == [True, False, False]
        else:
            assert waiting == [1, [1], 1] and mid == [True, False, False]
        assert counts["requests"] == 1
        for i, x in enumerate(hl.clients):
            assert bytes(x.t.out) == response_reads(("200", "404", "200")[i], "GET", f"/r{i}")[0]
        hl.assert_idle()


@pytest.mark.parametrize("lb", ["round_robin", "least_request", "random"])
def test_endpoints_balanced_as_the_general_path(lb: str) -> None:
    """Three endpoints, the third without an open connection at first: the lane picks the
    endpoint per read as the general path does (an endpoint without a free connection is
    held for the general path's pick)."""
    with lane_counter() as counts:
        def script(h: HH) -> Any:
            rng = random.Random(3)
            plans: dict[int, str] = {}
            placed = []
            for k in range(40):
                c = h.clients[k % 4]
                if c.down.inflight == 0:
                    plans[k] = "200"
                    c.send(request_bytes("get", k))
                    h.settle()
                    placed.append([(u.port, len(u.got)) for u in h.ups])
                if rng.random() < 0.5:
                    h.answer(rng.randint(1, 3), plans)
            while h.answer(10, plans):
                pass
            return placed
        (hl, placed), (_, gplaced) = both(script, endpoints=3, conns=[1, 1, 0], max_conns=2, clients=4, lb=lb)
        assert placed == gplaced
        assert counts["requests"] > 10
        ports = {up.port for up in hl.ups if up.got}
        assert ports == {1, 2, 3}
        hl.assert_idle()


def test_body_that_looks_like_a_request_is_not_taken_as_one() -> None:
    """A request whose head came in one read and whose body, a request-looking text, in
    the next: the body is not a request (the lane must not scan a read that continues
    buffered bytes)."""
    inner = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    head = b"POST /r0 HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(inner)

    def script(h: HH) -> Any:
        h.c.send(head)
        h.c.send(inner)
        h.settle()
        got = [bytes(f.raw) for up in h.ups for f in up.got]
        h.answer(1, {0: "200"})
        return got
    (hl, got), _ = both(script, max_conns=2)
    assert got == [head + inner]
    assert bytes(hl.c.t.out) == response_reads("200", "POST", "/r0")[0]     # one answer
    hl.assert_idle()


def test_upstream_back_pressure_holds_the_client() -> None:
    def script(h: HH) -> Any:
        h.ups[0].conn.pause_writing()
        h.c.send(GET0)
        paused = h.c.t.paused
        h.ups[0].conn.resume_writing()
        h.answer(1, {0: "200"})
        return paused, h.c.t.paused
    (hl, got), (_, ggot) = both(script)
    assert got == ggot == (True, False)
    hl.assert_idle()


def test_late_answer_after_timeout_is_not_delivered() -> None:
    """The upstream answers in the read where the deadline passes... after it: the
    connection is already closed by then (a ping-pong connection is spent by a timeout)."""
    def script(h: HH) -> Any:
        h.c.send(GET0)
        h.loop.advance(TIMEOUT + 0.01)
        up = h.ups[0]
        assert up.t.closed
        if up.conn.state == OPEN:           # before asyncio reports the loss
            up.conn.data_received(response_reads("200", "GET", "/r0")[0])
        h.settle()
    (hl, _), _ = both(script)
    assert bytes(hl.c.t.out).startswith(b"HTTP/1.1 504 ")
    assert b"<" not in bytes(hl.c.t.out)
    hl.assert_idle()


def test_two_listeners_share_the_upstream_connection() -> None:
    """Two listeners (two lanes) over one cluster: the connection's hook is the first
    lane's, a call of the second lane is answered to its own client and metrics."""
    h = HH(True)
    route = Route("up", 5.0, 0)
    lr2 = ListenerRuntime("l2", [HTTP], lambda f: route, {"up": h.cl}, h.m, h.loop, h.batch,  # type: ignore[arg-type]
                          fixed_route=route)
    d2 = DownstreamConnection(lr2)
    t2 = FakeTransport()
    d2.connection_made(t2)
    assert d2.lane is not None and d2.lane is not h.c.down.lane
    plans = {0: "200", 1: "404"}
    h.c.send(request_bytes("get", 0))
    h.answer(1, plans)
    assert h.ups[0].conn.fast.__self__ is h.c.down.lane
    d2.data_received(request_bytes("get", 1))
    assert h.ups[0].conn.current.__class__ is PingPongCall and h.ups[0].conn.current.lane is d2.lane
    h.answer(1, plans)
    assert bytes(t2.out) == response_reads("404", "GET", "/r1")[0]
    assert h.m.downstream("l2", "http").responses == {404: 1}
    assert h.m.downstream("l", "http").responses == {200: 1}
    assert h.up_stats().responses == {200: 1, 404: 1}
    assert d2.inflight == 0
    h.assert_idle()


def test_unhealthy_endpoint_as_the_general_path() -> None:
    """A failed connect makes the endpoint unhealthy: its free open connection is not used
    until the back-off passes (the general path's pick), by the lane either."""
    with lane_counter() as counts:
        def script(h: HH) -> Any:
            a, b = h.clients
            plans = {i: "200" for i in range(6)}
            a.send(request_bytes("get", 0))               # the lane, connection 1
            b.send(request_bytes("get", 1))               # the pool opens a second one...
            (conn,) = h.connecting
            h.connecting.clear()
            conn.connect_failed(OSError("refused"))       # ...which fails: 503 to b
            h.answer(1, plans)
            b.send(request_bytes("get", 2))               # unhealthy, backing off: 503
            h.loop.advance(0.6)
            b.send(request_bytes("get", 3))               # may be tried again
            h.answer(1, plans)
            a.send(request_bytes("get", 4))
            h.answer(1, plans)
            return h.cl.endpoints[0].healthy
        (hl, healthy), _ = both(script, clients=2, max_conns=2, autoconnect=False)
        assert healthy is False and counts["requests"] == 1
        assert hl.metrics()["local"] == {"no_healthy_upstream": 2}
        assert hl.metrics()["connect_failures"] == 1
        hl.assert_idle()


def test_no_endpoint_available() -> None:
    """Every endpoint backing off after failed connects: no pick, the general path's 503;
    once the back-off passes, the general path uses their open connections (an endpoint is
    unhealthy until a connect succeeds: the lane leaves it to the general path)."""
    with lane_counter() as counts:
        def script(h: HH) -> Any:
            for ep in h.cl.endpoints:
                ep.failed(h.loop.time())
            h.c.send(request_bytes("get", 0))
            h.loop.advance(0.6)
            h.c.send(request_bytes("get", 1))
            h.answer(1, {1: "200"})
        (hl, _), _ = both(script, endpoints=2, conns=[1, 1])
        out = bytes(hl.c.t.out)
        assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and b"no_healthy_upstream" in out
        assert out.endswith(response_reads("200", "GET", "/r1")[0])
        assert counts["requests"] == 0        # unhealthy until a connect succeeds: general path
        hl.assert_idle()


def test_lane_after_protocol_detection() -> None:
    """A listener with two protocols: the first read too short to tell (the frame timer is
    armed), the next one completes the request, which takes the lane; the frame timer is
    cancelled as on the general path (it would close the client 30 s later)."""
    with lane_counter() as counts:
        def script(h: HH) -> Any:
            c = h.c
            req = request_bytes("get", 0)
            c.send(req[:2])
            armed = c.down.frame_timer is not None
            c.send(req[2:])
            h.answer(1, {0: "200"})
            h.loop.advance(h.lr.frame_timeout + 10)
            return armed, c.down.frame_timer
        (hl, (armed, timer)), _ = both(script, protocols=("http", "dubbo"))
        assert armed and timer is None
        assert counts["requests"] == counts["responses"] == 1
        assert bytes(hl.c.t.out) == response_reads("200", "GET", "/r0")[0] and not hl.c.t.closed
        hl.assert_idle()



# --- 3. differential: lane vs general path ---------------------------------------------------------

_KINDS = ["get"] * 8 + ["ka", "post", "post", "expect", "head", "close", "chunked", "http10", "getbody",
                        "lower", "options", "tab", "big", "badcl"]
_PLANS = ["200"] * 12 + ["404", "503", "418", "302", "chunked", "204", "100", "100+", "close", "split",
                         "http10", "reset", "never", "cl0", "big", "lower", "ka", "tab", "junk", "double", "trail"]
#: one: a request from a client with nothing in flight (else an answer); push: a request
#: whatever is in flight (pipelining); pipe: two requests in one read; split: one request in
#: two reads; draining: the listener starts draining (the proxy stops; requests go on);
#: stray: a response on an idle upstream connection; pause: the first upstream connection's
#: send buffer fills up / drains (a paused client sends nothing); half: the start of a
#: request, never completed (the frame timeout may close the client)
_OPS = ["one"] * 10 + ["answer"] * 8 + ["push", "push", "pipe", "pipe", "split", "split", "garbage", "tick",
                                         "tick", "eof", "close", "reset", "draining", "stray", "pause", "half"]
_REQ = st.tuples(st.sampled_from(_KINDS), st.sampled_from(_PLANS))
#: name, client, request, second request, cut, tick, how many answers
_OP = st.tuples(st.sampled_from(_OPS), st.integers(0, 1), _REQ, _REQ, st.integers(1, 80),
                st.sampled_from([0.0, 0.3, 0.6, 1.1]), st.integers(1, 3))


def run_script(lane: bool, ops: list[tuple[Any, ...]], *, max_conns: int, conns: int,
               cl_max_pending: int, drain: bool, deferred: bool, endpoints: int = 1,
               lb: str = "round_robin", idle_timeout: float = 0.0,
               frame_timeout: float = 30.0) -> tuple[HH, dict[str, Any], list[Any]]:
    h = HH(lane, clients=2, max_conns=max_conns, conns=[conns] * endpoints, cl_max_pending=cl_max_pending,
           deferred=deferred, endpoints=endpoints, lb=lb, idle_timeout=idle_timeout,
           frame_timeout=frame_timeout)
    plans: dict[int, str] = {}
    trace: list[Any] = []

    def req(spec: tuple[str, str]) -> bytes:
        k = len(plans)
        plans[k] = spec[1]
        return request_bytes(spec[0], k)

    for name, ci, r1, r2, cut, dt, n in ops:
        c = h.clients[ci]
        if name == "one" and c.down.inflight:
            name, n = "answer", 1
        if name in ("one", "push", "pipe", "split", "half", "garbage"):
            if not c.gone and not c.t.paused:         # a paused transport reads nothing
                if name in ("one", "push"):
                    c.send(req(r1))
                elif name == "pipe":
                    c.send(req(r1) + req(r2))
                elif name == "split":
                    data = req(r1)
                    cut = min(cut, len(data) - 1)
                    c.send(data[:cut])
                    h.loop.advance(0.01)
                    c.send(data[cut:])
                elif name == "half":                 # the rest never comes
                    data = req(r1)
                    c.send(data[:min(cut, len(data) - 1)])
                else:
                    c.send(GARBAGE)
        elif name == "answer":
            h.answer(n, plans)
        elif name == "tick":
            h.loop.advance(dt)
        elif name == "eof":
            if not c.gone:
                c.half_close()
        elif name == "close":
            if not c.t.closed:
                c.close()
        elif name == "draining":                 # the proxy stops: answers still count
            h.lr.draining = True
        elif name == "stray":
            idle = [up for up in h.ups if up.conn.state == OPEN and not up.todo and up.conn.current is None]
            if idle:
                h.reply(idle[0], [plain(200, b"OK", b"stray")])
        elif name == "pause":
            live = [up for up in h.ups if up.conn.state == OPEN]
            if live:
                if live[0].conn.paused:
                    live[0].conn.resume_writing()
                else:
                    live[0].conn.pause_writing()
        elif name == "reset":
            live = [up for up in h.ups if up.conn.state == OPEN and up.todo]
            if live:
                h.reply(live[0], "reset")
        h.settle()
        trace.append(tuple((len(c.t.out), c.t.closed, c.t.paused) for c in h.clients))
    for up in h.ups:
        if up.conn.state == OPEN and up.conn.paused:
            up.conn.resume_writing()
    if drain:
        h.lr.draining = True
        for c in h.clients:
            if not c.down.closed:
                c.down.drain_now(Reason.NO_HEALTHY_UPSTREAM, "proxy shutting down")
        h.settle()
        trace.append(tuple((len(c.t.out), c.t.closed) for c in h.clients))
    # the end: everything answered (or timed out), in bounded rounds
    for _ in range(len(plans) + 3):
        while h.answer(10**6, plans):
            pass
        h.loop.advance(TIMEOUT + 0.5)
        h.settle()
        if not h.outstanding() and not any(c.down.inflight for c in h.clients if not c.down.closed):
            break
    trace.append(tuple((len(c.t.out), c.t.closed) for c in h.clients))
    out = h.outcome()
    h.assert_idle()
    for c in h.clients:
        if not c.down.closed:
            c.close()
    h.settle()
    h.assert_idle()
    return h, out, trace


LANE_USED = {"requests": 0, "responses": 0}


@pytest.mark.parametrize("scan", SCANNERS)
def test_differential_lane_vs_general_path(scan: str) -> None:
    with scanner(scan):
        used = {"requests": 0, "responses": 0}

        @settings(max_examples=600, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
        @given(ops=st.lists(_OP, min_size=8, max_size=40),
               max_conns=st.sampled_from([1, 1, 2, 3]),
               conns=st.sampled_from([0, 1, 1, 2]),
               cl_max_pending=st.sampled_from([10000, 10000, 10000, 1, 2]),
               drain=st.booleans(), deferred=st.booleans(),
               endpoints=st.sampled_from([1, 1, 2]),
               lb=st.sampled_from(["round_robin", "least_request", "random"]),
               timers=st.sampled_from([(0.0, 30.0), (0.0, 30.0), (0.9, 30.0), (0.0, 0.5), (0.7, 0.4)]))
        def prop(ops: list[Any], max_conns: int, conns: int, cl_max_pending: int, drain: bool,
                 deferred: bool, endpoints: int, lb: str, timers: tuple[float, float]) -> None:
            kw = {"max_conns": max_conns, "conns": min(conns, max_conns), "cl_max_pending": cl_max_pending,
                  "drain": drain, "deferred": deferred, "endpoints": endpoints, "lb": lb,
                  "idle_timeout": timers[0], "frame_timeout": timers[1]}
            with lane_counter() as counts:
                _hl, ol, tl = run_script(True, ops, **kw)
            for k in used:
                used[k] += counts[k]
            _hg, og, tg = run_script(False, ops, **kw)
            assert tl == tg          # the same bytes at each step, closes at the same step
            assert ol == og          # bytes, closes, upstream bytes per connection, metrics

        prop()
        # the lane answered something over the run (not a vacuous comparison)
        assert used["requests"] > 0 and used["responses"] > 0, used
        print("lane use over the examples:", used)


# --- 4. real sockets -------------------------------------------------------------------------------

def test_sockets_keep_alive_clients_through_the_lane() -> None:
    httpx = pytest.importorskip("httpx")
    nclients, per = 4, 50

    def respond(f: Any) -> bytes:
        body = b"pong " + f.meta.path.encode()
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def body(counts: dict[str, int]) -> None:
        up = await Upstream("http", respond).start()
        cfg = {"listeners": [listener(["http"], [{"cluster": "a", "timeout": "5s"}])],
               "clusters": [{"name": "a", "endpoints": [up.addr]}]}
        async with proxy(cfg) as p:
            host, port = p.listener_address("main")

            async def client(ci: int) -> list[tuple[int, bytes]]:
                got = []
                limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
                async with httpx.AsyncClient(base_url=f"http://{host}:{port}", limits=limits,
                                             timeout=5.0) as s:
                    for i in range(per):
                        r = await s.get(f"/c{ci}/{i}")
                        got.append((r.status_code, r.content))
                return got

            results = await asyncio.gather(*(client(ci) for ci in range(nclients)))
            for ci, got in enumerate(results):
                assert got == [(200, b"pong /c%d/%d" % (ci, i)) for i in range(per)]
            total = nclients * per
            lr = p.listeners["main"]
            assert lr._lanes and all(v is not None for v in lr._lanes.values())
            assert metric(p, "xproto_downstream_requests_total", listener="main", protocol="http", api="") == total
            assert metric(p, "xproto_downstream_responses_total", listener="main", protocol="http",
                          status="200") == total
            assert metric(p, "xproto_request_duration_seconds_count", listener="main", protocol="http",
                          api="") == total
            assert metric(p, "xproto_upstream_requests_total", cluster="a", protocol="http") == total
            assert metric(p, "xproto_upstream_responses_total", cluster="a", protocol="http",
                          status="200") == total
            assert metric(p, "xproto_local_replies_total", listener="main", protocol="http",
                          reason="timeout") == 0
            assert p.clusters["a"].inflight == 0
            assert all(d.inflight == 0 and not d.lane_batches for d in lr.connections)
            assert len(up.requests()) == total
            # one request per read from keep-alive clients: the lane forwarded them and
            # answered them (a read the kernel split or merged would take the general path)
            assert counts["requests"] >= total * 0.9, counts
            assert counts["responses"] >= total * 0.9, counts
        await up.close()

    with lane_counter() as counts:
        arun(body(counts), timeout=30.0)


def test_sockets_stop_waits_for_a_lane_call_then_returns() -> None:
    """A graceful stop while a lane call is in flight: the upstream's answer reaches the
    client and ends the drain at once (not after the grace period)."""
    def respond(f: Any) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"

    async def body(counts: dict[str, int]) -> None:
        up = await Upstream("http", respond).start()
        up.delay = 0.3
        cfg = {"listeners": [listener(["http"], [{"cluster": "a", "timeout": "5s"}])],
               "clusters": [{"name": "a", "endpoints": [up.addr]}]}
        async with proxy(cfg) as p:
            reader, writer = await asyncio.open_connection(*p.listener_address("main"))
            want = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"
            writer.write(GET0)          # the first opens the upstream connection (general path)
            assert await asyncio.wait_for(reader.readexactly(len(want)), 5) == want
            writer.write(request_bytes("get", 1))
            await until(lambda: len(up.requests()) == 2)
            assert counts["requests"] == 1
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await p.stop(8.0)
            took = loop.time() - t0
            assert await asyncio.wait_for(reader.read(1000), 5) == want
            assert counts["responses"] == 1
            assert took < 4.0, took        # the answer ended the drain, not the 8 s grace
            writer.close()
        await up.close()

    with lane_counter() as counts:
        arun(body(counts), timeout=30.0)


@pytest.mark.parametrize("scan", SCANNERS)
@pytest.mark.parametrize("stray", [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nstale",
                                   b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA",
                                   b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"])
def test_bytes_with_no_request_in_flight_drop_the_connection(scan: str, stray: bytes) -> None:
    """A ping-pong upstream connection that gets bytes while nothing is in flight (a
    duplicated or stray answer, a 408 before an idle close) is out of step: it leaves the
    pool and closes, and the next request gets its own answer on a fresh connection."""
    with scanner(scan):
        def script(h: HH) -> Any:
            h.c.send(GET0)
            h.answer(1, {0: "200"})
            first = h.ups[0]
            first.conn.data_received(stray)        # nothing in flight
            h.settle()
            h.c.send(request_bytes("get", 1))
            h.settle()
            h.answer(1, {1: "200"})
            return first.conn.state, len(h.ups)
        (hl, (state, n)), (hg, (gstate, gn)) = both(script, autoconnect=True)
        assert state == gstate == CLOSED and n == gn == 2
        out = bytes(hl.c.t.out)
        assert b"stale" not in out and out.count(b"HTTP/1.1 200 OK") == 2
        assert hl.metrics()["unknown"] == 1
        hl.assert_idle()
        hg.assert_idle()
