#!/usr/bin/env bash
# make test: the whole suite on the embedded stack (SQLite + in-memory layer)
# and on the scaled stack (PostgreSQL + Redis) when those answer, both at
# once on a machine with two cores or more (see below).
# On CI (CI=true) the scaled stack is mandatory: the servers are started if
# they do not answer, and the run fails loudly if they cannot be.
# Usage: scripts/test.sh [embedded|scaled|all] [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-$(scripts/dev-secret.sh django)}
which=${1:-all}
[ $# -gt 0 ] && shift
PY=.venv/bin/python
status=0

run_pytest() {
  local label=$1; shift
  echo "== tests on the $label stack =="
  env "$@" $PY -m pytest "${PYTEST_ARGS[@]}"
  local rc=$?
  if [ $rc -eq 5 ]; then
    echo "error: pytest collected no tests on the $label stack" >&2
    rc=1
  fi
  [ $rc -ne 0 ] && echo "FAILED: tests on the $label stack (exit $rc)" >&2
  return $rc
}

PYTEST_ARGS=("$@")

# Whether the scaled stack runs: mandatory on CI, else when its services answer.
scaled_wanted() {
  if [ "${CI:-}" = true ]; then
    $PY scripts/services.py ensure || { echo "error: PostgreSQL and Redis are required on CI and could not be started" >&2; exit 1; }
    return 0
  elif $PY scripts/services.py check; then
    return 0
  fi
  echo "SKIPPED: the scaled-stack run (PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 must both answer)"
  return 1
}

run_embedded() {
  run_pytest embedded -u DATABASE_URL -u REDIS_URL "$@"
}

run_scaled() {
  run_pytest scaled \
    DATABASE_URL="${LEDGERCORE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ledgercore}" \
    REDIS_URL="${LEDGERCORE_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}" \
    LEDGERCORE_REDIS_PREFIX="lctest-$$" "$@"
}

# Both stacks at once (the default for `all` on a machine with two cores or
# more; LEDGERCORE_TEST_PARALLEL=0 runs them one after the other): most of
# the suite waits on server processes and sockets, not on the CPU. Each run
# has a directory of its own (metrics, static files), so neither reads the
# other's counters. The embedded run's output is shown when it ends.
parallel=${LEDGERCORE_TEST_PARALLEL:-}
if [ -z "$parallel" ]; then
  if [ "$which" = all ] && [ "$(nproc)" -ge 2 ]; then parallel=1; else parallel=0; fi
fi

if [ "$which" = all ] && [ "$parallel" = 1 ]; then
  if scaled_wanted; then
    work=$(mktemp -d -t ledgercore-tests.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/embedded" "$work/scaled"
    echo "== the embedded stack runs in the background; its output follows the scaled run's =="
    run_embedded LEDGERCORE_VAR_DIR="$work/embedded" > "$work/embedded.log" 2>&1 &
    embedded_pid=$!
    run_scaled LEDGERCORE_VAR_DIR="$work/scaled" || status=1
    wait "$embedded_pid" || status=1
    cat "$work/embedded.log"
    exit $status
  fi
  run_embedded || status=1
  exit $status
fi

if [ "$which" = all ] || [ "$which" = embedded ]; then
  run_embedded || status=1
fi

if [ "$which" = all ] || [ "$which" = scaled ]; then
  if scaled_wanted; then
    run_scaled || status=1
  else
    [ "$which" = scaled ] && status=1
  fi
fi
exit $status
