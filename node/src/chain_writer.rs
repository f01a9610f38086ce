//! The chain writer: the one actor that owns `ledger::chain::Chain` and so
//! the only code that ever writes blocks or state. It runs on a dedicated
//! std thread (block validation is CPU and disk work, never async work), and
//! everyone else talks to it through the cheap `ChainWriter` handle: blocks
//! from peers, `POST /v1/dev/mine` and the background miner arrive as
//! commands with oneshot replies, one at a time, in arrival order.
//!
//! Each block joining the best chain is published twice: `BlockValidated`
//! from the chain's hook once every check has passed and before the sled
//! commit (the P2P layer relays from it), then `BlockConnected` once it is
//! the tip, with `Reorg` after when blocks were disconnected. Only then does
//! the actor, still on its thread, settle the new tip: write the tx and
//! address indexes (deferred: `Chain::write_indexes`) and bring the mempool
//! up to date (`apply_update`, reorg-aware). For `POST /v1/dev/mine` that
//! happens before the reply; for peers' blocks and the background miner's
//! once the writer has been idle for a moment (`Settle`), so relaying is
//! not slowed by bookkeeping. The
//! blocks of a sync are also committed several per sled transaction
//! (`Settle::Synced`), and published once committed.
//! Readers never come here: they use a `ChainReader`, which reads sled
//! directly. This thread runs at the process's own priority and the async
//! runtime lower (`priority`), so the P2P layer also sends it the one other
//! job on a new block's path, a large compact block's rebuild
//! (`ChainWriter::run_urgent`), which it runs ahead of any bookkeeping.

use crate::events::NodeEvent;
use crate::metrics::Metrics;
use crate::p2p::message::CompactBlock;
use crate::p2p::{JudgeNow, UrgentJob};
use crate::relay_cache::RelayCache;
use ledger::chain::{
    Chain, ChainError, ChainReader, ChainUpdate, NextBlockContext, OrphanSource, ProcessError,
    ProcessOutcome, MAX_ORPHANS_PER_SOURCE,
};
use ledger::mempool::Mempool;
use ledger::storage::StorageError;
use ledger::validation::BlockError;
use ledger::{Block, BlockHash, Height, Transaction, TxId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;
use tokio::sync::{broadcast, oneshot};

/// What became of a submitted block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// It (and possibly stored descendants) joined the best chain.
    Connected { new_tip: BlockHash, height: Height },
    /// Valid, stored on a side branch with less work.
    SideChain,
    /// Already stored.
    Known,
    /// Parent unknown; kept as an orphan.
    Orphan,
    /// A peer's block on a chain with less work than the tip: not stored.
    LowWork,
}

impl From<ProcessError> for WriterError {
    fn from(error: ProcessError) -> WriterError {
        match error {
            ProcessError::Invalid(error) => WriterError::Invalid(error),
            ProcessError::Storage(error) => WriterError::Storage(error),
        }
    }
}

/// Why the writer could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriterError {
    #[error("invalid block: {0}")]
    Invalid(#[from] BlockError),
    /// Our store failed; nothing is known about the block.
    #[error("chain storage error: {0}")]
    Storage(#[from] StorageError),
    #[error("the chain writer has stopped")]
    Stopped,
}

enum Command {
    SubmitBlock {
        block: Block,
        /// Whether the reply waits for the tx index and the mempool to
        /// catch up with the block (see `Settle`).
        settle: Settle,
        /// The peer connection that sent it, if any (its orphan share).
        source: Option<OrphanSource>,
        reply: oneshot::Sender<Result<BlockOutcome, ProcessError>>,
    },
    Template {
        reply: oneshot::Sender<NextBlockContext>,
    },
    /// Work on a new block's path that must not wait behind the node's
    /// other work (rebuilding a large compact block): run at once, on this
    /// thread, without settling first; a block it rebuilt is judged right
    /// after it, here.
    Urgent(UrgentJob),
    /// Flush storage and end the thread.
    Shutdown {
        reply: oneshot::Sender<Result<(), ChainError>>,
    },
}

/// When a new tip's bookkeeping (tx and address indexes, mempool update)
/// is done relative to the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    /// Before replying: whoever mined the block sees every effect of it
    /// once the call returns (`POST /v1/dev/mine`).
    Now,
    /// After the writer has been idle for `SETTLE_DELAY` (or before its
    /// next command): blocks from peers and the background miner's. While
    /// a block crosses a network every node validates it in turn on shared
    /// cores, and this keeps
    /// each node's index writes (most of a block's cost) from competing
    /// with the next node's checks. Meanwhile the block's txs read as
    /// still pending.
    Later,
    /// A block of a sync: like `Later`, and its connect may also be held
    /// for a group commit of up to `HELD_CONNECTS` blocks, made when a
    /// command of another kind comes or the writer has been idle for
    /// `HOLD_DELAY`. Its `BlockConnected` is published after that commit.
    Synced,
}

/// How long the writer waits for another command before settling a peer's
/// block or the miner's. Long enough for the other nodes sharing the cores
/// to rebuild and validate the same block first (on the 4-node loopback
/// testnet at 3,500 tx/s, a block reaches the last node in about 150 ms
/// at p90), short against a block time; whatever needs the bookkeeping
/// (a template, the next block) settles it first anyway.
const SETTLE_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// How long the writer waits for the next synced block before committing
/// the ones it holds.
const HOLD_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

/// Most synced blocks committed together. Every block announced and not
/// yet committed must be in the relay cache for peers to fetch it.
const HELD_CONNECTS: usize = crate::relay_cache::RELAY_CACHE_BLOCKS;

/// What the actor updates after each connect, shared with the rest of the
/// node.
pub(crate) struct WriterContext {
    pub reader: ChainReader,
    pub mempool: Arc<Mutex<Mempool>>,
    pub events: broadcast::Sender<NodeEvent>,
    pub metrics: Metrics,
    /// Bumped whenever the best chain or the mempool changes, so the miner
    /// knows its template is stale.
    pub generation: Arc<AtomicU64>,
    /// Where each validated block's P2P payload goes before it is announced.
    pub relay_cache: Arc<RelayCache>,
}

/// Cheap handle to the chain writer thread.
#[derive(Clone)]
pub struct ChainWriter {
    commands: mpsc::Sender<Command>,
}

impl ChainWriter {
    /// Moves `chain` onto a new thread named `chain-writer`, with a hook
    /// that, for each block between its checks and its commit, encodes its
    /// P2P payload into the relay cache and publishes `BlockValidated`.
    pub(crate) fn spawn(
        mut chain: Chain,
        context: WriterContext,
    ) -> std::io::Result<(ChainWriter, std::thread::JoinHandle<()>)> {
        let events = context.events.clone();
        let relay_cache = Arc::clone(&context.relay_cache);
        let mempool = Arc::clone(&context.mempool);
        chain.set_defer_indexing(true);
        chain.set_validated_hook(Box::new(move |hash, block, txids| {
            // A block rebuilt from a peer's compact form is relayed in that
            // form; one mined here or fetched whole gets its own.
            let compact = relay_cache
                .take_received(hash)
                .unwrap_or_else(|| compact_for_relay(block, txids, &mempool, now_ms()));
            relay_cache.insert_block_with(*hash, block, compact);
            let _ = events.send(NodeEvent::BlockValidated {
                hash: *hash,
                height: block.header.height,
            });
        }));
        let (commands, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chain-writer".into())
            .spawn(move || run(chain, context, receiver))?;
        Ok((ChainWriter { commands }, thread))
    }

    /// Validates and stores a block; waits for the verdict and, if it is
    /// the new tip, for the indexes and the mempool to reflect it.
    pub async fn submit_block(&self, block: Block) -> Result<BlockOutcome, WriterError> {
        self.submit(block, Settle::Now, None).await
    }

    /// Validates and stores a peer's block; the verdict comes as soon as it
    /// is the tip, with the index and mempool updates following shortly
    /// (see `Settle::Later`).
    pub async fn submit_peer_block(&self, block: Block) -> Result<BlockOutcome, WriterError> {
        self.submit(block, Settle::Later, None).await
    }

    /// `submit_peer_block` naming the connection that sent it, whose share
    /// of the orphan pool the block counts against (`ledger`'s
    /// `MAX_ORPHANS_PER_SOURCE`).
    pub async fn submit_peer_block_from(
        &self,
        block: Block,
        source: OrphanSource,
    ) -> Result<BlockOutcome, WriterError> {
        self.submit(block, Settle::Later, Some(source)).await
    }

    /// `submit_peer_block` for a block fetched by a sync: the verdict comes
    /// before the commit, which it may share with the next few synced
    /// blocks (see `Settle::Synced`).
    pub async fn submit_synced_block(&self, block: Block) -> Result<BlockOutcome, WriterError> {
        self.submit(block, Settle::Synced, None).await
    }

    async fn submit(
        &self,
        block: Block,
        settle: Settle,
        source: Option<OrphanSource>,
    ) -> Result<BlockOutcome, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::SubmitBlock {
                block,
                settle,
                source,
                reply,
            })
            .map_err(|_| WriterError::Stopped)?;
        answer
            .await
            .map_err(|_| WriterError::Stopped)?
            .map_err(WriterError::from)
    }

    /// Runs `job` on the writer's thread, ahead of any bookkeeping it has
    /// left to do; hands it back when the writer has stopped.
    pub fn run_urgent(&self, job: UrgentJob) -> Result<(), UrgentJob> {
        self.commands
            .send(Command::Urgent(job))
            .map_err(|mpsc::SendError(command)| match command {
                Command::Urgent(job) => job,
                _ => unreachable!("sent an urgent job"),
            })
    }

    /// A block the background miner found: like a peer's, the verdict
    /// comes once it is the tip, and its bookkeeping waits until the writer
    /// is idle (`Settle::Later`), so it does not compete with the peers
    /// validating the same block. The miner's next template settles it
    /// first. A stale one (on a tip that has moved) is not stored.
    pub fn submit_mined_block_blocking(&self, block: Block) -> Result<BlockOutcome, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::SubmitBlock {
                block,
                settle: Settle::Later,
                source: None,
                reply,
            })
            .map_err(|_| WriterError::Stopped)?;
        answer
            .blocking_recv()
            .map_err(|_| WriterError::Stopped)?
            .map_err(WriterError::from)
    }

    /// Height, parent, target and timestamp for a block on the current tip.
    pub async fn next_block_context(&self) -> Result<NextBlockContext, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Template { reply })
            .map_err(|_| WriterError::Stopped)?;
        answer.await.map_err(|_| WriterError::Stopped)
    }

    pub fn next_block_context_blocking(&self) -> Result<NextBlockContext, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Template { reply })
            .map_err(|_| WriterError::Stopped)?;
        answer.blocking_recv().map_err(|_| WriterError::Stopped)
    }

    /// Flushes storage and stops the thread. Commands already queued are
    /// handled first.
    pub async fn shutdown(&self) -> Result<(), WriterError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Shutdown { reply })
            .map_err(|_| WriterError::Stopped)?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                tracing::error!(%error, "flushing storage failed");
                Ok(())
            }
            Err(_) => Err(WriterError::Stopped),
        }
    }
}

/// Txs that reached this node less than this long before a block that
/// holds them are sent whole in its compact form: their announcements
/// are most likely still on their way to our peers, and a missing tx
/// costs the receiver a `GetBlockTxs` round trip.
const PREFILL_WINDOW_MS: u64 = 500;

/// The compact form of a block we are about to relay, with the txs our
/// peers probably lack prefilled: those that reached our mempool less
/// than `PREFILL_WINDOW_MS` ago, and those it does not hold at all (we
/// lacked them too, or took them from a block).
fn compact_for_relay(
    block: &Block,
    txids: &[TxId],
    mempool: &Mutex<Mempool>,
    now_ms: u64,
) -> CompactBlock {
    let prefill: Vec<bool> = {
        let mempool = ledger::sync::lock(mempool);
        txids
            .iter()
            .map(|txid| {
                // Not pooled at all: we lacked it too.
                match mempool.added_ms(txid) {
                    Some(added) => now_ms.saturating_sub(added) < PREFILL_WINDOW_MS,
                    None => true,
                }
            })
            .collect()
    };
    CompactBlock::prefilling(block, txids, |index| prefill[index])
}

/// The node's one wall clock, the same the P2P driver stamps its inputs
/// with, so block times and peer times agree.
pub(crate) use crate::p2p::unix_ms as now_ms;

fn run(mut chain: Chain, context: WriterContext, commands: mpsc::Receiver<Command>) {
    context
        .metrics
        .set("height", &[], height_gauge(context.reader.tip().height));
    // Synced blocks' updates whose connects the chain holds, unpublished.
    let mut held: Vec<ChainUpdate> = Vec::new();
    // Published new tips whose bookkeeping is still to do.
    let mut unsettled: Vec<ChainUpdate> = Vec::new();
    loop {
        // (The chain may hold connects with no update here: a failed
        // reorg that went back to the old tip reconnects its blocks.)
        let holding = !held.is_empty() || chain.has_held();
        let wait = if holding {
            Some(HOLD_DELAY)
        } else if !unsettled.is_empty() {
            Some(SETTLE_DELAY)
        } else {
            None
        };
        let command = match wait {
            Some(delay) => match commands.recv_timeout(delay) {
                Ok(command) => command,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if holding {
                        release(&mut chain, &context, &mut held, &mut unsettled);
                    } else {
                        settle_all(&mut chain, &context, &mut unsettled);
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match commands.recv() {
                Ok(command) => command,
                Err(_) => break,
            },
        };
        let command = match command {
            Command::Urgent(job) => {
                if let Some(judge) = run_job(job) {
                    judge_now(&mut chain, &context, &mut held, &mut unsettled, judge);
                }
                continue;
            }
            command => command,
        };
        // Only another synced block may join the held ones. Everything else
        // sees them committed, and the last tip settled: the next block's
        // mempool update builds on it, and templates never offer txs the
        // chain already holds.
        if !matches!(
            command,
            Command::SubmitBlock {
                settle: Settle::Synced,
                ..
            }
        ) {
            release(&mut chain, &context, &mut held, &mut unsettled);
        }
        settle_all(&mut chain, &context, &mut unsettled);
        match command {
            Command::SubmitBlock {
                block,
                settle: Settle::Synced,
                reply,
                ..
            } => {
                let result = process(&mut chain, &context, block, true, false, None, None);
                let result = result.map(|(outcome, update)| {
                    held.extend(update);
                    outcome
                });
                // The chain commits on its own at its limit or before a
                // disconnect: then what it held is published at once.
                if !chain.has_held() {
                    release(&mut chain, &context, &mut held, &mut unsettled);
                }
                let _ = reply.send(result);
            }
            Command::SubmitBlock {
                block,
                settle: when,
                source,
                reply,
            } => match process(
                &mut chain,
                &context,
                block,
                false,
                when == Settle::Later,
                source,
                None,
            ) {
                Ok((outcome, Some(update))) => {
                    publish(&context, &update);
                    if when == Settle::Later {
                        let _ = reply.send(Ok(outcome));
                        unsettled.push(update);
                    } else {
                        settle(&mut chain, &context, Some(update));
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Ok((outcome, None)) => {
                    let _ = reply.send(Ok(outcome));
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            Command::Template { reply } => {
                let _ = reply.send(chain.next_block_context(now_ms()));
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(chain.flush());
                return;
            }
            Command::Urgent(job) => {
                if let Some(judge) = run_job(job) {
                    judge_now(&mut chain, &context, &mut held, &mut unsettled, judge);
                }
            }
        }
    }
    release(&mut chain, &context, &mut held, &mut unsettled);
    settle_all(&mut chain, &context, &mut unsettled);
    // Every handle is gone: flush what sled still buffers and end.
    if let Err(error) = chain.flush() {
        tracing::error!(%error, "flushing storage failed");
    }
}

/// Runs an urgent job. A job works on what peers sent (a compact block),
/// so a bug it hits must cost that job, never the writer: a panic is
/// caught and logged.
fn run_job(job: UrgentJob) -> Option<JudgeNow> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
        Ok(judge) => judge,
        Err(_) => {
            tracing::error!("an urgent job on the chain writer panicked; it was dropped");
            None
        }
    }
}

/// Judges a block an urgent job rebuilt, as a peer's block submitted with
/// `submit_peer_block_from` would be (held synced connects committed and
/// earlier tips settled first, then `Settle::Later`), sparing it the trip
/// through the P2P driver and the importer back to this thread. One whose
/// parent is not in the chain goes back to its caller, whose core knows
/// whether that parent is on its way.
fn judge_now(
    chain: &mut Chain,
    context: &WriterContext,
    held: &mut Vec<ChainUpdate>,
    unsettled: &mut Vec<ChainUpdate>,
    judge: JudgeNow,
) {
    if !chain.has_block(&judge.block.header.prev_hash) {
        judge.decline();
        return;
    }
    release(chain, context, held, unsettled);
    settle_all(chain, context, unsettled);
    let JudgeNow {
        from,
        block,
        txids,
        then,
    } = judge;
    let source = OrphanSource(from.0);
    let result = match process(
        chain,
        context,
        block,
        false,
        true,
        Some(source),
        Some(txids),
    ) {
        Ok((outcome, Some(update))) => {
            publish(context, &update);
            unsettled.push(update);
            Ok(outcome)
        }
        Ok((outcome, None)) => Ok(outcome),
        Err(error) => Err(WriterError::from(error)),
    };
    then(Ok(crate::handle::block_verdict(result)));
}

/// Commits the connects the chain holds and publishes their updates, which
/// then wait to be settled.
fn release(
    chain: &mut Chain,
    context: &WriterContext,
    held: &mut Vec<ChainUpdate>,
    unsettled: &mut Vec<ChainUpdate>,
) {
    if let Err(error) = chain.commit_held() {
        // The chain is back on its last committed tip, and the blocks
        // connect again with the next one; their updates never happened.
        tracing::error!(%error, "committing synced blocks failed");
        held.clear();
        return;
    }
    for update in held.drain(..) {
        publish(context, &update);
        unsettled.push(update);
    }
}

fn settle_all(chain: &mut Chain, context: &WriterContext, unsettled: &mut Vec<ChainUpdate>) {
    for update in unsettled.drain(..) {
        settle(chain, context, Some(update));
    }
}

fn height_gauge(height: Height) -> i64 {
    i64::try_from(height.0).unwrap_or(i64::MAX)
}

/// Validates and stores `block` (a `synced` one may have its connect held;
/// a peer's `unrequested` one is not stored on a chain with less work than
/// the tip) and, for a new tip, hands back the update to publish and settle.
fn process(
    chain: &mut Chain,
    context: &WriterContext,
    block: Block,
    synced: bool,
    unrequested: bool,
    source: Option<OrphanSource>,
    known_txids: Option<Vec<TxId>>,
) -> Result<(BlockOutcome, Option<ChainUpdate>), ProcessError> {
    let hash = block.hash();
    let started = Instant::now();
    // A source already at its share of the orphan pool replaces its own
    // oldest orphan with a new one.
    let at_orphan_share =
        source.filter(|source| chain.orphans_held_by(*source) >= MAX_ORPHANS_PER_SOURCE);
    let pruned_before = chain.pruned_side_blocks();
    let result = if synced {
        chain.process_block_held(block, now_ms(), HELD_CONNECTS)
    } else if let Some(txids) = known_txids.filter(|_| unrequested) {
        chain.process_block_with_txids(block, txids, now_ms(), source)
    } else if unrequested {
        chain.process_block_from(block, now_ms(), source)
    } else {
        chain.process_block(block, now_ms())
    };
    context
        .metrics
        .observe("block_validation_seconds", started.elapsed().as_secs_f64());
    let pruned = chain.pruned_side_blocks() - pruned_before;
    if pruned > 0 {
        // Side branches forking too deep, or past the cap on side blocks
        // (the ledger logs which rule each time).
        context
            .metrics
            .add("p2p_side_blocks_pruned_total", &[], pruned);
        tracing::info!(block = %hash, pruned, side_blocks = chain.side_block_count(), rule = "side_branch_limits", "pruned side-branch blocks from the index and the store");
    }
    context
        .metrics
        .set("chain_side_blocks", &[], chain.side_block_count() as i64);
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            match &error {
                ProcessError::Invalid(_) => tracing::info!(block = %hash, %error, "block rejected"),
                _ => tracing::error!(block = %hash, %error, "block not processed"),
            }
            context
                .metrics
                .inc("blocks_rejected_total", &[("reason", error.reason())]);
            return Err(error);
        }
    };
    let update = match outcome {
        ProcessOutcome::Known => return Ok((BlockOutcome::Known, None)),
        ProcessOutcome::Orphan => {
            context.metrics.inc("blocks_orphaned_total", &[]);
            if let Some(source) = at_orphan_share {
                context.metrics.inc(
                    "p2p_orphans_replaced_total",
                    &[("rule", "orphans_per_peer")],
                );
                tracing::info!(
                    peer = %crate::p2p::protocol::ConnId(source.0),
                    block = %hash,
                    rule = "orphans_per_peer",
                    "peer at its share of the orphan pool: its oldest orphan replaced"
                );
            }
            return Ok((BlockOutcome::Orphan, None));
        }
        ProcessOutcome::SideChain => {
            context
                .metrics
                .inc("blocks_accepted_total", &[("branch", "side")]);
            return Ok((BlockOutcome::SideChain, None));
        }
        ProcessOutcome::LowWork => {
            context
                .metrics
                .inc("p2p_low_work_blocks_refused_total", &[]);
            return Ok((BlockOutcome::LowWork, None));
        }
        ProcessOutcome::Connected(update) => update,
    };
    let outcome = BlockOutcome::Connected {
        new_tip: update.new_tip,
        height: update
            .connected
            .last()
            .map_or(Height::ZERO, |block| block.header.height),
    };
    Ok((outcome, Some(update)))
}

/// Publishes a new tip (once it is committed): `BlockConnected` for each
/// block joining the best chain, `Reorg` when blocks left it.
fn publish(context: &WriterContext, update: &ChainUpdate) {
    let new_tip = update.new_tip;
    let mut height = Height::ZERO;
    // Published before the mempool catches up: the block is our tip now,
    // and subscribers (RPC streams, benchmarks) should not wait on the
    // mempool's bookkeeping to hear it.
    for block in &update.connected {
        height = block.header.height;
        context
            .metrics
            .inc("blocks_accepted_total", &[("branch", "best")]);
        tracing::info!(height = height.0, block = %block.hash(), txs = block.txs.len(), "block connected");
        // No receivers is normal (no RPC subscriber, P2P not started yet).
        let _ = context.events.send(NodeEvent::BlockConnected {
            block: Arc::clone(block),
            height,
        });
    }
    if update.is_reorg() {
        context.metrics.inc("reorgs_total", &[]);
        tracing::warn!(
            old_tip = %update.old_tip,
            %new_tip,
            fork_height = update.fork_height.0,
            disconnected = update.disconnected.len(),
            connected = update.connected.len(),
            "reorg"
        );
        let _ = context.events.send(NodeEvent::reorg(update));
    }
    context.metrics.set("height", &[], height_gauge(height));
}

/// A new tip's bookkeeping: the tx and address indexes (one sled key per
/// tx, most of a block's writes), then the mempool, whose confirmed txs
/// until then still read as pending, then the re-admitted txs' events.
fn settle(chain: &mut Chain, context: &WriterContext, update: Option<ChainUpdate>) {
    let Some(update) = update else {
        return;
    };
    if let Err(error) = chain.write_indexes() {
        tracing::error!(%error, "writing the tx index failed; it is retried with the next block");
    }
    let readmitted: Vec<Arc<Transaction>> = {
        // A std mutex: nothing awaits while it is held.
        let mut mempool = ledger::sync::lock(&context.mempool);
        mempool.apply_update(&update, &context.reader, now_ms());
        crate::handle::report_drops(&mut mempool, &context.events, &context.metrics);
        context.metrics.set(
            "mempool_size",
            &[],
            i64::try_from(mempool.len()).unwrap_or(i64::MAX),
        );
        // Transactions of disconnected blocks that are back in the mempool
        // are news to peers that only ever saw them in those blocks (the
        // other side of a healed partition): announce them like new ones,
        // or nobody would mine them again.
        update
            .disconnected
            .iter()
            .flat_map(|block| block.txs.iter())
            .filter(|tx| mempool.contains(&tx.txid()))
            .cloned()
            .map(Arc::new)
            .collect()
    };
    context.generation.fetch_add(1, Ordering::Relaxed);
    for tx in readmitted {
        let _ = context.events.send(NodeEvent::TxReadmitted { tx });
    }
}

#[cfg(test)]
mod urgent_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::chain::MemoryArena;
    use ledger::mempool::MempoolConfig;
    use ledger::sigcache::SignatureCache;
    use ledger::testing::{dev_address, regtest, transfer};

    /// The prefill rule on a fixed clock: a tx the mempool took long
    /// enough ago travels as a short id, one it took within the window
    /// travels whole, and one it never held travels whole.
    #[test]
    fn txs_younger_than_the_window_or_unknown_are_prefilled() {
        let spec = regtest();
        let genesis = spec.genesis_hash();
        let arena = MemoryArena::new();
        let chain = Chain::open_in_memory(spec.clone(), &arena, "prefill").expect("opens");
        let mut mempool = Mempool::new(spec, MempoolConfig::default(), SignatureCache::new(64));
        let to = dev_address(9);
        let old = transfer(&genesis, 0, to, 1, 1_000, 0);
        let young = transfer(&genesis, 1, to, 1, 1_000, 0);
        let edge = transfer(&genesis, 2, to, 1, 1_000, 0);
        let unknown = transfer(&genesis, 3, to, 1, 1_000, 0);
        let now = 1_000_000;
        let reader = chain.reader();
        mempool
            .add(old.clone(), &reader, now - 2_000)
            .expect("admitted");
        // Admitted in time order (the pool's admission times never go
        // back).
        mempool
            .add(edge.clone(), &reader, now - PREFILL_WINDOW_MS)
            .expect("admitted");
        mempool
            .add(young.clone(), &reader, now - PREFILL_WINDOW_MS + 1)
            .expect("admitted");
        let txs = vec![old, young, edge, unknown];
        let txids: Vec<TxId> = txs.iter().map(Transaction::txid).collect();
        let block = Block {
            header: ledger::Header {
                version: 1,
                height: Height(1),
                prev_hash: genesis,
                merkle_root: ledger::block::merkle_root(&txids),
                timestamp: 1,
                bits: ledger::target::CompactTarget(0x2000_ffff),
                nonce: 0,
                miner: to,
                reward: ledger::Amount::ZERO,
            },
            txs,
        };
        let compact = compact_for_relay(&block, &txids, &Mutex::new(mempool), now);
        let prefilled: Vec<u32> = compact.prefilled.iter().map(|tx| tx.index).collect();
        assert_eq!(prefilled, vec![1, 3], "the young tx and the unknown one");
        assert_eq!(compact.tx_count(), 4);
    }
}
