#!/usr/bin/env bash
# make run: migrate, load demo data, print a token and the URLs, serve.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-$(scripts/dev-secret.sh django)}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
export LEDGERCORE_DEV_JWT_SECRET=${LEDGERCORE_DEV_JWT_SECRET:-$(scripts/dev-secret.sh)}
export DJANGO_ALLOWED_HOSTS=${DJANGO_ALLOWED_HOSTS:-127.0.0.1,localhost,[::1],$HOST}
# Live demo trades (synthetic BTC-USD/ETH-USD, the Binance fixture replayed as XRP-ETH).
export LEDGERCORE_MARKET_DEMO_FEED=${LEDGERCORE_MARKET_DEMO_FEED:-true}
export LEDGERCORE_ALLOWED_ORIGINS=${LEDGERCORE_ALLOWED_ORIGINS:-http://$HOST:$PORT,http://127.0.0.1:$PORT,http://localhost:$PORT}
PY=.venv/bin/python
$PY manage.py migrate --noinput -v 0
$PY manage.py seed_demo
token=$($PY manage.py issue_token demo_user --app app_demo)
cat <<INFO

LedgerCore Realtime on http://$HOST:$PORT
  Console     http://$HOST:$PORT/  (sign in with the token below)
  WebSocket   ws://$HOST:$PORT/ws?token=<token>
  AsyncAPI    http://$HOST:$PORT/api/asyncapi.json
  Admin       http://$HOST:$PORT/admin/  (create a staff login: make superuser)
  Health      http://$HOST:$PORT/healthz  http://$HOST:$PORT/readyz

Development token for demo_user in app_demo (valid 24 h):
$token

INFO
# daphne, draining on SIGTERM/Ctrl-C (LEDGERCORE_DRAIN_SECONDS; Ctrl-C twice: at once).
exec $PY manage.py serve -b "$HOST" -p "$PORT" ledgercore.asgi:application
