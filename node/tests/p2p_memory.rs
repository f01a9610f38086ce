//! The attacks whose cost is memory: a 4 GiB length prefix, and a peer that
//! asks for gigabytes and never reads. They live in their own test binary
//! and take turns (`ALONE`) because they measure the process's resident
//! memory, which other tests running in the same process would blur. Like
//! the tests in `p2p_bad_peers.rs`, a node runs with an honest peer
//! attached; the node must stay up, keep relaying to the honest peer, and
//! drop the offender.

use node::test_utils::p2p_net;

use node::p2p::message::{InvItem, Message};
use p2p_net::*;

/// Held by each test for its whole run.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_gib_length_prefix_costs_no_memory() {
    let _alone = ALONE.lock().await;
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let before = resident_bytes();
    let mut bad = FakePeer::connect(setup.node.socket_addr()).await;
    // u32::MAX: the largest length the 4-byte prefix can claim (4 GiB - 1).
    bad.send_raw(&[0xff, 0xff, 0xff, 0xff]).await;
    bad.send_raw(&[0u8; 64 * 1024]).await;
    assert!(bad.closed_within(LONG).await, "offender disconnected");
    let after = resident_bytes();
    let growth = after.saturating_sub(before);
    println!(
        "FIGURE 4 GiB prefix: resident memory grew by {} KiB",
        growth / 1024
    );
    assert!(growth < 8 * 1024 * 1024, "memory grew by {growth} bytes");
    wait_for("ban recorded", LONG, || {
        setup.node.bans("oversized_frame") == 1
    })
    .await;
    assert!(setup.node.p2p.is_banned(bad.local_addr));
    setup.still_serves(0).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_never_reads_is_dropped_with_bounded_memory() {
    let _alone = ALONE.lock().await;
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let spec = setup.node.backend.spec().clone();
    let genesis = setup.node.backend.genesis();
    // A block of 1,000 txs with full memos, about a quarter MiB.
    let memo = "m".repeat(ledger::tx::MAX_MEMO_BYTES);
    for index in 0..1_000u64 {
        setup
            .node
            .backend
            .add_tx(transfer(&genesis, (index % 10) as usize, index / 10, &memo))
            .expect("admitted");
    }
    let big = setup.node.backend.mine(1_000);
    wait_for("honest peer has the big block", LONG, || {
        setup.honest.backend.tip_hash() == big
    })
    .await;
    let before = resident_bytes();
    let mut staller = FakePeer::connect(setup.node.socket_addr()).await;
    staller.handshake(&spec).await;
    // 25,000 requests for the block (about 6 GiB of answers), never read.
    for _ in 0..5 {
        let items = vec![InvItem::Block(big); node::p2p::message::MAX_INV_ITEMS];
        assert!(staller.send(&Message::GetData(items)).await);
    }
    // Each new tx is announced to every peer; once the staller's send queue
    // is full, the next announcement finds no room and it is dropped.
    let mut nonce = 99;
    wait_for_async("staller dropped as too slow", LONG, || {
        nonce += 1;
        let _ = setup
            .node
            .backend
            .add_tx(transfer(&genesis, 0, nonce, "announce me"));
        let slow = setup
            .node
            .metrics
            .counter("p2p_disconnects_total", &[("reason", "slow")]);
        async move { slow == 1 }
    })
    .await;
    let after = resident_bytes();
    let growth = after.saturating_sub(before);
    println!(
        "FIGURE peer that never reads: dropped as slow; resident memory grew by {} KiB",
        growth / 1024
    );
    // The send queue has two lanes (urgent: the requested blocks; bulk:
    // the announcements), each capped at 8 MiB; allow the allocator its
    // slack.
    assert!(growth < 40 * 1024 * 1024, "memory grew by {growth} bytes");
    assert!(staller.closed_within(LONG).await, "staller disconnected");
    assert!(
        !setup.node.p2p.is_node_banned(&staller.key.public_key()),
        "slowness is not misbehaviour"
    );
    wait_for("mempool drained by the block", LONG, || {
        setup.node.backend.mine(10_000);
        setup.node.backend.mempool_len() == 0
    })
    .await;
    setup.still_serves(100).await;
    setup.stop().await;
}
