//! The chain writer: the one actor that owns `ledger::chain::Chain` and so
//! the only code that ever writes blocks or state. It runs on a dedicated
//! std thread (block validation is CPU and disk work, never async work), and
//! everyone else talks to it through the cheap `ChainWriter` handle: blocks
//! from peers, `POST /v1/dev/mine` and the background miner arrive as
//! commands with oneshot replies, one at a time, in arrival order.
//!
//! After each block that changes the best chain the actor, still on its
//! thread, brings the mempool up to date (`apply_update`, reorg-aware),
//! publishes `BlockConnected` per block and then `Reorg` when blocks were
//! disconnected, and records metrics. Readers never come here: they use a
//! `ChainReader`, which reads sled directly.

use crate::events::NodeEvent;
use crate::metrics::Metrics;
use ledger::chain::{Chain, ChainError, ChainReader, NextBlockContext, ProcessOutcome};
use ledger::mempool::Mempool;
use ledger::validation::BlockError;
use ledger::{Block, BlockHash, Height, Transaction};
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
}

/// Why the writer could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriterError {
    #[error("invalid block: {0}")]
    Invalid(#[from] BlockError),
    #[error("the chain writer has stopped")]
    Stopped,
}

enum Command {
    SubmitBlock {
        block: Block,
        reply: oneshot::Sender<Result<BlockOutcome, BlockError>>,
    },
    Template {
        reply: oneshot::Sender<NextBlockContext>,
    },
    /// Flush storage and end the thread.
    Shutdown {
        reply: oneshot::Sender<Result<(), ChainError>>,
    },
}

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
}

/// Cheap handle to the chain writer thread.
#[derive(Clone)]
pub struct ChainWriter {
    commands: mpsc::Sender<Command>,
}

impl ChainWriter {
    /// Moves `chain` onto a new thread named `chain-writer`.
    pub(crate) fn spawn(
        chain: Chain,
        context: WriterContext,
    ) -> std::io::Result<(ChainWriter, std::thread::JoinHandle<()>)> {
        let (commands, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chain-writer".into())
            .spawn(move || run(chain, context, receiver))?;
        Ok((ChainWriter { commands }, thread))
    }

    /// Validates and stores a block; waits for the verdict.
    pub async fn submit_block(&self, block: Block) -> Result<BlockOutcome, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::SubmitBlock { block, reply })
            .map_err(|_| WriterError::Stopped)?;
        Ok(answer.await.map_err(|_| WriterError::Stopped)??)
    }

    /// The same, from a std thread (the miner).
    pub fn submit_block_blocking(&self, block: Block) -> Result<BlockOutcome, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::SubmitBlock { block, reply })
            .map_err(|_| WriterError::Stopped)?;
        Ok(answer.blocking_recv().map_err(|_| WriterError::Stopped)??)
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

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A stable, low-cardinality metric label for a block error: its variant
/// name in snake_case (`BadProofOfWork { .. }` -> `bad_proof_of_work`).
pub(crate) fn block_error_reason(error: &BlockError) -> String {
    let debug = format!("{error:?}");
    let variant: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let mut snake = String::with_capacity(variant.len() + 4);
    for (index, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if index > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

fn run(mut chain: Chain, context: WriterContext, commands: mpsc::Receiver<Command>) {
    context
        .metrics
        .set("height", &[], height_gauge(context.reader.tip().height));
    while let Ok(command) = commands.recv() {
        match command {
            Command::SubmitBlock { block, reply } => {
                let outcome = process(&mut chain, &context, block);
                let _ = reply.send(outcome);
            }
            Command::Template { reply } => {
                let _ = reply.send(chain.next_block_context(now_ms()));
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(chain.flush());
                return;
            }
        }
    }
    // Every handle is gone: flush what sled still buffers and end.
    if let Err(error) = chain.flush() {
        tracing::error!(%error, "flushing storage failed");
    }
}

fn height_gauge(height: Height) -> i64 {
    i64::try_from(height).unwrap_or(i64::MAX)
}

fn process(
    chain: &mut Chain,
    context: &WriterContext,
    block: Block,
) -> Result<BlockOutcome, BlockError> {
    let hash = block.hash();
    let started = Instant::now();
    let result = chain.process_block(block, now_ms());
    context
        .metrics
        .observe("block_validation_seconds", started.elapsed().as_secs_f64());
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            let reason = block_error_reason(&error);
            tracing::info!(block = %hash, %error, "block rejected");
            context
                .metrics
                .inc("blocks_rejected_total", &[("reason", &reason)]);
            return Err(error);
        }
    };
    let update = match outcome {
        ProcessOutcome::Known => return Ok(BlockOutcome::Known),
        ProcessOutcome::Orphan => {
            context.metrics.inc("blocks_orphaned_total", &[]);
            return Ok(BlockOutcome::Orphan);
        }
        ProcessOutcome::SideChain => {
            context
                .metrics
                .inc("blocks_accepted_total", &[("branch", "side")]);
            return Ok(BlockOutcome::SideChain);
        }
        ProcessOutcome::Connected(update) => update,
    };
    let readmitted: Vec<Arc<Transaction>> = {
        // A std mutex: nothing awaits while it is held.
        let mut mempool = context
            .mempool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        mempool.apply_update(&update, &context.reader, now_ms());
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
    let new_tip = update.new_tip;
    let mut height = 0;
    let connected_hashes: Vec<BlockHash> = update.connected.iter().map(Block::hash).collect();
    let disconnected_hashes: Vec<BlockHash> = update.disconnected.iter().map(Block::hash).collect();
    for block in update.connected {
        height = block.header.height;
        context
            .metrics
            .inc("blocks_accepted_total", &[("branch", "best")]);
        tracing::info!(height, block = %block.hash(), txs = block.txs.len(), "block connected");
        // No receivers is normal (no RPC subscriber, P2P not started yet).
        let _ = context.events.send(NodeEvent::BlockConnected {
            block: Arc::new(block),
            height,
        });
    }
    if !disconnected_hashes.is_empty() {
        context.metrics.inc("reorgs_total", &[]);
        tracing::warn!(
            old_tip = %update.old_tip,
            %new_tip,
            fork_height = update.fork_height,
            disconnected = disconnected_hashes.len(),
            connected = connected_hashes.len(),
            "reorg"
        );
        let _ = context.events.send(NodeEvent::Reorg {
            old_tip: update.old_tip,
            new_tip,
            fork_height: update.fork_height,
            disconnected: disconnected_hashes,
            connected: connected_hashes,
        });
    }
    for tx in readmitted {
        let _ = context.events.send(NodeEvent::TxReadmitted { tx });
    }
    context.metrics.set("height", &[], height_gauge(height));
    Ok(BlockOutcome::Connected { new_tip, height })
}
