"""HTTP/1.1 (and 1.0) codec.

Frame = one whole message: start line, headers and body, the body kept exactly as received
(chunked framing included), so an unmodified message is forwarded byte for byte.

Frame first, parse second: the head is found by its CRLFCRLF within
``http_max_header_bytes`` and fed to llhttp (via ``httptools``) as it arrives, so bad
bytes fail early and the verdict never depends on how TCP chunked them. The body length
comes from the head (RFC 9112 section 6.3): ``Content-Length``, ``chunked`` (scanned chunk by
chunk, incrementally), no body (requests without either; responses to HEAD; 1xx, 204,
304; 2xx to CONNECT), or until the connection closes (responses without a length:
``Decoder.eof`` returns that last frame).

The HTTP/2 prior-knowledge preface (``PRI * HTTP/2.0``) matches, so detection picks this
codec for it, and decoding it raises ``ProtocolError("HTTP/2 preface (h2c prior
knowledge) is not supported ...")``: the connection is closed (no HTTP/1 reply makes
sense to an h2 client), and ``xproto decode`` reports it at byte 0.

Not supported (reported as ProtocolError when the bytes make it matter): bytes after a
``101 Switching Protocols`` or a 2xx answer to CONNECT (a tunnel, no longer HTTP);
bare-LF line endings (llhttp's strict mode rejects them too).

Request ids: HTTP has none on the wire (``request_id_bits = 0``, ping-pong pool);
``request_id`` is the message's position on the connection (0, 1, 2 ...). A response's id
is the position of the request it answers (1xx interim responses share it).

Fast path: a head inside a strict, conservative subset (``GET/POST/PUT/DELETE/OPTIONS/PATCH/
HEAD`` + origin-form target + ``HTTP/1.1``, or ``HTTP/1.1`` + a 2xx-5xx status other than 204/
304 with one plain ``Content-Length``; header names ``[A-Za-z0-9-]``, values printable ASCII
without tabs; no ``Transfer-Encoding``, ``Upgrade``, ``Proxy-Connection``, ``Connection:
upgrade``, duplicate ``Content-Length``) is framed without llhttp, its header list split
lazily: by ``_scan_head_py`` (regular expressions, the reference) or its exact C twin
``xproto/codecs/_http_scan.c`` when built (``XPROTO_PURE_PYTHON=1`` ignores it). Anything
else, and every head not whole in the buffer, goes through llhttp exactly as before, so
errors, limits and smuggling defences are llhttp's. ``XPROTO_HTTP_SLOW=1`` (or
``new_decoder(..., fast=False)``) turns the fast path off; tests/test_http_fastpath.py checks
both paths agree, with either scanner, and the two scanners against each other.
"""
from __future__ import annotations

import os
import re
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

import httptools

from xproto import accel
from xproto.codec import MATCH, NO_MATCH, Codec, Decoder, PoolMode, Reason, Role
from xproto.errors import LimitExceeded, ProtocolError
from xproto.frame import BareFrame, Frame, Kind
from xproto.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from collections.abc import Callable

    from xproto.codec import Buffer

NAME = "http"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: method tokens (+ space) a request starts with; ``HTTP/1.`` starts a response.
_STARTS = (
    b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ",
    b"TRACE ", b"PRI ", b"HTTP/1.",
)
#: a chunk-size line (size + extensions) longer than this is refused
#: (precedent: Go net/http internal/chunked.go maxLineLength = 4096).
MAX_CHUNK_LINE = 4096

# body framing kinds
_NONE, _LENGTH, _CHUNKED, _CLOSE = 0, 1, 2, 3

#: ``XPROTO_HTTP_SLOW=1``: decoders default to the llhttp path only (differential tests, benches)
SLOW_ENV = "XPROTO_HTTP_SLOW"

# --- the fast path's strict subset (anything else: llhttp) -------------------------------
# header lines: token name (conservative charset), ":", printable ASCII (no tabs, no
# obs-text, no obs-fold, CRLF only). llhttp drops the spaces before a value and keeps those
# after it: so does HttpMeta.header_list.
_FIELDS = rb"(?:[A-Za-z0-9-]++:[ -~]*+\r\n)*+\r\n"
_FAST_REQ = re.compile(
    rb"(GET|POST|PUT|DELETE|OPTIONS|PATCH|HEAD) (/[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*) HTTP/1\.1\r\n"
    + _FIELDS)
_FAST_RESP = re.compile(
    rb"HTTP/1\.1 ([2-5][0-9][0-9]) ((?:[A-Za-z0-9.,_\-]+(?: [A-Za-z0-9.,_\-]+)*)?)\r\n" + _FIELDS)
#: the header fields the framing (ours or llhttp's) depends on; values as the line has them
_FRAMING = re.compile(
    rb"\n(content-length|transfer-encoding|connection|proxy-connection|upgrade):[ ]*([^\r]*)",
    re.IGNORECASE)
_DIGITS = re.compile(rb"[0-9]{1,18}")
_METHOD_STR = {m: m.decode("ascii") for m in (b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS",
                                               b"PATCH", b"HEAD")}

_REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}
_REPLY_STATUS = {
    Reason.NO_ROUTE: 404,
    Reason.NO_HEALTHY_UPSTREAM: 503,
    Reason.TIMEOUT: 504,
    Reason.OVERFLOW: 503,
    Reason.UPSTREAM_RESET: 502,
    Reason.BAD_REQUEST: 400,
}
_REPLY_TEXT = {
    Reason.NO_ROUTE: "no route for this request",
    Reason.NO_HEALTHY_UPSTREAM: "no healthy upstream",
    Reason.TIMEOUT: "upstream request timeout",
    Reason.OVERFLOW: "too many pending requests",
    Reason.UPSTREAM_RESET: "upstream connection failure or reset",
    Reason.BAD_REQUEST: "bad request",
}


class HttpMeta:
    """What the decoder learnt about one message (``frame.meta``)."""

    __slots__ = (
        "_head",
        "_hl",
        "body_kind",
        "head_len",
        "keep_alive",
        "method",
        "path",
        "reason",
        "status",
        "upgrade",
        "version",
    )

    def __init__(self) -> None:
        self.version = "1.1"
        self.method = ""                 # requests; for responses: the request's method if known
        self.path = ""
        self.status: int | None = None
        self.reason = ""
        self._hl: list[tuple[bytes, bytes]] | None = []
        self._head: bytes | None = None   # the message, while _hl is None (fast path)
        self.head_len = 0
        self.body_kind = _NONE
        self.keep_alive = True
        self.upgrade = False

    @property
    def header_list(self) -> list[tuple[bytes, bytes]]:
        """(name, value) pairs as received; split on first use for fast-path heads (whose
        strict form makes the split agree with llhttp's)."""
        hl = self._hl
        if hl is None:
            hl = []
            head = self._head
            if head is not None:
                for line in head[:self.head_len - 4].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    hl.append((name, value.lstrip(b" ")))
                self._hl = hl
                self._head = None
        return hl

    @header_list.setter
    def header_list(self, value: list[tuple[bytes, bytes]]) -> None:
        self._hl = value
        self._head = None


def _find(buf: Buffer, sub: bytes, start: int, end: int) -> int:
    find = getattr(buf, "find", None)
    if find is not None:
        return int(find(sub, start, end))
    i = bytes(buf[start:end]).find(sub)
    return i + start if i >= 0 else -1


def _scan_head_py(buf: bytes | bytearray, pos: int, limit: int, is_response: bool, max_headers: int,
                  max_body: int) -> tuple[int, int, bool, Any, str] | None:
    """The fast path's acceptance test (module docstring): ``(head_len, body_len (-1: no
    Content-Length), keep_alive, method or status, path or reason)`` or None (use llhttp).

    The reference for ``_http_scan.scan_head`` (its C twin, xproto/codecs/_http_scan.c): the
    head is the first CRLFCRLF-terminated block within ``min(limit, len(buf) - pos)`` bytes.
    """
    if pos < 0 or limit < 0:    # not Python's from-the-end indexing
        return None
    i = buf.find(b"\r\n\r\n", pos, pos + min(limit, len(buf) - pos))
    if i < 0:
        return None
    hend = i + 4
    m = (_FAST_RESP if is_response else _FAST_REQ).match(buf, pos, hend)
    if m is None:
        return None
    # a header line takes at least 4 bytes: count only heads that could hold too many
    if hend - pos > 4 * max_headers and buf.count(b"\n", pos, hend) - 2 > max_headers:
        return None
    cl: bytes | None = None
    keep_alive = True
    for name, value in _FRAMING.findall(buf, pos, hend):   # the start line has no LF
        n = len(name)
        if n == 14 and cl is None:                 # content-length, once
            if _DIGITS.fullmatch(value) is None:
                return None
            cl = value
        elif n == 10:                              # connection
            lv = value.lower()
            if lv == b"keep-alive":
                continue
            toks = {t.strip() for t in lv.split(b",")}
            if b"upgrade" in toks:
                return None
            if b"close" in toks:
                keep_alive = False
        else:   # a second content-length, transfer-encoding, proxy-connection, upgrade
            return None
    body_len = -1
    if cl is not None:
        body_len = int(cl)
        if body_len > max_body:
            return None
    if is_response:
        if cl is None:
            return None
        status = int(m.group(1))
        if status == 204 or status == 304:
            return None
        return hend - pos, body_len, keep_alive, status, m.group(2).decode("latin-1")
    method_b, path = m.group(1, 2)
    return hend - pos, body_len, keep_alive, _METHOD_STR[method_b], path.decode("latin-1")


def _load_scanner() -> Callable[..., tuple[int, int, bool, Any, str] | None] | None:
    mod = accel.load("xproto.codecs._http_scan")
    return None if mod is None else mod.scan_head  # type: ignore[no-any-return]


#: the C scanner, or None (XPROTO_PURE_PYTHON=1, or not built)
_scan_head_c = _load_scanner()
_scan_head = _scan_head_c if _scan_head_c is not None else _scan_head_py
SPEEDUPS = _scan_head_c is not None  # which path is active (benches print it)
#: HttpCodec.message_scanner in C (None without the C scanner)
_scan_message_c = getattr(accel.load("xproto.codecs._http_scan"), "scan_message", None) if SPEEDUPS else None


class _HeadSink:
    """httptools callbacks for one message head (no on_body: bodies are framed by us)."""

    __slots__ = ("complete", "done", "headers", "max_headers", "reason", "too_many", "url")

    def __init__(self, max_headers: int) -> None:
        self.url = b""
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.done = False
        self.max_headers = max_headers
        self.too_many = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.max_headers:
            # stop llhttp here, so the verdict is the same however the bytes were chunked
            self.too_many = True
            raise OverflowError
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True

    def on_message_complete(self) -> None:
        self.done = True


class HttpDecoder(Decoder):
    """One direction of an HTTP/1.x connection."""

    def __init__(self, codec: HttpCodec, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS,
                 fast: bool | None = None) -> None:
        super().__init__(codec, role, limits)
        if fast is None:
            fast = os.environ.get(SLOW_ENV, "") in ("", "0")
        self._fast = fast
        self._count = 0                      # messages (final responses) decoded so far
        self._methods: deque[str] = deque()  # methods of requests sent (RESPONSES side)
        self._closed_reason = ""             # set after 101 / CONNECT 2xx: no more HTTP
        self._reset()

    def _reset(self) -> None:
        self._parser: Any = None
        self._sink: _HeadSink | None = None
        self._is_response = False
        self._fed = 0            # bytes of the current message fed to llhttp
        self._head_len = 0       # 0 = head not complete yet
        self._meta: HttpMeta | None = None
        self._body_len = 0       # _LENGTH: body length
        self._cpos = 0           # _CHUNKED: offset (in the message) of the next chunk-size line
        self._ctotal = 0         # _CHUNKED: data bytes so far
        self._ctrailer = False   # _CHUNKED: in the trailer section
        self._end = 0            # message length once known

    # --- the interface ---------------------------------------------------------------
    def request_sent(self, frame: Frame) -> None:
        meta = frame.meta
        self._methods.append(meta.method if isinstance(meta, HttpMeta) else "GET")

    def decode(self, buf: Buffer, pos: int = 0) -> Frame | int:
        if self._fast and not self._head_len and self._parser is None and not self._closed_reason:
            f = self._fast_head(buf, pos)
            if f is not None:
                return f
        try:
            return self._decode(buf, pos)
        except ProtocolError:
            self._reset()
            raise

    def eof(self, buf: Buffer, pos: int = 0) -> Frame | None:
        if pos >= len(buf):
            return None
        if not self._head_len:
            # bytes may have arrived since the last decode: let it see them first
            r = self.decode(buf, pos)
            if isinstance(r, Frame):
                return r
        meta = self._meta
        if meta is not None and self._head_len and meta.body_kind == _CLOSE:
            return self._finish(buf, pos, len(buf) - pos)
        return None

    # --- framing ---------------------------------------------------------------------
    def _err(self, msg: str, offset: int, hint: str | None = None) -> ProtocolError:
        return ProtocolError(msg, protocol=NAME, offset=offset, reply_hint=hint)

    def _decode(self, buf: Buffer, pos: int) -> Frame | int:
        avail = len(buf) - pos
        if avail <= 0:
            return 1
        if self._closed_reason:
            raise self._err(self._closed_reason, pos)
        if not self._head_len:
            r = self._read_head(buf, pos, avail)
            if r:
                return r
        meta = self._meta
        assert meta is not None
        kind = meta.body_kind
        if kind == _NONE:
            return self._finish(buf, pos, self._head_len)
        if kind == _LENGTH:
            end = self._head_len + self._body_len
            if avail < end:
                return end - avail
            return self._finish(buf, pos, end)
        if kind == _CHUNKED:
            r = self._scan_chunks(buf, pos, avail)
            if r:
                return r
            return self._finish(buf, pos, self._end)
        # _CLOSE: the body ends when the connection does (see eof)
        if avail - self._head_len > self.limits.http_max_body:
            raise LimitExceeded("http body", avail - self._head_len, self.limits.http_max_body,
                                protocol=NAME, offset=pos + self._head_len)
        return 1

    def _fast_head(self, buf: Buffer, pos: int) -> Frame | int | None:
        """The strict subset (module docstring): a frame, bytes needed, or None (use llhttp)."""
        if type(buf) is memoryview:
            return None
        avail = len(buf) - pos
        limits = self.limits
        role = self.role
        if role is Role.REQUESTS:
            is_response = False
        elif role is Role.RESPONSES:
            is_response = True
        else:
            is_response = bytes(buf[pos:pos + 5]) == b"HTTP/"
        r = _scan_head(buf, pos, limits.http_max_header_bytes, is_response,
                       limits.http_max_headers, limits.http_max_body)
        if r is None:
            return None
        head_len, body_len, keep_alive, a, b = r
        if is_response:
            method = self._methods[0] if (self._methods and role is Role.RESPONSES) else ""
            if method == "HEAD" or method == "CONNECT":
                return None
        meta = HttpMeta()
        meta._hl = None
        meta.head_len = head_len
        meta.keep_alive = keep_alive
        end = head_len
        if body_len < 0:
            body_len = 0
            meta.body_kind = _NONE
        else:
            end += body_len
            meta.body_kind = _LENGTH
        if is_response:
            meta.status = a
            meta.reason = b
            meta.method = method
        else:
            meta.method = a
            meta.path = b
        if avail < end:     # wait for the body; _decode and _finish take it from here
            self._head_len = head_len
            self._meta = meta
            self._body_len = body_len
            self._is_response = is_response
            return end - avail
        raw = bytes(buf[pos:pos + end])
        meta._head = raw
        frame = BareFrame()
        frame.codec = self.codec
        frame.protocol = NAME
        frame.heartbeat = False
        frame.meta = meta
        frame.raw = raw
        frame.body = memoryview(raw)[head_len:]
        frame._headers = None
        frame._orig_headers = None
        rid = self._count
        frame.request_id = frame.orig_request_id = rid
        self._count = rid + 1
        if is_response:
            frame.kind = Kind.RESPONSE
            frame.status = meta.status
            if self._methods and role is Role.RESPONSES:
                self._methods.popleft()
        else:
            frame.kind = Kind.REQUEST
            frame.status = None
        return frame

    def _start(self, buf: Buffer, pos: int, avail: int) -> int:
        """Begin a message: reject the h2 preface, pick the parser. 0 or bytes needed."""
        if buf[pos] == 0x50:                # "P": PRI (the h2 preface), POST, PUT, PATCH
            first = bytes(buf[pos:pos + min(avail, len(H2_PREFACE))])
            if len(first) < 4 and b"PRI ".startswith(first):
                return 4 - len(first)      # could still be the preface
            if first[:4] == b"PRI " and H2_PREFACE.startswith(first):
                if len(first) < len(H2_PREFACE):
                    return len(H2_PREFACE) - len(first)
                raise self._err("HTTP/2 preface (h2c prior knowledge) is not supported; "
                                "this listener speaks HTTP/1.1", pos)
        if self.role is Role.RESPONSES:
            is_response = True
        elif self.role is Role.REQUESTS:
            is_response = False
        else:
            first = bytes(buf[pos:pos + 5])
            if len(first) < 5 and b"HTTP/".startswith(first):
                return 5 - len(first)
            is_response = first == b"HTTP/"
        sink = _HeadSink(self.limits.http_max_headers)
        self._sink = sink
        self._is_response = is_response
        self._parser = (httptools.HttpResponseParser(sink) if is_response
                        else httptools.HttpRequestParser(sink))
        return 0

    def _feed(self, buf: Buffer, pos: int, upto: int) -> bool:
        """Feed message bytes [self._fed, upto) to llhttp; True when an upgrade paused it."""
        if upto <= self._fed:
            return False
        sink = self._sink
        assert sink is not None
        try:
            self._parser.feed_data(memoryview(buf)[pos + self._fed:pos + upto])
        except httptools.HttpParserUpgrade:
            self._fed = upto
            return True
        except httptools.HttpParserError as e:
            if sink.too_many:
                raise LimitExceeded("http header count", len(sink.headers) + 1,
                                    self.limits.http_max_headers, protocol=NAME, offset=pos,
                                    reply_hint=Reason.BAD_REQUEST.value) from None
            raise self._err(f"bad message head: {e}", pos, Reason.BAD_REQUEST.value) from None
        self._fed = upto
        return False

    def _read_head(self, buf: Buffer, pos: int, avail: int) -> int:
        if self._parser is None:
            r = self._start(buf, pos, avail)
            if r:
                return r
        limit = self.limits.http_max_header_bytes
        window = min(avail, limit)
        i = _find(buf, b"\r\n\r\n", pos + max(0, self._fed - 3), pos + window)
        if i < 0:
            self._feed(buf, pos, window)
            if avail >= limit:
                raise LimitExceeded("http header bytes", avail, limit, protocol=NAME, offset=pos,
                                    reply_hint=Reason.BAD_REQUEST.value)
            return 1
        head_len = i - pos + 4
        upgraded = self._feed(buf, pos, head_len)
        sink = self._sink
        assert sink is not None
        if not sink.complete:
            # e.g. empty lines only: llhttp skipped them and is still waiting for a start line
            raise self._err("no message head before the empty line", pos, Reason.BAD_REQUEST.value)
        self._head_len = head_len
        self._meta = self._head_meta(sink, upgraded, pos)
        return 0

    def _head_meta(self, sink: _HeadSink, upgraded: bool, pos: int) -> HttpMeta:
        p = self._parser
        meta = HttpMeta()
        meta.head_len = self._head_len
        meta.header_list = list(sink.headers)   # trailers, if any, stay out
        meta.version = p.get_http_version()
        if meta.version not in ("1.0", "1.1"):     # llhttp also takes 0.9 request lines
            raise self._err(f"unsupported HTTP version {meta.version}", pos, Reason.BAD_REQUEST.value)
        meta.upgrade = upgraded
        te: bytes | None = None
        cl: bytes | None = None
        conn: set[bytes] = set()
        for name, value in sink.headers:
            if len(name) not in (10, 14, 17):   # connection, content-length, transfer-encoding
                continue
            ln = name.lower()
            if ln == b"connection":
                conn.update(t.strip().lower() for t in value.split(b","))
            elif ln == b"transfer-encoding":
                te = value if te is None else te + b"," + value
            elif ln == b"content-length":
                cl = value.strip()   # llhttp already refused duplicates that differ
        # llhttp's should_keep_alive() is reset once a bodiless message completes: decide here
        meta.keep_alive = (b"close" not in conn) if meta.version != "1.0" else (b"keep-alive" in conn)
        chunked = te is not None and te.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        if self._is_response:
            status = int(p.get_status_code())
            if not 100 <= status <= 999:     # llhttp takes any 3 digits ("010")
                raise self._err(f"bad status code {status:03d}", pos)
            meta.status = status
            meta.reason = sink.reason.decode("latin-1")
            method = self._methods[0] if (self._methods and self.role is Role.RESPONSES) else ""
            meta.method = method
            if status < 200 or status in (204, 304) or method == "HEAD" or (
                    method == "CONNECT" and 200 <= status < 300):
                meta.body_kind = _NONE
            elif chunked:
                meta.body_kind = _CHUNKED
            elif cl is not None:
                meta.body_kind = _LENGTH
            else:
                meta.body_kind = _CLOSE
                meta.keep_alive = False
            if status == 101 or (method == "CONNECT" and 200 <= status < 300):
                self._closed_reason = "the connection left HTTP (101 Switching Protocols / CONNECT tunnel)"
        else:
            meta.method = p.get_method().decode("ascii", "replace")
            meta.path = sink.url.decode("latin-1")
            if chunked:
                meta.body_kind = _CHUNKED
            elif te is not None:
                raise self._err("request Transfer-Encoding does not end in chunked", pos,
                                Reason.BAD_REQUEST.value)
            elif cl is not None:
                meta.body_kind = _LENGTH
            else:
                meta.body_kind = _NONE
        if meta.body_kind == _LENGTH:
            assert cl is not None
            if not cl.isdigit() or len(cl) > 19:
                raise self._err(f"bad Content-Length {cl[:32]!r}", pos, Reason.BAD_REQUEST.value)
            n = int(cl)
            if n > self.limits.http_max_body:
                raise LimitExceeded("http body", n, self.limits.http_max_body, protocol=NAME,
                                    offset=pos, reply_hint=Reason.BAD_REQUEST.value)
            self._body_len = n
        elif meta.body_kind == _CHUNKED:
            self._cpos = self._head_len
        return meta

    def _scan_chunks(self, buf: Buffer, pos: int, avail: int) -> int:
        """Advance over whole chunks; 0 when the message end (self._end) is known."""
        lim = self.limits
        while True:
            line = pos + self._cpos
            if self._ctrailer:
                # trailer fields, then an empty line; bounded like a head
                cap = min(avail - self._cpos, lim.http_max_header_bytes + 2)
                if cap >= 2 and bytes(buf[line:line + 2]) == b"\r\n":
                    self._end = self._cpos + 2
                    return 0
                i = _find(buf, b"\r\n\r\n", line, line + cap)
                if i >= 0:
                    self._end = i - pos + 4
                    return 0
                if cap >= lim.http_max_header_bytes + 2:
                    raise LimitExceeded("http trailer bytes", cap, lim.http_max_header_bytes,
                                        protocol=NAME, offset=line)
                return 1
            cap = min(avail - self._cpos, MAX_CHUNK_LINE + 2)
            i = _find(buf, b"\r\n", line, line + cap)
            if i < 0:
                if cap >= MAX_CHUNK_LINE + 2:
                    raise self._err("chunk-size line too long", line, Reason.BAD_REQUEST.value)
                return 1
            size_tok = bytes(buf[line:i]).split(b";", 1)[0]
            if not size_tok or len(size_tok) > 15 or size_tok.strip(b"0123456789abcdefABCDEF"):
                raise self._err(f"bad chunk size {size_tok[:20]!r}", line, Reason.BAD_REQUEST.value)
            size = int(size_tok, 16)
            data_at = i - pos + 2
            if size == 0:
                self._cpos = data_at
                self._ctrailer = True
                continue
            total = self._ctotal + size
            if total > lim.http_max_body:
                raise LimitExceeded("http body", total, lim.http_max_body, protocol=NAME,
                                    offset=line, reply_hint=Reason.BAD_REQUEST.value)
            nxt = data_at + size + 2
            if avail < nxt:
                return nxt - avail
            if bytes(buf[pos + nxt - 2:pos + nxt]) != b"\r\n":
                raise self._err("chunk data not followed by CRLF", pos + nxt - 2,
                                Reason.BAD_REQUEST.value)
            self._ctotal = total
            self._cpos = nxt

    def _finish(self, buf: Buffer, pos: int, end: int) -> Frame:
        meta = self._meta
        assert meta is not None
        if meta.body_kind == _CHUNKED and not meta.upgrade:
            # let llhttp check the chunk extensions and trailers we skipped over
            self._feed(buf, pos, end)
            if self._sink is None or not self._sink.done:
                raise self._err("chunked body does not end where llhttp says", pos,
                                Reason.BAD_REQUEST.value)
        raw = bytes(buf[pos:pos + end])
        if meta._hl is None:
            meta._head = raw
        codec = self.codec
        if self._is_response:
            rid = self._count
            status = meta.status or 0
            if status >= 200 or status == 101:
                self._count += 1
                if self._methods and self.role is Role.RESPONSES:
                    self._methods.popleft()
            frame = Frame(codec, Kind.RESPONSE, rid, raw, status=status, meta=meta)
        else:
            rid = self._count
            self._count += 1
            frame = Frame(codec, Kind.REQUEST, rid, raw, meta=meta)
        frame.body = memoryview(raw)[meta.head_len:]
        self._reset()
        return frame


#: statuses status_to_http passes on unchanged
_PASS_STATUS = frozenset((400, 404, 500, 502, 503, 504))


class HttpCodec(Codec):
    """HTTP/1.1 over the xproto codec interface."""

    name = NAME
    pool_mode = PoolMode.PINGPONG
    request_id_bits = 0
    match_bytes = 8
    match_rule = ("a method token + space (GET, POST, PUT, HEAD, DELETE, OPTIONS, PATCH, CONNECT, "
                  "TRACE), 'HTTP/1.' (a response) or 'PRI ' (the h2c preface, reported as unsupported)")
    has_heartbeat = False

    def match(self, data: Buffer) -> int:
        head = bytes(data[:8])
        n = len(head)
        need = 0
        for tok in _STARTS:
            k = len(tok)
            if n >= k:
                if head[:k] == tok:
                    return MATCH
            elif tok[:n] == head:
                more = k - n
                if not need or more < need:
                    need = more
        return need if need else NO_MATCH

    def new_decoder(self, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS,
                    fast: bool | None = None) -> HttpDecoder:
        """``fast=False`` (or ``XPROTO_HTTP_SLOW=1``): llhttp for every head."""
        return HttpDecoder(self, role, limits, fast)

    def parse_headers(self, frame: Frame) -> dict[str, str]:
        meta = frame.meta
        if not isinstance(meta, HttpMeta):   # a frame built by hand, not decoded
            return {}
        fields: dict[str, str] = {}
        for name, value in meta.header_list:
            k = name.decode("latin-1").lower()
            v = value.decode("latin-1")
            fields[k] = f"{fields[k]}, {v}" if k in fields else v
        if frame.kind is Kind.RESPONSE:
            h = {":status": str(meta.status)}
        else:
            h = {":method": meta.method, ":path": meta.path}
            if "host" in fields:
                h[":authority"] = fields["host"]
        h.update(fields)
        return h

    # --- encoding ------------------------------------------------------------------
    def patch_request_id(self, raw: bytes, frame: Frame) -> bytes:
        return raw  # no request id on the wire

    def encode_changed(self, frame: Frame) -> bytes:
        """Re-serialise the start line and headers; the body is kept as received.

        Unchanged headers keep their original lines (spelling, order, duplicates); changed
        ones are written once with the new value; removed ones are dropped; new ones are
        appended. ``:method``/``:path`` (requests) and ``:status`` (responses) may be changed.
        """
        meta = frame.meta
        if not isinstance(meta, HttpMeta):
            raise ProtocolError("cannot re-encode an HTTP frame that was not decoded", protocol=NAME)
        new = frame.headers
        old = frame._orig_headers or {}
        out: list[bytes] = []
        if frame.kind is Kind.RESPONSE:
            status = int(new.get(":status", str(meta.status)))
            reason = meta.reason if status == meta.status else _REASONS.get(status, "")
            out.append(f"HTTP/{meta.version} {status:03d} {reason}".encode("latin-1"))
        else:
            out.append(f"{new.get(':method', meta.method)} {new.get(':path', meta.path)} "
                       f"HTTP/{meta.version}".encode("latin-1"))
        written: set[str] = set()
        for name, value in meta.header_list:
            k = name.decode("latin-1").lower()
            if k not in new:
                continue
            if new[k] == old.get(k):
                out.append(name + b": " + value)
            elif k not in written:
                out.append(name + b": " + new[k].encode("latin-1"))
            written.add(k)
        seen = {n.decode("latin-1").lower() for n, _ in meta.header_list}
        for k, v in new.items():
            if k.startswith(":") or k in seen:
                continue
            out.append(f"{k}: {v}".encode("latin-1"))
        for part in out:
            if b"\r" in part or b"\n" in part:
                raise ProtocolError("header value with CR/LF", protocol=NAME)
        return b"\r\n".join(out) + b"\r\n\r\n" + frame.raw[meta.head_len:]

    # --- behaviour -----------------------------------------------------------------
    def error_reply(self, request: Frame, reason: Reason, message: str = "") -> Frame:
        status = _REPLY_STATUS.get(Reason(reason), 500)
        text = (message or _REPLY_TEXT.get(Reason(reason), "error")) + "\n"
        body = text.encode("utf-8")
        meta_in = request.meta if isinstance(request.meta, HttpMeta) else None
        keep = meta_in.keep_alive if meta_in is not None else True
        head = [f"HTTP/1.1 {status} {_REASONS[status]}", "content-type: text/plain; charset=utf-8",
                f"content-length: {len(body)}", "x-xproto-local-reply: " + Reason(reason).value]
        if not keep:
            head.append("connection: close")
        elif meta_in is not None and meta_in.version == "1.0":
            head.append("connection: keep-alive")
        head_b = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if meta_in is not None and meta_in.method == "HEAD":
            body = b""
        raw = head_b + body
        meta = HttpMeta()
        meta.status = status
        meta.reason = _REASONS[status]
        meta.method = meta_in.method if meta_in is not None else ""
        meta.head_len = len(head_b)
        meta.keep_alive = keep
        meta.body_kind = _LENGTH
        meta.header_list = [tuple(x.encode("latin-1").split(b": ", 1)) for x in head[1:]]  # type: ignore[misc]
        frame = Frame(self, Kind.RESPONSE, request.request_id, raw, status=status, meta=meta)
        frame.body = memoryview(raw)[len(head_b):]
        return frame

    def status_to_http(self, frame: Frame) -> int:
        s = frame.status
        if s is None or s < 400:
            return 200
        if s in (400, 404, 500, 502, 503, 504):
            return s
        return 400 if s < 500 else 500

    def message_scanner(self, role: Role, limits: Limits = DEFAULT_LIMITS) -> Callable[..., Any] | None:
        """The ping-pong lane's reader (``Codec.message_scanner``): messages inside the fast
        path's strict subset (module docstring) with a keep-alive connection, whole in the
        buffer; requests other than HEAD, final responses (the subset has no 1xx, 204, 304).
        None when the fast path is off (``XPROTO_HTTP_SLOW=1``)."""
        if os.environ.get(SLOW_ENV, "") not in ("", "0"):
            return None
        scan = _scan_head
        if scan is _scan_head_c and _scan_message_c is not None and role is not Role.ANY:
            # the closures below in one C call (xproto/codecs/_http_scan.c)
            return partial(_scan_message_c, role is Role.RESPONSES, limits.http_max_header_bytes,
                           limits.http_max_headers, limits.http_max_body)
        mh = limits.http_max_header_bytes
        mx = limits.http_max_headers
        mb = limits.http_max_body
        if role is Role.REQUESTS:
            def scan_request(buf: Any, pos: int, n: int) -> tuple[int, Any] | None:
                if type(buf) is memoryview:
                    return None
                r = scan(buf, pos, mh, False, mx, mb)
                if r is None or not r[2] or r[3] == "HEAD":
                    return None
                b = r[1]
                end = pos + r[0] + (b if b > 0 else 0)
                return (end, True) if end <= n else None
            return scan_request
        if role is Role.RESPONSES:
            def scan_response(buf: Any, pos: int, n: int) -> tuple[int, Any] | None:
                if type(buf) is memoryview:
                    return None
                r = scan(buf, pos, mh, True, mx, mb)
                if r is None or not r[2]:
                    return None
                end = pos + r[0] + r[1]     # responses on the fast path have a Content-Length
                if end > n:
                    return None
                s = r[3]
                if s < 400:
                    return end, 200
                if s in _PASS_STATUS:
                    return end, s
                return end, (400 if s < 500 else 500)
            return scan_response
        return None

    def is_interim(self, frame: Frame) -> bool:
        """A 1xx response other than 101: the final response to the same request follows
        (HTTP-specific hook, used by the upstream connection)."""
        s = frame.status
        return frame.kind is Kind.RESPONSE and s is not None and 100 <= s < 200 and s != 101

    def keep_alive(self, frame: Frame) -> bool:
        """Whether the connection stays open after this message (HTTP-specific helper)."""
        meta = frame.meta
        return bool(meta.keep_alive) if isinstance(meta, HttpMeta) else True
