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
# Development tools from npm pinned in package.json / package-lock.json (the
# TypeScript compiler that tests/clients checks clients/typescript/ with),
# into node_modules/; again whenever the lock file changes. Without npm those
# tests skip (on CI they fail).
if command -v npm >/dev/null 2>&1; then
  if ! cmp -s package-lock.json node_modules/.ledgercore-lock; then
    echo "installing the npm development tools (npm ci)"
    if npm ci --no-audit --no-fund --loglevel=error --cache .cache/npm; then
      cp package-lock.json node_modules/.ledgercore-lock
    else
      echo "warning: npm ci failed; the TypeScript compile test will skip (fail on CI)" >&2
    fi
  fi
else
  echo "note: npm not found; the TypeScript compile test (tests/clients) will skip" >&2
fi
# The console's chart library (committed; re-vendored from npm only if missing).
if [ ! -e ledgercore/static/console/vendor/lightweight-charts.standalone.production.js ]; then
  scripts/vendor-console.sh || echo "warning: could not vendor lightweight-charts; the console's chart will not load" >&2
fi
# Headless Chromium for tests/browser (Debian packages; never a downloaded
# browser). Installed on CI when running as root; elsewhere those tests skip
# without it, on CI they fail.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "note: chromium/chromedriver not found; the browser tests (tests/browser) will skip (apt-get install chromium chromium-driver)" >&2
  fi
fi
touch .venv/.installed
