#!/usr/bin/env bash
# The WebSocket figures of docs/benchmarks.md: starts a fresh `herald serve`
# for each run, runs `herald bench` against it, prints the results.
# Usage: scripts/bench-ws.sh [runs]   (default 3 runs of each)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
make -s build
bin=bin/herald
addr=127.0.0.1:18080
url=http://$addr
trap 'kill $srv 2>/dev/null || true' EXIT

start() {
  HERALD_GRPC_ENABLED=false "$bin" serve --addr "$addr" --log-level warn & srv=$!
  for _ in $(seq 50); do curl -sf "$url/readyz" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
stop() { kill "$srv"; wait "$srv" 2>/dev/null || true; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for conns in 10000 19000; do
  for i in $(seq "$runs"); do
    start
    echo "-- idle WebSocket connections: $conns, run $i"
    "$bin" bench idle --server "$url" --transport ws --conns "$conns" --pid "$srv" | grep -E 'server|connect'
    stop
  done
done
fanout() { # subs rate
  for i in $(seq "$runs"); do
    start
    echo "-- fan-out $1 WebSocket subscribers x $2 events/s, run $i"
    "$bin" bench fanout --server "$url" --transport ws --subs "$1" --rate "$2" --duration 20s --pid "$srv" |
      grep -E 'delivered|rate|latency|publish |server|loadgen'
    stop
  done
}
fanout 10000 1
fanout 10000 5
fanout 10000 20
fanout 1000 100
fanout 2000 20
