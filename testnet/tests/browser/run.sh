#!/usr/bin/env bash
# Browser test of the explorer page served by a running node, in real
# headless Chromium (Debian package `chromium`).
#
#   testnet/tests/browser/run.sh <rpc-url> [--screenshots DIR] [--txid TXID] [--timeout SECS]
#
# The node must allow POST /v1/dev/mine from here (regtest or dev chain,
# loopback, or LEDGER_RPC_ADMIN_TOKEN set). If the chain has no transaction
# to search for yet, one is sent from dev account 0 with wallet-cli: taken
# from $WALLET_CLI, PATH, or this repo's target/ (built with cargo if absent).
# Exits 0 only when every check passes; the last line is the summary.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: $0 <rpc-url> [--screenshots DIR] [--txid TXID] [--timeout SECS]" >&2
  exit 2
fi

if [[ -z "${CHROMIUM:-}" ]]; then
  for candidate in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$candidate" >/dev/null 2>&1; then CHROMIUM="$(command -v "$candidate")"; break; fi
  done
fi
if [[ -z "${CHROMIUM:-}" ]]; then
  echo "FAIL explorer browser test: no Chromium found (apt-get install -y chromium, or set CHROMIUM)" >&2
  exit 1
fi
export CHROMIUM

# wallet-cli is only needed when the chain has no transaction yet; a build
# failure here is not fatal, the test then says what it is missing.
if [[ -z "${WALLET_CLI:-}" ]]; then
  if command -v wallet-cli >/dev/null 2>&1; then
    WALLET_CLI="$(command -v wallet-cli)"
  else
    for profile in release debug; do
      if [[ -x "$target_dir/$profile/wallet-cli" ]]; then WALLET_CLI="$target_dir/$profile/wallet-cli"; break; fi
    done
    if [[ -z "${WALLET_CLI:-}" ]] && command -v cargo >/dev/null 2>&1; then
      echo "building wallet-cli (to send a test transaction if the chain has none)" >&2
      if (cd "$repo" && cargo build --quiet -p wallet-cli) >&2; then
        WALLET_CLI="$target_dir/debug/wallet-cli"
      fi
    fi
  fi
fi
if [[ -n "${WALLET_CLI:-}" ]]; then export WALLET_CLI; fi

exec python3 "$here/explorer_test.py" "$@"
