"""Atheris harness for the Hessian 2 codec (xproto.hessian2).

The first byte picks the dialect (final, SOFA draft, auto) and whether the limits are
small; the rest is a stream of Hessian values. Invariants:

* decoding arbitrary bytes raises nothing but ProtocolError (read and skip);
* where read() succeeds, skip() succeeds too and ends each value at the same offset,
  and skip(n) steps over all n values;
* skipping the first value and reading the rest gives the same values (references into
  the skipped value are decoded on demand);
* what decodes re-encodes (final grammar, one Writer) to a stream that decodes to the
  same values: Java types, class names, field order, shared references and cycles.

Run: python fuzz/fuzz_hessian2.py fuzz/corpus/hessian2 -dict=fuzz/dicts/hessian2.dict \
         -max_total_time=180 -rss_limit_mb=2048 -timeout=5
"""
from __future__ import annotations

import math
import sys
from typing import Any

import atheris

with atheris.instrument_imports():
    from xproto.errors import ProtocolError
    from xproto.hessian2 import JavaObject, Reader, TypedList, TypedMap, Writer
    from xproto.limits import Limits

DIALECTS = ("hessian2", "sofa", "auto")
SMALL = Limits(hessian_max_depth=12, hessian_max_objects=200, hessian_max_classdefs=8)
NORMAL = Limits(hessian_max_depth=64, hessian_max_objects=20000, hessian_max_classdefs=512)


def same(a: Any, b: Any, seen: set[tuple[int, int]]) -> bool:
    """Type-strict, cycle-safe structural equality (NaN equals NaN)."""
    key = (id(a), id(b))
    if key in seen:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        if isinstance(a, TypedList) and (a.type != b.type or a.fixed != b.fixed):
            return False
        if len(a) != len(b):
            return False
        seen.add(key)
        return all(same(x, y, seen) for x, y in zip(a, b))
    if isinstance(a, dict):
        if isinstance(a, TypedMap) and a.type != b.type:
            return False
        if len(a) != len(b):
            return False
        seen.add(key)
        rest = list(b.items())
        for k, v in a.items():
            for j, (k2, v2) in enumerate(rest):
                if same(k, k2, seen) and same(v, v2, seen):
                    del rest[j]
                    break
            else:
                return False
        return True
    if isinstance(a, JavaObject):
        if a.cls != b.cls or list(a.fields) != list(b.fields):
            return False
        seen.add(key)
        return all(same(a.fields[k], b.fields[k], seen) for k in a.fields)
    return bool(a == b)


def read_all(data: bytes, dialect: str, limits: Limits) -> tuple[list[Any], list[int]] | None:
    r = Reader(data, dialect=dialect, limits=limits)
    values: list[Any] = []
    ends: list[int] = []
    try:
        while not r.at_end():
            values.append(r.read())
            ends.append(r.pos)
    except ProtocolError:
        return None
    return values, ends


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    ctl, data = data[0], data[1:]
    dialect = DIALECTS[ctl % 3]
    limits = SMALL if ctl & 0x04 else NORMAL

    got = read_all(data, dialect, limits)

    # skip: never anything but ProtocolError; same value boundaries where read worked
    r = Reader(data, dialect=dialect, limits=limits)
    skip_ends: list[int] = []
    try:
        while not r.at_end():
            r.skip()
            skip_ends.append(r.pos)
    except ProtocolError:
        skip_ends.append(-1)
    if got is None:
        return
    values, ends = got
    assert skip_ends == ends, (skip_ends, ends)
    r = Reader(data, dialect=dialect, limits=limits)
    r.skip(len(values))  # all in one call
    assert r.pos == len(data)

    # skip the first value, read the rest: the same values
    if len(values) > 1:
        r = Reader(data, dialect=dialect, limits=limits)
        r.skip()
        rest = [r.read() for _ in range(len(values) - 1)]
        assert r.at_end()
        assert same(rest, values[1:], set()), (rest, values[1:])

    # decode -> encode -> decode
    w = Writer()
    for v in values:
        w.write(v)
    again = read_all(w.getvalue(), "hessian2", NORMAL.with_overrides(hessian_max_depth=1000))
    assert again is not None, "re-encoded stream does not decode"
    assert same(again[0], values, set()), (again[0], values)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
