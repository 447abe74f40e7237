"""Helpers for the proxy tests (no tests here): small upstream servers written with the
xproto codecs themselves, clients, and a proxy started from a config dict."""
from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from xproto.codec import Codec, Role
from xproto.config import parse_config
from xproto.frame import Frame, Kind
from xproto.proxy import ProxyServer
from xproto.registry import default_registry

REG = default_registry()


def codec(name: str) -> Codec:
    return REG.get(name)


def _loop_factory() -> Any:
    """uvloop (what ``xproto proxy`` runs on) unless XPROTO_TEST_LOOP=asyncio."""
    if os.environ.get("XPROTO_TEST_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
            return uvloop.new_event_loop
        except ImportError:  # pragma: no cover
            pass
    return asyncio.new_event_loop


def arun(coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    """Run one async test body on a fresh loop, bounded."""
    async def main() -> Any:
        return await asyncio.wait_for(coro, timeout)
    with asyncio.Runner(loop_factory=_loop_factory()) as r:
        return r.run(main())


Handler = Callable[["Upstream", "UpConn", Frame], Awaitable[None] | None]


class UpConn(asyncio.Protocol):
    def __init__(self, server: Upstream) -> None:
        self.server = server
        self.decoder = server.codec.new_decoder(Role.REQUESTS)
        self.buf = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.conns.append(self)
        self.server.accepted += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        frames, used = self.decoder.decode_all(self.buf)
        del self.buf[:used]
        srv = self.server
        for f in frames:
            if f.heartbeat:
                # keep a few (tests look at them), count all: a flood must not grow memory
                srv.heartbeats += 1
                if srv.heartbeats <= 64:
                    srv.received.append(f)
            elif srv.record:
                srv.received.append(f)
            srv.on_frame(self, f)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self in self.server.conns:
            self.server.conns.remove(self)
        self.server.lost += 1

    def send(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)


class Upstream:
    """A test server for one protocol. ``mode``: ``echo`` (answer every request),
    ``silent`` (never answer), ``close`` (close the connection on the Nth request).
    Heartbeats are answered unless ``answer_heartbeats`` is False."""

    def __init__(self, proto: str, responder: Callable[[Frame], bytes | None] | None = None) -> None:
        self.codec = codec(proto)
        self.responder = responder
        self.mode = "echo"
        self.close_after = 0
        self.answer_heartbeats = True
        self.received: list[Frame] = []
        #: keep every request frame in ``received`` (memory-measuring tests turn it off)
        self.record = True
        self.heartbeats = 0
        self.conns: list[UpConn] = []
        self.accepted = 0
        self.lost = 0
        self.server: Any = None
        self.delay = 0.0
        self.got = asyncio.Event()

    async def start(self) -> Upstream:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: UpConn(self), "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def requests(self) -> list[Frame]:
        return [f for f in self.received if not f.heartbeat]

    def on_frame(self, conn: UpConn, f: Frame) -> None:
        self.got.set()
        if f.heartbeat:
            if self.answer_heartbeats and f.kind is Kind.REQUEST:
                r = self.codec.heartbeat_reply(f)
                if r is not None:
                    conn.send(self.codec.encode(r))
            return
        if self.mode == "close":   # answer nothing; close on the close_after-th request
            if len(self.requests()) >= self.close_after:
                conn.transport.close()
            return
        if self.mode == "silent" or f.kind is not Kind.REQUEST:
            return
        data = self.responder(f) if self.responder is not None else None
        if data is None:
            return
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, conn.send, data)
        else:
            conn.send(data)

    async def close(self) -> None:
        self.server.close()
        for c in list(self.conns):
            c.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 1)


class Client:
    """A raw client: write bytes, read decoded response frames."""

    def __init__(self, proto: str) -> None:
        self.codec = codec(proto)
        self.decoder = self.codec.new_decoder(Role.RESPONSES)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.buf = bytearray()
        self.frames: list[Frame] = []

    async def connect(self, addr: tuple[str, int]) -> Client:
        self.reader, self.writer = await asyncio.open_connection(*addr)
        return self

    def send(self, data: bytes, frame: Frame | None = None) -> None:
        assert self.writer is not None
        if frame is not None:
            self.decoder.request_sent(frame)
        self.writer.write(data)

    async def recv(self, n: int = 1, timeout: float = 5.0) -> list[Frame]:
        """The next ``n`` response frames (raises TimeoutError if they do not come)."""
        assert self.reader is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.frames) < n:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"got {len(self.frames)} of {n} frames")
            data = await asyncio.wait_for(self.reader.read(65536), left)
            if not data:
                raise ConnectionError(f"closed after {len(self.frames)} of {n} frames")
            self.buf += data
            frames, used = self.decoder.decode_all(self.buf)
            del self.buf[:used]
            self.frames.extend(frames)
        out, self.frames = self.frames[:n], self.frames[n:]
        return out

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the proxy closes this connection (EOF) within ``timeout``."""
        assert self.reader is not None
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
        except (ConnectionError, OSError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextlib.asynccontextmanager
async def proxy(cfg: dict[str, Any], id_start: dict[str, int] | None = None,
                passthrough: tuple[str, ...] = ()) -> AsyncIterator[ProxyServer]:
    config = parse_config(cfg)
    p = ProxyServer(config)
    if id_start:
        p.id_start.update(id_start)
    p.id_passthrough.update(passthrough)
    await p.start()
    try:
        yield p
    finally:
        await p.stop(0)


def listener(protocols: list[str], routes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    d = {"name": "main", "address": "127.0.0.1:0", "protocols": protocols, "routes": routes}
    d.update(extra)
    return d


def metric(p: ProxyServer, name: str, **labels: str) -> float:
    v = p.metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def until(cond: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> None:
    """Wait (bounded) until ``cond()`` holds; raises TimeoutError otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(step)
