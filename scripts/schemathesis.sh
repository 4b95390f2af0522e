#!/usr/bin/env bash
# Fuzzes the live example gateway from its own OpenAPI document with
# schemathesis: no response may be a 5xx, and every response must match the
# documented schema and content type.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v schemathesis >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

# The example protects orders (JWT) and inventory (API key): send credentials
# so the fuzzing reaches the backends instead of stopping at 401.
cargo build --quiet --bin protogate
token=$(target/debug/protogate token --key examples/keys/dev-signing.pem --alg ES256 \
  --issuer https://auth.shop.example --audience shop-api --subject 1 --scope orders --ttl 1h)

# NDJSON bodies and replies of the streaming operations: scripts/schemathesis_hooks.py.
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}"
export SCHEMATHESIS_HOOKS=schemathesis_hooks

# filter_too_much: resource-name patterns (users/[^/]+/orders/[^/]+) reject
# most random strings; that is the point of the pattern, not a schema fault.
# WatchOrder is left out: on an order that exists (the documented example
# names one, and created orders link to it) it streams until the client
# leaves, which a request timeout can only count as a failure; its tests
# are tests/integration/streaming.rs.
scripts/with-quickstart.sh schemathesis run http://127.0.0.1:8080/openapi.json \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-50}" \
  --suppress-health-check filter_too_much \
  --exclude-path-regex ':watch$' \
  --header "Authorization: Bearer $token" \
  --header "x-api-key: dev-inventory-key" \
  --workers 2 \
  --request-timeout 30 \
  --seed 1
