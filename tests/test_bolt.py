"""SOFA Bolt v1/v2 codec: framing, CRC, matcher, headers, encoding, behaviour, properties."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xproto.codec import MATCH, NO_MATCH, Reason, Role
from xproto.codecs.bolt import STATUS_TO_HTTP, BoltCodec, layout
from xproto.errors import FrameTooLarge, LimitExceeded, ProtocolError
from xproto.frame import Frame, Kind
from xproto.framing.kv_block import decode_kv_block, encode_kv_block
from xproto.limits import DEFAULT_LIMITS, Limits

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures" / "bolt"
WIRE = (Path(__file__).resolve().parents[1] / "fixtures" / "shared" / "wire")
CODEC = BoltCodec()
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: the profile

pytestmark = pytest.mark.timeout(60)


def hexfile(p: Path) -> bytes:
    return bytes.fromhex(p.read_text())


def fixtures() -> list[Path]:
    return sorted(FIX.glob("*.json"))


def decode_chunked(data: bytes, cuts: list[int] | None = None, limits: Limits = DEFAULT_LIMITS
                   ) -> tuple[list[Frame], bytes]:
    d = CODEC.new_decoder(Role.ANY, limits)
    if cuts is None:
        cuts = list(range(1, len(data)))
    pieces, last = [], 0
    for c in sorted({x for x in cuts if 0 < x < len(data)}):
        pieces.append(data[last:c])
        last = c
    pieces.append(data[last:])
    buf = bytearray()
    frames: list[Frame] = []
    for p in pieces:
        buf += p
        while True:
            r = d.decode(buf, 0)
            if isinstance(r, int):
                assert r > 0
                break
            frames.append(r)
            del buf[:len(r.raw)]
    return frames, bytes(buf)


def one(raw: bytes) -> Frame:
    f = CODEC.new_decoder().decode(raw)
    assert isinstance(f, Frame) and len(f.raw) == len(raw)
    return f


REQ_HEADERS = [("service", "com.example.Greeter:1.0"), ("sofa_head_method_name", "greet"),
               ("rpc_trace_context.sofaTraceId", "0a0b")]


# --- fixtures ---------------------------------------------------------------------
def test_every_wire_frame_has_a_fixture() -> None:
    for p in WIRE.glob("*bolt*.hex"):
        f = FIX / p.name
        assert f.exists(), p.name
        assert hexfile(f) == hexfile(p)


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.stem)
def test_fixture(path: Path) -> None:
    doc = json.loads(path.read_text())
    data = hexfile(path.with_suffix(".hex"))
    whole, used = CODEC.new_decoder().decode_all(data)
    assert used == len(data)
    assert [f.to_json() for f in whole] == doc["frames"]
    for f in whole:
        assert CODEC.encode(f) == f.raw
    single, left = decode_chunked(data)
    assert left == b"" and [f.to_json() for f in single] == doc["frames"]
    twice, used2 = CODEC.new_decoder().decode_all(data + data)
    assert used2 == 2 * len(data) and [f.to_json() for f in twice] == doc["frames"] * 2


# --- header block helper ---------------------------------------------------------
def test_kv_block_roundtrip_and_errors() -> None:
    pairs = [("a", "1"), ("b", None), (None, "c"), ("a", ""), ("é", "\udcff")]
    blk = encode_kv_block(pairs)
    assert decode_kv_block(blk, 0, len(blk), protocol="t") == pairs
    assert encode_kv_block(decode_kv_block(blk, 0, len(blk), protocol="t")) == blk
    for bad in (blk[:-1], blk[:3], struct.pack(">I", 1) + b"a"):
        with pytest.raises(ProtocolError):
            decode_kv_block(bad, 0, len(bad), protocol="t")
    huge = struct.pack(">I", 0xFFFFFFF0) + b"x"
    with pytest.raises(ProtocolError):
        decode_kv_block(huge, 0, len(huge), protocol="t")


# --- matcher ---------------------------------------------------------------------
def test_match_real_frames() -> None:
    for p in WIRE.glob("*.hex"):
        data = hexfile(p)
        want = MATCH if "bolt" in p.name else NO_MATCH
        assert CODEC.match(data) == want, p.name
        # a prefix never says MATCH for a non-bolt stream
        if want == NO_MATCH:
            for n in range(16):
                assert CODEC.match(data[:n]) != MATCH, (p.name, n)
    for p in FIX.glob("*.hex"):
        assert CODEC.match(hexfile(p)) == MATCH, p.name


def test_match_needs_few_bytes_and_says_how_many() -> None:
    raw = hexfile(FIX / "anthunder.bolt-request.hex")
    for n in range(10):
        r = CODEC.match(raw[:n])
        assert r > 0 and n + r <= CODEC.match_bytes, n
    assert CODEC.match(raw[:10]) == MATCH
    v2 = hexfile(FIX / "built-v2-request-crc.hex")
    assert [CODEC.match(v2[:n]) > 0 for n in range(11)] == [True] * 11
    assert CODEC.match(v2[:11]) == MATCH


@pytest.mark.parametrize("head", [
    # Kafka requests: i32 size, i16 api_key, i16 api_version, i32 correlation_id
    struct.pack(">ihhi", 0x01000000, 0, 9, 1),           # 16 MiB Produce: 01 00 00 00 | 00 00 ..
    struct.pack(">ihhi", 0x01010001, 0, 9, 1),           # 01 01 00 01: looks like a v1 request start
    struct.pack(">ihhi", 0x01000002, 1, 12, 7),          # 01 00 00 02: a v1 response start
    struct.pack(">ihhi", 0x01020064, 0, 3, 0),           # 01 02 00 64: a v1 oneway goaway start
    struct.pack(">ihhi", 0x02010001, 0, 9, 5),           # 02 01 00 01: v2 ver1 1 type 0 ...
    struct.pack(">ihhi", 0x02020100, 1, 0, 3),           # 02 02 01 00 01: v2 request cmd 1
    struct.pack(">ihhi", 0x00000040, 18, 4, 1),          # ordinary small Kafka request
    # framed Thrift (binary/compact/THeader) with sizes up to and over 16 MiB
    struct.pack(">iHH", 0x01000001, 0x8001, 0x0001) + b"\x00\x00",
    struct.pack(">i", 0x01010002) + b"\x82\x21\x01\x04ping",
    struct.pack(">i", 0x01010000) + b"\x0f\xff\x00\x00\x00\x00\x00\x01",
    struct.pack(">i", 0x00000020) + b"\x80\x01\x00\x01\x00\x00",
    b"\x80\x01\x00\x01\x00\x00\x00\x04ping",
    b"\x82\x21\x01\x04ping\x00\x00",
    # HTTP, TLS, Dubbo
    b"GET / HTTP/1.1\r\n", b"PRI * HTTP/2.0\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03",
    b"\xda\xbb\xc2\x00\x00\x00\x00\x00\x00\x00",
])
def test_match_rejects_other_protocols(head: bytes) -> None:
    assert CODEC.match(head) == NO_MATCH, head.hex()


def test_match_residual_kafka_case_is_narrow() -> None:
    # the only Kafka requests that can pass: 16-48 MiB, size bytes fitting type/cmdcode AND a
    # correlation id >= 65536 with byte 1 in 1..31; a first request on a connection has a small id
    assert CODEC.match(struct.pack(">ihhi", 0x01010001, 0, 9, 1 << 16)) == MATCH
    assert CODEC.match(struct.pack(">ihhi", 0x01010001, 0, 9, 0xFFFF)) == NO_MATCH


def test_match_rejects_bad_fields() -> None:
    good = bytearray(hexfile(FIX / "anthunder.bolt-request.hex")[:10])
    for i, v in ((0, 3), (1, 3), (2, 1), (3, 2), (3, 5), (4, 7), (9, 0), (9, 32)):
        b = bytearray(good)
        b[i] = v
        assert CODEC.match(bytes(b)) == NO_MATCH, (i, v)


# --- framing, CRC, limits --------------------------------------------------------
def test_need_counts() -> None:
    raw = hexfile(FIX / "built-v2-request-crc.hex")
    d = CODEC.new_decoder()
    assert d.decode(b"") == 20
    assert d.decode(raw[:21]) == 1
    assert d.decode(raw[:23]) == 1
    assert d.decode(raw[:24]) == len(raw) - 24
    assert d.decode(raw[:-1]) == 1


@pytest.mark.parametrize("name", ["built-v2-request-crc", "built-v2-crc-heartbeat-response"])
def test_crc_verified(name: str) -> None:
    raw = bytearray(hexfile(FIX / f"{name}.hex"))
    one(bytes(raw))
    for i in (len(raw) - 1, 24 if len(raw) > 30 else 12):
        bad = bytearray(raw)
        bad[i] ^= 0x40
        if i == 12:     # inside the id: CRC must catch it too
            pass
        with pytest.raises(ProtocolError, match="CRC"):
            CODEC.new_decoder().decode(bytes(bad))


def test_crc_only_when_ver1_2_and_switch_on() -> None:
    lay = layout(hexfile(FIX / "built-v2-request-ver1-2-no-crc.hex"))
    assert lay.version == 2 and lay.ver1 == 2 and not lay.crc
    assert layout(hexfile(FIX / "built-v2-request-crc.hex")).crc
    assert not layout(hexfile(FIX / "built-v2-request.hex")).crc


def test_limits_checked_before_the_body() -> None:
    head = CODEC.build(type=1, cmdcode=1, request_id=1, cls=b"", headers=[("k", "v" * 50)],
                       content=bytes(100))
    with pytest.raises(LimitExceeded) as e:
        CODEC.new_decoder(limits=Limits(bolt_max_header_block=50)).decode(head[:22])
    assert e.value.limit == "bolt_max_header_block"
    with pytest.raises(FrameTooLarge) as e2:
        CODEC.new_decoder(limits=Limits(bolt_max_frame=150)).decode(head[:22])
    assert e2.value.limit == "bolt_max_frame"
    f = CODEC.new_decoder(limits=Limits(bolt_max_frame=len(head))).decode(head)
    assert isinstance(f, Frame)


@pytest.mark.parametrize("raw", [
    b"\x03" + bytes(23), b"\x01\x03" + bytes(22), b"\x02\x01\x05" + bytes(22),
    struct.pack(">BBHBIBiHHI", 1, 1, 7, 1, 1, 1, -1, 0, 0, 0),
])
def test_bad_frames(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        CODEC.new_decoder().decode(raw)


def test_kinds_and_goaway() -> None:
    ga = one(hexfile(FIX / "built-v1-goaway.hex"))
    assert ga.kind is Kind.ONEWAY and not ga.heartbeat and CODEC.is_goaway(ga)
    assert not CODEC.expects_response(ga) and ga.headers[":goaway"] == "1"
    hb = one(hexfile(FIX / "built-v1-heartbeat-request.hex"))
    assert hb.heartbeat and hb.kind is Kind.REQUEST and not CODEC.is_goaway(hb)
    ow = one(hexfile(FIX / "built-v1-oneway-nulls.hex"))
    assert ow.kind is Kind.ONEWAY and not CODEC.expects_response(ow)


def test_headers_lazy_and_broken_block() -> None:
    raw = CODEC.build(type=1, cmdcode=1, request_id=1, headers=[("a", "b")])
    bad = bytearray(raw)
    struct.pack_into(">I", bad, 22, 99)           # key length past the block
    f = one(bytes(bad))
    assert not f.headers_parsed()
    with pytest.raises(ProtocolError):
        f.headers  # noqa: B018


def test_service_method_from_sofa_keys_and_content() -> None:
    f = one(hexfile(FIX / "anthunder.bolt-request.hex"))
    assert f.headers["service"] == "com.example.EchoService:1.0" and f.headers["method"] == "hello"
    g = one(hexfile(FIX / "built-v1-request-method-in-content.hex"))
    assert g.headers["method"] == "greet"
    # a plain `method` key wins over the sofa key and the content
    h = one(CODEC.build(type=1, cmdcode=1, request_id=1, headers=[
        ("method", "a"), ("sofa_head_method_name", "b"), ("service", "s")]))
    assert h.headers["method"] == "a"
    # protobuf content is never read
    p = one(CODEC.build(type=1, cmdcode=1, request_id=1, codec=11, headers=[("service", "s")],
                        content=b"C\x05hello"))
    assert "method" not in p.headers
    # unreadable hessian content: no method, no error
    q = one(CODEC.build(type=1, cmdcode=1, request_id=1, headers=[("service", "s")], content=b"\xff"))
    assert q.headers == {"service": "s"}


def test_sofa_node_draft_content() -> None:
    f = one(hexfile(FIX / "built-v1-request-sofa-node.hex"))
    assert f.headers == {"service": "com.example.Calc:1.0", "method": "plus"}


# --- encoding --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["anthunder.bolt-request", "built-v2-request-crc", "built-v2-request",
                                  "built-v1-heartbeat-response", "built-v2-crc-heartbeat-response"])
@pytest.mark.parametrize("rid", [0, 1, 2**31, 2**32 - 1])
def test_id_patch(name: str, rid: int) -> None:
    raw = hexfile(FIX / f"{name}.hex")
    f = one(raw)
    f.request_id = rid
    out = CODEC.encode(f)
    g = one(out)                       # CRC recomputed, else this raises
    assert g.request_id == rid and len(out) == len(raw)
    lay = layout(raw)
    o = lay.id_offset
    tail = -4 if lay.crc else None
    assert out[:o] == raw[:o] and out[o + 4:tail] == raw[o + 4:tail]


@pytest.mark.parametrize("name", ["anthunder.bolt-request", "built-v2-request-crc",
                                  "built-v1-oneway-nulls", "built-v1-request-method-in-content"])
def test_header_change_reencodes(name: str) -> None:
    raw = hexfile(FIX / f"{name}.hex")
    f = one(raw)
    orig = dict(f.headers)
    f.headers["rpc_trace_context.sofaRpcId"] = "0.1"
    f.headers["x-new"] = "1"
    f.headers["method"] = "other"
    f.request_id = 4242
    out = CODEC.encode(f)
    g = one(out)
    assert g.request_id == 4242 and g.kind is f.kind
    want = dict(orig, **{"rpc_trace_context.sofaRpcId": "0.1", "x-new": "1", "method": "other"})
    got = dict(g.headers)
    # a changed derived method is written to the key it came from
    if "sofa_head_method_name" in orig and "method" not in _block_keys(raw):
        want["sofa_head_method_name"] = "other"
    assert got == want
    lo, lg = layout(raw), layout(out)
    assert out[lg.content_start:lg.content_end] == raw[lo.content_start:lo.content_end]
    assert out[lg.header_len:lg.block_start] == raw[lo.header_len:lo.block_start]


def _block_keys(raw: bytes) -> set[str]:
    lay = layout(raw)
    return {k for k, _ in decode_kv_block(raw, lay.block_start, lay.content_start, protocol="bolt") if k}


def test_unchanged_entries_keep_wire_form() -> None:
    raw = hexfile(FIX / "built-v1-oneway-nulls.hex")
    f = one(raw)
    f.headers["new"] = "v"
    out = CODEC.encode(f)
    lay = layout(out)
    pairs = decode_kv_block(out, lay.block_start, lay.content_start, protocol="bolt")
    assert ("empty", None) in pairs and (None, "orphan") in pairs
    assert pairs[-1] == ("new", "v")
    del f.headers["dup"]
    out2 = CODEC.encode(f)
    lay2 = layout(out2)
    assert all(k != "dup" for k, _ in decode_kv_block(out2, lay2.block_start, lay2.content_start,
                                                       protocol="bolt"))


# --- behaviour -------------------------------------------------------------------
def test_heartbeats() -> None:
    hb = CODEC.heartbeat_request(7)
    assert hb.raw == struct.pack(">BBHBIBiHHI", 1, 1, 0, 1, 7, 1, -1, 0, 0, 0)
    assert hb.heartbeat and hb.kind is Kind.REQUEST
    rep = CODEC.heartbeat_reply(hb)
    assert rep.raw == struct.pack(">BBHBIBHHHI", 1, 0, 0, 1, 7, 1, 0, 0, 0, 0)
    assert rep.heartbeat and rep.status == 0 and rep.request_id == 7
    v2 = one(hexfile(FIX / "built-v2-crc-heartbeat-oneway.hex")[:28])
    r2 = CODEC.heartbeat_reply(v2)
    assert r2.raw == hexfile(FIX / "built-v2-crc-heartbeat-response.hex")


@pytest.mark.parametrize("reason,status,http", [
    (Reason.NO_ROUTE, 6, 500), (Reason.OVERFLOW, 4, 503), (Reason.TIMEOUT, 7, 504),
    (Reason.NO_HEALTHY_UPSTREAM, 16, 502), (Reason.UPSTREAM_RESET, 16, 502),
    (Reason.BAD_REQUEST, 9, 500)])
@pytest.mark.parametrize("name", ["anthunder.bolt-request", "built-v2-request-crc", "built-v2-request"])
def test_error_reply(reason: Reason, status: int, http: int, name: str) -> None:
    req = one(hexfile(FIX / f"{name}.hex"))
    req.request_id = 0xFFFFFFFE
    rep = CODEC.error_reply(req, reason, "no route to com.example")
    back = CODEC.new_decoder(Role.RESPONSES).decode(rep.raw)
    assert isinstance(back, Frame)
    assert back.kind is Kind.RESPONSE and back.status == status and back.request_id == 0xFFFFFFFE
    assert not back.heartbeat and CODEC.status_to_http(back) == http
    assert back.headers == {"xproto_error": "no route to com.example"}
    lq, lr = layout(req.raw), layout(back.raw)
    assert (lr.version, lr.ver1, lr.codec, lr.crc, lr.cmdcode) == (lq.version, lq.ver1, lq.codec, lq.crc, 2)
    assert lr.class_len == 0 and lr.content_len == 0


def test_status_mapping() -> None:
    assert STATUS_TO_HTTP == {0: 200, 4: 503, 7: 504, 16: 502}
    for s in (1, 2, 3, 5, 6, 8, 9, 17, 18, 999):
        f = one(CODEC.build(type=0, cmdcode=2, request_id=1, status=s))
        assert CODEC.status_to_http(f) == 500


def test_class_attributes() -> None:
    assert CODEC.name == "bolt" and CODEC.request_id_bits == 32 and CODEC.has_heartbeat
    assert CODEC.pool_mode.value == "multiplex" and CODEC.match_bytes == 11 and "byte0" in CODEC.match_rule
    gen = CODEC.id_generator(start=2**32 - 1)
    assert gen() == 2**32 - 1 and gen() == 0


# --- properties ------------------------------------------------------------------
text = st.text(max_size=12)
pairs_st = st.lists(st.tuples(st.one_of(st.none(), text), st.one_of(st.none(), text)), max_size=4)


@st.composite
def frames_st(draw: st.DrawFn) -> bytes:
    t = draw(st.sampled_from([0, 1, 2]))
    cmd = draw(st.sampled_from([0, 2]) if t == 0 else st.sampled_from([0, 1, 100]))
    version = draw(st.sampled_from([1, 2]))
    return CODEC.build(
        type=t, cmdcode=cmd, request_id=draw(st.integers(0, 2**32 - 1)), codec=draw(st.integers(0, 255)),
        ver2=draw(st.integers(0, 255)), timeout=draw(st.integers(-(2**31), 2**31 - 1)),
        status=draw(st.integers(0, 65535)), cls=draw(st.binary(max_size=8)), headers=draw(pairs_st),
        content=draw(st.binary(max_size=40)), version=version, ver1=draw(st.sampled_from([1, 2, 7])),
        switch=draw(st.integers(0, 255)))


@SETTINGS
@given(st.lists(frames_st(), min_size=1, max_size=5), st.lists(st.integers(0, 600), max_size=8))
def test_roundtrip_and_chunking(frames: list[bytes], cuts: list[int]) -> None:
    data = b"".join(frames)
    got, left = decode_chunked(data, cuts)
    assert left == b"" and [f.raw for f in got] == frames
    for f, raw in zip(got, frames):
        lay = layout(raw)
        assert f.request_id == struct.unpack_from(">I", raw, lay.id_offset)[0]
        assert f.heartbeat == (lay.cmdcode == 0)
        if lay.type == 0:
            assert f.kind is Kind.RESPONSE and f.status == lay.timeout_or_status
        else:
            assert f.status is None
            assert f.kind is (Kind.ONEWAY if lay.type == 2 or lay.cmdcode == 100 else Kind.REQUEST)
        assert CODEC.encode(f) == raw
        f.request_id = (f.request_id + 1) & 0xFFFFFFFF
        g = one(CODEC.encode(f))
        assert g.request_id == f.request_id


def _touch(f: Frame) -> None:
    try:
        f.to_json()
    except ProtocolError:
        pass


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    for prefix in (b"", b"\x01", b"\x02\x02"):
        try:
            frames, _ = CODEC.new_decoder().decode_all(prefix + data)
        except ProtocolError:
            continue
        for f in frames:
            _touch(f)
        CODEC.match(prefix + data)


def _seeds() -> list[bytes]:
    return [hexfile(p.with_suffix(".hex")) for p in fixtures()]


@SETTINGS
@given(st.sampled_from(_seeds()) if fixtures() else st.just(b""),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_frames_raise_only_protocol_error(seed: bytes, muts: list[tuple[int, int]]) -> None:
    b = bytearray(seed)
    for i, v in muts:
        if b:
            b[i % len(b)] = v
    try:
        frames, _ = CODEC.new_decoder().decode_all(bytes(b))
    except ProtocolError:
        return
    for f in frames:
        _touch(f)
        if f.headers_parsed():
            f.headers["x"] = "y"
            try:
                g = CODEC.new_decoder().decode(CODEC.encode(f))
                assert isinstance(g, Frame) and g.headers.get("x") == "y"
            except ProtocolError:
                pass


@SETTINGS
@given(st.integers(0, 300), st.integers(0, 300), st.binary(max_size=200), st.lists(st.integers(0, 400), max_size=6))
def test_limit_verdict_independent_of_chunking(max_frame: int, max_block: int, content: bytes,
                                               cuts: list[int]) -> None:
    data = CODEC.build(type=1, cmdcode=1, request_id=1, headers=[("k", "v" * (len(content) % 50))],
                       content=content)
    lay = layout(data)
    lim = Limits(bolt_max_frame=max_frame, bolt_max_header_block=max_block)
    try:
        frames, _ = decode_chunked(data, cuts, lim)
        verdict = "ok" if frames else "need"
    except LimitExceeded as e:
        verdict = e.limit
    want = ("bolt_max_header_block" if lay.block_len > max_block
            else "bolt_max_frame" if len(data) > max_frame else "ok")
    assert verdict == want


def test_crc_trailer_is_zlib_crc32_of_frame() -> None:
    raw = hexfile(FIX / "built-v2-request-crc.hex")
    assert struct.unpack(">I", raw[-4:])[0] == zlib.crc32(raw[:-4])


def test_decoded_frames_have_every_slot() -> None:
    for path in sorted(FIX.glob("*.hex")):
        frames, _ = CODEC.new_decoder().decode_all(hexfile(path))
        for f in frames:
            for slot in Frame.__slots__:
                getattr(f, slot)   # the decoder builds frames inline: a new Frame slot must be set there
            assert f.protocol == CODEC.name and f.codec is CODEC and f.orig_request_id == f.request_id
            assert not f.headers_parsed()


def _builder():  # the fixture builder's hand-written hessian (independent of xproto.hessian2)
    import importlib.util
    spec = importlib.util.spec_from_file_location("build_bolt", ROOT / "fixtures" / "build_bolt.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("dialect", ["caucho", "draft"])
def test_service_and_method_from_content_only(dialect: str) -> None:
    b = _builder()
    make = b.caucho_object if dialect == "caucho" else b.sofa_draft_object
    content = make("com.alipay.sofa.rpc.core.request.SofaRequest", {
        "targetAppName": b"N", "methodName": b.hstr("sub"),
        "targetServiceUniqueName": b.hstr("com.example.Calc:2.0")}) + b.hint(3)
    f = one(CODEC.build(type=1, cmdcode=1, request_id=5, cls=b.SOFA_REQUEST, content=content))
    assert f.headers == {"service": "com.example.Calc:2.0", "method": "sub"}
    # the derived keys are not written back unless changed
    f.headers["k"] = "v"
    g = one(CODEC.encode(f))
    assert _block_keys(g.raw) == {"k"} and g.headers == dict(f.headers)
    g.headers["method"] = "mul"
    h = one(CODEC.encode(g))
    assert h.headers["method"] == "mul" and _block_keys(h.raw) == {"k", "method"}


# --- real clients read our local replies ----------------------------------------------
class ReplyServer:
    """A loopback server (thread) that answers every Bolt request with ``reply(frame)``."""

    def __init__(self, reply: Any) -> None:
        import socket
        import threading
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.seen: list[Frame] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import socket
        conns: list[socket.socket] = []
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(0.2)
            conns.append(c)
            dec = CODEC.new_decoder(Role.REQUESTS)
            buf = bytearray()
            while not self.stop.is_set():
                try:
                    data = c.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                buf += data
                while True:
                    r = dec.decode(buf)
                    if isinstance(r, int):
                        break
                    del buf[:len(r.raw)]
                    self.seen.append(r)
                    out = CODEC.heartbeat_reply(r) if r.heartbeat else self.reply(r)
                    if out is not None and r.kind is Kind.REQUEST:
                        c.sendall(CODEC.encode(out))
        for c in conns:
            c.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.mark.peers
@pytest.mark.timeout(90)
@pytest.mark.parametrize("reason", [Reason.OVERFLOW, Reason.TIMEOUT, Reason.NO_ROUTE])
@pytest.mark.parametrize("client", ["anthunder", "sofa-rpc-node"])
def test_real_client_fails_fast_on_error_reply(client: str, reason: Reason) -> None:
    import sys
    import time
    sys.path.insert(0, str(ROOT / "tests"))
    from peers import bolt_py, node
    if client == "anthunder" and bolt_py.missing():
        pytest.skip(bolt_py.missing() or "")
    if client == "sofa-rpc-node" and node.missing():
        pytest.skip(node.missing() or "")
    srv = ReplyServer(lambda r: CODEC.error_reply(r, reason, "xproto: local reply"))
    try:
        t0 = time.monotonic()
        if client == "anthunder":
            out = bolt_py.anthunder_call(srv.address, timeout_ms=8000)
        else:
            out = node.bolt_call(srv.address, "sayHello", ["x"], timeout_ms=8000)
        took = time.monotonic() - t0
    finally:
        srv.close()
    assert srv.seen and srv.seen[0].kind is Kind.REQUEST
    assert not out.get("ok"), out
    assert took < 8.0, (took, out)        # answered at once: the client did not wait for its timeout
