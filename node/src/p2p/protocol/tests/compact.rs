//! Compact block relay: fetching and rebuilding, high-bandwidth pushes and
//! who gets them, and the fall-backs to the whole block.

use super::*;
use crate::p2p::compact::{RebuildJob, Rebuilt};
use crate::p2p::message::CompactBlock;
use ledger::block::merkle_root;
use ledger::Height;

/// A block on genesis holding `txs`.
fn block_of(txs: Vec<Transaction>) -> Block {
    let txids: Vec<TxId> = txs.iter().map(Transaction::txid).collect();
    Block {
        header: Header {
            version: 1,
            height: Height(1),
            prev_hash: genesis(),
            merkle_root: merkle_root(&txids),
            timestamp: 1,
            bits: ledger::target::CompactTarget(0x2000_ffff),
            nonce: 0,
            miner: Address([4; 20]),
            reward: Amount::ZERO,
        },
        txs,
    }
}

fn frame(
    core: &mut NetworkState<FakeChain>,
    ms: u64,
    conn: ConnId,
    message: Message,
) -> Vec<Action> {
    core.handle(at(ms), Input::Frame { conn, message });
    drain(core)
}

/// The connection and job of the `Rebuild` among `actions`.
fn rebuild_asked(actions: &[Action]) -> (ConnId, RebuildJob) {
    actions
        .iter()
        .find_map(|action| match action {
            Action::Rebuild { from, job } => Some((*from, (**job).clone())),
            _ => None,
        })
        .expect("a rebuild is asked for")
}

/// Runs the core's `Rebuild` against `chain` and feeds the outcome back.
fn rebuild(
    core: &mut NetworkState<FakeChain>,
    chain: &FakeChain,
    ms: u64,
    actions: &[Action],
) -> Vec<Action> {
    let (from, job) = rebuild_asked(actions);
    let (compact, rebuilt) = job.run(chain);
    core.handle(
        at(ms),
        Input::Rebuilt {
            from,
            compact: Box::new(compact),
            rebuilt,
        },
    );
    drain(core)
}

fn imported(actions: &[Action]) -> Option<Block> {
    actions.iter().find_map(|action| match action {
        Action::ImportBlock { block, .. } => Some((**block).clone()),
        _ => None,
    })
}

fn pushed_to(actions: &[Action]) -> Vec<ConnId> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::PushCompact { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_block_is_fetched_compact_and_rebuilt_asking_only_for_what_the_mempool_lacks() {
    let (mut core, chain) = core("a");
    let (peer, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    let block = block_of((0..4).map(tx).collect());
    for n in [0, 1, 3] {
        chain.add_tx(tx(n));
    }
    let hash = block.hash();
    let actions = frame(
        &mut core,
        10,
        peer,
        Message::Inv(vec![InvItem::Block(hash)]),
    );
    assert_eq!(
        sent_to(&actions, peer),
        vec![Message::GetData(vec![InvItem::CompactBlock(hash)])]
    );
    let actions = frame(
        &mut core,
        20,
        peer,
        Message::CompactBlock(Box::new(CompactBlock::from_block(&block))),
    );
    let actions = rebuild(&mut core, &chain, 30, &actions);
    assert_eq!(
        sent_to(&actions, peer),
        vec![Message::GetBlockTxs {
            block: hash,
            indexes: vec![2]
        }],
        "only the tx the mempool lacks is asked for"
    );
    let actions = frame(
        &mut core,
        40,
        peer,
        Message::BlockTxs {
            block: hash,
            txs: vec![tx(2)],
        },
    );
    let actions = rebuild(&mut core, &chain, 50, &actions);
    assert_eq!(imported(&actions), Some(block));
    assert_eq!(counted(&actions, "p2p_compact_blocks_total", "filled"), 1);
    // An answer nobody asked for is dropped and counted.
    let actions = frame(
        &mut core,
        60,
        peer,
        Message::BlockTxs {
            block: hash,
            txs: vec![tx(2)],
        },
    );
    assert_eq!(
        counted(&actions, "p2p_dropped_total", "unsolicited_block_txs"),
        1
    );
}

/// The child of `parent` holding `txs`.
fn child_of(parent: &Block, txs: Vec<Transaction>) -> Block {
    let mut block = block_of(txs);
    block.header.prev_hash = parent.hash();
    block.header.height = Height(parent.header.height.0 + 1);
    block
}

/// A block announced and its compact form received from `peer`.
fn compact_from(
    core: &mut NetworkState<FakeChain>,
    ms: u64,
    peer: ConnId,
    block: &Block,
) -> Vec<Action> {
    frame(
        core,
        ms,
        peer,
        Message::Inv(vec![InvItem::Block(block.hash())]),
    );
    frame(
        core,
        ms + 1,
        peer,
        Message::CompactBlock(Box::new(CompactBlock::from_block(block))),
    )
}

#[test]
fn a_compact_block_whose_parent_is_still_on_its_way_is_rebuilt_and_imported_after_it() {
    let (mut core, chain) = core("a");
    let (peer, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    let parent = block_of((0..3).map(tx).collect());
    let child = child_of(&parent, (3..5).map(tx).collect());
    for n in [0, 1, 3, 4] {
        chain.add_tx(tx(n));
    }
    // The parent lacks tx 2: it waits for the peer's `BlockTxs`.
    let actions = compact_from(&mut core, 10, peer, &parent);
    let actions = rebuild(&mut core, &chain, 20, &actions);
    assert!(matches!(
        sent_to(&actions, peer).as_slice(),
        [Message::GetBlockTxs { .. }]
    ));
    // The child comes meanwhile: rebuilt at once, not fetched whole.
    let actions = compact_from(&mut core, 30, peer, &child);
    assert_eq!(
        counted(&actions, "p2p_compact_blocks_total", "unknown_parent"),
        0
    );
    let actions = rebuild(&mut core, &chain, 40, &actions);
    assert_eq!(imported(&actions), None, "not before its parent");
    assert_eq!(
        counted(&actions, "p2p_compact_blocks_total", "waiting_parent"),
        1
    );
    // The parent is finished and handed over; its verdict releases the child.
    let actions = frame(
        &mut core,
        50,
        peer,
        Message::BlockTxs {
            block: parent.hash(),
            txs: vec![tx(2)],
        },
    );
    let actions = rebuild(&mut core, &chain, 60, &actions);
    assert_eq!(imported(&actions), Some(parent.clone()));
    chain.0.borrow_mut().blocks.insert(parent.hash());
    core.handle(
        at(70),
        Input::BlockVerdict {
            from: Some(peer),
            hash: parent.hash(),
            size: parent.encoded_len(),
            verdict: BlockVerdict::Accepted,
        },
    );
    assert_eq!(imported(&drain(&mut core)), Some(child));
}

#[test]
fn a_compact_block_whose_parent_is_being_validated_follows_it_at_once() {
    let (mut core, chain) = core("a");
    let (peer, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    let parent = block_of((0..2).map(tx).collect());
    let child = child_of(&parent, (2..4).map(tx).collect());
    for n in 0..4 {
        chain.add_tx(tx(n));
    }
    let actions = compact_from(&mut core, 10, peer, &parent);
    let actions = rebuild(&mut core, &chain, 20, &actions);
    assert_eq!(imported(&actions), Some(parent.clone()));
    // No verdict yet: the parent is with the validator, which takes
    // blocks in order, so the child goes straight behind it.
    let actions = compact_from(&mut core, 30, peer, &child);
    let actions = rebuild(&mut core, &chain, 40, &actions);
    assert_eq!(imported(&actions), Some(child));
    // A block nobody is working on is still fetched whole.
    let stranger = child_of(&block_of(vec![tx(9)]), vec![tx(8)]);
    let actions = compact_from(&mut core, 50, peer, &stranger);
    assert_eq!(
        counted(&actions, "p2p_compact_blocks_total", "unknown_parent"),
        1
    );
}

#[test]
fn a_block_whose_txs_are_all_pooled_needs_no_round_trip() {
    let (mut core, chain) = core("a");
    let (peer, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    // The peer asks us to push compactly; we ask it the same.
    frame(
        &mut core,
        5,
        peer,
        Message::SendCompact {
            high_bandwidth: true,
        },
    );
    let block = block_of((0..3).map(tx).collect());
    for n in 0..3 {
        chain.add_tx(tx(n));
    }
    // Unasked and from a peer we did not choose: taken as an announcement.
    let actions = frame(
        &mut core,
        10,
        peer,
        Message::CompactBlock(Box::new(CompactBlock::from_block(&block))),
    );
    assert_eq!(
        sent_to(&actions, peer),
        vec![Message::GetData(vec![InvItem::CompactBlock(block.hash())])]
    );
    assert_eq!(
        counted(&actions, "p2p_compact_blocks_total", "unsolicited"),
        1
    );
    let actions = frame(
        &mut core,
        20,
        peer,
        Message::CompactBlock(Box::new(CompactBlock::from_block(&block))),
    );
    let actions = rebuild(&mut core, &chain, 30, &actions);
    assert!(sent_to(&actions, peer).is_empty(), "nothing to ask for");
    assert_eq!(imported(&actions), Some(block));
    assert_eq!(counted(&actions, "p2p_compact_blocks_total", "rebuilt"), 1);
}

#[test]
fn a_compact_block_that_cannot_be_rebuilt_or_finished_is_fetched_whole() {
    let (mut core, chain) = core("a");
    let (peer, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    let block = block_of((0..2).map(tx).collect());
    let hash = block.hash();
    let whole = Message::GetData(vec![InvItem::Block(hash)]);
    frame(
        &mut core,
        10,
        peer,
        Message::Inv(vec![InvItem::Block(hash)]),
    );
    let actions = frame(
        &mut core,
        20,
        peer,
        Message::CompactBlock(Box::new(CompactBlock::from_block(&block))),
    );
    assert!(matches!(
        actions.iter().find(|a| matches!(a, Action::Rebuild { .. })),
        Some(Action::Rebuild { .. })
    ));
    // A short-id collision or a wrong merkle root: no ban, the full block.
    core.handle(
        at(30),
        Input::Rebuilt {
            from: peer,
            compact: Box::new(CompactBlock::from_block(&block)),
            rebuilt: Rebuilt::Failed("merkle_mismatch"),
        },
    );
    let actions = drain(&mut core);
    assert_eq!(sent_to(&actions, peer), vec![whole.clone()]);
    assert_eq!(disconnect_reason(&actions, peer), None);

    // A peer that never sends the missing txs: the block is fetched whole
    // once the answer is late.
    let other = block_of(vec![tx(7)]);
    let other_hash = other.hash();
    frame(
        &mut core,
        100,
        peer,
        Message::Inv(vec![InvItem::Block(other_hash)]),
    );
    let actions = frame(
        &mut core,
        110,
        peer,
        Message::CompactBlock(Box::new(CompactBlock::from_block(&other))),
    );
    let actions = rebuild(&mut core, &chain, 120, &actions);
    assert!(matches!(
        sent_to(&actions, peer).as_slice(),
        [Message::GetBlockTxs { .. }]
    ));
    core.handle(at(7_000), Input::Tick);
    let actions = drain(&mut core);
    assert!(sent_to(&actions, peer).contains(&Message::GetData(vec![InvItem::Block(other_hash)])));
    assert_eq!(counted(&actions, "p2p_compact_blocks_total", "timeout"), 1);
}

#[test]
fn new_blocks_are_pushed_compact_to_peers_that_asked_and_announced_to_the_rest() {
    let (mut core, _) = core("a");
    let peers: Vec<ConnId> = (0..4)
        .map(|n| {
            Remote::new(&format!("p{n}"), 9001 + n)
                .join(&mut core, at(0))
                .0
        })
        .collect();
    frame(
        &mut core,
        5,
        peers[0],
        Message::SendCompact {
            high_bandwidth: true,
        },
    );
    let hash = block_of(vec![tx(1)]).hash();
    core.handle(
        at(10),
        Input::Node(NodeEvent::BlockValidated {
            hash,
            height: Height(1),
        }),
    );
    let actions = drain(&mut core);
    assert_eq!(pushed_to(&actions), vec![peers[0]]);
    assert!(sent_to(&actions, peers[0]).is_empty(), "no Inv besides");
    for peer in &peers[1..] {
        assert_eq!(
            sent_to(&actions, *peer),
            vec![Message::Inv(vec![InvItem::Block(hash)])]
        );
    }
}

#[test]
fn a_block_pushed_whole_by_a_high_bandwidth_peer_is_imported_at_once() {
    let (mut core, _) = core("a");
    let (peer, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    // Delivering a block first makes it a high-bandwidth peer.
    core.handle(
        at(5),
        Input::BlockVerdict {
            from: Some(peer),
            hash: block_of(vec![tx(9)]).hash(),
            size: 100,
            verdict: BlockVerdict::Accepted,
        },
    );
    drain(&mut core);
    let block = block_of((0..3).map(tx).collect());
    let actions = frame(&mut core, 10, peer, Message::Block(Box::new(block.clone())));
    assert_eq!(imported(&actions), Some(block));
    assert!(sent_to(&actions, peer).is_empty(), "no round trip");
    assert_eq!(
        counted(&actions, "p2p_compact_blocks_total", "pushed_whole"),
        1
    );
}

#[test]
fn the_peers_that_last_brought_a_new_block_first_are_asked_for_compact_pushes() {
    let (mut core, _) = core("a");
    let peers: Vec<ConnId> = (0..4)
        .map(|n| {
            Remote::new(&format!("p{n}"), 9001 + n)
                .join(&mut core, at(0))
                .0
        })
        .collect();
    let accept = |core: &mut NetworkState<FakeChain>, ms: u64, from: ConnId, n: u64| {
        core.handle(
            at(ms),
            Input::BlockVerdict {
                from: Some(from),
                hash: block_of(vec![tx(n)]).hash(),
                size: 100,
                verdict: BlockVerdict::Accepted,
            },
        );
        drain(core)
    };
    let hb = |on: bool| Message::SendCompact { high_bandwidth: on };
    for (n, peer) in peers.iter().take(3).enumerate() {
        let actions = accept(&mut core, 10 + n as u64, *peer, n as u64);
        assert_eq!(sent_to(&actions, *peer), vec![hb(true)]);
    }
    // Delivering first again changes nothing on the wire.
    let actions = accept(&mut core, 20, peers[0], 10);
    assert!(sent_to(&actions, peers[0]).is_empty());
    // A fourth deliverer takes the place of the one that delivered least
    // recently (peers[1]).
    let actions = accept(&mut core, 30, peers[3], 11);
    assert_eq!(sent_to(&actions, peers[3]), vec![hb(true)]);
    assert_eq!(sent_to(&actions, peers[1]), vec![hb(false)]);
    assert!(sent_to(&actions, peers[2]).is_empty());
}

/// A block the driver rebuilt in full and had judged where it rebuilt it
/// (`Input::RebuiltJudged`) is not imported again: it is counted as a
/// rebuild, and its verdict earns the peer that brought it what an
/// import's would (here a place among the high-bandwidth peers).
#[test]
fn a_block_judged_where_it_was_rebuilt_is_not_imported_again_and_its_verdict_counts() {
    let (mut core, chain) = core("a");
    let (peer, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    let block = block_of((0..3).map(tx).collect());
    for n in 0..3 {
        chain.add_tx(tx(n));
    }
    let actions = compact_from(&mut core, 10, peer, &block);
    let (from, job) = rebuild_asked(&actions);
    let (compact, rebuilt, txids) = job.run_keeping_txids(&chain);
    assert_eq!(rebuilt, Rebuilt::Complete(block.clone()));
    assert_eq!(txids, Some(block.txids()), "the rebuild's txids come along");
    core.handle(
        at(25),
        Input::RebuiltJudged {
            from,
            compact: Box::new(compact),
            verdict: BlockVerdict::Accepted,
            judging: Duration::from_millis(4),
        },
    );
    let actions = drain(&mut core);
    assert_eq!(imported(&actions), None, "judged already");
    // Its rebuild took 10 ms of the 14 since it was received; 4 went on
    // judging it.
    assert!(actions.iter().any(|action| matches!(
        action,
        Action::Metric(MetricUpdate::Observe {
            name: "p2p_compact_rebuild_seconds",
            micros: 9_000..=11_000
        })
    )));
    assert_eq!(counted(&actions, "p2p_compact_blocks_total", "rebuilt"), 1);
    assert_eq!(
        sent_to(&actions, peer),
        vec![Message::SendCompact {
            high_bandwidth: true
        }]
    );
}
