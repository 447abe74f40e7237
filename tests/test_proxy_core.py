"""The proxy core through real sockets: routing, local replies, id rewriting and wrap,
failures, one-way, heartbeats, overflow, retries, bad bytes, back-pressure."""
from __future__ import annotations

import asyncio

import pytest
from test_proxy_helpers import Client, Upstream, arun, codec, listener, metric, proxy, until

from xproto.codecs import bolt as B
from xproto.frame import Frame, Kind

pytestmark = pytest.mark.timeout(60)

BOLT = codec("bolt")


def bolt_req(rid: int, service: str = "svc.A", content: bytes = b"hi", oneway: bool = False) -> bytes:
    return BOLT.build(type=B.TYPE_ONEWAY if oneway else B.TYPE_REQUEST, cmdcode=B.CMD_REQUEST,
                      request_id=rid, timeout=3000, headers=[("service", service)], content=content)


def bolt_hb(rid: int) -> bytes:
    return BOLT.build(type=B.TYPE_REQUEST, cmdcode=B.CMD_HEARTBEAT, request_id=rid)


def bolt_echo(tag: bytes = b"") -> callable:
    def respond(f: Frame) -> bytes:
        return BOLT.build(type=B.TYPE_RESPONSE, cmdcode=B.CMD_RESPONSE, request_id=f.request_id,
                          status=0, content=tag + bytes(BOLT.content(f)))
    return respond


def content(f: Frame) -> bytes:
    return bytes(BOLT.content(f))


def cfg(up: dict[str, list[str]], routes: list[dict], *, cluster_extra: dict | None = None,
        **listener_extra) -> dict:
    clusters = []
    for name, eps in up.items():
        c = {"name": name, "endpoints": eps}
        c.update((cluster_extra or {}).get(name, {}))
        clusters.append(c)
    return {"listeners": [listener(["bolt"], routes, **listener_extra)], "clusters": clusters}


def test_routing_and_no_route_local_reply() -> None:
    async def body() -> None:
        a = await Upstream("bolt", bolt_echo(b"A:")).start()
        b = await Upstream("bolt", bolt_echo(b"B:")).start()
        routes = [{"match": {"headers": {"service": "svc.A"}}, "cluster": "a"},
                  {"match": {"headers": {"service": {"prefix": "svc.B"}}}, "cluster": "b"}]
        async with proxy(cfg({"a": [a.addr], "b": [b.addr]}, routes)) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            c.send(bolt_req(11, "svc.A", b"x"))
            c.send(bolt_req(12, "svc.Bee", b"y"))
            c.send(bolt_req(13, "svc.Nope", b"z"))
            got = {f.request_id: f for f in await c.recv(3)}
            assert content(got[11]) == b"A:x" and got[11].status == 0
            assert content(got[12]) == b"B:y" and got[12].status == 0
            # no route: the protocol's own reply (bolt status 6 NO_PROCESSOR), same id
            assert got[13].status == 6 and got[13].kind is Kind.RESPONSE
            assert not any(f.headers.get("service") == "svc.Nope" for f in a.received + b.received)
            # the connection stays usable after a local reply
            c.send(bolt_req(14, "svc.A", b"again"))
            (f,) = await c.recv(1)
            assert f.request_id == 14 and content(f) == b"A:again"
            assert metric(p, "xproto_local_replies_total", listener="main", protocol="bolt",
                          reason="no_route") == 1
            assert metric(p, "xproto_downstream_requests_total", listener="main", protocol="bolt",
                          api="") == 4
            assert metric(p, "xproto_downstream_responses_total", listener="main", protocol="bolt",
                          status="200") == 3
            assert metric(p, "xproto_downstream_responses_total", listener="main", protocol="bolt",
                          status="404") + metric(p, "xproto_downstream_responses_total",
                                                 listener="main", protocol="bolt", status="500") == 1
            assert metric(p, "xproto_upstream_requests_total", cluster="a", protocol="bolt") == 2
            c.close()
        await a.close()
        await b.close()
    arun(body())


def test_multiplex_ids_rewritten_and_wrap_at_32_bits() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        start = 2**32 - 3
        async with proxy(cfg({"a": [up.addr]}, [{"cluster": "a"}]), id_start={"a": start}) as p:
            c1 = await Client("bolt").connect(p.listener_address("main"))
            c2 = await Client("bolt").connect(p.listener_address("main"))
            # both clients use the same ids: upstream ids must still be distinct
            for i in range(3):
                c1.send(bolt_req(100 + i, content=b"c1-%d" % i))
                c2.send(bolt_req(100 + i, content=b"c2-%d" % i))
            r1 = await c1.recv(3)
            r2 = await c2.recv(3)
            assert sorted((f.request_id, content(f)) for f in r1) == [
                (100 + i, b"c1-%d" % i) for i in range(3)]
            assert sorted((f.request_id, content(f)) for f in r2) == [
                (100 + i, b"c2-%d" % i) for i in range(3)]
            ids = [f.request_id for f in up.requests()]
            assert len(set(ids)) == 6
            assert ids == [2**32 - 3, 2**32 - 2, 2**32 - 1, 0, 1, 2]   # wrapped at uint32
            assert len(up.conns) == 1                                  # one shared connection
            c1.close()
            c2.close()
        await up.close()
    arun(body())


def test_upstream_ids_come_from_the_connection_generator_by_default() -> None:
    """Issue 4: every upstream request gets a fresh id from the upstream connection's own
    generator (never the client's), and the response gets the client's id back."""
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        async with proxy(cfg({"a": [up.addr]}, [{"cluster": "a"}])) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            for i in range(3):
                c.send(bolt_req(100 + i, content=b"r%d" % i))
            await until(lambda: len(up.requests()) == 3)
            assert [f.request_id for f in up.requests()] == [1, 2, 3]
            got = await c.recv(3, timeout=5)
            assert sorted((f.request_id, content(f)) for f in got) == [
                (100 + i, b"r%d" % i) for i in range(3)]
            c.close()
        await up.close()
    arun(body())


def test_ids_passed_through_when_free_else_fresh() -> None:
    """Id passthrough (an opt-in optimisation): a request keeps its own id upstream when no other request
    holds it on that connection (no patching either way); a clash takes a generator id."""
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        async with proxy(cfg({"a": [up.addr]}, [{"cluster": "a"}]), passthrough=("a",)) as p:
            c1 = await Client("bolt").connect(p.listener_address("main"))
            c2 = await Client("bolt").connect(p.listener_address("main"))
            up.delay = 0.3          # c1's requests are still in flight when c2's arrive
            for i in range(3):
                c1.send(bolt_req(100 + i, content=b"c1-%d" % i))
            await until(lambda: len(up.requests()) == 3)
            for i in range(3):
                c2.send(bolt_req(100 + i, content=b"c2-%d" % i))
            await until(lambda: len(up.requests()) == 6)
            ids = [f.request_id for f in up.requests()]
            assert ids[:3] == [100, 101, 102]           # passed through
            assert len(set(ids)) == 6                   # c2's clash: fresh ids
            r1 = await c1.recv(3, timeout=5)
            r2 = await c2.recv(3, timeout=5)
            assert sorted((f.request_id, content(f)) for f in r1) == [
                (100 + i, b"c1-%d" % i) for i in range(3)]
            assert sorted((f.request_id, content(f)) for f in r2) == [
                (100 + i, b"c2-%d" % i) for i in range(3)]
            c1.close()
            c2.close()
        await up.close()
    arun(body())


def test_timed_out_id_not_passed_through_again() -> None:
    """A request that timed out may still be answered late: its id is not handed to the
    next request that carries it, so the late answer cannot be taken for that one's."""
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        up.delay = 0.4
        routes = [{"cluster": "a", "timeout": "100ms"}]
        async with proxy(cfg({"a": [up.addr]}, routes), passthrough=("a",)) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            c.send(bolt_req(7, content=b"first"))
            (f,) = await c.recv(1)
            assert f.status == 7                       # timed out
            up.delay = 0.0
            c.send(bolt_req(7, content=b"second"))     # the same id, while the late one is due
            (f,) = await c.recv(1, timeout=5)
            assert f.request_id == 7 and content(f) == b"second" and f.status == 0
            ids = [g.request_id for g in up.requests()]
            assert ids[0] == 7 and ids[1] != 7
            await until(lambda: metric(p, "xproto_upstream_unknown_responses_total",
                                       cluster="a", protocol="bolt") == 1)
            c.close()
        await up.close()
    arun(body())


def test_unknown_response_id_dropped_and_counted() -> None:
    async def body() -> None:
        def respond(f: Frame) -> bytes:
            stray = BOLT.build(type=B.TYPE_RESPONSE, cmdcode=B.CMD_RESPONSE,
                               request_id=(f.request_id + 1000) & 0xFFFFFFFF, status=0, content=b"stray")
            return stray + bolt_echo()(f)
        up = await Upstream("bolt", respond).start()
        async with proxy(cfg({"a": [up.addr]}, [{"cluster": "a"}])) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            c.send(bolt_req(5, content=b"real"))
            (f,) = await c.recv(1)
            assert f.request_id == 5 and content(f) == b"real"
            assert metric(p, "xproto_upstream_unknown_responses_total", cluster="a", protocol="bolt") == 1
            c.send(bolt_req(6, content=b"next"))
            (f,) = await c.recv(1)
            assert f.request_id == 6 and content(f) == b"next"
            c.close()
        await up.close()
    arun(body())


def test_pending_answered_at_once_when_upstream_dies() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        up.mode = "close"
        up.close_after = 3
        routes = [{"cluster": "a", "timeout": "30s"}]
        async with proxy(cfg({"a": [up.addr]}, routes)) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for i in range(3):
                c.send(bolt_req(20 + i))
            got = await c.recv(3, timeout=5)
            assert loop.time() - t0 < 3      # not waiting for the 30 s timeout
            assert sorted(f.request_id for f in got) == [20, 21, 22]
            assert all(f.status == 16 for f in got)   # CONNECTION_CLOSED
            assert metric(p, "xproto_local_replies_total", listener="main", protocol="bolt",
                          reason="upstream_reset") == 3
            c.close()
        await up.close()
    arun(body())


def test_timeout_local_reply_and_late_response_dropped() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        up.delay = 0.5
        routes = [{"cluster": "a", "timeout": "100ms"}]
        async with proxy(cfg({"a": [up.addr]}, routes)) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            c.send(bolt_req(31))
            (f,) = await c.recv(1)
            dt = loop.time() - t0
            assert f.request_id == 31 and f.status == 7       # TIMEOUT
            assert 0.09 <= dt < 0.45
            # the late response arrives and is dropped (no second answer)
            await until(lambda: metric(p, "xproto_upstream_unknown_responses_total",
                                       cluster="a", protocol="bolt") == 1)
            with pytest.raises(TimeoutError):
                await c.recv(1, timeout=0.2)
            assert metric(p, "xproto_local_replies_total", listener="main", protocol="bolt",
                          reason="timeout") == 1
            c.close()
        await up.close()
    arun(body())


def test_oneway_forwarded_without_pending() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        routes = [{"cluster": "a", "timeout": "100ms"}]
        async with proxy(cfg({"a": [up.addr]}, routes)) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            c.send(bolt_req(41, oneway=True, content=b"fire"))
            c.send(bolt_req(42, content=b"then"))
            (f,) = await c.recv(1)
            assert f.request_id == 42 and content(f) == b"then"
            kinds = [(g.kind, content(g)) for g in up.requests()]
            assert kinds == [(Kind.ONEWAY, b"fire"), (Kind.REQUEST, b"then")]
            # nothing pending for the one-way: no timeout reply ever comes
            conn = next(iter(p.listeners["main"].connections))
            assert conn.inflight == 0
            assert p.clusters["a"].inflight == 0
            with pytest.raises(TimeoutError):
                await c.recv(1, timeout=0.3)
            assert metric(p, "xproto_local_replies_total", listener="main", protocol="bolt",
                          reason="timeout") == 0
            c.close()
        await up.close()
    arun(body())


def test_downstream_heartbeat_answered_locally() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        async with proxy(cfg({"a": [up.addr]}, [{"cluster": "a"}])) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            c.send(bolt_hb(77))
            (f,) = await c.recv(1)
            assert f.heartbeat and f.request_id == 77 and f.kind is Kind.RESPONSE and f.status == 0
            assert up.received == [] and up.accepted == 0
            assert metric(p, "xproto_heartbeats_total", protocol="bolt", direction="downstream_reply") == 1
            c.close()
        await up.close()
    arun(body())


def test_upstream_heartbeats_on_idle_and_drop_after_failures() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        ka = {"a": {"keepalive": {"interval": "100ms", "timeout": "50ms", "failures": 2}}}
        async with proxy(cfg({"a": [up.addr]}, [{"cluster": "a"}], cluster_extra=ka)) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            c.send(bolt_req(1))
            await c.recv(1)
            # idle: the proxy sends heartbeats, the upstream answers them
            await until(lambda: metric(p, "xproto_heartbeats_total", protocol="bolt",
                                       direction="upstream_ok") >= 2)
            assert any(f.heartbeat for f in up.received)
            assert up.accepted == 1
            # the upstream stops answering: after 2 misses the connection is dropped and reopened
            up.answer_heartbeats = False
            await until(lambda: up.lost >= 1 and up.accepted >= 2, timeout=5)
            assert metric(p, "xproto_heartbeats_total", protocol="bolt", direction="upstream_missed") >= 2
            # requests still work on the new connection
            c.send(bolt_req(2, content=b"after"))
            (f,) = await c.recv(1)
            assert f.request_id == 2 and content(f) == b"after"
            c.close()
        await up.close()
    arun(body())


def test_overflow_per_connection() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        up.mode = "silent"
        routes = [{"cluster": "a", "timeout": "300ms"}]
        c_ = cfg({"a": [up.addr]}, routes, limits={"max_pending_per_connection": 2})
        async with proxy(c_) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            for i in range(3):
                c.send(bolt_req(50 + i))
            (f,) = await c.recv(1)
            assert f.request_id == 52 and f.status == 4        # SERVER_THREADPOOL_BUSY
            later = await c.recv(2)
            assert sorted(g.request_id for g in later) == [50, 51] and all(g.status == 7 for g in later)
            assert metric(p, "xproto_local_replies_total", listener="main", protocol="bolt",
                          reason="overflow") == 1
            c.close()
        await up.close()
    arun(body())


def test_cluster_overflow() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        up.mode = "silent"
        routes = [{"cluster": "a", "timeout": "300ms"}]
        async with proxy(cfg({"a": [up.addr]}, routes, cluster_extra={"a": {"max_pending": 1}})) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            c.send(bolt_req(1))
            c.send(bolt_req(2))
            (f,) = await c.recv(1)
            assert f.request_id == 2 and f.status == 4
            (f,) = await c.recv(1)
            assert f.request_id == 1 and f.status == 7
            c.close()
        await up.close()
    arun(body())


async def _dead_port() -> int:
    srv = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    return port


def test_connect_failure_retried_on_another_endpoint() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        dead = await _dead_port()
        clusters = {"a": [f"127.0.0.1:{dead}", up.addr]}
        async with proxy(cfg(clusters, [{"cluster": "a"}])) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            for i in range(4):
                c.send(bolt_req(60 + i, content=b"%d" % i))
            got = await c.recv(4)
            assert sorted((f.request_id, f.status) for f in got) == [(60 + i, 0) for i in range(4)]
            assert len(up.requests()) == 4
            assert metric(p, "xproto_upstream_connect_failures_total", cluster="a", protocol="bolt") >= 1
            snap = p.clusters_snapshot()["clusters"][0]
            assert [e["healthy"] for e in snap["endpoints"]] == [False, True]
            c.close()
        await up.close()
    arun(body())


def test_no_healthy_upstream() -> None:
    async def body() -> None:
        dead = await _dead_port()
        async with proxy(cfg({"a": [f"127.0.0.1:{dead}"]}, [{"cluster": "a"}])) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            c.send(bolt_req(70))
            (f,) = await c.recv(1)
            assert f.request_id == 70 and f.status != 0
            c.send(bolt_req(71))     # endpoint in back-off: answered at once
            (f,) = await c.recv(1)
            assert f.request_id == 71 and f.status != 0
            assert metric(p, "xproto_local_replies_total", listener="main", protocol="bolt",
                          reason="no_healthy_upstream") == 2
            c.close()
    arun(body())


def test_bad_bytes_close_only_that_connection() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        async with proxy(cfg({"a": [up.addr]}, [{"cluster": "a"}])) as p:
            good = await Client("bolt").connect(p.listener_address("main"))
            bad = await Client("bolt").connect(p.listener_address("main"))
            good.send(bolt_req(1))
            await good.recv(1)
            bad.send(bolt_req(1))
            await bad.recv(1)
            bad.send(b"\x01\x01\x00\x07" + b"\xff" * 40)   # cmdcode 7: not bolt
            assert await bad.closed()
            good.send(bolt_req(2, content=b"still"))
            (f,) = await good.recv(1)
            assert content(f) == b"still"
            assert metric(p, "xproto_decode_errors_total", listener="main", protocol="bolt") == 1
            good.close()
        await up.close()
    arun(body())


def test_back_pressure_pauses_reading() -> None:
    async def body() -> None:
        big = b"x" * 200_000
        up = await Upstream("bolt", lambda f: BOLT.build(
            type=B.TYPE_RESPONSE, cmdcode=B.CMD_RESPONSE, request_id=f.request_id, status=0,
            content=big)).start()
        c_ = cfg({"a": [up.addr]}, [{"cluster": "a"}],
                 limits={"high_water": "64KiB", "low_water": "16KiB"})
        async with proxy(c_) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            # do not read: the proxy's send buffer to us fills up and it stops reading from us
            n = 60
            for i in range(n):
                c.send(bolt_req(i))
            conn_set = p.listeners["main"].connections
            await until(lambda: bool(conn_set) and not next(iter(conn_set)).reading, timeout=10)
            # reading resumes as we drain, and every request is answered
            got = await c.recv(n, timeout=20)
            assert sorted(f.request_id for f in got) == list(range(n))
            assert all(len(content(f)) == len(big) for f in got)
            assert next(iter(conn_set)).reading
            c.close()
        await up.close()
    arun(body(), timeout=40)


def test_max_connections_per_listener() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        async with proxy(cfg({"a": [up.addr]}, [{"cluster": "a"}], limits={"max_connections": 1})) as p:
            c1 = await Client("bolt").connect(p.listener_address("main"))
            c1.send(bolt_req(1))
            await c1.recv(1)
            c2 = await Client("bolt").connect(p.listener_address("main"))
            assert await c2.closed()
            c1.send(bolt_req(2))
            (f,) = await c1.recv(1)
            assert f.request_id == 2
            assert metric(p, "xproto_downstream_connections", listener="main", protocol="bolt") == 1
            assert metric(p, "xproto_upstream_connections", cluster="a", protocol="bolt") == 1
            c1.close()
            await until(lambda: metric(p, "xproto_downstream_connections", listener="main",
                                       protocol="bolt") == 0)
        await up.close()
    arun(body())


def test_incomplete_frame_closed_after_frame_timeout() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        async with proxy(cfg({"a": [up.addr]}, [{"cluster": "a"}], limits={"frame_timeout": "200ms"})) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            c.send(bolt_req(1)[:15])          # a started frame that never completes
            assert await c.closed(timeout=3)
            assert 0.15 < loop.time() - t0 < 2
            c2 = await Client("bolt").connect(p.listener_address("main"))
            c2.send(bolt_req(2))
            (f,) = await c2.recv(1)
            assert f.request_id == 2
            c2.close()
        await up.close()
    arun(body())


def test_idle_connection_closed_after_idle_timeout() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        async with proxy(cfg({"a": [up.addr]}, [{"cluster": "a"}], limits={"idle_timeout": "200ms"})) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            c.send(bolt_req(1))
            await c.recv(1)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await c.closed(timeout=3)
            assert 0.1 < loop.time() - t0 < 2
        await up.close()
    arun(body())


def test_connect_timeout_then_retry_elsewhere() -> None:
    import socket

    async def body() -> None:
        # a listener whose accept queue is full: SYNs are dropped, connects hang
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        fillers = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(hole.getsockname())
            except BlockingIOError:
                pass
            fillers.append(s)
        up = await Upstream("bolt", bolt_echo()).start()
        try:
            clusters = {"a": [f"127.0.0.1:{hole.getsockname()[1]}", up.addr]}
            extra = {"a": {"connect_timeout": "200ms"}}
            async with proxy(cfg(clusters, [{"cluster": "a"}], cluster_extra=extra)) as p:
                c = await Client("bolt").connect(p.listener_address("main"))
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                c.send(bolt_req(1))
                (f,) = await c.recv(1)
                dt = loop.time() - t0
                assert f.request_id == 1 and f.status == 0
                assert 0.18 < dt < 2           # waited for the connect timeout, then retried
                assert metric(p, "xproto_upstream_connect_failures_total", cluster="a", protocol="bolt") == 1
                c.close()
        finally:
            for s in fillers:
                s.close()
            hole.close()
            await up.close()
    arun(body())
