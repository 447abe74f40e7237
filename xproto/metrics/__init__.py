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
* ``direction`` of heartbeats: see :data:`HEARTBEAT_DIRECTIONS`: ``downstream_reply`` (the
  proxy answered a client's heartbeat), ``upstream_sent`` (keepalive sent to an idle
  upstream), ``upstream_ok`` (its reply came back), ``upstream_missed`` (no reply within the
  keepalive timeout), ``upstream_reply`` (the proxy answered an upstream server's heartbeat).
* The two connection gauges: a downstream connection's protocol is known only after
  detection, so ``xproto_downstream_connections{protocol}`` is the listener's configured
  protocol list joined by ``","`` (e.g. ``"dubbo,bolt"``, or ``"auto"``);
  ``xproto_upstream_connections{protocol}`` is the protocol the connection speaks (the
  caller passes it), else the cluster's configured protocol, else ``"auto"`` (a cluster
  without ``protocol`` follows the downstream frame's protocol).
* The first three extra upstream series go beyond INTERFACE.md's minimum.

Hot path (issue 6): the proxy counts into plain Python ints, lists and dicts held by
pre-bound :class:`DownstreamStats` / :class:`UpstreamStats` objects (``stats.requests += 1``,
``stats.hist.observe(s)``: a bisect over the precomputed bucket bounds and one list slot);
prometheus_client's own ``Counter.inc`` (a lock and a float box, ~0.34 µs) and
``Histogram.observe`` (~0.67 µs) cost ~15% of the proxy's CPU at six updates per request.
A custom collector turns the ints into metric families at scrape time. The admin server
scrapes from its own thread: it only reads ints and copies dicts (``list(d.items())``),
which the GIL makes safe; a series being created during a scrape shows up in the next one.

Every :class:`Metrics` has its own ``CollectorRegistry`` (tests create many).

Multi-worker (``--workers N``): ``Metrics(multiprocess_dir=DIR)`` (or the
``PROMETHEUS_MULTIPROC_DIR`` environment variable with ``multiprocess=True``). Each worker
writes a snapshot of its values to ``DIR/worker-<pid>.json`` (:meth:`Metrics.sync`: atomic
replace) every :data:`SYNC_INTERVAL` seconds, when it stops, and when asked by SIGUSR1; the
exposition of *any* worker merges its live values with every other worker's file --
counters and histograms summed, connection gauges summed over live workers only
(:func:`mark_worker_dead` clears a dead worker's gauges and keeps its counters). Before it
merges, a scrape asks the other live workers for a fresh snapshot (SIGUSR1) and waits for
it at most :data:`SCRAPE_SYNC_WAIT` seconds, so the merged values are current.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from xproto.config import Config

__all__ = [
    "CONTENT_TYPE",
    "DURATION_BUCKETS",
    "HEARTBEAT_DIRECTIONS",
    "DownstreamStats",
    "GaugeValue",
    "Histogram",
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

HEARTBEAT_DIRECTIONS = ("downstream_reply", "upstream_sent", "upstream_ok", "upstream_missed",
                        "upstream_reply")

#: multi-worker: seconds between two snapshots a worker writes on its own
SYNC_INTERVAL = 1.0
#: multi-worker: how long a scrape waits for the other workers' fresh snapshots
SCRAPE_SYNC_WAIT = 0.5

_NBUCKETS = len(DURATION_BUCKETS) + 1   # the last slot is +Inf


def _label(v: Any) -> str:
    # str-Enums (Reason) would print as "Reason.NO_ROUTE" with str()
    if isinstance(v, Enum):
        return str(v.value)
    return str(v)


class Histogram:
    """One histogram series: per-bucket counts (not cumulative) and the sum.

    ``counts[i]`` counts observations ``v`` with ``DURATION_BUCKETS[i-1] < v <=
    DURATION_BUCKETS[i]`` (``bisect_left``: Prometheus' ``le`` is inclusive); the last slot
    is +Inf. Made cumulative at scrape time.
    """

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * _NBUCKETS
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.sum += seconds


class GaugeValue:
    """A gauge series: ``inc``/``dec``/``set`` on a plain number."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def dec(self, amount: int = 1) -> None:
        self.value -= amount

    def set(self, value: int) -> None:
        self.value = value


class DownstreamStats:
    """The series of one (listener, protocol), as plain numbers.

    Hot path: ``requests`` (api ``""``) and ``hist`` are attributes the proxy updates
    directly; the methods are the general form (any api / status / reason).
    """

    __slots__ = ("api_hist", "api_requests", "decode_errors", "hist", "listener", "local",
                 "protocol", "requests", "responses")

    def __init__(self, listener: str, protocol: str) -> None:
        self.listener = listener
        self.protocol = protocol
        #: requests with api "" (every protocol but Kafka)
        self.requests = 0
        #: Kafka: api name -> requests
        self.api_requests: dict[str, int] = {}
        #: HTTP-style status -> responses
        self.responses: dict[int, int] = {}
        self.hist = Histogram()
        self.api_hist: dict[str, Histogram] = {}
        self.decode_errors = 0
        self.local: dict[str, int] = {}

    def requests_inc(self, api: str = "") -> None:
        if api:
            d = self.api_requests
            d[api] = d.get(api, 0) + 1
        else:
            self.requests += 1

    def response(self, status_http: int) -> None:
        d = self.responses
        d[status_http] = d.get(status_http, 0) + 1

    def histogram(self, api: str = "") -> Histogram:
        if not api:
            return self.hist
        h = self.api_hist.get(api)
        if h is None:
            h = self.api_hist[api] = Histogram()
        return h

    def observe(self, seconds: float, api: str = "") -> None:
        h = self.hist if not api else self.histogram(api)
        h.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        h.sum += seconds

    def decode_error(self) -> None:
        self.decode_errors += 1

    def local_reply(self, reason: Any) -> None:
        key = reason if type(reason) is str else _label(reason)
        d = self.local
        d[key] = d.get(key, 0) + 1


class UpstreamStats:
    """The series of one (cluster, protocol), as plain numbers (``requests`` is updated
    directly on the hot path)."""

    __slots__ = ("cluster", "connect_failures", "protocol", "requests", "responses", "unknown")

    def __init__(self, cluster: str, protocol: str) -> None:
        self.cluster = cluster
        self.protocol = protocol
        self.requests = 0
        self.responses: dict[int, int] = {}
        self.connect_failures = 0
        self.unknown = 0

    def request(self) -> None:
        self.requests += 1

    def response(self, status_http: int) -> None:
        d = self.responses
        d[status_http] = d.get(status_http, 0) + 1

    def connect_failure(self) -> None:
        self.connect_failures += 1

    def unknown_response(self) -> None:
        """A response whose request id matches nothing in flight (dropped)."""
        self.unknown += 1


# --- snapshots: what a worker writes, what a scrape merges ---------------------------------
# A snapshot is a JSON-able dict: series kind -> list of [label values..., value]. Histograms'
# value is [counts..., sum]. Merging sums values of equal label tuples.
_COUNTER_KINDS = ("req", "resp", "dec", "local", "up_req", "up_resp", "up_cf", "up_unk", "hb")
_GAUGE_KINDS = ("down_conns", "up_conns")


def _items(d: dict[Any, Any]) -> list[tuple[Any, Any]]:
    # called from the admin thread while the loop thread may add keys: a C-level copy
    # under the GIL; retried in the (theoretical) case of a resize mid-copy
    for _ in range(10):
        try:
            return list(d.items())
        except RuntimeError:  # pragma: no cover - "dictionary changed size during iteration"
            continue
    return []  # pragma: no cover


class _Family:
    __slots__ = ("doc", "kind", "labels", "name")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], kind: str) -> None:
        self.name, self.doc, self.labels, self.kind = name, doc, labels, kind


_FAMILIES: dict[str, _Family] = {
    "req": _Family("xproto_downstream_requests", "Requests received from downstream clients.",
                   ("listener", "protocol", "api"), "counter"),
    "resp": _Family("xproto_downstream_responses",
                    "Responses sent to downstream clients, by HTTP-style status.",
                    ("listener", "protocol", "status"), "counter"),
    "dur": _Family("xproto_request_duration_seconds", "Time from a request's arrival to its response.",
                   ("listener", "protocol", "api"), "histogram"),
    "dec": _Family("xproto_decode_errors", "Downstream bytes that failed to decode.",
                   ("listener", "protocol"), "counter"),
    "local": _Family("xproto_local_replies", "Requests answered by the proxy itself, by reason.",
                     ("listener", "protocol", "reason"), "counter"),
    "up_req": _Family("xproto_upstream_requests", "Requests sent to upstream clusters.",
                      ("cluster", "protocol"), "counter"),
    "up_resp": _Family("xproto_upstream_responses",
                       "Responses received from upstream, by HTTP-style status.",
                       ("cluster", "protocol", "status"), "counter"),
    "up_cf": _Family("xproto_upstream_connect_failures",
                     "Failed connection attempts to upstream endpoints.", ("cluster", "protocol"), "counter"),
    "up_unk": _Family("xproto_upstream_unknown_responses",
                      "Upstream responses matching no request in flight.", ("cluster", "protocol"), "counter"),
    "down_conns": _Family("xproto_downstream_connections", "Open downstream connections.",
                          ("listener", "protocol"), "gauge"),
    "up_conns": _Family("xproto_upstream_connections", "Open upstream connections.",
                        ("cluster", "protocol"), "gauge"),
    "hb": _Family("xproto_heartbeats", "Protocol heartbeats, by direction.",
                  ("protocol", "direction"), "counter"),
}


def merge_snapshots(snaps: Iterable[dict[str, Any]]) -> dict[str, dict[tuple[str, ...], Any]]:
    """Sum equal series over snapshots: kind -> label tuple -> value (histograms: a list)."""
    out: dict[str, dict[tuple[str, ...], Any]] = {k: {} for k in _FAMILIES}
    for snap in snaps:
        for kind, rows in snap.items():
            dst = out.get(kind)
            if dst is None:
                continue
            for row in rows:
                key = tuple(row[:-1])
                v = row[-1]
                old = dst.get(key)
                if kind == "dur":
                    dst[key] = list(v) if old is None else [a + b for a, b in zip(old, v, strict=True)]
                else:
                    dst[key] = v if old is None else old + v
    return out


class _Collector:
    """Builds the metric families from the live numbers (and other workers' snapshots)."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def describe(self) -> list[Metric]:
        return list(self._families({k: {} for k in _FAMILIES}))

    def collect(self) -> Iterator[Metric]:
        return self._families(merge_snapshots(self.m.gather()))

    @staticmethod
    def _families(merged: dict[str, dict[tuple[str, ...], Any]]) -> Iterator[Metric]:
        for kind, fam in _FAMILIES.items():
            series = merged[kind]
            mf: Any
            if fam.kind == "counter":
                mf = CounterMetricFamily(fam.name, fam.doc, labels=fam.labels)
                for key, v in series.items():
                    mf.add_metric(list(key), float(v))
            elif fam.kind == "gauge":
                mf = GaugeMetricFamily(fam.name, fam.doc, labels=fam.labels)
                for key, v in series.items():
                    mf.add_metric(list(key), float(v))
            else:
                mf = HistogramMetricFamily(fam.name, fam.doc, labels=fam.labels)
                for key, v in series.items():
                    counts, total = v[:-1], v[-1]
                    acc = 0
                    buckets = []
                    for bound, c in zip(DURATION_BUCKETS, counts, strict=False):
                        acc += c
                        buckets.append((repr(float(bound)), float(acc)))
                    acc += counts[-1]
                    buckets.append(("+Inf", float(acc)))
                    mf.add_metric(list(key), buckets, float(total))
            yield mf


def _snapshot_path(directory: str, pid: int) -> str:
    return os.path.join(directory, f"worker-{pid}.json")


def _read_snapshot(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (OSError, ValueError):
        return None   # vanished, or (never: writes are atomic replaces) half-written


def _write_snapshot(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)


def mark_worker_dead(pid: int, path: str | None = None) -> None:
    """Tell the multi-worker store that worker ``pid`` exited: its connection gauges vanish,
    its counters stay (as prometheus_client's multiprocess ``livesum``)."""
    directory = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        raise ValueError("mark_worker_dead needs the metrics directory")
    p = _snapshot_path(directory, pid)
    data = _read_snapshot(p)
    if data is None:
        return
    for kind in _GAUGE_KINDS:
        data[kind] = []
    data["alive"] = False
    _write_snapshot(p, data)


class Metrics:
    """Every proxy metric, as plain numbers behind a private registry's custom collector.

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
        if multiprocess_dir is not None and not os.path.isdir(multiprocess_dir):
            raise ValueError(f"multiprocess metrics directory {multiprocess_dir!r} does not exist")
        self.multiprocess_dir = multiprocess_dir
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._downstream: dict[tuple[str, str], DownstreamStats] = {}
        self._upstream: dict[tuple[str, str], UpstreamStats] = {}
        self._down_conn_children: dict[str, GaugeValue] = {}
        self._down_conn_labels: dict[str, tuple[str, str]] = {}
        self._up_conn_children: dict[tuple[str, str | None], GaugeValue] = {}
        self._up_conn_labels: dict[tuple[str, str | None], tuple[str, str]] = {}
        self._hb: dict[tuple[str, str], int] = {}
        self._listener_protocols: dict[str, str] = {}
        self._cluster_protocols: dict[str, str] = {}
        #: multi-worker: snapshots written by this process (a scrape waits for a new one)
        self.sync_seq = 0
        #: multi-worker: extra JSON-able state written along (the proxy's /clusters view)
        self.extra_provider: Any = None
        self.registry.register(_Collector(self))
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
            s = self._downstream[key] = DownstreamStats(listener, protocol)
        return s

    def upstream(self, cluster: str, protocol: str) -> UpstreamStats:
        key = (cluster, protocol)
        s = self._upstream.get(key)
        if s is None:
            s = self._upstream[key] = UpstreamStats(cluster, protocol)
        return s

    def downstream_connections(self, listener: str) -> GaugeValue:
        """The gauge of a listener's open connections (``.inc()`` / ``.dec()``)."""
        g = self._down_conn_children.get(listener)
        if g is None:
            proto = self._listener_protocols.get(listener, "auto")
            self._down_conn_labels[listener] = (listener, proto)
            g = self._down_conn_children[listener] = GaugeValue()
        return g

    def upstream_connections(self, cluster: str, protocol: str | None = None) -> GaugeValue:
        """The gauge of a cluster's open connections (``.inc()`` / ``.dec()``).

        ``protocol``: what the connections speak; default the cluster's configured
        protocol, else ``"auto"``.
        """
        key = (cluster, protocol)
        g = self._up_conn_children.get(key)
        if g is None:
            proto = protocol or self._cluster_protocols.get(cluster, "auto")
            self._up_conn_labels[key] = (cluster, proto)
            g = self._up_conn_children[key] = GaugeValue()
        return g

    def heartbeat(self, protocol: str, direction: str) -> None:
        """Count one heartbeat (``direction``: see :data:`HEARTBEAT_DIRECTIONS`)."""
        key = (protocol, direction)
        self._hb[key] = self._hb.get(key, 0) + 1

    # --- snapshots -------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """This process's values as a JSON-able dict (see ``merge_snapshots``)."""
        req: list[list[Any]] = []
        resp: list[list[Any]] = []
        dur: list[list[Any]] = []
        dec: list[list[Any]] = []
        local: list[list[Any]] = []
        for (li, pr), s in _items(self._downstream):
            if s.requests:
                req.append([li, pr, "", s.requests])
            for api, n in _items(s.api_requests):
                req.append([li, pr, api, n])
            for st, n in _items(s.responses):
                resp.append([li, pr, str(int(st)), n])
            h = s.hist
            if h.sum or any(h.counts):
                dur.append([li, pr, "", [*h.counts, h.sum]])
            for api, h in _items(s.api_hist):
                dur.append([li, pr, api, [*h.counts, h.sum]])
            if pr != "unknown" or s.decode_errors:
                dec.append([li, pr, s.decode_errors])
            for reason, n in _items(s.local):
                local.append([li, pr, reason, n])
        up_req: list[list[Any]] = []
        up_resp: list[list[Any]] = []
        up_cf: list[list[Any]] = []
        up_unk: list[list[Any]] = []
        for (cl, pr), u in _items(self._upstream):
            up_req.append([cl, pr, u.requests])
            up_cf.append([cl, pr, u.connect_failures])
            up_unk.append([cl, pr, u.unknown])
            for st, n in _items(u.responses):
                up_resp.append([cl, pr, str(int(st)), n])
        down_conns = [[*self._down_conn_labels[k], g.value] for k, g in _items(self._down_conn_children)]
        up_conns = [[*self._up_conn_labels[k], g.value] for k, g in _items(self._up_conn_children)]
        hb = [[p, d, n] for (p, d), n in _items(self._hb)]
        return {"req": req, "resp": resp, "dur": dur, "dec": dec, "local": local,
                "up_req": up_req, "up_resp": up_resp, "up_cf": up_cf, "up_unk": up_unk,
                "down_conns": down_conns, "up_conns": up_conns, "hb": hb}

    def sync(self) -> None:
        """Multi-worker: write this process's snapshot to the shared directory."""
        d = self.multiprocess_dir
        if d is None:
            return
        self.sync_seq += 1
        data = self.snapshot()
        data["pid"] = os.getpid()
        data["seq"] = self.sync_seq
        data["alive"] = True
        if self.extra_provider is not None:
            try:
                data["extra"] = self.extra_provider()
            except Exception:  # noqa: BLE001 - a view for the admin page must not stop metrics
                data["extra"] = None
        _write_snapshot(_snapshot_path(d, os.getpid()), data)

    def worker_snapshots(self, refresh: bool = True) -> list[dict[str, Any]]:
        """Multi-worker: the other workers' last snapshots. ``refresh``: first ask the live
        ones for a new one (SIGUSR1) and wait for it (at most ``SCRAPE_SYNC_WAIT``)."""
        d = self.multiprocess_dir
        if d is None:
            return []
        me = os.getpid()
        snaps: dict[int, dict[str, Any]] = {}
        try:
            names = os.listdir(d)
        except OSError:
            return []
        for name in names:
            if not (name.startswith("worker-") and name.endswith(".json")):
                continue
            data = _read_snapshot(os.path.join(d, name))
            if data is None or data.get("pid") == me:
                continue
            snaps[int(data["pid"])] = data
        if refresh:
            asked: dict[int, int] = {}
            for pid, data in snaps.items():
                if data.get("alive"):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGUSR1)
                        asked[pid] = int(data.get("seq", 0))
            deadline = time.monotonic() + SCRAPE_SYNC_WAIT
            while asked and time.monotonic() < deadline:
                time.sleep(0.002)   # polling the other workers' files, bounded by the deadline
                for pid in list(asked):
                    data = _read_snapshot(_snapshot_path(d, pid))
                    if data is not None and (int(data.get("seq", 0)) > asked[pid] or not data.get("alive")):
                        snaps[pid] = data
                        del asked[pid]
        return [snaps[p] for p in sorted(snaps)]

    def gather(self) -> list[dict[str, Any]]:
        """Every snapshot a scrape merges: this process's live one, then other workers'."""
        return [self.snapshot(), *self.worker_snapshots()]

    # --- exposition --------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The Prometheus text exposition (all workers' merged in multi-worker mode)."""
        return generate_latest(self.registry)

    # --- compatibility: read one value (tests, tools) -----------------------------------------
    def value(self, name: str, labels: dict[str, str]) -> float | None:
        """One sample's value, as ``registry.get_sample_value``."""
        return self.registry.get_sample_value(name, labels)
