"""Proxy memory: RSS per idle downstream connection, per in-flight request, and whether
memory stays flat over repeated open/close cycles (issue 6).

    python bench/memory.py                       # 10,000 idle connections, 3 cycles, 5,000 requests
    python bench/memory.py --conns 2000 --cycles 2 --requests 1000

Starts ``xproto proxy`` (dubbo listener, one catch-all route to a cluster whose upstream
accepts and reads but never answers: requests stay in flight), raises RLIMIT_NOFILE, and
reads the proxy's VmRSS from /proc. Every step waits for the proxy's own metrics to show
the state (``xproto_downstream_connections``, ``xproto_upstream_requests_total``), bounded
by a deadline, before it measures. Prints a table and, with ``--json``, writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class SilentUpstream(threading.Thread):
    """Accepts connections and reads everything, answers nothing (a stalled upstream)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ)
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            for key, _ in self.sel.select(0.1):
                s = key.fileobj
                if s is self.sock:
                    try:
                        c, _ = self.sock.accept()
                    except BlockingIOError:
                        continue
                    c.setblocking(False)
                    self.sel.register(c, selectors.EVENT_READ)
                else:
                    try:
                        data = s.recv(1 << 20)  # type: ignore[union-attr]
                    except BlockingIOError:
                        continue
                    if not data:
                        self.sel.unregister(s)
                        s.close()  # type: ignore[union-attr]


def dubbo_request(rid: int) -> bytes:
    sys.path.insert(0, str(HERE))
    from run import templates
    req, _ = templates("dubbo")
    return req[:4] + struct.pack(">q", rid) + req[12:]


def metric(admin: str, name: str) -> float:
    with urllib.request.urlopen(admin + "/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE):
        total += float(m.group(1))
    return total


def wait_metric(admin: str, name: str, want: float, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(admin, name) == want:
            return
        time.sleep(0.1)  # polling the proxy's metrics, bounded by the deadline
    raise RuntimeError(f"{name} never reached {want} (is {metric(admin, name)})")


def open_conns(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.socket()
        s.connect(("127.0.0.1", port))   # loopback, backlog 1024: completes at once
        out.append(s)
    return out


def close_conns(conns: list[socket.socket]) -> None:
    for s in conns:
        s.close()
    conns.clear()


def start_proxy(a: argparse.Namespace, up_port: int) -> tuple[subprocess.Popen[str], int, str]:
    port, admin_port = free_port(), free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    tmp = Path(tempfile.mkdtemp(prefix="xproto-mem-"))
    conf = tmp / "xproto.yaml"
    conf.write_text(f"""admin:
  address: 127.0.0.1:{admin_port}
listeners:
  - name: mem
    address: 127.0.0.1:{port}
    protocols: [dubbo]
    limits: {{max_connections: {a.conns + a.request_conns + 100}}}
    routes:
      - cluster: up
        timeout: 10m
clusters:
  - name: up
    endpoints: [127.0.0.1:{up_port}]
    max_pending: {a.requests + 10}
""")
    proc = subprocess.Popen([sys.executable, "-m", "xproto.cli", "proxy", "-c", str(conf)],
                            cwd=str(ROOT), stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:   # bounded: the proxy prints "ready" or exits
        if "ready" in line:
            break
    else:
        raise RuntimeError("proxy did not start")
    threading.Thread(target=proc.stderr.read, daemon=True).start()   # keep the pipe drained
    # warm up: a few connections, so that code paths are imported and allocated
    warm = open_conns(port, 10)
    wait_metric(admin, "xproto_downstream_connections", 10)
    close_conns(warm)
    wait_metric(admin, "xproto_downstream_connections", 0)
    return proc, port, admin


def stop_proxy(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure_inflight(a: argparse.Namespace, proc: subprocess.Popen[str], port: int, admin: str,
                     results: dict[str, object]) -> None:
    """Requests spread over a few connections; the upstream never answers."""
    conns = open_conns(port, a.request_conns)
    wait_metric(admin, "xproto_downstream_connections", a.request_conns)
    before = rss_kib(proc.pid)
    per_conn = a.requests // a.request_conns
    rid = 1
    for s in conns:
        s.sendall(b"".join(dubbo_request(rid + i) for i in range(per_conn)))
        rid += per_conn
    total = per_conn * a.request_conns
    wait_metric(admin, "xproto_upstream_requests_total", total)
    pending = rss_kib(proc.pid)
    per_req = (pending - before) * 1024 / total
    results["inflight_requests"] = total
    results["bytes_per_inflight_request"] = round(per_req)
    print(f"{total} requests in flight: RSS {before / 1024:.1f} -> {pending / 1024:.1f} MiB "
          f"({per_req:.0f} B/request, request frame {len(dubbo_request(1))} B)")
    for s in conns:   # abort (RST): a half-closed client would still be owed its answers
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    close_conns(conns)
    wait_metric(admin, "xproto_downstream_connections", 0)


def measure_idle(a: argparse.Namespace, proc: subprocess.Popen[str], port: int, admin: str,
                 results: dict[str, object]) -> None:
    base = rss_kib(proc.pid)
    per_cycle = []
    for cycle in range(a.cycles):
        conns = open_conns(port, a.conns)
        wait_metric(admin, "xproto_downstream_connections", a.conns)
        held = rss_kib(proc.pid)
        close_conns(conns)
        wait_metric(admin, "xproto_downstream_connections", 0)
        after = rss_kib(proc.pid)
        per = (held - base) * 1024 / a.conns
        per_cycle.append({"held_kib": held, "after_close_kib": after, "bytes_per_conn": round(per)})
        print(f"cycle {cycle + 1}: {a.conns} idle connections: RSS {held / 1024:.1f} MiB "
              f"({per:.0f} B/connection over {base / 1024:.1f} MiB at rest); "
              f"after closing them {after / 1024:.1f} MiB")
    results["idle_cycles"] = per_cycle
    growth = per_cycle[-1]["held_kib"] - per_cycle[0]["held_kib"]
    first = per_cycle[0]["held_kib"] - base
    results["held_growth_kib_first_to_last"] = growth
    flat = abs(growth) <= 0.05 * first
    results["flat"] = flat
    print(f"held RSS growth from cycle 1 to {a.cycles}: {growth / 1024:+.2f} MiB "
          f"({'flat' if flat else 'GROWING'}: within 5% of the first cycle's {first / 1024:.1f} MiB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--requests", type=int, default=5000, help="requests left in flight")
    ap.add_argument("--request-conns", type=int, default=50)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.conns + a.request_conns + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        print(f"RLIMIT_NOFILE hard limit {hard} < {need}: use fewer --conns", file=sys.stderr)
        return 2

    up = SilentUpstream()
    up.start()
    results: dict[str, object] = {}
    try:
        # each phase on a fresh proxy: memory freed by one phase would be reused by the next
        proc, port, admin = start_proxy(a, up.port)
        try:
            base = rss_kib(proc.pid)
            results["rss_base_kib"] = base
            print(f"proxy pid {proc.pid}: RSS {base / 1024:.1f} MiB at rest")
            measure_inflight(a, proc, port, admin, results)
        finally:
            stop_proxy(proc)
        proc, port, admin = start_proxy(a, up.port)
        try:
            measure_idle(a, proc, port, admin, results)
        finally:
            stop_proxy(proc)
    finally:
        up.stopping = True
        up.join(2)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
