"""Subprocess plumbing shared by every peer helper.

A peer *server* is a subprocess that prints one JSON line ``{"ready": true, "port": N, ...}``
on stdout once it listens on 127.0.0.1:N and then runs until SIGTERM.  A peer *client* run in
a subprocess prints one JSON line with its result and exits.  Every wait here is bounded.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

PEERS_DIR = Path(__file__).resolve().parent
TESTS_DIR = PEERS_DIR.parent
REPO_DIR = TESTS_DIR.parent
NODE_DIR = REPO_DIR / "peers" / "node"
RUNNER = PEERS_DIR / "_run.py"

#: default upper bounds (seconds)
START_TIMEOUT = 20.0
CALL_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


class PeerError(RuntimeError):
    """A peer failed to start, answer, or stop in time."""


@dataclass
class PeerProcess:
    """Handle on a running peer server (or any long-running peer subprocess)."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    host: str = "127.0.0.1"
    info: dict[str, Any] = field(default_factory=dict)
    stderr_path: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, limit: int = 4000) -> str:
        if not self.stderr_path:
            return ""
        try:
            data = Path(self.stderr_path).read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM by PID, wait (bounded), SIGKILL if it did not go; returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.stderr_path:
            try:
                os.unlink(self.stderr_path)
            except OSError:
                pass
            self.stderr_path = None
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A port that was free a moment ago (for peers that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tcp(
    host: str, port: int, timeout: float = START_TIMEOUT, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll until host:port accepts a TCP connection (bounded)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PeerError(f"process {proc.pid} exited with {proc.returncode} before {host}:{port} opened")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise PeerError(f"{host}:{port} did not open within {timeout}s: {last}")


def _resolve_prctl() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved once in the parent: between fork and exec the child only calls the function.
_PRCTL = _resolve_prctl()


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the test process dies (Linux
    PR_SET_PDEATHSIG), so a killed pytest run leaves no peer behind. No-op elsewhere."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    if extra:
        env.update(extra)
    return env


def start_process(
    name: str,
    cmd: list[str],
    *,
    timeout: float = START_TIMEOUT,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    ready_line: bool = True,
    port: int | None = None,
) -> PeerProcess:
    """Start ``cmd``; wait for its JSON ready line (or, with ready_line=False, for ``port`` to open)."""
    err = tempfile.NamedTemporaryFile(prefix=f"peer-{name}-", suffix=".err", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
        cwd=cwd,
        env=_child_env(env),
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only calls a pre-resolved prctl
    )
    err.close()
    handle = PeerProcess(name, proc, port or 0, stderr_path=err.name)
    try:
        if ready_line:
            info = _read_json_line(proc, timeout, name)
            if not info.get("ready"):
                raise PeerError(f"{name}: unexpected first line {info!r}")
            handle.port = int(info["port"])
            handle.info = info
        else:
            assert port is not None
            wait_tcp("127.0.0.1", port, timeout, proc)
    except BaseException as exc:
        tail = handle.stderr_tail()
        handle.stop()
        if isinstance(exc, PeerError):
            raise PeerError(f"{exc}\n--- {name} stderr ---\n{tail}") from None
        raise
    return handle


def _read_json_line(proc: subprocess.Popen[bytes], timeout: float, name: str) -> dict[str, Any]:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError(f"{name}: no ready line within {timeout}s")
            if not sel.select(min(left, 0.5)):
                if proc.poll() is not None:
                    raise PeerError(f"{name}: exited with {proc.returncode} before it was ready")
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                proc.wait(timeout=STOP_TIMEOUT)
                raise PeerError(f"{name}: exited with {proc.returncode} before it was ready")
            buf += chunk
    line = buf.split(b"\n", 1)[0]
    try:
        return json.loads(line)
    except ValueError:
        raise PeerError(f"{name}: not a JSON ready line: {line[:200]!r}") from None


def run_json(
    name: str,
    cmd: list[str],
    *,
    timeout: float = CALL_TIMEOUT,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run a peer client subprocess to completion (bounded); return its last JSON stdout line."""
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
            env=_child_env(env),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerError(
            f"{name}: client did not finish within {timeout}s; stderr: "
            f"{(exc.stderr or b'')[-2000:].decode('utf-8', 'replace')}"
        ) from None
    lines = [ln for ln in done.stdout.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
    if not lines:
        raise PeerError(
            f"{name}: exit {done.returncode}, no JSON result; stderr:\n"
            f"{done.stderr[-3000:].decode('utf-8', 'replace')}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    result.setdefault("exit_code", done.returncode)
    if done.returncode != 0:
        result.setdefault("ok", False)
        result["stderr"] = done.stderr[-3000:].decode("utf-8", "replace")
    return result


def python_cmd(module: str, func: str, **kwargs: Any) -> list[str]:
    """Command line that runs ``peers.<module>.<func>(**kwargs)`` in a fresh interpreter."""
    return [sys.executable, str(RUNNER), module, func, json.dumps(kwargs)]


def start_python(
    name: str, module: str, func: str, kwargs: dict[str, Any] | None = None, *, timeout: float = START_TIMEOUT
) -> PeerProcess:
    """Start a Python peer server ``peers.<module>.<func>(**kwargs)`` (it prints its own ready line)."""
    return start_process(name, python_cmd(module, func, **(kwargs or {})), timeout=timeout)


def run_python(
    name: str, module: str, func: str, kwargs: dict[str, Any] | None = None, *, timeout: float = CALL_TIMEOUT
) -> dict[str, Any]:
    """Run a Python peer client function in a fresh interpreter; return its JSON-able result dict."""
    return run_json(name, python_cmd(module, func, **(kwargs or {})), timeout=timeout)


_SIGNALLED: list[int] = []


def _on_signal(signum: int, _frame: object) -> None:
    _SIGNALLED.append(signum)


def announce(port: int, *, catch_signals: bool = True, **info: Any) -> None:
    """For server functions: print the ready line. First (unless ``catch_signals`` is False,
    for servers with their own handlers) catch SIGTERM/SIGINT, so that a stop() right after
    the ready line is seen by wait_for_sigterm() instead of killing the process mid-start."""
    if catch_signals:
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    sys.stdout.write(json.dumps({"ready": True, "port": port, **info}) + "\n")
    sys.stdout.flush()


def wait_for_sigterm() -> None:
    """For server functions (after announce()): block until SIGTERM/SIGINT, then return."""
    if signal.getsignal(signal.SIGTERM) is not _on_signal:
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    while not _SIGNALLED:
        # not signal.pause(): a signal landing between the check and pause() would be missed
        time.sleep(0.1)
