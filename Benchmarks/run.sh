#!/usr/bin/env bash
# Load benchmark: Gatehouse (release build) side by side with the peer servers of ../shared/peers
# (django-oauth-toolkit and Authlib), same wrk parameters, one run. Loopback only; every wrk run is
# bounded (DUR); the server this script starts is stopped by its PID on exit.
#
# Usage: Benchmarks/run.sh            # Gatehouse + peers
#        PEERS=0 Benchmarks/run.sh    # Gatehouse only
# Env:   GATEHOUSE_BIN (default: swift build -c release, then .build/release/gatehouse)
#        PORT=18090  PEERS_SRC=../shared/peers  THREADS=2 CONNS=32 DUR=15s (passed to bench_peers.sh)
#        OUT=/tmp/gatehouse-bench
# Output: a summary table on stdout and JSON lines in $OUT/results.jsonl; also idle and peak RSS of the
#         Gatehouse process (from /proc/PID/status) in $OUT/rss.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-18090}"
PEERS="${PEERS:-1}"
PEERS_SRC="${PEERS_SRC:-$(cd .. && pwd)/shared/peers}"
export OUT="${OUT:-/tmp/gatehouse-bench}"
rm -rf "$OUT"; mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    [[ $PEERS == 1 && -x $PEERS_SRC/stop_all.sh ]] && bash "$PEERS_SRC/stop_all.sh" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

if [[ -z ${GATEHOUSE_BIN:-} ]]; then
    swift build -c release --product gatehouse >&2
    GATEHOUSE_BIN=.build/release/gatehouse
fi
DB="sqlite://$WORK/bench.sqlite"
G() { "$GATEHOUSE_BIN" "$@" --database "$DB"; }

G migrate >/dev/null
G scopes create bench.read --description "benchmark scope" >/dev/null
CLIENT=$(G clients create --name bench --grant-type client_credentials --scope bench.read --json)
CLIENT_ID=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$CLIENT")
CLIENT_SECRET=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$CLIENT")

GATEHOUSE_LOG_LEVEL=warning "$GATEHOUSE_BIN" serve --database "$DB" --port "$PORT" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
sleep 1
rss() { awk -v k="$1:" '$1==k {print $2}' "/proc/$SERVER_PID/status"; }
pss() { awk '$1=="Pss:" {print $2}' "/proc/$SERVER_PID/smaps_rollup"; }
IDLE_RSS=$(rss VmRSS); IDLE_ANON=$(rss RssAnon); IDLE_PSS=$(pss)

if [[ $PEERS == 1 ]]; then
    bash "$PEERS_SRC/setup_peers.sh" all >&2
fi
bash "$PEERS_SRC/wait_idle.sh" 85 600 >&2 || true

export NEW_TOKEN_URL="http://127.0.0.1:$PORT/oauth2/token" NEW_INTROSPECT_URL="http://127.0.0.1:$PORT/oauth2/introspect"
export NEW_CLIENT_ID="$CLIENT_ID" NEW_CLIENT_SECRET="$CLIENT_SECRET"
targets=(new-cc new-introspect)
[[ $PEERS == 1 ]] && targets+=(authlib-cc authlib-jwt-cc authlib-introspect dot-cc dot-introspect)
bash "$PEERS_SRC/bench_peers.sh" "${targets[@]}" | tee "$OUT/summary.txt"
# Like for like with the peers (their gunicorn sync workers close every connection).
echo "--- Connection: close ---"
CONN_CLOSE=1 bash "$PEERS_SRC/bench_peers.sh" new-cc new-introspect | tail -n +2 | sed 's/^new-/new-close-/' | tee -a "$OUT/summary.txt"

AFTER_RSS=$(rss VmRSS); PEAK_RSS=$(rss VmHWM); AFTER_ANON=$(rss RssAnon)
{
    printf 'gatehouse RSS: idle %s kB (anonymous %s kB, PSS %s kB), after load %s kB (anonymous %s kB), peak %s kB\n' \
        "$IDLE_RSS" "$IDLE_ANON" "$IDLE_PSS" "$AFTER_RSS" "$AFTER_ANON" "$PEAK_RSS"
    # The peers for context: the sum over each server's processes (gunicorn master + workers).
    for port in 8101 8102 8104; do
        pids=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
        [[ -z $pids ]] && continue
        total=0; for p in $pids; do total=$((total + $(awk '$1=="VmRSS:" {print $2}' "/proc/$p/status"))); done
        printf 'peer on :%s RSS: %s kB over %s processes\n' "$port" "$total" "$(wc -w <<<"$pids")"
    done
} | tee "$OUT/rss.txt"
nproc | sed 's/^/cores: /'
