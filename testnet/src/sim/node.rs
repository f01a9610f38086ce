//! One simulated node: the real protocol core (`NetworkState`), the real
//! chain (validation, fork choice, reorgs) in a temporary store, and the
//! real mempool, wired together the way the daemon's driver, chain writer
//! and handle wire them, but synchronously: a block or tx the core hands
//! over is judged at once, and the node's events go straight back into the
//! core. What leaves the node (dials, frames, disconnects) is returned to
//! the world as `Outbound`, already encoded.

use ledger::chain::{Chain, ChainReader, ChainUpdate, MemoryArena, ProcessOutcome};
use ledger::mempool::{Mempool, MempoolConfig, MempoolError};
use ledger::sigcache::SignatureCache;
use ledger::{Address, Block, BlockHash, ChainSpec, Header, Transaction, TxId};
use node::events::NodeEvent;
use node::p2p::codec::{block_payload, encode_message, tx_payload};
use node::p2p::message::{InvItem, Message};
use node::p2p::protocol::{
    Action, ConnId, Input, Mono, NetworkState, Outgoing, ProtocolConfig, Restored, Time,
};
use node::p2p::{BlockVerdict, ChainView, TipSummary, TxVerdict};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::payloads::CompactPayloads;
use super::scheduler::SimTime;

/// An encoded frame as the simulated network carries it: shared by every
/// peer a flush announces the same items to, its reference count beside
/// its bytes, so a delivery reads one allocation, not a handle and then
/// the bytes.
pub type Payload = Rc<[u8]>;

/// What the node asks of the network.
pub enum Outbound {
    Dial {
        conn: ConnId,
        target: String,
    },
    Admit {
        conn: ConnId,
        remote: SocketAddr,
    },
    Refuse {
        remote: SocketAddr,
    },
    /// One encoded frame payload; `kind` indexes `message::KINDS`.
    Frame {
        conn: ConnId,
        kind: usize,
        payload: Payload,
    },
    Disconnect {
        conn: ConnId,
    },
}

/// Items each node's known-inventory table remembers (the node keeps
/// 16,384, about 640 KB with its peers' bits): a thousand such tables
/// would be 640 MB. The table only stops us announcing an item back to a
/// peer that has it, which matters in the seconds an item takes to spread;
/// 2,048 items are 200 s of 10 tx/s and 40 s of 50 tx/s, in 4,096 cells
/// of 16 bytes (64 KB a node).
const KNOWN_INVENTORY_CAPACITY: usize = 2_048;

/// Confirmed txids each mempool remembers for relay's "do we have it?"
/// (the node keeps 65,536, nine full blocks; here a thousand copies of that
/// would be 650 MB once an hour of txs filled them): 4,096 are 40 blocks
/// of 10 tx/s, or 8 of 50 tx/s, far longer than any announcement of a tx
/// lingers after its block.
const RECENT_CONFIRMED: usize = 4_096;

/// How a block reached the chain, which decides the chain call (as in the
/// node's chain writer).
#[derive(Clone, Copy)]
enum Import {
    /// Found here (`submit_block`: `process_block`).
    Mined,
    /// Fetched by a header sync (`process_block`; the node may hold its
    /// connect a moment to commit several together, which changes no
    /// outcome).
    Synced,
    /// A peer's gossip (`process_block_unrequested`: a block on a branch
    /// with less work than the tip is not stored).
    Unrequested,
}

/// What the world's statistics need to hear.
pub enum Observed {
    /// The node stored and validated this block (best chain or side).
    HasBlock(BlockHash),
    /// The node's tip moved.
    Tip { old: BlockHash, new: BlockHash },
    /// Blocks left the node's best chain.
    Reorg { depth: usize },
    /// The tx entered the node's mempool.
    HasTx(TxId),
    /// A block a peer sent (over `conn`) was new and valid: how it came.
    BlockFrom { hash: BlockHash, conn: ConnId },
}

/// The chain and mempool as the core reads them.
#[derive(Clone)]
pub struct SimView {
    reader: ChainReader,
    mempool: Rc<RefCell<Mempool>>,
    /// The chain's tip, kept by the node as blocks connect: the same value
    /// `ChainReader::tip` reads from the store, without two store reads
    /// on every call (the core asks often).
    tip: Rc<Cell<TipSummary>>,
}

fn summary(chain: &Chain) -> TipSummary {
    let tip = chain.tip();
    TipSummary {
        height: tip.height,
        hash: tip.hash,
        total_work: tip.total_work,
    }
}

impl ChainView for SimView {
    fn tip(&self) -> TipSummary {
        self.tip.get()
    }

    fn locator(&self) -> Vec<BlockHash> {
        self.reader.locator()
    }

    fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<Header> {
        self.reader.headers_after(locator, max)
    }

    fn has_block(&self, hash: &BlockHash) -> bool {
        self.reader.has_block(hash)
    }

    fn mempool_tx(&self, txid: &TxId) -> Option<Transaction> {
        self.mempool.borrow().get(txid).cloned()
    }

    fn mempool_txids(&self, limit: usize) -> Vec<TxId> {
        self.mempool.borrow().txids_newest_first(limit)
    }

    fn has_tx(&self, txid: &TxId) -> bool {
        // As the node's handle: the pool and the recent blocks' txids.
        self.mempool.borrow().knows(txid)
    }

    fn has_txs(&self, txids: &[TxId]) -> Vec<bool> {
        let mempool = self.mempool.borrow();
        txids.iter().map(|txid| mempool.knows(txid)).collect()
    }

    fn oldest_pending_txids(&self, limit: usize) -> Vec<TxId> {
        self.mempool.borrow().txids_oldest_first(limit)
    }

    fn next_nonce(&self, sender: &Address) -> u64 {
        self.mempool.borrow().next_nonce(sender, &self.reader)
    }

    fn sender_txs(&self, sender: &Address, first_nonce: u64, limit: usize) -> Vec<Transaction> {
        self.mempool
            .borrow()
            .sender_txs_from(sender, first_nonce, limit)
            .into_iter()
            .cloned()
            .collect()
    }
}

/// A simulated node.
pub struct SimNode {
    core: NetworkState<SimView>,
    chain: Chain,
    view: SimView,
    spec: Arc<ChainSpec>,
    genesis_unix_ms: u64,
    /// Filled by `feed`, drained by the world.
    pub outbound: Vec<Outbound>,
    pub observed: Vec<Observed>,
    /// `feed`'s work list, kept between calls for its allocation.
    inputs: Vec<Input>,
    /// Every node's, shared.
    compact_payloads: Rc<RefCell<CompactPayloads>>,
    /// The items of the last `Inv` sent, and its payload.
    last_inv: Option<(Vec<InvItem>, Payload)>,
}

/// The core's clock at virtual time `now`.
pub fn core_time(now: SimTime, genesis_unix_ms: u64) -> Time {
    Time::new(
        Mono(Duration::from_nanos(now)),
        genesis_unix_ms + now / 1_000_000,
    )
}

impl SimNode {
    pub fn new(
        spec: Arc<ChainSpec>,
        cache: SignatureCache,
        config: ProtocolConfig,
        seed: u64,
        store: (&MemoryArena, &str),
        compact_payloads: Rc<RefCell<CompactPayloads>>,
    ) -> Result<SimNode, String> {
        let mut chain = Chain::open_in_memory((*spec).clone(), store.0, store.1)
            .map_err(|error| format!("cannot open an in-memory chain store: {error}"))?;
        chain.set_signature_cache(cache.clone());
        let pool_config = MempoolConfig {
            recent_confirmed: RECENT_CONFIRMED,
            ..MempoolConfig::default()
        };
        let mempool = Mempool::new((*spec).clone(), pool_config, cache);
        let view = SimView {
            reader: chain.reader(),
            mempool: Rc::new(RefCell::new(mempool)),
            tip: Rc::new(Cell::new(summary(&chain))),
        };
        let genesis_unix_ms = spec.genesis_timestamp;
        let mut core = NetworkState::new(
            config,
            view.clone(),
            seed,
            core_time(0, genesis_unix_ms),
            Restored::default(),
        );
        core.set_known_inventory_capacity(KNOWN_INVENTORY_CAPACITY);
        Ok(SimNode {
            core,
            chain,
            view,
            spec,
            genesis_unix_ms,
            outbound: Vec::new(),
            observed: Vec::new(),
            inputs: Vec::new(),
            compact_payloads,
            last_inv: None,
        })
    }

    fn now_ms(&self, now: SimTime) -> u64 {
        self.genesis_unix_ms + now / 1_000_000
    }

    pub fn tip(&self) -> BlockHash {
        self.chain.tip().hash
    }

    pub fn next_timer(&self) -> SimTime {
        self.core.next_timer().0.as_nanos() as SimTime
    }

    pub fn has_pending_announcements(&self) -> bool {
        self.core.has_pending_announcements()
    }

    pub fn mempool_contains(&self, txid: &TxId) -> bool {
        self.view.mempool.borrow().contains(txid)
    }

    pub fn reader(&self) -> &ChainReader {
        &self.view.reader
    }

    /// Feeds one input and carries out every action that follows,
    /// judging blocks and txs on the spot, as the daemon's driver does
    /// with its importers.
    pub fn feed(&mut self, now: SimTime, input: Input) {
        let time = core_time(now, self.genesis_unix_ms);
        // `feed` may run inside `feed` (a mined block's events), so the
        // list is taken, not borrowed.
        // The list starts empty, so `input` goes first without passing
        // through it (an `Input` is some 200 bytes to move).
        let mut inputs = std::mem::take(&mut self.inputs);
        debug_assert!(inputs.is_empty());
        let mut next = Some(input);
        while let Some(input) = next {
            self.core.handle(time, input);
            while let Some(action) = self.core.poll_action() {
                self.execute(now, action, &mut inputs);
            }
            next = inputs.pop();
        }
        self.inputs = inputs;
    }

    /// Prefetches the node's own fields and its core's (see
    /// `World::prefetch_ahead`; each step needs what the one before it
    /// loaded).
    pub fn prefetch_fields(&self) {
        ledger::prefetch::prefetch(&self.genesis_unix_ms);
        ledger::prefetch::prefetch(&self.inputs);
        ledger::prefetch::prefetch(&self.view);
        self.core.prefetch_fields();
    }

    /// Prefetches the core's connection list and the mempool's header.
    pub fn prefetch_lists(&self) {
        self.core.prefetch_conn_ids();
        ledger::prefetch::prefetch(&*self.view.mempool);
    }

    /// Prefetches the core's state of `conn` and the mempool's table of
    /// known txids.
    pub fn prefetch_conn(&self, conn: ConnId) {
        self.core.prefetch_conn(conn);
        if let Ok(mempool) = self.view.mempool.try_borrow() {
            mempool.prefetch_known_table();
        }
    }

    /// Prefetches the peer's state of `conn` and, for a frame announcing
    /// one tx, where the core and the mempool will look it up.
    pub fn prefetch_frame(&self, conn: ConnId, announced: Option<TxId>) {
        self.core.prefetch_peer(conn, announced);
        if let Some(txid) = announced {
            if let Ok(mempool) = self.view.mempool.try_borrow() {
                mempool.prefetch_knows(&txid);
            }
        }
    }

    /// The node id its core proves to peers.
    pub fn node_id(&self) -> ledger::PublicKey {
        self.core.node_id()
    }

    fn execute(&mut self, now: SimTime, action: Action, inputs: &mut Vec<Input>) {
        match action {
            Action::Dial { conn, target } => self.outbound.push(Outbound::Dial { conn, target }),
            Action::Admit { conn, remote } => self.outbound.push(Outbound::Admit { conn, remote }),
            Action::Refuse { remote } => self.outbound.push(Outbound::Refuse { remote }),
            Action::Send { conn, message } => self.send(conn, &message),
            Action::PushCompact { conn, hash } => {
                if !self.send_compact(conn, &hash) {
                    self.send(conn, &Message::Inv(vec![InvItem::Block(hash)]));
                }
            }
            Action::Rebuild { from, job } => {
                // Run on the spot against this node's mempool, as the
                // driver's blocking task would.
                let (compact, rebuilt) = job.run(&self.view);
                inputs.push(Input::Rebuilt {
                    from,
                    compact: Box::new(compact),
                    rebuilt,
                });
            }
            Action::Answer { conn, items } => self.answer(conn, items),
            Action::Disconnect { conn, .. } => self.outbound.push(Outbound::Disconnect { conn }),
            Action::ImportBlock {
                from,
                block,
                size,
                from_sync,
            } => {
                // The node's events reach the core before the verdict
                // (`feed` pops from the end). As the node's importer does,
                // a block a sync fetched goes through `process_block`, a
                // peer's gossip through `process_block_unrequested`.
                let hash = block.hash();
                let mut events = Vec::new();
                let import = if from_sync {
                    Import::Synced
                } else {
                    Import::Unrequested
                };
                let verdict = self.import_block(now, *block, import, &mut events);
                if let (BlockVerdict::Accepted | BlockVerdict::SideBranch, Some(conn)) =
                    (&verdict, from)
                {
                    self.observed.push(Observed::BlockFrom { hash, conn });
                }
                inputs.push(Input::BlockVerdict {
                    from,
                    hash,
                    size,
                    verdict,
                });
                inputs.extend(events);
            }
            Action::ImportTx { from, tx } => {
                let (txid, sender, nonce) = (tx.txid(), tx.sender(), tx.nonce);
                let mut events = Vec::new();
                let verdict = match self.add_tx(now, *tx, &mut events) {
                    Ok(()) => TxVerdict::Accepted,
                    Err(error) => TxVerdict::from(error),
                };
                inputs.push(Input::TxVerdict {
                    from,
                    txid,
                    sender,
                    nonce,
                    verdict,
                });
                inputs.extend(events);
            }
            // Address books, bans, metrics and the handle's snapshot live
            // only as long as the run; the world counts what it needs.
            Action::Authenticated { .. }
            | Action::Store(_)
            | Action::Metric(_)
            | Action::Publish(_) => {}
        }
    }

    fn send(&mut self, conn: ConnId, message: &Message) {
        let payload = match message {
            // A flush announces the same items to peer after peer: the
            // payload is encoded once and shared.
            Message::Inv(items) => match &self.last_inv {
                Some((last, payload)) if last == items => payload.clone(),
                _ => {
                    let payload = Payload::from(encode_message(message).as_ref());
                    let mut last = self
                        .last_inv
                        .take()
                        .map(|(last, _)| last)
                        .unwrap_or_default();
                    last.clear();
                    last.extend_from_slice(items);
                    self.last_inv = Some((last, payload.clone()));
                    payload
                }
            },
            _ => Payload::from(encode_message(message).as_ref()),
        };
        self.outbound.push(Outbound::Frame {
            conn,
            kind: message.kind_index(),
            payload,
        });
    }

    /// Sends the stored block `hash` as a `CompactBlock` (no tx
    /// prefilled), its payload shared with every node that sends it;
    /// false when this node's store does not hold the block.
    fn send_compact(&mut self, conn: ConnId, hash: &BlockHash) -> bool {
        if !self.view.reader.has_block_data(hash) {
            return false;
        }
        let reader = &self.view.reader;
        let payload = self
            .compact_payloads
            .borrow_mut()
            .get_or_build(hash, || reader.block(hash));
        let Some(payload) = payload else {
            return false;
        };
        self.outbound.push(Outbound::Frame {
            conn,
            kind: Message::COMPACT_BLOCK_KIND_INDEX,
            payload,
        });
        true
    }

    /// An answer, item by item, as the link task sends it: stored blocks
    /// as their stored bytes, txs looked up now, missing txs listed in one
    /// `NotFound` after the batch.
    fn answer(&mut self, conn: ConnId, items: Vec<Outgoing>) {
        let mut gone = Vec::new();
        for item in items {
            match item {
                Outgoing::Message(message) => self.send(conn, &message),
                Outgoing::Block(hash) => {
                    if let Some(bytes) = self.view.reader.block_bytes(&hash) {
                        self.outbound.push(Outbound::Frame {
                            conn,
                            kind: Message::BLOCK_KIND_INDEX,
                            payload: Payload::from(block_payload(&bytes).as_ref()),
                        });
                    }
                }
                Outgoing::Tx(txid) => {
                    // Encoded from the mempool's copy, as the link task
                    // does with the one it looks up.
                    let payload = self
                        .view
                        .mempool
                        .borrow()
                        .get(&txid)
                        .map(|tx| Payload::from(tx_payload(tx).as_ref()));
                    match payload {
                        Some(payload) => self.outbound.push(Outbound::Frame {
                            conn,
                            kind: Message::TX_KIND_INDEX,
                            payload,
                        }),
                        None => gone.push(InvItem::Tx(txid)),
                    }
                }
                Outgoing::CompactBlock(hash) => {
                    if !self.send_compact(conn, &hash) {
                        gone.push(InvItem::Block(hash));
                    }
                }
                Outgoing::BlockTxs { block, indexes } => {
                    let txs = self
                        .view
                        .reader
                        .block(&block)
                        .and_then(|found| node::p2p::compact::block_txs(&found, &indexes));
                    match txs {
                        Some(txs) => self.send(conn, &Message::BlockTxs { block, txs }),
                        None => gone.push(InvItem::Block(block)),
                    }
                }
            }
        }
        if !gone.is_empty() {
            self.send(conn, &Message::NotFound(gone));
        }
    }

    /// Validates and stores a block: the chain writer's work, then the
    /// events it publishes and the mempool's settling.
    fn import_block(
        &mut self,
        now: SimTime,
        block: Block,
        import: Import,
        inputs: &mut Vec<Input>,
    ) -> BlockVerdict {
        let hash = block.hash();
        let now_ms = self.now_ms(now);
        let outcome = match import {
            Import::Mined | Import::Synced => self.chain.process_block(block, now_ms),
            Import::Unrequested => self.chain.process_block_unrequested(block, now_ms),
        };
        match outcome {
            Ok(ProcessOutcome::Known) => BlockVerdict::Known,
            Ok(ProcessOutcome::LowWork) => BlockVerdict::Rejected {
                reason: "low_work".into(),
                misbehaving: false,
            },
            Ok(ProcessOutcome::Orphan) => BlockVerdict::Orphan,
            Ok(ProcessOutcome::SideChain) => {
                self.observed.push(Observed::HasBlock(hash));
                BlockVerdict::SideBranch
            }
            Ok(ProcessOutcome::Connected(update)) => {
                self.view.tip.set(summary(&self.chain));
                self.connected(now, update, inputs);
                BlockVerdict::Accepted
            }
            Err(error) => error.into(),
        }
    }

    /// A new best chain: `BlockValidated` and `BlockConnected` per block,
    /// `Reorg`, then the mempool settles and re-admitted txs are announced
    /// again (`TxReadmitted`), in the chain writer's order. Inputs are
    /// pushed in reverse because `feed` pops from the end.
    fn connected(&mut self, now: SimTime, update: ChainUpdate, inputs: &mut Vec<Input>) {
        let mut events = Vec::new();
        for block in &update.connected {
            let hash = block.hash();
            self.observed.push(Observed::HasBlock(hash));
            events.push(NodeEvent::BlockValidated {
                hash,
                height: block.header.height,
            });
        }
        for block in &update.connected {
            events.push(NodeEvent::BlockConnected {
                block: Arc::clone(block),
                height: block.header.height,
            });
        }
        self.observed.push(Observed::Tip {
            old: update.old_tip,
            new: update.new_tip,
        });
        if !update.disconnected.is_empty() {
            self.observed.push(Observed::Reorg {
                depth: update.disconnected.len(),
            });
            events.push(NodeEvent::reorg(&update));
        }
        {
            let mut mempool = self.view.mempool.borrow_mut();
            mempool.apply_update(&update, &self.view.reader, self.now_ms(now));
            mempool.take_drops();
            for tx in update
                .disconnected
                .iter()
                .flat_map(|block| block.txs.iter())
            {
                if mempool.contains(&tx.txid()) {
                    events.push(NodeEvent::TxReadmitted {
                        tx: Arc::new(tx.clone()),
                    });
                }
            }
        }
        inputs.extend(events.into_iter().rev().map(Input::Node));
    }

    /// Admits a tx as `NodeHandle::submit_tx` does (the signature through
    /// the shared cache, then the mempool: one thread, so no precheck
    /// before a lock) and publishes `TxAccepted`.
    fn add_tx(
        &mut self,
        now: SimTime,
        tx: Transaction,
        inputs: &mut Vec<Input>,
    ) -> Result<(), MempoolError> {
        let txid = {
            let mut mempool = self.view.mempool.borrow_mut();
            let added = mempool.add(tx.clone(), &self.view.reader, self.now_ms(now));
            mempool.take_drops();
            added?
        };
        self.observed.push(Observed::HasTx(txid));
        inputs.push(Input::Node(NodeEvent::TxAccepted { tx: Arc::new(tx) }));
        Ok(())
    }

    /// A tx submitted here by a wallet (`POST /v1/txs`).
    pub fn submit_tx(&mut self, now: SimTime, tx: Transaction) -> Result<(), MempoolError> {
        let mut inputs = Vec::new();
        self.add_tx(now, tx, &mut inputs)?;
        for input in inputs {
            self.feed(now, input);
        }
        Ok(())
    }

    /// This node found a block (the mining oracle says so): a template
    /// from its mempool on its tip, through the same validation as any
    /// block. Returns the block's hash.
    pub fn mine(&mut self, now: SimTime, miner: Address) -> Option<BlockHash> {
        let context = self.chain.next_block_context(self.now_ms(now));
        let txs = self
            .view
            .mempool
            .borrow()
            .select_for_block(&self.view.reader, ledger::miner::max_tx_bytes(&self.spec));
        let block = ledger::miner::build_block(&self.spec, &context, miner, txs);
        let hash = block.hash();
        let mut inputs = Vec::new();
        match self.import_block(now, block, Import::Mined, &mut inputs) {
            BlockVerdict::Accepted => {}
            verdict => {
                tracing::warn!(?verdict, "a simulated block was refused by its own miner");
                return None;
            }
        }
        while let Some(input) = inputs.pop() {
            self.feed(now, input);
        }
        Some(hash)
    }

    /// Feeds the core `Idle` (the driver found nothing else waiting).
    pub fn idle(&mut self, now: SimTime) {
        if self.core.has_pending_announcements() {
            self.feed(now, Input::Idle);
        }
    }
}
