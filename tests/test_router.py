"""RouteTable: first match wins, matchers, lazy headers, unbiased weighted picks."""
from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import pytest

from xproto.codec import Codec
from xproto.config import Listener, WeightedCluster, parse_config
from xproto.frame import Frame, Kind
from xproto.router import Route, RouteTable

pytestmark = pytest.mark.timeout(60)

PROTOS = ["dubbo", "bolt", "thrift", "kafka", "http"]


class CountingCodec(Codec):
    """A codec whose header parsing is counted (to check the router reads headers lazily)."""

    def __init__(self, name: str, headers: dict[str, str]) -> None:
        self.name = name  # type: ignore[misc]
        self._headers = headers
        self.parsed = 0

    def parse_headers(self, frame: Frame) -> dict[str, str]:
        self.parsed += 1
        return dict(self._headers)


def frame(protocol: str, **headers: str) -> tuple[Frame, CountingCodec]:
    codec = CountingCodec(protocol, {k.replace("_", "-"): v for k, v in headers.items()})
    return Frame(codec, Kind.REQUEST, 1, b""), codec


def listener(routes: list[dict[str, Any]], clusters: tuple[str, ...] = ("a", "b", "c", "d"),
             protocols: tuple[str, ...] = ("dubbo", "bolt", "http")) -> Listener:
    cfg = parse_config({
        "listeners": [{"name": "l", "address": "127.0.0.1:0", "protocols": list(protocols), "routes": routes}],
        "clusters": [{"name": n, "endpoints": ["127.0.0.1:1"]} for n in clusters],
    }, protocols=PROTOS)
    return cfg.listeners[0]


def target(table: RouteTable, f: Frame) -> str | None:
    r = table.route(f)
    return None if r is None else r.cluster


def test_first_match_wins_and_catch_all() -> None:
    t = RouteTable(listener([
        {"match": {"protocol": "dubbo", "headers": {"service": "com.example.Greeter"}}, "cluster": "a"},
        {"match": {"protocol": "dubbo"}, "cluster": "b"},
        {"match": {"headers": {"service": "com.example.Greeter"}}, "cluster": "c"},
        {"cluster": "d"},
    ]))
    assert target(t, frame("dubbo", service="com.example.Greeter")[0]) == "a"
    assert target(t, frame("dubbo", service="other")[0]) == "b"
    assert target(t, frame("bolt", service="com.example.Greeter")[0]) == "c"
    assert target(t, frame("http")[0]) == "d"
    assert len(t) == 4


def test_no_route_returns_none() -> None:
    t = RouteTable(listener([{"match": {"protocol": "dubbo"}, "cluster": "a"}]))
    assert t.route(frame("bolt")[0]) is None
    assert RouteTable(listener([])).route(frame("dubbo")[0]) is None


@pytest.mark.parametrize("matcher,value,hit", [
    ("say", "say", True), ("say", "sayHello", False), ("say", None, False),
    ({"exact": "say"}, "say", True), ({"exact": ""}, "", True), ({"exact": ""}, None, False),
    ({"prefix": "say"}, "sayHello", True), ({"prefix": "say"}, "say", True),
    ({"prefix": "say"}, "Say", False), ({"prefix": "say"}, None, False),
    ({"regex": "say[A-Z].*"}, "sayHello", True), ({"regex": "say[A-Z].*"}, "xsayHello", False),
    ({"regex": "say"}, "sayHello", False),  # full match, not search
    ({"regex": ".*"}, None, False),
    ({"present": True}, "", True), ({"present": True}, "x", True), ({"present": True}, None, False),
    ({"present": False}, None, True), ({"present": False}, "x", False),
])
def test_header_matchers(matcher: Any, value: str | None, hit: bool) -> None:
    t = RouteTable(listener([{"match": {"headers": {"method": matcher}}, "cluster": "a"}]))
    hdrs = {} if value is None else {"method": value}
    assert (target(t, frame("dubbo", **hdrs)[0]) == "a") is hit


def test_all_header_conditions_must_hold() -> None:
    t = RouteTable(listener([
        {"match": {"headers": {"service": "S", "method": {"prefix": "get"}, "x-canary": {"present": True}}},
         "cluster": "a"},
        {"cluster": "b"},
    ]))
    assert target(t, frame("http", service="S", method="getX", x_canary="1")[0]) == "a"
    assert target(t, frame("http", service="S", method="getX")[0]) == "b"
    assert target(t, frame("http", service="S", method="putX", x_canary="1")[0]) == "b"
    assert target(t, frame("http", service="T", method="getX", x_canary="1")[0]) == "b"


def test_headers_are_parsed_lazily_and_once() -> None:
    # no header matchers at all: headers never parsed
    t = RouteTable(listener([{"match": {"protocol": "dubbo"}, "cluster": "a"}, {"cluster": "b"}]))
    f, codec = frame("bolt", service="x")
    assert target(t, f) == "b" and codec.parsed == 0 and not f.headers_parsed()
    # header matchers only behind a protocol condition that fails: not parsed either
    t = RouteTable(listener([
        {"match": {"protocol": "dubbo", "headers": {"service": "x"}}, "cluster": "a"},
        {"cluster": "b"},
    ]))
    f, codec = frame("bolt", service="x")
    assert target(t, f) == "b" and codec.parsed == 0
    # several routes with header matchers: parsed exactly once
    t = RouteTable(listener([
        {"match": {"headers": {"service": "y"}}, "cluster": "a"},
        {"match": {"headers": {"method": {"regex": "m.*"}}}, "cluster": "b"},
        {"match": {"headers": {"service": "x"}}, "cluster": "c"},
    ]))
    f, codec = frame("bolt", service="x")
    assert target(t, f) == "c" and codec.parsed == 1


def test_timeouts_default_15s() -> None:
    t = RouteTable(listener([{"match": {"protocol": "dubbo"}, "cluster": "a", "timeout": "3s"},
                             {"clusters": [{"name": "b", "weight": 1}, {"name": "c", "weight": 1}]}]))
    r = t.route(frame("dubbo")[0])
    assert isinstance(r, Route) and (r.cluster, r.timeout, r.index, r.weighted) == ("a", 3.0, 0, False)
    r = t.route(frame("bolt")[0])
    assert r is not None and r.timeout == 15.0 and r.index == 1 and r.weighted and r.cluster in ("b", "c")


class SequentialRng(random.Random):
    """randrange(n) yields 0, 1, 2, ... n-1, 0, ... to enumerate every outcome once."""

    def __init__(self) -> None:
        super().__init__(0)
        self.i = 0

    def randrange(self, n: int, *a: Any, **kw: Any) -> int:  # type: ignore[override]
        v = self.i % n
        self.i += 1
        return v


@pytest.mark.parametrize("weights", [[80, 20], [1, 2, 3, 4], [1, 1], [1, 1000], [7]])
def test_weighted_pick_maps_every_draw_exactly_by_weight(weights: list[int]) -> None:
    names = ["a", "b", "c", "d"][:len(weights)]
    rng = SequentialRng()
    t = RouteTable(listener([{"clusters": [{"name": n, "weight": w} for n, w in zip(names, weights)]}]), rng=rng)
    total = sum(weights)
    f = frame("http")[0]
    got = Counter(target(t, f) for _ in range(total))
    assert dict(got) == dict(zip(names, weights))


def test_weighted_distribution_seeded_100k() -> None:
    weights = {"a": 50, "b": 30, "c": 15, "d": 5}
    t = RouteTable(listener([{"clusters": [{"name": n, "weight": w} for n, w in weights.items()]}]),
                   rng=random.Random(12345))
    n = 100_000
    f = frame("http")[0]
    got = Counter(target(t, f) for _ in range(n))
    assert set(got) == set(weights)
    total = sum(weights.values())
    for name, w in weights.items():
        p = w / total
        sd = math.sqrt(n * p * (1 - p))
        assert abs(got[name] - n * p) < 4 * sd, (name, got[name], n * p, sd)


def test_weights_must_be_positive_even_without_config_validation() -> None:
    li = listener([{"clusters": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}])
    # bypass pydantic validation the way a careless caller could
    li.routes[0].clusters = [WeightedCluster.model_construct(name="a", weight=1),
                             WeightedCluster.model_construct(name="b", weight=0)]
    with pytest.raises(ValueError, match="weights must be > 0"):
        RouteTable(li)


def test_route_decisions_are_shared_objects() -> None:
    t = RouteTable(listener([{"cluster": "a"}]))
    f = frame("http")[0]
    assert t.route(f) is t.route(f)
