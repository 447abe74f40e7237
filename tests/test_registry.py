"""Codec plugins: entry points, lazy loading, duplicates, XPROTO_DISABLE_PLUGIN_AUTOLOAD.

The end-to-end tests install the throwaway distributions under tests/plugins/ with pip into
a temporary venv that sees this environment's packages (xproto included) through a .pth
file, offline (``--no-index --no-build-isolation``), then run the real CLI there - including
``xproto proxy`` carrying the sixth (toy) protocol to a toy upstream.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xproto import registry as regmod
from xproto.codec import Codec
from xproto.errors import PluginError

PLUGINS = Path(__file__).resolve().parent / "plugins"
TOY_FRAME = b"TOY1" + bytes([0]) + (7).to_bytes(4, "big") + (9).to_bytes(2, "big") + b"echo hiya"
TOY_REPLY = b"TOY1" + bytes([1]) + (7).to_bytes(4, "big") + (3).to_bytes(2, "big") + b"\x00ok"


# --- unit tests on fake entry points ------------------------------------------------------
class FakeDist:
    def __init__(self, name: str, version: str = "1.0") -> None:
        self.metadata = {"Name": name}
        self.version = version


class FakeEP:
    def __init__(self, name: str, dist: str, target: Any) -> None:
        self.name = name
        self.dist = FakeDist(dist)
        self._target = target
        self.loaded = False

    def load(self) -> Any:
        self.loaded = True
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


class DemoCodec(Codec):
    name = "demo"
    match_rule = "never"

    def match(self, data: Any) -> int:
        return -1

    def new_decoder(self, *a: Any, **k: Any) -> Any:
        raise NotImplementedError


@pytest.fixture
def fake_eps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeEP]]:
    eps: list[FakeEP] = []
    monkeypatch.setattr(regmod, "entry_points", lambda group: list(eps) if group == regmod.GROUP else [])
    monkeypatch.setattr(regmod, "_BUILTIN_FALLBACK", {})
    monkeypatch.delenv(regmod.DISABLE_ENV, raising=False)
    yield eps


def test_plugins_load_lazily(fake_eps: list[FakeEP]) -> None:
    ep = FakeEP("demo", "xproto-demo", DemoCodec)
    fake_eps.append(ep)
    reg = regmod.load_registry()
    assert reg.names() == ["demo"] and not ep.loaded
    assert reg.origin("demo") == "xproto-demo 1.0"
    codec = reg.get("demo")
    assert ep.loaded and isinstance(codec, DemoCodec) and reg.get("demo") is codec


def test_duplicate_names_name_both_distributions(fake_eps: list[FakeEP]) -> None:
    fake_eps += [FakeEP("demo", "xproto-demo", DemoCodec), FakeEP("demo", "other-dist", DemoCodec)]
    with pytest.raises(PluginError) as ei:
        regmod.load_registry()
    assert "xproto-demo 1.0" in str(ei.value) and "other-dist 1.0" in str(ei.value)
    assert not any(ep.loaded for ep in fake_eps)   # refused from metadata, nothing imported


def test_plugin_shadowing_a_builtin_is_refused(fake_eps: list[FakeEP]) -> None:
    fake_eps += [FakeEP("http", "xproto", DemoCodec), FakeEP("http", "evil-http", DemoCodec)]
    with pytest.raises(PluginError, match="evil-http") as ei:
        regmod.load_registry()
    assert "xproto" in str(ei.value)


def test_disable_autoload_keeps_builtins_only(fake_eps: list[FakeEP], monkeypatch: pytest.MonkeyPatch) -> None:
    fake_eps += [FakeEP("http", "xproto", DemoCodec), FakeEP("demo", "xproto-demo", DemoCodec),
                 FakeEP("http", "evil-http", DemoCodec)]
    monkeypatch.setenv(regmod.DISABLE_ENV, "1")
    reg = regmod.load_registry()
    assert reg.names() == ["http"] and reg.origin("http") == "built-in"
    with pytest.raises(PluginError):
        regmod.load_registry(autoload=True)   # explicit autoload sees the clash again


def test_same_distribution_twice_is_one(fake_eps: list[FakeEP]) -> None:
    fake_eps += [FakeEP("demo", "xproto-demo", DemoCodec), FakeEP("demo", "xproto_demo", DemoCodec)]
    assert regmod.load_registry().names() == ["demo"]


def test_broken_plugin_says_which(fake_eps: list[FakeEP]) -> None:
    fake_eps += [FakeEP("demo", "xproto-demo", ImportError("No module named 'demo_dep'")),
                 FakeEP("nota", "xproto-nota", object())]
    reg = regmod.load_registry()
    with pytest.raises(PluginError, match=r"'demo' from xproto-demo 1.0: ImportError"):
        reg.get("demo")
    with pytest.raises(PluginError, match="not a codec"):
        reg.get("nota")
    with pytest.raises(PluginError, match="no codec named 'zzz'"):
        reg.get("zzz")


def test_order_builtins_first_then_plugins(fake_eps: list[FakeEP]) -> None:
    for name in ("zeta", "http", "alpha", "dubbo"):
        fake_eps.append(FakeEP(name, "xproto" if name in ("http", "dubbo") else "p", DemoCodec))
    reg = regmod.load_registry()
    assert reg.names() == ["dubbo", "http", "alpha", "zeta"]
    assert [c.name for c in reg.resolve(["http", "auto"])] == ["http", "dubbo", "alpha", "zeta"]


def test_real_builtins_registered() -> None:
    reg = regmod.load_registry(autoload=False)
    assert reg.names()[:5] == ["dubbo", "bolt", "thrift", "kafka", "http"]
    assert all(reg.origin(n) == "built-in" for n in reg.names())


# --- end to end: pip-installed plugin distributions ---------------------------------------
def _run(py: Path, *args: str, env: dict[str, str] | None = None, input: bytes | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    e = {k: v for k, v in os.environ.items() if k != regmod.DISABLE_ENV}
    e.update(env or {})
    return subprocess.run([str(py), *args], capture_output=True, env=e, input=input, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with this environment's packages visible and xproto-toy pip-installed."""
    root = tmp_path_factory.mktemp("plugin-venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    py = venv / "bin" / "python"
    site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.decode().strip())
    # addsitedir (not a bare path line) so this environment's own .pth files - the editable
    # xproto install among them - are processed too
    base = sysconfig.get_paths()["purelib"]
    (site / "_xproto_base_env.pth").write_text(f"import site; site.addsitedir({base!r})\n")
    return py


def _pip_install(py: Path, project: Path) -> None:
    r = _run(py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
             "--disable-pip-version-check", "--no-warn-script-location", str(project), timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]


@pytest.fixture(scope="module")
def toy_venv(plugin_venv: Path) -> Path:
    _pip_install(plugin_venv, PLUGINS / "xproto-toy")
    return plugin_venv


def _codecs(py: Path, env: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]], str]:
    r = _run(py, "-m", "xproto.cli", "codecs", "--json", env=env)
    rows = [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]
    return r.returncode, rows, r.stderr.decode()


def test_installed_plugin_is_listed_and_used(toy_venv: Path) -> None:
    rc, rows, err = _codecs(toy_venv)
    assert rc == 0, err
    toy = [r for r in rows if r["name"] == "toy"]
    assert toy == [{"name": "toy", "origin": "xproto-toy 0.1.0", "pool_mode": "multiplex",
                    "match_bytes": 4, "match_rule": "magic 'TOY1' at bytes 0-3"}]
    assert [r["name"] for r in rows][:5] == ["dubbo", "bolt", "thrift", "kafka", "http"]
    r = _run(toy_venv, "-m", "xproto.cli", "decode", "-p", "auto", "--json", "--hex", "-",
             input=(TOY_FRAME + TOY_REPLY).hex().encode())
    assert r.returncode == 0, r.stderr.decode()
    frames = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert frames == [
        {"protocol": "toy", "kind": "request", "heartbeat": False, "request_id": 7, "status": None,
         "headers": {"method": "echo"}, "frame_len": 20},
        {"protocol": "toy", "kind": "response", "heartbeat": False, "request_id": 7, "status": 0,
         "headers": {}, "frame_len": 14}]
    # a truncated toy frame: exit 2
    r = _run(toy_venv, "-m", "xproto.cli", "decode", "-p", "toy", "-", input=TOY_FRAME[:-1])
    assert r.returncode == 2 and b"ends inside a toy frame" in r.stderr


def test_disable_autoload_hides_the_plugin(toy_venv: Path) -> None:
    env = {regmod.DISABLE_ENV: "1"}
    rc, rows, err = _codecs(toy_venv, env)
    assert rc == 0, err
    assert [r["name"] for r in rows] == ["dubbo", "bolt", "thrift", "kafka", "http"]
    assert {r["origin"] for r in rows} == {"built-in"}
    r = _run(toy_venv, "-m", "xproto.cli", "decode", "-p", "toy", "-", input=TOY_FRAME, env=env)
    assert r.returncode == 64 and b"no codec named 'toy'" in r.stderr
    r = _run(toy_venv, "-m", "xproto.cli", "decode", "-", input=TOY_FRAME, env=env)
    assert r.returncode == 3 and b"no protocol matches" in r.stderr


def test_duplicate_distributions_fail_naming_both(toy_venv: Path) -> None:
    _pip_install(toy_venv, PLUGINS / "xproto-toy-dup")
    try:
        rc, rows, err = _codecs(toy_venv)
        assert rc == 1 and rows == []
        assert "two codecs named 'toy'" in err
        assert "xproto-toy 0.1.0" in err and "xproto-toy-dup 0.1.0" in err
        r = _run(toy_venv, "-m", "xproto.cli", "decode", "-", input=TOY_FRAME)
        assert r.returncode == 1 and b"xproto-toy-dup" in r.stderr
        # with autoload disabled the built-ins still work
        rc, rows, err = _codecs(toy_venv, {regmod.DISABLE_ENV: "1"})
        assert rc == 0 and len(rows) == 5
    finally:
        r = _run(toy_venv, "-m", "pip", "uninstall", "-y", "-q", "xproto-toy-dup")
        assert r.returncode == 0, r.stderr.decode()


# --- the plugin through the real proxy ----------------------------------------------------
class ToyUpstream:
    """A blocking TOY1 server on a thread: answers each request with status 0 + its payload."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.seen_ids: list[int] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import struct

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while True:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        break
                    if not data:
                        break
                    buf += data
                    while len(buf) >= 11:
                        _, typ, rid, n = struct.unpack_from(">4sBIH", buf)
                        if len(buf) < 11 + n:
                            break
                        payload, buf = buf[11:11 + n], buf[11 + n:]
                        self.seen_ids.append(rid)
                        if typ == 0:
                            body = b"\x00" + payload
                            conn.sendall(struct.pack(">4sBIH", b"TOY1", 1, rid, len(body)) + body)

    def close(self) -> None:
        self.sock.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _recv_frame(sock: Any) -> bytes:
    buf = b""
    while len(buf) < 11 or len(buf) < 11 + int.from_bytes(buf[9:11], "big"):
        chunk = sock.recv(65536)
        assert chunk, f"proxy closed the connection after {buf!r}"
        buf += chunk
    return buf


def test_plugin_through_the_proxy(toy_venv: Path, tmp_path: Path) -> None:
    import signal
    import socket
    import struct
    import time

    pytest.importorskip("xproto.proxy")
    upstream = ToyUpstream()
    port = _free_port()
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(f"""
listeners:
  - name: toy
    address: 127.0.0.1:{port}
    protocols: [toy]
    routes:
      - match: {{headers: {{method: echo}}}}
        cluster: toys
clusters:
  - name: toys
    endpoints: [127.0.0.1:{upstream.port}]
""")
    r = _run(toy_venv, "-m", "xproto.cli", "check", "-c", str(cfg))
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    log = (tmp_path / "proxy.log").open("wb")
    proc = subprocess.Popen([str(toy_venv), "-m", "xproto.cli", "proxy", "-c", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:   # wait until the listener accepts (bounded)
            assert proc.poll() is None, (tmp_path / "proxy.log").read_text()[-2000:]
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "proxy did not start listening"
                time.sleep(0.05)
        with sock:
            sock.sendall(TOY_FRAME)                       # id 7, method echo -> routed
            rep = _recv_frame(sock)
            magic, typ, rid, _ = struct.unpack_from(">4sBIH", rep)
            assert (magic, typ, rid, rep[11:]) == (b"TOY1", 1, 7, b"\x00echo hiya")
            other = b"TOY1" + bytes([0]) + (8).to_bytes(4, "big") + (5).to_bytes(2, "big") + b"nope!"
            sock.sendall(other)                           # no route -> the codec's error reply
            rep = _recv_frame(sock)
            _, typ, rid, _ = struct.unpack_from(">4sBIH", rep)
            assert (typ, rid, rep[11]) == (1, 8, 1)       # status 1 = not found
        assert len(upstream.seen_ids) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(timeout=5)
        upstream.close()
        log.close()
    assert rc == 0, (tmp_path / "proxy.log").read_text()[-2000:]
