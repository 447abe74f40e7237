"""Local error replies seen by REAL clients through the real ``xproto proxy -c FILE``.

Issue 4: a request the proxy cannot route gets the protocol's own error reply at once -- a
Dubbo or Bolt client must see the error immediately, not wait for its own timeout. The same
holds for a route whose cluster has no healthy endpoint (its only endpoint is a port that
refuses connections) and for the proxy's own route timeout.

Every client here runs with a 5 s timeout of its own; every call must fail in well under
FAST seconds, with the error the protocol's reply carries, and /metrics must count the local
reply by reason and the response by its mapped HTTP-style status. Each client makes two calls
on one connection: the error reply must leave the connection usable.
"""

from __future__ import annotations

import importlib.util
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

try:
    from peers.proxy import ProxyProcess, free_ports, start_proxy

    from peers import bolt_py, errclients, node, thrift_peers
except ImportError:  # tests/ became a package
    from tests.peers import bolt_py, errclients, node, thrift_peers
    from tests.peers.proxy import ProxyProcess, free_ports, start_proxy

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

CLIENT_TIMEOUT_S = 5.0  # each client's own response timeout
FAST = 1.5  # an error reply must arrive well before that
CALLS = 2  # calls per client run, on one connection
ROUTE_TIMEOUT = "300ms"  # the proxy's own timeout on the "slow" listeners
SERVICE = "com.example.Greeter"  # what the clients call; the no-route listeners route only OTHER
OTHER = "com.example.Other"


def need(reason: str | None) -> None:
    if reason:
        pytest.skip(reason)


def dubbo_ssl_missing() -> str | None:
    try:
        if importlib.util.find_spec("dubbo_ssl.client") is not None:
            return None
    except ModuleNotFoundError:
        pass
    return "dubbo-ssl-python is not installed (pip install -r peers/requirements.txt)"


def httpx_missing() -> str | None:
    return None if importlib.util.find_spec("httpx") is not None else "httpx is not installed"


# --- upstreams that cannot answer -----------------------------------------------------------


@pytest.fixture(scope="module")
def dead_and_silent() -> Iterator[dict[str, str]]:
    """``dead``: a port bound but never listening (connects are refused; holding the socket
    keeps anyone else off the port). ``silent``: a listening socket that never accepts (the
    kernel completes the handshake from its backlog; nothing is ever read or answered)."""
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        dead.bind(("127.0.0.1", 0))
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        yield {
            "dead": f"127.0.0.1:{dead.getsockname()[1]}",
            "silent": f"127.0.0.1:{silent.getsockname()[1]}",
        }
    finally:
        dead.close()
        silent.close()


def _no_route(protocol: str) -> list[dict[str, Any]]:
    """Routes that never match a call of SERVICE.sayHello (and would lead to a cluster that
    cannot answer, so a wrong match shows up as another reason)."""
    if protocol == "thrift":
        match: dict[str, Any] = {"headers": {"method": "otherMethod"}}
    elif protocol == "http":
        match = {"headers": {":path": {"prefix": "/only-this"}}}
    else:
        match = {"headers": {"service": OTHER}}
    return [{"match": match, "cluster": "dead", "timeout": "5s"}]


# listener name -> (protocol, routes)
LISTENERS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    **{f"{p}_noroute": (p, _no_route(p)) for p in ("dubbo", "bolt", "thrift", "http")},
    **{f"{p}_dead": (p, [{"cluster": "dead", "timeout": "5s"}]) for p in ("dubbo", "bolt", "thrift", "http")},
    **{f"{p}_slow": (p, [{"cluster": "silent", "timeout": ROUTE_TIMEOUT}]) for p in ("dubbo", "bolt")},
}


@pytest.fixture(scope="module")
def proxy(
    dead_and_silent: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    ports = free_ports(len(LISTENERS) + 1)
    cfg = {
        "admin": {"address": f"127.0.0.1:{ports[-1]}"},
        "listeners": [
            {"name": name, "address": f"127.0.0.1:{ports[i]}", "protocols": [proto], "routes": routes}
            for i, (name, (proto, routes)) in enumerate(LISTENERS.items())
        ],
        "clusters": [
            {"name": "dead", "endpoints": [dead_and_silent["dead"]], "connect_timeout": "1s"},
            {"name": "silent", "endpoints": [dead_and_silent["silent"]], "connect_timeout": "1s"},
        ],
    }
    handle = start_proxy(cfg, tmp_path_factory.mktemp("proxy-local-replies"))
    try:
        yield handle
    finally:
        handle.stop()


# --- metrics --------------------------------------------------------------------------------


class Delta:
    """Counter deltas of one listener around one client run."""

    def __init__(self, px: ProxyProcess, listener: str) -> None:
        self.px, self.listener = px, listener
        self.protocol = LISTENERS[listener][0]
        self.before = self._read()

    def _read(self) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for name, labels, value in self.px.samples():
            if labels.get("listener") != self.listener:
                continue
            assert labels.get("protocol") == self.protocol, (name, labels)
            if name == "xproto_local_replies_total":
                key = ("local", labels["reason"])
            elif name == "xproto_downstream_responses_total":
                key = ("status", labels["status"])
            elif name in ("xproto_downstream_requests_total", "xproto_decode_errors_total"):
                key = (name, "")
            else:
                continue
            out[key] = out.get(key, 0.0) + value
        return out

    def changes(self) -> dict[tuple[str, str], float]:
        after = self._read()
        keys = set(after) | set(self.before)
        d = {k: after.get(k, 0.0) - self.before.get(k, 0.0) for k in keys}
        return {k: v for k, v in d.items() if v}

    def expect(self, reason: str, status: int, n: int) -> None:
        """Exactly ``n`` requests, each answered locally for ``reason`` with ``status``; nothing else."""
        want = {
            ("xproto_downstream_requests_total", ""): n,
            ("local", reason): n,
            ("status", str(status)): n,
        }
        assert self.changes() == want


def upstream_requests(px: ProxyProcess) -> float:
    return px.metric("xproto_upstream_requests_total", cluster="dead") + px.metric(
        "xproto_upstream_requests_total", cluster="silent"
    )


def assert_fast_errors(out: dict[str, Any], contains: str, *, limit: float = FAST) -> list[float]:
    """Every call failed with an error containing ``contains``, each in under ``limit`` s."""
    assert out.get("ok"), out
    calls = out["calls"]
    assert len(calls) == CALLS, out
    for c in calls:
        assert not c["ok"], out
        assert contains in c["error"], out
        assert c["elapsed_ms"] < limit * 1000, out
    return [round(c["elapsed_ms"], 1) for c in calls]


def run(
    px: ProxyProcess,
    listener: str,
    client: Any,
    *,
    reason: str,
    status: int,
    contains: str,
    limit: float = FAST,
) -> list[float]:
    d = Delta(px, listener)
    up = upstream_requests(px)
    out = client(px.listener(listener))
    elapsed = assert_fast_errors(out, contains, limit=limit)
    d.expect(reason, status, CALLS)
    if reason != "timeout":
        assert upstream_requests(px) == up  # nothing reached (or was counted for) an upstream
    print(f"{listener}: {elapsed} ms")
    return elapsed


# --- Dubbo ----------------------------------------------------------------------------------
# error_reply: status 60 SERVICE_NOT_FOUND (-> 404) / 80 SERVER_ERROR (-> 500) /
# 31 SERVER_TIMEOUT (-> 504), the proxy's message as the hessian string body; Dubbo clients
# raise that string.


def _dubbo_ssl(addr: str) -> dict[str, Any]:
    return errclients.dubbo_ssl_errcall(addr, service=SERVICE, count=CALLS, timeout=CLIENT_TIMEOUT_S)


def _dubbo_node(addr: str) -> dict[str, Any]:
    return errclients.node_errcall(
        "dubbo", addr, service=SERVICE, count=CALLS, timeout_ms=int(CLIENT_TIMEOUT_S * 1000)
    )


DUBBO_CLIENTS = {
    "dubbo-ssl-python": (dubbo_ssl_missing, _dubbo_ssl),
    "sofa-rpc-node": (node.missing, _dubbo_node),
}


@pytest.mark.parametrize("client", list(DUBBO_CLIENTS))
def test_dubbo_no_route_fast_error(proxy: ProxyProcess, client: str) -> None:
    missing, call = DUBBO_CLIENTS[client]
    need(missing())
    run(proxy, "dubbo_noroute", call, reason="no_route", status=404, contains="no route for this request")


@pytest.mark.parametrize("client", list(DUBBO_CLIENTS))
def test_dubbo_no_healthy_upstream_fast_error(proxy: ProxyProcess, client: str) -> None:
    missing, call = DUBBO_CLIENTS[client]
    need(missing())
    # the first request sees the refused connect, the second the endpoint marked unhealthy:
    # both messages name the cluster
    run(proxy, "dubbo_dead", call, reason="no_healthy_upstream", status=500, contains="dead")


def test_dubbo_route_timeout_beats_client_timeout(proxy: ProxyProcess) -> None:
    need(node.missing())
    run(proxy, "dubbo_slow", _dubbo_node, reason="timeout", status=504, contains="upstream request timeout")


# --- Bolt -----------------------------------------------------------------------------------
# error_reply: status 6 NO_PROCESSOR (-> 500) / 16 CONNECTION_CLOSED (-> 502) / 7 TIMEOUT
# (-> 504), no content, the proxy's text only in an ``xproto_error`` header. anthunder raises
# the status by name; sofa-bolt-node, for a non-success status with empty content, raises its
# fixed "Server exception ..." text (it never sees the header's text).

NODE_BOLT_ERROR = "Server exception when invoke with callback"


def _bolt_node(addr: str) -> dict[str, Any]:
    return errclients.node_errcall(
        "bolt", addr, service=SERVICE, count=CALLS, timeout_ms=int(CLIENT_TIMEOUT_S * 1000)
    )


def _anthunder(addr: str) -> dict[str, Any]:
    # anthunder's routing key is ``interface:version``: a SERVICE that is not OTHER either
    return errclients.anthunder_errcall(
        addr, interface="com.example.EchoPb:1.0", count=CALLS, timeout_ms=int(CLIENT_TIMEOUT_S * 1000)
    )


BOLT_CLIENTS = {
    "sofa-rpc-node": (node.missing, _bolt_node),
    "anthunder": (bolt_py.missing, _anthunder),
}
BOLT_EXPECT = {  # (client, case) -> text in the client's error
    ("sofa-rpc-node", "noroute"): NODE_BOLT_ERROR,
    ("sofa-rpc-node", "dead"): NODE_BOLT_ERROR,
    ("anthunder", "noroute"): "RESPSTATUS=6, NO_PROCESSOR",
    ("anthunder", "dead"): "RESPSTATUS=16, CONNECTION_CLOSED",
    ("anthunder", "slow"): "RESPSTATUS=7, TIMEOUT",
}


@pytest.mark.parametrize("client", list(BOLT_CLIENTS))
def test_bolt_no_route_fast_error(proxy: ProxyProcess, client: str) -> None:
    missing, call = BOLT_CLIENTS[client]
    need(missing())
    run(proxy, "bolt_noroute", call, reason="no_route", status=500, contains=BOLT_EXPECT[client, "noroute"])


@pytest.mark.parametrize("client", list(BOLT_CLIENTS))
def test_bolt_no_healthy_upstream_fast_error(proxy: ProxyProcess, client: str) -> None:
    missing, call = BOLT_CLIENTS[client]
    need(missing())
    run(
        proxy,
        "bolt_dead",
        call,
        reason="no_healthy_upstream",
        status=502,
        contains=BOLT_EXPECT[client, "dead"],
    )


def test_bolt_route_timeout_beats_client_timeout(proxy: ProxyProcess) -> None:
    need(bolt_py.missing())
    run(
        proxy,
        "bolt_slow",
        _anthunder,
        reason="timeout",
        status=504,
        contains=BOLT_EXPECT["anthunder", "slow"],
    )


# --- Thrift ---------------------------------------------------------------------------------
# error_reply: an EXCEPTION message with a TApplicationException, UNKNOWN_METHOD (1) for no
# route, INTERNAL_ERROR (6) otherwise, with the request's name and seqid.


def _thriftpy2(addr: str) -> dict[str, Any]:
    return errclients.thriftpy2_errcall(addr, "framed", count=CALLS, timeout=CLIENT_TIMEOUT_S)


@pytest.mark.parametrize(
    "listener,reason,status,app_type",
    [("thrift_noroute", "no_route", 404, 1), ("thrift_dead", "no_healthy_upstream", 503, 6)],
)
def test_thrift_thriftpy2_fast_application_exception(
    proxy: ProxyProcess, listener: str, reason: str, status: int, app_type: int
) -> None:
    need(thrift_peers.missing("thriftpy2"))
    d = Delta(proxy, listener)
    out = _thriftpy2(proxy.listener(listener))
    text = "no route" if reason == "no_route" else "dead"
    elapsed = assert_fast_errors(out, text)
    for c in out["calls"]:
        assert c["type"] == "TApplicationException", out
        assert c["attrs"].get("type") == repr(app_type), out
    changes = d.changes()
    assert (
        changes.get(("local", reason)) == CALLS
        and changes.get(("xproto_downstream_requests_total", "")) == CALLS
    ), changes
    statuses = {k[1]: v for k, v in changes.items() if k[0] == "status"}
    assert statuses == {str(status): CALLS}, changes
    print(f"{listener}: {elapsed} ms")


# --- HTTP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "listener,reason,codes",
    [("http_noroute", "no_route", (404,)), ("http_dead", "no_healthy_upstream", (502, 503))],
)
def test_http_httpx_local_reply(
    proxy: ProxyProcess, listener: str, reason: str, codes: tuple[int, ...]
) -> None:
    need(httpx_missing())
    import httpx

    d = Delta(proxy, listener)
    seen: list[tuple[int, str, float]] = []
    with httpx.Client(base_url=f"http://{proxy.listener(listener)}", timeout=CLIENT_TIMEOUT_S) as client:
        for path in ("/hello", "/hello?again=1"):
            t0 = time.perf_counter()
            resp = client.get(path)
            seen.append(
                (resp.status_code, resp.headers.get("x-xproto-local-reply", ""), time.perf_counter() - t0)
            )
            assert resp.status_code in codes, (resp.status_code, resp.text)
            assert resp.headers.get("x-xproto-local-reply") == reason, resp.headers
    for _, _, secs in seen:
        assert secs < FAST, seen
    status = seen[0][0]
    assert all(s == status for s, _, _ in seen), seen
    d.expect(reason, status, CALLS)
    print(f"{listener}: {[round(s * 1000, 1) for _, _, s in seen]} ms")
