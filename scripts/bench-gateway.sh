#!/usr/bin/env bash
# Starts the release protogate in front of the benchmark rig's backend. The
# rig runs this with BENCH_BACKEND_ADDR, BENCH_LISTEN_ADDR, BENCH_PROTO and
# BENCH_PROTO_DIR set (see ../shared/bench/README.md). BENCH_RATE_LIMIT adds
# a limit too high to refuse anything, to measure what checking it costs:
# `local` (this replica's buckets) or a redis:// URL (buckets in Redis).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
config="$(mktemp -d)/bench.yaml"
cat >"$config" <<YAML
server:
  listen: ${BENCH_LISTEN_ADDR}
descriptors:
  include: [${BENCH_PROTO_DIR}]
  protos: [$(basename "${BENCH_PROTO}")]
backends:
  bench:
    address: http://${BENCH_BACKEND_ADDR}
    services: [bench.v1.*]
openapi:
  enabled: false
YAML
case "${BENCH_RATE_LIMIT:-}" in
  "") ;;
  local) printf 'rate_limit:\n  by_address: { requests: 1000000000, per: 1s }\n' >>"$config" ;;
  redis://*) printf 'rate_limit:\n  by_address: { requests: 1000000000, per: 1s }\n  store:\n    redis: { url: "%s", timeout: 50ms }\n' "$BENCH_RATE_LIMIT" >>"$config" ;;
  *) echo "BENCH_RATE_LIMIT: local or redis://host:port" >&2; exit 1 ;;
esac
# No per-request access log: the peers in the rig do not log requests either.
export RUST_LOG="${RUST_LOG:-warn}"
exec "$here/target/release/protogate" serve --config "$config"
