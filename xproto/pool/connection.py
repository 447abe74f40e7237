"""One upstream connection: an asyncio Protocol that writes requests with fresh ids
(multiplex) or one at a time (ping-pong) and hands decoded responses back to their
requests. It knows request ids and pool modes, never a protocol's wire format: framing,
id patching and heartbeat frames come from the codec interface."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from xproto.codec import Codec, Decoder, Reason, Role
from xproto.errors import ProtocolError
from xproto.frame import Kind
from xproto.pool.batch import Writable

if TYPE_CHECKING:
    from xproto.frame import Frame
    from xproto.pool.cluster import ConnPool
    from xproto.pool.request import UpstreamRequest

log = logging.getLogger("xproto.pool")

CONNECTING, OPEN, CLOSED = 0, 1, 2
#: id passthrough stops on a connection after this many requests were abandoned in flight
MAX_TAINTED = 4096
_RESPONSE = Kind.RESPONSE
_REQUEST = Kind.REQUEST


class UpstreamConnection(asyncio.Protocol, Writable):
    __slots__ = (
        "batch",
        "blocked",
        "buf",
        "close_reason",
        "codec",
        "counter",
        "current",
        "decoder",
        "dirty",
        "endpoint",
        "fast",
        "hb_failures",
        "hb_id",
        "hb_timer",
        "interim",
        "ka_timer",
        "keep_alive",
        "lane_scan",
        "last_active",
        "loop",
        "multiplex",
        "next_id",
        "owner",
        "passthrough",
        "paused",
        "pending",
        "plain_encode",
        "pool",
        "queued",
        "request_sent",
        "state",
        "stats",
        "tainted",
        "transport",
        "wbuf",
    )

    def __init__(self, pool: ConnPool, codec: Codec, multiplex: bool) -> None:
        cl = pool.cluster
        self.pool = pool
        self.endpoint = pool.endpoint
        self.codec = codec
        self.multiplex = multiplex
        self.decoder = codec.new_decoder(Role.RESPONSES, cl.limits)
        self.next_id = codec.id_generator(cl.settings.id_start)
        self.pending: dict[int, UpstreamRequest] = {}
        self.queued: list[UpstreamRequest] = []
        self.current: UpstreamRequest | None = None  # ping-pong: the request on the wire
        self.transport: Any = None
        self.state = CONNECTING
        self.buf = bytearray()
        self.wbuf: list[bytes] = []
        self.dirty = False
        self.batch = cl.batch
        self.loop = cl.loop
        self.last_active = 0.0
        self.hb_id = -1
        self.hb_timer: asyncio.TimerHandle | None = None
        self.hb_failures = 0
        self.ka_timer: asyncio.TimerHandle | None = None
        self.paused = False
        #: downstream readers paused because this connection's send buffer is full
        self.blocked: list[Any] = []
        self.stats = cl.stats
        #: requests written (``counter.requests += 1``: no call on the hot path)
        self.counter = cl.stats.counter(codec.name)
        #: the decoder's request_sent, or None when it is the base no-op
        self.request_sent = (None if type(self.decoder).request_sent is Decoder.request_sent
                             else self.decoder.request_sent)
        #: the codec's encode is the base one: skip the call for unparsed frames
        self.plain_encode = type(codec).encode is Codec.encode
        #: id passthrough: the largest id the downstream id may be to be reused upstream
        #: (0: off). A request's own id, when free on this connection, saves patching the
        #: id into the request and back into the response.
        bits = codec.request_id_bits
        self.passthrough = ((1 << bits) - 1) if (multiplex and bits and cl.settings.id_passthrough) else 0
        #: ids of requests forgotten while in flight (timeouts, downstream gone): their late
        #: responses may still come, so passthrough must not hand them out again
        self.tainted: set[int] = set()
        self.close_reason = ""
        #: optional codec hook: does the connection stay open after this message?
        self.keep_alive = getattr(codec, "keep_alive", None)
        #: optional codec hook: an interim response (HTTP 1xx) that does not end the exchange
        self.interim = getattr(codec, "is_interim", None)
        #: bind mode: the downstream connection this upstream connection belongs to
        self.owner: Any = None
        #: fast-lane hook installed by the proxy (xproto.proxy.lane): ``fast(self, buf, pos,
        #: n) -> pos`` answers the lane requests whose responses start at ``pos``. Lane
        #: requests sit in ``pending`` as tuples whose first item has a ``lane`` with an
        #: ``exchange(conn, entry)`` that turns one into a request object when the general
        #: path must answer it.
        self.fast: Any = None
        self.lane_scan: Any = None

    # --- load --------------------------------------------------------------------------
    @property
    def load(self) -> int:
        return len(self.pending) + len(self.queued) + (self.current is not None)

    @property
    def busy(self) -> bool:
        """Ping-pong: a request is on the wire or waiting for the connect."""
        return self.current is not None or bool(self.queued)

    # --- sending -------------------------------------------------------------------------
    def send(self, req: UpstreamRequest) -> None:
        req.conn = self
        if self.state == OPEN:
            self._write(req)
        elif self.state == CONNECTING:
            self.queued.append(req)
        else:  # closed under our feet: treat like a reset before sending
            req.conn = None
            self.pool.cluster.retry(req, self.endpoint, "upstream connection closed")

    def _write(self, req: UpstreamRequest) -> None:
        frame = req.frame
        multiplex = self.multiplex
        expects = req.expects
        if multiplex:
            uid = frame.orig_request_id
            pending = self.pending
            if not (0 < uid <= self.passthrough and uid not in pending and uid != self.hb_id
                    and uid not in self.tainted):
                uid = self.next_id()
            if expects and (uid in pending or uid == self.hb_id):
                # wrapped onto an id still in flight: take the next free one (bounded)
                for _ in range(len(pending) + 2):
                    uid = self.next_id()
                    if uid not in pending and uid != self.hb_id:
                        break
            req.up_id = uid
            frame.request_id = uid
        try:
            if self.plain_encode and frame._headers is None:
                # codec.encode's own fast path without its calls (headers never parsed,
                # hence unchanged): the original bytes with the id patched in place
                data = frame.raw if frame.request_id == frame.orig_request_id \
                    else self.codec.patch_request_id(frame.raw, frame)
            else:
                data = self.codec.encode(frame)
        except ProtocolError as e:
            # this request cannot be written (a codec cannot re-encode it): answer it alone
            req.conn = None
            req.on_failure(Reason.BAD_REQUEST, f"cannot encode the request: {e}")
            if not multiplex and self.state == OPEN and self.current is None:
                self.pool.idle(self)
            return
        if expects:
            if multiplex:
                self.pending[uid] = req
            else:
                self.current = req
            rs = self.request_sent
            if rs is not None:
                rs(frame)
        self.counter.requests += 1
        self.wbuf.append(data)
        if not self.dirty:
            # one write per loop iteration for all the requests it got (Batch.defer)
            self.batch.defer(self)
        if not expects:
            req.written()
            if not multiplex:
                self.pool.idle(self)
        if self.paused:
            # the upstream does not keep up: hold the sender
            req.blocked_by(self)

    def forget(self, req: UpstreamRequest) -> None:
        """``req`` was answered locally (timeout) or its downstream left."""
        if self.multiplex:
            uid = req.up_id
            if self.pending.get(uid) is req:
                del self.pending[uid]
                if self.passthrough:
                    tainted = self.tainted
                    tainted.add(uid)
                    if len(tainted) > MAX_TAINTED:
                        # many requests abandoned in flight: back to generator ids only
                        self.passthrough = 0
                        tainted.clear()
        elif self.current is req:
            # a late response would be taken for the next request's: this connection is spent
            self.current = None
            self.close("request abandoned on a ping-pong connection")
        # queued requests are skipped on connect (req.done)

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.state = OPEN
        self.last_active = self.loop.time()
        s = self.pool.cluster.settings
        transport.set_write_buffer_limits(high=s.high_water, low=s.low_water)
        self.endpoint.connected()
        self.stats.upstream_connection(self.codec.name, +1)
        queued, self.queued = self.queued, []
        wrote = False
        self.batch.begin()
        try:
            for req in queued:
                if not req.done:
                    self._write(req)
                    wrote = True
            if not self.multiplex and not wrote:
                self.pool.idle(self)
        finally:
            self.batch.end()
        self._arm_keepalive()

    def connect_failed(self, exc: BaseException) -> None:
        if self.state != CONNECTING:
            return
        self.state = CLOSED
        self.pool.remove(self)
        self.endpoint.failed(self.loop.time())
        self.stats.connect_failure(self.codec.name)
        msg = f"connect to {self.endpoint} failed: {exc or type(exc).__name__}"
        log.info("%s", msg)
        queued, self.queued = self.queued, []
        cluster = self.pool.cluster
        for req in queued:
            if not req.done:
                req.conn = None
                cluster.retry(req, self.endpoint, msg)
        self.pool.failed(self, msg)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        buf = self.buf
        fast = self.fast
        if fast is not None and not buf:
            # the proxy's fast lane first (a read of its answers only is done here; it
            # writes to the transports itself, in order)
            p = fast(self, data, 0, len(data))
            if p == len(data) or self.state == CLOSED:
                return
            data = data[p:]
        if buf:
            buf += data
            src: Any = buf
        else:
            src = data
        decode = self.decoder.decode
        pending = self.pending if self.multiplex else None
        # ping-pong without heartbeats: bytes with no request in flight are out of step
        strict = pending is None and not self.codec.has_heartbeat
        pos = 0
        n = len(src)
        self.batch.begin()
        fast = self.fast
        try:
            while pos < n:
                if fast is not None:
                    p = fast(self, src, pos, n)
                    if p != pos:
                        pos = p
                        if self.state == CLOSED:
                            return
                        continue
                if strict and self.current is None:
                    self._stray()
                    return
                r = decode(src, pos)
                if r.__class__ is int:
                    break
                pos += len(r.raw)  # type: ignore[union-attr]
                if pending is not None and r.kind is _RESPONSE:  # type: ignore[union-attr]
                    # the multiplexed response path of _on_frame, inlined
                    rid = r.request_id  # type: ignore[union-attr]
                    if rid != self.hb_id:
                        req = pending.pop(rid, None)
                        if req.__class__ is tuple:   # a lane request the lane declined
                            req = req[0].lane.exchange(self, req)  # type: ignore[index]
                            if req is None:
                                continue
                        if req is not None:
                            req.conn = None
                            req.on_response(r)  # type: ignore[arg-type]
                            if self.state == CLOSED:
                                return
                            continue
                self._on_frame(r)  # type: ignore[arg-type]
                if self.state == CLOSED:
                    return
        except ProtocolError as e:
            self.stats.upstream_decode_error(self.codec.name)
            log.warning("bad response bytes from %s: %s", self.endpoint, e)
            self.close(f"bad response bytes: {e}")
            return
        finally:
            self.batch.end()
        if src is buf:
            del buf[:pos]
        elif pos < n:
            buf += memoryview(data)[pos:]

    def _stray(self) -> None:
        """Ping-pong: bytes arrived with no request in flight (a stray or duplicated answer,
        an HTTP 408 before an idle close): whatever follows cannot be matched to a request,
        so the connection leaves the pool at once and closes."""
        self.stats.unknown_response(self.codec.name)
        log.info("upstream %s sent bytes with no request in flight: closing the connection",
                 self.endpoint)
        self.buf.clear()
        self.pool.remove(self)
        self.close("bytes with no request in flight")

    def _on_frame(self, frame: Frame) -> None:
        if frame.kind is not _RESPONSE:
            # the server speaks first: a heartbeat (Dubbo providers send them to idle
            # consumers and close after missing 3) is answered; anything else is dropped
            if frame.heartbeat and frame.kind is _REQUEST:
                reply = self.codec.heartbeat_reply(frame)
                if reply is not None:
                    self.batch.send(self, self.codec.encode(reply))
                    self.stats.heartbeat(self.codec.name, "upstream_reply")
            else:
                self.stats.unknown_response(self.codec.name)
            return
        if self.multiplex:
            rid = frame.request_id
            if rid == self.hb_id and (frame.heartbeat or not self.pending.get(rid)):
                self._heartbeat_ok()
                return
            req = self.pending.pop(rid, None)
            if req.__class__ is tuple:   # a lane request (xproto.proxy.lane)
                req = req[0].lane.exchange(self, req)  # type: ignore[index]
                if req is None:
                    return
            if req is None:
                self.stats.unknown_response(self.codec.name)
                self.tainted.discard(rid)   # the late answer came: the id is free again
                return
        else:
            req = self.current
            if req is None:
                self.stats.unknown_response(self.codec.name)
                return
            interim = self.interim
            if interim is not None and interim(frame):
                return  # the request went out whole: a 100 Continue means nothing downstream
            self.current = None
        req.conn = None
        req.on_response(frame)
        if not self.multiplex and self.state == OPEN:
            ka = self.keep_alive
            if ka is not None and not (ka(frame) and ka(req.frame)):
                self.close()  # the peer closes after this response (HTTP Connection: close)
            else:
                self.pool.idle(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        blocked, self.blocked = self.blocked, []
        for d in blocked:
            d.unblock(self)

    def eof_received(self) -> bool | None:
        return None  # close

    def connection_lost(self, exc: BaseException | None) -> None:
        was_open = self.state == OPEN
        self.state = CLOSED
        self.pool.remove(self)
        if was_open:
            self.stats.upstream_connection(self.codec.name, -1)
        for t in (self.hb_timer, self.ka_timer):
            if t is not None:
                t.cancel()
        self.hb_timer = self.ka_timer = None
        reason = self.close_reason or (f"upstream {self.endpoint} closed the connection"
                                       + (f": {exc}" if exc else ""))
        if self.current is not None and self.buf and not self.close_reason:
            # a response delimited by the end of the connection (HTTP without a length)
            eof = getattr(self.decoder, "eof", None)
            if eof is not None:
                try:
                    last = eof(self.buf, 0)
                except ProtocolError:
                    last = None
                if last is not None:
                    req = self.current
                    self.current = None
                    req.conn = None
                    self.batch.begin()
                    try:
                        req.on_response(last)
                    finally:
                        self.batch.end()
        pending = [req[0].lane.exchange(self, req) if req.__class__ is tuple else req
                   for req in self.pending.values()]
        self.pending.clear()
        if self.current is not None:
            pending.append(self.current)
            self.current = None
        queued, self.queued = self.queued, []
        self.batch.begin()
        try:
            for req in pending:
                if req is not None and not req.done:
                    req.conn = None
                    req.on_failure(Reason.UPSTREAM_RESET, reason)
            cluster = self.pool.cluster
            for req in queued:  # never written: may go elsewhere
                if not req.done:
                    req.conn = None
                    cluster.retry(req, self.endpoint, reason)
        finally:
            self.batch.end()
        blocked, self.blocked = self.blocked, []
        for d in blocked:
            d.unblock(self)
        self.pool.lost(self, was_open)

    def close(self, reason: str = "") -> None:
        if self.state == CLOSED:
            return
        if reason and not self.close_reason:
            self.close_reason = reason
        if self.transport is not None:
            self.flush()
            self.transport.abort() if reason else self.transport.close()
        else:
            self.connect_failed(ConnectionAbortedError(reason or "closed"))

    # --- keepalive -------------------------------------------------------------------------
    def _arm_keepalive(self) -> None:
        s = self.pool.cluster.settings
        if s.keepalive_interval > 0 and self.multiplex and self.codec.has_heartbeat:
            self.ka_timer = self.loop.call_at(self.last_active + s.keepalive_interval, self._keepalive)

    def _keepalive(self) -> None:
        self.ka_timer = None
        if self.state != OPEN:
            return
        s = self.pool.cluster.settings
        now = self.loop.time()
        due = self.last_active + s.keepalive_interval
        if now < due or self.hb_timer is not None:
            self.ka_timer = self.loop.call_at(max(due, now + s.keepalive_interval * 0.1), self._keepalive)
            return
        hid = self.next_id()
        while hid in self.pending:
            hid = self.next_id()
        frame = self.codec.heartbeat_request(hid)
        if frame is None:
            return
        self.hb_id = hid
        self.decoder.request_sent(frame)
        self.batch.send(self, self.codec.encode(frame))
        self.stats.heartbeat(self.codec.name, "upstream_sent")
        self.hb_timer = self.loop.call_later(s.keepalive_timeout, self._heartbeat_missed)
        self.ka_timer = self.loop.call_later(s.keepalive_interval, self._keepalive)

    def _heartbeat_ok(self) -> None:
        self.hb_id = -1
        if self.hb_timer is not None:
            self.hb_timer.cancel()
            self.hb_timer = None
        self.hb_failures = 0
        self.stats.heartbeat(self.codec.name, "upstream_ok")

    def _heartbeat_missed(self) -> None:
        self.hb_timer = None
        self.hb_id = -1
        if self.state != OPEN:
            return
        self.hb_failures += 1
        self.stats.heartbeat(self.codec.name, "upstream_missed")
        failures = self.pool.cluster.settings.keepalive_failures
        if self.hb_failures >= failures:
            log.warning("upstream %s missed %d heartbeats: dropping the connection",
                        self.endpoint, self.hb_failures)
            self.pool.reconnect_after_drop = True
            self.close(f"upstream {self.endpoint} missed {self.hb_failures} heartbeats")
        else:
            # the interval timer keeps running; a missed beat is retried on the next tick,
            # counted from now rather than from the last activity
            pass

    def __repr__(self) -> str:
        return f"<UpstreamConnection {self.endpoint} state={self.state} load={self.load}>"
