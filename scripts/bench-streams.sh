#!/usr/bin/env bash
# The benchmark cases of the streaming and HTTP/2 surfaces, which the shared
# rig (../shared/bench) does not have, measured the way the rig measures:
# the load generator pinned to LOAD_CPUS (0), every server (backend and
# gateways) to SERVER_CPUS (1), one target at a time, CPU per message read
# from /proc for the gateway and for the whole server core.
#
#   stream   GET /v1/stream/items?count=1000: a REST server stream of 1,000
#            messages (NDJSON), `wrk -c 16`, against protogate, grpc-gateway
#            (generated for benches/streams/protos, v1 runtime as Debian
#            packages it) and Envoy's grpc_json_transcoder
#            (stream_newline_delimited); direct gRPC as the floor
#   bidi     64 concurrent bidi streams over 4 HTTP/2 connections, each
#            sending one message and waiting for its echo (the ghz pattern),
#            against protogate's gRPC passthrough and Envoy as a gRPC proxy;
#            direct gRPC as the floor
#   rest_h2  the rig's echo and get_item REST calls over HTTP/2 (h2c, prior
#            knowledge), `h2load -c 64 -m 1`, against protogate and Envoy's
#            transcoder, in front of the rig's Go backend
#
# Usage: scripts/bench-streams.sh [--cases stream,bidi,rest_h2]
#        [--duration 10] [--warmup 3] [--out DIR]
# Needs the rig's tools and peers (it runs ../shared/bench/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rig="${BENCH_RIG:-$(cd .. && pwd)/shared/bench}"
[ -x "$rig/setup.sh" ] || { echo "no benchmark rig at $rig (set BENCH_RIG)" >&2; exit 1; }
cache="${BENCH_CACHE:-$HOME/.cache/protogate-bench}"
cases=stream,bidi,rest_h2
duration=10
warmup=3
out=""
while (($#)); do
  case $1 in
    --cases) cases=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
out="${out:-$root/target/bench-streams/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
load_cpus="${LOAD_CPUS:-0}"
server_cpus="${SERVER_CPUS:-1}"
LOAD=(taskset -c "$load_cpus")
SERVER=(taskset -c "$server_cpus")
log() { printf '[bench-streams] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cargo build --release --locked -p protogate --bin protogate -p protogate-bench-streams
"$rig/setup.sh" >&2
pg="$root/target/release/protogate"
sbin="$root/target/release"

# grpc-gateway for stream.proto, built like the rig's own (GOPATH mode
# against Debian's Go sources), rebuilt when its inputs change.
gw_bin="$cache/bin/bench-stream-grpc-gateway"
gw_hash=$(cat benches/streams/protos/benchstream/v1/stream.proto benches/streams/grpc-gateway/main.go | sha256sum | cut -d' ' -f1)
if [[ ! -x $gw_bin || "$(cat "$gw_bin.stamp" 2>/dev/null)" != "$gw_hash" ]]; then
  log "building grpc-gateway for stream.proto"
  export GO111MODULE=off GOFLAGS='' GOPROXY=off
  export GOPATH="$cache/gopath:/usr/share/gocode" GOCACHE="$cache/go-build"
  src="$cache/gopath/src/benchstream"
  rm -rf "$src" && mkdir -p "$src/streamv1" "$src/grpc-gateway"
  protoc -I benches/streams/protos -I protos -I/usr/include \
    --go_out=plugins=grpc:"$src/streamv1" --grpc-gateway_out=logtostderr=true:"$src/streamv1" \
    benches/streams/protos/benchstream/v1/stream.proto
  # protoc writes under the go_package path; the package lives in streamv1/.
  find "$src/streamv1" -name '*.go' -exec mv {} "$src/streamv1/" \;
  cp benches/streams/grpc-gateway/main.go "$src/grpc-gateway/"
  (cd "$src" && go build -trimpath -o "$gw_bin" benchstream/grpc-gateway)
  printf '%s\n' "$gw_hash" >"$gw_bin.stamp"
fi
protoc -I benches/streams/protos -I protos -I/usr/include --include_imports \
  --descriptor_set_out="$out/stream.pb" benches/streams/protos/benchstream/v1/stream.proto

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
started_pid=""
start() { # name command... (pinned to the server CPUs)
  local name=$1; shift
  "${SERVER[@]}" "$@" >"$out/$name.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}
wait_port() { # host:port
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on $1"
}
ticks() { # pid -> utime+stime in clock ticks
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
core_ticks() { # busy ticks of the server CPUs
  local list; list=$(echo "$server_cpus" | tr ',' ' ')
  awk -v cpus=" $list " '$1 ~ /^cpu[0-9]+$/ { n = substr($1, 4); if (index(cpus, " " n " ")) busy += $2 + $3 + $4 + $7 + $8 }
    END { print busy + 0 }' /proc/stat
}
hz=$(getconf CLK_TCK)

envoy_yaml() { # file listen_port admin_port backend_port kind(rest|grpc) service descriptor
  local codec=HTTP2 filters=""
  if [[ $5 == rest ]]; then
    codec=AUTO
    filters="
                  - name: envoy.filters.http.grpc_json_transcoder
                    typed_config:
                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder
                      proto_descriptor: \"$7\"
                      services: [\"$6\"]
                      print_options:
                        add_whitespace: false
                        always_print_primitive_fields: false
                        always_print_enums_as_ints: false
                        preserve_proto_field_names: false
                        stream_newline_delimited: true"
  fi
  cat >"$1" <<YAML
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $3 } }
static_resources:
  listeners:
    - name: bench
      address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: bench
                codec_type: $codec
                stream_idle_timeout: 0s
                route_config:
                  virtual_hosts:
                    - name: bench
                      domains: ["*"]
                      routes:
                        - match: { prefix: "/" }
                          route: { cluster: backend, timeout: 0s }
                http_filters:$filters
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: backend
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: backend
        endpoints:
          - lb_endpoints:
              - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $4 } } }
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options: {}
YAML
}
start_envoy() { # name yaml
  start "$1" "$cache/bin/envoy" -c "$2" --concurrency 1 --log-level warn --disable-hot-restart \
    --base-id "$RANDOM"
}
protogate_yaml() { # file listen include proto backend_addr services
  cat >"$1" <<YAML
server:
  listen: $2
descriptors:
  include: [$3]
  protos: [$4]
backends:
  bench:
    address: http://$5
    services: [$6]
# Chat has no HTTP rule; passthrough serves the methods that are routed.
transcoding:
  fallback_routes: true
openapi:
  enabled: false
YAML
}

results="$out/results.tsv"
printf 'case\ttarget\tmessages_per_s\tp50_ms\tp99_ms\tgateway_us_per_msg\tcore_us_per_msg\terrors\n' >"$results"
measure() { # case target gateway_pid messages_field... : runs "$@" after the first three, expects one TSV line "msgs/s p50 p99 errors"
  local case=$1 target=$2 gpid=$3; shift 3
  local g0 c0 g1 c1 line
  g0=$( [[ $gpid == - ]] && echo 0 || ticks "$gpid"); c0=$(core_ticks)
  line=$("$@")
  g1=$( [[ $gpid == - ]] && echo 0 || ticks "$gpid"); c1=$(core_ticks)
  read -r rate p50 p99 errors <<<"$line"
  # CPU ticks span warm-up and measurement alike; the rate over both is the same load.
  local total=$(( warmup + duration ))
  awk -v c="$case" -v t="$target" -v r="$rate" -v p50="$p50" -v p99="$p99" -v e="$errors" \
      -v g=$((g1 - g0)) -v k=$((c1 - c0)) -v hz="$hz" -v s="$total" -v gp="$gpid" 'BEGIN {
    msgs = r * s; gu = (gp == "-") ? "-" : sprintf("%.2f", g / hz * 1e6 / msgs)
    printf "%s\t%s\t%.0f\t%s\t%s\t%s\t%.2f\t%s\n", c, t, r, p50, p99, gu, k / hz * 1e6 / msgs, e }' | tee -a "$results"
}
# wrk's summary as "msgs/s p50 p99 errors", messages = requests x per_request.
wrk_load() { # per_request url [header]
  local per=$1 url=$2 hdr=${3:-}
  local text
  text=$("${LOAD[@]}" wrk -t 1 -c 16 -d "$((warmup + duration))s" --latency ${hdr:+-H "$hdr"} "$url")
  echo "$text" >>"$out/wrk.log"
  awk -v per="$per" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx|Socket errors/ { err += 1 }
    END { printf "%.0f %.2f %.2f %d\n", rps * per, p50, p99, err + 0 }' <<<"$text"
}
h2load_load() { # h2load's url and options -> "req/s p50 p99 errors" (latencies from its request log)
  local text
  text=$("${LOAD[@]}" h2load -t 1 -c 64 -m 1 -D "$duration" --warm-up-time="$warmup" \
    --log-file "$out/h2load.reqlog" "$@")
  echo "$text" >>"$out/h2load.log"
  local rps errors p50 p99
  rps=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^req\/s/) { gsub(",", "", $i); print $i } }' <<<"$text")
  errors=$(awk '/^requests:/ { print $10 + $12 + $14 }' <<<"$text")
  read -r p50 p99 < <(awk -F'\t' '{ print $3 }' "$out/h2load.reqlog" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan nan"; exit }
      i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++; i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
      printf "%.2f %.2f\n", v[i50 < 1 ? 1 : i50] / 1000, v[i99 < 1 ? 1 : i99] / 1000 }')
  rm -f "$out/h2load.reqlog"
  echo "$rps $p50 $p99 $errors"
}

# Retries a check for a while: a listener may accept before it can serve.
eventually() {
  for _ in $(seq 1 100); do "$@" && return 0; sleep 0.1; done
  return 1
}
items_of() { # url -> number of items in the 1,000-item stream it answers
  curl -sf -H 'Accept: application/x-ndjson' "$1/v1/stream/items?count=1000" | grep -c '"id":"item-'
}
answers_1000() { [[ $(items_of "$1") == 1000 ]]; }

has() { [[ ",$cases," == *",$1,"* ]]; }

if has stream || has bidi; then
  start stream-backend "$sbin/bench-stream-backend" --listen 127.0.0.1:50161; backend_pid=$started_pid
  protogate_yaml "$out/protogate-stream.yaml" 127.0.0.1:8095 "$root/benches/streams/protos" \
    benchstream/v1/stream.proto 127.0.0.1:50161 'benchstream.v1.*'
  RUST_LOG=warn start protogate-stream "$pg" serve --config "$out/protogate-stream.yaml"; pg_pid=$started_pid
  start grpc-gateway-stream "$gw_bin" -listen 127.0.0.1:50162 -backend 127.0.0.1:50161; gw_pid=$started_pid
  envoy_yaml "$out/envoy-stream.yaml" 50163 50164 50161 rest benchstream.v1.StreamService "$out/stream.pb"
  start_envoy envoy-stream "$out/envoy-stream.yaml"; envoy_pid=$started_pid
  envoy_yaml "$out/envoy-grpc-stream.yaml" 50165 50166 50161 grpc
  start_envoy envoy-grpc-stream "$out/envoy-grpc-stream.yaml"; envoy_grpc_pid=$started_pid
  for p in 50161 8095 50162 50163 50165; do wait_port "127.0.0.1:$p"; done
fi

if has stream; then
  # Every target answers 1,000 lines, each one message.
  for url in http://127.0.0.1:8095 http://127.0.0.1:50162 http://127.0.0.1:50163; do
    eventually answers_1000 "$url" || die "$url answered $(items_of "$url") items, not 1000"
  done
  q='/v1/stream/items?count=1000'
  measure stream direct-grpc - "${LOAD[@]}" "$sbin/bench-stream-load" --addr 127.0.0.1:50161 \
    --warmup "$warmup" --duration "$duration" server --concurrency 16 --count 1000
  measure stream grpc-gateway "$gw_pid" wrk_load 1000 "http://127.0.0.1:50162$q"
  measure stream envoy "$envoy_pid" wrk_load 1000 "http://127.0.0.1:50163$q"
  measure stream protogate "$pg_pid" wrk_load 1000 "http://127.0.0.1:8095$q" 'Accept: application/x-ndjson'
fi

if has bidi; then
  for t in direct-grpc:50161:- envoy-grpc:50165:$envoy_grpc_pid protogate-grpc:8095:$pg_pid; do
    IFS=: read -r name port pid <<<"$t"
    measure bidi "$name" "$pid" "${LOAD[@]}" "$sbin/bench-stream-load" --addr "127.0.0.1:$port" \
      --warmup "$warmup" --duration "$duration" bidi --streams 64
  done
fi

if has rest_h2; then
  start rig-backend "$cache/bin/bench-backend" -addr 127.0.0.1:50171
  protogate_yaml "$out/protogate-rest.yaml" 127.0.0.1:8096 "$rig/protos" bench.proto 127.0.0.1:50171 'bench.v1.*'
  RUST_LOG=warn start protogate-rest "$pg" serve --config "$out/protogate-rest.yaml"; pgr_pid=$started_pid
  envoy_yaml "$out/envoy-rest.yaml" 50173 50174 50171 rest bench.v1.BenchService "$cache/bench.pb"
  start_envoy envoy-rest "$out/envoy-rest.yaml"; envoyr_pid=$started_pid
  for p in 50171 8096 50173; do wait_port "127.0.0.1:$p"; done
  for t in envoy:50173:$envoyr_pid protogate:8096:$pgr_pid; do
    IFS=: read -r name port pid <<<"$t"
    for c in echo get_item; do
      if [[ $c == echo ]]; then
        args=(-d "$rig/cases/echo.json" -H 'content-type: application/json' "http://127.0.0.1:$port/v1/echo")
      else
        args=("http://127.0.0.1:$port/v1/items/item-01234?view=ITEM_VIEW_FULL")
      fi
      check=("${args[@]}")
      [[ $c == echo ]] && check[1]="@${args[1]}"
      eventually curl -sf -o /dev/null --http2-prior-knowledge "${check[@]}" || die "$name did not answer $c over h2c"
      measure "rest_h2 $c" "$name" "$pid" h2load_load "${args[@]}"
    done
  done
fi
log "results: $results"
column -t -s $'\t' "$results"
