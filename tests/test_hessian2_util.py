"""Helpers shared by the Hessian 2 tests (no tests here): vectors and a strict, cycle-safe equality."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

from xproto.hessian2 import Date, JavaObject, Long, TypedList, TypedMap

ROOT = Path(__file__).resolve().parent.parent
VECTORS = (Path(__file__).resolve().parents[1] / "fixtures/shared/vectors/hessian2")
if not VECTORS.exists():  # pragma: no cover - layout of a checkout without /work/shared
    VECTORS = ROOT / "shared" / "vectors" / "hessian2"
FIXTURES = ROOT / "fixtures" / "hessian2"


def load_vectors() -> list[dict[str, Any]]:
    doc = json.loads((VECTORS / "vectors.json").read_text())
    out = []
    for v in doc["vectors"]:
        v = dict(v)
        v["bytes"] = bytes.fromhex((VECTORS / v["hex_file"]).read_text().strip())
        out.append(v)
    return out


def load_caucho_extra() -> list[tuple[str, bytes]]:
    """Extra vectors written by the real Caucho 4.0.38 (fixtures/hessian2/caucho_gen)."""
    with gzip.open(FIXTURES / "caucho_extra.txt.gz", "rt") as f:
        return [(name, bytes.fromhex(hx)) for name, hx in (line.split() for line in f if line.strip())]


def expected(j: dict[str, Any]) -> Any:
    """The Python value the JSON description of a vector stands for."""
    kind = j["java"]
    if kind == "null":
        return None
    if kind in ("boolean", "string"):
        return j["value"]
    if kind == "int":
        return int(j["value"])
    if kind == "long":
        return Long(j["value"])
    if kind == "double":
        return float(j["value"])
    if kind == "binary":
        return bytes.fromhex(j["hex"])
    if kind == "date":
        return Date(j["millis"])
    if kind == "list":
        return [expected(x) for x in j["items"]]
    if kind == "map":
        return {expected(k): expected(v) for k, v in j["entries"]}
    if kind == "object":
        return JavaObject(j["class"], {k: expected(v) for k, v in j["fields"].items()})
    raise AssertionError(f"unknown kind {kind}")


def same(a: Any, b: Any, *, loose_containers: bool = False, _seen: set[tuple[int, int]] | None = None) -> bool:
    """Strict equality that knows Java typing and survives cycles.

    int vs Long vs bool differ; floats compare bitwise-ish (NaN == NaN, 0.0 == -0.0 as Java's
    writer folds them); lists compare in order; TypedList/TypedMap compare type and
    fixedness unless ``loose_containers`` (then a plain list equals any TypedList and a dict
    any TypedMap); maps compare as unordered; objects compare class, field order and values.
    """
    seen = _seen if _seen is not None else set()
    key = (id(a), id(b))
    if key in seen:
        return True
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if not loose_containers:
            if type(a) is not type(b):
                return False
            if isinstance(a, TypedList) and (a.type != b.type or a.fixed != b.fixed):  # type: ignore[union-attr]
                return False
        if len(a) != len(b):
            return False
        seen.add(key)
        return all(same(x, y, loose_containers=loose_containers, _seen=seen) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        if not loose_containers:
            if type(a) is not type(b):
                return False
            if isinstance(a, TypedMap) and a.type != b.type:  # type: ignore[union-attr]
                return False
        if len(a) != len(b):
            return False
        seen.add(key)
        bitems = list(b.items())
        for k, v in a.items():
            for k2, v2 in bitems:
                if same(k, k2, loose_containers=loose_containers, _seen=seen) and same(
                    v, v2, loose_containers=loose_containers, _seen=seen
                ):
                    break
            else:
                return False
        return True
    if isinstance(a, JavaObject) and isinstance(b, JavaObject):
        if a.cls != b.cls or list(a.fields) != list(b.fields):
            return False
        seen.add(key)
        return all(
            same(a.fields[k], b.fields[k], loose_containers=loose_containers, _seen=seen) for k in a.fields
        )
    if type(a) is not type(b):
        return False
    return bool(a == b)
