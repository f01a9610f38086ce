//! Unit tests of the protocol rules on the core alone: peers played by the
//! test with scripted inputs, a fake clock and an in-memory chain view; no
//! socket, runtime or thread. This file holds the fixtures and the check
//! that the core does no I/O; the rules are tested by concept beside it.

use super::relay::REANNOUNCE_EVERY_BLOCKS;
use super::*;
use crate::events::NodeEvent;
use crate::p2p::message::{Hello, HelloAck, InvItem, PeerAddr, MAX_SENDER_TXS, PROTOCOL_VERSION};
use crate::p2p::{BlockVerdict, TxVerdict};
use addrbook::BookChange;
use ledger::Block;
use ledger::Height;
use ledger::{Address, Amount, ChainSpec, Hash256, U256};
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
            height: Height(inner.tip_work),
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

    /// Only genesis has a known place: the fake chain keeps no heights.
    fn block_work(&self, hash: &BlockHash) -> Option<Work> {
        (*hash == genesis()).then_some(Work::ZERO)
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

/// A peer played by the test: it speaks the handshake by hand. The secure
/// transport is the link's business, so the test plays it as `Secured`.
struct Remote {
    key: SecretKey,
    addr: SocketAddr,
    work: u64,
}

impl Remote {
    fn new(name: &str, port: u16) -> Remote {
        Remote {
            key: SecretKey::from_seed(name),
            addr: SocketAddr::from(([127, 0, 0, 2], port)),
            work: 0,
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            magic: magic(),
            protocol_version: PROTOCOL_VERSION,
            genesis_hash: genesis(),
            node_id: self.key.public_key(),
            best_height: Height(self.work),
            best_work: Work(U256::from_u64(self.work)),
            listen_port: self.addr.port(),
        }
    }

    /// What the link reports once the Noise handshake proved our key.
    fn secured(&self, conn: ConnId) -> Input {
        Input::Secured {
            conn,
            node_id: self.key.public_key(),
        }
    }

    /// Connects inbound and passes the transport's handshake; returns the
    /// conn and the core's `Hello`.
    fn connect(&self, core: &mut NetworkState<FakeChain>, now: Time) -> (ConnId, Hello) {
        core.handle(now, Input::Inbound { remote: self.addr });
        let actions = drain(core);
        let conn = admitted(&actions).expect("admitted");
        let Some(Message::Hello(ours)) = sent_to(&actions, conn).into_iter().next() else {
            panic!("the core opens with hello");
        };
        core.handle(now, self.secured(conn));
        assert!(drain(core).is_empty(), "secured alone sends nothing");
        (conn, *ours)
    }

    /// Connects inbound and completes the handshake; returns the conn and
    /// the actions of the last step.
    fn join(&self, core: &mut NetworkState<FakeChain>, now: Time) -> (ConnId, Vec<Action>) {
        let (conn, _) = self.connect(core, now);
        let message = Message::Hello(Box::new(self.hello()));
        core.handle(now, Input::Frame { conn, message });
        drain(core);
        let message = Message::HelloAck(HelloAck {});
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

mod attacks;
mod compact;
mod determinism;
mod handshake;
mod peers;
mod relay;

// ------------------------------------------------------------------ layering

/// The core's files name no socket, clock, thread RNG, runtime or store.
#[test]
fn the_core_does_no_io() {
    let files = [
        ("mod.rs", include_str!("../mod.rs")),
        ("addrbook.rs", include_str!("../addrbook.rs")),
        ("compact.rs", include_str!("../compact.rs")),
        ("interface.rs", include_str!("../interface.rs")),
        ("addrbuckets.rs", include_str!("../addrbuckets.rs")),
        ("eviction.rs", include_str!("../eviction.rs")),
        ("netgroup.rs", include_str!("../netgroup.rs")),
        ("ratelimit.rs", include_str!("../ratelimit.rs")),
        ("gossip.rs", include_str!("../gossip.rs")),
        ("peers.rs", include_str!("../peers.rs")),
        ("relay.rs", include_str!("../relay.rs")),
        ("session.rs", include_str!("../session.rs")),
        ("seeds.rs", include_str!("../seeds.rs")),
        ("sync.rs", include_str!("../sync.rs")),
        ("syncing.rs", include_str!("../syncing.rs")),
        ("time.rs", include_str!("../time.rs")),
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
