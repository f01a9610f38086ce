#!/usr/bin/env python3
"""Compares a real loopback testnet with `testnet sim` on the same ring.

Starts `testnet up --nodes N --miners 1 --chain regtest --no-discovery`
(a ring; node logs at debug for the P2P core so every "block accepted
from a peer" names its sender), drives `testnet load --tps R` for D
seconds, reads every node's `ledger_p2p_messages_sent_total{kind}` before
and after, then runs `testnet sim` on a ring of N with zero latency, one
miner, the real run's mean block interval and tx rate. Prints, side by
side, messages per node per block by kind and the hop counts at which
nodes got each block (the miner is hop 0).

Usage: sim_vs_real.py BIN_DIR [--nodes 6] [--tps 20] [--duration 60]
BIN_DIR holds release builds of `testnet` and `ledger-node`.
"""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

P2P_BASE, RPC_BASE = 17170, 18180


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def sent_by_kind(nodes):
    totals = collections.Counter()
    pattern = re.compile(r'^ledger_p2p_messages_sent_total\{kind="([a-z_]+)"\} (\d+)', re.M)
    for i in range(1, nodes + 1):
        for kind, value in pattern.findall(get(f"http://127.0.0.1:{RPC_BASE + i}/metrics")):
            totals[kind] += int(value)
    return totals


def statuses(nodes):
    return [json.loads(get(f"http://127.0.0.1:{RPC_BASE + i}/v1/status")) for i in range(1, nodes + 1)]


def real_hops(data_dir, nodes, ids, miner_index, since):
    """Hop counts per (block, node) from the nodes' debug logs, for blocks
    first accepted at or after `since` (an ISO timestamp: the load's
    start, so the blocks a node synced while the ring formed are left
    out)."""
    line = re.compile(r"^(\S+) DEBUG \S+ block accepted from a peer block=([0-9a-f]{64}) peer=([0-9a-f]{64})", re.M)
    came_from = collections.defaultdict(dict)  # block -> node index -> sender index
    for i in range(nodes):
        with open(os.path.join(data_dir, f"node{i + 1}", "node.log"), errors="replace") as log:
            for stamp, block, peer in line.findall(log.read()):
                if peer in ids and stamp >= since:
                    came_from[block][i] = ids[peer]
    histogram = collections.Counter()
    for block, senders in came_from.items():
        hops = {miner_index: 0}
        changed = True
        while changed:
            changed = False
            for node, sender in senders.items():
                if node not in hops and sender in hops:
                    hops[node] = hops[sender] + 1
                    changed = True
        for hop in hops.values():
            histogram[hop] += 1
    return histogram, len(came_from)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bin_dir")
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--tps", type=int, default=20)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--data-dir", default="/tmp/sim-vs-real")
    args = parser.parse_args()
    testnet = os.path.join(args.bin_dir, "testnet")
    n = args.nodes
    shutil.rmtree(args.data_dir, ignore_errors=True)
    os.makedirs(args.data_dir)
    env = dict(os.environ, PATH=args.bin_dir + os.pathsep + os.environ["PATH"])
    up = subprocess.Popen(
        [testnet, "up", "--nodes", str(n), "--miners", "1", "--chain", "regtest", "--fresh",
         "--data-dir", args.data_dir, "--p2p-base", str(P2P_BASE), "--rpc-base", str(RPC_BASE),
         "--no-discovery", "--log", "info,node::p2p::protocol=debug"],
        stdout=open(os.path.join(args.data_dir, "up.log"), "w"), stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if all(status["peers"] >= 1 for status in statuses(n)):
                    break
            except OSError:
                pass
            if time.time() > deadline or up.poll() is not None:
                sys.exit("the testnet did not come up; see " + args.data_dir)
            time.sleep(0.5)
        before, status0 = sent_by_kind(n), statuses(n)
        urls = ",".join(f"http://127.0.0.1:{RPC_BASE + i}" for i in range(1, n + 1))
        started = time.time()
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))
        load = subprocess.run(
            [testnet, "load", "--rpc-url", urls, "--tps", str(args.tps), "--duration", str(args.duration), "--json"],
            capture_output=True, text=True, env=env, check=False)
        elapsed = time.time() - started
        after, status1 = sent_by_kind(n), statuses(n)
        report = json.loads(load.stdout) if load.stdout.strip().startswith("{") else {}
        blocks = status1[0]["height"] - status0[0]["height"]
        ids = {status["node_id"]: i for i, status in enumerate(status1)}
        hops, hop_blocks = real_hops(args.data_dir, n, ids, 0, since)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
    block_time = elapsed / max(blocks, 1)
    def simulate(latency):
        run = subprocess.run(
            [testnet, "sim", "--nodes", str(n), "--topology", "ring", "--degree", "1", "--latency", latency,
             "--bandwidth", "10Gbit", "--miners", "1", "--tx-rate", str(args.tps),
             "--block-time", f"{block_time:.3f}s", "--duration", f"{max(args.duration, 600)}s",
             "--seed", "1", "--json"],
            capture_output=True, text=True, check=True)
        return json.loads(run.stdout)

    # Zero added latency, and 1 ms a hop (about what a loopback hop costs
    # a real node: the run's block propagation to the first other node).
    sim, sim_1ms = simulate("0ms"), simulate("1ms")
    real_per = {kind: (after[kind] - before[kind]) / (n * max(blocks, 1)) for kind in after}
    sim_per = {row["kind"]: row["messages_per_node_per_block"] for row in sim["traffic"]}
    print(f"real: {n} nodes in a ring, {blocks} blocks in {elapsed:.1f} s (one every {block_time:.2f} s), "
          f"{report.get('accepted', '?')} txs accepted, lost {report.get('lost', '?')}")
    print(f"sim:  {sim['nodes']} nodes, {sim['blocks_mined']} blocks in {sim['simulated_s']:.0f} s, "
          f"{sim['txs_submitted']} txs, lost {sim['txs_lost']}")
    print("\nmessages per node per block   real     sim")
    for kind in sorted(set(real_per) | set(sim_per)):
        real_value, sim_value = real_per.get(kind, 0.0), sim_per.get(kind, 0.0)
        if real_value > 0.005 or sim_value > 0.005:
            print(f"  {kind:<26} {real_value:7.2f} {sim_value:7.2f}")
    sim_1ms_hops = sim_1ms["block_hops"]
    real_total = sum(hops.values())
    sim_hops = sim["block_hops"]
    sim_total = sum(sim_hops)
    print("\nshare of (block, node) pairs by hop count   real  sim 0ms  sim 1ms")
    for hop in range(max(len(sim_hops), len(sim_1ms_hops), max(hops) + 1 if hops else 0)):
        real_share = hops.get(hop, 0) / max(real_total, 1)
        sim_share = (sim_hops[hop] if hop < len(sim_hops) else 0) / max(sim_total, 1)
        sim_1ms_share = (sim_1ms_hops[hop] if hop < len(sim_1ms_hops) else 0) / max(sum(sim_1ms_hops), 1)
        print(f"  hop {hop:<38} {real_share:6.3f}  {sim_share:6.3f}  {sim_1ms_share:6.3f}")
    relayed = sum(count for hop, count in hops.items() if hop > 0)
    real_mean = sum(hop * count for hop, count in hops.items()) / max(relayed, 1)
    print(f"  mean hops of relayed pairs: real {real_mean:.2f} ({hop_blocks} blocks traced from the logs), "
          f"sim {sim['block_hops_mean']} (0 ms), {sim_1ms['block_hops_mean']} (1 ms)")


if __name__ == "__main__":
    main()
