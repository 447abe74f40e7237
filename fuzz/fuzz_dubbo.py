"""Atheris harness for the Dubbo codec.

Decodes arbitrary bytes (with small limits so huge declared lengths are exercised), reads
the lazy headers, re-encodes each frame unchanged / with a patched id / with a changed
header, and decodes the result again. Only ProtocolError may escape the codec; anything
else, or a round trip that does not give the same frame back, is a crash.

Run: python fuzz/fuzz_dubbo.py fuzz/corpus/dubbo -dict=fuzz/dicts/dubbo.dict \
        -rss_limit_mb=2048 -timeout=5 -max_total_time=90
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import xproto.framing.fixed
    import xproto.framing.kv_block
    import xproto.hessian2  # noqa: F401  (bodies are parsed through it)
    from xproto.codecs.dubbo import DubboCodec
    from xproto.errors import ProtocolError
    from xproto.frame import Frame
    from xproto.limits import Limits

CODEC = DubboCodec()
LIMITS = Limits(dubbo_max_body=64 * 1024)


def one(data: bytes) -> Frame:
    f = CODEC.new_decoder(limits=LIMITS).decode(data)
    assert isinstance(f, Frame) and len(f.raw) == len(data), "re-encoded frame does not decode whole"
    return f


def TestOneInput(data: bytes) -> None:
    try:
        frames, _ = CODEC.new_decoder(limits=LIMITS).decode_all(data)
    except ProtocolError:
        return
    for f in frames:
        assert CODEC.encode(f) == f.raw
        f.request_id = (f.request_id + 1) & ((1 << 63) - 1)
        g = one(CODEC.encode(f))
        assert g.request_id == f.request_id and g.raw[12:] == f.raw[12:]
        try:
            headers = f.headers
        except ProtocolError:
            continue
        j = f.to_json()
        assert j["headers"] == headers
        if headers and f.kind.value != "response":
            f.headers["fuzz"] = "1"
            try:
                out = CODEC.encode(f)
            except ProtocolError:
                continue
            h = one(out)
            assert h.request_id == f.request_id
            assert h.headers == f.headers, (h.headers, f.headers)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
