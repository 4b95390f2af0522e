#!/usr/bin/env bash
# One command for the benchmark table: builds protogate in release mode and
# runs the shared rig (../shared/bench) with protogate as a target beside
# direct gRPC and grpc-gateway, all pinned alike. Extra arguments go to the
# rig's run.sh, e.g. `scripts/bench.sh --rounds 3` or `--cases list_items`.
set -euo pipefail
cd "$(dirname "$0")/.."
rig="${BENCH_RIG:-$(cd .. && pwd)/shared/bench}"
[ -x "$rig/run.sh" ] || { echo "no benchmark rig at $rig (set BENCH_RIG)" >&2; exit 1; }

cargo build --release --locked --bin protogate
"$rig/setup.sh"
"$rig/run.sh" \
  --target protogate=http://127.0.0.1:8090 \
  --cmd "$PWD/scripts/bench-gateway.sh" \
  "$@"
