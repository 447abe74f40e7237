"""xproto.testing, the property/fuzz kit for plugin authors: it passes on good codecs (the
toy plugin, the example codec) and catches broken ones."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xproto.codec import Role
from xproto.codecs.example import LineCodec
from xproto.errors import ProtocolError
from xproto.frame import Frame
from xproto.testing import CodecProperties, assert_codec_properties, decode_chunks, mutate, split

TOY_DIR = Path(__file__).resolve().parent / "plugins" / "xproto-toy"
sys.path.insert(0, str(TOY_DIR))
import xproto_toy

TOY = xproto_toy.ToyCodec()
TOY_SAMPLES = [
    TOY.build(xproto_toy.REQUEST, 7, b"echo hello"),
    TOY.build(xproto_toy.RESPONSE, 7, b"\x00hello"),
    TOY.build(xproto_toy.ONEWAY, 8, b"log x") + TOY.build(xproto_toy.PING, 9, b""),
    TOY.build(xproto_toy.PONG, 9, b""),
]
LINE_SAMPLES = [b"REQ  0000002a sayHello hello world\n", b"RES  0000002a 0 hi\n",
                b"PING 00000001\n", b"PONG 00000001\n", b"SEND 00000007 log x\n"]


def test_toy_plugin_passes_the_kit() -> None:
    assert_codec_properties(TOY, TOY_SAMPLES, max_examples=200)


def test_example_codec_passes_the_kit() -> None:
    CodecProperties(LineCodec, LINE_SAMPLES, max_examples=200).check_all()


def test_example_codec_behaviour() -> None:
    from xproto.codec import Reason
    c = LineCodec()
    req = c.new_decoder().decode(LINE_SAMPLES[0])
    assert isinstance(req, Frame) and req.headers == {"method": "sayHello"}
    rep = c.error_reply(req, Reason.TIMEOUT)
    assert rep is not None and rep.request_id == 42 and c.status_to_http(rep) == 504
    hb = c.heartbeat_request(5)
    assert hb is not None and hb.heartbeat and c.heartbeat_reply(hb).request_id == 5  # type: ignore[union-attr]
    req.request_id = 0xABCDEF
    assert c.encode(req) == b"REQ  00abcdef sayHello hello world\n"


def test_helpers() -> None:
    assert split(b"abcdef", [2, 4, 100]) == [b"ab", b"cd", b"ef"]
    assert split(b"", []) == [b""]
    assert mutate(b"abc", [(0, 0, 1)]) == b"`bc"
    assert mutate(b"abc", [(1, 3, 0x7A)]) == b"abcz"
    assert mutate(b"abc", [(2, 1, 0)]) == b"ac"
    assert mutate(b"abc", [(3, 1, 0)]) == b"a"
    out = decode_chunks(TOY, split(TOY_SAMPLES[2], [3, 15]), Role.ANY)
    assert [js["kind"] for js, _ in out.frames] == ["oneway", "request"] and out.error is None
    assert decode_chunks(TOY, [TOY_SAMPLES[0][:-1]]).leftover == len(TOY_SAMPLES[0]) - 1


# --- the kit must catch broken codecs -------------------------------------------------------
class LeakyToy(xproto_toy.ToyCodec):
    """Raises a bare ValueError on an unknown type instead of ProtocolError."""

    def new_decoder(self, role: Role = Role.ANY, limits: Any = None) -> Any:
        inner = super().new_decoder(role)

        class D(type(inner)):  # type: ignore[misc]
            def decode(self, buf: Any, pos: int = 0) -> Any:
                if len(buf) - pos > 4 and buf[pos + 4] > 4:
                    raise ValueError("oops")
                return super().decode(buf, pos)

        return D(self, role)


class ChunkSensitiveToy(xproto_toy.ToyCodec):
    """Refuses a frame only when it arrives in pieces: the verdict depends on chunking."""

    def new_decoder(self, role: Role = Role.ANY, limits: Any = None) -> Any:
        inner = super().new_decoder(role)

        class D(type(inner)):  # type: ignore[misc]
            def decode(self, buf: Any, pos: int = 0) -> Any:
                r = super().decode(buf, pos)
                if isinstance(r, int) and len(buf) - pos >= 11:
                    raise ProtocolError("saw a partial body", protocol="toy")
                return r

        return D(self, role)


class BadEncodeToy(xproto_toy.ToyCodec):
    def patch_request_id(self, raw: bytes, frame: Any) -> bytes:
        return raw   # forgets to patch


def test_kit_catches_a_leaking_exception() -> None:
    with pytest.raises(ValueError, match="oops"):
        CodecProperties(LeakyToy(), TOY_SAMPLES, max_examples=300).check_mutations()


def test_kit_catches_chunk_dependence() -> None:
    with pytest.raises(AssertionError):
        CodecProperties(ChunkSensitiveToy(), TOY_SAMPLES, max_examples=300).check_split_invariance()


def test_kit_catches_a_wrong_id_patch() -> None:
    with pytest.raises(AssertionError, match="patched id"):
        CodecProperties(BadEncodeToy(), TOY_SAMPLES).check_round_trip()


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_entry_runs() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TOY_DIR), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "xproto.testing", "fuzz", "xproto_toy:ToyCodec",
                        "-runs=3000", "-seed=1"], capture_output=True, text=True, env=env, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Done 3000 runs" in r.stderr
