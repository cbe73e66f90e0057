#!/usr/bin/env bash
# Before/after figures of a change to a hot path, on the same machine in
# the same run: for each scenario, runs of the old and the new binary
# alternate, so that both columns see the same machine noise.
# Usage: scripts/bench-compare.sh OLD_BIN NEW_BIN [runs]   (default 3)
# Scenarios: SSE and WebSocket fan-out (1,000 × 100/s, 10,000 × 20/s) and
# single-event publish (wrk, when installed).
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 runs=${3:-3}
. scripts/bench-lib.sh
lua=$(mktemp)
trap 'rm -f "$lua"; kill $srv 2>/dev/null || true' EXIT
wrk_lua "$lua"
start() { HERALD_GRPC_ENABLED=false serve "$1"; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "old: $old ($("$old" --version 2>/dev/null || true)); new: $new ($("$new" --version 2>/dev/null || true))"
for scenario in "sse 1000 100" "ws 1000 100" "sse 10000 20" "ws 10000 20"; do
  set -- $scenario
  for i in $(seq "$runs"); do
    for which in old new; do
      bin=$old; [ $which = new ] && bin=$new
      start "$bin"
      echo "-- $which: fan-out $2 $1 subscribers x $3 events/s, run $i"
      "$new" bench fanout --server "$url" --transport "$1" --subs "$2" --rate "$3" --duration 20s --pid "$srv" |
        grep -E 'delivered|latency|server' || true
      stop
    done
  done
done
if command -v wrk >/dev/null; then
  for i in $(seq "$runs"); do
    for which in old new; do
      bin=$old; [ $which = new ] && bin=$new
      start "$bin"
      echo "-- $which: wrk single-event publish, run $i"
      wrk -t1 -c32 -d10s -s "$lua" "$url/v1/topics/bench.pub/events" | grep -E 'Requests/sec|Latency'
      stop
    done
  done
fi
