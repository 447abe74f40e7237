"""The yardstick: a raw uvloop byte relay (one upstream connection per downstream one).

It does the kernel's share of a proxy's work and nothing else: every read on one side is
written to the other. xproto is measured against it in the same run.

    python bench/relay.py LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT
Prints "ready PORT" once listening.
"""
from __future__ import annotations

import asyncio
import sys


class Upstream(asyncio.Protocol):
    def __init__(self, down: "Downstream") -> None:
        self.down = down
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.down.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.transport.close()


class Downstream(asyncio.Protocol):
    target: tuple[str, int] = ("127.0.0.1", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.up: Upstream | None = None
        self.pending: list[bytes] = []
        transport.pause_reading()  # type: ignore[attr-defined]
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, up = await loop.create_connection(lambda: Upstream(self), *self.target)
        except OSError:
            self.transport.close()
            return
        self.up = up
        if self.pending:
            up.transport.write(b"".join(self.pending))  # type: ignore[union-attr]
            self.pending.clear()
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        up = self.up
        if up is None:  # uvloop may deliver bytes already read before pause_reading took effect
            self.pending.append(data)
            return
        up.transport.write(data)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.close()


async def main(port: int, target: str) -> None:
    host, _, p = target.rpartition(":")
    Downstream.target = (host, int(p))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Downstream, "127.0.0.1", port, backlog=4096)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
