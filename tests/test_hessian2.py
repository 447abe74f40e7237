"""Hessian 2 codec against the oracle: Caucho Hessian 4.0.38's own bytes.

* every shared vector decodes to its expected value (whole, with trailing bytes), is
  skipped to exactly its end, and re-encodes to exactly Caucho's bytes;
* every proper prefix of a vector raises ProtocolError (read and skip);
* extra vectors generated with the real Caucho jar (fixtures/hessian2/caucho_gen) for
  binary chunking at every buffer fill level, astral strings across chunks, doubles,
  type/class/shared references, cycles;
* the Dubbo request body: eight values; skipping the arguments reaches the attachments.
"""
from __future__ import annotations

import struct
from typing import Any

import pytest
from test_hessian2_util import expected, load_caucho_extra, load_vectors, same

from xproto.errors import LimitExceeded, ProtocolError
from xproto.hessian2 import (
    ClassDef,
    Date,
    JavaObject,
    Long,
    Reader,
    TypedList,
    TypedMap,
    Writer,
    dumps,
    load_all,
    loads,
)
from xproto.limits import DEFAULT_LIMITS, Limits

VECTORS = load_vectors()
SINGLE = [v for v in VECTORS if "value" in v]
EXTRA = load_caucho_extra()


def _ids(vs: list[dict]) -> list[str]:  # type: ignore[type-arg]
    return [v["name"] for v in vs]


@pytest.mark.parametrize("vec", SINGLE, ids=_ids(SINGLE))
def test_vector_decodes_to_expected_value(vec: dict) -> None:  # type: ignore[type-arg]
    data = vec["bytes"]
    r = Reader(data)
    value = r.read()
    assert r.pos == len(data)
    assert same(value, expected(vec["value"]), loose_containers=True), value
    # trailing bytes are left alone
    r = Reader(data + b"\x90\x4e")
    assert same(r.read(), value)
    assert r.pos == len(data)
    assert r.read() == 0 and r.read() is None and r.at_end()


@pytest.mark.parametrize("vec", SINGLE, ids=_ids(SINGLE))
def test_vector_reencodes_byte_exact(vec: dict) -> None:  # type: ignore[type-arg]
    assert dumps(loads(vec["bytes"])) == vec["bytes"]


@pytest.mark.parametrize("vec", VECTORS, ids=_ids(VECTORS))
def test_vector_skip_reaches_the_end(vec: dict) -> None:  # type: ignore[type-arg]
    data = vec["bytes"]
    r = Reader(data)
    n = 0
    while not r.at_end():
        r.skip()
        n += 1
    assert r.pos == len(data)
    assert n == len(vec.get("sequence", [None]))


@pytest.mark.parametrize("vec", VECTORS, ids=_ids(VECTORS))
def test_vector_prefixes_raise_protocol_error(vec: dict) -> None:  # type: ignore[type-arg]
    data = vec["bytes"]
    count = len(vec.get("sequence", [None]))
    cuts = range(len(data)) if len(data) < 600 else list(range(40)) + list(range(len(data) - 40, len(data)))
    for cut in cuts:
        for op in ("read", "skip"):
            r = Reader(data[:cut])
            with pytest.raises(ProtocolError) as info:
                for _ in range(count):
                    getattr(r, op)()
            assert info.value.protocol == "hessian2"
            assert info.value.offset is not None and 0 <= info.value.offset <= cut


def test_types_survive_the_round_trip() -> None:
    by_name = {v["name"]: loads(v["bytes"]) for v in SINGLE}
    assert type(by_name["int_0"]) is int and type(by_name["long_0"]) is Long
    assert by_name["long_2147483647"] == 2147483647 and isinstance(by_name["long_2147483647"], Long)
    treemap = by_name["map_typed_treemap"]
    assert isinstance(treemap, TypedMap) and treemap.type == "java.util.TreeMap"
    ints = by_name["list_int_array"]
    assert isinstance(ints, TypedList) and ints.type == "[int" and ints.fixed
    user = by_name["obj_user"]
    assert user.cls == "com.example.User" and list(user.fields) == ["name", "age", "id", "score", "active"]
    shared = by_name["ref_shared_map"]
    assert shared[0] is shared[1]
    d = by_name["date_min"]
    assert d.minutes is True and by_name["date_ms"].minutes is False
    assert by_name["str_emoji"] == "a\U0001F600b"


def test_dubbo_invocation_eight_values_and_attachments_after_skipping() -> None:
    data = next(v for v in VECTORS if v["name"] == "dubbo_invocation")
    seq = data["sequence"]
    values = load_all(data["bytes"])
    assert len(values) == 8
    for got, want in zip(values, seq):
        assert same(got, expected(want), loose_containers=True)
    # what the Dubbo codec does: read the header strings, skip args, read attachments
    r = Reader(data["bytes"])
    assert r.read_string() == "2.0.2"
    assert r.read_string() == "com.example.DemoService"
    assert r.read_string() == "1.0.0"
    assert r.read_string() == "sayHello"
    desc = r.read_string()
    assert desc == "Ljava/lang/String;Lcom/example/User;"
    r.skip()
    r.skip()
    att = r.read()
    assert att["path"] == "com.example.DemoService" and att["timeout"] == "3000"
    assert r.at_end()
    assert Writer_roundtrip(values) == data["bytes"]


def Writer_roundtrip(values: list) -> bytes:  # type: ignore[type-arg]
    w = Writer()
    for v in values:
        w.write(v)
    return w.getvalue()


@pytest.mark.parametrize("name,data", EXTRA, ids=[n for n, _ in EXTRA])
def test_caucho_extra_vectors(name: str, data: bytes) -> None:
    values = load_all(data)
    assert Writer_roundtrip(values) == data
    r = Reader(data)
    n = 0
    while not r.at_end():
        r.skip()
        n += 1
    assert n == len(values)
    # decode -> encode -> decode is stable too
    assert same(load_all(Writer_roundtrip(values)), values)


def test_caucho_extra_values() -> None:
    extra = dict(EXTRA)
    doubles = load_all(extra["doubles"])
    assert doubles[0] == 0.0 and doubles[1] != doubles[1] and doubles[2] == float("inf")
    assert doubles[7] == 2147483.647 and doubles[16] == 1.7976931348623157e308
    refs = load_all(extra["refs"])
    lst = refs[0]
    assert lst[0] is lst and lst[1] is lst[2] and lst[1]["self"] is lst[1]
    assert refs[1] is lst and refs[2] is lst[1]
    objs = load_all(extra["objects"])
    a, b, node, empty = objs
    assert a.fields["next"] is b and b.fields["next"] is a and a.fields["attrs"]["x"] is a
    assert node.fields["value"] is a and node.fields["next"] is node
    assert empty.fields == {"value": None, "next": None}
    assert a.fields["when"] == Date(1700000000000) and a.fields["blob"] == bytes(i * 7 % 256 for i in range(10))
    assert load_all(extra["str_lone_surrogates"]) == ["a\ud800b\udc00c\udbff"]
    astral = load_all(extra["str_astral_chunk"])[0]
    assert astral == "x" * 32767 + "\U0001F600" + "y" * 40000
    many = load_all(extra["classdefs_over_16"])
    assert len(many) == 60 and many[-1].cls == "GenExtra$Node"
    lists = load_all(extra["typed_lists"])
    assert [getattr(x, "type", None) for x in lists][:4] == ["[int", "[int", "[string", "[long"]


# ------------------------------------------------------------------ skip then read


def test_reference_to_a_skipped_value_is_decoded_on_demand() -> None:
    inner = JavaObject("a.B", {"x": 1, "l": TypedList([1], "java.util.LinkedList")})
    shared = [inner, {"k": inner}]
    w = Writer()
    w.write(shared)
    w.write(TypedList([2], "java.util.LinkedList"))  # type name by reference
    w.write(JavaObject("a.B", {"x": 2, "l": None}))  # class by reference
    w.write(shared)  # Q 0
    w.write(inner)  # Q 1
    data = w.getvalue()
    r = Reader(data)
    r.skip()
    second = r.read()
    assert isinstance(second, TypedList) and second.type == "java.util.LinkedList"
    third = r.read()
    assert third.cls == "a.B" and third.fields == {"x": 2, "l": None}
    again = r.read()
    assert same(again, shared, loose_containers=False)
    obj = r.read()
    assert obj is again[0] and again[1]["k"] is obj
    assert r.at_end()


def test_reference_into_the_middle_of_a_skipped_value() -> None:
    inner = {"deep": [1, 2]}
    w = Writer()
    w.write([[inner], "tail"])
    w.write(inner["deep"])  # a reference into the skipped value's depths
    w.write(inner)
    r = Reader(w.getvalue())
    r.skip()
    deep = r.read()
    assert deep == [1, 2]
    m = r.read()
    assert m == {"deep": [1, 2]}
    assert r.at_end()


def test_skip_many_values_in_one_call() -> None:
    data = next(v for v in VECTORS if v["name"] == "dubbo_invocation")["bytes"]
    r = Reader(data)
    r.skip(8)
    assert r.pos == len(data) and len(r._refs) == 2 and len(r._defs) == 1
    r = Reader(data)
    for _ in range(5):
        r.read_string()
    r.skip(2)
    assert r.read()["version"] == "1.0.0"
    r = Reader(data)
    r.skip(0)
    assert r.pos == 0
    with pytest.raises(ProtocolError):
        Reader(data).skip(9)
    with pytest.raises(ValueError):
        Reader(data).skip(-1)


def test_skip_builds_nothing() -> None:
    data = dumps(["x" * 1000, b"y" * 5000, {"k": [1, 2, 3]}])
    r = Reader(data)
    r.skip()
    assert r.pos == len(data)
    # only offsets are recorded for the three containers
    assert all(type(x) is int for x in r._refs)


def test_class_defs_property_decodes_skipped_definitions() -> None:
    r = Reader(dumps(JavaObject("p.Q", {"a": 1, "b": 2})))
    r.skip()
    assert r.class_defs == [ClassDef("p.Q", ("a", "b"))]


# ------------------------------------------------------------------ typed reads


def test_read_string_and_read_int() -> None:
    r = Reader(dumps("abc") + b"N" + dumps(5) + dumps(Long(1 << 40)) + dumps(1.5))
    assert r.read_string() == "abc"
    assert r.read_string() is None
    with pytest.raises(ProtocolError):
        r.read_string()  # an int
    assert r.read_int() == 5
    assert r.read_int() == 1 << 40
    with pytest.raises(ProtocolError):
        r.read_int()  # a double


def test_reader_accepts_memoryview_bytearray_and_end() -> None:
    data = b"junk" + dumps({"a": [1, Long(2)]}) + b"junk"
    for buf in (memoryview(data), bytearray(data), data):
        r = Reader(buf, 4, end=len(data) - 4)
        assert r.read() == {"a": [1, 2]}
        assert r.at_end()


# ------------------------------------------------------------------ strings


@pytest.mark.parametrize(
    "text",
    ["", "a", "é" * 31, "é" * 32, "世" * 1024, "\U0001F600" * 16384 + "x", "x" * 32767 + "\U0001F600",
     "\ud800", "a\udc00", "\x00", "mixed é 世 \U0001F600 end" * 3000],
)
def test_strings_round_trip(text: str) -> None:
    data = dumps(text)
    assert loads(data) == text
    r = Reader(data)
    r.skip()
    assert r.pos == len(data)


def test_four_byte_utf8_counts_as_two_units() -> None:
    # Caucho never writes it, other writers may: accept U+1F600 as 4 bytes = 2 UTF-16 units
    data = bytes([4]) + "a\U0001F600b".encode()
    assert loads(data) == "a\U0001F600b"
    r = Reader(data)
    r.skip()
    assert r.pos == len(data)
    with pytest.raises(ProtocolError):
        loads(bytes([2]) + "a\U0001F600".encode())  # a length that splits the pair


@pytest.mark.parametrize("bad", [b"\x01\xff", b"\x01\x80", b"\x02\xc3", b"\x01\xc3\x28", b"\x01\xe4\xb8"])
def test_bad_utf8_raises(bad: bytes) -> None:
    for op in ("read", "skip"):
        with pytest.raises(ProtocolError):
            getattr(Reader(bad), op)()


# ------------------------------------------------------------------ encoding choices


def test_python_values_encode_as_java_types() -> None:
    assert dumps(5) == b"\x95" and dumps(Long(5)) == b"\xe5"
    assert dumps(1 << 31) == b"L" + struct.pack(">q", 1 << 31)  # too big for an int: a long
    assert dumps(True) == b"T" and dumps(None) == b"N"
    assert dumps((1, 2)) == dumps([1, 2]) == b"\x7a\x91\x92"
    assert dumps(b"") == b"\x20" and dumps(bytearray(b"a")) == b"\x21a"
    assert dumps(Date(60000)) == b"\x4b\x00\x00\x00\x01"
    assert dumps(Date(60000, minutes=False)) == b"\x4a" + struct.pack(">q", 60000)
    assert dumps(TypedList([1], None, fixed=False)) == b"\x57\x91\x5a"
    assert dumps(TypedList([1], "java.util.Set", fixed=False)) == b"\x55\x0djava.util.Set\x91\x5a"
    with pytest.raises(ValueError):
        dumps(1 << 63)
    with pytest.raises(TypeError):
        dumps(object())


def test_shared_python_objects_become_references() -> None:
    x: list = []  # type: ignore[type-arg]
    x.append(x)
    data = dumps(x)
    assert data == b"\x79\x51\x90"
    back = loads(data)
    assert back[0] is back


# ------------------------------------------------------------------ hostile input


def test_depth_limit() -> None:
    depth = DEFAULT_LIMITS.hessian_max_depth
    ok = b"\x79" * depth + b"N"
    assert Reader(ok).read() is not None
    for op in ("read", "skip"):
        with pytest.raises(LimitExceeded):
            getattr(Reader(b"\x79" * (depth + 1) + b"N"), op)()
        with pytest.raises(LimitExceeded):
            getattr(Reader(b"H" * (depth + 1)), op)()
        with pytest.raises(LimitExceeded):
            getattr(Reader(b"\x57" * 100000), op)()


def test_object_and_classdef_limits() -> None:
    limits = DEFAULT_LIMITS.with_overrides(hessian_max_objects=3, hessian_max_classdefs=2)
    four = dumps([[], [], []])
    with pytest.raises(LimitExceeded):
        Reader(four, limits=limits).read()
    with pytest.raises(LimitExceeded):
        Reader(four, limits=limits).skip()
    three_classes = dumps([JavaObject("A", {}), JavaObject("B", {}), JavaObject("C", {})])
    for op in ("read", "skip"):
        with pytest.raises(LimitExceeded):
            getattr(Reader(three_classes, limits=limits.with_overrides(hessian_max_objects=100)), op)()


@pytest.mark.parametrize(
    "bad",
    [
        b"S\xff\xff",  # 65535 chars, none there
        b"R\xff\xff" + b"a" * 10,
        b"B\xff\xffab",
        b"A\x00\x01a",  # chunk not followed by a final one
        b"X\x49\x7f\xff\xff\xff",  # list of 2^31-1 items
        b"V\x04[int\x49\x7f\xff\xff\xff\x90",
        b"X\x8f",  # negative length
        b"Q\x90",  # reference before any object
        b"\x60",  # object of undefined class
        b"O\x49\x7f\xff\xff\xff",
        b"C\x01A\x49\x7f\xff\xff\xff",  # class with 2^31-1 fields
        b"C\x01A\x91\x90",  # field name is not a string
        b"\x71\x99\x90",  # type reference out of range
        b"H\x79\x90\x5a",  # unhashable (list) key
        b"H\x90",
        b"Z",
        b"\x40",
        b"E",
        b"\x57\x90",
        b"C\x01A\x90C\x01B\x90",
        b"R\x00\x01a\x21b",  # binary chunk inside a string
    ],
)
def test_malformed_input_raises_protocol_error(bad: bytes) -> None:
    for op in ("read", "skip"):
        with pytest.raises(ProtocolError):
            getattr(Reader(bad), op)()


def test_list_of_many_empty_lists_is_bounded_by_objects_limit() -> None:
    limits = DEFAULT_LIMITS.with_overrides(hessian_max_objects=1000)
    data = b"X" + dumps(5000)[0:] + b"\x78" * 5000
    with pytest.raises(LimitExceeded):
        Reader(data, limits=limits).read()


def test_field_names_are_plain_strings() -> None:
    # fuzz regression: read() let a field name be "a class definition, then a string"
    data = b"C\x01A\x91C\x01B\x90\x05value" + b"\x60\x90"
    for op in ("read", "skip"):
        with pytest.raises(ProtocolError):
            getattr(Reader(data), op)()


def test_read_and_skip_agree_on_depth_for_empty_containers() -> None:
    depth = DEFAULT_LIMITS.hessian_max_depth
    for inner in (b"\x78", b"X\x90", b"H\x5a", b"W\x5a", b"\x70\x01a"):
        ok = b"\x79" * (depth - 1) + inner + b"N" * (depth - 1)
        too_deep = b"\x79" * depth + inner + b"N" * depth
        Reader(ok).read()
        Reader(ok).skip()
        for op in ("read", "skip"):
            with pytest.raises(LimitExceeded):
                getattr(Reader(too_deep), op)()


# ------------------------------------------------------------------ skip's fast paths
# skip() takes runs of atomic values, flat containers and a class definition with its
# first instance by one regex match each; the rest goes through its loop. Whatever path
# it takes, it must end where read() ends, number the same references and classes (and
# decode them on demand to what read() built) and reject what read() rejects.


def _s(text: str) -> bytes:
    return dumps(text)


def _check_skip(data: bytes, n: int, **kw: Any) -> None:
    r1 = Reader(data, **kw)
    for _ in range(n):
        r1.read()
    r2 = Reader(data, **kw)
    r2.skip(n)
    assert r2.pos == r1.pos
    assert len(r2._refs) == len(r1._refs)
    assert all(type(x) is int for x in r2._refs)
    assert len(r2._defs) == len(r1._defs)
    assert r2.class_defs == r1.class_defs
    for i, built in enumerate(r1._refs):
        assert same(r2._ref(i, 0), built), i
    for cut in range(r1.pos):
        for op in ("read", "skip"):
            r = Reader(data[:cut], **kw)
            with pytest.raises(ProtocolError):
                if op == "read":
                    for _ in range(n):
                        r.read()
                else:
                    r.skip(n)


_ATOMS: list[Any] = [
    0, -16, 47, 2047, -262144, 2**31 - 1, Long(3), Long(2**40), 0.0, 1.0, 12.25, 1e300, -128.0,
    None, True, False, "", "a", "x" * 31, "y" * 32, "z" * 255, "w" * 256, "v" * 1023, "é",
    "é" * 40, "😀", "ab😀cd" * 7, b"", b"q" * 15, b"r" * 16, Date(1700000000000, False),
]


@pytest.mark.parametrize("dialect", ["auto", "hessian2"])
def test_skip_runs_of_atoms_of_every_kind(dialect: str) -> None:
    values = _ATOMS * 2  # 62 values: runs longer than one match counts
    _check_skip(b"".join(dumps(v) for v in values), len(values), dialect=dialect)
    for v in _ATOMS:
        _check_skip(dumps(v) + b"\x91", 2, dialect=dialect)


@pytest.mark.parametrize(
    "values",
    [
        [{"a": 1, "b": "c", "d": None, 2: 3.5, "e": True}],
        [{"k": "é", "n": "x" * 40}, {"k": "😀"}],
        [{"a": {"b": [1, 2]}, "c": [{"d": 1}, []]}, [1, [2, [3]]]],
        [[1, "two", 3.0], [], list(range(9)), ["é"] * 3, [[]] * 8],
        [TypedMap({"a": 1}, "java.util.TreeMap"), TypedList(["a"], "java.util.LinkedList")],
        [
            JavaObject("a.B", {"x": 1, "s": "t", "d": 1.5, "l": Long(5), "f": False}),
            JavaObject("a.B", {"x": 2, "s": "é", "d": 0.0, "l": Long(-1), "f": True}),
            JavaObject("a.C", {"m": {"k": [1]}, "o": JavaObject("a.B", {"x": 3, "s": "", "d": 1.0,
                                                                       "l": Long(0), "f": None})}),
        ],
        [JavaObject("a.Wide", {f"f{i}": i for i in range(16)}), JavaObject("a.Wide", {f"f{i}": -i for i in range(16)})],
        [JavaObject("org.apache.dubbo.rpc.RpcInvocation", {"é": 1, "": 2})],
        [JavaObject("a.E", {})] * 2 + [JavaObject("a.E", {})],
    ],
    ids=["flat-map", "map-non-ascii", "nested", "lists", "typed", "objects", "wide", "long-names", "empty"],
)
def test_skip_containers_and_objects(values: list[Any]) -> None:
    w = Writer()
    for v in values:
        w.write(v)
    w.write({"after": 1})  # attachments-like map after the skipped values
    _check_skip(w.getvalue(), len(values) + 1)


def test_skip_variable_lists_and_interleaved_class_definitions() -> None:
    # W ... Z lists, flat and not; class B defined between A and A's instance
    _check_skip(b"W\x91\x02abZ" + b"W\x91H\x91\x92ZZ" + b"W\x5a", 3)
    data = (b"C" + _s("a.A") + b"\x91" + _s("x") + b"C" + _s("a.B") + b"\x92" + _s("y") + _s("z")
            + b"\x60\x91" + b"\x92" + b"\x61\x93\x94" + b"\x60\x95")
    _check_skip(data, 4)


def test_skip_rejects_what_read_rejects_on_the_fast_paths() -> None:
    for data in (
        b"H\x91Z",  # a key without its value
        b"H\x91\x92\x93Z",
        b"W\x91\x92",  # unterminated
        b"\x7a\x91",  # two items announced, one there
        b"C\x01A\x92\x01x\x01y\x60\x91",  # an instance with a field missing
        b"\x61\x91",  # an undefined class
        b"\x05ab\xff\xfe\x41",  # bad UTF-8 in a compact string
        b"\x30\x20" + b"\xff" * 32,  # and in a short one
    ):
        for op in ("read", "skip"):
            with pytest.raises(ProtocolError):
                r = Reader(data)
                while not r.at_end():
                    getattr(r, op)()


def test_skip_fast_paths_keep_the_limits() -> None:
    obj = dumps(JavaObject("a.B", {"x": 1}))
    two_classes = dumps([JavaObject("a.B", {"x": 1}), JavaObject("a.C", {"y": 1})])
    cases = [
        (obj, Limits(hessian_max_objects=0)),
        (obj, Limits(hessian_max_depth=0)),
        (dumps({"a": 1}), Limits(hessian_max_objects=0)),
        (dumps([1, 2]), Limits(hessian_max_depth=0)),
        (two_classes, Limits(hessian_max_classdefs=1)),
        (dumps([[1], [2]]), Limits(hessian_max_objects=2)),
    ]
    for data, limits in cases:
        for op in ("read", "skip"):
            with pytest.raises(LimitExceeded):
                getattr(Reader(data, limits=limits), op)()
