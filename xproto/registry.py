"""The codec registry: built-ins and third-party codecs load the same way, as entry
points in group ``xproto.codecs`` (name = protocol name, value = codec class or object).

* Loaded lazily: names, origins and duplicates come from package metadata alone; a
  codec's module is imported the first time the codec is asked for.
* Two distributions offering one name is an error naming both (checked before loading).
* ``XPROTO_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the codecs xproto itself ships.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from xproto.codec import Codec
from xproto.errors import PluginError

GROUP = "xproto.codecs"
OWN_DIST = "xproto"
DISABLE_ENV = "XPROTO_DISABLE_PLUGIN_AUTOLOAD"

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


class _Slot:
    __slots__ = ("codec", "loader", "name", "origin")

    def __init__(self, name: str, origin: str, loader: Callable[[], Any] | None,
                 codec: Codec | None = None) -> None:
        self.name = name
        self.origin = origin
        self.loader = loader
        self.codec = codec


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.metadata["Name"]) if dist is not None else "?"


def _dist_label(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "?"


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _instantiate(obj: object, name: str) -> Codec:
    try:
        codec = obj() if isinstance(obj, type) else obj
    except Exception as e:  # plugin code may raise anything: name the plugin
        raise PluginError(f"codec {name!r}: cannot instantiate {obj!r}: {e}") from e
    for attr in ("match", "new_decoder", "encode"):
        if not callable(getattr(codec, attr, None)):
            raise PluginError(f"entry point {name!r} is not a codec (no {attr}()): {obj!r}")
    if getattr(codec, "name", None) != name:
        try:
            codec.name = name  # type: ignore[union-attr]
        except (AttributeError, TypeError):
            raise PluginError(f"codec {name!r} calls itself {getattr(codec, 'name', None)!r}") from None
    return codec  # type: ignore[return-value]


class Registry:
    """Name -> codec, in detection order (built-ins first, then plugins by name)."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    def add(self, codec: Codec, origin: str = "built-in") -> None:
        self._put(_Slot(codec.name, origin, None, codec))

    def add_lazy(self, name: str, origin: str, loader: Callable[[], Any]) -> None:
        """Register ``name``; ``loader()`` returns the codec class/object on first use."""
        self._put(_Slot(name, origin, loader))

    def _put(self, slot: _Slot) -> None:
        if slot.name in self._slots:
            other = self._slots[slot.name].origin
            raise PluginError(
                f"two codecs named {slot.name!r}: one from {other}, one from {slot.origin}")
        self._slots[slot.name] = slot

    def get(self, name: str) -> Codec:
        slot = self._slots.get(name)
        if slot is None:
            raise PluginError(f"no codec named {name!r} (have: {', '.join(self.names())})")
        if slot.codec is None:
            assert slot.loader is not None
            try:
                obj = slot.loader()
            except Exception as e:  # a broken plugin must say which one it is
                raise PluginError(f"cannot load codec {name!r} from {slot.origin}: "
                                  f"{type(e).__name__}: {e}") from e
            slot.codec = _instantiate(obj, name)
        return slot.codec

    def origin(self, name: str) -> str:
        return self._slots[name].origin

    def __contains__(self, name: object) -> bool:
        return name in self._slots

    def names(self) -> list[str]:
        builtin = [n for n in BUILTIN_ORDER if n in self._slots]
        return builtin + sorted(n for n in self._slots if n not in BUILTIN_ORDER)

    def entries(self) -> list[CodecEntry]:
        """Every codec, loaded (raises PluginError for a broken one)."""
        return [CodecEntry(n, self._slots[n].origin, self.get(n)) for n in self.names()]

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


def _import_target(target: str) -> Any:
    mod, _, attr = target.partition(":")
    obj: Any = import_module(mod)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def autoload_enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def load_registry(autoload: bool | None = None) -> Registry:
    """Build a registry from the ``xproto.codecs`` entry points.

    ``autoload`` False (or ``XPROTO_DISABLE_PLUGIN_AUTOLOAD=1``): xproto's own codecs only.
    """
    if autoload is None:
        autoload = autoload_enabled()
    reg = Registry()
    by_name: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        own = _normalise(_dist_name(ep)) == OWN_DIST
        if not own and not autoload:
            continue
        by_name.setdefault(ep.name, []).append(ep)
    for name, eps in by_name.items():
        # the same distribution seen twice (e.g. two metadata dirs of one install) is one
        dists = sorted({_dist_label(ep) for ep in eps})
        if len({_normalise(_dist_name(ep)) for ep in eps}) > 1:
            raise PluginError(f"two codecs named {name!r}: from distributions {' and '.join(dists)}")
        ep = eps[0]
        own = _normalise(_dist_name(ep)) == OWN_DIST
        reg.add_lazy(name, "built-in" if own else _dist_label(ep), ep.load)
    # Running from a source tree without installed metadata: the built-ins directly.
    for name, target in _BUILTIN_FALLBACK.items():
        if name not in reg:
            reg.add_lazy(name, "built-in", lambda t=target: _import_target(t))  # type: ignore[misc]
    return reg


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry (built on first use)."""
    global _default
    if _default is None:
        _default = load_registry()
    return _default


def reset_default_registry() -> None:
    """Forget the process-wide registry (tests; after installing a plugin at run time)."""
    global _default
    _default = None
