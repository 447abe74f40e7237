"""Atheris harness for the Thrift codec.

Decodes arbitrary bytes in every role with small limits (so huge declared lengths, counts
and depths are exercised), reads the lazy headers, re-encodes each frame unchanged, with a
patched seqid and with a changed header (THeader info header / method name), and decodes the
result again. Only ProtocolError may escape; anything else, or a round trip that does not
give the same frame back, is a crash. The first input byte picks the role.

Run: python fuzz/fuzz_thrift.py fuzz/corpus/thrift -dict=fuzz/dicts/thrift.dict \
        -rss_limit_mb=2048 -timeout=5 -max_total_time=90
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from xproto.codec import Reason, Role
    from xproto.codecs.thrift import Proto, ThriftCodec, Transport, _varint
    from xproto.errors import ProtocolError
    from xproto.frame import Frame
    from xproto.limits import Limits

CODEC = ThriftCodec()
LIMITS = Limits(thrift_max_frame=64 * 1024, thrift_max_depth=16, thrift_max_name=256)
ROLES = (Role.ANY, Role.REQUESTS, Role.RESPONSES)


def one(data: bytes, role: Role = Role.ANY) -> Frame:
    f = CODEC.new_decoder(role, LIMITS).decode(data)
    assert isinstance(f, Frame) and f.raw == data, "re-encoded frame does not decode whole"
    return f


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    role = ROLES[data[0] % 3]
    data = data[1:]
    CODEC.match(data)
    try:
        frames, _ = CODEC.new_decoder(role, LIMITS).decode_all(data)
    except ProtocolError:
        return
    for f in frames:
        assert CODEC.encode(f) == f.raw
        orig = f.request_id
        f.request_id = (orig * 7 + 1) & 0x7FFFFFFF
        g = one(CODEC.encode(f), role)
        assert g.request_id == f.request_id and g.kind is f.kind and g.status == f.status
        g.request_id = orig
        back = CODEC.encode(g)
        m = f.meta
        if m.opaque or m.proto is Proto.BINARY or _varint(orig & 0xFFFFFFFF) == f.raw[m.seqid_off:m.seqid_end]:
            assert back == f.raw
        else:   # an overlong compact seqid varint comes back in its shortest form (shorter frame)
            assert {**one(back, role).to_json(), "frame_len": 0} == {**f.to_json(), "request_id": orig, "frame_len": 0}
        headers = dict(f.headers)
        assert f.to_json()["headers"] == headers
        assert g.headers == headers
        if f.meta.transport is Transport.HEADER:
            f.headers["x-fuzz"] = "1"
        elif "method" in headers and len(f.raw) + 16 < LIMITS.thrift_max_frame and len(
                ((headers["service"] + ":") if "service" in headers else "") .encode("utf-8", "surrogatepass")
                + headers["method"].encode("utf-8", "surrogatepass")) + 1 <= LIMITS.thrift_max_name:
            # (a renamed method must still fit the harness's name limit to decode again)
            f.headers["method"] = headers["method"] + "X"
        else:
            continue
        try:
            out = CODEC.encode(f)
        except ProtocolError:
            continue
        h = one(out, role)
        assert h.request_id == f.request_id
        assert h.headers == f.headers, (h.headers, f.headers)
        if f.kind.value == "request":
            r = CODEC.error_reply(f, Reason.NO_ROUTE)
            if r is not None:
                assert r.request_id == f.request_id and r.status == 1


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
