#!/usr/bin/env bash
# make conformance: the official Engine.IO v4 and Socket.IO v5 test suites
# (../shared/conformance, beside the checkout) against this server, started
# on port 3000 in the conformance configuration (LEDGERCORE_SOCKETIO_CONFORMANCE).
# Fails when a suite is missing or any of its tests fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# The suites: LEDGERCORE_CONFORMANCE_DIR, else ../shared/conformance beside
# the checkout, else the copy in tests/conformance (the same files, see its
# PROVENANCE.md), so that a clone anywhere runs them.
suite_dir() {
    local base
    for base in "${LEDGERCORE_CONFORMANCE_DIR:-}" "$ROOT/../shared/conformance"; do
        if [ -n "$base" ] && [ -f "$base/$1/test-suite/test-suite.js" ]; then
            echo "$base/$1/test-suite"
            return
        fi
    done
    echo "$ROOT/tests/conformance/$1"
}
PORT=3000
for suite in engine.io-protocol socket.io-protocol; do
    if [ ! -f "$(suite_dir $suite)/test-suite.js" ]; then
        echo "conformance: the $suite suite was not found" >&2
        exit 1
    fi
    echo "conformance: $suite from $(suite_dir $suite)"
done
command -v npm >/dev/null || { echo "conformance: npm is needed (Node.js 18 or newer)" >&2; exit 1; }
if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
    echo "conformance: port $PORT is in use; the suites hard-code it" >&2
    exit 1
fi

work=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

export npm_config_cache=$ROOT/.cache/npm
for suite in engine.io-protocol socket.io-protocol; do
    cp -r "$(suite_dir $suite)" "$work/$suite"
    chmod -R u+w "$work/$suite"
    (cd "$work/$suite" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
done

export LEDGERCORE_SOCKETIO_CONFORMANCE=1
export LEDGERCORE_VAR_DIR=$work/var
export LEDGERCORE_DEV_JWT_SECRET=conformance-only-secret-of-at-least-32-bytes
export DJANGO_ALLOWED_HOSTS=localhost,127.0.0.1
unset DATABASE_URL REDIS_URL
mkdir -p "$LEDGERCORE_VAR_DIR"
.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py serve -b 127.0.0.1 -p $PORT ledgercore.asgi:application >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 150); do
    if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then break; fi
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; echo "conformance: the server did not start" >&2; exit 1; }
    sleep 0.2
done

status=0
for suite in engine.io-protocol socket.io-protocol; do
    echo "== $suite =="
    (cd "$work/$suite" && npx --no-install mocha test-suite.js) || status=1
done
if [ "$status" -ne 0 ]; then
    echo "conformance: server log:" >&2
    tail -n 50 "$work/server.log" >&2
fi
exit $status
