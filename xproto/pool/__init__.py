"""Upstream connection pools: request ids and pool modes, never wire formats."""
from __future__ import annotations

from xproto.pool.batch import Batch, Writable
from xproto.pool.cluster import (
    LB_POLICIES, Cluster, ClusterSettings, ConnPool, Endpoint, MultiplexPool, PingPongPool, PoolStats,
)
from xproto.pool.connection import UpstreamConnection
from xproto.pool.request import UpstreamRequest

__all__ = [
    "Batch", "Writable", "LB_POLICIES", "Cluster", "ClusterSettings", "ConnPool", "Endpoint",
    "MultiplexPool", "PingPongPool", "PoolStats", "UpstreamConnection", "UpstreamRequest",
]
