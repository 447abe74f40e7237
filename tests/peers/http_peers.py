"""HTTP/1.1 peers: aiohttp 3.14.5 and http.server upstreams, httpx 0.28.1 and curl clients.

Both upstreams serve the same routes:
- ``GET /hello``          -> ``hello from <server>`` (Content-Length)
- ``POST /echo``          -> the request body (request may be chunked), answered chunked
- ``GET /chunked?n=N``    -> ``N`` chunks ``chunk-<i>\\n`` (Transfer-Encoding: chunked)
Every response carries ``x-upstream: <server>`` and ``x-upstream-conn: <client port seen by
the server>`` (so a test can tell which upstream connection served it).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

from ._proc import PeerError, PeerProcess, announce, start_python, wait_for_sigterm

CHUNKS = 5


def missing(peer: str = "all") -> str | None:
    for mod in ("aiohttp", "httpx"):
        if peer in ("all", mod) and importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed"
    if peer == "curl" and shutil.which("curl") is None:
        return "curl is not installed"
    return None


# --- aiohttp upstream (child) ---------------------------------------------------------------


def serve_aiohttp() -> None:
    import asyncio
    import signal

    from aiohttp import web

    def tags(request: web.Request) -> dict[str, str]:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return {"x-upstream": "aiohttp", "x-upstream-conn": str(peer[1] if peer else "")}

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from aiohttp", headers=tags(request))

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        resp = web.StreamResponse(headers=tags(request))
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 7):
            await resp.write(body[i : i + 7])
        await resp.write_eof()
        return resp

    async def chunked(request: web.Request) -> web.StreamResponse:
        n = int(request.query.get("n", CHUNKS))
        resp = web.StreamResponse(headers=tags(request))
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(n):
            await resp.write(f"chunk-{i}\n".encode())
        await resp.write_eof()
        return resp

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/hello", hello)
        app.router.add_post("/echo", echo)
        app.router.add_get("/chunked", chunked)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        announce(port, catch_signals=False, peer="aiohttp")
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def start_aiohttp_server() -> PeerProcess:
    return start_python("aiohttp-server", "http_peers", "serve_aiohttp")


# --- http.server upstream (child) -----------------------------------------------------------


def serve_stdlib() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def log_message(self, *args: Any) -> None:
            pass

        def _tags(self) -> None:
            self.send_header("x-upstream", "http.server")
            self.send_header("x-upstream-conn", str(self.client_address[1]))

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send_chunked(self, pieces: list[bytes]) -> None:
            self.send_response(200)
            self._tags()
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in pieces:
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/hello":
                body = b"hello from http.server"
                self.send_response(200)
                self._tags()
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif url.path == "/chunked":
                n = int(parse_qs(url.query).get("n", [str(CHUNKS)])[0])
                self._send_chunked([f"chunk-{i}\n".encode() for i in range(n)])
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/echo":
                self.send_error(404)
                return
            body = self._read_body()
            self._send_chunked([body[i : i + 7] for i in range(0, len(body), 7)])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    announce(server.server_address[1], peer="http.server")
    wait_for_sigterm()
    server.shutdown()
    server.server_close()


def start_stdlib_server() -> PeerProcess:
    return start_python("http.server", "http_peers", "serve_stdlib")


# --- httpx client (in-process: no threads, no global state) ---------------------------------


def _gen(body: bytes) -> Iterator[bytes]:
    for i in range(0, len(body), 5):
        yield body[i : i + 5]


def httpx_session(
    base_url: str, body: bytes = b"the quick brown fox jumps over the lazy dog", timeout: float = 5.0
) -> dict[str, Any]:
    """One httpx.Client (one keep-alive connection): GET /hello, chunked POST /echo, GET /chunked.

    Returns each answer plus ``local_ports``: the client-side port of the connection each
    request went out on (all equal = the connection was kept alive).
    """
    import httpx

    out: dict[str, Any] = {"local_ports": [], "upstream_conns": []}
    with httpx.Client(base_url=base_url, timeout=timeout, http2=False) as client:

        def note(resp: httpx.Response) -> None:
            stream = resp.extensions.get("network_stream")
            addr = stream.get_extra_info("client_addr") if stream is not None else None
            out["local_ports"].append(addr[1] if addr else None)
            out["upstream_conns"].append(resp.headers.get("x-upstream-conn"))

        r = client.get("/hello")
        note(r)
        out["hello"] = (r.status_code, r.text, r.headers.get("x-upstream"))
        r = client.post("/echo", content=_gen(body))  # generator -> Transfer-Encoding: chunked
        note(r)
        out["echo"] = (r.status_code, r.content.decode(), r.headers.get("transfer-encoding"))
        r = client.get("/chunked", params={"n": CHUNKS})
        note(r)
        out["chunked"] = (r.status_code, r.text, r.headers.get("transfer-encoding"))
        r = client.get("/hello")
        note(r)
        out["hello_again"] = (r.status_code, r.text)
    expected_echo = body.decode()
    out["ok"] = (
        out["hello"][0] == 200
        and out["echo"][:2] == (200, expected_echo)
        and out["chunked"][:2] == (200, "".join(f"chunk-{i}\n" for i in range(CHUNKS)))
        and out["hello_again"][0] == 200
    )
    return out


# --- curl client ----------------------------------------------------------------------------


def curl_session(
    base_url: str, body: bytes = b"curl says hello through a chunked body", timeout: float = 10.0
) -> dict[str, Any]:
    """One curl process, three transfers on one connection: GET /hello, chunked POST /echo,
    GET /chunked. ``connects`` is curl's ``num_connects`` per transfer ([1, 0, 0] = reused)."""
    curl = shutil.which("curl")
    if curl is None:
        raise PeerError("curl is not installed")
    sep = "\n--XPROTO-END--"
    fmt = sep + " %{http_code} %{num_connects}\n"
    cmd = [
        curl,
        "-sS",
        "--http1.1",
        "--max-time",
        str(timeout),
        "-w",
        fmt,
        f"{base_url}/hello",
        "--next",
        "-sS",
        "--http1.1",
        "--max-time",
        str(timeout),
        "-w",
        fmt,
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        "@-",
        f"{base_url}/echo",
        "--next",
        "-sS",
        "--http1.1",
        "--max-time",
        str(timeout),
        "-w",
        fmt,
        f"{base_url}/chunked?n={CHUNKS}",
    ]
    try:
        done = subprocess.run(cmd, input=body, capture_output=True, timeout=timeout * 3 + 5, check=False)
    except subprocess.TimeoutExpired:
        raise PeerError("curl did not finish in time") from None
    text = done.stdout.decode("utf-8", "replace")
    parts = text.split(sep)
    bodies, codes, connects = [parts[0]], [], []
    for part in parts[1:]:
        head, _, rest = part.partition("\n")
        code, num = head.split()
        codes.append(int(code))
        connects.append(int(num))
        bodies.append(rest)
    out: dict[str, Any] = {
        "exit_code": done.returncode,
        "codes": codes,
        "connects": connects,
        "bodies": bodies[: len(codes)],
        "stderr": done.stderr.decode("utf-8", "replace"),
    }
    out["ok"] = (
        done.returncode == 0
        and codes == [200, 200, 200]
        and out["bodies"][1] == body.decode()
        and out["bodies"][2] == "".join(f"chunk-{i}\n" for i in range(CHUNKS))
    )
    return out
