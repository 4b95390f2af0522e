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
stop() {
  kill "$pid" 2>/dev/null || true
  # A graceful stop waits for open streams; do not wait for ever.
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "the quick start did not stop within 5s; killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "$log"
}
trap stop EXIT
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
