"""The codec registry: built-ins and third-party codecs load the same way, as entry
points in group ``xproto.codecs`` (name = protocol name, value = codec class or object).

``XPROTO_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the codecs xproto itself ships.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Iterable

from xproto.codec import Codec
from xproto.errors import PluginError

GROUP = "xproto.codecs"
OWN_DIST = "xproto"

# Fallback when xproto runs from a source tree without being installed (no metadata).
_BUILTIN_FALLBACK = {
    "dubbo": "xproto.codecs.dubbo:DubboCodec",
    "bolt": "xproto.codecs.bolt:BoltCodec",
    "thrift": "xproto.codecs.thrift:ThriftCodec",
    "kafka": "xproto.codecs.kafka:KafkaCodec",
    "http": "xproto.codecs.http:HttpCodec",
}
# Detection order of `auto`: specific magics first, weak/loose matchers last.
BUILTIN_ORDER = ["dubbo", "bolt", "thrift", "kafka", "http"]


@dataclass(frozen=True)
class CodecEntry:
    name: str
    origin: str          # "built-in" or "<distribution> <version>"
    codec: Codec


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "?"


def _instantiate(obj: object, name: str) -> Codec:
    codec = obj() if isinstance(obj, type) else obj
    if not hasattr(codec, "match") or not hasattr(codec, "new_decoder"):
        raise PluginError(f"entry point {name!r} is not a codec (needs match/new_decoder): {obj!r}")
    if getattr(codec, "name", None) != name:
        try:
            codec.name = name  # type: ignore[misc]
        except Exception:
            pass
    return codec  # type: ignore[return-value]


class Registry:
    def __init__(self) -> None:
        self._entries: dict[str, CodecEntry] = {}

    def add(self, codec: Codec, origin: str = "built-in") -> None:
        name = codec.name
        if name in self._entries:
            other = self._entries[name].origin
            raise PluginError(
                f"two codecs named {name!r}: one from {other}, one from {origin}")
        self._entries[name] = CodecEntry(name, origin, codec)

    def get(self, name: str) -> Codec:
        try:
            return self._entries[name].codec
        except KeyError:
            raise PluginError(f"no codec named {name!r} (have: {', '.join(self.names())})") from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        builtin = [n for n in BUILTIN_ORDER if n in self._entries]
        return builtin + sorted(n for n in self._entries if n not in BUILTIN_ORDER)

    def entries(self) -> list[CodecEntry]:
        return [self._entries[n] for n in self.names()]

    def resolve(self, names: Iterable[str]) -> list[Codec]:
        """Candidate list of a listener: names in order; ``auto`` = every registered codec."""
        out: list[Codec] = []
        for n in names:
            if n == "auto":
                out.extend(c for c in (self.get(x) for x in self.names()) if c not in out)
            else:
                c = self.get(n)
                if c not in out:
                    out.append(c)
        return out


def load_registry(autoload: bool | None = None) -> Registry:
    if autoload is None:
        autoload = os.environ.get("XPROTO_DISABLE_PLUGIN_AUTOLOAD", "") not in ("1", "true", "yes")
    reg = Registry()
    seen_builtin = set()
    eps = entry_points(group=GROUP)
    # Two distributions providing one name are an error, even if one is us.
    by_name: dict[str, list[EntryPoint]] = {}
    for ep in eps:
        by_name.setdefault(ep.name, []).append(ep)
    for name, lst in by_name.items():
        dists = {_dist_name(ep) for ep in lst}
        if len(dists) > 1 and (autoload or OWN_DIST in dists and len(dists - {OWN_DIST}) == 0):
            raise PluginError(
                f"two codecs named {name!r}: from distributions {' and '.join(sorted(dists))}")
    for name, lst in by_name.items():
        ep = lst[0]
        dist = _dist_name(ep)
        own = dist == OWN_DIST
        if not own and not autoload:
            continue
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin must say which one it is
            raise PluginError(f"cannot load codec {name!r} from {dist}: {e}") from e
        origin = "built-in" if own else f"{dist} {ep.dist.version if ep.dist else ''}".strip()
        reg.add(_instantiate(obj, name), origin)
        if own:
            seen_builtin.add(name)
    # Running from a source tree without installed metadata: load the built-ins directly.
    for name, target in _BUILTIN_FALLBACK.items():
        if name not in seen_builtin and name not in reg:
            mod, _, attr = target.partition(":")
            try:
                m = __import__(mod, fromlist=[attr])
            except ImportError:
                continue
            reg.add(_instantiate(getattr(m, attr), name), "built-in")
    return reg


_default: Registry | None = None


def default_registry() -> Registry:
    global _default
    if _default is None:
        _default = load_registry()
    return _default
