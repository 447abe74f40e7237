"""What the pool needs to know about a request: its frame, whether it waits for an
answer, and where to deliver the answer. The proxy subclasses :class:`UpstreamRequest`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xproto.codec import Reason

if TYPE_CHECKING:
    from xproto.frame import Frame
    from xproto.pool.cluster import Endpoint


class UpstreamRequest:
    __slots__ = ("cluster", "conn", "done", "endpoint", "expects", "frame", "owner", "tried", "up_id")

    def __init__(self, frame: Frame, expects: bool) -> None:
        self.frame = frame
        self.expects = expects
        #: answered (or abandoned): the pool skips it wherever it still sits
        self.done = False
        #: the upstream connection it was written to (or queued on)
        self.conn: Any = None
        self.up_id = -1
        self.endpoint: Endpoint | None = None
        #: endpoints whose connect failed for this request (retry elsewhere)
        self.tried: list[Endpoint] | None = None
        self.cluster: Any = None
        #: bind mode: the downstream connection that owns a dedicated upstream connection
        #: (hashable, with ``upstream_lost(conn)``); None = shared pools
        self.owner: Any = None

    # --- called by the pool --------------------------------------------------------
    def on_response(self, frame: Frame) -> None:
        raise NotImplementedError

    def on_failure(self, reason: Reason, message: str) -> None:
        raise NotImplementedError

    def blocked_by(self, conn: Any) -> None:
        """The connection ``conn`` was written to is over its high-water mark. The owner
        may stop reading new requests and register in ``conn.blocked`` for an
        ``unblock(conn)`` call. Default: nothing."""

    def written(self) -> None:
        """A one-way request was written: it is finished as far as the pool goes."""
        self.done = True
        self.release()

    # --- called by the owner ---------------------------------------------------------
    def release(self) -> None:
        """Give back the pool resources (in-flight counts, pending slot) of a finished or
        abandoned request. Idempotent."""
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.forget(self)
        ep = self.endpoint
        if ep is not None:
            self.endpoint = None
            ep.active -= 1
        cl = self.cluster
        if cl is not None:
            self.cluster = None
            cl.inflight -= 1
