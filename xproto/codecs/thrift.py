"""Apache Thrift: unframed, framed and THeader transports x binary (strict) and compact.

Detection follows Envoy's 8-byte rule (``thrift_proxy`` auto transport/protocol):

* ``u32 size`` with ``0 < size <= 0x3FFFFFFF`` and ``0x0FFF`` at offset 4 -> THeader;
* a sane size followed by binary (``0x8001``) or compact (``0x82``, version 1) magic -> framed;
* binary or compact magic at offset 0 -> unframed;
* anything else is not Thrift. Lax binary (no version word) is never auto-detected: an
  HTTP request would parse as a ~1 GB method name.

The transport is detected per frame (the first byte alone tells unframed from framed:
a framed size is below 0x40000000, unframed starts with 0x80/0x82), so one decoder reads
any mix.

Framed and THeader frames are delimited by their size; only the message header (name,
type, seqid) is parsed. Unframed messages have no length: the argument/result struct is
skipped with a bounded, iterative-enough skipper (depth ``thrift_max_depth``, every length
and element count checked against the bytes left and ``thrift_max_frame`` before looping).

Decisions (documented for users of ``status`` and local replies):

* ``status``: 0 for REPLY (also when the result struct carries a declared IDL exception),
  the TApplicationException ``type`` (field 2, i32) for EXCEPTION. A TApplicationException
  without field 2 has type UNKNOWN (0), as in every Thrift library; an EXCEPTION payload
  that cannot be read at all gets 6 (INTERNAL_ERROR). ``null`` on CALL/ONEWAY.
* seqid rewrite: the payload seqid is patched (binary: in place; compact: the varint is
  re-spliced and the frame size fixed). For THeader the header's own sequence id is patched
  by the same amount (Apache Thrift keeps the two equal and servers echo it; one that
  differs keeps its distance, so patching back always restores the original bytes).
* THeader payloads with transforms (zlib ...) are passed through opaquely: the request id
  is then the THeader sequence id, no ``method`` header is available, the kind follows the
  decoder's role (REQUEST unless Role.RESPONSES) and a response's status is null.
* Changed headers: ``method`` / ``service`` rewrite the message name
  (``service:method`` when a service is set); other keys are THeader info headers (only
  THeader can carry them: changing them on another transport raises ProtocolError instead
  of silently dropping them). Info headers named ``method``/``service`` are shadowed by the
  message name in ``headers`` and kept unchanged on re-encode.
* Pool mode: framed and THeader connections multiplex by seqid; unframed Thrift has no
  frame boundary a server could interleave, so it is pooled ping-pong
  (``pool_mode_for(frame)``).
"""
from __future__ import annotations

import struct
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from xproto.codec import MATCH, NO_MATCH, Codec, Decoder, PoolMode, Reason, Role, Scanner, frame_error
from xproto.errors import FrameTooLarge, LimitExceeded, ProtocolError
from xproto.frame import Frame, Kind
from xproto.framing.fixed import new_frame
from xproto.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    Buffer = bytes | bytearray | memoryview

NAME = "thrift"

_U16 = struct.Struct(">H")
_I16 = struct.Struct(">h")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_HDR8 = struct.Struct(">IH")          # size, magic-or-version-half
_THEADER = struct.Struct(">IHHiH")    # size, 0x0FFF, flags, seq id, header words

HEADER_MAGIC = 0x0FFF
BINARY_VERSION_1 = 0x80010000
COMPACT_PROTOCOL_ID = 0x82
COMPACT_VERSION = 1
#: Envoy: a frame size above this is not Thrift at all
MAX_SANE_SIZE = 0x3FFFFFFF


class Transport(IntEnum):
    UNFRAMED = 0
    FRAMED = 1
    HEADER = 2


class Proto(IntEnum):
    BINARY = 0
    COMPACT = 2       # THeader protocol ids: binary 0, compact 2


class MessageType(IntEnum):
    CALL = 1
    REPLY = 2
    EXCEPTION = 3
    ONEWAY = 4


class AppExc(IntEnum):
    """TApplicationException types."""
    UNKNOWN = 0
    UNKNOWN_METHOD = 1
    INVALID_MESSAGE_TYPE = 2
    WRONG_METHOD_NAME = 3
    BAD_SEQUENCE_ID = 4
    MISSING_RESULT = 5
    INTERNAL_ERROR = 6
    PROTOCOL_ERROR = 7
    INVALID_TRANSFORM = 8
    INVALID_PROTOCOL = 9
    UNSUPPORTED_CLIENT_TYPE = 10


class InfoType(IntEnum):
    KEY_VALUE = 1
    PERSISTENT_KEY_VALUE = 2   # fbthrift; kept as-is


_STATUS_HTTP = {
    AppExc.UNKNOWN_METHOD: 404,
    AppExc.INVALID_MESSAGE_TYPE: 400,
    AppExc.WRONG_METHOD_NAME: 400,
    AppExc.PROTOCOL_ERROR: 400,
    AppExc.INVALID_TRANSFORM: 400,
    AppExc.INVALID_PROTOCOL: 400,
    AppExc.UNSUPPORTED_CLIENT_TYPE: 400,
}
_STATUS_CODES = frozenset(int(e) for e in AppExc)
_REASON_HTTP = {
    Reason.NO_ROUTE: 404,
    Reason.NO_HEALTHY_UPSTREAM: 503,
    Reason.TIMEOUT: 504,
    Reason.OVERFLOW: 503,
    Reason.UPSTREAM_RESET: 502,
    Reason.BAD_REQUEST: 400,
}


class ThriftMeta:
    """Where things are in a thrift frame (offsets are within ``frame.raw``)."""

    __slots__ = (
        "info",
        "msg_type",
        "name",
        "name_end",
        "name_off",
        "opaque",
        "payload_off",
        "proto",
        "reason",
        "seqid_end",
        "seqid_off",
        "theader_flags",
        "theader_seq",
        "transport",
    )

    def __init__(self, transport: Transport, proto: Proto | None) -> None:
        self.transport = transport
        self.proto = proto
        self.msg_type = 0
        self.name = ""
        self.name_off = 0        # start of the name's length prefix
        self.name_end = 0
        self.seqid_off = 0
        self.seqid_end = 0
        self.payload_off = 0     # start of the thrift message
        self.theader_flags = 0
        self.theader_seq = 0
        #: THeader info headers: (info type, key, value) in wire order
        self.info: list[tuple[int, str, str]] = []
        #: THeader payload behind transforms we do not undo
        self.opaque = False
        #: set on locally built error replies: why (for status_to_http)
        self.reason: Reason | None = None


class _NeedMore(Exception):
    """Internal: the buffer ends before the structure does (n = lower bound of bytes needed)."""

    def __init__(self, n: int) -> None:
        self.n = n


def _err(msg: str, offset: int | None = None) -> ProtocolError:
    return frame_error(NAME, msg, offset)


def _s(b: Buffer) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


# --- varints ---------------------------------------------------------------------------

def _read_varint(buf: Buffer, pos: int, end: int, max_bytes: int) -> tuple[int, int]:
    """Unsigned LEB128 varint at ``pos``; raises _NeedMore if the buffer ends inside it."""
    result = 0
    shift = 0
    for i in range(max_bytes):
        if pos + i >= end:
            raise _NeedMore(1)
        b = buf[pos + i]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos + i + 1
        shift += 7
    raise _err(f"varint longer than {max_bytes} bytes", pos)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _to_i32(u: int) -> int:
    u &= 0xFFFFFFFF
    return u - 0x100000000 if u & 0x80000000 else u


# --- struct skippers ----------------------------------------------------------------------
# Binary TType ids and their fixed sizes (None = variable).
_B_FIXED = {2: 1, 3: 1, 4: 8, 6: 2, 8: 4, 10: 8, 16: 16}
_B_VALID = frozenset((2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15, 16))
# Compact type ids: 1/2 bool (no payload as field, 1 byte in containers), 3 byte, 4 i16,
# 5 i32, 6 i64 (varints), 7 double, 8 binary, 9 list, 10 set, 11 map, 12 struct, 13 uuid.
_C_VALID = frozenset(range(1, 14))


class _Skipper:
    """Bounded skipper over ``buf[start:end]`` (end = bytes buffered)."""

    __slots__ = ("buf", "end", "limit_end", "max_depth", "max_frame")

    def __init__(self, buf: Buffer, end: int, limit_end: int, max_depth: int, max_frame: int = 0) -> None:
        self.max_frame = max_frame
        self.buf = buf
        self.end = end
        self.limit_end = limit_end   # the furthest byte a message may reach (frame limit)
        self.max_depth = max_depth

    def _need(self, pos: int, n: int) -> None:
        """Require ``n`` bytes at ``pos``: limit first (chunking-independent), then presence."""
        if n < 0:
            raise _err(f"negative length {n}", pos)
        stop = pos + n
        if stop > self.limit_end:
            raise self._too_large(stop, pos)
        if stop > self.end:
            raise _NeedMore(stop - self.end)

    def _too_large(self, stop: int, pos: int) -> ProtocolError:
        cap = self.max_frame
        return FrameTooLarge("thrift message size", stop - (self.limit_end - cap), cap, protocol=NAME, offset=pos)

    def _depth(self, depth: int, pos: int) -> None:
        if depth > self.max_depth:
            raise LimitExceeded("thrift nesting depth", depth, self.max_depth, protocol=NAME, offset=pos)

    # binary
    def b_value(self, t: int, pos: int, depth: int) -> int:
        fixed = _B_FIXED.get(t)
        if fixed is not None:
            self._need(pos, fixed)
            return pos + fixed
        buf = self.buf
        if t == 11:
            self._need(pos, 4)
            n: int = _I32.unpack_from(buf, pos)[0]
            self._need(pos + 4, n)
            return pos + 4 + n
        if t == 12:
            return self.b_struct(pos, depth + 1)
        if t == 13:
            self._depth(depth + 1, pos)
            self._need(pos, 6)
            kt, vt = buf[pos], buf[pos + 1]
            n = _I32.unpack_from(buf, pos + 2)[0]
            pos += 6
            if n < 0:
                raise _err(f"negative map size {n}", pos)
            if n == 0:
                return pos
            if kt not in _B_VALID or vt not in _B_VALID:
                raise _err(f"invalid map types {kt}/{vt}", pos)
            kf, vf = _B_FIXED.get(kt), _B_FIXED.get(vt)
            if kf is not None and vf is not None:
                self._need(pos, n * (kf + vf))
                return pos + n * (kf + vf)
            self._need(pos, n * 2)   # every element takes at least one byte
            for _ in range(n):
                pos = self.b_value(kt, pos, depth + 1)
                pos = self.b_value(vt, pos, depth + 1)
            return pos
        if t == 14 or t == 15:
            self._depth(depth + 1, pos)
            self._need(pos, 5)
            et = buf[pos]
            n = _I32.unpack_from(buf, pos + 1)[0]
            pos += 5
            if n < 0:
                raise _err(f"negative list size {n}", pos)
            if n == 0:
                return pos
            if et not in _B_VALID:
                raise _err(f"invalid element type {et}", pos)
            ef = _B_FIXED.get(et)
            if ef is not None:
                self._need(pos, n * ef)
                return pos + n * ef
            self._need(pos, n)
            for _ in range(n):
                pos = self.b_value(et, pos, depth + 1)
            return pos
        raise _err(f"invalid binary type {t}", pos)

    def b_struct(self, pos: int, depth: int) -> int:
        self._depth(depth, pos)
        buf = self.buf
        while True:
            self._need(pos, 1)
            t = buf[pos]
            if t == 0:
                return pos + 1
            if t not in _B_VALID:
                raise _err(f"invalid binary field type {t}", pos)
            self._need(pos, 3)
            pos = self.b_value(t, pos + 3, depth)

    # compact
    def _c_varint(self, pos: int, max_bytes: int) -> tuple[int, int]:
        # running out of bytes at the limit is turned into FrameTooLarge by the caller
        return _read_varint(self.buf, pos, self.end, max_bytes)

    def c_value(self, t: int, pos: int, depth: int, in_container: bool = False) -> int:
        buf = self.buf
        if t == 1 or t == 2:
            if not in_container:
                return pos
            self._need(pos, 1)
            return pos + 1
        if t == 3:
            self._need(pos, 1)
            return pos + 1
        if t in (4, 5):
            return self._c_varint(pos, 5 if t == 5 else 3)[1]
        if t == 6:
            return self._c_varint(pos, 10)[1]
        if t == 7:
            self._need(pos, 8)
            return pos + 8
        if t == 13:
            self._need(pos, 16)
            return pos + 16
        if t == 8:
            n, pos = self._c_varint(pos, 5)
            self._need(pos, n)
            return pos + n
        if t == 12:
            return self.c_struct(pos, depth + 1)
        if t == 9 or t == 10:
            self._depth(depth + 1, pos)
            self._need(pos, 1)
            h = buf[pos]
            pos += 1
            et = h & 0x0F
            n = h >> 4
            if n == 15:
                n, pos = self._c_varint(pos, 5)
            if n == 0:
                return pos
            if et not in _C_VALID:
                raise _err(f"invalid element type {et}", pos)
            if et in (1, 2, 3):
                self._need(pos, n)
                return pos + n
            if et in (7, 13):
                w = 8 if et == 7 else 16
                self._need(pos, n * w)
                return pos + n * w
            self._need(pos, n)
            for _ in range(n):
                pos = self.c_value(et, pos, depth + 1, True)
            return pos
        if t == 11:
            self._depth(depth + 1, pos)
            n, pos = self._c_varint(pos, 5)
            if n == 0:
                return pos
            self._need(pos, 1)
            kt, vt = buf[pos] >> 4, buf[pos] & 0x0F
            pos += 1
            if kt not in _C_VALID or vt not in _C_VALID:
                raise _err(f"invalid map types {kt}/{vt}", pos)
            self._need(pos, n * 2)
            for _ in range(n):
                pos = self.c_value(kt, pos, depth + 1, True)
                pos = self.c_value(vt, pos, depth + 1, True)
            return pos
        raise _err(f"invalid compact type {t}", pos)

    def c_struct(self, pos: int, depth: int) -> int:
        self._depth(depth, pos)
        buf = self.buf
        while True:
            self._need(pos, 1)
            h = buf[pos]
            pos += 1
            if h == 0:
                return pos
            t = h & 0x0F
            if t not in _C_VALID:
                raise _err(f"invalid compact field type {t}", pos - 1)
            if not h >> 4:                      # long form: zigzag i16 field id follows
                pos = self._c_varint(pos, 3)[1]
            pos = self.c_value(t, pos, depth)


def _exception_type(buf: Buffer, pos: int, end: int, proto: Proto, max_depth: int) -> int:
    """TApplicationException type (field 2, i32) of the struct at ``pos``; 0 when absent."""
    sk = _Skipper(buf, end, end, max_depth)
    try:
        if proto is Proto.BINARY:
            while True:
                sk._need(pos, 1)
                t = buf[pos]
                if t == 0:
                    return AppExc.UNKNOWN
                sk._need(pos, 3)
                fid: int = _I16.unpack_from(buf, pos + 1)[0]
                if fid == 2 and t == 8:
                    sk._need(pos + 3, 4)
                    return int(_I32.unpack_from(buf, pos + 3)[0])
                if t not in _B_VALID:
                    raise _err("bad field type", pos)
                pos = sk.b_value(t, pos + 3, 1)
        last = 0
        while True:
            sk._need(pos, 1)
            h = buf[pos]
            pos += 1
            if h == 0:
                return AppExc.UNKNOWN
            t = h & 0x0F
            delta = h >> 4
            if delta:
                fid = last + delta
            else:
                z, pos = sk._c_varint(pos, 3)
                fid = (z >> 1) ^ -(z & 1)
            last = fid
            if fid == 2 and t == 5:
                z, _ = sk._c_varint(pos, 5)
                return _to_i32((z >> 1) ^ -(z & 1))
            if t not in _C_VALID:
                raise _err("bad field type", pos)
            pos = sk.c_value(t, pos, 1)
    except (_NeedMore, ProtocolError):
        return AppExc.INTERNAL_ERROR


# --- message header --------------------------------------------------------------------

def _parse_message(buf: Buffer, pos: int, end: int, limits: Limits, meta: ThriftMeta,
                   limit_end: int | None = None) -> int:
    """Parse the message header at ``pos`` into ``meta``; return the offset of the struct.

    Reads nothing at or past ``end``: raises _NeedMore when a byte there is needed, or
    FrameTooLarge when it lies past ``limit_end`` (unframed: the frame limit). Checks run in
    stream order, so the verdict depends on the bytes only, never on how they were chunked.
    """

    def need(stop: int) -> None:
        if limit_end is not None and stop > limit_end:
            raise FrameTooLarge("thrift message size", stop - meta.payload_off, limits.thrift_max_frame,
                                protocol=NAME, offset=meta.payload_off)
        if stop > end:
            raise _NeedMore(stop - end)

    meta.payload_off = pos
    need(pos + 1)
    b0 = buf[pos]
    if b0 == 0x80:
        need(pos + 4)
        word: int = _U32.unpack_from(buf, pos)[0]
        if word & 0xFFFF0000 != BINARY_VERSION_1:
            raise _err(f"bad binary protocol version {word >> 16:#06x}", pos)
        if word & 0xFF00 or not 1 <= word & 0xFF <= 4:
            raise _err(f"invalid message type {word & 0xFFFF:#06x}", pos + 2)
        meta.proto = Proto.BINARY
        meta.msg_type = word & 0xFF
        need(pos + 8)
        n: int = _I32.unpack_from(buf, pos + 4)[0]
        if n < 0:
            raise _err(f"negative method name length {n}", pos + 4)
        if n > limits.thrift_max_name:
            raise LimitExceeded("thrift method name length", n, limits.thrift_max_name,
                                protocol=NAME, offset=pos + 4)
        meta.name_off = pos + 4
        meta.name_end = pos + 8 + n
        need(meta.name_end + 4)
        meta.name = _s(buf[pos + 8:pos + 8 + n])
        meta.seqid_off = meta.name_end
        meta.seqid_end = meta.name_end + 4
        return meta.seqid_end
    if b0 == COMPACT_PROTOCOL_ID:
        need(pos + 2)
        vt = buf[pos + 1]
        if vt & 0x1F != COMPACT_VERSION:
            raise _err(f"bad compact protocol version {vt & 0x1F}", pos + 1)
        if not 1 <= vt >> 5 <= 4:
            raise _err(f"invalid message type {vt >> 5}", pos + 1)
        meta.proto = Proto.COMPACT
        meta.msg_type = vt >> 5
        meta.seqid_off = pos + 2
        seq, meta.seqid_end = _read_varint(buf, pos + 2, end, 5)
        if seq > 0xFFFFFFFF:
            raise _err("compact seqid varint exceeds 32 bits", pos + 2)
        meta.name_off = meta.seqid_end
        n, npos = _read_varint(buf, meta.seqid_end, end, 5)
        if n > limits.thrift_max_name:
            raise LimitExceeded("thrift method name length", n, limits.thrift_max_name,
                                protocol=NAME, offset=meta.seqid_end)
        meta.name_end = npos + n
        need(meta.name_end)
        meta.name = _s(buf[npos:npos + n])
        return meta.name_end
    raise _err(f"not a binary (0x8001) or compact (0x82) thrift message: {b0:#04x}", pos)


def _read_seqid(buf: Buffer, meta: ThriftMeta) -> int:
    if meta.proto is Proto.BINARY:
        return int(_I32.unpack_from(buf, meta.seqid_off)[0])
    return _to_i32(_read_varint(buf, meta.seqid_off, meta.seqid_end, 5)[0])


def _seqid_bytes(proto: Proto | None, seqid: int) -> bytes:
    if proto is Proto.BINARY:
        return _I32.pack(_to_i32(seqid))
    return _varint(seqid & 0xFFFFFFFF)


def _kind_status(buf: Buffer, meta: ThriftMeta, body: int, end: int, limits: Limits) -> tuple[Kind, int | None]:
    t = meta.msg_type
    if t == MessageType.CALL:
        return Kind.REQUEST, None
    if t == MessageType.ONEWAY:
        return Kind.ONEWAY, None
    if t == MessageType.REPLY:
        return Kind.RESPONSE, 0
    assert meta.proto is not None
    return Kind.RESPONSE, _exception_type(buf, body, end, meta.proto, limits.thrift_max_depth)


# --- THeader -----------------------------------------------------------------------------

def _parse_theader(raw: bytes, meta: ThriftMeta) -> int:
    """Parse the THeader block of a complete frame ``raw``; return the payload offset."""
    end = len(raw)
    if end < 14:
        raise _err("THeader frame shorter than its fixed header", 0)
    words: int
    _size, _magic, flags, seq, words = _THEADER.unpack_from(raw, 0)
    meta.theader_flags = flags
    meta.theader_seq = seq
    hstart = 14
    hend = hstart + words * 4
    if hend > end:
        raise _err("THeader header block longer than the frame", 12)
    try:
        proto_id, pos = _read_varint(raw, hstart, hend, 5)
        ntrans, pos = _read_varint(raw, pos, hend, 5)
        if ntrans > hend - pos:
            raise _err("THeader transform count exceeds the header block", pos)
        for _ in range(ntrans):
            _, pos = _read_varint(raw, pos, hend, 5)
        if proto_id not in (Proto.BINARY, Proto.COMPACT):
            raise _err(f"unsupported THeader protocol id {proto_id}", hstart)
        meta.proto = Proto(proto_id)
        meta.opaque = ntrans > 0
        info = meta.info
        while pos < hend:
            itype, pos = _read_varint(raw, pos, hend, 5)
            if itype not in (InfoType.KEY_VALUE, InfoType.PERSISTENT_KEY_VALUE):
                break    # padding (0) or a type we do not know: Apache Thrift stops here too
            count, pos = _read_varint(raw, pos, hend, 5)
            if count > (hend - pos) // 2:
                raise _err("THeader info header count exceeds the header block", pos)
            for _ in range(count):
                kl, pos = _read_varint(raw, pos, hend, 5)
                if pos + kl > hend:
                    raise _err("THeader info key runs past the header block", pos)
                k = _s(raw[pos:pos + kl])
                pos += kl
                vl, pos = _read_varint(raw, pos, hend, 5)
                if pos + vl > hend:
                    raise _err("THeader info value runs past the header block", pos)
                v = _s(raw[pos:pos + vl])
                pos += vl
                info.append((itype, k, v))
    except _NeedMore:
        raise _err("THeader header block truncated", hstart) from None
    return hend


def _build_theader(flags: int, seq: int, proto: Proto, transforms: bytes,
                   info: list[tuple[int, str, str]], payload: bytes) -> bytes:
    h = bytearray(_varint(int(proto)))
    h += transforms
    for itype in (InfoType.KEY_VALUE, InfoType.PERSISTENT_KEY_VALUE):
        items = [(k, v) for t, k, v in info if t == itype]
        if items:
            h += _varint(itype) + _varint(len(items))
            for k, v in items:
                kb, vb = _b(k), _b(v)
                h += _varint(len(kb)) + kb + _varint(len(vb)) + vb
    h += b"\x00" * (-len(h) % 4)
    if len(h) // 4 > 0xFFFF:
        raise _err("THeader header block too large to encode")
    return (_THEADER.pack(10 + len(h) + len(payload), HEADER_MAGIC, flags & 0xFFFF, _to_i32(seq), len(h) // 4)
            + bytes(h) + payload)


def _theader_transforms(raw: bytes) -> bytes:
    """The raw varint bytes of protocol id's successor: transform count and ids."""
    hend = 14 + int(_U16.unpack_from(raw, 12)[0]) * 4
    _, pos = _read_varint(raw, 14, hend, 5)
    start = pos
    n, pos = _read_varint(raw, pos, hend, 5)
    for _ in range(n):
        _, pos = _read_varint(raw, pos, hend, 5)
    return raw[start:pos]


def _header_seq(meta: ThriftMeta, frame: Frame) -> int:
    """The THeader seq id for ``frame.request_id``: shifted by the same amount as the payload
    seqid, so one equal to the seqid (Apache Thrift's case) follows it exactly, and any other
    comes back unchanged when the id is patched back."""
    if meta.opaque:
        return _to_i32(frame.request_id)
    return _to_i32(meta.theader_seq + frame.request_id - frame.orig_request_id)


# --- scanner (the proxy's fast lane) ---------------------------------------------------------

def _framed_scanner(limits: Limits, types: tuple[int, ...]) -> Any:
    """``scan(buf, pos, n)`` for framed strict-binary messages of the given message types:
    ``(end, seqid, value, seqid position)`` where value is ``type == CALL`` (requests) or
    200 (a REPLY: ``status_to_http`` of a reply is 200); None for anything else."""
    max_frame = min(limits.thrift_max_frame, MAX_SANE_SIZE)
    max_name = limits.thrift_max_name
    hdr = _HDR8.unpack_from
    u32 = _U32.unpack_from
    i32 = _I32.unpack_from
    is_request = 1 in types

    def scan(buf: Any, pos: int, n: int) -> tuple[int, int, Any, int] | None:
        if n - pos < 16:
            return None
        size, magic = hdr(buf, pos)
        if magic != 0x8001 or not 0 < size <= max_frame:
            return None
        end = pos + 4 + size
        if end > n:
            return None
        word = u32(buf, pos + 4)[0]
        t = word & 0xFF
        if word & 0xFF00 or t not in types:
            return None
        nlen = i32(buf, pos + 8)[0]
        if nlen < 0 or nlen > max_name:
            return None
        sid = pos + 12 + nlen
        if sid + 4 > end:
            return None
        return end, i32(buf, sid)[0], (t == 1) if is_request else 200, sid
    return scan


# --- decoder -------------------------------------------------------------------------------

class ThriftDecoder(Decoder):
    """Reads thrift messages of any transport/protocol mix (detected per frame).

    Unframed messages are re-walked from their start when more bytes arrive; the lower bound
    of bytes still needed (exact for a long string or a container of fixed-size elements) is
    remembered so the walk is not repeated before those bytes are there.
    """

    def __init__(self, codec: Codec, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(codec, role, limits)
        self._unframed_need = 0   # bytes (from the frame start) an unframed message needs at least

    def decode(self, buf: Buffer, pos: int = 0) -> Frame | int:
        n = len(buf)
        avail = n - pos
        if avail < 1:
            return 1
        b0 = buf[pos]
        if b0 == 0x80 or b0 == COMPACT_PROTOCOL_ID:
            return self._decode_unframed(buf, pos, n)
        if avail < 8:
            return 8 - avail
        size: int
        word: int
        size, word = _HDR8.unpack_from(buf, pos)
        if not 0 < size <= MAX_SANE_SIZE:
            raise _err(f"frame size {size} is not a thrift frame size", pos)
        if word == HEADER_MAGIC:
            transport = Transport.HEADER
        elif word == 0x8001 or (word >> 8 == COMPACT_PROTOCOL_ID and word & 0x1F == COMPACT_VERSION):
            transport = Transport.FRAMED
        else:
            raise _err(f"no binary/compact/THeader magic after frame size: {word:#06x}", pos + 4)
        if size > self.limits.thrift_max_frame:
            raise FrameTooLarge("thrift frame size", size, self.limits.thrift_max_frame,
                                protocol=NAME, offset=pos)
        total = 4 + size
        if avail < total:
            return total - avail
        raw = bytes(buf[pos:pos + total])
        meta = ThriftMeta(transport, None)
        if transport is Transport.HEADER:
            start = _parse_theader(raw, meta)
            if meta.opaque:
                meta.payload_off = start
                # the message type is inside the transformed payload: the decoder's role tells
                return new_frame(self.codec, Kind.RESPONSE if self.role is Role.RESPONSES else Kind.REQUEST,
                                 meta.theader_seq, raw, False, None, memoryview(raw)[start:], meta)
        else:
            start = 4
        try:
            body = _parse_message(raw, start, total, self.limits, meta)
        except _NeedMore:
            raise _err("message header runs past the end of the frame", pos) from None
        if transport is Transport.HEADER and meta.proto is not None:
            hproto = meta.proto
            if (raw[start] == 0x80) != (hproto is Proto.BINARY):
                raise _err("THeader protocol id does not match the payload", pos + start)
        kind, status = _kind_status(raw, meta, body, total, self.limits)
        return new_frame(self.codec, kind, _read_seqid(raw, meta), raw, False, status,
                         memoryview(raw)[body:], meta)

    def _decode_unframed(self, buf: Buffer, pos: int, n: int) -> Frame | int:
        if n - pos < self._unframed_need:
            return self._unframed_need - (n - pos)
        limits = self.limits
        meta = ThriftMeta(Transport.UNFRAMED, None)
        limit_end = pos + limits.thrift_max_frame
        # never look at bytes past the limit: the verdict must not depend on chunking
        cap = min(n, limit_end)
        try:
            body = _parse_message(buf, pos, cap, limits, meta, limit_end)
            sk = _Skipper(buf, cap, limit_end, limits.thrift_max_depth, limits.thrift_max_frame)
            end = sk.b_struct(body, 1) if meta.proto is Proto.BINARY else sk.c_struct(body, 1)
        except _NeedMore as e:
            if n >= limit_end:
                raise FrameTooLarge("thrift unframed message", n - pos + 1, limits.thrift_max_frame,
                                    protocol=NAME, offset=pos) from None
            need = max(1, e.n)
            self._unframed_need = n - pos + need
            return need
        self._unframed_need = 0
        raw = bytes(buf[pos:end])
        # re-base offsets on raw
        for attr in ("name_off", "name_end", "seqid_off", "seqid_end", "payload_off"):
            setattr(meta, attr, getattr(meta, attr) - pos)
        body -= pos
        kind, status = _kind_status(raw, meta, body, len(raw), limits)
        return new_frame(self.codec, kind, _read_seqid(raw, meta), raw, False, status,
                         memoryview(raw)[body:], meta)


# --- codec -------------------------------------------------------------------------------

class ThriftCodec(Codec):
    name = NAME
    pool_mode = PoolMode.MULTIPLEX
    request_id_bits = 31
    match_bytes = 8
    match_rule = ("Envoy's rule on 8 bytes: u32 size in (0, 0x3FFFFFFF] then 0x0FFF (THeader) or "
                  "binary 0x8001 / compact 0x82 magic (framed); or that magic at byte 0 (unframed); "
                  "message type 1-4")
    has_heartbeat = False

    def match(self, data: Buffer) -> int:
        n = len(data)
        if n < 1:
            return 1
        b0 = data[0]
        if b0 == 0x80:
            if n < 4:
                return NO_MATCH if n >= 2 and data[1] != 0x01 else 4 - n
            return MATCH if data[1] == 0x01 and data[2] == 0 and 1 <= data[3] <= 4 else NO_MATCH
        if b0 == COMPACT_PROTOCOL_ID:
            if n < 2:
                return 1
            return MATCH if data[1] & 0x1F == COMPACT_VERSION and 1 <= data[1] >> 5 <= 4 else NO_MATCH
        if b0 > 0x3F:
            return NO_MATCH
        if n < 8:
            return 8 - n
        size, word = _HDR8.unpack_from(data, 0)
        if not 0 < size <= MAX_SANE_SIZE:
            return NO_MATCH
        if word == HEADER_MAGIC:
            return MATCH
        if word == 0x8001:
            return MATCH if data[6] == 0 and 1 <= data[7] <= 4 else NO_MATCH
        if word >> 8 == COMPACT_PROTOCOL_ID and word & 0x1F == COMPACT_VERSION and 1 <= (word & 0xFF) >> 5 <= 4:
            return MATCH
        return NO_MATCH

    def new_decoder(self, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> Decoder:
        return ThriftDecoder(self, role, limits)

    def scanner(self, role: Role, limits: Limits = DEFAULT_LIMITS) -> Scanner | None:
        """Framed strict-binary messages only (calls and oneways / replies): the seqid sits
        after the method name, so ``scan`` returns its position. Unframed, compact, THeader
        and exception replies are the decoder's."""
        lims = (min(limits.thrift_max_frame, MAX_SANE_SIZE), limits.thrift_max_name)
        if role is Role.REQUESTS:
            return Scanner(_framed_scanner(limits, (1, 4)), -1, _U32.pack_into, 0xFFFF_FFFF, 3, lims)
        if role is Role.RESPONSES:
            return Scanner(_framed_scanner(limits, (2,)), -1, _U32.pack_into, 0xFFFF_FFFF, 3, lims)
        return None

    def pool_mode_for(self, frame: Frame) -> PoolMode:
        meta = frame.meta
        if isinstance(meta, ThriftMeta) and meta.transport is Transport.UNFRAMED:
            return PoolMode.PINGPONG
        return PoolMode.MULTIPLEX

    def parse_headers(self, frame: Frame) -> dict[str, str]:
        meta: ThriftMeta = frame.meta
        h: dict[str, str] = {}
        for _t, k, v in meta.info:
            h[k] = v
        if meta.opaque:
            return h
        name = meta.name
        svc, sep, method = name.partition(":")
        if sep:
            h["service"] = svc
            h["method"] = method
        else:
            h.pop("service", None)
            h["method"] = name
        return h

    # --- encoding ------------------------------------------------------------------------
    def patch_request_id(self, raw: bytes, frame: Frame) -> bytes:
        meta: ThriftMeta = frame.meta
        rid = frame.request_id
        if meta.opaque:
            out = bytearray(raw)
            _I32.pack_into(out, 8, _to_i32(rid))
            return bytes(out)
        new = _seqid_bytes(meta.proto, rid)
        out = bytearray(raw[:meta.seqid_off])
        out += new
        out += raw[meta.seqid_end:]
        if meta.transport is Transport.HEADER:
            _I32.pack_into(out, 8, _header_seq(meta, frame))
        delta = len(new) - (meta.seqid_end - meta.seqid_off)
        if delta and meta.transport is not Transport.UNFRAMED:
            _U32.pack_into(out, 0, len(out) - 4)
        return bytes(out)

    def encode_changed(self, frame: Frame) -> bytes:
        meta: ThriftMeta = frame.meta
        new = frame.headers
        old = frame._orig_headers or {}
        # message name
        name = meta.name
        if not meta.opaque and (new.get("method") != old.get("method") or new.get("service") != old.get("service")):
            method = new.get("method")
            if method is None:
                raise _err("a thrift message needs a method name")
            svc = new.get("service")
            name = f"{svc}:{method}" if svc is not None else method
        # info headers
        info = meta.info
        extra = {k: v for k, v in new.items() if k not in ("method", "service") or meta.opaque}
        orig_extra = {k: v for k, v in old.items() if k not in ("method", "service") or meta.opaque}
        if extra != orig_extra:
            if meta.transport is not Transport.HEADER:
                changed = sorted(set(extra.items()) ^ set(orig_extra.items()))
                raise _err(f"{meta.transport.name.lower()} thrift cannot carry headers "
                           f"(changed: {', '.join(k for k, _ in changed)}); use THeader")
            types = {k: t for t, k, _ in info}
            shadowed = [(t, k, v) for t, k, v in info if k in ("method", "service") and not meta.opaque]
            info = shadowed + [(types.get(k, InfoType.KEY_VALUE), k, v) for k, v in extra.items()]
        raw = frame.raw
        rid = frame.request_id
        if meta.opaque:
            payload = raw[meta.payload_off:]
        else:
            nb = _b(name)
            if len(nb) > 0x7FFFFFFF:
                raise _err("method name too long")
            msg_start = meta.payload_off
            if meta.proto is Proto.BINARY:
                payload = (raw[msg_start:meta.name_off] + _I32.pack(len(nb)) + nb
                           + _seqid_bytes(meta.proto, rid) + raw[meta.seqid_end:])
            else:
                payload = (raw[msg_start:meta.seqid_off] + _seqid_bytes(meta.proto, rid)
                           + _varint(len(nb)) + nb + raw[meta.name_end:])
        if meta.transport is Transport.UNFRAMED:
            return bytes(payload)
        if meta.transport is Transport.FRAMED:
            return _U32.pack(len(payload)) + payload
        assert meta.proto is not None
        return _build_theader(meta.theader_flags, _header_seq(meta, frame), meta.proto, _theader_transforms(raw), info, bytes(payload))

    # --- behaviour -------------------------------------------------------------------------
    def error_reply(self, request: Frame, reason: Reason, message: str = "") -> Frame | None:
        meta: ThriftMeta = request.meta
        if request.kind is not Kind.REQUEST or meta.opaque:
            return None
        etype = AppExc.UNKNOWN_METHOD if reason is Reason.NO_ROUTE else AppExc.INTERNAL_ERROR
        if not message:
            message = f"xproto: {reason.value}" + (f" ({meta.name})" if reason is Reason.NO_ROUTE else "")
        payload = build_message(meta.proto or Proto.BINARY, meta.name, MessageType.EXCEPTION, request.request_id,
                                app_exception_struct(meta.proto or Proto.BINARY, message, etype))
        raw = wrap_transport(meta.transport, meta.proto or Proto.BINARY, payload, request.request_id,
                             info=[], flags=meta.theader_flags)
        frame = self.new_decoder(Role.RESPONSES).decode(raw)
        assert isinstance(frame, Frame)
        frame.meta.reason = reason
        return frame

    def status_to_http(self, frame: Frame) -> int:
        meta = frame.meta
        if isinstance(meta, ThriftMeta) and meta.reason is not None:
            return _REASON_HTTP.get(meta.reason, 500)
        if frame.status is None or not isinstance(meta, ThriftMeta) or meta.msg_type != MessageType.EXCEPTION:
            return 200
        return _STATUS_HTTP.get(AppExc(frame.status), 500) if frame.status in _STATUS_CODES else 500


# --- builders (error replies, fixtures, tests) --------------------------------------------------

def build_message(proto: Proto, name: str, mtype: int, seqid: int, struct_bytes: bytes) -> bytes:
    nb = _b(name)
    if proto is Proto.BINARY:
        return (_U32.pack(BINARY_VERSION_1 | mtype) + _I32.pack(len(nb)) + nb
                + _I32.pack(_to_i32(seqid)) + struct_bytes)
    return (bytes((COMPACT_PROTOCOL_ID, (mtype << 5) | COMPACT_VERSION)) + _varint(seqid & 0xFFFFFFFF)
            + _varint(len(nb)) + nb + struct_bytes)


def app_exception_struct(proto: Proto, message: str, etype: int) -> bytes:
    """TApplicationException {1: string message, 2: i32 type}."""
    mb = _b(message)
    if proto is Proto.BINARY:
        return (b"\x0b\x00\x01" + _I32.pack(len(mb)) + mb + b"\x08\x00\x02" + _I32.pack(etype) + b"\x00")
    z = ((etype << 1) ^ (etype >> 31)) & 0xFFFFFFFF
    return b"\x18" + _varint(len(mb)) + mb + b"\x15" + _varint(z) + b"\x00"


def wrap_transport(transport: Transport, proto: Proto, payload: bytes, seq: int = 0,
                   info: list[tuple[int, str, str]] | None = None, flags: int = 0) -> bytes:
    if transport is Transport.UNFRAMED:
        return payload
    if transport is Transport.FRAMED:
        return _U32.pack(len(payload)) + payload
    return _build_theader(flags, seq, proto, b"\x00", info or [], payload)
