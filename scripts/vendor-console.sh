#!/usr/bin/env bash
# The console's chart library, TradingView Lightweight Charts, from npm: its
# standalone production build and licence are committed under
# ledgercore/static/console/vendor/ (nothing loads from a CDN). This script
# (re)vendors them at the pinned version; `make install` runs it when the
# file is missing. Usage: scripts/vendor-console.sh [version]
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-5.3.0}
dest=ledgercore/static/console/vendor
cache=.cache/npm-console
mkdir -p "$cache" "$dest"
npm install --silent --no-audit --no-fund --prefix "$cache" "lightweight-charts@$version"
pkg=$cache/node_modules/lightweight-charts
cp "$pkg/dist/lightweight-charts.standalone.production.js" "$dest/"
cp "$pkg/LICENSE" "$dest/lightweight-charts.LICENSE"
echo "lightweight-charts $version (npm), dist/lightweight-charts.standalone.production.js; refreshed by scripts/vendor-console.sh" > "$dest/VERSION"
echo "vendored lightweight-charts $version into $dest"
