//! Bad peers, one test each. In every test a node runs with an honest peer
//! attached; a hand-driven `FakePeer` misbehaves; the node must stay up,
//! keep relaying to the honest peer, and drop (and, where the rules say,
//! ban) the offender. The 4 GiB length prefix, which measures the
//! process's memory, runs alone in `p2p_memory.rs`.

use node::test_utils::p2p_net;

use ledger::{BlockHash, Hash256, Target, TxId};
use node::p2p::message::{CompactBlock, InvItem, Message};
use p2p_net::*;
use rand::{RngCore, SeedableRng};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_get_the_sender_banned() {
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let mut bad = FakePeer::connect(setup.node.socket_addr()).await;
    let mut noise = vec![0u8; 4096];
    rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut noise);
    bad.send_raw(&noise).await;
    assert!(bad.closed_within(LONG).await, "offender disconnected");
    wait_for("ban recorded", LONG, || {
        setup.node.p2p.is_banned(bad.local_addr)
    })
    .await;
    let bans = setup.node.bans("oversized_frame") + setup.node.bans("undecodable_frame");
    assert_eq!(bans, 1);
    setup.still_serves(0).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_magic_is_banned() {
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let mut bad = FakePeer::connect(setup.node.socket_addr()).await;
    let hello = bad.hello(*b"nope", setup.node.backend.genesis());
    bad.send(&Message::Hello(Box::new(hello))).await;
    assert!(bad.closed_within(LONG).await, "offender disconnected");
    wait_for("ban recorded", LONG, || setup.node.bans("wrong_magic") == 1).await;
    assert!(setup.node.p2p.is_banned(bad.local_addr));
    setup.still_serves(0).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_genesis_is_banned() {
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let mut bad = FakePeer::connect(setup.node.socket_addr()).await;
    let magic = setup.node.backend.spec().network_magic();
    let hello = bad.hello(magic, BlockHash(Hash256::digest(b"another chain")));
    bad.send(&Message::Hello(Box::new(hello))).await;
    assert!(bad.closed_within(LONG).await, "offender disconnected");
    wait_for("ban recorded", LONG, || {
        setup.node.bans("wrong_genesis") == 1
    })
    .await;
    assert!(setup.node.p2p.is_banned(bad.local_addr));
    setup.still_serves(0).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_dropped_at_the_handshake_timeout() {
    let mut options = NodeOptions::default();
    options.timing.handshake_timeout = Duration::from_millis(500);
    let setup = setup_with_honest_peer(options).await;
    let started = std::time::Instant::now();
    let mut silent = FakePeer::connect(setup.node.socket_addr()).await;
    // It reads the node's hello and never answers.
    assert!(silent.closed_within(LONG).await, "silent peer dropped");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "dropped after {waited:?}, before the timeout"
    );
    wait_for("timeout counted", LONG, || {
        setup
            .node
            .metrics
            .counter("p2p_disconnects_total", &[("reason", "handshake_timeout")])
            == 1
    })
    .await;
    assert!(
        !setup.node.p2p.is_banned(silent.local_addr),
        "slowness is not banned"
    );
    setup.still_serves(0).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inv_flood_of_unknown_hashes_is_bounded() {
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let spec = setup.node.backend.spec().clone();
    let mut flooder = FakePeer::connect(setup.node.socket_addr()).await;
    flooder.handshake(&spec).await;
    // 10,000 unknown tx hashes in ten legal messages: the node fetches only
    // up to its per-peer cap and ignores the rest.
    let mut counter = 0u64;
    for _ in 0..10 {
        let items: Vec<InvItem> = (0..1_000)
            .map(|_| {
                counter += 1;
                InvItem::Tx(TxId(Hash256::digest(&counter.to_le_bytes())))
            })
            .collect();
        assert!(flooder.send(&Message::Inv(items)).await);
    }
    let mut requested = 0usize;
    while let Some(message) = flooder
        .recv_matching(Duration::from_millis(500), |message| {
            matches!(message, Message::GetData(_))
        })
        .await
    {
        if let Message::GetData(items) = message {
            requested += items.len();
        }
    }
    println!("FIGURE inv flood: 10000 announced, {requested} requested");
    assert!(requested <= 2_000, "requested {requested}");
    setup.still_serves(0).await;
    assert!(setup.node.p2p.n_peers() >= 1);
    // The same 10,000 entries in one message break the per-message cap.
    let items: Vec<InvItem> = (0..10_000u64)
        .map(|n| InvItem::Tx(TxId(Hash256::digest(&(n + 1_000_000).to_le_bytes()))))
        .collect();
    flooder.send(&Message::Inv(items)).await;
    assert!(flooder.closed_within(LONG).await, "flooder disconnected");
    wait_for("ban recorded", LONG, || {
        setup.node.bans("oversized_frame") == 1
    })
    .await;
    setup.still_serves(1).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_with_bad_proof_of_work_is_banned_across_restarts() {
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let spec = setup.node.backend.spec().clone();
    let mut bad = FakePeer::connect(setup.node.socket_addr()).await;
    bad.handshake(&spec).await;
    // A block on the node's tip whose hash misses the target.
    let mut block = setup.node.backend.make_block(0);
    let target = Target::from_compact(block.header.bits).expect("valid bits");
    while target.is_met_by(&block.hash()) {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
    let hash = block.hash();
    bad.send(&Message::Inv(vec![InvItem::Block(hash)])).await;
    let asked = bad
        .recv_matching(LONG, |message| matches!(message, Message::GetData(_)))
        .await;
    // A new block on our tip is asked for in its compact form, and the
    // block rebuilt from it is judged like any other.
    assert_eq!(
        asked,
        Some(Message::GetData(vec![InvItem::CompactBlock(hash)]))
    );
    bad.send(&Message::CompactBlock(Box::new(CompactBlock::from_block(
        &block,
    ))))
    .await;
    assert!(bad.closed_within(LONG).await, "offender disconnected");
    wait_for("ban recorded", LONG, || setup.node.bans("bad_block") == 1).await;
    assert!(setup.node.p2p.is_node_banned(&bad.key.public_key()));
    assert!(!setup.node.backend.has_block_hash(&hash));
    setup.still_serves(0).await;
    // A restart pardons nobody: the ban is read back from the data dir.
    let setup = setup.restart_node().await;
    assert!(setup.node.p2p.is_node_banned(&bad.key.public_key()));
    assert!(setup.node.p2p.is_banned(bad.local_addr));
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_with_bad_signature_is_banned() {
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let spec = setup.node.backend.spec().clone();
    let mut bad = FakePeer::connect(setup.node.socket_addr()).await;
    bad.handshake(&spec).await;
    let mut tx = transfer(&setup.node.backend.genesis(), 6, 0, "forged");
    tx.amount = ledger::Amount::from_base_units(999_999);
    let txid = tx.txid();
    bad.send(&Message::Inv(vec![InvItem::Tx(txid)])).await;
    let asked = bad
        .recv_matching(LONG, |message| matches!(message, Message::GetData(_)))
        .await;
    assert_eq!(asked, Some(Message::GetData(vec![InvItem::Tx(txid)])));
    bad.send(&Message::Tx(Box::new(tx))).await;
    assert!(bad.closed_within(LONG).await, "offender disconnected");
    wait_for("ban recorded", LONG, || setup.node.bans("bad_tx") == 1).await;
    assert!(setup.node.p2p.is_node_banned(&bad.key.public_key()));
    assert!(!setup.node.backend.mempool_has(&txid));
    // An unaffordable tx from an honest-looking peer is refused without a ban.
    let mut poor = FakePeer::connect(setup.node.socket_addr()).await;
    poor.handshake(&spec).await;
    let unaffordable = ledger::Transaction::new_signed(
        &ledger::SecretKey::from_seed("nobody"),
        &setup.node.backend.genesis(),
        ledger::Address([1; 20]),
        ledger::Amount::from_base_units(5),
        ledger::Amount::from_base_units(1_000),
        0,
        String::new(),
    );
    let poor_txid = unaffordable.txid();
    poor.send(&Message::Inv(vec![InvItem::Tx(poor_txid)])).await;
    poor.recv_matching(LONG, |message| matches!(message, Message::GetData(_)))
        .await
        .expect("asked for it");
    poor.send(&Message::Tx(Box::new(unaffordable))).await;
    setup.still_serves(0).await;
    assert!(
        !poor.closed_within(Duration::from_millis(300)).await,
        "not disconnected"
    );
    assert_eq!(setup.node.bans("bad_tx"), 1);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_stops_answering_pings_is_dropped() {
    let mut options = NodeOptions::default();
    options.timing.ping_interval = Duration::from_millis(100);
    let setup = setup_with_honest_peer(options).await;
    let spec = setup.node.backend.spec().clone();
    let mut mute = FakePeer::connect(setup.node.socket_addr()).await;
    mute.handshake(&spec).await;
    let started = std::time::Instant::now();
    // Reads everything, answers nothing.
    assert!(mute.closed_within(LONG).await, "mute peer dropped");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "dropped after {waited:?}"
    );
    wait_for("counted as dead", LONG, || {
        setup
            .node
            .metrics
            .counter("p2p_disconnects_total", &[("reason", "dead")])
            == 1
    })
    .await;
    assert!(!setup.node.p2p.is_node_banned(&mute.key.public_key()));
    // The honest peer answers its pings and stays.
    setup.still_serves(0).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalling_sync_peer_is_replaced() {
    let dirs: Vec<tempfile::TempDir> = (0..2)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let mut options = NodeOptions::default();
    options.timing.sync_stall_timeout = Duration::from_millis(800);
    let node = TestNode::start(dirs[0].path(), options).await;
    let spec = node.backend.spec().clone();
    // A peer claiming enormous work becomes the sync peer, then says nothing.
    let mut liar = FakePeer::connect(node.socket_addr()).await;
    liar.handshake_claiming(&spec, ledger::Work(ledger::U256::MAX))
        .await;
    let asked = liar
        .recv_matching(LONG, |message| matches!(message, Message::GetHeaders(_)))
        .await;
    assert!(asked.is_some(), "node tries to sync from the liar");
    assert!(node.p2p.is_syncing());
    // An honest peer with 20 blocks arrives meanwhile.
    let honest = TestNode::start(dirs[1].path(), NodeOptions::default()).await;
    for _ in 0..20 {
        honest.backend.mine(0);
    }
    node.p2p.dial(honest.addr());
    let started = std::time::Instant::now();
    let tip = honest.backend.tip_hash();
    wait_for("synced from the honest peer", LONG, || {
        node.backend.tip_hash() == tip
    })
    .await;
    assert!(liar.closed_within(LONG).await, "staller dropped");
    println!(
        "FIGURE stalled sync peer replaced; synced after {:?}",
        started.elapsed()
    );
    assert_eq!(
        node.metrics
            .counter("p2p_disconnects_total", &[("reason", "stalled")]),
        1
    );
    honest.stop().await;
    node.stop().await;
}
