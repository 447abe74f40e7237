"""Run ``peers.<module>.<func>(**json_kwargs)`` in this interpreter and print its result as JSON.

Usage: python _run.py MODULE FUNC '{"kw": ...}'
Servers print their own ready line and block; clients return a JSON-able value (a dict is
printed as is, anything else as {"ok": true, "result": value}); an exception becomes
{"ok": false, "error": "...", "type": "..."} and exit code 1.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path

# sys.path[0] is this script's directory: replace it with tests/, so ``peers`` is the package and
# its modules cannot shadow the libraries they drive.
sys.path[0] = str(Path(__file__).resolve().parent.parent)


def main() -> int:
    module, func, kwargs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    fn = getattr(importlib.import_module(f"peers.{module}"), func)
    try:
        result = fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as data
        traceback.print_exc()
        print(json.dumps({"ok": False, "error": f"{exc}", "type": type(exc).__name__}), flush=True)
        return 1
    if result is None:
        return 0
    if not isinstance(result, dict):
        result = {"ok": True, "result": result}
    print(json.dumps(result, default=repr), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
