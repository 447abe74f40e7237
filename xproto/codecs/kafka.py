"""Apache Kafka wire protocol: size-framed requests and responses.

Requests: ``i32 size, i16 api_key, i16 api_version, i32 correlation_id, nullable string
client_id`` (request header v1), plus tagged fields in header v2 (flexible versions).
ControlledShutdown v0 used header v0 (no client id). Responses: ``i32 size, i32
correlation_id`` plus tagged fields (header v1) iff the request's version is flexible,
except ApiVersions, whose response header is always v0 (KIP-511).

The hot path reads the fixed header with one precompiled ``struct`` call; ``kio`` (the
Kafka schemas) is consulted lazily: for ``headers`` (client id), for which (api_key,
version) pairs are flexible (cached per pair), and for response error codes.

Decisions:

* ``kind``: requests are REQUEST, except Produce with ``acks == 0`` (no response will come):
  ONEWAY. Responses are RESPONSE.
* A RESPONSES decoder learns each request through ``request_sent(frame)`` (correlation id ->
  api key/version). A response whose request is unknown (``xproto decode`` of responses
  alone) decodes with its correlation id only: ``headers == {}`` and ``status is None``.
* ``status`` on responses: the response's top-level ``error_code`` when its schema has one
  at a fixed offset (ApiVersions, FindCoordinator v0-3, InitProducerId, JoinGroup, ...);
  otherwise ``None`` (Produce, Fetch, Metadata ... carry per-partition errors only).
  ``status_to_http`` maps it (0/None -> 200, timeouts 504, unavailable/not-leader 503,
  unknown topic 404, malformed/unsupported 400, else 500).
* Unknown api keys and versions pass through (``api_name`` ``Unknown(<key>)``); never raise.
  Versions outside kio's range take the flexibility of the nearest known version (correct
  for Kafka: flexible versions are always "N+", and the versions KIP-896 removed are older
  than every API's first flexible version).
* ``error_reply``: Kafka has no generic error response. Where the response schema has a
  top-level ``error_code`` we build that response with kio (REQUEST_TIMED_OUT for timeouts,
  UNKNOWN_SERVER_ERROR otherwise), other fields empty/default; for the rest (Produce, Fetch,
  Metadata ...) we return None: the proxy closes the connection, which every Kafka client
  treats as a retriable network error (refresh metadata, reconnect).
* ``Role.ANY`` (direction unknown): the first frame decides for the whole stream: it is a
  request stream when that frame parses as a request (a plausible header and, where kio
  knows the api/version, a body kio reads exactly); otherwise responses.
"""
from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import uuid
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from xproto.codec import MATCH, NO_MATCH, Codec, Decoder, PoolMode, Reason, Role, frame_error
from xproto.errors import FrameTooLarge, ProtocolError
from xproto.frame import BareFrame, Frame, Kind
from xproto.framing.fixed import MEMORYVIEW_COPY_MIN, copy_out
from xproto.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    Buffer = bytes | bytearray | memoryview

NAME = "kafka"

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_REQ = struct.Struct(">ihhi")      # size, api_key, api_version, correlation_id
_RESP = struct.Struct(">ii")       # size, correlation_id
_MATCH = struct.Struct(">ihhih")   # + client_id length

API_VERSIONS = 18
PRODUCE = 0
#: request header v1 without client id bytes: api_key, api_version, correlation_id, client_id len
MIN_REQUEST_SIZE = 10
#: the most correlation ids a RESPONSES decoder remembers (bounded memory, oldest evicted)
MAX_PENDING = 65536
#: the most requests remembered under one correlation id (a client reusing ids while in flight)
MAX_SAME_ID = 64

# Inter-broker APIs that kio (KRaft-era schemas) does not carry.
_EXTRA_NAMES = {4: "LeaderAndIsr", 5: "StopReplica", 6: "UpdateMetadata", 7: "ControlledShutdown"}


def _err(msg: str, offset: int | None = None) -> ProtocolError:
    return frame_error(NAME, msg, offset)


# --- kio schema metadata (lazy, cached) ------------------------------------------------------

def _kio_names() -> dict[int, str]:
    from kio.schema.index import api_key_map
    return dict(api_key_map)


_API_SNAKE: dict[int, str] = _kio_names()
_API_NAMES: dict[int, str] = {k: "".join(p.capitalize() for p in v.split("_")) for k, v in _API_SNAKE.items()}
_API_NAMES.update(_EXTRA_NAMES)


def api_name(api_key: int) -> str:
    n = _API_NAMES.get(api_key)
    return n if n is not None else f"Unknown({api_key})"


@cache
def _versions(api_key: int) -> tuple[int, ...]:
    from kio.schema.index import schema_name_map
    snake = _API_SNAKE.get(api_key)
    if snake is None:
        return ()
    return tuple(sorted(schema_name_map[snake]))


@cache
def max_known_version(api_key: int) -> int:
    vs = _versions(api_key)
    return vs[-1] if vs else -1


@lru_cache(maxsize=4096)
def request_schema(api_key: int, version: int) -> Any:
    """kio's request class, or None when kio does not know the pair."""
    if version not in _versions(api_key):
        return None
    from kio.index import load_request_schema
    return load_request_schema(api_key, version)


@lru_cache(maxsize=4096)
def response_schema(api_key: int, version: int) -> Any:
    if version not in _versions(api_key):
        return None
    from kio.index import load_response_schema
    return load_response_schema(api_key, version)


@lru_cache(maxsize=4096)
def is_flexible(api_key: int, version: int) -> bool | None:
    """Whether (api_key, version) uses flexible encoding; None for unknown api keys."""
    vs = _versions(api_key)
    if not vs:
        return None
    v = min(max(version, vs[0]), vs[-1])
    if v not in vs:               # a gap inside kio's range: take the next lower known version
        v = max(x for x in vs if x < v)
    return bool(request_schema(api_key, v).__flexible__)


def request_header_version(api_key: int, version: int) -> int:
    if api_key == 7 and version == 0:
        return 0
    return 2 if is_flexible(api_key, version) else 1


def response_header_version(api_key: int, version: int) -> int:
    if api_key == API_VERSIONS:
        return 0
    return 1 if is_flexible(api_key, version) else 0


_FIXED_SIZES = {"int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4,
                "uint64": 8, "float64": 8, "bool": 1, "uuid": 16, "timedelta_i32": 4,
                "timedelta_i64": 8, "datetime_i64": 8}


@lru_cache(maxsize=4096)
def error_code_offset(api_key: int, version: int) -> int | None:
    """Offset of the response's top-level error_code within the body, if it is at a fixed one."""
    schema = response_schema(api_key, version)
    if schema is None:
        return None
    off = 0
    for f in dataclasses.fields(schema):
        if f.metadata.get("tag") is not None:
            continue
        kt = f.metadata.get("kafka_type")
        if kt == "error_code" and f.name == "error_code":
            return off
        size = _FIXED_SIZES.get(kt) if kt else None
        if size is None:
            return None
        off += size
    return None


# --- varints / tagged fields --------------------------------------------------------------

def _uvarint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    for i in range(5):
        if pos + i >= end:
            raise _err("varint runs past the end of the frame", pos)
        b = buf[pos + i]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos + i + 1
        shift += 7
    raise _err("varint longer than 5 bytes", pos)


def _skip_tagged(buf: Buffer, pos: int, end: int) -> int:
    n, pos = _uvarint(buf, pos, end)
    if n > end - pos:
        raise _err("tagged field count exceeds the frame", pos)
    for _ in range(n):
        _, pos = _uvarint(buf, pos, end)
        size, pos = _uvarint(buf, pos, end)
        pos += size
        if pos > end:
            raise _err("tagged field runs past the end of the frame", pos)
    return pos


def _client_id_end(raw: bytes, hv: int) -> int:
    """Offset just past the request header (client id and, for v2, tagged fields)."""
    end = len(raw)
    if hv == 0:
        return 12
    if end < 14:
        raise _err("request header truncated before client_id", 12)
    n: int = _I16.unpack_from(raw, 12)[0]
    pos = 14 + max(n, 0)
    if n < -1 or pos > end:
        raise _err(f"bad client_id length {n}", 12)
    if hv == 2:
        pos = _skip_tagged(raw, pos, end)
    return pos


def _produce_acks_slow(raw: bytes, version: int) -> int:
    """acks of a Produce request, any encoding (long varints, tagged header fields), with
    the precise ProtocolError when the request is truncated."""
    end = len(raw)
    if end < 14:
        raise _err("Produce request truncated before client_id", 12)
    n: int = _I16.unpack_from(raw, 12)[0]
    if n < -1:
        raise _err(f"bad client_id length {n}", 12)
    pos = 14 + n if n > 0 else 14
    if is_flexible(PRODUCE, version):
        pos = _skip_tagged(raw, pos, end)
        n, pos = _uvarint(raw, pos, end)   # compact nullable string: length + 1, 0 = null
        pos += n - 1 if n > 0 else 0
    elif version >= 3:
        if pos + 2 > end:
            raise _err("Produce request truncated in transactional_id", pos)
        n = _I16.unpack_from(raw, pos)[0]
        if n < -1:
            raise _err(f"bad transactional_id length {n}", pos)
        pos += 2 + n if n > 0 else 2
    if pos + 2 > end:
        raise _err("Produce request truncated before acks", pos)
    return int(_I16.unpack_from(raw, pos)[0])


#: the first flexible Produce version (9; from kio, like every flexibility decision here)
_PRODUCE_FLEXIBLE_FROM = min((v for v in _versions(PRODUCE) if is_flexible(PRODUCE, v)), default=1 << 15)
_unpack_i16 = _I16.unpack_from
_unpack_i16_i16 = struct.Struct(">hh").unpack_from        # transactional_id length, acks
_unpack_u8_u8_i16 = struct.Struct(">BBh").unpack_from     # tagged fields, compact string length, acks


def _produce_acks(raw: bytes, version: int) -> int:
    """acks of a Produce request (v0-2: first i16 of the body; v3+: after transactional_id).

    Hot path (every Produce request): one unpack at the offset the client id gives, and one
    more only for a transactional id; anything unusual (tagged header fields, a long
    transactional id in flexible versions, truncation) goes to :func:`_produce_acks_slow`.
    """
    acks: int
    try:
        n: int = _unpack_i16(raw, 12)[0]
        pos = 14 + n if n > 0 else 14
        if n >= -1:
            if version >= _PRODUCE_FLEXIBLE_FROM:
                tags, slen, acks = _unpack_u8_u8_i16(raw, pos)
                if tags == 0 and slen <= 1:               # no tags, null/empty transactional id
                    return acks
            elif version >= 3:
                tn, acks = _unpack_i16_i16(raw, pos)
                if tn <= 0:
                    if tn >= -1:
                        return acks
                else:
                    acks = _unpack_i16(raw, pos + 2 + tn)[0]
                    return acks
            else:
                acks = _unpack_i16(raw, pos)[0]
                return acks
    except struct.error:
        pass
    return _produce_acks_slow(raw, version)


# --- frames ---------------------------------------------------------------------------------

class KafkaMeta:
    """What is known about a kafka frame (a view built on demand by :func:`kafka_info`).

    ``api_key`` is None on responses to unknown requests. On the hot path ``frame.meta`` is
    kept allocation-free: ``None`` for requests (api key and version are in ``raw``), the
    ``(api_key, api_version)`` tuple remembered by ``request_sent`` for responses
    (``(None, None)`` when unknown), and ``(api_key, api_version, reason)`` for local replies.
    """

    __slots__ = ("api_key", "api_version", "is_request", "reason")

    def __init__(self, api_key: int | None, api_version: int | None, is_request: bool,
                 reason: Reason | None = None) -> None:
        self.api_key = api_key
        self.api_version = api_version
        self.is_request = is_request
        self.reason = reason

    def body_offset(self, raw: bytes) -> int:
        """Offset of the request/response body within ``raw`` (needs the api to be known)."""
        if self.api_key is None or self.api_version is None:
            raise _err("response to an unknown request: body layout unknown")
        if self.is_request:
            return _client_id_end(raw, request_header_version(self.api_key, self.api_version))
        if response_header_version(self.api_key, self.api_version) == 1:
            return _skip_tagged(raw, 8, len(raw))
        return 8


_UNKNOWN_RESPONSE: tuple[None, None] = (None, None)


def kafka_info(frame: Frame) -> KafkaMeta:
    """The api key/version/direction of a kafka frame decoded by this codec."""
    m = frame.meta
    if m is None:
        _s, key, ver, _c = _REQ.unpack_from(frame.raw, 0)
        return KafkaMeta(key, ver, True)
    if len(m) == 3:
        return KafkaMeta(m[0], m[1], False, m[2])
    return KafkaMeta(m[0], m[1], False)


# --- a bounded walk before kio ------------------------------------------------------------
# kio's native reader reserves memory for an array from its declared length before reading
# the elements: a hostile length (2**32) makes it allocate tens of GB and abort the process
# (found by fuzz/fuzz_kafka.py). So every body is first walked here, in Python, checking each
# length and count against the bytes left; kio only ever sees bodies that fit.

_ARRAY, _ENTITY, _FIXED, _STRING, _BYTES = range(5)


@cache
def _plan(entity: type) -> tuple[bool, tuple[tuple[int, Any, bool], ...]]:
    """(flexible, [(kind, arg, nullable)]) for the untagged fields of a kio entity, in order."""
    from kio.serial._introspect import (
        EntityField,
        EntityTupleField,
        classify_field,
        is_optional,
    )
    steps: list[tuple[int, Any, bool]] = []
    for f in dataclasses.fields(entity):
        if f.metadata.get("tag") is not None:
            continue                     # tagged fields are skipped generically
        fc = classify_field(f)
        kt = f.metadata.get("kafka_type")
        if isinstance(fc, (EntityField, EntityTupleField)):
            elem: tuple[int, Any, bool] = (_ENTITY, fc.type_, isinstance(fc, EntityField) and is_optional(f))
        elif kt == "string":
            elem = (_STRING, None, False)
        elif kt in ("bytes", "records"):
            elem = (_BYTES, None, False)
        elif kt in _FIXED_SIZES or kt == "error_code":
            elem = (_FIXED, _FIXED_SIZES.get(kt, 2), False)
        else:
            raise _err(f"kio field type {kt!r} of {entity.__name__}.{f.name} is not understood")
        if fc.is_array:
            steps.append((_ARRAY, elem, False))
        else:
            steps.append(elem)
    return bool(getattr(entity, "__flexible__", False)), tuple(steps)


def _guard(entity: type, buf: bytes, pos: int, end: int, depth: int = 0) -> int:
    """Walk one ``entity`` at ``pos`` without building it; every length is checked first."""
    if depth > 32:
        raise _err("kafka structures nested too deeply", pos)
    flexible, steps = _plan(entity)

    def length(pos: int, legacy: struct.Struct) -> tuple[int, int]:
        """(count or -1 for null, new pos) of a string/bytes/array length prefix."""
        if flexible:
            n, pos = _uvarint(buf, pos, end)
            return n - 1, pos
        if pos + legacy.size > end:
            raise _err("length prefix runs past the end of the frame", pos)
        n = int(legacy.unpack_from(buf, pos)[0])
        if n < -1:
            raise _err(f"negative length {n}", pos)
        return n, pos + legacy.size

    def one(kind: int, arg: Any, nullable: bool, pos: int) -> int:
        if kind == _FIXED:
            pos += arg
        elif kind == _STRING or kind == _BYTES:
            n, pos = length(pos, _I16 if kind == _STRING else _I32)
            pos += max(n, 0)
        elif kind == _ENTITY:
            if nullable:
                if pos >= end:
                    raise _err("nullable struct marker missing", pos)
                marker = buf[pos]
                pos += 1
                if marker == 0xFF:
                    return pos
            pos = _guard(arg, buf, pos, end, depth + 1)
        else:                             # array
            n, pos = length(pos, _I32)
            if n > end - pos:
                raise _err(f"array of {n} elements in {end - pos} bytes", pos)
            ekind, earg, enull = arg
            if ekind == _FIXED:
                pos += max(n, 0) * earg
            else:
                for _ in range(n):
                    pos = one(ekind, earg, enull, pos)
        if pos > end:
            raise _err("field runs past the end of the frame", pos)
        return pos

    for kind, arg, nullable in steps:
        pos = one(kind, arg, nullable, pos)
    if flexible:
        pos = _skip_tagged(buf, pos, end)
    return pos


def _kio_parse(schema: Any, raw: bytes, pos: int) -> Any:
    """Parse ``raw[pos:]`` with kio; the whole rest must be consumed. Only ProtocolError escapes."""
    from kio.serial import entity_reader
    end = _guard(schema, raw, pos, len(raw))
    if end != len(raw):
        raise _err(f"{schema.__name__} body has {len(raw) - end} trailing bytes", end)
    try:
        value, size = entity_reader(schema)(raw, pos)
    except Exception as e:  # noqa: BLE001 - kio raises DecodeError, ValueError, UnicodeDecodeError ...
        raise _err(f"kio cannot parse {schema.__name__}: {e.__class__.__name__}: {e}", pos) from None
    if pos + size != len(raw):
        raise _err(f"{schema.__name__} body has {len(raw) - pos - size} trailing bytes", pos + size)
    return value


def _produce_v0_2_exact(raw: bytes, pos: int) -> bool:
    """Produce v0-2 body (not in kio): acks, timeout, [topic name, [partition, records]],
    consuming the frame exactly."""
    end = len(raw)
    if pos + 10 > end or _I16.unpack_from(raw, pos)[0] not in (-1, 0, 1) or _I32.unpack_from(raw, pos + 2)[0] < 0:
        return False
    ntopics: int = _I32.unpack_from(raw, pos + 6)[0]
    pos += 10
    if not 0 <= ntopics <= end - pos:
        return False
    for _ in range(ntopics):
        if pos + 2 > end:
            return False
        n: int = _I16.unpack_from(raw, pos)[0]
        pos += 2 + n
        if n < 0 or pos + 4 > end:
            return False
        nparts: int = _I32.unpack_from(raw, pos)[0]
        pos += 4
        if not 0 <= nparts <= end - pos:
            return False
        for _ in range(nparts):
            if pos + 8 > end:
                return False
            n = _I32.unpack_from(raw, pos + 4)[0]
            pos += 8 + max(n, 0)
            if n < -1 or pos > end:
                return False
    return pos == end


def _plausible_request(raw: bytes) -> bool:
    if len(raw) < 4 + MIN_REQUEST_SIZE:
        return False
    _size, key, ver, corr = _REQ.unpack_from(raw, 0)
    if key not in _API_NAMES or corr < 0 or ver < 0:
        return False
    if key in _EXTRA_NAMES:
        return bool(ver <= 10)
    if ver > max_known_version(key) + 8:
        return False
    try:
        body = _client_id_end(raw, request_header_version(key, ver))
    except ProtocolError:
        return False
    schema = request_schema(key, ver)
    if schema is None:
        if key == PRODUCE and ver <= 2:
            return _produce_v0_2_exact(raw, body)
        return True
    try:
        _kio_parse(schema, raw, body)
    except ProtocolError:
        return False
    return True


class KafkaDecoder(Decoder):

    def __init__(self, codec: Codec, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(codec, role, limits)
        #: correlation id -> (api_key, api_version) of the request in flight, or a list of them
        #: (oldest first) when a client reuses an id before its response came
        self.pending: dict[int, tuple[int, int] | list[tuple[int, int]]] = {}
        self._max_frame = limits.kafka_max_frame
        self._is_requests: bool | None = (True if role is Role.REQUESTS else
                                          False if role is Role.RESPONSES else None)

    def _check_size(self, size: int, pos: int) -> None:
        if size < (8 if self._is_requests else 4):
            raise _err(f"bad frame size {size}", pos)
        if size > self._max_frame:
            raise FrameTooLarge("kafka frame size", size, self._max_frame, protocol=NAME, offset=pos)

    def request_sent(self, frame: Frame) -> None:
        if frame.kind is not _REQUEST or frame.meta is not None or frame.protocol != NAME:
            return
        key: int
        ver: int
        _s, key, ver, _c = _unpack_req(frame.raw, 0)
        api = (key, ver)
        pending = self.pending
        rid = frame.request_id
        q = pending.get(rid)
        if q is None:                            # the common case: one request per id in flight
            if len(pending) >= MAX_PENDING:
                del pending[next(iter(pending))]  # oldest first
            pending[rid] = api
        elif isinstance(q, list):
            if len(q) >= MAX_SAME_ID:
                del q[0]
            q.append(api)
        else:                                    # the id reused while in flight: answered in order
            pending[rid] = [q, api]

    def decode(self, buf: Buffer, pos: int = 0) -> Frame | int:
        # Hot path: one unpack of the request header, one copy, the frame built inline (the
        # same slots as xproto.framing.fixed.new_frame); Produce adds one or two unpacks for
        # acks (kind ONEWAY when 0). Responses: _decode_response.
        is_req = self._is_requests
        if is_req is False:
            return self._decode_response(buf, pos)
        avail = len(buf) - pos
        size: int
        if avail < 12:
            if avail < 4:
                return 4 - avail
            size = _I32.unpack_from(buf, pos)[0]
            self._check_size(size, pos)
            if size + 4 > avail:
                return size + 4 - avail
            # a whole frame under 12 bytes: only a response is that small (requests: >= 12,
            # and _check_size refused it on a request stream)
            self._is_requests = False
            return self._decode_response(buf, pos)
        key: int
        ver: int
        corr: int
        size, key, ver, corr = _unpack_req(buf, pos)
        if size < 8 or size > self._max_frame:
            self._check_size(size, pos)
        total = size + 4
        if avail < total:
            return total - avail
        if type(buf) is bytes:
            raw = buf[pos:pos + total]           # one copy; none when the frame is the whole read
        elif total < MEMORYVIEW_COPY_MIN:
            raw = bytes(buf[pos:pos + total])    # bytearray: two small copies beat two views
        else:
            raw = copy_out(buf, pos, total)
        if is_req is None:                       # Role.ANY: the first frame decides
            is_req = self._is_requests = _plausible_request(raw)
            if not is_req:
                return self._decode_response(buf, pos)
        f = BareFrame()
        f.raw = raw
        f.codec = self.codec
        f.protocol = NAME
        f.kind = _ONEWAY if key == 0 and _produce_acks(raw, ver) == 0 else _REQUEST
        f.heartbeat = False
        f.request_id = f.orig_request_id = corr
        f.status = None
        f.body = b""
        f.meta = None                            # a request: api key/version are in raw
        f._headers = f._orig_headers = None
        return f

    def _decode_response(self, buf: Buffer, pos: int) -> Frame | int:
        avail = len(buf) - pos
        size: int
        corr: int
        if avail < 8:
            if avail < 4:
                return 4 - avail
            size = _I32.unpack_from(buf, pos)[0]
            self._check_size(size, pos)
            return size + 4 - avail              # > 0: _check_size refused sizes under 4
        size, corr = _unpack_resp(buf, pos)
        if size < 4 or size > self._max_frame:
            self._check_size(size, pos)
        total = size + 4
        if avail < total:
            return total - avail
        if type(buf) is bytes:
            raw = buf[pos:pos + total]
        elif total < MEMORYVIEW_COPY_MIN:
            raw = bytes(buf[pos:pos + total])
        else:
            raw = copy_out(buf, pos, total)
        # Popped: a long-lived connection must not keep every id it ever carried (memory
        # stays flat; MAX_PENDING bounds requests that are never answered)
        got = self.pending.pop(corr, None)
        api: tuple[int, int] | None
        if isinstance(got, list):                # the id is in flight more than once
            api = got.pop(0)
            self.pending[corr] = got[0] if len(got) == 1 else got
        else:
            api = got
        if api is None:
            return Frame(self.codec, Kind.RESPONSE, corr, raw, headers={}, meta=_UNKNOWN_RESPONSE)
        status: int | None = None
        eoff, flexible = _RESPONSE_LAYOUT.get(api) or _response_layout(api)
        if eoff is not None:
            if not flexible:
                body = 8
            elif total > 8 and raw[8] == 0:      # no tagged fields in the response header
                body = 9
            else:
                body = _skip_tagged(raw, 8, total)
            if body + eoff + 2 <= total:
                status = _unpack_i16(raw, body + eoff)[0]
        f = BareFrame()
        f.raw = raw
        f.codec = self.codec
        f.protocol = NAME
        f.kind = _RESPONSE
        f.heartbeat = False
        f.request_id = f.orig_request_id = corr
        f.status = status
        f.body = b""
        f.meta = api                             # (api_key, api_version) of the request
        f._headers = f._orig_headers = None
        return f


_REQUEST = Kind.REQUEST       # module constants: an Enum attribute lookup costs ~60 ns
_ONEWAY = Kind.ONEWAY
_RESPONSE = Kind.RESPONSE
_unpack_req = _REQ.unpack_from
_unpack_resp = _RESP.unpack_from

#: (api_key, api_version) -> (offset of the top-level error_code in the body or None, whether
#: the response header has tagged fields); filled for the pairs kio knows (so it is bounded
#: by kio's schemas, whatever versions a client sends)
_RESPONSE_LAYOUT: dict[tuple[int, int], tuple[int | None, bool]] = {}


def _response_layout(api: tuple[int, int]) -> tuple[int | None, bool]:
    key, ver = api
    lay = (error_code_offset(key, ver), response_header_version(key, ver) == 1)
    if response_schema(key, ver) is not None:
        _RESPONSE_LAYOUT[api] = lay
    return lay


# --- status mapping ------------------------------------------------------------------------

_HTTP_BY_ERROR = {
    7: 504,                                                # REQUEST_TIMED_OUT
    5: 503, 6: 503, 8: 503, 13: 503, 14: 503, 15: 503, 16: 503, 19: 503, 20: 503,
    51: 503, 89: 503,                                       # unavailable / not leader / throttled
    3: 404, 69: 404, 100: 404,                              # unknown topic / group / topic id
    2: 400, 10: 400, 17: 400, 35: 400, 42: 400, 43: 400, 87: 400,  # malformed / unsupported
    29: 400, 30: 400, 31: 400,                              # authorization failed
}
_HTTP_BY_REASON = {
    Reason.NO_ROUTE: 404, Reason.NO_HEALTHY_UPSTREAM: 503, Reason.TIMEOUT: 504,
    Reason.OVERFLOW: 503, Reason.UPSTREAM_RESET: 502, Reason.BAD_REQUEST: 400,
}
_REQUEST_TIMED_OUT = 7
_UNKNOWN_SERVER_ERROR = -1


def _default_value(f: dataclasses.Field[Any]) -> Any:
    """An empty value for a required kio field (error responses)."""
    kt = f.metadata.get("kafka_type")
    t = str(f.type)
    if t.startswith("tuple"):
        return ()
    if kt in ("string",):
        return None if "None" in t else ""
    if kt in ("bytes", "records"):
        return None if "None" in t else b""
    if kt == "bool":
        return False
    if kt == "uuid":
        return None if "None" in t else uuid.UUID(int=0)
    if kt in ("timedelta_i32", "timedelta_i64"):
        return datetime.timedelta(0)
    if kt == "datetime_i64":
        return datetime.datetime.fromtimestamp(0, datetime.UTC)
    if kt in _FIXED_SIZES or kt == "error_code":
        return 0
    raise _err(f"no default for field {f.name} ({t})")


class KafkaCodec(Codec):
    name = NAME
    pool_mode = PoolMode.MULTIPLEX
    request_id_bits = 31
    match_bytes = 14
    match_rule = ("request header on 14 bytes: i32 size in [10, 16 MiB) (first byte 0x00), api_key known to kio "
                  "(or 4-7), 0 <= api_version <= kio's max + 8, correlation id >= 0, client_id length "
                  "-1 or within the frame")
    has_heartbeat = False

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._max_frame = limits.kafka_max_frame

    def match(self, data: Buffer) -> int:
        n = len(data)
        # Detection only claims requests under 16 MiB (first byte 0x00): every real client's
        # first request is tiny, and a larger size would overlap Bolt v2 (`02 02 00 00` reads
        # as a 33 MiB Fetch v0). Decoding still allows up to kafka_max_frame.
        if n >= 1 and data[0] != 0:
            return NO_MATCH
        if n >= 4:
            size: int = _I32.unpack_from(data, 0)[0]
            if not MIN_REQUEST_SIZE <= size <= self._max_frame:
                return NO_MATCH
        if n >= 6:
            key: int = _I16.unpack_from(data, 4)[0]
            if key not in _API_NAMES:
                return NO_MATCH
        if n < 14:
            return 14 - n
        size, key, ver, corr, cl = _MATCH.unpack_from(data, 0)
        if ver < 0 or corr < 0:
            return NO_MATCH
        if ver > (10 if key in _EXTRA_NAMES else max_known_version(key) + 8):
            return NO_MATCH
        if key == 7 and ver == 0:
            return MATCH
        if cl < -1 or cl > size - MIN_REQUEST_SIZE:
            return NO_MATCH
        return MATCH

    def new_decoder(self, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> Decoder:
        return KafkaDecoder(self, role, limits)

    def parse_headers(self, frame: Frame) -> dict[str, str]:
        meta = kafka_info(frame)
        if meta.api_key is None:
            return {}
        h = {"api_key": str(meta.api_key), "api_version": str(meta.api_version),
             "api_name": api_name(meta.api_key)}
        if meta.is_request:
            raw = frame.raw
            if request_header_version(meta.api_key, meta.api_version or 0) >= 1 and len(raw) >= 14:
                n: int = _I16.unpack_from(raw, 12)[0]
                if 0 <= n <= len(raw) - 14:
                    h["client_id"] = raw[14:14 + n].decode("utf-8", "surrogateescape")
        return h

    def patch_request_id(self, raw: bytes, frame: Frame) -> bytes:
        at = 8 if frame.meta is None else 4      # request: after size, api key, version
        return raw[:at] + _I32.pack(frame.request_id) + raw[at + 4:]

    def encode_changed(self, frame: Frame) -> bytes:
        """Only ``client_id`` of a request can change (api key/version/name are the schema)."""
        meta = kafka_info(frame)
        new, old = frame.headers, frame._orig_headers or {}
        diff = {k for k in set(new) | set(old) if new.get(k) != old.get(k)}
        if diff - {"client_id"} or not meta.is_request or meta.api_key is None:
            raise _err(f"kafka frames cannot change these headers: {', '.join(sorted(diff))}")
        raw = frame.raw
        n: int = _I16.unpack_from(raw, 12)[0]
        cid = new.get("client_id")
        cb = b"\xff\xff" if cid is None else _I16.pack(len(cid.encode())) + cid.encode("utf-8", "surrogateescape")
        out = bytearray(raw[:12] + cb + raw[14 + max(n, 0):])
        _I32.pack_into(out, 0, len(out) - 4)
        _I32.pack_into(out, 8, frame.request_id)
        return bytes(out)

    def error_reply(self, request: Frame, reason: Reason, message: str = "") -> Frame | None:
        meta = kafka_info(request)
        if request.kind is not Kind.REQUEST or meta.api_key is None or meta.api_version is None:
            return None
        key, ver = meta.api_key, meta.api_version
        schema = response_schema(key, ver)
        if schema is None or error_code_offset(key, ver) is None:
            return None
        code = _REQUEST_TIMED_OUT if reason is Reason.TIMEOUT else _UNKNOWN_SERVER_ERROR
        from kio.schema.errors import ErrorCode
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(schema):
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            kw[f.name] = ErrorCode(code) if f.name == "error_code" else _default_value(f)
        for f in dataclasses.fields(schema):
            if f.name == "error_message" and "None" in str(f.type) and message:
                kw["error_message"] = message
        from kio.serial import entity_writer
        try:
            body = io.BytesIO()
            entity_writer(schema)(body, schema(**kw))
        except Exception as e:  # noqa: BLE001 - a field we cannot default: no error form for this api
            raise _err(f"cannot build an error response for {api_name(key)} v{ver}: {e}") from None
        hdr = _I32.pack(request.request_id) + (b"\x00" if response_header_version(key, ver) == 1 else b"")
        payload = hdr + body.getvalue()
        raw = _I32.pack(len(payload)) + payload
        dec = KafkaDecoder(self, Role.RESPONSES)
        dec.request_sent(request)
        frame = dec.decode(raw)
        assert isinstance(frame, Frame)
        frame.meta = (key, ver, reason)
        return frame

    def status_to_http(self, frame: Frame) -> int:
        meta = frame.meta
        if meta is not None and len(meta) == 3:
            return _HTTP_BY_REASON.get(meta[2], 500)
        s = frame.status
        if not s:
            return 200
        return _HTTP_BY_ERROR.get(s, 500)

    def expects_response(self, frame: Frame) -> bool:
        return frame.kind is Kind.REQUEST
