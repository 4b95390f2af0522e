#!/usr/bin/env bash
# One command for the benchmark table: builds protogate and the hand-written
# generated-code baseline (benches/baseline) in release mode and runs the
# shared rig (../shared/bench) with both as targets beside direct gRPC and
# grpc-gateway, all pinned alike; protogate is measured a second time as a
# gRPC proxy (its native gRPC passthrough) beside Envoy's. Extra arguments
# go to the rig's run.sh, e.g. `scripts/bench.sh --rounds 3` or
# `--cases list_items`.
# BASELINE=0 leaves the baseline out.
#
# Both targets are started here rather than with the rig's --cmd: --cmd
# starts its target under setsid, and with kernel.sched_autogroup_enabled=1
# a new session is a scheduling group of its own, apart from the backend's
# and grpc-gateway's. On the reference VM that alone halved protogate's echo
# throughput (see docs/BENCHMARKS.md). Started from here, every server shares
# the rig's session, as the rig's own servers do.
set -euo pipefail
cd "$(dirname "$0")/.."
rig="${BENCH_RIG:-$(cd .. && pwd)/shared/bench}"
[ -x "$rig/run.sh" ] || { echo "no benchmark rig at $rig (set BENCH_RIG)" >&2; exit 1; }

cargo build --release --locked -p protogate --bin protogate
cargo build --release --locked -p protogate-baseline
"$rig/setup.sh"

cpus="${SERVER_CPUS:-1}"
backend="${BACKEND_ADDR:-127.0.0.1:50151}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
# Both connect lazily: the rig starts the backend after them.
BENCH_BACKEND_ADDR="$backend" BENCH_LISTEN_ADDR=127.0.0.1:8090 \
  BENCH_PROTO_DIR="$rig/protos" BENCH_PROTO="$rig/protos/bench.proto" \
  taskset -c "$cpus" scripts/bench-gateway.sh &
pids+=($!)
# The same gateway twice: REST/JSON (wrk) and native gRPC passthrough (h2load).
targets=(--target protogate=http://127.0.0.1:8090 --grpc-target protogate-grpc=127.0.0.1:8090)
if [ "${BASELINE:-1}" != 0 ]; then
  taskset -c "$cpus" target/release/protogate-baseline --listen 127.0.0.1:8091 --backend "$backend" &
  pids+=($!)
  targets+=(--target baseline=http://127.0.0.1:8091)
fi
"$rig/run.sh" "${targets[@]}" "$@"
