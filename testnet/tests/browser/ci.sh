#!/usr/bin/env bash
# CI wrapper for the explorer browser tests: starts a real release
# `ledger-node` on the regtest chain in a temp dir, waits until it is ready,
# runs run.sh (Chromium) and firefox_test.py (Firefox) against it, and
# always stops the node.
#
#   testnet/tests/browser/ci.sh [--screenshots DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
data="$(mktemp -d)"
rpc_port=$((20000 + $$ % 20000))
p2p_port=$((rpc_port + 1))
log="$data/node.log"

"$bin/ledger-node" --chain regtest --data-dir "$data/node" \
  --rpc-addr "127.0.0.1:$rpc_port" --p2p-addr "127.0.0.1:$p2p_port" --no-discovery \
  >"$log" 2>&1 &
node_pid=$!
cleanup() {
  kill -TERM "$node_pid" 2>/dev/null || true
  wait "$node_pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

deadline=$(( $(date +%s) + 30 ))
until curl -fsS "http://127.0.0.1:$rpc_port/ready" >/dev/null 2>&1; do
  if ! kill -0 "$node_pid" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
    echo "FAIL explorer browser test: node did not become ready; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done

WALLET_CLI="$bin/wallet-cli" bash "$here/run.sh" "http://127.0.0.1:$rpc_port" "$@"
# The same page in Firefox, where one is installed (.ci/run installs it).
if command -v firefox-esr >/dev/null 2>&1 || command -v firefox >/dev/null 2>&1; then
  python3 "$here/firefox_test.py" "http://127.0.0.1:$rpc_port"
else
  echo "SKIPPED explorer Firefox test: no Firefox installed"
fi
