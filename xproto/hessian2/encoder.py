"""Hessian 2 writer producing exactly the bytes Caucho Hessian 4.0.38 writes.

Byte-exactness covers the compact forms (Caucho always picks the shortest), string
chunking (32768 UTF-16 units per ``R`` chunk, never ending on a high surrogate), type
and class-definition references and shared references (``Q``) by Python identity.

Binary chunking depends on how full Caucho's 8 KiB output buffer is when the bytes are
written (``Hessian2Output.writeBytes`` fills the rest of the buffer with an ``A`` chunk).
The writer therefore mirrors the buffer's fill level: every write method checks the same
threshold as its Caucho counterpart (``SIZE < offset + 16``, ``SIZE <= offset + 16`` or
``SIZE < offset + 32``, read off the 4.0.38 bytecode) and "flushes" where Caucho would.
"""
from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from typing import Any

from .types import Date, JavaObject, Long, TypedList, TypedMap

__all__ = ["Writer", "dumps"]

_SIZE = 8192  # Hessian2Output.SIZE in 4.0.38
_A = _SIZE - 16  # flush when offset > _A   ("SIZE < offset + 16")
_B = _SIZE - 16  # flush when offset >= _B  ("SIZE <= offset + 16")
_C = _SIZE - 32  # flush when offset > _C   ("SIZE < offset + 32": flushIfFull and friends)

_pack_i16 = struct.Struct(">h").pack
_pack_u16 = struct.Struct(">H").pack
_pack_i32 = struct.Struct(">i").pack
_pack_i64 = struct.Struct(">q").pack
_pack_f64 = struct.Struct(">d").pack
_pack_bi32 = struct.Struct(">Bi").pack
_pack_bi64 = struct.Struct(">Bq").pack
_pack_bd = struct.Struct(">Bd").pack

_INT32_MIN = -0x80000000
_INT32_MAX = 0x7FFFFFFF
_INT64_MIN = -0x8000000000000000
_INT64_MAX = 0x7FFFFFFFFFFFFFFF

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")

# Pre-built single-byte encodings of the compact ints and longs.
_INT1 = [bytes([0x90 + v]) for v in range(-16, 48)]
_LONG1 = [bytes([0xE0 + v]) for v in range(-8, 16)]
_STR_EMPTY = b"\x00"


def _pair(m: re.Match[str]) -> str:
    v = ord(m.group()) - 0x10000
    return chr(0xD800 | (v >> 10)) + chr(0xDC00 | (v & 0x3FF))


def _java_int(x: float) -> int:
    """Java's ``(int) x`` for a double: truncate toward zero, saturate, NaN -> 0."""
    if math.isnan(x):
        return 0
    if x >= 2147483647.0:
        return _INT32_MAX
    if x <= -2147483648.0:
        return _INT32_MIN
    return int(x)


def _encode_int(v: int) -> bytes:
    if -16 <= v <= 47:
        return _INT1[v + 16]
    if -2048 <= v <= 2047:
        return bytes((0xC8 + (v >> 8), v & 0xFF))
    if -262144 <= v <= 262143:
        return bytes((0xD4 + (v >> 16), (v >> 8) & 0xFF, v & 0xFF))
    return _pack_bi32(0x49, v)


def _encode_long(v: int) -> bytes:
    if -8 <= v <= 15:
        return _LONG1[v + 8]
    if -2048 <= v <= 2047:
        return bytes((0xF8 + (v >> 8), v & 0xFF))
    if -262144 <= v <= 262143:
        return bytes((0x3C + (v >> 16), (v >> 8) & 0xFF, v & 0xFF))
    if _INT32_MIN <= v <= _INT32_MAX:
        return _pack_bi32(0x59, v)
    if _INT64_MIN <= v <= _INT64_MAX:
        return _pack_bi64(0x4C, v)
    raise ValueError(f"{v} does not fit a Java long")


def _encode_double(v: float) -> bytes:
    iv = _java_int(v)
    if iv == v:
        if iv == 0:
            return b"\x5b"
        if iv == 1:
            return b"\x5c"
        if -0x80 <= iv < 0x80:
            return bytes((0x5D, iv & 0xFF))
        if -0x8000 <= iv < 0x8000:
            return b"\x5e" + _pack_i16(iv)
    mills = _java_int(v * 1000.0)
    if 0.001 * mills == v:
        return _pack_bi32(0x5F, mills)
    return _pack_bd(0x44, v)


class Writer:
    """Writes values one after another into one Hessian 2 stream.

    References, class definitions and type names are shared across the values written
    by one writer, as by one Caucho ``Hessian2Output`` (a Dubbo request body is one).
    """

    __slots__ = ("_buf", "_classes", "_flushed", "_keep", "_refs", "_types")

    def __init__(self) -> None:
        self._buf = bytearray()
        # Start of Caucho's current 8 KiB buffer within _buf (its "_offset" is the rest).
        self._flushed = 0
        self._refs: dict[int, int] = {}
        self._keep: list[Any] = []  # keeps referenced objects alive so ids stay unique
        self._classes: dict[tuple[str, tuple[str, ...]], int] = {}
        self._types: dict[str, int] = {}

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)

    def reset_references(self) -> None:
        """Forget shared references (Caucho's ``resetReferences``), keep class defs."""
        self._refs.clear()
        self._keep.clear()

    # ------------------------------------------------------------------ dispatch

    def write(self, value: Any) -> None:
        """Append one value."""
        fn = _WRITERS.get(type(value))
        if fn is None:
            fn = _writer_for(value)
        fn(self, value)

    # ------------------------------------------------------------------ primitives

    def _check_b(self) -> None:
        if len(self._buf) - self._flushed >= _B:
            self._flushed = len(self._buf)

    def write_null(self) -> None:
        buf = self._buf
        if len(buf) - self._flushed >= _B:
            self._flushed = len(buf)
        buf.append(0x4E)

    def write_bool(self, v: bool) -> None:
        buf = self._buf
        if len(buf) - self._flushed > _A:
            self._flushed = len(buf)
        buf.append(0x54 if v else 0x46)

    def write_int(self, v: int) -> None:
        """A Java int (must fit 32 bits)."""
        if not _INT32_MIN <= v <= _INT32_MAX:
            raise ValueError(f"{v} does not fit a Java int")
        buf = self._buf
        if len(buf) - self._flushed >= _B:
            self._flushed = len(buf)
        buf += _encode_int(v)

    def write_long(self, v: int) -> None:
        buf = self._buf
        if len(buf) - self._flushed >= _B:
            self._flushed = len(buf)
        buf += _encode_long(v)

    def _write_pyint(self, v: int) -> None:
        buf = self._buf
        if len(buf) - self._flushed >= _B:
            self._flushed = len(buf)
        if _INT32_MIN <= v <= _INT32_MAX:
            buf += _encode_int(v)
        else:
            buf += _encode_long(v)

    def write_double(self, v: float) -> None:
        buf = self._buf
        if len(buf) - self._flushed >= _B:
            self._flushed = len(buf)
        buf += _encode_double(v)

    def write_date(self, d: Date) -> None:
        buf = self._buf
        if len(buf) - self._flushed > _C:
            self._flushed = len(buf)
        t = d.millis
        if d.minutes is not False and t % 60000 == 0:
            minutes = t // 60000
            if _INT32_MIN <= minutes <= _INT32_MAX:
                buf += _pack_bi32(0x4B, minutes)
                return
        if not _INT64_MIN <= t <= _INT64_MAX:
            raise ValueError(f"date {t} does not fit a Java long")
        buf += _pack_bi64(0x4A, t)

    # ------------------------------------------------------------------ strings

    def write_string(self, s: str) -> None:
        buf = self._buf
        if len(buf) - self._flushed >= _B:
            self._flushed = len(buf)
        if s.isascii():
            n = len(s)
            if n <= 31:
                buf.append(n)
                self._print(s.encode("ascii"))
                return
            if n <= 1023:
                buf.append(0x30 + (n >> 8))
                buf.append(n & 0xFF)
                self._print(s.encode("ascii"))
                return
        elif _ASTRAL.search(s) is not None:
            # Java strings are UTF-16: one Python char per UTF-16 unit from here on
            s = _ASTRAL.sub(_pair, s)
        self._write_units(s)

    def _write_units(self, s: str) -> None:
        buf = self._buf
        n = len(s)
        start = 0
        while n > 0x8000:
            sub = 0x8000
            if len(buf) - self._flushed >= _B:
                self._flushed = len(buf)
            if 0xD800 <= ord(s[start + sub - 1]) <= 0xDBFF:
                sub -= 1  # a chunk must not end between the halves of a surrogate pair
            buf.append(0x52)
            buf += _pack_u16(sub)
            self._print(s[start : start + sub].encode("utf-8", "surrogatepass"))
            n -= sub
            start += sub
        if len(buf) - self._flushed >= _B:
            self._flushed = len(buf)
        if n <= 31:
            buf.append(n)
        elif n <= 1023:
            buf.append(0x30 + (n >> 8))
            buf.append(n & 0xFF)
        else:
            buf.append(0x53)
            buf += _pack_u16(n)
        self._print((s[start:] if start else s).encode("utf-8", "surrogatepass"))

    def _print(self, enc: bytes) -> None:
        """Append string bytes; Caucho's printString may flush before any character."""
        buf = self._buf
        start = len(buf)
        o = start - self._flushed
        size = len(enc)
        buf += enc
        if o + size > _B:
            rel = _B - o if o < _B else 0
            last = -1
            while rel < size:
                while rel < size and enc[rel] & 0xC0 == 0x80:
                    rel += 1  # the check happens at character starts only
                if rel >= size:
                    break
                last = rel
                rel += _B
            if last >= 0:
                self._flushed = start + last

    # ------------------------------------------------------------------ binary

    def write_binary(self, b: bytes | bytearray | memoryview) -> None:
        buf = self._buf
        length = len(b)
        pos = 0
        while _SIZE - (len(buf) - self._flushed) - 3 < length:
            sub = _SIZE - (len(buf) - self._flushed) - 3
            if sub < 16:
                self._flushed = len(buf)
                sub = _SIZE - 3
                sub = min(sub, length)
            buf.append(0x41)
            buf += _pack_u16(sub)
            buf += b[pos : pos + sub]
            pos += sub
            length -= sub
            self._flushed = len(buf)
        if len(buf) - self._flushed > _A:
            self._flushed = len(buf)
        if length <= 15:
            buf.append(0x20 + length)
        elif length <= 1023:
            buf.append(0x34 + (length >> 8))
            buf.append(length & 0xFF)
        else:
            buf.append(0x42)
            buf += _pack_u16(length)
        buf += b[pos:] if pos else b

    # ------------------------------------------------------------------ references

    def _ref(self, obj: Any) -> bool:
        """Write ``Q`` and return True if ``obj`` was written before; else remember it."""
        refs = self._refs
        key = id(obj)
        i = refs.get(key)
        if i is None:
            refs[key] = len(refs)
            self._keep.append(obj)
            return False
        buf = self._buf
        if len(buf) - self._flushed > _A:
            self._flushed = len(buf)
        buf.append(0x51)
        self.write_int(i)
        return True

    def _type(self, t: str) -> None:
        buf = self._buf
        if len(buf) - self._flushed > _C:
            self._flushed = len(buf)
        # (Caucho refuses to write an empty type; other writers do, and we re-encode it)
        i = self._types.get(t)
        if i is not None:
            self.write_int(i)
        else:
            self._types[t] = len(self._types)
            self.write_string(t)

    # ------------------------------------------------------------------ containers

    def _list_begin(self, n: int, t: str | None) -> None:
        buf = self._buf
        if len(buf) - self._flushed > _C:
            self._flushed = len(buf)
        if n < 0:
            if t is not None:
                buf.append(0x55)
                self._type(t)
            else:
                buf.append(0x57)
        elif n <= 7:
            if t is not None:
                buf.append(0x70 + n)
                self._type(t)
            else:
                buf.append(0x78 + n)
        else:
            if t is not None:
                buf.append(0x56)
                self._type(t)
            else:
                buf.append(0x58)
            self.write_int(n)

    def _end(self, check: int) -> None:
        buf = self._buf
        if len(buf) - self._flushed > check:
            self._flushed = len(buf)
        buf.append(0x5A)

    def write_list(self, lst: list[Any] | tuple[Any, ...]) -> None:
        if self._ref(lst):
            return
        self._list_begin(len(lst), None)
        write = self.write
        for item in lst:
            write(item)

    def write_typed_list(self, lst: TypedList) -> None:
        if self._ref(lst):
            return
        fixed = lst.fixed
        self._list_begin(len(lst) if fixed else -1, lst.type)
        write = self.write
        for item in lst:
            write(item)
        if not fixed:
            self._end(_C)

    def write_map(self, m: dict[Any, Any]) -> None:
        if self._ref(m):
            return
        buf = self._buf
        if len(buf) - self._flushed > _C:
            self._flushed = len(buf)
        t = m.type if isinstance(m, TypedMap) else None
        if t is not None:
            buf.append(0x4D)
            self._type(t)
        else:
            buf.append(0x48)
        write = self.write
        for k, v in m.items():
            write(k)
            write(v)
        self._end(_C)

    def write_object(self, obj: JavaObject) -> None:
        if self._ref(obj):
            return
        fields = obj.fields
        key = (obj.cls, tuple(fields))
        i = self._classes.get(key)
        buf = self._buf
        if i is None:
            i = self._classes[key] = len(self._classes)
            if len(buf) - self._flushed > _C:
                self._flushed = len(buf)
            buf.append(0x43)
            self.write_string(obj.cls)
            self.write_int(len(fields))
            for name in fields:
                self.write_string(name)
        if len(buf) - self._flushed > _C:
            self._flushed = len(buf)
        if i <= 15:
            buf.append(0x60 + i)
        else:
            buf.append(0x4F)
            self.write_int(i)
        write = self.write
        for v in fields.values():
            write(v)


_WRITERS: dict[type, Callable[[Writer, Any], None]] = {
    type(None): lambda w, v: w.write_null(),
    bool: Writer.write_bool,
    int: Writer._write_pyint,
    Long: Writer.write_long,
    float: Writer.write_double,
    str: Writer.write_string,
    bytes: Writer.write_binary,
    bytearray: Writer.write_binary,
    memoryview: Writer.write_binary,
    list: Writer.write_list,
    tuple: Writer.write_list,
    TypedList: Writer.write_typed_list,
    dict: Writer.write_map,
    TypedMap: Writer.write_map,
    JavaObject: Writer.write_object,
    Date: Writer.write_date,
}


def _writer_for(value: Any) -> Callable[[Writer, Any], None]:
    """Subclasses: pick the writer of the closest known base class."""
    for cls in type(value).__mro__:
        fn = _WRITERS.get(cls)
        if fn is not None:
            return fn
    raise TypeError(f"cannot write {type(value).__name__} as Hessian")


def dumps(value: Any) -> bytes:
    """One value as Hessian 2 bytes (a fresh stream: no shared state)."""
    w = Writer()
    w.write(value)
    return w.getvalue()
