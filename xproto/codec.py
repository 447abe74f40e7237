"""The codec interface: what a protocol plugin implements.

A codec is sans-I/O: no sockets, no awaits, no clocks, no global state. It turns bytes
into :class:`~xproto.frame.Frame` objects and frames back into bytes, and knows the
protocol's behaviour (heartbeats, local error replies, status mapping, pool mode,
request-id width).

Plugin authors subclass :class:`Codec` (see ``xproto/codecs/example.py``) and expose the
class or an instance under the ``xproto.codecs`` entry-point group.
"""
from __future__ import annotations

from enum import Enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Union

from xproto.errors import ProtocolError
from xproto.frame import Frame, Kind
from xproto.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    Buffer = Union[bytes, bytearray, memoryview]

# --- matcher results ------------------------------------------------------------
#: the bytes are this protocol
MATCH = 0
#: the bytes are not this protocol
NO_MATCH = -1
# any positive int n: "need n more bytes before I can tell"


class PoolMode(str, Enum):
    MULTIPLEX = "multiplex"   # many in-flight requests per connection, keyed by request id
    PINGPONG = "pingpong"     # one request at a time per connection


class Reason(str, Enum):
    """Why the proxy answers a request itself."""
    NO_ROUTE = "no_route"
    NO_HEALTHY_UPSTREAM = "no_healthy_upstream"
    TIMEOUT = "timeout"
    OVERFLOW = "overflow"
    UPSTREAM_RESET = "upstream_reset"
    BAD_REQUEST = "bad_request"   # the request itself could not be decoded


class Role(str, Enum):
    """Which direction a decoder reads."""
    REQUESTS = "requests"     # reads what a client sends (downstream side of the proxy)
    RESPONSES = "responses"   # reads what a server sends (upstream side of the proxy)
    ANY = "any"               # both may appear (xproto decode of an unknown direction)


class IdGenerator:
    """Request-id generator for the upstream leg; wraps at the protocol's id width.

    ``bits`` is the number of usable bits (Bolt 32 -> ids 0..2**32-1; signed int32
    fields such as Kafka's correlation id or Thrift's seqid use 31 bits). Id 0 is skipped
    after a wrap only if ``skip_zero``.
    """

    __slots__ = ("_mask", "_next", "_skip_zero", "wrapped")

    def __init__(self, bits: int, start: int = 1, skip_zero: bool = False) -> None:
        self._mask = (1 << bits) - 1
        self._next = start & self._mask
        self._skip_zero = skip_zero
        #: whether id 0 came up (the generator wrapped, or started there): ids handed out
        #: before may still be in flight, so a new id can collide with one
        self.wrapped = False

    def __call__(self) -> int:
        v = self._next
        if v == 0:
            self.wrapped = True
            if self._skip_zero:
                v = 1
        self._next = (v + 1) & self._mask
        return v


class Decoder:
    """Per-connection, per-direction decoding state.

    ``decode(buf, pos)`` looks at ``buf[pos:]`` and returns either a :class:`Frame`
    (exactly one frame, copied out of ``buf``; ``len(frame.raw)`` bytes were consumed)
    or a positive int: the number of further bytes needed (a lower bound; 1 when
    unknown). It raises only :class:`~xproto.errors.ProtocolError`.

    Frame first, parse second: the fixed header is read and limits are checked before the
    rest of the frame is waited for or allocated.
    """

    def __init__(self, codec: "Codec", role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> None:
        self.codec = codec
        self.role = role
        self.limits = limits

    def decode(self, buf: "Buffer", pos: int = 0) -> Frame | int:
        raise NotImplementedError

    def request_sent(self, frame: Frame) -> None:
        """Tell a RESPONSES decoder that ``frame`` was written on this connection.

        Protocols whose responses cannot be framed or typed without the request (Kafka's
        api key and header version; HTTP's HEAD) remember it here. Default: nothing.
        """

    def eof(self, buf: "Buffer", pos: int = 0) -> Frame | None:
        """The stream ended (the peer closed) with ``buf[pos:]`` not yet consumed.

        Call it after ``decode`` asked for more bytes. Returns the last frame when the
        protocol delimits it by the close itself (an HTTP/1.0-style response body without
        a length), else None: the leftover bytes are a truncated frame. Default: None.
        """
        return None

    def decode_all(self, data: "Buffer") -> tuple[list[Frame], int]:
        """Decode every whole frame in ``data``; return the frames and the bytes consumed."""
        frames: list[Frame] = []
        pos = 0
        n = len(data)
        while pos < n:
            r = self.decode(data, pos)
            if isinstance(r, int):
                break
            frames.append(r)
            pos += len(r.raw)
        return frames, pos


class Scanner(NamedTuple):
    """A codec's header-only fast path (see :meth:`Codec.scanner`).

    ``scan(buf, pos, n)`` looks at the frame starting at ``buf[pos]`` (``n = len(buf)``)
    and returns ``(end, request_id, value)`` only for a *plain* frame: whole in ``buf``,
    within the limits, and one the decoder of the same role and limits would decode
    without error into a non-heartbeat frame with ``len(raw) == end - pos``,
    ``orig_request_id == request_id`` and headers never needed for framing. ``value`` is,
    for the REQUESTS role, whether a response is expected (``kind is REQUEST``; False for
    ONEWAY) and, for the RESPONSES role, ``status_to_http(frame)``. For anything else
    (incomplete, heartbeat, other kinds or versions, checksummed frames, bad bytes) it
    returns None and the caller uses ``decode``, which answers with its usual result or
    error. Contract checked for every fixture and by Hypothesis in
    ``tests/test_scanner.py``.

    ``id_offset``/``pack_id``/``id_mask``: the request id is written in place with
    ``pack_id(buf, pos + id_offset, request_id & id_mask)`` (same bytes as
    ``patch_request_id``). ``id_offset`` -1: the id has no fixed offset, and ``scan``
    returns a fourth item, the id's absolute position in ``buf`` (framed Thrift: after the
    method name). Frames a scanner accepts are always pooled ``MULTIPLEX`` (codecs whose
    ``pool_mode_for`` varies must not accept the others).
    """

    scan: Callable[[Any, int, int], "tuple[int, int, Any] | None"]
    id_offset: int
    pack_id: Callable[..., None]
    id_mask: int
    #: built-in codecs only: the framing's number in the proxy's optional C loops
    #: (``xproto/proxy/_lane.c``: 1 Dubbo, 2 Bolt v1), its two limits, and the
    #: ``status -> status_to_http`` table for statuses below its length (others: 500).
    #: 0: no C loop (plugins; the pure-Python loops use ``scan``).
    native: int = 0
    native_limits: tuple[int, int] = (0, 0)
    status_table: tuple[int, ...] = ()


#: a ping-pong codec's message scanner (see :meth:`Codec.message_scanner`)
MessageScan = Callable[[Any, int, int], "tuple[int, Any] | None"]


class Codec:
    """Base class of every codec. Class attributes describe the protocol."""

    #: protocol name (the entry-point name)
    name: ClassVar[str] = ""
    #: how upstream connections are pooled
    pool_mode: ClassVar[PoolMode] = PoolMode.MULTIPLEX
    #: width of the request id in bits (the generator wraps there); 0 = no id on the wire
    request_id_bits: ClassVar[int] = 32
    #: the most bytes the matcher needs to decide
    match_bytes: ClassVar[int] = 1
    #: human description of the matcher rule (README table, ``xproto codecs``)
    match_rule: ClassVar[str] = ""
    #: whether the protocol has heartbeats
    has_heartbeat: ClassVar[bool] = False

    def pool_mode_for(self, frame: Frame) -> PoolMode:
        """Pool mode for the connection ``frame`` arrived on (e.g. unframed Thrift can only be
        pooled ping-pong while framed Thrift multiplexes). Default: the class attribute."""
        return self.pool_mode

    # --- detection ---------------------------------------------------------------
    def match(self, data: "Buffer") -> int:
        """MATCH, NO_MATCH, or n > 0: need n more bytes to tell."""
        raise NotImplementedError

    # --- decoding --------------------------------------------------------------
    def new_decoder(self, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> Decoder:
        raise NotImplementedError

    def parse_headers(self, frame: Frame) -> dict[str, str]:
        """Build the string header map of a frame (called lazily by ``frame.headers``)."""
        return {}

    def route_headers(self, frame: Frame, keys: frozenset[str]) -> dict[str, str]:
        """The headers routing looks at: at least ``keys`` (those present). The default is
        the full map, ``frame.headers``; a codec may read less (Dubbo reads the body's
        leading strings only when routes ask for nothing else). The result is for reading
        only: changing headers goes through ``frame.headers``."""
        return frame.headers

    # --- encoding --------------------------------------------------------------
    def encode(self, frame: Frame) -> bytes:
        """Bytes of ``frame``.

        Unmodified frame -> its original bytes, with the request id patched in place when
        ``frame.request_id != frame.orig_request_id``. Changed headers -> re-encoded with
        the change (``encode_changed``).
        """
        if frame.headers_changed():
            return self.encode_changed(frame)
        if frame.request_id != frame.orig_request_id:
            return self.patch_request_id(frame.raw, frame)
        return frame.raw

    def patch_request_id(self, raw: bytes, frame: Frame) -> bytes:
        raise NotImplementedError

    def encode_changed(self, frame: Frame) -> bytes:
        """Re-encode a frame whose headers were changed. Protocols with headers override."""
        raise ProtocolError("this protocol cannot re-encode changed headers", protocol=self.name)

    # --- behaviour -------------------------------------------------------------
    def heartbeat_request(self, request_id: int) -> Frame | None:
        """A heartbeat request to send to an idle upstream; None if the protocol has none."""
        return None

    def heartbeat_reply(self, request: Frame) -> Frame | None:
        """The local reply to a heartbeat request."""
        return None

    def error_reply(self, request: Frame, reason: Reason, message: str = "") -> Frame | None:
        """A response in the protocol's own error form; None when the protocol has none
        (the connection is then closed)."""
        return None

    def status_to_http(self, frame: Frame) -> int:
        """Map a response's protocol status to an HTTP-style code (200/400/404/500/502/503/504)."""
        return 200

    def id_generator(self, start: int = 1) -> IdGenerator:
        return IdGenerator(self.request_id_bits or 32, start)

    def expects_response(self, frame: Frame) -> bool:
        return frame.kind is Kind.REQUEST

    # --- fast lane (optional) --------------------------------------------------
    def scanner(self, role: Role, limits: Limits = DEFAULT_LIMITS) -> Scanner | None:
        """An optional header-only reader for the proxy's fast lane (pipelined RPC).

        Multiplexed protocols whose plain frames carry a fixed-offset request id can return
        a :class:`Scanner`; the proxy then forwards such frames as their original bytes with
        the id patched in place, without building a :class:`Frame`. Default: None (every
        frame goes through ``decode``).
        """
        return None

    def message_scanner(self, role: Role, limits: Limits = DEFAULT_LIMITS) -> MessageScan | None:
        """An optional header-only reader for the proxy's ping-pong lane (HTTP/1.1 style:
        one request at a time per upstream connection, answers in order).

        ``scan(buf, pos, n)`` returns ``(end, value)`` only for a *plain* message starting
        at ``buf[pos]``: whole in ``buf[:n]``, within the limits, one the decoder of the same
        role and limits (with no message in progress) would decode without error into a
        frame with ``len(raw) == end - pos`` that keeps the connection open (the codec's
        ``keep_alive``), is no heartbeat and, for responses, is final (not interim). Plain
        requests expect a response (``value`` True) whose framing does not depend on the
        request (HTTP: no HEAD, no CONNECT); ``value`` of a response is its
        ``status_to_http``. Anything else: None (the caller decodes). Default: None.
        """
        return None

    def __repr__(self) -> str:
        return f"<codec {self.name}>"


def frame_error(codec: Codec | str, message: str, offset: int | None = None, **kw: Any) -> ProtocolError:
    name = codec if isinstance(codec, str) else codec.name
    return ProtocolError(message, protocol=name, offset=offset, **kw)
