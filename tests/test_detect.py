"""Protocol detection over ordered candidates (xproto/detect.py) with the real matchers.

* candidates are tried in the given order; an earlier one that needs more bytes makes
  detection wait (bounded), so the same bytes pick the same codec whatever the chunking;
* every captured frame and every fixture stream is detected as its own protocol (requests
  always; responses - which some protocols cannot be told by, e.g. Kafka's - as their own
  protocol or as nothing), with ``auto`` and with every permutation of the candidates, at
  every prefix length: no weak claim steals another protocol's frame.
"""
from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from xproto.codec import MATCH, NO_MATCH, Codec
from xproto.detect import MAX_DETECT_BYTES, detect
from xproto.errors import PluginError, ProtocolError
from xproto.registry import BUILTIN_ORDER, load_registry

ROOT = Path(__file__).resolve().parent.parent
WIRE = (Path(__file__).resolve().parents[1] / "fixtures" / "shared" / "wire")


# --- the algorithm, with scripted matchers ---------------------------------------------------
class Scripted(Codec):
    """A matcher answering from a function of the bytes seen."""

    def __init__(self, name: str, fn: Any, match_bytes: int = 4) -> None:
        self.name = name
        self.fn = fn
        self.match_bytes = match_bytes

    def match(self, data: Any) -> int:
        return int(self.fn(bytes(data)))


def yes(_: bytes) -> int:
    return MATCH


def no(_: bytes) -> int:
    return NO_MATCH


def test_first_matching_candidate_in_order_wins() -> None:
    a, b = Scripted("a", yes), Scripted("b", yes)
    assert detect([a, b], b"xx") is a
    assert detect([b, a], b"xx") is b
    assert detect([Scripted("n", no), b, a], b"xx") is b


def test_earlier_candidate_needing_more_makes_it_wait() -> None:
    slow = Scripted("slow", lambda d: MATCH if len(d) >= 4 and d[:4] == b"SLOW" else
                    (4 - len(d) if b"SLOW".startswith(d[:4]) else NO_MATCH))
    eager = Scripted("eager", lambda d: MATCH if d[:1] == b"S" else NO_MATCH)
    assert detect([slow, eager], b"SL") == 2               # wait: slow may still claim it
    assert detect([slow, eager], b"SLOW") is slow
    assert detect([slow, eager], b"SLAB") is eager         # slow said no at byte 3
    assert detect([slow, eager], b"SL", final=True) is eager   # no more bytes will come
    assert detect([eager, slow], b"SL") is eager          # order is the user's choice


def test_waiting_is_bounded() -> None:
    forever = Scripted("forever", lambda d: 1)
    other = Scripted("other", lambda d: MATCH if len(d) >= 2 else 2 - len(d))
    assert detect([forever, other], b"ab") == 1
    data = b"a" * MAX_DETECT_BYTES
    assert detect([forever, other], data) is other         # forever had its chance
    with pytest.raises(ProtocolError, match="no protocol matches"):
        detect([forever], data)
    # a codec whose matcher legitimately needs more than the default bound gets its own bound
    big = Scripted("big", lambda d: MATCH if len(d) >= 100 else 100 - len(d), match_bytes=100)
    assert detect([big, other], b"a" * 99) == 1
    assert detect([big, other], b"a" * 100) is big


def test_nothing_matches() -> None:
    with pytest.raises(ProtocolError) as ei:
        detect([Scripted("n", no)], b"\x00\x01")
    assert ei.value.offset == 0 and "0001" in str(ei.value)


# --- the real matchers ------------------------------------------------------------------------
@cache
def builtins() -> dict[str, Codec]:
    reg = load_registry(autoload=False)
    out: dict[str, Codec] = {}
    for name in BUILTIN_ORDER:
        try:
            out[name] = reg.get(name)
        except PluginError:
            pass
    return out


def _wire_protocol(stem: str) -> str:
    # <peer>.<protocol>-<what>; peer names may contain dots (apache-thrift-0.25)
    m = re.search(r"\.(dubbo|bolt|thrift|kafka|http1|h2c)-", stem)
    if m is None:
        raise ValueError(f"cannot tell the protocol of {stem}")
    return {"http1": "http", "h2c": "http"}.get(m.group(1), m.group(1))


@cache
def samples() -> list[tuple[str, str, bool, bytes]]:
    """(id, protocol, is_request_direction, bytes) of every captured frame and fixture."""
    out = []
    if WIRE.is_dir():
        for p in sorted(WIRE.glob("*.hex")):
            data = bytes.fromhex("".join(p.read_text().split()))
            is_req = not any(w in p.stem for w in ("response", "reply"))
            out.append((f"wire/{p.stem}", _wire_protocol(p.stem), is_req, data))
    for p in sorted((ROOT / "fixtures").glob("*/*.json")):
        hx = p.with_suffix(".hex")
        if not hx.exists():
            continue
        doc = json.loads(p.read_text())
        data = bytes.fromhex("".join(hx.read_text().split()))
        if data:
            out.append((f"fixtures/{p.parent.name}/{p.stem}", doc["protocol"],
                        doc.get("role") == "requests", data))
    return out


SAMPLES = samples()
IDS = [s[0] for s in SAMPLES]


def _verdicts(cands: list[Codec], data: bytes, upto: int) -> list[str]:
    """The detection verdict after each prefix length 1..upto: a name, 'more' or 'none'."""
    out = []
    for k in range(1, upto + 1):
        try:
            r = detect(cands, data[:k])
        except ProtocolError:
            out.append("none")
            continue
        out.append("more" if isinstance(r, int) else r.name)
    return out


def _final(cands: list[Codec], data: bytes) -> str:
    try:
        r = detect(cands, data, final=True)
    except ProtocolError:
        return "none"
    assert not isinstance(r, int)
    return r.name


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_detected_as_its_own_protocol_in_every_order(sample: tuple[str, str, bool, bytes]) -> None:
    name, proto, is_request, data = sample
    codecs = builtins()
    if proto not in codecs or len(codecs) < 2:
        pytest.skip(f"codec {proto} not available")
    upto = min(len(data), MAX_DETECT_BYTES + max(c.match_bytes for c in codecs.values()))
    for order in itertools.permutations(codecs.values()):
        cands = list(order)
        verdicts = _verdicts(cands, data, upto)
        decided = [v for v in verdicts if v != "more"]
        whole = _final(cands, data)
        # chunking invariance: once decided, every longer prefix gives the same verdict,
        # and it is the verdict on the whole stream
        assert len(set(decided)) <= 1 and (not decided or decided[0] == whole), \
            f"{[c.name for c in cands]}: {verdicts} vs whole {whole}"
        if is_request and (name.startswith("wire/") or codecs[proto].match(data) == MATCH):
            # real peers' requests always; built ones unless their own matcher refuses them
            # on purpose (e.g. a Kafka request with an api key kio does not know)
            assert whole == proto, f"order {[c.name for c in cands]}: {name} detected as {whole}"
        else:
            assert whole in (proto, "none"), f"order {[c.name for c in cands]}: {name} taken for {whole}"


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_no_other_matcher_claims_it(sample: tuple[str, str, bool, bytes]) -> None:
    name, proto, _, data = sample
    for other, codec in builtins().items():
        if other == proto:
            continue
        for k in range(1, min(len(data), 128) + 1):
            assert codec.match(data[:k]) != MATCH, f"{other} claims {name} after {k} bytes"


def test_every_matcher_decides_within_its_match_bytes() -> None:
    for sid, proto, is_request, data in SAMPLES:
        codec = builtins().get(proto)
        if codec is None or len(data) < codec.match_bytes:
            continue
        r = codec.match(data[:codec.match_bytes])
        assert r in (MATCH, NO_MATCH), f"{proto} needs more than match_bytes={codec.match_bytes} for {sid}"
        if is_request and sid.startswith("wire/"):
            assert r == MATCH, f"{proto} does not claim the real request {sid}"


@pytest.mark.parametrize("junk", [b"\x00" * 64, b"\xff" * 64, b"hello world, this is not a protocol" * 2,
                                  b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 53])
def test_junk_is_refused_by_auto(junk: bytes) -> None:
    codecs = list(builtins().values())
    if not codecs:
        pytest.skip("no codecs")
    assert _final(codecs, junk) == "none"


def test_readme_matcher_table_is_current() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "matcher_table.py"), "--check"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
