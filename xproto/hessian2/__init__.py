"""xproto's own Hessian 2 codec (Caucho Hessian 2.0, plus the SOFA "3.0" draft dialect).

Public API (contract in notes/HESSIAN_API.md): :class:`Reader` (``read``, ``skip``,
``read_string``, ``read_int``), :func:`loads`, :func:`load_all`, :func:`dumps`,
:class:`Writer`, and the Java-typed values of :mod:`.types`.

Beyond the contract: ``Reader(..., end=)`` bounds the stream inside a larger buffer;
``Reader.skip(count)`` steps over several values in one call; ``read_all()``,
``at_end()``, ``remaining``, ``dialect`` (what "auto" settled on) and ``class_defs``;
``Writer.write_int/write_long/write_double/write_string/write_binary/write_date/
write_null/write_bool`` force a Java type and ``reset_references()`` mirrors Caucho's.
The writer reproduces Caucho 4.0.38's bytes exactly, binary chunk boundaries included.
"""
from __future__ import annotations

from . import draft as _draft  # noqa: F401  (installs the SOFA dialect tables)
from .decoder import Reader, load_all, loads
from .encoder import Writer, dumps
from .types import Binary, ClassDef, Date, JavaObject, Long, TypedList, TypedMap

__all__ = [
    "Binary",
    "ClassDef",
    "Date",
    "JavaObject",
    "Long",
    "Reader",
    "TypedList",
    "TypedMap",
    "Writer",
    "dumps",
    "load_all",
    "loads",
]
