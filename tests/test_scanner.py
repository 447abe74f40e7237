"""Contract tests for the codec fast path, :class:`xproto.codec.Scanner`.

The proxy forwards the frames a scanner accepts as their original bytes with the request
id patched in place, without ever asking the decoder. So whenever ``scan`` returns
``(end, rid, value)`` the decoder of the same role and limits must agree exactly: a whole,
non-heartbeat frame of ``end - pos`` bytes, that id, that kind (REQUESTS: ``value`` is
"a response is expected") or that ``status_to_http`` (RESPONSES). And ``pack_id`` must
write the same bytes as ``patch_request_id``.

Checked on every dubbo/bolt fixture and captured frame (at pos 0 and inside a larger
buffer, as bytes, bytearray and memoryview, every truncation, limits around the frame's size) and
by Hypothesis on generated headers and random bytes. The converse is checked too: a
frame the decoder accepts is rejected by the scanner only for a listed reason
(heartbeat, other kind, bolt v2, goaway, cmdcode not the type's RPC command), so a
scanner that always says None fails here.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xproto.codec import Codec, Role, Scanner
from xproto.codecs.bolt import layout as bolt_layout
from xproto.codecs.example import LineCodec
from xproto.errors import ProtocolError
from xproto.frame import Frame, Kind
from xproto.limits import DEFAULT_LIMITS, Limits
from xproto.registry import default_registry

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
WIRE = FIXTURES / "shared" / "wire"
SCANNED = ("dubbo", "bolt")
ROLES = (Role.REQUESTS, Role.RESPONSES)
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

_REG = default_registry()


def _codec(name: str) -> Codec:
    return _REG.get(name)


def _scanner(codec: Codec, role: Role, limits: Limits = DEFAULT_LIMITS) -> Scanner:
    s = codec.scanner(role, limits)
    assert isinstance(s, Scanner), (codec.name, role)
    return s


# --- the contract ----------------------------------------------------------------------
def _decode(codec: Codec, role: Role, limits: Limits, buf: Any, pos: int) -> Frame | int | ProtocolError:
    try:
        return codec.new_decoder(role, limits).decode(buf, pos)
    except ProtocolError as e:
        return e


def _ids_for(codec: Codec, role: Role, rid: int) -> list[int]:
    """New ids to patch in: the edges of the generator's range (+ negative dubbo ids on
    responses: the proxy restores the client's signed id)."""
    top = (1 << codec.request_id_bits) - 1
    ids = [0, 1, top, (rid + 12345) & top]
    if codec.name == "dubbo" and role is Role.RESPONSES:
        ids += [-1, -2, -(1 << 63)]
    return ids


def check(codec: Codec, role: Role, limits: Limits, buf: Any, pos: int,
          new_ids: list[int] | None = None) -> tuple[tuple[int, int, Any] | None, Frame | int | ProtocolError]:
    """Scan and decode ``buf`` at ``pos``; assert the contract; return both results."""
    s = _scanner(codec, role, limits)
    before = bytes(buf)
    r = s.scan(buf, pos, len(buf))
    assert bytes(buf) == before, "scan modified the buffer"
    d = _decode(codec, role, limits, buf, pos)
    if r is None:
        return None, d
    where = f"{codec.name} {role.value} pos={pos} buf={bytes(buf).hex()}"
    assert isinstance(r, tuple) and len(r) == 3, f"scan returned {r!r}: {where}"
    end, rid, value = r
    assert isinstance(d, Frame), f"scanner accepted {r!r} but the decoder says {d!r}: {where}"
    assert end - pos == len(d.raw), f"scanner end {end} vs frame length {len(d.raw)}: {where}"
    assert bytes(buf[pos:end]) == d.raw
    assert rid == d.orig_request_id == d.request_id, f"scanner id {rid} vs {d.orig_request_id}: {where}"
    assert d.heartbeat is False, f"scanner accepted a heartbeat: {where}"
    if role is Role.REQUESTS:
        assert value is True or value is False, f"value {value!r}: {where}"
        assert d.kind is (Kind.REQUEST if value else Kind.ONEWAY), f"value {value} vs kind {d.kind}: {where}"
        assert codec.expects_response(d) is value
    else:
        assert d.kind is Kind.RESPONSE, f"responses scanner accepted a {d.kind}: {where}"
        assert value == codec.status_to_http(d), f"value {value} vs {codec.status_to_http(d)}: {where}"
    # id patch in place == patch_request_id
    for new_id in (new_ids if new_ids is not None else _ids_for(codec, role, rid)):
        b = bytearray(buf)
        s.pack_id(b, pos + s.id_offset, new_id & s.id_mask)
        assert b[:pos] == before[:pos] and b[end:] == before[end:], f"pack_id wrote outside the frame: {where}"
        d.request_id = new_id
        want = codec.patch_request_id(d.raw, d)
        assert bytes(b[pos:end]) == want, f"pack_id {new_id} differs from patch_request_id: {where}"
        # the patched frame still scans the same, with the new id as the decoder reads it
        r2 = s.scan(b, pos, len(b))
        d2 = _decode(codec, role, limits, bytes(b), pos)
        assert isinstance(d2, Frame) and r2 == (end, d2.orig_request_id, value), where
    d.request_id = d.orig_request_id
    return r, d


def plain(codec: Codec, role: Role, f: Frame) -> str | None:
    """None if the scanner should accept this decoded frame, else why it may decline it."""
    if f.heartbeat:
        return "heartbeat"
    if (f.kind is Kind.RESPONSE) != (role is Role.RESPONSES):
        return "kind handled by the other role"
    if codec.name == "bolt":
        raw = f.raw
        if raw[0] != 1:
            return "bolt v2"
        cmd = struct.unpack_from(">H", raw, 2)[0]
        if cmd == 100:
            return "goaway"
        if cmd != (2 if raw[1] == 0 else 1):
            return "bolt cmdcode is not the type's RPC command"
    return None


def check_converse(codec: Codec, role: Role, r: Any, d: Any, buf: Any, pos: int) -> None:
    """Soft check: the scanner does not decline a plain frame the decoder accepts."""
    if r is None and isinstance(d, Frame):
        why = plain(codec, role, d)
        assert why is not None, (
            f"{codec.name} {role.value} scanner declined a plain {d.kind.value} frame the decoder "
            f"accepts (not wrong, but it needlessly leaves the fast lane): pos={pos} "
            f"frame={d.raw.hex()}")


# --- fixtures ------------------------------------------------------------------------------
def _fixture_frames() -> list[tuple[str, str, bytes]]:
    """(id, protocol, frame bytes) of every dubbo/bolt fixture frame and captured frame."""
    out: list[tuple[str, str, bytes]] = []
    for proto in SCANNED:
        for j in sorted((FIXTURES / proto).glob("*.json")):
            doc = json.loads(j.read_text())
            data = bytes.fromhex("".join(j.with_suffix(".hex").read_text().split()))
            pos = 0
            for i, fr in enumerate(doc["frames"]):
                n = fr["frame_len"]
                out.append((f"{proto}/{j.stem}#{i}", proto, data[pos:pos + n]))
                pos += n
            assert pos == len(data), j
    for h in sorted(WIRE.glob("*.hex")):
        proto = h.name.split(".")[1].split("-")[0]
        if proto in SCANNED:
            out.append((f"wire/{h.stem}", proto, bytes.fromhex("".join(h.read_text().split()))))
    return out


FRAMES = _fixture_frames()
IDS = [f[0] for f in FRAMES]

#: (fixture frame, role, value) the scanner must accept: real and built plain frames
MUST_ACCEPT = {
    ("dubbo/built-request#0", Role.REQUESTS): True,
    ("dubbo/built-oneway#0", Role.REQUESTS): False,
    ("dubbo/built-fastjson-request#0", Role.REQUESTS): True,
    ("dubbo/dubbo-ssl-python.dubbo-request#0", Role.REQUESTS): True,
    ("wire/dubbo-ssl-python.dubbo-request", Role.REQUESTS): True,
    ("dubbo/built-responses#0", Role.RESPONSES): 200,
    ("dubbo/built-response-negative-id#0", Role.RESPONSES): 200,
    ("dubbo/dubbo-py-server.dubbo-response#0", Role.RESPONSES): 200,
    ("wire/dubbo-py-server.dubbo-response", Role.RESPONSES): 200,
    ("bolt/built-v1-request#0", Role.REQUESTS): True,
    ("bolt/built-v1-oneway-nulls#0", Role.REQUESTS): False,
    ("bolt/anthunder.bolt-request#0", Role.REQUESTS): True,
    ("wire/anthunder.bolt-request", Role.REQUESTS): True,
    ("bolt/anthunder.bolt-response#0", Role.RESPONSES): 200,
    ("wire/anthunder.bolt-response", Role.RESPONSES): 200,
    ("bolt/built-v1-responses#0", Role.RESPONSES): 200,
}


def test_fixture_inventory() -> None:
    names = set(IDS)
    for fid, _ in MUST_ACCEPT:
        assert fid in names, f"fixture {fid} is gone: update MUST_ACCEPT"
    assert sum(1 for f in FRAMES if f[1] == "dubbo") >= 20
    assert sum(1 for f in FRAMES if f[1] == "bolt") >= 25


# --- 1. which codecs have a scanner ----------------------------------------------------------
def test_registry_scanners() -> None:
    names = list(_REG.names())
    assert set(SCANNED) <= set(names)
    for name in names:
        c = _codec(name)
        assert c.scanner(Role.ANY) is None or isinstance(c.scanner(Role.ANY), Scanner), name
        for role in ROLES:
            s = c.scanner(role, DEFAULT_LIMITS)
            if name in SCANNED:
                assert isinstance(s, Scanner), (name, role)
                assert callable(s.scan) and callable(s.pack_id)
                assert isinstance(s.id_offset, int) and s.id_offset >= 0
                assert s.id_mask >= (1 << c.request_id_bits) - 1
                assert s.scan(b"", 0, 0) is None
            elif name == "thrift":     # framed binary; its contract: tests/test_scanner_thrift.py
                assert isinstance(s, Scanner) and s.id_offset == -1, (name, role)
            else:
                assert s is None, (name, role)
    for c in (*(_codec(n) for n in ("kafka", "http") if n in names), LineCodec()):
        for role in (Role.ANY, *ROLES):
            assert c.scanner(role) is None, (c.name, role)
            assert c.scanner(role, Limits(dubbo_max_body=1)) is None


# --- 2. every fixture frame ------------------------------------------------------------------
@pytest.mark.parametrize("fid,proto,raw", FRAMES, ids=IDS)
def test_fixture_frame(fid: str, proto: str, raw: bytes) -> None:
    codec = _codec(proto)
    junk = bytes((0xDA, 0xBB, 0x01, 0x02, 0x00, 0x55, 0xFF))
    tail = raw[:9] + b"\x01\x00"
    for role in ROLES:
        results = []
        for pre, post in ((b"", b""), (junk, b""), (b"", tail), (junk, tail), (junk[:1], raw)):
            for kind in (bytes, bytearray, lambda b: memoryview(bytearray(b))):
                buf = kind(pre + raw + post)
                r, d = check(codec, role, DEFAULT_LIMITS, buf, len(pre))
                assert isinstance(d, Frame) and d.raw == raw, f"{fid}: the decoder fails: {d!r}"
                check_converse(codec, role, r, d, buf, len(pre))
                results.append(None if r is None else (r[0] - len(pre), *r[1:]))
        # the verdict depends on neither the position, the neighbours nor the buffer type
        assert all(x == results[0] for x in results), (fid, role, results)
        want = MUST_ACCEPT.get((fid, role))
        if want is not None:
            assert results[0] is not None and results[0][2] == want, (fid, role, results[0])
        else:
            assert isinstance(d, Frame)
            if plain(codec, role, d) is not None:
                assert results[0] is None, (fid, role, plain(codec, role, d))


def test_fixtures_accepted_somewhere() -> None:
    """Both roles of both codecs take the fast lane on real fixtures (not a vacuous pass)."""
    seen: dict[tuple[str, Role], int] = {}
    for _, proto, raw in FRAMES:
        codec = _codec(proto)
        for role in ROLES:
            if _scanner(codec, role).scan(raw, 0, len(raw)) is not None:
                seen[(proto, role)] = seen.get((proto, role), 0) + 1
    assert set(seen) == {(p, r) for p in SCANNED for r in ROLES}, seen


def test_pipelined_fixture_stream() -> None:
    """Scanning a multiplexed stream frame after frame ends exactly where the decoder does."""
    for proto in SCANNED:
        codec = _codec(proto)
        for role, name in ((Role.REQUESTS, "built-multiplexed-requests"),
                           (Role.RESPONSES, "built-multiplexed-responses")):
            data = bytes.fromhex("".join((FIXTURES / proto / f"{name}.hex").read_text().split()))
            s = _scanner(codec, role)
            dec = codec.new_decoder(role)
            pos = fast = want = 0
            while pos < len(data):
                r = s.scan(data, pos, len(data))
                f = dec.decode(data, pos)
                assert isinstance(f, Frame)
                if r is not None:
                    fast += 1
                    assert r[0] == pos + len(f.raw) and r[1] == f.orig_request_id
                want += plain(codec, role, f) is None
                pos += len(f.raw)
            assert fast == want >= 1, (proto, role, fast, want)


@pytest.mark.parametrize("fid,proto,raw", FRAMES, ids=IDS)
def test_corrupted_header(fid: str, proto: str, raw: bytes) -> None:
    """Every byte of the fixed header flipped (magic, version, type, cmdcode, flags, lengths):
    the scanner still agrees with the decoder (which rejects, re-frames or re-kinds it)."""
    codec = _codec(proto)
    for i in range(min(len(raw), 24)):
        for x in (0x01, 0x02, 0x20, 0x40, 0x80, 0xFF):
            b = bytearray(raw)
            b[i] ^= x
            for role in ROLES:
                r, d = check(codec, role, DEFAULT_LIMITS, b, 0, new_ids=[3])
                check_converse(codec, role, r, d, b, 0)


# --- 3. truncation ---------------------------------------------------------------------------
@pytest.mark.parametrize("fid,proto,raw", FRAMES, ids=IDS)
def test_truncated_never_accepted(fid: str, proto: str, raw: bytes) -> None:
    codec = _codec(proto)
    scans = [_scanner(codec, role).scan for role in ROLES]
    junk = b"\x01\x00\xda\xbb"
    for k in range(len(raw)):
        cut = raw[:k]
        for scan in scans:
            assert scan(cut, 0, k) is None, f"{fid}: accepted a {k}-byte prefix"
            assert scan(bytearray(junk + cut), 4, 4 + k) is None, f"{fid}: accepted a {k}-byte prefix at 4"
            # n is authoritative: bytes past n are not the frame's
            assert scan(raw, 0, k) is None, f"{fid}: accepted n={k} with the whole frame in buf"
        if k % 7 == 0 or k < 24:
            for role in ROLES:
                assert isinstance(codec.new_decoder(role).decode(cut, 0), int)


# --- 4. limits -------------------------------------------------------------------------------
def _limit_variants(proto: str, raw: bytes) -> list[Limits]:
    if proto == "dubbo":
        blen = struct.unpack_from(">I", raw, 12)[0]
        return [Limits(dubbo_max_body=m) for m in {max(blen - 1, 0), blen, blen + 1, 0}]
    total = len(raw)
    hl = bolt_layout(raw).block_len
    out = []
    for mf in {total - 1, total, total + 1}:
        for mb in {max(hl - 1, 0), hl, hl + 1}:
            out.append(Limits(bolt_max_frame=mf, bolt_max_header_block=mb))
    return out


@pytest.mark.parametrize("fid,proto,raw", FRAMES, ids=IDS)
def test_limits(fid: str, proto: str, raw: bytes) -> None:
    codec = _codec(proto)
    for limits in _limit_variants(proto, raw):
        for role in ROLES:
            at_default = _scanner(codec, role).scan(raw, 0, len(raw))
            for buf, pos in ((raw, 0), (bytearray(b"\x00\x00" + raw + b"\x01"), 2)):
                r, d = check(codec, role, limits, buf, pos, new_ids=[7])
                if isinstance(d, ProtocolError):
                    assert r is None
                else:
                    # within the limits the verdict is the default one
                    assert isinstance(d, Frame)
                    want = None if at_default is None else (at_default[0] + pos, *at_default[1:])
                    assert r == want, (fid, role, limits, r, at_default)


def test_limits_edges_dubbo() -> None:
    codec = _codec("dubbo")
    frame = struct.pack(">HBBqI", 0xDABB, 0xC2, 0, 5, 10) + bytes(10)
    for role, flag in ((Role.REQUESTS, 0xC2), (Role.RESPONSES, 0x02)):
        f = frame[:2] + bytes([flag]) + bytes([20]) + frame[4:]
        assert check(codec, role, Limits(dubbo_max_body=10), f, 0)[0] is not None
        r, d = check(codec, role, Limits(dubbo_max_body=9), f, 0)
        assert r is None and isinstance(d, ProtocolError)


def test_limits_edges_bolt() -> None:
    codec = _codec("bolt")
    # v1 request: class 3, header block 4, content 5 -> 22 + 12 = 34 bytes
    req = struct.pack(">BBHBIBiHHI", 1, 1, 1, 1, 9, 1, 1000, 3, 4, 5) + bytes(12)
    rsp = struct.pack(">BBHBIBHHHI", 1, 0, 2, 1, 9, 1, 0, 3, 4, 5) + bytes(12)
    for role, f in ((Role.REQUESTS, req), (Role.RESPONSES, rsp)):
        ok = Limits(bolt_max_frame=len(f), bolt_max_header_block=4)
        assert check(codec, role, ok, f, 0)[0] is not None
        for bad in (Limits(bolt_max_frame=len(f) - 1, bolt_max_header_block=4),
                    Limits(bolt_max_frame=len(f), bolt_max_header_block=3)):
            r, d = check(codec, role, bad, f, 0)
            assert r is None and isinstance(d, ProtocolError), (role, bad)


# --- 5/6. Hypothesis -------------------------------------------------------------------------
MUTATIONS = ("none", "none", "magic", "flag", "kind", "heartbeat", "goaway", "length", "truncate",
             "version", "limit", "limit")
#: the generated-header properties: cheap (~1 ms an example), so at least 1000 examples
PROPS = settings(SETTINGS, max_examples=max(settings().max_examples, 1000))


@st.composite
def dubbo_cases(draw: Any) -> tuple[bytes, Limits, Role, str]:
    """A plain dubbo frame for the drawn role with at most one thing changed."""
    role = draw(st.sampled_from(ROLES))
    how = draw(st.sampled_from(MUTATIONS))
    magic = 0xDABB
    ser = draw(st.sampled_from([2, 6, 0x1F, 0]))
    flag = (draw(st.sampled_from([0xC0, 0x80])) if role is Role.REQUESTS else 0) | ser
    status = draw(st.one_of(st.sampled_from([20, 30, 31, 40, 50, 60, 70, 80, 90, 100]),
                            st.integers(0, 255)))
    rid = draw(st.one_of(st.integers(-(1 << 63), (1 << 63) - 1),
                         st.sampled_from([0, 1, -1, -2, (1 << 63) - 1, -(1 << 63)])))
    blen = draw(st.integers(0, 40))
    body_len = blen
    limits = DEFAULT_LIMITS
    if how == "magic":
        magic = draw(st.integers(0, 0xFFFF).filter(lambda m: m != 0xDABB))
    elif how == "flag":
        flag = draw(st.one_of(st.integers(0, 255), st.sampled_from([f | ser for f in (0x20, 0xA0, 0xE0, 0x60)])))
    elif how == "kind":
        flag = (0 if role is Role.REQUESTS else draw(st.sampled_from([0xC0, 0x80]))) | ser
    elif how in ("heartbeat", "goaway"):   # dubbo events (heartbeats, readonly events)
        flag |= 0x20
    elif how == "length":
        blen = draw(st.sampled_from([0xFFFFFFFF, 1 << 24, (1 << 24) + 1, blen + 1]))
    elif how == "truncate":
        body_len = draw(st.integers(0, max(blen - 1, 0)))
        if blen == 0:
            blen = body_len + 1
    elif how == "version":   # dubbo has none: a different serialization id
        flag = (flag & 0xE0) | draw(st.integers(0, 0x1F))
    elif how == "limit":
        blen = body_len = max(blen, 1)
        limits = Limits(dubbo_max_body=blen + draw(st.sampled_from([-1, 0, 1])))
    hdr = struct.pack(">HBBqI", magic, flag, status, rid, blen)
    return hdr + draw(st.binary(min_size=body_len, max_size=body_len)), limits, role, how


@st.composite
def bolt_cases(draw: Any) -> tuple[bytes, Limits, Role, str]:
    """A plain bolt v1 RPC frame for the drawn role with at most one thing changed (type,
    cmdcode incl. heartbeat/goaway, protocol byte, v2 with or without CRC, lengths, limits)."""
    role = draw(st.sampled_from(ROLES))
    how = draw(st.sampled_from(MUTATIONS))
    if role is Role.REQUESTS:
        t, cmd = draw(st.sampled_from([(1, 1), (2, 1)]))
    else:
        t, cmd = 0, 2
    proto = 1
    rid = draw(st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF])))
    ver2, codec = draw(st.integers(0, 2)), draw(st.sampled_from([1, 11]))
    cl, hl, ctl = draw(st.integers(0, 12)), draw(st.integers(0, 12)), draw(st.integers(0, 12))
    pad: int | None = None
    limits = DEFAULT_LIMITS
    ver1, sw = 1, 0
    if how == "magic":
        proto = draw(st.sampled_from([0, 3, 0xFF, 2]))
    elif how in ("flag", "kind"):
        t = draw(st.one_of(st.sampled_from([0, 1, 2]), st.integers(0, 255)))
        if how == "flag":
            cmd = draw(st.one_of(st.sampled_from([0, 1, 2, 100]), st.integers(0, 0xFFFF)))
    elif how == "length":
        ctl = draw(st.sampled_from([0xFFFFFFFF, 1 << 24, (1 << 24) + 1]))
        pad = draw(st.integers(0, 8))
    elif how == "heartbeat":
        cmd = 0
    elif how == "goaway":
        cmd = 100
    elif how == "version":
        proto = 2
        ver1, sw = draw(st.sampled_from([1, 2, 0])), draw(st.sampled_from([0, 1, 0xFF]))
    ts = draw(st.integers(0, 0xFFFF)) if t == 0 else draw(st.integers(-(1 << 31), (1 << 31) - 1))
    if proto != 2:
        if t == 0:
            hdr = struct.pack(">BBHBIBHHHI", proto, t, cmd, ver2, rid, codec, ts, cl, hl, ctl)
        else:
            hdr = struct.pack(">BBHBIBiHHI", proto, t, cmd, ver2, rid, codec, ts, cl, hl, ctl)
    elif t == 0:
        hdr = struct.pack(">BBBHBIBBHHHI", 2, ver1, t, cmd, ver2, rid, codec, sw, ts, cl, hl, ctl)
    else:
        hdr = struct.pack(">BBBHBIBBiHHI", 2, ver1, t, cmd, ver2, rid, codec, sw, ts, cl, hl, ctl)
    need = cl + hl + ctl if pad is None else pad
    if how == "truncate":
        need = draw(st.integers(0, max(need - 1, 0)))
        if need == cl + hl + ctl:      # nothing to cut from the body: cut the header
            hdr = hdr[:draw(st.integers(0, len(hdr) - 1))]
    frame = hdr + draw(st.binary(min_size=need, max_size=need))
    if proto == 2 and ver1 == 2 and sw & 1 and draw(st.booleans()):
        frame += struct.pack(">I", zlib.crc32(frame) & 0xFFFFFFFF)
    if how == "limit":
        total = len(frame)
        limits = Limits(bolt_max_frame=total + draw(st.sampled_from([-1, 0, 1])),
                        bolt_max_header_block=max(hl + draw(st.sampled_from([-1, 0, 1])), 0))
    return frame, limits, role, how


@st.composite
def placed(draw: Any, cases: Any) -> tuple[Any, int, Limits, Role, str]:
    """A case at a random pos, with neighbours (junk or the frame again), as bytes or bytearray."""
    frame, limits, role, how = draw(cases)
    pre = draw(st.binary(max_size=6))
    post = draw(st.one_of(st.just(b""), st.binary(max_size=8), st.just(frame)))
    kind = draw(st.sampled_from([bytes, bytearray]))
    return kind(pre + frame + post), len(pre), limits, role, how


def _limits_for(draw: Any) -> Limits:
    """The defaults, or tiny limits around the sizes of the bytes drawn."""
    return draw(st.one_of(
        st.just(DEFAULT_LIMITS),
        st.builds(Limits, dubbo_max_body=st.integers(0, 64), bolt_max_frame=st.integers(0, 96),
                  bolt_max_header_block=st.integers(0, 16))))


def _new_ids(draw: Any, codec: Codec, role: Role) -> list[int]:
    top = (1 << codec.request_id_bits) - 1
    ids = [draw(st.integers(0, top))]
    if codec.name == "dubbo" and role is Role.RESPONSES:
        ids.append(draw(st.integers(-(1 << 63), -1)))
    return ids


@PROPS
@given(case=placed(dubbo_cases()), data=st.data())
def test_dubbo_property(case: Any, data: Any) -> None:
    buf, pos, limits, role, how = case
    codec = _codec("dubbo")
    r, d = check(codec, role, limits, buf, pos, new_ids=_new_ids(data.draw, codec, role))
    check_converse(codec, role, r, d, buf, pos)
    if how in ("none", "version"):
        assert r is not None, f"plain frame not accepted: pos={pos} {bytes(buf).hex()}"


@PROPS
@given(case=placed(bolt_cases()), data=st.data())
def test_bolt_property(case: Any, data: Any) -> None:
    buf, pos, limits, role, how = case
    codec = _codec("bolt")
    r, d = check(codec, role, limits, buf, pos, new_ids=_new_ids(data.draw, codec, role))
    check_converse(codec, role, r, d, buf, pos)
    if how in ("none",):
        assert r is not None, f"plain frame not accepted: pos={pos} {bytes(buf).hex()}"


@PROPS
@given(buf=st.binary(max_size=64), kind=st.sampled_from([bytes, bytearray]), data=st.data())
def test_random_bytes(buf: bytes, kind: type, data: Any) -> None:
    b = kind(buf)
    pos = data.draw(st.integers(0, len(b)))
    limits = _limits_for(data.draw)
    for proto in SCANNED:
        codec = _codec(proto)
        for role in ROLES:
            r, d = check(codec, role, limits, b, pos, new_ids=_new_ids(data.draw, codec, role))
            check_converse(codec, role, r, d, b, pos)


@SETTINGS
@given(rid=st.integers(-(1 << 63), (1 << 63) - 1), new=st.integers(-(1 << 63), (1 << 63) - 1),
       flag=st.sampled_from([0xC2, 0x82, 0x02]), status=st.integers(0, 255))
def test_dubbo_id_patch_roundtrip(rid: int, new: int, flag: int, status: int) -> None:
    """The signed int64 id survives pack_id: the decoder reads back exactly ``new``."""
    codec = _codec("dubbo")
    role = Role.RESPONSES if flag == 0x02 else Role.REQUESTS
    f = bytearray(struct.pack(">HBBqI", 0xDABB, flag, status, rid, 2) + b"N\x91")
    s = _scanner(codec, role)
    r = s.scan(f, 0, len(f))
    assert r is not None and r[1] == rid
    s.pack_id(f, s.id_offset, new & s.id_mask)
    r2 = s.scan(f, 0, len(f))
    assert r2 is not None and r2[1] == new
    d = codec.new_decoder(role).decode(bytes(f), 0)
    assert isinstance(d, Frame) and d.orig_request_id == new
