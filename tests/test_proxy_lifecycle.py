"""Lifecycle of `xproto proxy -c FILE` as a subprocess: SIGTERM drains in-flight requests
within the grace period, answers the rest locally, exits 0; admin endpoints answer."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import urllib.request

import pytest
import yaml
from test_proxy_core import bolt_echo, bolt_req, content
from test_proxy_helpers import Client, Upstream, arun

pytestmark = pytest.mark.timeout(60)


async def start_proxy(tmp_path, cfg: dict) -> tuple[asyncio.subprocess.Process, dict[str, tuple[str, int]], str | None, list[str]]:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xproto.cli", "proxy", "-c", str(path),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    addrs: dict[str, tuple[str, int]] = {}
    admin = None
    lines: list[str] = []
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 15)).decode()
        if not line:
            raise AssertionError("proxy exited early:\n" + "".join(lines))
        lines.append(line)
        m = re.search(r"listener (\S+) on (\S+):(\d+)", line)
        if m:
            addrs[m.group(1)] = (m.group(2), int(m.group(3)))
        m = re.search(r"admin on (\S+)", line)
        if m:
            admin = m.group(1)
        if line.strip().endswith("xproto: ready"):
            return proc, addrs, admin, lines


async def finish(proc: asyncio.subprocess.Process, lines: list[str]) -> int:
    assert proc.stderr is not None
    rest = await asyncio.wait_for(proc.stderr.read(), 15)
    lines.append(rest.decode())
    return await asyncio.wait_for(proc.wait(), 15)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_sigterm_lets_in_flight_finish_then_exits_0(tmp_path) -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo(b"done:")).start()
        up.delay = 0.5
        cfg = {"admin": {"address": "127.0.0.1:0"},
               "drain_timeout": "5s",
               "listeners": [{"name": "rpc", "address": "127.0.0.1:0", "protocols": ["bolt"],
                              "routes": [{"cluster": "a"}]}],
               "clusters": [{"name": "a", "endpoints": [up.addr]}]}
        proc, addrs, admin, lines = await start_proxy(tmp_path, cfg)
        try:
            assert admin is not None
            loop = asyncio.get_running_loop()
            st, text = await loop.run_in_executor(None, _get, admin + "/ready")
            assert st == 200
            c = await Client("bolt").connect(addrs["rpc"])
            c.send(bolt_req(1, content=b"x"))
            await asyncio.wait_for(up.got.wait(), 5)     # the request is in flight upstream
            st, text = await loop.run_in_executor(None, _get, admin + "/clusters")
            snap = json.loads(text)
            assert snap["clusters"][0]["in_flight"] == 1
            proc.send_signal(signal.SIGTERM)
            (f,) = await c.recv(1, timeout=5)
            assert f.request_id == 1 and f.status == 0 and content(f) == b"done:x"
            t0 = loop.time()
            assert await finish(proc, lines) == 0
            assert loop.time() - t0 < 3     # exits once drained, not at the end of the 5 s grace
            # new connections are refused after the drain
            with pytest.raises(OSError):
                await Client("bolt").connect(addrs["rpc"])
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await up.close()
    arun(body(), timeout=40)


def test_sigterm_answers_leftovers_locally_after_grace(tmp_path) -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        up.mode = "silent"
        cfg = {"drain_timeout": "300ms",
               "listeners": [{"name": "rpc", "address": "127.0.0.1:0", "protocols": ["bolt"],
                              "routes": [{"cluster": "a", "timeout": "30s"}]}],
               "clusters": [{"name": "a", "endpoints": [up.addr]}]}
        proc, addrs, _admin, lines = await start_proxy(tmp_path, cfg)
        try:
            c = await Client("bolt").connect(addrs["rpc"])
            c.send(bolt_req(1))
            c.send(bolt_req(2))
            await asyncio.wait_for(up.got.wait(), 5)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            proc.send_signal(signal.SIGTERM)
            got = await c.recv(2, timeout=5)
            assert sorted(f.request_id for f in got) == [1, 2]
            assert all(f.status != 0 for f in got)          # local replies, not silence
            assert await finish(proc, lines) == 0
            assert loop.time() - t0 < 5
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await up.close()
    arun(body(), timeout=40)


def test_workers_share_the_port_and_merge_metrics(tmp_path) -> None:
    async def body() -> None:
        up = await Upstream("bolt", bolt_echo()).start()
        cfg = {"admin": {"address": "127.0.0.1:0"}, "workers": 2,
               "listeners": [{"name": "rpc", "address": "127.0.0.1:0", "protocols": ["bolt"],
                              "routes": [{"cluster": "a"}]}],
               "clusters": [{"name": "a", "endpoints": [up.addr]}]}
        proc, addrs, admin, lines = await start_proxy(tmp_path, cfg)
        try:
            n = 20
            clients = [await Client("bolt").connect(addrs["rpc"]) for _ in range(n)]
            for i, c in enumerate(clients):
                c.send(bolt_req(i, content=b"%d" % i))
            for i, c in enumerate(clients):
                (f,) = await c.recv(1)
                assert f.request_id == i and content(f) == b"%d" % i
                c.close()
            # one upstream pool per worker: both workers connected to the upstream
            assert up.accepted == 2
            loop = asyncio.get_running_loop()
            st, text = await loop.run_in_executor(None, _get, admin + "/metrics")
            assert st == 200
            m = re.search(rb'xproto_downstream_requests_total\{api="",listener="rpc",protocol="bolt"\} (\S+)', text)
            assert m and float(m.group(1)) == n        # merged over both workers
            # /clusters: the answering worker's pools and the other worker's (its snapshot)
            st, text = await loop.run_in_executor(None, _get, admin + "/clusters")
            view = json.loads(text)
            assert st == 200 and [c["name"] for c in view["clusters"]] == ["a"]
            assert len(view["workers"]) == 1 and view["workers"][0]["pid"] != view["pid"]
            assert [c["name"] for c in view["workers"][0]["clusters"]] == ["a"]
            proc.send_signal(signal.SIGTERM)
            assert await finish(proc, lines) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await up.close()
    arun(body(), timeout=40)
