"""Endpoint selection and health of xproto.pool.Cluster (no sockets: pick() only)."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from test_proxy_sansio import FakeLoop

from xproto.pool import Cluster, ClusterSettings


def cluster(lb: str, n: int = 3, **kw: object) -> tuple[Cluster, FakeLoop]:
    loop = FakeLoop()
    s = ClusterSettings(name="c", endpoints=[("127.0.0.1", 1000 + i) for i in range(n)], lb=lb, **kw)  # type: ignore[arg-type]
    return Cluster(s, loop, rng=random.Random(7)), loop  # type: ignore[arg-type]


def test_round_robin_cycles() -> None:
    c, _ = cluster("round_robin")
    assert [c.pick().port for _ in range(6)] == [1000, 1001, 1002, 1000, 1001, 1002]  # type: ignore[union-attr]


def test_random_covers_all_roughly_evenly() -> None:
    c, _ = cluster("random")
    counts = Counter(c.pick().port for _ in range(3000))  # type: ignore[union-attr]
    assert set(counts) == {1000, 1001, 1002}
    assert all(800 < v < 1200 for v in counts.values())


def test_least_request_prefers_fewest_in_flight() -> None:
    c, _ = cluster("least_request")
    c.endpoints[0].active = 5
    c.endpoints[1].active = 1
    c.endpoints[2].active = 3
    assert {c.pick().port for _ in range(5)} == {1001}  # type: ignore[union-attr]
    c.endpoints[1].active = 3
    # ties (1001 and 1002 at 3) are broken round robin
    assert {c.pick().port for _ in range(6)} == {1001, 1002}  # type: ignore[union-attr]


def test_unhealthy_endpoint_skipped_until_backoff_ends() -> None:
    c, loop = cluster("round_robin", n=2, backoff_min=0.5, backoff_max=2.0)
    ep = c.endpoints[0]
    ep.failed(loop.time())
    assert {c.pick().port for _ in range(4)} == {1001}  # type: ignore[union-attr]
    loop.advance(0.6)
    assert 1000 in {c.pick().port for _ in range(4)}  # type: ignore[union-attr]
    ep.failed(loop.time())          # second failure: back-off doubles
    loop.advance(0.6)
    assert {c.pick().port for _ in range(4)} == {1001}  # type: ignore[union-attr]
    ep.connected()
    assert c.unhealthy == 0 and ep.failures == 0


def test_all_unhealthy_and_tried_give_none() -> None:
    c, loop = cluster("round_robin", n=2)
    for e in c.endpoints:
        e.failed(loop.time())
    assert c.pick() is None
    c2, _ = cluster("round_robin", n=2)
    assert c2.pick(tried=[c2.endpoints[0], c2.endpoints[1]]) is None
    assert c2.pick(tried=[c2.endpoints[0]]).port == 1001  # type: ignore[union-attr]


def test_unknown_policy_rejected() -> None:
    with pytest.raises(ValueError):
        cluster("fastest")
