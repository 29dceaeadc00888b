#!/usr/bin/env bash
# Prints this checkout's development JWT secret, creating it on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
if [ ! -s var/dev-jwt-secret ]; then
  .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' > var/dev-jwt-secret
  chmod 600 var/dev-jwt-secret
fi
cat var/dev-jwt-secret
