"""Bytes of the demo's messages, and the reading of their payloads.

Framing (where a frame ends, its id, kind, heartbeat bit, status) is always left to
xproto's own codecs (:func:`decoder_for`); this module only builds the messages a client
or server of each protocol would write, with ``struct``, ``xproto.hessian2`` and ``kio``,
and reads the payload parts a codec keeps opaque (a Dubbo result, a Thrift result struct,
a Kafka response body, an HTTP body).
"""
from __future__ import annotations

import io
import struct
from typing import Any

from xproto import hessian2
from xproto.codec import Codec, Decoder, Role
from xproto.errors import ProtocolError
from xproto.limits import DEFAULT_LIMITS, Limits


def codec_for(protocol: str) -> Codec:
    """xproto's codec for ``protocol``, from the codec registry (entry points)."""
    from xproto.registry import default_registry

    return default_registry().get(protocol)


def decoder_for(protocol: str, role: Role, limits: Limits = DEFAULT_LIMITS) -> Decoder:
    return codec_for(protocol).new_decoder(role, limits)

GREETER_SERVICE = "com.example.Greeter"          # the Dubbo service path
GREETER_BOLT = "com.example.Greeter:1.0"          # the SOFA service unique name

# ======================================================================== dubbo ==========
DUBBO_MAGIC = 0xDABB
DUBBO_HEADER = struct.Struct(">HBBqI")   # magic, flag, status, request id, body length
DUBBO_HESSIAN2 = 2
DUBBO_OK = 20
DUBBO_SERVICE_NOT_FOUND = 60
DUBBO_VERSION = "2.0.2"
# response body flags
RESPONSE_WITH_EXCEPTION = 0
RESPONSE_VALUE = 1
RESPONSE_NULL_VALUE = 2


def _hessian_values(*values: Any) -> bytes:
    w = hessian2.Writer()
    for v in values:
        w.write(v)
    return w.getvalue()


def dubbo_request(rid: int, service: str, method: str, args: list[str], *, version: str = "1.0.0",
                  twoway: bool = True) -> bytes:
    attachments = {"path": service, "interface": service, "version": version, "timeout": "3000"}
    body = _hessian_values(DUBBO_VERSION, service, version, method,
                           "Ljava/lang/String;" * len(args), *args, attachments)
    flag = 0x80 | (0x40 if twoway else 0) | DUBBO_HESSIAN2
    return DUBBO_HEADER.pack(DUBBO_MAGIC, flag, 0, rid, len(body)) + body


def dubbo_heartbeat(rid: int) -> bytes:
    return DUBBO_HEADER.pack(DUBBO_MAGIC, 0x80 | 0x40 | 0x20 | DUBBO_HESSIAN2, 0, rid, 1) + b"N"


def dubbo_heartbeat_reply(rid: int) -> bytes:
    return DUBBO_HEADER.pack(DUBBO_MAGIC, 0x20 | DUBBO_HESSIAN2, DUBBO_OK, rid, 1) + b"N"


def dubbo_response(rid: int, value: Any, status: int = DUBBO_OK) -> bytes:
    if status == DUBBO_OK:
        body = _hessian_values(RESPONSE_VALUE, value)
    else:  # error responses carry a string describing the error
        body = _hessian_values(str(value))
    return DUBBO_HEADER.pack(DUBBO_MAGIC, DUBBO_HESSIAN2, status, rid, len(body)) + body


def dubbo_parse_invocation(raw: bytes) -> tuple[str, str, list[Any], dict[str, Any]]:
    """(service, method, args, attachments) of a Dubbo request frame's hessian2 body."""
    r = hessian2.Reader(memoryview(raw)[DUBBO_HEADER.size:])
    r.read_string()                       # dubbo version
    service = r.read_string() or ""
    r.read_string()                       # service version
    method = r.read_string() or ""
    desc = r.read_string() or ""
    nargs = _count_jvm_args(desc)
    args = [r.read() for _ in range(nargs)]
    att = r.read() if r.pos < len(raw) - DUBBO_HEADER.size else {}
    return service, method, args, dict(att or {})


def _count_jvm_args(desc: str) -> int:
    n = i = 0
    while i < len(desc):
        c = desc[i]
        while c == "[":
            i += 1
            c = desc[i]
        if c == "L":
            i = desc.index(";", i)
        n += 1
        i += 1
    return n


def dubbo_parse_result(raw: bytes, status: int) -> Any:
    """The value of an OK Dubbo response, or the error text of any other status."""
    r = hessian2.Reader(memoryview(raw)[DUBBO_HEADER.size:])
    if status != DUBBO_OK:
        return r.read()
    flag = r.read_int()
    if flag in (RESPONSE_VALUE, RESPONSE_VALUE + 3):
        return r.read()
    if flag in (RESPONSE_NULL_VALUE, RESPONSE_NULL_VALUE + 3):
        return None
    raise ProtocolError(f"dubbo response carries an exception (flag {flag})", protocol="dubbo")


# ========================================================================= bolt ==========
BOLT_REQ_HEADER = struct.Struct(">BBHBIBiHHI")  # proto type cmd ver2 id codec timeout cl hl bl
BOLT_RSP_HEADER = struct.Struct(">BBHBIBHHHI")  # proto type cmd ver2 id codec status cl hl bl
BOLT_V1 = 1
BOLT_TYPE_RESPONSE, BOLT_TYPE_REQUEST, BOLT_TYPE_ONEWAY = 0, 1, 2
BOLT_CMD_HEARTBEAT, BOLT_CMD_REQUEST, BOLT_CMD_RESPONSE = 0, 1, 2
BOLT_HESSIAN2 = 1
BOLT_SUCCESS = 0
BOLT_NO_PROCESSOR = 6
SOFA_REQUEST = "com.alipay.sofa.rpc.core.request.SofaRequest"
SOFA_RESPONSE = "com.alipay.sofa.rpc.core.response.SofaResponse"


def _bolt_header_block(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for k, v in headers.items():
        kb, vb = k.encode(), v.encode()
        out += struct.pack(">I", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
    return bytes(out)


def bolt_parse_header_block(raw: bytes, start: int, length: int) -> dict[str, str]:
    out: dict[str, str] = {}
    p, end = start, start + length
    while p < end:
        (kl,) = struct.unpack_from(">I", raw, p)
        k = raw[p + 4:p + 4 + kl].decode()
        p += 4 + kl
        (vl,) = struct.unpack_from(">I", raw, p)
        if vl == 0xFFFFFFFF:
            v, p = "", p + 4
        else:
            v = raw[p + 4:p + 4 + vl].decode()
            p += 4 + vl
        out[k] = v
    return out


def bolt_request(rid: int, service: str, method: str, args: list[str], *, oneway: bool = False,
                 timeout_ms: int = 3000) -> bytes:
    cls = SOFA_REQUEST.encode()
    headers = _bolt_header_block({
        "service": service, "sofa_head_target_service": service, "sofa_head_method_name": method,
        "rpc_trace_context.sofaCallerApp": "xproto-demo",
    })
    req = hessian2.JavaObject(SOFA_REQUEST, {
        "targetAppName": None, "methodName": method, "targetServiceUniqueName": service,
        "requestProps": None, "methodArgSigs": hessian2.TypedList(["java.lang.String"] * len(args),
                                                              type="[string"),
    })
    content = _hessian_values(req, *args)
    typ = BOLT_TYPE_ONEWAY if oneway else BOLT_TYPE_REQUEST
    return BOLT_REQ_HEADER.pack(BOLT_V1, typ, BOLT_CMD_REQUEST, 1, rid, BOLT_HESSIAN2, timeout_ms,
                                len(cls), len(headers), len(content)) + cls + headers + content


def bolt_heartbeat(rid: int) -> bytes:
    return BOLT_REQ_HEADER.pack(BOLT_V1, BOLT_TYPE_REQUEST, BOLT_CMD_HEARTBEAT, 1, rid, BOLT_HESSIAN2,
                                -1, 0, 0, 0)


def bolt_heartbeat_reply(rid: int) -> bytes:
    return BOLT_RSP_HEADER.pack(BOLT_V1, BOLT_TYPE_RESPONSE, BOLT_CMD_HEARTBEAT, 1, rid, BOLT_HESSIAN2,
                                BOLT_SUCCESS, 0, 0, 0)


def bolt_response(rid: int, value: Any, status: int = BOLT_SUCCESS) -> bytes:
    cls = SOFA_RESPONSE.encode()
    if status == BOLT_SUCCESS:
        obj = hessian2.JavaObject(SOFA_RESPONSE, {"isError": False, "errorMsg": None, "appResponse": value,
                                           "responseProps": None})
    else:
        obj = hessian2.JavaObject(SOFA_RESPONSE, {"isError": True, "errorMsg": str(value),
                                           "appResponse": None, "responseProps": None})
    content = _hessian_values(obj)
    return BOLT_RSP_HEADER.pack(BOLT_V1, BOLT_TYPE_RESPONSE, BOLT_CMD_RESPONSE, 1, rid, BOLT_HESSIAN2,
                                status, len(cls), 0, len(content)) + cls + content


def _bolt_parts(raw: bytes) -> tuple[int, int, int, int, int]:
    """(fixed header size, cmdcode, class len, header len, content len) of a v1 frame."""
    if raw[1] == BOLT_TYPE_RESPONSE:
        _p, _t, cmd, _v, _i, _c, _s, cl, hl, bl = BOLT_RSP_HEADER.unpack_from(raw)
        return BOLT_RSP_HEADER.size, cmd, cl, hl, bl
    _p, _t, cmd, _v, _i, _c, _to, cl, hl, bl = BOLT_REQ_HEADER.unpack_from(raw)
    return BOLT_REQ_HEADER.size, cmd, cl, hl, bl


def bolt_parse_request(raw: bytes) -> tuple[dict[str, str], str, list[Any]]:
    """(header map, method, args) of a Bolt v1 request frame."""
    size, _cmd, cl, hl, bl = _bolt_parts(raw)
    headers = bolt_parse_header_block(raw, size + cl, hl)
    r = hessian2.Reader(memoryview(raw)[size + cl + hl:size + cl + hl + bl])
    req = r.read()
    method = headers.get("sofa_head_method_name") or req["methodName"]
    nargs = len(req["methodArgSigs"] or [])
    return headers, method, [r.read() for _ in range(nargs)]


def bolt_parse_result(raw: bytes) -> Any:
    size, _cmd, cl, hl, bl = _bolt_parts(raw)
    if bl == 0:
        return None
    obj = hessian2.Reader(memoryview(raw)[size + cl + hl:size + cl + hl + bl]).read()
    fields = getattr(obj, "fields", obj)
    if fields.get("isError"):
        return fields.get("errorMsg")
    return fields.get("appResponse")


# ======================================================================= thrift ==========
THRIFT_VERSION_1 = 0x80010000
T_CALL, T_REPLY, T_EXCEPTION, T_ONEWAY = 1, 2, 3, 4
T_STOP, T_I32, T_STRING, T_STRUCT = 0, 8, 11, 12
TAPP_UNKNOWN_METHOD = 1


def _thrift_message(mtype: int, name: str, seqid: int, struct_body: bytes) -> bytes:
    nb = name.encode()
    msg = struct.pack(">II", THRIFT_VERSION_1 | mtype, len(nb)) + nb + struct.pack(">i", seqid) + struct_body
    return struct.pack(">I", len(msg)) + msg


def _thrift_string_field(fid: int, s: str) -> bytes:
    b = s.encode()
    return struct.pack(">BhI", T_STRING, fid, len(b)) + b


def thrift_call(seqid: int, method: str, arg: str, *, oneway: bool = False) -> bytes:
    """A framed strict-binary CALL (or ONEWAY) of ``method(1: string name)``."""
    return _thrift_message(T_ONEWAY if oneway else T_CALL, method, seqid,
                           _thrift_string_field(1, arg) + bytes((T_STOP,)))


def thrift_reply(seqid: int, method: str, result: str) -> bytes:
    return _thrift_message(T_REPLY, method, seqid, _thrift_string_field(0, result) + bytes((T_STOP,)))


def thrift_exception(seqid: int, method: str, message: str, etype: int = TAPP_UNKNOWN_METHOD) -> bytes:
    body = _thrift_string_field(1, message) + struct.pack(">BhiB", T_I32, 2, etype, T_STOP)
    return _thrift_message(T_EXCEPTION, method, seqid, body)


def thrift_parse(raw: bytes) -> tuple[int, str, int, dict[int, Any]]:
    """(message type, name, seqid, {field id: value}) of a framed strict-binary message whose
    struct holds only strings, i32s and nested structs (skipped)."""
    (ver,) = struct.unpack_from(">I", raw, 4)
    if ver & 0xFFFF0000 != THRIFT_VERSION_1:
        raise ProtocolError("demo expects framed strict binary", protocol="thrift", offset=4)
    (nl,) = struct.unpack_from(">I", raw, 8)
    name = raw[12:12 + nl].decode()
    (seqid,) = struct.unpack_from(">i", raw, 12 + nl)
    p = 16 + nl
    fields: dict[int, Any] = {}
    while p < len(raw) and raw[p] != T_STOP:
        ftype, fid = struct.unpack_from(">Bh", raw, p)
        p += 3
        if ftype == T_STRING:
            (n,) = struct.unpack_from(">I", raw, p)
            fields[fid] = raw[p + 4:p + 4 + n].decode()
            p += 4 + n
        elif ftype == T_I32:
            (fields[fid],) = struct.unpack_from(">i", raw, p)
            p += 4
        else:
            raise ProtocolError(f"demo cannot skip thrift type {ftype}", protocol="thrift", offset=p)
    return ver & 0xFF, name, seqid, fields


# ======================================================================== kafka ==========
API_PRODUCE, API_METADATA, API_VERSIONS = 0, 3, 18
KAFKA_SIZE = struct.Struct(">i")


def kafka_request(api_key: int, version: int, correlation_id: int, payload: Any,
                  client_id: str = "xproto-demo") -> bytes:
    """A size-prefixed request: the header version the payload's schema asks for + payload."""
    from kio.serial import entity_writer

    header_cls = type(payload).__header_schema__
    header = header_cls(request_api_key=api_key, request_api_version=version,
                        correlation_id=correlation_id, client_id=client_id)
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0")
    entity_writer(header_cls)(buf, header)
    entity_writer(type(payload))(buf, payload)
    data = bytearray(buf.getvalue())
    KAFKA_SIZE.pack_into(data, 0, len(data) - 4)
    return bytes(data)


def kafka_response(correlation_id: int, payload: Any) -> bytes:
    """A size-prefixed response; the schema's own header class (v0 for ApiVersions, KIP-511)."""
    from kio.serial import entity_writer

    header_cls = type(payload).__header_schema__
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0")
    entity_writer(header_cls)(buf, header_cls(correlation_id=correlation_id))
    entity_writer(type(payload))(buf, payload)
    data = bytearray(buf.getvalue())
    KAFKA_SIZE.pack_into(data, 0, len(data) - 4)
    return bytes(data)


def kafka_parse_request(raw: bytes) -> tuple[Any, Any]:
    """(header, payload) of a size-prefixed request frame, via kio."""
    from kio.index import load_request_schema
    from kio.serial import entity_reader

    api_key, version = struct.unpack_from(">hh", raw, 4)
    schema = load_request_schema(api_key, version)
    mv = memoryview(raw)
    header, n = entity_reader(schema.__header_schema__)(mv[4:], 0)
    payload, _ = entity_reader(schema)(mv[4 + n:], 0)
    return header, payload


def kafka_parse_response(raw: bytes, api_key: int, version: int) -> tuple[int, Any]:
    """(correlation id, payload) of a size-prefixed response frame to (api_key, version)."""
    from kio.index import load_response_schema
    from kio.serial import entity_reader

    schema = load_response_schema(api_key, version)
    mv = memoryview(raw)
    header, n = entity_reader(schema.__header_schema__)(mv[4:], 0)
    payload, _ = entity_reader(schema)(mv[4 + n:], 0)
    return header.correlation_id, payload


def kafka_record_batch(values: list[bytes]) -> bytes:
    """A v2 record batch (with its CRC32C) holding ``values``, via ``kio.records``."""
    import datetime

    from kio.records.schema import NewRecordBatch, Record
    from kio.records.writers import write_new_batch
    from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

    now = TZAwareMicros.parse(datetime.datetime.now(datetime.UTC))
    records = tuple(Record(attributes=i8(0), timestamp=now, offset=i64(i), key=None, value=v, headers=())
                    for i, v in enumerate(values))
    buf = io.BytesIO()
    write_new_batch(buf, NewRecordBatch(producer_id=i64(-1), producer_epoch=i16(-1), base_sequence=i32(-1),
                                        records=records, attributes=i16(0)))
    return buf.getvalue()


def kafka_count_records(records: bytes | None) -> int:
    from kio.records.readers import read_batch

    if not records:
        return 0
    n = pos = 0
    mv = memoryview(records)
    while pos < len(records):
        batch, size = read_batch(mv, pos)
        n += len(batch.records)
        pos += size
    return n


# ========================================================================= http ==========

def http_request(method: str, path: str, demo_id: int, *, body_chunks: list[bytes] | None = None,
                 host: str = "demo.local") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xproto-demo\r\nX-Demo-Id: {demo_id}\r\n"
    if body_chunks is None:
        return (head + "\r\n").encode()
    out = bytearray((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
    for c in body_chunks:
        out += b"%x\r\n" % len(c) + c + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


def http_response(status: int, reason: str, demo_id: str | None, body: bytes, *,
                  chunks: list[bytes] | None = None) -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
    if demo_id is not None:
        head += f"X-Demo-Id: {demo_id}\r\n"
    if chunks is None:
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    out = bytearray((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
    for c in chunks:
        out += b"%x\r\n" % len(c) + c + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


class HttpMessage:
    __slots__ = ("body", "headers", "method", "path", "status")

    def __init__(self) -> None:
        self.method = ""
        self.path = ""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()


def http_parse(raw: bytes, response: bool) -> HttpMessage:
    """Parse one whole HTTP/1.1 message with httptools (a runtime dependency)."""
    import httptools

    msg = HttpMessage()

    class _Cb:
        def on_url(self, url: bytes) -> None:
            msg.path += url.decode()

        def on_header(self, name: bytes, value: bytes) -> None:
            msg.headers[name.decode().lower()] = value.decode()

        def on_body(self, body: bytes) -> None:
            msg.body += body

    try:
        if response:
            rp = httptools.HttpResponseParser(_Cb())
            rp.feed_data(raw)
            msg.status = rp.get_status_code()
        else:
            qp = httptools.HttpRequestParser(_Cb())
            qp.feed_data(raw)
            msg.method = qp.get_method().decode()
    except httptools.HttpParserError as e:
        raise ProtocolError(str(e), protocol="http") from None
    return msg
