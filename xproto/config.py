"""The proxy configuration: YAML -> validated, typed :class:`Config`.

The YAML is exactly the one in INTERFACE.md, plus these optional xproto extensions:

* per listener ``limits:`` -- ``max_connections`` (10000), ``max_pending_per_connection``
  (10000), ``frame_timeout`` (30s: bounded wait for the rest of a started frame and for
  protocol detection), ``idle_timeout`` (0 = off), ``high_water`` (1MiB), ``low_water``
  (256KiB), and any field of :class:`xproto.limits.Limits` (e.g. ``dubbo_max_body: 4MiB``);
* per cluster ``max_pending`` (10000 requests waiting for a connection / in flight);
* top level ``drain_timeout`` (10s, graceful-stop grace) and ``workers`` (1).

Value syntax:

* durations: ``"500ms"``, ``"3s"``, ``"1m"``, ``"1m30s"`` (units ``us ms s m h``), or a
  number of seconds -> ``float`` seconds;
* sizes: ``"64KiB"``, ``"16MiB"``, ``"1GiB"``, ``"512B"`` or an integer -> ``int`` bytes;
* addresses: ``"host:port"`` (``"[::1]:9901"`` for IPv6; port 0 = pick a free port) ->
  :class:`Address`, a ``str`` with ``.host`` and ``.port``.

Defaults (where INTERFACE.md is silent, the Envoy generic_proxy / MOSN precedent): route
timeout 15s, cluster ``connect_timeout`` 1s, ``max_connections`` 1 per endpoint,
``lb: round_robin``, no keepalive unless ``keepalive:`` is given (then ``interval`` 15s,
``timeout`` 1s, ``failures`` 3), no admin endpoint unless ``admin:`` is given.

Header matchers: a bare string is an exact match; otherwise exactly one of
``{exact: s}``, ``{prefix: s}``, ``{regex: s}`` (full match, Python ``re`` syntax) or
``{present: true}`` (``present: false`` = the header must be absent).

Errors: :func:`load_config` / :func:`parse_config` raise
:class:`xproto.errors.ConfigError` whose ``problems`` list holds *every* problem found, as
``(key path, message)``, e.g. ``("listeners[0].routes[1].cluster", "unknown cluster 'x'")``.
Problems not tied to a key use the path ``<root>``; YAML syntax errors use ``<yaml>`` and
name the line and column. :func:`check_file` returns the same list (empty = valid).
"""
# Validators raise ValueError even for wrong types: pydantic reports only ValueError/
# AssertionError as validation errors (a TypeError would escape as a crash).
# ruff: noqa: TRY004
from __future__ import annotations

import difflib
import ipaddress
import math
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import fields as dc_fields
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml  # type: ignore[import-untyped,unused-ignore]
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from xproto.errors import ConfigError, PluginError
from xproto.limits import Limits

__all__ = [
    "DEFAULT_ROUTE_TIMEOUT",
    "LB_POLICIES",
    "Address",
    "AdminConfig",
    "Cluster",
    "Config",
    "HeaderMatch",
    "KafkaListener",
    "Keepalive",
    "Listener",
    "ListenerLimits",
    "Route",
    "RouteMatch",
    "WeightedCluster",
    "check_file",
    "format_path",
    "load_config",
    "load_config_text",
    "parse_config",
    "parse_duration",
    "parse_size",
]

Problem = tuple[str, str]

#: Envoy generic_proxy's default route timeout (MOSN uses 60s).
DEFAULT_ROUTE_TIMEOUT = 15.0
LB_POLICIES = ("round_robin", "random", "least_request")
ROOT = "<root>"
YAML_PATH = "<yaml>"


# --- value types -------------------------------------------------------------------------

_DUR_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_SIZE_RE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB)?$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}


def parse_duration(v: Any) -> float:
    """``"500ms"``, ``"3s"``, ``"1m"``, ``"1m30s"`` or a number of seconds -> seconds."""
    if isinstance(v, bool):
        raise ValueError("must be a duration like 500ms, 3s, 1m (or a number of seconds)")
    if isinstance(v, (int, float)):
        secs = float(v)
    elif isinstance(v, str):
        s = v.strip()
        if s.startswith("-"):
            raise ValueError(f"invalid duration {v!r}: must not be negative")
        try:
            secs = float(s)
        except ValueError:
            pos = 0
            secs = 0.0
            for m in _DUR_PART.finditer(s):
                if m.start() != pos:
                    break
                secs += float(m.group(1)) * _DUR_UNITS[m.group(2)]
                pos = m.end()
            if pos != len(s) or not s:
                raise ValueError(
                    f"invalid duration {v!r}: use a number with ms, s or m (e.g. 500ms, 3s, 1m)"
                ) from None
    else:
        raise ValueError("must be a duration like 500ms, 3s, 1m (or a number of seconds)")
    if not math.isfinite(secs) or secs < 0:
        raise ValueError(f"invalid duration {v!r}: must be a finite, non-negative time")
    return secs


def parse_size(v: Any) -> int:
    """``"64KiB"``, ``"16MiB"``, ``"1GiB"``, ``"512B"`` or an integer -> bytes."""
    if isinstance(v, bool):
        raise ValueError("must be a size like 64KiB, 16MiB (or an integer of bytes)")
    if isinstance(v, int):
        n = v
    elif isinstance(v, float) and v.is_integer():
        n = int(v)
    elif isinstance(v, str):
        m = _SIZE_RE.match(v.strip())
        if not m:
            raise ValueError(f"invalid size {v!r}: use an integer with KiB or MiB (e.g. 64KiB, 16MiB)")
        n = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    else:
        raise ValueError("must be a size like 64KiB, 16MiB (or an integer of bytes)")
    if n < 0:
        raise ValueError(f"invalid size {v!r}: must not be negative")
    return n


def _positive(v: float) -> float:
    if v <= 0:
        raise ValueError("must be greater than 0")
    return v


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(lambda v: _positive(parse_duration(v)))]
Size = Annotated[int, BeforeValidator(parse_size)]
PositiveSize = Annotated[int, BeforeValidator(lambda v: int(_positive(parse_size(v))))]

_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")


def _check_host(host: str) -> str | None:
    """None if ``host`` is an IP address or a plausible DNS name, else the complaint."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if _HOSTNAME_RE.match(host) and not host.replace(".", "").isdigit():
        return None
    return f"invalid host {host!r}"


class Address(str):
    """A ``host:port`` string (IPv6 as ``[::1]:port``), with ``.host`` and ``.port``."""

    __slots__ = ()

    @property
    def host(self) -> str:
        h = self.rpartition(":")[0]
        return h[1:-1] if h.startswith("[") else h

    @property
    def port(self) -> int:
        return int(self.rpartition(":")[2])

    @property
    def pair(self) -> tuple[str, int]:
        return (self.host, self.port)

    @classmethod
    def parse(cls, v: Any) -> Address:
        if not isinstance(v, str):
            raise ValueError("must be an address string host:port")
        s = v.strip()
        host, sep, port_s = s.rpartition(":")
        if not sep or not host:
            raise ValueError(f"invalid address {v!r}: expected host:port")
        if not port_s.isdigit() or int(port_s) > 65535:
            raise ValueError(f"invalid address {v!r}: port must be 0-65535")
        if host.startswith("[") and host.endswith("]"):
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise ValueError(f"invalid address {v!r}: bad IPv6 address") from None
        elif ":" in host:
            raise ValueError(f"invalid address {v!r}: write IPv6 addresses as [addr]:port")
        else:
            bad = _check_host(host)
            if bad:
                raise ValueError(f"invalid address {v!r}: {bad}")
        return cls(f"{host}:{int(port_s)}")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.to_string_ser_schema())


def _parse_port_range(v: Any) -> tuple[int, int]:
    if isinstance(v, bool):
        raise ValueError("must be a port range like 19093-19199")
    if isinstance(v, int):
        lo = hi = v
    elif isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", v)
        if not m:
            raise ValueError(f"invalid port range {v!r}: expected LOW-HIGH, e.g. 19093-19199")
        lo = int(m.group(1))
        hi = int(m.group(2) or m.group(1))
    elif isinstance(v, (list, tuple)) and len(v) == 2 and all(type(x) is int for x in v):
        lo, hi = v
    else:
        raise ValueError("must be a port range like 19093-19199")
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise ValueError(f"invalid port range {v!r}: ports must be 1-65535")
    if lo > hi:
        raise ValueError(f"invalid port range {v!r}: low port above high port")
    return (lo, hi)


PortRange = Annotated[
    tuple[int, int],
    BeforeValidator(_parse_port_range),
    PlainSerializer(lambda r: f"{r[0]}-{r[1]}", return_type=str),
]


def _scalar_to_str(v: Any) -> Any:
    # YAML turns `version: 1` into an int; header values are strings on the wire.
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return v


HeaderValue = Annotated[str, BeforeValidator(_scalar_to_str)]


# --- models ----------------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=False)
    #: used in "unknown <what> key" messages
    _what: ClassVar[str] = ""


class AdminConfig(_Model):
    """``admin:`` -- where /metrics, /ready, /config and /clusters are served."""
    _what: ClassVar[str] = "admin"
    address: Address


class HeaderMatch(_Model):
    """One header matcher; a bare string in YAML is ``{exact: string}``."""
    _what: ClassVar[str] = "matcher"
    exact: HeaderValue | None = None
    prefix: HeaderValue | None = None
    regex: str | None = None
    present: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, v: Any) -> Any:
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            return {"exact": _scalar_to_str(v)}
        return v

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"invalid regex {v!r}: {e}") from None
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> HeaderMatch:
        n = sum(x is not None for x in (self.exact, self.prefix, self.regex, self.present))
        if n != 1:
            raise ValueError("a header matcher needs exactly one of exact, prefix, regex, present")
        return self

    @property
    def kind(self) -> str:
        for k in ("exact", "prefix", "regex", "present"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated matcher without a kind")


class RouteMatch(_Model):
    """``match:`` of a route; every given condition must hold."""
    _what: ClassVar[str] = "match"
    protocol: str | None = None
    headers: dict[str, HeaderMatch] = Field(default_factory=dict)

    @field_validator("headers", mode="before")
    @classmethod
    def _keys_to_str(cls, v: Any) -> Any:
        # `404: ...` or `1: ...` in YAML are ints; header names are strings
        if isinstance(v, dict):
            return {_scalar_to_str(k): x for k, x in v.items()}
        return v


class WeightedCluster(_Model):
    _what: ClassVar[str] = "weighted cluster"
    name: str
    weight: int = Field(gt=0)


class Route(_Model):
    """One route: optional ``match``, then ``cluster`` or weighted ``clusters``."""
    _what: ClassVar[str] = "route"
    match: RouteMatch | None = None
    cluster: str | None = None
    clusters: list[WeightedCluster] | None = None
    timeout: PositiveDuration = DEFAULT_ROUTE_TIMEOUT

    @model_validator(mode="after")
    def _one_target(self) -> Route:
        if (self.cluster is None) == (self.clusters is None):
            raise ValueError("a route needs exactly one of 'cluster' or 'clusters'")
        if self.clusters is not None and not self.clusters:
            raise ValueError("'clusters' must list at least one cluster")
        return self


class KafkaListener(_Model):
    """``kafka:`` of a listener that carries Kafka: how broker addresses are rewritten."""
    _what: ClassVar[str] = "kafka"
    advertise_host: str | None = None
    broker_ports: PortRange | None = None

    @field_validator("advertise_host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if v is not None:
            bad = _check_host(v[1:-1] if v.startswith("[") and v.endswith("]") else v)
            if bad:
                raise ValueError(bad)
        return v


_LIMIT_FIELD_NAMES = tuple(f.name for f in dc_fields(Limits))


class _ListenerLimitsBase(_Model):
    _what: ClassVar[str] = "limits"
    max_connections: int = Field(default=10000, gt=0)
    max_pending_per_connection: int = Field(default=10000, gt=0)
    frame_timeout: PositiveDuration = 30.0
    idle_timeout: Duration = 0.0
    high_water: PositiveSize = 1024 * 1024
    low_water: Size = 256 * 1024

    @model_validator(mode="after")
    def _water(self) -> _ListenerLimitsBase:
        if self.low_water >= self.high_water:
            raise ValueError(
                f"low_water ({self.low_water}) must be below high_water ({self.high_water})")
        return self

    def codec_limits(self) -> Limits:
        """The :class:`xproto.limits.Limits` with this listener's overrides applied."""
        over = {n: getattr(self, n) for n in _LIMIT_FIELD_NAMES if getattr(self, n) is not None}
        return Limits().with_overrides(**over)


# Every codec limit may be overridden per listener; unset (None) = the Limits default.
if TYPE_CHECKING:
    ListenerLimits = _ListenerLimitsBase
else:
    ListenerLimits = create_model(
        "ListenerLimits",
        __base__=_ListenerLimitsBase,
        __doc__="``limits:`` of a listener: proxy limits plus any xproto.limits.Limits field.",
        **{n: (Annotated[int | None, BeforeValidator(
            lambda v: None if v is None else int(_positive(parse_size(v))))], None)
           for n in _LIMIT_FIELD_NAMES},
    )


class Listener(_Model):
    """A downstream listener: address, detection candidates, routes."""
    _what: ClassVar[str] = "listener"
    name: str = Field(min_length=1)
    address: Address
    protocols: list[str] = Field(min_length=1)
    routes: list[Route] = Field(default_factory=list)
    kafka: KafkaListener | None = None
    limits: ListenerLimits = Field(default_factory=ListenerLimits)

    def codec_limits(self) -> Limits:
        """The codec limits of this listener (defaults with its ``limits:`` overrides)."""
        return self.limits.codec_limits()


class Keepalive(_Model):
    """Protocol heartbeats on idle upstream connections (where the protocol has them)."""
    _what: ClassVar[str] = "keepalive"
    interval: PositiveDuration = 15.0
    timeout: PositiveDuration = 1.0
    failures: int = Field(default=3, gt=0)


class Cluster(_Model):
    """An upstream cluster."""
    _what: ClassVar[str] = "cluster"
    name: str = Field(min_length=1)
    endpoints: list[Address] = Field(min_length=1)
    protocol: str | None = None
    lb: Literal["round_robin", "random", "least_request"] = "round_robin"
    connect_timeout: PositiveDuration = 1.0
    max_connections: int = Field(default=1, gt=0)
    keepalive: Keepalive | None = None
    max_pending: int = Field(default=10000, gt=0)


class Config(_Model):
    """The whole proxy configuration."""
    _what: ClassVar[str] = "top-level"
    admin: AdminConfig | None = None
    listeners: list[Listener] = Field(min_length=1)
    clusters: list[Cluster] = Field(default_factory=list)
    drain_timeout: Duration = 10.0
    workers: int = Field(default=1, gt=0)

    def listener(self, name: str) -> Listener:
        for li in self.listeners:
            if li.name == name:
                return li
        raise KeyError(name)

    def cluster(self, name: str) -> Cluster:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def effective_dict(self) -> dict[str, Any]:
        """The effective configuration, defaults filled in, as plain JSON-able data.

        Durations are seconds (numbers), sizes bytes; every listener's ``limits`` lists the
        codec limits in force too. It parses back to an equivalent Config.
        """
        d = self.model_dump(mode="json", exclude_none=True)
        for li, ld in zip(self.listeners, d["listeners"]):
            lim = li.codec_limits()
            ld["limits"].update({n: getattr(lim, n) for n in _LIMIT_FIELD_NAMES})
        return d


# --- error reporting -----------------------------------------------------------------------

def format_path(loc: Sequence[Any]) -> str:
    """``('listeners', 0, 'routes', 1, 'cluster')`` -> ``listeners[0].routes[1].cluster``."""
    out = ""
    for el in loc:
        if isinstance(el, int):
            out += f"[{el}]"
        else:
            s = str(el)
            if not s or any(c in s for c in ".[] \"'"):
                out += f"[{s!r}]"
            else:
                out += f".{s}" if out else s
    return out or ROOT


def _unwrap(tp: Any) -> Any:
    while True:
        o = get_origin(tp)
        if o is Annotated:
            tp = get_args(tp)[0]
        elif o is Union or o is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(loc: Sequence[Any]) -> type[_Model] | None:
    """The model class validating the value at ``loc`` (None if not a model)."""
    cur: Any = Config
    for el in loc:
        cur = _unwrap(cur)
        origin = get_origin(cur)
        if isinstance(cur, type) and issubclass(cur, BaseModel) and isinstance(el, str):
            f = cur.model_fields.get(el)
            if f is None:
                return None
            cur = f.annotation
        elif origin is list and isinstance(el, int):
            cur = get_args(cur)[0]
        elif origin is dict:
            cur = get_args(cur)[1]
        else:
            return None
    cur = _unwrap(cur)
    return cur if isinstance(cur, type) and issubclass(cur, _Model) else None


_TYPE_MESSAGES = {
    "missing": "required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
}


def _convert_error(err: Any) -> tuple[str, str, str]:
    """A pydantic error -> (key path, message, key path whose line to cite)."""
    path, msg = _convert_error2(err)
    return path, msg, format_path(tuple(err["loc"]))


def _convert_error2(err: Any) -> Problem:
    loc = tuple(err["loc"])
    typ = err["type"]
    ctx = err.get("ctx") or {}
    if typ == "extra_forbidden":
        key = loc[-1]
        model = _model_at(loc[:-1])
        what = f"{model._what} key" if model is not None and model._what else "key"
        msg = f"unknown {what} {key!r}"
        if model is not None:
            allowed = list(model.model_fields)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            else:
                msg += f" (allowed: {', '.join(allowed)})"
        return format_path(loc[:-1]), msg
    if typ == "literal_error":
        expected = str(ctx.get("expected", ""))
        opts = [o.strip().strip("'\"") for o in re.split(r",| or ", expected) if o.strip()]
        return format_path(loc), f"must be one of {', '.join(opts)} (got {err.get('input')!r})"
    if typ in ("value_error", "assertion_error"):
        e = ctx.get("error")
        return format_path(loc), str(e) if e is not None else err["msg"]
    if typ in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[typ]
        bound = next(iter(ctx.values()), "")
        return format_path(loc), f"must be {op} {bound} (got {err.get('input')!r})"
    if typ in ("too_short", "string_too_short"):
        if typ == "string_too_short":
            return format_path(loc), "must not be empty"
        return format_path(loc), "must not be empty" if ctx.get("min_length") == 1 else err["msg"]
    if typ in _TYPE_MESSAGES:
        msg = _TYPE_MESSAGES[typ]
        if typ != "missing":
            msg += f" (got {type(err.get('input')).__name__})"
        return format_path(loc), msg
    return format_path(loc), err["msg"]


# --- cross-checks (on the raw data, so they run even when fields are invalid) ----------------

def _known_protocols() -> tuple[list[str], str | None]:
    from xproto.registry import BUILTIN_ORDER, default_registry
    try:
        return default_registry().names(), None
    except PluginError as e:  # a broken plugin must not hide every other problem
        return list(BUILTIN_ORDER), str(e)


def _cross_checks(data: dict[str, Any], protocols: list[str], plugin_err: str | None) -> list[Problem]:
    probs: list[Problem] = []
    known = set(protocols)
    suffix = f" (plugin loading failed: {plugin_err})" if plugin_err else ""

    def proto_ok(path: str, name: Any, allow_auto: bool) -> bool:
        if not isinstance(name, str):
            return False
        if name in known or (allow_auto and name == "auto"):
            return True
        choices = protocols + (["auto"] if allow_auto else [])
        probs.append((path, f"unknown protocol {name!r}; registered: {', '.join(choices)}{suffix}"))
        return False

    def listof(v: Any) -> list[Any]:
        return v if isinstance(v, list) else []

    # clusters: unique names, registered protocols, unique endpoints
    cluster_names: dict[str, str] = {}
    for i, c in enumerate(listof(data.get("clusters"))):
        if not isinstance(c, dict):
            continue
        n = c.get("name")
        if isinstance(n, str) and n:
            if n in cluster_names:
                probs.append((f"clusters[{i}].name", f"duplicate cluster name {n!r} (also {cluster_names[n]})"))
            else:
                cluster_names[n] = f"clusters[{i}]"
        if "protocol" in c and c["protocol"] is not None:
            proto_ok(f"clusters[{i}].protocol", c["protocol"], allow_auto=False)
        seen_ep: set[str] = set()
        for j, ep in enumerate(listof(c.get("endpoints"))):
            if isinstance(ep, str):
                if ep.strip() in seen_ep:
                    probs.append((f"clusters[{i}].endpoints[{j}]", f"duplicate endpoint {ep!r}"))
                seen_ep.add(ep.strip())

    # addresses in use (port 0 = "pick one" never clashes)
    bound: dict[str, str] = {}

    def claim(path: str, addr: Any) -> None:
        if not isinstance(addr, str):
            return
        try:
            a = Address.parse(addr)
        except ValueError:
            return
        if a.port == 0:
            return
        if a in bound:
            probs.append((path, f"address {a} already used by {bound[a]}"))
        else:
            bound[a] = path.rsplit(".", 1)[0]

    admin = data.get("admin")
    if isinstance(admin, dict):
        claim("admin.address", admin.get("address"))

    listener_names: dict[str, str] = {}
    for i, li in enumerate(listof(data.get("listeners"))):
        if not isinstance(li, dict):
            continue
        base = f"listeners[{i}]"
        n = li.get("name")
        if isinstance(n, str) and n:
            if n in listener_names:
                probs.append((f"{base}.name", f"duplicate listener name {n!r} (also {listener_names[n]})"))
            else:
                listener_names[n] = base
        claim(f"{base}.address", li.get("address"))
        cands: list[str] = []
        seen_p: set[str] = set()
        for j, p in enumerate(listof(li.get("protocols"))):
            if isinstance(p, str) and p in seen_p:
                probs.append((f"{base}.protocols[{j}]", f"duplicate protocol {p!r}"))
            if proto_ok(f"{base}.protocols[{j}]", p, allow_auto=True):
                seen_p.add(p)
                cands.extend(protocols if p == "auto" else [p])
        for j, r in enumerate(listof(li.get("routes"))):
            if not isinstance(r, dict):
                continue
            rb = f"{base}.routes[{j}]"
            m = r.get("match")
            if isinstance(m, dict) and m.get("protocol") is not None:
                mp = m["protocol"]
                if proto_ok(f"{rb}.match.protocol", mp, allow_auto=False) and cands and mp not in cands:
                    msg = (f"protocol {mp!r} is not among this listener's protocols "
                           f"({', '.join(dict.fromkeys(cands))}): the route can never match")
                    probs.append((f"{rb}.match.protocol", msg))
            cl = r.get("cluster")
            if isinstance(cl, str) and cl not in cluster_names:
                probs.append((f"{rb}.cluster", _unknown_cluster(cl, cluster_names)))
            seen_w: set[str] = set()
            for k, w in enumerate(listof(r.get("clusters"))):
                if not isinstance(w, dict) or not isinstance(w.get("name"), str):
                    continue
                wn = w["name"]
                if wn not in cluster_names:
                    probs.append((f"{rb}.clusters[{k}].name", _unknown_cluster(wn, cluster_names)))
                if wn in seen_w:
                    probs.append((f"{rb}.clusters[{k}].name", f"cluster {wn!r} listed twice"))
                seen_w.add(wn)
        if li.get("kafka") is not None and cands and "kafka" not in cands:
            msg = ("a kafka section needs kafka among the listener's protocols "
                   f"(has: {', '.join(dict.fromkeys(cands))})")
            probs.append((f"{base}.kafka", msg))
    return probs


def _unknown_cluster(name: str, names: dict[str, str]) -> str:
    msg = f"unknown cluster {name!r}"
    close = difflib.get_close_matches(name, list(names), n=1)
    if close:
        msg += f" (did you mean {close[0]!r}?)"
    elif not names:
        msg += " (no clusters are defined)"
    return msg


# --- entry points -------------------------------------------------------------------------------

def _validate(data: Any, protocols: Iterable[str] | None) -> tuple[Config | None, list[tuple[str, str, str]]]:
    """Validate; problems as (key path, message, key path whose line to cite)."""
    if not isinstance(data, dict):
        got = "an empty document" if data is None else type(data).__name__
        return None, [(ROOT, f"the config must be a mapping (got {got})", ROOT)]
    problems: list[tuple[str, str, str]] = []
    cfg: Config | None = None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        problems.extend(_convert_error(err) for err in e.errors(include_url=False))
    if protocols is None:
        names, plugin_err = _known_protocols()
    else:
        names, plugin_err = list(protocols), None
    problems.extend((p, m, p) for p, m in _cross_checks(data, names, plugin_err))
    return (cfg if not problems else None), list(dict.fromkeys(problems))


def parse_config(data: Any, *, protocols: Iterable[str] | None = None) -> Config:
    """Validate a config mapping (e.g. from ``yaml.safe_load``).

    ``protocols``: the registered codec names to check against (default: the names of
    :func:`xproto.registry.default_registry`). Raises :class:`ConfigError` with every problem.
    """
    cfg, problems = _validate(data, protocols)
    if problems:
        raise ConfigError([(p, m) for p, m, _ in problems])
    assert cfg is not None
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` -- merged keys may be overridden, by design
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first at line {seen[key].line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
            except TypeError:
                pass  # unhashable keys: let the normal constructor complain
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _line_map(text: str) -> dict[str, int]:
    """Key path -> 1-based line, for attaching line numbers to problems."""
    out: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out

    def walk(node: Any, loc: tuple[Any, ...]) -> None:
        out[format_path(loc)] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    kloc = loc + (k.value,)
                    walk(v, kloc)
                    # a key's own line beats where its value starts (flow/multi-line values)
                    out[format_path(kloc)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, loc + (i,))

    if root is not None:
        walk(root, ())
    return out


def _load_text(text: str, protocols: Iterable[str] | None) -> tuple[Config | None, list[Problem]]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return None, [(YAML_PATH, f"{where}{problem}")]
    cfg, found = _validate(data, protocols)
    if not found:
        return cfg, []
    # report in document order, each with its line
    lines = _line_map(text)
    found.sort(key=lambda pmw: lines.get(pmw[2], lines.get(pmw[0], 0)))
    out: list[Problem] = []
    for p, m, w in found:
        line = lines.get(w, lines.get(p))
        out.append((p, f"{m} (line {line})" if line is not None else m))
    return None, out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ConfigError([(ROOT, f"cannot read {path}: {e.strerror or e}")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([(ROOT, f"{path} is not UTF-8 text: {e}")]) from None


def load_config(path: str, *, protocols: Iterable[str] | None = None) -> Config:
    """Read and validate a YAML config file; raises :class:`ConfigError` with every problem."""
    cfg, problems = _load_text(_read(path), protocols)
    if problems:
        raise ConfigError(problems)
    assert cfg is not None
    return cfg


def load_config_text(text: str, *, protocols: Iterable[str] | None = None) -> Config:
    """Like :func:`load_config`, from YAML text."""
    cfg, problems = _load_text(text, protocols)
    if problems:
        raise ConfigError(problems)
    assert cfg is not None
    return cfg


def check_file(path: str, *, protocols: Iterable[str] | None = None) -> list[Problem]:
    """Every problem of a config file as ``(key path, message)``; empty when it is valid."""
    try:
        text = _read(path)
    except ConfigError as e:
        return list(e.problems)
    return _load_text(text, protocols)[1]
