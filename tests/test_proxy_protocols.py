"""Each built-in protocol through the proxy (real sockets), and several on one port."""
from __future__ import annotations

import asyncio

import pytest
from test_proxy_core import bolt_echo, bolt_req, content
from test_proxy_helpers import Client, Upstream, arun, codec, listener, metric, proxy, until

from xproto.codecs import dubbo as D
from xproto.codecs import thrift as T
from xproto.frame import Frame, Kind
from xproto.hessian2 import Writer, loads

pytestmark = pytest.mark.timeout(60)

DUBBO = codec("dubbo")
HTTP = codec("http")
THRIFT = codec("thrift")


# --- dubbo ---------------------------------------------------------------------------------
def dubbo_req(rid: int, service: str, method: str = "sayHello", arg: str = "world",
              twoway: bool = True) -> bytes:
    w = Writer()
    for v in ("2.0.2", service, "1.0", method, "Ljava/lang/String;", arg,
              {"path": service, "interface": service, "group": "g1"}):
        w.write(v)
    body = w.getvalue()
    flag = D.FLAG_REQUEST | (D.FLAG_TWOWAY if twoway else 0) | D.HESSIAN2
    return D.HEADER.pack(D.MAGIC, flag, 0, rid, len(body)) + body


def dubbo_hb(rid: int) -> bytes:
    return DUBBO.encode(DUBBO.heartbeat_request(rid))


def dubbo_echo(f: Frame) -> bytes:
    w = Writer()
    w.write(1)
    w.write("hello " + f.headers["service"] + "." + f.headers["method"])
    body = w.getvalue()
    return D.HEADER.pack(D.MAGIC, D.HESSIAN2, 20, f.request_id, len(body)) + body


def dubbo_value(f: Frame) -> object:
    body = bytes(f.raw[16:])
    w = loads(body)
    assert w == 1
    from xproto.hessian2 import Reader
    r = Reader(body)
    r.read()
    return r.read()


def test_dubbo_routing_local_replies_oneway_heartbeat() -> None:
    async def body() -> None:
        up = await Upstream("dubbo", dubbo_echo).start()
        routes = [{"match": {"headers": {"service": "com.example.Greeter", "method": {"prefix": "say"}}},
                   "cluster": "greeter", "timeout": "200ms"}]
        cfg = {"listeners": [listener(["dubbo"], routes)],
               "clusters": [{"name": "greeter", "endpoints": [up.addr]}]}
        async with proxy(cfg) as p:
            c = await Client("dubbo").connect(p.listener_address("main"))
            big = 2**62 + 5          # dubbo ids are int64: the downstream id is restored exactly
            c.send(dubbo_req(big, "com.example.Greeter"))
            (f,) = await c.recv(1)
            assert f.request_id == big and f.status == 20
            assert dubbo_value(f) == "hello com.example.Greeter.sayHello"
            # no route -> 60 SERVICE_NOT_FOUND with the request's id, at once
            c.send(dubbo_req(7, "com.example.Other"))
            (f,) = await c.recv(1)
            assert f.request_id == 7 and f.status == 60
            # heartbeat answered by the proxy (flag 0x22, status 20, same id)
            c.send(dubbo_hb(8))
            (f,) = await c.recv(1)
            assert f.heartbeat and f.request_id == 8 and f.status == 20 and f.raw[2] == 0x22
            # one-way (two-way bit 0) forwarded, never answered, nothing pending
            c.send(dubbo_req(9, "com.example.Greeter", arg="oneway", twoway=False))
            c.send(dubbo_req(10, "com.example.Greeter"))
            (f,) = await c.recv(1)
            assert f.request_id == 10
            assert [g.kind for g in up.requests()] == [Kind.REQUEST, Kind.ONEWAY, Kind.REQUEST]
            with pytest.raises(TimeoutError):
                await c.recv(1, timeout=0.4)     # > route timeout: no reply for the one-way
            # timeout -> 31 SERVER_TIMEOUT
            up.mode = "silent"
            c.send(dubbo_req(11, "com.example.Greeter"))
            (f,) = await c.recv(1)
            assert f.request_id == 11 and f.status == 31
            assert metric(p, "xproto_downstream_responses_total", listener="main", protocol="dubbo",
                          status="404") == 1
            assert metric(p, "xproto_downstream_responses_total", listener="main", protocol="dubbo",
                          status="504") == 1
            c.close()
        await up.close()
    arun(body())


def test_dubbo_upstream_heartbeat_sent() -> None:
    async def body() -> None:
        up = await Upstream("dubbo", dubbo_echo).start()
        cfg = {"listeners": [listener(["dubbo"], [{"cluster": "g"}])],
               "clusters": [{"name": "g", "endpoints": [up.addr],
                             "keepalive": {"interval": "100ms", "timeout": "100ms", "failures": 2}}]}
        async with proxy(cfg) as p:
            c = await Client("dubbo").connect(p.listener_address("main"))
            c.send(dubbo_req(1, "com.example.Greeter"))
            await c.recv(1)
            await until(lambda: metric(p, "xproto_heartbeats_total", protocol="dubbo",
                                       direction="upstream_ok") >= 1)
            hb = [f for f in up.received if f.heartbeat]
            assert hb and hb[0].kind is Kind.REQUEST and hb[0].raw[2] & 0xE0 == 0xE0
            c.close()
        await up.close()
    arun(body())


# --- http ----------------------------------------------------------------------------------
def http_echo(f: Frame) -> bytes:
    h = f.headers
    body = f"{h[':method']} {h[':path']} via {h.get('x-tag', '-')}".encode()
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % len(body)) + body


def http_get(path: str, host: str = "example", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: {host}\r\n{extra}\r\n".encode()


def http_body(f: Frame) -> bytes:
    return bytes(f.body)


def test_http_routing_pipelining_and_local_replies() -> None:
    async def body() -> None:
        a = await Upstream("http", http_echo).start()
        slow = await Upstream("http", http_echo).start()
        slow.delay = 0.2
        routes = [{"match": {"headers": {":path": {"prefix": "/slow"}}}, "cluster": "slow"},
                  {"match": {"headers": {":path": {"prefix": "/api"}}}, "cluster": "a", "timeout": "1s"}]
        cfg = {"listeners": [listener(["http"], routes)],
               "clusters": [{"name": "a", "endpoints": [a.addr]},
                            {"name": "slow", "endpoints": [slow.addr]}]}
        async with proxy(cfg) as p:
            c = await Client("http").connect(p.listener_address("main"))
            # pipelined: a slow one first, then a fast one, then one without a route:
            # the answers come back in request order
            for path in ("/slow/1", "/api/2", "/nowhere"):
                req = http_get(path)
                c.send(req, HTTP.new_decoder().decode(req))
            got = await c.recv(3)
            assert [f.status for f in got] == [200, 200, 404]
            assert http_body(got[0]) == b"GET /slow/1 via -"
            assert http_body(got[1]) == b"GET /api/2 via -"
            assert got[2].headers.get("x-xproto-local-reply") == "no_route"
            # keep-alive: the same connection goes on
            req = http_get("/api/again")
            c.send(req, HTTP.new_decoder().decode(req))
            (f,) = await c.recv(1)
            assert http_body(f) == b"GET /api/again via -"
            assert metric(p, "xproto_downstream_responses_total", listener="main", protocol="http",
                          status="404") == 1
            c.close()
        await a.close()
        await slow.close()
    arun(body())


def test_http_real_client_through_proxy() -> None:
    aiohttp = pytest.importorskip("aiohttp")

    async def body() -> None:
        a = await Upstream("http", http_echo).start()
        cfg = {"listeners": [listener(["http"], [{"cluster": "a"}])],
               "clusters": [{"name": "a", "endpoints": [a.addr]}]}
        async with proxy(cfg) as p:
            h, port = p.listener_address("main")
            async with aiohttp.ClientSession() as s:
                results = await asyncio.gather(*[
                    s.get(f"http://{h}:{port}/api/{i}", headers={"x-tag": str(i)}) for i in range(20)])
                texts = [await r.text() for r in results]
            assert texts == [f"GET /api/{i} via {i}" for i in range(20)]
            # ping-pong pool: requests were spread over several upstream connections
            assert a.accepted >= 1
        await a.close()
    arun(body())


def test_http_upstream_closing_connections_and_dead_upstream() -> None:
    async def body() -> None:
        def close_each(f: Frame) -> bytes:
            b = b"bye"
            return b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\n" + b
        a = await Upstream("http", close_each).start()
        cfg = {"listeners": [listener(["http"], [{"cluster": "a"}])],
               "clusters": [{"name": "a", "endpoints": [a.addr]}]}
        async with proxy(cfg) as p:
            for i in range(3):
                c = await Client("http").connect(p.listener_address("main"))
                req = http_get(f"/x{i}")
                c.send(req, HTTP.new_decoder().decode(req))
                (f,) = await c.recv(1)
                assert f.status == 200 and http_body(f) == b"bye"
                assert await c.closed()   # the response said close: the proxy closes too
            assert a.accepted == 3
            a.mode = "close"
            a.close_after = 0
            c = await Client("http").connect(p.listener_address("main"))
            req = http_get("/dies")
            c.send(req, HTTP.new_decoder().decode(req))
            (f,) = await c.recv(1)
            assert f.status == 502
            c.close()
        await a.close()
    arun(body())


# --- thrift --------------------------------------------------------------------------------
def thrift_call(name: str, seqid: int, framed: bool = True, oneway: bool = False) -> bytes:
    mtype = T.MessageType.ONEWAY if oneway else T.MessageType.CALL
    payload = T.build_message(T.Proto.BINARY, name, mtype, seqid, b"\x00")
    return T.wrap_transport(T.Transport.FRAMED if framed else T.Transport.UNFRAMED, T.Proto.BINARY, payload)


def thrift_reply_for(f: Frame) -> bytes:
    framed = f.meta.transport is T.Transport.FRAMED
    payload = T.build_message(T.Proto.BINARY, f.meta.name, T.MessageType.REPLY, f.request_id,
                              b"\x0b\x00\x00" + (4).to_bytes(4, "big") + b"pong" + b"\x00")
    return T.wrap_transport(T.Transport.FRAMED if framed else T.Transport.UNFRAMED, T.Proto.BINARY, payload)


def test_thrift_framed_seqid_rewrite_wraps_at_31_bits_and_no_route() -> None:
    async def body() -> None:
        up = await Upstream("thrift", thrift_reply_for).start()
        routes = [{"match": {"headers": {"service": "Calc"}}, "cluster": "t"}]
        cfg = {"listeners": [listener(["thrift"], routes)],
               "clusters": [{"name": "t", "endpoints": [up.addr]}]}
        async with proxy(cfg, id_start={"t": 2**31 - 2}) as p:
            c = await Client("thrift").connect(p.listener_address("main"))
            for i in range(4):
                c.send(thrift_call("Calc:ping", 1 + i))
            got = await c.recv(4)
            assert sorted(f.request_id for f in got) == [1, 2, 3, 4]
            assert all(f.status == 0 and f.kind is Kind.RESPONSE for f in got)
            assert [f.request_id for f in up.requests()] == [2**31 - 2, 2**31 - 1, 0, 1]
            c.send(thrift_call("Other:ping", 9))
            (f,) = await c.recv(1)
            assert f.request_id == 9 and f.status == 1      # TApplicationException UNKNOWN_METHOD
            c.close()
        await up.close()
    arun(body())


def test_thrift_unframed_ping_pong() -> None:
    async def body() -> None:
        up = await Upstream("thrift", thrift_reply_for).start()
        cfg = {"listeners": [listener(["thrift"], [{"cluster": "t"}])],
               "clusters": [{"name": "t", "endpoints": [up.addr]}]}
        async with proxy(cfg) as p:
            c = await Client("thrift").connect(p.listener_address("main"))
            for i in range(3):
                c.send(thrift_call("ping", 40 + i, framed=False))
                (f,) = await c.recv(1)
                assert f.request_id == 40 + i and f.status == 0
            # unframed is pooled ping-pong: the seqid passes unchanged
            assert [f.request_id for f in up.requests()] == [40, 41, 42]
            c.close()
        await up.close()
    arun(body())


# --- several protocols on one port -----------------------------------------------------------
def test_detection_several_protocols_one_port() -> None:
    async def body() -> None:
        d = await Upstream("dubbo", dubbo_echo).start()
        b = await Upstream("bolt", bolt_echo(b"B:")).start()
        h = await Upstream("http", http_echo).start()
        routes = [{"match": {"protocol": "dubbo"}, "cluster": "d"},
                  {"match": {"protocol": "bolt"}, "cluster": "b"},
                  {"match": {"protocol": "http"}, "cluster": "h"}]
        cfg = {"listeners": [listener(["dubbo", "bolt", "thrift", "http"], routes)],
               "clusters": [{"name": "d", "endpoints": [d.addr]}, {"name": "b", "endpoints": [b.addr]},
                            {"name": "h", "endpoints": [h.addr]}]}
        async with proxy(cfg) as p:
            addr = p.listener_address("main")
            cd = await Client("dubbo").connect(addr)
            cb = await Client("bolt").connect(addr)
            ch = await Client("http").connect(addr)
            ct = await Client("thrift").connect(addr)
            # send the first bytes in tiny pieces: detection waits for enough bytes
            raw = dubbo_req(1, "com.example.Greeter")
            for i in range(0, len(raw), 3):
                cd.send(raw[i:i + 3])
                await asyncio.sleep(0)
            cb.send(bolt_req(2, content=b"bolt"))
            req = http_get("/h")
            ch.send(req, HTTP.new_decoder().decode(req))
            ct.send(thrift_call("Calc:ping", 3))
            (fd,) = await cd.recv(1)
            (fb,) = await cb.recv(1)
            (fh,) = await ch.recv(1)
            (ft,) = await ct.recv(1)
            assert fd.status == 20 and fd.request_id == 1
            assert content(fb) == b"B:bolt"
            assert http_body(fh) == b"GET /h via -"
            assert ft.request_id == 3 and ft.status == 1     # thrift detected, no route for it
            # bytes no candidate accepts: closed, counted
            bad = await Client("http").connect(addr)
            bad.send(b"\x00\x00\x00\x00garbage-garbage!")
            assert await bad.closed()
            assert metric(p, "xproto_decode_errors_total", listener="main", protocol="unknown") == 1
            for c in (cd, cb, ch, ct):
                c.close()
        for u in (d, b, h):
            await u.close()
    arun(body())


def test_dubbo_provider_heartbeat_answered_by_proxy() -> None:
    async def body() -> None:
        up = await Upstream("dubbo", dubbo_echo).start()
        cfg = {"listeners": [listener(["dubbo"], [{"cluster": "g"}])],
               "clusters": [{"name": "g", "endpoints": [up.addr]}]}
        async with proxy(cfg) as p:
            c = await Client("dubbo").connect(p.listener_address("main"))
            c.send(dubbo_req(1, "com.example.Greeter"))
            await c.recv(1)
            # the provider heartbeats the proxy's idle connection, with an id of its own
            # that equals one the proxy uses: it must be answered, not taken for a response
            (conn,) = up.conns
            conn.send(DUBBO.encode(DUBBO.heartbeat_request(1)))
            await until(lambda: any(f.heartbeat and f.kind is Kind.RESPONSE for f in up.received))
            (hb,) = [f for f in up.received if f.heartbeat]
            assert hb.request_id == 1 and hb.status == 20
            assert metric(p, "xproto_heartbeats_total", protocol="dubbo", direction="upstream_reply") == 1
            assert metric(p, "xproto_upstream_unknown_responses_total", cluster="g", protocol="dubbo") == 0
            c.send(dubbo_req(2, "com.example.Greeter"))
            (f,) = await c.recv(1)
            assert f.request_id == 2 and f.status == 20
            c.close()
        await up.close()
    arun(body())


def test_http_bad_request_gets_400_then_close() -> None:
    async def body() -> None:
        a = await Upstream("http", http_echo).start()
        cfg = {"listeners": [listener(["http"], [{"cluster": "a"}])],
               "clusters": [{"name": "a", "endpoints": [a.addr]}]}
        async with proxy(cfg) as p:
            c = await Client("http").connect(p.listener_address("main"))
            c.send(b"GET / HTTP/1.1\r\nhost: x\r\nbad header line\r\n\r\n", HTTP.new_decoder().decode(http_get("/")))
            (f,) = await c.recv(1)
            assert f.status == 400
            assert await c.closed()
            assert a.received == []
            assert metric(p, "xproto_decode_errors_total", listener="main", protocol="http") == 1
        await a.close()
    arun(body())


def test_http_ping_pong_pool_respects_max_connections() -> None:
    async def body() -> None:
        a = await Upstream("http", http_echo).start()
        a.delay = 0.05
        cfg = {"listeners": [listener(["http"], [{"cluster": "a"}])],
               "clusters": [{"name": "a", "endpoints": [a.addr], "max_connections": 2}]}
        async with proxy(cfg) as p:
            clients = [await Client("http").connect(p.listener_address("main")) for _ in range(6)]
            for i, c in enumerate(clients):
                req = http_get(f"/{i}")
                c.send(req, HTTP.new_decoder().decode(req))
            for i, c in enumerate(clients):
                (f,) = await c.recv(1)
                assert http_body(f) == f"GET /{i} via -".encode()
                c.close()
            assert a.accepted == 2      # the others waited for a free connection
        await a.close()
    arun(body())


def test_multiplex_pool_opens_up_to_max_connections() -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        up.delay = 0.05
        cfg = {"listeners": [listener(["bolt"], [{"cluster": "a"}])],
               "clusters": [{"name": "a", "endpoints": [up.addr], "max_connections": 3}]}
        async with proxy(cfg) as p:
            c = await Client("bolt").connect(p.listener_address("main"))
            for i in range(12):
                c.send(bolt_req(i))
            got = await c.recv(12)
            assert sorted(f.request_id for f in got) == list(range(12))
            assert up.accepted == 3
            c.close()
        await up.close()
    arun(body())
