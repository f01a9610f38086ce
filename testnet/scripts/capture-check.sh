#!/usr/bin/env bash
# Captures the P2P traffic of a 3-node loopback testnet while a transfer with
# a known memo is sent and a block holding it is mined, then checks that no
# P2P segment carries the network magic, the genesis hash, the memo or the
# txid: every link is encrypted (Noise), so none of them may appear. As a
# control, the same search must find the memo in the captured RPC request
# that submitted it (plaintext HTTP on loopback), or the check proves
# nothing.
#
# Usage: testnet/scripts/capture-check.sh [PATH_TO_TESTNET_BINARY]
#   default binary: $CARGO_TARGET_DIR/release/testnet or target/release/testnet
# Needs: tcpdump (apt-get install tcpdump) with capture rights on `lo`
# (root or CAP_NET_RAW), curl, python3. Exits 0 when clean, 1 when a
# forbidden byte string is found, 2 when it cannot run.
set -euo pipefail

target_dir="${CARGO_TARGET_DIR:-target}"
testnet="${1:-$target_dir/release/testnet}"
for tool in tcpdump curl python3; do
    command -v "$tool" >/dev/null || { echo "capture-check: $tool is missing" >&2; exit 2; }
done
[ -x "$testnet" ] || { echo "capture-check: no testnet binary at $testnet (cargo build --release -p testnet)" >&2; exit 2; }

# Port bases away from the defaults, varied per run so parallel runs on one
# machine do not collide.
p2p_base=$(( 30000 + ($$ % 200) * 10 ))
rpc_base=$(( p2p_base + 5000 ))
work=$(mktemp -d /tmp/capture-check.XXXXXX)
up_pid=""
dump_pid=""
cleanup() {
    [ -n "$up_pid" ] && kill -INT "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
    [ -n "$dump_pid" ] && kill -INT "$dump_pid" 2>/dev/null && wait "$dump_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

p2p_ports="portrange $((p2p_base + 1))-$((p2p_base + 3))"
tcpdump -i lo -U -s 0 -w "$work/capture.pcap" \
    "tcp and ($p2p_ports or port $((rpc_base + 1)))" 2>"$work/tcpdump.log" &
dump_pid=$!
sleep 1
kill -0 "$dump_pid" 2>/dev/null || { cat "$work/tcpdump.log" >&2; echo "capture-check: tcpdump did not start" >&2; exit 2; }

"$testnet" up --fresh --chain regtest --nodes 3 --miners 0 --log info \
    --p2p-base "$p2p_base" --rpc-base "$rpc_base" --data-dir "$work/net" \
    >"$work/up.out" 2>"$work/up.err" </dev/null &
up_pid=$!
for _ in $(seq 1 180); do
    grep -q "Press Ctrl-C" "$work/up.out" 2>/dev/null && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.err" >&2; exit 2; }
    sleep 1
done
grep -q "Press Ctrl-C" "$work/up.out" || { echo "capture-check: testnet did not come up" >&2; exit 2; }

url() { echo "http://127.0.0.1:$((rpc_base + $1))"; }
memo="capture-check memo $$ $(date +%s%N)"
genesis=$(curl -sf "$(url 1)/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["genesis_hash"])')
# Coins to spend: mine on node 1 (every node sees the blocks by gossip).
curl -sf -X POST -H 'content-type: application/json' -d '{"blocks":2}' "$(url 1)/v1/dev/mine" >/dev/null
LEDGER_KEYSTORE="$work/keystore" "$testnet" wallet --rpc-url "$(url 1)" --json \
    send --from dev:0 --to dev:7 --amount 1.5 --memo "$memo" >"$work/send.json"
txid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["txid"])' "$work/send.json")
# The tx crosses two links (node 1 -> 2 -> 3 in the ring) before node 3 mines it.
for _ in $(seq 1 60); do
    curl -sf "$(url 3)/v1/txs/$txid" >/dev/null && break
    sleep 1
done
curl -sf "$(url 3)/v1/txs/$txid" >/dev/null || { echo "capture-check: tx never reached node 3" >&2; exit 2; }
curl -sf -X POST -H 'content-type: application/json' -d '{"blocks":1}' "$(url 3)/v1/dev/mine" >/dev/null
"$testnet" check --rpc-url "$(url 1),$(url 2),$(url 3)" --timeout 60 >/dev/null
tx_status() {
    curl -sf "$(url "$1")/v1/txs/$txid" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'
}
for _ in $(seq 1 60); do
    [ "$(tx_status 1)" = "confirmed" ] && break
    sleep 1
done
status=$(tx_status 1)
[ "$status" = "confirmed" ] || { echo "capture-check: tx is $status on node 1, not confirmed" >&2; exit 2; }

kill -INT "$up_pid"; wait "$up_pid" 2>/dev/null || true; up_pid=""
sleep 1
kill -INT "$dump_pid"; wait "$dump_pid" 2>/dev/null || true; dump_pid=""

python3 - "$work/capture.pcap" "$p2p_base" "$rpc_base" "$genesis" "$memo" "$txid" <<'PY'
import struct, sys
path, p2p_base, rpc_base, genesis, memo, txid = sys.argv[1:]
p2p_ports = {int(p2p_base) + i for i in (1, 2, 3)}
rpc_port = int(rpc_base) + 1
data = open(path, "rb").read()
magic_number = struct.unpack("<I", data[:4])[0]
endian = "<" if magic_number in (0xA1B2C3D4, 0xA1B23C4D) else ">"
link_type = struct.unpack(endian + "I", data[20:24])[0]
link_bytes = {1: 14, 113: 16, 276: 20}.get(link_type)
if link_bytes is None:
    sys.exit(f"capture-check: unknown link type {link_type}")
streams = {}
offset = 24
while offset + 16 <= len(data):
    _, _, included, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
    packet = data[offset + 16:offset + 16 + included]
    offset += 16 + included
    ip = packet[link_bytes:]
    if not ip or ip[0] >> 4 != 4 or ip[9] != 6:
        continue
    tcp = ip[(ip[0] & 0x0F) * 4:]
    source, destination = struct.unpack(">HH", tcp[:4])
    payload = tcp[(tcp[12] >> 4) * 4:]
    if payload:
        key = (source, destination)
        streams.setdefault(key, bytearray()).extend(payload)
p2p = [b for (s, d), b in streams.items() if s in p2p_ports or d in p2p_ports]
rpc = [b for (s, d), b in streams.items() if rpc_port in (s, d)]
p2p_bytes = sum(len(b) for b in p2p)
needles = {
    "network magic": bytes.fromhex(genesis)[:4],
    "genesis hash": bytes.fromhex(genesis),
    "memo": memo.encode(),
    "txid": bytes.fromhex(txid),
    "txid (hex)": txid.encode(),
}
print(f"captured {len(p2p)} P2P directions ({p2p_bytes} bytes), {len(rpc)} RPC directions")
if p2p_bytes < 1_000:
    sys.exit("capture-check: too little P2P traffic captured to judge")
if not any(memo.encode() in b for b in rpc):
    sys.exit("capture-check: control failed: the memo is not in the captured RPC request")
found = [name for name, needle in needles.items() if any(needle in b for b in p2p)]
if found:
    print("FOUND in P2P traffic: " + ", ".join(found))
    sys.exit(1)
print("clean: no magic, genesis hash, memo or txid in any P2P segment")
PY
