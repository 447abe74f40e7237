"""Request routing: a listener's routes compiled once into a :class:`RouteTable`.

``RouteTable(listener_cfg).route(frame)`` returns the first matching :class:`Route` (first
match wins) or ``None`` (no route: the proxy answers with the protocol's own error reply).

Matching looks at ``frame.protocol`` and ``frame.headers`` only -- never at wire bytes. A
route's conditions must all hold: ``match.protocol`` (equality) and every header matcher:

* ``exact``: the header is present and equal;
* ``prefix``: the header is present and starts with the prefix;
* ``regex``: the header is present and the *whole* value matches (``re.fullmatch``, as
  Envoy's ``safe_regex``); compiled once here;
* ``present: true``: the header exists (any value); ``present: false``: it does not.

Headers are parsed lazily by the codec; the table touches ``frame.headers`` only when a
route that is still a candidate (its protocol condition held) has header matchers.

Weighted ``clusters`` are picked per request without bias: integer weights (> 0, enforced
by the config), ``rng.randrange(total)`` and a bisect over the cumulative weights.

:class:`Route` objects are shared and immutable: ``.cluster`` (name), ``.timeout`` (float
seconds; the config default is 15s, Envoy generic_proxy's -- never None), ``.index`` (the
route's position in the listener's list) and ``.weighted`` (whether it was a weighted pick).
"""
from __future__ import annotations

import random
import re
from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from xproto.config import DEFAULT_ROUTE_TIMEOUT, HeaderMatch, Listener
from xproto.config import Route as RouteConfig

if TYPE_CHECKING:
    from xproto.frame import Frame

__all__ = ["Route", "RouteTable", "compile_header_matcher"]

HeaderTest = Callable[[dict[str, str]], bool]


class Route:
    """The routing decision: where a request goes and how long it may take."""

    __slots__ = ("cluster", "index", "timeout", "weighted")

    def __init__(self, cluster: str, timeout: float, index: int, weighted: bool = False) -> None:
        self.cluster = cluster
        self.timeout = timeout
        self.index = index
        self.weighted = weighted

    def __repr__(self) -> str:
        return f"<Route #{self.index} -> {self.cluster} timeout={self.timeout}s>"


def compile_header_matcher(name: str, m: HeaderMatch) -> HeaderTest:
    """One header condition as a predicate over a header map."""
    kind = m.kind
    if kind == "exact":
        want = m.exact

        def exact(h: dict[str, str]) -> bool:
            return h.get(name) == want
        return exact
    if kind == "prefix":
        prefix = m.prefix
        assert prefix is not None

        def prefixed(h: dict[str, str]) -> bool:
            v = h.get(name)
            return v is not None and v.startswith(prefix)
        return prefixed
    if kind == "regex":
        assert m.regex is not None
        rx = re.compile(m.regex)

        def regex(h: dict[str, str]) -> bool:
            v = h.get(name)
            return v is not None and rx.fullmatch(v) is not None
        return regex
    if m.present:
        return lambda h: name in h
    return lambda h: name not in h


class _CompiledRoute:
    __slots__ = ("choices", "cum", "fixed", "protocol", "tests", "total")

    def __init__(self, index: int, rc: RouteConfig) -> None:
        match = rc.match
        self.protocol: str | None = match.protocol if match is not None else None
        self.tests: tuple[HeaderTest, ...] = tuple(
            compile_header_matcher(k, v) for k, v in match.headers.items()) if match is not None else ()
        timeout = rc.timeout if rc.timeout is not None else DEFAULT_ROUTE_TIMEOUT
        self.fixed: Route | None = None
        self.choices: tuple[Route, ...] = ()
        self.cum: list[int] = []
        self.total = 0
        if rc.clusters is not None:
            if any(w.weight <= 0 for w in rc.clusters):  # the config forbids it; never trust
                raise ValueError(f"route {index}: cluster weights must be > 0")
            if len(rc.clusters) == 1:
                self.fixed = Route(rc.clusters[0].name, timeout, index)
            else:
                self.choices = tuple(Route(w.name, timeout, index, True) for w in rc.clusters)
                self.cum = list(accumulate(w.weight for w in rc.clusters))
                self.total = self.cum[-1]
        else:
            assert rc.cluster is not None
            self.fixed = Route(rc.cluster, timeout, index)


class RouteTable:
    """A listener's routes, compiled once; :meth:`route` is the per-request hot path."""

    __slots__ = ("_keys", "_rng", "_routes", "listener")

    def __init__(self, listener_cfg: Listener, rng: random.Random | None = None) -> None:
        self.listener = listener_cfg.name
        self._routes = tuple(_CompiledRoute(i, r) for i, r in enumerate(listener_cfg.routes))
        self._rng = rng if rng is not None else random.Random()
        #: every header name a route tests (the codec may read only these)
        self._keys = frozenset(k for r in listener_cfg.routes if r.match is not None
                               for k in r.match.headers)

    def __len__(self) -> int:
        return len(self._routes)

    @property
    def catch_all(self) -> Route | None:
        """The route of every request when the first route has no conditions and one
        cluster (the common single-route listener): the proxy then skips ``route()`` and
        never reads a header. None otherwise."""
        if not self._routes:
            return None
        r = self._routes[0]
        if r.protocol is None and not r.tests and r.fixed is not None:
            return r.fixed
        return None

    def route(self, frame: Frame | Any) -> Route | None:
        """The first route whose conditions hold for ``frame``; None when none does."""
        proto = frame.protocol
        headers: dict[str, str] | None = None
        for r in self._routes:
            if r.protocol is not None and r.protocol != proto:
                continue
            if r.tests:
                if headers is None:
                    # parsed lazily, once, and only as far as the routes need
                    codec = getattr(frame, "codec", None)
                    headers = (frame.headers if codec is None
                               else codec.route_headers(frame, self._keys))
                ok = True
                for t in r.tests:
                    if not t(headers):
                        ok = False
                        break
                if not ok:
                    continue
            fixed = r.fixed
            if fixed is not None:
                return fixed
            return r.choices[bisect_right(r.cum, self._rng.randrange(r.total))]
        return None
