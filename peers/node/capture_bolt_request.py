#!/usr/bin/env python3
"""Capture a real SOFA Bolt request written by npm sofa-rpc-node (its default Hessian "3.0").

Re-run (from the repository root; needs node and ``npm install`` done in peers/node)::

    (cd peers/node && npm install --no-audit --no-fund)
    .venv/bin/python peers/node/capture_bolt_request.py

It listens on 127.0.0.1 (a free port), runs ``node peers/node/bolt_capture_client.js
<port> "hello from node"``, records the bytes of the first Bolt request (cmdcode 1) the
client sends, closes the connection and writes:

* ``fixtures/hessian2/sofa-rpc-node-bolt-request.hex``          the whole Bolt frame
* ``fixtures/hessian2/sofa-rpc-node-bolt-request.content.hex``  its content (the
  hessian SofaRequest)

Heartbeats (cmdcode 0), if any, are skipped. Both files are hex on one line.
"""
from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent.parent / "fixtures" / "hessian2"


def bolt_frame_length(buf: bytes) -> int | None:
    """Length of the Bolt frame at the start of ``buf`` (v1 or v2), None if incomplete."""
    if len(buf) < 1:
        return None
    proto = buf[0]
    if proto == 1:
        if len(buf) < 2:
            return None
        is_request = buf[1] in (1, 2)
        head = 22 if is_request else 20
        lens_at = 14 if is_request else 12
        extra = 0
    elif proto == 2:
        if len(buf) < 3:
            return None
        is_request = buf[2] in (1, 2)
        head = 24 if is_request else 22
        lens_at = 16 if is_request else 14
        extra = 4 if buf[1] & 0x02 else 0  # ver1 bit: CRC32 trailer (best effort)
    else:
        raise SystemExit(f"not a Bolt frame: first byte 0x{proto:02x}")
    if len(buf) < head:
        return None
    class_len, header_len, content_len = struct.unpack_from(">HHI", buf, lens_at)
    total = head + class_len + header_len + content_len + extra
    return total if len(buf) >= total else None


def main() -> int:
    arg = sys.argv[1] if len(sys.argv) > 1 else "hello from node"
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(20)
    port = lsock.getsockname()[1]
    proc = subprocess.Popen(["node", str(HERE / "bolt_capture_client.js"), str(port), arg], cwd=HERE)
    frame = None
    try:
        conn, _ = lsock.accept()
        conn.settimeout(10)
        buf = b""
        deadline = time.monotonic() + 15
        while frame is None and time.monotonic() < deadline:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
            while (n := bolt_frame_length(buf)) is not None:
                one, buf = buf[:n], buf[n:]
                cmdcode = struct.unpack_from(">H", one, 2 if one[0] == 1 else 3)[0]
                if cmdcode == 1:
                    frame = one
                    break
        conn.close()
    finally:
        lsock.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if frame is None:
        print("no Bolt request captured", file=sys.stderr)
        return 1
    head = 22 if frame[0] == 1 else 24
    lens_at = 14 if frame[0] == 1 else 16
    class_len, header_len, content_len = struct.unpack_from(">HHI", frame, lens_at)
    content = frame[head + class_len + header_len : head + class_len + header_len + content_len]
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "sofa-rpc-node-bolt-request.hex").write_text(frame.hex() + "\n")
    (FIXTURES / "sofa-rpc-node-bolt-request.content.hex").write_text(content.hex() + "\n")
    print(f"captured {len(frame)} bytes (content {len(content)}) from sofa-rpc-node")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
