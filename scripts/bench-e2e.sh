#!/usr/bin/env bash
# End-to-end figures of docs/benchmarks.md: starts a fresh `herald serve`
# for each scenario, runs the load, prints the results. Needs wrk (Debian).
# Usage: scripts/bench-e2e.sh [runs]   (default 3 runs of each)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
make -s build
bin=bin/herald
. scripts/bench-lib.sh
lua=$(mktemp)
trap 'rm -f "$lua"; kill $srv 2>/dev/null || true' EXIT
wrk_lua "$lua"
start() { serve "$bin"; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$runs"); do
  start
  echo "-- wrk single-event publish, run $i"
  wrk -t1 -c32 -d10s -s "$lua" "$url/v1/topics/bench.pub/events" | grep -E 'Requests/sec|Latency'
  stop
done
for i in $(seq "$runs"); do
  start
  echo "-- batch publish (1000 events per request, 4 connections), run $i"
  "$bin" bench publish --server "$url" --conns 4 --batch 1000 --duration 8s --pid "$srv" | grep -E 'events|server'
  stop
done
start
echo "-- idle SSE connections"
"$bin" bench idle --server "$url" --conns 10000 --pid "$srv" | grep -E 'server|connect'
stop
for i in $(seq "$runs"); do
  start
  echo "-- fan-out 1,000 SSE subscribers x 100 events/s, run $i"
  "$bin" bench fanout --server "$url" --subs 1000 --rate 100 --duration 20s --pid "$srv" | grep -E 'delivered|latency|publish |server|loadgen'
  stop
done
for i in $(seq "$runs"); do
  start
  echo "-- fan-out 10,000 SSE subscribers x 20 events/s, run $i"
  "$bin" bench fanout --server "$url" --subs 10000 --rate 20 --duration 20s --pid "$srv" | grep -E 'delivered|latency|publish |server|loadgen'
  stop
done
