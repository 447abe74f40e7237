"""Length-prefixed key/value blocks (SOFA Bolt header block and similar).

Layout: repeated ``len key  len value`` where ``len`` is a big-endian unsigned integer of
a fixed width (Bolt: 4 bytes) and the all-ones length (``0xFFFFFFFF``, Java's ``-1``)
stands for a null string. Entries are kept in wire order, including duplicates and
nulls, so an unchanged block re-encodes byte for byte.

Strings are UTF-8; invalid bytes are kept with ``surrogateescape`` so that decoding then
encoding is the identity on arbitrary bytes.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable

from xproto.errors import ProtocolError

Buffer = bytes | bytearray | memoryview

_U32 = struct.Struct(">I")
NULL32 = 0xFFFFFFFF

Pair = tuple[str | None, str | None]


def to_str(b: Buffer) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


def to_bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def decode_kv_block(data: Buffer, start: int, end: int, *, protocol: str,
                    length: struct.Struct = _U32, null: int = NULL32) -> list[Pair]:
    """Decode the entries in ``data[start:end]``; None for null keys/values.

    Raises :class:`ProtocolError` (offset = absolute offset in ``data``) when a length runs
    past ``end`` or the block ends inside an entry. Linear in the block size and never
    allocates more than the block holds.
    """
    out: list[Pair] = []
    pos = start
    width = length.size
    unpack = length.unpack_from
    item: list[str | None] = []
    while pos < end:
        if end - pos < width:
            raise ProtocolError("header block ends inside a length", protocol=protocol, offset=pos)
        n = unpack(data, pos)[0]
        pos += width
        if n == null:
            item.append(None)
        else:
            if n > end - pos:
                raise ProtocolError(f"header string length {n} runs past the header block",
                                    protocol=protocol, offset=pos - width)
            item.append(to_str(data[pos:pos + n]))
            pos += n
        if len(item) == 2:
            out.append((item[0], item[1]))
            item = []
    if item:
        raise ProtocolError("header block ends after a key without its value",
                            protocol=protocol, offset=pos)
    return out


def encode_kv_block(pairs: Iterable[Pair], *, length: struct.Struct = _U32,
                    null: int = NULL32) -> bytes:
    """Encode entries (None = null) into a block; the inverse of :func:`decode_kv_block`."""
    parts: list[bytes] = []
    pack = length.pack
    for k, v in pairs:
        for s in (k, v):
            if s is None:
                parts.append(pack(null))
            else:
                b = to_bytes(s)
                parts.append(pack(len(b)))
                parts.append(b)
    return b"".join(parts)
