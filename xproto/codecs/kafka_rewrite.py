"""Broker-address rewriting for Kafka responses (sans-I/O helpers for the proxy).

Brokers tell clients where the other brokers are in Metadata (3) ``brokers[]``,
FindCoordinator (10) (top-level ``node_id/host/port`` for v0-3, ``coordinators[]`` from v4)
and DescribeCluster (60) ``brokers[]``. A proxy must rewrite every one of them, or clients
connect to the brokers directly.

The body is parsed and re-serialised with kio (every version, flexible or not); the
response header (correlation id, tagged fields) is kept byte for byte and the size fixed.
Address-carrying responses of a version kio does not know raise ProtocolError rather than
leak the broker's address; ``clamp_api_versions`` rewrites ApiVersions responses so clients
never pick such a version in the first place.
Entries with a negative node id (FindCoordinator's "no coordinator" error form, host ``""``,
port -1) are not addresses and are left alone.
"""
from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Callable
from typing import Any

from xproto.codecs.kafka import (
    API_VERSIONS,
    KafkaCodec,
    _kio_parse,
    api_name,
    kafka_info,
    max_known_version,
    response_schema,
)
from xproto.errors import ProtocolError
from xproto.frame import Frame

METADATA = 3
FIND_COORDINATOR = 10
DESCRIBE_CLUSTER = 60
ADDRESS_APIS = frozenset((METADATA, FIND_COORDINATOR, DESCRIBE_CLUSTER))

#: mapper(node_id, host, port) -> (host, port)
Mapper = Callable[[int, str, int], "tuple[str, int]"]

_I32 = struct.Struct(">i")


def _parse(frame: Frame) -> tuple[Any, Any, int] | None:
    if not isinstance(frame.codec, KafkaCodec):
        return None
    meta = kafka_info(frame)
    if meta.is_request or meta.api_key not in ADDRESS_APIS:
        return None
    assert meta.api_key is not None and meta.api_version is not None
    schema = response_schema(meta.api_key, meta.api_version)
    if schema is None:
        # never leak a real broker address: a version we cannot rewrite is an error (the
        # proxy keeps clients below such versions with clamp_api_versions)
        raise ProtocolError(f"cannot rewrite broker addresses of {api_name(meta.api_key)} "
                            f"v{meta.api_version}: version unknown to kio", protocol="kafka")
    body = meta.body_offset(frame.raw)
    return schema, _kio_parse(schema, frame.raw, body), body


def _array(value: Any, field: str) -> tuple[Any, ...]:
    """A broker array of a parsed response; null (length -1) is malformed: these arrays are
    not nullable in Kafka's schemas (found by fuzz_kafka)."""
    arr = getattr(value, field)
    if arr is None:
        raise ProtocolError(f"null {field} array in a response", protocol="kafka")
    return tuple(arr)


def _entries(api_key: int, value: Any) -> list[Any]:
    if api_key == FIND_COORDINATOR:
        if hasattr(value, "coordinators"):
            return list(_array(value, "coordinators"))
        return [value]
    return list(_array(value, "brokers"))


def _node(e: Any) -> int:
    """Broker id of an address entry (DescribeCluster names it ``broker_id``)."""
    return int(e.broker_id if hasattr(e, "broker_id") else e.node_id)


def broker_addresses(frame: Frame) -> list[tuple[int, str, int]]:
    """(node_id, host, port) of every broker address a response carries ([] for other frames)."""
    parsed = _parse(frame)
    if parsed is None:
        return []
    _schema, value, _body = parsed
    return [(_node(e), str(e.host), int(e.port))
            for e in _entries(kafka_info(frame).api_key or 0, value) if _node(e) >= 0]


def rewrite_response(frame: Frame, mapper: Mapper) -> bytes | None:
    """The frame's bytes with every broker address replaced by ``mapper``'s answer.

    None when the frame carries no broker address (other apis, unknown versions, responses
    to unknown requests) or when the mapper changed nothing. The request id is taken from
    ``frame.request_id`` (patched like ``codec.encode`` does).
    """
    parsed = _parse(frame)
    if parsed is None:
        return None
    schema, value, body = parsed
    key = kafka_info(frame).api_key
    changed = False

    def remap(e: Any) -> Any:
        nonlocal changed
        node = _node(e)
        if node < 0:
            return e
        host, port = mapper(node, str(e.host), int(e.port))
        if host == e.host and port == e.port:
            return e
        if not -0x80000000 <= port <= 0x7FFFFFFF:
            raise ProtocolError(f"mapped port {port} out of int32 range", protocol="kafka")
        changed = True
        return dataclasses.replace(e, host=host, port=type(e.port)(port))

    if key == FIND_COORDINATOR and not hasattr(value, "coordinators"):
        new = remap(value)
    elif key == FIND_COORDINATOR:
        new = dataclasses.replace(value, coordinators=tuple(remap(e) for e in _array(value, "coordinators")))
    else:
        new = dataclasses.replace(value, brokers=tuple(remap(e) for e in _array(value, "brokers")))
    if not changed:
        return None
    from kio.serial import entity_writer
    out = io.BytesIO()
    entity_writer(schema)(out, new)
    raw = frame.raw
    payload = bytearray(raw[4:body])
    _I32.pack_into(payload, 0, frame.request_id)
    payload += out.getvalue()
    return _I32.pack(len(payload)) + bytes(payload)


def clamp_api_versions(frame: Frame) -> bytes | None:
    """An ApiVersions response with the max version of every address-carrying api lowered to
    the newest one kio knows (so the proxy can always rewrite what the broker answers).

    None when the frame is not an ApiVersions response or needs no change.
    """
    if not isinstance(frame.codec, KafkaCodec):
        return None
    meta = kafka_info(frame)
    if meta.is_request or meta.api_key != API_VERSIONS or meta.api_version is None:
        return None
    schema = response_schema(API_VERSIONS, meta.api_version)
    if schema is None:
        return None
    body = meta.body_offset(frame.raw)
    value = _kio_parse(schema, frame.raw, body)
    changed = False
    keys = []
    for k in _array(value, "api_keys"):
        if k.api_key in ADDRESS_APIS:
            top = max_known_version(int(k.api_key))
            if k.max_version > top:
                k = dataclasses.replace(k, max_version=type(k.max_version)(max(top, int(k.min_version))))
                changed = True
        keys.append(k)
    if not changed:
        return None
    from kio.serial import entity_writer
    out = io.BytesIO()
    entity_writer(schema)(out, dataclasses.replace(value, api_keys=tuple(keys)))
    payload = bytearray(frame.raw[4:body])
    _I32.pack_into(payload, 0, frame.request_id)
    payload += out.getvalue()
    return _I32.pack(len(payload)) + bytes(payload)
