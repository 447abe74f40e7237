"""The Thrift scanner (framed strict-binary calls, oneways and replies; the seqid's
position is returned per frame) against the Thrift decoder: whenever it accepts, the
decoder agrees on length, seqid, kind and status, and writing a new seqid at the returned
position gives exactly ``patch_request_id``'s bytes."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xproto.codec import Role
from xproto.errors import ProtocolError
from xproto.frame import Frame, Kind
from xproto.limits import DEFAULT_LIMITS, Limits
from xproto.registry import default_registry

ROOT = Path(__file__).resolve().parent.parent
THRIFT = default_registry().get("thrift")
ROLES = (Role.REQUESTS, Role.RESPONSES)
PROPS = settings(deadline=None, max_examples=600, suppress_health_check=[HealthCheck.too_slow])


def _decode(role: Role, limits: Limits, buf: Any, pos: int) -> Frame | int | ProtocolError:
    try:
        return THRIFT.new_decoder(role, limits).decode(buf, pos)
    except ProtocolError as e:
        return e


def check(role: Role, limits: Limits, buf: Any, pos: int) -> Any:
    s = THRIFT.scanner(role, limits)
    before = bytes(buf)
    r = s.scan(buf, pos, len(buf))
    assert bytes(buf) == before
    d = _decode(role, limits, buf, pos)
    if r is None:
        return None
    where = f"{role.value} pos={pos} buf={before.hex()}"
    end, rid, value, sid = r
    assert isinstance(d, Frame), f"scanner accepted {r!r}, decoder says {d!r}: {where}"
    assert end - pos == len(d.raw) and bytes(buf[pos:end]) == d.raw, where
    assert rid == d.orig_request_id, where
    assert not d.heartbeat and THRIFT.pool_mode_for(d).value == "multiplex", where
    if role is Role.REQUESTS:
        assert d.kind is (Kind.REQUEST if value else Kind.ONEWAY), where
    else:
        assert d.kind is Kind.RESPONSE and value == THRIFT.status_to_http(d), where
    assert pos < sid and sid + 4 <= end
    for new in (0, 1, (1 << 31) - 1, (rid + 777) & 0x7FFFFFFF, -1, -(1 << 31)):
        b = bytearray(buf)
        s.pack_id(b, sid, new & s.id_mask)
        assert b[:pos] == before[:pos] and b[end:] == before[end:], where
        d.request_id = new
        assert bytes(b[pos:end]) == THRIFT.patch_request_id(d.raw, d), f"id {new}: {where}"
        d2 = _decode(role, limits, bytes(b), pos)
        assert isinstance(d2, Frame) and s.scan(b, pos, len(b)) == (end, d2.orig_request_id, value, sid)
    return r


def _fixture_frames() -> list[tuple[str, bytes]]:
    out = []
    for j in sorted((ROOT / "fixtures" / "thrift").glob("*.json")):
        doc = json.loads(j.read_text())
        data = bytes.fromhex("".join(j.with_suffix(".hex").read_text().split()))
        pos = 0
        for i, fr in enumerate(doc["frames"]):
            n = fr["frame_len"]
            out.append((f"{j.stem}#{i}", data[pos:pos + n]))
            pos += n
    return out


FRAMES = _fixture_frames()


@pytest.mark.parametrize("fid,raw", FRAMES, ids=[f[0] for f in FRAMES])
def test_fixture_frames(fid: str, raw: bytes) -> None:
    accepted = []
    for role in ROLES:
        for kind in (bytes, bytearray):
            for pre, post in ((b"", b""), (b"\x00\x01\x02", b"\xff" * 5), (b"", raw)):
                r = check(role, DEFAULT_LIMITS, kind(pre + raw + post), len(pre))
                if r is not None:
                    accepted.append(role)
        for cut in range(len(raw)):
            assert THRIFT.scanner(role).scan(raw[:cut], 0, cut) is None
    framed_binary = ("built-framed-binary" in fid or "thrift-framed-binary" in fid)
    if framed_binary and raw[7] != 3:     # exception replies are the decoder's
        assert accepted, f"{fid}: a plain framed binary message must be accepted"
    else:
        assert not accepted, f"{fid}: only framed binary messages are the scanner's"


def test_limits() -> None:
    for fid, raw in FRAMES:
        if "framed-binary" not in fid:
            continue
        size = len(raw) - 4
        for lim in (size - 1, size, size + 1):
            for role in ROLES:
                check(role, Limits(thrift_max_frame=lim), raw, 0)
        check(Role.REQUESTS, Limits(thrift_max_name=0), raw, 0)


@st.composite
def messages(draw: Any) -> tuple[bytes, Role]:
    role = draw(st.sampled_from(ROLES))
    mtype = draw(st.sampled_from([1, 4] if role is Role.REQUESTS else [2, 3]))
    name = draw(st.binary(max_size=12))
    seqid = draw(st.integers(-(1 << 31), (1 << 31) - 1))
    body = draw(st.binary(max_size=12))
    version = 0x8001_0000 | mtype
    nlen = len(name)
    how = draw(st.sampled_from(["none", "none", "type", "version", "nlen", "size", "trunc", "compact"]))
    if how == "type":
        version = 0x8001_0000 | draw(st.integers(0, 0xFFFF))
    elif how == "version":
        version = draw(st.integers(0, 0xFFFFFFFF))
    elif how == "nlen":
        nlen = draw(st.sampled_from([-1, nlen + 1, nlen + 20, 1 << 30]))
    msg = struct.pack(">Ii", version, nlen) + name + struct.pack(">i", seqid) + body
    size = len(msg)
    if how == "size":
        size = draw(st.sampled_from([0, 1, size - 1, size + 1, 0x3FFFFFFF, 0x40000000]))
    if how == "compact":
        msg = bytes([0x82, (mtype << 5) | 1]) + msg[2:]
    frame = struct.pack(">I", size & 0xFFFFFFFF) + msg
    if how == "trunc":
        frame = frame[:draw(st.integers(0, len(frame)))]
    return frame, role


@PROPS
@given(m=messages(), pre=st.binary(max_size=4), post=st.binary(max_size=6))
def test_property(m: tuple[bytes, Role], pre: bytes, post: bytes) -> None:
    frame, role = m
    check(role, DEFAULT_LIMITS, pre + frame + post, len(pre))
    check(role, Limits(thrift_max_frame=max(len(frame) - 4, 1)), bytearray(frame), 0)


@PROPS
@given(buf=st.binary(max_size=40))
def test_random_bytes(buf: bytes) -> None:
    for role in ROLES:
        check(role, DEFAULT_LIMITS, buf, 0)
