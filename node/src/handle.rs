//! `NodeHandle`: the node's shared state behind one cheap `Clone` handle,
//! used by the RPC handlers, the P2P layer (through `p2p::Backend`) and the
//! miners. It holds:
//! - a `ChainReader` for every read: reads go straight to sled and never
//!   wait on the chain writer or the miner;
//! - the `ChainWriter` handle, the only way to add blocks;
//! - the mempool in a std `Mutex` (never held across `.await`; signature
//!   checks happen before the lock is taken);
//! - the event broadcast channel and the metrics.

use crate::chain_writer::{now_ms, BlockOutcome, ChainWriter, WriterError};
use crate::events::NodeEvent;
use crate::local_chain::{HasLocalChain, LocalChain};
use crate::metrics::Metrics;
use crate::p2p::protocol::ConnId;
use crate::p2p::P2pHandle;
use crate::p2p::{Backend, BlockVerdict, TxVerdict};
use crate::relay_cache::RelayCache;
use crate::verifier::Verifier;
use ledger::chain::{ChainReader, ProcessError};
use ledger::json::{AccountJson, MempoolJson, StatusJson, TxJson, TxLookupJson, TxStatus};
use ledger::mempool::{Mempool, MempoolError};
use ledger::sigcache::SignatureCache;
use ledger::validation::BlockError;
use ledger::{Address, Block, BlockHash, ChainSpec, Transaction, TxId};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::broadcast;
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// Most blocks one `POST /v1/dev/mine` may ask for.
pub const MAX_MINE_BLOCKS: u32 = 1_000;

/// Why `mine_blocks` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MineError {
    #[error("no miner address is configured")]
    NoMinerAddress,
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("could not connect a mined block: {0}")]
    Writer(#[from] WriterError),
    #[error("the tip kept moving; mined {0} blocks")]
    Raced(usize),
}

pub(crate) struct Shared {
    pub spec: ChainSpec,
    pub genesis_hash: BlockHash,
    pub reader: ChainReader,
    pub writer: ChainWriter,
    pub mempool: Arc<Mutex<Mempool>>,
    pub signature_cache: SignatureCache,
    pub verifier: Verifier,
    pub relay_cache: Arc<RelayCache>,
    pub events: broadcast::Sender<NodeEvent>,
    pub metrics: Metrics,
    pub generation: Arc<AtomicU64>,
    pub miner_address: Option<Address>,
    pub mining: bool,
    pub mining_threads: usize,
    pub node_id: String,
    pub network: OnceLock<P2pHandle>,
    pub ready: AtomicBool,
    pub shutdown: CancellationToken,
    /// Submissions through the API being checked at once (`submit_local_tx`).
    pub admissions: Arc<tokio::sync::Semaphore>,
}

/// Submissions through the API checked at once; more wait for nothing and
/// are told to come back (`busy`).
pub(crate) const MAX_CONCURRENT_ADMISSIONS: usize = 256;
/// The API takes new txs only while the mempool is under this share of its
/// caps (in percent). Above it the rest is kept for txs relayed by peers:
/// a tx a peer relays is one some node already answered 202 for, and
/// refusing it would open a gap in its sender's nonces here.
pub(crate) const LOCAL_ADMISSION_PERCENT: usize = 60;
/// The API takes new txs only while less than this many full blocks' worth
/// of txs are pending.
pub(crate) const LOCAL_BACKLOG_BLOCKS: usize = 4;
/// The API takes new txs only while fewer than this many txs from peers
/// wait for validation here (leaving out the peer with the most, so no
/// single peer can trip it). More means this node's mempool is falling
/// behind what the network has accepted: taking new txs would widen the
/// gap (its compact blocks would need round trips, its peers' txs would
/// be dropped at the core's limit for unrequested ones), so its share of
/// the cores goes to catching up first. On the 4-node testnet, where a
/// node's three peers relay about evenly, 512 without the largest share
/// is about 768 in all, the limit measured best under overload
/// (BENCHMARKS.md, "Session 16").
pub(crate) const RELAY_BACKLOG_BUSY: usize = 512;
/// The size of a transfer with a short memo, to count how many fit a block.
const SMALL_TX_BYTES: usize = 160;
/// Pending txs one sender may have before the API asks it to wait for a
/// block: a sender's whole window of nonces.
pub(crate) const MAX_PENDING_PER_SENDER: usize = 128;

/// Why a tx submitted through the API was not taken.
#[derive(Debug)]
pub enum SubmitError {
    /// Not now: try again after `retry_after` (`why`: "queue", "mempool"
    /// or "sender").
    Busy {
        retry_after: std::time::Duration,
        why: &'static str,
    },
    /// The mempool's verdict.
    Rejected(MempoolError),
}

/// One page of `NodeHandle::address_history_page`.
pub struct HistoryPage {
    pub entries: Vec<TxLookupJson>,
    /// (height, position) of the last confirmed tx, when the page is full
    /// (there may be more before it).
    pub next_cursor: Option<(ledger::Height, u32)>,
}

/// The node, as its subsystems see it.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) shared: Arc<Shared>,
}

impl NodeHandle {
    pub fn spec(&self) -> &ChainSpec {
        &self.shared.spec
    }

    pub fn reader(&self) -> &ChainReader {
        &self.shared.reader
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    pub fn is_mining(&self) -> bool {
        self.shared.mining
    }

    /// True once storage is open and P2P listens.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire) && !self.shared.shutdown.is_cancelled()
    }

    pub(crate) fn set_network(&self, network: P2pHandle) {
        let _ = self.shared.network.set(network);
        self.shared.ready.store(true, Ordering::Release);
    }

    pub fn network(&self) -> Option<&P2pHandle> {
        self.shared.network.get()
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }

    /// Cancelled when the node begins to shut down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shared.shutdown
    }

    pub(crate) fn mempool(&self) -> MutexGuard<'_, Mempool> {
        // A panic while holding the lock cannot be caused by input (the
        // mempool validates before it changes anything), and refusing every
        // later transaction would be worse than going on.
        ledger::sync::lock(&self.shared.mempool)
    }

    /// Drops mempool transactions past their expiry, reporting each.
    pub(crate) fn expire_mempool(&self, now_ms: u64) -> usize {
        let mut mempool = self.mempool();
        let expired = mempool.expire(now_ms);
        report_drops(&mut mempool, &self.shared.events, &self.shared.metrics);
        expired
    }

    pub fn status(&self) -> StatusJson {
        let tip = self.shared.reader.tip();
        let network = self.network();
        StatusJson {
            chain: self.shared.spec.name.clone(),
            genesis_hash: self.shared.genesis_hash,
            height: tip.height,
            tip: tip.hash,
            total_work: tip.total_work.0,
            target: tip.target.0,
            peers: network.map_or(0, P2pHandle::n_peers),
            mempool: self.mempool().len(),
            min_fee: self.shared.spec.min_fee,
            syncing: network.is_some_and(P2pHandle::is_syncing),
            mining: self.shared.mining,
            node_id: self.shared.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    pub fn account(&self, address: &Address) -> AccountJson {
        let account = self.shared.reader.account(address);
        let next_nonce = self.mempool().next_nonce(address, &self.shared.reader);
        AccountJson {
            address: self.shared.spec.format_address(address),
            balance: account.balance,
            nonce: account.nonce,
            next_nonce,
        }
    }

    /// A tx in the mempool, on the best chain, or let go lately (dropped,
    /// with the reason).
    pub fn lookup_tx(&self, txid: &TxId) -> Option<TxLookupJson> {
        let (pending, dropped) = {
            let mempool = self.mempool();
            let pending = mempool.get(txid).cloned();
            let dropped = match pending {
                Some(_) => None,
                None => mempool
                    .dropped(txid)
                    .map(|(tx, reason)| (tx.clone(), reason)),
            };
            (pending, dropped)
        };
        if let Some(tx) = pending {
            return Some(self.pending_lookup(&tx));
        }
        if let Some((tx, location)) = self.shared.reader.tx(txid) {
            let tip_height = self.shared.reader.tip().height;
            return Some(self.confirmed_lookup(&tx, &location, tip_height));
        }
        let (tx, reason) = dropped?;
        Some(TxLookupJson {
            tx: TxJson::from_tx(&tx, &self.shared.spec),
            status: TxStatus::Dropped,
            block_hash: None,
            block_height: None,
            confirmations: 0,
            reason: Some(reason.code().to_string()),
        })
    }

    fn confirmed_lookup(
        &self,
        tx: &Transaction,
        location: &ledger::storage::TxLocation,
        tip_height: ledger::Height,
    ) -> TxLookupJson {
        TxLookupJson {
            tx: TxJson::from_tx(tx, &self.shared.spec),
            status: TxStatus::Confirmed,
            block_hash: Some(location.block_hash),
            block_height: Some(location.height),
            confirmations: tip_height
                .blocks_since(location.height)
                .unwrap_or(0)
                .saturating_add(1),
            reason: None,
        }
    }

    fn pending_lookup(&self, tx: &Transaction) -> TxLookupJson {
        TxLookupJson {
            tx: TxJson::from_tx(tx, &self.shared.spec),
            status: TxStatus::Pending,
            block_hash: None,
            block_height: None,
            confirmations: 0,
            reason: None,
        }
    }

    /// Newest first: pending txs (highest nonce first), then confirmed ones.
    pub fn address_history(&self, address: &Address, limit: usize) -> Vec<TxLookupJson> {
        self.address_history_page(address, limit, None).entries
    }

    /// One page of an address's history, newest first. Without a cursor:
    /// its pending txs (highest nonce first), then confirmed ones; with
    /// one: the confirmed txs before that (height, position). Only the
    /// returned txs are read from storage.
    pub fn address_history_page(
        &self,
        address: &Address,
        limit: usize,
        cursor: Option<(ledger::Height, u32)>,
    ) -> HistoryPage {
        let mut history: Vec<TxLookupJson> = Vec::new();
        if cursor.is_none() {
            let mut pending: Vec<Transaction> = self
                .mempool()
                .pending_for(address)
                .into_iter()
                .cloned()
                .collect();
            pending.sort_by_key(|tx| std::cmp::Reverse(tx.nonce));
            history.extend(pending.iter().take(limit).map(|tx| self.pending_lookup(tx)));
        }
        let remaining = limit.saturating_sub(history.len());
        let mut next_cursor = None;
        if remaining > 0 {
            let tip_height = self.shared.reader.tip().height;
            let confirmed = self.shared.reader.address_txs(address, remaining, cursor);
            if confirmed.len() == remaining {
                next_cursor = confirmed
                    .last()
                    .map(|(_, location)| (location.height, location.index));
            }
            history.extend(
                confirmed
                    .into_iter()
                    .map(|(tx, location)| self.confirmed_lookup(&tx, &location, tip_height)),
            );
        }
        HistoryPage {
            entries: history,
            next_cursor,
        }
    }

    pub fn mempool_summary(&self, limit: usize) -> MempoolJson {
        let mempool = self.mempool();
        MempoolJson {
            count: mempool.len(),
            bytes: mempool.bytes(),
            txids: mempool.txids_newest_first(limit),
        }
    }

    /// Checks the signature on a blocking thread, then admits the tx to the
    /// mempool. Publishes `TxAccepted` and counts the outcome.
    pub async fn submit_tx(&self, tx: Transaction) -> Result<TxId, MempoolError> {
        let node = self.clone();
        match tokio::task::spawn_blocking(move || node.submit_tx_blocking(tx)).await {
            Ok(result) => result,
            // Only a panic in the mempool gets here; report it as a refusal
            // rather than taking the caller down.
            Err(_) => Err(MempoolError::Malformed(
                "internal error while checking the transaction".into(),
            )),
        }
    }

    /// A tx submitted through the API. Unlike a tx relayed by a peer, it
    /// is refused at once (`Busy`) while the node cannot take more: too
    /// many submissions in progress, the mempool past its share for local
    /// submissions, or the sender's queue full. What is refused here is
    /// never answered 202, so it can never be lost.
    pub async fn submit_local_tx(&self, tx: Transaction) -> Result<TxId, SubmitError> {
        let Ok(_permit) = self.shared.admissions.clone().try_acquire_owned() else {
            return Err(self.busy("queue"));
        };
        if self
            .network()
            .is_some_and(|network| network.relay_backlog() >= RELAY_BACKLOG_BUSY)
        {
            return Err(self.busy("relay_backlog"));
        }
        {
            let mempool = self.mempool();
            let config = mempool.config();
            // The reserve is for the relayed txs a block interval brings; a
            // pool smaller than one block (a test's) has no room to split.
            let block_bytes =
                usize::try_from(self.shared.spec.max_block_bytes).unwrap_or(usize::MAX);
            let block_txs = block_bytes / SMALL_TX_BYTES;
            let over_share = (config.max_txs >= block_txs
                && mempool.len() * 100 >= config.max_txs * LOCAL_ADMISSION_PERCENT)
                || mempool.bytes() * 100 >= config.max_bytes * LOCAL_ADMISSION_PERCENT
                // More than a few blocks' worth waiting only adds latency:
                // what comes later would wait longer than a client does.
                || mempool.bytes() >= block_bytes.saturating_mul(LOCAL_BACKLOG_BLOCKS);
            if over_share {
                drop(mempool);
                return Err(self.busy("mempool"));
            }
            let (executable, future) = mempool.queue_lengths(&tx.sender());
            if executable + future >= MAX_PENDING_PER_SENDER {
                drop(mempool);
                return Err(self.busy("sender"));
            }
        }
        self.submit_tx(tx).await.map_err(SubmitError::Rejected)
    }

    fn busy(&self, why: &'static str) -> SubmitError {
        self.shared
            .metrics
            .inc("txs_refused_busy_total", &[("reason", why)]);
        // About one block: what it takes for the mempool to drain.
        let block_time = std::time::Duration::from_millis(self.shared.spec.block_time_ms);
        SubmitError::Busy {
            retry_after: block_time.clamp(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(10),
            ),
            why,
        }
    }

    /// `submit_tx` for callers already on a blocking thread.
    pub fn submit_tx_blocking(&self, tx: Transaction) -> Result<TxId, MempoolError> {
        let mut results = self.submit_txs_blocking(vec![tx]);
        results.pop().unwrap_or_else(|| {
            Err(MempoolError::Malformed(
                "internal error while checking the transaction".into(),
            ))
        })
    }

    /// Several txs in order: each signature checked before the mempool's
    /// lock, then all admitted under one hold of it. One result each.
    pub fn submit_txs_blocking(&self, txs: Vec<Transaction>) -> Vec<Result<TxId, MempoolError>> {
        let shared = &self.shared;
        let checked: Vec<(Transaction, Result<TxId, MempoolError>)> = txs
            .into_iter()
            .map(|tx| {
                let verdict = Mempool::precheck(&shared.genesis_hash, &shared.signature_cache, &tx);
                (tx, verdict)
            })
            .collect();
        let results: Vec<Result<TxId, MempoolError>> = if checked.iter().any(|(_, v)| v.is_ok()) {
            let mut mempool = self.mempool();
            let results = checked
                .into_iter()
                .map(|(tx, verdict)| {
                    verdict?;
                    let added = mempool.add(tx.clone(), &shared.reader, now_ms());
                    // Published (and so relayed) only once it can execute: a
                    // held tx goes out when its gap fills, from
                    // `report_drops`.
                    let held = added.as_ref().is_ok_and(|txid| mempool.is_held(txid));
                    if added.is_ok() && !held {
                        let _ = shared
                            .events
                            .send(NodeEvent::TxAccepted { tx: Arc::new(tx) });
                    }
                    // Admission may evict, replace or release others: say
                    // so either way.
                    report_drops(&mut mempool, &shared.events, &shared.metrics);
                    added
                })
                .collect();
            shared.metrics.set(
                "mempool_size",
                &[],
                i64::try_from(mempool.len()).unwrap_or(i64::MAX),
            );
            results
        } else {
            checked.into_iter().map(|(_, verdict)| verdict).collect()
        };
        for result in &results {
            match result {
                Ok(_) => {
                    shared.metrics.inc("txs_accepted_total", &[]);
                    shared.generation.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => shared
                    .metrics
                    .inc("txs_rejected_total", &[("reason", error.code())]),
            }
        }
        results
    }

    /// Submits a block to the chain writer.
    pub async fn submit_block_outcome(&self, block: Block) -> Result<BlockOutcome, WriterError> {
        self.shared.writer.submit_block(block).await
    }

    pub(crate) fn writer(&self) -> &ChainWriter {
        &self.shared.writer
    }

    /// Mines `count` blocks on the current tip now, with the mempool's best
    /// transactions, and returns their hashes. Used by `POST /v1/dev/mine`.
    pub async fn mine_blocks(&self, count: u32) -> Result<Vec<BlockHash>, MineError> {
        let miner = self.shared.miner_address.ok_or(MineError::NoMinerAddress)?;
        let mut hashes = Vec::with_capacity(count.min(MAX_MINE_BLOCKS) as usize);
        // A competing block (from a peer or the background miner) can take
        // the tip between template and submission; retry a few times.
        let mut races = 0;
        while hashes.len() < count as usize {
            if self.shared.shutdown.is_cancelled() {
                return Err(MineError::ShuttingDown);
            }
            let context = self.shared.writer.next_block_context().await?;
            let max_tx_bytes = ledger::miner::max_tx_bytes(&self.shared.spec);
            let txs = self
                .mempool()
                .select_for_block(&self.shared.reader, max_tx_bytes);
            let mut block = ledger::miner::build_block(&self.shared.spec, &context, miner, txs);
            let cancel = crate::mining::CancelOnDrop::new(self.shared.shutdown.clone());
            let flag = cancel.flag();
            let threads = self.shared.mining_threads;
            let solved = tokio::task::spawn_blocking(move || {
                let found = ledger::miner::solve(&mut block.header, &flag, threads);
                (found, block)
            })
            .await;
            drop(cancel);
            let (found, block) = solved.map_err(|_| MineError::ShuttingDown)?;
            if !found {
                return Err(MineError::ShuttingDown);
            }
            let hash = block.hash();
            match self.shared.writer.submit_block(block).await? {
                BlockOutcome::Connected { .. } => hashes.push(hash),
                _ => {
                    races += 1;
                    if races > 10 {
                        return Err(MineError::Raced(hashes.len()));
                    }
                }
            }
        }
        Ok(hashes)
    }
}

/// Publishes what the mempool let go since the last call: a `TxDropped`
/// event (SSE `dropped`) and `ledger_mempool_dropped_total{reason}` each;
/// and what it released from its side pool of held txs (their nonce gap
/// filled): a `TxAccepted` each, which relays them now. Called with the
/// mempool's lock held, after every change that can drop or release.
pub(crate) fn report_drops(
    mempool: &mut Mempool,
    events: &broadcast::Sender<NodeEvent>,
    metrics: &Metrics,
) {
    for (txid, reason) in mempool.take_drops() {
        tracing::debug!(%txid, reason = reason.code(), "mempool dropped a transaction");
        metrics.inc("mempool_dropped_total", &[("reason", reason.code())]);
        let _ = events.send(NodeEvent::TxDropped {
            txid,
            reason: reason.code(),
        });
    }
    for tx in mempool.take_promoted() {
        metrics.inc("mempool_future_released_total", &[]);
        let _ = events.send(NodeEvent::TxAccepted { tx: Arc::new(tx) });
    }
    let refused = mempool.take_future_refusals();
    if refused > 0 {
        metrics.add("mempool_future_refused_total", &[], refused);
    }
    metrics.set(
        "mempool_future_txs",
        &[],
        i64::try_from(mempool.future_len()).unwrap_or(i64::MAX),
    );
}

impl HasLocalChain for NodeHandle {
    fn local_chain(&self) -> LocalChain<'_> {
        LocalChain {
            reader: &self.shared.reader,
            relay_cache: &self.shared.relay_cache,
            mempool: &self.shared.mempool,
        }
    }
}

impl Backend for NodeHandle {
    fn genesis_hash(&self) -> BlockHash {
        self.shared.genesis_hash
    }

    fn chain_spec(&self) -> &ChainSpec {
        &self.shared.spec
    }

    fn block(&self, hash: &BlockHash) -> Option<Block> {
        self.shared.reader.block(hash)
    }

    fn block_payload(&self, hash: &BlockHash) -> Option<Bytes> {
        self.local_chain().block_payload(hash)
    }

    fn push_payload(&self, hash: &BlockHash) -> Option<(&'static str, Bytes)> {
        self.shared.relay_cache.push_payload(hash).or_else(|| {
            self.compact_payload(hash)
                .map(|payload| ("compact_block", payload))
        })
    }

    fn compact_payload(&self, hash: &BlockHash) -> Option<Bytes> {
        self.local_chain().compact_payload(hash)
    }

    fn recent_block(&self, hash: &BlockHash) -> Option<Block> {
        self.local_chain().recent_block(hash)
    }

    async fn submit_block(&self, block: Block) -> BlockVerdict {
        block_verdict(self.shared.writer.submit_peer_block(block).await)
    }

    async fn submit_block_from(&self, from: ConnId, block: Block) -> BlockVerdict {
        let source = ledger::chain::OrphanSource(from.0);
        block_verdict(
            self.shared
                .writer
                .submit_peer_block_from(block, source)
                .await,
        )
    }

    async fn submit_synced_block(&self, block: Block) -> BlockVerdict {
        block_verdict(self.shared.writer.submit_synced_block(block).await)
    }

    /// Kept for the chain writer's validated hook, which relays this form.
    fn rebuilt_from(&self, compact: &crate::p2p::message::CompactBlock) {
        self.shared.relay_cache.note_received(compact);
    }

    /// On the chain writer's thread, which runs at the node's priority.
    fn run_urgent(&self, job: crate::p2p::UrgentJob) -> Result<(), crate::p2p::UrgentJob> {
        self.shared.writer.run_urgent(job)
    }

    /// Verifies the block's signatures into the shared signature cache on
    /// the verifier threads (`verifier`), so the chain writer finds them
    /// checked.
    async fn precheck_block(&self, block: Block) -> Block {
        self.shared.verifier.precheck(block).await
    }

    async fn submit_tx(&self, tx: Transaction) -> TxVerdict {
        match NodeHandle::submit_tx(self, tx).await {
            Ok(_) => TxVerdict::Accepted,
            Err(error) => error.into(),
        }
    }

    async fn submit_txs(&self, txs: Vec<Transaction>) -> Vec<TxVerdict> {
        let count = txs.len();
        let node = self.clone();
        match tokio::task::spawn_blocking(move || node.submit_txs_blocking(txs)).await {
            Ok(results) => results
                .into_iter()
                .map(|result| match result {
                    Ok(_) => TxVerdict::Accepted,
                    Err(error) => error.into(),
                })
                .collect(),
            // Only a panic in the mempool gets here.
            Err(_) => (0..count)
                .map(|_| TxVerdict::Rejected {
                    reason: "internal error while checking the transaction".into(),
                    misbehaving: false,
                })
                .collect(),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }
}

/// What P2P is told of a tx the mempool refused: a duplicate is known, and
/// only errors no honest relayer produces count as misbehaviour.
impl From<MempoolError> for TxVerdict {
    fn from(error: MempoolError) -> TxVerdict {
        match error {
            MempoolError::Duplicate => TxVerdict::Known,
            error => TxVerdict::Rejected {
                misbehaving: matches!(
                    error,
                    MempoolError::BadSignature
                        | MempoolError::WrongChain
                        | MempoolError::Malformed(_)
                ),
                reason: error.code().to_string(),
            },
        }
    }
}

/// What P2P is told of an invalid block: its sender misbehaved unless an
/// honest node could have sent it (see `BlockError::is_misbehaviour`).
impl From<BlockError> for BlockVerdict {
    fn from(error: BlockError) -> BlockVerdict {
        BlockVerdict::Rejected {
            reason: error.to_string(),
            misbehaving: error.is_misbehaviour(),
        }
    }
}

/// What P2P is told when the chain could not process a block: an invalid
/// block as above; our own storage failure blames nobody.
impl From<ProcessError> for BlockVerdict {
    fn from(error: ProcessError) -> BlockVerdict {
        match error {
            ProcessError::Invalid(error) => error.into(),
            ProcessError::Storage(error) => BlockVerdict::Rejected {
                reason: error.to_string(),
                misbehaving: false,
            },
        }
    }
}

/// Why a peer's block on a chain with less work than our tip was refused.
pub const LOW_WORK_REASON: &str = "low_work: its chain has less work than our tip; not stored";

/// The P2P layer's view of the chain writer's answer.
pub(crate) fn block_verdict(result: Result<BlockOutcome, WriterError>) -> BlockVerdict {
    match result {
        Ok(BlockOutcome::Connected { .. }) => BlockVerdict::Accepted,
        Ok(BlockOutcome::SideChain) => BlockVerdict::SideBranch,
        Ok(BlockOutcome::Known) => BlockVerdict::Known,
        Ok(BlockOutcome::Orphan) => BlockVerdict::Orphan,
        // Honest too (a stale block arriving late), so no misbehaviour.
        Ok(BlockOutcome::LowWork) => BlockVerdict::Rejected {
            reason: LOW_WORK_REASON.into(),
            misbehaving: false,
        },
        Err(WriterError::Invalid(error)) => error.into(),
        Err(error) => BlockVerdict::Rejected {
            reason: error.to_string(),
            misbehaving: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::test_utils::regtest_node;
    use futures::FutureExt;
    use ledger::mempool::MempoolError;
    use ledger::testing::transfer;
    use ledger::Address;

    /// A batch (as the gossip importers submit) gets one verdict per tx, in
    /// order, exactly as one-by-one submissions would: a bad signature in
    /// the middle refuses only its own tx, and a later nonce of the same
    /// sender still lands behind the earlier one.
    #[tokio::test]
    async fn a_batch_is_admitted_in_order_with_one_verdict_each() {
        let (_dir, spec, node) = regtest_node().await;
        let genesis = spec.genesis_hash();
        let to = Address([9; 20]);
        let first = transfer(&genesis, 0, to, 5, 1_000, 0);
        let mut forged = transfer(&genesis, 1, to, 5, 1_000, 0);
        forged.amount = ledger::Amount::from_base_units(6);
        let second = transfer(&genesis, 0, to, 5, 1_000, 1);
        let handle = node.handle.clone();
        let batch = vec![first.clone(), forged, second.clone(), first.clone()];
        let results = tokio::task::spawn_blocking(move || handle.submit_txs_blocking(batch))
            .await
            .unwrap();
        assert_eq!(
            results,
            vec![
                Ok(first.txid()),
                Err(MempoolError::BadSignature),
                Ok(second.txid()),
                Err(MempoolError::Duplicate),
            ]
        );
        assert_eq!(node.handle.mempool().len(), 2);
        node.shutdown().await;
    }

    /// While txs from peers queue for validation past the limit, the API
    /// refuses new ones (`busy`, reason `relay_backlog`), never answering
    /// 202 for what would widen the gap; below it the tx is taken. (The
    /// driver sets the backlog after each input, so the test sets it again
    /// until a submission sees it.)
    #[tokio::test]
    async fn the_api_refuses_new_txs_while_peers_txs_wait_for_validation() {
        let (_dir, spec, node) = regtest_node().await;
        let network = node.handle.network().expect("P2P is running").clone();
        let tx = transfer(&spec.genesis_hash(), 0, Address([9; 20]), 5, 1_000, 0);
        let refused = (0..100).any(|_| {
            network.set_relay_backlog_for_tests(super::RELAY_BACKLOG_BUSY);
            matches!(
                node.handle.submit_local_tx(tx.clone()).now_or_never(),
                Some(Err(super::SubmitError::Busy {
                    why: "relay_backlog",
                    ..
                }))
            )
        });
        assert!(refused, "refused while the backlog is at the limit");
        network.set_relay_backlog_for_tests(super::RELAY_BACKLOG_BUSY - 1);
        let other = transfer(&spec.genesis_hash(), 1, Address([9; 20]), 5, 1_000, 0);
        assert_eq!(
            node.handle.submit_local_tx(other.clone()).await.ok(),
            Some(other.txid())
        );
        node.shutdown().await;
    }
}
