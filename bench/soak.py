"""Soak: a bounded mixed-protocol load through the proxy for several minutes (issue 5).

    python bench/soak.py                 # 3 minutes
    python bench/soak.py --minutes 10 --scale 2

The proxy runs as its own process (``xproto proxy -c FILE``, the way users run it) on the
demo's config (:mod:`xproto.demo`: one port auto-detecting dubbo, bolt, thrift, kafka and
http, plus an http-only port); the demo's sample services and clients run here, all five
protocols concurrently, closed-loop (``--scale`` multiplies the demo's connections). The
clients check every answer (ids, payloads) and mix in one-way calls, heartbeats, Kafka
acks=0, chunked HTTP and requests that have no route (answered locally by the proxy).

Every 10 s it prints the proxy's RSS and the running counts; at the end: requests sent,
answers received, lost (requests that expect an answer and got none: must be 0),
unexpected errors, p50/p99 per protocol, and the RSS trend after warm-up (must be flat).
Exit status 0 only if nothing was lost, nothing unexpected happened and RSS stayed flat.

Not run in CI (minutes long); the README's numbers come from here.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from xproto.demo import PROTOCOLS, fetch, load_template, prepare_config
from xproto.demo.clients import _WORKERS, PLANS, Budget, Slot, Stats, _kafka_worker
from xproto.demo.services import SERVICE_CLASSES, FrameServer

SAMPLE_EVERY = 10.0
WARMUP = 30.0                 # RSS before this is allowed to grow (pools, caches, metrics)
#: after warm-up, RSS is "flat" unless it trends up: least-squares slope over the samples
#: above this many MiB per minute *and* a total rise above RSS_GROWTH_SLACK
RSS_SLOPE_LIMIT = 0.5
RSS_GROWTH_SLACK = 2 * 1024 * 1024
CALL_TIMEOUT = 5.0


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def rss_slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, MiB per minute (0 with fewer than 3 samples)."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((t - mt) * (r - mr) for t, r in samples)
    return cov / var * 60 / 2**20


def expected_answers(st: Stats) -> int:
    """Requests written that the protocol answers (one-way and acks=0 get none)."""
    return st.requests - st.counts.get("oneway", 0) - st.counts.get("produce_acks0", 0)


def pct(st: Stats, q: float) -> str:
    v = st.percentile(q)
    return "-" if v is None else f"{v * 1000:.2f}"


def start_proxy(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``xproto proxy -c config`` as a child process, its output into ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "xproto.cli", "proxy", "-c", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)


async def wait_ready(admin: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited with {proc.returncode}")
        try:
            status, _ = await asyncio.to_thread(fetch, admin + "/ready", 1.0)
        except OSError:
            status = 0
        if status == 200:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("proxy not ready")


async def soak(minutes: float, scale: int, out: Any) -> int:
    duration = minutes * 60.0
    template = load_template()
    services: list[FrameServer] = []
    proc: subprocess.Popen[bytes] | None = None
    tmp = tempfile.TemporaryDirectory(prefix="xproto-soak-")
    try:
        addrs: dict[str, list[str]] = {}
        for c in template["clusters"]:
            for k in range(len(c["endpoints"])):
                s = await SERVICE_CLASSES[c["protocol"]](f"{c['name']}#{k}").start()
                services.append(s)
                addrs.setdefault(c["name"], []).append(s.address)
        cfg = prepare_config(template, addrs)
        path = Path(tmp.name) / "soak.yaml"
        path.write_text(yaml.safe_dump(cfg))
        proc = start_proxy(path, Path(tmp.name) / "proxy.log")
        admin = "http://" + cfg["admin"]["address"]
        await wait_ready(admin, proc)

        def addr(name: str) -> tuple[str, int]:
            a = next(li["address"] for li in cfg["listeners"] if li["name"] == name)
            h, _, p = a.rpartition(":")
            return h, int(p)
        rpc, web = addr("rpc"), addr("web")
        kcfg = next(li["kafka"] for li in cfg["listeners"] if li.get("kafka"))
        lo, _, hi = str(kcfg["broker_ports"]).partition("-")
        brokers = {s.port for s in services if s.protocol == "kafka"}

        def broker_ok(host: str, port: int) -> str | None:
            if port in brokers:
                return "the real broker's address leaked through the proxy"
            if not int(lo) <= port <= int(hi):
                return "not a proxy broker address"
            return None

        out.write(f"soak: proxy pid {proc.pid}, {minutes:g} min, scale {scale}, "
                  f"protocols {', '.join(PROTOCOLS)}; rpc {rpc[1]} web {web[1]}\n")
        out.flush()

        # the clients: the demo's drivers, ``scale`` times the demo's connections
        stats = {p: Stats(p) for p in PROTOCOLS}
        slots: list[Slot] = []
        jobs: list[Any] = []
        targets = {p: [rpc] for p in PROTOCOLS}
        targets["http"] = [rpc, web]
        for proto, taddrs in targets.items():
            plan = PLANS[proto]
            budget = Budget(duration, 10**12)
            for k in range(max(plan.conns, len(taddrs)) * scale):
                slot = Slot(proto, taddrs[k % len(taddrs)], stats[proto], fifo=plan.fifo,
                            timeout=CALL_TIMEOUT)
                slots.append(slot)
                for _ in range(plan.inflight):
                    if proto == "kafka":
                        jobs.append(_kafka_worker(stats[proto], slot, budget, broker_ok))
                    else:
                        jobs.append(_WORKERS[proto](stats[proto], slot, budget))

        samples: list[tuple[float, int]] = []
        t0 = time.monotonic()

        async def sampler() -> None:
            while True:
                await asyncio.sleep(SAMPLE_EVERY)
                el = time.monotonic() - t0
                r = rss(proc.pid)  # type: ignore[union-attr]
                samples.append((el, r))
                sent = sum(s.requests for s in stats.values())
                got = sum(s.responses for s in stats.values())
                out.write(f"  t={el:6.0f}s  proxy RSS {r / 2**20:7.1f} MiB  sent {sent:8d}  "
                          f"answered {got:8d}  ({sent / el:.0f} req/s)\n")
                out.flush()

        samp = asyncio.create_task(sampler())
        try:
            await asyncio.gather(*jobs)
        finally:
            samp.cancel()
            for slot in slots:
                await slot.close()
        elapsed = time.monotonic() - t0
        samples.append((elapsed, rss(proc.pid)))

        # --- report ---------------------------------------------------------------------
        out.write(f"\n{'protocol':8} {'sent':>9} {'answered':>9} {'no-reply':>8} {'lost':>5} "
                  f"{'errors':>7} {'unexpected':>10} {'p50 ms':>8} {'p99 ms':>8}\n")
        tot_sent = tot_ans = tot_lost = tot_unexp = 0
        for p in PROTOCOLS:
            st = stats[p]
            exp = expected_answers(st)
            lost = exp - st.responses
            tot_sent += st.requests
            tot_ans += st.responses
            tot_lost += lost
            tot_unexp += st.unexpected
            out.write(f"{p:8} {st.requests:9d} {st.responses:9d} {st.requests - exp:8d} {lost:5d} "
                      f"{st.errors:7d} {st.unexpected:10d} {pct(st, 0.5):>8} {pct(st, 0.99):>8}\n")
            for msg in st.problems[:3]:
                out.write(f"    {p} problem: {msg}\n")
        out.write(f"{'total':8} {tot_sent:9d} {tot_ans:9d} {'':8} {tot_lost:5d} {'':7} {tot_unexp:10d}\n")
        out.write(f"{tot_sent} requests in {elapsed:.0f} s ({tot_sent / elapsed:.0f}/s); errors are "
                  "the requests deliberately sent where no route leads (local replies)\n")
        after = [(t, r) for t, r in samples if t >= WARMUP] or samples[-1:]
        first, last = after[0][1], after[-1][1]
        peak = max(r for _, r in samples)
        slope = rss_slope(after)
        flat = slope <= RSS_SLOPE_LIMIT or peak - first <= RSS_GROWTH_SLACK
        out.write(f"proxy RSS: after warm-up {first / 2**20:.1f} MiB -> end {last / 2**20:.1f} MiB "
                  f"(peak {peak / 2**20:.1f} MiB, trend {slope:+.2f} MiB/min): "
                  f"{'flat' if flat else 'GROWING'}\n")
        ok = tot_lost == 0 and tot_unexp == 0 and flat and proc.poll() is None
        out.write("soak " + ("OK" if ok else "FAILED") + "\n")
        return 0 if ok else 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)       # drains, exits 0
            try:
                rc = proc.wait(15)
                if rc != 0:
                    out.write(f"proxy exited with {rc} on SIGTERM\n")
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                out.write("proxy did not exit on SIGTERM within 15 s: killed\n")
        for s in services:
            await s.stop()
        if proc is not None and proc.returncode not in (0, None):
            logf = Path(tmp.name) / "proxy.log"
            if logf.exists():
                out.write(logf.read_text(errors="replace")[-3000:])
        tmp.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--scale", type=int, default=1, help="multiplies the demo's connections")
    a = ap.parse_args()
    if a.minutes <= 0 or a.scale < 1:
        ap.error("--minutes must be > 0 and --scale >= 1")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as r:
        return r.run(soak(a.minutes, a.scale, sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
