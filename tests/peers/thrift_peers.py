"""Thrift peers: thriftpy2 0.7.1 and Apache thrift 0.25.0 (PyPI ``thrift``).

Modes (transport/protocol):
- ``framed``   framed transport, strict binary protocol
- ``unframed`` buffered (unframed) transport, strict binary protocol
- ``compact``  framed transport, compact protocol
- ``header``   THeader transport (Apache thrift), binary payload, with info headers

thriftpy2 serves/calls framed, unframed and compact (one server process per mode, since a
thriftpy2 server has fixed factories). Apache thrift has no code generator here, so its
client and processor for ``Greeter`` are written the way the generator writes them, over the
library's own transports and protocols; its THeader server also accepts every headerless
mode (it detects the client's type per connection).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ._proc import PeerProcess, announce, run_python, start_python, wait_for_sigterm

IDL = Path(__file__).with_name("greeter.thrift")
THRIFTPY2_MODES = ("framed", "unframed", "compact")
APACHE_MODES = ("header", "framed", "unframed", "compact")


def missing(lib: str = "both") -> str | None:
    for mod, dist in (("thriftpy2", "thriftpy2"), ("thrift.protocol.THeaderProtocol", "thrift")):
        if lib not in ("both", dist):
            continue
        try:
            if importlib.util.find_spec(mod) is None:
                return f"{dist} is not installed"
        except ModuleNotFoundError:
            return f"{dist} is not installed"
    return None


def _greeter_module() -> Any:
    import thriftpy2

    return thriftpy2.load(str(IDL), module_name="greeter_thrift")


class GreeterHandler:
    def __init__(self) -> None:
        self.pings: list[str] = []

    def sayHello(self, name: str) -> str:
        return f"hello {name}"

    def add(self, a: int, b: int) -> int:
        return a + b

    def ping(self, note: str) -> None:
        self.pings.append(note)


# --- thriftpy2 ------------------------------------------------------------------------------


def _tp2_factories(mode: str) -> tuple[Any, Any]:
    from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
    from thriftpy2.transport import TBufferedTransportFactory, TFramedTransportFactory

    if mode == "framed":
        return TFramedTransportFactory(), TBinaryProtocolFactory(strict_read=True, strict_write=True)
    if mode == "unframed":
        return TBufferedTransportFactory(), TBinaryProtocolFactory(strict_read=True, strict_write=True)
    if mode == "compact":
        return TFramedTransportFactory(), TCompactProtocolFactory()
    raise ValueError(f"thriftpy2 mode {mode!r} (one of {THRIFTPY2_MODES})")


def serve_thriftpy2(mode: str) -> None:
    import threading

    from thriftpy2.server import TThreadedServer
    from thriftpy2.thrift import TProcessor
    from thriftpy2.transport import TServerSocket

    greeter = _greeter_module()
    trans_factory, proto_factory = _tp2_factories(mode)
    sock = TServerSocket(host="127.0.0.1", port=0, client_timeout=None)
    sock.listen()
    port = sock.sock.getsockname()[1]
    sock.listen = lambda: None  # type: ignore[method-assign]  # already listening on the announced port
    server = TThreadedServer(
        TProcessor(greeter.Greeter, GreeterHandler()),
        sock,
        itrans_factory=trans_factory,
        iprot_factory=proto_factory,
        daemon=True,
    )
    threading.Thread(target=server.serve, daemon=True).start()
    announce(port, peer="thriftpy2", mode=mode)
    wait_for_sigterm()
    server.closed = True
    sock.close()


def start_thriftpy2_server(mode: str) -> PeerProcess:
    return start_python(f"thriftpy2-{mode}-server", "thrift_peers", "serve_thriftpy2", {"mode": mode})


def call_thriftpy2(
    address: str, mode: str, name: str = "world", count: int = 1, timeout: float = 5.0
) -> dict[str, Any]:
    from thriftpy2.rpc import make_client

    greeter = _greeter_module()
    host, port = address.rsplit(":", 1)
    trans_factory, proto_factory = _tp2_factories(mode)
    client = make_client(
        greeter.Greeter,
        host,
        int(port),
        proto_factory=proto_factory,
        trans_factory=trans_factory,
        timeout=int(timeout * 1000),
    )
    try:
        results = [client.sayHello(f"{name}{i}" if count > 1 else name) for i in range(count)]
        total = client.add(40, 2)
        client.ping("oneway")  # no reply: must not desynchronise the next call
        after = client.sayHello("again")
    finally:
        client.close()
    return {"ok": True, "result": results[-1], "results": results, "add": total, "after_oneway": after}


def thriftpy2_call(
    address: str, mode: str, name: str = "world", *, count: int = 1, timeout: float = 5.0
) -> dict[str, Any]:
    """thriftpy2 client: ``count`` x sayHello(name), then add(40, 2), a oneway ping, sayHello("again")."""
    return run_python(
        f"thriftpy2-{mode}-client",
        "thrift_peers",
        "call_thriftpy2",
        {"address": address, "mode": mode, "name": name, "count": count, "timeout": timeout},
        timeout=timeout * (count + 3) + 15,
    )


# --- Apache thrift --------------------------------------------------------------------------


class ApacheGreeterProcessor:
    """What the Apache thrift generator emits for ``Greeter``, reduced to this service."""

    def __init__(self, handler: GreeterHandler) -> None:
        self.handler = handler
        self.seen_headers: list[dict[Any, Any]] = []

    def process(self, iprot: Any, oprot: Any) -> bool:
        from thrift.protocol.THeaderProtocol import THeaderProtocol
        from thrift.Thrift import TApplicationException, TMessageType, TType

        name, _mtype, seqid = iprot.readMessageBegin()
        args = _read_struct(iprot)
        iprot.readMessageEnd()
        if isinstance(iprot, THeaderProtocol):
            headers = dict(iprot.get_headers())
            self.seen_headers.append(headers)
            if headers.get(b"x-echo") is not None:
                oprot.set_header(b"x-echo", headers[b"x-echo"])
        if name == "ping":
            self.handler.ping(
                args.get(1, b"").decode() if isinstance(args.get(1), bytes) else str(args.get(1))
            )
            return True
        if name == "sayHello":
            value = self.handler.sayHello(args[1].decode() if isinstance(args[1], bytes) else args[1])
            oprot.writeMessageBegin(name, TMessageType.REPLY, seqid)
            oprot.writeStructBegin("sayHello_result")
            oprot.writeFieldBegin("success", TType.STRING, 0)
            oprot.writeString(value)
        elif name == "add":
            oprot.writeMessageBegin(name, TMessageType.REPLY, seqid)
            oprot.writeStructBegin("add_result")
            oprot.writeFieldBegin("success", TType.I32, 0)
            oprot.writeI32(self.handler.add(args[1], args[2]))
        else:
            exc = TApplicationException(TApplicationException.UNKNOWN_METHOD, f"Unknown function {name}")
            oprot.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
            exc.write(oprot)
            oprot.writeMessageEnd()
            oprot.trans.flush()
            return True
        oprot.writeFieldEnd()
        oprot.writeFieldStop()
        oprot.writeStructEnd()
        oprot.writeMessageEnd()
        oprot.trans.flush()
        return True


def _read_struct(iprot: Any) -> dict[int, Any]:
    from thrift.Thrift import TType

    out: dict[int, Any] = {}
    iprot.readStructBegin()
    while True:
        _fname, ftype, fid = iprot.readFieldBegin()
        if ftype == TType.STOP:
            break
        if ftype == TType.STRING:
            out[fid] = iprot.readBinary()
        elif ftype == TType.I32:
            out[fid] = iprot.readI32()
        else:
            iprot.skip(ftype)
        iprot.readFieldEnd()
    iprot.readStructEnd()
    return out


def _apache_client_protocol(sock: Any, mode: str) -> Any:
    from thrift.protocol import TBinaryProtocol, TCompactProtocol
    from thrift.protocol.THeaderProtocol import THeaderProtocol
    from thrift.transport import TTransport
    from thrift.transport.THeaderTransport import THeaderClientType

    if mode == "header":
        return THeaderProtocol(sock, (THeaderClientType.HEADERS,))
    if mode == "framed":
        return TBinaryProtocol.TBinaryProtocolAccelerated(TTransport.TFramedTransport(sock))
    if mode == "unframed":
        return TBinaryProtocol.TBinaryProtocolAccelerated(TTransport.TBufferedTransport(sock))
    if mode == "compact":
        return TCompactProtocol.TCompactProtocolAccelerated(TTransport.TFramedTransport(sock))
    raise ValueError(f"Apache thrift mode {mode!r} (one of {APACHE_MODES})")


def serve_apache_header() -> None:
    """Apache thrift TThreadedServer with THeaderProtocol accepting every client type."""
    import threading

    from thrift.protocol.THeaderProtocol import THeaderProtocolFactory
    from thrift.server.TServer import TThreadedServer
    from thrift.transport import TSocket, TTransport
    from thrift.transport.THeaderTransport import THeaderClientType

    sock = TSocket.TServerSocket(host="127.0.0.1", port=0)
    sock.listen()
    port = sock.handle.getsockname()[1]
    sock.listen = lambda: None  # type: ignore[method-assign]
    every = (
        THeaderClientType.HEADERS,
        THeaderClientType.FRAMED_BINARY,
        THeaderClientType.UNFRAMED_BINARY,
        THeaderClientType.FRAMED_COMPACT,
        THeaderClientType.UNFRAMED_COMPACT,
    )
    pf = THeaderProtocolFactory(allowed_client_types=every)
    server = TThreadedServer(
        ApacheGreeterProcessor(GreeterHandler()), sock, TTransport.TTransportFactoryBase(), pf, daemon=True
    )
    threading.Thread(target=server.serve, daemon=True).start()
    announce(port, peer="apache-thrift", mode="header+all")
    wait_for_sigterm()
    sock.close()


def start_apache_server() -> PeerProcess:
    return start_python("apache-thrift-server", "thrift_peers", "serve_apache_header")


def call_apache(
    address: str, mode: str, name: str = "world", count: int = 1, timeout: float = 5.0
) -> dict[str, Any]:
    from thrift.protocol.THeaderProtocol import THeaderProtocol
    from thrift.Thrift import TApplicationException, TMessageType, TType
    from thrift.transport import TSocket

    host, port = address.rsplit(":", 1)
    sock = TSocket.TSocket(host, int(port))
    sock.setTimeout(timeout * 1000)
    prot = _apache_client_protocol(sock, mode)
    prot.trans.open()
    seq = 0
    echoed: list[Any] = []

    def call(method: str, fields: list[tuple[int, int, Any]], oneway: bool = False) -> Any:
        nonlocal seq
        seq += 1
        if isinstance(prot, THeaderProtocol):
            prot.set_header(b"x-echo", f"{method}-{seq}".encode())
        prot.writeMessageBegin(method, TMessageType.ONEWAY if oneway else TMessageType.CALL, seq)
        prot.writeStructBegin(f"{method}_args")
        for fid, ftype, value in fields:
            prot.writeFieldBegin(f"f{fid}", ftype, fid)
            prot.writeString(value) if ftype == TType.STRING else prot.writeI32(value)
            prot.writeFieldEnd()
        prot.writeFieldStop()
        prot.writeStructEnd()
        prot.writeMessageEnd()
        prot.trans.flush()
        if oneway:
            return None
        rname, rtype, rseq = prot.readMessageBegin()
        if rtype == TMessageType.EXCEPTION:
            exc = TApplicationException()
            exc.read(prot)
            prot.readMessageEnd()
            raise exc
        result = _read_struct(prot)
        prot.readMessageEnd()
        if (rname, rseq) != (method, seq):
            raise RuntimeError(f"reply for {rname}#{rseq}, expected {method}#{seq}")
        if isinstance(prot, THeaderProtocol):
            echoed.append(prot.get_headers().get(b"x-echo"))
        return result.get(0)

    try:
        results = []
        for i in range(count):
            value = call("sayHello", [(1, TType.STRING, f"{name}{i}" if count > 1 else name)])
            results.append(value.decode() if isinstance(value, bytes) else value)
        total = call("add", [(1, TType.I32, 40), (2, TType.I32, 2)])
        call("ping", [(1, TType.STRING, "oneway")], oneway=True)
        after = call("sayHello", [(1, TType.STRING, "again")])
    finally:
        prot.trans.close()
    return {
        "ok": True,
        "result": results[-1],
        "results": results,
        "add": total,
        "after_oneway": after.decode() if isinstance(after, bytes) else after,
        "echoed_headers": [e.decode() if isinstance(e, bytes) else e for e in echoed],
    }


def apache_call(
    address: str, mode: str = "header", name: str = "world", *, count: int = 1, timeout: float = 5.0
) -> dict[str, Any]:
    """Apache thrift client (THeader by default): sayHello x count, add, oneway ping, sayHello("again").

    In header mode each call carries info header x-echo=<method>-<seq>, which the Apache server
    echoes back: ``echoed_headers`` lists what came back.
    """
    return run_python(
        f"apache-thrift-{mode}-client",
        "thrift_peers",
        "call_apache",
        {"address": address, "mode": mode, "name": name, "count": count, "timeout": timeout},
        timeout=timeout * (count + 3) + 15,
    )
