//! Gossip (fetching, announcing, answering, gap recovery) and the sync.

use super::*;
use ledger::Height;

// ------------------------------------------------------------------ gossip

#[test]
fn announced_tx_is_fetched_once_and_asked_again_after_a_timeout() {
    let (mut core, _) = core("a");
    let (first, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    let (second, _) = Remote::new("p2", 9002).join(&mut core, at(0));
    let item = InvItem::Tx(tx(0).txid());
    core.handle(
        at(10),
        Input::Frame {
            conn: first,
            message: Message::Inv(vec![item]),
        },
    );
    assert_eq!(
        sent_to(&drain(&mut core), first),
        vec![Message::GetData(vec![item])]
    );
    core.handle(
        at(20),
        Input::Frame {
            conn: second,
            message: Message::Inv(vec![item]),
        },
    );
    assert!(
        sent_to(&drain(&mut core), second).is_empty(),
        "one fetch at a time"
    );
    // The first announcer never answers: after the request timeout the
    // second is asked.
    core.handle(at(5_000), Input::Tick);
    assert!(!sent_to(&drain(&mut core), second).contains(&Message::GetData(vec![item])));
    core.handle(at(5_600), Input::Tick);
    assert!(sent_to(&drain(&mut core), second).contains(&Message::GetData(vec![item])));
}

#[test]
fn accepted_tx_is_announced_once_to_each_peer_that_lacks_it() {
    let (mut core, chain) = core("a");
    let (first, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    let (second, _) = Remote::new("p2", 9002).join(&mut core, at(0));
    let accepted = tx(0);
    let item = InvItem::Tx(accepted.txid());
    // The first peer sent it to us, so it is known to have it.
    core.handle(
        at(10),
        Input::Frame {
            conn: first,
            message: Message::Tx(Box::new(accepted.clone())),
        },
    );
    let actions = drain(&mut core);
    assert!(actions
        .iter()
        .any(|action| matches!(action, Action::ImportTx { from, .. } if *from == first)));
    chain.add_tx(accepted.clone());
    core.handle(
        at(11),
        Input::TxVerdict {
            from: first,
            txid: accepted.txid(),
            sender: accepted.sender(),
            nonce: accepted.nonce,
            verdict: TxVerdict::Accepted,
        },
    );
    let event = NodeEvent::TxAccepted {
        tx: std::sync::Arc::new(accepted.clone()),
    };
    core.handle(at(12), Input::Node(event.clone()));
    assert!(core.has_pending_announcements());
    core.handle(at(12), Input::Idle);
    let actions = drain(&mut core);
    assert_eq!(sent_to(&actions, second), vec![Message::Inv(vec![item])]);
    assert!(sent_to(&actions, first).is_empty());
    // Accepted again (a duplicate event): nobody hears of it twice.
    core.handle(at(13), Input::Node(event));
    core.handle(at(13), Input::Idle);
    assert!(sent_to(&drain(&mut core), second).is_empty());
}

#[test]
fn with_announcement_rounds_txs_wait_for_the_round_and_go_out_together() {
    let mut config = config("a", 7000);
    config.timing.tx_announce_interval = Duration::from_secs(1);
    let (mut core, chain) = core_with(config, 1);
    let (peer, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    drain(&mut core);
    let txs = [tx(0), tx(1)];
    for (index, accepted) in txs.iter().enumerate() {
        chain.add_tx(accepted.clone());
        let event = NodeEvent::TxAccepted {
            tx: std::sync::Arc::new(accepted.clone()),
        };
        core.handle(at(100 + index as u64), Input::Node(event));
    }
    // Not within the batch window: the round is drawn, seconds at most.
    core.handle(at(150), Input::Idle);
    core.handle(at(150), Input::Tick);
    let round = core.next_timer();
    assert!(sent_to(&drain(&mut core), peer).is_empty());
    assert!(
        round > at(150).mono && round <= at(100 + 8_000).mono,
        "{round:?}"
    );
    core.handle(Time::new(round, 1_800_000_000_000), Input::Tick);
    let items: Vec<InvItem> = txs.iter().map(|tx| InvItem::Tx(tx.txid())).collect();
    assert_eq!(sent_to(&drain(&mut core), peer), vec![Message::Inv(items)]);
    assert!(!core.has_pending_announcements());
}

#[test]
fn get_data_is_answered_in_order_with_missing_blocks_in_one_not_found() {
    let (mut core, chain) = core("a");
    let (conn, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    chain.add_tx(tx(1));
    let missing = InvItem::Tx(tx(2).txid());
    let unknown_block = InvItem::Block(BlockHash(Hash256::digest(b"no such block")));
    let request = vec![
        InvItem::Block(genesis()),
        InvItem::Tx(tx(1).txid()),
        missing,
        unknown_block,
    ];
    core.handle(
        at(1),
        Input::Frame {
            conn,
            message: Message::GetData(request),
        },
    );
    let actions = drain(&mut core);
    let answers: Vec<&Vec<Outgoing>> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Answer { items, .. } => Some(items),
            _ => None,
        })
        .collect();
    assert_eq!(
        answers,
        vec![&vec![
            Outgoing::Block(genesis()),
            // Txs are looked up as they are sent; the link lists the ones
            // gone by then in a `NotFound` of its own.
            Outgoing::Tx(tx(1).txid()),
            Outgoing::Tx(tx(2).txid()),
            Outgoing::Message(Message::NotFound(vec![unknown_block])),
        ]]
    );
}

#[test]
fn a_gap_in_a_senders_nonces_is_asked_of_the_peer_that_sent_a_later_one() {
    let (mut core, chain) = core("a");
    let (conn, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    let later = tx(5);
    let verdict = |nonce| Input::TxVerdict {
        from: conn,
        txid: tx(nonce).txid(),
        sender: later.sender(),
        nonce,
        verdict: TxVerdict::Accepted,
    };
    chain.add_tx(later.clone());
    core.handle(at(10), verdict(5));
    let asked = Message::GetSenderTxs {
        sender: later.sender(),
        first_nonce: 0,
        count: 5,
    };
    assert_eq!(sent_to(&drain(&mut core), conn), vec![asked.clone()]);
    // Asked once per retry interval, however many later txs arrive.
    core.handle(at(20), verdict(5));
    assert!(sent_to(&drain(&mut core), conn).is_empty());
    // The answers count as requested (never dropped as unsolicited).
    core.handle(
        at(30),
        Input::Frame {
            conn,
            message: Message::Tx(Box::new(tx(0))),
        },
    );
    assert!(drain(&mut core)
        .iter()
        .any(|action| matches!(action, Action::ImportTx { tx, .. } if tx.nonce == 0)));
    assert!(core.gap_requested(conn, &later.sender(), 4));
    assert!(!core.gap_requested(conn, &later.sender(), 5));
    // Still missing after the retry interval: asked again.
    core.handle(at(2_100), verdict(5));
    assert_eq!(sent_to(&drain(&mut core), conn), vec![asked]);
    // A refusal for running too far ahead asks too; any other does not.
    let (mut core, _) = core_with(config("b", 7001), 1);
    let (conn, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    let refused = |reason: &str| Input::TxVerdict {
        from: conn,
        txid: tx(70).txid(),
        sender: later.sender(),
        nonce: 70,
        verdict: TxVerdict::Rejected {
            reason: reason.into(),
            misbehaving: false,
        },
    };
    core.handle(at(1), refused("insufficient_funds"));
    assert!(sent_to(&drain(&mut core), conn).is_empty());
    core.handle(at(2), refused("nonce_too_high"));
    assert_eq!(
        sent_to(&drain(&mut core), conn),
        vec![Message::GetSenderTxs {
            sender: later.sender(),
            first_nonce: 0,
            count: MAX_SENDER_TXS,
        }]
    );
}

#[test]
fn get_sender_txs_is_answered_in_nonce_order_within_the_cap() {
    let (mut core, chain) = core("a");
    let (conn, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    for nonce in [4, 2, 3, 9] {
        chain.add_tx(tx(nonce));
    }
    let message = Message::GetSenderTxs {
        sender: tx(0).sender(),
        first_nonce: 3,
        count: 2,
    };
    core.handle(at(1), Input::Frame { conn, message });
    assert_eq!(
        sent_to(&drain(&mut core), conn),
        vec![Message::Tx(Box::new(tx(3))), Message::Tx(Box::new(tx(4)))]
    );
}

#[test]
fn pending_txs_are_announced_again_every_few_blocks_even_to_peers_that_know_them() {
    let (mut core, chain) = core("a");
    let (conn, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    chain.add_tx(tx(0));
    let item = InvItem::Tx(tx(0).txid());
    core.handle(
        at(1),
        Input::Frame {
            conn,
            message: Message::Inv(vec![item]),
        },
    );
    drain(&mut core);
    let mut announced_at = None;
    for block in 1..=REANNOUNCE_EVERY_BLOCKS.end {
        let block_event = NodeEvent::BlockConnected {
            block: std::sync::Arc::new(ledger::Block {
                header: Header {
                    version: 1,
                    height: Height(u64::from(block)),
                    prev_hash: genesis(),
                    merkle_root: Hash256::ZERO,
                    timestamp: 1,
                    bits: ledger::target::CompactTarget(0),
                    nonce: u64::from(block),
                    miner: Address([0; 20]),
                    reward: Amount::ZERO,
                },
                txs: Vec::new(),
            }),
            height: Height(u64::from(block)),
        };
        core.handle(at(10 + u64::from(block)), Input::Node(block_event));
        core.handle(at(10 + u64::from(block)), Input::Idle);
        if sent_to(&drain(&mut core), conn).contains(&Message::Inv(vec![item])) {
            announced_at = Some(block);
            break;
        }
    }
    let block = announced_at.expect("announced again");
    assert!(
        REANNOUNCE_EVERY_BLOCKS.contains(&block),
        "after {block} blocks"
    );
}

// -------------------------------------------------------------------- sync

#[test]
fn every_peer_claiming_more_work_is_asked_for_headers_and_a_silent_one_is_dropped() {
    let (mut core, _) = core("a");
    let mut weaker = Remote::new("weaker", 9001);
    weaker.work = 5;
    let mut stronger = Remote::new("stronger", 9002);
    stronger.work = 9;
    let (weak_conn, actions) = weaker.join(&mut core, at(0));
    assert!(sent_to(&actions, weak_conn)
        .iter()
        .any(|m| matches!(m, Message::GetHeaders(_))));
    // A claim only opens a header exchange: a second claimant is asked
    // too, not kept waiting behind the first.
    let (strong_conn, actions) = stronger.join(&mut core, at(10));
    assert!(sent_to(&actions, strong_conn)
        .iter()
        .any(|m| matches!(m, Message::GetHeaders(_))));
    // Neither answers: each is dropped once the stall timeout (15 s)
    // passes since it was asked.
    core.handle(at(15_000), Input::Tick);
    assert_eq!(disconnect_reason(&drain(&mut core), weak_conn), None);
    core.handle(at(15_500), Input::Tick);
    let actions = drain(&mut core);
    assert_eq!(disconnect_reason(&actions, weak_conn), Some("stalled"));
    assert_eq!(disconnect_reason(&actions, strong_conn), Some("stalled"));
    assert_eq!(
        counted(&actions, "p2p_sync_peers_dropped_total", "headers_timeout"),
        2
    );
}

#[test]
fn headers_that_miss_their_target_get_the_peer_banned() {
    let (mut core, _) = core("a");
    let mut remote = Remote::new("liar", 9001);
    remote.work = 5;
    let (conn, _) = remote.join(&mut core, at(0));
    let header = Header {
        version: 1,
        height: Height(1),
        prev_hash: genesis(),
        merkle_root: Hash256::ZERO,
        timestamp: 1,
        bits: ledger::target::CompactTarget(0x0300_0001),
        nonce: 0,
        miner: Address([0; 20]),
        reward: Amount::ZERO,
    };
    core.handle(
        at(1),
        Input::Frame {
            conn,
            message: Message::Headers(vec![header]),
        },
    );
    let actions = drain(&mut core);
    assert_eq!(counted(&actions, "p2p_bans_total", "bad_pow"), 1);
    assert_eq!(disconnect_reason(&actions, conn), Some("misbehaved"));
}

/// A partition healed with a peer whose branch had no more work than our
/// chain when we first read its headers; then it mined one more block. The
/// answer to our next `GetHeaders` goes on from the last header it sent,
/// and its chain now beats ours: every block of its branch is asked for,
/// not only the new one (whose parent nobody would ever ask for, so the
/// two sides would never converge).
#[test]
fn a_peer_branch_that_overtakes_ours_is_fetched_whole_after_a_partition() {
    use crate::test_utils::headers::{easiest_bits, easy_headers};
    let (mut core, chain) = core("a");
    let unit = ledger::Target::from_compact(easiest_bits())
        .expect("valid")
        .work();
    let unit = (1..64)
        .find(|k| Work(U256::from_u64(*k)) == unit)
        .expect("a small unit of work");
    // Our chain: two easy blocks' worth.
    chain.0.borrow_mut().tip_work = 2 * unit;
    let peer = Remote::new("p1", 9001);
    let (conn, _) = peer.join(&mut core, at(0));
    let branch = easy_headers(genesis(), 0, 3, 7);
    let block = |k: usize| Block {
        header: branch[k].clone(),
        txs: Vec::new(),
    };
    // It shows a block whose parent we lack: an orphan, so its headers are
    // asked for.
    let orphan = |core: &mut NetworkState<FakeChain>, ms: u64, k: usize| {
        let message = Message::Block(Box::new(block(k)));
        core.handle(at(ms), Input::Frame { conn, message });
        let size = drain(core)
            .iter()
            .find_map(|action| match action {
                Action::ImportBlock { size, .. } => Some(*size),
                _ => None,
            })
            .expect("handed to validation");
        core.handle(
            at(ms),
            Input::BlockVerdict {
                from: Some(conn),
                hash: branch[k].hash(),
                size,
                verdict: BlockVerdict::Orphan,
            },
        );
        sent_to(&drain(core), conn)
            .into_iter()
            .find_map(|message| match message {
                Message::GetHeaders(locator) => Some(locator),
                _ => None,
            })
            .expect("its headers are asked for")
    };
    orphan(&mut core, 10, 1);
    let headers = Message::Headers(branch[..2].to_vec());
    core.handle(
        at(20),
        Input::Frame {
            conn,
            message: headers,
        },
    );
    let asked = sent_to(&drain(&mut core), conn);
    assert!(
        !asked.iter().any(|m| matches!(m, Message::GetData(_))),
        "no more work than ours: nothing fetched, got {asked:?}"
    );
    // It mined one more: its chain now has more work than ours.
    let locator = orphan(&mut core, 4_000, 2);
    assert_eq!(locator[0], branch[1].hash(), "asked from its last header");
    let headers = Message::Headers(branch[2..].to_vec());
    core.handle(
        at(4_010),
        Input::Frame {
            conn,
            message: headers,
        },
    );
    let fetched: BTreeSet<BlockHash> = sent_to(&drain(&mut core), conn)
        .into_iter()
        .filter_map(|message| match message {
            Message::GetData(items) => Some(items),
            _ => None,
        })
        .flatten()
        .map(|item| BlockHash(item.hash()))
        .collect();
    let whole: BTreeSet<BlockHash> = branch.iter().map(Header::hash).collect();
    assert_eq!(fetched, whole, "its whole branch, from the fork point");
}

/// The relay backlog (txs from peers waiting for validation, which makes
/// the API refuse new txs when high) leaves out the peer with the most:
/// one peer streaming txs at us cannot trip it alone, while what several
/// peers relay counts, until it is judged.
#[test]
fn the_relay_backlog_leaves_out_the_peer_with_the_most_waiting() {
    let (mut core, _) = core("a");
    let (flooder, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    let (other, _) = Remote::new("p2", 9002).join(&mut core, at(0));
    let send = |core: &mut NetworkState<FakeChain>, conn: ConnId, n: u64| {
        core.handle(
            at(1),
            Input::Frame {
                conn,
                message: Message::Tx(Box::new(tx(n))),
            },
        );
        drain(core);
    };
    for n in 0..5 {
        send(&mut core, flooder, n);
    }
    assert_eq!(core.relay_backlog(), 0, "one peer alone");
    for n in 10..12 {
        send(&mut core, other, n);
    }
    assert_eq!(
        core.relay_backlog(),
        2,
        "7 waiting, 5 of them the flooder's"
    );
    for n in 0..4 {
        core.handle(
            at(2),
            Input::TxVerdict {
                from: flooder,
                txid: tx(n).txid(),
                sender: tx(n).sender(),
                nonce: tx(n).nonce,
                verdict: TxVerdict::Accepted,
            },
        );
    }
    drain(&mut core);
    assert_eq!(core.relay_backlog(), 1, "3 waiting, 2 of them the other's");
}

/// What `actions` add to the counter `metric`.
fn added(actions: &[Action], metric: &str) -> u64 {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Metric(MetricUpdate::Add { name, value, .. }) if *name == metric => {
                Some(*value)
            }
            _ => None,
        })
        .sum()
}

#[test]
fn announcements_of_held_txs_are_counted_once_at_the_maintenance_round() {
    let (mut core, chain) = core("a");
    let (peer, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    chain.add_tx(tx(1));
    let counted = |actions: &[Action]| added(actions, "p2p_announcements_known_total");
    drain(&mut core);
    // Three announcements of a tx we hold, one of a tx we lack: no
    // metric update per announcement...
    for (n, item) in [1, 1, 2, 1].into_iter().enumerate() {
        core.handle(
            at(10 + n as u64),
            Input::Frame {
                conn: peer,
                message: Message::Inv(vec![InvItem::Tx(tx(item).txid())]),
            },
        );
        assert_eq!(counted(&drain(&mut core)), 0);
    }
    // ...but the three in one at the next round, and nothing after.
    core.handle(at(1_000), Input::Tick);
    assert_eq!(counted(&drain(&mut core)), 3);
    core.handle(at(2_000), Input::Tick);
    assert_eq!(counted(&drain(&mut core)), 0);
}

#[test]
fn the_known_inventory_table_forgets_the_oldest_item_and_counts_it() {
    let (mut core, _) = core("a");
    core.set_known_inventory_capacity(2);
    let (peer, _) = Remote::new("p1", 9001).join(&mut core, at(0));
    // Three announced items in a table of two: the first is forgotten.
    for n in 0..3 {
        core.handle(
            at(10 + n),
            Input::Frame {
                conn: peer,
                message: Message::Inv(vec![InvItem::Tx(tx(n).txid())]),
            },
        );
    }
    drain(&mut core);
    // The maintenance round reports it once.
    core.handle(at(1_000), Input::Tick);
    let forgotten = added(&drain(&mut core), "p2p_known_inventory_forgotten_total");
    assert_eq!(forgotten, 1);
    core.handle(at(2_000), Input::Tick);
    assert!(!drain(&mut core).iter().any(|action| matches!(
        action,
        Action::Metric(MetricUpdate::Add { name, .. }) if *name == "p2p_known_inventory_forgotten_total"
    )));
}
