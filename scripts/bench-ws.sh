#!/usr/bin/env bash
# The WebSocket figures of docs/benchmarks.md: starts a fresh `herald serve`
# for each run, runs `herald bench` against it, prints the results.
# Then the floor under the fan-out figures: tools/fanout-floor, the same
# fan-out with bare write(2) calls and epoll readers and no server.
# Usage: scripts/bench-ws.sh [runs]   (default 3 runs of each)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
make -s build
go build -o bin/fanout-floor ./tools/fanout-floor
bin=bin/herald
addr=127.0.0.1:18080
url=http://$addr
trap 'kill $srv 2>/dev/null || true' EXIT

start() { # [ws.writers]
  HERALD_GRPC_ENABLED=false HERALD_WS_WRITERS=${1:-0} HERALD_SSE_WRITERS=${1:-0} "$bin" serve --addr "$addr" --log-level warn & srv=$!
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
fanout() { # subs rate [transport [writers]]
  local transport=${3:-ws} writers=${4:-0}
  for i in $(seq "$runs"); do
    start "$writers"
    echo "-- fan-out $1 $transport subscribers x $2 events/s, writers ${writers/#0/default}, run $i"
    "$bin" bench fanout --server "$url" --transport "$transport" --subs "$1" --rate "$2" --duration 20s --pid "$srv" |
      grep -E 'delivered|rate|latency|publish |server|loadgen'
    stop
  done
}
fanout 10000 1
fanout 10000 5
fanout 10000 20
fanout 1000 100
fanout 2000 20
fanout 10000 5 sse
fanout 10000 1 ws 2
fanout 10000 5 ws 2
fanout 10000 20 ws 2
fanout 1000 100 ws 2
for writers in 2 1; do
  for i in $(seq "$runs"); do
    echo "-- floor: bare fan-out to 10000 connections x 5 rounds/s, $writers writer threads, run $i"
    bin/fanout-floor -conns 10000 -writers "$writers" -rounds 100 | grep -E 'writer|reader'
  done
done
