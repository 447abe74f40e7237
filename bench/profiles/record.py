"""Profile the proxy under load: C upstream + xproto proxy (from ROOT) + C load generator,
all pinned to one core as in bench/run.py, with ``py-spy record -f raw`` on the proxy.

    python bench/profiles/record.py ROOT PROTO CONNS DEPTH SECONDS OUT.raw   # OUT '-': no py-spy
    python bench/profiles/summarize.py OUT.raw 22 > bench/profiles/NAME.txt

py-spy is a development tool: ``pip install py-spy`` into the venv (not a dependency).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

root = Path(sys.argv[1]).resolve()
proto, conns, depth, secs, out = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
sys.path.insert(0, str(root / "bench"))
sys.path.insert(0, str(root))
import run as R

lg, upx = R.build()
tmp = Path(tempfile.mkdtemp())
req, resp = R.templates(proto)
(tmp / "req").write_bytes(req)
(tmp / "resp").write_bytes(resp)
up, up_port = R.start_ready([str(upx), "-P", proto, "-f", str(tmp / "resp")])
p, port = R.start_target("xproto", proto, up_port, tmp)
try:
    prof = None
    if out != "-":
        spy = str(Path(sys.executable).with_name("py-spy"))
        prof = subprocess.Popen([spy, "record", "-p", str(p.pid), "-r", "250", "-f", "raw", "-o", out,
                                 "-d", str(int(secs) + 2), "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.7)   # py-spy attaches before the load starts
    res = R.run_load(lg, proto, port, tmp / "req", conns, depth, secs, p, up)
    print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in res.items()})
    if prof:
        prof.wait(30)
finally:
    R.stop(p)
    R.stop(up)
