"""Java-typed Python values, so that what was decoded re-encodes byte for byte.

Mapping (decode -> Python -> encode):

=====================  ===============================  =========================
Hessian / Java         Python                           written back as
=====================  ===============================  =========================
null                   ``None``                         ``N``
boolean                ``bool``                         ``T`` / ``F``
int                    ``int``                          int (long if it does not fit)
long                   :class:`Long` (an ``int``)       long
double                 ``float``                        double (Caucho's compact forms)
string                 ``str``                          string (CESU-8, 32768-unit chunks)
binary                 ``bytes``                        binary
date                   :class:`Date`                    ``J`` millis or ``K`` minutes
untyped fixed list     ``list``                         ``x78+n`` / ``X``
other lists            :class:`TypedList`               typed / variable forms
untyped map            ``dict``                         ``H``
typed map              :class:`TypedMap`                ``M`` type
object                 :class:`JavaObject`              class definition + instance
=====================  ===============================  =========================

Shared references are Python identity: a list, dict or object that occurs twice in a
decoded value is the same Python object, and the writer emits ``Q`` for the second
occurrence of the same object.
"""
from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["Binary", "ClassDef", "Date", "JavaObject", "Long", "TypedList", "TypedMap"]

Binary = bytes


class Long(int):
    """A Java ``long`` (a plain ``int`` is written as a Java ``int`` when it fits)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Long({int(self)})"


class TypedList(list):  # type: ignore[type-arg]
    """A list with its Java type name (``None`` = untyped) and whether it had a fixed length.

    Compares equal to a plain list with the same items; two TypedLists also compare
    type and fixedness.
    """

    __slots__ = ("fixed", "type")

    def __init__(self, items: Any = (), type: str | None = None, fixed: bool = True) -> None:
        super().__init__(items)
        self.type = type
        self.fixed = fixed

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TypedList) and (other.type != self.type or other.fixed != self.fixed):
            return False
        return list.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"TypedList({list.__repr__(self)}, type={self.type!r}, fixed={self.fixed})"


class TypedMap(dict):  # type: ignore[type-arg]
    """A map with its Java type name (``M`` form), e.g. ``java.util.TreeMap``."""

    __slots__ = ("type",)

    def __init__(self, items: Any = (), type: str | None = None) -> None:
        super().__init__(items)
        self.type = type

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TypedMap) and other.type != self.type:
            return False
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"TypedMap({dict.__repr__(self)}, type={self.type!r})"


class ClassDef:
    """A class definition: class name and field names in wire order."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: tuple[str, ...]) -> None:
        self.name = name
        self.fields = fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassDef) and other.name == self.name and other.fields == self.fields

    def __hash__(self) -> int:
        return hash((self.name, self.fields))

    def __repr__(self) -> str:
        return f"ClassDef({self.name!r}, {self.fields!r})"


class JavaObject:
    """An object instance: ``cls`` (class name) and ``fields`` (ordered dict name -> value).

    Equality and hashing are by identity, as ``java.lang.Object``'s (objects may be map
    keys and may contain themselves); compare ``.cls`` and ``.fields`` for value equality.
    """

    __slots__ = ("__weakref__", "cls", "fields")

    def __init__(self, cls: str, fields: dict[str, Any] | None = None) -> None:
        self.cls = cls
        self.fields: dict[str, Any] = {} if fields is None else fields

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        return f"JavaObject({self.cls!r}, {self.fields!r})"


class Date:
    """A ``java.util.Date``: milliseconds since the epoch (UTC).

    ``minutes`` records the wire form: True = the 32-bit minutes form (``K``), False =
    the 64-bit millis form (``J``), None = choose as Caucho does (minutes when exact and
    it fits).
    """

    __slots__ = ("millis", "minutes")

    def __init__(self, millis: int, minutes: bool | None = None) -> None:
        self.millis = int(millis)
        self.minutes = minutes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Date) and other.millis == self.millis

    def __hash__(self) -> int:
        return hash(("Date", self.millis))

    def __repr__(self) -> str:
        return f"Date({self.millis})"

    def to_datetime(self) -> Any:
        import datetime

        return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            milliseconds=self.millis
        )
