"""The proxy: listeners, downstream connections, routing, local replies, lifecycle.

``ProxyServer(config)`` (``await start()`` / ``await stop(grace)``) and ``run(path)``, the
blocking entry of ``xproto proxy -c FILE``. Upstream pools live in :mod:`xproto.pool`.
"""
from __future__ import annotations

from xproto.proxy.downstream import DownstreamConnection
from xproto.proxy.exchange import Exchange
from xproto.proxy.listener import ListenerRuntime
from xproto.proxy.run import run, serve
from xproto.proxy.server import ProxyServer

__all__ = ["DownstreamConnection", "Exchange", "ListenerRuntime", "ProxyServer", "run", "serve"]
