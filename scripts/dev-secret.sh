#!/usr/bin/env bash
# Prints one of this checkout's development secrets, creating it on first
# use (var/, never committed): `jwt` (default) signs development tokens
# (LEDGERCORE_DEV_JWT_SECRET), `django` is the Django secret key
# (DJANGO_SECRET_KEY). Production sets both itself.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-jwt}
case "$which" in
  jwt) file=var/dev-jwt-secret; bytes=32 ;;
  django) file=var/dev-django-secret; bytes=50 ;;
  *) echo "usage: $0 [jwt|django]" >&2; exit 2 ;;
esac
mkdir -p var
if [ ! -s "$file" ]; then
  (umask 077 && python3 -c "import secrets; print(secrets.token_urlsafe($bytes))" > "$file")
fi
cat "$file"
