#!/usr/bin/env bash
# In-process verification rate of GatehouseResourceServer (one sequential task = one core) next to the
# raw crypto limit of this machine (`openssl speed`, one core), for ES256 and RS256.
# Usage: Benchmarks/verify.sh [SECONDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
S="${1:-3}"
swift build -c release --product verify-bench >&2
BIN="$(swift build -c release --show-bin-path)/verify-bench"
echo "== GatehouseResourceServer.TokenVerifier (full verification: parse, kid lookup, signature, claims)"
taskset -c 0 "$BIN" "$S"
echo "== openssl speed (one core)"
taskset -c 0 openssl speed -seconds "$S" ecdsap256 2>/dev/null | grep -E "256 bits ecdsa \(nistp256\)"
taskset -c 0 openssl speed -seconds "$S" rsa2048 2>/dev/null | grep -E "^rsa 2048 bits"
echo "(openssl columns: ECDSA sign verify sign/s verify/s; RSA sign verify sign/s verify/s)"
