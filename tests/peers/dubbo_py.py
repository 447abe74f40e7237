"""Python Dubbo peers: dubbo-py 0.2.2 (server) and dubbo-ssl-python 0.9.6 (client).

Both run in subprocesses (dubbo-ssl-python keeps a global connection pool with heartbeat
threads; dubbo-py's server is a socketserver with per-connection threads).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ._proc import PeerProcess, announce, run_python, start_python, wait_for_sigterm

SERVICE = "com.example.Greeter"
VERSION = "1.0"


def missing() -> str | None:
    for mod, dist in (("dubbo.server", "dubbo-py"), ("dubbo_ssl.client", "dubbo-ssl-python")):
        try:
            if importlib.util.find_spec(mod) is None:
                return f"{dist} is not installed (pip install -r peers/requirements.txt)"
        except ModuleNotFoundError:
            return f"{dist} is not installed (pip install -r peers/requirements.txt)"
    return None


# --- server (runs in the child) -------------------------------------------------------------


def serve_dubbo_py() -> None:
    """dubbo-py's DubboService handlers on a loopback socketserver bound to port 0."""
    import threading

    from dubbo import server as dsrv

    services: dict[str, dict[str, Any]] = {}
    services[SERVICE] = {
        "sayHello": lambda name: f"hello {name}",
        "plus": lambda a, b: a + b,
        "echo": lambda x: x,
    }
    # DubboService() binds 0.0.0.0:<fixed port>; build the same server on 127.0.0.1:0 instead.
    server = dsrv._DubboServer(("127.0.0.1", 0), dsrv._get_dubbo_request_handler(services))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    announce(server.server_address[1], peer="dubbo-py")
    wait_for_sigterm()
    server.shutdown()
    server.server_close()


def start_server() -> PeerProcess:
    return start_python("dubbo-py-server", "dubbo_py", "serve_dubbo_py")


# --- client (runs in the child) -------------------------------------------------------------


def call_dubbo_ssl(
    address: str,
    method: str = "sayHello",
    args: list[Any] | None = None,
    count: int = 1,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """dubbo-ssl-python DubboClient in direct mode (host=), plain TCP."""
    from dubbo_ssl.client import DubboClient

    client = DubboClient(
        SERVICE, group=None, version=VERSION, dubbo_version="2.7.23", host=address, verify=None
    )
    results = [
        client.call(method, list(args if args is not None else ["world"]), timeout=timeout)
        for _ in range(count)
    ]
    return {"ok": True, "result": results[-1], "results": results}


def dubbo_ssl_call(
    address: str,
    method: str = "sayHello",
    args: list[Any] | None = None,
    *,
    count: int = 1,
    timeout: float = 5.0,
) -> dict[str, Any]:
    return run_python(
        "dubbo-ssl-client",
        "dubbo_py",
        "call_dubbo_ssl",
        {"address": address, "method": method, "args": args, "count": count, "timeout": timeout},
        timeout=timeout * count + 15,
    )
