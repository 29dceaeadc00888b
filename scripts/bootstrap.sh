#!/usr/bin/env bash
# Creates .venv with Python >= 3.12 and installs the pinned requirements.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
  python=$(scripts/find-python.sh)
  echo "creating .venv with $python"
  rm -rf .venv
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# anvil (a local Ethereum node) for tests/compliance/test_compliance_rpc.py, from npm into
# .cache/anvil. Optional: without npm or the registry those tests skip, so a
# failure here must not fail the bootstrap.
if [ ! -e .cache/anvil/node_modules/.bin/anvil ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "installing anvil (@foundry-rs/anvil) into .cache/anvil"
    mkdir -p .cache/anvil
    npm install --silent --no-audit --no-fund --prefix .cache/anvil @foundry-rs/anvil \
      || echo "warning: could not install @foundry-rs/anvil; the JSON-RPC ingester tests will skip" >&2
  else
    echo "note: npm not found; the JSON-RPC ingester tests (anvil) will skip" >&2
  fi
fi
touch .venv/.installed
