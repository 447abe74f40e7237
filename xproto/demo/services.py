"""Sample upstream services for the demo, one per built-in protocol (asyncio, 127.0.0.1).

Each service frames what it receives with xproto's own sans-I/O decoder for its protocol
(role REQUESTS) and answers with bytes built in :mod:`xproto.demo.wire`:

* :class:`DubboGreeter` — ``com.example.Greeter.sayHello(String)`` -> hessian2 response
  (flag 1 + string); heartbeats answered; one-way calls counted, not answered; other
  services -> status 60 SERVICE_NOT_FOUND.
* :class:`BoltGreeter` — SofaRequest -> SofaResponse (hessian2), heartbeats, one-way.
* :class:`ThriftGreeter` — framed strict binary ``sayHello(1: string)`` -> REPLY
  ``{0: string}``; ONEWAY counted; unknown methods -> EXCEPTION UNKNOWN_METHOD.
* :class:`KafkaBroker` — a one-broker cluster: ApiVersions, Metadata (pointing at itself),
  Produce (acks=0 gets no response, as the protocol says), via ``kio``.
* :class:`HttpService` — HTTP/1.1 keep-alive: ``GET /api/hello``, ``POST /api/upload``
  (chunked bodies accepted), ``GET /api/stream`` (chunked response), 404 otherwise.
"""
from __future__ import annotations

import asyncio
import datetime
from collections import Counter
from typing import Any, Self

from kio.schema.errors import ErrorCode

from xproto.codec import Role
from xproto.demo import wire
from xproto.demo.wire import decoder_for
from xproto.errors import ProtocolError
from xproto.frame import Frame, Kind

HOST = "127.0.0.1"
READ_SIZE = 65536
GREETER = wire.GREETER_SERVICE


class FrameServer:
    """An asyncio TCP server that frames requests with xproto's decoder and answers each."""

    protocol = ""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.protocol
        self.stats: Counter[str] = Counter()
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.last_error = ""

    @property
    def port(self) -> int:
        assert self._server is not None
        sockets: Any = getattr(self._server, "sockets", None)
        return int(sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    async def start(self, port: int = 0) -> FrameServer:
        self._server = await asyncio.start_server(self._connection, HOST, port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()      # the connection's read ends with EOF
        if self._conns:
            _done, pending = await asyncio.wait(list(self._conns), timeout=1.0)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self._writers.add(writer)
        task.add_done_callback(self._conns.discard)
        self.stats["connections"] += 1
        dec = decoder_for(self.protocol, Role.REQUESTS)
        buf = bytearray()
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                buf += data
                pos = 0
                out = bytearray()
                while pos < len(buf):
                    r = dec.decode(buf, pos)
                    if isinstance(r, int):
                        break
                    pos += len(r.raw)
                    self.stats["frames"] += 1
                    reply = self.handle(r)
                    if reply:
                        out += reply
                del buf[:pos]
                if out:
                    writer.write(out)
                    await writer.drain()
        except ProtocolError as e:
            self.stats["protocol_errors"] += 1
            self.last_error = repr(e)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # stop(): end quietly (asyncio's stream callback chokes on a cancelled task)
            pass
        except Exception as e:  # noqa: BLE001 - a handler bug: count it, drop the connection, keep serving
            self.stats["handler_errors"] += 1
            self.last_error = repr(e)
        finally:
            self._writers.discard(writer)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    def handle(self, frame: Frame) -> bytes | None:
        raise NotImplementedError


# ======================================================================== dubbo ==========
class DubboGreeter(FrameServer):
    protocol = "dubbo"

    def handle(self, frame: Frame) -> bytes | None:
        if frame.heartbeat:
            self.stats["heartbeats"] += 1
            return wire.dubbo_heartbeat_reply(frame.request_id) if frame.kind is Kind.REQUEST else None
        if frame.kind is Kind.RESPONSE:
            self.stats["unexpected_responses"] += 1
            return None
        service, method, args, _att = wire.dubbo_parse_invocation(frame.raw)
        if frame.kind is Kind.ONEWAY:
            self.stats["oneway"] += 1
            return None
        self.stats["requests"] += 1
        if service != GREETER or method != "sayHello":
            return wire.dubbo_response(frame.request_id, f"Not found exported service: {service}.{method}",
                                       wire.DUBBO_SERVICE_NOT_FOUND)
        return wire.dubbo_response(frame.request_id, f"Hello, {args[0]} (from {self.name})")


# ========================================================================= bolt ==========
class BoltGreeter(FrameServer):
    protocol = "bolt"

    def handle(self, frame: Frame) -> bytes | None:
        if frame.heartbeat:
            self.stats["heartbeats"] += 1
            return wire.bolt_heartbeat_reply(frame.request_id) if frame.kind is Kind.REQUEST else None
        if frame.kind is Kind.RESPONSE:
            self.stats["unexpected_responses"] += 1
            return None
        headers, method, args = wire.bolt_parse_request(frame.raw)
        if frame.kind is Kind.ONEWAY:
            self.stats["oneway"] += 1
            return None
        self.stats["requests"] += 1
        if not headers.get("service", "").startswith(GREETER) or method != "sayHello":
            return wire.bolt_response(frame.request_id, f"no processor for {headers.get('service')}",
                                      wire.BOLT_NO_PROCESSOR)
        return wire.bolt_response(frame.request_id, f"Hello, {args[0]} (from {self.name})")


# ======================================================================= thrift ==========
class ThriftGreeter(FrameServer):
    protocol = "thrift"

    def handle(self, frame: Frame) -> bytes | None:
        mtype, name, seqid, fields = wire.thrift_parse(frame.raw)
        if mtype == wire.T_ONEWAY:
            self.stats["oneway"] += 1
            return None
        if mtype != wire.T_CALL:
            self.stats["unexpected_responses"] += 1
            return None
        self.stats["requests"] += 1
        if name != "sayHello":
            return wire.thrift_exception(seqid, name, f"Invalid method name: '{name}'")
        return wire.thrift_reply(seqid, name, f"Hello, {fields.get(1)} (from {self.name})")


# ======================================================================== kafka ==========
def _make(cls: Any, **kw: Any) -> Any:
    """Build a kio entity, dropping the fields its version does not have."""
    fields = cls.__dataclass_fields__
    return cls(**{k: v for k, v in kw.items() if k in fields})


class KafkaBroker(FrameServer):
    """A single-broker 'cluster' (node 0) that accepts ApiVersions, Metadata and Produce."""

    protocol = "kafka"
    NODE_ID = 0
    CLUSTER_ID = "xproto-demo-cluster"
    # (api key, min, max) this broker answers; versions kio can (de)serialise
    SUPPORTED = ((wire.API_PRODUCE, 3, 9), (wire.API_METADATA, 1, 12), (wire.API_VERSIONS, 0, 3))

    def __init__(self, name: str | None = None, topics: tuple[str, ...] = ("demo",)) -> None:
        super().__init__(name)
        self.topics = {t: 0 for t in topics}   # topic -> next offset (one partition each)
        self.records = 0

    def handle(self, frame: Frame) -> bytes | None:
        header, req = wire.kafka_parse_request(frame.raw)
        key, ver, cid = header.request_api_key, header.request_api_version, header.correlation_id
        self.stats[f"api_{key}"] += 1
        self.stats["requests"] += 1
        from kio.index import load_response_schema

        mod = __import__(load_response_schema(key, ver).__module__, fromlist=["x"])
        if key == wire.API_VERSIONS:
            rsp = _make(
                mod.ApiVersionsResponse, error_code=ErrorCode.none, throttle_time=datetime.timedelta(0),
                api_keys=tuple(mod.ApiVersion(api_key=k, min_version=lo, max_version=hi)
                               for k, lo, hi in self.SUPPORTED))
            return wire.kafka_response(cid, rsp)
        if key == wire.API_METADATA:
            return wire.kafka_response(cid, self._metadata(mod, req))
        if key == wire.API_PRODUCE:
            return self._produce(mod, cid, req)
        return None  # pragma: no cover - ApiVersions never advertised anything else

    def _metadata(self, mod: Any, req: Any) -> Any:
        names = list(self.topics) if req.topics is None else [t.name for t in req.topics]
        topics = []
        for n in names:
            known = n in self.topics
            parts = (_make(mod.MetadataResponsePartition,
                           error_code=ErrorCode.none, partition_index=0, leader_id=self.NODE_ID,
                           replica_nodes=(self.NODE_ID,), isr_nodes=(self.NODE_ID,)),) if known else ()
            err = ErrorCode.none if known else ErrorCode.unknown_topic_or_partition
            topics.append(_make(mod.MetadataResponseTopic, error_code=err, name=n, topic_id=None,
                                partitions=parts))
        return _make(mod.MetadataResponse, throttle_time=datetime.timedelta(0),
                     cluster_id=self.CLUSTER_ID, controller_id=self.NODE_ID,
                     brokers=(_make(mod.MetadataResponseBroker, node_id=self.NODE_ID, host=HOST,
                                    port=self.port),),
                     topics=tuple(topics))

    def _produce(self, mod: Any, cid: int, req: Any) -> bytes | None:
        self.stats[f"produce_acks_{req.acks}"] += 1
        responses = []
        for td in req.topic_data:
            parts = []
            for pd in td.partition_data:
                n = wire.kafka_count_records(pd.records)
                known = td.name in self.topics and pd.index == 0
                base = self.topics.get(td.name, -1)
                if known:
                    self.topics[td.name] += n
                    self.records += n
                err = ErrorCode.none if known else ErrorCode.unknown_topic_or_partition
                parts.append(_make(mod.PartitionProduceResponse, index=pd.index, error_code=err,
                                   base_offset=base if known else -1, record_errors=()))
            responses.append(mod.TopicProduceResponse(name=td.name, partition_responses=tuple(parts)))
        if req.acks == 0:   # no response at all for acks=0
            return None
        return wire.kafka_response(cid, _make(mod.ProduceResponse, responses=tuple(responses),
                                              throttle_time=datetime.timedelta(0)))


# ========================================================================= http ==========
class HttpService(FrameServer):
    protocol = "http"

    def handle(self, frame: Frame) -> bytes | None:
        msg = wire.http_parse(bytes(frame.raw), response=False)
        self.stats["requests"] += 1
        did = msg.headers.get("x-demo-id")
        path = msg.path.split("?", 1)[0]
        if msg.method == "GET" and path == "/api/hello":
            return wire.http_response(200, "OK", did, f"Hello from {self.name}\n".encode())
        if msg.method == "POST" and path == "/api/upload":
            self.stats["uploaded_bytes"] += len(msg.body)
            return wire.http_response(200, "OK", did, f"received {len(msg.body)} bytes\n".encode())
        if msg.method == "GET" and path == "/api/stream":
            chunks = [f"part {i}\n".encode() for i in range(4)]
            return wire.http_response(200, "OK", did, b"", chunks=chunks)
        return wire.http_response(404, "Not Found", did, b"not found\n")


SERVICE_CLASSES: dict[str, type[FrameServer]] = {
    "dubbo": DubboGreeter, "bolt": BoltGreeter, "thrift": ThriftGreeter,
    "kafka": KafkaBroker, "http": HttpService,
}
