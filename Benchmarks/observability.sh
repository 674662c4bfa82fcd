#!/usr/bin/env bash
# What metrics and tracing cost (BENCHMARKS.md, "Cost of metrics and tracing"): the cc and introspect
# targets of Benchmarks/run.sh against one release binary in three configurations, interleaved over
# ROUNDS rounds (A B C A B C …) so that drift of the machine falls on all three alike:
#   off      metrics=false, no tracing
#   metrics  the default (Prometheus metrics on)
#   tracing  metrics on and otel_endpoint set with otel_sampling_ratio=0.01, exporting to a real OTLP/HTTP
#            receiver on loopback (Benchmarks/otlp_sink.py, which decodes nothing and answers 200)
# Loopback only; every wrk run is bounded (DUR); every server this script starts is stopped by its PID.
#
# Usage: GATEHOUSE_BIN=dist/gatehouse Benchmarks/observability.sh
# Figures are medians over the rounds.
# Env:   ROUNDS=4 DUR=8s THREADS=2 CONNS=32 PORT=18091 PEERS_SRC=../shared/peers OUT=/tmp/gatehouse-obs-bench
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GATEHOUSE_BIN:?set GATEHOUSE_BIN to a release binary (scripts/release)}"
PORT="${PORT:-18091}"
ROUNDS="${ROUNDS:-4}"
export DUR="${DUR:-8s}"
PEERS_SRC="${PEERS_SRC:-$(cd .. && pwd)/shared/peers}"
OUT_BASE="${OUT:-/tmp/gatehouse-obs-bench}"
rm -rf "$OUT_BASE"; mkdir -p "$OUT_BASE"
WORK=$(mktemp -d)
SERVER_PID=""; SINK_PID=""
stop_server() { if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi; }
cleanup() {
    stop_server
    [[ -n $SINK_PID ]] && { kill "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

DB="sqlite://$WORK/bench.sqlite"
G() { "$GATEHOUSE_BIN" "$@" --database "$DB"; }
G migrate >/dev/null
G scopes create bench.read --description "benchmark scope" >/dev/null
CLIENT=$(G clients create --name bench --grant-type client_credentials --scope bench.read --json)
export NEW_CLIENT_ID=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$CLIENT")
export NEW_CLIENT_SECRET=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$CLIENT")
export NEW_TOKEN_URL="http://127.0.0.1:$PORT/oauth2/token" NEW_INTROSPECT_URL="http://127.0.0.1:$PORT/oauth2/introspect"

SINK_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 Benchmarks/otlp_sink.py "$SINK_PORT" "$WORK/sink.count" &
SINK_PID=$!

start() { # flags...
    GATEHOUSE_LOG_LEVEL=warning "$GATEHOUSE_BIN" serve --database "$DB" --port "$PORT" "$@" >>"$OUT_BASE/server.log" 2>&1 &
    SERVER_PID=$!
    local deadline=$((SECONDS + 30))
    until curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "server did not start" >&2; exit 1; }
        sleep 0.1
    done
}

declare -A FLAGS=(
    [off]="--metrics false"
    [metrics]=""
    [tracing]="--otel-endpoint http://127.0.0.1:$SINK_PORT --otel-sampling-ratio 0.01"
)
for round in $(seq "$ROUNDS"); do
    for variant in off metrics tracing; do
        # shellcheck disable=SC2086
        start ${FLAGS[$variant]}
        bash "$PEERS_SRC/wait_idle.sh" 80 120 >&2 || true
        OUT="$OUT_BASE/$variant-$round" bash "$PEERS_SRC/bench_peers.sh" new-cc new-introspect >&2
        stop_server
    done
done

python3 - "$OUT_BASE" "$ROUNDS" "$WORK/sink.count" <<'PY'
import json, os, sys
base, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
for variant in ("off", "metrics", "tracing"):
    for r in range(1, rounds + 1):
        for line in open(os.path.join(base, f"{variant}-{r}", "results.jsonl")):
            d = json.loads(line)
            rows.setdefault((variant, d["label"]), []).append(d)
import statistics
def mean(xs): return statistics.median(xs)  # the median over rounds: one disturbed run moves it least
print(f'{"target":<16}{"variant":<10}{"req/s":>10}{"p50 ms":>9}{"p99 ms":>9}{"CPU ms/req":>12}{"req/s vs off":>14}{"CPU vs off":>12}{"non2xx":>8}')
for label in ("new-cc", "new-introspect"):
    base_rps = mean([d["rps"] for d in rows[("off", label)]])
    base_cpu = mean([d["server_cpu_ms_per_req"] for d in rows[("off", label)]])
    for variant in ("off", "metrics", "tracing"):
        ds = rows[(variant, label)]
        rps, cpu = mean([d["rps"] for d in ds]), mean([d["server_cpu_ms_per_req"] for d in ds])
        print(f'{label:<16}{variant:<10}{rps:>10.0f}{mean([d["p50_ms"] for d in ds]):>9.2f}{mean([d["p99_ms"] for d in ds]):>9.2f}'
              f'{cpu:>12.3f}{(rps / base_rps - 1) * 100:>+13.1f}%{(cpu / base_cpu - 1) * 100:>+11.1f}%{sum(d["non2xx3xx"] for d in ds):>8}')
try:
    print("spans received by the OTLP sink:", open(sys.argv[3]).read().strip())
except OSError:
    pass
PY
