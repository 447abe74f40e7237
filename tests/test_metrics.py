"""Metrics names/labels, scraped over HTTP from the AdminServer, and the admin's threading."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from xproto.codec import Reason
from xproto.config import load_config
from xproto.metrics import DURATION_BUCKETS, Metrics
from xproto.metrics.admin import AdminServer

pytestmark = pytest.mark.timeout(60)

CONFIGS = Path(__file__).resolve().parent.parent / "fixtures" / "configs"
PROTOS = ["dubbo", "bolt", "thrift", "kafka", "http"]
WAIT = 10.0  # upper bound for any cross-thread handshake (never reached when things work)


def get(url: str, timeout: float = WAIT) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def samples(text: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """sample name -> {label set -> value}, from a Prometheus text exposition."""
    out: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def L(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


@pytest.fixture()
def admin() -> Iterator[tuple[Metrics, AdminServer]]:
    cfg = load_config(str(CONFIGS / "example.yaml"), protocols=PROTOS)
    m = Metrics(config=cfg)
    state = {"ready": False}
    srv = AdminServer("127.0.0.1:0", m, config_provider=cfg.effective_dict,
                      clusters_provider=lambda: {"greeter": {"endpoints": [{"address": "127.0.0.1:20881",
                                                                            "healthy": True}]}},
                      ready_provider=lambda: state["ready"])
    srv.start()
    srv.state = state  # type: ignore[attr-defined]
    try:
        yield m, srv
    finally:
        srv.stop()


def drive(m: Metrics) -> None:
    d = m.downstream("rpc", "dubbo")
    d.requests_inc()
    d.requests_inc()
    d.response(200)
    d.response(504)
    d.observe(0.0003)
    d.observe(2.0)
    d.local_reply(Reason.TIMEOUT)
    d.local_reply("no_route")
    d.decode_error()
    k = m.downstream("rpc", "kafka")
    k.requests_inc(api="Produce")
    k.observe(0.001, api="Produce")
    k.response(200)
    m.upstream("greeter", "dubbo").request()
    m.upstream("fallback", "http").request()
    m.downstream_connections("rpc").inc()
    m.downstream_connections("rpc").inc()
    m.downstream_connections("rpc").dec()
    m.upstream_connections("greeter").inc()
    m.upstream_connections("fallback", "http").inc()
    m.heartbeat("dubbo", "upstream_sent")
    m.heartbeat("dubbo", "upstream_ok")
    m.heartbeat("bolt", "downstream_reply")


def test_scrape_names_labels_values(admin: tuple[Metrics, AdminServer]) -> None:
    m, srv = admin
    drive(m)
    status, ctype, body = get(srv.url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    s = samples(body.decode())
    assert s["xproto_downstream_requests_total"] == {
        L(listener="rpc", protocol="dubbo", api=""): 2.0,
        L(listener="rpc", protocol="kafka", api="Produce"): 1.0,
    }
    assert s["xproto_downstream_responses_total"] == {
        L(listener="rpc", protocol="dubbo", status="200"): 1.0,
        L(listener="rpc", protocol="dubbo", status="504"): 1.0,
        L(listener="rpc", protocol="kafka", status="200"): 1.0,
    }
    assert s["xproto_request_duration_seconds_count"] == {
        L(listener="rpc", protocol="dubbo", api=""): 2.0,
        L(listener="rpc", protocol="kafka", api="Produce"): 1.0,
    }
    assert s["xproto_request_duration_seconds_sum"][L(listener="rpc", protocol="dubbo", api="")] == \
        pytest.approx(2.0003)
    b = s["xproto_request_duration_seconds_bucket"]
    dub = {"listener": "rpc", "protocol": "dubbo", "api": ""}
    assert b[L(**dub, le="0.00025")] == 0.0
    assert b[L(**dub, le="0.0005")] == 1.0
    assert b[L(**dub, le="1.0")] == 1.0
    assert b[L(**dub, le="2.5")] == 2.0
    assert b[L(**dub, le="+Inf")] == 2.0
    assert {dict(k)["le"] for k in b if dict(k)["protocol"] == "dubbo"} == \
        {repr(float(x)) for x in DURATION_BUCKETS} | {"+Inf"}
    assert s["xproto_decode_errors_total"] == {
        L(listener="rpc", protocol="dubbo"): 1.0, L(listener="rpc", protocol="kafka"): 0.0}
    assert s["xproto_local_replies_total"] == {
        L(listener="rpc", protocol="dubbo", reason="timeout"): 1.0,
        L(listener="rpc", protocol="dubbo", reason="no_route"): 1.0,
    }
    assert s["xproto_upstream_requests_total"] == {
        L(cluster="greeter", protocol="dubbo"): 1.0, L(cluster="fallback", protocol="http"): 1.0}
    assert s["xproto_downstream_connections"] == {
        L(listener="rpc", protocol="dubbo,bolt,thrift,kafka,http"): 1.0}
    assert s["xproto_upstream_connections"] == {
        L(cluster="greeter", protocol="dubbo"): 1.0, L(cluster="fallback", protocol="http"): 1.0}
    assert s["xproto_heartbeats_total"] == {
        L(protocol="dubbo", direction="upstream_sent"): 1.0,
        L(protocol="dubbo", direction="upstream_ok"): 1.0,
        L(protocol="bolt", direction="downstream_reply"): 1.0,
    }
    # every series of every xproto family carries `protocol`
    for name, series in s.items():
        assert name.startswith("xproto_"), name
        for labels in series:
            assert "protocol" in dict(labels), (name, labels)


def test_each_metrics_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.downstream("l", "http").requests_inc()
    sa = samples(a.exposition().decode())
    sb = samples(b.exposition().decode())
    assert sa["xproto_downstream_requests_total"] == {L(listener="l", protocol="http", api=""): 1.0}
    assert "xproto_downstream_requests_total" not in sb


def test_children_are_cached() -> None:
    m = Metrics()
    assert m.downstream("l", "http") is m.downstream("l", "http")
    assert m.upstream("c", "http") is m.upstream("c", "http")
    assert m.downstream_connections("l") is m.downstream_connections("l")
    # without a config the connection gauges' protocol label is "auto"
    m.downstream_connections("l").inc()
    assert samples(m.exposition().decode())["xproto_downstream_connections"] == {
        L(listener="l", protocol="auto"): 1.0}


def test_admin_endpoints(admin: tuple[Metrics, AdminServer]) -> None:
    _, srv = admin
    assert get(srv.url + "/ready")[0] == 503
    srv.state["ready"] = True  # type: ignore[attr-defined]
    status, _, body = get(srv.url + "/ready")
    assert status == 200 and body == b"ready\n"
    status, ctype, body = get(srv.url + "/config")
    cfg = load_config(str(CONFIGS / "example.yaml"), protocols=PROTOS)
    assert status == 200 and ctype == "application/json" and json.loads(body) == cfg.effective_dict()
    status, _, body = get(srv.url + "/clusters")
    assert status == 200 and json.loads(body)["greeter"]["endpoints"][0]["healthy"] is True
    assert get(srv.url + "/nope")[0] == 404
    req = urllib.request.Request(srv.url + "/metrics", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=WAIT)
    assert ei.value.code == 405


def test_provider_error_is_a_500_and_the_admin_survives() -> None:
    def boom() -> Any:
        raise RuntimeError("kaput")
    with AdminServer(("127.0.0.1", 0), Metrics(), clusters_provider=boom) as srv:
        status, _, body = get(srv.url + "/clusters")
        assert status == 500 and b"kaput" in body
        assert get(srv.url + "/metrics")[0] == 200


def test_stop_releases_the_port_and_ends_keepalive_connections() -> None:
    import http.client
    srv = AdminServer("127.0.0.1:0", Metrics()).start()
    url = srv.url
    conn = http.client.HTTPConnection(*srv.address, timeout=WAIT)
    conn.request("GET", "/ready")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b"ready\n"
    before = threading.active_count()
    srv.stop()
    # the keep-alive connection was closed by the server, not left to a lingering thread
    conn.request("GET", "/ready")
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.getresponse()
    conn.close()
    assert threading.active_count() < before
    srv.stop()  # idempotent
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/metrics", timeout=WAIT)


def test_scrape_answers_while_the_event_loop_is_blocked() -> None:
    m = Metrics()
    m.downstream("l", "http").requests_inc()
    result: dict[str, Any] = {}
    scraped = threading.Event()

    with AdminServer("127.0.0.1:0", m) as srv:
        def scrape() -> None:
            result["r"] = get(srv.url + "/metrics")
            scraped.set()

        async def main() -> None:
            threading.Thread(target=scrape, daemon=True).start()
            # block the loop's thread until the scrape finished: only a server that does not
            # need the loop can answer
            result["in_time"] = scraped.wait(WAIT)

        asyncio.run(main())
    assert result["in_time"] is True
    status, _, body = result["r"]
    assert status == 200 and b'xproto_downstream_requests_total{api="",listener="l",protocol="http"} 1.0' in body


def test_slow_scrape_does_not_block_the_event_loop() -> None:
    m = Metrics()
    entered, release = threading.Event(), threading.Event()

    class SlowCollector:
        def describe(self) -> list[Any]:
            return []  # so registering does not call collect()

        def collect(self) -> Iterator[Any]:
            entered.set()
            release.wait(WAIT)
            return iter(())

    m.registry.register(SlowCollector())  # type: ignore[arg-type]
    result: dict[str, Any] = {}
    with AdminServer("127.0.0.1:0", m) as srv:
        t = threading.Thread(target=lambda: result.setdefault("r", get(srv.url + "/metrics")), daemon=True)

        async def main() -> int:
            t.start()
            assert await asyncio.to_thread(entered.wait, WAIT)
            # the scrape is stuck inside collect(); the loop keeps running and counting
            ticks = 0
            d = m.downstream("l", "http")
            for _ in range(1000):
                await asyncio.sleep(0)
                d.requests_inc()
                ticks += 1
            still_blocked = not release.is_set() and "r" not in result
            release.set()
            await asyncio.to_thread(t.join, WAIT)
            return ticks if still_blocked else -1

        assert asyncio.run(main()) == 1000
    status, _, body = result["r"]
    assert status == 200
    # the scrape saw a consistent value: one between 0 and 1000 increments
    v = samples(body.decode()).get("xproto_downstream_requests_total", {}).get(
        L(listener="l", protocol="http", api=""), 0.0)
    assert 0.0 <= v <= 1000.0


def test_providers_on_the_loop_and_busy_loop_gives_503() -> None:
    m = Metrics()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        seen: dict[str, int] = {}

        def clusters() -> dict[str, Any]:
            seen["thread"] = threading.get_ident()
            return {"c": {"in_flight": 3}}

        srv = AdminServer("127.0.0.1:0", m, clusters_provider=clusters, ready_provider=lambda: True,
                          loop=loop, provider_timeout=0.3).start()
        try:
            status, _, body = await asyncio.to_thread(get, srv.url + "/clusters")
            assert status == 200 and json.loads(body) == {"c": {"in_flight": 3}}
            assert seen["thread"] == loop_thread
            # now block the loop: /clusters gives up after provider_timeout, /metrics answers
            out: dict[str, Any] = {}
            done = threading.Event()

            def scrape_both() -> None:
                out["clusters"] = get(srv.url + "/clusters")
                out["metrics"] = get(srv.url + "/metrics")
                done.set()

            threading.Thread(target=scrape_both, daemon=True).start()
            assert done.wait(WAIT)  # blocks the loop on purpose
            assert out["clusters"][0] == 503
            assert out["metrics"][0] == 200
        finally:
            srv.stop()

    asyncio.run(main())


MP_SCRIPT = textwrap.dedent("""
    import os, sys
    from xproto.metrics import Metrics, mark_worker_dead
    from prometheus_client.parser import text_string_to_metric_families
    d = sys.argv[1]
    m = Metrics(multiprocess_dir=d)
    pids = []
    for w in range(3):
        pid = os.fork()
        if pid == 0:
            m.downstream("rpc", "dubbo").requests_inc()
            m.downstream("rpc", "dubbo").observe(0.01)
            m.downstream_connections("rpc").inc()
            m.sync()            # what a worker does periodically, on SIGUSR1 and at stop
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    # workers 1 and 2 exited and are marked dead; worker 0 is "still alive" in the store
    for pid in pids[1:]:
        mark_worker_dead(pid, d)
    m.downstream("rpc", "dubbo").requests_inc()   # the parent counts too
    text = m.exposition().decode()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in ("xproto_downstream_requests_total", "xproto_request_duration_seconds_count",
                          "xproto_downstream_connections"):
                print(s.name, sorted(s.labels.items()), s.value)
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_multiprocess_mode_merges_workers(tmp_path: Path) -> None:
    d = tmp_path / "prom"
    d.mkdir()
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    r = subprocess.run([sys.executable, "-c", MP_SCRIPT, str(d)], capture_output=True, text=True,
                       timeout=50, env=env, check=False)
    assert r.returncode == 0, r.stderr
    lines = set(r.stdout.splitlines())
    assert "xproto_downstream_requests_total [('api', ''), ('listener', 'rpc'), ('protocol', 'dubbo')] 4.0" in lines
    assert "xproto_request_duration_seconds_count [('api', ''), ('listener', 'rpc'), ('protocol', 'dubbo')] 3.0" \
        in lines
    # livesum: only worker 0 (not marked dead) still counts its open connection
    assert "xproto_downstream_connections [('listener', 'rpc'), ('protocol', 'auto')] 1.0" in lines


def test_ipv6_and_reuse_port() -> None:
    import socket
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = AdminServer("[::1]:0", Metrics()).start()
    except OSError:
        pytest.skip("::1 not available")
    try:
        assert srv.url.startswith("http://[::1]:")
        assert get(srv.url + "/metrics")[0] == 200
    finally:
        srv.stop()
    a = AdminServer("127.0.0.1:0", Metrics(), reuse_port=True).start()
    try:
        b = AdminServer(a.address, Metrics(), reuse_port=True).start()  # same port: allowed
        try:
            assert b.address == a.address
        finally:
            b.stop()
        with pytest.raises(OSError):
            AdminServer(a.address, Metrics()).start()  # without reuse_port: address in use
    finally:
        a.stop()


def test_heartbeat_directions_include_upstream_reply() -> None:
    from xproto.metrics import HEARTBEAT_DIRECTIONS
    assert set(HEARTBEAT_DIRECTIONS) == {"downstream_reply", "upstream_sent", "upstream_ok",
                                         "upstream_missed", "upstream_reply"}


def test_hot_path_counts_are_plain_numbers_read_at_scrape() -> None:
    m = Metrics()
    d = m.downstream("l", "dubbo")
    d.requests += 3                      # what the proxy's hot path does
    d.hist.observe(0.00005)              # exactly on a bound: counted in that bucket (le)
    d.hist.observe(100.0)                # beyond the last bound: +Inf only
    s = samples(m.exposition().decode())
    assert s["xproto_downstream_requests_total"] == {L(listener="l", protocol="dubbo", api=""): 3.0}
    b = s["xproto_request_duration_seconds_bucket"]
    assert b[L(listener="l", protocol="dubbo", api="", le="5e-05")] == 1.0
    assert b[L(listener="l", protocol="dubbo", api="", le="60.0")] == 1.0
    assert b[L(listener="l", protocol="dubbo", api="", le="+Inf")] == 2.0
    assert m.registry.get_sample_value("xproto_request_duration_seconds_sum",
                                       {"listener": "l", "protocol": "dubbo", "api": ""}) == pytest.approx(100.00005)
