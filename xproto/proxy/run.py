"""``xproto proxy -c FILE``: run until SIGTERM (graceful drain, exit 0) or SIGINT (stop)."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xproto.config import Config

log = logging.getLogger("xproto.proxy")


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def _say(msg: str) -> None:
    print(f"xproto: {msg}", file=sys.stderr, flush=True)


async def serve(config: Config, *, reuse_port: bool = False, admin: bool = True,
                multiprocess_dir: str | None = None, announce: bool = True,
                on_ready: Any = None) -> int:
    from xproto.proxy.server import ProxyServer
    server = ProxyServer(config, reuse_port=reuse_port, admin=admin,
                         multiprocess_dir=multiprocess_dir)
    try:
        await server.start()
    except OSError as e:     # a port in use, an address not on this host ...
        _say(f"cannot start: {e}")
        return 1
    # everything allocated so far (modules, config, codecs) lives as long as the process:
    # out of the cyclic GC's sight, a full collection scans only what requests allocate
    # (otherwise each one walks every startup object: a multi-ms pause in the tail latency)
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    how: dict[str, int] = {}

    def on_signal(sig: int) -> None:
        how.setdefault("sig", sig)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, int(signum))
    if announce:
        for name in server.listeners:
            h, p = server.listener_address(name)
            _say(f"listener {name} on {h}:{p} (pid {os.getpid()})")
        if server.admin_url:
            _say(f"admin on {server.admin_url}")
    if on_ready is not None:
        on_ready()
    elif announce:
        _say("ready")
    await stop.wait()
    sig = how.get("sig", int(signal.SIGTERM))
    grace = config.drain_timeout if sig == signal.SIGTERM else 0.0
    if announce:
        _say(f"{signal.Signals(sig).name}: stopping (grace {grace:g}s, "
             f"{server.inflight()} requests in flight)")
    await server.stop(grace)
    for sig_ in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig_)
    if announce:
        _say("stopped")
    return 0


def run(config_path: str, workers: int | None = None) -> int:
    """Blocking entry of ``xproto proxy -c FILE [--workers N]``; returns the exit code."""
    from xproto.config import load_config
    from xproto.errors import ConfigError
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(config_path)
    except ConfigError as e:
        for path, msg in e.problems:
            print(f"{config_path}: {path}: {msg}", file=sys.stderr)
        return 1
    n = workers if workers is not None else config.workers
    if n > 1:
        from xproto.proxy.workers import run_workers
        return run_workers(config, n)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(serve(config))
