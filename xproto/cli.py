"""The ``xproto`` command line.

Exit codes of ``decode`` (INTERFACE.md): 0 every byte decoded into frames; 2 the stream ends
inside a frame; 3 a protocol error (the message names the protocol, the byte offset in the
input and the reason). Usage errors (bad options, unreadable file, bad hex) exit 64
(EX_USAGE) rather than click's default 2, so that 2 keeps its one meaning; a broken or
clashing codec plugin exits 1.

The heavy commands (proxy, check, demo) import their modules lazily.
"""
from __future__ import annotations

import json
import sys
from typing import Any, BinaryIO

import click

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_TRUNCATED = 2
EXIT_PROTOCOL = 3
EXIT_USAGE = 64

#: header keys worth showing on a one-line summary, in this order
_SUMMARY_KEYS = (":method", ":path", ":status", "service", "method", "api_name", "api_version",
                 "client_id")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xproto", prog_name="xproto")
def cli() -> None:
    """xproto: a pluggable multi-protocol codec framework and RPC proxy."""


# --- decode ---------------------------------------------------------------------------
def _read_input(src: BinaryIO, as_hex: bool) -> bytes:
    data = src.read()
    if not as_hex:
        return bytes(data)
    text = b"".join(bytes(data).split())
    try:
        return bytes.fromhex(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError) as e:
        raise click.UsageError(f"input is not hex: {e}") from None


def _summary(frame: Any) -> str:
    h = frame.headers
    return " ".join(f"{k}={h[k]}" for k in _SUMMARY_KEYS if k in h)


def _protocol_error(proto: str, offset: int, reason: str) -> int:
    click.echo(f"xproto decode: {proto} protocol error at byte {offset}: {reason}", err=True)
    return EXIT_PROTOCOL


def decode_bytes(data: bytes, protocol: str = "auto", as_json: bool = False,
                 out: Any = None) -> int:
    """The body of ``xproto decode``; returns the exit code. Frames go to ``out`` (stdout)."""
    from xproto.codec import Codec, Role
    from xproto.detect import detect
    from xproto.errors import PluginError, ProtocolError
    from xproto.registry import default_registry

    echo = (lambda s: click.echo(s, file=out)) if out is not None else click.echo
    try:
        reg = default_registry()
        cands = reg.resolve(["auto"]) if protocol == "auto" else []
    except PluginError as e:        # a broken or clashing plugin: not the input's fault
        click.echo(f"xproto decode: {e}", err=True)
        return EXIT_PROBLEM
    if protocol == "auto":
        if not data:
            return EXIT_OK
        try:
            r = detect(cands, data, final=False)
            if isinstance(r, int):
                r = detect(cands, data, final=True)
            assert not isinstance(r, int)  # final=True decides or raises
        except ProtocolError as e:
            # a prefix of some protocol's frame that just stops is a truncation, not garbage
            if any(c.match(data) > 0 for c in cands):
                click.echo(f"xproto decode: the stream ends inside a frame at byte 0 "
                           f"({len(data)} bytes are too few to tell the protocol)", err=True)
                return EXIT_TRUNCATED
            click.echo(f"xproto decode: auto protocol error at byte 0: {e.message}", err=True)
            return EXIT_PROTOCOL
        codec: Codec = r
    else:
        try:
            codec = reg.get(protocol)
        except PluginError as e:
            raise click.UsageError(str(e)) from None

    dec = codec.new_decoder(Role.ANY)
    pos = 0
    n = len(data)
    index = 0
    need = 0
    while pos < n:
        try:
            got = dec.decode(data, pos)
            if isinstance(got, int):
                need = got
                last = dec.eof(data, pos)
                if last is None:
                    break
                got = last
        except ProtocolError as e:
            offset = _absolute_offset(codec, data, pos, e)
            return _protocol_error(e.protocol or codec.name, offset, e.message)
        frame = got
        if as_json:
            echo(json.dumps(frame.to_json(), ensure_ascii=False))
        else:
            status = "" if frame.status is None else f" status={frame.status}"
            hb = " heartbeat" if frame.heartbeat else ""
            echo(f"#{index} @{pos} {frame.protocol} {frame.kind.value}{hb} id={frame.request_id}"
                 f"{status} len={len(frame.raw)} {_summary(frame)}".rstrip())
        index += 1
        pos += len(frame.raw)
        if not frame.raw:  # a codec bug; never loop forever
            return _protocol_error(codec.name, pos, "decoder returned an empty frame")
    if pos < n:
        click.echo(f"xproto decode: the stream ends inside a {codec.name} frame starting at byte {pos} "
                   f"({n - pos} bytes left, at least {need} more needed)", err=True)
        return EXIT_TRUNCATED
    return EXIT_OK


def _absolute_offset(codec: Any, data: bytes, pos: int, e: Any) -> int:
    """The error's byte offset in the input.

    Codecs report offsets within the buffer they were given; some count from the frame
    start instead. Decoding the failing frame again from a buffer that starts at it makes
    both conventions agree, so the result is exact either way.
    """
    from xproto.codec import Role
    from xproto.errors import ProtocolError

    if e.offset is None:
        return pos
    if pos == 0:
        return int(e.offset)
    try:
        codec.new_decoder(Role.ANY).decode(data[pos:], 0)
    except ProtocolError as e2:
        if e2.message == e.message and e2.offset is not None:
            return pos + int(e2.offset)
    return int(e.offset)


@cli.command()
@click.option("-p", "--protocol", default="auto", show_default=True, metavar="NAME|auto",
              help="codec name, or auto to detect it from the first bytes")
@click.option("--hex", "as_hex", is_flag=True, help="input is hex text (whitespace ignored)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per frame, one per line")
@click.argument("file", type=click.File("rb"), default="-")
def decode(protocol: str, as_hex: bool, as_json: bool, file: BinaryIO) -> None:
    """Decode one direction of a connection (FILE or - for stdin) into frames."""
    data = _read_input(file, as_hex)
    sys.exit(decode_bytes(data, protocol, as_json))


# --- codecs ---------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object per codec")
def codecs(as_json: bool) -> None:
    """List registered codecs: name, origin, pool mode, bytes the matcher needs."""
    from xproto.errors import PluginError
    from xproto.registry import default_registry

    try:
        reg = default_registry()
    except PluginError as e:
        click.echo(f"xproto codecs: {e}", err=True)
        sys.exit(EXIT_PROBLEM)
    rows: list[dict[str, str]] = []
    for ent in reg.entries():
        c = ent.codec
        mode = getattr(c.pool_mode, "value", str(c.pool_mode))
        rows.append({"name": ent.name, "origin": ent.origin, "pool_mode": mode,
                     "match_bytes": str(int(c.match_bytes)), "match_rule": c.match_rule})
    if as_json:
        for r in rows:
            click.echo(json.dumps({**r, "match_bytes": int(r["match_bytes"])}))
        return
    hdr = ("NAME", "ORIGIN", "POOL", "MATCH BYTES", "RULE")
    table = [hdr] + [(r["name"], r["origin"], r["pool_mode"], r["match_bytes"], r["match_rule"])
                     for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4])


# --- proxy / check / demo (other modules, imported lazily) ----------------------------
@cli.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="YAML config file")
@click.option("--workers", type=int, default=None, help="worker processes (default: the config's)")
def proxy(config_path: str, workers: int | None) -> None:
    """Run the proxy until SIGINT/SIGTERM (SIGTERM drains in-flight requests first)."""
    from xproto.proxy import run

    sys.exit(run(config_path) if workers is None else run(config_path, workers=workers))


@cli.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="YAML config file")
def check(config_path: str) -> None:
    """Validate a config: exit 0, or 1 with one `key.path: message` line per problem."""
    from xproto.config import check_file
    from xproto.errors import ConfigError

    try:
        problems = list(check_file(config_path))
    except ConfigError as e:
        problems = list(e.problems)
    except OSError as e:
        problems = [("file", f"cannot read {config_path}: {e.strerror or e}")]
    if problems:
        for key, msg in problems:
            click.echo(f"{key}: {msg}")
        sys.exit(EXIT_PROBLEM)
    click.echo(f"{config_path}: ok")


@cli.command()
@click.option("--duration", type=float, default=5.0, show_default=True, help="seconds of traffic")
def demo(duration: float) -> None:
    """Run the proxy on a built-in config with sample services and print a traffic table."""
    from xproto.demo import run_demo

    sys.exit(run_demo(duration=duration))


def main(argv: list[str] | None = None) -> int:
    """Console entry: like click's standalone mode, but usage errors exit 64."""
    try:
        rv = cli.main(args=argv, prog_name="xproto", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        return 1
    except click.UsageError as e:
        e.show()
        return EXIT_USAGE
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # python -m xproto.cli
    sys.exit(main())
