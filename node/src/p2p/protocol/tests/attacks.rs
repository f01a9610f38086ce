//! Hostile peers against the core on a fake clock (attacks 3 to 6 of
//! ARCHITECTURE.md's threat model): each test plays the attack and an honest peer, and checks what the
//! honest peer still gets. Each one failed on the core before its defence.

use super::*;
use crate::p2p::message::MAX_HEADERS;
use crate::test_utils::headers::{easy_blocks, easy_headers};
use ledger::Height;

/// An inbound peer from a given IP.
fn remote_at(name: &str, ip: [u8; 4], port: u16) -> Remote {
    let mut remote = Remote::new(name, port);
    remote.addr = SocketAddr::from((ip, port));
    remote
}

fn closed(actions: &[Action], conn: ConnId) -> bool {
    disconnect_reason(actions, conn).is_some()
}

/// `n` announcements of txs nobody has, numbered on from `*next`.
fn fake_tx_items(next: &mut u64, n: usize) -> Vec<InvItem> {
    (0..n)
        .map(|_| {
            *next += 1;
            InvItem::Tx(TxId(Hash256::digest(&next.to_le_bytes())))
        })
        .collect()
}

// ------------------------------------------- 3: sync takeover by a claim

/// How a scripted sync peer serves blocks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serving {
    AllAtOnce,
    /// One block per this many ms.
    Drip(u64),
}

/// A scripted sync peer: the headers it answers every `GetHeaders` with,
/// and how it serves the blocks it has (the honest ones); it counts the
/// `GetHeaders` it was sent.
struct Scripted {
    serving: Serving,
    headers: Vec<Header>,
    asked_headers: std::cell::Cell<usize>,
}

impl Scripted {
    fn new(serving: Serving, headers: Vec<Header>) -> Scripted {
        Scripted {
            serving,
            headers,
            asked_headers: std::cell::Cell::new(0),
        }
    }
}

/// Runs the late node against its peers until its tip has `target_work`
/// or `limit_ms` passes; returns when it got there.
fn sync_until(
    core: &mut NetworkState<FakeChain>,
    chain: &FakeChain,
    blocks: &[Block],
    peers: &BTreeMap<ConnId, Scripted>,
    target_work: u64,
    (start_ms, limit_ms): (u64, u64),
) -> Option<u64> {
    let mut deliveries: Vec<(u64, ConnId, Message)> = Vec::new();
    let mut drip_next: BTreeMap<ConnId, u64> = BTreeMap::new();
    let mut now = start_ms;
    let mut actions = drain(core);
    while now <= start_ms + limit_ms {
        for action in std::mem::take(&mut actions) {
            match action {
                Action::Send { conn, message } => {
                    let Some(peer) = peers.get(&conn) else {
                        continue;
                    };
                    match message {
                        Message::GetHeaders(_) => {
                            peer.asked_headers.set(peer.asked_headers.get() + 1);
                            deliveries.push((
                                now + 10,
                                conn,
                                Message::Headers(peer.headers.clone()),
                            ));
                        }
                        Message::GetData(items) => {
                            for item in items {
                                let InvItem::Block(hash) = item else { continue };
                                let Some(block) = blocks.iter().find(|b| b.hash() == hash) else {
                                    continue;
                                };
                                let at_ms = match peer.serving {
                                    Serving::AllAtOnce => now + 10,
                                    Serving::Drip(every) => {
                                        let next = drip_next.entry(conn).or_insert(now);
                                        *next = (*next).max(now) + every;
                                        *next
                                    }
                                };
                                deliveries.push((
                                    at_ms,
                                    conn,
                                    Message::Block(Box::new(block.clone())),
                                ));
                            }
                        }
                        _ => {}
                    }
                }
                Action::ImportBlock {
                    from, block, size, ..
                } => {
                    let hash = block.hash();
                    {
                        let mut inner = chain.0.borrow_mut();
                        if inner.blocks.insert(hash) {
                            inner.tip_work += 2;
                        }
                    }
                    core.handle(
                        at(now),
                        Input::BlockVerdict {
                            from,
                            hash,
                            size,
                            verdict: BlockVerdict::Accepted,
                        },
                    );
                    actions.extend(drain(core));
                }
                Action::Disconnect { conn, .. } => {
                    deliveries.retain(|(_, to, _)| *to != conn);
                }
                _ => {}
            }
        }
        if !actions.is_empty() {
            continue;
        }
        if chain.0.borrow().tip_work >= target_work {
            return Some(now);
        }
        now += 100;
        deliveries.sort_by_key(|(when, conn, _)| (*when, *conn));
        let due: Vec<(u64, ConnId, Message)> = deliveries
            .iter()
            .filter(|(when, _, _)| *when <= now)
            .cloned()
            .collect();
        deliveries.retain(|(when, _, _)| *when > now);
        for (_, conn, message) in due {
            core.handle(at(now), Input::Frame { conn, message });
            actions.extend(drain(core));
        }
        core.handle(at(now), Input::Tick);
        actions.extend(drain(core));
    }
    None
}

/// The bound stated for this attack: the late node has the honest tip
/// within 7 s of meeting the liar (the block timeout of 5 s, a maintenance
/// round, and the honest download).
const SYNC_BOUND_MS: u64 = 7_000;

#[test]
fn attack3_sync_takeover_by_claimed_best_work() {
    // Easy blocks on genesis, each worth 2.
    let blocks = easy_blocks(genesis(), 0, 30, 0);
    let honest_work = 2 * blocks.len() as u64;
    let honest_headers: Vec<Header> = blocks.iter().map(|b| b.header.clone()).collect();
    // Honest headers and then made-up ones with the easiest bits (each
    // meets its own target), to a full answer: its headers never end, so
    // no claim check can catch it; only its blocks' timeouts can.
    let mut endless = honest_headers.clone();
    let last = blocks.last().expect("30").hash();
    endless.extend(easy_headers(last, 30, MAX_HEADERS - blocks.len(), 7));
    // The liar claims far more work than it shows and drips a block every
    // 14 s (inside the 15 s stall timeout); or claims the honest work,
    // sends endless headers, and drips one every 4.5 s (inside the 5 s
    // block timeout, which the head of a single-peer window waited for).
    for (liar_claim, liar_headers, drip_ms) in [
        (u64::MAX / 4, honest_headers.clone(), 14_000),
        (honest_work, endless, 4_500),
    ] {
        let (mut core, chain) = core("late");
        let mut liar = remote_at("liar", [45, 1, 0, 1], 9001);
        liar.work = liar_claim;
        let mut honest = remote_at("honest", [46, 1, 0, 1], 9002);
        honest.work = honest_work;
        // The liar arrives first.
        let (liar_conn, first) = liar.join(&mut core, at(0));
        assert!(
            sent_to(&first, liar_conn)
                .iter()
                .any(|m| matches!(m, Message::GetHeaders(_))),
            "the claim opens a header exchange with the liar"
        );
        let (honest_conn, second) = honest.join(&mut core, at(10));
        assert!(
            sent_to(&second, honest_conn)
                .iter()
                .any(|m| matches!(m, Message::GetHeaders(_))),
            "and with the honest peer beside it"
        );
        let peers = BTreeMap::from([
            (
                liar_conn,
                Scripted::new(Serving::Drip(drip_ms), liar_headers),
            ),
            (
                honest_conn,
                Scripted::new(Serving::AllAtOnce, honest_headers.clone()),
            ),
        ]);
        // Both `GetHeaders` again through the loop (`join` drained them).
        for conn in [liar_conn, honest_conn] {
            core.actions.push_back(Action::Send {
                conn,
                message: Message::GetHeaders(vec![genesis()]),
            });
        }
        let done = sync_until(
            &mut core,
            &chain,
            &blocks,
            &peers,
            honest_work,
            (20, 60_000),
        );
        let done = done.unwrap_or_else(|| {
            panic!(
                "claim {liar_claim}: the late node never reached the honest tip (work {})",
                chain.0.borrow().tip_work
            )
        });
        println!(
            "FIGURE attack 3 (claim {liar_claim}, drip {drip_ms} ms): honest tip after {done} ms"
        );
        assert!(
            done <= SYNC_BOUND_MS,
            "claim {liar_claim}: honest tip only after {done} ms"
        );
        assert!(core.conns.contains_key(&honest_conn));
        // The liar does not keep its place: dropped for its claim at
        // once, or for letting its blocks time out round after round.
        sync_until(&mut core, &chain, &blocks, &peers, u64::MAX, (done, 20_000));
        assert!(
            !core.conns.contains_key(&liar_conn),
            "claim {liar_claim}: the liar was dropped"
        );
        assert!(core.conns.contains_key(&honest_conn));
        assert!(
            !core.sync.is_active(),
            "nothing is left wanted from the liar"
        );
        // Its answers repeat themselves: the repeat is not asked for
        // again, however many rounds the liar stays.
        let asked = peers[&liar_conn].asked_headers.get();
        assert!(
            asked <= 2,
            "claim {liar_claim}: the liar was asked for headers {asked} times"
        );
    }
}

// ---------------------------------------- 4: blinding by the request table

#[test]
fn attack4_request_table_flood_does_not_blind_gossip() {
    let (mut core, chain) = core("victim");
    let mut flooders = Vec::new();
    for k in 0..25u8 {
        let remote = remote_at(&format!("flood{k}"), [45, k, 0, 1], 9100 + u16::from(k));
        flooders.push(remote.join(&mut core, at(0)).0);
    }
    let honest = remote_at("honest", [46, 1, 0, 1], 9001);
    let (honest_conn, _) = honest.join(&mut core, at(0));
    drain(&mut core);
    // Each floods 2,000 hashes it will never deliver.
    let mut n = 0u64;
    for conn in &flooders {
        let items = fake_tx_items(&mut n, 2_000);
        core.handle(
            at(100),
            Input::Frame {
                conn: *conn,
                message: Message::Inv(items),
            },
        );
    }
    drain(&mut core);
    // The honest peer's new tx is fetched at once and handed to the node.
    let fresh = tx(0);
    let announce = Message::Inv(vec![InvItem::Tx(fresh.txid())]);
    core.handle(
        at(200),
        Input::Frame {
            conn: honest_conn,
            message: announce,
        },
    );
    let actions = drain(&mut core);
    assert!(
        sent_to(&actions, honest_conn).iter().any(
            |m| matches!(m, Message::GetData(items) if items.contains(&InvItem::Tx(fresh.txid())))
        ),
        "the honest tx is requested despite {} outstanding requests",
        core.requests.len()
    );
    core.handle(
        at(250),
        Input::Frame {
            conn: honest_conn,
            message: Message::Tx(Box::new(fresh.clone())),
        },
    );
    let actions = drain(&mut core);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::ImportTx { tx, .. } if tx.txid() == fresh.txid())));
    println!(
        "FIGURE attack 4: honest tx requested 0 ms after its announcement, {} requests outstanding",
        core.requests.len()
    );

    // Unsolicited headers are refused unread, and costly requests are
    // rate-limited.
    core.handle(
        at(300),
        Input::Frame {
            conn: flooders[0],
            message: Message::Headers(vec![]),
        },
    );
    let actions = drain(&mut core);
    assert_eq!(
        counted(&actions, "p2p_dropped_total", "unsolicited_headers"),
        1
    );
    for _ in 0..150 {
        core.handle(
            at(300),
            Input::Frame {
                conn: flooders[1],
                message: Message::GetHeaders(vec![genesis()]),
            },
        );
    }
    let actions = drain(&mut core);
    let answered = actions
        .iter()
        .filter(|a| matches!(a, Action::Answer { conn, .. } if *conn == flooders[1]))
        .count();
    assert_eq!(answered, 100, "the burst is answered, the rest dropped");
    assert_eq!(
        counted(&actions, "p2p_rate_limited_total", "get_headers"),
        50
    );

    // The flooders keep announcing and never answer: their requests expire,
    // their shares halve, and within four request timeouts they are gone.
    let mut gone = BTreeSet::new();
    for second in 1..=30u64 {
        for conn in &flooders {
            let items = fake_tx_items(&mut n, 500);
            core.handle(
                at(second * 1_000),
                Input::Frame {
                    conn: *conn,
                    message: Message::Inv(items),
                },
            );
        }
        core.handle(at(second * 1_000 + 500), Input::Tick);
        for action in drain(&mut core) {
            if let Action::Disconnect { conn, .. } = action {
                gone.insert(conn);
            }
        }
    }
    assert!(
        flooders.iter().all(|conn| gone.contains(conn)),
        "every flooder dropped"
    );
    assert!(!gone.contains(&honest_conn), "the honest peer stays");
    let _ = chain;
}

// --------------------------------------------- 5: eclipse by address book

#[test]
fn attack5_address_book_eclipse() {
    let mut config = config("victim", 7000);
    config.no_discovery = false;
    config.listen_addr = SocketAddr::from(([203, 0, 113, 7], 7000));
    let (mut core, _) = core_with(config, 5);
    // Before the attack: 40 honest nodes we connected to, in 40 groups.
    let honest: Vec<SocketAddr> = (0..40u8)
        .map(|k| SocketAddr::from(([80, k, 1, 1], 7000)))
        .collect();
    for (k, addr) in honest.iter().enumerate() {
        core.book.connected(
            *addr,
            SecretKey::from_seed(&format!("h{k}")).public_key(),
            at(0).unix_ms,
        );
    }
    drain(&mut core);
    // 10 identities, each reconnecting three times, each time sending
    // 1,000 fresh addresses stamped "now".
    let mut next = 0u32;
    let mut refused_local = 0;
    for round in 0..3u64 {
        for k in 0..10u8 {
            let name = format!("eclipse{k}");
            let remote = remote_at(&name, [45, k, 0, 1], 9200 + u16::from(k));
            let now = at(1_000 + round * 100_000 + u64::from(k) * 1_000);
            let (conn, _) = remote.join(&mut core, now);
            let addrs: Vec<PeerAddr> = (0..999)
                .map(|_| {
                    next += 1;
                    let b = next.to_be_bytes();
                    let ip = [150 + b[1] % 50, b[2], b[3], 1];
                    relayed(SocketAddr::from((ip, 7000)), now.unix_ms)
                })
                .chain(std::iter::once(relayed(
                    SocketAddr::from(([10, 0, 0, k], 7000)),
                    now.unix_ms,
                )))
                .collect();
            core.handle(
                now,
                Input::Frame {
                    conn,
                    message: Message::Addr(addrs),
                },
            );
            core.handle(
                now,
                Input::Closed {
                    conn,
                    cause: CloseCause::Disconnected("bye".into()),
                },
            );
            drain(&mut core);
        }
        // A public peer may not point us into a private network.
        let remote = remote_at("private-pusher", [47, 1, 0, 1], 9300);
        let now = at(2_000 + round * 100_000);
        let (conn, _) = remote.join(&mut core, now);
        let private = relayed(SocketAddr::from(([10, 1, 2, 3], 7000)), now.unix_ms);
        core.handle(
            now,
            Input::Frame {
                conn,
                message: Message::Addr(vec![private]),
            },
        );
        let actions = drain(&mut core);
        refused_local += counted_add(&actions, "p2p_addrs_refused_total", "non_routable");
        core.handle(
            now,
            Input::Closed {
                conn,
                cause: CloseCause::Disconnected("bye".into()),
            },
        );
        drain(&mut core);
    }
    let survivors = honest
        .iter()
        .filter(|addr| core.book.get(addr).is_some())
        .count();
    println!("FIGURE attack 5: {survivors}/40 honest entries survive 30,000 attacker addresses; book holds {}", core.book.len());
    assert_eq!(survivors, honest.len(), "every honest entry survives");
    assert_eq!(
        refused_local, 3,
        "private addresses from public peers refused"
    );
    // The victim now fills its outbound slots.
    core.handle(at(400_000), Input::Tick);
    let dials: Vec<SocketAddr> = drain(&mut core)
        .into_iter()
        .filter_map(|action| match action {
            Action::Dial { target, .. } => target.parse().ok(),
            _ => None,
        })
        .collect();
    let to_honest = dials.iter().filter(|addr| honest.contains(addr)).count();
    println!(
        "FIGURE attack 5: {to_honest} of {} outbound dials go to honest addresses",
        dials.len()
    );
    assert_eq!(dials.len(), 8);
    assert!(
        to_honest * 2 > dials.len(),
        "{to_honest} of {} dials honest",
        dials.len()
    );
    let groups: BTreeSet<_> = dials
        .iter()
        .map(|addr| super::netgroup::NetGroup::of(addr.ip()))
        .collect();
    assert_eq!(groups.len(), dials.len(), "one dial per network group");
}

/// An address as a peer relays it, last seen at `last_seen_ms`.
fn relayed(addr: SocketAddr, last_seen_ms: u64) -> PeerAddr {
    PeerAddr {
        addr,
        node_id: None,
        last_seen_ms,
        connected: false,
    }
}

fn counted_add(actions: &[Action], metric: &str, value: &str) -> usize {
    actions
        .iter()
        .map(|action| match action {
            Action::Metric(MetricUpdate::Add {
                name,
                label,
                value: n,
            }) if *name == metric && label.1 == value => *n as usize,
            _ => 0,
        })
        .sum()
}

// ------------------------------------------ 6: holding every inbound slot

#[test]
fn attack6_holding_every_inbound_slot() {
    let (mut core, _) = core("victim");
    // Four honest inbound peers that delivered blocks.
    let mut honest = Vec::new();
    for k in 0..4u8 {
        let remote = remote_at(&format!("honest{k}"), [80, k, 0, 1], 9000 + u16::from(k));
        let (conn, _) = remote.join(&mut core, at(u64::from(k)));
        core.handle(
            at(1_000),
            Input::BlockVerdict {
                from: Some(conn),
                hash: BlockHash(Hash256::digest(&[k])),
                size: 100,
                verdict: BlockVerdict::Accepted,
            },
        );
        honest.push(conn);
    }
    drain(&mut core);
    // 32 well-behaved attacker connections, each from its own group.
    let mut attackers = Vec::new();
    for k in 0..32u8 {
        let remote = remote_at(&format!("slot{k}"), [45, k, 0, 1], 9100 + u16::from(k));
        let (conn, actions) = remote.join(&mut core, at(2_000 + u64::from(k) * 10));
        assert!(!closed(&actions, conn), "attacker {k} is admitted");
        attackers.push(conn);
    }
    drain(&mut core);
    assert_eq!(core.n_ready(), 32, "every slot taken");
    // An honest newcomer still gets in, and evicts an attacker.
    let newcomer = remote_at("newcomer", [81, 1, 0, 1], 9500);
    let (conn, actions) = newcomer.join(&mut core, at(5_000));
    assert!(!closed(&actions, conn), "the newcomer stays");
    assert!(core.conns.get(&conn).is_some_and(|c| c.peer.is_some()));
    assert_eq!(counted(&actions, "p2p_evictions_total", "inbound"), 1);
    let evicted: Vec<ConnId> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Disconnect {
                conn,
                reason: "evicted",
            } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(evicted.len(), 1);
    assert!(attackers.contains(&evicted[0]), "an attacker is evicted");
    for conn in &honest {
        assert!(
            core.conns.contains_key(conn),
            "honest block deliverers kept"
        );
    }

    // Connections stuck in the handshake take the handshake slots only.
    let mut stuck = Vec::new();
    for k in 0..8u8 {
        let remote = remote_at(&format!("stuck{k}"), [47, k, 0, 1], 9600 + u16::from(k));
        stuck.push(remote.connect(&mut core, at(6_000)).0);
    }
    core.handle(
        at(6_000),
        Input::Inbound {
            remote: SocketAddr::from(([48, 1, 0, 1], 9700)),
        },
    );
    let actions = drain(&mut core);
    assert_eq!(
        counted(&actions, "p2p_disconnects_total", "handshake_full"),
        1
    );
    // After the handshake timeout they are gone, and a newcomer gets in.
    core.handle(at(17_000), Input::Tick);
    drain(&mut core);
    let late = remote_at("late", [82, 1, 0, 1], 9800);
    let (conn, actions) = late.join(&mut core, at(17_100));
    assert!(!closed(&actions, conn), "the late newcomer stays");

    // Outside loopback, one group holds at most a few inbound slots.
    let (mut core, _) = core_with(config("victim2", 7000), 2);
    let mut refused = 0;
    for k in 0..12u8 {
        let remote = SocketAddr::from(([45, 9, 0, k], 9000));
        core.handle(at(0), Input::Inbound { remote });
        refused += counted(&drain(&mut core), "p2p_disconnects_total", "group_full");
    }
    assert_eq!(refused, 12 - super::eviction::MAX_INBOUND_PER_GROUP.min(12));
}

// ------------------------------------------- 8: the import backlog in bytes

/// Attack 8 (import backlog): blocks wait for validation off the core, and
/// what waits is bounded in bytes; past the bound a peer's unrequested
/// blocks are dropped (and counted) instead of queued. 400 blocks of about
/// 200 KiB, none judged yet, would be 80 MiB.
#[test]
fn the_import_backlog_is_bounded_in_bytes() {
    let (mut core, _) = core("victim");
    let (conn, _) = Remote::new("sender", 9400).join(&mut core, at(0));
    let mut big = tx(0);
    big.memo = "x".repeat(200 * 1024);
    let mut queued_bytes = 0;
    let mut dropped = 0;
    for nonce in 0..400u64 {
        let block = Block {
            header: Header {
                version: 1,
                height: Height(1),
                prev_hash: genesis(),
                merkle_root: Hash256::digest(b"not checked by the core"),
                timestamp: 1,
                bits: ledger::target::CompactTarget(0x2000_ffff),
                nonce,
                miner: Address([4; 20]),
                reward: Amount::ZERO,
            },
            txs: vec![big.clone()],
        };
        let message = Message::Block(Box::new(block));
        core.handle(at(1 + nonce), Input::Frame { conn, message });
        let actions = drain(&mut core);
        dropped += counted(&actions, "p2p_dropped_total", "block_backlog_bytes");
        for action in actions {
            if let Action::ImportBlock { size, .. } = action {
                queued_bytes += size;
            }
        }
    }
    println!("FIGURE attack 8 (backlog): {queued_bytes} bytes queued, {dropped} blocks dropped");
    assert!(queued_bytes <= crate::p2p::protocol::relay::MAX_BLOCK_BACKLOG_BYTES);
    assert!(queued_bytes > crate::p2p::protocol::relay::MAX_BLOCK_BACKLOG_BYTES / 2);
    assert!(dropped > 0);
}

/// Only a block that extended our best chain earns eviction protection: a
/// side-branch block costs its sender little and helps us not at all.
#[test]
fn a_side_branch_block_earns_no_eviction_protection() {
    let (mut core, _) = core("victim");
    let stale = remote_at("stale", [45, 1, 0, 1], 9001);
    let (stale_conn, _) = stale.join(&mut core, at(0));
    let useful = remote_at("useful", [46, 1, 0, 1], 9002);
    let (useful_conn, _) = useful.join(&mut core, at(0));
    for (conn, verdict, k) in [
        (stale_conn, BlockVerdict::SideBranch, 1u8),
        (useful_conn, BlockVerdict::Accepted, 2u8),
    ] {
        core.handle(
            at(1_000),
            Input::BlockVerdict {
                from: Some(conn),
                hash: BlockHash(Hash256::digest(&[k])),
                size: 100,
                verdict,
            },
        );
    }
    let actions = drain(&mut core);
    assert_eq!(
        counted(&actions, "p2p_blocks_without_credit_total", "side_branch"),
        1
    );
    let last_block_at = |conn: ConnId| {
        core.conns[&conn]
            .peer
            .as_ref()
            .expect("ready")
            .behaviour
            .last_block_at
    };
    assert_eq!(last_block_at(stale_conn), None);
    assert!(last_block_at(useful_conn).is_some());
}
