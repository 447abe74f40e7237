"""Dubbo 2 (``dubbo``): 16-byte header, hessian2 bodies parsed lazily for the headers.

Header: ``0-1`` magic ``0xdabb``; ``2`` flag (bit7 request, bit6 two-way, bit5 event,
bits0-4 serialization id); ``3`` status (responses); ``4-11`` request id (int64);
``12-15`` body length (uint32).

Only hessian2 bodies (serialization id 2) are parsed, and only when ``frame.headers`` is
asked for. Frames in any other serialization (java, fastjson, protobuf ...) are framed
and passed through untouched with empty headers: the connection is never closed for them
(MOSN does close it).
"""
from __future__ import annotations

import struct
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

from xproto.codec import MATCH, NO_MATCH, Codec, Decoder, PoolMode, Reason, Role, Scanner
from xproto.errors import ProtocolError
from xproto.frame import BareFrame, Frame, Kind
from xproto.framing.fixed import MEMORYVIEW_COPY_MIN, copy_out, new_frame, too_large
from xproto.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from xproto.codec import Buffer

NAME = "dubbo"
MAGIC = 0xDABB
HEADER_LEN = 16
#: magic, flag, status, request id (int64), body length (uint32)
HEADER = struct.Struct(">HBBqI")
_unpack_header = HEADER.unpack_from
_ID = struct.Struct(">Q")      # the id patched in place (signed on the wire; masked to 64 bits)
_BODY_LEN = struct.Struct(">I")

FLAG_REQUEST = 0x80
FLAG_TWOWAY = 0x40
FLAG_EVENT = 0x20
SERIALIZATION_MASK = 0x1F
HESSIAN2 = 2

HESSIAN_NULL = b"N"


class Status(IntEnum):
    OK = 20
    CLIENT_TIMEOUT = 30
    SERVER_TIMEOUT = 31
    BAD_REQUEST = 40
    BAD_RESPONSE = 50
    SERVICE_NOT_FOUND = 60
    SERVICE_ERROR = 70
    SERVER_ERROR = 80
    CLIENT_ERROR = 90
    SERVER_THREADPOOL_EXHAUSTED_ERROR = 100


#: Dubbo response status -> HTTP-like code (stats, retries). Unknown -> 500.
STATUS_TO_HTTP: dict[int, int] = {
    Status.OK: 200,
    Status.CLIENT_TIMEOUT: 504,
    Status.SERVER_TIMEOUT: 504,
    Status.BAD_REQUEST: 400,
    Status.BAD_RESPONSE: 500,
    Status.SERVICE_NOT_FOUND: 404,
    Status.SERVICE_ERROR: 500,
    Status.SERVER_ERROR: 500,
    Status.CLIENT_ERROR: 500,
    Status.SERVER_THREADPOOL_EXHAUSTED_ERROR: 503,
}

#: why the proxy answers itself -> Dubbo status of the local reply
REASON_TO_STATUS: dict[Reason, int] = {
    Reason.NO_ROUTE: Status.SERVICE_NOT_FOUND,
    Reason.TIMEOUT: Status.SERVER_TIMEOUT,
    Reason.NO_HEALTHY_UPSTREAM: Status.SERVER_ERROR,
    Reason.UPSTREAM_RESET: Status.SERVER_ERROR,
    Reason.OVERFLOW: Status.SERVER_THREADPOOL_EXHAUSTED_ERROR,
    Reason.BAD_REQUEST: Status.BAD_REQUEST,
}

#: response body flags (hessian int before the value)
RESPONSE_WITH_EXCEPTION = 0
RESPONSE_VALUE = 1
RESPONSE_NULL_VALUE = 2
RESPONSE_WITH_EXCEPTION_WITH_ATTACHMENTS = 3
RESPONSE_VALUE_WITH_ATTACHMENTS = 4
RESPONSE_NULL_VALUE_WITH_ATTACHMENTS = 5

#: header keys that name body fields, not attachments
BODY_KEYS = ("dubbo", "service", "version", "method")
_BODY_KEY_SET = frozenset(BODY_KEYS)

_PRIMITIVES = frozenset(b"ZBCDFIJS")


def count_descriptor_args(desc: str) -> int:
    """Number of parameters in a JVM parameter descriptor.

    ``Ljava/lang/String;[ILcom/x/User;J`` -> 4. Arrays are ``[`` prefixes of one type.
    Anything else (``V``, an unterminated ``L...``, stray characters) is a ProtocolError.
    """
    n = 0
    i = 0
    end = len(desc)
    while i < end:
        c = desc[i]
        while c == "[":
            i += 1
            if i == end:
                raise ProtocolError("parameter descriptor ends after '['", protocol=NAME)
            c = desc[i]
        if c == "L":
            j = desc.find(";", i + 1)
            if j < 0 or j == i + 1:
                raise ProtocolError(f"bad class in parameter descriptor {desc[:80]!r}", protocol=NAME)
            i = j + 1
        elif ord(c) < 128 and ord(c) in _PRIMITIVES:
            i += 1
        else:
            raise ProtocolError(f"bad parameter descriptor {desc[:80]!r}", protocol=NAME)
        n += 1
    return n


def _hessian() -> Any:
    # imported on first body parse: framing never needs it
    from xproto import hessian2
    return hessian2


class _RequestBody:
    """A parsed hessian2 request body (slow path only)."""

    __slots__ = (
        "args_end",
        "args_start",
        "attachments",
        "desc",
        "dubbo",
        "method",
        "service",
        "version",
    )

    def __init__(self, raw: bytes, limits: Limits) -> None:
        h = _hessian()
        r = h.Reader(raw, HEADER_LEN, dialect="hessian2", limits=limits)
        self.dubbo = r.read_string() or ""
        self.service = r.read_string() or ""
        self.version = r.read_string() or ""
        self.method = r.read_string() or ""
        self.desc = r.read_string() or ""
        self.args_start = r.pos
        r.skip(count_descriptor_args(self.desc))  # one call steps over all the arguments
        self.args_end = r.pos
        att: Any = None
        if r.pos < len(raw):
            att = r.read()
            if att is not None and not isinstance(att, dict):
                raise ProtocolError("request attachments are not a map", protocol=NAME,
                                    offset=self.args_end)
        self.attachments: dict[Any, Any] | None = att


def _string_items(m: dict[Any, Any] | None) -> dict[str, str]:
    if not m:
        return {}
    return {k: v for k, v in m.items() if isinstance(k, str) and isinstance(v, str)}


_RESPONSE = Kind.RESPONSE
#: flag byte -> kind and heartbeat, so the hot path does two tuple subscripts, not bit tests
_KIND_BY_FLAG: tuple[Kind, ...] = tuple(
    (Kind.REQUEST if f & FLAG_TWOWAY else Kind.ONEWAY) if f & FLAG_REQUEST else Kind.RESPONSE
    for f in range(256))
_EVENT_BY_FLAG: tuple[bool, ...] = tuple(bool(f & FLAG_EVENT) for f in range(256))


class DubboDecoder(Decoder):
    def __init__(self, codec: DubboCodec, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(codec, role, limits)
        self._max_body = limits.dubbo_max_body

    def decode(self, buf: Buffer, pos: int = 0) -> Frame | int:
        # Hot path: one unpack, three compares, one copy, the frame built inline (the same
        # slots as xproto.framing.fixed.new_frame; tests check every slot is set). Measured
        # costs and what is left: bench/bench_codecs.py.
        have = len(buf) - pos
        if have < 16:
            return 16 - have
        magic, flag, status, rid, blen = _unpack_header(buf, pos)
        if magic != 0xDABB:
            raise ProtocolError(f"bad magic 0x{magic:04x}", protocol=NAME, offset=pos)
        if blen > self._max_body:
            raise too_large(NAME, "dubbo_max_body", blen, self._max_body, pos + 12)
        total: int = 16 + blen
        if have < total:
            return total - have
        if type(buf) is bytes:
            raw = buf[pos:pos + total]           # one copy; none when the frame is the whole read
        elif total < MEMORYVIEW_COPY_MIN:
            raw = bytes(buf[pos:pos + total])    # bytearray: two small copies beat two views
        else:
            raw = copy_out(buf, pos, total)
        f = BareFrame()
        f.raw = raw
        f.codec = self.codec
        f.protocol = NAME
        f.kind = kind = _KIND_BY_FLAG[flag]
        f.status = status if kind is _RESPONSE else None
        f.heartbeat = _EVENT_BY_FLAG[flag]
        f.request_id = f.orig_request_id = rid
        f.body = b""
        f.meta = self.limits
        f._headers = f._orig_headers = None
        return f


#: status byte -> status_to_http, for the proxy's C loop
_STATUS_TABLE = tuple(STATUS_TO_HTTP.get(s, 500) for s in range(256))


def _request_scanner(max_body: int) -> Any:
    def scan(buf: Any, pos: int, n: int) -> tuple[int, int, bool] | None:
        if n - pos < 16:
            return None
        magic, flag, _, rid, blen = _unpack_header(buf, pos)
        # a request, not an event (heartbeat); everything else is the decoder's
        if magic != 0xDABB or flag & 0xA0 != 0x80 or blen > max_body:
            return None
        end = pos + 16 + blen
        if end > n:
            return None
        return end, rid, flag & 0x40 != 0
    return scan


def _response_scanner(max_body: int) -> Any:
    to_http = STATUS_TO_HTTP.get

    def scan(buf: Any, pos: int, n: int) -> tuple[int, int, int] | None:
        if n - pos < 16:
            return None
        magic, flag, status, rid, blen = _unpack_header(buf, pos)
        # a response, not an event (heartbeat answer)
        if magic != 0xDABB or flag & 0xA0 or blen > max_body:
            return None
        end = pos + 16 + blen
        if end > n:
            return None
        return end, rid, to_http(status, 500)
    return scan


class DubboCodec(Codec):
    """Dubbo 2 over TCP (Apache Dubbo ``dubbo://``)."""

    name: ClassVar[str] = NAME
    pool_mode: ClassVar[PoolMode] = PoolMode.MULTIPLEX
    #: int64 on the wire; the upstream generator stays in the non-negative half
    request_id_bits: ClassVar[int] = 63
    match_bytes: ClassVar[int] = 2
    match_rule: ClassVar[str] = "magic 0xdabb at bytes 0-1"
    has_heartbeat: ClassVar[bool] = True

    # --- detection -----------------------------------------------------------------
    def match(self, data: Buffer) -> int:
        n = len(data)
        if n == 0:
            return 2
        if data[0] != 0xDA:
            return NO_MATCH
        if n == 1:
            return 1
        return MATCH if data[1] == 0xBB else NO_MATCH

    # --- decoding ------------------------------------------------------------------
    def new_decoder(self, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> DubboDecoder:
        return DubboDecoder(self, role, limits)

    def scanner(self, role: Role, limits: Limits = DEFAULT_LIMITS) -> Scanner | None:
        if role is Role.REQUESTS:
            scan = _request_scanner(limits.dubbo_max_body)
        elif role is Role.RESPONSES:
            scan = _response_scanner(limits.dubbo_max_body)
        else:
            return None
        return Scanner(scan, 4, _ID.pack_into, 0xFFFF_FFFF_FFFF_FFFF, 1, (limits.dubbo_max_body, 0),
                       _STATUS_TABLE)

    @staticmethod
    def flag(frame: Frame) -> int:
        return frame.raw[2]

    @staticmethod
    def serialization(frame: Frame) -> int:
        return frame.raw[2] & SERIALIZATION_MASK

    @staticmethod
    def body(frame: Frame) -> memoryview:
        """The body bytes (after the 16-byte header), without copying."""
        return memoryview(frame.raw)[HEADER_LEN:]

    def _limits(self, frame: Frame) -> Limits:
        m = frame.meta
        return m if isinstance(m, Limits) else DEFAULT_LIMITS

    def parse_headers(self, frame: Frame) -> dict[str, str]:
        """Request: ``service``, ``method``, ``version``, ``dubbo`` and every string attachment.

        Response (status 20, flag 3/4/5): its string attachments. Events and bodies in
        other serializations: ``{}``. A malformed request body raises ProtocolError (reply
        hint ``bad_request``); a malformed response body yields ``{}`` (it is passed on as is).
        """
        raw = frame.raw
        if frame.heartbeat or len(raw) <= HEADER_LEN or raw[2] & SERIALIZATION_MASK != HESSIAN2:
            return {}
        if frame.kind is Kind.RESPONSE:
            try:
                return _string_items(self._response_attachments(frame))
            except ProtocolError:
                return {}
        try:
            b = _RequestBody(raw, self._limits(frame))
        except ProtocolError as e:
            raise ProtocolError(f"bad request body: {e.message}", protocol=NAME, offset=e.offset,
                                reply_hint=Reason.BAD_REQUEST.value) from e
        h = _string_items(b.attachments)
        h["dubbo"] = b.dubbo
        h["service"] = b.service
        h["version"] = b.version
        h["method"] = b.method
        return h

    def route_headers(self, frame: Frame, keys: frozenset[str]) -> dict[str, str]:
        """Routes on ``dubbo``/``service``/``version``/``method`` only: the body's four
        leading hessian strings are read, not the argument types, arguments or attachments
        (the frame is forwarded as its bytes: what routing did not read is the upstream's
        to judge). Anything else: the full map."""
        raw = frame.raw
        if (frame._headers is not None or not keys <= _BODY_KEY_SET or frame.kind is Kind.RESPONSE
                or frame.heartbeat or len(raw) <= HEADER_LEN or raw[2] & SERIALIZATION_MASK != HESSIAN2):
            return frame.headers
        try:
            r = _hessian().Reader(raw, HEADER_LEN, dialect="hessian2", limits=self._limits(frame))
            return {"dubbo": r.read_string() or "", "service": r.read_string() or "",
                    "version": r.read_string() or "", "method": r.read_string() or ""}
        except ProtocolError as e:
            raise ProtocolError(f"bad request body: {e.message}", protocol=NAME, offset=e.offset,
                                reply_hint=Reason.BAD_REQUEST.value) from e

    def _response_attachments(self, frame: Frame) -> dict[Any, Any] | None:
        if frame.status != Status.OK:
            return None
        r = _hessian().Reader(frame.raw, HEADER_LEN, dialect="hessian2", limits=self._limits(frame))
        flag = r.read_int()
        if flag not in (RESPONSE_WITH_EXCEPTION_WITH_ATTACHMENTS, RESPONSE_VALUE_WITH_ATTACHMENTS,
                        RESPONSE_NULL_VALUE_WITH_ATTACHMENTS):
            return None
        if flag != RESPONSE_NULL_VALUE_WITH_ATTACHMENTS:
            r.skip()
        att = r.read()
        return att if isinstance(att, dict) else None

    # --- encoding ------------------------------------------------------------------
    def patch_request_id(self, raw: bytes, frame: Frame) -> bytes:
        # three slices joined: ~25 ns cheaper than bytearray + pack_into + bytes
        return raw[:4] + _ID.pack(frame.request_id & 0xFFFF_FFFF_FFFF_FFFF) + raw[12:]

    def encode_changed(self, frame: Frame) -> bytes:
        """Re-encode a request whose headers were changed.

        Body = the five leading strings (``dubbo``, ``service``, ``version``, ``method`` from
        the headers, the descriptor unchanged) + the argument bytes copied verbatim + the
        new attachments map. Attachments: every header except the four body keys; removed
        headers are removed; non-string attachments are kept as they were; a ``path`` /
        ``version`` attachment follows a changed ``service`` / ``version`` (``path`` unless
        it was set explicitly).
        Responses and non-hessian2 frames carry no editable headers: ProtocolError.
        """
        raw = frame.raw
        if (frame.kind is Kind.RESPONSE or frame.heartbeat
                or raw[2] & SERIALIZATION_MASK != HESSIAN2 or len(raw) <= HEADER_LEN):
            raise ProtocolError("only hessian2 request headers can be changed", protocol=NAME)
        h = frame.headers
        b = _RequestBody(raw, self._limits(frame))
        hs = _hessian()
        service = h.get("service", b.service)
        version = h.get("version", b.version)
        att: dict[Any, Any] = {}
        orig = b.attachments or {}
        for k, v in orig.items():
            if not isinstance(k, str) or k in ("dubbo", "service", "method"):
                att[k] = v                      # not editable through string headers
            elif k == "version":
                # the ``version`` header names the body field; the attachment follows a change
                att[k] = version if version != b.version else v
            elif k == "path" and h.get(k) == v and service != b.service:
                att[k] = service                # follows a changed ``service`` unless set itself
            elif k in h:
                att[k] = h[k]
            elif not isinstance(v, str):
                att[k] = v                      # not a string: never was a header, kept
            # else: removed by the caller
        for k, v in h.items():
            if k not in BODY_KEYS and k not in att:
                att[k] = v
        try:
            w = hs.Writer()
            for s in (h.get("dubbo", b.dubbo), service, version, h.get("method", b.method), b.desc):
                w.write(s)
            lead: bytes = w.getvalue()
            tail = b""
            if att or b.attachments is not None:
                typ = getattr(b.attachments, "type", None)
                aw = hs.Writer()
                aw.write(hs.TypedMap(att, type=typ) if typ else att)   # keep a typed map typed
                tail = aw.getvalue()
        except (ValueError, TypeError, OverflowError) as e:
            # a decoded value the writer cannot write back: refuse, do not crash the proxy
            raise ProtocolError(f"cannot re-encode the request body: {e}", protocol=NAME) from e
        body = lead + raw[b.args_start:b.args_end] + tail
        head = bytearray(raw[:HEADER_LEN])
        _ID.pack_into(head, 4, frame.request_id & 0xFFFF_FFFF_FFFF_FFFF)
        _BODY_LEN.pack_into(head, 12, len(body))
        return bytes(head) + body

    # --- behaviour -----------------------------------------------------------------
    def _make(self, flag: int, status: int, request_id: int, body: bytes, kind: Kind,
              heartbeat: bool) -> Frame:
        rid = request_id & 0xFFFF_FFFF_FFFF_FFFF
        if rid >= 1 << 63:
            rid -= 1 << 64                      # int64 on the wire
        raw = HEADER.pack(MAGIC, flag, status, rid, len(body)) + body
        return new_frame(self, kind, rid, raw, heartbeat, status if kind is Kind.RESPONSE else None)

    def heartbeat_request(self, request_id: int) -> Frame:
        """Event request (flag 0xe2: request, two-way, event, hessian2), body hessian null."""
        return self._make(FLAG_REQUEST | FLAG_TWOWAY | FLAG_EVENT | HESSIAN2, 0, request_id,
                          HESSIAN_NULL, Kind.REQUEST, True)

    def heartbeat_reply(self, request: Frame) -> Frame:
        """Event response (flag 0x22), status 20, the request's id, body hessian null."""
        return self._make(FLAG_EVENT | HESSIAN2, Status.OK, request.request_id, HESSIAN_NULL,
                          Kind.RESPONSE, True)

    def error_reply(self, request: Frame, reason: Reason, message: str = "") -> Frame:
        """A response with the request's id, the mapped status and a hessian string body.

        Dubbo clients read a status != 20 response body as the error message string
        (``ExchangeCodec``: ``res.setErrorMessage(in.readUTF())``) and raise an
        ``RpcException`` at once.
        """
        reason = Reason(reason)
        status = REASON_TO_STATUS.get(reason, Status.SERVER_ERROR)
        text = message or f"xproto: {reason.value.replace('_', ' ')}"
        body = _hessian().dumps(text)
        return self._make(HESSIAN2, status, request.request_id, body, Kind.RESPONSE, False)

    def status_to_http(self, frame: Frame) -> int:
        s = frame.status
        if s is None:
            return 200
        return STATUS_TO_HTTP.get(s, 500)
