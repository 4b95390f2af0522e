#!/usr/bin/env bash
# Fuzzes the live example gateway from its own OpenAPI document with
# schemathesis: no response may be a 5xx, and every response must match the
# documented schema and content type. Starts the quick start (backends on
# 127.0.0.1:50051-50053, gateway on 127.0.0.1:8080) and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v schemathesis >/dev/null 2>&1 || ! schemathesis --version >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

cargo build --quiet -p shop --bin quickstart
log=$(mktemp)
target/debug/quickstart >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:8080/healthz >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "quickstart exited" >&2; exit 1; }
  sleep 0.2
done

# filter_too_much: resource-name patterns (users/[^/]+/orders/[^/]+) reject
# most random strings; that is the point of the pattern, not a schema fault.
schemathesis run http://127.0.0.1:8080/openapi.json \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-50}" \
  --suppress-health-check filter_too_much \
  --workers 2 \
  --seed 1
