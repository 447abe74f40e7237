"""``xproto demo``: the proxy on its embedded default config, sample upstream services for
all five built-in protocols, and real client traffic through it, summed up in a table.

One command, no set-up: :func:`run_demo` loads the template ``config.yaml`` shipped in this
package, starts the sample services (:mod:`xproto.demo.services`) on free ports, puts free
ports into the config, starts the proxy as ``xproto proxy -c <that config>`` in a child
process (or :class:`xproto.proxy.ProxyServer` in-process with ``in_process=True``), drives
the demo clients (:mod:`xproto.demo.clients`) through it for ``duration`` seconds, reads the
proxy's ``/metrics`` and cross-checks its counters against what the clients sent and the
services received, stops the proxy with SIGTERM (graceful drain, exit status 0 expected),
prints the per-protocol table and the metrics URL, and shuts everything down.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import os
import socket
import sys
import tempfile
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import yaml  # type: ignore[import-untyped,unused-ignore]

PROTOCOLS = ("dubbo", "bolt", "thrift", "kafka", "http")
HOST = "127.0.0.1"
MAX_REQUESTS = 200_000          # per protocol, whatever the duration
METRICS_SETTLE = 2.0            # seconds the counters may take to catch up with the clients
STOP_GRACE = 2.0                # proxy drain grace at the end
START_ATTEMPTS = 3              # proxy starts tried with fresh ports
PROXY_START_TIMEOUT = 30.0      # seconds the proxy process may take to say it is ready
PROXY_STOP_SLACK = 5.0          # seconds beyond the drain grace before the process is killed
OUTPUT_LINES = 40               # last lines of the proxy process's log kept for diagnosis
BAD_RATIO = 0.01                # more unexpected failures than this share of requests = failure

__all__ = ["load_template", "prepare_config", "run_demo"]


def load_template() -> dict[str, Any]:
    """The embedded default config (a template: its ports are replaced at start)."""
    text = resources.files(__name__).joinpath("config.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


# --- ports -------------------------------------------------------------------------------

def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_port_range(size: int, avoid: set[int], tries: int = 50) -> tuple[int, int]:
    """``size`` consecutive ports that can be bound now (start from an OS-chosen port)."""
    for _ in range(tries):
        lo = free_port()
        if lo + size - 1 > 65535:
            continue
        ports = range(lo, lo + size)
        if not avoid.intersection(ports) and all(_bindable(p) for p in ports):
            return lo, lo + size - 1
    raise OSError(f"no {size} consecutive free ports found on {HOST}")


def prepare_config(template: dict[str, Any], service_addrs: dict[str, list[str]]) -> dict[str, Any]:
    """A copy of the template with free ports for admin and listeners, a free broker port
    range, and ``service_addrs`` (cluster -> endpoints) as the clusters' endpoints."""
    cfg = copy.deepcopy(template)
    used: set[int] = set()

    def port() -> int:
        while True:
            p = free_port()
            if p not in used:
                used.add(p)
                return p

    if cfg.get("admin"):
        cfg["admin"]["address"] = f"{HOST}:{port()}"
    for li in cfg["listeners"]:
        li["address"] = f"{HOST}:{port()}"
        k = li.get("kafka")
        if k and k.get("broker_ports"):
            lo, _, hi = str(k["broker_ports"]).partition("-")
            size = int(hi or lo) - int(lo) + 1
            a, b = free_port_range(size, used)
            used.update(range(a, b + 1))
            k["broker_ports"] = f"{a}-{b}"
    for c in cfg["clusters"]:
        c["endpoints"] = list(service_addrs[c["name"]])
    return cfg


# --- metrics -----------------------------------------------------------------------------

def fetch(url: str, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)] from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def metric_sum(m: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for lab, v in m.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


@dataclass
class Check:
    protocol: str
    proxy_requests: int = 0
    no_route: int = 0
    upstream: int = 0
    problems: list[str] = field(default_factory=list)


def cross_check(stats: dict[str, Any], m: dict[str, list[tuple[dict[str, str], float]]],
                served: dict[str, int] | None = None) -> dict[str, Check]:
    """Compare the proxy's counters with what the clients did.

    * downstream requests: every request the clients wrote, give or take the heartbeats
      (the proxy answers those itself and may or may not count them as requests);
    * no_route local replies: exactly the requests sent to a missing route;
    * ``served`` (protocol -> requests the sample services received, heartbeats apart):
      everything else, each exactly once.
    """
    out: dict[str, Check] = {}
    for proto, st in stats.items():
        c = out[proto] = Check(proto)
        c.proxy_requests = int(metric_sum(m, "xproto_downstream_requests_total", protocol=proto))
        c.no_route = int(metric_sum(m, "xproto_local_replies_total", protocol=proto, reason="no_route"))
        c.upstream = int(metric_sum(m, "xproto_upstream_requests_total", protocol=proto))
        hb = st.counts.get("heartbeats", 0)
        if not st.requests - hb <= c.proxy_requests <= st.requests:
            c.problems.append(f"proxy counted {c.proxy_requests} requests, clients sent {st.requests}"
                              + (f" ({hb} heartbeats)" if hb else ""))
        sent = st.counts.get("no_route_sent", 0)
        if c.no_route != sent:
            c.problems.append(f"proxy counted {c.no_route} no_route replies, clients sent {sent}")
        if served is not None and proto in served:
            want = st.requests - hb - sent
            if served[proto] != want:
                c.problems.append(f"services received {served[proto]} requests, expected {want} "
                                  "(sent minus heartbeats minus no-route)")
    return out


# --- the table -----------------------------------------------------------------------------

def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.2f}"


def _notes(st: Any) -> str:
    c = st.counts
    parts = []
    if st.expected_errors:
        parts.append(f"{st.expected_errors} no-route errors (expected)")
    for key, label in (("oneway", "one-way"), ("heartbeats", "heartbeats"), ("produce_acks0", "acks=0"),
                       ("chunked_post", "chunked POST"), ("chunked_response", "chunked responses"),
                       ("broker_address_ok", "broker address via proxy"), ("reconnects", "reconnects")):
        if c.get(key):
            parts.append(f"{c[key]} {label}")
    if st.unexpected:
        parts.append(f"{st.unexpected} UNEXPECTED")
    return ", ".join(parts)


def render(stats: dict[str, Any], checks: dict[str, Check] | None, out: TextIO) -> None:
    head = ("protocol", "requests", "errors", "p50 ms", "p99 ms", "proxy count", "notes")
    rows = []
    for proto in PROTOCOLS:
        st = stats.get(proto)
        if st is None:
            continue
        ck = checks.get(proto) if checks else None
        rows.append((proto, str(st.requests), str(st.errors), _ms(st.percentile(0.5)),
                     _ms(st.percentile(0.99)),
                     "-" if ck is None else f"{ck.proxy_requests} {'ok' if not ck.problems else 'MISMATCH'}",
                     _notes(st)))
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head) - 1)]
    for r in [head] + rows:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, len(widths))]
        out.write("  ".join(cells) + "  " + r[-1] + "\n")


# --- the proxy as a child process ------------------------------------------------------------

class ProxyStartError(OSError):
    """The proxy process exited before it was ready (``output`` holds its last lines)."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


class ProxyProcess:
    """``xproto proxy -c FILE`` run as a child process, as a user runs it: its own
    interpreter and event loop, stopped by SIGTERM (graceful drain) and expected to exit 0.

    Offers the part of :class:`xproto.proxy.ProxyServer`'s interface the demo uses.
    """

    READY_LINE = "xproto: ready"

    def __init__(self, config: Any, path: str) -> None:
        self.config = config
        self.path = path
        self.proc: asyncio.subprocess.Process | None = None
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES)
        self.returncode: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def admin_url(self) -> str | None:
        a = self.config.admin
        return f"http://{a.address.host}:{a.address.port}" if a else None

    def listener_address(self, name: str) -> tuple[str, int]:
        a = self.config.listener(name).address
        return (a.host, a.port)

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xproto.cli", "proxy", "-c", self.path,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.create_task(self._read_output())
        ready = asyncio.create_task(self._ready.wait())
        exited = asyncio.create_task(self.proc.wait())
        try:
            await asyncio.wait({ready, exited}, timeout=PROXY_START_TIMEOUT,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            if not exited.done():
                exited.cancel()
            await asyncio.gather(ready, exited, return_exceptions=True)
        if not self._ready.is_set():
            await self.stop(0)
            raise ProxyStartError(f"the proxy did not become ready (exit status {self.returncode})",
                                  "\n".join(self.output))

    async def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            text = line.decode("utf-8", "replace").rstrip()
            self.output.append(text)
            if text == self.READY_LINE:
                self._ready.set()

    async def stop(self, grace: float | None = None) -> None:
        """SIGTERM, then wait for the drain (bounded); SIGKILL only if it hangs."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            proc.terminate()
            limit = (grace or 0) + float(self.config.drain_timeout) + PROXY_STOP_SLACK
            try:
                await asyncio.wait_for(proc.wait(), limit)
            except TimeoutError:
                self.output.append(f"(demo: the proxy did not exit {limit:g}s after SIGTERM: killed)")
                proc.kill()
                await proc.wait()
        self.returncode = proc.returncode
        if self._reader is not None:
            await self._reader
            self._reader = None


# --- the run -----------------------------------------------------------------------------

async def _demo(duration: float, out: TextIO, in_process: bool, tmpdir: str) -> int:
    from xproto.config import parse_config
    from xproto.demo.clients import run_clients
    from xproto.demo.services import SERVICE_CLASSES, FrameServer

    try:
        from xproto.proxy import ProxyServer
    except ImportError:  # the package may not re-export it
        from xproto.proxy.server import ProxyServer

    template = load_template()
    services: list[FrameServer] = []
    proxy: ProxyServer | ProxyProcess | None = None
    try:
        # 1. sample upstream services, one per endpoint of each cluster of the template
        addrs: dict[str, list[str]] = {}
        by_proto: dict[str, list[FrameServer]] = {}
        for c in template["clusters"]:
            cls = SERVICE_CLASSES[c["protocol"]]
            for k in range(len(c["endpoints"])):
                s = await cls(f"{c['name']}#{k}").start()
                services.append(s)
                addrs.setdefault(c["name"], []).append(s.address)
                by_proto.setdefault(c["protocol"], []).append(s)

        # 2. the proxy on the template with free ports
        # (a port picked free can be taken by someone else before the proxy binds it:
        # then pick again, a bounded number of times)
        for attempt in range(START_ATTEMPTS):
            cfg_dict = prepare_config(template, addrs)
            config = parse_config(cfg_dict)
            if in_process:
                proxy = ProxyServer(config)
            else:
                path = os.path.join(tmpdir, "config.yaml")
                Path(path).write_text(yaml.safe_dump(cfg_dict, sort_keys=False), encoding="utf-8")
                proxy = ProxyProcess(config, path)
            try:
                await proxy.start()
                break
            except OSError as e:
                try:
                    await proxy.stop(grace=0)
                except Exception as stop_err:  # noqa: BLE001 - half-started; nothing more to free
                    logging.getLogger("xproto.demo").debug("stopping a half-started proxy: %s", stop_err)
                proxy = None
                if attempt + 1 == START_ATTEMPTS:
                    if isinstance(e, ProxyStartError):
                        out.write(e.output + "\n")
                    raise
                out.write(f"note: the proxy could not start ({e}); picking new ports\n")
        assert proxy is not None
        admin = proxy.admin_url
        admin = admin.rstrip("/") if admin else None
        rpc = proxy.listener_address("rpc")
        web = proxy.listener_address("web")
        kafka_cfg = next(li.kafka for li in config.listeners if li.kafka)
        assert kafka_cfg.broker_ports is not None and kafka_cfg.advertise_host is not None
        lo, hi = kafka_cfg.broker_ports
        brokers = {s.port for s in by_proto.get("kafka", [])}

        def broker_ok(host: str, port: int) -> str | None:
            if port in brokers:
                return "the real broker's address leaked through the proxy"
            if host != kafka_cfg.advertise_host or not lo <= port <= hi:
                return f"not a proxy broker address ({kafka_cfg.advertise_host}:{lo}-{hi})"
            return None

        if admin:
            ready = 0
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                ready, _ = await asyncio.to_thread(fetch, admin + "/ready", 1.0)
                if ready == 200:
                    break
                await asyncio.sleep(0.05)
            if ready != 200:
                out.write(f"warning: {admin}/ready answered {ready} after 5 s; driving traffic anyway\n")

        out.write(f"xproto demo: proxy listeners rpc {rpc[0]}:{rpc[1]} "
                  f"(auto-detects {', '.join(PROTOCOLS)}), web {web[0]}:{web[1]} (http); "
                  f"kafka brokers advertised on {kafka_cfg.advertise_host}:{lo}-{hi}\n")
        out.write(f"driving {duration:g} s of traffic through the proxy ...\n")
        out.flush()

        # 3. traffic
        targets = {p: [rpc] for p in PROTOCOLS}
        targets["http"] = [rpc, web]
        t0 = time.monotonic()
        stats = await run_clients(targets, duration, max_requests=MAX_REQUESTS, broker_ok=broker_ok)
        elapsed = time.monotonic() - t0

        # 4. the proxy's own counters, cross-checked (they may trail the last replies a little)
        checks = None
        if admin:
            deadline = time.monotonic() + METRICS_SETTLE
            while True:
                status, text = await asyncio.to_thread(fetch, admin + "/metrics")
                served = {p: sum(x.stats["requests"] + x.stats["oneway"] for x in by_proto.get(p, []))
                          for p in stats}
                checks = cross_check(stats, parse_metrics(text), served) if status == 200 else None
                if checks is not None and not any(c.problems for c in checks.values()):
                    break
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.1)

        # 5. stop the proxy as an operator would: SIGTERM -> drain -> exit 0
        stopped, proxy = proxy, None
        await stopped.stop(grace=STOP_GRACE)
        proxy_exit = stopped.returncode if isinstance(stopped, ProxyProcess) else None
        proxy_log = list(stopped.output) if isinstance(stopped, ProxyProcess) else []

        # 6. report
        out.write("\n")
        render(stats, checks, out)
        total = sum(s.requests for s in stats.values())
        out.write(f"\n{total} requests in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.0f}/s)\n"
                  "  requests     every request written (one-way, heartbeats, acks=0 produce included)\n"
                  "  errors       error responses and failures, incl. requests sent to a missing route"
                  " on purpose\n"
                  "  p50/p99      latency of answered requests\n"
                  "  proxy count  xproto_downstream_requests_total, checked against what the clients"
                  " sent and the services received\n")
        failed = []
        for proto in PROTOCOLS:
            st = stats[proto]
            if st.responses - st.errors <= 0:
                failed.append(f"{proto}: no successful response")
            if st.unexpected > max(1, BAD_RATIO * st.requests):
                failed.append(f"{proto}: {st.unexpected} unexpected failures")
            out.writelines(f"  {proto} problem: {p}\n" for p in st.problems[:3])
            if checks and checks[proto].problems:
                out.writelines(f"  {proto} metrics check: {p}\n" for p in checks[proto].problems)
                failed.append(f"{proto}: the proxy's counters disagree with the traffic")
        if checks is None:
            out.write("warning: could not read the proxy's metrics\n")
        if proxy_exit is not None:
            out.write(f"proxy process: stopped by SIGTERM, exit status {proxy_exit}\n")
            if proxy_exit != 0:
                failed.append(f"the proxy exited with status {proxy_exit}")
                out.writelines(f"  proxy: {line}\n" for line in proxy_log[-10:])
        out.write(f"metrics: {admin}/metrics\n" if admin else "metrics: (no admin address configured)\n")
        if failed:
            if proxy_log and proxy_exit == 0:
                out.write("last lines of the proxy's log:\n")
                out.writelines(f"  proxy: {line}\n" for line in proxy_log[-10:])
            out.write("demo FAILED: " + "; ".join(failed) + "\n")
            return 1
        return 0
    finally:
        if proxy is not None:
            await proxy.stop(grace=STOP_GRACE)
        for s in services:
            await s.stop()


def run_demo(duration: float = 5.0, out: TextIO | None = None, *, in_process: bool = False) -> int:
    """Entry of ``xproto demo``; returns the exit status (0 = the traffic went through).

    The proxy runs as ``xproto proxy -c <the prepared config>`` in a child process (as a
    user runs it, on its own event loop), or in this process with ``in_process=True``.
    """
    out = out or sys.stdout
    if duration <= 0:
        out.write("--duration must be positive\n")
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="xproto-demo-") as tmpdir, \
            asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_demo(duration, out, in_process, tmpdir))
