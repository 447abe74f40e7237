"""Write batching: output produced while handling one read is written once per transport.

Connections append to their own ``wbuf`` through :meth:`Batch.send`. Inside a batch
(``begin()`` .. ``end()``, i.e. while a ``data_received`` or a timer runs) the first append
marks the connection dirty; ``end()`` writes each dirty connection once. Outside a batch the
bytes are written at once.

Deferred writes (:meth:`Batch.defer`, used for upstream connections when the batch has a
``loop``): the connection is written once per event-loop iteration instead of once per read,
so requests that arrive on many downstream connections in one poll (128 clients with one
request each) leave in one write on the shared upstream connection. uvloop runs ``call_soon``
callbacks after every I/O callback of the poll, before it polls again.
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
    __slots__ = ("deferred", "depth", "dirty", "loop", "scheduled")

    def __init__(self, loop: Any = None) -> None:
        self.depth = 0
        self.dirty: list[Writable] = []
        #: with a loop: deferred writes are flushed once per loop iteration
        self.loop = loop
        self.deferred: list[Writable] = []
        self.scheduled = False

    def defer(self, w: Writable) -> None:
        """``w`` (not dirty, bytes in its ``wbuf``) is written at the end of this loop
        iteration; without a loop, as :meth:`send` would."""
        loop = self.loop
        if loop is None:
            if self.depth:
                w.dirty = True  # type: ignore[misc]
                self.dirty.append(w)
            else:
                w.flush()
            return
        w.dirty = True  # type: ignore[misc]
        self.deferred.append(w)
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.flush_deferred)

    def flush_deferred(self) -> None:
        self.scheduled = False
        ws = self.deferred
        self.deferred = []
        for w in ws:
            w.flush()

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
