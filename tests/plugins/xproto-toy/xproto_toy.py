"""TOY1, a tiny length-prefixed protocol, as an xproto codec plugin.

Frame: ``b"TOY1"`` | u8 type | u32 request id | u16 payload length | payload.
Types: 0 request, 1 response (payload starts with a u8 status), 2 oneway,
3 heartbeat request, 4 heartbeat response. Headers: ``method`` = the payload up to the first
space (requests). Status 0 = ok, 1 = not found, 2 = busy, 3 = timeout, 4 = failed.
"""
from __future__ import annotations

import struct

from xproto.codec import MATCH, NO_MATCH, Codec, Decoder, PoolMode, Reason, Role
from xproto.errors import FrameTooLarge, ProtocolError
from xproto.frame import Frame, Kind
from xproto.limits import DEFAULT_LIMITS, Limits

MAGIC = b"TOY1"
HEAD = struct.Struct(">4sBIH")      # magic, type, id, length
ID = struct.Struct(">I")
MAX_PAYLOAD = 0xFFFF
REQUEST, RESPONSE, ONEWAY, PING, PONG = range(5)
_STATUS_OF = {Reason.NO_ROUTE: 1, Reason.OVERFLOW: 2, Reason.NO_HEALTHY_UPSTREAM: 2,
              Reason.TIMEOUT: 3, Reason.UPSTREAM_RESET: 4, Reason.BAD_REQUEST: 4}
_HTTP_OF = {0: 200, 1: 404, 2: 503, 3: 504, 4: 502}


class ToyDecoder(Decoder):
    def decode(self, buf, pos=0):
        avail = len(buf) - pos
        if avail < HEAD.size:
            return HEAD.size - avail
        magic, typ, rid, n = HEAD.unpack_from(buf, pos)
        if magic != MAGIC:
            raise ProtocolError("bad magic", protocol="toy", offset=pos)
        if typ > PONG:
            raise ProtocolError(f"unknown type {typ}", protocol="toy", offset=pos + 4)
        if typ == RESPONSE and n < 1:
            raise ProtocolError("response without status", protocol="toy", offset=pos + 9)
        end = HEAD.size + n
        if avail < end:
            return end - avail
        raw = bytes(buf[pos:pos + end])
        body = raw[HEAD.size:]
        kind = {REQUEST: Kind.REQUEST, PING: Kind.REQUEST, ONEWAY: Kind.ONEWAY}.get(typ, Kind.RESPONSE)
        status = body[0] if typ == RESPONSE else (0 if typ == PONG else None)
        return Frame(self.codec, kind, rid, raw, heartbeat=typ in (PING, PONG), status=status,
                     body=body, meta=typ)


class ToyCodec(Codec):
    name = "toy"
    pool_mode = PoolMode.MULTIPLEX
    request_id_bits = 32
    match_bytes = 4
    match_rule = "magic 'TOY1' at bytes 0-3"
    has_heartbeat = True

    def match(self, data):
        head = bytes(data[:4])
        if head == MAGIC:
            return MATCH
        return 4 - len(head) if MAGIC.startswith(head) else NO_MATCH

    def new_decoder(self, role: Role = Role.ANY, limits: Limits = DEFAULT_LIMITS) -> ToyDecoder:
        return ToyDecoder(self, role, limits)

    def parse_headers(self, frame):
        if frame.meta in (REQUEST, ONEWAY):
            return {"method": frame.body.split(b" ", 1)[0].decode("latin-1")}
        return {}

    def patch_request_id(self, raw, frame):
        b = bytearray(raw)
        ID.pack_into(b, 5, frame.request_id)
        return bytes(b)

    def encode_changed(self, frame):
        method = frame.headers.get("method", "").encode("latin-1")
        rest = frame.body.split(b" ", 1)[1:]
        return self.build(frame.meta, frame.request_id, b" ".join([method, *rest]))

    @staticmethod
    def build(typ: int, rid: int, payload: bytes) -> bytes:
        if len(payload) > MAX_PAYLOAD:
            raise FrameTooLarge("toy payload", len(payload), MAX_PAYLOAD, protocol="toy")
        return HEAD.pack(MAGIC, typ, rid, len(payload)) + payload

    def _frame(self, typ: int, rid: int, payload: bytes) -> Frame:
        return self.new_decoder().decode(self.build(typ, rid, payload))

    def heartbeat_request(self, request_id):
        return self._frame(PING, request_id, b"")

    def heartbeat_reply(self, request):
        return self._frame(PONG, request.request_id, b"")

    def error_reply(self, request, reason, message=""):
        status = _STATUS_OF.get(Reason(reason), 4)
        return self._frame(RESPONSE, request.request_id, bytes([status]) + message.encode())

    def status_to_http(self, frame):
        return _HTTP_OF.get(frame.status or 0, 500)
