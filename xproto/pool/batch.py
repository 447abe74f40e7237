"""Write batching: output produced while handling one read is written once per transport.

Connections append to their own ``wbuf`` through :meth:`Batch.send`. Inside a batch
(``begin()`` .. ``end()``, i.e. while a ``data_received`` or a timer runs) the first append
marks the connection dirty; ``end()`` writes each dirty connection once. Outside a batch the
bytes are written at once.
"""
from __future__ import annotations

from typing import Any


class Writable:
    """Mixin for connections that write through a :class:`Batch`."""

    # the slots live in the concrete classes (asyncio protocols with __slots__)
    __slots__ = ()
    transport: Any
    wbuf: list[bytes]
    dirty: bool

    def flush(self) -> None:
        buf = self.wbuf
        self.dirty = False  # type: ignore[misc]
        if not buf:
            return
        t = self.transport
        if t is None or t.is_closing():
            buf.clear()
            return
        if len(buf) == 1:
            t.write(buf[0])
        else:
            t.write(b"".join(buf))
        buf.clear()


class Batch:
    __slots__ = ("depth", "dirty")

    def __init__(self) -> None:
        self.depth = 0
        self.dirty: list[Writable] = []

    def begin(self) -> None:
        self.depth += 1

    def end(self) -> None:
        self.depth -= 1
        if self.depth == 0 and self.dirty:
            self.flush_all()

    def flush_all(self) -> None:
        dirty = self.dirty
        self.dirty = []
        for w in dirty:
            w.flush()

    def send(self, w: Writable, data: bytes) -> None:
        w.wbuf.append(data)
        if self.depth:
            if not w.dirty:
                w.dirty = True  # type: ignore[misc]
                self.dirty.append(w)
        else:
            w.flush()
