#!/usr/bin/env bash
# What a rate-limit check costs, on the shared rig in one run: the release
# gateway three times on the same CPU, without a limit, with the per-replica
# limiter and with the Redis-backed one (a local redis-server on its own
# CPU), at the rig's load (64 connections by default). The limit is too high
# to refuse anything, so every request pays exactly one check. Extra
# arguments go to the rig's run.sh (default: --cases echo).
set -euo pipefail
cd "$(dirname "$0")/.."
rig="${BENCH_RIG:-$(cd .. && pwd)/shared/bench}"
[ -x "$rig/run.sh" ] || { echo "no benchmark rig at $rig (set BENCH_RIG)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)" >&2; exit 1; }

cargo build --release --locked -p protogate --bin protogate
"$rig/setup.sh"

cpus="${SERVER_CPUS:-1}"
backend="${BACKEND_ADDR:-127.0.0.1:50151}"
redis_port="${REDIS_PORT:-6390}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning &
pids+=($!)
start() { # port, BENCH_RATE_LIMIT
  BENCH_BACKEND_ADDR="$backend" BENCH_LISTEN_ADDR="127.0.0.1:$1" BENCH_RATE_LIMIT="$2" \
    BENCH_PROTO_DIR="$rig/protos" BENCH_PROTO="$rig/protos/bench.proto" \
    taskset -c "$cpus" scripts/bench-gateway.sh &
  pids+=($!)
}
start 8090 ""
start 8094 local
start 8095 "redis://127.0.0.1:$redis_port"
[ $# -gt 0 ] || set -- --cases echo
"$rig/run.sh" --no-envoy --no-envoy-grpc \
  --target protogate=http://127.0.0.1:8090 \
  --target limit-local=http://127.0.0.1:8094 \
  --target limit-redis=http://127.0.0.1:8095 "$@"
