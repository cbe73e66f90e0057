#!/usr/bin/env bash
# The Redis engine figures of docs/benchmarks.md (issue 19). Starts its own
# redis-server on a free port (no persistence; the publish runs again with
# appendonly yes / appendfsync everysec) and herald nodes with --engine redis
# on 127.0.0.1:18181…, all fresh for each run, and prints:
#   ceiling  Redis's own ceiling for herald's append pattern: the engine's
#            publish script alone, auto-pipelined (go test -bench)
#   publish  single events through one node (wrk when installed, and
#            herald bench publish with many connections: HTTP, gRPC
#            unary calls, gRPC PublishStream, WebSocket), batches; Redis
#            CPU time per event from /proc/PID/stat; the same wrk against
#            the memory engine, the floor of any engine through one node
#   fanout   the same subscribers over 1, 2 and 3 nodes, and on one node of
#            the memory engine: deliveries/s, CPU per delivery, latency
#   big      45,000 subscribers on 3 nodes (SSE and WebSocket, 6 load
#            processes), a slow publish stream, RSS per node and per
#            connection
# Usage: scripts/bench-redis.sh [runs] [sections...]   (default: 3 runs of every section)
# Environment: FANOUT_SUBS (3000), FANOUT_RATE (20), FANOUT_DURATION (20s),
# BIG_SUBS (45000), BIG_RATE (1), BIG_DURATION (30s).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
sections=${*:-ceiling publish fanout big}
go build -o bin/herald ./cmd/herald
bin=bin/herald
tmp=$(mktemp -d)
redis_pid=
node_pids=()
cleanup() {
  for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

redis_start() { # [aof]
  local persist=(--appendonly no)
  [ "${1:-}" = aof ] && persist=(--appendonly yes --appendfsync everysec)
  rm -rf "$tmp/redis" && mkdir -p "$tmp/redis"
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" "${persist[@]}" --dir "$tmp/redis" \
    --logfile "$tmp/redis/log" & redis_pid=$!
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis-server did not start" >&2
  exit 1
}
redis_stop() { kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; redis_pid=; }

nodes_start() { # n [engine]
  local engine=${2:-redis} i
  node_pids=()
  for i in $(seq "$1"); do
    local args=(--engine "$engine")
    [ "$engine" = redis ] && args+=(--redis-url "redis://127.0.0.1:$redis_port")
    # gRPC only where a section asks for it (grpc=true), on 127.0.0.1:1919N.
    HERALD_GRPC_ENABLED=${grpc:-false} HERALD_GRPC_ADDR="127.0.0.1:1919$i" "$bin" serve --addr "127.0.0.1:1818$i" --log-level warn "${args[@]}" &
    node_pids+=($!)
  done
  for i in $(seq "$1"); do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:1818$i/readyz" >/dev/null && continue 2; sleep 0.1; done
    echo "node $i did not start" >&2
    exit 1
  done
}
nodes_stop() {
  local p
  for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  node_pids=()
}
urls() { local u=() i; for i in $(seq "$1"); do u+=("http://127.0.0.1:1818$i"); done; (IFS=,; echo "${u[*]}"); }

# cpu_ticks PID: utime+stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# redis_cpu_line TICKS0 N UNIT: Redis's CPU time since TICKS0, per N UNITs.
redis_cpu_line() {
  local t1 hz
  t1=$(cpu_ticks "$redis_pid")
  hz=$(getconf CLK_TCK)
  awk -v a="$1" -v b="$t1" -v hz="$hz" -v n="$2" -v unit="$3" \
    'BEGIN { s = (b - a) / hz; printf "redis      cpu %.2fs, %.2f µs per %s\n", s, (n > 0 ? s * 1e6 / n : 0), unit }'
}
load() { echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, $(redis-server --version | cut -d' ' -f3), $(load)"

ceiling() {
  redis_start
  echo "-- ceiling: the publish script alone and Engine.Append, auto-pipelined; $(load)"
  # (go test matches -bench level by level, split at the slashes)
  local sel
  for sel in 'PublishScript/batch=1$/conc=(16|64|256)$ 20000x' 'PublishScript/batch=100$/conc=(16|64)$ 1000x' \
    'EngineAppend/batch=1$/conc=64$ 20000x' 'EngineAppend/batch=100$/conc=64$ 1000x'; do
    HERALD_BENCH_REDIS_URL=redis://127.0.0.1:$redis_port go test -run '^$' -bench "${sel% *}" \
      -benchtime "${sel##* }" -count "$runs" ./internal/engine/redis | grep -E '^Benchmark'
  done
  redis_stop
}

publish() {
  local lua persist
  lua=$tmp/pub.lua
  payload=$(printf '{"seq":1,"pad":"%0110d"}' 0) # 128 bytes, as scripts/bench-lib.sh
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "'$payload'" >"$lua"
  for persist in none aof; do
    for i in $(seq "$runs"); do
      if command -v wrk >/dev/null; then
        redis_start "${persist/none/}"
        nodes_start 1
        echo "-- publish: wrk single events, 64 connections, one node, appendonly $persist, run $i; $(load)"
        t0=$(cpu_ticks "$redis_pid")
        out=$(wrk -t1 -c64 -d10s -s "$lua" "http://127.0.0.1:18181/v1/topics/bench.pub/events")
        echo "$out" | grep -E 'Requests/sec|Latency|Non-2xx' || true
        n=$(echo "$out" | awk '/requests in/ {print $1}')
        redis_cpu_line "$t0" "$n" event
        nodes_stop
        redis_stop
        if [ "$persist" = none ]; then
          # The floor: the same wrk command against one node of the memory
          # engine (no Redis at all); no engine does better through one node.
          nodes_start 1 memory
          echo "-- publish: wrk single events, 64 connections, one node, memory engine (the floor), run $i; $(load)"
          wrk -t1 -c64 -d10s -s "$lua" "http://127.0.0.1:18181/v1/topics/bench.pub/events" | grep -E 'Requests/sec|Latency|Non-2xx' || true
          nodes_stop
        fi
      fi
      for shape in "--conns 256" "--conns 4 --batch 100" "--conns 4 --batch 1000" \
        "--transport grpc --conns 8 --in-flight 64" "--transport grpc --stream --conns 4 --in-flight 64" \
        "--transport ws --conns 4 --in-flight 64"; do
        redis_start "${persist/none/}"
        grpc=true nodes_start 1
        echo "-- publish: herald bench publish $shape, one node, appendonly $persist, run $i; $(load)"
        t0=$(cpu_ticks "$redis_pid")
        # shellcheck disable=SC2086
        out=$("$bin" bench publish --server http://127.0.0.1:18181 --grpc-addr 127.0.0.1:19191 $shape --duration 10s --pid "${node_pids[0]}" --json)
        echo "$out" | python3 -c 'import json,sys; r=json.load(sys.stdin); s=r.get("server_process") or {}
print("events     %d stored: %.0f events/s, %.0f req/s, errors %d; latency p50 %.2fms p99 %.2fms; server %.2f cores, %.2f µs per event" % (
  r["events"], r["events_per_s"], r["requests_per_s"], r["errors"], r["latency"]["p50_ms"], r["latency"]["p99_ms"], s.get("cpu_cores", 0), s.get("cpu_us_per_event", 0)))'
        n=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
        redis_cpu_line "$t0" "$n" event
        nodes_stop
        redis_stop
      done
    done
  done
}

fanout() {
  local subs=${FANOUT_SUBS:-3000} rate=${FANOUT_RATE:-20} dur=${FANOUT_DURATION:-20s}
  for i in $(seq "$runs"); do
    for n in mem 1 2 3; do
      if [ "$n" = mem ]; then
        nodes_start 1 memory
        nn=1
      else
        redis_start
        nodes_start "$n"
        nn=$n
      fi
      label="$n redis node(s)"
      [ "$n" = mem ] && label="1 memory-engine node"
      echo "-- fanout: $subs SSE subscribers x $rate events/s on $label, 3 load processes, run $i; $(load)"
      others=$(IFS=,; echo "${node_pids[*]:1}")
      t0=
      [ -n "$redis_pid" ] && t0=$(cpu_ticks "$redis_pid")
      "$bin" bench fanout --server http://127.0.0.1:18181 --subscribe "$(urls "$nn")" --procs 3 \
        --subs "$subs" --rate "$rate" --duration "$dur" --pid "${node_pids[0]}" ${others:+--node-pid "$others"} |
        grep -E 'sent|delivered|rate|latency|server|node|loadgen|warning|error' || true
      if [ -n "$t0" ]; then
        redis_cpu_line "$t0" "$(python3 -c "print(int($rate * ${dur%s}))")" "event published"
      fi
      nodes_stop
      [ -n "$redis_pid" ] && redis_stop
    done
  done
}

# rss_watch FILE PIDS…: every second, the highest VmRSS (KiB) of each pid so
# far, one line per pid, into FILE (until killed).
rss_watch() {
  local file=$1
  shift
  declare -A peak
  while :; do
    for p in "$@"; do
      r=$(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
      [ "${r:-0}" -gt "${peak[$p]:-0}" ] && peak[$p]=$r
    done
    for p in "$@"; do echo "$p ${peak[$p]:-0}"; done >"$file.new" && mv "$file.new" "$file"
    sleep 1
  done
}

big() {
  local subs=${BIG_SUBS:-45000} rate=${BIG_RATE:-1} dur=${BIG_DURATION:-30s}
  for i in $(seq "$runs"); do
    redis_start
    nodes_start 3
    declare -A base
    for p in "${node_pids[@]}"; do base[$p]=$(awk '/VmRSS/ {print $2}' "/proc/$p/status"); done
    rss_watch "$tmp/rss" "${node_pids[@]}" & watcher=$!
    echo "-- big: $subs subscribers (SSE and WebSocket) on 3 nodes, 6 load processes, $rate events/s for $dur, run $i; $(load)"
    "$bin" bench fanout --server http://127.0.0.1:18181 --subscribe "$(urls 3)" --procs 6 --transport sse,ws \
      --subs "$subs" --rate "$rate" --duration "$dur" --connect-timeout 5m --grace 10s \
      --pid "${node_pids[0]}" --node-pid "${node_pids[1]},${node_pids[2]}" |
      grep -E 'connect|sent|delivered|rate|latency|server|node|loadgen|warning|error' || true
    sleep 1
    kill "$watcher"
    wait "$watcher" 2>/dev/null || true
    per=$((subs / 3))
    while read -r p peak; do
      awk -v p="$p" -v b="${base[$p]}" -v m="$peak" -v n="$per" \
        'BEGIN { printf "rss        node pid %d: %.1f MiB idle, %.1f MiB peak, %.2f KiB per connection (%d each)\n", p, b / 1024, m / 1024, (m - b) / n, n }'
    done <"$tmp/rss"
    nodes_stop
    redis_stop
  done
}

for s in $sections; do "$s"; done
