#!/usr/bin/env bash
# The authentication figures of docs/benchmarks.md: single-event publish
# (wrk, 32 connections) against a server with auth off and one with an API
# key, run after run on the same machine so that both columns see the same
# noise; then the JWT verification benchmarks of package auth.
# Usage: scripts/bench-auth.sh [runs]   (default 3 runs of each)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
make -s build
bin=bin/herald
. scripts/bench-lib.sh
dir=$(mktemp -d)
trap 'rm -rf "$dir"; kill $srv 2>/dev/null || true' EXIT

out=$("$bin" key new --name bench --publish 'bench.>')
key=$(awk '/^key:/ {print $2}' <<<"$out")
hash=$(awk '/^hash:/ {print $2}' <<<"$out")
cat >"$dir/auth.yaml" <<YAML
auth:
  api_keys:
    - name: bench
      hash: $hash
      grants:
        publish: ["bench.>"]
YAML
wrk_lua "$dir/open.lua"
wrk_lua "$dir/key.lua" "Bearer $key"
start() { serve "$bin" ${1:+--config "$1"}; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$runs"); do
  start
  echo "-- single-event publish, auth off, run $i"
  wrk -t1 -c32 -d10s -s "$dir/open.lua" "$url/v1/topics/bench.pub/events" | grep -E 'Requests/sec|Latency|Non-2xx'
  stop
  start "$dir/auth.yaml"
  echo "-- single-event publish, API key, run $i"
  wrk -t1 -c32 -d10s -s "$dir/key.lua" "$url/v1/topics/bench.pub/events" | grep -E 'Requests/sec|Latency|Non-2xx'
  stop
done
echo "-- JWT and API key verification (package auth)"
go test -run '^$' -bench . -benchmem ./internal/auth | grep -E '^Benchmark'
