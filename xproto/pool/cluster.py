"""Clusters: endpoints, load balancing, health, and per-endpoint connection pools.

* :class:`MultiplexPool` shares up to ``max_connections`` connections per endpoint among
  all requests; each request gets a fresh id from the connection's generator.
* :class:`PingPongPool` puts one request at a time on a connection; requests wait for a
  free connection when ``max_connections`` are busy.
* A request whose connect failed never reached the upstream: it is retried on another
  endpoint (at most ``connect_attempts`` endpoints). Nothing else is retried.
* An endpoint whose connect failed is unhealthy for an exponential back-off
  (``backoff_min`` doubling up to ``backoff_max``); then one request may try it again.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xproto.codec import Codec, PoolMode, Reason
from xproto.limits import DEFAULT_LIMITS, Limits
from xproto.pool.batch import Batch
from xproto.pool.connection import CLOSED, OPEN, UpstreamConnection

if TYPE_CHECKING:
    from xproto.pool.request import UpstreamRequest

log = logging.getLogger("xproto.pool")

LB_POLICIES = ("round_robin", "random", "least_request")


@dataclass(slots=True)
class ClusterSettings:
    name: str
    endpoints: list[tuple[str, int]]
    protocol: str | None = None
    lb: str = "round_robin"
    connect_timeout: float = 1.0
    max_connections: int = 1          # per endpoint
    max_pending: int = 10000          # requests in flight through the cluster
    keepalive_interval: float = 0.0   # 0 = no heartbeats
    keepalive_timeout: float = 1.0
    keepalive_failures: int = 3
    # MOSN retries connect failures up to 3 times; we try at most 3 endpoints per request
    connect_attempts: int = 3
    backoff_min: float = 0.5
    backoff_max: float = 10.0
    high_water: int = 1024 * 1024
    low_water: int = 256 * 1024
    #: first id of every new connection's generator (test hook: start near the wrap)
    id_start: int = 1
    #: multiplexed connections reuse the downstream request id upstream when it is free on
    #: that connection (no id patch on the request nor on the response); off: every upstream
    #: id comes from the connection's generator
    id_passthrough: bool = False
    #: ping-pong pools carry one request per connection: their own cap (default: same)
    max_connections_pingpong: int = 0

    def max_conns(self, multiplex: bool) -> int:
        if multiplex or self.max_connections_pingpong <= 0:
            return self.max_connections
        return self.max_connections_pingpong


class PoolStats:
    """Counters the pool reports; the proxy binds them to its metrics. Default: nothing."""

    def upstream_request(self, protocol: str) -> None: ...
    def counter(self, protocol: str) -> Any:
        """An object whose int attribute ``requests`` the connection increments per request
        written (the hot path: no call). Default: a private one nobody reads."""
        return RequestCounter()
    def upstream_connection(self, protocol: str, delta: int) -> None: ...
    def connect_failure(self, protocol: str) -> None: ...
    def unknown_response(self, protocol: str) -> None: ...
    def upstream_decode_error(self, protocol: str) -> None: ...
    def heartbeat(self, protocol: str, direction: str) -> None: ...


class RequestCounter:
    __slots__ = ("requests",)

    def __init__(self) -> None:
        self.requests = 0


class Endpoint:
    __slots__ = ("active", "cluster", "failures", "fast_pools", "healthy", "host", "pools", "port",
                 "retry_at")

    def __init__(self, cluster: Cluster, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.cluster = cluster
        self.healthy = True
        self.retry_at = 0.0
        self.failures = 0
        #: requests assigned to this endpoint and not finished (least_request)
        self.active = 0
        self.pools: dict[tuple[str, PoolMode | None], ConnPool] = {}
        #: codec -> its pool, for codecs whose pool mode does not depend on the frame
        self.fast_pools: dict[Any, ConnPool] = {}

    def available(self, now: float) -> bool:
        return self.healthy or now >= self.retry_at

    def connected(self) -> None:
        if not self.healthy:
            self.healthy = True
            self.cluster.unhealthy -= 1
        self.failures = 0

    def failed(self, now: float) -> None:
        s = self.cluster.settings
        if self.healthy:
            self.healthy = False
            self.cluster.unhealthy += 1
        self.failures += 1
        self.retry_at = now + min(s.backoff_min * (2 ** min(self.failures - 1, 16)), s.backoff_max)

    def pool_for(self, codec: Codec, mode: PoolMode) -> ConnPool:
        key = (codec.name, mode)
        p = self.pools.get(key)
        if p is None:
            cls = MultiplexPool if mode is PoolMode.MULTIPLEX else PingPongPool
            p = self.pools[key] = cls(self.cluster, self, codec)
            if type(codec).pool_mode_for is Codec.pool_mode_for:
                self.fast_pools[codec] = p
        return p

    def bind_pool_for(self, codec: Codec) -> BindPool:
        key = (codec.name, None)
        p = self.pools.get(key)
        if p is None:
            p = self.pools[key] = BindPool(self.cluster, self, codec)
        return p  # type: ignore[return-value]

    def open_connections(self) -> int:
        return sum(1 for p in self.pools.values() for c in p.conns if c.state == OPEN)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    __repr__ = __str__


class ConnPool:
    multiplex = True

    def __init__(self, cluster: Cluster, endpoint: Endpoint, codec: Codec) -> None:
        self.cluster = cluster
        self.endpoint = endpoint
        self.codec = codec
        self.conns: list[UpstreamConnection] = []
        self.reconnect_after_drop = False

    def open(self) -> UpstreamConnection:
        conn = UpstreamConnection(self, self.codec, self.multiplex)
        self.conns.append(conn)
        self.cluster.spawn(self._connect(conn))
        return conn

    async def _connect(self, conn: UpstreamConnection) -> None:
        cl = self.cluster
        try:
            await asyncio.wait_for(
                cl.loop.create_connection(lambda: conn, self.endpoint.host, self.endpoint.port),
                cl.settings.connect_timeout)
        except asyncio.CancelledError:
            conn.connect_failed(ConnectionAbortedError("proxy stopping"))
            raise
        except (TimeoutError, OSError) as e:
            if isinstance(e, asyncio.TimeoutError):
                e = TimeoutError(f"connect timeout {cl.settings.connect_timeout:g}s")
            conn.connect_failed(e)

    def send(self, req: UpstreamRequest) -> None:
        raise NotImplementedError

    def idle(self, conn: UpstreamConnection) -> None:
        """Ping-pong: ``conn`` can take the next request."""

    def remove(self, conn: UpstreamConnection) -> None:
        try:
            self.conns.remove(conn)
        except ValueError:
            pass

    def failed(self, conn: UpstreamConnection, message: str) -> None:
        """A connect failed; its queued requests were already sent elsewhere."""

    def lost(self, conn: UpstreamConnection, was_open: bool) -> None:
        if self.reconnect_after_drop and not self.cluster.closing:
            # dropped for missed heartbeats: open a fresh connection right away
            self.reconnect_after_drop = False
            if len(self.conns) < self.cluster.settings.max_conns(self.multiplex):
                self.open()

    def close_all(self) -> None:
        for c in list(self.conns):
            c.close()


class MultiplexPool(ConnPool):
    multiplex = True

    def send(self, req: UpstreamRequest) -> None:
        conns = self.conns
        n = len(conns)
        if n == 0:
            conn = self.open()
        elif n == 1:
            conn = conns[0]
            if self.cluster.settings.max_connections > 1 and conn.load:
                conn = self.open()
            elif conn.state == OPEN:
                req.conn = conn        # conn.send, inlined for the common case
                conn._write(req)
                return
        else:
            conn = min(conns, key=_load)
            if conn.load and n < self.cluster.settings.max_connections:
                conn = self.open()
        conn.send(req)


def _load(c: UpstreamConnection) -> int:
    return c.load


class PingPongPool(ConnPool):
    multiplex = False

    def __init__(self, cluster: Cluster, endpoint: Endpoint, codec: Codec) -> None:
        super().__init__(cluster, endpoint, codec)
        self.free: list[UpstreamConnection] = []
        self.waiting: deque[UpstreamRequest] = deque()

    def send(self, req: UpstreamRequest) -> None:
        free = self.free
        while free:
            conn = free.pop()
            if conn.state == OPEN and not conn.busy:
                conn.send(req)
                return
        if len(self.conns) < self.cluster.settings.max_conns(False):
            self.open().send(req)
        else:
            self.waiting.append(req)

    def idle(self, conn: UpstreamConnection) -> None:
        waiting = self.waiting
        while waiting:
            req = waiting.popleft()
            if not req.done:
                conn.send(req)
                return
        self.free.append(conn)

    def remove(self, conn: UpstreamConnection) -> None:
        super().remove(conn)
        try:
            self.free.remove(conn)
        except ValueError:
            pass

    def failed(self, conn: UpstreamConnection, message: str) -> None:
        if not self.conns and self.waiting:
            waiting, self.waiting = self.waiting, deque()
            for req in waiting:
                if not req.done:
                    self.cluster.retry(req, self.endpoint, message)

    def lost(self, conn: UpstreamConnection, was_open: bool) -> None:
        super().lost(conn, was_open)
        if was_open and self.waiting and len(self.conns) < self.cluster.settings.max_conns(False) \
                and not self.cluster.closing:
            self.open()  # it takes the waiting requests once connected


class BindPool(ConnPool):
    """Bind mode: one dedicated upstream connection per downstream connection (its owner),
    for protocols with per-connection state and strict per-connection ordering (Kafka:
    SASL, long-polling Fetch that would hold up everyone sharing a connection). Ids are
    still rewritten. ``max_connections`` does not apply. When the connection dies, the owner
    is told (``upstream_lost``): its session is gone."""

    multiplex = True

    def open_for(self, owner: Any) -> UpstreamConnection:
        conn = self.open()
        conn.owner = owner
        return conn

    def send(self, req: UpstreamRequest) -> None:  # pragma: no cover - Cluster routes bind itself
        raise AssertionError("bind pools are used through Cluster")

    def _unbind(self, conn: UpstreamConnection) -> None:
        bound = self.cluster.bound
        if bound.get(conn.owner) is conn:
            del bound[conn.owner]

    def failed(self, conn: UpstreamConnection, message: str) -> None:
        self._unbind(conn)

    def lost(self, conn: UpstreamConnection, was_open: bool) -> None:
        self._unbind(conn)
        owner = conn.owner
        if was_open and owner is not None:
            owner.upstream_lost(conn)


class Cluster:
    def __init__(
        self,
        settings: ClusterSettings,
        loop: asyncio.AbstractEventLoop,
        batch: Batch | None = None,
        stats: PoolStats | None = None,
        limits: Limits = DEFAULT_LIMITS,
        rng: random.Random | None = None,
    ) -> None:
        if settings.lb not in LB_POLICIES:
            raise ValueError(f"unknown lb policy {settings.lb!r}")
        self.settings = settings
        self.name = settings.name
        self.loop = loop
        self.batch = batch or Batch()
        self.stats = stats or PoolStats()
        self.limits = limits
        self.rng = rng or random.Random()
        self.endpoints = [Endpoint(self, h, p) for h, p in settings.endpoints]
        #: the endpoint of a single-endpoint cluster (send's fast path)
        self.single = self.endpoints[0] if len(self.endpoints) == 1 else None
        self.unhealthy = 0
        self.inflight = 0
        self.rr = 0
        #: an endpoint picked but not used (the proxy's fast lane found no open connection
        #: there): the next pick returns it, so balancing is as if it had not looked
        self.held: Endpoint | None = None
        self.closing = False
        self.tasks: set[asyncio.Task[Any]] = set()
        #: bind mode: owner (downstream connection) -> its upstream connection
        self.bound: dict[Any, UpstreamConnection] = {}

    def spawn(self, coro: Any) -> None:
        t = self.loop.create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    # --- sending -------------------------------------------------------------------------
    def send(self, req: UpstreamRequest, codec: Codec) -> None:
        """Send ``req`` upstream; its answer arrives via ``on_response``/``on_failure``
        (possibly synchronously, for overflow and no healthy upstream)."""
        if self.inflight >= self.settings.max_pending:
            req.on_failure(Reason.OVERFLOW, f"cluster {self.name}: {self.inflight} requests in flight")
            return
        if self.closing:
            req.on_failure(Reason.NO_HEALTHY_UPSTREAM, f"cluster {self.name} is shutting down")
            return
        req.cluster = self
        self.inflight += 1
        single = self.single
        if single is not None and req.owner is None and single.healthy:
            # one healthy endpoint, shared pools: _dispatch without pick() and pool_for()
            pool = single.fast_pools.get(codec)
            if pool is not None:
                req.endpoint = single
                single.active += 1
                pool.send(req)
                return
        self._dispatch(req, codec)

    def _dispatch(self, req: UpstreamRequest, codec: Codec) -> None:
        owner = req.owner
        if owner is not None:
            conn = self.bound.get(owner)
            if conn is not None and conn.state != CLOSED:
                bep = conn.endpoint
                req.endpoint = bep
                bep.active += 1
                conn.send(req)
                return
        ep = self.pick(req.tried)
        if ep is None:
            req.on_failure(Reason.NO_HEALTHY_UPSTREAM, f"cluster {self.name}: no healthy endpoint")
            return
        req.endpoint = ep
        ep.active += 1
        if owner is not None:
            conn = self.bound[owner] = ep.bind_pool_for(codec).open_for(owner)
            conn.send(req)
            return
        # a codec may pool some frames differently (unframed Thrift: ping-pong)
        mode_for = getattr(codec, "pool_mode_for", None)
        mode = codec.pool_mode if mode_for is None else mode_for(req.frame)
        ep.pool_for(codec, mode).send(req)

    def retry(self, req: UpstreamRequest, failed: Endpoint, message: str) -> None:
        """``req`` never reached ``failed`` (connect failure): try another endpoint."""
        if req.endpoint is failed:
            failed.active -= 1
            req.endpoint = None
        tried = req.tried
        if tried is None:
            tried = req.tried = []
        tried.append(failed)
        if len(tried) >= self.settings.connect_attempts or self.closing:
            req.on_failure(Reason.NO_HEALTHY_UPSTREAM, message)
        else:
            self._dispatch(req, req.frame.codec)

    def pick(self, tried: list[Endpoint] | None = None) -> Endpoint | None:
        held = self.held
        if held is not None:
            self.held = None
            if tried is None:
                return held
        eps = self.endpoints
        if tried is not None or self.unhealthy:
            now = self.loop.time()
            eps = [e for e in eps if e.available(now) and (tried is None or e not in tried)]
        n = len(eps)
        if n == 0:
            return None
        if n == 1:
            return eps[0]
        lb = self.settings.lb
        if lb == "round_robin":
            i = self.rr
            self.rr = i + 1
            return eps[i % n]
        if lb == "random":
            return eps[self.rng.randrange(n)]
        # least_request: fewest requests in flight; ties broken round robin
        start = self.rr
        self.rr = start + 1
        best = eps[start % n]
        for k in range(1, n):
            e = eps[(start + k) % n]
            if e.active < best.active:
                best = e
        return best

    def unbind(self, owner: Any) -> None:
        """The owner (downstream connection) is gone: close its upstream connection."""
        conn = self.bound.pop(owner, None)
        if conn is not None:
            conn.owner = None
            conn.close()

    # --- lifecycle / admin ---------------------------------------------------------------
    def close(self) -> None:
        self.closing = True
        for ep in self.endpoints:
            for p in ep.pools.values():
                p.close_all()
        for t in list(self.tasks):
            t.cancel()

    def snapshot(self) -> dict[str, Any]:
        now = self.loop.time()
        return {
            "name": self.name,
            "protocol": self.settings.protocol,
            "lb": self.settings.lb,
            "in_flight": self.inflight,
            "max_pending": self.settings.max_pending,
            "endpoints": [
                {
                    "address": str(e),
                    "healthy": e.healthy,
                    "available": e.available(now),
                    "connections": e.open_connections(),
                    "in_flight": e.active,
                    "connect_failures": e.failures,
                }
                for e in self.endpoints
            ],
        }
