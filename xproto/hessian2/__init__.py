"""xproto's own Hessian 2 codec (Caucho Hessian 2.0, plus the SOFA "3.0" draft dialect).

Public API (contract in notes/HESSIAN_API.md): :class:`Reader` (``read``, ``skip``,
``read_string``, ``read_int``), :func:`loads`, :func:`load_all`, :func:`dumps`,
:class:`Writer`, and the Java-typed values of :mod:`.types`.
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
