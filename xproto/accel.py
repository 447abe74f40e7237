"""The optional C accelerators (built by setup.py when a compiler is there).

Each is a drop-in for a pure-Python loop that stays the reference: the Hessian 2 skip loop
(``xproto.hessian2._speedups``), the proxy's fast-lane loops (``xproto.proxy._lane``) and
the HTTP/1.1 fast head scanner (``xproto.codecs._http_scan``). ``XPROTO_PURE_PYTHON=1``
ignores them all (the test suite runs both ways).
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType


def pure_python() -> bool:
    return os.environ.get("XPROTO_PURE_PYTHON", "") not in ("", "0")


def load(name: str) -> ModuleType | None:
    """The extension module ``name`` (e.g. ``"xproto.proxy._lane"``), or None when it was
    not built or ``XPROTO_PURE_PYTHON=1``."""
    if pure_python():
        return None
    try:
        return importlib.import_module(name)
    except ImportError:   # no compiler at install time: the pure-Python path
        return None
