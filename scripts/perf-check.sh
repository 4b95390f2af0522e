#!/usr/bin/env bash
# The request path's regression check, in instructions rather than seconds:
# the release gateway runs under callgrind in front of the example user
# service, and the instructions it executes per call are compared with
# benches/instructions.tsv. Instruction counts do not depend on the
# machine's load, so the check means the same on a busy CI machine and on
# a quiet one. (Allocations per call are checked by tests/alloc_budget.rs.)
#
#   scripts/perf-check.sh            # fails when a case exceeds its budget by more than the margin
#   scripts/perf-check.sh --update   # writes the measured counts as the new budgets
#
# Needs valgrind (callgrind) and python3; builds what it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
update=0
[ "${1:-}" = --update ] && update=1
# A change may cost this much more than the budget before the check fails;
# the same build measures within about 1 % run to run.
margin_pct="${PERF_MARGIN_PCT:-10}"
calls="${PERF_CALLS:-400}"
budgets=benches/instructions.tsv

command -v valgrind >/dev/null || { echo "perf-check: valgrind is needed" >&2; exit 1; }
cargo build --release --locked -p protogate --bin protogate -p shop --bin shop

work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
users_port="$(free_port)"
gateway_port="$(free_port)"
target/release/shop --users "127.0.0.1:$users_port" --orders 127.0.0.1:0 --inventory 127.0.0.1:0 \
  --users-v2 127.0.0.1:0 >"$work/shop.log" 2>&1 &
pids+=($!)

cat >"$work/gateway.yaml" <<YAML
server:
  listen: 127.0.0.1:$gateway_port
descriptors:
  include: [$(pwd)/protos]
  protos: [shop/user/v1/user.proto]
backends:
  users:
    address: http://127.0.0.1:$users_port
    services: [shop.user.v1.UserService]
openapi:
  enabled: false
YAML
RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$work/callgrind.out" \
  target/release/protogate serve --config "$work/gateway.yaml" >"$work/gateway.log" 2>&1 &
gateway=$!
pids+=($gateway)

# Sequential calls on one keep-alive connection: the same work every run.
cat >"$work/client.py" <<'PY'
import http.client, sys, time
port, case, n, offset = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
deadline = time.time() + 300
while True:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("perf-check: the gateway did not start")
        time.sleep(0.5)
for i in range(offset, offset + n):
    if case == "get_user":
        conn.request("GET", "/v1/users/1")
    else:
        body = '{"email":"u%07d@example.com","displayName":"User %07d"}' % (i, i)
        conn.request("POST", "/v1/users", body, {"content-type": "application/json"})
    reply = conn.getresponse()
    data = reply.read()
    # 201 Created for the create (with its Location), 200 for the read.
    if reply.status not in (200, 201):
        sys.exit(f"perf-check: {case} answered {reply.status}: {data[:200]!r}")
PY

measure() {
  local case="$1" offset="$2"
  # A client that fails measures nothing: stop rather than compare.
  python3 "$work/client.py" "$gateway_port" "$case" 100 "$offset" || return 1
  callgrind_control -z "$gateway" >/dev/null 2>&1
  callgrind_control -i on "$gateway" >/dev/null 2>&1
  python3 "$work/client.py" "$gateway_port" "$case" "$calls" $((offset + 100)) || return 1
  callgrind_control -i off "$gateway" >/dev/null 2>&1
  callgrind_control --dump="$case" "$gateway" >/dev/null 2>&1
  local file
  file="$(ls -t "$work"/callgrind.out.* | head -n 1)"
  local total
  total="$(callgrind_annotate --auto=no "$file" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
  echo $((total / calls))
}

declare -A measured
measured[get_user]="$(measure get_user 0)"
measured[create_user]="$(measure create_user 1000000)"

if [ "$update" = 1 ]; then
  {
    echo "# Instructions the release gateway executes per call (scripts/perf-check.sh --update)."
    for case in get_user create_user; do printf '%s\t%s\n' "$case" "${measured[$case]}"; done
  } >"$budgets"
  cat "$budgets"
  exit 0
fi

failed=0
while IFS=$'\t' read -r case budget; do
  [[ -z "$case" || "$case" == \#* ]] && continue
  got="${measured[$case]:-}"
  [ -n "$got" ] || { echo "perf-check: no measurement for $case" >&2; failed=1; continue; }
  limit=$((budget * (100 + margin_pct) / 100))
  change=$(python3 -c "print(f'{($got - $budget) / $budget * 100:+.1f}')")
  if [ "$got" -gt "$limit" ]; then
    echo "perf-check: $case: $got instructions per call, budget $budget ($change %, over the $margin_pct % margin)"
    failed=1
  else
    echo "perf-check: $case: $got instructions per call, budget $budget ($change %)"
  fi
done <"$budgets"
exit "$failed"
