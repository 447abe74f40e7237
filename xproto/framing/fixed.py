"""Helpers for fixed-header, length-prefixed frames (Dubbo, Bolt, framed Thrift, Kafka).

All of these protocols share one shape: a fixed header of ``H`` bytes whose fields give
the length of what follows. The decode step is always

1. fewer than ``H`` bytes buffered -> "need ``H - have`` more";
2. unpack the header with one precompiled :class:`struct.Struct`, check the declared
   length against a named limit (so the verdict does not depend on TCP chunking and
   nothing is allocated for a hostile length);
3. fewer than the whole frame buffered -> "need the rest";
4. copy the frame out of the receive buffer: ``buf[pos:pos + n]`` for ``bytes`` (the common
   case: the transport's read), :func:`copy_out` otherwise.

These helpers are the shared, protocol-neutral parts of steps 2-4. They are tiny on
purpose: the hot path of a codec should stay one ``unpack_from`` plus a few compares,
so codecs inline the fast path and call these for the error cases.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from xproto.errors import FrameTooLarge, ProtocolError
from xproto.frame import BareFrame, Frame, Kind

if TYPE_CHECKING:
    from xproto.codec import Codec

Buffer = bytes | bytearray | memoryview

U32 = struct.Struct(">I")
I32 = struct.Struct(">i")
U16 = struct.Struct(">H")


def too_large(protocol: str, limit_name: str, value: int, maximum: int, offset: int | None = None
              ) -> FrameTooLarge:
    """The error for a declared length above its limit (raise it)."""
    return FrameTooLarge(limit_name, value, maximum, protocol=protocol, offset=offset)


def check_length(protocol: str, limit_name: str, value: int, maximum: int,
                 offset: int | None = None) -> None:
    """Raise :class:`FrameTooLarge` when ``value`` > ``maximum``."""
    if value > maximum:
        raise too_large(protocol, limit_name, value, maximum, offset)


#: from this size on, a bytearray frame is copied out through a memoryview (one copy) rather
#: than ``bytes(buf[a:b])`` (two copies, but no view objects): measured crossover 8-16 KiB
MEMORYVIEW_COPY_MIN = 8192


def copy_out(buf: Buffer, pos: int, n: int) -> bytes:
    """``bytes(buf[pos:pos + n])``, copied as few times as the buffer type allows.

    Decoders inline the ``bytes`` case (``buf[pos:pos + n]``: one copy, none at all when the
    frame is the whole buffer) and call this for the rest: a ``bytearray`` receive buffer
    (the proxy's, when a frame spans reads) or a ``memoryview``.
    """
    if pos == 0 and n == len(buf):
        return bytes(buf)                 # the buffer holds exactly this frame: one copy
    if n < MEMORYVIEW_COPY_MIN or type(buf) is not bytearray:
        return bytes(buf[pos:pos + n])    # small: two copies beat creating two views
    return bytes(memoryview(buf)[pos:pos + n])


def frame_or_need(buf: Buffer, pos: int, total: int) -> bytes | int:
    """The ``total``-byte frame at ``pos`` copied out of ``buf``, or the bytes still missing."""
    have = len(buf) - pos
    if have < total:
        return total - have
    return buf[pos:pos + total] if type(buf) is bytes else copy_out(buf, pos, total)


def u32_prefixed_length(buf: Buffer, pos: int, *, protocol: str, limit_name: str, maximum: int,
                        signed: bool = True) -> int:
    """Total length (prefix included) of a frame that starts with a 4-byte big-endian size.

    Caller guarantees 4 bytes are available. A negative size (``signed``, as Kafka's and
    Thrift's ``i32``) is a :class:`ProtocolError`; a size above ``maximum`` is
    :class:`FrameTooLarge`. Framed Thrift and Kafka use this.
    """
    size: int = (I32 if signed else U32).unpack_from(buf, pos)[0]
    if size < 0:
        raise ProtocolError(f"negative frame size {size}", protocol=protocol, offset=pos)
    if size > maximum:
        raise too_large(protocol, limit_name, size, maximum, pos)
    return 4 + size


def new_frame(codec: Codec, kind: Kind, request_id: int, raw: bytes, heartbeat: bool,
              status: int | None, body: Any = b"", meta: Any = None) -> Frame:
    """Build a :class:`Frame` without going through ``Frame.__init__``'s keyword handling.

    Same result as ``Frame(codec, kind, request_id, raw, heartbeat=..., status=..., body=...,
    meta=...)`` with headers left unparsed, at about a third of the cost (a
    :class:`~xproto.frame.BareFrame`). The decoders' hot paths inline the same assignments
    instead of calling this; ``tests/test_dubbo.py`` checks that it sets every slot of
    :class:`Frame`, so adding a slot there cannot silently break it.
    """
    f = BareFrame()
    f.codec = codec
    f.protocol = codec.name
    f.kind = kind
    f.heartbeat = heartbeat
    f.request_id = request_id
    f.orig_request_id = request_id
    f.status = status
    f.raw = raw
    f.body = body
    f.meta = meta
    f._headers = None
    f._orig_headers = None
    return f
