"""`xproto demo`: the sample services on their own, the clients against them, and the whole
demo as a user runs it (a subprocess, through the proxy)."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
import subprocess
import sys
from typing import Any

import pytest

from xproto.codec import Role
from xproto.demo import PROTOCOLS, load_template, prepare_config, wire
from xproto.demo.clients import run_clients
from xproto.demo.services import (
    BoltGreeter,
    DubboGreeter,
    FrameServer,
    HttpService,
    KafkaBroker,
    ThriftGreeter,
)
from xproto.demo.wire import decoder_for
from xproto.frame import Frame

pytestmark = pytest.mark.timeout(60)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def exchange(server: FrameServer, protocol: str, data: bytes, n_replies: int,
                   quiet_after: bool = True) -> list[Frame]:
    """Send ``data`` to the server and read exactly ``n_replies`` response frames; with
    ``quiet_after``, also check that nothing more arrives before the server sees EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    dec = decoder_for(protocol, Role.RESPONSES)
    reqdec = decoder_for(protocol, Role.REQUESTS)
    frames_sent, used = reqdec.decode_all(data)
    assert used == len(data)
    for f in frames_sent:
        dec.request_sent(f)
    writer.write(data)
    await writer.drain()
    if quiet_after:
        writer.write_eof()
    buf = bytearray()
    out: list[Frame] = []
    while len(out) < n_replies:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        assert chunk, f"connection closed after {len(out)} of {n_replies} replies"
        buf += chunk
        frames, used = dec.decode_all(buf)
        del buf[:used]
        out += frames
    if quiet_after:
        rest = await asyncio.wait_for(reader.read(), 5)   # the server closes after our EOF
        buf += rest
        assert not buf, f"unexpected extra bytes {bytes(buf[:40])!r}"
    writer.close()
    await writer.wait_closed()
    assert len(out) == n_replies
    return out


# --- services on their own ------------------------------------------------------------------

def test_dubbo_greeter_answers_calls_heartbeats_and_not_oneway() -> None:
    async def go() -> None:
        async with DubboGreeter("g") as s:
            data = (wire.dubbo_request(7, wire.GREETER_SERVICE, "sayHello", ["ann"])
                    + wire.dubbo_request(8, wire.GREETER_SERVICE, "sayHello", ["bob"], twoway=False)
                    + wire.dubbo_heartbeat(9)
                    + wire.dubbo_request(10, "com.example.Missing", "sayHello", ["cy"]))
            r = await exchange(s, "dubbo", data, 3)
            assert [f.request_id for f in r] == [7, 9, 10]
            assert r[0].status == wire.DUBBO_OK and not r[0].heartbeat
            assert wire.dubbo_parse_result(r[0].raw, r[0].status) == "Hello, ann (from g)"
            # the body is a hessian2 int flag 1 (RESPONSE_VALUE) then the string
            assert r[0].raw[16] == 0x91
            assert r[1].heartbeat and r[1].status == wire.DUBBO_OK and r[1].raw[16:] == b"N"
            assert r[2].status == wire.DUBBO_SERVICE_NOT_FOUND
            assert "com.example.Missing" in wire.dubbo_parse_result(r[2].raw, r[2].status)
            assert s.stats["oneway"] == 1 and s.stats["heartbeats"] == 1 and s.stats["requests"] == 2
    run(go())


def test_dubbo_request_body_is_a_hessian2_invocation() -> None:
    raw = wire.dubbo_request(1, "com.example.Greeter", "sayHello", ["x"])
    magic, flag, _st, rid, blen = struct.unpack_from(">HBBqI", raw)
    assert magic == 0xDABB and flag == 0xC2 and rid == 1 and blen == len(raw) - 16
    service, method, args, att = wire.dubbo_parse_invocation(raw)
    assert (service, method, args) == ("com.example.Greeter", "sayHello", ["x"])
    assert att["path"] == "com.example.Greeter"
    # xproto's own codec reads the same headers out of it
    f = decoder_for("dubbo", Role.REQUESTS).decode(raw, 0)
    assert isinstance(f, Frame)
    assert f.headers["service"] == "com.example.Greeter" and f.headers["method"] == "sayHello"


def test_bolt_greeter() -> None:
    async def go() -> None:
        async with BoltGreeter("b") as s:
            data = (wire.bolt_request(1, wire.GREETER_BOLT, "sayHello", ["ann"])
                    + wire.bolt_heartbeat(2)
                    + wire.bolt_request(3, wire.GREETER_BOLT, "sayHello", ["ow"], oneway=True)
                    + wire.bolt_request(4, "com.example.Missing:1.0", "sayHello", ["x"]))
            r = await exchange(s, "bolt", data, 3)
            assert [f.request_id for f in r] == [1, 2, 4]
            assert r[0].status == wire.BOLT_SUCCESS and wire.bolt_parse_result(r[0].raw) == "Hello, ann (from b)"
            assert r[1].heartbeat and r[1].status == wire.BOLT_SUCCESS
            assert r[2].status == wire.BOLT_NO_PROCESSOR
            assert s.stats["oneway"] == 1
    run(go())


def test_bolt_request_headers_seen_by_codec() -> None:
    f = decoder_for("bolt", Role.REQUESTS).decode(wire.bolt_request(5, wire.GREETER_BOLT, "sayHello", ["a"]), 0)
    assert isinstance(f, Frame)
    assert f.headers["service"] == wire.GREETER_BOLT and f.headers["method"] == "sayHello"


def test_thrift_greeter() -> None:
    async def go() -> None:
        async with ThriftGreeter("t") as s:
            data = (wire.thrift_call(1, "sayHello", "ann") + wire.thrift_call(2, "log", "x", oneway=True)
                    + wire.thrift_call(3, "noSuchMethod", "x"))
            r = await exchange(s, "thrift", data, 2)
            t0 = wire.thrift_parse(r[0].raw)
            assert t0 == (wire.T_REPLY, "sayHello", 1, {0: "Hello, ann (from t)"})
            t1 = wire.thrift_parse(r[1].raw)
            assert t1[:3] == (wire.T_EXCEPTION, "noSuchMethod", 3)
            assert t1[3][2] == wire.TAPP_UNKNOWN_METHOD
            assert s.stats["oneway"] == 1
    run(go())


def test_thrift_messages_read_by_thriftpy2(tmp_path: Any) -> None:
    """The demo's Thrift bytes are what a real Thrift stack reads (thriftpy2, pure binary)."""
    thriftpy2 = pytest.importorskip("thriftpy2")
    from thriftpy2.protocol.binary import TBinaryProtocol
    from thriftpy2.transport import TMemoryBuffer

    idl = tmp_path / "greeter.thrift"
    idl.write_text("service Greeter { string sayHello(1: string name) oneway void log(1: string msg) }")
    greeter = thriftpy2.load(str(idl), module_name="greeter_thrift").Greeter

    proto = TBinaryProtocol(TMemoryBuffer(wire.thrift_reply(5, "sayHello", "hi")[4:]))
    assert proto.read_message_begin() == ("sayHello", 2, 5)
    result = greeter.sayHello_result()
    proto.read_struct(result)
    assert result.success == "hi"

    proto = TBinaryProtocol(TMemoryBuffer(wire.thrift_call(6, "log", "m", oneway=True)[4:]))
    assert proto.read_message_begin() == ("log", 4, 6)
    args = greeter.log_args()
    proto.read_struct(args)
    assert args.msg == "m"


def test_kafka_broker_metadata_points_at_itself_and_acks0_gets_no_reply() -> None:
    import datetime

    from kio.schema.api_versions.v3.request import ApiVersionsRequest
    from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
    from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData

    def produce(acks: int) -> ProduceRequest:
        return ProduceRequest(acks=acks, timeout=datetime.timedelta(seconds=1), topic_data=(TopicProduceData(
            name="demo", partition_data=(PartitionProduceData(
                index=0, records=wire.kafka_record_batch([b"a", b"b"])),)),))

    async def go() -> None:
        async with KafkaBroker("k") as s:
            data = (wire.kafka_request(18, 3, 1, ApiVersionsRequest(client_software_name="t",
                                                                   client_software_version="1"))
                    + wire.kafka_request(3, 12, 2, MetadataRequest(
                        topics=(MetadataRequestTopic(topic_id=None, name="demo"),),
                        include_topic_authorized_operations=False))
                    + wire.kafka_request(0, 9, 3, produce(0))
                    + wire.kafka_request(0, 9, 4, produce(1)))
            r = await exchange(s, "kafka", data, 3)
            assert [f.request_id for f in r] == [1, 2, 4]
            _cid, av = wire.kafka_parse_response(r[0].raw, 18, 3)
            assert {k.api_key for k in av.api_keys} == {0, 3, 18}
            _cid, md = wire.kafka_parse_response(r[1].raw, 3, 12)
            assert [(b.host, b.port) for b in md.brokers] == [("127.0.0.1", s.port)]
            assert md.topics[0].partitions[0].leader_id == 0
            _cid, pr = wire.kafka_parse_response(r[2].raw, 0, 9)
            part = pr.responses[0].partition_responses[0]
            assert part.error_code == 0 and part.base_offset == 2   # after the acks=0 batch
            assert s.records == 4 and s.stats["produce_acks_0"] == 1
    run(go())


def test_http_service_keepalive_chunked_both_ways() -> None:
    async def go() -> None:
        async with HttpService("h") as s:
            data = (wire.http_request("GET", "/api/hello", 1)
                    + wire.http_request("POST", "/api/upload", 2, body_chunks=[b"ab", b"cde"])
                    + wire.http_request("GET", "/api/stream", 3)
                    + wire.http_request("GET", "/nowhere", 4))
            r = await exchange(s, "http", data, 4)
            msgs = [wire.http_parse(f.raw, response=True) for f in r]
            assert [m.status for m in msgs] == [200, 200, 200, 404]
            assert [m.headers["x-demo-id"] for m in msgs] == ["1", "2", "3", "4"]
            assert bytes(msgs[1].body) == b"received 5 bytes\n"
            assert msgs[2].headers["transfer-encoding"] == "chunked"
            assert bytes(msgs[2].body) == b"part 0\npart 1\npart 2\npart 3\n"
    run(go())


def test_clients_against_services_directly() -> None:
    """The clients and the services agree without the proxy: every check passes, the
    missing-route requests come back as the services' own errors."""
    async def go() -> None:
        classes = {"dubbo": DubboGreeter, "bolt": BoltGreeter, "thrift": ThriftGreeter,
                   "kafka": KafkaBroker, "http": HttpService}
        servers = {p: await c(p).start() for p, c in classes.items()}
        try:
            kport = servers["kafka"].port
            stats = await run_clients({p: [("127.0.0.1", s.port)] for p, s in servers.items()}, 0.5,
                                      max_requests=400,
                                      broker_ok=lambda h, p: None if p == kport else "wrong broker")
        finally:
            for s in servers.values():
                await s.stop()
        for p, st in stats.items():
            assert st.requests > 20, p
            assert st.unexpected == 0, (p, st.problems)
            assert st.errors == st.expected_errors, p
            assert len(st.latencies) > 10
        for p in ("dubbo", "bolt", "thrift", "http"):
            assert stats[p].expected_errors == stats[p].counts["no_route_sent"] > 0, p
        assert stats["dubbo"].counts["oneway"] and stats["dubbo"].counts["heartbeats"]
        assert stats["kafka"].counts["produce_acks0"] and stats["kafka"].counts["broker_address_ok"]
        # what the services saw matches what the clients sent
        assert servers["dubbo"].stats["frames"] == stats["dubbo"].requests
        assert servers["kafka"].stats["produce_acks_0"] == stats["kafka"].counts["produce_acks0"]
    run(go())


def test_client_reports_wrong_response_id() -> None:
    """A server answering with the wrong id is caught, not counted as success."""
    class Liar(DubboGreeter):
        def handle(self, frame: Frame) -> bytes | None:
            out = super().handle(frame)
            if out and not frame.heartbeat:
                out = out[:4] + struct.pack(">q", frame.request_id + 1000) + out[12:]
            return out

    async def go() -> None:
        async with Liar() as s:
            stats = await run_clients({"dubbo": [("127.0.0.1", s.port)]}, 5.0, max_requests=30,
                                      call_timeout=0.3)
        st = stats["dubbo"]
        assert st.unexpected > 0 and st.errors > 0
    run(go())


# --- the services answer real third-party clients ----------------------------------------

def test_kafka_broker_serves_aiokafka_producer() -> None:
    aiokafka = pytest.importorskip("aiokafka")

    async def go() -> None:
        async with KafkaBroker("k") as s:
            p = aiokafka.AIOKafkaProducer(bootstrap_servers=s.address, acks=1, request_timeout_ms=5000)
            try:
                await asyncio.wait_for(p.start(), 10)
                md = await asyncio.wait_for(p.send_and_wait("demo", b"hello"), 10)
                md2 = await asyncio.wait_for(p.send_and_wait("demo", b"again"), 10)
            finally:
                await p.stop()
            assert (md.topic, md.partition, md.offset, md2.offset) == ("demo", 0, 0, 1)
            assert s.records == 2 and s.stats["handler_errors"] == 0
    run(go())


def test_http_service_serves_httpx() -> None:
    httpx = pytest.importorskip("httpx")

    async def body():  # type: ignore[no-untyped-def]
        yield b"abc"
        yield b"de"

    async def go() -> None:
        async with HttpService("h") as s:
            async with httpx.AsyncClient(base_url=f"http://{s.address}") as c:
                r1 = await c.get("/api/hello", headers={"x-demo-id": "1"})
                r2 = await c.get("/api/stream")
                r3 = await c.post("/api/upload", content=body())
                r4 = await c.get("/nowhere")
            assert (r1.status_code, r1.headers["x-demo-id"]) == (200, "1")
            assert r2.text == "part 0\npart 1\npart 2\npart 3\n"
            assert r3.request.headers["transfer-encoding"] == "chunked" and r3.text == "received 5 bytes\n"
            assert r4.status_code == 404
            assert s.stats["connections"] == 1          # keep-alive: one connection for all four
    run(go())


def test_thrift_greeter_serves_thriftpy2_client(tmp_path: Any) -> None:
    thriftpy2 = pytest.importorskip("thriftpy2")
    from thriftpy2.contrib.aio.rpc import make_client
    from thriftpy2.contrib.aio.transport import TAsyncFramedTransportFactory
    from thriftpy2.thrift import TApplicationException

    idl = tmp_path / "greeter2.thrift"
    idl.write_text("service Greeter { string sayHello(1: string name) string noSuchMethod(1: string x) }")
    greeter = thriftpy2.load(str(idl), module_name="greeter2_thrift").Greeter

    async def go() -> None:
        async with ThriftGreeter("t") as s:
            c = await make_client(greeter, "127.0.0.1", s.port, trans_factory=TAsyncFramedTransportFactory())
            try:
                assert await c.sayHello("ann") == "Hello, ann (from t)"
                with pytest.raises(TApplicationException):
                    await c.noSuchMethod("x")
            finally:
                c.close()
    run(go())


# --- the config template ------------------------------------------------------------------

def test_template_is_a_valid_config_and_ports_are_substituted() -> None:
    from xproto.config import parse_config

    t = load_template()
    parse_config(t)                      # the template itself is valid as shipped
    addrs = {c["name"]: [f"127.0.0.1:{40000 + i}" for i in range(len(c["endpoints"]))]
             for c in t["clusters"]}
    cfg = parse_config(prepare_config(t, addrs))
    ports = [li.address.port for li in cfg.listeners] + [cfg.admin.address.port]
    assert len(set(ports)) == len(ports)
    kafka = next(li for li in cfg.listeners if li.kafka)
    lo, hi = kafka.kafka.broker_ports
    assert hi - lo == 7 and not set(range(lo, hi + 1)) & set(ports)
    assert {li.name: li.protocols for li in cfg.listeners}["rpc"] == list(PROTOCOLS)
    assert cfg.cluster("dubbo-greeter").endpoints == addrs["dubbo-greeter"]


def test_template_ships_as_package_data() -> None:
    from importlib import resources

    assert resources.files("xproto.demo").joinpath("config.yaml").is_file()


def test_cross_check_catches_counter_mismatches() -> None:
    from xproto.demo import cross_check, parse_metrics
    from xproto.demo.clients import Stats

    st = Stats("dubbo", requests=100)
    st.counts.update(heartbeats=4, no_route_sent=5)
    text = """# TYPE xproto_downstream_requests_total counter
xproto_downstream_requests_total{listener="rpc",protocol="dubbo",api=""} 96.0
xproto_downstream_requests_total{listener="rpc",protocol="bolt",api=""} 7.0
# TYPE xproto_local_replies_total counter
xproto_local_replies_total{listener="rpc",protocol="dubbo",reason="no_route"} 5.0
xproto_local_replies_total{listener="rpc",protocol="dubbo",reason="timeout"} 2.0
"""
    m = parse_metrics(text)
    good = cross_check({"dubbo": st}, m, {"dubbo": 91})["dubbo"]
    assert good.proxy_requests == 96 and good.no_route == 5 and not good.problems
    bad = cross_check({"dubbo": st}, m, {"dubbo": 90})["dubbo"]
    assert len(bad.problems) == 1 and "services received 90" in bad.problems[0]
    st.requests = 120                       # the proxy missed some requests
    assert len(cross_check({"dubbo": st}, m)["dubbo"].problems) == 1
    st.requests, st.counts["no_route_sent"] = 100, 6
    assert "no_route" in cross_check({"dubbo": st}, m)["dubbo"].problems[0]


# --- the whole demo, as a user runs it -------------------------------------------------------

def _demo_cmd() -> list[str]:
    exe = shutil.which("xproto", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "xproto.cli"]


def test_demo_survives_a_busy_port(monkeypatch: Any) -> None:
    """A port the demo picked is taken before the proxy binds it: it picks again."""
    import io
    import socket

    from xproto import demo

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    real = demo.free_port
    calls = iter([None, taken])   # the 2nd port asked for (listener rpc's) is the busy one

    def fake() -> int:
        return next(calls, None) or real()

    monkeypatch.setattr(demo, "free_port", fake)
    out = io.StringIO()
    try:
        rc = demo.run_demo(0.5, out=out)
    finally:
        busy.close()
    text = out.getvalue()
    assert "picking new ports" in text, text
    assert rc == 0, text


def test_demo_with_the_proxy_in_process() -> None:
    import io

    from xproto import demo

    out = io.StringIO()
    rc = demo.run_demo(0.5, out=out, in_process=True)
    text = out.getvalue()
    assert rc == 0, text
    assert "proxy process" not in text and re.search(r"^metrics: http://", text, re.MULTILINE), text


def test_xproto_demo_end_to_end() -> None:
    p = subprocess.run(_demo_cmd() + ["demo", "--duration", "2"], capture_output=True, text=True,
                       timeout=50, check=False)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(dubbo|bolt|thrift|kafka|http)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), float(m.group(4)), float(m.group(5)))
    assert set(rows) == set(PROTOCOLS), out
    for proto, (req, err, p50, p99) in rows.items():
        assert req > 0 and err < req and 0 < p50 <= p99, (proto, out)
    assert re.search(r"^metrics: http://127\.0\.0\.1:\d+/metrics$", out, re.MULTILINE), out
    assert "MISMATCH" not in out and "UNEXPECTED" not in out, out
    # the proxy ran as `xproto proxy -c ...` and drained on SIGTERM
    assert "proxy process: stopped by SIGTERM, exit status 0" in out, out
    # exits cleanly: no tracebacks, no never-retrieved task exceptions or pending-task warnings
    assert "Traceback" not in p.stderr and "Task was destroyed" not in p.stderr, p.stderr
    assert "never retrieved" not in p.stderr, p.stderr
