"""Micro-benchmark of the proxy's per-request Python path, without sockets or an event loop.

A real DownstreamConnection, ListenerRuntime, Cluster, pool and UpstreamConnection, fed with
fake transports: a read of DEPTH requests goes in, the upstream side's written bytes are
answered (ids copied into a response template) in one read, the downstream's written
bytes are checked. Reports µs per request (request + response) -- the part of the proxy's
CPU that is Python, not syscalls -- and optionally a cProfile top list.

    python bench/bench_proxy_path.py                 # dubbo and bolt, depth 16
    python bench/bench_proxy_path.py -P bolt -d 1 --profile
    python bench/bench_proxy_path.py -P dubbo,bolt --paths general,lane-py,lane

Paths: ``general`` (every frame decoded, an Exchange per request), ``lane-py`` (the fast
lane's pure-Python loops), ``lane`` (the fast lane with its C loops, xproto/proxy/_lane.c,
when built). HTTP and other codecs without a scanner take the general path in all three.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from run import templates

from xproto.codec import Role
from xproto.metrics import Metrics
from xproto.pool.batch import Batch
from xproto.pool.cluster import Cluster, ClusterSettings
from xproto.pool.connection import UpstreamConnection
from xproto.proxy.downstream import DownstreamConnection
from xproto.proxy.listener import ListenerRuntime
from xproto.proxy.server import MetricsPoolStats
from xproto.registry import default_registry
from xproto.router import Route


class Loop:
    """time() and timers that never fire (the run is shorter than any timeout)."""

    class H:
        def cancel(self) -> None:
            pass

    def time(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, cb: Any, *a: Any) -> Any:
        return Loop.H()

    def call_at(self, when: float, cb: Any, *a: Any) -> Any:
        return Loop.H()


class Transport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return None


def set_path(path: str) -> None:
    """Which request path the next setup() builds: ``lane`` (the fast lane with its C loops
    when built), ``lane-py`` (the fast lane's pure-Python loops), ``general`` (no lane)."""
    import xproto.proxy.lane as lane_mod
    global PATH
    PATH = path
    if not hasattr(lane_mod, "_NATIVE_BUILT"):
        lane_mod._NATIVE_BUILT = lane_mod._NATIVE
    lane_mod._NATIVE = None if path == "lane-py" else lane_mod._NATIVE_BUILT


PATH = "lane"


def setup(proto: str) -> tuple[DownstreamConnection, Transport, UpstreamConnection, Transport, Any]:
    reg = default_registry()
    codec = reg.get(proto)
    loop: Any = Loop()
    m = Metrics()
    batch = Batch()
    cl = Cluster(ClusterSettings(name="up", endpoints=[("127.0.0.1", 1)]), loop, batch,
                 MetricsPoolStats(m, "up"))
    route = Route("up", 15.0, 0)
    try:
        lr = ListenerRuntime("bench", [codec], lambda f: route, {"up": cl}, m, loop, batch, fixed_route=route)
    except TypeError:   # before issue 6
        lr = ListenerRuntime("bench", [codec], lambda f: route, {"up": cl}, m, loop, batch)
    if PATH == "general":
        lr.lanes_enabled = False
    ep = cl.endpoints[0]
    down = DownstreamConnection(lr)
    bind = down.bind
    pool = ep.bind_pool_for(codec) if bind else ep.pool_for(codec, codec.pool_mode)
    up = UpstreamConnection(pool, codec, pool.multiplex)
    pool.conns.append(up)
    if bind:    # Kafka: the client's own upstream connection (no broker rewriting here)
        up.owner = down
        cl.bound[down] = up
    ut = Transport()
    up.connection_made(ut)
    dt = Transport()
    down.connection_made(dt)
    return down, dt, up, ut, codec


def run(proto: str, depth: int, rounds: int, profile: bool) -> float:
    down, dt, up, ut, codec = setup(proto)
    req, resp = templates(proto)
    dec = codec.new_decoder(Role.REQUESTS)
    tf = dec.decode(req)
    parts = []
    for i in range(depth):      # distinct ids, as a real client sends
        if codec.request_id_bits:
            tf.request_id = 1000 + i
        parts.append(codec.encode(tf))
    reqs = b"".join(parts)
    resp_frame = codec.new_decoder(Role.RESPONSES).decode(resp)

    def answer() -> bytes:
        data = b"".join(ut.out)
        ut.out.clear()
        frames, _ = dec.decode_all(data)
        out = []
        for f in frames:
            if codec.request_id_bits:
                resp_frame.request_id = f.request_id
                out.append(codec.encode(resp_frame))
            else:
                out.append(resp)
        return b"".join(out)

    def one() -> None:
        down.data_received(reqs)
        up.data_received(answer())
        dt.out.clear()

    for _ in range(200):   # warm up, and check the answers arrive
        down.data_received(reqs)
        up.data_received(answer())
        got = b"".join(dt.out)
        dt.out.clear()
        assert len(got) == len(resp) * depth, (len(got), len(resp) * depth)
    # the fake upstream's own work (decode + encode the answers) is measured separately
    down.data_received(reqs)
    sample = b"".join(ut.out)
    t0 = time.process_time()
    for _ in range(rounds):
        ut.out.append(sample)
        answer()
    fake = time.process_time() - t0
    ut.out.append(sample)
    up.data_received(answer())   # answer the sample request: nothing stays in flight
    dt.out.clear()
    prof = cProfile.Profile() if profile else None
    t0 = time.process_time()
    if prof:
        prof.enable()
    for _ in range(rounds):
        one()
    if prof:
        prof.disable()
    total = time.process_time() - t0
    us = (total - fake) / (rounds * depth) * 1e6
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    return us


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-P", "--protocols", default="dubbo,bolt,http")
    ap.add_argument("-d", "--depth", type=int, default=16)
    ap.add_argument("-n", "--rounds", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--paths", default="lane",
                    help="comma list of lane (C loops when built), lane-py, general")
    a = ap.parse_args()
    for path in a.paths.split(","):
        set_path(path)
        for proto in a.protocols.split(","):
            # one request at a time per upstream connection for ping-pong protocols (HTTP/1.1)
            depth = a.depth if default_registry().get(proto).pool_mode.value == "multiplex" else 1
            best = min(run(proto, depth, a.rounds, False) for _ in range(3))
            print(f"{proto:6} depth {depth:3} {path:8}: {best:.2f} µs per request "
                  "(Python path, request + response)")
            if a.profile:
                run(proto, depth, a.rounds, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
