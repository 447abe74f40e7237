"""The proxy server: listeners, clusters, admin endpoint, graceful drain."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING, Any

from xproto.codec import Reason
from xproto.pool.batch import Batch
from xproto.pool.cluster import Cluster, ClusterSettings, PoolStats
from xproto.proxy.downstream import DownstreamConnection
from xproto.proxy.kafka import BrokerMap, serve_socket
from xproto.proxy.listener import FixedRoute, ListenerRuntime
from xproto.proxy.timeouts import TimeoutWheel

if TYPE_CHECKING:
    from xproto.config import Cluster as ClusterConfig
    from xproto.config import Config, Listener
    from xproto.registry import Registry

log = logging.getLogger("xproto.proxy")

#: ping-pong pools (HTTP/1.1, unframed Thrift) carry one request per connection at a time:
#: when ``max_connections`` is not set explicitly they may open this many per endpoint.
PINGPONG_DEFAULT_MAX_CONNECTIONS = 64


class MetricsPoolStats(PoolStats):
    """Binds a cluster's pool counters to the proxy metrics (children cached)."""

    def __init__(self, metrics: Any, cluster: str) -> None:
        self.m = metrics
        self.cluster = cluster
        self._up: dict[str, Any] = {}
        self._conns: dict[str, Any] = {}

    def _u(self, protocol: str) -> Any:
        s = self._up.get(protocol)
        if s is None:
            s = self._up[protocol] = self.m.upstream(self.cluster, protocol)
        return s

    def upstream_request(self, protocol: str) -> None:
        self._u(protocol).request()

    def counter(self, protocol: str) -> Any:
        return self._u(protocol)   # UpstreamStats: ``requests`` is a plain int

    def upstream_connection(self, protocol: str, delta: int) -> None:
        g = self._conns.get(protocol)
        if g is None:
            g = self._conns[protocol] = self.m.upstream_connections(self.cluster, protocol)
        g.inc(delta)

    def connect_failure(self, protocol: str) -> None:
        self._u(protocol).connect_failure()

    def unknown_response(self, protocol: str) -> None:
        self._u(protocol).unknown_response()

    def upstream_decode_error(self, protocol: str) -> None:
        log.debug("cluster %s: undecodable %s response", self.cluster, protocol)

    def heartbeat(self, protocol: str, direction: str) -> None:
        self.m.heartbeat(protocol, direction)


def cluster_settings(c: ClusterConfig, high_water: int = 1024 * 1024,
                     low_water: int = 256 * 1024) -> ClusterSettings:
    ka = c.keepalive
    s = ClusterSettings(
        name=c.name,
        endpoints=[(a.host, a.port) for a in c.endpoints],
        protocol=c.protocol,
        lb=c.lb,
        connect_timeout=c.connect_timeout,
        max_connections=c.max_connections,
        max_pending=c.max_pending,
        keepalive_interval=ka.interval if ka is not None else 0.0,
        keepalive_timeout=ka.timeout if ka is not None else 1.0,
        keepalive_failures=ka.failures if ka is not None else 3,
        high_water=high_water,
        low_water=low_water,
    )
    s.max_connections_pingpong = (c.max_connections if "max_connections" in c.model_fields_set
                                  else max(c.max_connections, PINGPONG_DEFAULT_MAX_CONNECTIONS))
    return s


class ProxyServer:
    """The proxy for one config: ``await start()``, ``await stop(grace)``."""

    def __init__(self, config: Config, registry: Registry | None = None, *,
                 metrics: Any = None, reuse_port: bool = False, admin: bool = True,
                 multiprocess_dir: str | None = None) -> None:
        self.config = config
        if registry is None:
            from xproto.registry import default_registry
            registry = default_registry()
        self.registry = registry
        if metrics is None:
            from xproto.metrics import Metrics
            metrics = Metrics(config=config, multiprocess_dir=multiprocess_dir)
        self.metrics = metrics
        self.reuse_port = reuse_port
        self.want_admin = admin
        self.loop: asyncio.AbstractEventLoop | None = None
        self.batch = Batch()
        self.timeouts: TimeoutWheel | None = None
        self._sync_timer: asyncio.TimerHandle | None = None
        self.clusters: dict[str, Cluster] = {}
        self.listeners: dict[str, ListenerRuntime] = {}
        self.extra: list[ListenerRuntime] = []      # kafka per-broker listeners
        self.kafka_maps: dict[str, BrokerMap] = {}
        self.admin: Any = None
        self.ready = False
        self.stopping = False
        self._drained: asyncio.Event | None = None
        #: test hook: id generators of new upstream connections start here (per cluster)
        self.id_start: dict[str, int] = {}
        #: clusters whose multiplexed connections reuse a free downstream id upstream (an
        #: optimisation, off by default: issue 4 wants a fresh generator id per request)
        self.id_passthrough: set[str] = set()

    # --- start ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self.batch.loop = loop   # upstream writes: once per loop iteration
        self.timeouts = TimeoutWheel(loop, batch=self.batch)
        cfg = self.config
        for c in cfg.clusters:
            s = cluster_settings(c)
            if c.name in self.id_passthrough:
                s.id_passthrough = True
            if c.name in self.id_start:
                # the hook tests the generator (its wrap): no downstream ids passed through
                s.id_start = self.id_start[c.name]
                s.id_passthrough = False
            self.clusters[c.name] = Cluster(s, loop, self.batch, MetricsPoolStats(self.metrics, c.name))
        try:
            for li in cfg.listeners:
                await self._start_listener(li)
            if self.want_admin and cfg.admin is not None:
                from xproto.metrics.admin import AdminServer
                self.admin = AdminServer(
                    cfg.admin.address, self.metrics,
                    config_provider=cfg.effective_dict,
                    clusters_provider=self.clusters_snapshot,
                    ready_provider=lambda: self.ready,
                    loop=loop,
                )
                self.admin.start()
        except BaseException:
            await self.stop(0)
            raise
        if getattr(self.metrics, "multiprocess_dir", None):
            self._start_metrics_sync()
        self.ready = True

    # --- multi-worker metrics ------------------------------------------------------------
    def _start_metrics_sync(self) -> None:
        """Write this worker's metrics (and its /clusters view) for the other workers'
        scrapes: now, every SYNC_INTERVAL, on SIGUSR1 (a scrape asking) and at stop."""
        from xproto.metrics import SYNC_INTERVAL
        loop = self.loop
        assert loop is not None
        m = self.metrics
        m.extra_provider = self._own_clusters
        try:
            loop.add_signal_handler(signal.SIGUSR1, m.sync)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
            pass
        m.sync()   # after the handler: a scrape may signal us as soon as our file exists

        def tick() -> None:
            m.sync()
            self._sync_timer = loop.call_later(SYNC_INTERVAL, tick)
        self._sync_timer = loop.call_later(SYNC_INTERVAL, tick)

    def _stop_metrics_sync(self) -> None:
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
            self.metrics.sync()
            if self.loop is not None:
                with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                    self.loop.remove_signal_handler(signal.SIGUSR1)

    async def _start_listener(self, li: Listener) -> None:
        from xproto.router import RouteTable
        loop = self.loop
        assert loop is not None
        candidates = self.registry.resolve(li.protocols)
        table = RouteTable(li)
        lim = li.limits
        lr = ListenerRuntime(
            li.name, candidates, table.route, self.clusters, self.metrics, loop, self.batch,
            limits=li.codec_limits(), max_connections=lim.max_connections,
            max_pending=lim.max_pending_per_connection, frame_timeout=lim.frame_timeout,
            idle_timeout=lim.idle_timeout, high_water=lim.high_water, low_water=lim.low_water,
            on_drained=self._check_drained, fixed_route=table.catch_all, timeouts=self.timeouts,
        )
        if any(c.name == "kafka" for c in candidates):
            self._setup_kafka(li, lr, table)
        self.listeners[li.name] = lr
        host, port = li.address.host, li.address.port
        lr.server = await loop.create_server(
            lambda: DownstreamConnection(lr), host, port, reuse_port=self.reuse_port or None,
            backlog=1024)
        log.info("listener %s on %s (%s)", li.name, self.listener_address(li.name),
                 ", ".join(c.name for c in candidates))

    def _setup_kafka(self, li: Listener, lr: ListenerRuntime, table: Any) -> None:
        kcfg = li.kafka
        bind_host = li.address.host
        advertise = (kcfg.advertise_host if kcfg is not None and kcfg.advertise_host else None)
        if advertise is None:
            advertise = bind_host if bind_host not in ("0.0.0.0", "::", "") else socket.gethostname()
        ports = kcfg.broker_ports if kcfg is not None else None
        kafka_codec = self.registry.get("kafka")

        def open_listener(sock: socket.socket, host: str, port: int) -> None:
            self._open_broker_listener(li, lr, table, kafka_codec, sock, host, port)

        bm = BrokerMap(bind_host, advertise, ports, open_listener)
        lr.kafka = bm
        self.kafka_maps[li.name] = bm

    def _open_broker_listener(self, li: Listener, parent: ListenerRuntime, table: Any,
                              codec: Any, sock: socket.socket, host: str, port: int) -> None:
        loop = self.loop
        assert loop is not None
        # the cluster the listener's kafka traffic goes to gives the connection settings
        template = None
        for r in li.routes:
            names = [r.cluster] if r.cluster else [w.name for w in (r.clusters or [])]
            for n in names:
                if n in self.clusters:
                    template = self.clusters[n].settings
                    break
            if template is not None:
                break
        name = f"{li.name}/broker/{host}:{port}"
        s = ClusterSettings(name=name, endpoints=[(host, port)], protocol="kafka")
        if template is not None:
            for f in ("connect_timeout", "max_connections", "max_pending", "high_water", "low_water",
                      "connect_attempts", "backoff_min", "backoff_max", "id_start", "id_passthrough"):
                setattr(s, f, getattr(template, f))
        cluster = Cluster(s, loop, self.batch, MetricsPoolStats(self.metrics, name))
        clusters = {name: cluster}
        self.clusters[name] = cluster

        def route(frame: Any) -> Any:
            r = table.route(frame)   # the listener's routes decide what is allowed and the timeout
            return None if r is None else FixedRoute(name, r.timeout)

        catch_all = table.catch_all
        blr = ListenerRuntime(
            parent.name, [codec], route, clusters, self.metrics, loop, self.batch,
            limits=parent.limits, max_connections=parent.max_connections,
            max_pending=parent.max_pending, frame_timeout=parent.frame_timeout,
            idle_timeout=parent.idle_timeout, high_water=parent.high_water,
            low_water=parent.low_water, kafka=parent.kafka, on_drained=self._check_drained,
            fixed_route=None if catch_all is None else FixedRoute(name, catch_all.timeout),
            timeouts=self.timeouts,
        )
        self.extra.append(blr)

        async def serve() -> None:
            try:
                blr.server = await serve_socket(loop, lambda: DownstreamConnection(blr), sock)
            except OSError as e:  # pragma: no cover
                log.error("cannot serve kafka broker listener %s: %s", name, e)
                sock.close()
            except asyncio.CancelledError:  # stopped before it served
                sock.close()
                raise
        cluster.spawn(serve())

    # --- queries -------------------------------------------------------------------------
    def listener_address(self, name: str) -> tuple[str, int]:
        lr = self.listeners[name]
        assert lr.server is not None
        addr = lr.server.sockets[0].getsockname()  # type: ignore[attr-defined]
        return (addr[0], addr[1])

    @property
    def admin_url(self) -> str | None:
        return self.admin.url if self.admin is not None else None

    def all_listeners(self) -> list[ListenerRuntime]:
        return list(self.listeners.values()) + self.extra

    def _own_clusters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"clusters": [c.snapshot() for c in self.clusters.values()]}
        if self.kafka_maps:
            out["kafka_brokers"] = {n: m.snapshot() for n, m in self.kafka_maps.items()}
        return out

    def clusters_snapshot(self) -> dict[str, Any]:
        """/clusters: this process's pools; with ``--workers N`` also every other live
        worker's (``workers``: their last snapshot, at most a second old)."""
        out = self._own_clusters()
        m = self.metrics
        if getattr(m, "multiprocess_dir", None):
            out["pid"] = os.getpid()
            out["workers"] = [{"pid": s.get("pid"), **(s.get("extra") or {})}
                              for s in m.worker_snapshots(refresh=False) if s.get("alive")]
        return out

    def inflight(self) -> int:
        return sum(lr.inflight() for lr in self.all_listeners())

    # --- stop ----------------------------------------------------------------------------
    def _check_drained(self) -> None:
        ev = self._drained
        if ev is not None and not ev.is_set() and self.inflight() == 0:
            ev.set()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within ``grace`` seconds (default:
        the config's ``drain_timeout``), answer the rest with local replies, close all."""
        if self.stopping:
            return
        self.stopping = True
        self.ready = False
        if grace is None:
            grace = self.config.drain_timeout
        lrs = self.all_listeners()
        for lr in lrs:
            lr.draining = True
            if lr.server is not None:
                lr.server.close()
        self._drained = asyncio.Event()
        self._check_drained()
        if grace > 0 and not self._drained.is_set():
            try:
                await asyncio.wait_for(self._drained.wait(), grace)
            except TimeoutError:
                log.warning("drain: %d requests still in flight after %gs: answering them locally",
                            self.inflight(), grace)
        for lr in self.all_listeners():
            for conn in list(lr.connections):
                conn.drain_now(Reason.NO_HEALTHY_UPSTREAM, "proxy shutting down")
                conn.close()
        for c in self.clusters.values():
            c.close()
        if self.timeouts is not None:
            self.timeouts.close()
        self._stop_metrics_sync()
        if self.admin is not None:
            self.admin.stop()
        for lr in self.all_listeners():
            if lr.server is not None:
                try:
                    await asyncio.wait_for(lr.server.wait_closed(), 1.0)
                except TimeoutError:
                    pass
        # let transports run their close callbacks
        await asyncio.sleep(0)
