#!/usr/bin/env bash
# The outbound-webhook figures of docs/benchmarks.md: starts a fresh
# `herald serve` (127.0.0.1 allowed as a webhook target) for each run and
# runs tools/webhook-bench against it:
#   throughput: 100 unordered subscriptions x 1,000 events (100,000
#     deliveries) to a local receiver, with the server's CPU per delivery
#   latency: one ordered subscription, 100 events/s for 20 s, publish->receiver
# Usage: scripts/bench-webhook.sh [runs] [engine]   (default 3 runs, memory engine)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
engine=${2:-memory}
make -s build
go build -o bin/webhook-bench ./tools/webhook-bench
bin=bin/herald
addr=127.0.0.1:18090
url=http://$addr
data=$(mktemp -d)
trap 'kill $srv 2>/dev/null || true; rm -rf "$data"' EXIT

start() {
  rm -rf "$data"/*
  HERALD_OUTBOUND_ALLOW_NETWORKS=127.0.0.1 "$bin" serve --addr "$addr" --grpc-addr 127.0.0.1:0 \
    --engine "$engine" --data-dir "$data" --log-level warn & srv=$!
  for _ in $(seq 50); do curl -sf "$url/readyz" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
stop() { kill "$srv"; wait "$srv" 2>/dev/null || true; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, engine $engine, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$runs"); do
  start
  echo "-- throughput, 100 unordered subscriptions x 1000 events, run $i (load $(cut -d' ' -f1 /proc/loadavg))"
  bin/webhook-bench -server "$url" -pid "$srv" -mode throughput -subs 100 -events 1000
  stop
done
for i in $(seq "$runs"); do
  start
  echo "-- latency, 1 ordered subscription, 100 events/s for 20s, run $i (load $(cut -d' ' -f1 /proc/loadavg))"
  bin/webhook-bench -server "$url" -pid "$srv" -mode latency -rate 100 -duration 20s
  stop
done
