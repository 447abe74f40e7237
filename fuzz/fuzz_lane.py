"""Atheris harness for the proxy's fast lane (xproto/proxy/lane.py, xproto/proxy/_lane.c).

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
             bit 0)
    byte 1   seed of the schedule (chunk sizes, events, statuses)
    rest     the downstream byte stream

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

Every loop is bounded by the input length; libFuzzer's ``-timeout`` (fuzz/run.py: 10 s)
catches hangs.

Run: python fuzz/fuzz_lane.py fuzz/corpus/lane -dict=fuzz/dicts/lane.dict -timeout=10
     python fuzz/fuzz_lane.py --make-corpus      # (re)write the seeds in fuzz/corpus/lane/
"""
from __future__ import annotations

# heavy dependencies first, uninstrumented: only xproto's code is traced
import asyncio  # noqa: F401
import heapq
import logging
import random
import struct
import sys
from bisect import bisect_right
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
    import xproto.codecs.thrift as T
    import xproto.pool.cluster
    import xproto.pool.connection
    import xproto.proxy.downstream
    import xproto.proxy.exchange
    import xproto.proxy.lane as lane_mod
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
CODECS = {n: REGISTRY.get(n) for n in (*PROTOS, "thrift")}
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
    return n


def main() -> None:
    if "--make-corpus" in sys.argv:
        print(make_corpus(Path(__file__).resolve().parent / "corpus" / "lane"), "seeds written")
        return
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
