"""sofa-rpc-node peers (Bolt via sofa-bolt-node, Dubbo via dubbo-remoting), run with node."""

from __future__ import annotations

import json
import shutil
from typing import Any

from ._proc import NODE_DIR, PeerProcess, run_json, start_process

NODE_MODULES = ("sofa-rpc-node", "sofa-bolt-node", "dubbo-remoting")


def missing() -> str | None:
    """Why the node peers cannot run here, or None when they can."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (the npm peers need node >= 16)"
    for mod in NODE_MODULES:
        if not (NODE_DIR / "node_modules" / mod / "package.json").is_file():
            return f"npm package {mod} is not installed in {NODE_DIR} (run peers/install.sh)"
    return None


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed")
    return node


def start_server(protocol: str, *, port: int = 0) -> PeerProcess:
    """Start ``peer_<protocol>_server.js`` (protocol: bolt | dubbo) on 127.0.0.1."""
    script = NODE_DIR / f"peer_{protocol}_server.js"
    return start_process(f"node-{protocol}-server", [_node(), str(script), "--port", str(port)], cwd=NODE_DIR)


def start_bolt_server(port: int = 0) -> PeerProcess:
    return start_server("bolt", port=port)


def start_dubbo_server(port: int = 0) -> PeerProcess:
    return start_server("dubbo", port=port)


def call(
    protocol: str,
    address: str,
    method: str = "sayHello",
    args: list[Any] | None = None,
    *,
    count: int = 1,
    timeout_ms: int = 5000,
    service: str | None = None,
) -> dict[str, Any]:
    """Run ``peer_<protocol>_client.js`` once: ``count`` calls of ``method(*args)`` on one connection.

    Returns the client's JSON: {"ok": bool, "result": last value, "results": [...]}
    or {"ok": false, "error": ...}.
    """
    script = NODE_DIR / f"peer_{protocol}_client.js"
    cmd = [
        _node(),
        str(script),
        "--address",
        address,
        "--method",
        method,
        "--args",
        json.dumps(args if args is not None else ["world"]),
        "--count",
        str(count),
        "--timeout",
        str(timeout_ms),
    ]
    if service:
        cmd += ["--service", service]
    return run_json(f"node-{protocol}-client", cmd, cwd=NODE_DIR, timeout=timeout_ms * count / 1000 * 2 + 15)


def bolt_call(
    address: str, method: str = "sayHello", args: list[Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return call("bolt", address, method, args, **kw)


def dubbo_call(
    address: str, method: str = "sayHello", args: list[Any] | None = None, **kw: Any
) -> dict[str, Any]:
    return call("dubbo", address, method, args, **kw)
