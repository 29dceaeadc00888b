#!/usr/bin/env bash
# Prints the path of a Python >= 3.12 interpreter, or fails saying what to install.
set -u
candidates=("${PYTHON:-}" python3.13 python3.12 python3)
for dir in "$HOME"/.pyenv/versions/3.13* "$HOME"/.pyenv/versions/3.12* /usr/local/bin /usr/bin; do
  for name in python3.13 python3.12; do
    [ -x "$dir/bin/$name" ] && candidates+=("$dir/bin/$name")
    [ -x "$dir/$name" ] && candidates+=("$dir/$name")
  done
done
for candidate in "${candidates[@]}"; do
  [ -n "$candidate" ] || continue
  if "$candidate" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
    "$candidate" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
echo "error: Python 3.12 or newer is required (set PYTHON=/path/to/python3.12)" >&2
exit 1
