"""Kafka codec: detection, request headers v0-v2, responses typed through request_sent,
acks=0 Produce as oneway, unknown apis passed through, limits, correlation-id patching,
client_id re-encoding, error replies. kio (serialisers) and kafka-python's decoder are the
independent oracles."""
from __future__ import annotations

import datetime
import io
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from xproto.codec import MATCH, NO_MATCH, Reason, Role
from xproto.codecs.kafka import KafkaCodec, api_name, is_flexible, kafka_info, request_header_version
from xproto.codecs.thrift import ThriftCodec
from xproto.errors import FrameTooLarge, ProtocolError
from xproto.frame import Frame, Kind
from xproto.limits import DEFAULT_LIMITS

WIRE = (Path(__file__).resolve().parents[1] / "fixtures" / "shared" / "wire")
CODEC = KafkaCodec()


def wire(stem: str) -> bytes:
    return bytes.fromhex((WIRE / f"{stem}.hex").read_text())


def kio_bytes(entity) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


def request(key: int, ver: int, corr: int, client_id: str | None, body: bytes, hv: int | None = None) -> bytes:
    hv = request_header_version(key, ver) if hv is None else hv
    h = struct.pack(">hhi", key, ver, corr)
    if hv >= 1:
        h += b"\xff\xff" if client_id is None else struct.pack(">h", len(client_id.encode())) + client_id.encode()
    if hv == 2:
        h += b"\x00"
    return struct.pack(">i", len(h) + len(body)) + h + body


def produce(ver: int, corr: int, acks: int, txn: str | None = None) -> bytes:
    body = kio_bytes(load_request_schema(0, ver)(transactional_id=txn, acks=acks,
                                                 timeout=datetime.timedelta(seconds=1), topic_data=()))
    return request(0, ver, corr, "c", body)


def dec(role: Role = Role.REQUESTS, **limits: int):  # type: ignore[no-untyped-def]
    return CODEC.new_decoder(role, DEFAULT_LIMITS.with_overrides(**limits))


def one(raw: bytes, role: Role = Role.REQUESTS, context: list[Frame] = ()) -> Frame:  # type: ignore[assignment]
    d = dec(role)
    for c in context:
        d.request_sent(c)
    f = d.decode(raw)
    assert isinstance(f, Frame) and f.raw == raw
    return f


# --- detection ---------------------------------------------------------------------------------

KAFKA_REQ = sorted(p.stem for p in WIRE.glob("*kafka*request.hex"))
OTHER = sorted(p.stem for p in WIRE.glob("*.hex") if "kafka" not in p.name)


@pytest.mark.parametrize("stem", KAFKA_REQ)
def test_matcher_claims_captured_requests(stem: str) -> None:
    raw = wire(stem)
    assert CODEC.match(raw[:CODEC.match_bytes]) == MATCH
    assert CODEC.match(raw) == MATCH
    for i in range(CODEC.match_bytes):
        r = CODEC.match(raw[:i])
        assert r > 0 and i + r <= CODEC.match_bytes


@pytest.mark.parametrize("stem", OTHER)
def test_matcher_rejects_other_protocols(stem: str) -> None:
    raw = wire(stem)
    assert CODEC.match(raw) == NO_MATCH
    assert CODEC.match(raw[:CODEC.match_bytes]) == NO_MATCH


def test_thrift_matcher_rejects_kafka_and_built_frames_match_their_codec() -> None:
    for stem in sorted(p.stem for p in WIRE.glob("*kafka*.hex")):
        assert ThriftCodec().match(wire(stem)) == NO_MATCH
    for raw in (produce(3, 1, 0), produce(9, 2, 1), request(1000, 0, 1, "x", b"")):
        assert CODEC.match(raw) == (NO_MATCH if raw[4:6] == b"\x03\xe8" else MATCH)
    assert CODEC.match(b"GET / HTTP/1.1\r\nHost: x\r\n") == NO_MATCH
    assert CODEC.match(struct.pack(">ihhih", 20, 3, 99, 1, -1)) == NO_MATCH     # version far beyond kio
    assert CODEC.match(struct.pack(">ihhih", 20, 3, 1, -1, -1)) == NO_MATCH     # negative correlation id
    assert CODEC.match(struct.pack(">ihhih", 20, 3, 1, 1, 30)) == NO_MATCH      # client id past the frame
    assert CODEC.match(struct.pack(">ihhih", 200 * 2**20, 3, 1, 1, -1)) == NO_MATCH  # over the limit


# --- requests ------------------------------------------------------------------------------------

def test_flexible_table_from_kio() -> None:
    assert (is_flexible(0, 8), is_flexible(0, 9)) == (False, True)          # Produce 9+
    assert (is_flexible(3, 8), is_flexible(3, 9)) == (False, True)          # Metadata 9+
    assert (is_flexible(18, 2), is_flexible(18, 3)) == (False, True)        # ApiVersions 3+
    assert (is_flexible(1, 0), is_flexible(1, 12), is_flexible(1, 30)) == (False, True, True)  # Fetch, outside kio
    assert is_flexible(56, 0) is True                                      # AlterPartition "0+"
    assert is_flexible(1000, 0) is None
    assert (request_header_version(7, 0), request_header_version(3, 12), request_header_version(3, 5)) == (0, 2, 1)
    assert (api_name(0), api_name(60), api_name(10), api_name(4), api_name(999)) == \
        ("Produce", "DescribeCluster", "FindCoordinator", "LeaderAndIsr", "Unknown(999)")


@pytest.mark.parametrize("ver", [3, 5, 8, 9, 11, 13])
@pytest.mark.parametrize("acks,txn", [(0, None), (0, "tx"), (1, None), (-1, "t" * 200)])
def test_produce_acks0_is_oneway(ver: int, acks: int, txn: str | None) -> None:
    f = one(produce(ver, 5, acks, txn))
    assert f.kind is (Kind.ONEWAY if acks == 0 else Kind.REQUEST)
    assert CODEC.expects_response(f) == (acks != 0)
    assert f.headers == {"api_key": "0", "api_version": str(ver), "api_name": "Produce", "client_id": "c"}


def test_captured_produce_requests_expect_responses() -> None:
    for stem in ("aiokafka.kafka-Produce-v7-request", "kafka-python.kafka-Produce-v9-request"):
        assert one(wire(stem)).kind is Kind.REQUEST


def test_request_header_v2_tagged_fields_and_truncated_produce() -> None:
    body = kio_bytes(load_request_schema(0, 9)(transactional_id=None, acks=0,
                                               timeout=datetime.timedelta(seconds=1), topic_data=()))
    h = struct.pack(">hhih", 0, 9, 3, 1) + b"c" + b"\x02\x00\x02hi\x07\x00"   # two header tags
    raw = struct.pack(">i", len(h) + len(body)) + h + body
    assert one(raw).kind is Kind.ONEWAY
    cut = struct.pack(">i", len(h) + 1) + h + body[:1]
    with pytest.raises(ProtocolError):
        dec().decode(cut)


def test_unknown_apis_pass_through() -> None:
    for key, ver in ((1000, 0), (-3, 2), (3, 40), (5, 1)):
        raw = request(key, ver, 9, "id", b"\x01\x02\x03")
        f = one(raw)
        assert f.kind is Kind.REQUEST and f.request_id == 9
        assert f.headers["api_name"] == api_name(key) and f.headers["client_id"] == "id"
        assert CODEC.encode(f) == raw
        assert CODEC.error_reply(f, Reason.TIMEOUT) is None


# --- responses ---------------------------------------------------------------------------------------

PAIRS = [("aiokafka.kafka-ApiVersions-v0-request", "tansu.kafka-ApiVersions-v0-response-to-aiokafka", 0),
         ("kafka-python.kafka-ApiVersions-v4-request", "tansu.kafka-ApiVersions-v4-response-to-kafka-python", 0),
         ("kafka-python.kafka-Fetch-v12-request", "tansu.kafka-Fetch-v12-response-to-kafka-python", 0),
         ("kafka-python.kafka-Metadata-v12-request", "tansu.kafka-Metadata-v12-response-to-kafka-python", None),
         ("aiokafka.kafka-Metadata-v5-request", "tansu.kafka-Metadata-v5-response-to-aiokafka", None),
         ("kafka-python.kafka-Produce-v9-request", "tansu.kafka-Produce-v9-response-to-kafka-python", None)]


@pytest.mark.parametrize("req,resp,status", PAIRS)
def test_responses_typed_by_their_request(req: str, resp: str, status: int | None) -> None:
    q = one(wire(req))
    r = one(wire(resp), Role.RESPONSES, [q])
    assert (r.kind, r.request_id, r.status) == (Kind.RESPONSE, q.request_id, status)
    assert r.headers == {k: q.headers[k] for k in ("api_key", "api_version", "api_name")}
    # the body offset honours the response header version (ApiVersions: always v0, KIP-511)
    info = kafka_info(r)
    schema = load_response_schema(info.api_key, info.api_version)
    _value, size = entity_reader(schema)(r.raw, info.body_offset(r.raw))
    assert info.body_offset(r.raw) + size == len(r.raw)
    # without the request: correlation id only
    u = one(wire(resp), Role.RESPONSES)
    assert (u.request_id, u.headers, u.status) == (q.request_id, {}, None)
    assert CODEC.status_to_http(r) == 200


def test_role_any_tells_directions_apart() -> None:
    for stem in sorted(p.stem for p in WIRE.glob("*kafka*.hex")):
        f = one(wire(stem), Role.ANY)
        assert (f.kind is Kind.RESPONSE) == ("response" in stem), stem


def test_response_error_code_status_and_http_mapping() -> None:
    q = one(request(10, 1, 4, "c", kio_bytes(load_request_schema(10, 1)(key="g", key_type=0))))
    from kio.schema.errors import ErrorCode
    for code, http in ((ErrorCode.none, 200), (ErrorCode.coordinator_not_available, 503),
                       (ErrorCode.request_timed_out, 504), (ErrorCode.unknown_server_error, 500),
                       (ErrorCode.unsupported_version, 400)):
        body = kio_bytes(load_response_schema(10, 1)(throttle_time=datetime.timedelta(0), error_code=code,
                                                     error_message=None, node_id=1, host="h", port=1))
        raw = struct.pack(">ii", 4 + len(body), 4) + body
        r = one(raw, Role.RESPONSES, [q])
        assert (r.status, CODEC.status_to_http(r)) == (int(code), http)


# --- limits -----------------------------------------------------------------------------------------

def test_frame_limit_from_the_size_alone() -> None:
    with pytest.raises(FrameTooLarge):
        dec().decode(struct.pack(">i", 100 * 2**20 + 1))
    with pytest.raises(FrameTooLarge):
        dec(kafka_max_frame=30).decode(struct.pack(">i", 31))
    assert dec(kafka_max_frame=30).decode(struct.pack(">i", 30)) == 30
    for bad in (-1, 0, 3):
        with pytest.raises(ProtocolError):
            dec(Role.RESPONSES).decode(struct.pack(">i", bad))
    with pytest.raises(ProtocolError):
        dec(Role.REQUESTS).decode(struct.pack(">i", 6) + b"\x00" * 8)


# --- encoding -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", KAFKA_REQ + [p.stem for p in WIRE.glob("tansu*.hex")])
def test_correlation_id_patch(stem: str) -> None:
    raw = wire(stem)
    role = Role.RESPONSES if stem.startswith("tansu") else Role.REQUESTS
    f = one(raw, role)
    f.request_id = 0x7FFFFFFE
    out = CODEC.encode(f)
    off = 8 if role is Role.REQUESTS else 4
    assert struct.unpack_from(">i", out, off)[0] == 0x7FFFFFFE
    assert out[:off] == raw[:off] and out[off + 4:] == raw[off + 4:]
    g = one(out, role)
    g.request_id = f.orig_request_id
    assert CODEC.encode(g) == raw


def test_client_id_change_reencodes_and_kafka_python_reads_it() -> None:
    raw = wire("kafka-python.kafka-Metadata-v12-request")
    f = one(raw)
    f.headers["client_id"] = "through-xproto"
    f.request_id = 77
    out = CODEC.encode(f)
    g = one(out)
    assert g.headers["client_id"] == "through-xproto" and g.request_id == 77
    schema = load_request_schema(3, 12)
    info = kafka_info(g)
    body_off = info.body_offset(out)
    assert out[body_off:] == raw[kafka_info(f).body_offset(raw):]
    _value, size = entity_reader(schema)(out, body_off)
    assert body_off + size == len(out)
    f2 = one(raw)
    f2.headers["api_name"] = "Fetch"
    with pytest.raises(ProtocolError):
        CODEC.encode(f2)


@pytest.mark.parametrize("key,ver", [(18, 0), (18, 3), (18, 4), (10, 0), (10, 3), (22, 4), (60, 0), (11, 9),
                                     (12, 4), (36, 2)])
@pytest.mark.parametrize("reason", [Reason.TIMEOUT, Reason.NO_ROUTE, Reason.UPSTREAM_RESET])
def test_error_reply_where_the_schema_has_an_error_code(key: int, ver: int, reason: Reason) -> None:
    req_schema = load_request_schema(key, ver)
    import dataclasses

    from xproto.codecs.kafka import _default_value
    kw = {f.name: _default_value(f) for f in dataclasses.fields(req_schema)
          if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    q = one(request(key, ver, 42, "c", kio_bytes(req_schema(**kw))))
    r = CODEC.error_reply(q, reason, "xproto says no")
    assert r is not None
    assert (r.kind, r.request_id) == (Kind.RESPONSE, 42)
    assert r.status == (7 if reason is Reason.TIMEOUT else -1)
    assert CODEC.status_to_http(r) == {Reason.TIMEOUT: 504, Reason.NO_ROUTE: 404, Reason.UPSTREAM_RESET: 502}[reason]
    # kio reads it back as that api's response
    d = dec(Role.RESPONSES)
    d.request_sent(q)
    again = d.decode(r.raw)
    assert again.status == r.status and again.headers["api_name"] == api_name(key)
    info = kafka_info(again)
    value, size = entity_reader(load_response_schema(key, ver))(r.raw, info.body_offset(r.raw))
    assert int(value.error_code) == r.status and info.body_offset(r.raw) + size == len(r.raw)


def test_no_error_reply_without_a_top_level_error_code() -> None:
    for stem in ("kafka-python.kafka-Metadata-v12-request", "kafka-python.kafka-Produce-v9-request",
                 "kafka-python.kafka-Fetch-v12-request"):
        f = one(wire(stem))
        if stem.endswith("Fetch-v12-request"):
            # Fetch v12 has a top-level error_code: a real error response is possible
            assert CODEC.error_reply(f, Reason.TIMEOUT) is not None
        else:
            assert CODEC.error_reply(f, Reason.TIMEOUT) is None
    assert CODEC.error_reply(one(produce(9, 1, 0)), Reason.TIMEOUT) is None   # oneway


# --- properties ------------------------------------------------------------------------------------

req_st = st.one_of(
    st.builds(lambda v, c, a, t: produce(v, c, a, t), st.integers(3, 13), st.integers(0, 2**31 - 1),
              st.sampled_from([-1, 0, 1]), st.one_of(st.none(), st.text(max_size=10))),
    st.builds(lambda k, v, c, cid, b: request(k, v, c, cid, b), st.integers(-5, 2000).filter(bool), st.integers(0, 40),
              st.integers(0, 2**31 - 1), st.one_of(st.none(), st.text(max_size=10)), st.binary(max_size=40)),
)
WIRE_REQS = [wire(s) for s in KAFKA_REQ]


@settings(max_examples=150)
@given(st.lists(st.one_of(req_st, st.sampled_from(WIRE_REQS)), min_size=1, max_size=5), st.data())
def test_stream_split_anywhere_yields_same_frames(reqs: list[bytes], data) -> None:  # type: ignore[no-untyped-def]
    stream = b"".join(reqs)
    frames, n = dec().decode_all(stream)
    assert n == len(stream) and [f.raw for f in frames] == reqs
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    d = dec()
    buf = b""
    got = []
    prev = 0
    for c in cuts + [len(stream)]:
        buf += stream[prev:c]
        prev = c
        while buf:
            r = d.decode(buf)
            if isinstance(r, int):
                assert r > 0
                break
            got.append(r.to_json())
            buf = buf[len(r.raw):]
    assert got == [f.to_json() for f in frames]


@settings(max_examples=150)
@given(req_st, st.integers(0, 2**31 - 1))
def test_patch_round_trip(raw: bytes, new_id: int) -> None:
    f = one(raw)
    assert CODEC.encode(f) == raw
    f.request_id = new_id
    g = one(CODEC.encode(f))
    assert (g.request_id, g.kind, g.headers) == (new_id, f.kind, f.headers)
    g.request_id = f.orig_request_id
    assert CODEC.encode(g) == raw


@settings(max_examples=300)
@given(st.sampled_from(WIRE_REQS + [wire(s) for s in sorted(p.stem for p in WIRE.glob("tansu*.hex"))]),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
       st.sampled_from([Role.REQUESTS, Role.RESPONSES, Role.ANY]), st.integers(8, 400))
def test_mutations_raise_only_protocol_error_and_limits_ignore_chunking(raw, muts, role, limit) -> None:  # type: ignore[no-untyped-def]
    b = bytearray(raw)
    for i, v in muts:
        b[i % len(b)] = v
    data = bytes(b)
    ctx = [one(q) for q in WIRE_REQS]

    def outcome(chunks: list[bytes]) -> tuple:
        d = dec(role, kafka_max_frame=limit)
        for c in ctx:
            d.request_sent(c)
        buf = b""
        frames = []
        try:
            for c in chunks:
                buf += c
                while buf:
                    r = d.decode(buf)
                    if isinstance(r, int):
                        break
                    frames.append((r.to_json(), CODEC.encode(r) == r.raw))
                    buf = buf[len(r.raw):]
        except ProtocolError as e:
            return ("error", type(e).__name__, tuple(map(str, frames)))
        return ("ok", tuple(map(str, frames)), len(buf))

    assert outcome([data]) == outcome([data[i:i + 1] for i in range(len(data))])


@settings(max_examples=300)
@given(st.binary(max_size=120), st.sampled_from([Role.REQUESTS, Role.RESPONSES, Role.ANY]))
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes, role: Role) -> None:
    CODEC.match(data)
    try:
        frames, _ = dec(role).decode_all(data)
    except ProtocolError:
        return
    for f in frames:
        f.headers  # noqa: B018
        assert CODEC.encode(f) == f.raw


def test_tiny_response_frames() -> None:
    """Responses may be shorter than a request header (size 4..7): whole frames, not 'need 0'."""
    for size in (4, 5, 7):
        raw = struct.pack(">ii", size, 3) + b"\x00" * (size - 4)
        for role in (Role.RESPONSES, Role.ANY):
            d = dec(role)
            frames, n = d.decode_all(raw + raw)
            assert n == 2 * len(raw) and [f.request_id for f in frames] == [3, 3]
            f = frames[0]
            f.request_id = 9
            assert one(CODEC.encode(f), Role.RESPONSES).request_id == 9
        assert dec(Role.RESPONSES).decode(raw[:-1] if size > 4 else raw[:7]) == 1
