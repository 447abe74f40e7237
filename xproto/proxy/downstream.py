"""A downstream (client) connection: detection, decoding, routing, answers.

The logic only needs a transport-like object (``write``, ``close``, ``abort``,
``is_closing``, ``pause_reading``, ``resume_reading``, ``set_write_buffer_limits``,
``get_extra_info``) and the listener's runtime (clock via ``loop.time``/``call_later``,
route table, clusters): tests and the fuzzer can drive it with a fake transport, no socket.

Every request that expects a response gets exactly one answer: the upstream's response or
a local reply (``codec.error_reply``). Protocols whose clients need responses in request
order (ping-pong protocols such as HTTP/1.1, and Kafka) get them in order: answers that
overtake an earlier request wait for it.
"""
from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import deque
from typing import TYPE_CHECKING, Any

from xproto.codec import Codec, PoolMode, Reason, Role
from xproto.detect import detect
from xproto.errors import ProtocolError
from xproto.frame import Frame, Kind
from xproto.metrics import DURATION_BUCKETS
from xproto.pool.batch import Writable
from xproto.proxy.exchange import CLOSE, Exchange

if TYPE_CHECKING:
    from xproto.proxy.listener import ListenerRuntime

log = logging.getLogger("xproto.proxy")

_REQUEST = Kind.REQUEST
_RESPONSE = Kind.RESPONSE

#: protocols whose clients need responses in request order even though ids exist
ORDERED_PROTOCOLS = frozenset({"kafka"})
#: protocols whose downstream connections get their own upstream connection (bind mode):
#: Kafka keeps per-connection state (SASL) and a broker serves a connection's requests one
#: after another, so a long-polling Fetch on a shared connection would hold up everyone
BIND_PROTOCOLS = frozenset({"kafka"})


def plain_encode(codec: Codec) -> bool:
    """Whether ``codec.encode`` is the base one: original bytes, id patched via
    ``patch_request_id``, re-encoded only when headers changed. The proxy then skips the
    call (and the header comparison) for frames whose headers were never parsed."""
    return type(codec).encode is Codec.encode


def plain_expects(codec: Codec) -> bool:
    """Whether ``codec.expects_response`` is the base one (``kind is REQUEST``)."""
    return type(codec).expects_response is Codec.expects_response


def needs_order(codec: Codec) -> bool:
    return codec.pool_mode is PoolMode.PINGPONG or codec.name in ORDERED_PROTOCOLS or bool(
        getattr(codec, "ordered_responses", False))


class DownstreamConnection(asyncio.Protocol, Writable):
    __slots__ = (
        "api_of",
        "batch",
        "bind",
        "blocked_on",
        "bound",
        "buf",
        "closed",
        "codec",
        "counted",
        "decoder",
        "dirty",
        "eof",
        "frame_timer",
        "idle_timer",
        "inflight",
        "kafka",
        "keep_alive",
        "lane",
        "lane_batches",
        "last_active",
        "loop",
        "lr",
        "order",
        "peer",
        "pending",
        "plain_encode",
        "plain_expects",
        "reading",
        "stats",
        "targets",
        "transport",
        "wbuf",
        "write_paused",
    )

    def __init__(self, lr: ListenerRuntime) -> None:
        self.lr = lr
        self.loop = lr.loop
        self.batch = lr.batch
        self.transport: Any = None
        self.codec: Codec | None = None
        self.decoder: Any = None
        self.stats: Any = None
        self.buf = bytearray()
        self.wbuf: list[bytes] = []
        self.dirty = False
        #: unordered protocols: exchanges waiting for an answer
        self.pending: set[Exchange] = set()
        #: ordered protocols: exchanges in request order (answers leave from the head)
        self.order: deque[Exchange] | None = None
        self.inflight = 0
        self.frame_timer: asyncio.TimerHandle | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.last_active = 0.0
        self.write_paused = False
        self.blocked_on: list[Any] = []
        self.reading = True
        self.closed = False
        self.api_of: Any = None
        self.keep_alive: Any = None
        self.peer: Any = None
        self.counted = False
        self.eof = False
        self.bind = False
        self.kafka: Any = None
        #: clusters holding an upstream connection bound to this one
        self.bound: list[Any] = []
        self.plain_encode = False
        self.plain_expects = False
        #: the fast lane (xproto.proxy.lane) this connection's requests take, or None
        self.lane: Any = None
        #: its lane batches with requests in flight (dropped when the connection goes)
        self.lane_batches: set[Any] = set()
        #: cluster name -> (cluster, its upstream stats) for routes already taken
        self.targets: dict[str, tuple[Any, Any]] = {}
        if len(lr.candidates) == 1:
            self._use(lr.candidates[0])

    # --- setup ---------------------------------------------------------------------------
    def _use(self, codec: Codec) -> None:
        lr = self.lr
        self.codec = codec
        self.decoder = codec.new_decoder(Role.REQUESTS, lr.limits)
        self.stats = lr.metrics.downstream(lr.name, codec.name)
        if needs_order(codec):
            self.order = deque()
        self.api_of = lr.api_namer(codec)
        self.keep_alive = getattr(codec, "keep_alive", None)
        self.bind = codec.name in BIND_PROTOCOLS or bool(getattr(codec, "bind_upstream", False))
        # broker addresses are rewritten in kafka responses only (a listener may carry more)
        self.kafka = lr.kafka if codec.name == "kafka" else None
        self.plain_encode = plain_encode(codec) and self.kafka is None
        self.plain_expects = plain_expects(codec)
        if (self.order is None and not self.bind and self.kafka is None and self.api_of is None
                and self.keep_alive is None and self.plain_encode and self.plain_expects):
            self.lane = lr.lane(codec)
        elif (codec.pool_mode is PoolMode.PINGPONG and not self.bind and self.kafka is None
              and self.api_of is None and self.plain_encode and self.plain_expects):
            # ping-pong protocols (HTTP/1.1): xproto.proxy.lane_pingpong
            self.lane = lr.lane(codec)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        lr = self.lr
        if len(lr.connections) >= lr.max_connections or lr.draining:
            lr.refused += 1
            now = self.loop.time()
            if now - lr.refused_logged >= 1.0:   # a flood must not flood the log too
                lr.refused_logged = now
                log.warning("listener %s: %s: refused %d connection(s)", lr.name,
                            "draining" if lr.draining else f"connection limit {lr.max_connections} reached",
                            lr.refused)
                lr.refused = 0
            self.closed = True
            transport.abort()
            return
        self.counted = True
        lr.connections.add(self)
        lr.conn_gauge.inc()
        self.peer = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(high=lr.high_water, low=lr.low_water)
        self.last_active = self.loop.time()
        if lr.idle_timeout > 0:
            self.idle_timer = self.loop.call_later(lr.idle_timeout, self._idle_check)

    # --- reading -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        lane = self.lane
        if lane is not None and not self.closed:
            if self.lr.idle_timeout > 0:
                self.last_active = self.loop.time()
            lane.requests(self, data)     # it opens a write batch when it needs one
            return
        if self.closed:
            return
        lr = self.lr
        if lr.idle_timeout > 0:
            self.last_active = self.loop.time()
        batch = self.batch
        batch.begin()
        try:
            if self.codec is None:
                self.buf += data
                if not self._detect():
                    return
                data = bytes(self.buf)
                self.buf.clear()
            lane = self.lane
            if lane is not None:
                lane.requests(self, data)
            else:
                self._feed(data)
        finally:
            batch.end()

    def _detect(self) -> bool:
        try:
            r = detect(self.lr.candidates, self.buf)
        except ProtocolError as e:
            self.lr.metrics.downstream(self.lr.name, "unknown").decode_error()
            log.info("listener %s: %s from %s: closing", self.lr.name, e, self.peer)
            self.close()
            return False
        if isinstance(r, int):
            self._arm_frame_timer(False)
            return False
        self._use(r)
        return True

    def _feed(self, data: bytes) -> None:
        buf = self.buf
        if buf:
            buf += data
            src: Any = buf
        else:
            src = data
        self._feed_from(src, data, 0)

    def _feed_from(self, src: Any, data: bytes, pos: int) -> None:
        """Decode ``src`` (``self.buf`` or ``data``) from ``pos`` on, frame by frame."""
        decode = self.decoder.decode
        on_frame = self._on_frame
        n = len(src)
        progressed = False
        try:
            while pos < n:
                r = decode(src, pos)
                if r.__class__ is int:
                    break
                pos += len(r.raw)
                progressed = True
                on_frame(r)
                if self.closed:
                    return
        except ProtocolError as e:
            self._bad_bytes(e)
            return
        self._keep_rest(src, data, pos, progressed)

    def _keep_rest(self, src: Any, data: bytes, pos: int, progressed: bool) -> None:
        """After reading ``src`` (``self.buf`` or ``data``) up to ``pos``: keep the rest."""
        buf = self.buf
        if src is buf:
            del buf[:pos]
        elif pos < len(src):
            buf += memoryview(data)[pos:]
        if buf:
            self._arm_frame_timer(progressed)
        elif self.frame_timer is not None:
            self.frame_timer.cancel()
            self.frame_timer = None

    def _arm_frame_timer(self, progressed: bool) -> None:
        t = self.frame_timer
        if t is not None:
            if not progressed:
                return
            t.cancel()
        self.frame_timer = self.loop.call_later(self.lr.frame_timeout, self._frame_timeout)

    def _frame_timeout(self) -> None:
        self.frame_timer = None
        if self.closed:
            return
        log.info("listener %s: %s sent an incomplete frame for %gs: closing",
                 self.lr.name, self.peer, self.lr.frame_timeout)
        self.close()

    def _bad_bytes(self, e: ProtocolError) -> None:
        codec: Codec = self.codec  # type: ignore[assignment]
        self.stats.decode_error()
        log.info("listener %s: bad %s bytes from %s: %s", self.lr.name, codec.name, self.peer, e)
        req: Frame | None = getattr(e, "request", None)
        if req is None and e.reply_hint and codec.request_id_bits == 0:
            # no request id on the wire (HTTP): the error reply needs no request to answer
            req = Frame(codec, Kind.REQUEST, 0, b"")
        if req is not None and not self.order:
            try:
                reason = Reason(e.reply_hint) if e.reply_hint else Reason.BAD_REQUEST
            except ValueError:
                reason = Reason.BAD_REQUEST
            try:
                # the codec's own text: error details can depend on how TCP chunked the bytes
                # (they are logged above); the answer must not
                reply = codec.error_reply(req, reason, "")
            except ProtocolError:
                reply = None
            if reply is not None:
                self.stats.local_reply(reason.value)
                self.stats.response(codec.status_to_http(reply))
                self._write(codec.encode(reply))
        self.buf.clear()
        self.close()

    # --- requests ------------------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        codec: Codec = self.codec  # type: ignore[assignment]
        kind = frame.kind
        if kind is _RESPONSE:
            # clients answer nothing we send (we never send them requests): drop it
            return
        if frame.heartbeat:
            if kind is _REQUEST:
                reply = codec.heartbeat_reply(frame)
                if reply is not None:
                    self.lr.metrics.heartbeat(codec.name, "downstream_reply")
                    self._answer_now(frame, codec.encode(reply))
            return
        lr = self.lr
        stats = self.stats
        api_of = self.api_of
        if api_of is None:
            api = ""
            stats.requests += 1
        else:
            api = api_of(frame)
            stats.requests_inc(api)
        expects = kind is _REQUEST if self.plain_expects else codec.expects_response(frame)
        now = self.loop.time()
        ex = Exchange(self, frame, expects, now, api)
        if expects:
            if self.inflight >= lr.max_pending:
                self._register(ex)
                ex.done = True
                self.local_reply(ex, Reason.OVERFLOW,
                                 f"{self.inflight} requests pending on this connection")
                return
            self._register(ex)
        route = lr.fixed_route
        if route is None:
            try:
                route = lr.route(frame)
            except ProtocolError as e:
                # the frame is whole but its headers cannot be read (e.g. a broken hessian
                # body): answer this request, keep the connection
                stats.decode_error()
                log.info("listener %s: unreadable %s request from %s: %s", lr.name, codec.name, self.peer, e)
                if expects:
                    ex.done = True
                    self.local_reply(ex, Reason.BAD_REQUEST, "")
                return
            if route is None:
                if expects:
                    ex.done = True
                    self.local_reply(ex, Reason.NO_ROUTE, "no route for this request")
                else:
                    stats.local_reply(Reason.NO_ROUTE.value)  # counted, nothing to answer
                return
        target = self.targets.get(route.cluster)
        if target is None:
            target = self._target(ex, route.cluster)
            if target is None:
                return
        cluster = target[0]
        ex.up_stats = target[1]
        if self.bind:
            ex.owner = self
            if cluster not in self.bound:
                self.bound.append(cluster)
        if expects:
            timeout = route.timeout
            if timeout:
                ex.timer = lr.timeouts.add(ex, now + timeout)
        cluster.send(ex, codec)

    def _target(self, ex: Exchange, name: str) -> tuple[Any, Any] | None:
        """The cluster a route names, checked once per connection (then cached in
        ``targets``); None after answering ``ex`` when it cannot take the request."""
        codec: Codec = self.codec  # type: ignore[assignment]
        lr = self.lr
        cluster = lr.clusters.get(name)
        if cluster is None:  # config validation makes this impossible; be safe
            if ex.expects:
                ex.done = True
                self.local_reply(ex, Reason.NO_ROUTE, f"unknown cluster {name}")
            return None
        proto = cluster.settings.protocol
        if proto is not None and proto != codec.name:
            if ex.expects:
                ex.done = True
                self.local_reply(ex, Reason.NO_ROUTE,
                                 f"cluster {cluster.name} speaks {proto}, not {codec.name}")
            return None
        target = self.targets[name] = (cluster, lr.up_stats(cluster.name, codec.name))
        return target

    def _register(self, ex: Exchange) -> None:
        self.inflight += 1
        order = self.order
        if order is not None:
            order.append(ex)
        else:
            self.pending.add(ex)

    # --- answers ---------------------------------------------------------------------------
    def respond(self, ex: Exchange, frame: Frame) -> None:
        codec: Codec = self.codec  # type: ignore[assignment]
        frame.request_id = ex.down_id
        data: bytes | None = None
        if self.kafka is not None:
            try:
                data = self.kafka.rewrite(frame)
            except ProtocolError as e:
                # never pass on a real broker address: answer with an error instead
                self.local_reply(ex, Reason.UPSTREAM_RESET, f"cannot rewrite broker addresses: {e}")
                return
        if data is None:
            if self.plain_encode and frame._headers is None:
                # codec.encode's own fast path, without its calls: the original bytes, the
                # downstream id patched in (headers never parsed, so never changed)
                data = frame.raw if frame.request_id == frame.orig_request_id \
                    else codec.patch_request_id(frame.raw, frame)
            else:
                data = codec.encode(frame)
        status = codec.status_to_http(frame)
        stats = self.stats
        d = stats.responses
        d[status] = d.get(status, 0) + 1
        secs = self.loop.time() - ex.start
        h = stats.histogram(ex.api) if ex.api else stats.hist
        h.counts[bisect_left(DURATION_BUCKETS, secs)] += 1
        h.sum += secs
        up = ex.up_stats
        if up is not None:
            d = up.responses
            d[status] = d.get(status, 0) + 1
        ka = self.keep_alive
        if ka is not None and not (ka(frame) and ka(ex.frame)):
            ex.close_after = True
        self._deliver(ex, data)

    def local_reply(self, ex: Exchange, reason: Reason, message: str) -> None:
        codec: Codec = self.codec  # type: ignore[assignment]
        req = ex.frame
        req.request_id = ex.down_id
        stats = self.stats
        stats.local_reply(reason.value)
        try:
            reply = codec.error_reply(req, reason, message)
        except ProtocolError as e:  # a codec that cannot build one for this request
            log.warning("%s: cannot build a %s reply: %s", codec.name, reason.value, e)
            reply = None
        if reply is None:
            data = CLOSE
        else:
            stats.response(codec.status_to_http(reply))
            data = codec.encode(reply)
            ka = self.keep_alive
            if ka is not None and not (ka(reply) and ka(req)):
                ex.close_after = True
        stats.observe(self.loop.time() - ex.start, ex.api)
        if not self.closed:
            log.debug("%s local reply %s to %s: %s", codec.name, reason.value, self.peer, message)
        self._deliver(ex, data)

    def _deliver(self, ex: Exchange, data: bytes) -> None:
        if self.closed:
            return
        order = self.order
        if order is None:
            self.pending.discard(ex)
            self.inflight -= 1
            if data is not CLOSE:
                self.wbuf.append(data)   # self._write -> Batch.send, inlined
                if not self.dirty:
                    batch = self.batch
                    if batch.depth:
                        self.dirty = True
                        batch.dirty.append(self)
                    else:
                        self.flush()
            if data is CLOSE or ex.close_after:
                self.close()
                return
        else:
            ex.out = data
            while order and order[0].out is not None:
                e = order.popleft()
                self.inflight -= 1
                out = e.out
                if out is not CLOSE:
                    self._write(out)  # type: ignore[arg-type]
                if out is CLOSE or e.close_after:
                    self.close()
                    return
        if self.inflight == 0:
            self.answered_all()

    def answered_all(self) -> None:
        """Nothing is in flight any more."""
        if not self.closed:
            if self.eof:
                self.close()     # the client half-closed and has all its answers
            elif self.lr.draining:
                self.lr.drained_one(self)

    def _answer_now(self, req: Frame, data: bytes) -> None:
        """A locally answered message outside the request accounting (heartbeats)."""
        order = self.order
        if order:
            # keep the order: queue it as an already-answered exchange
            ex = Exchange(self, req, True, 0.0, "")
            ex.done = True
            self._register(ex)
            self._deliver(ex, data)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        self.batch.send(self, data)

    # --- back-pressure ---------------------------------------------------------------------
    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()

    def block_on(self, conn: Any) -> None:
        if conn not in self.blocked_on:
            self.blocked_on.append(conn)
            conn.blocked.append(self)
            self._update_reading()

    def unblock(self, conn: Any) -> None:
        try:
            self.blocked_on.remove(conn)
        except ValueError:
            return
        self._update_reading()

    def _update_reading(self) -> None:
        t = self.transport
        if t is None or self.closed:
            return
        want = not self.write_paused and not self.blocked_on
        if want != self.reading:
            self.reading = want
            if want:
                t.resume_reading()
                if self.buf:
                    self._arm_frame_timer(True)
            else:
                t.pause_reading()
                # a frame we stopped reading is our delay, not the client's
                if self.frame_timer is not None:
                    self.frame_timer.cancel()
                    self.frame_timer = None

    # --- closing ---------------------------------------------------------------------------
    def _idle_check(self) -> None:
        self.idle_timer = None
        if self.closed:
            return
        lr = self.lr
        due = self.last_active + lr.idle_timeout
        now = self.loop.time()
        if self.inflight == 0 and now >= due:
            log.debug("listener %s: closing idle connection from %s", lr.name, self.peer)
            self.close()
            return
        self.idle_timer = self.loop.call_later(max(due - now, lr.idle_timeout * 0.1), self._idle_check)

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        t = self.transport
        self._teardown()
        if t is not None:
            t.close()

    def eof_received(self) -> bool | None:
        # A client that half-closes still gets the answers to what it sent (HTTP/1.0 style).
        if self.inflight and not self.closed:
            self.eof = True
            return True
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._teardown()

    def _teardown(self) -> None:
        if self.closed and not self.counted:
            return
        self.closed = True
        for t in (self.frame_timer, self.idle_timer):
            if t is not None:
                t.cancel()
        self.frame_timer = self.idle_timer = None
        if self.counted:
            self.counted = False
            lr = self.lr
            lr.connections.discard(self)
            lr.conn_gauge.dec()
            # requests still in flight have nobody to answer to: free their resources
            for ex in (list(self.order) if self.order is not None else list(self.pending)):
                ex.abandon()
            if self.lane_batches:
                for lb in list(self.lane_batches):
                    lb.abandon()
                self.lane_batches.clear()
            self.pending.clear()
            if self.order is not None:
                self.order.clear()
            self.inflight = 0
            for conn in self.blocked_on:
                try:
                    conn.blocked.remove(self)
                except ValueError:
                    pass
            self.blocked_on.clear()
            for cl in self.bound:
                cl.unbind(self)
            self.bound.clear()
            if lr.draining:
                lr.drained_one(self)

    def upstream_lost(self, conn: Any) -> None:
        """Bind mode: our dedicated upstream connection died (its pending requests were
        answered): the session state behind this connection is gone, so close it too."""
        if not self.closed:
            log.info("listener %s: bound upstream %s lost: closing %s", self.lr.name, conn.endpoint, self.peer)
            self.close()

    def drain_now(self, reason: Reason, message: str) -> None:
        """Shutdown: answer whatever is still in flight with a local reply."""
        exs = list(self.order) if self.order is not None else list(self.pending)
        batch = self.batch
        batch.begin()
        try:
            if self.lane is not None:
                self.lane.drain(self, reason, message)
            for ex in exs:
                if not ex.done:
                    ex.on_failure(reason, message)
        finally:
            batch.end()
