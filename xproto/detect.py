"""Protocol detection: candidates tried in the given order, three-valued matchers."""
from __future__ import annotations

from collections.abc import Sequence

from xproto.codec import MATCH, NO_MATCH, Codec
from xproto.errors import ProtocolError

Buffer = bytes | bytearray | memoryview

#: never wait for more than this many bytes to decide (bounded "need more")
MAX_DETECT_BYTES = 64


def detect(candidates: Sequence[Codec], data: Buffer, final: bool = False) -> Codec | int:
    """Pick the codec for a connection from its first bytes.

    Candidates are tried in order. The first that says MATCH wins, *unless* an earlier
    candidate still needs more bytes: then we wait (returns the bytes needed), so the
    same bytes always pick the same codec regardless of chunking.
    ``final`` = no more bytes will come: pending candidates count as no.
    Raises ProtocolError when no candidate matches.
    """
    need = 0
    for codec in candidates:
        r = codec.match(data)
        if r == MATCH:
            if need and not final:
                return need
            return codec
        if r == NO_MATCH:
            continue
        # r > 0: this candidate needs more
        if len(data) + r > max(MAX_DETECT_BYTES, codec.match_bytes):
            continue  # the bound: it had its chance
        if not need or r < need:
            need = r
    if need and not final:
        return need
    raise ProtocolError(
        f"no protocol matches the first bytes {bytes(data[:16]).hex()} "
        f"(candidates: {', '.join(c.name for c in candidates)})", offset=0)
