"""Demo clients: real protocol frames over asyncio, one driver per built-in protocol.

Every client frames what it receives with xproto's decoder (role RESPONSES; the requests
it writes are decoded too and passed to ``request_sent``, as the proxy does), checks that
each response carries the id of the request it answers, and measures per-request latency.

Each protocol mixes in the cases a proxy must get right: Dubbo and Bolt one-way calls and
heartbeats, Thrift ONEWAY, Kafka ``acks=0`` produce (no response) and the broker address
learned from Metadata, HTTP keep-alive, chunked request and response bodies — and a few
requests to a service no route leads to, which must come back as the protocol's own error
(counted as errors, and as *expected* ones).
"""
from __future__ import annotations

import asyncio
import datetime
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from xproto.codec import IdGenerator, Role
from xproto.demo import wire
from xproto.demo.wire import decoder_for
from xproto.errors import ProtocolError
from xproto.frame import Frame

Address = tuple[str, int]
CALL_TIMEOUT = 5.0          # seconds a request may wait for its response
MAX_RECONNECTS = 20         # per connection slot, then the driver gives up
MAX_PROBLEMS = 8            # problem messages kept per protocol
READ_SIZE = 65536
MISSING_SERVICE = "com.example.Missing"


class Failure(Exception):
    """A response that is wrong (not merely an error status): bad id, bad content."""


class GaveUp(Exception):
    """A connection slot broke too often: its driver stops."""


@dataclass
class Stats:
    protocol: str
    requests: int = 0            # every request written (incl. one-way, heartbeat, acks=0)
    responses: int = 0
    errors: int = 0              # error responses + failures
    expected_errors: int = 0     # errors on requests sent to a missing route
    unexpected: int = 0          # everything that should not have happened
    latencies: list[float] = field(default_factory=list)   # seconds, answered requests
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def problem(self, msg: str) -> None:
        self.unexpected += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(msg)

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of the latencies, in seconds."""
        if not self.latencies:
            return None
        s = sorted(self.latencies)
        k = max(0, min(len(s) - 1, int(-(-q * len(s) // 1)) - 1))
        return s[k]


class Budget:
    """Stops a driver at the deadline or after ``max_requests``, whichever comes first."""

    def __init__(self, duration: float, max_requests: int) -> None:
        self.deadline = time.monotonic() + duration
        self.left = max_requests
        self.n = 0

    def take(self) -> int | None:
        if self.left <= 0 or time.monotonic() >= self.deadline:
            return None
        self.left -= 1
        self.n += 1
        return self.n - 1


class Conn:
    """One client connection: writes requests, frames responses, matches them to callers."""

    def __init__(self, protocol: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 *, fifo: bool = False, timeout: float = CALL_TIMEOUT) -> None:
        self.protocol = protocol
        self.timeout = timeout
        self.reader = reader
        self.writer = writer
        self.fifo = fifo                      # ping-pong protocols: responses in request order
        self.req_dec = decoder_for(protocol, Role.REQUESTS)
        self.resp_dec = decoder_for(protocol, Role.RESPONSES)
        self.pending: dict[int, asyncio.Future[Frame]] = {}
        self.queue: deque[asyncio.Future[Frame]] = deque()
        self.stray = 0
        self.closed = False
        self.ids = IdGenerator(31, start=1)
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, protocol: str, addr: Address, *, fifo: bool = False,
                   timeout: float = CALL_TIMEOUT) -> Conn:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), timeout)
        return cls(protocol, reader, writer, fifo=fifo, timeout=timeout)

    def _write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("connection closed")
        frames, used = self.req_dec.decode_all(data)
        if used != len(data) or not frames:
            raise Failure(f"{self.protocol} decoder did not frame the demo's own request "
                          f"({used} of {len(data)} bytes)")
        for f in frames:
            self.resp_dec.request_sent(f)
        self.writer.write(data)

    async def send(self, data: bytes) -> None:
        """Write a request that gets no response (one-way, acks=0)."""
        self._write(data)
        await self.writer.drain()

    async def call(self, rid: int, data: bytes, timeout: float | None = None) -> Frame:
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        if self.fifo:
            self.queue.append(fut)
        else:
            if rid in self.pending:
                raise Failure(f"request id {rid} already in flight")
            self.pending[rid] = fut
        try:
            self._write(data)
            await self.writer.drain()
            return await asyncio.wait_for(fut, self.timeout if timeout is None else timeout)
        finally:
            if not self.fifo:
                self.pending.pop(rid, None)

    async def _read(self) -> None:
        buf = bytearray()
        err: BaseException = ConnectionResetError("connection closed by peer")
        try:
            while True:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    break
                buf += data
                pos = 0
                while pos < len(buf):
                    r = self.resp_dec.decode(buf, pos)
                    if isinstance(r, int):
                        break
                    pos += len(r.raw)
                    self._dispatch(r)
                del buf[:pos]
        except ProtocolError as e:
            err = e
        except (ConnectionError, OSError) as e:
            err = e
        finally:
            self.closed = True
            for fut in list(self.pending.values()) + list(self.queue):
                if not fut.done():
                    fut.set_exception(err if isinstance(err, Exception) else ConnectionResetError())
            self.pending.clear()
            self.queue.clear()

    def _dispatch(self, frame: Frame) -> None:
        if self.fifo:
            while self.queue:
                fut = self.queue.popleft()
                if not fut.done():       # skip callers that timed out
                    fut.set_result(frame)
                    return
            self.stray += 1
            return
        waiter = self.pending.pop(frame.request_id, None)
        if waiter is None or waiter.done():
            self.stray += 1
        else:
            waiter.set_result(frame)

    async def close(self) -> None:
        self.closed = True
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


class Slot:
    """A connection that is reopened (a bounded number of times) when it breaks."""

    def __init__(self, protocol: str, addr: Address, stats: Stats, *, fifo: bool = False,
                 timeout: float = CALL_TIMEOUT) -> None:
        self.protocol, self.addr, self.stats, self.fifo = protocol, addr, stats, fifo
        self.timeout = timeout
        self.conn: Conn | None = None
        self.opened = 0
        self._lock = asyncio.Lock()
        self.all: list[Conn] = []

    async def get(self) -> Conn:
        async with self._lock:
            if self.conn is None or self.conn.closed:
                if self.opened > MAX_RECONNECTS:
                    raise GaveUp(f"{self.protocol}: gave up after {self.opened} broken connections")
                self.opened += 1
                if self.opened > 1:
                    self.stats.counts["reconnects"] += 1
                self.conn = await Conn.open(self.protocol, self.addr, fifo=self.fifo, timeout=self.timeout)
                self.all.append(self.conn)
            return self.conn

    async def close(self) -> None:
        for c in self.all:
            self.stats.counts["stray_responses"] += c.stray
            await c.close()


async def _timed(coro: Awaitable[Frame]) -> tuple[Frame, float]:
    t0 = time.perf_counter()
    frame = await coro
    return frame, time.perf_counter() - t0


async def _guard(stats: Stats, slot: Slot, what: str, fn: Callable[[], Awaitable[None]]) -> bool:
    """Run one request; turn any failure into counted errors instead of stopping the driver.

    Returns False when the driver should stop (its connection keeps breaking)."""
    try:
        await fn()
    except GaveUp as e:
        stats.problem(str(e))
        return False
    except Failure as e:
        stats.errors += 1
        stats.problem(f"{what}: {e}")
    except TimeoutError:
        stats.errors += 1
        stats.problem(f"{what}: no response within {slot.timeout}s")
        if slot.conn is not None and slot.fifo:   # a ping-pong connection is now out of step
            await slot.conn.close()
    except (ConnectionError, OSError, ProtocolError) as e:
        stats.errors += 1
        stats.problem(f"{what}: {type(e).__name__}: {e}")
    return True


def _text(frame: Frame, parse: Callable[..., Any]) -> str:
    """The error text an error response carries, for the problem list (best effort)."""
    try:
        args = (bytes(frame.raw), frame.status) if parse is wire.dubbo_parse_result else (bytes(frame.raw),)
        return repr(parse(*args))[:100]
    except Exception:  # noqa: BLE001 - only decoration for a message
        return ""


def _check(stats: Stats, ok: bool, expected_error: bool, lat: float | None,
           what: str | Callable[[], str]) -> None:
    """Book one answered request: ``ok`` = the response is a success; ``what`` describes
    it for the problem list (a callable when that costs something)."""
    stats.responses += 1
    if lat is not None:
        stats.latencies.append(lat)
    if ok and not expected_error:
        return
    if not ok:
        stats.errors += 1
        if expected_error:
            stats.expected_errors += 1
            return
        stats.problem(f"{what() if callable(what) else what}: error response")
        return
    stats.problem(f"{what() if callable(what) else what}: succeeded, but no route leads there")


# ======================================================================== dubbo ==========
async def _dubbo_worker(stats: Stats, slot: Slot, budget: Budget) -> None:
    while (i := budget.take()) is not None:

        async def one() -> None:
            conn = await slot.get()
            rid = conn.ids()
            stats.requests += 1
            if i % 25 == 7:
                stats.counts["heartbeats"] += 1
                f, lat = await _timed(conn.call(rid, wire.dubbo_heartbeat(rid)))
                if not f.heartbeat:
                    raise Failure(f"heartbeat {rid} answered by a non-heartbeat frame")
                _check(stats, f.status == wire.DUBBO_OK, False, lat, "dubbo heartbeat")
                return
            if i % 10 == 3:
                stats.counts["oneway"] += 1
                await conn.send(wire.dubbo_request(rid, wire.GREETER_SERVICE, "sayHello", [f"oneway-{i}"],
                                                   twoway=False))
                return
            missing = i % 20 == 11
            service = MISSING_SERVICE if missing else wire.GREETER_SERVICE
            if missing:
                stats.counts["no_route_sent"] += 1
            name = f"dubbo-{i}"
            f, lat = await _timed(conn.call(rid, wire.dubbo_request(rid, service, "sayHello", [name])))
            if f.request_id != rid:
                raise Failure(f"response id {f.request_id} != request id {rid}")
            ok = f.status == wire.DUBBO_OK
            if ok:
                value = wire.dubbo_parse_result(bytes(f.raw), wire.DUBBO_OK)
                if not (isinstance(value, str) and value.startswith(f"Hello, {name} ")):
                    raise Failure(f"unexpected result {value!r}")
            _check(stats, ok, missing, lat, lambda: f"dubbo {service}: status {f.status} {_text(f, wire.dubbo_parse_result)}")

        if not await _guard(stats, slot, "dubbo", one):

            return


# ========================================================================= bolt ==========
async def _bolt_worker(stats: Stats, slot: Slot, budget: Budget) -> None:
    while (i := budget.take()) is not None:

        async def one() -> None:
            conn = await slot.get()
            rid = conn.ids()
            stats.requests += 1
            if i % 25 == 7:
                stats.counts["heartbeats"] += 1
                f, lat = await _timed(conn.call(rid, wire.bolt_heartbeat(rid)))
                if not f.heartbeat:
                    raise Failure(f"heartbeat {rid} answered by a non-heartbeat frame")
                _check(stats, f.status == wire.BOLT_SUCCESS, False, lat, "bolt heartbeat")
                return
            if i % 10 == 3:
                stats.counts["oneway"] += 1
                await conn.send(wire.bolt_request(rid, wire.GREETER_BOLT, "sayHello", [f"oneway-{i}"],
                                                  oneway=True))
                return
            missing = i % 20 == 11
            service = MISSING_SERVICE + ":1.0" if missing else wire.GREETER_BOLT
            if missing:
                stats.counts["no_route_sent"] += 1
            name = f"bolt-{i}"
            f, lat = await _timed(conn.call(rid, wire.bolt_request(rid, service, "sayHello", [name])))
            if f.request_id != rid:
                raise Failure(f"response id {f.request_id} != request id {rid}")
            ok = f.status == wire.BOLT_SUCCESS
            if ok:
                value = wire.bolt_parse_result(bytes(f.raw))
                if not (isinstance(value, str) and value.startswith(f"Hello, {name} ")):
                    raise Failure(f"unexpected result {value!r}")
            _check(stats, ok, missing, lat, lambda: f"bolt {service}: status {f.status} {_text(f, wire.bolt_parse_result)}")

        if not await _guard(stats, slot, "bolt", one):

            return


# ======================================================================= thrift ==========
async def _thrift_worker(stats: Stats, slot: Slot, budget: Budget) -> None:
    while (i := budget.take()) is not None:

        async def one() -> None:
            conn = await slot.get()
            seq = conn.ids()
            stats.requests += 1
            if i % 10 == 3:
                stats.counts["oneway"] += 1
                await conn.send(wire.thrift_call(seq, "log", f"oneway-{i}", oneway=True))
                return
            missing = i % 20 == 11
            method = "noSuchMethod" if missing else "sayHello"
            if missing:
                stats.counts["no_route_sent"] += 1
            name = f"thrift-{i}"
            f, lat = await _timed(conn.call(seq, wire.thrift_call(seq, method, name)))
            mtype, mname, rseq, fields = wire.thrift_parse(bytes(f.raw))
            if rseq != seq or f.request_id != seq:
                raise Failure(f"reply seqid {rseq} (frame id {f.request_id}) != call seqid {seq}")
            if mname != method:
                raise Failure(f"reply names method {mname!r}, call was {method!r}")
            ok = mtype == wire.T_REPLY
            if ok and not str(fields.get(0, "")).startswith(f"Hello, {name} "):
                raise Failure(f"unexpected result {fields!r}")
            _check(stats, ok, missing, lat, lambda: f"thrift {method}: {fields.get(1, '') if not ok else 'REPLY'}")

        if not await _guard(stats, slot, "thrift", one):

            return


# ======================================================================== kafka ==========
TOPIC = "demo"
API_VERSIONS_V, METADATA_V, PRODUCE_V = 3, 12, 9


async def _kafka_call(stats: Stats, conn: Conn, api_key: int, version: int, payload: Any,
                      ) -> tuple[Any, float]:
    cid = conn.ids()
    stats.requests += 1
    stats.counts[f"api_{api_key}"] += 1
    f, lat = await _timed(conn.call(cid, wire.kafka_request(api_key, version, cid, payload)))
    rcid, rsp = wire.kafka_parse_response(bytes(f.raw), api_key, version)
    if rcid != cid or f.request_id != cid:
        raise Failure(f"correlation id {rcid} (frame id {f.request_id}) != request's {cid}")
    return rsp, lat


async def _kafka_worker(stats: Stats, slot: Slot, budget: Budget,
                        broker_ok: Callable[[str, int], str | None]) -> None:
    from kio.schema.api_versions.v3.request import ApiVersionsRequest
    from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
    from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
    from kio.schema.types import TopicName
    from kio.static.primitive import Records, i16, i32, i32Timedelta

    topic = TopicName(TOPIC)

    broker: Slot | None = None
    try:
        while (i := budget.take()) is not None:

            async def one() -> None:
                nonlocal broker
                boot = await slot.get()
                if broker is None or i % 50 == 0:
                    # bootstrap: what every client does first
                    rsp, lat = await _kafka_call(stats, boot, wire.API_VERSIONS, API_VERSIONS_V,
                                                 ApiVersionsRequest(client_software_name="xproto-demo",
                                                                    client_software_version="1"))
                    _check(stats, rsp.error_code == 0, False, lat, "kafka ApiVersions")
                    rsp, lat = await _kafka_call(stats, boot, wire.API_METADATA, METADATA_V, MetadataRequest(
                        topics=(MetadataRequestTopic(topic_id=None, name=topic),),
                        include_topic_authorized_operations=False))
                    ok = bool(rsp.brokers) and rsp.topics and rsp.topics[0].error_code == 0
                    _check(stats, bool(ok), False, lat, "kafka Metadata")
                    b = rsp.brokers[0]
                    why = broker_ok(b.host, b.port)
                    if why:
                        stats.counts["broker_address_wrong"] += 1
                        raise Failure(f"Metadata gave broker {b.host}:{b.port}: {why}")
                    stats.counts["broker_address_ok"] += 1
                    if broker is None:
                        broker = Slot("kafka", (b.host, b.port), stats, timeout=slot.timeout)
                    return
                conn = await broker.get()
                acks = 0 if i % 10 == 3 else 1
                records = Records(wire.kafka_record_batch([f"message {i}".encode()]))
                req = ProduceRequest(
                    acks=i16(acks), timeout=i32Timedelta.parse(datetime.timedelta(seconds=3)),
                    topic_data=(TopicProduceData(name=topic, partition_data=(
                        PartitionProduceData(index=i32(0), records=records),)),))
                if acks == 0:
                    cid = conn.ids()
                    stats.requests += 1
                    stats.counts["produce_acks0"] += 1
                    await conn.send(wire.kafka_request(wire.API_PRODUCE, PRODUCE_V, cid, req))
                    return
                stats.counts["produce_acks1"] += 1
                rsp, lat = await _kafka_call(stats, conn, wire.API_PRODUCE, PRODUCE_V, req)
                part = rsp.responses[0].partition_responses[0]
                _check(stats, part.error_code == 0, False, lat, "kafka Produce")

            if not await _guard(stats, slot, "kafka", one):

                return
    finally:
        if broker is not None:
            await broker.close()


# ========================================================================= http ==========
async def _http_worker(stats: Stats, slot: Slot, budget: Budget) -> None:
    while (i := budget.take()) is not None:

        async def one() -> None:
            conn = await slot.get()
            stats.requests += 1
            missing = i % 20 == 11
            if i % 10 == 3:
                stats.counts["chunked_post"] += 1
                chunks = [b"x" * 100, b"y" * 1000, b"z" * 10]
                data = wire.http_request("POST", "/api/upload", i, body_chunks=chunks)
                want = b"received 1110 bytes\n"
            elif i % 15 == 5:
                stats.counts["chunked_response"] += 1
                data = wire.http_request("GET", "/api/stream", i)
                want = b"".join(f"part {k}\n".encode() for k in range(4))
            elif missing:
                stats.counts["no_route_sent"] += 1
                data = wire.http_request("GET", "/nowhere", i)
                want = b""
            else:
                data = wire.http_request("GET", f"/api/hello?i={i}", i)
                want = b"Hello from "
            f, lat = await _timed(conn.call(i, data))
            msg = wire.http_parse(bytes(f.raw), response=True)
            echoed = msg.headers.get("x-demo-id")
            if echoed is not None and echoed != str(i):
                raise Failure(f"response to request {i} carries X-Demo-Id {echoed}")
            ok = 200 <= msg.status < 400
            if ok:
                if echoed is None:
                    raise Failure(f"response to request {i} lacks X-Demo-Id")
                if not bytes(msg.body).startswith(want):
                    raise Failure(f"unexpected body {bytes(msg.body[:60])!r}")
            _check(stats, ok, missing, lat,
                   lambda: f"http {data.split(b' ', 2)[1].decode()}: {msg.status} {bytes(msg.body[:80])!r}")

        if not await _guard(stats, slot, "http", one):

            return


# ======================================================================= driver ==========
@dataclass
class Plan:
    """How many connections and concurrent requests each protocol uses."""
    conns: int
    inflight: int          # concurrent requests per connection (1 = ping-pong)
    fifo: bool = False


PLANS = {
    "dubbo": Plan(2, 4), "bolt": Plan(2, 4), "thrift": Plan(2, 1),
    "kafka": Plan(2, 1), "http": Plan(2, 1, fifo=True),
}


async def run_clients(targets: dict[str, list[Address]], duration: float, *,
                      max_requests: int = 50_000,
                      broker_ok: Callable[[str, int], str | None] = lambda h, p: None,
                      call_timeout: float = CALL_TIMEOUT) -> dict[str, Stats]:
    """Drive every protocol in ``targets`` (protocol -> addresses; connections are spread
    over them) for ``duration`` seconds or ``max_requests`` requests per protocol."""
    stats: dict[str, Stats] = {}
    slots: list[Slot] = []
    jobs: list[Awaitable[None]] = []
    for proto, addrs in targets.items():
        st = stats[proto] = Stats(proto)
        plan = PLANS[proto]
        budget = Budget(duration, max_requests)
        for k in range(max(plan.conns, len(addrs))):
            slot = Slot(proto, addrs[k % len(addrs)], st, fifo=plan.fifo, timeout=call_timeout)
            slots.append(slot)
            for _ in range(plan.inflight):
                if proto == "kafka":
                    jobs.append(_kafka_worker(st, slot, budget, broker_ok))
                else:
                    jobs.append(_WORKERS[proto](st, slot, budget))
    try:
        await asyncio.gather(*jobs)
    finally:
        for s in slots:
            await s.close()
    return stats


_WORKERS: dict[str, Callable[[Stats, Slot, Budget], Awaitable[None]]] = {
    "dubbo": _dubbo_worker, "bolt": _bolt_worker, "thrift": _thrift_worker, "http": _http_worker,
}
