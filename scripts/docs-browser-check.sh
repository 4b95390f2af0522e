#!/usr/bin/env bash
# Opens /docs of the live example gateway in headless Chromium (Debian's
# package), offline, checks the operations are listed and one "Try it out"
# call succeeds, and prints the path of a screenshot of the page.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
(cd scripts/browser && npm ci --no-audit --no-fund --silent)

shot="${DOCS_SCREENSHOT:-$PWD/target/docs-check.png}"
mkdir -p "$(dirname "$shot")"
scripts/with-quickstart.sh node scripts/browser/docs-check.mjs http://127.0.0.1:8080 "$shot"
