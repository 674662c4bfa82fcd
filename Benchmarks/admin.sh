#!/usr/bin/env bash
# The admin API at 100,000 users (BENCHMARKS.md, "Administration at 100,000 users"), on SQLite and on
# PostgreSQL, against one release binary:
#   create   POST /admin/v1/users until USERS users exist (8 connections), with the bcrypt-free
#            `password_hash` import field: users per second
#   list     GET /admin/v1/users?limit=50 (the first page), 8 connections: p50/p99
#   deep     the same from a cursor in the middle of the table
#   narrow   GET /admin/v1/users?query=<a prefix of ~10 users>&limit=50
#   broad    GET /admin/v1/users?query=<one letter: thousands of users>&limit=50
# Loopback only; every wrk run is bounded; every process this script starts is stopped by its PID.
#
# Usage: GATEHOUSE_BIN=/path/to/release/gatehouse Benchmarks/admin.sh
# Env:   USERS=100000 DUR=10s PORT=18093 DBS="sqlite postgres" OUT=/tmp/gatehouse-admin-bench
#        BENCH_PG_URL=postgres://…  (else a throwaway cluster with PostgreSQL's default durability settings)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GATEHOUSE_BIN:?set GATEHOUSE_BIN to a release binary (scripts/release)}"
USERS="${USERS:-100000}"
DUR="${DUR:-10s}"
PORT="${PORT:-18093}"
DBS="${DBS:-sqlite postgres}"
OUT="${OUT:-/tmp/gatehouse-admin-bench}"
rm -rf "$OUT"; mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=""; PGDIR=""; PGBIN=""
as_pg() { if [[ $EUID -eq 0 ]]; then (cd "$PGDIR" && runuser -u postgres -- "$@"); else "$@"; fi; }
stop_server() { if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi; }
cleanup() {
    stop_server
    if [[ -n $PGDIR ]]; then as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$PGDIR"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

postgres_url() {
    if [[ -n ${BENCH_PG_URL:-} ]]; then echo "$BENCH_PG_URL"; return; fi
    PGBIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
    PGDIR=$(mktemp -d /tmp/gatehouse-bench-pg.XXXXXX)
    [[ $EUID -eq 0 ]] && chown postgres: "$PGDIR"
    local port; port=$(free_port)
    as_pg "$PGBIN/initdb" -D "$PGDIR/data" --auth=trust -U postgres --encoding=UTF8 --no-locale >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $PGDIR" start >/dev/null
    psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE bench" >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/bench"
}

start() {
    GATEHOUSE_LOG_LEVEL=warning "$GATEHOUSE_BIN" serve --database "$DB" --port "$PORT" --access-token-ttl 2h \
        --access-log false >>"$OUT/server-$NAME.log" 2>&1 &
    SERVER_PID=$!
    local deadline=$((SECONDS + 30))
    until curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "server did not start" >&2; exit 1; }
        sleep 0.1
    done
}

# One bcrypt hash (cost 10) for every imported user: the import stores it as given.
HASH='$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy'

cat >"$WORK/create.lua" <<EOF
-- Each wrk thread creates users with unique usernames (its own range) until the script stops wrk.
local counter = 0
local tid = 0
local first = {"Alice","Bob","Carol","Dan","Erin","Frank","Grace","Heidi","Ivan","Judy","Mallory","Niaj","Olivia","Peggy","Rupert","Sybil","Trent","Victor","Walter","Zoe"}
function init(args) tid = tonumber(args[1]) end
function request()
  counter = counter + 1
  local n = tid * 1000000 + counter
  local name = first[(n % #first) + 1] .. " " .. string.format("Example%d", n % 997)
  local body = string.format('{"username":"user%07d","email":"user%07d@example.com","name":"%s","password_hash":"%s"}', n, n, name, "$HASH")
  return wrk.format("POST", "/admin/v1/users", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("TOKEN")}, body)
end
function response(status) if status ~= 201 and status ~= 200 then io.stderr:write("status " .. status .. "\n") end end
EOF

cat >"$WORK/get.lua" <<'EOF'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
function response(status) if status ~= 200 then io.stderr:write("status " .. status .. "\n") end end
EOF

summary="$OUT/summary.txt"
: >"$summary"
for NAME in $DBS; do
    case $NAME in
        sqlite) DB="sqlite://$WORK/bench.sqlite" ;;
        postgres) DB=$(postgres_url) ;;
    esac
    "$GATEHOUSE_BIN" migrate --database "$DB" >/dev/null
    CLIENT=$("$GATEHOUSE_BIN" clients create --database "$DB" --name bench-admin --grant-type client_credentials --scope gatehouse:admin --json)
    ID=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$CLIENT")
    SECRET=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$CLIENT")
    start
    export TOKEN=$(curl -fs -u "$ID:$SECRET" -d grant_type=client_credentials -d scope=gatehouse:admin \
        "http://127.0.0.1:$PORT/oauth2/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

    # Create: 8 connections in two wrk processes (one thread, 4 connections each, disjoint username ranges),
    # stopped by their PIDs as soon as USERS users exist.
    users() { curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/admin/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["users"])'; }
    t0=$(date +%s.%N)
    pids=()
    for t in 0 1; do
        wrk -t1 -c4 -d30m -s "$WORK/create.lua" "http://127.0.0.1:$PORT" -- "$t" >"$OUT/create-$NAME-$t.txt" 2>&1 &
        pids+=($!)
    done
    deadline=$((SECONDS + 1800))
    until (( $(users) >= USERS )); do
        ((SECONDS < deadline)) || { echo "creating users took over 30 minutes" >&2; break; }
        sleep 0.5
    done
    t1=$(date +%s.%N)
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    count=$(users)
    rate=$(python3 -c "print(round($count / ($t1 - $t0)))")
    echo "$NAME create: $count users in $(python3 -c "print(round($t1 - $t0, 1))") s = $rate users/s" | tee -a "$summary"

    MID=$(python3 -c "import base64; print(base64.urlsafe_b64encode(b'user%07d' % ($USERS // 2)).decode().rstrip('='))")
    for target in "list:/admin/v1/users?limit=50" "deep:/admin/v1/users?limit=50&cursor=$MID" \
                  "narrow:/admin/v1/users?query=user004211&limit=50" "broad:/admin/v1/users?query=g&limit=50" \
                  "name:/admin/v1/users?query=grace%20example4&limit=50"; do
        label=${target%%:*}; path=${target#*:}
        curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$path" | python3 -c \
            'import json,sys; d=json.load(sys.stdin); print("  items:", len(d["items"]), "next:", d["next_cursor"] is not None)' >>"$OUT/items-$NAME.txt"
        wrk -t2 -c8 -d"$DUR" --latency -s "$WORK/get.lua" "http://127.0.0.1:$PORT$path" >"$OUT/$label-$NAME.txt" 2>&1
        p50=$(awk '$1=="50%"{print $2}' "$OUT/$label-$NAME.txt"); p99=$(awk '$1=="99%"{print $2}' "$OUT/$label-$NAME.txt")
        rps=$(awk '/Requests\/sec/{print $2}' "$OUT/$label-$NAME.txt")
        echo "$NAME $label: p50 $p50 p99 $p99 ($rps req/s)" | tee -a "$summary"
    done
    stop_server
done
echo "results in $OUT (summary.txt)"
