"""The fixture runner (fixtures/<protocol>/<name>.hex + .json, see FIXTURES.md).

Each fixture is decoded (a) whole, (b) one byte at a time (the buffer compacted after every
frame, as the proxy does), (c) followed by the same bytes again, and must give the expected
frames every time; an unmodified frame re-encodes to its original bytes.

xproto extension of the format: an optional ``"error": {"offset": N, "contains": "text"}``
says the stream fails with a ProtocolError at byte N (after the listed frames) whose message
contains the text (e.g. the HTTP/2 preface on an HTTP/1 listener).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from xproto.codec import Codec, Decoder, Role
from xproto.errors import PluginError, ProtocolError
from xproto.frame import Frame
from xproto.registry import default_registry

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
WIRE = (Path(__file__).resolve().parents[1] / "fixtures" / "shared" / "wire")



def _is_fixture(p: Path) -> bool:
    """A codec fixture: <dir>/<name>.json with "protocol" and "frames", next to <name>.hex."""
    if not p.with_suffix(".hex").exists():
        return False
    try:
        doc = json.loads(p.read_text())
    except ValueError:
        return False
    return isinstance(doc, dict) and "protocol" in doc and "frames" in doc


ALL = sorted(p for p in FIXTURES.glob("*/*.json") if _is_fixture(p))
#: directories holding codec fixtures (others, e.g. fixtures/hessian2/, hold other data)
CODEC_DIRS = sorted({p.parent for p in ALL})


def _load(path: Path) -> tuple[dict[str, Any], bytes]:
    doc = json.loads(path.read_text())
    data = bytes.fromhex("".join(path.with_suffix(".hex").read_text().split()))
    return doc, data


def _codec(name: str) -> Codec:
    try:
        return default_registry().get(name)
    except PluginError as e:
        pytest.skip(f"codec {name!r} not available: {e}")


class Run:
    """The outcome of decoding one stream."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.error: ProtocolError | None = None
        self.error_at = 0          # stream offset of the frame that failed
        self.used_eof = False
        self.consumed = 0


def _context_frames(path: Path, doc: dict[str, Any]) -> list[Frame]:
    ctx = doc.get("context")
    if not ctx:
        return []
    cpath = path.parent / f"{ctx}.json"
    cdoc, cdata = _load(cpath)
    run = decode_whole(_codec(cdoc["protocol"]), Role(cdoc["role"]), cdata, _context_frames(cpath, cdoc))
    assert run.error is None, f"context fixture {ctx} does not decode: {run.error}"
    return run.frames


def _new_decoder(codec: Codec, role: Role, context: list[Frame]) -> Decoder:
    dec = codec.new_decoder(role)
    for f in context:
        dec.request_sent(f)
    return dec


def decode_whole(codec: Codec, role: Role, data: bytes, context: list[Frame]) -> Run:
    dec = _new_decoder(codec, role, context)
    run = Run()
    pos = 0
    try:
        while pos < len(data):
            r = dec.decode(data, pos)
            if isinstance(r, int):
                assert r > 0, f"decode returned {r} bytes needed"
                r = dec.eof(data, pos)
                if r is None:
                    break
                run.used_eof = True
            _check_frame(r)
            run.frames.append(r)
            pos += len(r.raw)
    except ProtocolError as e:
        run.error, run.error_at = e, pos
    run.consumed = pos
    return run


def decode_bytewise(codec: Codec, role: Role, data: bytes, context: list[Frame]) -> Run:
    dec = _new_decoder(codec, role, context)
    run = Run()
    buf = bytearray()
    base = 0   # stream offset of buf[0]
    try:
        for i in range(len(data)):
            buf.append(data[i])
            while buf:
                r = dec.decode(buf, 0)
                if isinstance(r, int):
                    assert r > 0, f"decode returned {r} bytes needed"
                    break
                _check_frame(r)
                run.frames.append(r)
                del buf[:len(r.raw)]
                base += len(r.raw)
        if buf:
            r = dec.eof(buf, 0)
            if r is not None:
                run.used_eof = True
                run.frames.append(r)
                base += len(r.raw)
    except ProtocolError as e:
        run.error, run.error_at = e, base
    run.consumed = base
    return run


def _check_frame(f: Frame) -> None:
    assert isinstance(f, Frame)
    assert isinstance(f.raw, bytes), "frame.raw must be bytes copied out of the buffer"
    assert len(f.raw) > 0


def _jsons(frames: list[Frame]) -> list[dict[str, Any]]:
    return [f.to_json() for f in frames]


def _check_error(run: Run, doc: dict[str, Any]) -> None:
    exp = doc.get("error")
    if exp is None:
        assert run.error is None, f"unexpected {type(run.error).__name__}: {run.error}"
        return
    assert run.error is not None, "expected a ProtocolError"
    assert exp["contains"] in run.error.message
    off = run.error.offset
    # codecs report offsets in their buffer, or from the frame start: either lands here
    assert exp["offset"] in (off, run.error_at + (off or 0)), (off, run.error_at)


@pytest.mark.parametrize("path", ALL, ids=[f"{p.parent.name}/{p.stem}" for p in ALL])
def test_fixture(path: Path) -> None:
    doc, data = _load(path)
    codec = _codec(doc["protocol"])
    role = Role(doc.get("role", "any"))
    context = _context_frames(path, doc)
    expected = doc["frames"]

    # (a) whole
    whole = decode_whole(codec, role, data, context)
    assert _jsons(whole.frames) == expected
    _check_error(whole, doc)
    if "error" not in doc:
        assert whole.consumed == len(data)

    # (b) one byte at a time
    bytewise = decode_bytewise(codec, role, data, context)
    assert _jsons(bytewise.frames) == expected
    _check_error(bytewise, doc)

    # unmodified frames re-encode to their original bytes
    for f in whole.frames:
        assert codec.encode(f) == f.raw

    # (c) followed by the same bytes again (not for a body the close delimits, nor errors)
    if "error" in doc or whole.used_eof:
        return
    twice = decode_whole(codec, role, data + data, context + context)
    assert twice.error is None, twice.error
    n = len(expected)
    got = _jsons(twice.frames)
    assert got[:n] == expected
    assert len(got) == 2 * n
    for a, b in zip(expected, got[n:]):
        # ids may be positional (HTTP): everything else repeats
        assert {**a, "request_id": None} == {**b, "request_id": None}


@pytest.mark.parametrize("d", CODEC_DIRS, ids=lambda d: d.name)
def test_fixture_files_are_paired(d: Path) -> None:
    for hx in d.glob("*.hex"):
        assert _is_fixture(hx.with_suffix(".json")), f"{hx} has no fixture .json next to it"


def _fixture_bytes() -> dict[bytes, list[str]]:
    out: dict[bytes, list[str]] = {}
    for p in ALL:
        _, data = _load(p)
        out.setdefault(data, []).append(f"{p.parent.name}/{p.stem}")
    return out


@pytest.mark.skipif(not WIRE.is_dir(), reason="no /work/shared/wire")
@pytest.mark.parametrize("wire", sorted(WIRE.glob("*.hex")) if WIRE.is_dir() else [],
                         ids=lambda p: p.stem)
def test_every_captured_frame_is_a_fixture(wire: Path) -> None:
    data = bytes.fromhex("".join(wire.read_text().split()))
    names = _fixture_bytes().get(data, [])
    assert names, f"{wire.name} is not copied into fixtures/"
    assert any(wire.stem.split(".")[0] in n for n in names), \
        f"{wire.name}: the fixture name should keep the peer name ({names})"
