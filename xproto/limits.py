"""Named, configurable limits with their precedents.

Every length read from the wire is checked against one of these *before* anything is
allocated, and from the fixed header alone, so the verdict does not depend on how TCP
chunked the bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    # Dubbo body: 16 MiB (Envoy dubbo_proxy, Aeraki).
    dubbo_max_body: int = 16 * MiB
    # Bolt: class + header + content; same order as Dubbo (MOSN only logs > 1 GiB: don't).
    bolt_max_frame: int = 16 * MiB
    bolt_max_header_block: int = 1 * MiB
    # Thrift frame: 16,384,000 and recursion depth 64 (Apache Thrift TConfiguration).
    thrift_max_frame: int = 16_384_000
    thrift_max_depth: int = 64
    thrift_max_name: int = 64 * KiB
    # Kafka request: broker socket.request.max.bytes default 100 MiB.
    kafka_max_frame: int = 100 * MiB
    # HTTP headers: 60 KiB / 100 headers (Envoy); body bounded too.
    http_max_header_bytes: int = 60 * KiB
    http_max_headers: int = 100
    http_max_body: int = 64 * MiB
    # h2 header list 64 KiB (only reported, never parsed here).
    h2_max_header_list: int = 64 * KiB
    # Hessian 2: nesting depth, container lengths, refs, class definitions, objects.
    hessian_max_depth: int = 64
    hessian_max_objects: int = 1_000_000
    hessian_max_classdefs: int = 4096

    def with_overrides(self, **kw: Any) -> "Limits":
        known = {f.name for f in fields(self)}
        unknown = set(kw) - known
        if unknown:
            raise KeyError(", ".join(sorted(unknown)))
        return replace(self, **kw)


DEFAULT_LIMITS = Limits()
