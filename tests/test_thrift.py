"""Thrift codec: detection, the three transports x two protocols, limits, seqid patching,
header re-encoding, error replies; Apache Thrift 0.25 is the independent oracle."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID, THeaderTransport
from thrift.transport.TTransport import TMemoryBuffer

from xproto.codec import MATCH, NO_MATCH, PoolMode, Reason, Role
from xproto.codecs.thrift import Proto, ThriftCodec, Transport, _Skipper
from xproto.errors import FrameTooLarge, LimitExceeded, ProtocolError
from xproto.frame import Frame, Kind
from xproto.limits import DEFAULT_LIMITS

WIRE = (Path(__file__).resolve().parents[1] / "fixtures" / "shared" / "wire")
FIX = Path(__file__).resolve().parent.parent / "fixtures" / "thrift"
CODEC = ThriftCodec()
PROTOS = {Proto.BINARY: TBinaryProtocol, Proto.COMPACT: TCompactProtocol}
TRANSPORTS = [Transport.UNFRAMED, Transport.FRAMED, Transport.HEADER]


def wire(stem: str) -> bytes:
    return bytes.fromhex((WIRE / f"{stem}.hex").read_text())


def write_value(p, ttype: int, v) -> None:  # type: ignore[no-untyped-def]
    if ttype == TType.I32:
        p.writeI32(v)
    elif ttype == TType.STRING:
        p.writeString(v)
    elif ttype == TType.LIST:
        p.writeListBegin(TType.I64, len(v))
        for x in v:
            p.writeI64(x)
        p.writeListEnd()
    elif ttype == TType.STRUCT:
        p.writeStructBegin("s")
        for i, x in enumerate(v):
            p.writeFieldBegin("f", TType.STRUCT, i + 1)
            write_value(p, TType.STRUCT, x)
            p.writeFieldEnd()
        p.writeFieldStop()
        p.writeStructEnd()
    elif ttype == TType.BOOL:
        p.writeBool(v)


def message(proto: Proto, name: str, mtype: int, seqid: int, fields: list | None = None) -> bytes:
    buf = TMemoryBuffer()
    p = PROTOS[proto](buf)
    p.writeMessageBegin(name, mtype, seqid)
    if mtype == TMessageType.EXCEPTION:
        TApplicationException(TApplicationException.PROTOCOL_ERROR, "bad").write(p)
    else:
        p.writeStructBegin("args")
        for i, (ttype, v) in enumerate(fields or []):
            p.writeFieldBegin("f", ttype, i + 1)
            write_value(p, ttype, v)
            p.writeFieldEnd()
        p.writeFieldStop()
        p.writeStructEnd()
    p.writeMessageEnd()
    return buf.getvalue()


def transport(tr: Transport, proto: Proto, payload: bytes, seq: int = 0, info: dict[str, str] | None = None) -> bytes:
    if tr is Transport.UNFRAMED:
        return payload
    if tr is Transport.FRAMED:
        return struct.pack(">I", len(payload)) + payload
    mem = TMemoryBuffer()
    pid = THeaderSubprotocolID.BINARY if proto is Proto.BINARY else THeaderSubprotocolID.COMPACT
    t = THeaderTransport(mem, [THeaderClientType.HEADERS], default_protocol=pid)
    t.sequence_id = seq
    for k, v in (info or {}).items():
        t.set_header(k.encode(), v.encode())
    t.write(payload)
    t.flush()
    return mem.getvalue()


def decode_one(raw: bytes, role: Role = Role.ANY, **limits: int) -> Frame:
    d = CODEC.new_decoder(role, DEFAULT_LIMITS.with_overrides(**limits))
    f = d.decode(raw)
    assert isinstance(f, Frame), f
    assert f.raw == raw
    return f


def apache_read(raw: bytes, tr: Transport, proto: Proto) -> tuple[str, int, int, dict, object]:
    """Read a message with Apache Thrift: (name, type, seqid, info headers, TApplicationException|None)."""
    mem = TMemoryBuffer(raw)
    headers: dict = {}
    if tr is Transport.HEADER:
        t = THeaderTransport(mem, [THeaderClientType.HEADERS])
        t.readFrame(0)
        headers = {k.decode(): v.decode() for k, v in t.get_headers().items()}
        src = t
    elif tr is Transport.FRAMED:
        (n,) = struct.unpack(">I", mem.read(4))
        src = TMemoryBuffer(mem.read(n))
    else:
        src = mem
    p = PROTOS[proto](src)
    name, mtype, seqid = p.readMessageBegin()
    exc = None
    if mtype == TMessageType.EXCEPTION:
        exc = TApplicationException()
        exc.read(p)
    else:
        p.skip(TType.STRUCT)
    p.readMessageEnd()
    return name, mtype, seqid, headers, exc


# --- detection ------------------------------------------------------------------------------

THRIFT_WIRE = sorted(p.stem for p in WIRE.glob("*thrift*.hex"))
OTHER_WIRE = sorted(p.stem for p in WIRE.glob("*.hex") if "thrift" not in p.name)


@pytest.mark.parametrize("stem", THRIFT_WIRE)
def test_matcher_claims_captured_thrift(stem: str) -> None:
    raw = wire(stem)
    assert CODEC.match(raw[:8]) == MATCH
    assert CODEC.match(raw) == MATCH


@pytest.mark.parametrize("stem", OTHER_WIRE)
def test_matcher_rejects_other_protocols(stem: str) -> None:
    raw = wire(stem)
    assert CODEC.match(raw) == NO_MATCH
    assert CODEC.match(raw[:CODEC.match_bytes]) == NO_MATCH


def test_matcher_needs_at_most_8_bytes() -> None:
    raw = wire("thriftpy2.thrift-framed-binary-call")
    for i in range(1, 8):
        r = CODEC.match(raw[:i])
        assert r > 0 and i + r <= 8
    for text in (b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.1", b"PRI * HTTP/2.0\r\n", b"\xda\xbb\xc2\x00" * 4):
        assert CODEC.match(text) == NO_MATCH
    assert CODEC.match(b"\x80\x01\x00\x09") == NO_MATCH       # message type 9
    assert CODEC.match(b"\x00\x00\x00\x00\x80\x01\x00\x01") == NO_MATCH  # size 0


def test_lax_binary_is_not_detected() -> None:
    lax = struct.pack(">i", 7) + b"getUser" + b"\x01" + struct.pack(">i", 1) + b"\x00"
    assert CODEC.match(lax) == NO_MATCH
    with pytest.raises(ProtocolError):
        CODEC.new_decoder().decode(lax)


# --- decoding -----------------------------------------------------------------------------------

def test_captured_frames() -> None:
    f = decode_one(wire("apache-thrift-0.25.thrift-theader-call"))
    assert (f.meta.transport, f.meta.proto, f.kind, f.request_id) == (Transport.HEADER, Proto.BINARY, Kind.REQUEST, 0)
    f = decode_one(wire("thriftpy2.thrift-framed-compact-call"))
    assert (f.meta.transport, f.meta.proto, f.headers) == (Transport.FRAMED, Proto.COMPACT, {"method": "getUser"})
    f = decode_one(wire("thriftpy2-server.thrift-framed-binary-reply"))
    assert (f.kind, f.status, CODEC.status_to_http(f)) == (Kind.RESPONSE, 0, 200)
    f = decode_one(wire("thriftpy2.thrift-unframed-binary-call"))
    assert f.meta.transport is Transport.UNFRAMED
    assert CODEC.pool_mode_for(f) is PoolMode.PINGPONG
    assert CODEC.pool_mode_for(decode_one(wire("thriftpy2.thrift-framed-binary-call"))) is PoolMode.MULTIPLEX


@pytest.mark.parametrize("stem", ["thriftpy2.thrift-framed-binary-call", "thriftpy2-server.thrift-framed-binary-reply",
                                  "thriftpy2.thrift-framed-compact-call", "apache-thrift-0.25.thrift-theader-call"])
def test_skipper_ends_exactly_at_frame_end(stem: str) -> None:
    """The unframed skipper, run over a framed payload, must land on the frame's end."""
    f = decode_one(wire(stem))
    body = len(f.raw) - len(f.body)
    sk = _Skipper(f.raw, len(f.raw), len(f.raw), 64)
    end = sk.b_struct(body, 1) if f.meta.proto is Proto.BINARY else sk.c_struct(body, 1)
    assert end == len(f.raw)


@pytest.mark.parametrize("tr", TRANSPORTS)
@pytest.mark.parametrize("proto", [Proto.BINARY, Proto.COMPACT])
def test_kinds_status_and_multiplexed_names(tr: Transport, proto: Proto) -> None:
    info = {"k": "v"} if tr is Transport.HEADER else {}
    cases = [("Svc:call", TMessageType.CALL, Kind.REQUEST, None),
             ("fire", TMessageType.ONEWAY, Kind.ONEWAY, None),
             ("call", TMessageType.REPLY, Kind.RESPONSE, 0),
             ("call", TMessageType.EXCEPTION, Kind.RESPONSE, TApplicationException.PROTOCOL_ERROR)]
    for name, mtype, kind, status in cases:
        f = decode_one(transport(tr, proto, message(proto, name, mtype, 77), 77, info))
        assert (f.kind, f.status, f.request_id) == (kind, status, 77)
        exp = dict(info)
        if ":" in name:
            exp["service"], exp["method"] = name.split(":")
        else:
            exp["method"] = name
        assert f.headers == exp
        assert CODEC.expects_response(f) == (kind is Kind.REQUEST)
    f = decode_one(transport(tr, proto, message(proto, "x", TMessageType.EXCEPTION, 1), 1, info))
    assert CODEC.status_to_http(f) == 400   # PROTOCOL_ERROR


def test_exception_without_type_field_is_unknown() -> None:
    # TApplicationException {1: "m"} without field 2 -> type UNKNOWN (0), as in every Thrift library
    payload = (struct.pack(">Ii", 0x80010003, 1) + b"x" + struct.pack(">i", 9)
               + b"\x0b\x00\x01" + struct.pack(">i", 1) + b"m" + b"\x00")
    f = decode_one(struct.pack(">I", len(payload)) + payload)
    assert f.status == 0 and CODEC.status_to_http(f) == 500


def test_nested_unframed_messages_and_garbage() -> None:
    deep = [[[[]]]]
    raw = transport(Transport.UNFRAMED, Proto.COMPACT, message(
        Proto.COMPACT, "m", TMessageType.CALL, 3,
        [(TType.I32, -5), (TType.BOOL, True), (TType.LIST, [1, 2, 3]), (TType.STRUCT, deep), (TType.STRING, "é")]))
    f = decode_one(raw)
    assert f.request_id == 3
    assert CODEC.new_decoder().decode(raw[:-1]) == 1
    with pytest.raises(ProtocolError):
        CODEC.new_decoder().decode(raw[:-1] + b"\x0f")   # field type 15 + stop missing -> bad type


# --- limits ----------------------------------------------------------------------------------

def test_frame_limit_checked_from_the_header() -> None:
    hdr = struct.pack(">I", 16_384_001) + b"\x80\x01\x00\x01"
    with pytest.raises(FrameTooLarge):
        CODEC.new_decoder().decode(hdr)
    d = CODEC.new_decoder(limits=DEFAULT_LIMITS.with_overrides(thrift_max_frame=100))
    with pytest.raises(FrameTooLarge):
        d.decode(struct.pack(">I", 101) + b"\x0f\xff\x00\x00")


def test_unframed_limit_independent_of_chunking() -> None:
    raw = message(Proto.BINARY, "m", TMessageType.CALL, 1, [(TType.STRING, "x" * 500)])
    for limit in (50, 200, len(raw) - 1):
        lim = DEFAULT_LIMITS.with_overrides(thrift_max_frame=limit)
        with pytest.raises(FrameTooLarge):
            CODEC.new_decoder(limits=lim).decode(raw)
        if limit < 500:
            # with only the header buffered, the declared string length already exceeds the limit
            with pytest.raises(FrameTooLarge):
                CODEC.new_decoder(limits=lim).decode(raw[:40])
        else:
            # only the final STOP byte is over the limit: nothing to tell before the string ends,
            # then the message provably needs one byte more than the limit
            assert CODEC.new_decoder(limits=lim).decode(raw[:-2]) == 1
            with pytest.raises(FrameTooLarge):
                CODEC.new_decoder(limits=lim).decode(raw[:-1])
    lim = DEFAULT_LIMITS.with_overrides(thrift_max_frame=len(raw))
    assert isinstance(CODEC.new_decoder(limits=lim).decode(raw), Frame)


def test_depth_and_name_limits() -> None:
    deep: list = []
    for _ in range(70):
        deep = [deep]
    raw = message(Proto.BINARY, "m", TMessageType.CALL, 1, [(TType.STRUCT, deep)])
    with pytest.raises(LimitExceeded):
        CODEC.new_decoder().decode(raw)
    ok = decode_one(raw, thrift_max_depth=80)
    assert ok.request_id == 1
    raw = message(Proto.COMPACT, "n" * 100, TMessageType.CALL, 1)
    with pytest.raises(LimitExceeded):
        CODEC.new_decoder(limits=DEFAULT_LIMITS.with_overrides(thrift_max_name=99)).decode(raw[:5])


def test_huge_container_counts_fail_fast() -> None:
    # list<bool> of 2**31-1 elements in 20 bytes: need more (bounded by the limit), never a loop
    body = b"\x0f\x00\x01" + b"\x02" + struct.pack(">i", 0x7FFFFFFF)
    raw = struct.pack(">Ii", 0x80010001, 1) + b"m" + struct.pack(">i", 1) + body
    with pytest.raises(FrameTooLarge):
        CODEC.new_decoder().decode(raw)
    raw = bytes([0x82, 0x21, 1, 1]) + b"m" + b"\x19\xf1" + b"\xff\xff\xff\xff\x07"   # compact list<bool> huge
    with pytest.raises(FrameTooLarge):
        CODEC.new_decoder().decode(raw)


# --- encoding --------------------------------------------------------------------------------------

@pytest.mark.parametrize("tr", TRANSPORTS)
@pytest.mark.parametrize("proto", [Proto.BINARY, Proto.COMPACT])
@pytest.mark.parametrize("new_id", [0, 5, 300, 2**20, 2**31 - 1])
def test_seqid_patch(tr: Transport, proto: Proto, new_id: int) -> None:
    raw = transport(tr, proto, message(proto, "Svc:get", TMessageType.CALL, 9, [(TType.I32, 1)]), 9, {"a": "b"})
    f = decode_one(raw)
    f.request_id = new_id
    out = CODEC.encode(f)
    g = decode_one(out)
    assert g.request_id == new_id and g.headers == f.headers and g.kind is f.kind
    name, _t, seqid, _h, _e = apache_read(out, tr, proto)
    assert (name, seqid) == ("Svc:get", new_id)
    if tr is Transport.HEADER:
        assert struct.unpack_from(">i", out, 8)[0] == new_id      # the THeader seq id follows
    g.request_id = 9
    assert CODEC.encode(g) == raw


@pytest.mark.parametrize("proto", [Proto.BINARY, Proto.COMPACT])
def test_theader_info_headers_reencode(proto: Proto) -> None:
    raw = transport(Transport.HEADER, proto, message(proto, "get", TMessageType.CALL, 4), 4,
                    {"trace": "t1", "drop": "me"})
    f = decode_one(raw)
    h = f.headers
    h["trace"] = "t2"
    del h["drop"]
    h["added"] = "ü"
    h["method"] = "get2"
    h["service"] = "Svc"
    f.request_id = 1000
    out = CODEC.encode(f)
    name, _t, seqid, headers, _e = apache_read(out, Transport.HEADER, proto)
    assert (name, seqid, headers) == ("Svc:get2", 1000, {"trace": "t2", "added": "ü"})
    g = decode_one(out)
    assert g.headers == {"trace": "t2", "added": "ü", "service": "Svc", "method": "get2"}


@pytest.mark.parametrize("tr", [Transport.UNFRAMED, Transport.FRAMED])
@pytest.mark.parametrize("proto", [Proto.BINARY, Proto.COMPACT])
def test_method_rename_and_unsupported_headers(tr: Transport, proto: Proto) -> None:
    raw = transport(tr, proto, message(proto, "A:get", TMessageType.CALL, 4, [(TType.STRING, "x")]))
    f = decode_one(raw)
    f.headers["method"] = "fetchEverything"
    del f.headers["service"]
    out = CODEC.encode(f)
    assert apache_read(out, tr, proto)[:3] == ("fetchEverything", TMessageType.CALL, 4)
    g = decode_one(out)
    g.headers["x-trace"] = "1"
    with pytest.raises(ProtocolError, match="THeader"):
        CODEC.encode(g)


@pytest.mark.parametrize("tr", TRANSPORTS)
@pytest.mark.parametrize("proto", [Proto.BINARY, Proto.COMPACT])
@pytest.mark.parametrize("reason,etype,http", [(Reason.NO_ROUTE, 1, 404), (Reason.TIMEOUT, 6, 504),
                                               (Reason.UPSTREAM_RESET, 6, 502), (Reason.OVERFLOW, 6, 503)])
def test_error_reply(tr: Transport, proto: Proto, reason: Reason, etype: int, http: int) -> None:
    req = decode_one(transport(tr, proto, message(proto, "Svc:get", TMessageType.CALL, 321), 321))
    rep = CODEC.error_reply(req, reason, "no route to Svc")
    assert rep is not None
    assert (rep.kind, rep.request_id, rep.status) == (Kind.RESPONSE, 321, etype)
    assert (rep.meta.transport, rep.meta.proto) == (tr, proto)
    assert CODEC.status_to_http(rep) == http
    name, mtype, seqid, _h, exc = apache_read(rep.raw, tr, proto)
    assert (name, mtype, seqid) == ("Svc:get", TMessageType.EXCEPTION, 321)
    assert exc.type == etype and exc.message == "no route to Svc"
    # a decoded copy of the reply maps by its status alone
    assert CODEC.status_to_http(decode_one(rep.raw)) == (404 if etype == 1 else 500)


def test_no_error_reply_for_oneway() -> None:
    req = decode_one(message(Proto.BINARY, "fire", TMessageType.ONEWAY, 1))
    assert CODEC.error_reply(req, Reason.NO_ROUTE) is None


# --- properties ----------------------------------------------------------------------------------

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=20)
fields_st = st.lists(st.one_of(
    st.tuples(st.just(TType.I32), st.integers(-2**31, 2**31 - 1)),
    st.tuples(st.just(TType.STRING), st.text(max_size=30)),
    st.tuples(st.just(TType.LIST), st.lists(st.integers(-2**63, 2**63 - 1), max_size=5)),
    st.tuples(st.just(TType.BOOL), st.booleans()),
    st.tuples(st.just(TType.STRUCT), st.recursive(st.just([]), lambda c: st.lists(c, max_size=3), max_leaves=6)),
), max_size=5)
msg_st = st.tuples(st.sampled_from(TRANSPORTS), st.sampled_from([Proto.BINARY, Proto.COMPACT]), names,
                   st.sampled_from([1, 2, 4]), st.integers(-2**31, 2**31 - 1), fields_st,
                   st.dictionaries(st.text(min_size=1, max_size=5).filter(lambda k: k not in ("method", "service")),
                                   st.text(max_size=5), max_size=3))


def build(m) -> tuple[bytes, dict]:  # type: ignore[no-untyped-def]
    tr, proto, name, mtype, seqid, fields, info = m
    if tr is not Transport.HEADER:
        info = {}
    raw = transport(tr, proto, message(proto, name, mtype, seqid, fields), seqid, info)
    return raw, dict(info)


@settings(max_examples=150)
@given(st.lists(msg_st, min_size=1, max_size=4), st.data())
def test_stream_split_anywhere_yields_same_frames(msgs, data) -> None:  # type: ignore[no-untyped-def]
    built = [build(m) for m in msgs]
    stream = b"".join(r for r, _ in built)
    frames, n = CODEC.new_decoder().decode_all(stream)
    assert n == len(stream) and [f.raw for f in frames] == [r for r, _ in built]
    for f, m, (_r, info) in zip(frames, msgs, built):
        assert f.request_id == m[4]
        assert f.headers == {**info, **({"service": m[2].partition(":")[0], "method": m[2].partition(":")[2]}
                                         if ":" in m[2] else {"method": m[2]})}
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    d = CODEC.new_decoder()
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
@given(msg_st, st.integers(0, 2**31 - 1))
def test_patch_round_trip(m, new_id) -> None:  # type: ignore[no-untyped-def]
    raw, _ = build(m)
    f = decode_one(raw)
    assert CODEC.encode(f) == raw
    f.request_id = new_id
    g = decode_one(CODEC.encode(f))
    assert g.request_id == new_id and g.headers == f.headers
    g.request_id = m[4]
    assert CODEC.encode(g) == raw


@settings(max_examples=300)
@given(msg_st, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(20, 400))
def test_mutations_raise_only_protocol_error_and_limits_ignore_chunking(m, muts, limit) -> None:  # type: ignore[no-untyped-def]
    raw = bytearray(build(m)[0])
    for i, b in muts:
        raw[i % len(raw)] = b
    data = bytes(raw)
    lim = DEFAULT_LIMITS.with_overrides(thrift_max_frame=limit)

    def outcome(chunks: list[bytes]) -> tuple:
        d = CODEC.new_decoder(limits=lim)
        buf = b""
        frames = []
        try:
            for c in chunks:
                buf += c
                while buf:
                    r = d.decode(buf)
                    if isinstance(r, int):
                        break
                    frames.append(r.raw)
                    buf = buf[len(r.raw):]
        except ProtocolError as e:
            return ("error", type(e).__name__, tuple(frames))
        return ("ok", tuple(frames), len(buf))

    whole = outcome([data])
    bytewise = outcome([data[i:i + 1] for i in range(len(data))])
    assert whole == bytewise


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    d = CODEC.new_decoder()
    try:
        frames, _ = d.decode_all(data)
        for f in frames:
            f.headers  # noqa: B018
            assert CODEC.encode(f) == f.raw
    except ProtocolError:
        pass
    CODEC.match(data)


def test_fixture_files_exist() -> None:
    assert len(list(FIX.glob("*.hex"))) >= 17


def test_compact_seqid_varints() -> None:
    # a seqid varint wider than 32 bits is not an i32: rejected
    with pytest.raises(ProtocolError, match="32 bits"):
        CODEC.new_decoder().decode(bytes([0x82, 0x41, 0xF9, 0xF8, 0x98, 0x9A, 0x74, 2]) + b"ok\x00")
    # an overlong (non-shortest) varint is read; a patched id is written in shortest form
    raw = bytes([0x82, 0x41, 0xF9, 0x00, 2]) + b"ok\x00"
    f = decode_one(raw)
    assert f.request_id == 121 and CODEC.encode(f) == raw
    f.request_id = 122
    assert CODEC.encode(f) == bytes([0x82, 0x41, 122, 2]) + b"ok\x00"
    # negative seqids travel as 5-byte varints of their 32-bit pattern
    f = decode_one(message(Proto.COMPACT, "m", TMessageType.CALL, -2))
    assert f.request_id == -2


def test_theader_seq_id_that_differs_from_the_payload_round_trips() -> None:
    payload = message(Proto.BINARY, "m", TMessageType.CALL, 65536)
    raw = transport(Transport.HEADER, Proto.BINARY, payload, seq=0)
    f = decode_one(raw)
    f.request_id = 5
    out = CODEC.encode(f)
    assert struct.unpack_from(">i", out, 8)[0] == 5 - 65536       # keeps its distance
    g = decode_one(out)
    g.request_id = 65536
    assert CODEC.encode(g) == raw


def test_theader_with_transforms_passes_through_opaquely() -> None:
    from thrift.transport.THeaderTransport import THeaderTransformID
    mem = TMemoryBuffer()
    t = THeaderTransport(mem, [THeaderClientType.HEADERS])
    t.add_transform(THeaderTransformID.ZLIB)
    t.sequence_id = 12
    t.set_header(b"k", b"v")
    t.write(message(Proto.BINARY, "get", TMessageType.CALL, 12))
    t.flush()
    raw = mem.getvalue()
    f = decode_one(raw)
    assert (f.kind, f.request_id, f.headers, f.meta.opaque) == (Kind.REQUEST, 12, {"k": "v"}, True)
    assert decode_one(raw, Role.RESPONSES).kind is Kind.RESPONSE
    f.request_id = 40
    out = CODEC.encode(f)
    assert decode_one(out).request_id == 40
    f.headers["k"] = "w"
    out = CODEC.encode(f)
    _n, _t, seqid, headers, _e = apache_read(out, Transport.HEADER, Proto.BINARY)
    assert (seqid, headers) == (12, {"k": "w"})        # the payload seqid is inside the zlib stream
    assert CODEC.error_reply(f, Reason.NO_ROUTE) is None
