"""``--workers N``: N forked worker processes, each a whole proxy with its own upstream
pools, all accepting on the same ports (``SO_REUSEPORT``: the kernel spreads connections).

* Listener ports given as 0 are resolved once in the supervisor (a bound, non-listening
  ``SO_REUSEPORT`` socket keeps the port reserved), so every worker listens on the same port.
* Metrics: every worker writes snapshots of its counters to a fresh directory
  (:meth:`xproto.metrics.Metrics.sync`); worker 0 serves the admin endpoint, whose /metrics
  first asks the other workers for a fresh snapshot (SIGUSR1) and merges every worker's
  values. /clusters shows worker 0's pools and, under ``workers``, every other live
  worker's (from its last snapshot, at most a second old).
* Kafka broker listeners are per worker: each worker advertises its own broker ports, and a
  client follows the addresses of the worker that answered it.
* SIGTERM/SIGINT are forwarded to the workers; the supervisor exits 0 when all did. A worker
  that dies on its own is restarted (at most ``MAX_RESTARTS`` times).
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xproto.config import Config

log = logging.getLogger("xproto.proxy")

MAX_RESTARTS = 10


def _reserve(config: Config) -> list[socket.socket]:
    from xproto.config import Address
    held: list[socket.socket] = []
    for li in config.listeners:
        host, port = li.address.host, li.address.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))          # bound, never listening: receives no connections
        held.append(s)
        if port == 0:
            real = s.getsockname()[1]
            li.address = Address(f"[{host}]:{real}" if family == socket.AF_INET6 else f"{host}:{real}")
    return held


def _child(config: Config, index: int, mpdir: str, ready_fd: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    # a scrape's "write your metrics now" must never kill a worker that is still starting
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    code = 1

    def ready() -> None:
        if ready_fd < 0:
            return    # a restarted worker: nobody waits
        try:
            os.write(ready_fd, b"r")
            os.close(ready_fd)
        except OSError:  # pragma: no cover
            pass

    try:
        from xproto.proxy.run import _loop_factory, serve
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            code = runner.run(serve(config, reuse_port=True, admin=index == 0,
                                    multiprocess_dir=mpdir, announce=index == 0, on_ready=ready))
    except BaseException as e:  # noqa: BLE001 - a forked child must always reach os._exit
        print(f"xproto: worker {index} failed: {e!r}", file=sys.stderr, flush=True)
    finally:
        sys.stderr.flush()
        os._exit(code)


def run_workers(config: Config, n: int) -> int:
    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - not Linux/BSD
        print("xproto: --workers needs SO_REUSEPORT; running one worker", file=sys.stderr)
        from xproto.proxy.run import _loop_factory, serve
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(serve(config))
    config = config.model_copy(deep=True)
    held = _reserve(config)
    mpdir = tempfile.mkdtemp(prefix="xproto-metrics-")
    children: dict[int, int] = {}
    stopping: list[int] = []

    rfd, wfd = os.pipe()
    pipe_open = [True]

    def spawn(i: int) -> None:
        pid = os.fork()
        if pid == 0:
            if pipe_open[0]:
                os.close(rfd)
                _child(config, i, mpdir, wfd)
            _child(config, i, mpdir, -1)
        children[pid] = i

    def forward(sig: int, _frame: object) -> None:
        stopping.append(sig)
        for pid in list(children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    restarts = 0
    worst = 0
    try:
        for i in range(n):
            spawn(i)
        os.close(wfd)
        pipe_open[0] = False
        print(f"xproto: {n} workers (pids {', '.join(map(str, children))})", file=sys.stderr, flush=True)
        # "ready" once every worker listens (a worker that fails closes its end too)
        got = 0
        while got < n:
            try:
                b = os.read(rfd, n - got)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if not b:
                break
            got += len(b)
        os.close(rfd)
        if got == n:
            print("xproto: ready", file=sys.stderr, flush=True)
        while children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid not in children:
                continue
            i = children.pop(pid)
            from xproto.metrics import mark_worker_dead
            try:
                mark_worker_dead(pid, mpdir)
            except OSError as e:  # pragma: no cover - its gauges then linger
                log.warning("cannot mark worker %d dead in %s: %s", pid, mpdir, e)
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                worst = max(worst, 0 if code == 0 else 1)
                continue
            if restarts < MAX_RESTARTS:
                restarts += 1
                print(f"xproto: worker {i} (pid {pid}) exited with {code}: restarting",
                      file=sys.stderr, flush=True)
                spawn(i)
            else:
                print(f"xproto: worker {i} exited with {code}; too many restarts: stopping",
                      file=sys.stderr, flush=True)
                forward(signal.SIGTERM, None)
                worst = 1
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        for s in held:
            s.close()
        shutil.rmtree(mpdir, ignore_errors=True)
    return worst
