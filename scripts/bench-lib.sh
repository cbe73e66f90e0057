# Shared by the scripts/bench-*.sh runs: source it after cd-ing to the repo.
# It defines addr and url, serve BIN [args...] (a fresh `herald serve` on
# addr, waited for until ready; extra environment as usual before the
# call), stop, and wrk_lua FILE [AUTH] (the 128-byte single-event publish
# of docs/benchmarks.md, with an Authorization header when AUTH is given).

addr=127.0.0.1:18080
url=http://$addr
srv=
trap 'kill $srv 2>/dev/null || true' EXIT

serve() { # bin [serve flags...]
  local bin=$1
  shift
  "$bin" serve --addr "$addr" --log-level warn "$@" & srv=$!
  for _ in $(seq 50); do curl -sf "$url/readyz" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2
  exit 1
}

stop() { kill "$srv"; wait "$srv" 2>/dev/null || true; }

wrk_lua() { # file [authorization]
  local payload
  payload=$(printf '{"seq":1,"pad":"%0110d"}' 0) # 128 bytes with the JSON framing
  {
    echo 'wrk.method = "POST"'
    echo "wrk.body = '$payload'"
    echo 'wrk.headers["Content-Type"] = "application/json"'
    if [ -n "${2:-}" ]; then echo "wrk.headers[\"Authorization\"] = \"$2\""; fi
  } >"$1"
}
