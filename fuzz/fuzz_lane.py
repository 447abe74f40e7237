"""Atheris harness for the proxy's fast lanes (xproto/proxy/lane.py, xproto/proxy/_lane.c;
HTTP/1.1: xproto/proxy/lane_pingpong.py).

A real :class:`~xproto.proxy.listener.ListenerRuntime` whose single route catches everything,
a real :class:`~xproto.pool.cluster.Cluster` with one endpoint and one open
:class:`~xproto.pool.connection.UpstreamConnection`, and a real
:class:`~xproto.proxy.downstream.DownstreamConnection`, all on fake transports and a fake
clock (no sockets). The downstream is fed the input in chunks; between chunks a seeded
schedule plays the upstream (answers some requests it received, with random statuses, some
corrupted, truncated, duplicated or for unknown ids, raw fuzz bytes), the clock, upstream
loss (then a fresh connection), client half-close / close and shutdown drain. Layout:

    byte 0   bit 0: protocol (dubbo / bolt); bit 1: C loops / pure-Python loops (C when
             built); bit 2: small limits / defaults; bit 3: listener max_pending 4 / 10000;
             bit 4: route timeout 1 s / 15 s (the default); bit 5: thrift (framed; overrides
             bit 0); bit 6: HTTP/1.1 through the ping-pong lane (overrides bits 0 and 5, see
             below)
    byte 1   seed of the schedule (chunk sizes, events, statuses)
    rest     the downstream byte stream

HTTP mode (bit 6): the cluster's ping-pong pool opens connections as it needs them (the
schedule connects them, or fails some connects); a second, background client sends plain
GETs one at a time (it shares the pool: requests wait for a connection, the cluster's cap,
connections freed by the other client's answers); the upstream answers each request it got,
oldest first per connection, with a plain ``Content-Length`` response (any status), chunked,
``204``/``304``, ``100 Continue`` then the final one (one read or two), ``Connection:
close``, HTTP/1.0, a head outside the fast subset, or a body delimited by closing the
connection; some answers are split over reads or never come; in 30% of the runs (the
schedule's seed decides) the upstream also misbehaves: answers duplicated, bit-flipped,
truncated, preceded by garbage, stray responses on idle connections. The other bits:

    bit 0: max connections per endpoint 3 (two open at first) / 1; bit 1: head scanner
    in Python (``_scan_head_py``) / C (when built; the lane then uses the C
    ``scan_message``); bit 2: small HTTP limits; bit 3: listener max_pending 4 (pipelined
    requests); bit 4: route timeout 1 s / 15 s; bit 5: cluster max_pending 1 / 10000;
    bit 7: upstream writes deferred to the end of the loop turn (``Batch(loop)``, as in
    the proxy)

Invariants (anything else is a crash):
* only ``xproto.errors.ProtocolError`` may escape (and in fact none should);
* while the connection is open, answers written for a client id never outnumber the requests
  with that id that expect one (ids may repeat in the input); nothing is written after close;
* the output decodes as whole response frames of the protocol;
* once the client connection is closed, no lane tuple of it is left in any upstream
  ``pending`` (checked at once, before late answers or timeouts could clean up);
* at the end (everything still pending answered, the clock past every timeout, then the
  client gone): ``down.inflight == 0`` and no lane batch kept, or the connection closed;
  ``cluster.inflight == 0``, every endpoint's ``active == 0``, no lane tuple of a closed
  downstream left in any upstream ``pending``, the timeout wheel empty.

HTTP mode, further: every request the upstream receives is one a client sent, byte for
byte; the cluster's ``max_pending`` holds; no request waits in the pool while a connection
is idle; an idle connection is in the pool's free list; no upstream connection still open
has a request of a closed client in flight or waiting in the pool; a closed client keeps no
lane call; after ``drain_now`` nothing is in flight; while draining, the answer that leaves
a client with nothing in flight tells the listener; an upstream answer saying ``Connection:
close`` closes that upstream connection; a half-closed client is closed once answered. In
runs where the upstream behaves: each client's output decodes as final responses (interim
ones are not passed on), no more than its whole requests (plus one local ``400`` for bad
bytes), nothing after an answer that closes the connection (which is then closed); each
response answers the request at the same position in that client's stream (``x-req``:
CRC-32 of the request); every answer the upstream sent reaches the (open) client; at the end
an open client has exactly one answer per whole request; the ``responses`` metrics (by
status), the duration histogram and the upstream ``responses`` grew by the answers written.
At the end: ``cluster.inflight == 0``, ``active == 0``, no connection busy, nothing waiting
in the pool, the timeout wheel empty.

(A misbehaving upstream can make a ping-pong connection frame the next request's answer with
bytes it sent when nothing was asked: the general path's behaviour, lane or not; those runs
check the pool and lane state only.)

Every loop is bounded by the input length; libFuzzer's ``-timeout`` (fuzz/run.py: 10 s)
catches hangs.

Run: python fuzz/fuzz_lane.py fuzz/corpus/lane -dict=fuzz/dicts/lane.dict -timeout=10
     python fuzz/fuzz_lane.py --make-corpus      # (re)write the seeds in fuzz/corpus/lane/
     python fuzz/fuzz_lane.py --make-http-corpus # (re)write only the HTTP seeds (http-*)
"""
from __future__ import annotations

# heavy dependencies first, uninstrumented: only xproto's code is traced
import asyncio  # noqa: F401
import heapq
import logging
import random
import struct
import sys
import zlib
from bisect import bisect_right
from collections import deque
from pathlib import Path
from typing import Any

import atheris
import prometheus_client  # noqa: F401
import pydantic  # noqa: F401
import yaml  # noqa: F401

import xproto.config
import xproto.metrics
import xproto.registry

with atheris.instrument_imports(include=["xproto"]):
    import xproto.codecs.bolt as B
    import xproto.codecs.dubbo
    import xproto.codecs.http as http_mod
    import xproto.codecs.thrift as T
    import xproto.pool.cluster
    import xproto.pool.connection
    import xproto.proxy.downstream
    import xproto.proxy.exchange
    import xproto.proxy.lane as lane_mod
    import xproto.proxy.lane_pingpong  # the HTTP mode's lane, instrumented
    import xproto.proxy.timeouts
    from xproto.codec import Reason, Role
    from xproto.errors import ProtocolError
    from xproto.frame import Kind
    from xproto.limits import Limits
    from xproto.metrics import Metrics
    from xproto.pool.batch import Batch
    from xproto.pool.cluster import Cluster, ClusterSettings
    from xproto.pool.connection import UpstreamConnection
    from xproto.proxy.downstream import DownstreamConnection
    from xproto.proxy.listener import ListenerRuntime
    from xproto.proxy.server import MetricsPoolStats
    from xproto.registry import load_registry
    from xproto.router import Route

logging.disable(logging.CRITICAL)   # bad bytes are expected; logs would flood the run
REGISTRY = load_registry(autoload=False)
PROTOS = ("dubbo", "bolt")
CODECS = {n: REGISTRY.get(n) for n in (*PROTOS, "thrift", "http")}
BOLT = CODECS["bolt"]
NATIVE = lane_mod._NATIVE
#: small limits so that huge declared lengths are reached with short inputs
SMALL = Limits(dubbo_max_body=512, bolt_max_frame=512, bolt_max_header_block=128,
               thrift_max_frame=512, thrift_max_name=64)
DEFAULT = Limits()
DHEADER = struct.Struct(">HBBqI")
DUBBO_STATUSES = (20, 20, 30, 40, 50, 60, 70, 80, 90, 100, 0, 255)
BOLT_STATUSES = (0, 0, 1, 2, 4, 7, 8, 16, 17, 300, 0xFFFF)
#: thrift: 0 = a reply, else an exception reply of that TApplicationException type
THRIFT_STATUSES = (0, 0, 0, 1, 6, 7)
#: past every deadline: route timeout (or the general path's default), frame timeout
FAR = 100.0
METRICS = Metrics()


class Crash(AssertionError):
    pass


class FakeHandle:
    __slots__ = ("args", "cancelled", "cb", "seq", "when")

    def __init__(self, when: float, seq: int, cb: Any, args: tuple[Any, ...]) -> None:
        self.when, self.seq, self.cb, self.args, self.cancelled = when, seq, cb, args, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: FakeHandle) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class FakeTask:
    def add_done_callback(self, cb: Any) -> None:
        pass

    def cancel(self) -> None:
        pass


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.seq = 0
        self.timers: list[FakeHandle] = []
        self.spawned = 0
        #: HTTP mode: connections the pool opens wait here for the schedule (connect or fail)
        self.accept: list[Any] | None = None

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, cb: Any, *args: Any) -> FakeHandle:
        self.seq += 1
        h = FakeHandle(self.now + delay, self.seq, cb, args)
        heapq.heappush(self.timers, h)
        return h

    def call_at(self, when: float, cb: Any, *args: Any) -> FakeHandle:
        return self.call_later(when - self.now, cb, *args)

    def call_soon(self, cb: Any, *args: Any) -> FakeHandle:
        return self.call_later(0.0, cb, *args)

    def create_task(self, coro: Any) -> FakeTask:
        """A connect the cluster starts: never succeeds (the harness opens connections
        itself); it fails after the connect timeout, as ``asyncio.wait_for`` makes it."""
        self.spawned += 1
        conn = coro.cr_frame.f_locals.get("conn") if coro.cr_frame is not None else None
        coro.close()
        if conn is not None:
            if self.accept is not None:
                self.accept.append(conn)
            else:
                self.call_later(1.0, conn.connect_failed, TimeoutError("fuzz: connect timeout"))
        return FakeTask()

    def advance(self, dt: float) -> None:
        self.now += dt
        fired = 0
        while self.timers and self.timers[0].when <= self.now:
            h = heapq.heappop(self.timers)
            if not h.cancelled:
                fired += 1
                if fired > 100_000:
                    raise Crash("timers keep re-arming: a busy loop")
                h.cb(*h.args)


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        if self.closed:
            raise Crash("write after close")
        self.out += data

    def writelines(self, seq: Any) -> None:
        for d in seq:
            self.write(d)

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
        return ("fuzz", 0) if name == "peername" else None


def _thrift_framed(msg: bytes) -> bytes:
    return struct.pack(">I", len(msg)) + msg


def response(proto: str, uid: int, status: int, body: bytes) -> bytes:
    if proto == "thrift":
        sid = uid & 0xFFFFFFFF
        sid = sid - (1 << 32) if sid >= 1 << 31 else sid
        if status:
            return _thrift_framed(T.build_message(T.Proto.BINARY, "say", 3, sid,
                                                  T.app_exception_struct(T.Proto.BINARY, "x", status)))
        res = b"\x0b\x00\x00" + struct.pack(">I", len(body)) + body + b"\x00"
        return _thrift_framed(T.build_message(T.Proto.BINARY, "say", 2, sid, res))
    if proto == "dubbo":
        rid = uid - (1 << 64) if uid >= 1 << 63 else uid
        b = b"R" + body
        return DHEADER.pack(0xDABB, 2, status & 0xFF, rid, len(b)) + b
    return BOLT.build(type=B.TYPE_RESPONSE, cmdcode=B.CMD_RESPONSE, request_id=uid & 0xFFFFFFFF,
                      status=status & 0xFFFF, content=b"R" + body)


class World:
    """One listener, one cluster with one endpoint and one open upstream connection, one client."""

    def __init__(self, mode: int) -> None:
        self.proto = "thrift" if mode & 32 else PROTOS[mode & 1]
        self.codec = codec = CODECS[self.proto]
        self.limits = SMALL if mode & 4 else DEFAULT
        self.loop = loop = FakeLoop()
        batch = Batch()
        self.cl = Cluster(ClusterSettings(name="up", endpoints=[("127.0.0.1", 1)]),
                          loop, batch, MetricsPoolStats(METRICS, "up"))  # type: ignore[arg-type]
        route = Route("up", 1.0 if mode & 16 else 15.0, 0)   # config: always a timeout
        self.lr = ListenerRuntime("l", [codec], lambda f: route, {"up": self.cl}, METRICS,
                                  loop, batch, limits=self.limits,  # type: ignore[arg-type]
                                  max_pending=4 if mode & 8 else 10000, fixed_route=route,
                                  frame_timeout=5.0)
        self.lr.lanes_enabled = True
        self.ep = self.cl.endpoints[0]
        self.ups: list[tuple[UpstreamConnection, FakeTransport, Any, list[int]]] = []
        self.open_upstream()
        self.down = DownstreamConnection(self.lr)
        self.dt = FakeTransport()
        self.down.connection_made(self.dt)
        self.resp_dec = codec.new_decoder(Role.RESPONSES)
        self.out_pos = 0
        #: answers seen per client id (while the connection was open)
        self.answered: dict[int, int] = {}

    def open_upstream(self) -> None:
        pool = self.ep.pool_for(self.codec, self.codec.pool_mode)
        up = UpstreamConnection(pool, self.codec, pool.multiplex)
        pool.conns.append(up)
        t = FakeTransport()
        up.connection_made(t)
        # [conn, transport, decoder of what it received, two-way upstream ids outstanding]
        self.ups.append((up, t, self.codec.new_decoder(Role.REQUESTS), []))

    def up_now(self) -> tuple[UpstreamConnection, FakeTransport, Any, list[int]]:
        return self.ups[-1]

    def take_upstream(self) -> None:
        """What each upstream connection received: two-way requests to answer."""
        for up, t, dec, outstanding in self.ups:
            if not t.out:
                continue
            frames, used = dec.decode_all(bytes(t.out))
            if used != len(t.out):
                raise Crash(f"upstream got {len(t.out) - used} undecodable bytes")
            t.out.clear()
            for f in frames:
                if f.kind is Kind.REQUEST and not f.heartbeat:
                    outstanding.append(f.request_id & ((1 << 64) - 1))
                elif f.kind is Kind.RESPONSE and not f.heartbeat:
                    # (a heartbeat reply answers the upstream's heartbeat: fine)
                    raise Crash(f"a response sent upstream: {bytes(f.raw[:24]).hex()}")

    def answer(self, rng: random.Random, count: int, fuzz: bytes, clean: bool = False) -> None:
        up, _t, _dec, outstanding = self.up_now()
        if up.state != xproto.pool.connection.OPEN:
            return
        self.take_upstream()
        rng.shuffle(outstanding)
        picked = outstanding[:count]
        del outstanding[:count]
        statuses = {"dubbo": DUBBO_STATUSES, "bolt": BOLT_STATUSES}.get(self.proto, THRIFT_STATUSES)
        data = bytearray()
        for uid in picked:
            r = response(self.proto, uid, rng.choice(statuses), fuzz[:rng.randrange(4)])
            k = 9 if clean else rng.randrange(24)
            if k == 0:
                r = r[:rng.randrange(len(r))] if rng.random() < 0.5 else r   # truncated (stream cut)
                data += r
                up.data_received(bytes(data))
                return
            if k == 1:
                data += r + r                        # duplicated
            elif k == 2:
                data += response(self.proto, uid ^ (1 + rng.randrange(1000)), 0, b"")  # unknown id
                data += r
            elif k == 3 and fuzz:
                data += fuzz[: 1 + rng.randrange(min(len(fuzz), 32))]        # garbage
                data += r
            elif k == 4:
                b = bytearray(r)
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)           # one bit flipped
                data += b
            else:
                data += r
        while data:
            n = rng.randint(1, len(data)) if rng.random() < 0.3 else len(data)
            up.data_received(bytes(data[:n]))
            del data[:n]
            if up.state != xproto.pool.connection.OPEN:
                break

    def check_no_stale(self) -> None:
        """A closed client's lane requests leave ``pending`` at once (as Exchange.abandon)."""
        for c, _t, _d, _o in self.ups:
            stale = [k for k, e in c.pending.items() if e.__class__ is tuple and e[0].down.closed]
            if stale:
                raise Crash(f"{len(stale)} lane tuples of a closed client left in pending")

    def check_output(self, nreq: dict[int, int]) -> None:
        """New output: whole response frames; answers per id <= requests with that id."""
        out = self.dt.out
        if self.out_pos >= len(out):
            return
        frames, used = self.resp_dec.decode_all(bytes(out[self.out_pos:]))
        self.out_pos += used
        for f in frames:
            if f.kind is not Kind.RESPONSE:
                raise Crash(f"a {f.kind} frame written to the client")
            n = self.answered.get(f.request_id, 0) + 1
            self.answered[f.request_id] = n
            if not self.down.closed and n > nreq.get(f.request_id, 0):
                raise Crash(f"id {f.request_id} answered {n} times for {nreq.get(f.request_id, 0)} requests")


def client_requests(codec: Any, limits: Limits, stream: bytes) -> tuple[dict[int, int], int, list[int]]:
    """Per client id: how many requests in the stream expect an answer (heartbeats too);
    plus 1 when the stream ends in bytes the decoder rejects (their local error reply may
    carry any id); plus where the whole frames end (reads of whole frames take the C loop's
    one-call path)."""
    dec = codec.new_decoder(Role.REQUESTS, limits)
    counts: dict[int, int] = {}
    ends: list[int] = []
    pos = 0
    for _ in range(len(stream) + 1):
        try:
            f = dec.decode(stream, pos)
        except ProtocolError as e:
            hint = getattr(e, "reply_hint", None)
            rid = getattr(hint, "request_id", None) if hint is not None else None
            if rid is not None:
                counts[rid] = counts.get(rid, 0) + 1
            return counts, 1, ends
        if f.__class__ is int:
            break
        pos += len(f.raw)
        ends.append(pos)
        if f.kind is not Kind.ONEWAY:
            counts[f.request_id] = counts.get(f.request_id, 0) + 1
    return counts, 0, ends


def run(data: bytes) -> None:
    if len(data) < 2:
        return
    mode = data[0]
    if mode & 64:
        # message_scanner captures the head scanner when the listener builds its lane
        saved_scan = http_mod._scan_head
        if mode & 2:
            http_mod._scan_head = http_mod._scan_head_py
        try:
            _run_http(mode, random.Random(data[1]), data[2:])
        finally:
            http_mod._scan_head = saved_scan
        return
    saved = lane_mod._NATIVE
    lane_mod._NATIVE = None if mode & 2 else NATIVE
    try:
        _run(mode, random.Random(data[1]), data[2:])
    finally:
        lane_mod._NATIVE = saved


def _run(mode: int, rng: random.Random, stream: bytes) -> None:
    w = World(mode)
    if w.down.lane is None:
        raise Crash("no lane on a catch-all listener")
    nreq, bad, ends = client_requests(w.codec, w.limits, stream)
    slack = bad
    down, dt, loop = w.down, w.dt, w.loop
    pos = 0
    n = len(stream)
    steps = 0
    while pos < n and steps < n + 8:
        steps += 1
        size = rng.choice((1, 3, 16, 40, 64, 200, n, 0, 0, 0))
        if not size:
            # up to a later frame boundary: a read of whole frames
            i = bisect_right(ends, pos)
            later = ends[i:i + 16]
            size = (rng.choice(later) - pos) if later else n
        chunk = stream[pos:pos + size]
        pos += len(chunk)
        if not down.closed:
            down.data_received(chunk)
        ev = rng.randrange(16)
        if ev < 5:
            w.answer(rng, rng.randrange(1, 6), chunk)
        elif ev == 5:
            loop.advance(rng.choice((0.1, 0.6, 1.1, 6.0)))
        elif ev == 6 and rng.random() < 0.3:
            up = w.up_now()[0]
            if up.state == xproto.pool.connection.OPEN:
                up.connection_lost(None)
                if rng.random() < 0.8:
                    w.open_upstream()
        elif ev == 7 and rng.random() < 0.5:
            up = w.up_now()[0]
            if up.state == xproto.pool.connection.OPEN:
                up.data_received(bytes(chunk))      # raw fuzz bytes from the upstream
        elif ev == 8 and rng.random() < 0.2 and not down.closed:
            down.eof_received()                     # the client half-closes
        elif ev == 9 and rng.random() < 0.1 and not down.closed:
            down.close()
        elif ev == 10 and rng.random() < 0.1 and not down.closed:
            w.lr.draining = True
            down.drain_now(Reason.NO_HEALTHY_UPSTREAM, "fuzz shutdown")
        elif ev == 11:
            up = w.up_now()[0]
            if rng.random() < 0.5:
                up.pause_writing()
            else:
                up.resume_writing()
        w.check_output(nreq_with(nreq, slack))
        if down.closed:
            w.check_no_stale()
            if dt.closed:
                break
    # the end: the upstream answers everything it got, the clock passes every deadline
    up = w.up_now()[0]
    up.resume_writing()
    for _ in range(4):
        w.answer(rng, n + 1, b"", clean=True)
    loop.advance(FAR)
    w.check_output(nreq_with(nreq, slack))
    if w.out_pos != len(dt.out):
        raise Crash(f"output ends in {len(dt.out) - w.out_pos} bytes of no whole response frame")
    if not down.closed and down.inflight != 0:
        raise Crash(f"down.inflight {down.inflight} on an open connection with all answered")
    if not down.closed and down.lane_batches:
        raise Crash(f"{len(down.lane_batches)} lane batches kept with nothing in flight")
    if not down.closed:
        down.connection_lost(None)
    w.check_no_stale()
    loop.advance(FAR)
    if w.cl.inflight != 0:
        raise Crash(f"cluster.inflight {w.cl.inflight} (connects started: {loop.spawned})")
    for ep in w.cl.endpoints:
        if ep.active != 0:
            raise Crash(f"endpoint active {ep.active}")
    w.check_no_stale()
    if len(w.lr.timeouts) != 0:
        raise Crash(f"{len(w.lr.timeouts)} timeouts left in the wheel")
    if w.lr.connections:
        raise Crash("a lost client kept state")


# --- HTTP/1.1: the ping-pong lane (mode bit 6) ------------------------------------------------

HTTP = CODECS["http"]
HTTP_SMALL = Limits(http_max_header_bytes=512, http_max_headers=12, http_max_body=2048)
HTTP_STATUSES = (200, 200, 200, 200, 201, 204, 302, 304, 400, 404, 418, 500, 502, 503, 599)
#: response shapes: plain Content-Length most of the time
HTTP_SHAPES = ("plain",) * 16 + ("chunked", "continue", "continue1", "close", "http10", "tab",
                                 "eof", "lower")


def _crc(raw: Any) -> bytes:
    return b"%08x" % zlib.crc32(bytes(raw))


def http_response(rng: random.Random, f: Any, cid: int, body: bytes) -> tuple[list[bytes], str]:
    """The upstream's answer to request ``f`` on connection ``cid``: its reads, and ``""``,
    ``"eof"`` (the body ends when the upstream closes the connection) or ``"close"`` (the
    answer says the connection closes after it)."""
    method = f.meta.method
    tag = b"x-req: " + _crc(f.raw) + b"\r\nx-up: %d\r\n" % cid
    status = 405 if method == "CONNECT" else rng.choice(HTTP_STATUSES)   # no tunnels
    shape = rng.choice(HTTP_SHAPES)
    nobody = method == "HEAD" or status in (204, 304)
    if status in (204, 304):
        return [b"HTTP/1.1 %d S\r\n%s\r\n" % (status, tag)], ""
    payload = b"" if nobody else body
    if shape == "chunked":
        chunks = (b"%x\r\n%s\r\n" % (len(payload), payload) if payload else b"") + b"0\r\n\r\n"
        return [b"HTTP/1.1 %d S\r\n%stransfer-encoding: chunked\r\n\r\n" % (status, tag)
                + (b"" if nobody else chunks)], ""
    if shape == "eof" and not nobody:
        return [b"HTTP/1.1 %d S\r\n%s\r\n" % (status, tag) + payload], "eof"
    extra = b""
    version = b"1.1"
    if shape == "close":
        extra = b"Connection: close\r\n"
    elif shape == "http10":
        version = b"1.0"
    elif shape == "tab":
        extra = b"X-T: a\tb\r\n"
    elif shape == "lower":
        extra = b"connection: keep-alive\r\n"
    r = b"HTTP/%s %d S\r\n%s%sContent-Length: %d\r\n\r\n" % (version, status, tag, extra, len(body)) + payload
    if shape == "continue":
        return [b"HTTP/1.1 100 Continue\r\n\r\n", r], ""
    if shape == "continue1":
        return [b"HTTP/1.1 100 Continue\r\n\r\n" + r], ""
    return [r], "close" if shape in ("close", "http10") else ""


class HttpUp:
    """One upstream connection as the fake server sees it."""

    __slots__ = ("cid", "conn", "dec", "t", "tainted", "todo")

    def __init__(self, conn: UpstreamConnection, t: FakeTransport, cid: int) -> None:
        self.conn = conn
        self.t = t
        self.cid = cid
        self.dec = HTTP.new_decoder(Role.REQUESTS)
        self.todo: deque[Any] = deque()
        #: a misbehaviour was injected here: its later answers may be taken for other requests
        self.tainted = False


class HttpClient:
    """A client connection and what it got: ``reqs`` its whole requests in order (answers
    come in that order), plus ``bad`` (1: bad bytes after them, whose local 400 is one
    answer more)."""

    def __init__(self, lr: ListenerRuntime) -> None:
        self.down = DownstreamConnection(lr)
        self.t = FakeTransport()
        self.down.connection_made(self.t)
        self.dec = HTTP.new_decoder(Role.RESPONSES)
        self.reqs: list[Any] = []
        self.bad = 0
        self.out_pos = 0
        self.answers = 0
        #: an answer that ends the connection was written (no answer may follow)
        self.last = -1
        self.half_closed = False

    def add(self, f: Any) -> None:
        self.reqs.append(f)
        self.dec.request_sent(f)           # answers to HEAD have no body

    @property
    def gone(self) -> bool:
        return self.down.closed or self.half_closed


class HttpWorld:
    """One listener, one cluster (one endpoint, a ping-pong pool), two clients: the one
    fed the fuzz stream, and a background one sending plain GETs one at a time (it shares
    the pool: waiting requests, the cluster's cap, connections freed by the other's answers)."""

    def __init__(self, mode: int, rng: random.Random) -> None:
        self.rng = rng
        self.limits = HTTP_SMALL if mode & 4 else DEFAULT
        self.loop = loop = FakeLoop()
        loop.accept = []
        self.deferred = bool(mode & 128)
        batch = Batch(loop if self.deferred else None)
        self.cl = Cluster(ClusterSettings(name="up", endpoints=[("127.0.0.1", 1)],
                                          max_connections=3 if mode & 1 else 1,
                                          max_pending=1 if mode & 32 else 10000),
                          loop, batch, MetricsPoolStats(METRICS, "up"),  # type: ignore[arg-type]
                          limits=self.limits)
        route = Route("up", 1.0 if mode & 16 else 15.0, 0)
        self.drained = 0
        self.lr = ListenerRuntime("l", [HTTP], lambda f: route, {"up": self.cl}, METRICS,
                                  loop, batch, limits=self.limits,  # type: ignore[arg-type]
                                  max_pending=4 if mode & 8 else 10000, fixed_route=route,
                                  frame_timeout=5.0, on_drained=self._drained)
        self.lr.lanes_enabled = True
        self.ep = self.cl.endpoints[0]
        self.pool = self.ep.pool_for(HTTP, HTTP.pool_mode)
        self.ups: list[HttpUp] = []
        for _ in range(2 if mode & 1 else 1):       # up to 3: the pool opens the third
            self.pool.open()
        self.settle(fail=False)
        self.main = HttpClient(self.lr)
        self.bg = HttpClient(self.lr)
        self.clients = (self.main, self.bg)
        self.stats = METRICS.downstream("l", "http")
        self.base = (sum(self.stats.responses.values()), sum(self.stats.hist.counts))
        self.base_status = dict(self.stats.responses)
        self.up_stats = METRICS.upstream("up", "http")
        self.base_up = sum(self.up_stats.responses.values())
        self.from_up = 0                    # answers the clients got from the upstream
        #: statuses (status_to_http) of the answers the clients got
        self.statuses: dict[int, int] = {}
        #: x-req of the upstream answers delivered whole on a connection sent in order
        self.delivered: list[bytes] = []
        self.got: set[bytes] = set()
        self.sent: set[bytes] = set()       # CRCs of the clients' whole requests
        #: this run's upstream misbehaves (duplicated, corrupted, stray answers...); then the
        #: clients' output is not checked: a connection that got bytes nobody asked for frames
        #: the next answer with them (the general path's behaviour, lane or not)
        self.misbehave = rng.random() < 0.3
        self.desync = False

    def _drained(self) -> None:
        self.drained += 1

    def settle(self, fail: bool = True) -> None:
        """What asyncio does next: connections the proxy closed are lost, deferred writes go
        out, connections the pool opened connect (or, now and then, fail); then the upstream
        reads what it got."""
        loop = self.loop
        for _ in range(64):
            changed = False
            if self.deferred:
                loop.advance(0.0)
            for u in self.ups:
                if u.conn.state == xproto.pool.connection.OPEN and u.t.closed:
                    u.conn.connection_lost(None)
                    changed = True
            accept = loop.accept
            while accept:
                conn = accept.pop(0)
                changed = True
                if conn.state != xproto.pool.connection.CONNECTING:
                    continue
                if fail and self.rng.random() < 0.1:
                    conn.connect_failed(ConnectionRefusedError("fuzz: refused"))
                    continue
                t = FakeTransport()
                self.ups.append(HttpUp(conn, t, len(self.ups)))
                conn.connection_made(t)
            self.take()
            if not changed:
                return

    def take(self) -> None:
        for u in self.ups:
            out = u.t.out
            if not out:
                continue
            try:
                frames, used = u.dec.decode_all(bytes(out))
            except ProtocolError as e:
                raise Crash(f"the upstream got undecodable bytes: {e}") from None
            if used != len(out):
                raise Crash(f"the upstream got {len(out) - used} bytes of no whole request")
            out.clear()
            for f in frames:
                if f.kind is not Kind.REQUEST:
                    raise Crash(f"a {f.kind} sent upstream")
                if _crc(f.raw) not in self.sent:
                    raise Crash(f"the upstream got a request no client sent: {bytes(f.raw[:60])!r}")
                u.todo.append(f)

    def open_ups(self) -> list[HttpUp]:
        return [u for u in self.ups if u.conn.state == xproto.pool.connection.OPEN and not u.t.closed]

    def background(self) -> None:
        """The background client sends its next GET (when its previous one is answered)."""
        bg = self.bg
        if bg.gone or bg.down.inflight:
            return
        raw = b"GET /bg/%d HTTP/1.1\r\nHost: b\r\n\r\n" % len(bg.reqs)
        f = HTTP.new_decoder(Role.REQUESTS).decode(raw, 0)
        bg.add(f)
        self.sent.add(_crc(raw))
        bg.down.data_received(raw)
        self.settle()

    def answer(self, count: int, fuzz: bytes, clean: bool = False) -> None:
        rng = self.rng
        self.settle()
        ups = [u for u in self.open_ups() if u.todo]
        rng.shuffle(ups)
        for u in ups[:count]:
            if u.conn.state != xproto.pool.connection.OPEN or u.t.closed or not u.todo:
                continue
            f = u.todo.popleft()
            reads, then = http_response(rng, f, u.cid, fuzz[:rng.randrange(8)] if fuzz else b"ok")
            k = 99 if clean else rng.randrange(24)
            if 1 <= k <= 4 and not self.misbehave:
                k = 99
            if k == 0:
                continue                                    # never answered: a timeout
            data = b"".join(reads)
            if k == 1:
                reads = [data + data]                       # duplicated
            elif k == 2 and fuzz:
                reads = [fuzz[:1 + rng.randrange(min(len(fuzz), 24))], *reads]   # garbage first
            elif k == 3:
                b = bytearray(data)
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)       # one bit flipped
                reads = [bytes(b)]
            elif k == 4:
                reads = [data[:rng.randrange(len(data))]]   # truncated (the rest never comes)
            elif k == 5:
                cut = rng.randrange(1, len(data)) if len(data) > 1 else 1
                reads = [data[:cut], data[cut:]]            # split
            if 1 <= k <= 4:
                u.tainted = self.desync = True
            for r in reads:
                if u.conn.state != xproto.pool.connection.OPEN or u.t.closed:
                    break
                if r:
                    u.conn.data_received(r)
            if then == "eof" and u.conn.state == xproto.pool.connection.OPEN and not u.t.closed:
                u.t.close()
                u.conn.connection_lost(None)
            elif then == "close" and k > 4 and not u.tainted and not u.t.closed:
                raise Crash("the proxy kept an upstream connection whose answer said Connection: close")
            if k > 4 and not u.tainted and reads:
                self.delivered.append(_crc(f.raw))
            self.settle()

    def answer_all(self, fuzz: bytes, clean: bool = False) -> None:
        for _ in range(4):
            if not any(u.todo for u in self.open_ups()):
                break
            self.answer(len(self.ups) + 1, fuzz, clean)

    def stray(self, fuzz: bytes) -> None:
        idle = [u for u in self.open_ups() if u.conn.current is None]
        if idle and self.misbehave:
            u = idle[0]
            u.tainted = self.desync = True
            u.conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" if not fuzz else bytes(fuzz[:40]))
            self.settle()

    def reset(self) -> None:
        ups = self.open_ups()
        if ups:
            u = ups[self.rng.randrange(len(ups))]
            u.t.close()
            u.conn.connection_lost(None)
            self.settle()

    def check_output(self) -> None:
        if self.desync:
            return
        for c in self.clients:
            self._check_client(c)

    def _check_client(self, c: HttpClient) -> None:
        out = c.t.out
        if c.out_pos >= len(out):
            return
        try:
            rest = bytes(out[c.out_pos:])
            frames, used = c.dec.decode_all(rest)
            if used < len(rest) and c.t.closed:
                # a response whose body ends with the connection (the upstream's did)
                last = c.dec.eof(rest[used:], 0)
                if last is not None:
                    frames.append(last)
                    used = len(rest)
        except ProtocolError as e:
            raise Crash(f"a client got undecodable bytes: {e}") from None
        c.out_pos += used
        limit = len(c.reqs) + c.bad
        for f in frames:
            if f.kind is not Kind.RESPONSE or (f.status or 0) < 200:
                raise Crash(f"a client got {f.kind} {f.status}")
            i = c.answers
            c.answers += 1
            if c.answers > limit:
                raise Crash(f"{c.answers} answers for {len(c.reqs)} requests (+{c.bad} bad)")
            if c.last >= 0:
                raise Crash(f"answer {i} after answer {c.last}, which closes the connection")
            if i >= len(c.reqs) or not HTTP.keep_alive(f) or not HTTP.keep_alive(c.reqs[i]):
                c.last = i
            st = HTTP.status_to_http(f)
            self.statuses[st] = self.statuses.get(st, 0) + 1
            if i >= len(c.reqs):
                continue
            h = {k.lower(): v for k, v in f.meta.header_list}
            if b"x-xproto-local-reply" in h:
                continue
            self.from_up += 1
            if b"x-req" in h:
                self.got.add(h[b"x-req"])
            cid = h.get(b"x-up")
            want = _crc(c.reqs[i].raw)
            if cid is not None and cid.isdigit() and int(cid) < len(self.ups) and not self.ups[int(cid)].tainted \
                    and h.get(b"x-req") != want:
                raise Crash(f"answer {i} is for another request ({h.get(b'x-req')!r}, want {want!r})")

    def check_pool(self) -> None:
        """After each step: the cluster's cap holds; no request waits in the pool while
        one of its connections is idle."""
        if self.cl.inflight > self.cl.settings.max_pending:
            raise Crash(f"cluster.inflight {self.cl.inflight} > max_pending {self.cl.settings.max_pending}")
        if any(not r.done for r in self.pool.waiting):
            for u in self.open_ups():
                if u.conn.current is None and not u.conn.queued:
                    raise Crash(f"a request waits in the pool; connection {u.cid} is idle")

    def check_no_stale(self) -> None:
        for u in self.open_ups():
            cur = u.conn.current
            if cur is not None and cur.down.closed:
                raise Crash(f"a request of a closed client in flight upstream ({type(cur).__name__})")
        for r in self.pool.waiting:
            if not r.done and r.down.closed:
                raise Crash("a request of a closed client waiting in the pool")
        for c in self.clients:
            if c.down.closed and c.down.lane_batches:
                raise Crash("a closed client kept lane calls")


def _run_http(mode: int, rng: random.Random, stream: bytes) -> None:
    w = HttpWorld(mode, rng)
    main, loop = w.main, w.loop
    down, dt = main.down, main.t
    if down.lane is None or w.bg.down.lane is not down.lane:
        raise Crash("no lane on a catch-all HTTP listener")
    # the client's whole requests (then maybe bad bytes), and where they end
    dec = HTTP.new_decoder(Role.REQUESTS, w.limits)
    ends: list[int] = []
    pos = 0
    for _ in range(len(stream) + 1):
        try:
            f = dec.decode(stream, pos)
        except ProtocolError:
            main.bad = 1
            break
        if f.__class__ is int:
            break
        pos += len(f.raw)
        ends.append(pos)
        main.add(f)
    w.sent.update(_crc(f.raw) for f in main.reqs)
    pos = 0
    n = len(stream)
    steps = 0
    while pos < n and steps < n + 8:
        steps += 1
        size = rng.choice((1, 3, 16, 40, 64, 200, n) + (0,) * 12)
        if not size:
            # up to a request's end (mostly the next one): the lane's reads
            i = bisect_right(ends, pos)
            later = ends[i:i + (1 if rng.random() < 0.8 else 3)]
            size = (rng.choice(later) - pos) if later else n
        chunk = stream[pos:pos + size]
        pos += len(chunk)
        if not main.gone:
            down.data_received(chunk)
        w.settle()
        inflight, drained = down.inflight, w.drained
        ev = rng.randrange(40)
        if ev < 18:
            # a keep-alive client waits for its answers: everything outstanding answered
            w.answer_all(chunk)
        elif ev < 21:
            w.answer(rng.randrange(1, 4), chunk)
        elif ev < 27:
            w.background()                           # the other client's next request
            if ev < 25:
                w.answer_all(chunk)
        elif ev < 29:
            loop.advance(rng.choice((0.1, 0.6, 1.1, 6.0)))
            w.settle()
        elif ev == 29 and rng.random() < 0.5:
            w.reset()
        elif ev == 30 and rng.random() < 0.5:
            w.stray(chunk if rng.random() < 0.5 else b"")
        elif ev == 31 and rng.random() < 0.5 and not main.gone:
            main.half_closed = True                  # the client half-closes
            if not down.eof_received():
                dt.close()                           # asyncio closes the transport
                down.connection_lost(None)
        elif ev == 32 and rng.random() < 0.3 and not down.closed:
            down.close()
            w.settle()
        elif ev == 33 and rng.random() < 0.3 and not down.closed:
            w.lr.draining = True
            down.drain_now(Reason.NO_HEALTHY_UPSTREAM, "fuzz shutdown")
            if down.inflight and not down.closed:
                raise Crash(f"{down.inflight} requests in flight after drain_now")
            w.settle()
        elif ev == 34:
            ups = w.open_ups()
            if ups:
                u = ups[rng.randrange(len(ups))]
                if u.conn.paused:
                    u.conn.resume_writing()
                else:
                    u.conn.pause_writing()
        # else: the next read comes before any answer (pipelining)
        if w.lr.draining and inflight and not down.inflight and not down.closed and w.drained == drained:
            raise Crash("draining: the client's last answer did not tell the listener")
        w.check_pool()
        w.check_output()
        if down.closed:
            w.check_no_stale()
            if dt.closed:
                break
    # the end: every request the upstream got answered, past every deadline, in rounds
    for u in w.ups:
        if u.conn.state == xproto.pool.connection.OPEN:
            u.conn.resume_writing()
    for _ in range(len(main.reqs) + len(w.bg.reqs) + 4):
        for _ in range(len(main.reqs) + len(w.bg.reqs) + 2):
            if not any(u.todo for u in w.open_ups()):
                break
            w.answer(len(w.ups) + 1, b"", clean=True)
        loop.advance(FAR)
        w.settle()
        if not any(u.todo for u in w.open_ups()) and not any(
                c.down.inflight for c in w.clients if not c.down.closed):
            break
    w.check_pool()
    w.check_output()
    for c in w.clients:
        if not c.down.closed:
            if c.down.inflight != 0:
                raise Crash(f"down.inflight {c.down.inflight} on an open connection with all answered")
            if c.down.lane_batches:
                raise Crash(f"{len(c.down.lane_batches)} lane calls kept with nothing in flight")
        if c.half_closed and not c.down.closed:
            raise Crash("a half-closed client kept open after all its answers")
    for u in w.open_ups():
        if u.conn.current is None and not u.conn.queued and u.conn not in w.pool.free:
            raise Crash(f"idle upstream connection {u.cid} not in the pool's free list")
    if not w.desync:
        for c in w.clients:
            if c.last >= 0 and not c.t.closed:
                raise Crash(f"answer {c.last} closes the connection; it is still open")
            if c.out_pos != len(c.t.out):
                raise Crash(f"output ends in {len(c.t.out) - c.out_pos} bytes of no whole response")
            if not c.down.closed and (c is w.bg or pos >= n) and not c.half_closed \
                    and c.answers != len(c.reqs):
                raise Crash(f"{c.answers} answers for {len(c.reqs)} requests on an open connection")
        if not down.closed:
            missing = [x for x in w.delivered if x not in w.got]
            if missing and not w.bg.down.closed:
                raise Crash(f"{len(missing)} answers the upstream sent never reached an open client")
            now = {k: v - w.base_status.get(k, 0) for k, v in w.stats.responses.items()}
            if {k: v for k, v in now.items() if v} != w.statuses:
                raise Crash(f"metrics by status {now} for answers {w.statuses}")
            up = sum(w.up_stats.responses.values()) - w.base_up
            if up != w.from_up:
                raise Crash(f"upstream responses counted {up}, the clients got {w.from_up}")
        # responses counted: one per answer written; more only for answers held for an
        # earlier one when the client went away; a local 400 for bad bytes has no duration
        answers = main.answers + w.bg.answers
        grown = (sum(w.stats.responses.values()) - w.base[0], sum(w.stats.hist.counts) - w.base[1])
        if (grown[0] != answers) if not down.closed else (grown[0] < answers):
            raise Crash(f"metrics: {grown[0]} responses for {answers} answers (closed: {down.closed})")
        if not 0 <= grown[0] - grown[1] <= main.bad:
            raise Crash(f"metrics: {grown[0]} responses, {grown[1]} durations")
    for c in w.clients:
        if not c.down.closed:
            c.down.connection_lost(None)
    w.check_no_stale()
    loop.advance(FAR)
    w.settle()
    if w.cl.inflight != 0:
        raise Crash(f"cluster.inflight {w.cl.inflight}")
    if w.ep.active != 0:
        raise Crash(f"endpoint active {w.ep.active}")
    for u in w.open_ups():
        if u.conn.current is not None:
            raise Crash(f"upstream connection {u.cid} still busy ({type(u.conn.current).__name__})")
    if any(not r.done for r in w.pool.waiting):
        raise Crash("requests left waiting in the pool")
    if len(w.lr.timeouts) != 0:
        raise Crash(f"{len(w.lr.timeouts)} timeouts left in the wheel")
    if w.lr.connections:
        raise Crash("a lost client kept state")


def nreq_with(nreq: dict[int, int], slack: int) -> dict[int, int]:
    if not slack:
        return nreq
    return _Slack(nreq, slack)  # type: ignore[return-value]


class _Slack(dict):
    """Counts plus ``slack`` for every id (a rejected frame's error reply may carry its id)."""

    def __init__(self, base: dict[int, int], slack: int) -> None:
        super().__init__(base)
        self.slack = slack

    def get(self, k: Any, d: Any = None) -> Any:
        return super().get(k, 0) + self.slack


def TestOneInput(data: bytes) -> None:
    try:
        run(data)
    except ProtocolError:
        return   # tolerated by the invariant, though the connection logic catches them all


# --- seeds -------------------------------------------------------------------------------------

def _dubbo_req(rid: int, body: bytes, oneway: bool = False, ser: int = 2) -> bytes:
    flag = 0x80 | (0 if oneway else 0x40) | ser
    return DHEADER.pack(0xDABB, flag, 0, rid, len(body)) + body


def _bolt_req(rid: int, body: bytes, oneway: bool = False, v2: bool = False, hb: bool = False) -> bytes:
    if hb:
        return BOLT.build(type=B.TYPE_REQUEST, cmdcode=B.CMD_HEARTBEAT, request_id=rid)
    return BOLT.build(type=B.TYPE_ONEWAY if oneway else B.TYPE_REQUEST, cmdcode=B.CMD_REQUEST,
                      request_id=rid, timeout=3000, headers=[("service", "svc.A")], content=body,
                      version=2 if v2 else 1)


def make_corpus(dest: Path) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    n = 0
    for proto_bit, proto in enumerate(PROTOS):
        for variant in range(20):
            kinds = ["req"] * rng.randint(1, 8) + rng.sample(["oneway", "hb", "odd", "dup", "req"], 2)
            rng.shuffle(kinds)
            s = b""
            for i, k in enumerate(kinds):
                rid = 1 if k == "dup" else (1000 + i)
                body = b"b%d" % i
                if proto == "dubbo":
                    if k == "hb":
                        s += DHEADER.pack(0xDABB, 0xE2, 0, rid, 1) + b"N"
                    else:
                        s += _dubbo_req(rid, body, oneway=k == "oneway", ser=6 if k == "odd" else 2)
                else:
                    s += _bolt_req(rid, body, oneway=k == "oneway", v2=k == "odd", hb=k == "hb")
            if variant % 5 == 4:
                s += b"\xda\xbb\xc2\x00" + b"\xff" * 12 if proto == "dubbo" else b"\x01\x01\x00\x09" + b"\x00" * 30
            mode = proto_bit | (rng.randrange(32) & ~1)
            (dest / f"seed-{proto}-{variant:02d}").write_bytes(bytes([mode, rng.randrange(256)]) + s)
            n += 1
    # thrift (bit 5): framed binary calls and oneways, framed compact ("odd"), repeated ids
    trng = random.Random(11)
    for variant in range(12):
        kinds = ["req"] * trng.randint(1, 8) + trng.sample(["oneway", "odd", "dup", "req"], 2)
        trng.shuffle(kinds)
        s = b""
        for i, k in enumerate(kinds):
            sid = 1 if k == "dup" else (-(i + 1) if i % 3 == 0 else 1000 + i)
            body = b"\x0b\x00\x01" + struct.pack(">I", 2) + b"b%d" % (i % 10) + b"\x00"
            if k == "odd":
                s += _thrift_framed(T.build_message(T.Proto.COMPACT, "say", 1, sid, b"\x00"))
            else:
                s += _thrift_framed(T.build_message(T.Proto.BINARY, "say", 4 if k == "oneway" else 1,
                                                    sid, body))
        if variant % 4 == 3:
            s += struct.pack(">IHBB", 40, 0x8001, 0, 1) + b"\xff" * 8
        mode = 32 | (trng.randrange(32) & ~1)
        (dest / f"seed-thrift-{variant:02d}").write_bytes(bytes([mode, trng.randrange(256)]) + s)
        n += 1
    return n + make_http_corpus(dest)


def make_http_corpus(dest: Path) -> int:
    """Seeds of the HTTP mode (bit 6): keep-alive requests one per read, pipelined bursts,
    bodies, HEAD, chunked, ``Connection: close``, HTTP/1.0, ``Expect: 100-continue``, heads
    outside the fast subset, bad bytes at the end."""
    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(17)

    def req(kind: str, i: int) -> bytes:
        path = b"/s%d?q=%d" % (i, rng.randrange(100))
        body = b"b" * rng.randrange(1, 40)
        return {
            "get": b"GET %s HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n" % path,
            "ka": b"GET %s HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n" % path,
            "post": b"POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (path, len(body), body),
            "head": b"HEAD %s HTTP/1.1\r\nHost: h\r\n\r\n" % path,
            "chunked": b"PUT %s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                       % (path, len(body), body),
            "close": b"GET %s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % path,
            "http10": b"GET %s HTTP/1.0\r\nHost: h\r\n\r\n" % path,
            "expect": b"PATCH %s HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n%s"
                      % (path, len(body), body),
            "tab": b"DELETE %s HTTP/1.1\r\nHost: h\r\nX-T: a\tb\r\n\r\n" % path,
            "options": b"OPTIONS %s HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n" % path,
        }[kind]

    n = 0
    plans = [("keepalive", ["get"] * 8), ("mixed", ["get", "post", "ka", "options", "get", "post"]),
             ("head", ["get", "head", "get", "head"]), ("chunked", ["post", "chunked", "get"]),
             ("close", ["get", "get", "close", "get"]), ("http10", ["get", "http10"]),
             ("expect", ["expect", "get", "expect"]), ("tab", ["tab", "get", "tab", "get"])]
    for variant, (name, kinds) in enumerate(plans):
        for j in range(2):
            s = b"".join(req(k, i) for i, k in enumerate(kinds))
            if j == 1 and variant % 3 == 2:
                s += b"BLAH /x\r\n\r\n"                      # bad bytes at the end
            mode = 64 | (rng.randrange(256) & ~64)
            if j == 0:
                mode &= ~(8 | 32)                               # no overflow: answers go through
            (dest / f"http-{name}-{j}").write_bytes(bytes([mode, rng.randrange(256)]) + s)
            n += 1
    return n


def main() -> None:
    if "--make-http-corpus" in sys.argv:
        print(make_http_corpus(Path(__file__).resolve().parent / "corpus" / "lane"), "HTTP seeds written")
        return
    if "--make-corpus" in sys.argv:
        print(make_corpus(Path(__file__).resolve().parent / "corpus" / "lane"), "seeds written")
        return
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
