"""The fast lane: pipelined RPC forwarded without building frames.

A listener whose single route catches everything (no header is read) and whose codec has a
:class:`~xproto.codec.Scanner` forwards plain requests as their original bytes: one copy of
the read, the upstream id patched in place per frame, one write for the read, and a
3-tuple per request in the upstream connection's ``pending`` map (``(batch, downstream id,
offset)``) instead of a :class:`~xproto.frame.Frame` and an
:class:`~xproto.proxy.exchange.Exchange`. Responses come back the same way: scanned, the
downstream id patched in, consecutive answers for one downstream connection written as one
slice.

Everything else -- heartbeats, one frame the scanner does not call plain, header routes,
ordered or bound protocols, a cluster without an open connection, limits reached -- takes
the general path frame by frame, in order, on the same connection. A lane request that
needs a local reply (timeout, upstream reset, shutdown) or meets a response the scanner
declines becomes an ``Exchange`` at that moment (:meth:`Lane.exchange`), rebuilt from the
bytes it was sent with, so the answer is the same as on the general path.

Load balancing picks the upstream connection per read (the requests of one read share
it), not per request.
"""
from __future__ import annotations

import logging
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from xproto import accel
from xproto.codec import Codec, IdGenerator, PoolMode, Reason, Role, Scanner
from xproto.errors import ProtocolError
from xproto.metrics import DURATION_BUCKETS
from xproto.pool.connection import OPEN
from xproto.proxy.exchange import Exchange

if TYPE_CHECKING:
    from xproto.pool.cluster import Cluster
    from xproto.pool.connection import UpstreamConnection
    from xproto.proxy.downstream import DownstreamConnection
    from xproto.proxy.listener import ListenerRuntime

log = logging.getLogger("xproto.proxy")


_NATIVE: Any = accel.load("xproto.proxy._lane")
#: which path is active (the benchmark prints it)
NATIVE = _NATIVE is not None


class LaneBatch:
    """The lane requests of one downstream read: one upstream connection, one start time,
    one deadline, one buffer (the read with upstream ids patched in), consecutive ids
    ``first`` .. ``last`` (wrapping at the generator's mask; ids skipped because they
    were busy are simply not in ``pending`` with this batch)."""

    __slots__ = ("conn", "down", "first", "lane", "last", "left", "out", "start", "timer")

    def __init__(self, lane: Lane, down: DownstreamConnection, conn: UpstreamConnection,
                 out: bytearray, start: float, first: int) -> None:
        self.lane = lane
        self.down = down
        self.conn = conn
        self.out = out
        self.start = start
        self.first = first
        self.last = first
        #: requests of this batch still waiting for their answer
        self.left = 0
        #: the TimeoutWheel slot holding this batch, or None
        self.timer: Any = None

    def _take(self) -> list[tuple[LaneBatch, int, int]]:
        """Take this batch's requests still in flight out of the connection's pending map."""
        pending = self.conn.pending
        mask = self.lane.mask
        uid = self.first
        last = self.last
        taken = []
        for _ in range(mask + 1):
            ent = pending.get(uid)
            if ent is not None and ent.__class__ is tuple and ent[0] is self:
                del pending[uid]
                taken.append(ent)
            if uid == last:
                break
            uid = (uid + 1) & mask
        return taken

    def on_timeout(self) -> None:
        self.timer = None
        conn = self.conn
        lane = self.lane
        for ent in self._take():
            ex = lane.exchange(conn, ent)
            if ex is not None:
                ex.on_timeout()

    def abandon(self) -> None:
        """The downstream connection went away: free its requests' places (their late
        answers are counted as unknown, as on the general path)."""
        taken = self._take()
        k = len(taken)
        self.left -= k
        t = self.timer
        if t is not None and self.left <= 0:
            self.timer = None
            t.pop(self, None)
        if k:
            self.lane.cluster.inflight -= k
            self.conn.endpoint.active -= k


class Lane:
    """One listener's fast lane for one codec (see the module docstring)."""

    __slots__ = ("cluster", "codec", "decoder", "lr", "mask", "native", "pool_key", "scanner", "sole",
                 "timeout", "up_stats")

    def __init__(self, lr: ListenerRuntime, codec: Codec, cluster: Cluster, timeout: float | None,
                 scanner: Scanner) -> None:
        self.lr = lr
        self.codec = codec
        self.cluster = cluster
        self.timeout = timeout
        self.scanner = scanner
        self.up_stats = lr.up_stats(cluster.name, codec.name)
        #: rebuilds a lane request's frame when it needs a local reply
        self.decoder = codec.new_decoder(Role.REQUESTS, lr.limits)
        self.mask = codec.id_generator(1)._mask
        #: the key of the multiplexed pool for codecs without a fixed pool mode (Thrift)
        self.pool_key = (codec.name, PoolMode.MULTIPLEX)
        #: the connection of a one-endpoint, one-connection cluster while it is open
        self.sole: Any = None
        #: the C requests loop (xproto/proxy/_lane.c) when built and the codec has one
        #: (the responses loop is bound per upstream connection: native_responses_for)
        self.native: Any = None
        if scanner.native and _NATIVE is not None:
            self.native = _NATIVE.requests

    @staticmethod
    def for_listener(lr: ListenerRuntime, codec: Codec) -> Lane | None:
        """The lane of ``codec`` on ``lr``, or None when its requests need the general path."""
        route = lr.fixed_route
        if route is None or type(codec).scanner is Codec.scanner:
            return None
        # (a codec whose pool mode varies per frame -- Thrift: unframed is ping-pong -- is
        # fine: its scanner accepts only frames pooled MULTIPLEX, the Scanner contract)
        if codec.pool_mode is not PoolMode.MULTIPLEX:
            return None
        if type(codec).encode is not Codec.encode or type(codec).expects_response is not Codec.expects_response:
            return None
        if not isinstance(codec.id_generator(1), IdGenerator) or not codec.request_id_bits:
            return None
        cluster = lr.clusters.get(route.cluster)
        if cluster is None or cluster.settings.id_passthrough:
            return None
        if cluster.settings.protocol is not None and cluster.settings.protocol != codec.name:
            return None
        scanner = codec.scanner(Role.REQUESTS, lr.limits)
        if scanner is None:
            return None
        return Lane(lr, codec, cluster, route.timeout, scanner)

    # --- requests ------------------------------------------------------------------------
    def ready_conn(self) -> UpstreamConnection | None:
        """An open upstream connection the next read's requests can take, or None (the
        general path then connects, queues or answers)."""
        conn = self.sole
        if conn is not None and conn.state == OPEN:
            return conn
        cl = self.cluster
        if cl.closing:
            return None
        ep = cl.single
        if ep is not None and ep.healthy:
            # one endpoint, one connection: the common case without the general checks
            pool = ep.fast_pools.get(self.codec) or ep.pools.get(self.pool_key)
            if pool is not None:
                conns = pool.conns
                if len(conns) == 1:
                    conn = conns[0]
                    if conn.state == OPEN and conn.lane_scan is not None and cl.settings.max_connections == 1:
                        # one endpoint, at most one connection: every read takes this one
                        # while it is open (a new one after it closes)
                        self.sole = conn
                        return conn
        if ep is None:
            ep = cl.pick()
            if ep is None:
                return None
            conn = self._open_conn(ep)
            if conn is None:
                cl.held = ep        # the general path's pick gets this endpoint
                return None
        else:
            conn = self._open_conn(ep)
            if conn is None:
                return None
        if conn.lane_scan is None:
            if conn.passthrough or conn.request_sent is not None or conn.next_id.__class__ is not IdGenerator:
                return None
            s = self.codec.scanner(Role.RESPONSES, cl.limits)
            if s is None:
                return None
            conn.lane_scan = s
            conn.fast = native_responses_for(conn) if (s.native and _NATIVE is not None) else responses
        return conn

    def _open_conn(self, ep: Any) -> UpstreamConnection | None:
        """The connection a request to ``ep`` would take, if it is open; else None."""
        if not ep.healthy:
            return None
        pool = ep.fast_pools.get(self.codec) or ep.pools.get(self.pool_key)
        if pool is None:
            return None
        conns = pool.conns
        if len(conns) == 1:
            conn = conns[0]
            if conn.state != OPEN or (conn.load and self.cluster.settings.max_connections > 1):
                return None
            return conn
        if conns:
            conn = min(conns, key=_load)
            if conn.state != OPEN or (conn.load and len(conns) < self.cluster.settings.max_connections):
                return None
            return conn
        return None

    def requests(self, down: DownstreamConnection, data: bytes) -> None:
        """A read on a lane connection."""
        conn = self.ready_conn()
        if conn is None:
            batch = down.batch
            batch.begin()
            try:
                down._feed(data)
            finally:
                batch.end()
            return
        native = self.native
        if native is not None and not down.buf:
            # the common case in one C call: a read of whole plain frames
            gen: IdGenerator = conn.next_id
            nxt = gen._next
            n = len(data)
            if not (gen.wrapped or nxt == 0 or nxt + n > gen._mask):
                cl = self.cluster
                room = down.lr.max_pending - down.inflight
                croom = cl.settings.max_pending - cl.inflight
                if croom < room:  # noqa: PLR1730 (min() is a call on the hot path)
                    room = croom
                lb = LaneBatch(self, down, conn, None, down.loop.time(), nxt)
                sc = self.scanner
                lim1, lim2 = sc.native_limits
                pos, nxt2, sent, waiting, out = native(sc.native, data, None, 0, nxt, room, conn.pending,
                                                       lb, lim1, lim2)
                if pos == n:
                    gen._next = nxt2
                    lb.out = out
                    if waiting:     # self._settle(..., True), inlined
                        down.lane_batches.add(lb)
                        lb.last = nxt2 - 1
                        lb.left = waiting
                        down.inflight += waiting
                        cl.inflight += waiting
                        conn.endpoint.active += waiting
                        timeout = self.timeout
                        if timeout:
                            lb.timer = self.lr.timeouts.add(lb, lb.start + timeout)
                    # self._done(...), inlined
                    down.stats.requests += sent
                    conn.counter.requests += sent
                    if conn.dirty:
                        conn.wbuf.append(out)
                    elif len(self.lr.connections) == 1:
                        # a lone client: nothing to coalesce with, so no wait for the
                        # loop's turn (and nothing queued before it: straight out)
                        t = conn.transport
                        if not t.is_closing():
                            t.write(out)
                    else:
                        conn.wbuf.append(out)
                        conn.batch.defer(conn)
                    if conn.paused:
                        down.block_on(conn)   # the upstream does not keep up: hold the sender
                    if down.frame_timer is not None:
                        down.frame_timer.cancel()
                        down.frame_timer = None
                    return
                gen._next = nxt2
                lb.out = out
                batch = down.batch
                batch.begin()
                try:
                    self._loop(down, conn, data, data, lb, out, pos, sent, waiting)
                finally:
                    batch.end()
                return
        lb = LaneBatch(self, down, conn, None, down.loop.time(), conn.next_id._next)
        buf = down.buf
        if buf:
            buf += data
            src: Any = buf
        else:
            src = data
        batch = down.batch
        batch.begin()
        try:
            self._loop(down, conn, src, data, lb, None, 0, 0, 0)
        finally:
            batch.end()

    def _loop(self, down: DownstreamConnection, conn: UpstreamConnection, src: Any, data: bytes,
              lb: LaneBatch, out: Any, pos: int, sent: int, waiting: int) -> None:
        """The frames of ``src`` from ``pos`` on: plain ones on the lane (C loop or Python),
        the others through the general path one by one, in order. ``sent``/``waiting``:
        lane frames of ``lb`` already in ``out[:pos]`` / in ``pending``."""
        n = len(src)
        sc = self.scanner
        scan = sc.scan
        pack = sc.pack_id
        off = sc.id_offset
        native = self.native
        kind = sc.native
        lim1, lim2 = sc.native_limits
        pending = conn.pending
        gen: IdGenerator = conn.next_id
        nxt = gen._next
        lr = down.lr
        cl = self.cluster
        # requests this read may add before a limit answers (the general path does that)
        room = min(lr.max_pending - down.inflight, cl.settings.max_pending - cl.inflight)
        # ids need checking against those in flight only once the generator wrapped (or
        # could wrap within this read: at most one id per byte)
        check = gen.wrapped or nxt == 0 or nxt + n > gen._mask
        wbuf = conn.wbuf
        seg = 0
        uid = nxt - 1
        progressed = False
        while pos < n:
            if native is not None and not check:
                # the C loop: as many plain frames as there are (same results as below)
                p, nxt, s, w, out = native(kind, src, out, pos, nxt, room - waiting, pending, lb,
                                           lim1, lim2)
                if s:
                    lb.out = out
                    sent += s
                    waiting += w
                    uid = nxt - 1
                    pos = p
                    if pos >= n:
                        break
            else:
                r = scan(src, pos, n)
                if r is not None and (waiting < room or not r[2]):
                    end = r[0]
                    rid = r[1]
                    expects = r[2]
                    if check:
                        uid = _free_id(gen, nxt, pending, conn.hb_id, expects)
                        nxt = gen._next
                    else:
                        uid = nxt
                        nxt = uid + 1
                    if out is None:
                        out = lb.out = bytearray(src)
                    pack(out, pos + off if off >= 0 else r[3], uid)
                    if expects:
                        pending[uid] = (lb, rid, pos)
                        waiting += 1
                    sent += 1
                    pos = end
                    continue
            # the general path for one frame, in order: what the lane took so far goes first
            if pos > seg:
                wbuf.append(out[seg:pos])
            gen._next = nxt
            self._settle(down, conn, lb, uid, waiting, False)
            room -= waiting
            waiting = 0
            try:
                f = down.decoder.decode(src, pos)
            except ProtocolError as e:
                self._done(down, conn, lb, sent)
                down._bad_bytes(e)
                return
            if f.__class__ is int:
                seg = pos
                break
            pos += len(f.raw)  # type: ignore[union-attr]
            progressed = True
            down._on_frame(f)  # type: ignore[arg-type]
            if down.closed:
                self._done(down, conn, lb, sent)
                return
            if conn.state != OPEN:
                # the upstream connection went while we sent: the general path takes the rest
                self._done(down, conn, lb, sent)
                down._feed_from(src, data, pos)
                return
            room = min(lr.max_pending - down.inflight, cl.settings.max_pending - cl.inflight)
            nxt = gen._next
            check = gen.wrapped or nxt == 0 or nxt + n > gen._mask
            seg = pos
        if pos > seg:
            wbuf.append(out if seg == 0 and pos == n else out[seg:pos])
        gen._next = nxt
        self._settle(down, conn, lb, uid, waiting, True)
        self._done(down, conn, lb, sent)
        down._keep_rest(src, data, pos, progressed or sent > 0)

    def _settle(self, down: DownstreamConnection, conn: UpstreamConnection, lb: LaneBatch,
                last: int, waiting: int, final: bool) -> None:
        """``waiting`` more requests of ``lb`` are in ``pending``: count them; at the end
        of the read, arm the batch's deadline."""
        if waiting:
            if not lb.left:
                down.lane_batches.add(lb)
            lb.last = last
            lb.left += waiting
            down.inflight += waiting
            self.cluster.inflight += waiting
            conn.endpoint.active += waiting
        if final and lb.left:
            timeout = self.timeout
            if timeout:
                lb.timer = self.lr.timeouts.add(lb, lb.start + timeout)

    def _done(self, down: DownstreamConnection, conn: UpstreamConnection, lb: LaneBatch,
              sent: int) -> None:
        if not sent:
            return
        down.stats.requests += sent
        conn.counter.requests += sent
        if not conn.dirty:
            if len(self.lr.connections) == 1:
                # a lone client: nothing to coalesce with, so no wait for the loop's turn
                conn.flush()
            else:
                conn.batch.defer(conn)
        if lb.left and lb.timer is None:   # a read cut short by the general path
            timeout = self.timeout
            if timeout:
                lb.timer = self.lr.timeouts.add(lb, lb.start + timeout)
        if conn.paused:
            down.block_on(conn)   # the upstream does not keep up: hold the sender

    # --- leaving the lane ------------------------------------------------------------------
    def exchange(self, conn: UpstreamConnection, ent: tuple[LaneBatch, int, int]) -> Exchange | None:
        """A lane request taken out of ``conn.pending`` that needs the general path's answer
        (local reply, or a response the scanner declined): its accounting is closed and an
        Exchange rebuilt from the bytes it was sent with; None when nobody waits for it."""
        lb, did, p = ent
        left = lb.left - 1
        lb.left = left
        if not left:
            lb.down.lane_batches.discard(lb)
            t = lb.timer
            if t is not None:
                lb.timer = None
                t.pop(lb, None)
        self.cluster.inflight -= 1
        conn.endpoint.active -= 1
        down = lb.down
        if down.closed:
            return None
        try:
            frame = self.decoder.decode(lb.out, p)
        except ProtocolError:  # cannot happen: the scanner accepted these bytes
            frame = None
        if frame is None or frame.__class__ is int:
            log.error("lane: cannot rebuild a %s request: closing %s", self.codec.name, down.peer)
            down.close()
            return None
        ex = Exchange(down, frame, True, lb.start, "")  # type: ignore[arg-type]
        ex.down_id = did
        ex.up_stats = self.up_stats
        return ex

    def drain(self, down: DownstreamConnection, reason: Reason, message: str) -> None:
        """Shutdown: answer ``down``'s lane requests still in flight with a local reply."""
        for ep in self.cluster.endpoints:
            for pool in list(ep.pools.values()):
                for conn in list(pool.conns):
                    pending = conn.pending
                    mine = [(uid, ent) for uid, ent in pending.items()
                            if ent.__class__ is tuple and ent[0].down is down]
                    for uid, ent in mine:
                        del pending[uid]
                        ex = ent[0].lane.exchange(conn, ent)
                        if ex is not None:
                            ex.on_failure(reason, message)


def _free_id(gen: IdGenerator, nxt: int, pending: dict[int, Any], hb: int, expects: bool) -> int:
    """The next id for a request once ids may collide (see ``Lane.requests``)."""
    gen._next = nxt
    uid = gen()
    if expects and (uid in pending or uid == hb):
        for _ in range(len(pending) + 2):     # bounded, as UpstreamConnection._write
            uid = gen()
            if uid not in pending and uid != hb:
                break
    return uid


def _load(c: UpstreamConnection) -> int:
    return c.load


def responses(conn: UpstreamConnection, src: Any, pos: int, n: int) -> int:
    """Answer the lane requests whose responses start at ``src[pos]`` (inside a write
    batch); return where the first frame the lane does not take starts (``pos`` itself
    when it takes none): the caller decodes that one."""
    sc = conn.lane_scan
    scan = sc.scan
    pack = sc.pack_id
    off = sc.id_offset
    idmask = sc.id_mask
    pending = conn.pending
    hb = conn.hb_id
    out: Any = None
    lb: Any = None          # the batch of the current group (consecutive answers, one batch)
    run: Any = None         # the downstream connection of the current run
    run_start = pos
    k = rk = done = 0       # answers in the current group / run / in all
    others: list[int] = []  # statuses other than 200 in the current run
    hsum = 0.0
    now = conn.last_active
    while pos < n:
        r = scan(src, pos, n)
        if r is None:
            break
        end = r[0]
        rid = r[1]
        status = r[2]
        ent = pending.pop(rid, None)
        if ent.__class__ is not tuple or rid == hb:
            if ent is not None:
                pending[rid] = ent  # the general path's (or a heartbeat's): it decides
            break
        e0 = ent[0]
        if e0 is not lb:
            if lb is not None:
                hsum += _settle_group(lb, k, now)
                rk += k
                k = 0
                if e0.down is not run:
                    _deliver(run, out, run_start, pos, rk, others, hsum, lb)
                    done += rk
                    rk = 0
                    hsum = 0.0
                    if others:
                        others = []
                    run = e0.down
                    run_start = pos
            else:
                run = e0.down
            lb = e0
        if out is None:
            out = bytearray(src)
        pack(out, pos + off if off >= 0 else r[3], ent[1] & idmask)
        if status != 200:
            others.append(status)
        k += 1
        pos = end
    if lb is not None:
        hsum += _settle_group(lb, k, now)
        rk += k
        _deliver(run, out, run_start, pos, rk, others, hsum, lb)
        done += rk
        conn.pool.cluster.inflight -= done
        conn.endpoint.active -= done
    return pos


def native_responses_for(conn: UpstreamConnection) -> Any:
    """:func:`responses` with the per-frame work in C (xproto/proxy/_lane.c), bound to
    ``conn`` (its constants looked up once)."""
    sc = conn.lane_scan
    run_c = _NATIVE.responses
    kind = sc.native
    lim1, lim2 = sc.native_limits
    table = sc.status_table
    pending = conn.pending
    cluster = conn.pool.cluster
    ep = conn.endpoint

    def fast(conn: Any, src: Any, pos: int, n: int) -> int:
        others: list[int] = []
        p, k, lb, nlb, out = run_c(kind, src, None, pos, pending, conn.hb_id, None, others, table,
                                   lim1, lim2)
        if not k:
            return pos
        if nlb is not None:
            return _responses_native(conn, src, pos, p, k, lb, nlb, out, others)
        # one batch's answers (the common case)
        hsum = _settle_group(lb, k, conn.last_active)
        cluster.inflight -= k
        ep.active -= k
        _deliver(lb.down, out, pos, p, k, others, hsum, lb)
        return p
    return fast


def _responses_native(conn: UpstreamConnection, src: Any, pos: int, p: int, k: int, glb: Any,
                      nlb: Any, out: Any, others: list[int]) -> int:
    """Answers for several batches in one read (the first group already taken: ``k``
    answers of ``glb`` in ``src[pos:p]``)."""
    sc = conn.lane_scan
    run_c = _NATIVE.responses
    kind = sc.native
    lim1, lim2 = sc.native_limits
    table = sc.status_table
    pending = conn.pending
    hb = conn.hb_id
    now = conn.last_active
    run: Any = None
    run_start = pos
    rk = done = 0
    hsum = 0.0
    last = glb
    while True:
        if not k:
            break
        last = glb
        if run is None:
            run = glb.down
        hsum += _settle_group(glb, k, now)
        rk += k
        pos = p
        if nlb is None:
            break
        if nlb.down is not run:
            _deliver(run, out, run_start, pos, rk, others, hsum, glb)
            done += rk
            rk = 0
            hsum = 0.0
            others = []
            run = nlb.down
            run_start = pos
        lb = nlb
        p, k, glb, nlb, out = run_c(kind, src, out, pos, pending, hb, lb, others, table, lim1, lim2)
    if run is not None:
        _deliver(run, out, run_start, pos, rk, others, hsum, last)
        done += rk
        conn.pool.cluster.inflight -= done
        conn.endpoint.active -= done
    return pos


def _settle_group(lb: LaneBatch, k: int, now: float) -> float:
    """``k`` answers of batch ``lb`` arrived: count them, observe their duration."""
    left = lb.left - k
    lb.left = left
    down = lb.down
    if not left:
        down.lane_batches.discard(lb)
        t = lb.timer
        if t is not None:
            lb.timer = None
            t.pop(lb, None)
    if down.closed:
        return 0.0
    secs = now - lb.start
    down.stats.hist.counts[bisect_left(DURATION_BUCKETS, secs)] += k
    return secs * k


def _deliver(down: Any, out: bytearray, a: int, b: int, k: int, others: list[int], hsum: float,
             lb: LaneBatch) -> None:
    """``k`` lane answers ``out[a:b]`` for ``down`` (stats and the write); ``others``: their
    statuses other than 200; ``lb``: a batch of theirs."""
    if down.closed:
        return          # nobody to answer
    stats = down.stats
    stats.hist.sum += hsum
    d = stats.responses
    up = lb.lane.up_stats.responses
    ok = k - len(others)
    if ok:
        d[200] = d.get(200, 0) + ok
        up[200] = up.get(200, 0) + ok
    for s in others:
        d[s] = d.get(s, 0) + 1
        up[s] = up.get(s, 0) + 1
    chunk = out if a == 0 and b == len(out) else out[a:b]
    if not down.dirty:
        # nothing queued before it: straight to the transport (Batch.send's work, skipped)
        t = down.transport
        if t is not None and not t.is_closing():
            t.write(chunk)
    else:
        down.wbuf.append(chunk)
    left = down.inflight - k
    down.inflight = left
    if not left:
        down.answered_all()
