"""Atheris harness for the HTTP/1.1 codec.

The first byte picks the role (requests / responses / any) and where the stream is split in
two reads; the rest is the stream, decoded with small limits. Invariants: only ProtocolError
escapes; the split gives the same frames (or the same error) as one read; every frame
re-encodes unchanged to its bytes; a changed header re-encodes to a message that decodes
back with that header; the local error reply for a request decodes as a response.

Run: python fuzz/fuzz_http.py fuzz/corpus/http -dict=fuzz/dicts/http.dict -max_total_time=60
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from xproto.codec import Reason, Role
    from xproto.codecs.http import HttpCodec
    from xproto.errors import ProtocolError
    from xproto.frame import Frame, Kind
    from xproto.limits import Limits
    from xproto.testing import decode_chunks

CODEC = HttpCodec()
LIMITS = Limits(http_max_header_bytes=2048, http_max_headers=20, http_max_body=4096)
ROLES = (Role.REQUESTS, Role.RESPONSES, Role.ANY)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    ctl, data = data[0], data[1:]
    role = ROLES[ctl % 3]
    CODEC.match(data)
    whole = decode_chunks(CODEC, [data], role, LIMITS)
    cut = (ctl * 131) % (len(data) + 1)
    parts = decode_chunks(CODEC, [data[:cut], data[cut:]], role, LIMITS)
    assert whole.same_as(parts), (cut, whole, parts)
    dec = CODEC.new_decoder(role, LIMITS)
    try:
        frames, _ = dec.decode_all(data)
    except ProtocolError:
        return
    for f in frames:
        assert CODEC.encode(f) == f.raw
        h = f.headers
        h["x-fuzz"] = "1"
        out = CODEC.encode(f)
        back = CODEC.new_decoder(Role.RESPONSES if f.kind is Kind.RESPONSE else Role.REQUESTS,
                                 LIMITS.with_overrides(http_max_headers=21)).decode(out, 0)
        if isinstance(back, Frame):
            assert back.headers.get("x-fuzz") == "1"
        if f.kind is Kind.REQUEST:
            rep = CODEC.error_reply(f, Reason.NO_ROUTE)
            rdec = CODEC.new_decoder(Role.RESPONSES)
            rdec.request_sent(f)          # a reply to HEAD has no body
            r = rdec.decode(rep.raw, 0)
            assert isinstance(r, Frame) and r.status == 404


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
