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
touch .venv/.installed
