"""The proxy: listeners, downstream connections, routing, local replies, lifecycle.

``ProxyServer(config)`` (``await start()`` / ``await stop(grace)``) and ``run(path)``, the
blocking entry of ``xproto proxy -c FILE`` (uvloop; SIGTERM drains, SIGINT stops at once).
Upstream pools live in :mod:`xproto.pool` (request ids and pool modes, no wire formats).

How a request travels (all on one event loop, asyncio ``Protocol`` callbacks, no task per
request):

* :class:`DownstreamConnection` detects the protocol from the listener's ordered candidates
  (one candidate: no detection), decodes whole frames (frame first, parse second), answers
  heartbeats itself, routes (headers are parsed only if a route looks at them) and hands an
  :class:`Exchange` to the cluster. It only needs a transport-like object and a clock, so
  tests and fuzzers drive it without sockets (``tests/test_proxy_sansio.py``).
* Every request that expects a response gets exactly one answer: the upstream's response
  (forwarded as its original bytes with the downstream id patched back) or a local reply
  built by ``codec.error_reply`` (no route, no healthy upstream, timeout, overflow, upstream
  reset, bad request). ``Exchange.done`` guards the rest; timeouts live in one
  :class:`~xproto.proxy.timeouts.TimeoutWheel` per proxy (5 ms slots, one loop timer), not
  a ``call_later`` per request. One-way requests never create a pending entry.
* Hot path (issue 6): a listener whose first route catches everything never reads a header
  (``ListenerRuntime.fixed_route``); frames leave as their original bytes, and a multiplexed
  upstream connection reuses the downstream request id when it is free there (no id patch
  either way; :class:`xproto.pool.ClusterSettings.id_passthrough`); metrics are plain ints
  read at scrape time (:mod:`xproto.metrics`).
* Fast lanes on such listeners: pipelined RPC (codecs with a ``scanner``: Dubbo, Bolt v1,
  framed binary Thrift) is forwarded per read without a Frame or an Exchange per request
  (:mod:`xproto.proxy.lane`, optional C loops); HTTP/1.1 keep-alive (codecs with a
  ``message_scanner``) one plain message at a time (:mod:`xproto.proxy.lane_pingpong`).
  Anything unusual leaves the lane for the general path with the same answer.
* Ping-pong protocols (HTTP/1.1) and Kafka get their answers in request order (later
  answers wait for earlier ones); multiplexed ones as they come. Kafka downstream
  connections are bound to a dedicated upstream connection (per-connection state such as
  SASL; no long-polling Fetch holding up other clients); broker addresses in Metadata,
  FindCoordinator and DescribeCluster responses are rewritten to per-broker listeners
  opened on discovery (:mod:`xproto.proxy.kafka`).
* Output produced while handling one read is written once per transport
  (:class:`xproto.pool.Batch`); an upstream connection is written once per event-loop
  iteration (the requests of every downstream read of one poll leave in one write);
  reading pauses while a connection's unsent data is above its high-water mark, or while
  the upstream connection it writes to is.
* ``stop(grace)``: stop accepting, wait (bounded) for in-flight requests, answer the rest
  locally, close. ``--workers N``: N forked processes sharing the ports (SO_REUSEPORT),
  one set of pools each (:mod:`xproto.proxy.workers`).
"""
from __future__ import annotations

from xproto.proxy.downstream import DownstreamConnection
from xproto.proxy.exchange import Exchange
from xproto.proxy.listener import ListenerRuntime
from xproto.proxy.run import run, serve
from xproto.proxy.server import ProxyServer

__all__ = ["DownstreamConnection", "Exchange", "ListenerRuntime", "ProxyServer", "run", "serve"]
