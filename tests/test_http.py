"""HTTP/1.1 codec: framing, behaviour, limits, and Hypothesis properties."""
from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xproto.codec import MATCH, NO_MATCH, PoolMode, Reason, Role
from xproto.codecs.http import H2_PREFACE, HttpCodec
from xproto.errors import LimitExceeded, ProtocolError
from xproto.frame import Frame, Kind
from xproto.limits import DEFAULT_LIMITS, Limits
from xproto.testing import CodecProperties, decode_chunks, split

CODEC = HttpCodec()
FIX = Path(__file__).resolve().parent.parent / "fixtures" / "http"


def fx(name: str) -> bytes:
    return bytes.fromhex("".join((FIX / f"{name}.hex").read_text().split()))


def decode_all(data: bytes, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS,
               sent: list[Frame] | None = None) -> list[Frame]:
    dec = CODEC.new_decoder(role, limits)
    for f in sent or []:
        dec.request_sent(f)
    frames, used = dec.decode_all(data)
    assert used == len(data)
    return frames


# --- matcher ----------------------------------------------------------------------------
@pytest.mark.parametrize("start", [b"GET ", b"POST /", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS *",
                                   b"PATCH ", b"CONNECT ", b"TRACE ", b"HTTP/1.1 200", b"PRI * HTTP/2.0"])
def test_match_methods(start: bytes) -> None:
    assert CODEC.match(start) == MATCH


def test_match_needs_more_then_decides() -> None:
    assert CODEC.match(b"") > 0
    assert CODEC.match(b"G") == 3
    assert CODEC.match(b"OPTION") == 2
    assert CODEC.match(b"HTTP/1") == 1
    for weak in (b"\x01", b"\x00\x00\x01", b"\xda\xbb", b"GEX", b"get ", b"GET/", b"\x80\x01\x00\x01"):
        assert CODEC.match(weak) == NO_MATCH, weak
    assert CODEC.match_bytes == 8


def test_attributes() -> None:
    assert CODEC.pool_mode is PoolMode.PINGPONG
    assert CODEC.request_id_bits == 0
    f = decode_all(fx("aiohttp-client.http1-request"))[0]
    f.request_id = 99
    assert CODEC.encode(f) == f.raw      # no id on the wire: nothing to patch


# --- framing ----------------------------------------------------------------------------
def test_wire_request_headers() -> None:
    f, = decode_all(fx("httpx.http1-request"), Role.REQUESTS)
    assert f.kind is Kind.REQUEST and f.request_id == 0 and f.status is None
    h = f.headers
    assert h[":method"] == "POST" and h[":path"] == "/api/v1/orders?id=42"
    assert h[":authority"] == "127.0.0.1:18081" and h["x-request-id"] == "0a1b2c3d4e5f"
    assert bytes(f.body) == b'{"item":"book","qty":2}'


def test_pipelined_positions() -> None:
    frames = decode_all(fx("pipelined-requests"), Role.REQUESTS)
    assert [f.request_id for f in frames] == [0, 1, 2]
    assert [f.headers[":method"] for f in frames] == ["GET", "POST", "DELETE"]
    assert CODEC.keep_alive(frames[1]) and not CODEC.keep_alive(frames[2])


def test_chunked_kept_as_received() -> None:
    data = fx("chunked-request")
    f, = decode_all(data, Role.REQUESTS)
    assert f.raw == data and bytes(f.body).startswith(b"5\r\nhello\r\n")
    assert "x-checksum" not in f.headers   # trailers are not head fields


def test_head_response_has_no_body() -> None:
    reqs = decode_all(fx("head-then-get-requests"), Role.REQUESTS)
    resps = decode_all(fx("head-then-get-responses"), Role.RESPONSES, sent=reqs)
    assert [len(f.body) for f in resps] == [0, 4]
    # without knowing the request was HEAD, the first response swallows the second's head
    dec = CODEC.new_decoder(Role.RESPONSES)
    r = dec.decode(fx("head-then-get-responses"), 0)
    assert isinstance(r, Frame) and bytes(r.body) == b"HTTP"


def test_http10_body_until_close() -> None:
    data = fx("http10-response-until-close")
    dec = CODEC.new_decoder(Role.RESPONSES)
    assert dec.decode(data, 0) == 1
    f = dec.eof(data, 0)
    assert f is not None and f.raw == data and not CODEC.keep_alive(f)
    assert CODEC.new_decoder(Role.RESPONSES).eof(data[:10], 0) is None  # a truncated head stays truncated
    dec = CODEC.new_decoder(Role.RESPONSES)
    assert dec.decode(data[:10], 0) == 1
    f = dec.eof(data, 0)                   # more bytes arrived after the last decode
    assert f is not None and f.raw == data


def test_interim_and_bodiless_responses() -> None:
    reqs = decode_all(fx("expect-continue-requests"), Role.REQUESTS)
    resps = decode_all(fx("interim-204-304-responses"), Role.RESPONSES, sent=reqs)
    assert [(f.status, f.request_id) for f in resps] == [(100, 0), (204, 0), (304, 1)]
    assert [CODEC.is_interim(f) for f in resps] == [True, False, False]
    assert not CODEC.is_interim(reqs[0])


def test_h2c_preface_reported() -> None:
    data = fx("httpx.h2c-prior-knowledge-preface")
    dec = CODEC.new_decoder(Role.REQUESTS)
    for n in (1, 4, 10, 23):
        assert dec.decode(data[:n], 0) > 0      # could still be the preface: wait
    with pytest.raises(ProtocolError, match="HTTP/2 preface") as ei:
        dec.decode(data, 0)
    assert ei.value.offset == 0 and ei.value.protocol == "http"
    assert H2_PREFACE == data[:24]


def test_after_101_no_more_http() -> None:
    data = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            b"\x81\x05hello")
    dec = CODEC.new_decoder(Role.RESPONSES)
    f = dec.decode(data, 0)
    assert isinstance(f, Frame) and f.status == 101
    with pytest.raises(ProtocolError, match="left HTTP"):
        dec.decode(data, len(f.raw))


@pytest.mark.parametrize("bad", [
    b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /a b HTTP/1.1\r\n\r\n",
    b"\r\n\r\n",
])
def test_bad_messages(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        CODEC.new_decoder(Role.REQUESTS).decode_all(bad)


@pytest.mark.parametrize("bad,role", [
    (b"HTTP/1.1 010 Continue\r\n\r\n", Role.RESPONSES),      # llhttp takes any 3 digits
    (b"PRI */1.TP/1.0\r\n\r\n", Role.REQUESTS),             # an HTTP/0.9 request line
    (b"GET /x\r\n\r\n", Role.ANY),
])
def test_fuzz_regressions(bad: bytes, role: Role) -> None:
    with pytest.raises(ProtocolError):
        CODEC.new_decoder(role).decode_all(bad)


# --- limits: the verdict does not depend on chunking --------------------------------------
SMALL = Limits(http_max_header_bytes=200, http_max_headers=5, http_max_body=100)


@pytest.mark.parametrize("data,what", [
    (b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 300, "header bytes"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(8)) + b"\r\n", "header count"),
    (b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", "body"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + b"a" * 64 + b"\r\n40\r\n", "body"),
])
def test_limits_whatever_the_chunking(data: bytes, what: str) -> None:
    for cuts in ([], list(range(len(data))), [7, 50, 199, 200, 201]):
        out = decode_chunks(CODEC, split(data, cuts), Role.REQUESTS, SMALL)
        assert out.error == "LimitExceeded", (cuts, out)
    with pytest.raises(LimitExceeded, match=what):
        CODEC.new_decoder(Role.REQUESTS, SMALL).decode(data, 0)


def test_default_header_limit_is_60k() -> None:
    data = b"GET / HTTP/1.1\r\nX: " + b"a" * (60 * 1024)
    assert CODEC.new_decoder(Role.REQUESTS).decode(data[:60 * 1024 - 1], 0) == 1
    with pytest.raises(LimitExceeded):
        CODEC.new_decoder(Role.REQUESTS).decode(data, 0)


# --- behaviour ------------------------------------------------------------------------------
@pytest.mark.parametrize("reason,status", [
    (Reason.NO_ROUTE, 404), (Reason.UPSTREAM_RESET, 502), (Reason.OVERFLOW, 503),
    (Reason.NO_HEALTHY_UPSTREAM, 503), (Reason.TIMEOUT, 504), (Reason.BAD_REQUEST, 400)])
def test_error_reply(reason: Reason, status: int) -> None:
    req, = decode_all(fx("httpx.http1-request"), Role.REQUESTS)
    rep = CODEC.error_reply(req, reason)
    assert rep.kind is Kind.RESPONSE and rep.status == status and rep.request_id == req.request_id
    back, = decode_all(rep.raw, Role.RESPONSES)
    assert back.status == status and int(back.headers["content-length"]) == len(back.body) > 0
    assert "connection" not in back.headers
    assert CODEC.status_to_http(rep) == status


def test_error_reply_close_and_head() -> None:
    req, = decode_all(b"HEAD /x HTTP/1.1\r\nConnection: close\r\n\r\n", Role.REQUESTS)
    rep = CODEC.error_reply(req, Reason.NO_ROUTE, "nothing here")
    back, = decode_all(rep.raw, Role.RESPONSES, sent=[req])
    assert back.headers["connection"] == "close" and len(back.body) == 0
    assert back.headers["content-length"] == str(len("nothing here\n"))


def test_local_reply_fixture_matches_error_reply() -> None:
    req, = decode_all(fx("httpx.http1-request"), Role.REQUESTS)
    assert CODEC.error_reply(req, Reason.NO_HEALTHY_UPSTREAM).raw == fx("local-reply-503")


@pytest.mark.parametrize("status,mapped", [(101, 200), (200, 200), (204, 200), (302, 200), (400, 400),
                                           (401, 400), (404, 404), (429, 400), (500, 500), (501, 500),
                                           (502, 502), (503, 503), (504, 504), (599, 500)])
def test_status_to_http(status: int, mapped: int) -> None:
    f = Frame(CODEC, Kind.RESPONSE, 0, b"x", status=status)
    assert CODEC.status_to_http(f) == mapped


def test_encode_changed_headers() -> None:
    req, = decode_all(fx("httpx.http1-request"), Role.REQUESTS)
    h = req.headers
    h["x-request-id"] = "changed"
    h["x-added"] = "1"
    del h["user-agent"]
    h[":path"] = "/v2/orders"
    out = CODEC.encode(req)
    back, = decode_all(out, Role.REQUESTS)
    assert back.headers == {k: v for k, v in h.items()}
    assert bytes(back.body) == bytes(req.body)
    assert b"Host: 127.0.0.1:18081\r\n" in out     # untouched lines keep their spelling


def test_encode_changed_rejects_header_injection() -> None:
    req, = decode_all(fx("aiohttp-client.http1-request"), Role.REQUESTS)
    req.headers["x-evil"] = "a\r\nInjected: 1"
    with pytest.raises(ProtocolError):
        CODEC.encode(req)


# --- Hypothesis properties -----------------------------------------------------------------
_SPECIAL = {"content-length", "transfer-encoding", "connection", "upgrade", "host", "expect",
            "te", "trailer", "keep-alive", "proxy-connection"}
name_st = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=10).filter(
    lambda s: s.lower() not in _SPECIAL)
value_st = st.text(string.ascii_letters + string.digits + " ;=/.,:-_", max_size=20).map(str.strip)
headers_st = st.dictionaries(name_st.map(str.lower), value_st, max_size=6)
path_st = st.text(string.ascii_letters + string.digits + "/?=&.-_%", min_size=0, max_size=20).map(
    lambda s: "/" + s)
method_st = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])


@st.composite
def body_st(draw: st.DrawFn, allow_close: bool = False) -> tuple[str, bytes, list[int]]:
    kinds = ["none", "length", "chunked"] + (["close"] if allow_close else [])
    return draw(st.sampled_from(kinds)), draw(st.binary(max_size=80)), draw(
        st.lists(st.integers(1, 30), max_size=4))


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, i = b"", 0
    for s in sizes + [len(body)]:
        piece = body[i:i + s]
        if piece:
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
        i += len(piece)
    return out + b"0\r\n\r\n"


def build(start: str, headers: dict[str, str], body: tuple[str, bytes, list[int]]) -> bytes:
    kind, payload, sizes = body
    head = [start] + [f"{k}: {v}" for k, v in headers.items()]
    if kind == "length":
        head.append(f"content-length: {len(payload)}")
        tail = payload
    elif kind == "chunked":
        head.append("transfer-encoding: chunked")
        tail = _chunked(payload, sizes)
    elif kind == "close":
        tail = payload
    else:
        tail = b""
    return ("\r\n".join(head) + "\r\n\r\n").encode() + tail


@st.composite
def request_st(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    method, path, headers = draw(method_st), draw(path_st), draw(headers_st)
    data = build(f"{method} {path} HTTP/1.1", headers, draw(body_st()))
    return data, {":method": method, ":path": path, **headers}


@given(st.lists(request_st(), min_size=1, max_size=4), st.lists(st.integers(0, 4096), max_size=10))
def test_requests_round_trip_and_split(msgs: list[tuple[bytes, dict[str, str]]], cuts: list[int]) -> None:
    data = b"".join(m for m, _ in msgs)
    whole = decode_chunks(CODEC, [data], Role.REQUESTS)
    assert whole.error is None and whole.leftover == 0
    assert len(whole.frames) == len(msgs)
    for i, ((js, raw), (m, h)) in enumerate(zip(whole.frames, msgs)):
        assert raw == m and js["request_id"] == i
        got = {k: v for k, v in js["headers"].items() if k not in ("content-length", "transfer-encoding")}
        assert got == h
    assert decode_chunks(CODEC, split(data, cuts), Role.REQUESTS).same_as(whole)
    for f in decode_all(data, Role.REQUESTS):
        assert CODEC.encode(f) == f.raw


@given(st.lists(st.tuples(method_st, st.sampled_from([100, 200, 204, 301, 304, 404, 500]), headers_st,
                          body_st()), min_size=1, max_size=4),
       body_st(allow_close=True), st.lists(st.integers(0, 4096), max_size=10))
def test_responses_follow_their_requests(
        exchanges: list[tuple[str, int, dict[str, str], tuple[str, bytes, list[int]]]],
        last_body: tuple[str, bytes, list[int]], cuts: list[int]) -> None:
    reqs, resps, expect = [], b"", []
    for i, (method, status, headers, body) in enumerate(exchanges):
        reqs.append(build(f"{method} /{i} HTTP/1.1", {}, ("none", b"", [])))
        if status == 100:
            # an interim response precedes the final one for the same request
            resps += b"HTTP/1.1 100 Continue\r\n\r\n"
            expect.append((100, i))
            status = 200
        if status in (204, 304):
            body = ("none", b"", [])
        elif method == "HEAD":
            # the head may announce a length; no body follows
            if body[0] != "none":
                headers = {**headers, "content-length": "12"}
            body = ("none", b"", [])
        elif body[0] == "none":
            body = ("length", b"", [])     # a final response without a length would end at close
        resps += build(f"HTTP/1.1 {status} X", headers, body)
        expect.append((status, i))
    if last_body[0] == "close":
        resps += build("HTTP/1.1 200 OK", {}, last_body)
        reqs.append(b"GET /last HTTP/1.1\r\n\r\n")
        expect.append((200, len(exchanges)))
    sent = decode_all(b"".join(reqs), Role.REQUESTS)
    whole = decode_chunks(CODEC, [resps], Role.RESPONSES, context=sent)
    assert whole.error is None and whole.leftover == 0, whole
    assert [(js["status"], js["request_id"]) for js, _ in whole.frames] == expect
    assert decode_chunks(CODEC, split(resps, cuts), Role.RESPONSES, context=sent).same_as(whole)


@given(request_st(), headers_st)
def test_changed_headers_re_encode(msg: tuple[bytes, dict[str, str]], extra: dict[str, str]) -> None:
    f, = decode_all(msg[0], Role.REQUESTS)
    h = f.headers
    for k, v in extra.items():
        h[k] = v + "x"
    back, = decode_all(CODEC.encode(f), Role.REQUESTS)
    assert back.headers == h and bytes(back.body) == bytes(f.body)


SAMPLES = [fx(n) for n in ("aiohttp-client.http1-request", "httpx.http1-request", "chunked-request",
                           "pipelined-requests", "aiohttp-server.http1-response", "chunked-response",
                           "keepalive-responses", "http10-response-until-close")]


def test_kit_properties_default_limits() -> None:
    CodecProperties(CODEC, SAMPLES, role=Role.ANY, max_examples=150).check_all()


def test_kit_properties_small_limits() -> None:
    # small limits put the limit checks in the path of most mutations and splits
    p = CodecProperties(CODEC, SAMPLES[:4], role=Role.REQUESTS, max_examples=150,
                        limits=Limits(http_max_header_bytes=180, http_max_headers=6, http_max_body=20))
    p.check_split_invariance()
    p.check_mutations()
