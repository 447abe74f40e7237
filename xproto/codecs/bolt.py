"""SOFA Bolt v1 and v2 (``bolt``).

v1 request (22-byte header)::

    proto=1 | type | cmdcode u16 | ver2 | id u32 | codec | timeout i32 | classLen u16 |
    headerLen u16 | contentLen u32 | class | header block | content

v1 response (20 bytes): ``status u16`` in place of the timeout. v2 (request 24 / response
22 bytes) inserts ``ver1`` after proto and a ``switch`` byte after codec; when ``ver1 == 2``
and switch bit 0 (CRC) is on, a CRC32 of the whole frame before it follows the content
(as sofa-bolt's ``RpcCommandEncoderV2`` writes and ``RpcCommandDecoderV2`` checks; MOSN
ignores it). Both versions may share a connection.

Type: 0 response, 1 request, 2 oneway. Cmdcode: 0 heartbeat, 1 request, 2 response,
100 goaway (sofa-bolt ``GoAwayCommand``: a request nobody answers; decoded as ONEWAY with
the header ``:goaway`` = ``"1"``).

The header block (``u32 len key u32 len value`` ..., ``0xFFFFFFFF`` = null) gives the
headers; content stays opaque, except that the method (and service) are read from a
hessian ``SofaRequest`` content when the header block lacks them (sofa-rpc-node).
"""
from __future__ import annotations

import struct
import zlib
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from xproto.codec import MATCH, NO_MATCH, Codec, Decoder, PoolMode, Reason, Role, Scanner
from xproto.errors import LimitExceeded, ProtocolError
from xproto.frame import BareFrame, Frame, Kind
from xproto.framing.fixed import MEMORYVIEW_COPY_MIN, copy_out, too_large
from xproto.framing.kv_block import Pair, decode_kv_block, encode_kv_block
from xproto.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from xproto.codec import Buffer

NAME = "bolt"

PROTO_V1 = 1
PROTO_V2 = 2

# proto type cmdcode ver2 id codec timeout|status classLen headerLen contentLen
V1_REQUEST = struct.Struct(">BBHBIBiHHI")     # 22
V1_RESPONSE = struct.Struct(">BBHBIBHHHI")    # 20
# proto ver1 type cmdcode ver2 id codec switch timeout|status classLen headerLen contentLen
V2_REQUEST = struct.Struct(">BBBHBIBBiHHI")   # 24
V2_RESPONSE = struct.Struct(">BBBHBIBBHHHI")  # 22
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")

TYPE_RESPONSE = 0
TYPE_REQUEST = 1
TYPE_ONEWAY = 2

CMD_HEARTBEAT = 0
CMD_REQUEST = 1
CMD_RESPONSE = 2
CMD_GOAWAY = 100
_CMDCODES = frozenset((CMD_HEARTBEAT, CMD_REQUEST, CMD_RESPONSE, CMD_GOAWAY))

CODEC_HESSIAN2 = 1
CODEC_PROTOBUF = 11
SWITCH_CRC = 0x01

#: the class name sofa-bolt gives heartbeats and RPC frames
SOFA_REQUEST_CLASS = "com.alipay.sofa.rpc.core.request.SofaRequest"

HDR_SERVICE = "sofa_head_target_service"
HDR_METHOD = "sofa_head_method_name"
HDR_GOAWAY = ":goaway"
HDR_ERROR = "xproto_error"


class Status(IntEnum):
    SUCCESS = 0
    ERROR = 1
    SERVER_EXCEPTION = 2
    UNKNOWN = 3
    SERVER_THREADPOOL_BUSY = 4
    ERROR_COMM = 5
    NO_PROCESSOR = 6
    TIMEOUT = 7
    CLIENT_SEND_ERROR = 8
    CODEC_EXCEPTION = 9
    CONNECTION_CLOSED = 16
    SERVER_SERIAL_EXCEPTION = 17
    SERVER_DESERIAL_EXCEPTION = 18


#: Bolt response status -> HTTP-like code; anything else -> 500
STATUS_TO_HTTP: dict[int, int] = {
    Status.SUCCESS: 200,
    Status.SERVER_THREADPOOL_BUSY: 503,
    Status.TIMEOUT: 504,
    Status.CONNECTION_CLOSED: 502,
}

#: why the proxy answers itself -> Bolt status of the local reply (as MOSN's Mapping)
REASON_TO_STATUS: dict[Reason, int] = {
    Reason.NO_ROUTE: Status.NO_PROCESSOR,
    Reason.OVERFLOW: Status.SERVER_THREADPOOL_BUSY,
    Reason.TIMEOUT: Status.TIMEOUT,
    Reason.NO_HEALTHY_UPSTREAM: Status.CONNECTION_CLOSED,
    Reason.UPSTREAM_RESET: Status.CONNECTION_CLOSED,
    Reason.BAD_REQUEST: Status.CODEC_EXCEPTION,
}


class Layout(NamedTuple):
    """Where things are in one frame (slow path: re-read from ``raw`` on demand)."""
    version: int          # 1 or 2
    ver1: int             # v2 ``ver1`` byte (0 for v1)
    type: int
    cmdcode: int
    ver2: int
    codec: int
    switch: int           # v2 switch byte (0 for v1)
    timeout_or_status: int
    header_len: int       # fixed header size
    class_len: int
    block_len: int
    content_len: int
    crc: bool

    @property
    def id_offset(self) -> int:
        return 5 if self.version == PROTO_V1 else 6

    @property
    def block_start(self) -> int:
        return self.header_len + self.class_len

    @property
    def content_start(self) -> int:
        return self.header_len + self.class_len + self.block_len

    @property
    def content_end(self) -> int:
        return self.content_start + self.content_len


def layout(raw: Buffer) -> Layout:
    """The layout of a whole frame (already validated by the decoder)."""
    if raw[0] == PROTO_V1:
        if raw[1] == TYPE_RESPONSE:
            _, t, cmd, ver2, _, codec, ts, cl, hl, ctl = V1_RESPONSE.unpack_from(raw)
            return Layout(1, 0, t, cmd, ver2, codec, 0, ts, 20, cl, hl, ctl, False)
        _, t, cmd, ver2, _, codec, ts, cl, hl, ctl = V1_REQUEST.unpack_from(raw)
        return Layout(1, 0, t, cmd, ver2, codec, 0, ts, 22, cl, hl, ctl, False)
    if raw[2] == TYPE_RESPONSE:
        _, v1, t, cmd, ver2, _, codec, sw, ts, cl, hl, ctl = V2_RESPONSE.unpack_from(raw)
        n = 22
    else:
        _, v1, t, cmd, ver2, _, codec, sw, ts, cl, hl, ctl = V2_REQUEST.unpack_from(raw)
        n = 24
    return Layout(2, v1, t, cmd, ver2, codec, sw, ts, n, cl, hl, ctl, v1 == 2 and bool(sw & SWITCH_CRC))


def _hessian() -> Any:
    from xproto import hessian2
    return hessian2


def _crc(data: Buffer) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


_REQUEST = Kind.REQUEST       # module constants: an Enum attribute lookup costs ~60 ns
_ONEWAY = Kind.ONEWAY
_RESPONSE = Kind.RESPONSE
_V1_REQUEST = V1_REQUEST.unpack_from
_V1_RESPONSE = V1_RESPONSE.unpack_from


class BoltDecoder(Decoder):
    def __init__(self, codec: BoltCodec, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(codec, role, limits)
        self._max_frame = limits.bolt_max_frame
        self._max_block = limits.bolt_max_header_block

    def decode(self, buf: Buffer, pos: int = 0) -> Frame | int:
        # Hot path (v1, the version every client sends by default): two byte reads, one
        # unpack, the frame built inline (the same slots as xproto.framing.fixed.new_frame;
        # tests check every slot is set). v2 and CRC frames take the general path.
        have = len(buf) - pos
        if have < 20:
            return 20 - have
        if buf[pos] != PROTO_V1:
            return self._decode_v2(buf, pos, have)
        t = buf[pos + 1]
        if t == TYPE_RESPONSE:
            _, _, cmd, _, rid, _, status, cl, hl, ctl = _V1_RESPONSE(buf, pos)
            total: int = 20 + cl + hl + ctl
        elif t == TYPE_REQUEST or t == TYPE_ONEWAY:
            if have < 22:
                return 22 - have
            _, _, cmd, _, rid, _, _, cl, hl, ctl = _V1_REQUEST(buf, pos)
            status = None
            total = 22 + cl + hl + ctl
        else:
            raise ProtocolError(f"unknown command type {t}", protocol=NAME, offset=pos + 1)
        if cmd not in _CMDCODES:
            raise ProtocolError(f"unknown command code {cmd}", protocol=NAME, offset=pos + 2)
        if hl > self._max_block:
            raise LimitExceeded("bolt_max_header_block", hl, self._max_block, protocol=NAME, offset=pos)
        if total > self._max_frame:
            raise too_large(NAME, "bolt_max_frame", total, self._max_frame, pos)
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
        # goaway (cmdcode 100): a request nobody answers
        f.kind = _RESPONSE if t == 0 else _ONEWAY if t == 2 or cmd == 100 else _REQUEST
        f.status = status
        f.heartbeat = cmd == 0
        f.request_id = f.orig_request_id = rid
        f.body = b""
        f.meta = self.limits
        f._headers = f._orig_headers = None
        return f

    def _decode_v2(self, buf: Buffer, pos: int, have: int) -> Frame | int:
        if buf[pos] != PROTO_V2:
            raise ProtocolError(f"unknown protocol code {buf[pos]}", protocol=NAME, offset=pos)
        if have < 22:
            return 22 - have
        t = buf[pos + 2]
        if t == TYPE_RESPONSE:
            _, ver1, t, cmd, _, rid, _, sw, status, cl, hl, ctl = V2_RESPONSE.unpack_from(buf, pos)
            n = 22
        elif t == TYPE_REQUEST or t == TYPE_ONEWAY:
            if have < 24:
                return 24 - have
            _, ver1, t, cmd, _, rid, _, sw, _, cl, hl, ctl = V2_REQUEST.unpack_from(buf, pos)
            status = None
            n = 24
        else:
            raise ProtocolError(f"unknown command type {t}", protocol=NAME, offset=pos + 2)
        crc = ver1 == 2 and sw & SWITCH_CRC
        if crc:
            n += 4
        if cmd not in _CMDCODES:
            raise ProtocolError(f"unknown command code {cmd}", protocol=NAME, offset=pos + 3)
        if hl > self._max_block:
            raise LimitExceeded("bolt_max_header_block", hl, self._max_block, protocol=NAME, offset=pos)
        total: int = n + cl + hl + ctl
        if total > self._max_frame:
            raise too_large(NAME, "bolt_max_frame", total, self._max_frame, pos)
        if have < total:
            return total - have
        if type(buf) is bytes:
            raw = buf[pos:pos + total]           # one copy; none when the frame is the whole read
        elif total < MEMORYVIEW_COPY_MIN:
            raw = bytes(buf[pos:pos + total])    # bytearray: two small copies beat two views
        else:
            raw = copy_out(buf, pos, total)
        if crc:
            want = _U32.unpack_from(raw, total - 4)[0]
            got = zlib.crc32(memoryview(raw)[:-4]) & 0xFFFFFFFF
            if want != got:
                raise ProtocolError(f"CRC32 mismatch: frame says {want:08x}, computed {got:08x}",
                                    protocol=NAME, offset=pos + total - 4)
        f = BareFrame()
        f.raw = raw
        f.codec = self.codec
        f.protocol = NAME
        f.kind = _RESPONSE if t == 0 else _ONEWAY if t == 2 or cmd == 100 else _REQUEST
        f.status = status
        f.heartbeat = cmd == 0
        f.request_id = f.orig_request_id = rid
        f.body = b""
        f.meta = self.limits
        f._headers = f._orig_headers = None
        return f


#: status -> status_to_http for statuses < 256 (the rest map to 500), for the proxy's C loop
_STATUS_TABLE = tuple(STATUS_TO_HTTP.get(s, 500) for s in range(256))


def _request_scanner(max_frame: int, max_block: int) -> Any:
    def scan(buf: Any, pos: int, n: int) -> tuple[int, int, bool] | None:
        # v1 RPC requests and oneways only: v2 (CRC), heartbeats and goaways are the decoder's
        if n - pos < 22 or buf[pos] != 1:
            return None
        _, t, cmd, _, rid, _, _, cl, hl, ctl = _V1_REQUEST(buf, pos)
        if cmd != CMD_REQUEST or hl > max_block:
            return None
        total = 22 + cl + hl + ctl
        end = pos + total
        if end > n or total > max_frame:
            return None
        if t == TYPE_REQUEST:
            return end, rid, True
        if t == TYPE_ONEWAY:
            return end, rid, False
        return None
    return scan


def _response_scanner(max_frame: int, max_block: int) -> Any:
    to_http = STATUS_TO_HTTP.get

    def scan(buf: Any, pos: int, n: int) -> tuple[int, int, int] | None:
        if n - pos < 20 or buf[pos] != 1 or buf[pos + 1] != TYPE_RESPONSE:
            return None
        _, _, cmd, _, rid, _, status, cl, hl, ctl = _V1_RESPONSE(buf, pos)
        if cmd != CMD_RESPONSE or hl > max_block:
            return None
        total = 20 + cl + hl + ctl
        end = pos + total
        if end > n or total > max_frame:
            return None
        return end, rid, to_http(status, 500)
    return scan


def _headers_from_pairs(pairs: list[Pair]) -> dict[str, str]:
    h: dict[str, str] = {}
    for k, v in pairs:
        if k is not None:
            h[k] = "" if v is None else v      # Java HashMap.put: the last duplicate wins
    return h


class BoltCodec(Codec):
    """SOFA Bolt v1/v2 (sofa-bolt, sofa-rpc, anthunder, sofa-rpc-node)."""

    name: ClassVar[str] = NAME
    pool_mode: ClassVar[PoolMode] = PoolMode.MULTIPLEX
    request_id_bits: ClassVar[int] = 32
    match_bytes: ClassVar[int] = 11
    match_rule: ClassVar[str] = (
        "v1: byte0=0x01, byte1 type in {0,1,2}, bytes2-3 cmdcode fitting the type "
        "(response {0,2}; request {0,1,100}; oneway {1,100}), byte4 ver2 in {0,1,2}, "
        "byte9 codec in 1..31 (10 bytes); v2: byte0=0x02, byte1 ver1 in {1,2}, then the "
        "same rules shifted by one (codec at byte10; 11 bytes)")
    has_heartbeat: ClassVar[bool] = True

    # --- detection -----------------------------------------------------------------
    def match(self, data: Buffer) -> int:
        n = len(data)
        if n == 0:
            return 1
        proto = data[0]
        if proto == PROTO_V1:
            o = 0
            need = 10
        elif proto == PROTO_V2:
            if n < 2:
                return 1
            if data[1] not in (1, 2):
                return NO_MATCH
            o = 1
            need = 11
        else:
            return NO_MATCH
        # every byte is judged as soon as it is there, so a mismatch is seen early
        if n <= 1 + o:
            return need - n
        t = data[1 + o]
        if t > 2:
            return NO_MATCH
        if n <= 2 + o:
            return need - n
        if data[2 + o] != 0:
            return NO_MATCH
        if n <= 3 + o:
            return need - n
        cmd = data[3 + o]
        if t == TYPE_RESPONSE:
            ok = cmd in (CMD_HEARTBEAT, CMD_RESPONSE)
        elif t == TYPE_REQUEST:
            ok = cmd in (CMD_HEARTBEAT, CMD_REQUEST, CMD_GOAWAY)
        else:
            ok = cmd in (CMD_REQUEST, CMD_GOAWAY)
        if not ok:
            return NO_MATCH
        if n <= 4 + o:
            return need - n
        if data[4 + o] > 2:
            return NO_MATCH
        if n <= 9 + o:
            return need - n
        codec = data[9 + o]
        return MATCH if 1 <= codec <= 31 else NO_MATCH

    # --- decoding ------------------------------------------------------------------
    def new_decoder(self, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> BoltDecoder:
        return BoltDecoder(self, role, limits)

    def scanner(self, role: Role, limits: Limits = DEFAULT_LIMITS) -> Scanner | None:
        if role is Role.REQUESTS:
            scan = _request_scanner(limits.bolt_max_frame, limits.bolt_max_header_block)
        elif role is Role.RESPONSES:
            scan = _response_scanner(limits.bolt_max_frame, limits.bolt_max_header_block)
        else:
            return None
        return Scanner(scan, 5, _U32.pack_into, 0xFFFF_FFFF, 2,
                       (limits.bolt_max_frame, limits.bolt_max_header_block), _STATUS_TABLE)

    @staticmethod
    def layout(frame: Frame) -> Layout:
        return layout(frame.raw)

    @staticmethod
    def is_goaway(frame: Frame) -> bool:
        """A goaway command: the peer will close; send nothing new on this connection."""
        lay = layout(frame.raw)
        return lay.cmdcode == CMD_GOAWAY

    @staticmethod
    def class_name(frame: Frame) -> str:
        lay = layout(frame.raw)
        return frame.raw[lay.header_len:lay.block_start].decode("utf-8", "replace")

    @staticmethod
    def content(frame: Frame) -> memoryview:
        """The content bytes (opaque), without copying."""
        lay = layout(frame.raw)
        return memoryview(frame.raw)[lay.content_start:lay.content_end]

    def _limits(self, frame: Frame) -> Limits:
        m = frame.meta
        return m if isinstance(m, Limits) else DEFAULT_LIMITS

    def _pairs(self, raw: bytes, lay: Layout) -> list[Pair]:
        return decode_kv_block(raw, lay.block_start, lay.content_start, protocol=NAME)

    def parse_headers(self, frame: Frame) -> dict[str, str]:
        """Every header key/value as sent (null value -> ``""``, null key dropped).

        Requests also get ``service`` and ``method``: the plain keys when present, else
        ``sofa_head_target_service`` / ``sofa_head_method_name``, else (hessian content,
        codec 1) ``targetServiceUniqueName`` / ``targetMethodName`` of the ``SofaRequest``
        object, read in either hessian dialect. Goaway frames carry ``:goaway: "1"``.
        """
        raw = frame.raw
        lay = layout(raw)
        h = _headers_from_pairs(self._pairs(raw, lay))
        if lay.cmdcode == CMD_GOAWAY:
            h[HDR_GOAWAY] = "1"
            return h
        if lay.type == TYPE_RESPONSE or lay.cmdcode != CMD_REQUEST:
            return h
        self._derive(raw, lay, h, self._limits(frame))
        return h

    def _derive(self, raw: bytes, lay: Layout, h: dict[str, str], limits: Limits) -> None:
        if "service" not in h and HDR_SERVICE in h:
            h["service"] = h[HDR_SERVICE]
        if "method" not in h and HDR_METHOD in h:
            h["method"] = h[HDR_METHOD]
        if ("method" in h and "service" in h) or lay.codec != CODEC_HESSIAN2 or not lay.content_len:
            return
        obj = self._sofa_request(raw, lay, limits)
        if obj is None:
            return
        if "method" not in h:
            m = obj.get("targetMethodName") or obj.get("methodName")
            if isinstance(m, str):
                h["method"] = m
        if "service" not in h:
            s = obj.get("targetServiceUniqueName")
            if isinstance(s, str):
                h["service"] = s

    @staticmethod
    def _sofa_request(raw: bytes, lay: Layout, limits: Limits) -> dict[str, Any] | None:
        """Fields of the first hessian value of the content, if it is an object or map."""
        try:
            hs = _hessian()
            r = hs.Reader(memoryview(raw)[:lay.content_end], lay.content_start, dialect="auto",
                          limits=limits)
            v = r.read()
        except ProtocolError:
            return None       # content is opaque: a body we cannot read is not our error
        fields = getattr(v, "fields", None)
        if isinstance(fields, dict):
            return fields
        if isinstance(v, dict):
            return v
        return None

    # --- encoding ------------------------------------------------------------------
    @staticmethod
    def _finish(b: bytearray, lay: Layout) -> bytes:
        if lay.crc:
            _U32.pack_into(b, len(b) - 4, zlib.crc32(memoryview(b)[:-4]) & 0xFFFFFFFF)
        return bytes(b)

    def patch_request_id(self, raw: bytes, frame: Frame) -> bytes:
        if raw[0] == PROTO_V1:                   # the common case: no CRC, id at bytes 5-8
            return raw[:5] + _U32.pack(frame.request_id & 0xFFFFFFFF) + raw[9:]
        lay = layout(raw)
        b = bytearray(raw)
        _U32.pack_into(b, lay.id_offset, frame.request_id & 0xFFFFFFFF)
        return self._finish(b, lay)

    def encode_changed(self, frame: Frame) -> bytes:
        """Rebuild the header block from ``frame.headers`` (class and content unchanged).

        Unchanged entries keep their exact wire form (nulls, duplicates, order); changed
        ones are rewritten in place; removed ones dropped; new ones appended. A changed
        derived ``service``/``method`` is written to the ``sofa_head_*`` key it came from,
        or as a plain key when it came from the content. ``:goaway`` is never written.
        """
        raw = frame.raw
        lay = layout(raw)
        pairs = self._pairs(raw, lay)
        block_h = _headers_from_pairs(pairs)
        orig = dict(block_h)
        if lay.type != TYPE_RESPONSE and lay.cmdcode == CMD_REQUEST:
            self._derive(raw, lay, orig, self._limits(frame))
        new = frame.headers
        out: list[Pair] = []
        written: set[str] = set()
        for k, v in pairs:
            if k is None:
                out.append((k, v))
            elif k not in new:
                continue
            elif new[k] == orig.get(k):
                out.append((k, v))
            elif k not in written:
                out.append((k, new[k]))
                written.add(k)
        for alias, key in ((HDR_SERVICE, "service"), (HDR_METHOD, "method")):
            if key in block_h or key not in new or new[key] == orig.get(key):
                continue
            if alias in block_h and alias in new and new[alias] == orig.get(alias):
                out = [(k, new[key]) if k == alias else (k, v) for k, v in out]
            else:
                out.append((key, new[key]))
            written.add(key)
        for k, v in new.items():
            if k not in block_h and k not in written and k != HDR_GOAWAY and orig.get(k) != v:
                out.append((k, v))
        block = encode_kv_block(out)
        if len(block) > 0xFFFF:
            raise ProtocolError(f"header block of {len(block)} bytes does not fit headerLen (u16)",
                                protocol=NAME)
        hdr = bytearray(raw[:lay.header_len])
        _U16.pack_into(hdr, lay.header_len - 6, len(block))
        _U32.pack_into(hdr, lay.id_offset, frame.request_id & 0xFFFFFFFF)
        b = (hdr + raw[lay.header_len:lay.block_start] + block
             + raw[lay.content_start:lay.content_end] + (b"\0\0\0\0" if lay.crc else b""))
        return self._finish(b, lay)

    # --- building frames -----------------------------------------------------------
    def build(self, *, type: int, cmdcode: int, request_id: int, codec: int = CODEC_HESSIAN2,
              ver2: int = 1, timeout: int = -1, status: int = 0, cls: bytes = b"",
              headers: list[Pair] | None = None, content: bytes = b"", version: int = PROTO_V1,
              ver1: int = 1, switch: int = 0) -> bytes:
        """Wire bytes of one frame (local replies, heartbeats, tests)."""
        block = encode_kv_block(headers or [])
        rid = request_id & 0xFFFFFFFF
        if version == PROTO_V1:
            if type == TYPE_RESPONSE:
                hdr = V1_RESPONSE.pack(1, type, cmdcode, ver2, rid, codec, status, len(cls),
                                       len(block), len(content))
            else:
                hdr = V1_REQUEST.pack(1, type, cmdcode, ver2, rid, codec, timeout, len(cls),
                                      len(block), len(content))
            return hdr + cls + block + content
        if type == TYPE_RESPONSE:
            hdr = V2_RESPONSE.pack(2, ver1, type, cmdcode, ver2, rid, codec, switch, status,
                                   len(cls), len(block), len(content))
        else:
            hdr = V2_REQUEST.pack(2, ver1, type, cmdcode, ver2, rid, codec, switch, timeout,
                                  len(cls), len(block), len(content))
        frame = hdr + cls + block + content
        if ver1 == 2 and switch & SWITCH_CRC:
            frame += _U32.pack(_crc(frame))
        return frame

    def _frame(self, raw: bytes) -> Frame:
        frame = self.new_decoder().decode(raw)
        assert isinstance(frame, Frame)
        return frame

    def _reply(self, request: Frame, cmdcode: int, status: int, headers: list[Pair] | None) -> Frame:
        lay = layout(request.raw)
        return self._frame(self.build(
            type=TYPE_RESPONSE, cmdcode=cmdcode, request_id=request.request_id, codec=lay.codec,
            ver2=lay.ver2, status=status, headers=headers, version=lay.version,
            ver1=lay.ver1 or 1, switch=lay.switch))

    # --- behaviour -----------------------------------------------------------------
    def heartbeat_request(self, request_id: int) -> Frame:
        """v1 heartbeat (cmdcode 0, hessian2, timeout -1), as sofa-bolt and MOSN send."""
        return self._frame(self.build(type=TYPE_REQUEST, cmdcode=CMD_HEARTBEAT, request_id=request_id))

    def heartbeat_reply(self, request: Frame) -> Frame:
        """Heartbeat ack in the request's version (and CRC mode), status 0, same id."""
        return self._reply(request, CMD_HEARTBEAT, Status.SUCCESS, None)

    def error_reply(self, request: Frame, reason: Reason, message: str = "") -> Frame:
        """RPC response with the mapped status, the request's id/version/codec, no class or
        content (as MOSN's hijack: the client raises the status' own exception, e.g.
        sofa-bolt's ``InvokeServerBusyException`` for 4) and the text in an ``xproto_error``
        header for people reading captures."""
        reason = Reason(reason)
        status = REASON_TO_STATUS.get(reason, Status.UNKNOWN)
        text = message or f"xproto: {reason.value.replace('_', ' ')}"
        return self._reply(request, CMD_RESPONSE, status, [(HDR_ERROR, text)])

    def status_to_http(self, frame: Frame) -> int:
        s = frame.status
        if s is None:
            return 200
        return STATUS_TO_HTTP.get(s, 500)
