"""Kafka through the proxy against fake brokers built with kio: correlation ids restored,
broker addresses in Metadata / FindCoordinator rewritten to per-broker proxy listeners,
Produce acks=0 never waits."""
from __future__ import annotations

import dataclasses
import datetime
import io
import random
import struct

import pytest
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer
from test_proxy_helpers import Client, Upstream, arun, listener, metric, proxy, until

from xproto.codecs.kafka import kafka_info, request_schema, response_schema
from xproto.frame import Frame, Kind

pytestmark = pytest.mark.timeout(60)

FLEX_REQ = {(3, 9): True, (3, 1): False, (10, 3): True, (10, 4): True, (0, 7): False, (18, 0): False,
            (18, 2): False}


def kreq(api_key: int, ver: int, corr: int, body: object, client_id: str = "test") -> bytes:
    out = io.BytesIO()
    entity_writer(type(body))(out, body)
    cid = client_id.encode()
    hdr = struct.pack(">hhih", api_key, ver, corr, len(cid)) + cid
    if FLEX_REQ[(api_key, ver)]:
        hdr += b"\x00"
    payload = hdr + out.getvalue()
    return struct.pack(">i", len(payload)) + payload


def kresp(corr: int, flexible: bool, body: object) -> bytes:
    out = io.BytesIO()
    entity_writer(type(body))(out, body)
    payload = struct.pack(">i", corr) + (b"\x00" if flexible else b"") + out.getvalue()
    return struct.pack(">i", len(payload)) + payload


def metadata_body(ver: int, brokers: list[tuple[int, str, int]]) -> object:
    s = response_schema(3, ver)
    bcls = _elem(s, "brokers")
    kw = {"node_id": 0, "host": "", "port": 0}
    bl = []
    for nid, host, port in brokers:
        b = {**kw, "node_id": nid, "host": host, "port": port}
        if "rack" in {f.name for f in dataclasses.fields(bcls)}:
            b["rack"] = None
        bl.append(bcls(**b))
    fields = {f.name for f in dataclasses.fields(s)}
    args: dict = {"brokers": tuple(bl), "controller_id": brokers[0][0], "topics": ()}
    if "throttle_time" in fields:
        args["throttle_time"] = datetime.timedelta(0)
    if "cluster_id" in fields:
        args["cluster_id"] = "fake"
    if "cluster_authorized_operations" in fields:
        args["cluster_authorized_operations"] = -2147483648
    return s(**args)


def _elem(schema: type, field: str) -> type:
    import typing
    hint = typing.get_type_hints(schema)[field]
    return typing.get_args(hint)[0]


def find_coordinator_body(ver: int, nid: int, host: str, port: int) -> object:
    s = response_schema(10, ver)
    if ver >= 4:
        c = _elem(s, "coordinators")
        return s(throttle_time=datetime.timedelta(0), coordinators=(c(
            key="grp", node_id=nid, host=host, port=port, error_code=ErrorCode(0), error_message=None),))
    return s(throttle_time=datetime.timedelta(0), error_code=ErrorCode(0), error_message=None,
             node_id=nid, host=host, port=port)


class FakeCluster:
    def __init__(self) -> None:
        self.brokers: list[Upstream] = []

    def addresses(self) -> list[tuple[int, str, int]]:
        return [(i + 1, "127.0.0.1", b.port) for i, b in enumerate(self.brokers)]

    def responder(self, f: Frame) -> bytes | None:
        info = kafka_info(f)
        key, ver = info.api_key, info.api_version
        if key == 3:
            return kresp(f.request_id, ver >= 9, metadata_body(ver, self.addresses()))
        if key == 10:
            nid, host, port = self.addresses()[-1]
            return kresp(f.request_id, ver >= 3, find_coordinator_body(ver, nid, host, port))
        if key == 18:
            s = response_schema(18, ver)
            av = _elem(s, "api_keys")
            keys = (av(api_key=3, min_version=0, max_version=99), av(api_key=0, min_version=0, max_version=99))
            return kresp(f.request_id, False, s(error_code=ErrorCode(0), api_keys=keys,
                                                 throttle_time=datetime.timedelta(0)))
        if key == 0:
            s = response_schema(0, ver)
            return kresp(f.request_id, False, s(responses=(), throttle_time=datetime.timedelta(0)))
        return None

    async def start(self, n: int) -> FakeCluster:
        for _ in range(n):
            self.brokers.append(await Upstream("kafka", self.responder).start())
        return self

    async def close(self) -> None:
        for b in self.brokers:
            await b.close()


def metadata_req(ver: int, corr: int) -> bytes:
    s = request_schema(3, ver)
    if ver >= 9:
        return kreq(3, ver, corr, s(topics=None, allow_auto_topic_creation=True,
                                    include_cluster_authorized_operations=False,
                                    include_topic_authorized_operations=False))
    return kreq(3, ver, corr, s(topics=None))


def brokers_of(f: Frame) -> list[tuple[int, str, int]]:
    from xproto.codecs.kafka_rewrite import broker_addresses
    return broker_addresses(f)


def _range() -> tuple[int, int]:
    lo = random.randrange(30000, 50000)
    return lo, lo + 30


def test_kafka_metadata_rewritten_and_per_broker_listeners() -> None:
    async def body() -> None:
        fc = await FakeCluster().start(2)
        lo, hi = _range()
        cfg = {"listeners": [listener(["kafka"], [{"cluster": "k"}],
                                      kafka={"advertise_host": "localhost", "broker_ports": f"{lo}-{hi}"})],
               "clusters": [{"name": "k", "endpoints": [fc.brokers[0].addr]}]}
        async with proxy(cfg) as p:
            c = await Client("kafka").connect(p.listener_address("main"))
            req = metadata_req(9, 1234)
            c.send(req, c.codec.new_decoder().decode(req))
            (f,) = await c.recv(1)
            assert f.request_id == 1234 and f.kind is Kind.RESPONSE
            seen = brokers_of(f)
            assert [b[0] for b in seen] == [1, 2]
            assert all(h == "localhost" and lo <= port <= hi for _n, h, port in seen)
            assert len({port for *_x, port in seen}) == 2
            real_ports = {b.port for b in fc.brokers}
            assert not real_ports & {port for *_x, port in seen}      # no real address leaks
            # a client following the address of broker 2 reaches broker 2 through the proxy
            port2 = seen[1][2]
            before = len(fc.brokers[1].requests())
            c2 = await Client("kafka").connect(("127.0.0.1", port2))
            req = metadata_req(1, 77)
            c2.send(req, c2.codec.new_decoder().decode(req))
            (g,) = await c2.recv(1)
            assert g.request_id == 77
            assert len(fc.brokers[1].requests()) == before + 1
            # the answer through the broker listener is rewritten too, to the same ports
            assert brokers_of(g) == seen
            # FindCoordinator v3 (top level) and v4 (coordinators[])
            for ver, corr in ((3, 5), (4, 6)):
                s = request_schema(10, ver)
                body_ = s(key="grp", key_type=0) if ver == 3 else s(key_type=0, coordinator_keys=("grp",))
                req = kreq(10, ver, corr, body_)
                c.send(req, c.codec.new_decoder().decode(req))
                (h,) = await c.recv(1)
                assert h.request_id == corr
                (addr,) = brokers_of(h)
                assert addr == (2, "localhost", port2)
            assert metric(p, "xproto_downstream_requests_total", listener="main", protocol="kafka",
                          api="Metadata") == 2
            c.close()
            c2.close()
        await fc.close()
    arun(body())


def test_kafka_produce_acks0_never_waits_and_order_kept() -> None:
    async def body() -> None:
        fc = await FakeCluster().start(1)
        cfg = {"listeners": [listener(["kafka"], [{"cluster": "k", "timeout": "200ms"}])],
               "clusters": [{"name": "k", "endpoints": [fc.brokers[0].addr]}]}
        async with proxy(cfg, id_start={"k": 2**31 - 1}) as p:
            c = await Client("kafka").connect(p.listener_address("main"))
            s = request_schema(0, 7)
            p0 = kreq(0, 7, 10, s(transactional_id=None, acks=0, timeout=datetime.timedelta(seconds=1),
                                  topic_data=()))
            p1 = kreq(0, 7, 11, s(transactional_id=None, acks=1, timeout=datetime.timedelta(seconds=1),
                                  topic_data=()))
            m = metadata_req(1, 12)
            for r in (p0, p1, m):
                f = c.codec.new_decoder().decode(r)
                if f.kind is Kind.REQUEST:
                    c.send(r, f)
                else:
                    c.send(r)
            got = await c.recv(2)
            assert [f.request_id for f in got] == [11, 12]     # request order, acks=0 unanswered
            assert [f.kind for f in fc.brokers[0].requests()] == [Kind.ONEWAY, Kind.REQUEST, Kind.REQUEST]
            # correlation ids upstream wrapped at 31 bits
            assert [f.request_id for f in fc.brokers[0].requests()] == [2**31 - 1, 0, 1]
            with pytest.raises(TimeoutError):
                await c.recv(1, timeout=0.4)
            assert metric(p, "xproto_local_replies_total", listener="main", protocol="kafka",
                          reason="timeout") == 0
            c.close()
        await fc.close()
    arun(body())


def test_kafka_bind_mode_one_upstream_connection_per_client() -> None:
    async def body() -> None:
        fc = await FakeCluster().start(1)
        b = fc.brokers[0]
        cfg = {"listeners": [listener(["kafka"], [{"cluster": "k"}])],
               "clusters": [{"name": "k", "endpoints": [b.addr]}]}
        async with proxy(cfg) as p:
            clients = [await Client("kafka").connect(p.listener_address("main")) for _ in range(3)]
            for i, c in enumerate(clients):
                for j in range(2):
                    req = metadata_req(1, 10 * i + j)
                    c.send(req, c.codec.new_decoder().decode(req))
            for i, c in enumerate(clients):
                got = await c.recv(2)
                assert [f.request_id for f in got] == [10 * i, 10 * i + 1]
            assert b.accepted == 3          # a dedicated upstream connection per client
            clients[0].close()
            await until(lambda: b.lost == 1)   # ... closed with its client
            # the broker drops a connection: its client is closed too (its session is gone)
            b.mode = "close"
            b.close_after = 0
            req = metadata_req(1, 99)
            clients[1].send(req, clients[1].codec.new_decoder().decode(req))
            assert await clients[1].closed()
            # the third client is unaffected
            b.mode = "echo"
            req = metadata_req(1, 100)
            clients[2].send(req, clients[2].codec.new_decoder().decode(req))
            (f,) = await clients[2].recv(1)
            assert f.request_id == 100
            clients[2].close()
        await fc.close()
    arun(body())


def test_listener_carrying_kafka_and_bolt_leaves_bolt_untouched() -> None:
    from test_proxy_core import bolt_echo, bolt_req, content

    async def body() -> None:
        fc = await FakeCluster().start(1)
        b = await Upstream("bolt", bolt_echo(b"B:")).start()
        lo, hi = _range()
        routes = [{"match": {"protocol": "kafka"}, "cluster": "k"}, {"cluster": "b"}]
        cfg = {"listeners": [listener(["bolt", "kafka"], routes,
                                      kafka={"advertise_host": "127.0.0.1", "broker_ports": f"{lo}-{hi}"})],
               "clusters": [{"name": "k", "endpoints": [fc.brokers[0].addr]},
                            {"name": "b", "endpoints": [b.addr]}]}
        async with proxy(cfg) as p:
            cb = await Client("bolt").connect(p.listener_address("main"))
            cb.send(bolt_req(3, content=b"x"))
            (f,) = await cb.recv(1)
            assert f.request_id == 3 and content(f) == b"B:x"
            ck = await Client("kafka").connect(p.listener_address("main"))
            req = metadata_req(1, 4)
            ck.send(req, ck.codec.new_decoder().decode(req))
            (g,) = await ck.recv(1)
            assert all(lo <= port <= hi for *_x, port in brokers_of(g))
            cb.close()
            ck.close()
        await b.close()
        await fc.close()
    arun(body())


def test_kafka_api_versions_capped_for_address_apis() -> None:
    from xproto.codecs.kafka import kafka_info as info_of
    from xproto.codecs.kafka import max_known_version

    async def body() -> None:
        fc = await FakeCluster().start(1)
        cfg = {"listeners": [listener(["kafka"], [{"cluster": "k"}])],
               "clusters": [{"name": "k", "endpoints": [fc.brokers[0].addr]}]}
        async with proxy(cfg) as p:
            c = await Client("kafka").connect(p.listener_address("main"))
            req = kreq(18, 2, 55, request_schema(18, 2)())
            c.send(req, c.codec.new_decoder().decode(req))
            (f,) = await c.recv(1)
            assert f.request_id == 55
            from kio.serial import entity_reader
            info = info_of(f)
            value, _ = entity_reader(response_schema(18, 2))(f.raw, info.body_offset(f.raw))
            maxes = {k.api_key: k.max_version for k in value.api_keys}
            assert maxes == {3: max_known_version(3), 0: 99}   # Metadata capped, Produce untouched
            c.close()
        await fc.close()
    arun(body())
