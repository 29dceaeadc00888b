#!/usr/bin/env bash
# make test: the whole suite on the embedded stack (SQLite + in-memory layer),
# then again on the scaled stack (PostgreSQL + Redis) when those answer.
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

if [ "$which" = all ] || [ "$which" = embedded ]; then
  run_pytest embedded -u DATABASE_URL -u REDIS_URL || status=1
fi

if [ "$which" = all ] || [ "$which" = scaled ]; then
  if [ "${CI:-}" = true ]; then
    $PY scripts/services.py ensure || { echo "error: PostgreSQL and Redis are required on CI and could not be started" >&2; exit 1; }
    scaled=yes
  elif $PY scripts/services.py check; then
    scaled=yes
  else
    scaled=no
    echo "SKIPPED: the scaled-stack run (PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 must both answer)"
    [ "$which" = scaled ] && status=1
  fi
  if [ "$scaled" = yes ]; then
    run_pytest scaled \
      DATABASE_URL="${LEDGERCORE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ledgercore}" \
      REDIS_URL="${LEDGERCORE_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}" \
      LEDGERCORE_REDIS_PREFIX="lctest-$$" || status=1
  fi
fi
exit $status
