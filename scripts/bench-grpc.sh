#!/usr/bin/env bash
# The gRPC figures of docs/benchmarks.md: starts a fresh `herald serve` for
# each run, runs `herald bench` against it, prints the results.
#   unary Publish calls/s, PublishStream events/s, and a 1,000-stream
#   Subscribe fan-out next to the same SSE fan-out (server CPU per delivery)
# Usage: scripts/bench-grpc.sh [runs]   (default 3 runs of each)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
make -s build
bin=bin/herald
addr=127.0.0.1:18090
grpc=127.0.0.1:19090
url=http://$addr
trap 'kill $srv 2>/dev/null || true' EXIT

start() {
  "$bin" serve --addr "$addr" --grpc-addr "$grpc" --log-level warn & srv=$!
  for _ in $(seq 50); do curl -sf "$url/readyz" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
stop() { kill "$srv"; wait "$srv" 2>/dev/null || true; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
publish() { # label, then herald bench publish flags
  local label=$1; shift
  for i in $(seq "$runs"); do
    start
    echo "-- $label, run $i (load $(cut -d' ' -f1 /proc/loadavg))"
    "$bin" bench publish --server "$url" --grpc-addr "$grpc" --transport grpc --duration 10s --pid "$srv" "$@" |
      grep -E 'requests|events|latency|server|loadgen'
    stop
  done
}
publish "unary Publish, 2 connections x 64 calls in flight" --conns 2 --in-flight 64
publish "PublishStream, batches of 100, 2 streams x 16 requests in flight" --stream --batch 100 --conns 2 --in-flight 16

fanout() { # label, then herald bench fanout flags
  local label=$1; shift
  for i in $(seq "$runs"); do
    start
    echo "-- $label, run $i (load $(cut -d' ' -f1 /proc/loadavg))"
    "$bin" bench fanout --server "$url" --grpc-addr "$grpc" --subs 1000 --rate 100 --duration 20s --pid "$srv" "$@" |
      grep -E 'delivered|latency|publish |server|loadgen'
    stop
  done
}
fanout "fan-out 1,000 SSE subscribers x 100 events/s" --transport sse
fanout "fan-out 1,000 gRPC Subscribe streams x 100 events/s, a connection each" --transport grpc
fanout "fan-out 1,000 gRPC Subscribe streams x 100 events/s, 100 per connection" --transport grpc --streams-per-conn 100
fanout "fan-out 1,000 gRPC Subscribe streams x 100 events/s, 10 per connection" --transport grpc --streams-per-conn 10
