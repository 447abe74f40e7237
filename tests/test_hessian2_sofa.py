"""The SOFA "Hessian 3.0" draft dialect (what npm sofa-rpc-node writes for Bolt).

* values written by hessian.js-1's EncoderV2 (peers/node/gen_sofa_vectors.js ->
  fixtures/hessian2/sofa_vectors.json) decode in dialect "sofa" and "auto";
* a real Bolt request captured from sofa-rpc-node (peers/node/capture.sh ->
  fixtures/hessian2/sofa-rpc-node-bolt-request.hex) carries a SofaRequest in its content;
* "hessian2" (the final grammar) rejects the draft, and "auto" still reads Caucho's bytes.
"""
from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from test_hessian2_util import FIXTURES, expected, load_vectors, same

from xproto.errors import ProtocolError
from xproto.hessian2 import JavaObject, Long, Reader, TypedList, dumps, load_all, loads

SOFA = json.loads((FIXTURES / "sofa_vectors.json").read_text())["vectors"]
SINGLE = [v for v in SOFA if "value" in v]


def _expected(j: dict[str, Any]) -> Any:
    if j["java"] == "list" and "type" in j:
        return TypedList([_expected(x) for x in j["items"]], j["type"], True)
    if j["java"] == "list":
        return [_expected(x) for x in j["items"]]
    if j["java"] == "object":
        return JavaObject(j["class"], {k: _expected(v) for k, v in j["fields"].items()})
    if j["java"] == "map":
        return {_expected(k): _expected(v) for k, v in j["entries"]}
    return expected(j)


@pytest.mark.parametrize("dialect", ["sofa", "auto"])
@pytest.mark.parametrize("vec", SINGLE, ids=[v["name"] for v in SINGLE])
def test_sofa_vector_decodes(vec: dict, dialect: str) -> None:  # type: ignore[type-arg]
    data = bytes.fromhex(vec["hex"])
    r = Reader(data, dialect=dialect)
    value = r.read()
    assert r.at_end()
    assert same(value, _expected(vec["value"]), loose_containers=False), value
    r = Reader(data, dialect=dialect)
    r.skip()
    assert r.pos == len(data)
    for cut in range(len(data)) if len(data) < 300 else range(0, len(data), 997):
        with pytest.raises(ProtocolError):
            Reader(data[:cut], dialect=dialect).read()
        with pytest.raises(ProtocolError):
            Reader(data[:cut], dialect=dialect).skip()


@pytest.mark.parametrize("dialect", ["sofa", "auto"])
def test_sofa_stream_with_references_and_type_refs(dialect: str) -> None:
    vec = next(v for v in SOFA if v["name"] == "stream_refs")
    data = bytes.fromhex(vec["hex"])
    values = load_all(data, dialect=dialect)
    assert len(values) == 4
    for got, want in zip(values, vec["sequence"]):
        assert same(got, _expected(want), loose_containers=True)
    assert values[0][0] is values[0][1]
    assert values[0].type == "java.util.List"
    assert values[3].type == values[2].type == "java.util.LinkedList"  # the 'v' form
    # skip the first (references inside it recorded as offsets), read the rest
    r = Reader(data, dialect=dialect)
    r.skip()
    assert r.read().fields == {"n": 2}
    # decoded draft values re-encode in the final grammar and read back the same
    assert same(load_all(b"".join(dumps(v) for v in values)), values)


def test_final_grammar_rejects_the_draft() -> None:
    obj = bytes.fromhex(next(v for v in SOFA if v["name"] == "object")["hex"])
    with pytest.raises(ProtocolError):
        Reader(obj, dialect="hessian2").read()
    assert loads(obj, dialect="sofa").cls == "com.example.User"


def test_auto_still_reads_caucho_vectors_and_stays_final() -> None:
    for vec in load_vectors():
        r = Reader(vec["bytes"], dialect="auto")
        values = r.read_all()
        assert r.dialect == "auto"
        assert same(values, load_all(vec["bytes"], dialect="hessian2"))


def test_auto_locks_into_the_draft_once_needed() -> None:
    obj = bytes.fromhex(next(v for v in SOFA if v["name"] == "object")["hex"])
    r = Reader(obj + bytes.fromhex("7700010000"), dialect="auto")  # then a draft 'w' long
    assert r.read().fields["id"] == Long(7)
    assert r.dialect == "sofa"
    v = r.read()
    assert v == 65536 and type(v) is Long


# ------------------------------------------------------------------ the real capture


def _bolt_request() -> bytes:
    return bytes.fromhex((FIXTURES / "sofa-rpc-node-bolt-request.hex").read_text().strip())


def _split_bolt_v1_request(frame: bytes) -> tuple[bytes, bytes, bytes]:
    assert frame[0] == 0x01 and frame[1] in (1, 2)  # Bolt v1 request
    class_len, header_len, content_len = struct.unpack_from(">HHI", frame, 14)
    start = 22
    cls = frame[start : start + class_len]
    header = frame[start + class_len : start + class_len + header_len]
    content = frame[start + class_len + header_len : start + class_len + header_len + content_len]
    assert len(frame) == 22 + class_len + header_len + content_len
    return cls, header, content


def test_captured_sofa_rpc_node_request_decodes() -> None:
    frame = _bolt_request()
    cls, _header, content = _split_bolt_v1_request(frame)
    assert cls == b"com.alipay.sofa.rpc.core.request.SofaRequest"
    assert content == bytes.fromhex((FIXTURES / "sofa-rpc-node-bolt-request.content.hex").read_text().strip())
    for dialect in ("sofa", "auto"):
        r = Reader(content, dialect=dialect)
        req = r.read()
        assert isinstance(req, JavaObject)
        assert req.cls == "com.alipay.sofa.rpc.core.request.SofaRequest"
        f = req.fields
        assert f["targetServiceUniqueName"] == "com.example.EchoService:1.0"
        assert f["methodName"] == "echo"
        assert f["targetAppName"] in (None, "")
        args = f["methodArgs"] if "methodArgs" in f else r.read_all()
        assert list(args) == ["hello from node"]
        sigs = f.get("methodArgSigs")
        assert sigs is not None and list(sigs) == ["java.lang.String"]
        # skipping the same content builds nothing and lands at the same end
        r2 = Reader(content, dialect=dialect)
        r2.skip()
        end = r2.pos
        r3 = Reader(content, dialect=dialect)
        r3.read()
        assert end == r3.pos
    with pytest.raises(ProtocolError):
        Reader(content, dialect="hessian2").read()


def test_reference_to_a_value_skipped_in_the_other_dialect() -> None:
    # fuzz regression: 'w' reads as a final typed list (type "", 7 strings); the last
    # value only parses as a draft reference, so "auto" locks into the draft before
    # the skipped list is decoded on demand: it must still be decoded as it was skipped.
    data = b"\x77\x00" + b"\x00" * 7 + b"\xe5" + b"K\x00\x00"
    values = Reader(data, dialect="auto").read_all()
    assert values[0] == TypedList([""] * 7, "", True) and values[1] == Long(5)
    assert values[2] is values[0]
    r = Reader(data, dialect="auto")
    r.skip()
    assert r.read() == Long(5)
    assert r.read() == TypedList([""] * 7, "", True)
    assert r.dialect == "sofa"


def test_auto_ints_and_strings_inside_final_forms_read_as_ints_and_strings() -> None:
    # fuzz regression: a type index written as the draft's 'w' long inside a final 'U'
    # list was read through the final grammar (a typed list) and used as an int
    data = b"\x71\x08java.A.B\x91" + bytes.fromhex("55770000000091" + "5a")
    with pytest.raises(ProtocolError):
        Reader(data, dialect="hessian2").read_all()
    values = Reader(data, dialect="auto").read_all()
    assert values == [TypedList([1], "java.A.B", True), TypedList([1], "java.A.B", False)]
    assert Reader(bytes.fromhex("7300016153000162"), dialect="auto").read_string() == "ab"
    with pytest.raises(ProtocolError):
        Reader(bytes.fromhex("1635ff"), dialect="auto").read()


def test_a_skipped_value_is_decoded_again_as_auto_decoded_it() -> None:
    # fuzz regression: "auto" settled on the draft *inside* a skipped list (its 'w' is a
    # draft long); decoding the list on demand must replay "auto", not the final grammar
    data = bytes.fromhex("7a" + "7700000005" + "4a00" + "4a00")
    values = Reader(data, dialect="auto").read_all()
    assert values[0][0] == Long(5) and values[0][1] is values[0] and values[1] is values[0]
    r = Reader(data, dialect="auto")
    r.skip()
    assert r.dialect == "sofa"
    again = r.read()
    assert again[0] == Long(5) and again[1] is again
