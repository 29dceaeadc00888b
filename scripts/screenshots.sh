#!/usr/bin/env bash
# make screenshots: refresh the console screenshots in docs/ that README
# shows, from a run of the browser tests (tests/browser: headless Chromium
# against a real server with the demo data and feed). Copies only these
# (the sign-in panel's shot shows a token and is never copied):
#   docs/console.png                the whole page (token field blanked)
#   docs/console-chart-250ms.png    the live chart at 250 ms
#   docs/console-compliance-panel.png  an address analysis
set -euo pipefail
cd "$(dirname "$0")/.."
shots=$(mktemp -d)
trap 'rm -rf "$shots"' EXIT
LEDGERCORE_SCREENSHOTS_DIR=$shots scripts/test.sh embedded tests/browser -q
for name in console.png console-chart-250ms.png console-compliance-panel.png; do
  cp "$shots/$name" "docs/$name"
  echo "docs/$name"
done
