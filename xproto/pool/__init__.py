"""Upstream connection pools: request ids and pool modes, never wire formats.

* :class:`Cluster` -- endpoints, load balancing (``round_robin``, ``random``,
  ``least_request``), health with exponential back-off after connect failures, the
  cluster-wide ``max_pending`` bound, and retry on another endpoint only for requests that
  never reached the first (connect failure or timeout).
* :class:`MultiplexPool` -- up to ``max_connections`` shared connections per endpoint;
  every request gets a fresh id from the connection's ``codec.id_generator()`` (wrapping at
  the protocol's id width, skipping ids still in flight); responses find their request by
  id, unknown ids are dropped and counted.
* :class:`PingPongPool` -- one request at a time per connection (HTTP/1.1, unframed
  Thrift), requests wait for a free connection.
* :class:`BindPool` -- one dedicated connection per downstream connection (Kafka).
* :class:`UpstreamConnection` -- the asyncio protocol: connect timeout, heartbeats on idle
  (where the codec has them; dropped and reopened after ``failures`` missed), answers the
  server's own heartbeats, fails every pending request at once when it dies.

The proxy subclasses :class:`UpstreamRequest` to receive answers.
"""
from __future__ import annotations

from xproto.pool.batch import Batch, Writable
from xproto.pool.cluster import (
    LB_POLICIES,
    BindPool,
    Cluster,
    ClusterSettings,
    ConnPool,
    Endpoint,
    MultiplexPool,
    PingPongPool,
    PoolStats,
)
from xproto.pool.connection import UpstreamConnection
from xproto.pool.request import UpstreamRequest

__all__ = [
    "LB_POLICIES", "Batch", "BindPool", "Cluster", "ClusterSettings", "ConnPool", "Endpoint",
    "MultiplexPool", "PingPongPool", "PoolStats", "UpstreamConnection", "UpstreamRequest", "Writable",
]
