"""The ping-pong lane: HTTP/1.1-style keep-alive traffic forwarded without building frames.

For a listener whose single route catches everything and a ping-pong codec with a
message scanner (:meth:`~xproto.codec.Codec.message_scanner`), a read that is exactly one
plain request, from a client with nothing in flight, goes to a free upstream connection as
its original bytes, in one write. The upstream connection's ``current`` holds a small
:class:`PingPongCall` instead of an :class:`~xproto.proxy.exchange.Exchange`; no
:class:`~xproto.frame.Frame` is built. A read that is exactly one plain final response to it
goes back the same way, and the connection returns to its pool.

Everything else takes the general path, in order, with the same results: a read with
more or less than one plain message, a client that pipelines, a response the scanner
declines (interim, chunked, ``Connection: close``...), timeouts, resets, drains. At that
moment the call becomes an ``Exchange`` (:meth:`PingPongCall.exchange`) rebuilt from the
bytes it was sent with, so the answer is the general path's.
"""
from __future__ import annotations

import logging
from bisect import bisect_left
from math import ceil
from typing import TYPE_CHECKING, Any

from xproto.codec import Codec, PoolMode, Reason, Role
from xproto.errors import ProtocolError
from xproto.metrics import DURATION_BUCKETS
from xproto.pool.connection import OPEN
from xproto.pool.request import UpstreamRequest
from xproto.proxy.exchange import Exchange

if TYPE_CHECKING:
    from xproto.pool.cluster import Cluster
    from xproto.pool.connection import UpstreamConnection
    from xproto.proxy.downstream import DownstreamConnection
    from xproto.proxy.listener import ListenerRuntime

log = logging.getLogger("xproto.proxy")


class PingPongCall(UpstreamRequest):
    """A lane request on the wire: what an Exchange would hold, minus the frame."""

    __slots__ = ("down", "lane", "raw", "start", "timer")

    def __init__(self, lane: PingPongLane, down: DownstreamConnection, raw: bytes, start: float,
                 conn: Any, endpoint: Any, cluster: Any) -> None:
        # UpstreamRequest's fields, set here (one call less per request)
        self.frame: Any = None
        self.expects = True
        self.done = False
        self.conn = conn
        self.up_id = -1
        self.endpoint = endpoint
        self.tried: Any = None
        self.cluster = cluster
        self.owner: Any = None
        self.lane = lane
        self.down = down
        self.raw = raw
        self.start = start
        self.timer: Any = None

    def exchange(self, arm: bool = True) -> Exchange | None:
        """Leave the lane: an Exchange in this call's place (downstream order, upstream
        connection, pool counts, deadline unless not ``arm``), rebuilt from the bytes it was sent with; None
        when the call is over or the request cannot be rebuilt (its client is closed)."""
        if self.done:
            return None
        self.done = True
        down = self.down
        down.lane_batches.discard(self)
        lane = self.lane
        t = self.timer
        if t is not None:
            self.timer = None
            t.pop(self, None)
        try:
            # a decoder of its own: an HTTP decoder keeps state between calls, and this is
            # the rare path
            frame = lane.codec.new_decoder(Role.REQUESTS, lane.lr.limits).decode(self.raw, 0)
        except ProtocolError:   # cannot happen: the scanner accepted these bytes
            frame = None
        if frame is None or frame.__class__ is int:
            log.error("lane: cannot rebuild a %s request: closing %s", lane.codec.name, down.peer)
            self.release()
            down.close()
            return None
        self.frame = frame   # the upstream connection's keep-alive check reads it
        ex = Exchange(down, frame, True, self.start, "")  # type: ignore[arg-type]
        ex.up_stats = lane.up_stats
        conn = self.conn
        ex.conn = conn
        ex.endpoint = self.endpoint
        ex.cluster = self.cluster
        self.conn = self.endpoint = self.cluster = None
        if conn is not None and conn.current is self:
            conn.current = ex
        order = down.order
        if order is not None:
            order.appendleft(ex)   # it came before anything still to be read
        else:
            down.pending.add(ex)
        timeout = lane.timeout
        if timeout and arm and not down.closed:
            ex.timer = lane.lr.timeouts.add(ex, self.start + timeout)
        return ex

    # --- the pool's calls (the general path met this request) -------------------------
    def on_response(self, frame: Any) -> None:
        ex = self.exchange(False)
        if ex is not None:
            ex.on_response(frame)

    def on_failure(self, reason: Reason, message: str) -> None:
        ex = self.exchange(False)
        if ex is not None:
            ex.on_failure(reason, message)

    def on_timeout(self) -> None:
        self.timer = None
        ex = self.exchange(False)
        if ex is not None:
            ex.on_timeout()

    def abandon(self) -> None:
        """The client went away: free everything, answer nothing (the upstream connection,
        whose answer would be taken for the next request's, is closed by ``release``)."""
        if self.done:
            return
        self.done = True
        t = self.timer
        if t is not None:
            self.timer = None
            t.pop(self, None)
        self.release()

    def blocked_by(self, conn: Any) -> None:
        self.down.block_on(conn)


class PingPongLane:
    """One listener's ping-pong lane for one codec (see the module docstring)."""

    __slots__ = ("cluster", "codec", "lr", "scan", "scan_response", "timeout", "up_stats",
                 "wheel")

    def __init__(self, lr: ListenerRuntime, codec: Codec, cluster: Cluster, timeout: float | None,
                 scan: Any, scan_response: Any) -> None:
        self.lr = lr
        self.codec = codec
        self.cluster = cluster
        self.timeout = timeout
        self.scan = scan
        self.scan_response = scan_response
        self.up_stats = lr.up_stats(cluster.name, codec.name)
        self.wheel = lr.timeouts

    @staticmethod
    def for_listener(lr: ListenerRuntime, codec: Codec) -> PingPongLane | None:
        """The lane of ``codec`` on ``lr``, or None when its requests need the general path."""
        route = lr.fixed_route
        if route is None or type(codec).message_scanner is Codec.message_scanner:
            return None
        if codec.pool_mode is not PoolMode.PINGPONG or type(codec).pool_mode_for is not Codec.pool_mode_for:
            return None
        if type(codec).encode is not Codec.encode or type(codec).expects_response is not Codec.expects_response:
            return None
        cluster = lr.clusters.get(route.cluster)
        if cluster is None:
            return None
        if cluster.settings.protocol is not None and cluster.settings.protocol != codec.name:
            return None
        scan = codec.message_scanner(Role.REQUESTS, lr.limits)
        scan_response = codec.message_scanner(Role.RESPONSES, cluster.limits)
        if scan is None or scan_response is None:
            return None
        return PingPongLane(lr, codec, cluster, route.timeout, scan, scan_response)

    # --- requests ------------------------------------------------------------------------
    def requests(self, down: DownstreamConnection, data: bytes) -> None:
        """A read on a lane connection."""
        if down.inflight or down.buf:
            self.general(down, data)
            return
        n = len(data)
        r = self.scan(data, 0, n)
        if r is None or r[0] != n:
            self.general(down, data)
            return
        cl = self.cluster
        if cl.inflight >= cl.settings.max_pending or cl.closing:
            self.general(down, data)
            return
        # a free, open upstream connection (PingPongPool.send's first step), else the
        # general path connects or queues
        ep = cl.single
        if ep is None:
            ep = cl.pick()
            if ep is None:
                self.general(down, data)
                return
            held = True
        else:
            held = False
        conn: Any = None
        if ep.healthy:
            pool = ep.fast_pools.get(self.codec)
            if pool is not None and not pool.waiting:
                free = pool.free
                while free:
                    c = free.pop()
                    if c.state == OPEN and c.current is None and not c.queued:
                        conn = c
                        break
        if conn is None:
            if held:
                cl.held = ep        # the general path's pick gets this endpoint
            self.general(down, data)
            return
        if conn.fast is None:
            conn.fast = self.responses
        start = down.loop.time()
        call = PingPongCall(self, down, data, start, conn, ep, cl)
        conn.current = call
        ep.active += 1
        cl.inflight += 1
        down.inflight = 1
        down.lane_batches.add(call)
        down.stats.requests += 1
        conn.counter.requests += 1
        timeout = self.timeout
        if timeout:
            # TimeoutWheel.add, inlined for the slot of the previous add (the common case)
            wheel = self.wheel
            deadline = start + timeout
            if ceil(deadline * wheel._inv) == wheel._last_n:
                slot = wheel._last_slot
                slot[call] = None
                call.timer = slot
            else:
                call.timer = wheel.add(call, deadline)
        if conn.dirty:
            conn.wbuf.append(data)
        else:
            t = conn.transport
            if not t.is_closing():
                t.write(data)
        if conn.paused:
            down.block_on(conn)   # the upstream does not keep up: hold the sender
        if down.frame_timer is not None:
            down.frame_timer.cancel()
            down.frame_timer = None

    def general(self, down: DownstreamConnection, data: bytes) -> None:
        """The general path for this read; a call still in flight leaves the lane first
        (its answer keeps its place in the order)."""
        batch = down.batch
        batch.begin()
        try:
            if down.lane_batches:
                for call in list(down.lane_batches):
                    call.exchange()
                if down.closed:
                    return
            down._feed(data)
        finally:
            batch.end()

    # --- responses -------------------------------------------------------------------------
    def responses(self, conn: UpstreamConnection, src: Any, pos: int, n: int) -> int:
        """The upstream connection's hook: a read that is exactly the plain final response
        to its lane call is answered here; returns ``n`` then, else ``pos`` (the general
        path decodes)."""
        call = conn.current
        if call.__class__ is not PingPongCall or src is conn.buf:
            return pos
        r = self.scan_response(src, pos, n)
        if r is None or r[0] != n:
            return pos
        status = r[1]
        conn.current = None
        call.done = True
        call.conn = None
        t = call.timer
        if t is not None:
            call.timer = None
            t.pop(call, None)
        ep = call.endpoint
        call.endpoint = None
        ep.active -= 1
        call.cluster = None
        self.cluster.inflight -= 1
        down = call.down
        down.lane_batches.discard(call)
        if not down.closed:
            stats = down.stats
            d = stats.responses
            d[status] = d.get(status, 0) + 1
            up = self.up_stats.responses
            up[status] = up.get(status, 0) + 1
            secs = conn.last_active - call.start
            h = stats.hist
            h.counts[bisect_left(DURATION_BUCKETS, secs)] += 1
            h.sum += secs
            chunk = src if pos == 0 else src[pos:n]
            if down.dirty:
                down.wbuf.append(chunk)
            else:
                tr = down.transport
                if tr is not None and not tr.is_closing():
                    tr.write(chunk)
            left = down.inflight - 1
            down.inflight = left
            if not left and (down.eof or down.lr.draining):
                down.answered_all()
        if conn.state == OPEN:
            pool = conn.pool
            if pool.waiting:     # it takes a waiting request (the general path's)
                batch = conn.batch
                batch.begin()
                try:
                    pool.idle(conn)
                finally:
                    batch.end()
            else:
                pool.free.append(conn)   # pool.idle's work
        return n

    def drain(self, down: DownstreamConnection, reason: Reason, message: str) -> None:
        """Shutdown: answer ``down``'s lane call still in flight with a local reply."""
        for call in list(down.lane_batches):
            ex = call.exchange(False)
            if ex is not None:
                ex.on_failure(reason, message)
