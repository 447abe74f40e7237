"""Atheris harness for the SOFA Bolt codec (v1/v2, CRC).

Decodes arbitrary bytes (small limits), runs the matcher, reads the lazy headers,
re-encodes each frame unchanged / with a patched id (CRC recomputed) / with a changed
header block, and decodes the result again. Only ProtocolError may escape the codec.

Run: python fuzz/fuzz_bolt.py fuzz/corpus/bolt -dict=fuzz/dicts/bolt.dict \
        -rss_limit_mb=2048 -timeout=5 -max_total_time=90
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import xproto.framing.fixed
    import xproto.framing.kv_block
    import xproto.hessian2  # noqa: F401  (bodies are parsed through it)
    from xproto.codecs.bolt import BoltCodec
    from xproto.errors import ProtocolError
    from xproto.frame import Frame
    from xproto.limits import Limits

CODEC = BoltCodec()
LIMITS = Limits(bolt_max_frame=64 * 1024, bolt_max_header_block=8 * 1024)


def one(data: bytes) -> Frame:
    f = CODEC.new_decoder(limits=LIMITS).decode(data)
    assert isinstance(f, Frame) and len(f.raw) == len(data), "re-encoded frame does not decode whole"
    return f


def TestOneInput(data: bytes) -> None:
    r = CODEC.match(data)
    assert r in (0, -1) or r > 0
    try:
        frames, _ = CODEC.new_decoder(limits=LIMITS).decode_all(data)
    except ProtocolError:
        return
    for f in frames:
        assert CODEC.match(f.raw) in (0, -1)
        assert CODEC.encode(f) == f.raw
        f.request_id = (f.request_id + 1) & 0xFFFFFFFF
        g = one(CODEC.encode(f))
        assert g.request_id == f.request_id
        try:
            headers = f.headers
        except ProtocolError:
            continue
        assert f.to_json()["headers"] == headers
        f.headers["fuzz"] = "1"
        try:
            out = CODEC.encode(f)
        except ProtocolError:
            continue
        h = one(out)
        assert h.request_id == f.request_id and h.headers.get("fuzz") == "1"


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
