"""Kafka through the proxy: broker addresses in responses lead back through the proxy.

Metadata, FindCoordinator and DescribeCluster responses name brokers. Each broker address
(host, port) discovered is given a per-broker listener of the proxy (a port from
``broker_ports``, advertised as ``advertise_host``) that forwards everything to that broker;
the response is rewritten to name those listeners. Clients therefore only ever learn the
proxy's addresses. ApiVersions responses are capped so that clients never pick a version
of those APIs newer than the rewriter's schemas (whose addresses would pass unrewritten). Kafka is ordered per connection, and a per-broker listener has a single
endpoint, so requests that must reach a given broker (partition leader, coordinator) do.
"""
from __future__ import annotations

import asyncio
import io
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from xproto.errors import ProtocolError

if TYPE_CHECKING:
    from xproto.frame import Frame

log = logging.getLogger("xproto.proxy.kafka")

ADDRESS_APIS = frozenset((3, 10, 60))
API_VERSIONS = 18
_I32 = struct.Struct(">i")


class BrokerMap:
    """Real broker address -> proxy port, shared by a Kafka listener and its broker listeners.

    ``open_listener(sock, host, port)`` is called with a bound, listening socket for each
    newly discovered broker; it starts serving on it (asynchronously).
    """

    def __init__(self, bind_host: str, advertise_host: str, port_range: tuple[int, int] | None,
                 open_listener: Callable[[socket.socket, str, int], None]) -> None:
        self.bind_host = bind_host
        self.advertise_host = advertise_host
        self.port_range = port_range
        self.next_port = port_range[0] if port_range else 0
        self.open_listener = open_listener
        self.ports: dict[tuple[str, int], int] = {}
        self.nodes: dict[tuple[str, int], int] = {}

    def mapper(self, node_id: int, host: str, port: int) -> tuple[str, int]:
        key = (host, port)
        p = self.ports.get(key)
        if p is None:
            sock = self._bind()
            p = sock.getsockname()[1]
            self.ports[key] = p
            self.nodes[key] = node_id
            log.info("kafka broker %d at %s:%d -> proxy %s:%d", node_id, host, port,
                     self.advertise_host, p)
            self.open_listener(sock, host, port)
        return (self.advertise_host, p)

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        if self.port_range is None:
            candidates: Any = [0]
        else:
            candidates = range(self.next_port, self.port_range[1] + 1)
        last: OSError | None = None
        for port in candidates:
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((self.bind_host, port))
                s.listen(1024)
                s.setblocking(False)
            except OSError as e:
                s.close()
                last = e
                continue
            if self.port_range is not None:
                self.next_port = port + 1
            return s
        raise ProtocolError(f"no free port left in broker_ports {self.port_range} ({last})",
                            protocol="kafka")

    def rewrite(self, frame: Frame) -> bytes | None:
        """The rewritten bytes of a response naming brokers, else None (send as is)."""
        from xproto.codecs.kafka import kafka_info
        key = kafka_info(frame).api_key
        if key == API_VERSIONS:
            return cap_address_api_versions(frame)
        if key not in ADDRESS_APIS:
            return None
        from xproto.codecs.kafka_rewrite import rewrite_response
        try:
            return rewrite_response(frame, self.mapper)
        except ProtocolError as e:
            # never leak the real address: an unrewritable address response is an error
            log.error("cannot rewrite kafka broker addresses: %s", e)
            raise

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"node_id": self.nodes.get(k), "broker": f"{k[0]}:{k[1]}",
                 "proxy": f"{self.advertise_host}:{p}"} for k, p in self.ports.items()]


def cap_address_api_versions(frame: Frame) -> bytes | None:
    """ApiVersions response: cap the versions of the APIs that carry broker addresses at
    the newest the rewriter knows, so a broker newer than xproto's schemas cannot lead a
    client to a response version whose addresses would pass through unrewritten."""
    from kio.serial import entity_reader, entity_writer

    from xproto.codecs.kafka import kafka_info, max_known_version, response_schema
    info = kafka_info(frame)
    if info.api_version is None:
        return None
    schema = response_schema(API_VERSIONS, info.api_version)
    if schema is None:
        return None
    raw = frame.raw
    try:
        body = info.body_offset(raw)
        value, _size = entity_reader(schema)(raw, body)
    except Exception:  # noqa: BLE001 - kio raises several types; an unreadable one passes as is
        return None
    changed = False
    keys = []
    for k in value.api_keys:
        if k.api_key in ADDRESS_APIS:
            cap = max_known_version(k.api_key)
            if k.max_version > cap >= k.min_version:
                k = replace(k, max_version=type(k.max_version)(cap))
                changed = True
        keys.append(k)
    if not changed:
        return None
    out = io.BytesIO()
    entity_writer(schema)(out, replace(value, api_keys=tuple(keys)))
    payload: bytes = _I32.pack(frame.request_id) + raw[8:body] + out.getvalue()
    return _I32.pack(len(payload)) + payload


async def serve_socket(loop: asyncio.AbstractEventLoop, factory: Callable[[], Any],
                       sock: socket.socket) -> asyncio.AbstractServer:
    return await loop.create_server(factory, sock=sock, backlog=1024)
