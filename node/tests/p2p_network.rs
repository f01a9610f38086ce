//! Multi-node P2P tests on loopback: gossip along a line, a late joiner,
//! a healed partition and churn. Each node is the real P2P network over a
//! real chain and mempool in a temp dir (see `node::test_utils::p2p_net`).

use node::test_utils::p2p_net;

use p2p_net::*;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_of_six_delivers_each_tx_exactly_once() {
    let dirs = temp_dirs(6);
    let nodes = line(&dirs, LONG).await;
    let genesis = nodes[0].backend.genesis();

    let tx = transfer(&genesis, 1, 0, "line");
    let txid = nodes[0].backend.add_tx(tx).expect("tx admitted at node 0");
    wait_for("tx in every mempool", LONG, || {
        nodes.iter().all(|node| node.backend.mempool_has(&txid))
    })
    .await;

    // A second tx is a barrier: each link is one ordered stream, so once it
    // is everywhere, any duplicate of the first would have arrived too.
    let barrier = nodes[0]
        .backend
        .add_tx(transfer(&genesis, 1, 1, "barrier"))
        .expect("barrier admitted");
    wait_for("barrier everywhere", LONG, || {
        nodes.iter().all(|node| node.backend.mempool_has(&barrier))
    })
    .await;

    assert_eq!(
        nodes[0].received("tx"),
        0,
        "the origin never receives its own tx"
    );
    // Node 3 learns from node 2's `Addr` that node 2 is linked to node 1
    // (the address exchange runs on its own schedule, so wait for it).
    let (node_1, node_2) = (nodes[0].p2p.node_id(), nodes[1].p2p.node_id());
    wait_for("node 3 knows node 2's link to node 1", LONG, || {
        let view = nodes[2].p2p.network_view();
        view.known
            .iter()
            .any(|entry| entry.node_id == node_2 && entry.peers.contains(&node_1))
    })
    .await;
    let view = nodes[2].p2p.network_view();
    assert_eq!(view.peers.len(), 2);
    for (index, node) in nodes.iter().enumerate().skip(1) {
        assert_eq!(
            node.received("tx"),
            2,
            "node {index} received each full tx exactly once"
        );
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_catches_up_on_a_thousand_blocks() {
    let dirs = temp_dirs(2);
    let early = TestNode::start(dirs[0].path(), NodeOptions::default()).await;
    let genesis = early.backend.genesis();
    let miner = early.backend.clone();
    let mined = tokio::task::spawn_blocking(move || {
        for height in 0..1_000u64 {
            if height % 100 == 0 {
                // Some blocks carry transactions, so sync moves real data.
                for nonce in 0..5 {
                    let tx = transfer(&genesis, 2, height / 100 * 5 + nonce, "late");
                    miner.add_tx(tx).expect("admitted");
                }
            }
            miner.mine(100);
        }
        miner.tip_hash()
    })
    .await
    .expect("mining thread");
    assert_eq!(early.backend.height(), 1_000);

    let started = Instant::now();
    let late = TestNode::start(
        dirs[1].path(),
        NodeOptions {
            peers: vec![early.addr()],
            ..NodeOptions::default()
        },
    )
    .await;
    wait_for(
        "late joiner reaches the tip",
        Duration::from_secs(50),
        || late.backend.tip_hash() == mined,
    )
    .await;
    let elapsed = started.elapsed();
    println!(
        "FIGURE late joiner: 1000 blocks synced in {:.3} s ({:.0} blocks/s, debug build)",
        elapsed.as_secs_f64(),
        1_000.0 / elapsed.as_secs_f64()
    );
    wait_for("sync flag clears", LONG, || !late.p2p.is_syncing()).await;
    assert_eq!(
        late.backend.reader().state_summary().digest,
        early.backend.reader().state_summary().digest
    );
    late.stop().await;
    early.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healed_partition_converges_on_most_work_and_keeps_txs() {
    let dirs = temp_dirs(4);
    let group_a = line(&dirs[..2], LONG).await;
    let group_b = line(&dirs[2..], LONG).await;
    let genesis = group_a[0].backend.genesis();

    // Group A confirms txs of dev account 3 in 3 blocks; group B mines 5
    // blocks with txs of dev account 4, so B's branch has more work.
    let mut losing_txids = Vec::new();
    for nonce in 0..6 {
        losing_txids.push(
            group_a[0]
                .backend
                .add_tx(transfer(&genesis, 3, nonce, "a"))
                .expect("admitted"),
        );
    }
    for _ in 0..3 {
        group_a[0].backend.mine(2);
    }
    // One more stays pending in A's mempools; it reaches B because a node
    // announces its mempool to each new peer.
    let pending = group_a[0]
        .backend
        .add_tx(transfer(&genesis, 3, 6, "a-pending"))
        .expect("admitted");
    for nonce in 0..4 {
        group_b[0]
            .backend
            .add_tx(transfer(&genesis, 4, nonce, "b"))
            .expect("admitted");
    }
    for _ in 0..5 {
        group_b[0].backend.mine(1);
    }
    let a_tip = group_a[0].backend.tip_hash();
    let b_tip = group_b[0].backend.tip_hash();
    wait_for("group A agrees", LONG, || {
        group_a[1].backend.tip_hash() == a_tip
    })
    .await;
    wait_for("group B agrees", LONG, || {
        group_b[1].backend.tip_hash() == b_tip
    })
    .await;
    assert!(group_a.iter().all(|node| node.backend.height() == 3));

    // Heal: one link between the groups.
    group_a[1].p2p.dial(group_b[0].addr());
    let nodes: Vec<&TestNode> = group_a.iter().chain(group_b.iter()).collect();
    wait_for("all on the most-work tip", LONG, || {
        nodes.iter().all(|node| node.backend.tip_hash() == b_tip)
    })
    .await;
    for txid in losing_txids.iter().chain([&pending]) {
        wait_for("losing-branch tx kept", LONG, || {
            nodes
                .iter()
                .all(|node| node.backend.mempool_has(txid) || node.backend.confirmed(txid))
        })
        .await;
    }
    // And a block mined on top confirms them everywhere.
    let next = group_a[0].backend.mine(100);
    wait_for("next block everywhere", LONG, || {
        nodes.iter().all(|node| node.backend.tip_hash() == next)
    })
    .await;
    // (A reader sees a new tip a moment before its tx index entries.)
    for txid in losing_txids.iter().chain([&pending]) {
        wait_for("tx confirmed everywhere", LONG, || {
            nodes.iter().all(|node| node.backend.confirmed(txid))
        })
        .await;
    }
    for node in group_a.into_iter().chain(group_b) {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_resyncs_and_a_killed_peer_is_replaced() {
    let dirs = temp_dirs(4);
    let hub = TestNode::start(dirs[0].path(), NodeOptions::default()).await;
    let spoke = TestNode::start(
        dirs[1].path(),
        NodeOptions {
            peers: vec![hub.addr()],
            ..NodeOptions::default()
        },
    )
    .await;
    wait_for("spoke connected", LONG, || hub.has_peer(&spoke)).await;
    for _ in 0..5 {
        hub.backend.mine(0);
    }
    let tip = hub.backend.tip_hash();
    wait_for("spoke has 5 blocks", LONG, || {
        spoke.backend.tip_hash() == tip
    })
    .await;

    // Restart the spoke on the same data dir while the hub moves on.
    let spoke_id = spoke.p2p.node_id();
    let (spoke_dir, spoke_options, spoke_key) = spoke.stop().await;
    wait_for("hub notices", LONG, || hub.p2p.n_peers() == 0).await;
    for _ in 0..10 {
        hub.backend.mine(0);
    }
    // No bootstrap peer this time: the hub's address comes from the
    // address book the spoke persisted in its data dir.
    let spoke = TestNode::start(
        &spoke_dir,
        NodeOptions {
            key: Some(spoke_key),
            peers: Vec::new(),
            no_discovery: false,
            ..spoke_options
        },
    )
    .await;
    assert_eq!(spoke.p2p.node_id(), spoke_id);
    let tip = hub.backend.tip_hash();
    wait_for("restarted spoke resyncs", LONG, || {
        spoke.backend.tip_hash() == tip
    })
    .await;

    // Only the 10 new blocks crossed the wire: the first 5 survived the
    // restart in the data dir.
    assert_eq!(
        spoke.received("block"),
        10,
        "blocks fetched after the restart"
    );
    // Replacement: two nodes with one outbound slot each, both bootstrapped
    // from the hub, learn each other's address from it. When the hub dies
    // each fills its slot from the address book.
    let discovering = |peers: Vec<String>| NodeOptions {
        peers,
        no_discovery: false,
        max_outbound: 1,
        ..NodeOptions::default()
    };
    let left = TestNode::start(dirs[2].path(), discovering(vec![hub.addr()])).await;
    let right = TestNode::start(dirs[3].path(), discovering(vec![hub.addr()])).await;
    wait_for("both on the hub", LONG, || {
        hub.has_peer(&left) && hub.has_peer(&right)
    })
    .await;
    hub.backend.mine(0);
    let tip = hub.backend.tip_hash();
    wait_for("both synced", LONG, || {
        left.backend.tip_hash() == tip && right.backend.tip_hash() == tip
    })
    .await;
    spoke.stop().await;
    hub.stop().await;
    wait_for("killed hub replaced by a book address", LONG, || {
        left.has_peer(&right) && right.has_peer(&left)
    })
    .await;
    let next = left.backend.mine(0);
    wait_for("blocks flow over the replacement link", LONG, || {
        right.backend.tip_hash() == next
    })
    .await;
    left.stop().await;
    right.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_dialing_each_other_keep_exactly_one_connection() {
    let dirs = temp_dirs(2);
    let first = TestNode::start(dirs[0].path(), NodeOptions::default()).await;
    let second = TestNode::start(
        dirs[1].path(),
        NodeOptions {
            peers: vec![first.addr()],
            ..NodeOptions::default()
        },
    )
    .await;
    // Both sides now dial each other; node ids, not addresses, tell them
    // they are one pair.
    first.p2p.dial(second.addr());
    wait_for("connected", LONG, || {
        first.has_peer(&second) && second.has_peer(&first)
    })
    .await;
    // Let the second dial play out, then require one stable connection
    // carrying traffic.
    let block = first.backend.mine(0);
    wait_for("block relayed", LONG, || second.backend.tip_hash() == block).await;
    let block = second.backend.mine(0);
    wait_for("block relayed back", LONG, || {
        first.backend.tip_hash() == block
    })
    .await;
    wait_for("one connection each", LONG, || {
        first.p2p.n_peers() == 1 && second.p2p.n_peers() == 1
    })
    .await;
    let dropped = |node: &TestNode| {
        node.metrics
            .counter("p2p_disconnects_total", &[("reason", "closed")])
    };
    let block = first.backend.mine(0);
    wait_for("still relaying", LONG, || {
        second.backend.tip_hash() == block
    })
    .await;
    assert!(dropped(&first) <= 1 && dropped(&second) <= 1, "no flapping");
    first.stop().await;
    second.stop().await;
}
