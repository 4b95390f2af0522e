#!/usr/bin/env bash
# Starts the release protogate in front of the benchmark rig's backend. The
# rig runs this with BENCH_BACKEND_ADDR, BENCH_LISTEN_ADDR, BENCH_PROTO and
# BENCH_PROTO_DIR set (see ../shared/bench/README.md).
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
# No per-request access log: the peers in the rig do not log requests either.
export RUST_LOG="${RUST_LOG:-warn}"
exec "$here/target/release/protogate" serve --config "$config"
