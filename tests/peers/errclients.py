"""Real clients that EXPECT an error: each call is timed and the error the client raised is
reported, so a test can tell a protocol error reply (at once) from the client's own timeout.

Every ``*_errcall`` runs the client in a fresh subprocess (as the other peer helpers do) and
returns ``{"ok": True, "calls": [{"ok": bool, "elapsed_ms": float, "error": str, "type": str,
...}, ...]}``; ``ok`` says the client ran, the calls say what each call did.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ._proc import NODE_DIR, run_json, run_python
from .node import _node


def _timed(fn: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - the error is the datum
        return {
            "ok": False,
            "elapsed_ms": (time.perf_counter() - t0) * 1000,
            "error": str(exc),
            "type": type(exc).__name__,
            "attrs": {k: repr(v) for k, v in vars(exc).items()} if hasattr(exc, "__dict__") else {},
        }
    return {"ok": True, "elapsed_ms": (time.perf_counter() - t0) * 1000, "result": repr(result)}


# --- dubbo-ssl-python (runs in the child) ----------------------------------------------------


def call_dubbo_ssl(
    address: str, service: str, version: str, method: str, args: list[Any], count: int, timeout: float
) -> dict[str, Any]:
    from dubbo_ssl.client import DubboClient

    client = DubboClient(
        service, group=None, version=version, dubbo_version="2.7.23", host=address, verify=None
    )
    calls = [_timed(lambda: client.call(method, list(args), timeout=timeout)) for _ in range(count)]
    return {"ok": True, "calls": calls}


def dubbo_ssl_errcall(
    address: str,
    *,
    service: str = "com.example.Greeter",
    version: str = "1.0",
    method: str = "sayHello",
    args: list[Any] | None = None,
    count: int = 1,
    timeout: float = 5.0,
) -> dict[str, Any]:
    return run_python(
        "dubbo-ssl-errclient",
        "errclients",
        "call_dubbo_ssl",
        {
            "address": address,
            "service": service,
            "version": version,
            "method": method,
            "args": args if args is not None else ["world"],
            "count": count,
            "timeout": timeout,
        },
        timeout=timeout * (count + 1) + 15,
    )


# --- anthunder (runs in the child) -----------------------------------------------------------


def call_anthunder(address: str, interface: str, method: str, count: int, timeout_ms: int) -> dict[str, Any]:
    import logging

    logging.getLogger().setLevel(logging.CRITICAL)  # no MOSN sidecar here: quiet its attempts
    from anthunder import SERVICE_MAP, Client
    from mytracer import SpanContext

    host, port = address.rsplit(":", 1)
    SERVICE_MAP[interface] = (host, int(port))
    client = Client("xproto-errclient")
    calls = [
        _timed(
            lambda: client.invoke_sync(
                interface, method, b"\x0a\x05world", spanctx=SpanContext(), timeout_ms=timeout_ms
            )
        )
        for _ in range(count)
    ]
    return {"ok": True, "calls": calls}


def anthunder_errcall(
    address: str,
    *,
    interface: str = "com.example.EchoPb:1.0",
    method: str = "echo",
    count: int = 1,
    timeout_ms: int = 5000,
) -> dict[str, Any]:
    return run_python(
        "anthunder-errclient",
        "errclients",
        "call_anthunder",
        {
            "address": address,
            "interface": interface,
            "method": method,
            "count": count,
            "timeout_ms": timeout_ms,
        },
        timeout=(timeout_ms / 1000 + 1) * (count + 1) + 15,
    )


# --- thriftpy2 (runs in the child) -----------------------------------------------------------


def call_thriftpy2(address: str, mode: str, count: int, timeout: float) -> dict[str, Any]:
    from thriftpy2.rpc import make_client

    from .thrift_peers import _greeter_module, _tp2_factories

    greeter = _greeter_module()
    host, port = address.rsplit(":", 1)
    trans_factory, proto_factory = _tp2_factories(mode)
    client = make_client(
        greeter.Greeter,
        host,
        int(port),
        proto_factory=proto_factory,
        trans_factory=trans_factory,
        timeout=int(timeout * 1000),
    )
    try:
        calls = [_timed(lambda: client.sayHello("world")) for _ in range(count)]
    finally:
        client.close()
    return {"ok": True, "calls": calls}


def thriftpy2_errcall(
    address: str, mode: str = "framed", *, count: int = 1, timeout: float = 5.0
) -> dict[str, Any]:
    return run_python(
        f"thriftpy2-{mode}-errclient",
        "errclients",
        "call_thriftpy2",
        {"address": address, "mode": mode, "count": count, "timeout": timeout},
        timeout=timeout * (count + 1) + 15,
    )


# --- sofa-rpc-node: dubbo-remoting / sofa-bolt-node ------------------------------------------


def node_errcall(
    protocol: str,
    address: str,
    *,
    service: str | None = None,
    method: str = "sayHello",
    args: list[Any] | None = None,
    count: int = 1,
    timeout_ms: int = 5000,
) -> dict[str, Any]:
    """``peers/node/peer_errclient_rpc.js`` (protocol: dubbo | bolt)."""
    cmd = [
        _node(),
        str(NODE_DIR / "peer_errclient_rpc.js"),
        "--protocol",
        protocol,
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
    return run_json(
        f"node-{protocol}-errclient", cmd, cwd=NODE_DIR, timeout=timeout_ms / 1000 * (count + 1) + 15
    )
