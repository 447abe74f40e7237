"""Run the real ``xproto proxy -c FILE`` (as a user would) for the peer tests.

``start_proxy(config, workdir)`` writes the YAML, starts ``python -m xproto.cli proxy -c``,
and waits (bounded polling) until the admin ``/ready`` answers 200. The handle reads
``/metrics`` and stops the proxy by PID with SIGTERM.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ._proc import REPO_DIR, PeerError, PeerProcess, die_with_parent

READY_TIMEOUT = 30.0


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports, free a moment ago (all held open while picking)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port_range(n: int, tries: int = 200) -> tuple[int, int]:
    """A contiguous range of ``n`` loopback ports that are all free now (bounded search)."""
    rng = random.Random()
    for _ in range(tries):
        base = rng.randrange(20000, 60000 - n)
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base, base + n - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise PeerError(f"no {n} consecutive free ports found in {tries} tries")


def _yaml(config: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)


class ProxyProcess(PeerProcess):
    admin_url: str = ""
    listeners: dict[str, int]
    config_path: str = ""

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def listener(self, name: str) -> str:
        return f"127.0.0.1:{self.listeners[name]}"

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        from prometheus_client.parser import text_string_to_metric_families

        status, text = self.get("/metrics")
        if status != 200:
            raise PeerError(f"/metrics answered {status}")
        out = []
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out.append((s.name, dict(s.labels), float(s.value)))
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(
            v
            for n, lab, v in self.samples()
            if n == name and all(lab.get(k) == str(want) for k, want in labels.items())
        )


def start_proxy(
    config: dict[str, Any], workdir: str | os.PathLike[str], *, timeout: float = READY_TIMEOUT
) -> ProxyProcess:
    """Start ``python -m xproto.cli proxy -c <workdir>/proxy.yaml``; wait for admin /ready == 200.

    ``config`` must have ``admin.address`` and fixed listener ports (see free_ports()).
    """
    path = Path(workdir) / "proxy.yaml"
    path.write_text(_yaml(config))
    err = tempfile.NamedTemporaryFile(prefix="xproto-proxy-", suffix=".err", delete=False)  # noqa: SIM115
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "xproto.cli", "proxy", "-c", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=err,
        cwd=REPO_DIR,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only calls a pre-resolved prctl
    )
    err.close()
    handle = ProxyProcess("xproto-proxy", proc, 0, stderr_path=err.name)
    handle.admin_url = f"http://{config['admin']['address']}"
    handle.listeners = {
        lst["name"]: int(str(lst["address"]).rsplit(":", 1)[1]) for lst in config["listeners"]
    }
    handle.port = next(iter(handle.listeners.values()), 0)
    handle.config_path = str(path)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        if proc.poll() is not None:
            tail = handle.stderr_tail()
            handle.stop()
            raise PeerError(f"xproto proxy exited with {proc.returncode} before /ready; stderr:\n{tail}")
        try:
            status, body = handle.get("/ready", timeout=1.0)
            if status == 200:
                return handle
            last = f"/ready answered {status} {body[:100]!r}"
        except OSError as exc:
            last = f"/ready: {exc}"
        if time.monotonic() > deadline:
            tail = handle.stderr_tail()
            handle.stop()
            raise PeerError(f"xproto proxy not ready within {timeout}s ({last}); stderr:\n{tail}")
        time.sleep(0.05)  # polling interval of the readiness loop (bounded by the deadline)
