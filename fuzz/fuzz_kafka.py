"""Atheris harness for the Kafka codec and the broker-address rewriter.

Decodes arbitrary bytes as requests, then as responses to those requests (so typed
responses, kio parsing and the address rewriting run on hostile bytes) and in Role.ANY;
reads the lazy headers, re-encodes unchanged and with a patched correlation id, decodes the
result again. Only ProtocolError may escape; anything else, or a round trip that does not
give the same frame back, is a crash. The first two input bytes (big-endian) give the length
of the request part; the rest is the response part.

Run: python fuzz/fuzz_kafka.py fuzz/corpus/kafka -dict=fuzz/dicts/kafka.dict \
        -rss_limit_mb=2048 -timeout=5 -max_total_time=90
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from xproto.codec import Reason, Role
    from xproto.codecs.kafka import KafkaCodec, kafka_info
    from xproto.codecs.kafka_rewrite import broker_addresses, clamp_api_versions, rewrite_response
    from xproto.errors import ProtocolError
    from xproto.frame import Frame
    from xproto.limits import Limits

LIMITS = Limits(kafka_max_frame=64 * 1024)
CODEC = KafkaCodec(LIMITS)


def check(f: Frame, role: Role) -> None:
    assert CODEC.encode(f) == f.raw
    f.headers  # noqa: B018
    orig = f.request_id
    f.request_id = (orig * 7 + 1) & 0x7FFFFFFF
    # no context: the patched correlation id may belong to another of the fuzzed requests
    g = CODEC.new_decoder(role, LIMITS).decode(CODEC.encode(f))
    assert isinstance(g, Frame) and g.request_id == f.request_id and g.kind is f.kind
    assert g.raw[:4] == f.raw[:4]
    f.request_id = orig


def answering(f: Frame, reqs: list[Frame]):
    """A response decoder that expects exactly the request ``f`` answered (the stream may
    reuse a correlation id for other api versions: those would be answered first)."""
    d = CODEC.new_decoder(Role.RESPONSES, LIMITS)
    fi = kafka_info(f)
    for q in reqs:
        qi = kafka_info(q)
        if q.request_id == f.request_id and (qi.api_key, qi.api_version) == (fi.api_key, fi.api_version):
            d.request_sent(q)
            break
    return d


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    split = int.from_bytes(data[:2], "big")
    reqs_b, resps_b = data[2:2 + split], data[2 + split:]
    CODEC.match(reqs_b)
    try:
        reqs, _ = CODEC.new_decoder(Role.REQUESTS, LIMITS).decode_all(reqs_b)
    except ProtocolError:
        reqs = []
    for f in reqs:
        check(f, Role.REQUESTS)
        if f.kind.value == "request":
            try:
                r = CODEC.error_reply(f, Reason.TIMEOUT)
            except ProtocolError:
                r = None
            if r is not None:
                assert r.request_id == f.request_id
    dec = CODEC.new_decoder(Role.RESPONSES, LIMITS)
    for f in reqs:
        dec.request_sent(f)
    try:
        resps, _ = dec.decode_all(resps_b)
    except ProtocolError:
        resps = []
    for f in resps:
        check(f, Role.RESPONSES)
        try:
            clamped = clamp_api_versions(f)
        except ProtocolError:
            clamped = None
        if clamped is not None:
            d = answering(f, reqs)
            g = d.decode(clamped)
            assert isinstance(g, Frame) and g.raw == clamped and g.request_id == f.request_id
        try:
            addrs = broker_addresses(f)
            out = rewrite_response(f, lambda n, h, p: ("proxy", 1000 + (n & 0xFFF)))
        except ProtocolError:
            continue
        if out is not None:
            d = answering(f, reqs)
            g = d.decode(out)
            assert isinstance(g, Frame) and g.raw == out
            assert broker_addresses(g) == [(n, "proxy", 1000 + (n & 0xFFF)) for n, _h, _p in addrs]
    try:
        CODEC.new_decoder(Role.ANY, LIMITS).decode_all(data[2:])
    except ProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
