"""Routing reads only the headers its routes test (issue 6: "headers decoded lazily, only
the keys a route needs"): Dubbo routes on body fields read the four leading hessian
strings, not the argument types, arguments or attachments."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from xproto.codec import Role
from xproto.config import parse_config
from xproto.errors import ProtocolError
from xproto.registry import default_registry
from xproto.router import RouteTable

ROOT = Path(__file__).resolve().parent.parent
DUBBO = default_registry().get("dubbo")


def dubbo_request() -> bytes:
    return bytes.fromhex((ROOT / "fixtures" / "dubbo" / "built-request.hex").read_text().strip())


def frame(raw: bytes):  # type: ignore[no-untyped-def]
    f = DUBBO.new_decoder(Role.REQUESTS).decode(raw)
    assert not isinstance(f, int)
    return f


def test_body_keys_read_without_the_rest() -> None:
    full = frame(dubbo_request()).headers
    f = frame(dubbo_request())
    h = DUBBO.route_headers(f, frozenset({"service", "method"}))
    assert h == {k: full[k] for k in ("dubbo", "service", "version", "method")}
    assert f._headers is None            # the frame itself stays unparsed (forwarded as bytes)


def test_other_keys_get_the_full_map() -> None:
    f = frame(dubbo_request())
    h = DUBBO.route_headers(f, frozenset({"service", "x-tenant"}))
    assert h is f.headers and h == frame(dubbo_request()).headers


def _with_broken_tail(raw: bytes) -> bytes:
    """The request with its bytes after the four leading strings replaced by junk."""
    from xproto import hessian2
    r = hessian2.Reader(raw, 16, dialect="hessian2")
    for _ in range(4):
        r.read_string()
    body = raw[16:r.pos] + b"\xff\xff\xff"
    head = bytearray(raw[:16])
    head[12:16] = len(body).to_bytes(4, "big")
    return bytes(head) + body


def test_broken_tail_routes_on_the_strings_it_needs() -> None:
    f = frame(_with_broken_tail(dubbo_request()))
    with pytest.raises(ProtocolError):
        _ = f.headers                   # the full parse meets the junk
    g = frame(_with_broken_tail(dubbo_request()))
    assert DUBBO.route_headers(g, frozenset({"service"}))["service"] == frame(dubbo_request()).headers["service"]


def test_broken_leading_string_is_a_bad_request() -> None:
    raw = dubbo_request()
    head = bytearray(raw[:16])
    head[12:16] = (3).to_bytes(4, "big")
    f = frame(bytes(head) + b"\x30\x10a")      # a string of 16 bytes announced, 1 present
    with pytest.raises(ProtocolError) as e:
        DUBBO.route_headers(f, frozenset({"service"}))
    assert e.value.reply_hint == "bad_request"


def test_route_table_uses_the_partial_read() -> None:
    service = frame(dubbo_request()).headers["service"]
    cfg = parse_config({
        "listeners": [{"name": "l", "address": "127.0.0.1:1", "protocols": ["dubbo"], "routes": [
            {"match": {"headers": {"service": "nope"}}, "cluster": "a"},
            {"match": {"headers": {"service": service}}, "cluster": "b"}]}],
        "clusters": [{"name": "a", "endpoints": ["127.0.0.1:2"]}, {"name": "b", "endpoints": ["127.0.0.1:3"]}],
    })
    table = RouteTable(cfg.listeners[0], random.Random(0))
    f = frame(dubbo_request())
    r = table.route(f)
    assert r is not None and r.cluster == "b"
    assert f._headers is None
