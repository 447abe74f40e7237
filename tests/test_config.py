"""Config loading and validation: every problem, with its key path."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from xproto.config import (
    DEFAULT_ROUTE_TIMEOUT,
    Address,
    Config,
    check_file,
    format_path,
    load_config,
    load_config_text,
    parse_config,
    parse_duration,
    parse_size,
)
from xproto.errors import ConfigError
from xproto.limits import Limits

pytestmark = pytest.mark.timeout(60)

CONFIGS = Path(__file__).resolve().parent.parent / "fixtures" / "configs"
PROTOS = ["dubbo", "bolt", "thrift", "kafka", "http"]

# INTERFACE.md's example, verbatim (its catch-all route names a cluster it does not define).
INTERFACE_EXAMPLE = """
admin:
  address: 127.0.0.1:9901            # GET /metrics (Prometheus text), /ready, /config, /clusters
listeners:
  - name: rpc                        # unique
    address: 127.0.0.1:20880
    protocols: [dubbo, bolt, thrift, kafka, http]   # detection candidates, tried in this order;
                                     # one entry = that protocol, no detection; [auto] = every registered codec
    routes:                          # first match wins; no match -> the protocol's own error reply
      - match:
          protocol: dubbo            # optional
          headers:                   # optional; all must match
            service: com.example.Greeter          # bare string = exact
            method: {prefix: say}                 # or {exact: ..}, {regex: ..}, {present: true}
        cluster: greeter             # or: clusters: [{name: a, weight: 80}, {name: b, weight: 20}]
        timeout: 3s                  # optional request timeout for this route
      - cluster: fallback            # a route without match catches everything
    kafka:                           # only for listeners that carry kafka
      advertise_host: 127.0.0.1      # host written into rewritten broker addresses
      broker_ports: 19093-19199      # where per-broker listeners open as brokers are discovered
clusters:
  - name: greeter
    endpoints: [127.0.0.1:20881, 127.0.0.1:20882]
    protocol: dubbo                  # optional; default: the downstream frame's protocol
    lb: round_robin                  # round_robin | random | least_request
    connect_timeout: 1s
    max_connections: 1               # per endpoint
    keepalive: {interval: 15s, timeout: 1s, failures: 3}   # protocol heartbeats, where the protocol has them
"""


def base() -> dict[str, Any]:
    """A small valid config as data, for mutation tests."""
    return {
        "listeners": [{
            "name": "rpc", "address": "127.0.0.1:20880", "protocols": ["dubbo", "http"],
            "routes": [
                {"match": {"protocol": "dubbo", "headers": {"service": "a.B", "method": {"prefix": "say"}}},
                 "cluster": "greeter"},
                {"cluster": "fallback"},
            ],
        }],
        "clusters": [
            {"name": "greeter", "endpoints": ["127.0.0.1:20881"]},
            {"name": "fallback", "endpoints": ["127.0.0.1:20882"]},
        ],
    }


def problems_of(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as ei:
        parse_config(data, protocols=PROTOS)
    assert ei.value.problems, "ConfigError without problems"
    return ei.value.problems


# --- good configs --------------------------------------------------------------------------

def test_example_fixture_parses_with_values_and_defaults() -> None:
    cfg = load_config(str(CONFIGS / "example.yaml"), protocols=PROTOS)
    assert cfg.admin is not None and cfg.admin.address == "127.0.0.1:9901"
    assert cfg.admin.address.port == 9901
    li = cfg.listener("rpc")
    assert li.address.pair == ("127.0.0.1", 20880)
    assert li.protocols == ["dubbo", "bolt", "thrift", "kafka", "http"]
    r0, r1 = li.routes
    assert r0.match is not None and r0.match.protocol == "dubbo"
    assert r0.match.headers["service"].exact == "com.example.Greeter"
    assert r0.match.headers["service"].kind == "exact"
    assert r0.match.headers["method"].prefix == "say"
    assert r0.cluster == "greeter" and r0.timeout == 3.0
    assert r1.match is None and r1.cluster == "fallback" and r1.timeout == DEFAULT_ROUTE_TIMEOUT == 15.0
    assert li.kafka is not None and li.kafka.broker_ports == (19093, 19199)
    g = cfg.cluster("greeter")
    assert [e.pair for e in g.endpoints] == [("127.0.0.1", 20881), ("127.0.0.1", 20882)]
    assert g.protocol == "dubbo" and g.lb == "round_robin" and g.connect_timeout == 1.0
    assert g.keepalive is not None and (g.keepalive.interval, g.keepalive.timeout, g.keepalive.failures) == (15.0, 1.0, 3)
    fb = cfg.cluster("fallback")
    # defaults where nothing is given
    assert fb.protocol is None and fb.lb == "round_robin" and fb.connect_timeout == 1.0
    assert fb.max_connections == 1 and fb.keepalive is None and fb.max_pending == 10000
    assert cfg.drain_timeout == 10.0 and cfg.workers == 1
    assert li.limits.max_connections == 10000 and li.limits.frame_timeout == 30.0
    assert li.limits.high_water == 1024 * 1024 and li.limits.low_water == 256 * 1024
    assert li.codec_limits() == Limits()


def test_interface_example_verbatim_only_misses_the_fallback_cluster() -> None:
    with pytest.raises(ConfigError) as ei:
        load_config_text(INTERFACE_EXAMPLE, protocols=PROTOS)
    assert ei.value.problems == [
        ("listeners[0].routes[1].cluster", "unknown cluster 'fallback' (line 17)")]  # text starts with a newline


def test_minimal_fixture_and_defaults() -> None:
    cfg = load_config(str(CONFIGS / "minimal.yaml"), protocols=PROTOS)
    assert cfg.admin is None
    assert cfg.listeners[0].address.port == 0
    assert cfg.listeners[0].kafka is None
    assert check_file(str(CONFIGS / "minimal.yaml"), protocols=PROTOS) == []


def test_default_registry_names_are_used_when_not_given() -> None:
    # whatever codecs are importable right now, the built-in names are accepted
    cfg = load_config(str(CONFIGS / "example.yaml"))
    assert cfg.listeners[0].protocols[0] == "dubbo"
    probs = check_file(str(CONFIGS / "invalid_many.yaml"))
    assert any(p == "listeners[0].protocols[2]" and "'grpc'" in m for p, m in probs)


def test_effective_dict_fills_defaults_and_round_trips() -> None:
    cfg = load_config(str(CONFIGS / "example.yaml"), protocols=PROTOS)
    d = cfg.effective_dict()
    json.dumps(d)  # plain data
    assert d["listeners"][0]["routes"][1]["timeout"] == 15.0
    assert d["clusters"][1]["connect_timeout"] == 1.0 and d["clusters"][1]["lb"] == "round_robin"
    assert d["listeners"][0]["kafka"]["broker_ports"] == "19093-19199"
    assert d["listeners"][0]["routes"][0]["match"]["headers"]["service"] == {"exact": "com.example.Greeter"}
    assert d["listeners"][0]["limits"]["dubbo_max_body"] == Limits().dubbo_max_body
    assert d["drain_timeout"] == 10.0 and d["workers"] == 1
    again = parse_config(d, protocols=PROTOS)
    assert again.effective_dict() == d
    # and through YAML text too
    assert load_config_text(yaml.safe_dump(d), protocols=PROTOS).effective_dict() == d


def test_extensions_limits_weights_auto_present_regex() -> None:
    data = base()
    li = data["listeners"][0]
    li["protocols"] = ["auto"]
    li["limits"] = {"max_connections": 5, "frame_timeout": "500ms", "idle_timeout": "1m",
                    "high_water": "64KiB", "low_water": 1024, "dubbo_max_body": "4MiB",
                    "thrift_max_depth": 32}
    li["routes"].insert(0, {
        "match": {"headers": {"x-canary": {"present": True}, "version": 1, "path": {"regex": "/a/.*"}}},
        "clusters": [{"name": "greeter", "weight": 80}, {"name": "fallback", "weight": 20}],
        "timeout": 0.25})
    data["clusters"][0].update(lb="least_request", max_connections=4, max_pending=10,
                               keepalive={"failures": 6}, protocol="dubbo", connect_timeout="250ms")
    data.update(drain_timeout="1m30s", workers=2)
    cfg = parse_config(data, protocols=PROTOS)
    li_cfg = cfg.listeners[0]
    assert li_cfg.limits.frame_timeout == 0.5 and li_cfg.limits.idle_timeout == 60.0
    assert li_cfg.limits.high_water == 65536 and li_cfg.limits.low_water == 1024
    lim = li_cfg.codec_limits()
    assert lim.dubbo_max_body == 4 * 1024 * 1024 and lim.thrift_max_depth == 32
    assert lim.kafka_max_frame == Limits().kafka_max_frame
    r = li_cfg.routes[0]
    assert r.match is not None
    assert r.match.headers["x-canary"].present is True
    assert r.match.headers["version"].exact == "1"   # YAML ints become strings
    assert [(w.name, w.weight) for w in r.clusters or []] == [("greeter", 80), ("fallback", 20)]
    assert r.timeout == 0.25
    c = cfg.clusters[0]
    assert c.keepalive is not None and (c.keepalive.interval, c.keepalive.timeout, c.keepalive.failures) == (15.0, 1.0, 6)
    assert c.connect_timeout == 0.25 and c.max_connections == 4 and c.lb == "least_request"
    assert cfg.drain_timeout == 90.0 and cfg.workers == 2


def test_addresses() -> None:
    assert Address.parse("[::1]:9901").pair == ("::1", 9901)
    assert Address.parse("localhost:80").host == "localhost"
    assert Address.parse("svc.ns.cluster.local:0").port == 0
    for bad in ["nohost", ":80", "1.2.3.4:", "1.2.3.4:65536", "a b:1", "::1:80", "[zz]:1",
                "1.2.3.4:-1", "host:8o"]:
        with pytest.raises(ValueError):
            Address.parse(bad)


# --- value syntax ------------------------------------------------------------------------

@pytest.mark.parametrize("text,secs", [
    ("500ms", 0.5), ("3s", 3.0), ("1m", 60.0), ("1m30s", 90.0), ("1.5s", 1.5), ("250us", 0.00025),
    (2, 2.0), (0.1, 0.1), ("0", 0.0), ("2", 2.0), ("1h", 3600.0),
])
def test_durations(text: Any, secs: float) -> None:
    assert parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize("bad", ["3 parsecs", "s", "", "1x", "-1s", -1, True, None, "ms5", "1s2", [1]])
def test_bad_durations(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text,n", [
    ("64KiB", 65536), ("16MiB", 16 << 20), ("1GiB", 1 << 30), ("512B", 512), (100, 100), ("100", 100),
])
def test_sizes(text: Any, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["64KB", "1.5MiB", "-1", -5, "lots", True, None, 1.5])
def test_bad_sizes(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_format_path() -> None:
    assert format_path(("listeners", 0, "routes", 1, "cluster")) == "listeners[0].routes[1].cluster"
    assert format_path(("x", "headers", ":path")) == "x.headers.:path"
    assert format_path(("x", "headers", "a.b")) == "x.headers['a.b']"
    assert format_path(()) == "<root>"


# --- each kind of problem, with its key path ----------------------------------------------

def _set(data: dict[str, Any], path: str, value: Any) -> None:
    """Set data at a dotted path with [i] indices ('listeners.0.routes.1.cluster')."""
    parts = path.split(".")
    cur: Any = data
    for p in parts[:-1]:
        cur = cur[int(p)] if p.isdigit() else cur.setdefault(p, {})
    last = parts[-1]
    if last.isdigit():
        cur[int(last)] = value
    else:
        cur[last] = value


CASES = [
    # (where to set, value, expected key path, expected message fragment)
    ("clusters.0.lb", "fastest", "clusters[0].lb",
     "must be one of round_robin, random, least_request"),
    ("listeners.0.routes.0.cluster", "x", "listeners[0].routes[0].cluster", "unknown cluster 'x'"),
    ("listeners.0.routes.0.match.headers.method", {"prefx": "say"},
     "listeners[0].routes[0].match.headers.method", "unknown matcher key 'prefx'"),
    ("listeners.0.routes.0.match.headers.method", {"prefix": "a", "exact": "b"},
     "listeners[0].routes[0].match.headers.method", "exactly one of exact, prefix, regex, present"),
    ("listeners.0.routes.0.match.headers.method", {}, "listeners[0].routes[0].match.headers.method",
     "exactly one of"),
    ("listeners.0.routes.0.match.headers.method", {"regex": "[a-"},
     "listeners[0].routes[0].match.headers.method.regex", "invalid regex"),
    ("listeners.0.routes.0.match.headers.method", {"present": "maybe"},
     "listeners[0].routes[0].match.headers.method.present", "must be true or false"),
    ("listeners.0.routes.0.match.protocol", "grpc", "listeners[0].routes[0].match.protocol",
     "unknown protocol 'grpc'"),
    ("listeners.0.routes.0.match.protocol", "thrift", "listeners[0].routes[0].match.protocol",
     "not among this listener's protocols"),
    ("listeners.0.routes.0.timeout", "3parsecs", "listeners[0].routes[0].timeout", "invalid duration"),
    ("listeners.0.routes.0.timeout", "0s", "listeners[0].routes[0].timeout", "greater than 0"),
    ("listeners.0.routes.0.clusters", [{"name": "greeter", "weight": 1}],
     "listeners[0].routes[0]", "exactly one of 'cluster' or 'clusters'"),
    ("listeners.0.routes.1", {"timeout": "1s"}, "listeners[0].routes[1]",
     "exactly one of 'cluster' or 'clusters'"),
    ("listeners.0.routes.1", {"clusters": [{"name": "greeter", "weight": 0}, {"name": "fallback", "weight": 1}]},
     "listeners[0].routes[1].clusters[0].weight", "must be > 0"),
    ("listeners.0.routes.1", {"clusters": [{"name": "greeter", "weight": -3}]},
     "listeners[0].routes[1].clusters[0].weight", "must be > 0"),
    ("listeners.0.routes.1", {"clusters": [{"name": "nope", "weight": 1}]},
     "listeners[0].routes[1].clusters[0].name", "unknown cluster 'nope'"),
    ("listeners.0.routes.1", {"clusters": [{"name": "greeter", "weight": 1}, {"name": "greeter", "weight": 1}]},
     "listeners[0].routes[1].clusters[1].name", "listed twice"),
    ("listeners.0.routes.1", {"clusters": []}, "listeners[0].routes[1]", "at least one cluster"),
    ("listeners.0.protocols", [], "listeners[0].protocols", "must not be empty"),
    ("listeners.0.protocols", ["dubbo", "dubbo"], "listeners[0].protocols[1]", "duplicate protocol"),
    ("listeners.0.protocols", "dubbo", "listeners[0].protocols", "must be a list"),
    ("listeners.0.protocols", ["dubbo", "http", "grpc"], "listeners[0].protocols[2]",
     "unknown protocol 'grpc'"),
    ("listeners.0.address", "127.0.0.1", "listeners[0].address", "expected host:port"),
    ("listeners.0.address", "127.0.0.1:70000", "listeners[0].address", "port must be 0-65535"),
    ("listeners.0.address", 20880, "listeners[0].address", "must be an address"),
    ("listeners.0.name", "", "listeners[0].name", "must not be empty"),
    ("listeners.0.kafka", {"broker_ports": "19093-19199"}, "listeners[0].kafka",
     "needs kafka among the listener's protocols"),
    ("listeners.0.limits", {"high_water": "1KiB", "low_water": "1KiB"}, "listeners[0].limits",
     "low_water (1024) must be below high_water (1024)"),
    ("listeners.0.limits", {"dubbo_max_body": "0"}, "listeners[0].limits.dubbo_max_body",
     "greater than 0"),
    ("listeners.0.limits", {"max_connections": 0}, "listeners[0].limits.max_connections", "must be > 0"),
    ("clusters.0.endpoints", [], "clusters[0].endpoints", "must not be empty"),
    ("clusters.0.endpoints", ["127.0.0.1:1", "127.0.0.1:1"], "clusters[0].endpoints[1]", "duplicate endpoint"),
    ("clusters.0.endpoints", ["::1:80"], "clusters[0].endpoints[0]", "[addr]:port"),
    ("clusters.0.protocol", "auto", "clusters[0].protocol", "unknown protocol 'auto'"),
    ("clusters.0.connect_timeout", "-1s", "clusters[0].connect_timeout", "negative"),
    ("clusters.0.max_connections", 0, "clusters[0].max_connections", "must be > 0"),
    ("clusters.0.max_connections", "many", "clusters[0].max_connections", "must be an integer"),
    ("clusters.0.keepalive", {"interval": "0ms"}, "clusters[0].keepalive.interval", "greater than 0"),
    ("clusters.0.keepalive", {"failures": 0}, "clusters[0].keepalive.failures", "must be > 0"),
    ("clusters.1.name", "greeter", "clusters[1].name", "duplicate cluster name 'greeter'"),
    ("clusters.0.name", None, "clusters[0].name", "must be a string"),
    ("workers", 0, "workers", "must be > 0"),
    ("drain_timeout", "soon", "drain_timeout", "invalid duration"),
    ("admin", {"address": "127.0.0.1:20880"}, "listeners[0].address", "already used by admin"),
    ("admin", {}, "admin.address", "required"),
    ("listeners", [], "listeners", "must not be empty"),
]


@pytest.mark.parametrize("where,value,path,fragment", CASES, ids=[f"{c[0]}={c[1]!r}"[:60] for c in CASES])
def test_each_problem_has_its_key_path(where: str, value: Any, path: str, fragment: str) -> None:
    data = base()
    _set(data, where, value)
    probs = problems_of(data)
    assert any(p == path and fragment in m for p, m in probs), probs


def test_missing_required_keys() -> None:
    data = base()
    del data["listeners"][0]["address"]
    del data["clusters"][1]["endpoints"]
    probs = problems_of(data)
    assert ("listeners[0].address", "required") in probs
    assert ("clusters[1].endpoints", "required") in probs
    assert problems_of({})[0] == ("listeners", "required")


@pytest.mark.parametrize("where,model", [
    ("", "top-level"), ("listeners.0", "listener"), ("listeners.0.routes.0", "route"),
    ("listeners.0.routes.0.match", "match"), ("listeners.0.routes.0.match.headers.method", "matcher"),
    ("listeners.0.limits", "limits"), ("listeners.0.kafka", "kafka"), ("clusters.0", "cluster"),
    ("clusters.0.keepalive", "keepalive"), ("admin", "admin"),
    ("listeners.0.routes.1.clusters.0", "weighted cluster"),
])
def test_unknown_keys_anywhere_are_errors(where: str, model: str) -> None:
    data = base()
    data["admin"] = {"address": "127.0.0.1:9901"}
    data["listeners"][0]["kafka"] = {}
    data["listeners"][0]["protocols"].append("kafka")
    data["listeners"][0]["limits"] = {}
    data["clusters"][0]["keepalive"] = {}
    data["listeners"][0]["routes"][1] = {"clusters": [{"name": "fallback", "weight": 1}]}
    parse_config(copy.deepcopy(data), protocols=PROTOS)  # valid before the mutation
    target: Any = data
    for p in [x for x in where.split(".") if x]:
        target = target[int(p)] if p.isdigit() else target[p]
    target["zzz_unknown"] = 1
    probs = problems_of(data)
    path = format_path(tuple(int(x) if x.isdigit() else x for x in where.split(".") if x))
    assert len(probs) == 1 and probs[0][0] == path, probs
    assert probs[0][1].startswith(f"unknown {model} key 'zzz_unknown' (allowed: ")


def test_unknown_key_suggests_the_close_one() -> None:
    data = base()
    data["clusters"][0]["conect_timeout"] = "1s"
    assert problems_of(data) == [
        ("clusters[0]", "unknown cluster key 'conect_timeout' (did you mean 'connect_timeout'?)")]


def test_all_problems_reported_at_once_in_document_order_with_lines() -> None:
    probs = check_file(str(CONFIGS / "invalid_many.yaml"), protocols=PROTOS)
    paths = [p for p, _ in probs]
    assert paths == [
        "admin.address",
        "listeners[0].protocols[2]",
        "listeners[0]",
        "listeners[0].routes[0].match.protocol",
        "listeners[0].routes[0].match.headers.method",
        "listeners[0].routes[0].match.headers.service.regex",
        "listeners[0].routes[0].cluster",
        "listeners[0].routes[0].timeout",
        "listeners[0].routes[1].clusters[0].weight",
        "listeners[1].name",
        "listeners[1].address",
        "listeners[1].kafka",
        "clusters[0].endpoints[1]",
        "clusters[0].lb",
        "clusters[1].keepalive",
        "workers",
    ]
    msgs = dict(probs)
    assert msgs["listeners[0]"].startswith("unknown listener key 'bogus'")
    assert msgs["listeners[0]"].endswith("(line 7)")   # the unknown key's own line
    assert msgs["listeners[0].routes[0].match.headers.method"] == \
        "unknown matcher key 'prefx' (did you mean 'prefix'?) (line 12)"
    assert msgs["clusters[0].lb"] == \
        "must be one of round_robin, random, least_request (got 'fastest') (line 24)"
    assert msgs["listeners[0].routes[0].cluster"].startswith("unknown cluster 'greter'")
    # load_config raises the same list
    with pytest.raises(ConfigError) as ei:
        load_config(str(CONFIGS / "invalid_many.yaml"), protocols=PROTOS)
    assert ei.value.problems == probs
    assert "listeners[0].routes[0].cluster: unknown cluster 'greter'" in str(ei.value)


def test_yaml_syntax_error_names_the_line() -> None:
    probs = check_file(str(CONFIGS / "invalid_yaml.yaml"), protocols=PROTOS)
    assert len(probs) == 1
    path, msg = probs[0]
    assert path == "<yaml>" and msg.startswith("line 5, column 11:")


def test_duplicate_yaml_keys_are_errors() -> None:
    probs = check_file(str(CONFIGS / "duplicate_key.yaml"), protocols=PROTOS)
    assert probs == [("<yaml>", "line 5, column 5: duplicate key 'name' (first at line 2)")]


@pytest.mark.parametrize("text,fragment", [
    ("", "got an empty document"), ("- a\n- b\n", "got list"), ("just text\n", "got str"),
])
def test_document_must_be_a_mapping(text: str, fragment: str, tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    probs = check_file(str(f), protocols=PROTOS)
    assert len(probs) == 1 and probs[0][0] == "<root>" and fragment in probs[0][1]


def test_unreadable_file() -> None:
    probs = check_file("/nonexistent/xproto.yaml")
    assert len(probs) == 1 and probs[0][0] == "<root>" and "cannot read" in probs[0][1]
    with pytest.raises(ConfigError):
        load_config("/nonexistent/xproto.yaml")


def test_kafka_section_checks() -> None:
    data = base()
    li = data["listeners"][0]
    li["protocols"] = ["kafka"]
    li["routes"] = [{"cluster": "greeter"}]
    for bad, frag in [("200-100", "low port above high port"), ("0-10", "1-65535"),
                      ("1-70000", "1-65535"), ("a-b", "expected LOW-HIGH")]:
        li["kafka"] = {"advertise_host": "127.0.0.1", "broker_ports": bad}
        probs = problems_of(copy.deepcopy(data))
        assert any(p == "listeners[0].kafka.broker_ports" and frag in m for p, m in probs), (bad, probs)
    li["kafka"] = {"advertise_host": "bad host", "broker_ports": 19093}
    probs = problems_of(copy.deepcopy(data))
    assert probs == [("listeners[0].kafka.advertise_host", "invalid host 'bad host'")]
    li["kafka"] = {"advertise_host": "kafka.local", "broker_ports": "19093-19093"}
    cfg = parse_config(data, protocols=PROTOS)
    assert cfg.listeners[0].kafka is not None and cfg.listeners[0].kafka.broker_ports == (19093, 19093)
    # `auto` carries kafka when kafka is registered
    li["protocols"] = ["auto"]
    parse_config(data, protocols=PROTOS)
    with pytest.raises(ConfigError):
        parse_config(data, protocols=["dubbo", "http"])


def test_port_zero_addresses_never_clash() -> None:
    data = base()
    data["admin"] = {"address": "127.0.0.1:0"}
    data["listeners"][0]["address"] = "127.0.0.1:0"
    second = copy.deepcopy(data["listeners"][0])
    second["name"] = "rpc2"
    data["listeners"].append(second)
    cfg = parse_config(data, protocols=PROTOS)
    assert isinstance(cfg, Config) and len(cfg.listeners) == 2


def test_numeric_header_names_and_values_become_strings() -> None:
    data = base()
    data["listeners"][0]["routes"][0]["match"]["headers"] = {1: 2, "api_version": {"exact": 3}}
    cfg = parse_config(data, protocols=PROTOS)
    m = cfg.listeners[0].routes[0].match
    assert m is not None and m.headers["1"].exact == "2" and m.headers["api_version"].exact == "3"


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = """
listeners:
  - name: a
    address: 127.0.0.1:0
    protocols: [http]
    routes: [{cluster: c}, {cluster: d}]
clusters:
  - &defaults
    name: c
    endpoints: [127.0.0.1:1]
    lb: random
    connect_timeout: 2s
  - <<: *defaults
    name: d
"""
    cfg = load_config_text(text, protocols=PROTOS)
    assert [(c.name, c.lb, c.connect_timeout) for c in cfg.clusters] == [("c", "random", 2.0), ("d", "random", 2.0)]
