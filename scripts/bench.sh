#!/usr/bin/env bash
# One command for the benchmark table: builds protogate and the hand-written
# generated-code baseline (benches/baseline) in release mode and runs the
# shared rig (../shared/bench) with both as targets beside direct gRPC and
# grpc-gateway, all pinned alike. Extra arguments go to the rig's run.sh,
# e.g. `scripts/bench.sh --rounds 3` or `--cases list_items`.
# BASELINE=0 leaves the baseline out.
set -euo pipefail
cd "$(dirname "$0")/.."
rig="${BENCH_RIG:-$(cd .. && pwd)/shared/bench}"
[ -x "$rig/run.sh" ] || { echo "no benchmark rig at $rig (set BENCH_RIG)" >&2; exit 1; }

cargo build --release --locked -p protogate --bin protogate
cargo build --release --locked -p protogate-baseline
"$rig/setup.sh"

targets=(--target protogate=http://127.0.0.1:8090)
if [ "${BASELINE:-1}" != 0 ]; then
  # The rig starts only its first extra target itself; the baseline is
  # started here, on the same server CPU, and reconnects to the backend
  # once the rig has started it.
  taskset -c "${SERVER_CPUS:-1}" target/release/protogate-baseline \
    --listen 127.0.0.1:8091 --backend "${BACKEND_ADDR:-127.0.0.1:50151}" &
  baseline=$!
  trap 'kill "$baseline" 2>/dev/null || true' EXIT
  targets+=(--target baseline=http://127.0.0.1:8091)
fi
"$rig/run.sh" \
  "${targets[@]}" \
  --cmd "$PWD/scripts/bench-gateway.sh" \
  "$@"
