"""anthunder 0.8.1 (sofa-bolt-python): SOFA Bolt v1 client and server, protobuf codec byte.

anthunder treats the content as opaque bytes (the caller serialises protobuf); the service
here echoes the bytes back with a prefix, so the test sees exactly what crossed the wire.
Both ends run in subprocesses (the listener installs uvloop as the global loop policy and
both keep module-level state: SERVICE_MAP, the socket pool, a mesh-client thread).
"""

from __future__ import annotations

import base64
import importlib.util
from typing import Any

from ._proc import PeerProcess, announce, run_python, start_python, wait_for_sigterm

INTERFACE = "com.example.EchoPb:1.0"
PREFIX = b"echo:"


def missing() -> str | None:
    try:
        if importlib.util.find_spec("anthunder") is None:
            return "anthunder is not installed (pip install -r peers/requirements.txt)"
    except ModuleNotFoundError:
        return "anthunder is not installed"
    return None


def _quiet() -> None:
    import logging

    # anthunder tries to reach a MOSN sidecar on 127.0.0.1:12220 and logs its failure: noise.
    logging.getLogger().setLevel(logging.CRITICAL)


def serve_anthunder() -> None:
    import asyncio
    import threading

    _quiet()
    from anthunder.listener import aio_listener

    class EchoService:
        def __init__(self, ctx: object) -> None:
            self.ctx = ctx

        def echo(self, body: bytes) -> bytes:
            return PREFIX + body

    listener = aio_listener.AioListener(("127.0.0.1", 0), "xproto-peer")
    listener.handler.register_interface(INTERFACE, EchoService)
    started = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(listener._loop)
        coro = asyncio.start_server(listener._handler_connection, *listener.address)
        listener._server = listener._loop.run_until_complete(coro)
        box["port"] = listener._server.sockets[0].getsockname()[1]
        started.set()
        listener._loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    if not started.wait(10):
        raise RuntimeError("anthunder listener did not start")
    announce(box["port"], peer="anthunder")
    wait_for_sigterm()
    listener.shutdown()


def start_server() -> PeerProcess:
    return start_python("anthunder-server", "bolt_py", "serve_anthunder")


def call_anthunder(
    address: str, payload_b64: str, method: str = "echo", count: int = 1, timeout_ms: int = 3000
) -> dict[str, Any]:
    _quiet()
    from anthunder import SERVICE_MAP, Client
    from mytracer import SpanContext

    host, port = address.rsplit(":", 1)
    SERVICE_MAP[INTERFACE] = (host, int(port))
    client = Client("xproto-peer-client")
    payload = base64.b64decode(payload_b64)
    results = [
        client.invoke_sync(INTERFACE, method, payload, spanctx=SpanContext(), timeout_ms=timeout_ms)
        for _ in range(count)
    ]
    return {
        "ok": True,
        "result_b64": base64.b64encode(results[-1]).decode(),
        "results_b64": [base64.b64encode(r).decode() for r in results],
    }


def anthunder_call(
    address: str,
    payload: bytes = b"\x0a\x05world",
    *,
    method: str = "echo",
    count: int = 1,
    timeout_ms: int = 3000,
) -> dict[str, Any]:
    """Call ``echo`` with ``payload`` (default: protobuf bytes of {1: "world"}); adds ``result`` bytes."""
    out = run_python(
        "anthunder-client",
        "bolt_py",
        "call_anthunder",
        {
            "address": address,
            "payload_b64": base64.b64encode(payload).decode(),
            "method": method,
            "count": count,
            "timeout_ms": timeout_ms,
        },
        timeout=timeout_ms / 1000 * count + 15,
    )
    if out.get("ok"):
        out["result"] = base64.b64decode(out["result_b64"])
        out["results"] = [base64.b64decode(r) for r in out["results_b64"]]
    return out
