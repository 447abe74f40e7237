"""Codec micro-benchmark: frames/s of each built-in codec on a typical frame.

    python bench/bench_codecs.py [--seconds 0.3] [--repeat 3] [--json]

Per protocol (a real captured request from /work/shared/wire, copied under fixtures/):
  decode        ``decoder.decode(buf, 0)``: frame the bytes and copy the frame out
  +headers      decode and build the lazy header map (what routing on headers costs)
  encode        ``codec.encode(frame)`` of an unmodified frame (returns its bytes)
  encode+id     the fast path with a patched request id (the multiplexing case)
  struct        baseline: one ``struct.unpack_from`` of the fixed header, nothing else
Each cell is the best of --repeat runs of about --seconds each, single thread, in frames/s.
Missing codecs are skipped.
"""
from __future__ import annotations

import argparse
import json
import platform
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xproto.codec import Role
from xproto.errors import PluginError
from xproto.frame import Frame
from xproto.registry import load_registry

# protocol -> (fixture, role, header struct for the baseline)
CASES: dict[str, tuple[str, Role, struct.Struct]] = {
    "dubbo": ("dubbo/dubbo-ssl-python.dubbo-request", Role.REQUESTS, struct.Struct(">HBBqI")),
    "bolt": ("bolt/anthunder.bolt-request", Role.REQUESTS, struct.Struct(">BBHBIBiHHI")),
    "thrift": ("thrift/thriftpy2.thrift-framed-binary-call", Role.REQUESTS, struct.Struct(">IHBBI")),
    "kafka": ("kafka/kafka-python.kafka-Produce-v9-request", Role.REQUESTS, struct.Struct(">ihhih")),
    "http": ("http/httpx.http1-request", Role.REQUESTS, struct.Struct(">4s")),
}


def _fixture(name: str) -> bytes | None:
    p = ROOT / "fixtures" / f"{name}.hex"
    if not p.exists():
        wire = Path("/work/shared/wire") / f"{name.split('/', 1)[1]}.hex"
        p = wire if wire.exists() else p
    if not p.exists():
        return None
    return bytes.fromhex("".join(p.read_text().split()))


def rate(fn: Callable[[], Any], seconds: float, repeat: int) -> float:
    """Best calls/s of ``fn`` over ``repeat`` runs of about ``seconds`` each."""
    n = 1
    while True:  # calibrate
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > 0.02:
            break
        n *= 4
    loops = max(1, int(n * seconds / dt))
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        dt = time.perf_counter() - t0
        best = max(best, loops / dt)
    return best


def bench(seconds: float, repeat: int) -> list[dict[str, Any]]:
    reg = load_registry(autoload=False)
    rows = []
    for proto, (fixture, role, header) in CASES.items():
        try:
            codec = reg.get(proto)
        except PluginError:
            continue
        data = _fixture(fixture)
        if data is None:
            continue
        dec = codec.new_decoder(role)
        first = dec.decode(data, 0)
        if not isinstance(first, Frame):
            continue
        data = first.raw

        def decode(dec: Any = dec, data: bytes = data) -> Any:
            return dec.decode(data, 0)

        def decode_headers(dec: Any = dec, data: bytes = data) -> Any:
            return dec.decode(data, 0).headers

        frame = dec.decode(data, 0)

        def encode(codec: Any = codec, frame: Frame = frame) -> Any:
            return codec.encode(frame)

        patched = dec.decode(data, 0)
        bits = codec.request_id_bits or 0
        if bits:
            patched.request_id = (patched.request_id + 1) & ((1 << bits) - 1) or 1

        def encode_id(codec: Any = codec, frame: Frame = patched) -> Any:
            return codec.encode(frame)

        unpack = header.unpack_from

        def baseline(unpack: Any = unpack, data: bytes = data) -> Any:
            return unpack(data, 0)

        rows.append({
            "protocol": proto, "frame_len": len(data),
            "decode": rate(decode, seconds, repeat),
            "decode+headers": rate(decode_headers, seconds, repeat),
            "encode": rate(encode, seconds, repeat),
            "encode+id": rate(encode_id, seconds, repeat) if bits else None,
            "struct": rate(baseline, seconds, repeat),
        })
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description="xproto codec micro-benchmark")
    ap.add_argument("--seconds", type=float, default=0.3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = bench(a.seconds, a.repeat)
    if a.json:
        print(json.dumps(rows))
        return 0
    print(f"# {platform.python_implementation()} {platform.python_version()} on {platform.machine()}, "
          f"single thread, best of {a.repeat} x ~{a.seconds}s; frames/s (k = thousand)")
    cols = ["decode", "decode+headers", "encode", "encode+id", "struct"]
    print(f"| protocol | frame bytes | {' | '.join(cols)} |")
    print("|---|---:|" + "---:|" * len(cols))
    for r in rows:
        cells = ["-" if r[c] is None else f"{r[c] / 1000:,.0f}k" for c in cols]
        print(f"| {r['protocol']} | {r['frame_len']} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
