"""Broker-address rewriting: Metadata, FindCoordinator and DescribeCluster responses in every
version kio knows (flexible or not), the real Tansu Metadata v5/v12 responses, kio as oracle."""
from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import typing
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.schema.index import schema_name_map
from kio.serial import entity_reader, entity_writer

from xproto.codec import Role
from xproto.codecs.kafka import KafkaCodec, kafka_info, request_header_version, response_header_version
from xproto.codecs.kafka_rewrite import broker_addresses, rewrite_response
from xproto.errors import ProtocolError
from xproto.frame import Frame

WIRE = (Path(__file__).resolve().parents[1] / "fixtures" / "shared" / "wire")
CODEC = KafkaCodec()


def wire(stem: str) -> bytes:
    return bytes.fromhex((WIRE / f"{stem}.hex").read_text())


def kio_bytes(entity: Any) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


def empty(cls: type, **given_: Any) -> Any:
    """An instance of a kio entity with every required field empty (or as given)."""
    hints = typing.get_type_hints(cls)
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in given_:
            kw[f.name] = given_[f.name]
            continue
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        t = hints[f.name]
        origin = typing.get_origin(t)
        args = typing.get_args(t)
        if origin is tuple:
            kw[f.name] = ()
        elif origin in (typing.Union, __import__("types").UnionType) and type(None) in args:
            kw[f.name] = None
        elif t is str:
            kw[f.name] = ""
        elif t is bool:
            kw[f.name] = False
        elif t is uuid.UUID:
            kw[f.name] = uuid.UUID(int=0)
        elif dataclasses.is_dataclass(t):
            kw[f.name] = empty(t)
        else:
            for zero in (0, datetime.timedelta(0), datetime.datetime.fromtimestamp(0, datetime.UTC)):
                try:
                    kw[f.name] = t(zero)
                    break
                except TypeError:
                    continue
    return cls(**kw)


def entry_class(schema: type, field: str) -> type:
    return typing.get_args(typing.get_type_hints(schema)[field])[0]


def exchange(key: int, ver: int, body: bytes, corr: int = 7) -> tuple[Frame, Frame]:
    """A request frame for (key, ver) and the response frame carrying ``body``."""
    req_body = kio_bytes(empty(load_request_schema(key, ver)))
    h = struct.pack(">hhih", key, ver, corr, 1) + b"c" + (b"\x00" if request_header_version(key, ver) == 2 else b"")
    qraw = struct.pack(">i", len(h) + len(req_body)) + h + req_body
    q = CODEC.new_decoder(Role.REQUESTS).decode(qraw)
    rh = struct.pack(">i", corr) + (b"\x00" if response_header_version(key, ver) == 1 else b"")
    raw = struct.pack(">i", len(rh) + len(body)) + rh + body
    d = CODEC.new_decoder(Role.RESPONSES)
    d.request_sent(q)
    r = d.decode(raw)
    assert isinstance(q, Frame) and isinstance(r, Frame)
    return q, r


def reparse(raw: bytes, q: Frame) -> tuple[Frame, Any]:
    d = CODEC.new_decoder(Role.RESPONSES)
    d.request_sent(q)
    f = d.decode(raw)
    assert isinstance(f, Frame) and f.raw == raw
    info = kafka_info(f)
    schema = load_response_schema(info.api_key, info.api_version)
    off = info.body_offset(raw)
    value, size = entity_reader(schema)(raw, off)
    assert off + size == len(raw)
    return f, value


def mapper(node: int, host: str, port: int) -> tuple[str, int]:
    return f"proxy-{node}.local", 19000 + node


# --- the real Tansu responses -------------------------------------------------------------------

@pytest.mark.parametrize("req,resp", [
    ("kafka-python.kafka-Metadata-v12-request", "tansu.kafka-Metadata-v12-response-to-kafka-python"),
    ("aiokafka.kafka-Metadata-v5-request", "tansu.kafka-Metadata-v5-response-to-aiokafka")])
def test_tansu_metadata(req: str, resp: str) -> None:
    q = CODEC.new_decoder(Role.REQUESTS).decode(wire(req))
    d = CODEC.new_decoder(Role.RESPONSES)
    d.request_sent(q)
    r = d.decode(wire(resp))
    assert broker_addresses(r) == [(111, "127.0.0.1", 29093)]
    out = rewrite_response(r, mapper)
    assert out is not None
    f, value = reparse(out, q)
    assert broker_addresses(f) == [(111, "proxy-111.local", 19111)]
    _f0, orig = reparse(r.raw, q)
    assert value == dataclasses.replace(orig, brokers=tuple(
        dataclasses.replace(b, host="proxy-111.local", port=19111) for b in orig.brokers))
    # header kept byte for byte, size fixed
    body = kafka_info(r).body_offset(r.raw)
    assert out[4:body] == r.raw[4:body]
    assert struct.unpack(">i", out[:4])[0] == len(out) - 4
    # identity mapping: nothing to rewrite
    assert rewrite_response(r, lambda n, h, p: (h, p)) is None
    # the proxy's patched correlation id is honoured
    r.request_id = 99
    assert struct.unpack_from(">i", rewrite_response(r, mapper) or b"", 4)[0] == 99


# --- every version kio knows -----------------------------------------------------------------------

def versions(name: str) -> list[int]:
    return sorted(schema_name_map[name])


@pytest.mark.parametrize("ver", versions("metadata"))
def test_metadata_every_version(ver: int) -> None:
    schema = load_response_schema(3, ver)
    broker = entry_class(schema, "brokers")
    brokers = tuple(empty(broker, node_id=i, host=f"10.0.0.{i}", port=9090 + i) for i in (1, 2, 3))
    q, r = exchange(3, ver, kio_bytes(empty(schema, brokers=brokers)))
    assert broker_addresses(r) == [(i, f"10.0.0.{i}", 9090 + i) for i in (1, 2, 3)]
    out = rewrite_response(r, mapper)
    f, _value = reparse(out or b"", q)
    assert broker_addresses(f) == [(i, f"proxy-{i}.local", 19000 + i) for i in (1, 2, 3)]
    assert f.request_id == r.request_id


@pytest.mark.parametrize("ver", versions("find_coordinator"))
def test_find_coordinator_every_version(ver: int) -> None:
    schema = load_response_schema(10, ver)
    if ver < 4:
        value = empty(schema, node_id=5, host="10.0.0.5", port=9095)
        expected = [(5, "10.0.0.5", 9095)]
    else:
        coord = entry_class(schema, "coordinators")
        value = empty(schema, coordinators=(
            empty(coord, key="g1", node_id=5, host="10.0.0.5", port=9095),
            empty(coord, key="g2", node_id=-1, host="", port=-1),       # error entry: left alone
            empty(coord, key="g3", node_id=6, host="10.0.0.6", port=9096)))
        expected = [(5, "10.0.0.5", 9095), (6, "10.0.0.6", 9096)]
    q, r = exchange(10, ver, kio_bytes(value))
    assert broker_addresses(r) == expected
    f, new = reparse(rewrite_response(r, mapper) or b"", q)
    assert broker_addresses(f) == [(n, f"proxy-{n}.local", 19000 + n) for n, _h, _p in expected]
    if ver >= 4:
        assert (new.coordinators[1].host, new.coordinators[1].port) == ("", -1)
        assert [c.key for c in new.coordinators] == ["g1", "g2", "g3"]


def test_find_coordinator_error_form_is_not_rewritten() -> None:
    schema = load_response_schema(10, 0)
    _q, r = exchange(10, 0, kio_bytes(empty(schema, node_id=-1, host="", port=-1)))
    assert broker_addresses(r) == []
    assert rewrite_response(r, mapper) is None


@pytest.mark.parametrize("ver", versions("describe_cluster"))
def test_describe_cluster_every_version(ver: int) -> None:
    schema = load_response_schema(60, ver)
    broker = entry_class(schema, "brokers")
    value = empty(schema, cluster_id="c", brokers=(
        empty(broker, broker_id=1, host="b1", port=1, rack="r1"), empty(broker, broker_id=2, host="b2", port=2)))
    q, r = exchange(60, ver, kio_bytes(value))
    assert broker_addresses(r) == [(1, "b1", 1), (2, "b2", 2)]
    f, new = reparse(rewrite_response(r, mapper) or b"", q)
    assert broker_addresses(f) == [(1, "proxy-1.local", 19001), (2, "proxy-2.local", 19002)]
    assert new.brokers[0].rack == "r1" and new.cluster_id == "c"


# --- what is not rewritten ------------------------------------------------------------------------------

def test_other_frames_are_left_alone() -> None:
    q = CODEC.new_decoder(Role.REQUESTS).decode(wire("kafka-python.kafka-Metadata-v12-request"))
    assert rewrite_response(q, mapper) is None and broker_addresses(q) == []
    alone = CODEC.new_decoder(Role.RESPONSES).decode(wire("tansu.kafka-Metadata-v12-response-to-kafka-python"))
    assert rewrite_response(alone, mapper) is None                     # request unknown
    pq = CODEC.new_decoder(Role.REQUESTS).decode(wire("kafka-python.kafka-Produce-v9-request"))
    d = CODEC.new_decoder(Role.RESPONSES)
    d.request_sent(pq)
    pr = d.decode(wire("tansu.kafka-Produce-v9-response-to-kafka-python"))
    assert rewrite_response(pr, mapper) is None and broker_addresses(pr) == []


def test_malformed_body_raises_protocol_error() -> None:
    schema = load_response_schema(3, 12)
    broker = entry_class(schema, "brokers")
    body = kio_bytes(empty(schema, brokers=(empty(broker, node_id=1, host="h", port=1),)))
    for bad in (body[:-3], body + b"\x00", b"\xff" * len(body)):
        _q, r = exchange(3, 12, bad)
        with pytest.raises(ProtocolError):
            rewrite_response(r, mapper)
        with pytest.raises(ProtocolError):
            broker_addresses(r)


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.text(max_size=30), st.integers(0, 65535)), max_size=5),
       st.text(max_size=40), st.integers(1, 65535), st.sampled_from(versions("metadata")))
def test_any_mapping_round_trips(brokers, host, port, ver) -> None:  # type: ignore[no-untyped-def]
    schema = load_response_schema(3, ver)
    bcls = entry_class(schema, "brokers")
    value = empty(schema, brokers=tuple(empty(bcls, node_id=n, host=h, port=p) for n, h, p in brokers))
    q, r = exchange(3, ver, kio_bytes(value))
    out = rewrite_response(r, lambda n, h, p: (host, port))
    if all((h, p) == (host, port) for _n, h, p in brokers):
        assert out is None
        return
    f, _v = reparse(out or b"", q)
    assert broker_addresses(f) == [(n, host, port) for n, _h, _p in brokers]


def test_hostile_array_lengths_never_reach_kio() -> None:
    """kio's native reader reserves memory from a declared array length before reading: a
    length of ~2**32 aborted the process (fuzz/corpus/kafka/crash-kio-array-length-oom).
    Lengths are checked against the bytes left first."""
    huge = b"\xf0\xff\xff\xff\x0f"                     # uvarint 4294967280
    body = b"\x00\x00\x00\x00" + huge + b"\x00" * 16   # throttle, brokers[huge] ...
    _q, r = exchange(3, 12, body)
    with pytest.raises(ProtocolError, match="array of"):
        rewrite_response(r, mapper)
    legacy = b"\x00\x00\x00\x00" + b"\x7f\xff\xff\xff" + b"\x00" * 16
    _q, r = exchange(3, 5, legacy)
    with pytest.raises(ProtocolError, match="array of"):
        broker_addresses(r)
    # the same guard protects Role.ANY's request check (a Produce v9 body with a huge topic count)
    crash = (Path(__file__).resolve().parent.parent / "fuzz" / "corpus" / "kafka" / "crash-kio-array-length-oom")
    data = crash.read_bytes()[2:]
    try:
        CODEC.new_decoder(Role.ANY).decode_all(data)
    except ProtocolError:
        pass


def test_unknown_versions_of_address_apis_are_never_passed_through() -> None:
    q = CODEC.new_decoder(Role.REQUESTS).decode(
        struct.pack(">ihhih", 12, 3, 40, 5, 1) + b"c" + b"\x00")            # Metadata v40, flexible
    d = CODEC.new_decoder(Role.RESPONSES)
    d.request_sent(q)
    r = d.decode(struct.pack(">ii", 6, 5) + b"\x00\x00")
    with pytest.raises(ProtocolError, match="unknown to kio"):
        rewrite_response(r, mapper)


@pytest.mark.parametrize("req,resp", [
    ("aiokafka.kafka-ApiVersions-v0-request", "tansu.kafka-ApiVersions-v0-response-to-aiokafka"),
    ("kafka-python.kafka-ApiVersions-v4-request", "tansu.kafka-ApiVersions-v4-response-to-kafka-python")])
def test_clamp_api_versions(req: str, resp: str) -> None:
    from xproto.codecs.kafka import max_known_version
    from xproto.codecs.kafka_rewrite import ADDRESS_APIS, clamp_api_versions
    q = CODEC.new_decoder(Role.REQUESTS).decode(wire(req))
    d = CODEC.new_decoder(Role.RESPONSES)
    d.request_sent(q)
    r = d.decode(wire(resp))
    _f, orig = reparse(r.raw, q)
    advertised = {int(k.api_key): int(k.max_version) for k in orig.api_keys}
    # Tansu advertises versions kio knows: nothing to clamp
    assert all(advertised[k] <= max_known_version(k) for k in ADDRESS_APIS if k in advertised)
    assert clamp_api_versions(r) is None
    # a broker advertising Metadata v99 is clamped to kio's newest
    schema = load_response_schema(18, kafka_info(r).api_version)
    bumped = dataclasses.replace(orig, api_keys=tuple(
        dataclasses.replace(k, max_version=type(k.max_version)(99)) if k.api_key == 3 else k for k in orig.api_keys))
    body = kafka_info(r).body_offset(r.raw)
    raw = struct.pack(">i", body - 4 + len(kio_bytes(bumped))) + r.raw[4:body] + kio_bytes(bumped)
    d2 = CODEC.new_decoder(Role.RESPONSES)
    d2.request_sent(q)
    out = clamp_api_versions(d2.decode(raw))
    assert out is not None
    _g, new = reparse(out, q)
    got = {int(k.api_key): int(k.max_version) for k in new.api_keys}
    assert got == {**advertised, 3: max_known_version(3)}
    assert isinstance(schema, type)
