"""Run every atheris harness in fuzz/ for a bounded time; fail on any crash.

    python fuzz/run.py                    # CI: 20 s per target
    python fuzz/run.py --seconds 3600     # a long run (the README reports one)
    python fuzz/run.py --targets dubbo,bolt --runs 1000000

Each target `fuzz_<name>.py` defines TestOneInput; its corpus is fuzz/corpus/<name>/ (new
inputs found are added to a scratch copy, not to git), its dictionary fuzz/dicts/<name>.dict.
Crashes are written to fuzz/crashes/<name>/ : minimise them (`-minimize_crash=1`) and commit
them into the corpus as regression inputs.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def targets() -> list[str]:
    return sorted(p.stem[len("fuzz_"):] for p in HERE.glob("fuzz_*.py"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20, help="per target")
    ap.add_argument("--runs", type=int, default=0, help="stop a target after this many executions")
    ap.add_argument("--targets", default="")
    ap.add_argument("--rss-limit-mb", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0,
                    help="libFuzzer seed (0 = random); CI fixes it so a run is reproducible")
    a = ap.parse_args()
    names = a.targets.split(",") if a.targets else targets()
    failed = []
    summary = []
    for name in names:
        harness = HERE / f"fuzz_{name}.py"
        corpus = HERE / "corpus" / name
        crashes = HERE / "crashes" / name
        crashes.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch) / "corpus"
            if corpus.is_dir():
                shutil.copytree(corpus, work)
            else:
                work.mkdir()
            cmd = [sys.executable, str(harness), str(work), f"-max_total_time={a.seconds}",
                   f"-rss_limit_mb={a.rss_limit_mb}", "-timeout=10", f"-artifact_prefix={crashes}/",
                   "-print_final_stats=1"]
            if a.runs:
                cmd.append(f"-runs={a.runs}")
            if a.seed:
                cmd.append(f"-seed={a.seed}")
            d = HERE / "dicts" / f"{name}.dict"
            if d.exists():
                cmd.append(f"-dict={d}")
            t0 = time.monotonic()
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.seconds + 300)
            el = time.monotonic() - t0
            out = p.stdout + p.stderr
            m = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
            execs = int(m.group(1)) if m else -1
            cov = re.findall(r"cov: (\d+) ft: (\d+)", out)
            summary.append((name, execs, cov[-1] if cov else ("?", "?"), el, p.returncode))
            if p.returncode != 0:
                failed.append(name)
                print(out[-4000:], file=sys.stderr)
    print(f"{'target':12} {'execs':>10} {'cov':>6} {'ft':>7} {'secs':>6} result")
    for name, execs, (cov, ft), el, rc in summary:
        print(f"{name:12} {execs:10d} {cov:>6} {ft:>7} {el:6.0f} {'ok' if rc == 0 else 'CRASH'}")
    if failed:
        print("crashes in: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
