"""An example codec: the whole plugin interface in one page. Copy it to start a new one.

The "line" protocol: one frame per ``\\n``-terminated ASCII line, fields split by spaces::

    REQ  <id:8 hex> <method> [payload]     a request (expects a response)
    SEND <id:8 hex> <method> [payload]     a one-way request
    RES  <id:8 hex> <status> [payload]     a response; status 0 ok, 1 no such method, 2 busy,
                                           3 timeout, 4 upstream failed
    PING <id:8 hex> / PONG <id:8 hex>      heartbeat request / reply

The id has a fixed width, so the proxy can rewrite it in place (the fast path). It is not a
built-in (no entry point in xproto's own metadata); to ship a codec like it, publish a
distribution with::

    [project.entry-points."xproto.codecs"]
    line = "yourpackage.line:LineCodec"
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from xproto.codec import MATCH, NO_MATCH, Codec, Decoder, PoolMode, Reason, Role
from xproto.errors import LimitExceeded, ProtocolError
from xproto.frame import Frame, Kind
from xproto.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from xproto.codec import Buffer

#: longest line accepted (a named limit, checked before the frame is copied)
MAX_LINE = 64 * 1024
_VERBS = {b"REQ ": Kind.REQUEST, b"SEND": Kind.ONEWAY, b"RES ": Kind.RESPONSE,
          b"PING": Kind.REQUEST, b"PONG": Kind.RESPONSE}
_ID_AT, _ID_LEN = 5, 8                # "REQ  " / "SEND " ... then 8 hex digits
_STATUS_OF = {Reason.NO_ROUTE: 1, Reason.OVERFLOW: 2, Reason.NO_HEALTHY_UPSTREAM: 2,
              Reason.TIMEOUT: 3, Reason.UPSTREAM_RESET: 4, Reason.BAD_REQUEST: 4}
_HTTP_OF = {0: 200, 1: 404, 2: 503, 3: 504, 4: 502}


def _line(verb: bytes, rid: int, *fields: str) -> bytes:
    return b"%s %08x%s\n" % (verb.strip().ljust(4), rid, "".join(" " + f for f in fields).encode())


class LineDecoder(Decoder):
    """Frame = one line. Sans-I/O: looks at ``buf[pos:]``, returns a Frame or bytes needed."""

    def decode(self, buf: Buffer, pos: int = 0) -> Frame | int:
        avail = len(buf) - pos
        if avail < 14:                                    # "PING xxxxxxxx\n": the shortest line
            return 14 - avail
        end = bytes(buf[pos:pos + min(avail, MAX_LINE)]).find(b"\n")   # frame first ...
        if end < 0:
            if avail >= MAX_LINE:
                raise LimitExceeded("line length", avail, MAX_LINE, protocol="line", offset=pos)
            return 1
        raw = bytes(buf[pos:pos + end + 1])               # ... parse second, a whole frame only
        kind = _VERBS.get(raw[:4])
        if kind is None or raw[4:5] != b" ":
            raise ProtocolError(f"unknown verb {raw[:4]!r}", protocol="line", offset=pos)
        id_hex = raw[_ID_AT:_ID_AT + _ID_LEN]
        if len(id_hex) != _ID_LEN or id_hex.strip(b"0123456789abcdefABCDEF"):
            raise ProtocolError("bad request id", protocol="line", offset=pos + _ID_AT)
        rid = int(id_hex, 16)
        fields = raw[_ID_AT + _ID_LEN:].split(None, 1)   # [method/status, payload]
        status = None
        if raw[:4] == b"RES ":
            if not fields or not fields[0].isdigit():
                raise ProtocolError("response without status", protocol="line", offset=pos)
            status = int(fields[0])
        heartbeat = raw[:4] in (b"PING", b"PONG")
        if heartbeat:
            status = 0 if kind is Kind.RESPONSE else None
        return Frame(self.codec, kind, rid, raw, heartbeat=heartbeat, status=status,
                     body=fields[1] if len(fields) > 1 else b"", meta=fields)


class LineCodec(Codec):
    name = "line"
    pool_mode = PoolMode.MULTIPLEX       # ids on the wire: many requests in flight
    request_id_bits = 32                 # 8 hex digits
    match_bytes = 5
    match_rule = "'REQ ', 'SEND ', 'RES ', 'PING ' or 'PONG ' at byte 0"
    has_heartbeat = True

    def match(self, data: Buffer) -> int:
        head = bytes(data[:5])
        for verb in (b"REQ  ", b"SEND ", b"RES  ", b"PING ", b"PONG "):
            if head == verb[:len(head)]:
                return MATCH if len(head) == 5 else 5 - len(head)
        return NO_MATCH

    def new_decoder(self, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> LineDecoder:
        return LineDecoder(self, role, limits)

    def parse_headers(self, frame: Frame) -> dict[str, str]:
        fields = frame.meta
        if frame.kind is not Kind.RESPONSE and not frame.heartbeat and fields:
            return {"method": fields[0].decode("latin-1")}
        return {}

    def patch_request_id(self, raw: bytes, frame: Frame) -> bytes:
        return b"%s%08x%s" % (raw[:_ID_AT], frame.request_id, raw[_ID_AT + _ID_LEN:])

    def encode_changed(self, frame: Frame) -> bytes:
        verb = frame.raw[:4]
        payload = bytes(frame.body).rstrip(b"\n").decode("latin-1")
        return _line(verb, frame.request_id, frame.headers["method"], *([payload] if payload else []))

    def _one(self, data: bytes) -> Frame:
        f = self.new_decoder().decode(data)
        assert isinstance(f, Frame)
        return f

    def heartbeat_request(self, request_id: int) -> Frame:
        return self._one(_line(b"PING", request_id))

    def heartbeat_reply(self, request: Frame) -> Frame:
        return self._one(_line(b"PONG", request.request_id))

    def error_reply(self, request: Frame, reason: Reason, message: str = "") -> Frame:
        text = (message or Reason(reason).value).replace("\n", " ")
        return self._one(_line(b"RES ", request.request_id, str(_STATUS_OF[Reason(reason)]), text))

    def status_to_http(self, frame: Frame) -> int:
        return _HTTP_OF.get(frame.status or 0, 500)
