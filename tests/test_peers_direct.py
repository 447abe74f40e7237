"""Real third-party clients against real third-party servers, DIRECTLY (no proxy).

Proves the peer harness in tests/peers/ works, so that a failure in test_peers_proxy.py is the
proxy's. Skipped only when a peer is genuinely not installed (see peers/install.sh).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

try:
    from peers._proc import PeerProcess

    from peers import bolt_py, dubbo_py, http_peers, kafka_peers, node, thrift_peers
except ImportError:  # tests/ became a package
    from tests.peers import bolt_py, dubbo_py, http_peers, kafka_peers, node, thrift_peers
    from tests.peers._proc import PeerProcess

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]


def need(reason: str | None) -> None:
    if reason:
        pytest.skip(reason)


def _serve(reason: str | None, start, *args) -> Iterator[PeerProcess]:  # type: ignore[no-untyped-def]
    need(reason)
    handle = start(*args)
    try:
        yield handle
    finally:
        handle.stop()


# --- servers, one per module ----------------------------------------------------------------


@pytest.fixture(scope="module")
def node_bolt() -> Iterator[PeerProcess]:
    yield from _serve(node.missing(), node.start_bolt_server)


@pytest.fixture(scope="module")
def node_dubbo() -> Iterator[PeerProcess]:
    yield from _serve(node.missing(), node.start_dubbo_server)


@pytest.fixture(scope="module")
def dubbo_py_server() -> Iterator[PeerProcess]:
    yield from _serve(dubbo_py.missing(), dubbo_py.start_server)


@pytest.fixture(scope="module")
def anthunder_server() -> Iterator[PeerProcess]:
    yield from _serve(bolt_py.missing(), bolt_py.start_server)


@pytest.fixture(scope="module", params=thrift_peers.THRIFTPY2_MODES)
def thriftpy2_server(request: pytest.FixtureRequest) -> Iterator[PeerProcess]:
    yield from _serve(thrift_peers.missing("thriftpy2"), thrift_peers.start_thriftpy2_server, request.param)


@pytest.fixture(scope="module")
def apache_thrift_server() -> Iterator[PeerProcess]:
    yield from _serve(thrift_peers.missing(), thrift_peers.start_apache_server)


@pytest.fixture(scope="module")
def tansu() -> Iterator[PeerProcess]:
    need(kafka_peers.missing())
    handle = kafka_peers.start_tansu()
    try:
        yield handle
    finally:
        kafka_peers.stop_tansu(handle)


@pytest.fixture(scope="module", params=["aiohttp", "http.server"])
def http_upstream(request: pytest.FixtureRequest) -> Iterator[PeerProcess]:
    start = http_peers.start_aiohttp_server if request.param == "aiohttp" else http_peers.start_stdlib_server
    yield from _serve(http_peers.missing("aiohttp"), start)


# --- Dubbo ----------------------------------------------------------------------------------


def test_dubbo_sofa_rpc_node_client_to_node_server(node_dubbo: PeerProcess) -> None:
    out = node.dubbo_call(node_dubbo.address, "sayHello", ["dubbo"], count=3)
    assert out["ok"], out
    assert out["results"] == ["hello dubbo"] * 3
    out = node.dubbo_call(node_dubbo.address, "plus", [40, 2])
    assert out == {"ok": True, "result": 42, "results": [42], "exit_code": 0}


def test_dubbo_ssl_python_client_to_dubbo_py_server(dubbo_py_server: PeerProcess) -> None:
    need(dubbo_py.missing())
    out = dubbo_py.dubbo_ssl_call(dubbo_py_server.address, "sayHello", ["py"], count=2)
    assert out["ok"], out
    assert out["results"] == ["hello py", "hello py"]
    assert dubbo_py.dubbo_ssl_call(dubbo_py_server.address, "plus", [40, 2])["result"] == 42


def test_dubbo_ssl_python_client_to_node_server(node_dubbo: PeerProcess) -> None:
    need(dubbo_py.missing())
    out = dubbo_py.dubbo_ssl_call(node_dubbo.address, "sayHello", ["cross"])
    assert out["ok"] and out["result"] == "hello cross", out


def test_dubbo_node_client_to_dubbo_py_server(dubbo_py_server: PeerProcess) -> None:
    need(node.missing())
    out = node.dubbo_call(dubbo_py_server.address, "sayHello", ["cross"])
    assert out["ok"] and out["result"] == "hello cross", out


# --- Bolt -----------------------------------------------------------------------------------


def test_bolt_sofa_rpc_node_hessian(node_bolt: PeerProcess) -> None:
    out = node.bolt_call(node_bolt.address, "sayHello", ["bolt"], count=3)
    assert out["ok"], out
    assert out["results"] == ["hello bolt"] * 3
    assert node.bolt_call(node_bolt.address, "plus", [1, 2])["result"] == 3


def test_bolt_anthunder_protobuf(anthunder_server: PeerProcess) -> None:
    out = bolt_py.anthunder_call(anthunder_server.address, b"\x0a\x05world", count=2)
    assert out["ok"], out
    assert out["results"] == [b"echo:\x0a\x05world"] * 2


# --- Thrift ---------------------------------------------------------------------------------


def test_thrift_thriftpy2(thriftpy2_server: PeerProcess) -> None:
    mode = thriftpy2_server.info["mode"]
    out = thrift_peers.thriftpy2_call(thriftpy2_server.address, mode, "tp2", count=2)
    assert out["ok"], out
    assert out["results"] == ["hello tp20", "hello tp21"]
    assert out["add"] == 42 and out["after_oneway"] == "hello again"


@pytest.mark.parametrize("mode", thrift_peers.APACHE_MODES)
def test_thrift_apache(apache_thrift_server: PeerProcess, mode: str) -> None:
    out = thrift_peers.apache_call(apache_thrift_server.address, mode, "apache")
    assert out["ok"], out
    assert out["result"] == "hello apache" and out["add"] == 42 and out["after_oneway"] == "hello again"
    if mode == "header":
        assert out["echoed_headers"] == ["sayHello-1", "add-2", "sayHello-4"]


@pytest.mark.parametrize("mode", thrift_peers.THRIFTPY2_MODES)
def test_thrift_thriftpy2_client_to_apache_server(apache_thrift_server: PeerProcess, mode: str) -> None:
    out = thrift_peers.thriftpy2_call(apache_thrift_server.address, mode, "x")
    assert out["ok"] and out["result"] == "hello x" and out["add"] == 42, out


# --- Kafka ----------------------------------------------------------------------------------


def test_kafka_python_against_tansu(tansu: PeerProcess) -> None:
    topic = kafka_peers.new_topic("kp")
    out = kafka_peers.kafka_python_roundtrip(tansu.address, topic, ["a", "b", "c"], group="kp-group")
    assert out["ok"], out
    assert out["offsets"] == [0, 1, 2] and out["consumed"] == ["a", "b", "c"]
    # Tansu advertises the address it was told to: what clients learn is the broker itself.
    assert out["consumer"]["brokers"] == [tansu.address]
    assert out["consumer"]["coordinators"] == [tansu.address]


def test_aiokafka_against_tansu(tansu: PeerProcess) -> None:
    need(kafka_peers.missing("aiokafka"))
    topic = kafka_peers.new_topic("aio")
    assert kafka_peers.create_topic(tansu.address, topic)["ok"]
    out = kafka_peers.aiokafka_roundtrip(tansu.address, topic, ["x", "y"], group="aio-group")
    assert out["ok"], out
    assert out["offsets"] == [0, 1] and out["consumed"] == ["x", "y"]
    assert out["consumer"]["connections"] == [tansu.address]


# --- HTTP -----------------------------------------------------------------------------------


def test_http_httpx_keepalive_chunked(http_upstream: PeerProcess) -> None:
    need(http_peers.missing("httpx"))
    out = http_peers.httpx_session(f"http://{http_upstream.address}")
    assert out["ok"], out
    assert out["hello"][2] == http_upstream.info["peer"]
    assert out["echo"][2] == "chunked" and out["chunked"][2] == "chunked"
    assert len(set(out["local_ports"])) == 1, out  # one kept-alive connection


def test_http_curl_keepalive_chunked(http_upstream: PeerProcess) -> None:
    need(http_peers.missing("curl"))
    out = http_peers.curl_session(f"http://{http_upstream.address}")
    assert out["ok"], out
    assert out["connects"] == [1, 0, 0], out  # curl reused its connection
