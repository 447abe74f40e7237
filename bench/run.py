"""Proxy benchmark: xproto against the upstream directly, a raw uvloop relay and HAProxy
(TCP mode; nginx as reverse proxy for HTTP), interleaved over several rounds, everything
pinned to one core.

    python bench/run.py --quick          # < 8 minutes: dubbo, bolt, http
    python bench/run.py --full           # + thrift, kafka, more rounds
    python bench/run.py --protocols dubbo --shapes 1x1,8x16 --rounds 2 --seconds 2
    # --workers 2 (target xproto2), the proxies on both cores:
    python bench/run.py --protocols dubbo --shapes 8x16,128x1 --targets relay,xproto,xproto2 --proxy-cores 0,1

A compiled load generator (bench/loadgen.c) and upstream (bench/upstream.c) are built with
gcc on first use. Prints requests/s, p50/p99, the proxy's CPU µs per request (from
/proc/<pid>/stat) and the ratios xproto/relay and xproto/haproxy. A run during which other
processes took CPU on the pinned core is discarded and re-run (once with ``--quick``, which
thus stays under 8 minutes, else twice; a run that still fails is kept and flagged). The load generator validates every response: its id must
be one in flight on that connection (HTTP: in order); a bad id, a broken stream or a closed
connection is an error, and a run with errors is flagged ``ERR`` in the table.

Targets: ``direct`` (the upstream itself), ``relay`` (bench/relay.py), ``haproxy`` (nginx
for HTTP), ``xproto`` (one worker), ``xproto2`` (``--workers 2``). ``--proxy-cores``: the
cores the proxies are pinned to (default: the one core everything shares).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / ".build"
CLK = os.sysconf("SC_CLK_TCK")
CORE = 0
PROXY_CORES = "0"


def build() -> tuple[Path, Path]:
    BUILD.mkdir(exist_ok=True)
    out = []
    for name in ("loadgen", "upstream"):
        src, exe = HERE / f"{name}.c", BUILD / name
        if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
            subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
        out.append(exe)
    return out[0], out[1]


# --- templates: real protocol frames -------------------------------------------------
def templates(proto: str) -> tuple[bytes, bytes]:
    sys.path.insert(0, str(HERE.parent))
    from xproto import hessian2

    if proto == "dubbo":
        w = hessian2.Writer()
        for v in ("2.0.2", "com.example.DemoService", "1.0.0", "sayHello", "Ljava/lang/String;", "world",
                  {"path": "com.example.DemoService", "interface": "com.example.DemoService",
                   "version": "1.0.0", "timeout": "3000"}):
            w.write(v)
        body = w.getvalue()
        req = struct.pack(">HBBqI", 0xDABB, 0xC2, 0, 1, len(body)) + body
        rb = hessian2.dumps(1) + hessian2.dumps("Hello world")
        resp = struct.pack(">HBBqI", 0xDABB, 0x02, 20, 1, len(rb)) + rb
        return req, resp
    if proto == "bolt":
        cls = b"com.alipay.sofa.rpc.core.request.SofaRequest"
        hdr = b""
        for k, v in ((b"service", b"com.example.Greeter:1.0"), (b"sofa_head_method_name", b"sayHello")):
            hdr += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
        content = hessian2.dumps(hessian2.JavaObject(
            "com.alipay.sofa.rpc.core.request.SofaRequest",
            {"targetAppName": None, "methodName": "sayHello",
             "targetServiceUniqueName": "com.example.Greeter:1.0", "requestProps": None,
             "methodArgSigs": hessian2.TypedList(["java.lang.String"], type="[string", fixed=True)})) \
            + hessian2.dumps("world")
        req = struct.pack(">BBHBIBiHHI", 1, 1, 1, 1, 1, 1, 3000, len(cls), len(hdr), len(content)) + cls + hdr + content
        rcls = b"com.alipay.sofa.rpc.core.response.SofaResponse"
        rcontent = hessian2.dumps(hessian2.JavaObject(
            "com.alipay.sofa.rpc.core.response.SofaResponse",
            {"isError": False, "errorMsg": None, "appResponse": "Hello world", "responseProps": None}))
        resp = struct.pack(">BBHBIBHHHI", 1, 0, 2, 1, 1, 1, 0, len(rcls), 0, len(rcontent)) + rcls + rcontent
        return req, resp
    if proto == "http":
        req = b"GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: xproto-loadgen\r\n\r\n"
        body = b"Hello world"
        resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        return req, resp
    if proto == "thrift":
        name = b"sayHello"
        args = b"\x0b\x00\x01" + struct.pack(">I", 5) + b"world" + b"\x00"
        msg = struct.pack(">HHI", 0x8001, 1, len(name)) + name + struct.pack(">i", 1) + args
        req = struct.pack(">I", len(msg)) + msg
        res = b"\x0b\x00\x00" + struct.pack(">I", 11) + b"Hello world" + b"\x00"
        rmsg = struct.pack(">HHI", 0x8001, 2, len(name)) + name + struct.pack(">i", 1) + res
        return req, struct.pack(">I", len(rmsg)) + rmsg
    if proto == "kafka":
        # ApiVersions v0: header v1 (api_key 18, version 0, correlation, client_id)
        cid = b"loadgen"
        body = struct.pack(">hhih", 18, 0, 1, len(cid)) + cid
        req = struct.pack(">i", len(body)) + body
        rbody = struct.pack(">ihi", 1, 0, 1) + struct.pack(">hhh", 18, 0, 3)
        return req, struct.pack(">i", len(rbody)) + rbody
    raise ValueError(proto)


# --- processes -------------------------------------------------------------------
def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pinned(cmd: list[str], cores: str | None = None) -> list[str]:
    return ["taskset", "-c", cores if cores is not None else str(CORE), *cmd]


def start_ready(cmd: list[str], cores: str | None = None, **kw: object) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen(pinned(cmd, cores), stdout=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]
    line = p.stdout.readline()
    if not line.startswith("ready"):
        p.kill()
        raise RuntimeError(f"{cmd[0]} did not start: {line!r}")
    return p, int(line.split()[1])


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port for readiness, bounded by the deadline
    raise RuntimeError(f"port {port} not ready")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def proc_cpu(pid: int) -> float:
    """utime+stime in seconds of a process, its threads and its live children (nginx and
    haproxy workers, `xproto proxy --workers N`)."""
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = _stat(int(d))
        except OSError:
            continue
        if int(d) == pid or int(st[1]) == pid:  # st[1] = ppid
            total += int(st[11]) + int(st[12])
    return total / CLK


def core_busy(cores: set[int]) -> float:
    """Busy seconds (all but idle and iowait) of these cores, summed."""
    total = 0.0
    with open("/proc/stat") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if head.startswith("cpu") and head[3:].isdigit() and int(head[3:]) in cores:
                v = [int(x) for x in line.split()[1:]]
                total += (sum(v) - v[3] - v[4]) / CLK
    return total


def used_cores() -> set[int]:
    cores = {CORE}
    for part in PROXY_CORES.split(","):
        lo, _, hi = part.partition("-")
        cores.update(range(int(lo), int(hi or lo) + 1))
    return cores


#: the load generator's warm-up: not measured (neither its requests nor anyone's CPU)
WARMUP = 0.5


def start_target(kind: str, proto: str, up_port: int, tmp: Path) -> tuple[subprocess.Popen | None, int]:
    if kind == "direct":
        return None, up_port
    port = free_port()
    if kind == "relay":
        p, port = start_ready([sys.executable, str(HERE / "relay.py"), str(port), f"127.0.0.1:{up_port}"],
                              cores=PROXY_CORES)
        return p, port
    if kind == "haproxy":
        if proto == "http" and shutil.which("nginx"):
            conf = tmp / "nginx.conf"
            conf.write_text(f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000000; keepalive_timeout 300s;
  upstream u {{ server 127.0.0.1:{up_port}; keepalive 256; keepalive_requests 1000000000; }}
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://u; proxy_http_version 1.1;
    proxy_set_header Connection ""; }} }} }}
""")
            p = subprocess.Popen(pinned(["nginx", "-c", str(conf), "-p", str(tmp)], PROXY_CORES),
                                 stderr=subprocess.DEVNULL)
        else:
            conf = tmp / "haproxy.cfg"
            conf.write_text(f"""global
  maxconn 8000
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  server s1 127.0.0.1:{up_port}
""")
            p = subprocess.Popen(pinned(["haproxy", "-f", str(conf), "-db"], PROXY_CORES),
                                 stderr=subprocess.DEVNULL)
        wait_port(port, p)
        return p, port
    if kind in ("xproto", "xproto2"):
        workers = 2 if kind == "xproto2" else 1
        conf = tmp / f"{kind}.yaml"
        conf.write_text(f"""listeners:
  - name: bench
    address: 127.0.0.1:{port}
    protocols: [{proto}]
    routes:
      - cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:{up_port}]
    max_connections: {1 if proto != 'http' else 256}
""")
        cmd = [sys.executable, "-m", "xproto.cli", "proxy", "-c", str(conf)]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        p = subprocess.Popen(pinned(cmd, PROXY_CORES), cwd=str(HERE.parent))
        wait_port(port, p)
        return p, port
    raise ValueError(kind)


def stop(p: subprocess.Popen | None) -> None:
    if p is None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def run_load(loadgen: Path, proto: str, port: int, req: Path, conns: int, depth: int, secs: float,
             proxy: subprocess.Popen | None, upstream: subprocess.Popen) -> dict:
    cores = used_cores()
    lg = subprocess.Popen(pinned([str(loadgen), "-a", f"127.0.0.1:{port}", "-P", proto, "-f", str(req),
                                  "-c", str(conns), "-d", str(depth), "-t", str(secs), "-w", str(WARMUP)]),
                          stdout=subprocess.PIPE, text=True)
    # CPU is counted over the load generator's measured window only (its -w warm-up is not:
    # counting it would charge warm-up CPU to the measured requests)
    time.sleep(WARMUP)  # aligns the CPU window with the load generator's clock, not a sync
    cpu0 = proc_cpu(proxy.pid) if proxy else 0.0
    up0 = proc_cpu(upstream.pid)
    lg0 = proc_cpu(lg.pid)
    busy0, t0 = core_busy(cores), time.monotonic()
    out = lg.stdout.read()  # the load generator runs for a bounded time (-t)
    cpu = (proc_cpu(proxy.pid) - cpu0) if proxy else 0.0
    up_cpu = proc_cpu(upstream.pid) - up0
    _, status, ru = os.wait4(lg.pid, 0)
    lg.returncode = os.waitstatus_to_exitcode(status)
    busy1, t1 = core_busy(cores), time.monotonic()
    lines = out.strip().splitlines()
    if not lines:
        res = {"requests": 0, "errors": 1, "seconds": secs, "rps": 0.0, "p50_us": 0, "p90_us": 0,
               "p99_us": 0, "max_us": 0}
    else:
        res = json.loads(lines[-1])
    res["proxy_cpu_us_per_req"] = cpu / res["requests"] * 1e6 if res["requests"] and proxy else 0.0
    res["core_busy"] = (busy1 - busy0) / (t1 - t0)
    res["upstream_cpu"] = up_cpu
    res["exit"] = lg.returncode
    ours = cpu + up_cpu + max(0.0, ru.ru_utime + ru.ru_stime - lg0)
    # CPU the pinned core spent on processes that are not ours, as a fraction of the window
    res["foreign_cpu"] = max(0.0, (busy1 - busy0) - ours) / (t1 - t0)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--protocols", default=None)
    ap.add_argument("--shapes", default=None, help="CONNSxDEPTH list, e.g. 1x1,1x16,8x16,128x1")
    ap.add_argument("--targets", default="direct,relay,haproxy,xproto")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--max-foreign", type=float, default=0.05,
                    help="discard a run when other processes took more than this share of the core")
    ap.add_argument("--json", default=None, help="write all results to this file")
    ap.add_argument("--proxy-cores", default=None,
                    help="taskset core list for the proxies (default: the shared core 0)")
    a = ap.parse_args()
    global PROXY_CORES
    if a.proxy_cores:
        PROXY_CORES = a.proxy_cores
    protos = (a.protocols or ("dubbo,bolt,http,thrift,kafka" if a.full else "dubbo,bolt,http")).split(",")
    shapes = [tuple(int(x) for x in s.split("x")) for s in (a.shapes or "1x1,1x16,8x16,16x1,128x1").split(",")]
    rounds = a.rounds or (3 if a.full else 2)
    secs = a.seconds or (3.0 if a.full else 1.0)
    # --quick stays under 8 minutes even on a busy machine: one retry, not two
    attempts = 3 if a.full or not a.quick else 2
    targets = a.targets.split(",")
    if "haproxy" in targets and not shutil.which("haproxy"):
        print("haproxy not installed (apt-get install haproxy nginx): skipping it", file=sys.stderr)
        targets.remove("haproxy")
    loadgen, upstream = build()
    results: dict = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for proto in protos:
            req, resp = templates(proto)
            (tmp / f"{proto}.req").write_bytes(req)
            (tmp / f"{proto}.resp").write_bytes(resp)
            up, up_port = start_ready([str(upstream), "-P", proto, "-f", str(tmp / f"{proto}.resp")])
            procs = {}
            try:
                for t in targets:
                    procs[t] = start_target(t, proto, up_port, tmp)
                for shape in shapes:
                    for r in range(rounds):
                        for t in targets:  # interleaved: each round visits every target
                            p, port = procs[t]
                            for attempt in range(attempts):
                                res = run_load(loadgen, proto, port, tmp / f"{proto}.req", shape[0], shape[1],
                                               secs, p, up)
                                # our processes are pinned to CORE; if the core was busier than the
                                # processes we started account for, someone else took CPU: re-run
                                if res["exit"] == 0 and res["errors"] == 0 and res["foreign_cpu"] <= a.max_foreign:
                                    break
                                if attempt < attempts - 1:
                                    print(f"discarding {proto} {shape} {t}: exit {res['exit']}, "
                                          f"errors {res['errors']}, foreign cpu {res['foreign_cpu']:.0%}",
                                          file=sys.stderr)
                                else:
                                    print(f"keeping {proto} {shape} {t} after {attempts} attempts: exit {res['exit']}, "
                                          f"errors {res['errors']}, foreign cpu {res['foreign_cpu']:.0%}",
                                          file=sys.stderr)
                            results.setdefault(proto, {}).setdefault(f"{shape[0]}x{shape[1]}", {}) \
                                .setdefault(t, []).append(res)
            finally:
                for p, _ in procs.values():
                    stop(p)
                stop(up)
    print_table(results)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


def med(rs: list[dict], k: str) -> float:
    return statistics.median(r[k] for r in rs)


#: issue 6 targets: xproto's throughput over the raw relay's, per shape (RPC protocols)
RPC_TARGETS = {"8x16": 0.5, "1x16": 0.65, "16x1": 0.9, "128x1": 0.9}
HTTP_TARGETS = {"128x1": 0.85}
#: added latency at 1x1 (xproto minus direct), µs
ADDED_P50_MAX, ADDED_P99_MAX = 22, 45


def print_table(results: dict) -> None:
    hdr = (f"{'proto':7} {'shape':7} {'target':8} {'req/s':>10} {'p50us':>6} {'p99us':>6} "
           f"{'cpu us/req':>10} {'x/relay':>8} {'x/hapx':>7} {'':3}")
    print(hdr)
    print("-" * len(hdr))
    for proto, shapes in results.items():
        for shape, ts in shapes.items():
            relay = med(ts["relay"], "rps") if "relay" in ts else None
            hap = med(ts["haproxy"], "rps") if "haproxy" in ts else None
            for t, rs in ts.items():
                rps = med(rs, "rps")
                mine = t.startswith("xproto")
                r1 = f"{rps / relay:.2f}" if relay and mine else ""
                r2 = f"{rps / hap:.2f}" if hap and mine else ""
                cpu = med(rs, "proxy_cpu_us_per_req")
                bad = "ERR" if any(r["errors"] or r["exit"] for r in rs) else ""
                print(f"{proto:7} {shape:7} {t:8} {rps:10.0f} {med(rs, 'p50_us'):6.0f} {med(rs, 'p99_us'):6.0f} "
                      f"{cpu:10.2f} {r1:>8} {r2:>7} {bad:3}")
    print()
    print("ratios (medians; target: issue 6 minimum)")
    print(f"{'proto':7} {'shape':7} {'target':8} {'x/relay':>8} {'min':>5} {'x/hapx':>7} "
          f"{'+p50us':>7} {'+p99us':>7} {'cpu x/relay':>11}  verdict")
    for proto, shapes in results.items():
        for shape, ts in shapes.items():
            relay = ts.get("relay")
            hap = ts.get("haproxy")
            direct = ts.get("direct")
            for t, rs in ts.items():
                if not t.startswith("xproto"):
                    continue
                rps = med(rs, "rps")
                rr = rps / med(relay, "rps") if relay else None
                rh = rps / med(hap, "rps") if hap else None
                goal = (HTTP_TARGETS if proto == "http" else RPC_TARGETS).get(shape)
                if proto == "http" and shape == "128x1" and hap:
                    goal_v, ratio = goal, rh        # HTTP: against nginx
                else:
                    goal_v, ratio = goal, rr
                add50 = add99 = None
                if direct and shape == "1x1":
                    add50 = med(rs, "p50_us") - med(direct, "p50_us")
                    add99 = med(rs, "p99_us") - med(direct, "p99_us")
                cpu_ratio = (med(rs, "proxy_cpu_us_per_req") / med(relay, "proxy_cpu_us_per_req")
                             if relay and med(relay, "proxy_cpu_us_per_req") else None)
                verdict = []
                if goal_v is not None and ratio is not None:
                    verdict.append("ok" if ratio >= goal_v else f"MISS by {goal_v - ratio:.2f}")
                if add50 is not None:
                    verdict.append("lat ok" if add50 <= ADDED_P50_MAX and add99 <= ADDED_P99_MAX
                                   else "lat MISS")
                f2 = (lambda v: f"{v:.2f}" if v is not None else "")
                f0 = (lambda v: f"{v:.0f}" if v is not None else "")
                print(f"{proto:7} {shape:7} {t:8} {f2(rr):>8} {f2(goal_v):>5} {f2(rh):>7} "
                      f"{f0(add50):>7} {f0(add99):>7} {f2(cpu_ratio):>11}  {' '.join(verdict)}")


if __name__ == "__main__":
    sys.exit(main())
