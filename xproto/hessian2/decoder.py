"""Hessian 2 reader: the final Caucho 2.0 grammar plus the SOFA "3.0" draft dialect.

Sans-I/O: the reader walks a complete buffer (a Dubbo body, a Bolt content block).
Every length read from the wire is checked against the bytes left *before* anything is
allocated; nesting depth, class definitions and the number of lists/maps/objects are
bounded by :class:`xproto.limits.Limits`. Malformed input raises only
:class:`xproto.errors.ProtocolError` (``protocol="hessian2"``, ``offset`` = byte offset).

Dispatch is a 256-entry table of handlers per dialect, indexed by the first byte; the
most frequent values are decoded inline in ``read()``. ``skip()`` is one loop with an
explicit stack and builds nothing for the skipped value: runs of atomic values, containers
of them and a class definition with its first instance are each stepped over by one
precompiled regex match (:class:`_Runs`), the rest token by token; what a later ``read()`` may still
need (references to skipped lists/maps/objects, class definitions, type names) is
recorded as the byte offset where it starts and decoded on demand.

Dialects: "hessian2" (final grammar), "sofa" (the draft, see .draft) and "auto": codes
that mean the same in both go straight to the final handlers; for the others the final
grammar is tried first and the draft second, and once the draft was needed the reader
stays in it.
"""
from __future__ import annotations

import re
import struct
import sys
from bisect import bisect_left
from codecs import utf_8_decode
from collections.abc import Callable
from typing import Any

from xproto import accel
from xproto.errors import LimitExceeded, ProtocolError
from xproto.limits import DEFAULT_LIMITS, Limits

from .types import ClassDef, Date, JavaObject, Long, TypedList, TypedMap

__all__ = ["Reader", "load_all", "loads"]

PROTOCOL = "hessian2"

_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_i16 = _I16.unpack_from
_u16 = _U16.unpack_from
_i32 = _I32.unpack_from
_i64 = _I64.unpack_from
_f32 = _F32.unpack_from
_f64 = _F64.unpack_from

# One UTF-16 unit per match (Java writes supplementary characters as two 3-byte surrogates).
_UNIT = rb"(?:[\x00-\x7f]|[\xc0-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf][\x80-\xbf])"
_UNIT_RUNS = [(k, re.compile(_UNIT + b"{%d}" % k)) for k in (4096, 512, 64, 8, 1)]
_ASCII_RUN = re.compile(rb"[\x00-\x7f]*")
_ascii_run = _ASCII_RUN.match
_HI_TABLE = bytes([0] * 0x80 + [1] * 0x80)
_HI_WINDOW = 1 << 16

# What skip()'s loop does with a code (per dialect): see _kinds_for().
# (skip() has these values as literals)
(_K_NONE, _K_RUN, _K_SHORT, _K_MAP, _K_UNTIL_END, _K_LIST_DIRECT, _K_OBJECT_DIRECT, _K_CLASSDEF,
 _K_END) = range(9)
_SURROGATE = re.compile("[\ud800-\udfff]")
_UTF8_LEN = bytes(
    [1] * 0x80 + [0] * 0x40 + [2] * 0x20 + [3] * 0x10 + [4] * 0x08 + [0] * 0x08
)  # 0 = not a lead byte

# The optional C accelerator (_speedups.c, built by setup.py when a compiler is there):
# skip()'s loop for the simple cases; XPROTO_PURE_PYTHON=1 ignores it.
def _load_speedups() -> Callable[..., tuple[int, int, int]] | None:
    mod = accel.load("xproto.hessian2._speedups")
    return None if mod is None else mod.skip_loop  # type: ignore[no-any-return]


_skip_loop = _load_speedups()
SPEEDUPS = _skip_loop is not None  # which path is active (the bench prints it)

_SOFA = "sofa"
_FINAL = "hessian2"
_AUTO = "auto"
_DIALECTS = (_FINAL, _SOFA, _AUTO)
_TAG = {name: i for i, name in enumerate(_DIALECTS)}


def _astral_units(s: str) -> int:
    """UTF-16 length of ``s`` (characters above U+FFFF count twice)."""
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le", "surrogatepass")) >> 1


class Reader:
    """Reads Hessian 2 values one after another from ``data[pos:end]``.

    References, class definitions and type names are shared across the values of one
    reader, as they are across the values of one Caucho ``Hessian2Input`` stream (a Dubbo
    request body is one such stream).
    """

    __slots__ = (
        "_data",
        "_defs",
        "_depth",
        "_dialect",
        "_end",
        "_fixed",
        "_hi",
        "_hi_base",
        "_hi_end",
        "_int_read",
        "_kinds",
        "_limits",
        "_max_classdefs",
        "_max_depth",
        "_max_objects",
        "_refs",
        "_runs",
        "_skip_table",
        "_str_read",
        "_str_skip",
        "_table",
        "_types",
        "pos",
    )

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        pos: int = 0,
        *,
        dialect: str = _AUTO,
        limits: Limits = DEFAULT_LIMITS,
        end: int | None = None,
    ) -> None:
        if isinstance(data, memoryview):
            # one copy of the buffer buys bytes' fast slicing/decoding on every value
            data = data.tobytes()
        if end is not None and end < len(data):
            data = data[:end]  # then "past the end" is simply an IndexError
        self._data = data
        self.pos = pos
        self._end = len(data)
        # _hi[i - _hi_base] is 1 where data[i] >= 0x80, for a window of the data: skip()
        # asks "is this string ASCII?" without slicing it.
        self._hi = b""
        self._hi_base = 0
        self._hi_end = -1
        self._limits = limits
        try:  # (_set_dialect, inline)
            (self._table, self._skip_table, self._str_read, self._str_skip, self._int_read, self._fixed,
             self._kinds, self._runs) = _CONFIG[dialect]
        except KeyError:
            raise ValueError(f"unknown hessian dialect {dialect!r}") from None
        self._dialect = dialect
        # Shared references: the object, or the int offset where a skipped one starts.
        self._refs: list[Any] = []
        # Class definitions: ClassDef, or the offset of its name when it was skipped.
        self._defs: list[list[Any]] = []  # [ClassDef or None (skipped), field count, offset]
        # Type names of typed lists/maps: str, or the offset of the string when skipped.
        self._types: list[list[Any]] = []  # [str or None (skipped), offset]
        self._depth = 0
        self._max_depth = limits.hessian_max_depth
        self._max_objects = limits.hessian_max_objects
        self._max_classdefs = limits.hessian_max_classdefs

    # ------------------------------------------------------------------ public API

    @property
    def remaining(self) -> int:
        return self._end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self._end

    def read(self) -> Any:
        """Decode and return the next value."""
        pos = self.pos
        data = self._data
        try:
            code = data[pos]
        except IndexError:
            raise self._error("unexpected end of data", pos) from None
        # the most frequent values inline; the table has every code
        if code < 0x20:
            end = pos + 1 + code
            if end <= self._end:
                b = data[pos + 1 : end]
                if b.isascii():
                    self.pos = end
                    return b.decode("ascii")
        elif 0x80 <= code < 0xC0:
            self.pos = pos + 1
            return code - 0x90
        elif code == 0x4E:
            self.pos = pos + 1
            return None
        return self._table[code](self, pos)

    def skip(self, count: int = 1) -> None:
        """Step over the next value (or ``count`` values) without building it.

        One loop over the tokens with an explicit stack of "values still to skip" per
        open container. Runs of atomic values (numbers, null, booleans, ASCII compact
        strings, short binaries) are stepped over by one precompiled regex match each
        (:class:`_Runs`: the match counts them, nothing is built); the loop itself only
        sees containers, class definitions and the rarer forms. Lists, maps and objects
        skipped are numbered for references all the same (their offsets are kept, to
        decode them if a later reference points at one).
        """
        data = self._data
        pos = self.pos
        fixed = self._fixed
        limit = self._end
        if count == 1:
            try:
                code = data[pos]
            except IndexError:
                raise self._error("unexpected end of data", pos) from None
            size = fixed[code]
            if size and code >= 0x20:  # one atomic value: no loop
                end = pos + size
                if end > limit:
                    raise self._error("truncated value", pos)
                self.pos = end
                return
        elif count <= 0:
            if count < 0:
                raise ValueError("count must not be negative")
            return
        kinds = self._kinds
        runs = self._runs
        tag = _TAG[self._dialect]
        refs = self._refs
        max_objects = self._max_objects
        max_depth = self._max_depth
        base = depth = self._depth
        # values left at this level; -1: a list until the end marker; -2/-3: a map until
        # the end marker, expecting a key/a value
        pending = count
        stack: list[int] = []
        # the C loop takes the simple tokens and returns before any other (the loop below
        # handles that one, then hands back); None: the pure-Python path
        fast = _skip_loop if count <= _C_MAX else None
        defs = self._defs
        max_classdefs = self._max_classdefs
        # (the kinds are literals below: _K_RUN 1, _K_SHORT 2, _K_MAP 3, _K_UNTIL_END 4,
        # _K_LIST_DIRECT 5, _K_OBJECT_DIRECT 6, _K_CLASSDEF 7, _K_END 8, _K_NONE 0)
        try:
            while True:
                if fast is not None:
                    pos, pending, depth = fast(data, pos, limit, pending, stack, depth, max_depth, refs,
                                               max_objects, tag, defs, max_classdefs, kinds, fixed)
                if pending == 0:
                    if not stack:
                        self.pos = pos
                        return
                    pending = stack.pop()
                    depth -= 1
                    continue
                code = data[pos]
                kind = kinds[code]
                if kind == 1:  # _K_RUN: a run of atomic values, by one regex match
                    if pending > 0:
                        m = runs[_RUN_K[pending] if pending < _RUN_MAX else _RUN_MAX](data, pos)
                        n = m.lastindex
                        if n:
                            pos = m.end()
                            pending -= n
                            continue
                    elif pending == -1:
                        end = runs.until_end(data, pos).end()
                        if end > pos:
                            pos = end
                            continue
                    else:
                        m = runs.pairs(data, pos)
                        end = m.end()
                        if end > pos:
                            pos = end
                            if m.lastindex:  # an odd number: key <-> value
                                pending = -5 - pending
                            continue
                    size = fixed[code]
                    if size:
                        # what a run does not take: a truncated value, a non-ASCII string
                        end = pos + size
                        if end > limit:
                            raise self._error("truncated value", pos)
                        if code < 0x20 and code:  # a compact string, not ASCII
                            end = self._skip_utf8(pos + 1, code)
                        pos = end
                        if pending > 0:
                            pending -= 1
                        elif pending < -1:
                            pending = -5 - pending
                        continue
                    kind = 2  # a short string the run did not take
                if kind == 2:  # _K_SHORT: a string of up to 1023 characters
                    n = ((code - 0x30) << 8) | data[pos + 1]
                    end = pos + 2 + n
                    if end > limit:
                        raise self._error("truncated string", pos)
                    if _ascii_run(data, pos + 2, end).end() != end:  # type: ignore[union-attr]
                        end = self._skip_utf8(pos + 2, n)
                    pos = end
                    if pending > 0:
                        pending -= 1
                    elif pending < -1:
                        pending = -5 - pending
                    continue
                if 3 <= kind <= 6:
                    # a container: lists, maps, objects are numbered for references
                    if len(refs) >= max_objects:
                        raise self._limit("hessian objects", len(refs) + 1, max_objects, pos)
                    if depth >= max_depth:
                        raise self._limit("hessian nesting depth", depth + 1, max_depth, pos)
                    if kind == 3:  # _K_MAP
                        n = -2
                        m = runs.flat_map(data, pos)
                    elif kind == 6:  # _K_OBJECT_DIRECT
                        i = code - 0x60
                        if i >= len(self._defs):
                            raise self._error(f"object of undefined class #{i}", pos)
                        n = self._defs[i][1]
                        m = runs.exact[n](data, pos + 1) if n <= _EXACT_MAX else None
                    elif kind == 4:  # _K_UNTIL_END
                        n = -1
                        m = runs.flat_list(data, pos)
                    else:  # _K_LIST_DIRECT
                        n = code - 0x78
                        m = runs.exact[n](data, pos + 1)
                    refs.append(pos << 2 | tag)
                    if pending > 0:
                        pending -= 1
                    elif pending < -1:
                        pending = -5 - pending
                    if m is not None:
                        # only atomic values inside: one match took the whole container
                        pos = m.end()
                        continue
                    depth += 1
                    pos += 1
                    stack.append(pending)
                    pending = n
                    continue
                if kind == 7:  # _K_CLASSDEF, not a value: the instance follows
                    m = runs.classdef(data, pos)
                    if m is None or len(self._defs) >= self._max_classdefs:
                        self._define_class(pos + 1, False)
                        pos = self.pos
                        continue
                    # compact name, up to 15 compact ASCII field names: one match
                    defs = self._defs
                    defs.append([None, data[m.start(1)] - 0x90, pos + 1])
                    i = m.lastindex
                    if i == 1:  # no instance of atomic fields follows
                        pos = m.end()
                        continue
                    pos = m.start(i)
                    if data[pos] - 0x60 != len(defs) - 1:
                        continue  # an instance of another class: the loop's
                    # an instance of this class, of atomic fields only: taken whole
                    if len(refs) >= max_objects:
                        raise self._limit("hessian objects", len(refs) + 1, max_objects, pos)
                    if depth >= max_depth:
                        raise self._limit("hessian nesting depth", depth + 1, max_depth, pos)
                    refs.append(pos << 2 | tag)
                    pos = m.end()
                    if pending > 0:
                        pending -= 1
                    elif pending < -1:
                        pending = -5 - pending
                    continue
                if kind == 8:  # _K_END
                    if pending != -1 and pending != -2:
                        raise self._error("unexpected end marker", pos)
                    pos += 1
                    pending = 0
                    continue
                # _K_NONE: everything else, by the dialect's skip handler
                self.pos = pos
                self._depth = depth
                pos = self._skip_table[code](self, pos)
                # "auto" may have settled
                fixed, kinds, runs = self._fixed, self._kinds, self._runs
                tag = _TAG[self._dialect]
                if pending > 0:
                    pending -= 1
                elif pending < -1:
                    pending = -5 - pending
        except IndexError:
            raise self._error("unexpected end of data", pos) from None
        finally:
            self._depth = base

    def _ascii(self, start: int, end: int) -> bool:
        """Whether data[start:end] is all ASCII, without slicing it."""
        base = self._hi_base
        if start < base or end > self._hi_end:
            base = self._hi_base = start
            self._hi = bytes(self._data[start : start + max(_HI_WINDOW, end - start)]).translate(_HI_TABLE)
            self._hi_end = base + len(self._hi)
        return self._hi.find(1, start - base, end - base) < 0

    def read_string(self) -> str | None:
        """The next value, which must be a string or null."""
        pos = self.pos
        if pos >= self._end:
            raise self._error("unexpected end of data", pos)
        code = self._data[pos]
        if code == 0x4E:
            self.pos = pos + 1
            return None
        fn = self._str_read.get(code)
        if fn is not None:
            return fn(self, pos)  # type: ignore[no-any-return]
        raise self._error(f"expected a string, got byte 0x{code:02x}", pos)

    def read_int(self) -> int:
        """The next value, which must be an int or a long."""
        pos = self.pos
        if pos >= self._end:
            raise self._error("unexpected end of data", pos)
        code = self._data[pos]
        fn = self._int_read.get(code)
        if fn is not None:
            return fn(self, pos)  # type: ignore[no-any-return]
        raise self._error(f"expected an int, got byte 0x{code:02x}", pos)

    @property
    def dialect(self) -> str:
        """"hessian2", "sofa", or "auto" while no value has needed the SOFA draft."""
        return self._dialect

    def read_all(self) -> list[Any]:
        out = []
        while self.pos < self._end:
            out.append(self.read())
        return out

    @property
    def class_defs(self) -> list[ClassDef]:
        """Class definitions seen so far (decoding any that were skipped)."""
        return [self._classdef(i) for i in range(len(self._defs))]

    # ------------------------------------------------------------------ dialects

    def _set_dialect(self, dialect: str) -> None:
        try:
            (self._table, self._skip_table, self._str_read, self._str_skip, self._int_read, self._fixed,
             self._kinds, self._runs) = _CONFIG[dialect]
        except KeyError:
            raise ValueError(f"unknown hessian dialect {dialect!r}") from None
        self._dialect = dialect

    def _auto(self, pos: int, skip: bool) -> Any:
        """"auto": a value that may mean different things in the two dialects.

        Try the final grammar; if it fails, the SOFA draft from the same offset; once the
        draft was needed the reader stays in it. Atomic values that read the same in both
        never come here.
        """
        snap = (len(self._refs), len(self._defs), len(self._types), self._depth)
        code = self._data[pos]
        self._set_dialect(_FINAL)
        try:
            if skip:
                v: Any = _SKIP_TABLES[_FINAL][code](self, pos)
            else:
                v = _READ_TABLES[_FINAL][code](self, pos)
            self._set_dialect(_AUTO)
            return v
        except ProtocolError as first:
            self._rollback(snap)
            self._jump(pos)
            self._set_dialect(_SOFA)
            try:
                if skip:
                    return _SKIP_TABLES[_SOFA][code](self, pos)
                return _READ_TABLES[_SOFA][code](self, pos)
            except ProtocolError:
                self._rollback(snap)
                self._set_dialect(_AUTO)
                self._jump(pos)
                raise first from None

    def _rollback(self, snap: tuple[int, int, int, int]) -> None:
        nrefs, ndefs, ntypes, depth = snap
        del self._refs[nrefs:]
        del self._defs[ndefs:]
        del self._types[ntypes:]
        self._depth = depth

    # ------------------------------------------------------------------ helpers

    def _error(self, message: str, offset: int) -> ProtocolError:
        return ProtocolError(message, protocol=PROTOCOL, offset=offset)

    def _limit(self, name: str, value: int, maximum: int, offset: int) -> LimitExceeded:
        return LimitExceeded(name, value, maximum, protocol=PROTOCOL, offset=offset)

    def _jump(self, pos: int) -> None:
        """Move to ``pos`` (also backwards, to decode what a skip passed over)."""
        self.pos = pos

    def _need(self, pos: int, n: int) -> None:
        if pos + n > self._end:
            raise self._error(f"truncated: {n} bytes needed, {max(self._end - pos, 0)} left", pos)

    def _add_ref(self, obj: Any, pos: int) -> None:
        refs = self._refs
        if len(refs) >= self._max_objects:
            raise self._limit("hessian objects", len(refs) + 1, self._max_objects, pos)
        refs.append(obj)

    def _marker(self, pos: int) -> int:
        """What a skipped list/map/object leaves in the reference table: its offset and
        the dialect it was skipped in (``offset << 2 | tag``), to decode it the same way."""
        return pos << 2 | _TAG[self._dialect]

    def _enter(self, pos: int) -> None:
        depth = self._depth + 1
        if depth > self._max_depth:
            raise self._limit("hessian nesting depth", depth, self._max_depth, pos)
        self._depth = depth

    def _read_length(self) -> int:
        """A non-negative int (length, count, index) in any int/long form."""
        pos = self.pos
        if pos >= self._end:
            raise self._error("unexpected end of data", pos)
        code = self._data[pos]
        fn = self._int_read.get(code)
        if fn is None:
            raise self._error(f"expected an int, got byte 0x{code:02x}", pos)
        n: int = fn(self, pos)
        if n < 0:
            raise self._error(f"negative length {n}", pos)
        return n

    def _skip_length(self) -> int:
        return self._read_length()

    # --- strings

    def _utf8(self, pos: int, n: int) -> tuple[str, int]:
        """Decode ``n`` UTF-16 units of (CESU-)UTF-8 at ``pos``; return (text, end)."""
        end = pos + n
        if end > self._end:
            raise self._error(f"truncated string: {n} characters, {self._end - pos} bytes left", pos)
        data = self._data
        try:
            s, used = utf_8_decode(data[pos:end], "surrogatepass", False)
        except UnicodeDecodeError as e:
            raise self._error(f"bad utf-8 in string: {e.reason}", pos + e.start) from None
        if used == n and len(s) == n:
            return s, end  # pure ASCII: the common case
        return self._utf8_slow(pos, n, s, used)

    def _utf8_slow(self, pos: int, n: int, s: str, used: int) -> tuple[str, int]:
        data = self._data
        limit = self._end
        parts = [s]
        units = _astral_units(s)
        p = pos + used
        try:
            while units < n:
                need = n - units
                if p + need > limit:
                    raise self._error("truncated string", p)
                s, used = utf_8_decode(data[p : p + need], "surrogatepass", False)
                if used == 0:
                    # the next character is longer than the units still needed
                    size = _UTF8_LEN[data[p]]
                    if size == 0:
                        raise self._error(f"bad utf-8 lead byte 0x{data[p]:02x}", p)
                    if p + size > limit:
                        raise self._error("truncated string", p)
                    s, used = utf_8_decode(data[p : p + size], "surrogatepass", True)
                parts.append(s)
                units += _astral_units(s)
                p += used
        except UnicodeDecodeError as e:
            raise self._error(f"bad utf-8 in string: {e.reason}", p + e.start) from None
        if units != n:
            raise self._error("string length splits a supplementary character", p)
        text = "".join(parts)
        if _SURROGATE.search(text) is not None:
            # Java's CESU-8: rejoin surrogate pairs into one character (lone ones stay)
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        return text, p

    def _skip_utf8(self, pos: int, n: int) -> int:
        """Offset after ``n`` UTF-16 units of UTF-8 at ``pos``, building nothing."""
        end = pos + n
        limit = self._end
        if end > limit:
            raise self._error(f"truncated string: {n} characters, {limit - pos} bytes left", pos)
        if self._ascii(pos, end):
            return end
        data = self._data
        p = _ASCII_RUN.match(data, pos, end).end()  # type: ignore[union-attr]
        left = n - (p - pos)
        while left:
            for k, pattern in _UNIT_RUNS:
                if k <= left:
                    m = pattern.match(data, p, limit)
                    if m is not None:
                        p = m.end()
                        left -= k
                        break
            else:
                # a 4-byte sequence (2 units) or bad bytes: one character by hand
                if p >= limit:
                    raise self._error("truncated string", p)
                size = _UTF8_LEN[data[p]]
                if size != 4 or left < 2 or p + 4 > limit:
                    raise self._error(f"bad utf-8 at byte 0x{data[p]:02x}", p)
                for q in range(p + 1, p + 4):
                    if data[q] & 0xC0 != 0x80:
                        raise self._error("bad utf-8 continuation byte", q)
                p += 4
                left -= 2
        return p

    def _string_chunks(self, pos: int, chunk_code: int, final_code: int = 0x53) -> tuple[str, int]:
        """A chunked string starting at ``pos`` (its first byte is ``chunk_code``)."""
        data = self._data
        parts = []
        while True:
            code = data[pos]
            if code == chunk_code or code == final_code:
                self._need(pos, 3)
                n = _u16(data, pos + 1)[0]
                s, pos = self._utf8_text(pos + 3, n)
                parts.append(s)
                if code != chunk_code:
                    break
            elif code < 0x20:
                s, pos = self._utf8_text(pos + 1, code)
                parts.append(s)
                break
            elif 0x30 <= code <= 0x33:
                self._need(pos, 2)
                s, pos = self._utf8_text(pos + 2, ((code - 0x30) << 8) | data[pos + 1])
                parts.append(s)
                break
            else:
                raise self._error(f"expected a string chunk, got byte 0x{code:02x}", pos)
            if pos >= self._end:
                raise self._error("unexpected end of data in chunked string", pos)
        text = "".join(parts)
        if _SURROGATE.search(text) is not None:
            # a surrogate pair may straddle two chunks
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        return text, pos

    def _utf8_text(self, pos: int, n: int) -> tuple[str, int]:
        """Like _utf8 but keeps surrogates split (chunks are joined before rejoining them)."""
        end = pos + n
        if end > self._end:
            raise self._error(f"truncated string: {n} characters, {self._end - pos} bytes left", pos)
        try:
            s, used = utf_8_decode(self._data[pos:end], "surrogatepass", False)
        except UnicodeDecodeError as e:
            raise self._error(f"bad utf-8 in string: {e.reason}", pos + e.start) from None
        if used == n and len(s) == n:
            return s, end
        s, end = self._utf8_slow(pos, n, s, used)
        if not s.isascii():
            s = _split_astral(s)
        return s, end

    def _skip_string_chunks(self, pos: int, chunk_code: int, final_code: int = 0x53) -> int:
        data = self._data
        while True:
            code = data[pos]
            if code == chunk_code or code == final_code:
                self._need(pos, 3)
                pos = self._skip_utf8(pos + 3, _u16(data, pos + 1)[0])
                if code != chunk_code:
                    return pos
            elif code < 0x20:
                return self._skip_utf8(pos + 1, code)
            elif 0x30 <= code <= 0x33:
                self._need(pos, 2)
                return self._skip_utf8(pos + 2, ((code - 0x30) << 8) | data[pos + 1])
            else:
                raise self._error(f"expected a string chunk, got byte 0x{code:02x}", pos)
            if pos >= self._end:
                raise self._error("unexpected end of data in chunked string", pos)

    def _read_str_value(self) -> str:
        """A string (field names, class names, types); null is not allowed."""
        pos = self.pos
        if pos >= self._end:
            raise self._error("unexpected end of data", pos)
        fn = self._str_read.get(self._data[pos])
        if fn is not None:
            return fn(self, pos)  # type: ignore[no-any-return]
        raise self._error(f"expected a string, got byte 0x{self._data[pos]:02x}", pos)

    def _skip_str_value(self) -> None:
        pos = self.pos
        if pos >= self._end:
            raise self._error("unexpected end of data", pos)
        fn = self._str_skip.get(self._data[pos])
        if fn is not None:
            self.pos = fn(self, pos)
            return
        raise self._error(f"expected a string, got byte 0x{self._data[pos]:02x}", pos)

    # --- binary

    def _binary_chunks(self, pos: int, chunk_code: int, build: bool) -> tuple[bytes | None, int]:
        data = self._data
        parts = []
        limit = self._end
        while True:
            code = data[pos]
            if code == chunk_code or code == 0x42:
                self._need(pos, 3)
                n = _u16(data, pos + 1)[0]
                start = pos + 3
            elif 0x20 <= code <= 0x2F:
                n = code - 0x20
                start = pos + 1
            elif 0x34 <= code <= 0x37:
                self._need(pos, 2)
                n = ((code - 0x34) << 8) | data[pos + 1]
                start = pos + 2
            else:
                raise self._error(f"expected a binary chunk, got byte 0x{code:02x}", pos)
            end = start + n
            if end > limit:
                raise self._error(f"truncated binary: {n} bytes, {limit - start} left", start)
            if build:
                parts.append(bytes(data[start:end]))
            pos = end
            if code != chunk_code:
                break
            if pos >= limit:
                raise self._error("unexpected end of data in chunked binary", pos)
        return (b"".join(parts) if build else None), pos

    # --- types, class definitions

    def _read_type(self) -> str:
        """A list/map type: a string (remembered) or an int index of an earlier one."""
        pos = self.pos
        if pos >= self._end:
            raise self._error("unexpected end of data", pos)
        code = self._data[pos]
        if code in self._int_read:
            return self._type_at(self._read_length(), pos)
        t = self._read_str_value()
        self._types.append([t, pos])
        return t

    def _skip_type(self) -> None:
        pos = self.pos
        if pos >= self._end:
            raise self._error("unexpected end of data", pos)
        code = self._data[pos]
        if code in self._int_read:
            i = self._read_length()
            if i >= len(self._types):
                raise self._error(f"type reference {i} out of range", pos)
            return
        self._skip_str_value()
        self._types.append([None, pos])

    def _type_at(self, i: int, pos: int) -> str:
        types = self._types
        if not 0 <= i < len(types):
            raise self._error(f"type reference {i} out of range", pos)
        entry = types[i]
        t = entry[0]
        if t is None:  # skipped: only the final grammar defers types
            save, dialect = self.pos, self._dialect
            self._set_dialect(_FINAL)
            self._jump(entry[1])
            try:
                t = entry[0] = self._read_str_value()
            finally:
                self._jump(save)
                self._set_dialect(dialect)
        return t  # type: ignore[no-any-return]

    def _define_class(self, pos: int, build: bool) -> None:
        """A class definition at ``pos`` (after its code byte): name, field count, names."""
        defs = self._defs
        if len(defs) >= self._limits.hessian_max_classdefs:
            raise self._limit("hessian class definitions", len(defs) + 1,
                              self._limits.hessian_max_classdefs, pos)
        self.pos = pos
        if build:
            name = self._read_str_value()
            n = self._read_length()
            if n > self._end - self.pos:
                raise self._error(f"class {name!r}: {n} fields, {self._end - self.pos} bytes left", pos)
            rs = self._read_str_value
            names = [rs() for _ in range(n)]
            defs.append([ClassDef(name, tuple(names)), n, pos])
        else:
            self._skip_str_value()
            n = self._skip_length()
            if n > self._end - self.pos:
                raise self._error(f"class definition: {n} fields, {self._end - self.pos} bytes left", pos)
            data = self._data
            limit = self._end
            p = self.pos
            ss = self._skip_str_value
            hi, base, hi_end = self._hi, self._hi_base, self._hi_end
            for _ in range(n):
                if p >= limit:
                    raise self._error("truncated class definition", p)
                code = data[p]
                if code < 0x20:  # compact field names, usually ASCII
                    end = p + 1 + code
                    if end <= limit:
                        if p + 1 < base or end > hi_end:
                            self._ascii(p + 1, end)
                            hi, base, hi_end = self._hi, self._hi_base, self._hi_end
                        if hi.find(1, p + 1 - base, end - base) < 0:
                            p = end
                            continue
                self.pos = p
                ss()
                p = self.pos
            self.pos = p
            defs.append([None, n, pos])

    def _classdef(self, i: int) -> ClassDef:
        entry = self._defs[i]
        d = entry[0]
        if d is None:  # skipped: only the final grammar defers class definitions
            save, dialect = self.pos, self._dialect
            self._set_dialect(_FINAL)
            self._jump(entry[2])
            try:
                name = self._read_str_value()
                n = self._read_length()
                rs = self._read_str_value
                d = entry[0] = ClassDef(name, tuple([rs() for _ in range(n)]))
            finally:
                self._jump(save)
                self._set_dialect(dialect)
        return d  # type: ignore[no-any-return]

    def _instance(self, pos: int, i: int, start: int) -> JavaObject:
        """An object of class definition ``i`` whose field values begin at ``start``."""
        if not 0 <= i < len(self._defs):
            raise self._error(f"object of undefined class #{i}", pos)
        cdef = self._defs[i][0] or self._classdef(i)
        obj = JavaObject(cdef.name, {})
        self._add_ref(obj, pos)
        self.pos = start
        self._enter(pos)
        fields = obj.fields
        read = self.read
        for name in cdef.fields:
            fields[name] = read()
        self._depth -= 1
        return obj

    def _skip_instance(self, pos: int, i: int, start: int) -> int:
        if not 0 <= i < len(self._defs):
            raise self._error(f"object of undefined class #{i}", pos)
        self._add_ref(self._marker(pos), pos)
        self.pos = start
        self._enter(pos)
        skip = self.skip
        for _ in range(self._defs[i][1]):
            skip()
        self._depth -= 1
        return self.pos

    # --- references

    def _ref(self, i: int, pos: int) -> Any:
        refs = self._refs
        if not 0 <= i < len(refs):
            raise self._error(f"reference {i} out of range ({len(refs)} known)", pos)
        v = refs[i]
        if type(v) is int:
            v = self._materialize(i)
        return v

    def _materialize(self, i: int) -> Any:
        """Decode the skipped value that reference ``i`` points to, in place.

        Re-reading it registers the same references, class definitions and types as the
        skip did, in the same order: cut each table at the value's start and put back
        what lies beyond once the value is read.
        """
        start = self._refs[i]
        dialect = self._dialect
        start, skipped_in = start >> 2, _DIALECTS[start & 3]
        refs_tail = self._refs[i:]
        del self._refs[i:]
        d0 = bisect_left([e[2] for e in self._defs], start)
        defs_tail = self._defs[d0:]
        del self._defs[d0:]
        t0 = bisect_left([e[1] for e in self._types], start)
        types_tail = self._types[t0:]
        del self._types[t0:]
        save_pos, save_depth = self.pos, self._depth
        self._depth = 0
        self._jump(start)
        self._set_dialect(skipped_in)
        try:
            value = self.read()
        finally:
            self._set_dialect(dialect)
            self._depth = save_depth
            self._jump(save_pos)
            _restore(self._refs, i, refs_tail)
            _restore(self._defs, d0, defs_tail)
            _restore(self._types, t0, types_tail)
        return value


def _restore(lst: list[Any], start: int, tail: list[Any]) -> None:
    lst.extend(tail[len(lst) - start :])


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _pair(m: re.Match[str]) -> str:
    v = ord(m.group()) - 0x10000
    return chr(0xD800 | (v >> 10)) + chr(0xDC00 | (v & 0x3FF))


def _split_astral(s: str) -> str:
    """Characters above U+FFFF as surrogate pairs (one Python char per UTF-16 unit)."""
    return _ASTRAL.sub(_pair, s)


# ---------------------------------------------------------------------- read handlers
# Each handler gets the reader and the offset of the code byte, sets reader.pos past the
# value and returns it.

Handler = Callable[[Reader, int], Any]


def _r_bad(r: Reader, pos: int) -> Any:
    raise r._error(f"unexpected byte 0x{r._data[pos]:02x}", pos)


def _r_null(r: Reader, pos: int) -> None:
    r.pos = pos + 1


def _r_true(r: Reader, pos: int) -> bool:
    r.pos = pos + 1
    return True


def _r_false(r: Reader, pos: int) -> bool:
    r.pos = pos + 1
    return False


def _r_int1(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    return r._data[pos] - 0x90


def _r_int2(r: Reader, pos: int) -> int:
    if pos + 2 > r._end:
        raise r._error("truncated int", pos)
    data = r._data
    r.pos = pos + 2
    return ((data[pos] - 0xC8) << 8) | data[pos + 1]


def _r_int3(r: Reader, pos: int) -> int:
    if pos + 3 > r._end:
        raise r._error("truncated int", pos)
    data = r._data
    r.pos = pos + 3
    return ((data[pos] - 0xD4) << 16) | int(_u16(data, pos + 1)[0])


def _r_int4(r: Reader, pos: int) -> int:
    if pos + 5 > r._end:
        raise r._error("truncated int", pos)
    r.pos = pos + 5
    return _i32(r._data, pos + 1)[0]  # type: ignore[no-any-return]


def _r_long1(r: Reader, pos: int) -> Long:
    r.pos = pos + 1
    return Long(r._data[pos] - 0xE0)


def _r_long2(r: Reader, pos: int) -> Long:
    if pos + 2 > r._end:
        raise r._error("truncated long", pos)
    data = r._data
    r.pos = pos + 2
    return Long(((data[pos] - 0xF8) << 8) | data[pos + 1])


def _r_long3(r: Reader, pos: int) -> Long:
    if pos + 3 > r._end:
        raise r._error("truncated long", pos)
    data = r._data
    r.pos = pos + 3
    return Long(((data[pos] - 0x3C) << 16) | _u16(data, pos + 1)[0])


def _r_long4(r: Reader, pos: int) -> Long:
    if pos + 5 > r._end:
        raise r._error("truncated long", pos)
    r.pos = pos + 5
    return Long(_i32(r._data, pos + 1)[0])


def _r_long8(r: Reader, pos: int) -> Long:
    if pos + 9 > r._end:
        raise r._error("truncated long", pos)
    r.pos = pos + 9
    return Long(_i64(r._data, pos + 1)[0])


def _r_double0(r: Reader, pos: int) -> float:
    r.pos = pos + 1
    return 0.0


def _r_double1(r: Reader, pos: int) -> float:
    r.pos = pos + 1
    return 1.0


def _r_double_byte(r: Reader, pos: int) -> float:
    if pos + 2 > r._end:
        raise r._error("truncated double", pos)
    r.pos = pos + 2
    b = r._data[pos + 1]
    return float(b - 256 if b > 127 else b)


def _r_double_short(r: Reader, pos: int) -> float:
    if pos + 3 > r._end:
        raise r._error("truncated double", pos)
    r.pos = pos + 3
    return float(_i16(r._data, pos + 1)[0])


def _r_double_mill(r: Reader, pos: int) -> float:
    if pos + 5 > r._end:
        raise r._error("truncated double", pos)
    r.pos = pos + 5
    return 0.001 * _i32(r._data, pos + 1)[0]  # type: ignore[no-any-return]


def _r_double8(r: Reader, pos: int) -> float:
    if pos + 9 > r._end:
        raise r._error("truncated double", pos)
    r.pos = pos + 9
    return _f64(r._data, pos + 1)[0]  # type: ignore[no-any-return]


def _r_date_ms(r: Reader, pos: int) -> Date:
    if pos + 9 > r._end:
        raise r._error("truncated date", pos)
    r.pos = pos + 9
    return Date(_i64(r._data, pos + 1)[0], False)


def _r_date_min(r: Reader, pos: int) -> Date:
    if pos + 5 > r._end:
        raise r._error("truncated date", pos)
    r.pos = pos + 5
    return Date(_i32(r._data, pos + 1)[0] * 60000, True)


def _r_str_compact(r: Reader, pos: int) -> str:
    s, r.pos = r._utf8(pos + 1, r._data[pos])
    return s


def _r_str_short(r: Reader, pos: int) -> str:
    if pos + 2 > r._end:
        raise r._error("truncated string", pos)
    data = r._data
    s, r.pos = r._utf8(pos + 2, ((data[pos] - 0x30) << 8) | data[pos + 1])
    return s


def _r_str_final(r: Reader, pos: int) -> str:
    if pos + 3 > r._end:
        raise r._error("truncated string", pos)
    s, r.pos = r._utf8(pos + 3, _u16(r._data, pos + 1)[0])
    return s


def _r_str_chunk(r: Reader, pos: int) -> str:
    s, r.pos = r._string_chunks(pos, 0x52)
    return s


def _r_bin_compact(r: Reader, pos: int) -> bytes:
    n = r._data[pos] - 0x20
    end = pos + 1 + n
    if end > r._end:
        raise r._error(f"truncated binary: {n} bytes, {r._end - pos - 1} left", pos)
    r.pos = end
    return bytes(r._data[pos + 1 : end])


def _r_bin_short(r: Reader, pos: int) -> bytes:
    if pos + 2 > r._end:
        raise r._error("truncated binary", pos)
    data = r._data
    n = ((data[pos] - 0x34) << 8) | data[pos + 1]
    end = pos + 2 + n
    if end > r._end:
        raise r._error(f"truncated binary: {n} bytes, {r._end - pos - 2} left", pos)
    r.pos = end
    return bytes(data[pos + 2 : end])


def _r_bin_chunks(r: Reader, pos: int) -> bytes:
    b, r.pos = r._binary_chunks(pos, 0x41, True)
    return b  # type: ignore[return-value]


def _r_classdef(r: Reader, pos: int) -> Any:
    # A class definition is not a value: define it, then read the value that follows.
    r._define_class(pos + 1, True)
    return r.read()


def _r_object(r: Reader, pos: int) -> JavaObject:
    r.pos = pos + 1
    i = r._read_length()
    return r._instance(pos, i, r.pos)


def _r_object_direct(r: Reader, pos: int) -> JavaObject:
    return r._instance(pos, r._data[pos] - 0x60, pos + 1)


def _r_ref(r: Reader, pos: int) -> Any:
    r.pos = pos + 1
    i = r._read_length()
    return r._ref(i, pos)


def _read_items(r: Reader, lst: list[Any], n: int, pos: int) -> None:
    if n > r._end - r.pos:
        raise r._error(f"list of {n} items, {r._end - r.pos} bytes left", pos)
    r._enter(pos)
    read = r.read
    append = lst.append
    for _ in range(n):
        append(read())
    r._depth -= 1


def _read_items_until_end(r: Reader, lst: list[Any], pos: int, end_code: int) -> None:
    r._enter(pos)
    data = r._data
    read = r.read
    append = lst.append
    while True:
        p = r.pos
        if p >= r._end:
            raise r._error("unterminated list", pos)
        if data[p] == end_code:
            r.pos = p + 1
            break
        append(read())
    r._depth -= 1


def _r_list_var_typed(r: Reader, pos: int) -> TypedList:
    r.pos = pos + 1
    lst = TypedList((), r._read_type(), False)
    r._add_ref(lst, pos)
    _read_items_until_end(r, lst, pos, 0x5A)
    return lst


def _r_list_var(r: Reader, pos: int) -> TypedList:
    r.pos = pos + 1
    lst = TypedList((), None, False)
    r._add_ref(lst, pos)
    _read_items_until_end(r, lst, pos, 0x5A)
    return lst


def _r_list_fixed_typed(r: Reader, pos: int) -> TypedList:
    r.pos = pos + 1
    t = r._read_type()
    n = r._read_length()
    lst = TypedList((), t, True)
    r._add_ref(lst, pos)
    _read_items(r, lst, n, pos)
    return lst


def _r_list_fixed(r: Reader, pos: int) -> list[Any]:
    r.pos = pos + 1
    n = r._read_length()
    lst: list[Any] = []
    r._add_ref(lst, pos)
    _read_items(r, lst, n, pos)
    return lst


def _r_list_direct_typed(r: Reader, pos: int) -> TypedList:
    r.pos = pos + 1
    lst = TypedList((), r._read_type(), True)
    r._add_ref(lst, pos)
    _read_items(r, lst, r._data[pos] - 0x70, pos)
    return lst


def _r_list_direct(r: Reader, pos: int) -> list[Any]:
    lst: list[Any] = []
    r._add_ref(lst, pos)
    r.pos = pos + 1
    _read_items(r, lst, r._data[pos] - 0x78, pos)  # (empty ones count for the depth too)
    return lst


def _read_entries(r: Reader, m: dict[Any, Any], pos: int, end_code: int) -> None:
    r._enter(pos)
    data = r._data
    read = r.read
    while True:
        p = r.pos
        if p >= r._end:
            raise r._error("unterminated map", pos)
        if data[p] == end_code:
            r.pos = p + 1
            break
        k = read()
        try:
            m[k] = read()
        except TypeError:
            raise r._error(f"map key of type {type(k).__name__} is not supported", p) from None
    r._depth -= 1


def _r_map(r: Reader, pos: int) -> dict[Any, Any]:
    m: dict[Any, Any] = {}
    r._add_ref(m, pos)
    r.pos = pos + 1
    _read_entries(r, m, pos, 0x5A)
    return m


def _r_map_typed(r: Reader, pos: int) -> TypedMap:
    r.pos = pos + 1
    m = TypedMap((), r._read_type())
    r._add_ref(m, pos)
    _read_entries(r, m, pos, 0x5A)
    return m


# ---------------------------------------------------------------------- skip handlers
# Each gets the reader and the offset of the code byte and returns the offset after it.


def _s_bad(r: Reader, pos: int) -> int:
    raise r._error(f"unexpected byte 0x{r._data[pos]:02x}", pos)


def _fixed(size: int) -> Callable[[Reader, int], int]:
    def skip(r: Reader, pos: int) -> int:
        end = pos + size
        if end > r._end:
            raise r._error("truncated value", pos)
        return end

    return skip


_s1 = _fixed(1)
_s2 = _fixed(2)
_s3 = _fixed(3)
_s5 = _fixed(5)
_s9 = _fixed(9)


def _s_str_compact(r: Reader, pos: int) -> int:
    return r._skip_utf8(pos + 1, r._data[pos])


def _s_str_short(r: Reader, pos: int) -> int:
    if pos + 2 > r._end:
        raise r._error("truncated string", pos)
    data = r._data
    return r._skip_utf8(pos + 2, ((data[pos] - 0x30) << 8) | data[pos + 1])


def _s_str_final(r: Reader, pos: int) -> int:
    if pos + 3 > r._end:
        raise r._error("truncated string", pos)
    return r._skip_utf8(pos + 3, _u16(r._data, pos + 1)[0])


def _s_str_chunk(r: Reader, pos: int) -> int:
    return r._skip_string_chunks(pos, 0x52)


def _s_bin_compact(r: Reader, pos: int) -> int:
    end = pos + 1 + r._data[pos] - 0x20
    if end > r._end:
        raise r._error("truncated binary", pos)
    return end


def _s_bin_short(r: Reader, pos: int) -> int:
    if pos + 2 > r._end:
        raise r._error("truncated binary", pos)
    data = r._data
    end = pos + 2 + (((data[pos] - 0x34) << 8) | data[pos + 1])
    if end > r._end:
        raise r._error("truncated binary", pos)
    return end


def _s_bin_chunks(r: Reader, pos: int) -> int:
    return r._binary_chunks(pos, 0x41, False)[1]


def _s_classdef(r: Reader, pos: int) -> int:
    r._define_class(pos + 1, False)
    r.skip()
    return r.pos


def _s_object(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    i = r._skip_length()
    return r._skip_instance(pos, i, r.pos)


def _s_object_direct(r: Reader, pos: int) -> int:
    return r._skip_instance(pos, r._data[pos] - 0x60, pos + 1)


def _s_ref(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    i = r._skip_length()
    if not 0 <= i < len(r._refs):
        raise r._error(f"reference {i} out of range ({len(r._refs)} known)", pos)
    return r.pos


def _skip_items(r: Reader, n: int, pos: int) -> int:
    if n > r._end - r.pos:
        raise r._error(f"list of {n} items, {r._end - r.pos} bytes left", pos)
    r._enter(pos)
    skip = r.skip
    for _ in range(n):
        skip()
    r._depth -= 1
    return r.pos


def _skip_until_end(r: Reader, pos: int, end_code: int, pairs: bool) -> int:
    r._enter(pos)
    data = r._data
    skip = r.skip
    while True:
        p = r.pos
        if p >= r._end:
            raise r._error("unterminated list or map", pos)
        if data[p] == end_code:
            r._depth -= 1
            return p + 1
        skip()
        if pairs:
            skip()


def _s_list_var_typed(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    r._skip_type()
    r._add_ref(r._marker(pos), pos)
    return _skip_until_end(r, pos, 0x5A, False)


def _s_list_var(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    r._add_ref(r._marker(pos), pos)
    return _skip_until_end(r, pos, 0x5A, False)


def _s_list_fixed_typed(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    r._skip_type()
    n = r._skip_length()
    r._add_ref(r._marker(pos), pos)
    return _skip_items(r, n, pos)


def _s_list_fixed(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    n = r._skip_length()
    r._add_ref(r._marker(pos), pos)
    return _skip_items(r, n, pos)


def _s_list_direct_typed(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    r._skip_type()
    r._add_ref(r._marker(pos), pos)
    return _skip_items(r, r._data[pos] - 0x70, pos)


def _s_list_direct(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    r._add_ref(r._marker(pos), pos)
    return _skip_items(r, r._data[pos] - 0x78, pos)


def _s_map(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    r._add_ref(r._marker(pos), pos)
    return _skip_until_end(r, pos, 0x5A, True)


def _s_map_typed(r: Reader, pos: int) -> int:
    r.pos = pos + 1
    r._skip_type()
    r._add_ref(r._marker(pos), pos)
    return _skip_until_end(r, pos, 0x5A, True)


# ---------------------------------------------------------------------- tables


def _final_tables() -> tuple[list[Handler], list[Callable[[Reader, int], int]]]:
    rd: list[Handler] = [_r_bad] * 256
    sk: list[Callable[[Reader, int], int]] = [_s_bad] * 256

    def put(codes: range | list[int] | str, reader: Handler, skipper: Callable[[Reader, int], int]) -> None:
        for c in (codes if not isinstance(codes, str) else [ord(ch) for ch in codes]):
            rd[c] = reader
            sk[c] = skipper

    put(range(0x20), _r_str_compact, _s_str_compact)
    put(range(0x20, 0x30), _r_bin_compact, _s_bin_compact)
    put(range(0x30, 0x34), _r_str_short, _s_str_short)
    put(range(0x34, 0x38), _r_bin_short, _s_bin_short)
    put(range(0x38, 0x40), _r_long3, _s3)
    put("AB", _r_bin_chunks, _s_bin_chunks)
    put("C", _r_classdef, _s_classdef)
    put("D", _r_double8, _s9)
    put("F", _r_false, _s1)
    put("H", _r_map, _s_map)
    put("I", _r_int4, _s5)
    put("J", _r_date_ms, _s9)
    put("K", _r_date_min, _s5)
    put("L", _r_long8, _s9)
    put("M", _r_map_typed, _s_map_typed)
    put("N", _r_null, _s1)
    put("O", _r_object, _s_object)
    put("Q", _r_ref, _s_ref)
    put("R", _r_str_chunk, _s_str_chunk)
    put("S", _r_str_final, _s_str_final)
    put("T", _r_true, _s1)
    put("U", _r_list_var_typed, _s_list_var_typed)
    put("V", _r_list_fixed_typed, _s_list_fixed_typed)
    put("W", _r_list_var, _s_list_var)
    put("X", _r_list_fixed, _s_list_fixed)
    put("Y", _r_long4, _s5)
    put([0x5B], _r_double0, _s1)
    put([0x5C], _r_double1, _s1)
    put([0x5D], _r_double_byte, _s2)
    put([0x5E], _r_double_short, _s3)
    put([0x5F], _r_double_mill, _s5)
    put(range(0x60, 0x70), _r_object_direct, _s_object_direct)
    put(range(0x70, 0x78), _r_list_direct_typed, _s_list_direct_typed)
    put(range(0x78, 0x80), _r_list_direct, _s_list_direct)
    put(range(0x80, 0xC0), _r_int1, _s1)
    put(range(0xC0, 0xD0), _r_int2, _s2)
    put(range(0xD0, 0xD8), _r_int3, _s3)
    put(range(0xD8, 0xF0), _r_long1, _s1)
    put(range(0xF0, 0x100), _r_long2, _s2)
    return rd, sk


_INT_CODES = frozenset(
    list(range(0x80, 0xD8)) + [0x49] + list(range(0xD8, 0x100)) + list(range(0x38, 0x40)) + [0x4C, 0x59]
)
_SOFA_INT_CODES = (_INT_CODES - {0x59}) | {0x77}
_FINAL_STR_CODES = frozenset(list(range(0x20)) + [0x30, 0x31, 0x32, 0x33, 0x52, 0x53])
_SOFA_STR_CODES = (_FINAL_STR_CODES - {0x52}) | {0x73}
_STR_CODES = {_FINAL: _FINAL_STR_CODES, _SOFA: _SOFA_STR_CODES}
_INT_CODES_BY = {_FINAL: _INT_CODES, _SOFA: _SOFA_INT_CODES}

_READ_TABLES: dict[str, list[Handler]] = {}
_SKIP_TABLES: dict[str, list[Callable[[Reader, int], int]]] = {}
_READ_TABLES[_FINAL], _SKIP_TABLES[_FINAL] = _final_tables()


def _fixed_sizes(skip: list[Callable[[Reader, int], int]]) -> bytes:
    """Per code: the size of a fixed-size value (compact strings: if ASCII), else 0."""
    sizes = {_s1: 1, _s2: 2, _s3: 3, _s5: 5, _s9: 9}
    out = [sizes.get(fn, 0) for fn in skip]
    for code in range(0x30):
        if skip[code] is _s_str_compact:
            out[code] = 1 + code
        elif skip[code] is _s_bin_compact:
            out[code] = 1 + code - 0x20
    return bytes(out)


_FIXED: dict[str, bytes] = {_FINAL: _fixed_sizes(_SKIP_TABLES[_FINAL])}


def _kinds_for(skip: list[Callable[[Reader, int], int]]) -> bytes:
    """Per code, how skip()'s loop treats it, judged by the dialect's skip handler."""
    out = [_K_NONE] * 256
    fixed = _fixed_sizes(skip)
    for code, fn in enumerate(skip):
        if fixed[code] or fn is _s_str_short and code == 0x30:  # what _Runs' atoms take
            out[code] = _K_RUN
        elif fn is _s_str_short:
            out[code] = _K_SHORT
        elif fn is _s_map:
            out[code] = _K_MAP
        elif fn is _s_list_var:
            out[code] = _K_UNTIL_END
        elif fn is _s_list_direct:
            out[code] = _K_LIST_DIRECT
        elif fn is _s_object_direct:
            out[code] = _K_OBJECT_DIRECT
        elif fn is _s_classdef:
            out[code] = _K_CLASSDEF
    if skip[0x5A] is _s_bad:
        out[0x5A] = _K_END
    return bytes(out)


_KINDS: dict[str, bytes] = {_FINAL: _kinds_for(_SKIP_TABLES[_FINAL])}


def _r_auto(r: Reader, pos: int) -> Any:
    return r._auto(pos, False)


def _s_auto(r: Reader, pos: int) -> int:
    return r._auto(pos, True)  # type: ignore[no-any-return]


def install_dialect(name: str, read: list[Handler], skip: list[Callable[[Reader, int], int]]) -> None:
    """Register the tables of another dialect and derive "auto" from it and the final one.

    A code goes straight to the final handler in "auto" when both dialects read it with
    the same handler (atomic values: small ints, strings, null, booleans ...).
    """
    _READ_TABLES[name], _SKIP_TABLES[name] = read, skip
    final_r, final_s = _READ_TABLES[_FINAL], _SKIP_TABLES[_FINAL]
    auto_r: list[Handler] = []
    auto_s: list[Callable[[Reader, int], int]] = []
    for code in range(256):
        if read[code] is final_r[code] and skip[code] is final_s[code] or read[code] is _r_bad:
            auto_r.append(final_r[code])
            auto_s.append(final_s[code])
        else:
            auto_r.append(_r_auto)
            auto_s.append(_s_auto)
    _READ_TABLES[_AUTO], _SKIP_TABLES[_AUTO] = auto_r, auto_s
    _FIXED[name] = _fixed_sizes(skip)
    _FIXED[_AUTO] = _fixed_sizes(auto_s)
    _KINDS[name] = _kinds_for(skip)
    _KINDS[_AUTO] = _kinds_for(auto_s)
    _configure()


# Until .draft installs the SOFA tables, both fall back to the final grammar.
_READ_TABLES[_SOFA], _SKIP_TABLES[_SOFA] = _READ_TABLES[_FINAL], _SKIP_TABLES[_FINAL]
_READ_TABLES[_AUTO], _SKIP_TABLES[_AUTO] = _READ_TABLES[_FINAL], _SKIP_TABLES[_FINAL]
_FIXED[_SOFA] = _FIXED[_AUTO] = _FIXED[_FINAL]
_KINDS[_SOFA] = _KINDS[_AUTO] = _KINDS[_FINAL]

_C_MAX = sys.maxsize >> 3  # the largest skip(count) the C loop takes
_RUN_MAX = 8  # the most atomic values one regex match counts
# the run that may take ``pending`` values: powers of two, fewer patterns to compile
_RUN_K = (0, 1, 2, 2, 4, 4, 4, 4, 8)
_EXACT_MAX = 64  # the most fields of an object taken by one match (one pattern per count)


class _Runs(dict):  # type: ignore[type-arg]
    """Regexes that step over runs of atomic values of one dialect, building nothing.

    An atomic value is one whose code gives its size (``_FIXED``), an ASCII compact
    string or an ASCII short string of 32..255 characters; the alternatives are disjoint
    by their first bytes, so a match never backtracks. ``runs[k](data, pos)`` takes up to
    ``k`` values: ``k`` nested optional groups, so ``lastindex`` is how many it took and
    ``end()`` where they end. ``until_end`` takes any number, ``pairs`` any number and
    says by its ``lastindex`` whether that number was odd; ``flat_*`` and ``exact[n]``
    take a whole container of atomic values only, ``classdef`` a class definition (and
    the instance of atomic fields that follows it). A value a run does not take (a
    truncated one, a non-ASCII string) is left to skip()'s loop, which reports or walks
    it. Every pattern is compiled on first use (they are large: imports stay fast).
    """

    __slots__ = ("atom", "classdef", "exact", "flat_list", "flat_map", "light", "name", "pairs",
                 "until_end")

    def __init__(self, fixed: bytes) -> None:
        super().__init__()
        strings = []
        by_size: dict[int, list[int]] = {}
        for code in range(256):
            size = fixed[code]
            if not size:
                continue
            if 0 < code < 0x20:
                strings.append(b"\\x%02x[\\x00-\\x7f]{%d}" % (code, code))
            else:
                by_size.setdefault(size, []).append(code)
        # the engine tries the alternatives in order: strings first (the usual Dubbo
        # argument); the short form (0x30) of 32..255 ASCII characters too, as one
        # alternative (descriptors and service names are often longer than 31)
        short = [b"\\x%02x[\\x00-\\x7f]{%d}" % (n, n) for n in range(32, 256)]
        sized = [
            b"[" + b"".join(b"\\x%02x" % c for c in codes) + b"]" + (b".{%d}" % (size - 1) if size > 1 else b"")
            for size, codes in sorted(by_size.items())
        ]
        self.atom = b"(?:" + b"|".join([*strings, b"\\x30(?:" + b"|".join(short) + b")", *sized]) + b")"
        self.light = b"(?:" + b"|".join(sized + strings) + b")"  # without the short strings
        self.name = b"(?:" + b"|".join(strings) + b")"  # class and field names
        # numbers first for object fields and list items (strings are the rarer there)
        self.exact = _Exact(b"(?:" + b"|".join([*sized, *strings, b"\\x30(?:" + b"|".join(short) + b")"]) + b")")

    def __missing__(self, k: int) -> Callable[..., re.Match[bytes] | None]:
        pattern = b""
        for _ in range(k):
            pattern = b"(?:(" + self.atom + b")" + pattern + b")?+"
        fn = self[k] = re.compile(pattern, re.DOTALL).match
        return fn

    def __getattr__(self, attr: str) -> Callable[..., re.Match[bytes] | None]:
        # (only for a pattern not compiled yet: then the slot holds it)
        atom, name = self.atom, self.name
        if attr == "until_end":
            pattern = atom + b"*+"
        elif attr == "pairs":
            pattern = b"(?:" + atom + atom + b")*+(" + atom + b")?+"
        elif attr == "flat_list":  # (W and H: only where 'Z' is the end marker, _kinds_for)
            pattern = b"\\x57" + atom + b"*+\\x5a"
        elif attr == "flat_map":
            pattern = b"\\x48(?:" + atom + atom + b")*+\\x5a"
        elif attr == "classdef":
            # compact ASCII name, field count 0..15 (group 1), compact ASCII field names,
            # and when it follows, a direct-code object whose fields are all atomic (its
            # code is group lastindex, 2 + field count; the light atoms: 16 copies)
            light = self.light
            pattern = b"\\x43" + name + b"(?=([\\x90-\\x9f]))(?:" + b"|".join(
                b"\\x%02x" % (0x90 + n) + (name + b"{%d}" % n if n else b"")
                + b"(?:([\\x60-\\x6f])" + (light + b"{%d}" % n if n else b"") + b")?+"
                for n in range(16)
            ) + b")"
        else:
            raise AttributeError(attr)
        fn = re.compile(pattern, re.DOTALL).match
        setattr(self, attr, fn)
        return fn


class _Exact(dict):  # type: ignore[type-arg]
    """``exact[n](data, pos)``: exactly ``n`` atomic values, or None (compiled on first use)."""

    __slots__ = ("atom",)

    def __init__(self, atom: bytes) -> None:
        super().__init__()
        self.atom = atom

    def __missing__(self, n: int) -> Callable[..., re.Match[bytes] | None]:
        fn = self[n] = re.compile(b"(?:" + self.atom + b"){%d}+" % n if n else b"", re.DOTALL).match
        return fn


_RUNS: dict[bytes, _Runs] = {}


def _runs_for(fixed: bytes) -> _Runs:
    runs = _RUNS.get(fixed)
    if runs is None:
        runs = _RUNS[fixed] = _Runs(fixed)
    return runs


# Everything a Reader needs per dialect, in _set_dialect's order.
_CONFIG: dict[str, tuple[Any, ...]] = {}


def _typed_handlers(name: str) -> tuple[dict[int, Any], dict[int, Any], dict[int, Any]]:
    """Handlers of the codes that can start a string (read, skip) or an int, by code.

    In "auto" a string or int code reads as in the dialect where it *is* a string or an
    int ('R' is a string chunk only in the final grammar, 's' only in the draft, 'w' a
    long only in the draft), so the answer is always of the expected type.
    """
    if name != _AUTO:
        rd, sk = _READ_TABLES[name], _SKIP_TABLES[name]
        return ({c: rd[c] for c in _STR_CODES[name]}, {c: sk[c] for c in _STR_CODES[name]},
                {c: rd[c] for c in _INT_CODES_BY[name]})
    fr, fs, fi = _typed_handlers(_FINAL)
    sr, ss, si = _typed_handlers(_SOFA)
    return {**sr, **fr}, {**ss, **fs}, {**si, **fi}


def _configure() -> None:
    for name in _DIALECTS:
        _CONFIG[name] = (_READ_TABLES[name], _SKIP_TABLES[name], *_typed_handlers(name),
                         _FIXED[name], _KINDS[name], _runs_for(_FIXED[name]))


_configure()


def loads(data: bytes | bytearray | memoryview, pos: int = 0, **kw: Any) -> Any:
    """The first value in ``data`` (from ``pos``)."""
    return Reader(data, pos, **kw).read()


def load_all(data: bytes | bytearray | memoryview, **kw: Any) -> list[Any]:
    """Every value in ``data``, one after another."""
    return Reader(data, **kw).read_all()
