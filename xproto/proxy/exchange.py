"""One request through the proxy: from its arrival to its one answer."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from xproto.codec import Reason
from xproto.pool.request import UpstreamRequest

if TYPE_CHECKING:
    from xproto.frame import Frame
    from xproto.proxy.downstream import DownstreamConnection

log = logging.getLogger("xproto.proxy")

#: ``Exchange.out`` of an answer that cannot be written (codec without an error form):
#: the downstream connection is closed when this answer's turn comes.
CLOSE = b""


class Exchange(UpstreamRequest):
    """A request waiting for its answer. Exactly one of ``on_response``, ``on_failure``,
    ``on_timeout`` answers it (``done`` guards the rest); the downstream leaving abandons it.

    ``timer``: the :class:`~xproto.proxy.timeouts.TimeoutWheel` slot holding it (a dict;
    ``timer.pop(self, None)`` cancels), or None."""

    __slots__ = ("api", "close_after", "down", "down_id", "out", "start", "timer", "up_stats")

    def __init__(self, down: DownstreamConnection, frame: Frame, expects: bool, start: float,
                 api: str) -> None:
        # UpstreamRequest's fields, set here rather than through super().__init__: one call
        # less per request on the hot path
        self.frame = frame
        self.expects = expects
        self.done = False
        self.conn: Any = None
        self.up_id = -1
        self.endpoint: Any = None
        self.tried: Any = None
        self.cluster: Any = None
        self.owner: Any = None
        self.down = down
        self.down_id = frame.request_id
        self.start = start
        self.timer: Any = None
        #: ordered protocols: the answer's bytes once known (None = not yet)
        self.out: bytes | None = None
        self.api = api
        self.close_after = False
        self.up_stats: Any = None

    # --- answers -----------------------------------------------------------------
    def on_response(self, frame: Frame) -> None:
        if self.done or not self.expects:
            return
        self.done = True
        t = self.timer
        if t is not None:
            t.pop(self, None)
            if not t:
                t.clear()   # an emptied slot gives its table back now, not at its deadline
            self.timer = None
        # release(), inlined (the per-response path)
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
        try:
            self.down.respond(self, frame)
        except Exception:
            log.exception("cannot pass on a %s response", frame.protocol)
            self.down.local_reply(self, Reason.UPSTREAM_RESET, "")

    def on_failure(self, reason: Reason, message: str) -> None:
        if self.done:
            return
        if not self.expects:     # a one-way request has nobody waiting: just let it go
            self.done = True
            self.release()
            return
        self.done = True
        t = self.timer
        if t is not None:
            t.pop(self, None)
            if not t:
                t.clear()   # an emptied slot gives its table back now, not at its deadline
            self.timer = None
        self.release()
        self.down.local_reply(self, reason, message)

    def on_timeout(self) -> None:
        self.timer = None
        if self.done:
            return
        self.done = True
        self.release()
        d = self.down
        batch = d.batch
        batch.begin()
        try:
            d.local_reply(self, Reason.TIMEOUT, "upstream request timeout")
        finally:
            batch.end()

    def abandon(self) -> None:
        """The downstream connection went away: free everything, answer nothing."""
        if self.done:
            return
        self.done = True
        t = self.timer
        if t is not None:
            t.pop(self, None)
            if not t:
                t.clear()   # an emptied slot gives its table back now, not at its deadline
            self.timer = None
        self.release()

    # --- back-pressure ---------------------------------------------------------------
    def blocked_by(self, conn: Any) -> None:
        self.down.block_on(conn)
