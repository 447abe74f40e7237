"""The `xproto` command line, run as a user runs it (a subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTTP = ROOT / "fixtures" / "http"


def xproto(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "xproto.cli", *args], input=input, capture_output=True,
                       timeout=60, check=False)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())


def fx(name: str) -> bytes:
    return bytes.fromhex("".join((HTTP / f"{name}.hex").read_text().split()))


def expected(name: str) -> list[dict[str, object]]:
    return json.loads((HTTP / f"{name}.json").read_text())["frames"]


def test_decode_json_hex_file() -> None:
    r = xproto("decode", "--hex", "--json", str(HTTP / "pipelined-requests.hex"))
    assert r.returncode == 0, r.stderr
    assert [json.loads(x) for x in r.stdout.splitlines()] == expected("pipelined-requests")


def test_decode_raw_stdin_forced_protocol() -> None:
    r = xproto("decode", "-p", "http", "--json", "-", input=fx("chunked-response"))
    assert r.returncode == 0, r.stderr
    assert [json.loads(x) for x in r.stdout.splitlines()] == expected("chunked-response")


def test_decode_plain_lines() -> None:
    r = xproto("decode", "-", input=fx("pipelined-requests"))
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0] == "#0 @0 http request id=0 len=28 :method=GET :path=/a"
    assert lines[1].startswith("#1 @28 http request id=1 len=53 :method=POST")


def test_decode_body_until_close_is_a_frame() -> None:
    r = xproto("decode", "--json", "-", input=fx("http10-response-until-close"))
    assert r.returncode == 0, r.stderr
    assert [json.loads(x) for x in r.stdout.splitlines()] == expected("http10-response-until-close")


def test_decode_truncated_exits_2_after_the_whole_frames() -> None:
    data = fx("pipelined-requests")
    r = xproto("decode", "--json", "-", input=data[:28 + 40])
    assert r.returncode == 2
    assert len(r.stdout.splitlines()) == 1
    assert "ends inside a http frame starting at byte 28" in r.stderr
    r = xproto("decode", "-", input=b"GE")          # too short even to tell the protocol
    assert r.returncode == 2 and "ends inside a frame" in r.stderr


def test_decode_protocol_error_names_protocol_offset_reason() -> None:
    r = xproto("decode", "--hex", str(HTTP / "httpx.h2c-prior-knowledge-preface.hex"))
    assert r.returncode == 3
    assert "http protocol error at byte 0: HTTP/2 preface (h2c prior knowledge) is not supported" in r.stderr
    first = fx("aiohttp-client.http1-request")
    r = xproto("decode", "-", input=first + b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
    assert r.returncode == 3 and len(r.stdout.splitlines()) == 1
    assert f"http protocol error at byte {len(first)}:" in r.stderr


def test_decode_forced_wrong_protocol() -> None:
    pytest.importorskip("xproto.codecs.dubbo")
    r = xproto("decode", "-p", "dubbo", "-", input=fx("aiohttp-client.http1-request"))
    assert r.returncode == 3 and "dubbo" in r.stderr and "at byte" in r.stderr


def test_decode_unknown_bytes_with_auto() -> None:
    r = xproto("decode", "-", input=b"\x00\x00\x00\x00garbage that is no protocol at all" * 3)
    assert r.returncode == 3 and "no protocol matches" in r.stderr


def test_decode_empty_input() -> None:
    r = xproto("decode", "-", input=b"")
    assert r.returncode == 0 and r.stdout == ""


@pytest.mark.parametrize("args,input", [
    (["decode", "-p", "nosuch", "-"], b"GET / HTTP/1.1\r\n\r\n"),
    (["decode", "--hex", "-"], b"zz"),
    (["decode", "/nonexistent/file"], None),
    (["decode", "--bogus"], None),
])
def test_usage_errors_exit_64(args: list[str], input: bytes | None) -> None:
    r = xproto(*args, input=input)
    assert r.returncode == 64, (r.returncode, r.stderr)


def test_codecs_lists_builtins() -> None:
    r = xproto("codecs", "--json")
    assert r.returncode == 0, r.stderr
    rows = {d["name"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert rows["http"] == {"name": "http", "origin": "built-in", "pool_mode": "pingpong",
                            "match_bytes": 8, "match_rule": rows["http"]["match_rule"]}
    r = xproto("codecs")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:3] == ["NAME", "ORIGIN", "POOL"]


def test_check_config(tmp_path: Path) -> None:
    pytest.importorskip("xproto.config")
    example = ROOT / "fixtures" / "configs" / "example.yaml"
    if example.exists():
        r = xproto("check", "-c", str(example))
        assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners:\n  - name: a\n    address: 127.0.0.1:0\n    protocols: [http]\n"
                   "    routes: [{cluster: nope}]\n    bogus: 1\nclusters: []\n")
    r = xproto("check", "-c", str(bad))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines and all(": " in x for x in lines)
    assert any(x.startswith("listeners[0].") for x in lines), lines
    r = xproto("check", "-c", str(tmp_path / "missing.yaml"))
    assert r.returncode in (1, 64)


@pytest.mark.parametrize("cmd", ["proxy", "check", "demo", "decode", "codecs"])
def test_help(cmd: str) -> None:
    r = xproto(cmd, "--help")
    assert r.returncode == 0 and "Usage:" in r.stdout


WIRE = (Path(__file__).resolve().parents[1] / "fixtures" / "shared" / "wire")


def _standalone_wire_fixtures() -> list[tuple[Path, Path]]:
    """(captured file, its fixture) for fixtures that decode without context."""
    out = []
    for w in sorted(WIRE.glob("*.hex")) if WIRE.is_dir() else []:
        for fj in (ROOT / "fixtures").glob(f"*/{w.stem}.json"):
            doc = json.loads(fj.read_text())
            if "context" not in doc and "error" not in doc:
                out.append((w, fj))
    return out


@pytest.mark.parametrize("wire,fixture", _standalone_wire_fixtures(), ids=lambda p: p.stem)
def test_decode_auto_of_captured_frames_matches_fixture(wire: Path, fixture: Path) -> None:
    import io

    from xproto.cli import decode_bytes

    out = io.StringIO()
    data = bytes.fromhex("".join(wire.read_text().split()))
    assert decode_bytes(data, "auto", as_json=True, out=out) == 0
    got = [json.loads(x) for x in out.getvalue().splitlines()]
    assert got == json.loads(fixture.read_text())["frames"]
