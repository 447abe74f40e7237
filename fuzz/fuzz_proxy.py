"""Atheris harness for the proxy's downstream connection logic, without sockets (issue 5).

Bytes in, frames and replies out: a :class:`~xproto.proxy.downstream.DownstreamConnection`
on a fake transport, a fake clock and a fake cluster is fed the input in chunks, with
upstream events (responses, failures, timeouts, back-pressure, half-close, shutdown drain)
interleaved. Layout of an input:

    byte 0   listener: low 3 bits pick the candidates (0..2 = all five, rotated; 3..7 = one
             protocol, no detection)
    byte 1   seed of the schedule (chunk sizes and the events between chunks)
    rest     the downstream byte stream

Invariants (anything else is a crash):
* only ``xproto.errors.ProtocolError`` may escape (and in fact none should);
* every request that expects an answer gets at most one; once the clock has passed every
  timeout, each one got exactly one, unless the connection was closed;
* nothing is written after the connection closed, no timer of a closed connection fires
  into a write, the connection's buffer never exceeds the input (memory bounded), the
  output stays within a fixed factor of the input;
* for dubbo and bolt, the output decodes as whole response frames whose ids are ids the
  client sent.

Hangs are bounded by libFuzzer's ``-timeout`` (fuzz/run.py passes 10 s); every loop here
is bounded by the input length.

Run: python fuzz/fuzz_proxy.py fuzz/corpus/proxy -dict=fuzz/dicts/proxy.dict \
        -rss_limit_mb=2048 -timeout=10 -max_total_time=90
"""
from __future__ import annotations

# heavy dependencies first, uninstrumented: only xproto's protocol and proxy code is traced
import asyncio  # noqa: F401
import heapq
import random
import sys
from typing import Any

import atheris
import prometheus_client  # noqa: F401
import pydantic  # noqa: F401
import yaml  # noqa: F401

import xproto.config
import xproto.metrics
import xproto.registry

with atheris.instrument_imports(include=["xproto"]):
    import xproto.codecs.bolt
    import xproto.codecs.dubbo
    import xproto.codecs.http
    import xproto.codecs.kafka
    import xproto.codecs.thrift
    import xproto.detect
    import xproto.proxy.downstream
    import xproto.proxy.exchange
    import xproto.router  # noqa: F401
    from xproto.codec import Reason, Role
    from xproto.config import parse_config
    from xproto.errors import ProtocolError
    from xproto.frame import Kind
    from xproto.limits import Limits
    from xproto.metrics import Metrics
    from xproto.proxy.downstream import DownstreamConnection
    from xproto.proxy.kafka import BrokerMap
    from xproto.proxy.listener import ListenerRuntime
    from xproto.registry import load_registry
    from xproto.router import RouteTable

REGISTRY = load_registry(autoload=False)
ORDER = ["dubbo", "bolt", "thrift", "kafka", "http"]
CODECS = [REGISTRY.get(n) for n in ORDER]
#: small limits so that huge declared lengths are reached with short inputs
LIMITS = Limits(dubbo_max_body=4096, bolt_max_frame=4096, bolt_max_header_block=1024,
                thrift_max_frame=4096, thrift_max_name=256, kafka_max_frame=4096,
                http_max_header_bytes=2048, http_max_headers=20, http_max_body=4096)
FRAME_TIMEOUT = 5.0
MAX_PENDING = 8
#: output bytes allowed per input byte (local replies are larger than the shortest requests)
OUT_FACTOR = 64

_CFG = parse_config({
    "listeners": [{
        "name": "fz", "address": "127.0.0.1:1", "protocols": ORDER,
        "routes": [
            {"match": {"protocol": "dubbo", "headers": {"service": {"prefix": "com."}}},
             "cluster": "c", "timeout": "1s"},
            {"match": {"protocol": "bolt", "headers": {"service": {"present": True}}},
             "cluster": "c", "timeout": "2s"},
            {"match": {"protocol": "http", "headers": {":path": {"prefix": "/a"}}}, "cluster": "c"},
            {"match": {"protocol": "thrift", "headers": {"method": {"regex": "^[a-z]"}}},
             "cluster": "c", "timeout": "3s"},
            {"match": {"protocol": "kafka"}, "cluster": "c"},
        ]}],
    "clusters": [{"name": "c", "endpoints": ["127.0.0.1:2"]}],
})
ROUTES = RouteTable(_CFG.listeners[0], random.Random(0))
METRICS = Metrics()
DEFAULT_ROUTE_TIMEOUT = 15.0


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


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.seq = 0
        self.timers: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, cb: Any, *args: Any) -> FakeHandle:
        self.seq += 1
        h = FakeHandle(self.now + delay, self.seq, cb, args)
        heapq.heappush(self.timers, h)
        return h

    def call_at(self, when: float, cb: Any, *args: Any) -> FakeHandle:
        return self.call_later(when - self.now, cb, *args)

    def advance(self, dt: float) -> None:
        self.now += dt
        fired = 0
        while self.timers and self.timers[0].when <= self.now:
            h = heapq.heappop(self.timers)
            if not h.cancelled:
                fired += 1
                if fired > 10_000:
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


class FakeSettings:
    protocol = None


class FakeCluster:
    name = "c"
    settings = FakeSettings()

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.unbound = 0

    def send(self, ex: Any, codec: Any) -> None:
        self.sent.append(ex)

    def unbind(self, owner: Any) -> None:
        """Bind mode (kafka): the downstream connection is gone."""
        self.unbound += 1


class FakeBrokerMap(BrokerMap):
    """The listener's kafka broker map, minus the per-broker listener sockets."""

    def mapper(self, node_id: int, host: str, port: int) -> tuple[str, int]:
        key = (host, port)
        p = self.ports.get(key)
        if p is None:
            p = self.ports[key] = 19093 + len(self.ports)
            self.nodes[key] = node_id
        return (self.advertise_host, p)


class Conn(DownstreamConnection):
    """Counts answers per exchange (the invariant "exactly one answer")."""

    def __init__(self, lr: ListenerRuntime) -> None:
        super().__init__(lr)
        self.registered: list[Any] = []
        self.answers: dict[int, int] = {}

    def _register(self, ex: Any) -> None:
        self.registered.append(ex)
        super()._register(ex)

    def _deliver(self, ex: Any, data: bytes) -> None:
        n = self.answers.get(id(ex), 0) + 1
        if n > 1:
            raise Crash(f"request {ex.down_id} answered {n} times")
        self.answers[id(ex)] = n
        super()._deliver(ex, data)


def make(mode: int) -> tuple[Conn, FakeTransport, FakeLoop, FakeCluster, ListenerRuntime]:
    if mode < 3:
        cands = CODECS[mode:] + CODECS[:mode]
    else:
        cands = [CODECS[(mode - 3) % 5]]
    loop = FakeLoop()
    cl = FakeCluster()
    lr = ListenerRuntime("fz", cands, ROUTES.route, {"c": cl}, METRICS, loop,  # type: ignore[arg-type,dict-item]
                         limits=LIMITS, max_pending=MAX_PENDING, frame_timeout=FRAME_TIMEOUT,
                         idle_timeout=30.0 if mode & 1 else 0.0)
    if any(c.name == "kafka" for c in cands):
        # as ProxyServer does for every listener that carries kafka: all responses on it
        # pass through the broker-address rewrite (which must leave other protocols alone)
        lr.kafka = FakeBrokerMap("127.0.0.1", "127.0.0.1", (19093, 19199), lambda *a: None)
    conn = Conn(lr)
    t = FakeTransport()
    conn.connection_made(t)
    return conn, t, loop, cl, lr


def answer(ex: Any, rng: random.Random) -> None:
    """The fake upstream answers ``ex``: a response frame or a failure (also late: after a
    timeout or a local reply, which must then be ignored)."""
    if not ex.expects:
        return
    k = rng.randrange(3)
    if k == 0:
        ex.on_failure(Reason.UPSTREAM_RESET, "fuzz reset")
        return
    codec = ex.frame.codec
    try:
        resp = codec.error_reply(ex.frame, Reason.NO_HEALTHY_UPSTREAM if k == 1 else Reason.TIMEOUT,
                                 "fuzz upstream")
    except ProtocolError:
        resp = None
    if resp is None:
        ex.on_failure(Reason.UPSTREAM_RESET, "fuzz: no response form")
    else:
        ex.on_response(resp)


def run(data: bytes) -> None:
    if len(data) < 2:
        return
    conn, t, loop, cl, lr = make(data[0] & 7)
    rng = random.Random(data[1])
    stream = data[2:]
    pos = 0
    n = len(stream)
    steps = 0
    while pos < n and steps < 4 * n + 8:
        steps += 1
        size = rng.choice((1, 1, 2, 3, 7, 16, 64, n))
        chunk = stream[pos:pos + size]
        pos += len(chunk)
        conn.data_received(chunk)
        if len(conn.buf) > len(stream):
            raise Crash(f"buffer {len(conn.buf)} > input {len(stream)}")
        ev = rng.randrange(12)
        if ev == 0:
            loop.advance(rng.choice((0.01, 0.5, 1.5, FRAME_TIMEOUT + 0.1)))
        elif ev == 1 and cl.sent:
            answer(rng.choice(cl.sent), rng)
        elif ev == 2:
            conn.pause_writing()
        elif ev == 3:
            conn.resume_writing()
        elif ev == 4 and rng.random() < 0.2 and not conn.eof_received():
            # the client half-closes: with requests in flight it still gets their answers
            # (eof_received() is true), else the transport closes
            conn.close()
        if t.closed:
            break
    if not t.closed and rng.random() < 0.1:
        lr.draining = True
        conn.drain_now(Reason.NO_HEALTHY_UPSTREAM, "fuzz shutdown")
    # the upstream answers some of the rest in random order; timeouts answer the others
    rest = list(cl.sent)
    rng.shuffle(rest)
    for ex in rest[: len(rest) // 2]:
        if not ex.done:
            answer(ex, rng)
    conn.resume_writing()
    loop.advance(DEFAULT_ROUTE_TIMEOUT + FRAME_TIMEOUT + 1)
    # late upstream answers (after a timeout or a local reply) must change nothing
    for ex in rest[: len(rest) // 3 + 1]:
        answer(ex, rng)
    check(conn, t, cl, len(data))
    if not conn.closed:
        conn.connection_lost(None)
    loop.advance(1e6)   # nothing may fire into a closed connection
    if conn.inflight or lr.connections:
        raise Crash("a lost connection kept state")


def check(conn: Conn, t: FakeTransport, cl: FakeCluster, nin: int) -> None:
    if len(t.out) > OUT_FACTOR * nin + 4096:
        raise Crash(f"{len(t.out)} bytes out for {nin} in")
    if not conn.closed:
        # every request that expects an answer got exactly one (routes without a timeout
        # time out at the default 15 s, the one-ways need none)
        stuck = [ex.down_id for ex in cl.sent if ex.expects and not ex.done]
        if stuck:
            raise Crash(f"requests {stuck[:5]} outlived their route timeout")
        missing = [ex.down_id for ex in conn.registered if conn.answers.get(id(ex)) != 1]
        if missing:
            raise Crash(f"requests {missing[:5]} never answered on an open connection")
        if conn.inflight != 0:
            raise Crash(f"inflight {conn.inflight} with every request answered")
    codec = conn.codec
    if codec is not None and codec.name in ("dubbo", "bolt") and t.out:
        frames, used = codec.new_decoder(Role.RESPONSES).decode_all(bytes(t.out))
        if used != len(t.out):
            raise Crash(f"output has {len(t.out) - used} undecodable trailing bytes")
        sent = {ex.down_id for ex in conn.registered}
        for f in frames:
            if f.kind is not Kind.RESPONSE:
                raise Crash(f"a {f.kind} frame written to the client")
            if not f.heartbeat and f.request_id not in sent:
                raise Crash(f"response id {f.request_id} answers no request")


def TestOneInput(data: bytes) -> None:
    try:
        run(data)
    except ProtocolError:
        return   # tolerated by the invariant, though the connection logic catches them all


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
