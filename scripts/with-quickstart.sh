#!/usr/bin/env bash
# Runs a command while the quick start (example backends on
# 127.0.0.1:50051-50054, gateway on 127.0.0.1:8080) is ready, then stops it.
#   scripts/with-quickstart.sh COMMAND [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p shop --bin quickstart
log=$(mktemp)
target/debug/quickstart >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 150); do
  curl -sf http://127.0.0.1:8080/readyz >/dev/null && break
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$log" >&2
    echo "the quick start exited before it was ready" >&2
    exit 1
  fi
  sleep 0.2
done
curl -sf http://127.0.0.1:8080/readyz >/dev/null || { cat "$log" >&2; echo "the quick start did not get ready" >&2; exit 1; }
"$@"
