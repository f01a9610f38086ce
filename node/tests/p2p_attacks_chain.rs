//! Attacks of issue 14 that a hostile peer mounts through real sockets,
//! one test each, named after the attack. A node (the victim) runs with
//! an honest peer attached while a hand-driven `FakePeer` attacks it; each
//! test measures what the honest peer sees (the delay of its blocks or
//! txs) and the victim's resident memory, and asserts a bound on both.
//! The tests take turns (`ALONE`) because resident memory is the whole
//! process's, which tests running beside them would blur.

use node::test_utils::p2p_net;

use ledger::TxId;
use node::p2p::message::{InvItem, Message, MAX_INV_ITEMS};
use p2p_net::*;
use std::time::{Duration, Instant};

/// Held by each test for its whole run.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Growth of the victim's resident memory any one attack may cause.
const RSS_BOUND: u64 = 48 * 1024 * 1024;

/// Answers the node's pings and reads whatever it sends for `period`.
async fn drain(peer: &mut FakePeer, period: Duration) {
    let _ = peer.recv_matching(period, |_| false).await;
}

/// Attack 1: a peer announces thousands of confirmed txids every 100 ms.
/// Announcing what we hold is legal; answering it must be key lookups
/// only, so the flood reads no block and the honest peer's blocks still
/// arrive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freezing_the_network_task_with_known_txids() {
    let _alone = ALONE.lock().await;
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let spec = setup.node.backend.spec().clone();
    let genesis = setup.node.backend.genesis();
    // 20 blocks of 640 txs with full memos (10 senders x 64 nonces each).
    let memo = "m".repeat(ledger::tx::MAX_MEMO_BYTES);
    let mut confirmed: Vec<TxId> = Vec::new();
    for round in 0..20u64 {
        for sender in 0..10 {
            for nonce in round * 64..(round + 1) * 64 {
                let txid = setup
                    .node
                    .backend
                    .add_tx(transfer(&genesis, sender, nonce, &memo))
                    .expect("admitted");
                confirmed.push(txid);
            }
        }
        setup.node.backend.mine(1_000);
    }
    assert_eq!(setup.node.backend.mempool_len(), 0, "all mined");
    let tip = setup.node.backend.tip_hash();
    wait_for("honest peer synced", LONG, || {
        setup.honest.backend.tip_hash() == tip
    })
    .await;

    let mut attacker = FakePeer::connect(setup.node.socket_addr()).await;
    attacker.handshake(&spec).await;
    let reads_before = setup.node.backend.reader().block_reads();
    let rss_before = resident_bytes();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        let confirmed = confirmed.clone();
        tokio::spawn(async move {
            let mut sent = 0usize;
            let mut offset = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let items: Vec<InvItem> = (0..MAX_INV_ITEMS)
                    .map(|index| InvItem::Tx(confirmed[(offset + index) % confirmed.len()]))
                    .collect();
                offset += MAX_INV_ITEMS;
                if !attacker.send(&Message::Inv(items)).await {
                    break;
                }
                sent += MAX_INV_ITEMS;
                drain(&mut attacker, Duration::from_millis(100)).await;
            }
            (attacker, sent)
        })
    };
    // Meanwhile the honest peer mines five blocks, one at a time.
    let mut delays = Vec::new();
    for _ in 0..5 {
        pace(Duration::from_millis(300)).await;
        let started = Instant::now();
        let hash = setup.honest.backend.mine(0);
        wait_for("victim gets the honest block", LONG, || {
            setup.node.backend.tip_hash() == hash
        })
        .await;
        delays.push(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (attacker, announced) = flood.await.expect("flood task");
    let rss_growth = resident_bytes().saturating_sub(rss_before);
    let reads = setup.node.backend.reader().block_reads() - reads_before;
    delays.sort();
    let known = setup
        .node
        .metrics
        .counter("p2p_announcements_known_total", &[("kind", "tx")]);
    println!(
        "FIGURE attack 1 (known txids): {announced} announced, {known} counted known, \
         {reads} block reads, honest block delay max {:?} median {:?}, RSS grew {} KiB",
        delays[delays.len() - 1],
        delays[delays.len() / 2],
        rss_growth / 1024
    );
    assert!(announced >= 5 * MAX_INV_ITEMS, "the flood ran");
    // Each announced txid cost a block read before the fix; now the
    // announcements read none (the few reads allowed are the node's own
    // serving of blocks).
    assert!(
        reads < 50,
        "{reads} block reads for {announced} announced txids"
    );
    assert!(known > 0, "the known announcements are counted");
    assert!(
        delays[delays.len() / 2] < Duration::from_secs(1),
        "honest blocks delayed {delays:?}"
    );
    assert!(rss_growth < RSS_BOUND, "RSS grew by {rss_growth} bytes");
    assert!(
        setup.node.p2p.n_peers() >= 2,
        "the attacker is not banned for legal gossip"
    );
    drop(attacker);
    setup.still_serves(20 * 64).await;
    setup.stop().await;
}

/// A pause between the honest peer's blocks, for the flood to run (pacing,
/// not synchronisation: nothing waits on it).
async fn pace(period: Duration) {
    tokio::time::sleep(period).await;
}

/// A transfer from dev account `from` paying `fee`.
fn paying(genesis: &ledger::BlockHash, from: usize, nonce: u64, fee: u64) -> ledger::Transaction {
    ledger::Transaction::new_signed(
        &ledger::chainspec::dev_secret_key(from),
        genesis,
        ledger::Address([from as u8 + 100; 20]),
        ledger::Amount::from_base_units(1_000),
        ledger::Amount::from_base_units(fee),
        nonce,
        String::new(),
    )
}

/// Attack 7: a peer sends txs that can never be mined (nonces 1..=64 of
/// senders whose nonce 0 never comes) at 10x the minimum fee. The victim
/// holds a bounded number of them per sender, relays none, and still
/// takes, relays and mines an executable tx at the minimum fee; once a gap
/// fills, the txs behind it are relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_mempool_space_from_transactions_that_can_never_be_mined() {
    let _alone = ALONE.lock().await;
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let spec = setup.node.backend.spec().clone();
    let genesis = setup.node.backend.genesis();
    let per_sender = ledger::mempool::DEFAULT_MAX_FUTURE_PER_SENDER;
    let mut attacker = FakePeer::connect(setup.node.socket_addr()).await;
    attacker.handshake(&spec).await;
    let rss_before = resident_bytes();
    for sender in 0..9 {
        for nonce in 1..=64 {
            let tx = paying(&genesis, sender, nonce, 10 * spec.min_fee.base_units());
            assert!(attacker.send(&Message::Tx(tx)).await);
        }
        drain(&mut attacker, Duration::from_millis(1)).await;
    }
    wait_for("victim judged the gap txs", LONG, || {
        setup.node.backend.mempool_len() == 9 * per_sender
    })
    .await;
    let started = Instant::now();
    let honest_tx = paying(&genesis, 9, 0, spec.min_fee.base_units());
    let honest_txid = setup.node.backend.add_tx(honest_tx).expect("admitted");
    wait_for("honest peer gets the executable tx", LONG, || {
        setup.honest.backend.mempool_has(&honest_txid)
    })
    .await;
    let tx_delay = started.elapsed();
    assert_eq!(
        setup.honest.backend.mempool_len(),
        1,
        "no held tx was relayed"
    );
    let block = setup.node.backend.mine(10_000);
    wait_for("honest peer gets the block", LONG, || {
        setup.honest.backend.tip_hash() == block
    })
    .await;
    assert!(setup.honest.backend.confirmed(&honest_txid), "mined");
    assert_eq!(
        setup.node.backend.mempool_len(),
        9 * per_sender,
        "held txs stay held"
    );
    let rss_growth = resident_bytes().saturating_sub(rss_before);
    println!(
        "FIGURE attack 7 (gap txs): {} sent, {} held, 0 relayed; honest tx relayed in {tx_delay:?}, \
         mined; RSS grew {} KiB",
        9 * 64,
        9 * per_sender,
        rss_growth / 1024
    );
    assert!(rss_growth < RSS_BOUND, "RSS grew by {rss_growth} bytes");
    // Sender 5's nonce 0 fills its gap: its held txs go out now.
    let last_held = paying(
        &genesis,
        5,
        per_sender as u64,
        10 * spec.min_fee.base_units(),
    )
    .txid();
    setup.still_serves(0).await;
    wait_for("released txs relayed", LONG, || {
        setup.honest.backend.mempool_has(&last_held) || setup.honest.backend.confirmed(&last_held)
    })
    .await;
    drop(attacker);
    setup.stop().await;
}

/// A solved, empty block on `parent`, `spacing_ms` after it.
fn empty_block_on(
    spec: &ledger::ChainSpec,
    parent: &ledger::Header,
    spacing_ms: u64,
) -> ledger::Block {
    let mut header = ledger::Header {
        version: ledger::block::BLOCK_VERSION,
        height: parent.height + 1,
        prev_hash: parent.hash(),
        merkle_root: ledger::block::merkle_root(&[]),
        timestamp: parent.timestamp + spacing_ms,
        bits: spec.initial_target.to_compact(),
        nonce: 0,
        miner: ledger::Address([9; 20]),
        reward: spec.block_subsidy,
    };
    assert!(ledger::miner::solve(
        &mut header,
        &std::sync::atomic::AtomicBool::new(false),
        1
    ));
    ledger::Block {
        header,
        txs: Vec::new(),
    }
}

/// Attack 2: a peer pushes, unasked, a fork from genesis whose blocks have
/// less work than the victim's chain. None is stored or indexed; the
/// honest peer's blocks still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_work_side_branches_filling_disk_and_memory() {
    let _alone = ALONE.lock().await;
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let spec = setup.node.backend.spec().clone();
    for _ in 0..40 {
        setup.node.backend.mine(0);
    }
    let tip = setup.node.backend.tip_hash();
    wait_for("honest peer synced", LONG, || {
        setup.honest.backend.tip_hash() == tip
    })
    .await;
    let reader = setup.node.backend.reader().clone();
    let stored_before = reader.stored_block_count();
    let rss_before = resident_bytes();
    let mut attacker = FakePeer::connect(setup.node.socket_addr()).await;
    attacker.handshake(&spec).await;
    // Spread out timestamps, as a fork that eases its own target would
    // use; each block 30 s after its parent, all well in the past.
    let mut parent = spec.genesis_block().header;
    let mut fork = Vec::new();
    for _ in 0..39 {
        let block = empty_block_on(&spec, &parent, 30_000);
        parent = block.header.clone();
        fork.push(block);
    }
    for block in &fork {
        assert!(attacker.send(&Message::Block(block.clone())).await);
    }
    let blocks_received = || {
        setup
            .node
            .metrics
            .counter("p2p_messages_received_total", &[("kind", "block")])
    };
    wait_for("victim read the fork", LONG, || blocks_received() >= 39).await;
    let started = Instant::now();
    let honest_block = setup.honest.backend.mine(0);
    wait_for("victim gets the honest block", LONG, || {
        setup.node.backend.tip_hash() == honest_block
    })
    .await;
    let delay = started.elapsed();
    drain(&mut attacker, Duration::from_millis(50)).await;
    let stored = reader.stored_block_count() - stored_before;
    let rss_growth = resident_bytes().saturating_sub(rss_before);
    let fork_stored = fork
        .iter()
        .filter(|block| reader.block_status(&block.hash()).is_some())
        .count();
    println!(
        "FIGURE attack 2 (low-work fork): 39 fork blocks sent, {fork_stored} stored; store grew by \
         {stored} block(s) (the honest one); honest block delay {delay:?}; RSS grew {} KiB",
        rss_growth / 1024
    );
    assert_eq!(fork_stored, 0, "no fork block stored");
    assert_eq!(stored, 1, "only the honest block was stored");
    assert!(rss_growth < RSS_BOUND, "RSS grew by {rss_growth} bytes");
    assert!(
        !setup.node.p2p.is_node_banned(&attacker.key.public_key()),
        "a stale branch is not misbehaviour"
    );
    drop(attacker);
    setup.still_serves(0).await;
    setup.stop().await;
}

/// Attack 8 (block cap): a `Block` frame one byte longer than the chain's
/// largest block message (the kind tag plus `max_block_bytes`) is refused
/// from its length prefix, far below the codec's 4 MiB hard cap, and the
/// sender banned; the honest peer is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_messages_are_capped_by_the_chains_block_size() {
    let _alone = ALONE.lock().await;
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
    let spec = setup.node.backend.spec().clone();
    let cap = node::p2p::message::max_block_message_bytes(&spec);
    assert!(cap < node::p2p::codec::MAX_FRAME_BYTES);
    let rss_before = resident_bytes();
    let mut bad = FakePeer::connect(setup.node.socket_addr()).await;
    bad.handshake(&spec).await;
    let len = u32::try_from(cap + 1).expect("fits");
    bad.send_raw(&len.to_le_bytes()).await;
    // The kind tag of `Block`, then some of the claimed body.
    bad.send_raw(&10u32.to_le_bytes()).await;
    bad.send_raw(&vec![0u8; 64 * 1024]).await;
    assert!(bad.closed_within(LONG).await, "offender disconnected");
    wait_for("ban recorded", LONG, || {
        setup.node.bans("oversized_frame") == 1
    })
    .await;
    let rss_growth = resident_bytes().saturating_sub(rss_before);
    println!(
        "FIGURE attack 8 (block cap): a {} byte block frame refused at its prefix (cap {cap}); RSS grew {} KiB",
        cap + 1,
        rss_growth / 1024
    );
    assert!(rss_growth < RSS_BOUND, "RSS grew by {rss_growth} bytes");
    setup.still_serves(0).await;
    setup.stop().await;
}
