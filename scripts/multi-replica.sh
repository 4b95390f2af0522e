#!/usr/bin/env bash
# Several replicas on one machine: one etcd, one Redis, two instances of the
# example backends registering themselves in etcd (`shop --etcd`), and three
# gateways (examples/multi-replica/gateway.yaml) on 8081, 8082 and 8083
# sharing one rate limit in Redis. Runs until Ctrl-C, which stops it all.
#
# Needs etcd and redis-server (Debian: apt-get install etcd-server
# redis-server). ETCD_PORT, REDIS_PORT and GATEWAY_PORTS move the ports.
set -euo pipefail
cd "$(dirname "$0")/.."

etcd_port="${ETCD_PORT:-2379}"
redis_port="${REDIS_PORT:-6379}"
read -r -a gateway_ports <<<"${GATEWAY_PORTS:-8081 8082 8083}"
for tool in etcd redis-server curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install etcd-server redis-server curl)" >&2; exit 1; }
done

cargo build -q --locked -p protogate --bin protogate -p shop --bin shop
bin="$(cargo metadata -q --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug"

work="$(mktemp -d)"
# The config with this run's ports, beside the original so its relative paths resolve.
config="examples/multi-replica/.gateway.$$.yaml"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work" "$config"
}
trap cleanup EXIT
trap 'exit 0' INT TERM
sed -e "s/127.0.0.1:2379/127.0.0.1:$etcd_port/g" -e "s/127.0.0.1:6379/127.0.0.1:$redis_port/g" \
  examples/multi-replica/gateway.yaml >"$config"

peer="http://127.0.0.1:${ETCD_PEER_PORT:-2380}"
etcd --name multi-replica --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
  --initial-cluster "multi-replica=$peer" --logger zap --log-level error &
pids+=($!)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --loglevel warning &
pids+=($!)

wait_for() { # what, command...
  local what="$1"; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2; exit 1
}
wait_for etcd curl -sf "http://127.0.0.1:$etcd_port/health"

# Two instances of every backend, on free ports, registered under /services/.
for instance in 1 2; do
  "$bin/shop" --etcd "http://127.0.0.1:$etcd_port" \
    --users 127.0.0.1:0 --orders 127.0.0.1:0 --inventory 127.0.0.1:0 --users-v2 127.0.0.1:0 \
    >"$work/shop-$instance.log" &
  pids+=($!)
done
for instance in 1 2; do
  wait_for "shop instance $instance to register" grep -q "registered in etcd" "$work/shop-$instance.log"
done

for port in "${gateway_ports[@]}"; do
  RUST_LOG="${RUST_LOG:-warn}" "$bin/protogate" serve --config "$config" --listen "127.0.0.1:$port" &
  pids+=($!)
done
for port in "${gateway_ports[@]}"; do
  wait_for "the gateway on $port" curl -sf "http://127.0.0.1:$port/readyz"
done
echo "three gateways: ${gateway_ports[*]/#/http://127.0.0.1:}; etcd on $etcd_port, Redis on $redis_port. Ctrl-C stops everything."
wait
