"""The HTTP codec's fast framing path agrees with the llhttp-only path.

Every stream (valid, odd and hostile heads, bodies, pipelined messages, trailing bytes) is
fed, in the same random chunks, to a fast decoder and to a ``fast=False`` one; both must
give the same sequence of outcomes: frames (bytes, kind, id, status, method, path, reason,
version, keep-alive, body kind, head length, header list and header map), bytes-needed
counts and errors (class, message, offset).

Every test runs twice: with the C scanner (xproto/codecs/_http_scan.c, when built) and with
the pure-Python reference it replaces (``_scan_head_py``); ``test_c_scanner_matches_python``
and its siblings compare the two scanners directly on the same inputs.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xproto.codecs.http as http_mod
from xproto.codec import Role
from xproto.codecs.http import SLOW_ENV, HttpCodec, HttpMeta
from xproto.errors import ProtocolError
from xproto.frame import Frame, Kind
from xproto.limits import DEFAULT_LIMITS

CODEC = HttpCodec()
SCAN_C = http_mod._scan_head_c
SCAN_PY = http_mod._scan_head_py
SMALL = DEFAULT_LIMITS.with_overrides(http_max_header_bytes=200, http_max_headers=5,
                                      http_max_body=50)

# --- strategies ------------------------------------------------------------------------
METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"HEAD", b"CONNECT",
           b"TRACE", b"PRI", b"get", b"FOO", b"GET "]
VERSIONS = [b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1",
                                b"HTTP/1.1 "]
PATH_CHARS = b"abcAZ09/-._~%!$&'()*+,;=:@?#[]\\\"<>{}|^` \t\x7f\x80\xff"
NAMES = [b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"Transfer-Encoding",
         b"transfer-encoding", b"Connection", b"connection", b"Upgrade", b"Proxy-Connection",
         b"Host", b"Accept", b"X-A", b"Expect", b"Keep-Alive", b"Content-Length ", b"X_Y",
         b"Content-Lengthx", b"", b"X\x00", b"X@"]
VALUES = [b"0", b"5", b"12", b"007", b"-1", b"1 2", b"1,1", b"+3", b"99999999999", b"chunked",
          b"gzip, chunked", b"close", b"keep-alive", b"Keep-Alive, Upgrade", b"upgrade",
          b"CLOSE", b"h2c", b"100-continue", b"a b", b"", b" x", b"x ", b"x\t", b"\tx",
          b"x\x7fy", b"x\x80y", b"x\x00y", b"v:w", b"127.0.0.1:8080"]
SEPS = [b": "] * 6 + [b":", b":  ", b" : ", b":\t"]
EOLS = [b"\r\n"] * 12 + [b"\n", b"\r", b"\r\n "]
STATUSES = [200, 201, 204, 304, 100, 101, 103, 301, 404, 500, 599, 600, 99, 0]
REASONS = [b"OK", b"", b"Not Found", b"A  B", b"OK ", b"x\ty", b"\x80"]


CLEAN_METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"HEAD"]
CLEAN_PATH = b"abcAZ09/-._~%!$&'()*+,;=:@?"
CLEAN_NAMES = [b"Connection", b"Host", b"Accept", b"X-Request-Id", b"Content-Type",
               b"User-Agent"]
CL_VALUES = [b"+3", b"1 2", b"-1", b"0x1", b"3 ", b" 3", b"", b"1,1", b"99999999999999999999",
             b"\t3", b"3\t", b"\xd9\xa3", b"3\x00", b"00000000000000000003", b"000000000000000003",
             b"0000000000000000003", b"999999999999999999"]
#: bytes the mutations insert or write over
ODD_BYTES = b" \t\r\n\x00\x7f\x80\xff:,+-0a;\"/"
CLEAN_VALUES = [b"0", b"5", b"12", b"007", b"close", b"keep-alive", b"Keep-Alive", b"CLOSE",
                b"127.0.0.1:8080", b"*/*", b"a b", b"text/plain; charset=utf-8", b"", b"close, te"]


@st.composite
def message(draw: Any, response: bool) -> bytes:
    """Level 0: inside (or at the edge of) the fast path's subset; 1: one odd part;
    2: odd parts everywhere; 3: a level-0 head with a few bytes changed."""
    level = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3, 3, 3]))
    odd = (lambda: draw(st.integers(0, 4)) == 0) if level == 1 else (lambda: level == 2)

    def pick(clean: list[bytes], nasty: list[bytes]) -> bytes:
        return draw(st.sampled_from(nasty if odd() else clean))

    eol = pick([b"\r\n"], EOLS)
    if response:
        status = draw(st.sampled_from(STATUSES[:4] + [404, 500] if not odd() else STATUSES))
        line = pick([b"HTTP/1.1"], VERSIONS) + b" " + b"%03d" % status
        if draw(st.booleans()):
            line += b" " + pick([b"OK", b"Not Found", b""], REASONS)
    else:
        chars = PATH_CHARS if odd() else CLEAN_PATH
        path = b"/" + draw(st.binary(max_size=12).map(
            lambda b: bytes(chars[x % len(chars)] for x in b)))
        if odd():
            path = draw(st.sampled_from([b"*", b"http://h/x", b"h:80", b"", b"//"]))
        line = pick(CLEAN_METHODS, METHODS) + b" " + path + b" " + pick([b"HTTP/1.1"], VERSIONS)
    lines = [line]
    for _ in range(draw(st.integers(0, 7))):
        name = pick(CLEAN_NAMES, NAMES)
        if odd():
            name = draw(st.binary(min_size=1, max_size=6))
        ln = name.lower()
        value = pick([b"0", b"5", b"12", b"007"] if ln == b"content-length" else
                     [b"close", b"keep-alive", b"Keep-Alive", b"CLOSE", b"close, te", b"te , close "]
                     if ln == b"connection" else CLEAN_VALUES, VALUES)
        if odd():
            value = draw(st.binary(max_size=8))
        lines.append(name + pick([b": ", b":", b":  "], SEPS) + value)
    if draw(st.integers(0, 3)) or odd():
        cl = draw(st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-length"]))
        lines.insert(draw(st.integers(1, len(lines))),
                     cl + pick([b": "], SEPS) + pick([b"0", b"5", b"12", b"007"], CL_VALUES))
    head = b"".join(x + (pick([eol], EOLS)) for x in lines) + eol
    if level == 3:
        h = bytearray(head)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(h) - 1))
            if draw(st.booleans()):   # next to a delimiter: where parsers disagree
                spots = [j for j, c in enumerate(h) if c in b": \r\n0123456789"] or [0]
                i = draw(st.sampled_from(spots))
            b = draw(st.sampled_from(ODD_BYTES))
            op = draw(st.integers(0, 3))
            if op == 0:
                h[i] = b
            elif op == 1:
                h.insert(i, b)
            elif op == 2:
                del h[i]
            else:       # duplicate the line around i
                a = h.rfind(b"\n", 0, i) + 1
                z = h.find(b"\n", i) + 1 or len(h)
                h[a:a] = h[a:z]
        head = bytes(h)
    if odd():
        head = draw(st.sampled_from([b"\r\n", b"\r\n\r\n", b"\n"])) + head
    body = draw(st.binary(max_size=20))
    if draw(st.integers(0, 3)):
        # a body as long as the (first) declared length, when it is small and numeric
        for ln in lines[1:]:
            if ln.lower().startswith(b"content-length:"):
                v = ln.split(b":", 1)[1].strip()
                if v.isdigit() and int(v) <= 40:
                    body = bytes(int(v))
                break
        else:
            body = b""
    return head + body


@st.composite
def stream(draw: Any, response: bool) -> bytes:
    data = b"".join(draw(st.lists(message(response), min_size=1, max_size=3)))
    if draw(st.booleans()):
        data += draw(st.sampled_from([b"GET", b"\r\n", b"HTTP/1.1 200 OK\r\n", b"x", b"PRI * HTTP/2.0\r\n"]))
    return data


# --- running a decoder -------------------------------------------------------------
def _meta_view(meta: HttpMeta) -> tuple[Any, ...]:
    return (meta.version, meta.method, meta.path, meta.status, meta.reason, meta.head_len,
            meta.body_kind, meta.keep_alive, meta.upgrade, list(meta.header_list))


def _frame_view(f: Frame) -> tuple[Any, ...]:
    assert isinstance(f.meta, HttpMeta)
    return ("frame", f.raw, f.kind, f.request_id, f.orig_request_id, f.status, bytes(f.body),
            _meta_view(f.meta), f.headers, CODEC.keep_alive(f), CODEC.is_interim(f),
            CODEC.encode(f))


def run(data: bytes, cuts: list[int], role: Role, fast: bool, limits: Any = DEFAULT_LIMITS,
        methods: list[str] | None = None, use_bytearray: bool = False) -> list[Any]:
    """Feed ``data`` in pieces ending at ``cuts`` (then the rest), decode like the proxy."""
    dec = CODEC.new_decoder(role, limits, fast=fast)
    for m in methods or []:
        sent = Frame(CODEC, Kind.REQUEST, 0, b"")
        sent.meta = HttpMeta()
        sent.meta.method = m
        dec.request_sent(sent)
    out: list[Any] = []
    buf = bytearray() if use_bytearray else b""
    pos = 0
    ends = sorted({c for c in cuts if 0 < c < len(data)} | {len(data)})
    prev = 0
    for end in ends:
        buf = buf + data[prev:end] if not use_bytearray else buf + bytearray(data[prev:end])
        prev = end
        while True:
            try:
                r = dec.decode(buf, pos)
            except ProtocolError as e:
                out.append(("error", type(e).__name__, str(e), e.offset, e.reply_hint))
                return out
            if isinstance(r, int):
                out.append(("need", r))
                break
            out.append(_frame_view(r))
            pos += len(r.raw)
    try:
        last = dec.eof(buf, pos)
    except ProtocolError as e:
        out.append(("eof-error", type(e).__name__, str(e), e.offset))
    else:
        out.append(("eof", None if last is None else _frame_view(last)))
    return out


def check(data: bytes, cuts: list[int], role: Role, limits: Any = DEFAULT_LIMITS,
          methods: list[str] | None = None, use_bytearray: bool = False) -> list[Any]:
    slow = run(data, cuts, role, False, limits, methods, use_bytearray)
    fast = run(data, cuts, role, True, limits, methods, use_bytearray)
    assert fast == slow, (data, cuts, role)
    return fast


# --- tests -------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["c", "python"], autouse=True)
def scanner(request: Any) -> Iterator[str]:
    """Run the module once with each fast-path scanner (module scope: Hypothesis-safe)."""
    if request.param == "c" and SCAN_C is None:
        pytest.skip("the C scanner is not built (or XPROTO_PURE_PYTHON=1)")
    saved = http_mod._scan_head
    http_mod._scan_head = SCAN_PY
    if request.param == "c":
        assert SCAN_C is not None
        http_mod._scan_head = SCAN_C
    try:
        yield request.param
    finally:
        http_mod._scan_head = saved


#: XPROTO_HTTP_FASTPATH_EXAMPLES=20000 for a long hunt
PROPS = settings(max_examples=int(os.environ.get("XPROTO_HTTP_FASTPATH_EXAMPLES", "600")),
                 deadline=None, suppress_health_check=list(HealthCheck))


@PROPS
@given(data=stream(False), cuts=st.lists(st.integers(0, 400), max_size=4),
       role=st.sampled_from([Role.REQUESTS, Role.ANY]), small=st.booleans(), ba=st.booleans())
def test_requests_agree(data: bytes, cuts: list[int], role: Role, small: bool, ba: bool) -> None:
    check(data, cuts, role, SMALL if small else DEFAULT_LIMITS, use_bytearray=ba)


@PROPS
@given(data=stream(True), cuts=st.lists(st.integers(0, 400), max_size=4),
       role=st.sampled_from([Role.RESPONSES, Role.ANY]), small=st.booleans(),
       methods=st.lists(st.sampled_from(["GET", "HEAD", "CONNECT", "POST"]), max_size=3))
def test_responses_agree(data: bytes, cuts: list[int], role: Role, small: bool,
                         methods: list[str]) -> None:
    check(data, cuts, role, SMALL if small else DEFAULT_LIMITS, methods)


@settings(max_examples=60, deadline=None)
@given(data=stream(False))
def test_byte_by_byte_agrees(data: bytes) -> None:
    check(data, list(range(len(data))), Role.REQUESTS)


TYPICAL_REQ = (b"POST /api/v1/orders?id=42 HTTP/1.1\r\nHost: 127.0.0.1:18081\r\nAccept: */*\r\n"
               b"Connection: keep-alive\r\nContent-Length: 23\r\nContent-Type: application/json\r\n"
               b"\r\n{\"item\":\"book\",\"qty\":2}")
TYPICAL_RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                b"Server: x\r\n\r\n{\"ok\":true}")


def test_typical_messages_take_the_fast_path() -> None:
    # the fast path leaves the header list unsplit until it is asked for
    f = CODEC.new_decoder(Role.REQUESTS).decode(TYPICAL_REQ + TYPICAL_REQ, 0)
    assert isinstance(f, Frame) and f.raw == TYPICAL_REQ and f.meta._hl is None
    assert f.headers["content-length"] == "23" and f.meta.method == "POST"
    f = CODEC.new_decoder(Role.RESPONSES).decode(TYPICAL_RESP, 0)
    assert isinstance(f, Frame) and f.status == 200 and f.meta._hl is None
    g = CODEC.new_decoder(Role.REQUESTS, fast=False).decode(TYPICAL_REQ, 0)
    assert isinstance(g, Frame) and g.meta._hl is not None
    check(TYPICAL_REQ * 3, [], Role.REQUESTS)
    check(TYPICAL_RESP * 3 + b"HTTP/1.1 204 No Content\r\n\r\n", [], Role.RESPONSES)


NASTY = [
    b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nxx",
    b"GET / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nxx",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\n Folded\r\n\r\nabc",
    b"POST / HTTP/1.1\nContent-Length: 3\n\nabc",
    b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nContent-Length: 3 \r\n\r\nabc",
    b"POST / HTTP/1.1\r\nContent-Length:\t3\r\n\r\nabc",
    b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
    b"GET /a b HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
]


def test_nasty_cases_agree() -> None:
    for data in NASTY:
        for role in (Role.REQUESTS, Role.ANY):
            check(data, [], role)
            check(data, [len(data) // 2], role, SMALL)


def test_slow_env_var_turns_the_fast_path_off() -> None:
    code = ("from xproto.codecs.http import HttpCodec; from xproto.codec import Role;"
            "print(HttpCodec().new_decoder(Role.REQUESTS)._fast)")
    env = {**os.environ, SLOW_ENV: "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "False"
    assert CODEC.new_decoder(Role.REQUESTS)._fast is (os.environ.get(SLOW_ENV, "") in ("", "0"))


FRAMING_NAMES = [b"Content-Length", b"content-length", b"Transfer-Encoding", b"transfer-encoding",
                 b"TRANSFER-ENCODING", b"Connection", b"Upgrade", b"Proxy-Connection",
                 b"Content-Length ", b"Transfer-Encoding ", b"Content-Length\t"]


@st.composite
def one_odd_line(draw: Any, response: bool) -> bytes:
    """A clean message with one odd header line (framing names and values first)."""
    if response:
        start = b"HTTP/1.1 " + draw(st.sampled_from([b"200 OK", b"404 Not Found", b"500 x"]))
    else:
        start = draw(st.sampled_from(CLEAN_METHODS)) + b" /p?q=1 HTTP/1.1"
    lines = [start, b"Host: h", b"Content-Length: 3", b"Connection: keep-alive"]
    lines = lines[:1] + draw(st.lists(st.sampled_from(lines[1:]), max_size=3, unique=True))
    name = draw(st.sampled_from(FRAMING_NAMES) | st.sampled_from(NAMES)
                | st.binary(min_size=1, max_size=6))
    value = draw(st.sampled_from(CL_VALUES + VALUES) | st.binary(max_size=8))
    odd = name + draw(st.sampled_from(SEPS)) + value
    lines.insert(draw(st.integers(1, len(lines))), odd)
    if draw(st.booleans()):
        lines.insert(draw(st.integers(1, len(lines))), odd)     # twice
    return b"\r\n".join(lines) + b"\r\n\r\n" + b"abcdefghijklmnopqrstuvwxyz"[:draw(st.integers(0, 26))]


@PROPS
@given(data=one_odd_line(False), cuts=st.lists(st.integers(0, 200), max_size=2))
def test_one_odd_request_line_agrees(data: bytes, cuts: list[int]) -> None:
    check(data, cuts, Role.REQUESTS)


@PROPS
@given(data=one_odd_line(True), cuts=st.lists(st.integers(0, 200), max_size=2),
       methods=st.lists(st.sampled_from(["GET", "HEAD", "POST"]), max_size=2))
def test_one_odd_response_line_agrees(data: bytes, cuts: list[int], methods: list[str]) -> None:
    check(data, cuts, Role.RESPONSES, methods=methods)


# --- the C scanner against its Python reference ------------------------------------------
def same_scan(buf: bytes, pos: int, limit: int, is_response: bool, max_headers: int,
              max_body: int) -> Any:
    assert SCAN_C is not None
    want = SCAN_PY(buf, pos, limit, is_response, max_headers, max_body)
    for b in (buf, bytearray(buf)):
        got = SCAN_C(b, pos, limit, is_response, max_headers, max_body)
        assert got == want, (buf, pos, limit, is_response, max_headers, max_body)
        # same types too (True == 1, "GET" == "GET" but a bool must stay a bool)
        assert [type(x) for x in got or ()] == [type(x) for x in want or ()]
    return want


needs_c = pytest.mark.skipif(SCAN_C is None, reason="the C scanner is not built (or XPROTO_PURE_PYTHON=1)")
SCAN_LIMITS = st.tuples(st.sampled_from([-1, 0, 1, 13, 40, 64, 200, 8192]),  # header bytes
                        st.sampled_from([-1, 0, 1, 2, 5, 100]),               # header count
                        st.sampled_from([-1, 0, 5, 12, 50, 1 << 20]))         # body


@needs_c
@PROPS
@given(data=st.one_of(stream(False), stream(True), one_odd_line(False), one_odd_line(True)),
       junk=st.binary(max_size=3), pos_pick=st.integers(0, 10**6), cut=st.integers(0, 10**6),
       lim=SCAN_LIMITS, is_response=st.booleans())
def test_c_scanner_matches_python(scanner: str, data: bytes, junk: bytes, pos_pick: int, cut: int,
                                  lim: tuple[int, int, int], is_response: bool) -> None:
    if scanner != "c":
        pytest.skip("compares both scanners once")
    buf = junk + data
    if cut % 3 == 0:    # a buffer ending anywhere: the scan must stop at its end
        buf = buf[:cut % (len(buf) + 1)]
    pos = len(junk) if pos_pick % 2 else pos_pick % (len(buf) + 2)
    for resp in (is_response, not is_response):
        same_scan(buf, pos, lim[0], resp, lim[1], lim[2])
    same_scan(buf, len(junk), 8192, buf[len(junk):len(junk) + 5] == b"HTTP/", 100, 1 << 20)


#: bytes a head may (or must not) hold: the scanner's character classes and their edges
SCAN_BYTES = (b"AZaz09-._~%!$&'()*+,;=:@/?" + b" \t\r\n\x00\x1f\x7f\x80\xff#[]\"<>{}|^`")


#: pieces of start lines and fields, near the edges of the scanner's grammar
WORDS = st.lists(st.sampled_from([b"OK", b"Not", b"a.b,c_d-e", b" ", b"  ", b"\t", b"\x80", b"(",
                                  b"close", b"CLOSE", b"Upgrade", b"upgrade", b"keep-alive", b",",
                                  b"0", b"7", b"1" * 9, b"+", b"x", b"close ", b"\x7f", b":"]),
                 max_size=6).map(b"".join)


@needs_c
@PROPS
@given(start=st.sampled_from([b"GET /", b"POST /a", b"HEAD /", b"OPTIONS /", b"HTTP/1.1 200 ",
                              b"HTTP/1.1 503 ", b"HTTP/1.1 204 ", b"HTTP/1.1 199 ", b"DELETE /x",
                              b"PATCH /", b"PUT /", b"GET", b"HTTP/1.1 2"]),
       parts=st.lists(st.one_of(st.sampled_from([b"\r\n", b" HTTP/1.1\r\n", b":", b": ",
                                                 b"Content-Length: 3\r\n", b"Connection:",
                                                 b"close", b"upgrade", b"keep-alive", b",",
                                                 b"content-LENGTH:", b"Upgrade:", b"\r\n\r\n",
                                                 b"Transfer-Encoding:", b"Proxy-Connection:",
                                                 b"OK", b"  ", b"007", b"1" * 18, b"1" * 19]),
                                st.binary(max_size=4).map(
                                    lambda b: bytes(SCAN_BYTES[x % len(SCAN_BYTES)] for x in b))),
                      max_size=14),
       lim=SCAN_LIMITS)
def test_c_scanner_matches_python_on_pieces(scanner: str, start: bytes, parts: list[bytes],
                                            lim: tuple[int, int, int]) -> None:
    if scanner != "c":
        pytest.skip("compares both scanners once")
    buf = start + b"".join(parts) + b"\r\n\r\n"
    for resp in (False, True):
        same_scan(buf, 0, lim[0], resp, lim[1], lim[2])
        same_scan(buf, 0, 8192, resp, 100, 1 << 20)


@needs_c
@PROPS
@given(status=st.sampled_from([b"200", b"404", b"304", b"599"]), reason=WORDS,
       method=st.sampled_from(CLEAN_METHODS + [b"GETS", b"POS", b"OPTIONSX"]),
       path=st.binary(max_size=8).map(lambda b: b"/" + bytes(SCAN_BYTES[x % len(SCAN_BYTES)]
                                                             for x in b)),
       fields=st.lists(st.one_of(
           st.tuples(st.sampled_from(FRAMING_NAMES + CLEAN_NAMES + [b"X_Y", b""]),
                     st.sampled_from([b":", b": ", b":  "]),
                     st.one_of(WORDS, st.sampled_from(CL_VALUES))),
           st.tuples(st.sampled_from([b"Connection", b"CONNECTION"]), st.just(b":"), WORDS),
           st.tuples(st.sampled_from([b"Content-Length", b"content-LENGTH"]), st.just(b": "),
                     st.one_of(st.text("0123456789 +", max_size=20).map(lambda t: t.encode()),
                               st.integers(0, 21).map(lambda n: b"0" * (n - 1) + b"3"[:n])))),
           max_size=3))
def test_c_scanner_matches_python_on_fields(scanner: str, status: bytes, reason: bytes,
                                            method: bytes, path: bytes,
                                            fields: list[tuple[bytes, bytes, bytes]]) -> None:
    """Reason phrases, paths, Content-Length and Connection values at the grammar's edges."""
    if scanner != "c":
        pytest.skip("compares both scanners once")
    tail = b"".join(n + sep + v + b"\r\n" for n, sep, v in fields) + b"\r\n"
    for cl in (b"", b"Content-Length: 1\r\n"):
        same_scan(b"HTTP/1.1 " + status + b" " + reason + b"\r\n" + cl + tail, 0, 8192, True,
                  100, 1 << 20)
        same_scan(method + b" " + path + b" HTTP/1.1\r\n" + cl + tail, 0, 8192, False, 100, 1 << 20)


@needs_c
def test_c_scanner_bounds(scanner: str) -> None:
    """Every truncation, start and header-bytes limit around typical heads agrees."""
    if scanner != "c":
        pytest.skip("compares both scanners once")
    for msg, resp in ((TYPICAL_REQ, False), (TYPICAL_RESP, True)):
        head_len = msg.index(b"\r\n\r\n") + 4
        want = SCAN_PY(msg, 0, 8192, resp, 100, 1 << 20)
        assert want is not None and want[0] == head_len
        for k in range(len(msg) + 1):
            same_scan(msg[:k], 0, 8192, resp, 100, 1 << 20)
        for limit in range(-1, head_len + 3):
            assert (same_scan(msg, 0, limit, resp, 100, 1 << 20) is None) == (limit < head_len)
        for pos in (-1, 1, len(msg), len(msg) + 1):
            same_scan(msg, pos, 8192, resp, 100, 1 << 20)
        n_headers = msg[:head_len].count(b"\r\n") - 2
        for mh in (n_headers - 1, n_headers):
            assert (same_scan(msg, 0, 8192, resp, mh, 1 << 20) is None) == (mh < n_headers)
    bare = b"GET / HTTP/1.1\r\n\r\n"     # no header, no Content-Length
    for mh in (-1, 0, 1):
        for mb in (-2, -1, 0):
            assert (same_scan(bare, 0, 8192, False, mh, mb) is None) == (mh < 0)
    for mb in (-1, 0, 2, 3):
        got = same_scan(b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 0, 8192, False, 1, mb)
        assert (got is None) == (mb < 3)
    assert SCAN_C is not None
    assert SCAN_C(memoryview(TYPICAL_REQ), 0, 8192, False, 100, 1 << 20) == \
        SCAN_PY(TYPICAL_REQ, 0, 8192, False, 100, 1 << 20)
    assert SCAN_C("not bytes", 0, 8192, False, 100, 1 << 20) is None


#: heads at the grammar's edges, each with an expected verdict (True: the fast path takes it)
SCAN_EDGES = [
    (b"GET / HTTP/1.1\r\nContent-Length: " + b"0" * 17 + b"3\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nContent-Length: " + b"0" * 18 + b"3\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nContent-Length:\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nContent-Length:   7\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nContent-Length: 7 \r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nConnection: x ,  close  \r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nConnection: upgradex, closed\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nConnection: ,UPGRADE\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nX-Y:\r\nconnection:Close\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nUPGRADE: h2c\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nProxy-Connection: x\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nTransfer-encoding: x\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nTransfer-encodings: x\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nX_Y: x\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\n: x\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nX: a\tb\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nX: ~ \r\n\r\n", True),
    (b"GET /a[b] HTTP/1.1\r\n\r\n", False),
    (b"GET /-._~%!$&'()*+,;=:@/? HTTP/1.1\r\n\r\n", True),
    (b"GET  / HTTP/1.1\r\n\r\n", False),
    (b"GETS / HTTP/1.1\r\n\r\n", False),
    (b"OPTIONS / HTTP/1.1\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\n\r\r\n", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK \r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200  OK\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 A  B\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 a.b ,c_d -e\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 (OK)\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\n\r\n", False),
    (b"HTTP/1.1 204 OK\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 304 OK\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 599 OK\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 199 OK\r\nContent-Length: 0\r\n\r\n", False),
]


def test_scanner_edges(scanner: str) -> None:
    """The active scanner's verdicts; the fast path agrees with llhttp; C agrees with Python."""
    for head, fast in SCAN_EDGES:
        resp = head.startswith(b"HTTP/")
        got = http_mod._scan_head(head, 0, 8192, resp, 100, 1 << 20)
        assert (got is not None) == fast, head
        check(head, [], Role.RESPONSES if resp else Role.REQUESTS)
        if scanner == "c":
            same_scan(head, 0, 8192, resp, 100, 1 << 20)
            same_scan(head, 0, 8192, not resp, 100, 1 << 20)


def test_pure_python_env_var_turns_the_c_scanner_off() -> None:
    code = "import xproto.codecs.http as h; print(h.SPEEDUPS, h._scan_head is h._scan_head_py)"
    env = {**os.environ, "XPROTO_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "False True"


# --- the ping-pong lane's message scanner (HttpCodec.message_scanner) ----------------------
def _py_message_scanner(role: Role, limits: Any) -> Any:
    """message_scanner's Python closures whatever the active scanner is."""
    saved_c = http_mod._scan_message_c
    http_mod._scan_message_c = None
    try:
        return HttpCodec().message_scanner(role, limits)
    finally:
        http_mod._scan_message_c = saved_c


@st.composite
def lane_message(draw: Any, response: bool) -> bytes:
    """Mostly plain keep-alive messages (the lane's traffic), some with one change."""
    if response:
        start = b"HTTP/1.1 %d %s" % (draw(st.sampled_from([200, 201, 302, 400, 404, 418, 500, 502,
                                                          503, 504, 507, 204, 304, 100])),
                                     draw(st.sampled_from([b"OK", b"", b"Not Found"])))
    else:
        start = draw(st.sampled_from(CLEAN_METHODS)) + b" /p HTTP/1.1"
    body = draw(st.binary(max_size=30))
    lines = [start, b"Host: h"]
    if response or body or draw(st.booleans()):
        lines.append(b"Content-Length: %d" % len(body))
    lines += draw(st.lists(st.sampled_from([b"Connection: keep-alive", b"Connection: close",
                                            b"X-A: b", b"Accept: */*", b"X-Long: " + b"v" * 60,
                                            b"Transfer-Encoding: chunked",
                                            b"Content-Length: 1", b"Upgrade: h2c"]), max_size=2))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@PROPS
@given(case=st.booleans().flatmap(lambda r: st.tuples(st.just(r), st.one_of(
           lane_message(r), lane_message(r), lane_message(r), stream(r), one_odd_line(r),
           lane_message(not r)))),
       cut=st.integers(0, 10**6), small=st.booleans())
def test_message_scanner_contract(scanner: str, case: tuple[bool, bytes], cut: int,
                                  small: bool) -> None:
    """What the scanner calls plain the decoder decodes into one keep-alive, final frame of
    the same length (and a non-HEAD request); the C scanner agrees with the closures."""
    response, data = case
    limits = SMALL if small else DEFAULT_LIMITS
    role = Role.RESPONSES if response else Role.REQUESTS
    codec = HttpCodec()
    scan = codec.message_scanner(role, limits)
    ref = _py_message_scanner(role, limits)
    n = len(data) if cut % 2 else cut % (len(data) + 1)
    for buf in (data, bytearray(data)):
        got = scan(buf, 0, n)
        assert got == ref(buf, 0, n), (data, n)
        assert [type(x) for x in got or ()] == [type(x) for x in ref(buf, 0, n) or ()]
    if got is None:
        return
    end, value = got
    assert 0 < end <= n
    try:
        f = codec.new_decoder(role, limits).decode(data[:n], 0)
    except ProtocolError as e:
        raise AssertionError(f"plain message, decoder error {e}: {data!r}") from None
    assert isinstance(f, Frame) and len(f.raw) == end
    assert codec.keep_alive(f)
    if response:
        assert f.kind is Kind.RESPONSE and not codec.is_interim(f)
        assert value == codec.status_to_http(f)
    else:
        assert f.kind is Kind.REQUEST and f.meta.method != "HEAD" and value is True


def test_message_scanner_cases() -> None:
    codec = HttpCodec()
    req = codec.message_scanner(Role.REQUESTS)
    resp = codec.message_scanner(Role.RESPONSES)
    get = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    assert req(get, 0, len(get)) == (len(get), True)
    assert req(get + b"GET", 0, len(get) + 3) == (len(get), True)   # the caller checks the end
    assert req(get, 0, len(get) - 1) is None                         # not whole in buf[:n]
    assert req(b"HEAD /a HTTP/1.1\r\n\r\n", 0, 21) is None
    assert req(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n", 0, 39) is None
    post = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    assert req(post, 0, len(post)) == (len(post), True)
    assert req(post, 0, len(post) - 1) is None
    for status, want in ((200, 200), (302, 200), (404, 404), (418, 400), (503, 503), (507, 500)):
        r = b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok" % status
        assert resp(r, 0, len(r)) == (len(r), want)
    assert resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 50) is None
    assert resp(b"HTTP/1.1 100 Continue\r\n\r\n", 0, 25) is None
    assert resp(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, 57) is None
    assert resp(memoryview(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 0, 38) is None
