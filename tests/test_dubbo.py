"""Dubbo codec: framing, lazy headers, encoding, behaviour, properties."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xproto.codec import MATCH, NO_MATCH, Reason, Role
from xproto.codecs.dubbo import (
    HEADER,
    STATUS_TO_HTTP,
    DubboCodec,
    count_descriptor_args,
)
from xproto.errors import FrameTooLarge, ProtocolError
from xproto.frame import Frame, Kind
from xproto.framing.fixed import new_frame
from xproto.limits import DEFAULT_LIMITS, Limits

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures" / "dubbo"
WIRE = (Path(__file__).resolve().parents[1] / "fixtures" / "shared" / "wire")
CODEC = DubboCodec()
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: the profile

pytestmark = pytest.mark.timeout(60)


def hexfile(p: Path) -> bytes:
    return bytes.fromhex(p.read_text())


def fixtures() -> list[Path]:
    return sorted(FIX.glob("*.json"))


def decode_chunked(data: bytes, cuts: list[int] | None = None, limits: Limits = DEFAULT_LIMITS
                   ) -> tuple[list[Frame], bytes]:
    """Feed ``data`` in pieces cut at ``cuts`` (None = one byte at a time)."""
    d = CODEC.new_decoder(Role.ANY, limits)
    if cuts is None:
        cuts = list(range(1, len(data)))
    pieces, last = [], 0
    for c in sorted({x for x in cuts if 0 < x < len(data)}):
        pieces.append(data[last:c])
        last = c
    pieces.append(data[last:])
    buf = bytearray()
    frames: list[Frame] = []
    for p in pieces:
        buf += p
        while True:
            r = d.decode(buf, 0)
            if isinstance(r, int):
                assert r > 0
                break
            frames.append(r)
            del buf[:len(r.raw)]
    return frames, bytes(buf)


def frame_bytes(flag: int, status: int, rid: int, body: bytes) -> bytes:
    return HEADER.pack(0xDABB, flag, status, rid, len(body)) + body


def hessian():
    return pytest.importorskip("xproto.hessian2")


def writer_available() -> bool:
    try:
        from xproto.hessian2 import Writer, dumps  # noqa: F401
    except ImportError:
        return False
    return True


needs_writer = pytest.mark.skipif(not writer_available(), reason="xproto.hessian2.Writer not there yet")


# --- fixtures ---------------------------------------------------------------------
def test_every_wire_frame_has_a_fixture() -> None:
    for p in WIRE.glob("*dubbo*.hex"):
        f = FIX / p.name
        assert f.exists(), p.name
        assert hexfile(f) == hexfile(p)


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.stem)
def test_fixture(path: Path) -> None:
    doc = json.loads(path.read_text())
    data = hexfile(path.with_suffix(".hex"))
    whole, rest = CODEC.new_decoder().decode_all(data)
    assert rest == len(data)
    assert [f.to_json() for f in whole] == doc["frames"]
    for f in whole:
        assert CODEC.encode(f) == f.raw
    single, left = decode_chunked(data)
    assert left == b"" and [f.to_json() for f in single] == doc["frames"]
    twice, rest2 = CODEC.new_decoder().decode_all(data + data)
    assert rest2 == 2 * len(data) and [f.to_json() for f in twice] == doc["frames"] * 2


# --- frame construction -----------------------------------------------------------
def test_new_frame_sets_every_slot() -> None:
    f = new_frame(CODEC, Kind.REQUEST, 5, b"x", True, None)
    for slot in Frame.__slots__:
        getattr(f, slot)   # AttributeError if a slot was added to Frame and not here
    ref = Frame(CODEC, Kind.REQUEST, 5, b"x", heartbeat=True)
    for slot in Frame.__slots__:
        if slot != "codec":
            assert getattr(f, slot) == getattr(ref, slot), slot


# --- descriptor ------------------------------------------------------------------
@pytest.mark.parametrize("desc,n", [
    ("", 0), ("I", 1), ("Ljava/lang/String;[ILcom/x/User;J", 4), ("[[Ljava/lang/Object;Z", 2),
    ("ZBCDFIJS", 8), ("[J[Z", 2),
])
def test_descriptor_count(desc: str, n: int) -> None:
    assert count_descriptor_args(desc) == n


@pytest.mark.parametrize("desc", ["V", "L", "Ljava/lang/String", "[", "X", "L;", "I é"])
def test_descriptor_bad(desc: str) -> None:
    with pytest.raises(ProtocolError):
        count_descriptor_args(desc)


# --- matcher ---------------------------------------------------------------------
def test_match() -> None:
    assert CODEC.match(b"") == 2
    assert CODEC.match(b"\xda") == 1
    assert CODEC.match(b"\xda\xbb") == MATCH
    assert CODEC.match(b"\xda\xbc") == NO_MATCH
    assert CODEC.match(b"\xdb") == NO_MATCH
    for p in WIRE.glob("*.hex"):
        want = MATCH if "dubbo" in p.name else NO_MATCH
        assert CODEC.match(hexfile(p)) == want, p.name


# --- framing and limits ----------------------------------------------------------
def test_bad_magic() -> None:
    with pytest.raises(ProtocolError) as e:
        CODEC.new_decoder().decode(b"\xda\xbc" + bytes(14))
    assert e.value.protocol == "dubbo" and e.value.offset == 0


def test_limit_checked_from_header_alone() -> None:
    lim = Limits(dubbo_max_body=100)
    head = HEADER.pack(0xDABB, 0xC2, 0, 1, 101)
    with pytest.raises(FrameTooLarge) as e:
        CODEC.new_decoder(limits=lim).decode(head)
    assert e.value.limit == "dubbo_max_body" and e.value.value == 101
    ok = HEADER.pack(0xDABB, 0xC2, 0, 1, 100)
    assert CODEC.new_decoder(limits=lim).decode(ok) == 100


def test_need_counts() -> None:
    d = CODEC.new_decoder()
    raw = frame_bytes(0x02, 20, 1, b"\x91\x01a")
    assert d.decode(b"") == 16
    assert d.decode(raw[:10]) == 6
    assert d.decode(raw[:17]) == 2
    f = d.decode(b"junk" + raw, 4)
    assert isinstance(f, Frame) and f.raw == raw


def test_kinds() -> None:
    d = CODEC.new_decoder()
    two = d.decode(frame_bytes(0xC2, 0, 1, b"N"))
    one = d.decode(frame_bytes(0x82, 0, 2, b"N"))
    ev = d.decode(frame_bytes(0xE2, 0, 3, b"N"))
    rsp = d.decode(frame_bytes(0x02, 70, 1, b""))
    assert isinstance(two, Frame) and two.kind is Kind.REQUEST and CODEC.expects_response(two)
    assert isinstance(one, Frame) and one.kind is Kind.ONEWAY and not CODEC.expects_response(one)
    assert isinstance(ev, Frame) and ev.heartbeat and ev.kind is Kind.REQUEST
    assert isinstance(rsp, Frame) and rsp.status == 70 and rsp.kind is Kind.RESPONSE
    assert two.status is None


def test_headers_are_lazy() -> None:
    raw = hexfile(FIX / "dubbo-ssl-python.dubbo-request.hex")
    bad = raw[:16] + b"\xff" + raw[17:]         # broken body: framing must not care
    f = CODEC.new_decoder().decode(bad)
    assert isinstance(f, Frame) and not f.headers_parsed()
    with pytest.raises(ProtocolError) as e:
        f.headers  # noqa: B018
    assert e.value.reply_hint == "bad_request"


def test_non_hessian_passthrough() -> None:
    raw = hexfile(FIX / "built-fastjson-request.hex")
    f = CODEC.new_decoder().decode(raw)
    assert isinstance(f, Frame) and f.headers == {}
    assert CODEC.encode(f) == raw
    f.request_id = 99
    g = CODEC.new_decoder().decode(CODEC.encode(f))
    assert isinstance(g, Frame) and g.request_id == 99 and g.raw[16:] == raw[16:]
    f.headers["service"] = "x"
    with pytest.raises(ProtocolError):
        CODEC.encode(f)


def test_response_attachments_and_error_body() -> None:
    frames, _ = CODEC.new_decoder().decode_all(hexfile(FIX / "built-responses.hex"))
    assert [f.headers for f in frames] == [{}, {"traceId": "abc"}, {"k": "v"}, {}]
    # a broken response body gives no headers instead of an error (it is passed on as is)
    bad = frame_bytes(0x02, 20, 1, b"\x94\xff")
    f = CODEC.new_decoder().decode(bad)
    assert isinstance(f, Frame) and f.headers == {}


# --- encoding --------------------------------------------------------------------
@pytest.mark.parametrize("rid", [0, 1, 2**31, 2**63 - 1, -1, -(2**63)])
def test_id_patch(rid: int) -> None:
    raw = hexfile(FIX / "built-request.hex")
    f = CODEC.new_decoder().decode(raw)
    assert isinstance(f, Frame)
    f.request_id = rid
    out = CODEC.encode(f)
    assert out[:4] == raw[:4] and out[12:] == raw[12:]
    g = CODEC.new_decoder().decode(out)
    assert isinstance(g, Frame)
    assert g.request_id == (rid if rid < 2**63 else rid - 2**64)
    assert f.raw == raw      # the original is untouched


def test_id_generator_stays_non_negative() -> None:
    gen = CODEC.id_generator(start=2**63 - 1)
    assert gen() == 2**63 - 1 and gen() == 0


@needs_writer
def test_header_change_reencodes() -> None:
    h2 = hessian()
    raw = hexfile(FIX / "built-request.hex")
    f = CODEC.new_decoder().decode(raw)
    assert isinstance(f, Frame)
    orig = dict(f.headers)
    f.headers["method"] = "greetAll"
    f.headers["group"] = "green"
    f.headers["x-new"] = "1"
    del f.headers["timeout"]
    f.request_id = 77
    out = CODEC.encode(f)
    g = CODEC.new_decoder().decode(out)
    assert isinstance(g, Frame) and g.request_id == 77 and g.kind is Kind.REQUEST
    want = dict(orig, method="greetAll", group="green")
    want["x-new"] = "1"
    del want["timeout"]
    assert g.headers == want
    assert struct.unpack_from(">I", out, 12)[0] == len(out) - 16
    # the arguments are the original bytes, verbatim
    vals = h2.load_all(out[16:])
    assert vals[5] == "world" and vals[7] == 7 and len(vals) == 9
    args = raw[16:].split(b"\x05world", 1)[1].split(b"H", 1)[0]
    assert args in out


@needs_writer
def test_service_and_version_change_follow_into_attachments() -> None:
    raw = hexfile(FIX / "built-request.hex")
    f = CODEC.new_decoder().decode(raw)
    assert isinstance(f, Frame)
    f.headers["service"] = "com.example.Other"
    f.headers["version"] = "2.0.0"
    g = CODEC.new_decoder().decode(CODEC.encode(f))
    assert isinstance(g, Frame)
    assert g.headers["service"] == "com.example.Other" and g.headers["path"] == "com.example.Other"
    assert g.headers["version"] == "2.0.0"
    assert g.headers["interface"] == "com.example.Greeter"


@needs_writer
def test_header_change_on_wire_request_and_no_attachments() -> None:
    for name in ("dubbo-ssl-python.dubbo-request", "built-request-no-attachments"):
        raw = hexfile(FIX / f"{name}.hex")
        f = CODEC.new_decoder().decode(raw)
        assert isinstance(f, Frame)
        f.headers["tag"] = "canary"
        g = CODEC.new_decoder().decode(CODEC.encode(f))
        assert isinstance(g, Frame) and g.headers == f.headers


# --- behaviour -------------------------------------------------------------------
def test_heartbeats() -> None:
    hb = CODEC.heartbeat_request(5)
    assert hb.raw == bytes.fromhex("dabbe200" "0000000000000005" "00000001") + b"N"
    assert hb.heartbeat and hb.kind is Kind.REQUEST
    req = CODEC.new_decoder().decode(hexfile(FIX / "built-heartbeat-request.hex"))
    assert isinstance(req, Frame)
    rep = CODEC.heartbeat_reply(req)
    assert rep.raw == hexfile(FIX / "built-heartbeat-response.hex")
    assert rep.status == 20 and rep.request_id == 12 and rep.heartbeat
    neg = CODEC.heartbeat_reply(CODEC.heartbeat_request(-5))
    assert neg.request_id == -5


@needs_writer
@pytest.mark.parametrize("reason,status", [
    (Reason.NO_ROUTE, 60), (Reason.TIMEOUT, 31), (Reason.NO_HEALTHY_UPSTREAM, 80),
    (Reason.UPSTREAM_RESET, 80), (Reason.OVERFLOW, 100), (Reason.BAD_REQUEST, 40)])
def test_error_reply(reason: Reason, status: int) -> None:
    h2 = hessian()
    req = CODEC.new_decoder().decode(hexfile(FIX / "built-request.hex"))
    assert isinstance(req, Frame)
    req.request_id = 1234567890123
    rep = CODEC.error_reply(req, reason, "boom: é")
    back = CODEC.new_decoder(Role.RESPONSES).decode(rep.raw)
    assert isinstance(back, Frame)
    assert back.kind is Kind.RESPONSE and back.status == status and back.request_id == 1234567890123
    assert not back.heartbeat and back.raw[2] == 0x02
    # what a Dubbo client does with status != 20: in.readUTF() on the body
    assert h2.loads(back.raw[16:]) == "boom: é"
    assert CODEC.status_to_http(back) == {60: 404, 31: 504, 80: 500, 100: 503, 40: 400}[status]
    default = CODEC.error_reply(req, reason)
    assert reason.value.replace("_", " ") in h2.loads(default.raw[16:])


def test_status_mapping() -> None:
    want = {20: 200, 30: 504, 31: 504, 40: 400, 50: 500, 60: 404, 70: 500, 80: 500, 90: 500, 100: 503}
    for s, code in want.items():
        f = CODEC.new_decoder().decode(frame_bytes(0x02, s, 1, b""))
        assert isinstance(f, Frame) and CODEC.status_to_http(f) == code
    assert STATUS_TO_HTTP == want
    f = CODEC.new_decoder().decode(frame_bytes(0x02, 55, 1, b""))
    assert isinstance(f, Frame) and CODEC.status_to_http(f) == 500


def test_class_attributes() -> None:
    assert CODEC.name == "dubbo" and CODEC.request_id_bits == 63 and CODEC.has_heartbeat
    assert CODEC.pool_mode.value == "multiplex" and CODEC.match_bytes == 2 and CODEC.match_rule


# --- properties ------------------------------------------------------------------
frames_st = st.builds(
    frame_bytes,
    flag=st.integers(0, 255), status=st.integers(0, 255),
    rid=st.integers(-(2**63), 2**63 - 1), body=st.binary(max_size=64))


@SETTINGS
@given(st.lists(frames_st, min_size=1, max_size=5), st.lists(st.integers(0, 400), max_size=8))
def test_roundtrip_and_chunking(frames: list[bytes], cuts: list[int]) -> None:
    data = b"".join(frames)
    got, left = decode_chunked(data, cuts)
    assert left == b""
    assert [f.raw for f in got] == frames
    whole, _ = CODEC.new_decoder().decode_all(data)
    assert [f.to_json() if f.raw[2] & 0x1F != 2 else f.raw for f in got] == \
        [f.to_json() if f.raw[2] & 0x1F != 2 else f.raw for f in whole]
    for f, raw in zip(got, frames):
        flag, status, rid = raw[2], raw[3], struct.unpack_from(">q", raw, 4)[0]
        assert f.request_id == rid and f.heartbeat == bool(flag & 0x20)
        assert f.kind is (Kind.RESPONSE if not flag & 0x80 else Kind.REQUEST if flag & 0x40 else Kind.ONEWAY)
        assert f.status == (None if flag & 0x80 else status)
        assert CODEC.encode(f) == raw


def _touch(f: Frame) -> None:
    try:
        f.to_json()
    except ProtocolError:
        pass


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    for prefix in (b"", b"\xda\xbb"):
        try:
            frames, _ = CODEC.new_decoder().decode_all(prefix + data)
        except ProtocolError:
            continue
        for f in frames:
            _touch(f)


def _seeds() -> list[bytes]:
    return [hexfile(p.with_suffix(".hex")) for p in fixtures()]


@SETTINGS
@given(st.sampled_from(_seeds()) if fixtures() else st.just(b""),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_frames_raise_only_protocol_error(seed: bytes, muts: list[tuple[int, int]]) -> None:
    b = bytearray(seed)
    for i, v in muts:
        if b:
            b[i % len(b)] = v
    try:
        frames, _ = CODEC.new_decoder().decode_all(bytes(b))
    except ProtocolError:
        return
    for f in frames:
        _touch(f)
        if f.headers_parsed() and f.headers and writer_available():
            f.headers["x"] = "y"
            try:
                CODEC.encode(f)
            except ProtocolError:
                pass


@SETTINGS
@given(st.integers(0, 200), st.integers(0, 200), st.lists(st.integers(0, 240), max_size=6))
def test_limit_verdict_independent_of_chunking(limit: int, blen: int, cuts: list[int]) -> None:
    data = frame_bytes(0xC2, 0, 1, bytes(blen))
    lim = Limits(dubbo_max_body=limit)
    try:
        frames, _ = decode_chunked(data, cuts, lim)
        verdict = "ok" if frames else "need"
    except FrameTooLarge:
        verdict = "too large"
    assert verdict == ("too large" if blen > limit else "ok")


def test_decoded_frames_have_every_slot() -> None:
    for path in sorted(FIX.glob("*.hex")):
        frames, _ = CODEC.new_decoder().decode_all(hexfile(path))
        for f in frames:
            for slot in Frame.__slots__:
                getattr(f, slot)   # the decoder builds frames inline: a new Frame slot must be set there
            assert f.protocol == CODEC.name and f.codec is CODEC and f.orig_request_id == f.request_id
            assert not f.headers_parsed()


@needs_writer
def test_path_attachment_kept_when_service_unchanged() -> None:
    # fuzz regression: a `path` attachment that differs from the service must survive a
    # re-encode that does not touch the service
    raw = hexfile(FIX / "built-request.hex")
    f = CODEC.new_decoder().decode(raw)
    assert isinstance(f, Frame)
    f.headers["path"] = "com.example.Alias"
    g = CODEC.new_decoder().decode(CODEC.encode(f))
    assert isinstance(g, Frame) and g.headers == f.headers
    g.headers["x"] = "1"
    h = CODEC.new_decoder().decode(CODEC.encode(g))
    assert isinstance(h, Frame) and h.headers["path"] == "com.example.Alias"


# --- real clients read our local replies ----------------------------------------------
class ReplyServer:
    """A loopback server (thread) that answers every Dubbo request with ``reply(frame)``."""

    def __init__(self, reply: Any) -> None:
        import socket
        import threading
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.seen: list[Frame] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import socket
        conns: list[socket.socket] = []
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(0.2)
            conns.append(c)
            dec = CODEC.new_decoder(Role.REQUESTS)
            buf = bytearray()
            while not self.stop.is_set():
                try:
                    data = c.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                buf += data
                while True:
                    r = dec.decode(buf)
                    if isinstance(r, int):
                        break
                    del buf[:len(r.raw)]
                    self.seen.append(r)
                    out = CODEC.heartbeat_reply(r) if r.heartbeat else self.reply(r)
                    if out is not None and r.kind is Kind.REQUEST:
                        c.sendall(CODEC.encode(out))
        for c in conns:
            c.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.mark.peers
@pytest.mark.timeout(90)
@pytest.mark.parametrize("client", ["dubbo-ssl-python", "sofa-rpc-node"])
def test_real_client_surfaces_error_reply(client: str) -> None:
    import sys
    import time
    sys.path.insert(0, str(ROOT / "tests"))
    from peers import dubbo_py, node
    if client == "dubbo-ssl-python" and dubbo_py.missing():
        pytest.skip(dubbo_py.missing() or "")
    if client == "sofa-rpc-node" and node.missing():
        pytest.skip(node.missing() or "")
    srv = ReplyServer(lambda r: CODEC.error_reply(r, Reason.NO_ROUTE, "xproto: no route for it"))
    try:
        t0 = time.monotonic()
        if client == "dubbo-ssl-python":
            out = dubbo_py.dubbo_ssl_call(srv.address, "sayHello", ["x"], timeout=8.0)
        else:
            out = node.dubbo_call(srv.address, "sayHello", ["x"], timeout_ms=8000)
        took = time.monotonic() - t0
    finally:
        srv.close()
    assert srv.seen and srv.seen[0].headers["method"] == "sayHello"
    assert not out.get("ok"), out
    text = json.dumps(out)
    assert "no route for it" in text, out          # the client shows our message ...
    assert "timeout" not in out.get("name", "").lower(), out   # ... at once, not after its timeout
    assert took < 8.0 + 10, took
