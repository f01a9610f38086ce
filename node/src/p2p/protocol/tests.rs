//! Unit tests of the protocol rules on the core alone: scripted inputs, a
//! fake clock, an in-memory chain view, and for the rules that need two
//! sides, a few real cores wired to each other by a loop that delivers
//! their `Send`s as each other's `Frame`s.

use super::relay::REANNOUNCE_EVERY_BLOCKS;
use super::*;
use crate::p2p::message::{
    handshake_message, Hello, HelloAck, InvItem, PeerAddr, MAX_SENDER_TXS, PROTOCOL_VERSION,
};
use ledger::{Address, Amount, ChainSpec, Hash256, Signature, U256};
use std::cell::RefCell;
use std::rc::Rc;

// ---------------------------------------------------------------- fixtures

#[derive(Default)]
struct FakeChainInner {
    tip_work: u64,
    blocks: BTreeSet<BlockHash>,
    mempool: BTreeMap<TxId, Transaction>,
}

/// A chain view the test changes as it goes.
#[derive(Clone, Default)]
struct FakeChain(Rc<RefCell<FakeChainInner>>);

impl FakeChain {
    fn add_tx(&self, tx: Transaction) {
        self.0.borrow_mut().mempool.insert(tx.txid(), tx);
    }
}

impl ChainView for FakeChain {
    fn tip(&self) -> TipSummary {
        let inner = self.0.borrow();
        TipSummary {
            height: inner.tip_work,
            hash: genesis(),
            total_work: Work(U256::from_u64(inner.tip_work)),
        }
    }

    fn locator(&self) -> Vec<BlockHash> {
        vec![genesis()]
    }

    fn headers_after(&self, _locator: &[BlockHash], _max: usize) -> Vec<Header> {
        Vec::new()
    }

    fn has_block(&self, hash: &BlockHash) -> bool {
        *hash == genesis() || self.0.borrow().blocks.contains(hash)
    }

    fn mempool_tx(&self, txid: &TxId) -> Option<Transaction> {
        self.0.borrow().mempool.get(txid).cloned()
    }

    fn mempool_txids(&self, limit: usize) -> Vec<TxId> {
        self.0
            .borrow()
            .mempool
            .keys()
            .rev()
            .take(limit)
            .copied()
            .collect()
    }

    fn has_tx(&self, txid: &TxId) -> bool {
        self.0.borrow().mempool.contains_key(txid)
    }

    fn oldest_pending_txids(&self, limit: usize) -> Vec<TxId> {
        self.0
            .borrow()
            .mempool
            .keys()
            .take(limit)
            .copied()
            .collect()
    }

    fn next_nonce(&self, sender: &Address) -> u64 {
        let inner = self.0.borrow();
        let mut next = 0;
        while inner
            .mempool
            .values()
            .any(|tx| tx.sender() == *sender && tx.nonce == next)
        {
            next += 1;
        }
        next
    }

    fn sender_txs(&self, sender: &Address, first_nonce: u64, limit: usize) -> Vec<Transaction> {
        let inner = self.0.borrow();
        let mut txs: Vec<Transaction> = inner
            .mempool
            .values()
            .filter(|tx| tx.sender() == *sender && tx.nonce >= first_nonce)
            .cloned()
            .collect();
        txs.sort_by_key(|tx| tx.nonce);
        txs.truncate(limit);
        txs
    }
}

fn spec() -> ChainSpec {
    ChainSpec::builtin("regtest").expect("built-in")
}

fn genesis() -> BlockHash {
    spec().genesis_hash()
}

fn magic() -> NetworkMagic {
    NetworkMagic(spec().network_magic())
}

/// The fake clock: `ms` after an arbitrary epoch.
fn at(ms: u64) -> Time {
    Time::new(Mono(Duration::from_millis(ms)), 1_800_000_000_000 + ms)
}

fn config(name: &str, port: u16) -> ProtocolConfig {
    ProtocolConfig {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], port)),
        peers: Vec::new(),
        dns_seeds: Vec::new(),
        external_addr: None,
        no_discovery: true,
        max_inbound: 32,
        max_outbound: 8,
        ban_duration: Duration::from_secs(24 * 3600),
        network_magic: magic(),
        genesis_hash: genesis(),
        node_key: SecretKey::from_seed(name),
        timing: P2pTiming::default(),
    }
}

fn core_with(config: ProtocolConfig, seed: u64) -> (NetworkState<FakeChain>, FakeChain) {
    let chain = FakeChain::default();
    let core = NetworkState::new(config, chain.clone(), seed, at(0), Restored::default());
    (core, chain)
}

fn core(name: &str) -> (NetworkState<FakeChain>, FakeChain) {
    core_with(config(name, 7000), 1)
}

fn drain(core: &mut NetworkState<FakeChain>) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

/// The messages sent (pushed or answered) to `conn` among `actions`.
fn sent_to(actions: &[Action], conn: ConnId) -> Vec<Message> {
    let mut messages = Vec::new();
    for action in actions {
        match action {
            Action::Send { conn: to, message } if *to == conn => messages.push(message.clone()),
            Action::Answer { conn: to, items } if *to == conn => {
                for item in items {
                    if let Outgoing::Message(message) = item {
                        messages.push(message.clone());
                    }
                }
            }
            _ => {}
        }
    }
    messages
}

fn disconnect_reason(actions: &[Action], conn: ConnId) -> Option<&'static str> {
    actions.iter().find_map(|action| match action {
        Action::Disconnect {
            conn: closed,
            reason,
        } if *closed == conn => Some(*reason),
        _ => None,
    })
}

fn counted(actions: &[Action], metric: &str, value: &str) -> usize {
    actions
        .iter()
        .filter(|action| {
            matches!(action, Action::Metric(MetricUpdate::Inc { name, label })
                if *name == metric && label.1 == value)
        })
        .count()
}

fn tx(n: u64) -> Transaction {
    Transaction::new_signed(
        &SecretKey::from_seed("sender"),
        &genesis(),
        Address([1; 20]),
        Amount::from_base_units(1),
        Amount::from_base_units(1_000),
        n,
        String::new(),
    )
}

/// A peer played by the test: it speaks the handshake by hand.
struct Remote {
    key: SecretKey,
    addr: SocketAddr,
    nonce: [u8; 32],
    work: u64,
}

impl Remote {
    fn new(name: &str, port: u16) -> Remote {
        Remote {
            key: SecretKey::from_seed(name),
            addr: SocketAddr::from(([127, 0, 0, 2], port)),
            nonce: [port as u8; 32],
            work: 0,
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            magic: magic(),
            protocol_version: PROTOCOL_VERSION,
            genesis_hash: genesis(),
            node_id: self.key.public_key(),
            best_height: self.work,
            best_work: Work(U256::from_u64(self.work)),
            listen_port: self.addr.port(),
            nonce: self.nonce,
        }
    }

    /// Our answer to the core's `Hello`: a signature over its challenge.
    fn ack(&self, theirs: &Hello) -> HelloAck {
        let statement = handshake_message(
            magic(),
            &genesis(),
            &theirs.nonce,
            &self.key.public_key(),
            &theirs.node_id,
        );
        HelloAck {
            signature: self.key.sign(&statement),
        }
    }

    /// Connects inbound; returns the conn and the core's `Hello`.
    fn connect(&self, core: &mut NetworkState<FakeChain>, now: Time) -> (ConnId, Hello) {
        core.handle(now, Input::Inbound { remote: self.addr });
        let actions = drain(core);
        let conn = admitted(&actions).expect("admitted");
        let Some(Message::Hello(ours)) = sent_to(&actions, conn).into_iter().next() else {
            panic!("the core opens with hello");
        };
        (conn, ours)
    }

    /// Connects inbound and completes the handshake; returns the conn and
    /// the actions of the last step.
    fn join(&self, core: &mut NetworkState<FakeChain>, now: Time) -> (ConnId, Vec<Action>) {
        let (conn, ours) = self.connect(core, now);
        let message = Message::Hello(self.hello());
        core.handle(now, Input::Frame { conn, message });
        drain(core);
        let message = Message::HelloAck(self.ack(&ours));
        core.handle(now, Input::Frame { conn, message });
        (conn, drain(core))
    }
}

fn admitted(actions: &[Action]) -> Option<ConnId> {
    actions.iter().find_map(|action| match action {
        Action::Admit { conn, .. } => Some(*conn),
        _ => None,
    })
}

// --------------------------------------------------------------- handshake

#[test]
fn handshake_with_a_good_peer_authenticates_it() {
    let (mut core, _) = core("a");
    let remote = Remote::new("r", 9001);
    let (conn, ours) = remote.connect(&mut core, at(0));
    core.handle(
        at(1),
        Input::Frame {
            conn,
            message: Message::Hello(remote.hello()),
        },
    );
    let actions = drain(&mut core);
    // The core signs our challenge before it knows we hold our key.
    let replies = sent_to(&actions, conn);
    let [Message::HelloAck(ack)] = replies.as_slice() else {
        panic!("one hello_ack, got {actions:?}");
    };
    let statement = handshake_message(
        magic(),
        &genesis(),
        &remote.nonce,
        &ours.node_id,
        &remote.key.public_key(),
    );
    ours.node_id
        .verify(&statement, &ack.signature)
        .expect("valid signature");
    assert_eq!(core.n_ready(), 0);
    core.handle(
        at(2),
        Input::Frame {
            conn,
            message: Message::HelloAck(remote.ack(&ours)),
        },
    );
    let actions = drain(&mut core);
    assert!(actions
        .iter()
        .any(|action| matches!(action, Action::Authenticated { conn: c } if *c == conn)));
    assert_eq!(sent_to(&actions, conn), vec![Message::GetAddr]);
    assert_eq!(core.n_ready(), 1);
}

fn handshake_refusal(tamper: impl FnOnce(&mut Hello, &mut HelloAck)) -> Vec<Action> {
    let (mut core, _) = core("a");
    let remote = Remote::new("r", 9001);
    let (conn, ours) = remote.connect(&mut core, at(0));
    let mut hello = remote.hello();
    let mut ack = remote.ack(&ours);
    tamper(&mut hello, &mut ack);
    core.handle(
        at(1),
        Input::Frame {
            conn,
            message: Message::Hello(hello),
        },
    );
    let mut actions = drain(&mut core);
    core.handle(
        at(2),
        Input::Frame {
            conn,
            message: Message::HelloAck(ack),
        },
    );
    actions.extend(drain(&mut core));
    assert_eq!(core.n_ready(), 0);
    actions
}

#[test]
fn wrong_magic_is_banned() {
    let actions = handshake_refusal(|hello, _| hello.magic = NetworkMagic(*b"nope"));
    assert_eq!(disconnect_reason(&actions, ConnId(1)), Some("misbehaved"));
    assert_eq!(counted(&actions, "p2p_bans_total", "wrong_magic"), 1);
    assert!(actions
        .iter()
        .any(|action| matches!(action, Action::Store(BookChange::PutBan { .. }))));
}

#[test]
fn wrong_genesis_is_banned() {
    let actions = handshake_refusal(|hello, _| {
        hello.genesis_hash = BlockHash(Hash256::digest(b"another chain"))
    });
    assert_eq!(counted(&actions, "p2p_bans_total", "wrong_genesis"), 1);
}

#[test]
fn bad_handshake_signature_is_banned() {
    let actions = handshake_refusal(|_, ack| ack.signature = Signature([7; 64]));
    assert_eq!(counted(&actions, "p2p_bans_total", "bad_handshake"), 1);
}

#[test]
fn another_protocol_version_is_refused_without_a_ban() {
    let actions = handshake_refusal(|hello, _| hello.protocol_version += 1);
    assert_eq!(disconnect_reason(&actions, ConnId(1)), Some("closed"));
    assert_eq!(counted(&actions, "p2p_bans_total", "protocol_violation"), 0);
    assert!(!actions
        .iter()
        .any(|action| matches!(action, Action::Store(BookChange::PutBan { .. }))));
}

#[test]
fn self_connection_is_dropped_and_remembered() {
    let (mut core, _) = core("a");
    let mut me = Remote::new("a", 7000);
    me.addr = SocketAddr::from(([127, 0, 0, 1], 7000));
    let (_, _) = me.join(&mut core, at(0));
    assert_eq!(core.n_ready(), 0);
    assert!(core.self_addrs.contains(&me.addr));
}

#[test]
fn a_second_connection_from_one_node_is_refused() {
    let (mut core, _) = core("a");
    let remote = Remote::new("r", 9001);
    let (first, _) = remote.join(&mut core, at(0));
    let mut again = Remote::new("r", 9002);
    again.nonce = [3; 32];
    let (second, actions) = again.join(&mut core, at(1));
    assert_eq!(disconnect_reason(&actions, second), Some("duplicate"));
    assert_eq!(core.n_ready(), 1);
    assert!(core
        .conns
        .get(&first)
        .is_some_and(|conn| conn.peer.is_some()));
}

#[test]
fn a_message_before_the_handshake_is_a_violation() {
    let (mut core, _) = core("a");
    core.handle(
        at(0),
        Input::Inbound {
            remote: Remote::new("r", 9001).addr,
        },
    );
    drain(&mut core);
    core.handle(
        at(1),
        Input::Frame {
            conn: ConnId(1),
            message: Message::GetAddr,
        },
    );
    let actions = drain(&mut core);
    assert_eq!(counted(&actions, "p2p_bans_total", "protocol_violation"), 1);
}

#[test]
fn silent_peer_is_dropped_at_the_handshake_timeout() {
    let (mut core, _) = core("a");
    core.handle(
        at(0),
        Input::Inbound {
            remote: Remote::new("r", 9001).addr,
        },
    );
    drain(&mut core);
    assert_eq!(core.next_timer(), Mono::ZERO, "maintenance first");
    core.handle(at(9_999), Input::Tick);
    assert_eq!(disconnect_reason(&drain(&mut core), ConnId(1)), None);
    core.handle(at(10_000), Input::Tick);
    let actions = drain(&mut core);
    assert_eq!(
        disconnect_reason(&actions, ConnId(1)),
        Some("handshake_timeout")
    );
    assert_eq!(counted(&actions, "p2p_bans_total", "handshake_timeout"), 0);
}

// ---------------------------------------------------------------- liveness

#[test]
fn peer_that_stops_answering_pings_is_dropped_after_three_misses() {
    let (mut core, _) = core("a");
    let (conn, _) = Remote::new("r", 9001).join(&mut core, at(0));
    core.handle(at(1_000), Input::Tick);
    let actions = drain(&mut core);
    let pings = sent_to(&actions, conn);
    let [Message::Ping(nonce)] = pings.as_slice() else {
        panic!("a ping after a second: {actions:?}");
    };
    // Answered: no miss, and the round trip is known.
    core.handle(
        at(1_040),
        Input::Frame {
            conn,
            message: Message::Pong(*nonce),
        },
    );
    drain(&mut core);
    assert_eq!(
        core.conns[&conn]
            .peer
            .as_ref()
            .and_then(|peer| peer.ping_ms),
        Some(40)
    );
    for (ms, dead) in [
        (31_000, false),
        (61_000, false),
        (91_000, false),
        (121_000, true),
    ] {
        core.handle(at(ms), Input::Tick);
        let actions = drain(&mut core);
        assert_eq!(
            disconnect_reason(&actions, conn) == Some("dead"),
            dead,
            "at {ms} ms"
        );
    }
}

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
            message: Message::Tx(accepted.clone()),
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
fn get_data_is_answered_in_order_with_one_not_found() {
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
            Outgoing::Message(Message::Tx(tx(1))),
            Outgoing::Message(Message::NotFound(vec![missing, unknown_block])),
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
            message: Message::Tx(tx(0)),
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
        vec![Message::Tx(tx(3)), Message::Tx(tx(4))]
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
                    height: u64::from(block),
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
            height: u64::from(block),
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
fn sync_starts_with_the_peer_claiming_most_work_and_replaces_it_when_it_stalls() {
    let (mut core, _) = core("a");
    let mut weaker = Remote::new("weaker", 9001);
    weaker.work = 5;
    let mut stronger = Remote::new("stronger", 9002);
    stronger.work = 9;
    let (weak_conn, actions) = weaker.join(&mut core, at(0));
    assert!(sent_to(&actions, weak_conn)
        .iter()
        .any(|m| matches!(m, Message::GetHeaders(_))));
    // A sync is running: a stronger peer does not take it over...
    let (strong_conn, actions) = stronger.join(&mut core, at(10));
    assert!(!sent_to(&actions, strong_conn)
        .iter()
        .any(|m| matches!(m, Message::GetHeaders(_))));
    // ...until the sync peer stalls past the timeout (15 s).
    core.handle(at(15_000), Input::Tick);
    assert_eq!(disconnect_reason(&drain(&mut core), weak_conn), None);
    core.handle(at(15_500), Input::Tick);
    let actions = drain(&mut core);
    assert_eq!(disconnect_reason(&actions, weak_conn), Some("stalled"));
    assert!(sent_to(&actions, strong_conn)
        .iter()
        .any(|m| matches!(m, Message::GetHeaders(_))));
}

#[test]
fn headers_that_miss_their_target_get_the_peer_banned() {
    let (mut core, _) = core("a");
    let mut remote = Remote::new("liar", 9001);
    remote.work = 5;
    let (conn, _) = remote.join(&mut core, at(0));
    let header = Header {
        version: 1,
        height: 1,
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

// ----------------------------------------------------- misbehaviour, bans

#[test]
fn each_misbehaviour_bans_with_its_reason() {
    type Misbehaviour = Box<dyn Fn(ConnId) -> Input>;
    let cases: Vec<(&str, Misbehaviour)> = vec![
        (
            "bad_tx",
            Box::new(|conn| Input::TxVerdict {
                from: conn,
                txid: tx(0).txid(),
                sender: tx(0).sender(),
                nonce: 0,
                verdict: TxVerdict::Rejected {
                    reason: "bad_signature".into(),
                    misbehaving: true,
                },
            }),
        ),
        (
            "bad_block",
            Box::new(|conn| Input::BlockVerdict {
                from: Some(conn),
                hash: BlockHash(Hash256::digest(b"b")),
                size: 10,
                verdict: BlockVerdict::Rejected {
                    reason: "bad pow".into(),
                    misbehaving: true,
                },
            }),
        ),
        (
            "oversized_frame",
            Box::new(|conn| Input::Closed {
                conn,
                cause: CloseCause::BadFrame {
                    reason: "oversized_frame",
                    detail: "5 MiB".into(),
                },
            }),
        ),
        (
            "protocol_violation",
            Box::new(|conn| Input::Frame {
                conn,
                message: Message::Hello(Remote::new("p", 1).hello()),
            }),
        ),
    ];
    for (reason, input) in cases {
        let (mut core, _) = core("a");
        let remote = Remote::new("p", 9001);
        let (conn, _) = remote.join(&mut core, at(0));
        core.handle(at(1), input(conn));
        let actions = drain(&mut core);
        assert_eq!(counted(&actions, "p2p_bans_total", reason), 1, "{reason}");
        assert!(
            core.bans
                .is_banned(&BanKey::Node(remote.key.public_key()), at(2).mono),
            "{reason}"
        );
        // The banned node cannot come back, from any port.
        let mut again = Remote::new("p", 9005);
        again.addr = SocketAddr::from(([127, 0, 0, 3], 9005));
        let (conn, actions) = again.join(&mut core, at(3));
        assert_eq!(
            disconnect_reason(&actions, conn),
            Some("banned"),
            "{reason}"
        );
    }
    // An unaffordable tx is not misbehaviour.
    let (mut core, _) = core("a");
    let (conn, _) = Remote::new("p", 9001).join(&mut core, at(0));
    core.handle(
        at(1),
        Input::TxVerdict {
            from: conn,
            txid: tx(0).txid(),
            sender: tx(0).sender(),
            nonce: 0,
            verdict: TxVerdict::Rejected {
                reason: "insufficient_funds".into(),
                misbehaving: false,
            },
        },
    );
    assert_eq!(disconnect_reason(&drain(&mut core), conn), None);
}

#[test]
fn a_banned_address_is_refused_at_accept() {
    let (mut core, _) = core("a");
    let remote = Remote::new("p", 9001);
    let (conn, _) = remote.join(&mut core, at(0));
    core.handle(
        at(1),
        Input::Closed {
            conn,
            cause: CloseCause::BadFrame {
                reason: "undecodable_frame",
                detail: "junk".into(),
            },
        },
    );
    drain(&mut core);
    core.handle(
        at(2),
        Input::Inbound {
            remote: remote.addr,
        },
    );
    let actions = drain(&mut core);
    assert!(actions
        .iter()
        .any(|action| matches!(action, Action::Refuse { .. })));
    assert!(admitted(&actions).is_none());
    // The ban ends after its duration.
    core.handle(
        at(24 * 3600 * 1000 + 2),
        Input::Inbound {
            remote: remote.addr,
        },
    );
    assert!(admitted(&drain(&mut core)).is_some());
}

// ------------------------------------------------------------------ dialing

#[test]
fn bootstrap_peer_is_redialed_with_growing_jittered_backoff() {
    let mut config = config("a", 7000);
    config.peers = vec!["seed.example:7070".into()];
    let (mut core, _) = core_with(config, 3);
    let dials = |actions: &[Action]| -> Vec<ConnId> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Dial { conn, target } if target == "seed.example:7070" => Some(*conn),
                _ => None,
            })
            .collect()
    };
    core.handle(at(0), Input::Tick);
    let mut conn = dials(&drain(&mut core))[0];
    let mut failed_at = 0;
    // After failure k the delay is 2^k s, jittered down by up to a
    // quarter (never below 1 s): the first redial comes in [1.5 s, 2 s].
    for (low, high) in [(1_500, 2_000), (3_000, 4_000), (6_000, 8_000)] {
        core.handle(
            at(failed_at),
            Input::DialFailed {
                conn,
                error: "refused".into(),
            },
        );
        drain(&mut core);
        let mut redial = None;
        let mut ms = failed_at;
        while redial.is_none() && ms <= failed_at + high + 500 {
            ms += 100;
            core.handle(at(ms), Input::Tick);
            redial = dials(&drain(&mut core)).first().copied();
        }
        let waited = ms - failed_at;
        assert!(
            (low..=high + 500).contains(&waited),
            "waited {waited} ms, expected {low}..{high}"
        );
        conn = redial.expect("redialed");
        failed_at = ms;
    }
}

/// `POST /v1/peers` cannot pin more peers than there are outbound slots,
/// nor dial past them.
#[test]
fn pinned_peers_take_outbound_slots_and_are_capped() {
    let mut config = config("a", 7000);
    config.max_outbound = 2;
    let (mut core, _) = core_with(config, 1);
    let dials = |core: &mut NetworkState<FakeChain>| -> Vec<(ConnId, String)> {
        drain(core)
            .into_iter()
            .filter_map(|action| match action {
                Action::Dial { conn, target } => Some((conn, target)),
                _ => None,
            })
            .collect()
    };
    let targets = |dialed: &[(ConnId, String)]| -> Vec<String> {
        dialed.iter().map(|(_, target)| target.clone()).collect()
    };
    for port in 1..=3 {
        let pin = Command::Dial(format!("192.0.2.1:{port}"));
        core.handle(at(0), Input::Command(pin));
    }
    let first = dials(&mut core);
    assert_eq!(
        targets(&first),
        ["192.0.2.1:1", "192.0.2.1:2"],
        "the third would pass max_outbound"
    );
    // A failed dial frees its slot; a new pin takes that target's place.
    let failed = Input::DialFailed {
        conn: first[0].0,
        error: "refused".into(),
    };
    core.handle(at(0), failed);
    core.handle(at(0), Input::Command(Command::Dial("192.0.2.1:9".into())));
    assert_eq!(targets(&dials(&mut core)), ["192.0.2.1:9"]);
    // Both pinned targets hold their slots: nothing more is dialed.
    core.handle(at(0), Input::Command(Command::Dial("192.0.2.1:10".into())));
    assert!(dials(&mut core).is_empty());
}

/// An address book of 20 fresh addresses; returns the dial targets of the
/// first maintenance round.
fn first_dials(seed: u64) -> Vec<String> {
    let mut config = config("a", 7000);
    config.no_discovery = false;
    let addresses = (0..20u8)
        .map(|n| {
            let entry = addrbook::AddrEntry {
                node_id: None,
                last_seen_ms: at(0).unix_ms,
                failures: 0,
                retry_after_ms: 0,
            };
            (SocketAddr::from(([10, 0, 0, n], 7070)), entry)
        })
        .collect();
    let restored = Restored {
        addresses,
        bans: Vec::new(),
    };
    let mut core = NetworkState::new(config, FakeChain::default(), seed, at(0), restored);
    core.handle(at(0), Input::Tick);
    drain(&mut core)
        .into_iter()
        .filter_map(|action| match action {
            Action::Dial { target, .. } => Some(target),
            _ => None,
        })
        .collect()
}

#[test]
fn outbound_slots_fill_from_the_book_in_an_order_the_seed_decides() {
    let dials = first_dials(7);
    assert_eq!(dials.len(), 8, "max_outbound");
    assert_eq!(dials, first_dials(7));
    assert_ne!(dials, first_dials(8));
}

#[test]
fn addresses_from_a_peer_are_rate_limited() {
    let (mut core, _) = core("a");
    let (conn, _) = Remote::new("p", 9001).join(&mut core, at(0));
    let addrs = |first: u8| -> Vec<PeerAddr> {
        (0..250u8)
            .map(|n| PeerAddr {
                addr: SocketAddr::from(([10, first, 0, n], 7070)),
                node_id: None,
                last_seen_ms: at(0).unix_ms,
                connected: false,
            })
            .collect()
    };
    for first in 0..8 {
        core.handle(
            at(1),
            Input::Frame {
                conn,
                message: Message::Addr(addrs(first)),
            },
        );
    }
    drain(&mut core);
    // A burst of 1,000, then 0.1 per second; plus the peer's own listen
    // address, learned in the handshake.
    assert_eq!(core.book.len(), 1_001);
}

// ------------------------------------------------------------- determinism

/// Runs a scripted session against a core: handshakes with three peers
/// (one claiming more work), announcements, a tx, addresses, timers.
/// Returns the inputs it fed, in order.
fn scripted_inputs(seed: u64) -> Vec<(Time, Input)> {
    let mut config = config("a", 7000);
    config.no_discovery = false;
    let (mut core, _) = core_with(config, seed);
    let mut inputs = Vec::new();
    let mut feed = |core: &mut NetworkState<FakeChain>, now: Time, input: Input| {
        inputs.push((now, input.clone()));
        core.handle(now, input);
        drain(core)
    };
    for (index, name) in ["p1", "p2", "p3"].into_iter().enumerate() {
        let mut remote = Remote::new(name, 9001 + index as u16);
        remote.work = index as u64 * 3;
        let now = at(index as u64 * 10);
        let actions = feed(
            &mut core,
            now,
            Input::Inbound {
                remote: remote.addr,
            },
        );
        let conn = admitted(&actions).expect("admitted");
        let Some(Message::Hello(ours)) = sent_to(&actions, conn).into_iter().next() else {
            panic!("hello first");
        };
        feed(
            &mut core,
            now,
            Input::Frame {
                conn,
                message: Message::Hello(remote.hello()),
            },
        );
        feed(
            &mut core,
            now,
            Input::Frame {
                conn,
                message: Message::HelloAck(remote.ack(&ours)),
            },
        );
        let addrs = (0..30u8)
            .map(|n| PeerAddr {
                addr: SocketAddr::from(([10, index as u8, 0, n], 7070)),
                node_id: None,
                last_seen_ms: now.unix_ms,
                connected: n % 2 == 0,
            })
            .collect();
        feed(
            &mut core,
            now,
            Input::Frame {
                conn,
                message: Message::Addr(addrs),
            },
        );
        let items = (0..5).map(|n| InvItem::Tx(tx(n).txid())).collect();
        feed(
            &mut core,
            now,
            Input::Frame {
                conn,
                message: Message::Inv(items),
            },
        );
    }
    for ms in (100..40_000).step_by(700) {
        feed(&mut core, at(ms), Input::Tick);
    }
    let event = NodeEvent::TxAccepted {
        tx: std::sync::Arc::new(tx(99)),
    };
    feed(&mut core, at(40_000), Input::Node(event));
    feed(&mut core, at(40_001), Input::Idle);
    inputs
}

fn replay(seed: u64, inputs: &[(Time, Input)]) -> Vec<String> {
    let mut config = config("a", 7000);
    config.no_discovery = false;
    let (mut core, _) = core_with(config, seed);
    let mut actions = Vec::new();
    for (now, input) in inputs {
        core.handle(*now, input.clone());
        actions.extend(drain(&mut core).iter().map(|action| format!("{action:?}")));
    }
    actions
}

#[test]
fn same_inputs_and_seed_give_the_same_actions() {
    let inputs = scripted_inputs(42);
    let first = replay(42, &inputs);
    let second = replay(42, &inputs);
    assert!(
        first.len() > 100,
        "the script exercises the core: {} actions",
        first.len()
    );
    assert!(first.iter().any(|action| action.starts_with("Dial")));
    assert!(first
        .iter()
        .any(|action| action.starts_with("Send") && action.contains("Ping")));
    assert_eq!(first, second);
    // Another seed: the script answers that core's own challenges, learns
    // the same addresses, and dials them in another order.
    let other = replay(43, &scripted_inputs(43));
    let dials = |actions: &[String]| -> Vec<String> {
        actions
            .iter()
            .filter(|action| action.starts_with("Dial"))
            .cloned()
            .collect()
    };
    assert_eq!(dials(&first).len(), dials(&other).len());
    assert_ne!(
        dials(&first),
        dials(&other),
        "another seed dials in another order"
    );
}

// -------------------------------------------------------------- dns seeds

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("literal address")
}

fn seed_core(
    max_outbound: usize,
    no_discovery: bool,
    external_addr: Option<SocketAddr>,
) -> NetworkState<FakeChain> {
    let mut config = config("seeded", 7070);
    config.listen_addr = addr("10.0.0.1:7070");
    config.dns_seeds = vec!["tasks.node:7070".into()];
    config.external_addr = external_addr;
    config.no_discovery = no_discovery;
    config.max_outbound = max_outbound;
    core_with(config, 7).0
}

/// Every `Dial` the core asks for, in order, as (conn, target).
fn seed_dials(core: &mut NetworkState<FakeChain>) -> Vec<(ConnId, String)> {
    drain(core)
        .into_iter()
        .filter_map(|action| match action {
            Action::Dial { conn, target } => Some((conn, target)),
            _ => None,
        })
        .collect()
}

#[test]
fn every_resolved_address_is_dialed_within_the_slots() {
    let mut core = seed_core(8, true, None);
    seed_dials(&mut core);
    let resolved: Vec<SocketAddr> = (2..=5)
        .map(|host| addr(&format!("10.0.0.{host}:7070")))
        .collect();
    core.handle(
        at(10),
        Input::SeedsResolved {
            addrs: resolved.clone(),
        },
    );
    let targets: Vec<String> = seed_dials(&mut core).into_iter().map(|(_, t)| t).collect();
    let expected: Vec<String> = resolved.iter().map(ToString::to_string).collect();
    assert_eq!(targets, expected, "all four, with discovery off too");

    // The same answer again: each is being dialed already, nothing new.
    core.handle(at(20), Input::SeedsResolved { addrs: resolved });
    assert!(seed_dials(&mut core).is_empty());
}

#[test]
fn seeds_respect_free_slots_and_skip_our_own_addresses() {
    let external = addr("203.0.113.9:17070");
    let mut core = seed_core(2, false, Some(external));
    seed_dials(&mut core);
    core.handle(
        at(10),
        Input::SeedsResolved {
            addrs: vec![
                addr("10.0.0.1:7070"), // our listener
                external,              // our advertised address
                addr("10.0.0.3:7070"),
                addr("10.0.0.4:7070"),
                addr("10.0.0.5:7070"),
            ],
        },
    );
    let first = seed_dials(&mut core);
    let targets: Vec<&str> = first.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(targets, ["10.0.0.3:7070", "10.0.0.4:7070"]);

    // One dial fails: its slot is free again, and the next resolution
    // tries the address not yet tried as well as the failed one.
    core.handle(
        at(20),
        Input::DialFailed {
            conn: first[0].0,
            error: "refused".into(),
        },
    );
    seed_dials(&mut core);
    core.handle(
        at(5_000),
        Input::SeedsResolved {
            addrs: vec![addr("10.0.0.3:7070"), addr("10.0.0.5:7070")],
        },
    );
    let targets: Vec<String> = seed_dials(&mut core).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["10.0.0.3:7070"], "one slot was free");
}

#[test]
fn external_address_is_announced_and_offered_first() {
    let external = addr("203.0.113.9:17070");
    let mut core = seed_core(8, true, Some(external));
    seed_dials(&mut core);
    core.handle(
        at(1),
        Input::Inbound {
            remote: addr("10.0.0.9:40000"),
        },
    );
    let mut hello_port = None;
    while let Some(action) = core.poll_action() {
        if let Action::Send {
            message: Message::Hello(hello),
            ..
        } = action
        {
            hello_port = Some(hello.listen_port);
        }
    }
    assert_eq!(hello_port, Some(17070), "Hello names the external port");
    let own = core.advertised_self().expect("an external address is set");
    assert_eq!(own.addr, external);
    assert_eq!(own.node_id, Some(core.node_id()));
    assert!(!own.connected);
}

// ------------------------------------------------------------------ layering

/// The core's files name no socket, clock, thread RNG, runtime or store.
#[test]
fn the_core_does_no_io() {
    let files = [
        ("mod.rs", include_str!("mod.rs")),
        ("addrbook.rs", include_str!("addrbook.rs")),
        ("gossip.rs", include_str!("gossip.rs")),
        ("peers.rs", include_str!("peers.rs")),
        ("relay.rs", include_str!("relay.rs")),
        ("session.rs", include_str!("session.rs")),
        ("seeds.rs", include_str!("seeds.rs")),
        ("sync.rs", include_str!("sync.rs")),
        ("syncing.rs", include_str!("syncing.rs")),
        ("time.rs", include_str!("time.rs")),
    ];
    let forbidden = [
        "tokio",
        "std::net",
        "Instant::now",
        "SystemTime",
        "thread_rng",
        "sled",
        "std::thread",
        "std::fs",
    ];
    for (name, text) in files {
        for word in forbidden {
            assert!(!text.contains(word), "protocol/{name} mentions {word}");
        }
        assert!(
            text.lines().count() <= 800,
            "protocol/{name} is over 800 lines"
        );
    }
}
