"""The uniform frame model every codec decodes into."""
from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xproto.codec import Codec


class Kind(str, Enum):
    REQUEST = "request"
    ONEWAY = "oneway"
    RESPONSE = "response"


REQUEST = Kind.REQUEST
ONEWAY = Kind.ONEWAY
RESPONSE = Kind.RESPONSE


class Frame:
    """One protocol frame.

    * ``raw``: the original bytes of the whole frame (copied out of the receive buffer).
    * ``request_id``: may be changed by the proxy; ``orig_request_id`` keeps the wire value,
      and ``codec.encode`` patches the id in place when the two differ.
    * ``headers``: a string map, parsed lazily on first access by the codec
      (``codec.parse_headers(frame)``). Mutating it makes ``codec.encode`` re-encode.
    * ``body``: the opaque payload (bytes/memoryview slice of ``raw``), codec-defined.
    * ``meta``: codec-private parse results (offsets, versions ...).
    """

    __slots__ = (
        "_headers", "_orig_headers", "body", "codec", "heartbeat", "kind", "meta",
        "orig_request_id", "protocol", "raw", "request_id", "status",
    )

    def __init__(
        self,
        codec: Codec,
        kind: Kind,
        request_id: int,
        raw: bytes,
        *,
        heartbeat: bool = False,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        body: Any = b"",
        meta: Any = None,
    ) -> None:
        self.codec = codec
        self.protocol: str = codec.name
        self.kind = kind
        self.heartbeat = heartbeat
        self.request_id = request_id
        self.orig_request_id = request_id
        self.status = status
        self.raw = raw
        self.body = body
        self.meta = meta
        self._headers = headers
        # a snapshot to tell whether headers were changed after decoding
        self._orig_headers = dict(headers) if headers is not None else None

    # --- headers -----------------------------------------------------------------
    @property
    def headers(self) -> dict[str, str]:
        h = self._headers
        if h is None:
            h = self.codec.parse_headers(self)
            self._headers = h
            self._orig_headers = dict(h)
        return h

    @headers.setter
    def headers(self, value: dict[str, str]) -> None:
        if self._headers is None:
            self.headers  # noqa: B018 - snapshot the originals first
        self._headers = value

    def headers_parsed(self) -> bool:
        return self._headers is not None

    def headers_changed(self) -> bool:
        return self._headers is not None and self._headers != self._orig_headers

    # --- conveniences --------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        return self.kind is not Kind.RESPONSE

    @property
    def expects_response(self) -> bool:
        return self.kind is Kind.REQUEST

    @property
    def size(self) -> int:
        return len(self.raw)

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "kind": self.kind.value,
            "heartbeat": self.heartbeat,
            "request_id": self.request_id,
            "status": self.status,
            "headers": dict(self.headers),
            "frame_len": len(self.raw),
        }

    def __repr__(self) -> str:
        return (f"<Frame {self.protocol} {self.kind.value} id={self.request_id}"
                f"{' hb' if self.heartbeat else ''} status={self.status} len={len(self.raw)}>")


class BareFrame(Frame):
    """A :class:`Frame` allocated without running ``Frame.__init__``: ``BareFrame()``.

    For decoders' hot paths, which set every slot themselves (``codec``, ``protocol``,
    ``kind``, ``heartbeat``, ``request_id``, ``orig_request_id``, ``status``, ``raw``,
    ``body``, ``meta``, ``_headers``, ``_orig_headers``; the codec tests check that none is
    left unset). It is a Frame in every other respect. Why a subclass: calling a class whose
    ``__init__`` is ``object.__init__`` goes through the type's C call path, ~20 ns cheaper
    than ``object.__new__(Frame)`` (a generic builtin call) and ~5x cheaper than
    ``Frame(...)`` with keywords (CPython 3.11).
    """

    __slots__ = ()
    if TYPE_CHECKING:
        def __init__(self) -> None: ...
    else:
        __init__ = object.__init__
