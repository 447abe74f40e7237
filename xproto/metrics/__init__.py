"""Prometheus metrics of the proxy (names and labels as in INTERFACE.md).

Series (every one carries ``protocol``):

=============================================  =========  ==================================
name                                           type       labels
=============================================  =========  ==================================
``xproto_downstream_requests_total``           counter    listener, protocol, api
``xproto_downstream_responses_total``          counter    listener, protocol, status
``xproto_request_duration_seconds``            histogram  listener, protocol, api
``xproto_decode_errors_total``                 counter    listener, protocol
``xproto_local_replies_total``                 counter    listener, protocol, reason
``xproto_upstream_requests_total``             counter    cluster, protocol
``xproto_upstream_responses_total``            counter    cluster, protocol, status
``xproto_upstream_connect_failures_total``     counter    cluster, protocol
``xproto_upstream_unknown_responses_total``    counter    cluster, protocol
``xproto_downstream_connections``              gauge      listener, protocol
``xproto_upstream_connections``                gauge      cluster, protocol
``xproto_heartbeats_total``                    counter    protocol, direction
=============================================  =========  ==================================

* ``api``: the Kafka API name (``Produce``, ``Fetch`` ...); ``""`` for every other protocol
  (the label exists on all series of those two metrics so that one metric has one label set).
* ``status``: the response mapped to an HTTP-style code (200, 400, 404, 500, 502, 503, 504).
* ``reason``: ``no_route``, ``no_healthy_upstream``, ``timeout``, ``overflow``,
  ``upstream_reset`` (and ``bad_request``) -- :class:`xproto.codec.Reason` values.
* ``direction`` of heartbeats: ``downstream_reply`` (the proxy answered a client's
  heartbeat), ``upstream_sent`` (keepalive sent to an idle upstream), ``upstream_ok`` (its
  reply came back), ``upstream_missed`` (no reply within the keepalive timeout).
* The two connection gauges: a downstream connection's protocol is known only after
  detection, so ``xproto_downstream_connections{protocol}`` is the listener's configured
  protocol list joined by ``","`` (e.g. ``"dubbo,bolt"``, or ``"auto"``);
  ``xproto_upstream_connections{protocol}`` is the protocol the connection speaks (the
  caller passes it), else the cluster's configured protocol, else ``"auto"`` (a cluster
  without ``protocol`` follows the downstream frame's protocol).
* The first three extra upstream series go beyond INTERFACE.md's minimum.

Hot path: ``m.downstream(listener, protocol)`` returns a cached :class:`DownstreamStats`
whose methods do one dict lookup and one ``inc``/``observe`` on a pre-bound child.

Every :class:`Metrics` has its own ``CollectorRegistry`` (tests create many).

Multi-worker (``workers: N``): ``Metrics(multiprocess_dir=DIR)`` (or the
``PROMETHEUS_MULTIPROC_DIR`` environment variable with ``multiprocess=True``) switches
prometheus_client to its multiprocess mode: every worker process writes its values to
mmap'ed files in DIR, and :meth:`Metrics.exposition` of *any* worker (or of the parent)
merges all of them -- counters and histograms summed, connection gauges summed over live
workers (``livesum``). The supervisor must create an empty DIR before forking, and call
:func:`mark_worker_dead` for each worker that exits. Only one Metrics per process in
this mode (the values live in per-process files, not in the instance).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from enum import Enum
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as _prom_values
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from xproto.config import Config

__all__ = [
    "CONTENT_TYPE",
    "DURATION_BUCKETS",
    "HEARTBEAT_DIRECTIONS",
    "DownstreamStats",
    "Metrics",
    "UpstreamStats",
    "mark_worker_dead",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Request latency buckets, 50 µs .. 60 s: a proxied loopback RPC takes ~100 µs, a slow
#: upstream seconds; 15 s is the default route timeout.
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0,
)

HEARTBEAT_DIRECTIONS = ("downstream_reply", "upstream_sent", "upstream_ok", "upstream_missed")


def _label(v: Any) -> str:
    # str-Enums (Reason) would print as "Reason.NO_ROUTE" with str()
    if isinstance(v, Enum):
        return str(v.value)
    return str(v)


class DownstreamStats:
    """Pre-bound series of one (listener, protocol)."""

    __slots__ = ("_decode", "_dur", "_local", "_m", "_req", "_resp", "listener", "protocol")

    def __init__(self, m: Metrics, listener: str, protocol: str) -> None:
        self._m = m
        self.listener = listener
        self.protocol = protocol
        self._req: dict[str, Any] = {}
        self._resp: dict[int, Any] = {}
        self._dur: dict[str, Any] = {}
        self._local: dict[Any, Any] = {}
        self._decode = m._decode_errors.labels(listener, protocol)

    def requests_inc(self, api: str = "") -> None:
        c = self._req.get(api)
        if c is None:
            c = self._req[api] = self._m._requests.labels(self.listener, self.protocol, api)
        c.inc()

    def response(self, status_http: int) -> None:
        c = self._resp.get(status_http)
        if c is None:
            c = self._resp[status_http] = self._m._responses.labels(
                self.listener, self.protocol, str(int(status_http)))
        c.inc()

    def observe(self, seconds: float, api: str = "") -> None:
        h = self._dur.get(api)
        if h is None:
            h = self._dur[api] = self._m._duration.labels(self.listener, self.protocol, api)
        h.observe(seconds)

    def decode_error(self) -> None:
        self._decode.inc()

    def local_reply(self, reason: Any) -> None:
        c = self._local.get(reason)
        if c is None:
            c = self._local[reason] = self._m._local_replies.labels(
                self.listener, self.protocol, _label(reason))
        c.inc()


class UpstreamStats:
    """Pre-bound series of one (cluster, protocol)."""

    __slots__ = ("_connfail", "_m", "_req", "_resp", "_unknown", "cluster", "protocol")

    def __init__(self, m: Metrics, cluster: str, protocol: str) -> None:
        self._m = m
        self.cluster = cluster
        self.protocol = protocol
        self._req = m._up_requests.labels(cluster, protocol)
        self._connfail = m._up_connect_failures.labels(cluster, protocol)
        self._unknown = m._up_unknown.labels(cluster, protocol)
        self._resp: dict[int, Any] = {}

    def request(self) -> None:
        self._req.inc()

    def response(self, status_http: int) -> None:
        c = self._resp.get(status_http)
        if c is None:
            c = self._resp[status_http] = self._m._up_responses.labels(
                self.cluster, self.protocol, str(int(status_http)))
        c.inc()

    def connect_failure(self) -> None:
        self._connfail.inc()

    def unknown_response(self) -> None:
        """A response whose request id matches nothing in flight (dropped)."""
        self._unknown.inc()


def _enable_multiprocess(path: str) -> None:
    if not os.path.isdir(path):
        raise ValueError(f"multiprocess metrics directory {path!r} does not exist")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    # prometheus_client picks its value class at import time; children created from now on
    # use mmap'ed per-process files in `path`.
    _prom_values.ValueClass = _prom_values.get_value_class()  # type: ignore[no-untyped-call]


def mark_worker_dead(pid: int, path: str | None = None) -> None:
    """Tell the multiprocess store that worker ``pid`` exited (its live gauges vanish)."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class Metrics:
    """Every proxy metric, in a private registry, with cached pre-bound children.

    ``config`` (optional) tells the connection gauges each listener's protocol list and
    each cluster's protocol. ``multiprocess_dir``: see the module docstring.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        config: Config | None = None,
        multiprocess_dir: str | None = None,
        multiprocess: bool = False,
    ) -> None:
        if multiprocess and multiprocess_dir is None:
            multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
            if not multiprocess_dir:
                raise ValueError("multiprocess metrics need PROMETHEUS_MULTIPROC_DIR or multiprocess_dir")
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            _enable_multiprocess(multiprocess_dir)
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            "xproto_downstream_requests", "Requests received from downstream clients.",
            ("listener", "protocol", "api"), registry=r)
        self._responses = Counter(
            "xproto_downstream_responses", "Responses sent to downstream clients, by HTTP-style status.",
            ("listener", "protocol", "status"), registry=r)
        self._duration = Histogram(
            "xproto_request_duration_seconds", "Time from a request's arrival to its response.",
            ("listener", "protocol", "api"), buckets=DURATION_BUCKETS, registry=r)
        self._decode_errors = Counter(
            "xproto_decode_errors", "Downstream bytes that failed to decode.",
            ("listener", "protocol"), registry=r)
        self._local_replies = Counter(
            "xproto_local_replies", "Requests answered by the proxy itself, by reason.",
            ("listener", "protocol", "reason"), registry=r)
        self._up_requests = Counter(
            "xproto_upstream_requests", "Requests sent to upstream clusters.",
            ("cluster", "protocol"), registry=r)
        self._up_responses = Counter(
            "xproto_upstream_responses", "Responses received from upstream, by HTTP-style status.",
            ("cluster", "protocol", "status"), registry=r)
        self._up_connect_failures = Counter(
            "xproto_upstream_connect_failures", "Failed connection attempts to upstream endpoints.",
            ("cluster", "protocol"), registry=r)
        self._up_unknown = Counter(
            "xproto_upstream_unknown_responses", "Upstream responses matching no request in flight.",
            ("cluster", "protocol"), registry=r)
        self._down_conns = Gauge(
            "xproto_downstream_connections", "Open downstream connections.",
            ("listener", "protocol"), registry=r, multiprocess_mode="livesum")
        self._up_conns = Gauge(
            "xproto_upstream_connections", "Open upstream connections.",
            ("cluster", "protocol"), registry=r, multiprocess_mode="livesum")
        self._heartbeats = Counter(
            "xproto_heartbeats", "Protocol heartbeats, by direction.",
            ("protocol", "direction"), registry=r)

        self._downstream: dict[tuple[str, str], DownstreamStats] = {}
        self._upstream: dict[tuple[str, str], UpstreamStats] = {}
        self._down_conn_children: dict[str, Any] = {}
        self._up_conn_children: dict[tuple[str, str | None], Any] = {}
        self._hb: dict[tuple[str, str], Any] = {}
        self._listener_protocols: dict[str, str] = {}
        self._cluster_protocols: dict[str, str] = {}
        if config is not None:
            self.configure(config)

    def configure(self, config: Config) -> None:
        """Learn listeners' and clusters' protocols (for the connection gauges' label)."""
        for li in config.listeners:
            self.set_listener_protocols(li.name, li.protocols)
        for c in config.clusters:
            self._cluster_protocols[c.name] = c.protocol or "auto"

    def set_listener_protocols(self, listener: str, protocols: Iterable[str]) -> None:
        self._listener_protocols[listener] = ",".join(protocols)

    # --- hot-path accessors (cached) -----------------------------------------------------
    def downstream(self, listener: str, protocol: str) -> DownstreamStats:
        key = (listener, protocol)
        s = self._downstream.get(key)
        if s is None:
            s = self._downstream[key] = DownstreamStats(self, listener, protocol)
        return s

    def upstream(self, cluster: str, protocol: str) -> UpstreamStats:
        key = (cluster, protocol)
        s = self._upstream.get(key)
        if s is None:
            s = self._upstream[key] = UpstreamStats(self, cluster, protocol)
        return s

    def downstream_connections(self, listener: str) -> Any:
        """The gauge child of a listener's open connections (``.inc()`` / ``.dec()``)."""
        g = self._down_conn_children.get(listener)
        if g is None:
            proto = self._listener_protocols.get(listener, "auto")
            g = self._down_conn_children[listener] = self._down_conns.labels(listener, proto)
        return g

    def upstream_connections(self, cluster: str, protocol: str | None = None) -> Any:
        """The gauge child of a cluster's open connections (``.inc()`` / ``.dec()``).

        ``protocol``: what the connections speak; default the cluster's configured
        protocol, else ``"auto"``.
        """
        key = (cluster, protocol)
        g = self._up_conn_children.get(key)
        if g is None:
            proto = protocol or self._cluster_protocols.get(cluster, "auto")
            g = self._up_conn_children[key] = self._up_conns.labels(cluster, proto)
        return g

    def heartbeat(self, protocol: str, direction: str) -> None:
        """Count one heartbeat (``direction``: see :data:`HEARTBEAT_DIRECTIONS`)."""
        key = (protocol, direction)
        c = self._hb.get(key)
        if c is None:
            c = self._hb[key] = self._heartbeats.labels(protocol, direction)
        c.inc()

    # --- exposition --------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The Prometheus text exposition (all workers' merged in multiprocess mode)."""
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess
            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(reg)
        return generate_latest(self.registry)
