"""The optional C accelerator of Hessian 2 skip() (xproto/hessian2/_speedups.c).

* both paths are tested: the key Hessian test modules run again in a subprocess with
  XPROTO_PURE_PYTHON=1 (this run uses the extension when it is built);
* differential: on random bytes, mutated streams and hostile token soups (every dialect,
  small limits) skip() with the C loop ends in exactly the state of the pure-Python loop:
  same offset, same references, class definitions and type names, same dialect, and the
  same exception (type, message, offset) when it fails;
* the C function itself never reads outside the buffer and refuses bad arguments.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_hessian2_props import _mutate, _ops, values
from test_hessian2_util import VECTORS

from xproto.errors import XprotoError
from xproto.hessian2 import Reader, dumps
from xproto.hessian2 import decoder as dec
from xproto.limits import DEFAULT_LIMITS, Limits

ROOT = Path(__file__).resolve().parent.parent
PURE_ENV = os.environ.get("XPROTO_PURE_PYTHON", "") not in ("", "0")
needs_c = pytest.mark.skipif(not dec.SPEEDUPS, reason="C accelerator not built (pure-Python install)")

SMALL = Limits(hessian_max_depth=5, hessian_max_objects=12, hessian_max_classdefs=3)
LIMITS = [DEFAULT_LIMITS, SMALL]
DIALECTS = ["auto", "hessian2", "sofa"]


def test_pure_python_env_var_disables_the_extension() -> None:
    code = "from xproto.hessian2 import decoder; print(decoder.SPEEDUPS, decoder._skip_loop)"
    env = {**os.environ, "XPROTO_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.split() == ["False", "None"]


@pytest.mark.skipif(PURE_ENV, reason="already the pure-Python run")
@needs_c
def test_hessian_suites_pass_on_the_pure_python_path() -> None:
    env = {**os.environ, "XPROTO_PURE_PYTHON": "1", "XPROTO_HYPOTHESIS_PROFILE": "ci"}
    mods = ["tests/test_hessian2.py", "tests/test_hessian2_props.py", "tests/test_hessian2_sofa.py",
            "tests/test_hessian2_speedups.py"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=120", *mods],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


# ------------------------------------------------------------------ differential


@contextmanager
def _pure() -> Iterator[None]:
    saved = dec._skip_loop
    dec._skip_loop = None
    try:
        yield
    finally:
        dec._skip_loop = saved


def _state(r: Reader) -> tuple[Any, ...]:
    return (r.pos, list(r._refs), [[e[0], e[1], e[2]] for e in r._defs], [list(e) for e in r._types],
            r.dialect, r._depth)


def _run(data: bytes, dialect: str, limits: Limits, mode: int) -> list[Any]:
    """Skip through ``data`` (one value per call, or skip(n) for n = mode), recording the
    state after each call and the exception that ends it."""
    r = Reader(data, dialect=dialect, limits=limits)
    out: list[Any] = []
    for _ in range(len(data) + 1):
        if r.at_end():
            break
        try:
            r.skip(mode)
        except XprotoError as e:
            out.append((type(e).__name__, str(e), e.offset))  # type: ignore[attr-defined]
            break
        out.append(_state(r))
    return out


def _same_both_ways(data: bytes) -> None:
    for dialect in DIALECTS:
        for limits in LIMITS:
            for mode in (1, 3, 1000):
                fast = _run(data, dialect, limits, mode)
                with _pure():
                    slow = _run(data, dialect, limits, mode)
                assert fast == slow, (data, dialect, limits, mode)


# tokens of the grammar the C loop takes (and its near misses), to be shuffled together
_TOKENS = [
    b"H", b"Z", b"W", b"\x78", b"\x79", b"\x7a", b"\x7f", b"X\x92", b"M\x01t", b"U\x01t", b"\x71\x01t",
    b"C\x03a.B\x92\x01x\x01y", b"C\x01A\x90", b"C\x01A\x9f", b"C\x00\x91\x01x", b"C\x01A\x91\x81x",
    b"\x60", b"\x61", b"\x62", b"O\x90", b"Q\x90", b"Q\x91",
    b"\x90", b"\xc8\x01", b"\xd0\x01\x02", b"I\x00\x00\x00\x01", b"L" + bytes(8), b"D" + bytes(8),
    b"N", b"T", b"F", b"\x5b", b"\x5d\x01", b"\xe0", b"\xf8\x01", b"Y\x00\x00\x00\x01",
    b"\x00", b"\x01a", b"\x05hello", b"\x02\xc3\xa9", b"\x03\xed\xa0\x80", b"\x01\xff", b"\x1f" + b"a" * 31,
    b"\x30\x20" + b"b" * 32, b"\x30\x05abcde", b"\x31\x00" + b"c" * 256, b"\x30\x02\xc3\xa9",
    b"\x20", b"\x23xyz", b"\x34\x02zz", b"S\x00\x01q", b"R\x00\x01q", b"s\x00\x01q",
    b"z", b"V", b"v\x90\x91", b"t\x00\x01a", b"o\x90", b"J\x90", b"w\x00\x00\x00\x01",
]

token_soup = st.lists(st.sampled_from(_TOKENS), max_size=40).map(b"".join)


@needs_c
@given(token_soup, st.integers(0, 8))
def test_c_loop_matches_python_on_token_soup(data: bytes, cut: int) -> None:
    _same_both_ways(data[: len(data) - cut] if cut else data)


@needs_c
@given(st.binary(max_size=120))
def test_c_loop_matches_python_on_random_bytes(data: bytes) -> None:
    _same_both_ways(data)


@needs_c
@given(values, _ops)
def test_c_loop_matches_python_on_mutated_streams(value: Any, ops: list[tuple[int, int, int]]) -> None:
    _same_both_ways(_mutate(dumps(value), ops))


@needs_c
@given(st.lists(values, min_size=1, max_size=4))
def test_c_loop_matches_python_on_valid_streams(vals: list[Any]) -> None:
    data = b"".join(dumps(v) for v in vals)
    _same_both_ways(data)


@needs_c
def test_c_loop_takes_a_class_definition_and_its_instance_as_the_python_loop_does() -> None:
    # found by the differential test: the Python loop's classdef regex takes a direct
    # instance right after its definition even where "auto" leaves that code ambiguous
    # (0x62 is 'b' in the SOFA draft), and records it under the "auto" tag
    _same_both_ways(b"\x00C\x10com.example.User\x90`C\x10com.example.User\x91\x04nameaNC\x03a.B\x90b")
    for code in range(0x60, 0x70):
        for k in range(4):
            defs = b"".join(b"C\x02c" + bytes([0x41 + i]) + b"\x91\x01x" for i in range(k))
            for fields in (b"\x91", b"\x01y", b"\x30\x20" + b"z" * 32, b"\x02\xc3\xa9", b"", b"H\x5a"):
                data = defs + b"C\x01A\x91\x01x" + bytes([code]) + fields
                _same_both_ways(data)
                _same_both_ways(data + b"\x60\x91")


@needs_c
def test_c_loop_matches_python_on_deep_nesting_and_many_objects() -> None:
    # deeper than the C loop's local stack (it spills to the Python list), and the limits
    deep = Limits(hessian_max_depth=1000)
    for n in (127, 128, 129, 300, 999, 1000):
        for data in (b"\x79" * n + b"N", b"H\x91" * n + b"N" + b"Z" * n, b"W" * n + b"Z" * n):
            fast = _run(data, "auto", deep, 1)
            with _pure():
                slow = _run(data, "auto", deep, 1)
            assert fast == slow, (n, data[:8])
    many = dumps([[i] for i in range(3000)])
    for limits in (Limits(hessian_max_objects=3001), Limits(hessian_max_objects=3000), DEFAULT_LIMITS):
        fast = _run(many, "auto", limits, 1)
        with _pure():
            slow = _run(many, "auto", limits, 1)
        assert fast == slow


@needs_c
def test_dubbo_body_is_skipped_whole_by_the_c_loop() -> None:
    body = bytes.fromhex((VECTORS / "dubbo_invocation.hex").read_text().strip())
    stack: list[int] = []
    refs: list[Any] = []
    defs: list[Any] = []
    r = Reader(body)
    pos, pending, depth = dec._skip_loop(body, 0, len(body), 8, stack, 0, 64, refs, 1000, 2, defs,  # type: ignore[misc]
                                         10, r._kinds, r._fixed)
    assert (pos, pending, depth, stack) == (len(body), 0, 0, [])
    r.skip(8)
    assert refs == r._refs and defs == r._defs


@needs_c
def test_c_function_stays_inside_the_buffer_and_checks_its_arguments() -> None:
    fn = dec._skip_loop
    r = Reader(b"")
    kinds, fixed = r._kinds, r._fixed
    # limit beyond the buffer is cut to it; pos beyond it returns at once
    for data in (b"\x05ab", bytearray(b"H\x91"), memoryview(b"\x30\xff"), b""):
        for pos in (0, 1, 10, 1 << 40):
            out = fn(data, pos, 1 << 40, 1, [], 0, 64, [], 100, 0, [], 10, kinds, fixed)
            assert out[0] == pos or out[0] <= len(data)
    # bad defs entries: left to Python (returns at the object), never a crash
    for entry in (None, [], [None], [None, "x"], [None, -1], [None, 1 << 70]):
        out = fn(b"\x60\x90", 0, 2, 1, [], 0, 64, [], 100, 0, [entry], 10, kinds, fixed)
        assert out == (0, 1, 0)
    # huge or negative limits are clamped, not an OverflowError
    assert fn(b"\x79\x90", 0, 2, 1, [], 0, 1 << 80, [], -(1 << 80), 0, [], 1 << 90, kinds, fixed) == (0, 1, 0)
    with pytest.raises(TypeError):
        fn(b"", 0, 0, 1, [], 0, 64, [], 100, 0, [], 10, b"short", fixed)
    with pytest.raises(TypeError):
        fn(b"", 0, 0, 1, (), 0, 64, [], 100, 0, [], 10, kinds, fixed)
    with pytest.raises(TypeError):
        fn(b"")
    with pytest.raises(TypeError):
        fn(object(), 0, 0, 1, [], 0, 64, [], 100, 0, [], 10, kinds, fixed)
