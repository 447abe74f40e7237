"""Per-listener runtime state shared by its downstream connections."""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xproto.limits import DEFAULT_LIMITS, Limits
from xproto.pool.batch import Batch
from xproto.proxy.timeouts import TimeoutWheel

if TYPE_CHECKING:
    from xproto.codec import Codec
    from xproto.frame import Frame
    from xproto.pool.cluster import Cluster

log = logging.getLogger("xproto.proxy")


class FixedRoute:
    __slots__ = ("cluster", "timeout")

    def __init__(self, cluster: str, timeout: float | None) -> None:
        self.cluster = cluster
        self.timeout = timeout


def kafka_api_namer(codec: Codec) -> Callable[[Frame], str] | None:
    """The ``api`` metric label: the Kafka API name; other protocols have none."""
    if codec.name != "kafka":
        return None
    try:
        from xproto.codecs.kafka import api_name, kafka_info
    except ImportError:  # pragma: no cover - kafka codec missing
        return None

    def name(frame: Frame) -> str:
        key = kafka_info(frame).api_key
        return api_name(key) if key is not None else ""
    return name


class ListenerRuntime:
    """Everything a :class:`~xproto.proxy.downstream.DownstreamConnection` needs."""

    def __init__(
        self,
        name: str,
        candidates: list[Codec],
        route: Callable[[Frame], Any],
        clusters: dict[str, Cluster],
        metrics: Any,
        loop: asyncio.AbstractEventLoop,
        batch: Batch | None = None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        max_connections: int = 10000,
        max_pending: int = 10000,
        frame_timeout: float = 30.0,
        idle_timeout: float = 0.0,
        high_water: int = 1024 * 1024,
        low_water: int = 256 * 1024,
        kafka: Any = None,
        on_drained: Callable[[], None] | None = None,
        fixed_route: Any = None,
        timeouts: TimeoutWheel | None = None,
    ) -> None:
        self.name = name
        self.candidates = candidates
        self.route = route
        #: the route every request takes when the first route catches everything (no
        #: header is read, ``route`` is not called); None: ask ``route``
        self.fixed_route = fixed_route
        self.clusters = clusters
        self.metrics = metrics
        self.loop = loop
        self.batch = batch or Batch()
        #: request deadlines (shared by the listeners of one proxy)
        self.timeouts = timeouts if timeouts is not None else TimeoutWheel(loop, batch=self.batch)
        self.limits = limits
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.frame_timeout = frame_timeout
        self.idle_timeout = idle_timeout
        self.high_water = high_water
        self.low_water = low_water
        self.kafka = kafka
        self.connections: set[Any] = set()
        self.conn_gauge = metrics.downstream_connections(name)
        self.draining = False
        #: connections refused (limit, draining) since the last log line, and when that was
        self.refused = 0
        self.refused_logged = -1e9
        self.on_drained = on_drained
        self.server: asyncio.AbstractServer | None = None
        self._up: dict[tuple[str, str], Any] = {}
        self._lanes: dict[Any, Any] = {}
        #: the fast lane may be turned off (tests compare both paths; XPROTO_NO_LANE=1)
        self.lanes_enabled = not os.environ.get("XPROTO_NO_LANE")

    def api_namer(self, codec: Codec) -> Callable[[Frame], str] | None:
        return kafka_api_namer(codec)

    def lane(self, codec: Codec) -> Any:
        """The fast lane of ``codec`` on this listener (xproto.proxy.lane, or
        xproto.proxy.lane_pingpong for ping-pong codecs), or None."""
        try:
            return self._lanes[codec]
        except KeyError:
            pass
        lane = None
        if self.lanes_enabled:
            from xproto.codec import PoolMode
            if codec.pool_mode is PoolMode.PINGPONG:
                from xproto.proxy.lane_pingpong import PingPongLane
                lane = PingPongLane.for_listener(self, codec)
            else:
                from xproto.proxy.lane import Lane
                lane = Lane.for_listener(self, codec)
        self._lanes[codec] = lane
        return lane

    def up_stats(self, cluster: str, protocol: str) -> Any:
        key = (cluster, protocol)
        s = self._up.get(key)
        if s is None:
            s = self._up[key] = self.metrics.upstream(cluster, protocol)
        return s

    def inflight(self) -> int:
        return sum(c.inflight for c in self.connections)

    def drained_one(self, conn: Any) -> None:
        if self.on_drained is not None:
            self.on_drained()
