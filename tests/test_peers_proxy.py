"""Real third-party clients THROUGH the xproto proxy to real third-party servers.

One ``xproto proxy -c FILE`` process (started as a user would, from a YAML written here) serves
the whole module: one listener per (protocol, peer pair) plus one ``[auto]`` listener that
carries every protocol on one port. Each test runs a real client through a listener, checks
the answer, then checks the proxy's /metrics counted it. The last test stops the proxy with
SIGTERM and expects exit 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

try:
    from peers._proc import PeerProcess
    from peers.proxy import ProxyProcess, free_port_range, free_ports, start_proxy

    from peers import bolt_py, dubbo_py, http_peers, kafka_peers, node, thrift_peers
except ImportError:  # tests/ became a package
    from tests.peers import bolt_py, dubbo_py, http_peers, kafka_peers, node, thrift_peers
    from tests.peers._proc import PeerProcess
    from tests.peers.proxy import ProxyProcess, free_port_range, free_ports, start_proxy

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

TIMEOUT = "5s"


def need(reason: str | None) -> None:
    if reason:
        pytest.skip(reason)


# --- every upstream, once per module --------------------------------------------------------

# upstream name -> (why it cannot run here or None, start function)
UPSTREAMS: dict[str, tuple[Any, Any]] = {
    "node_dubbo": (node.missing, node.start_dubbo_server),
    "node_bolt": (node.missing, node.start_bolt_server),
    "dubbo_py": (dubbo_py.missing, dubbo_py.start_server),
    "anthunder": (bolt_py.missing, bolt_py.start_server),
    "tp2_framed": (
        lambda: thrift_peers.missing("thriftpy2"),
        lambda: thrift_peers.start_thriftpy2_server("framed"),
    ),
    "tp2_unframed": (
        lambda: thrift_peers.missing("thriftpy2"),
        lambda: thrift_peers.start_thriftpy2_server("unframed"),
    ),
    "tp2_compact": (
        lambda: thrift_peers.missing("thriftpy2"),
        lambda: thrift_peers.start_thriftpy2_server("compact"),
    ),
    "apache_thrift": (thrift_peers.missing, thrift_peers.start_apache_server),
    "tansu": (kafka_peers.missing, kafka_peers.start_tansu),
    "aiohttp": (lambda: http_peers.missing("aiohttp"), http_peers.start_aiohttp_server),
    "http_server": (lambda: None, http_peers.start_stdlib_server),
}

# listener name -> (protocols, upstream); the "auto" listener routes by protocol instead
LISTENERS: dict[str, tuple[list[str], str]] = {
    "dubbo_node": (["dubbo"], "node_dubbo"),
    "dubbo_py": (["dubbo"], "dubbo_py"),
    "bolt_node": (["bolt"], "node_bolt"),
    "bolt_anthunder": (["bolt"], "anthunder"),
    "thrift_framed": (["thrift"], "tp2_framed"),
    "thrift_unframed": (["thrift"], "tp2_unframed"),
    "thrift_compact": (["thrift"], "tp2_compact"),
    "thrift_header": (["thrift"], "apache_thrift"),
    "kafka": (["kafka"], "tansu"),
    "http_aiohttp": (["http"], "aiohttp"),
    "http_stdlib": (["http"], "http_server"),
}
AUTO_ROUTES = {
    "dubbo": "node_dubbo",
    "bolt": "node_bolt",
    "thrift": "apache_thrift",
    "kafka": "tansu",
    "http": "aiohttp",
}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, PeerProcess]]:
    started: dict[str, PeerProcess] = {}
    try:
        for name, (why, start) in UPSTREAMS.items():
            if why() is None:
                started[name] = start()
        yield started
    finally:
        for name, handle in started.items():
            if name == "tansu":
                kafka_peers.stop_tansu(handle)
            else:
                handle.stop()


def build_config(up: dict[str, PeerProcess]) -> dict[str, Any]:
    listeners_wanted = {n: v for n, v in LISTENERS.items() if v[1] in up}
    ports = free_ports(len(listeners_wanted) + 2)
    kafka_range = free_port_range(8)
    auto_kafka_range = free_port_range(8)
    while set(range(auto_kafka_range[0], auto_kafka_range[1] + 1)) & set(
        range(kafka_range[0], kafka_range[1] + 1)
    ):
        auto_kafka_range = free_port_range(8)
    clusters = [{"name": name, "endpoints": [h.address], "connect_timeout": "2s"} for name, h in up.items()]
    listeners: list[dict[str, Any]] = []
    for i, (name, (protocols, upstream)) in enumerate(listeners_wanted.items()):
        lst: dict[str, Any] = {
            "name": name,
            "address": f"127.0.0.1:{ports[i]}",
            "protocols": protocols,
            "routes": [{"cluster": upstream, "timeout": TIMEOUT}],
        }
        if protocols == ["kafka"]:
            lst["kafka"] = {
                "advertise_host": "127.0.0.1",
                "broker_ports": f"{kafka_range[0]}-{kafka_range[1]}",
            }
        listeners.append(lst)
    auto: dict[str, Any] = {
        "name": "auto",
        "address": f"127.0.0.1:{ports[-2]}",
        "protocols": ["auto"],
        "routes": [
            {"match": {"protocol": proto}, "cluster": cl, "timeout": TIMEOUT}
            for proto, cl in AUTO_ROUTES.items()
            if cl in up
        ],
    }
    if "tansu" in up:
        auto["kafka"] = {
            "advertise_host": "127.0.0.1",
            "broker_ports": f"{auto_kafka_range[0]}-{auto_kafka_range[1]}",
        }
    listeners.append(auto)
    return {
        "admin": {"address": f"127.0.0.1:{ports[-1]}"},
        "listeners": listeners,
        "clusters": clusters,
        "drain_timeout": "3s",
        "x-ranges": {"kafka": kafka_range, "auto": auto_kafka_range},
    }


@pytest.fixture(scope="module")
def proxy(
    upstreams: dict[str, PeerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    cfg = build_config(upstreams)
    ranges = cfg.pop("x-ranges")
    handle = start_proxy(cfg, tmp_path_factory.mktemp("proxy"))
    handle.info["kafka_ranges"] = ranges
    try:
        yield handle
    finally:
        if handle.alive():
            handle.stop()


class Counts:
    """Deltas of the proxy's metrics around one client run."""

    def __init__(self, px: ProxyProcess, listener: str, protocol: str, cluster: str) -> None:
        self.px, self.labels, self.cluster, self.protocol = (
            px,
            {"listener": listener, "protocol": protocol},
            cluster,
            protocol,
        )
        self.before = self._read()

    def _read(self) -> dict[str, float]:
        px = self.px
        return {
            "requests": px.metric("xproto_downstream_requests_total", **self.labels),
            "ok": px.metric("xproto_downstream_responses_total", status="200", **self.labels),
            "upstream": px.metric(
                "xproto_upstream_requests_total", cluster=self.cluster, protocol=self.protocol
            ),
            "errors": px.metric("xproto_decode_errors_total", **self.labels),
            "local": px.metric("xproto_local_replies_total", **self.labels),
            "durations": px.metric("xproto_request_duration_seconds_count", **self.labels),
        }

    def delta(self) -> dict[str, float]:
        after = self._read()
        return {k: after[k] - self.before[k] for k in after}

    def check(self, requests: int, *, exact: bool = False) -> dict[str, float]:
        d = self.delta()
        assert d["errors"] == 0 and d["local"] == 0, d
        if exact:
            assert d["requests"] == requests and d["ok"] == requests, d
        else:
            assert d["requests"] >= requests and d["ok"] >= requests, d
        assert d["upstream"] >= requests, d
        assert d["durations"] >= requests, d
        return d


def on(px: ProxyProcess, up: dict[str, PeerProcess], listener: str) -> str:
    """The proxy address of ``listener``; skips when its upstream peer is not installed."""
    if listener not in px.listeners or LISTENERS[listener][1] not in up:
        pytest.skip(f"the upstream peer of listener {listener} is not installed")
    return px.listener(listener)


# --- Dubbo ----------------------------------------------------------------------------------


def test_dubbo_sofa_rpc_node_through_proxy(proxy: ProxyProcess, upstreams: dict[str, PeerProcess]) -> None:
    addr = on(proxy, upstreams, "dubbo_node")
    c = Counts(proxy, "dubbo_node", "dubbo", "node_dubbo")
    out = node.dubbo_call(addr, "sayHello", ["proxy"], count=3)
    assert out["ok"] and out["results"] == ["hello proxy"] * 3, out
    assert node.dubbo_call(addr, "plus", [40, 2])["result"] == 42
    c.check(4)


def test_dubbo_ssl_python_to_dubbo_py_through_proxy(
    proxy: ProxyProcess, upstreams: dict[str, PeerProcess]
) -> None:
    addr = on(proxy, upstreams, "dubbo_py")
    c = Counts(proxy, "dubbo_py", "dubbo", "dubbo_py")
    out = dubbo_py.dubbo_ssl_call(addr, "sayHello", ["py"], count=2)
    assert out["ok"] and out["results"] == ["hello py", "hello py"], out
    c.check(2)


# --- Bolt -----------------------------------------------------------------------------------


def test_bolt_sofa_rpc_node_through_proxy(proxy: ProxyProcess, upstreams: dict[str, PeerProcess]) -> None:
    addr = on(proxy, upstreams, "bolt_node")
    c = Counts(proxy, "bolt_node", "bolt", "node_bolt")
    out = node.bolt_call(addr, "sayHello", ["bolt"], count=3)
    assert out["ok"] and out["results"] == ["hello bolt"] * 3, out
    c.check(3)


def test_bolt_anthunder_protobuf_through_proxy(
    proxy: ProxyProcess, upstreams: dict[str, PeerProcess]
) -> None:
    addr = on(proxy, upstreams, "bolt_anthunder")
    c = Counts(proxy, "bolt_anthunder", "bolt", "anthunder")
    out = bolt_py.anthunder_call(addr, b"\x0a\x05proxy", count=2)
    assert out["ok"] and out["results"] == [b"echo:\x0a\x05proxy"] * 2, out
    c.check(2, exact=True)


# --- Thrift ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", thrift_peers.THRIFTPY2_MODES)
def test_thrift_thriftpy2_through_proxy(
    proxy: ProxyProcess, upstreams: dict[str, PeerProcess], mode: str
) -> None:
    listener = f"thrift_{mode}"
    addr = on(proxy, upstreams, listener)
    c = Counts(proxy, listener, "thrift", f"tp2_{mode}")
    out = thrift_peers.thriftpy2_call(addr, mode, "tp2", count=2)
    assert out["ok"] and out["results"] == ["hello tp20", "hello tp21"], out
    assert out["add"] == 42 and out["after_oneway"] == "hello again", out
    # 2 x sayHello + add + sayHello answered; the oneway ping is a request without a response
    d = c.delta()
    assert d["requests"] == 5 and d["ok"] == 4 and d["errors"] == 0 and d["local"] == 0, d


@pytest.mark.parametrize("mode", thrift_peers.APACHE_MODES)
def test_thrift_apache_through_proxy(
    proxy: ProxyProcess, upstreams: dict[str, PeerProcess], mode: str
) -> None:
    addr = on(proxy, upstreams, "thrift_header")
    c = Counts(proxy, "thrift_header", "thrift", "apache_thrift")
    out = thrift_peers.apache_call(addr, mode, "apache")
    assert out["ok"] and out["result"] == "hello apache" and out["after_oneway"] == "hello again", out
    if mode == "header":  # THeader info headers survive the proxy both ways
        assert out["echoed_headers"] == ["sayHello-1", "add-2", "sayHello-4"], out
    d = c.delta()
    assert d["requests"] == 4 and d["ok"] == 3 and d["errors"] == 0 and d["local"] == 0, d


# --- Kafka ----------------------------------------------------------------------------------


def _proxy_only(
    out: dict[str, Any], listener_addr: str, rng: tuple[int, int], tansu: PeerProcess
) -> list[str]:
    """Every broker address the client learned or connected to; asserts each leads to the proxy."""
    seen: list[str] = []
    for role in ("producer", "consumer"):
        for key in ("brokers", "coordinators", "connections"):
            seen += out[role].get(key, [])
    seen += out.get("admin", [])
    assert seen, out
    for a in seen:
        host, port = a.rsplit(":", 1)
        assert a != tansu.address, f"client learned the broker's own address {a}: {out}"
        assert host == "127.0.0.1" and (a == listener_addr or rng[0] <= int(port) <= rng[1]), (a, rng, out)
    return seen


def test_kafka_python_through_proxy(proxy: ProxyProcess, upstreams: dict[str, PeerProcess]) -> None:
    addr = on(proxy, upstreams, "kafka")
    c = Counts(proxy, "kafka", "kafka", "tansu")
    topic = kafka_peers.new_topic("kp-proxy")
    out = kafka_peers.kafka_python_roundtrip(addr, topic, ["a", "b", "c"], group="kp-proxy-group")
    assert out["ok"] and out["offsets"] == [0, 1, 2] and out["consumed"] == ["a", "b", "c"], out
    assert out["consumer"]["coordinators"], out  # FindCoordinator went through and was rewritten
    _proxy_only(out, addr, proxy.info["kafka_ranges"]["kafka"], upstreams["tansu"])
    d = c.check(3)
    produce = proxy.metric(
        "xproto_downstream_requests_total", listener="kafka", protocol="kafka", api="Produce"
    )
    assert produce >= 3, d


def test_aiokafka_through_proxy(proxy: ProxyProcess, upstreams: dict[str, PeerProcess]) -> None:
    addr = on(proxy, upstreams, "kafka")
    need(kafka_peers.missing("aiokafka"))
    topic = kafka_peers.new_topic("aio-proxy")
    assert kafka_peers.create_topic(addr, topic)["ok"]
    c = Counts(proxy, "kafka", "kafka", "tansu")
    out = kafka_peers.aiokafka_roundtrip(addr, topic, ["x", "y"], group="aio-proxy-group")
    assert out["ok"] and out["offsets"] == [0, 1] and out["consumed"] == ["x", "y"], out
    _proxy_only(out, addr, proxy.info["kafka_ranges"]["kafka"], upstreams["tansu"])
    c.check(2)


# --- HTTP -----------------------------------------------------------------------------------


@pytest.mark.parametrize("listener,server", [("http_aiohttp", "aiohttp"), ("http_stdlib", "http.server")])
def test_http_httpx_through_proxy(
    proxy: ProxyProcess, upstreams: dict[str, PeerProcess], listener: str, server: str
) -> None:
    addr = on(proxy, upstreams, listener)
    c = Counts(proxy, listener, "http", LISTENERS[listener][1])
    out = http_peers.httpx_session(f"http://{addr}")
    assert out["ok"], out
    assert out["hello"][2] == server
    assert out["echo"][2] == "chunked" and out["chunked"][2] == "chunked", out
    assert len(set(out["local_ports"])) == 1, out  # the downstream connection was kept alive
    c.check(4, exact=True)


@pytest.mark.parametrize("listener", ["http_aiohttp", "http_stdlib"])
def test_http_curl_through_proxy(
    proxy: ProxyProcess, upstreams: dict[str, PeerProcess], listener: str
) -> None:
    need(http_peers.missing("curl"))
    addr = on(proxy, upstreams, listener)
    c = Counts(proxy, listener, "http", LISTENERS[listener][1])
    out = http_peers.curl_session(f"http://{addr}")
    assert out["ok"], out
    assert out["connects"] == [1, 0, 0], out  # curl kept its connection to the proxy alive
    c.check(3, exact=True)


# --- every protocol on one auto-detecting port ----------------------------------------------


def _auto_dubbo(px: ProxyProcess, addr: str, up: dict[str, PeerProcess]) -> int:
    out = node.dubbo_call(addr, "sayHello", ["auto"])
    assert out["ok"] and out["result"] == "hello auto", out
    if dubbo_py.missing() is None:
        out = dubbo_py.dubbo_ssl_call(addr, "sayHello", ["auto-py"])
        assert out["ok"] and out["result"] == "hello auto-py", out
        return 2
    return 1


def _auto_bolt(px: ProxyProcess, addr: str, up: dict[str, PeerProcess]) -> int:
    out = node.bolt_call(addr, "sayHello", ["auto"])
    assert out["ok"] and out["result"] == "hello auto", out
    return 1


def _auto_thrift(px: ProxyProcess, addr: str, up: dict[str, PeerProcess]) -> int:
    for mode in ("header", "framed", "compact"):
        out = thrift_peers.apache_call(addr, mode, "auto")
        assert out["ok"] and out["result"] == "hello auto", (mode, out)
    out = thrift_peers.thriftpy2_call(addr, "framed", "auto")
    assert out["ok"] and out["result"] == "hello auto", out
    return 4 * 3  # sayHello, add, sayHello answered per client (the oneway ping is not)


def _auto_kafka(px: ProxyProcess, addr: str, up: dict[str, PeerProcess]) -> int:
    out = kafka_peers.kafka_python_roundtrip(addr, kafka_peers.new_topic("auto"), ["k1", "k2"], group=None)
    assert out["ok"] and out["consumed"] == ["k1", "k2"], out
    _proxy_only(out, addr, px.info["kafka_ranges"]["auto"], up["tansu"])
    return 2


def _auto_http(px: ProxyProcess, addr: str, up: dict[str, PeerProcess]) -> int:
    out = http_peers.httpx_session(f"http://{addr}")
    assert out["ok"] and len(set(out["local_ports"])) == 1, out
    return 4


AUTO_CLIENTS = {
    "dubbo": _auto_dubbo,
    "bolt": _auto_bolt,
    "thrift": _auto_thrift,
    "kafka": _auto_kafka,
    "http": _auto_http,
}


@pytest.mark.parametrize("protocol", list(AUTO_CLIENTS))
def test_auto_port_carries_every_protocol(
    proxy: ProxyProcess, upstreams: dict[str, PeerProcess], protocol: str
) -> None:
    """The one ``protocols: [auto]`` listener detects and routes each protocol's real client."""
    cluster = AUTO_ROUTES[protocol]
    if cluster not in upstreams:
        pytest.skip(f"the {protocol} peers are not installed")
    c = Counts(proxy, "auto", protocol, cluster)
    answered = AUTO_CLIENTS[protocol](proxy, proxy.listener("auto"), upstreams)
    c.check(answered)


# --- last: graceful stop --------------------------------------------------------------------


def test_zz_proxy_sigterm_exits_zero(proxy: ProxyProcess) -> None:
    """Runs last in this module (pytest keeps file order): SIGTERM drains and exits 0."""
    status, _ = proxy.get("/ready")
    assert status == 200
    code = proxy.stop(timeout=15)
    assert code == 0, proxy.stderr_tail()
