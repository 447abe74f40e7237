"""The admin HTTP endpoint, served from its own thread so a scrape never waits for the
event loop (and a slow scrape never stalls it).

* ``GET /metrics`` -- Prometheus text exposition (``Metrics.exposition()``).
* ``GET /ready``   -- 200 ``ready`` or 503 ``not ready`` (``ready_provider()``).
* ``GET /config``  -- the effective configuration as JSON (``config_provider()``).
* ``GET /clusters`` -- JSON from ``clusters_provider()``: per cluster its endpoints, health,
  open connections and requests in flight (the shape is the proxy's; see xproto.proxy).
* ``GET /``        -- a small index of the above.

Providers are plain callables. By default they run on the admin thread: they must only read
state that is safe to read from another thread (copy-on-write snapshots, ints). Pass
``loop=`` to run ``config_provider``, ``clusters_provider`` and ``ready_provider`` on that
asyncio loop instead (via ``call_soon_threadsafe``, waiting at most ``provider_timeout``
seconds, then 503): that serialises them with the proxy's own state changes. /metrics never
touches the loop: prometheus_client values are thread-safe.

``reuse_port=True`` sets SO_REUSEPORT so that every worker of a multi-worker proxy can bind
the one admin address; with multiprocess metrics (see :mod:`xproto.metrics`) whichever
worker the kernel picks answers /metrics for all of them.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from xproto.metrics import CONTENT_TYPE, Metrics

__all__ = ["AdminServer"]

Provider = Callable[[], Any]
log = logging.getLogger("xproto.admin")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"   # keep-alive for scrapers that reuse connections
    server_version = "xproto-admin"
    timeout = 30  # idle keep-alive connections end after this many seconds

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no per-scrape log lines on stderr

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        body = (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode()
        self._send(code, body, "application/json")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        admin = self.server.admin
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(200, admin.metrics.exposition(), CONTENT_TYPE)
            elif path == "/ready":
                ready = admin._call(admin.ready_provider, True)
                if ready:
                    self._send(200, b"ready\n", "text/plain; charset=utf-8")
                else:
                    self._send(503, b"not ready\n", "text/plain; charset=utf-8")
            elif path == "/config":
                self._json(200, admin._call(admin.config_provider, {}))
            elif path == "/clusters":
                self._json(200, admin._call(admin.clusters_provider, {}))
            elif path == "/":
                self._send(200, b"xproto admin: /metrics /ready /config /clusters\n",
                           "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
        except _LoopBusy:
            self._send(503, b"the proxy did not answer in time\n", "text/plain; charset=utf-8")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001 - a provider bug must not kill the admin thread
            self._send(500, f"error: {type(e).__name__}: {e}\n".encode(), "text/plain; charset=utf-8")

    def _not_allowed(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    admin: AdminServer
    reuse_port = False

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    # track open connections so that stop() can end keep-alive ones too
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # the client went away, or stop() closed its connection
        log.warning("admin: error serving %s", client_address, exc_info=exc)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def server_bind(self) -> None:
        if self.reuse_port:
            # workers of one proxy share the admin address; any of them answers a scrape
            # (with the merged multiprocess metrics)
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _LoopBusy(Exception):
    pass


class AdminServer:
    """The admin endpoint on ``address`` (``"host:port"`` or ``(host, port)``; port 0 = any)."""

    def __init__(
        self,
        address: str | tuple[str, int],
        metrics: Metrics,
        config_provider: Provider | None = None,
        clusters_provider: Provider | None = None,
        ready_provider: Provider | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        provider_timeout: float = 2.0,
        reuse_port: bool = False,
    ) -> None:
        if isinstance(address, str):
            host, _, port = address.rpartition(":")
            self._bind = (host.strip("[]"), int(port))
        else:
            self._bind = (address[0], int(address[1]))
        self.metrics = metrics
        self.config_provider = config_provider
        self.clusters_provider = clusters_provider
        self.ready_provider = ready_provider
        self.loop = loop
        self.provider_timeout = provider_timeout
        self.reuse_port = reuse_port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _call(self, provider: Provider | None, default: Any) -> Any:
        if provider is None:
            return default
        loop = self.loop
        if loop is None or loop.is_closed():
            return provider()
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(provider())
                except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
                    fut.set_exception(e)

        loop.call_soon_threadsafe(run)
        try:
            return fut.result(self.provider_timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise _LoopBusy() from None

    def start(self) -> AdminServer:
        """Bind and serve in a daemon thread; returns self. Raises OSError if the bind fails."""
        if self._server is not None:
            return self
        cls = _Server6 if ":" in self._bind[0] else _Server
        srv = cls(self._bind, _Handler, bind_and_activate=False)
        srv.admin = self
        srv.reuse_port = self.reuse_port
        try:
            srv.server_bind()
            srv.server_activate()
        except BaseException:
            srv.server_close()
            raise
        self._server = srv
        self._thread = threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"xproto-admin-{self.address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread (idempotent)."""
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        srv.close_connections()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            return self._bind
        host, port = self._server.server_address[:2]
        return (str(host), int(port))

    @property
    def url(self) -> str:
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
