#!/usr/bin/env bash
# Node benchmarks (figures go to BENCHMARKS.md): GET /v1/accounts/{addr}
# req/s, POST /v1/txs accepted tx/s with pre-signed transfers, idle RSS and
# RSS with a full 50,000-tx mempool. The load comes from `wrk` (Debian
# package `wrk`), a separate process on the same machine.
#
#   cargo build --release -p node --bin ledger-node --example bench_txs
#   node/bench/run.sh [json|raw] [connections]
set -euo pipefail
FORMAT=${1:-json}
CONNS=${2:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release/ledger-node
WORK=$(mktemp -d)
RPC=127.0.0.1:18080
trap 'kill $NODE_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$ROOT/target/release/examples/bench_txs" 50000 "$WORK/txs.lua" "$FORMAT"

start_node() {
  rm -rf "$WORK/data"
  "$BIN" --chain regtest --data-dir "$WORK/data" --rpc-addr $RPC --p2p-addr 127.0.0.1:0 \
    --no-discovery --log warn >"$WORK/node.out" 2>"$WORK/node.err" &
  NODE_PID=$!
  for _ in $(seq 100); do curl -sf http://$RPC/ready >/dev/null && return; sleep 0.1; done
  echo "node did not become ready" >&2; exit 1
}
rss() { awk '/VmRSS/ {print $2 " kB"}' /proc/$NODE_PID/status; }
accepted() { curl -s http://$RPC/metrics | awk '/^ledger_txs_accepted_total/ {print $2}'; }

start_node
sleep 2
echo "idle RSS: $(rss)"
ADDR=$(awk '$1 == "1" {print $2}' "$WORK/node.out")
echo "== GET /v1/accounts/$ADDR"
wrk -t2 -c64 -d10s "http://$RPC/v1/accounts/$ADDR" | grep -E "Requests/sec|Latency"

echo "== POST /v1/txs ($FORMAT bodies, $CONNS connections)"
THREADS=2 TXS="$WORK/txs.lua" wrk -t2 -c"$CONNS" -d8s -s "$ROOT/node/bench/post_txs.lua" "http://$RPC" \
  >"$WORK/wrk.out" &
WRK_PID=$!
# Sample the node's own counter: the rate while bodies last, not diluted by
# the /health filler the script sends once its share is used up.
START=$(date +%s.%N); FIRST=$(accepted)
while sleep 0.25; do
  NOW=$(accepted)
  [ "${NOW:-0}" -ge 50000 ] && break
  kill -0 $WRK_PID 2>/dev/null || break
done
END=$(date +%s.%N)
wait $WRK_PID || true
cat "$WORK/wrk.out" | tail -1
echo "accepted $((NOW - ${FIRST:-0})) txs in $(echo "$END - $START" | bc) s: $(echo "($NOW - ${FIRST:-0}) / ($END - $START)" | bc) tx/s (node counter)"
curl -s "http://$RPC/v1/mempool?limit=0"; echo
echo "RSS with full mempool: $(rss)"
