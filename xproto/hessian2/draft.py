"""The SOFA "Hessian 3.0" dialect: the pre-final Hessian 2 draft (Caucho 3.1.x era).

npm sofa-rpc-node writes it by default for Bolt (sofa-bolt-node -> sofa-hessian-node v3 ->
hessian.js-1 ``lib/v2/encoder.js``); Caucho 4.0.38 cannot read it. Read-only here: what
is decoded re-encodes in the final grammar.

Differences from the final grammar (everything else is shared)::

    O int(len) raw-utf8(len) int(n) string*n   class definition (then the instance)
    o int(ref) value*n                          object instance
    V type? (n b0 | l b3..b0)? value* z         list, ended by 'z' (x7a)
    v int(type-ref) int(len) value*len          fixed list of a known type, no end
    M type? (key value)* z                      map (untyped if no type)
    H (key value)* Z                            untyped map, as in the final grammar
                                                (hessian.js-1 never writes it)
    type ::= t b1 b0 raw-utf8 | u int | T int   (the T form only where a type is expected)
    J b0 | K b1 b0 | R b3..b0                   reference to a list/map/object
    w b3..b0                                    long as 32-bit int
    x67 | x68 | x69 b0 | x6a b1 b0 | x6b float  double 0.0, 1.0, byte, short, float32
    d b7..b0                                    date (millis)
    s b1 b0 utf8 ... S b1 b0 utf8               string chunks; b b1 b0 ... B for binary

References, class definitions and types are numbered as in the final grammar.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import decoder as d
from .decoder import Handler, Reader, _f32, _i16, _i32, _i64, _u16
from .types import ClassDef, Date, JavaObject, Long, TypedList, TypedMap

Skipper = Callable[[Reader, int], int]

_END = 0x7A  # 'z'


# ---------------------------------------------------------------------- pieces


def _type(r: Reader) -> str | None:
    """An optional type at r.pos: ``t`` len raw-utf8, ``u``/``T`` int reference, or none."""
    pos = r.pos
    if pos >= r._end:
        raise r._error("unexpected end of data", pos)
    code = r._data[pos]
    if code == 0x74:  # t
        r._need(pos, 3)
        t, r.pos = r._utf8(pos + 3, _u16(r._data, pos + 1)[0])
        r._types.append([t, pos])
        return t or None
    if code == 0x75 or code == 0x54:  # u, T
        r.pos = pos + 1
        i = r._read_length()
        return r._type_at(i, pos) or None
    return None


def _length(r: Reader) -> int | None:
    """An optional list length: ``n`` b0 or ``l`` b3..b0."""
    pos = r.pos
    if pos >= r._end:
        raise r._error("unexpected end of data", pos)
    code = r._data[pos]
    if code == 0x6E:  # n
        r._need(pos, 2)
        r.pos = pos + 2
        return r._data[pos + 1]
    if code == 0x6C:  # l
        r._need(pos, 5)
        r.pos = pos + 5
        n: int = _i32(r._data, pos + 1)[0]
        if n < 0:
            raise r._error(f"negative list length {n}", pos)
        return n
    return None


def _expect_end(r: Reader, start: int) -> None:
    pos = r.pos
    if pos >= r._end:
        raise r._error("unterminated list or map", start)
    if r._data[pos] != _END:
        raise r._error(f"expected 'z' after the list items, got 0x{r._data[pos]:02x}", pos)
    r.pos = pos + 1


def _define(r: Reader, pos: int) -> None:
    """``O`` int(len) raw-utf8(len) int(n) field-name*n, eagerly (it is metadata)."""
    defs = r._defs
    maximum = r._limits.hessian_max_classdefs
    if len(defs) >= maximum:
        raise r._limit("hessian class definitions", len(defs) + 1, maximum, pos)
    r.pos = pos + 1
    n = r._read_length()
    name, r.pos = r._utf8(r.pos, n)
    nf = r._read_length()
    if nf > r._end - r.pos:
        raise r._error(f"class {name!r}: {nf} fields, {r._end - r.pos} bytes left", pos)
    rs = r._read_str_value
    defs.append([ClassDef(name, tuple([rs() for _ in range(nf)])), nf, pos])


# ---------------------------------------------------------------------- read handlers


def _r_classdef(r: Reader, pos: int) -> Any:
    _define(r, pos)
    return r.read()


def _r_object(r: Reader, pos: int) -> JavaObject:
    r.pos = pos + 1
    i = r._read_length()
    return r._instance(pos, i, r.pos)


def _r_list(r: Reader, pos: int) -> list[Any]:
    r.pos = pos + 1
    t = _type(r)
    n = _length(r)
    lst: list[Any] = [] if t is None and n is not None else TypedList((), t, n is not None)
    r._add_ref(lst, pos)
    if n is not None:
        d._read_items(r, lst, n, pos)
        _expect_end(r, pos)
    else:
        d._read_items_until_end(r, lst, pos, _END)
    return lst


def _r_list_fixed(r: Reader, pos: int) -> list[Any]:
    r.pos = pos + 1
    i = r._read_length()
    t = r._type_at(i, pos) or None
    n = r._read_length()
    lst: list[Any] = [] if t is None else TypedList((), t, True)
    r._add_ref(lst, pos)
    d._read_items(r, lst, n, pos)
    return lst


def _r_map(r: Reader, pos: int) -> dict[Any, Any]:
    r.pos = pos + 1
    t = _type(r)
    m: dict[Any, Any] = {} if t is None else TypedMap((), t)
    r._add_ref(m, pos)
    d._read_entries(r, m, pos, _END)
    return m


def _ref_index(r: Reader, pos: int) -> int:
    code = r._data[pos]
    if code == 0x4A:  # J b0
        r._need(pos, 2)
        r.pos = pos + 2
        return r._data[pos + 1]
    if code == 0x4B:  # K b1 b0
        r._need(pos, 3)
        r.pos = pos + 3
        return _u16(r._data, pos + 1)[0]  # type: ignore[no-any-return]
    r._need(pos, 5)  # R b3..b0
    r.pos = pos + 5
    return _i32(r._data, pos + 1)[0]  # type: ignore[no-any-return]


def _r_ref(r: Reader, pos: int) -> Any:
    i = _ref_index(r, pos)
    return r._ref(i, pos)


def _r_long4(r: Reader, pos: int) -> Long:
    r._need(pos, 5)
    r.pos = pos + 5
    return Long(_i32(r._data, pos + 1)[0])


def _r_double0(r: Reader, pos: int) -> float:
    r.pos = pos + 1
    return 0.0


def _r_double1(r: Reader, pos: int) -> float:
    r.pos = pos + 1
    return 1.0


def _r_double_byte(r: Reader, pos: int) -> float:
    r._need(pos, 2)
    r.pos = pos + 2
    b = r._data[pos + 1]
    return float(b - 256 if b > 127 else b)


def _r_double_short(r: Reader, pos: int) -> float:
    r._need(pos, 3)
    r.pos = pos + 3
    return float(_i16(r._data, pos + 1)[0])


def _r_double_float(r: Reader, pos: int) -> float:
    r._need(pos, 5)
    r.pos = pos + 5
    return _f32(r._data, pos + 1)[0]  # type: ignore[no-any-return]


def _r_date(r: Reader, pos: int) -> Date:
    r._need(pos, 9)
    r.pos = pos + 9
    return Date(_i64(r._data, pos + 1)[0], False)


def _r_str_chunk(r: Reader, pos: int) -> str:
    s, r.pos = r._string_chunks(pos, 0x73)
    return s


def _r_bin_chunks(r: Reader, pos: int) -> bytes:
    b, r.pos = r._binary_chunks(pos, 0x62, True)
    return b  # type: ignore[return-value]


# ---------------------------------------------------------------------- skip handlers


def _s_classdef(r: Reader, pos: int) -> int:
    _define(r, pos)
    r.skip()
    return r.pos


def _s_object(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    i = r._read_length()
    return r._skip_instance(pos, i, r.pos)


def _s_list(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    _type(r)
    n = _length(r)
    r._add_ref(r._marker(pos), pos)
    if n is not None:
        d._skip_items(r, n, pos)
        _expect_end(r, pos)
        return r.pos
    return d._skip_until_end(r, pos, _END, False)


def _s_list_fixed(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    i = r._read_length()
    r._type_at(i, pos)
    n = r._read_length()
    r._add_ref(r._marker(pos), pos)
    return d._skip_items(r, n, pos)


def _s_map(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    _type(r)
    r._add_ref(r._marker(pos), pos)
    return d._skip_until_end(r, pos, _END, True)


def _s_ref(r: Reader, pos: int) -> int:
    i = _ref_index(r, pos)
    if not 0 <= i < len(r._refs):
        raise r._error(f"reference {i} out of range ({len(r._refs)} known)", pos)
    return r.pos


def _s_str_chunk(r: Reader, pos: int) -> int:
    return r._skip_string_chunks(pos, 0x73)


def _s_bin_chunks(r: Reader, pos: int) -> int:
    return r._binary_chunks(pos, 0x62, False)[1]


def _sofa_tables() -> tuple[list[Handler], list[Skipper]]:
    final_r, final_s = d._READ_TABLES[d._FINAL], d._SKIP_TABLES[d._FINAL]
    rd = list(final_r)
    sk = list(final_s)
    # final-only forms are errors in the draft
    for c in [0x41, 0x43, 0x51, 0x55, 0x57, 0x58, 0x59, 0x5A, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F,
              *range(0x60, 0x80)]:
        rd[c] = d._r_bad
        sk[c] = d._s_bad

    def put(code: int, reader: Handler, skipper: Skipper) -> None:
        rd[code] = reader
        sk[code] = skipper

    put(0x4F, _r_classdef, _s_classdef)  # O
    put(0x6F, _r_object, _s_object)  # o
    put(0x56, _r_list, _s_list)  # V
    put(0x76, _r_list_fixed, _s_list_fixed)  # v
    put(0x4D, _r_map, _s_map)  # M
    for c in (0x4A, 0x4B, 0x52):  # J K R
        put(c, _r_ref, _s_ref)
    put(0x77, _r_long4, d._s5)  # w
    put(0x67, _r_double0, d._s1)
    put(0x68, _r_double1, d._s1)
    put(0x69, _r_double_byte, d._s2)
    put(0x6A, _r_double_short, d._s3)
    put(0x6B, _r_double_float, d._s5)
    put(0x64, _r_date, d._s9)  # d
    put(0x73, _r_str_chunk, _s_str_chunk)  # s
    put(0x62, _r_bin_chunks, _s_bin_chunks)  # b
    put(0x42, _r_bin_chunks, _s_bin_chunks)  # B final chunk: the same walk
    return rd, sk


d.install_dialect(d._SOFA, *_sofa_tables())
