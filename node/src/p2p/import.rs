//! The importers: validation of what peers send, off the driver's task, so
//! the protocol core never waits on the chain. Blocks go through one queue
//! in arrival order (a sync delivers parents before children), with the
//! signatures of synced blocks checked up to 32 blocks ahead; txs go to a
//! few workers, each sender's always to the same one, so its nonces arrive
//! in order, and each worker submits what has queued up as one batch.
//! Every verdict comes back to the driver as an `Input`.

use super::protocol::{ConnId, Input};
use super::{Backend, BlockVerdict, TxVerdict};
use futures::StreamExt;
use ledger::{Block, Transaction};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Parallel tx importers.
const TX_IMPORTERS: usize = 4;
/// Txs one importer submits at once: those queued while the last batch
/// was checked, so a busy node makes one trip to a blocking thread and
/// takes the mempool's lock once for many, and an idle one still admits
/// each tx as it comes.
const TX_BATCH: usize = 64;
/// Synced blocks whose signatures are checked ahead of the chain.
const PRECHECK_AHEAD: usize = 32;

/// A received block on its way to validation.
pub(crate) struct ImportItem {
    pub from: Option<ConnId>,
    pub block: Block,
    pub size: usize,
    /// A block the sync asked for: `Backend::precheck_block` runs first,
    /// then `Backend::submit_synced_block`.
    pub from_sync: bool,
}

/// The driver's end of the importer tasks.
pub(crate) struct Importers {
    blocks: mpsc::UnboundedSender<ImportItem>,
    txs: Vec<mpsc::UnboundedSender<(ConnId, Transaction)>>,
}

impl Importers {
    /// Starts the importer tasks; their verdicts go to `verdicts`.
    pub fn spawn<B: Backend>(
        backend: &B,
        verdicts: &mpsc::UnboundedSender<Input>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Importers {
        let (blocks, block_queue) = mpsc::unbounded_channel();
        let (checked_sender, checked_queue) = mpsc::channel(PRECHECK_AHEAD);
        tracker.spawn(precheck_blocks(
            backend.clone(),
            block_queue,
            checked_sender,
            cancel.clone(),
        ));
        tracker.spawn(import_blocks(
            backend.clone(),
            checked_queue,
            verdicts.clone(),
            cancel.clone(),
        ));
        let mut txs = Vec::with_capacity(TX_IMPORTERS);
        for _ in 0..TX_IMPORTERS {
            let (tx_sender, tx_queue) = mpsc::unbounded_channel();
            txs.push(tx_sender);
            tracker.spawn(import_txs(
                backend.clone(),
                tx_queue,
                verdicts.clone(),
                cancel.clone(),
            ));
        }
        Importers { blocks, txs }
    }

    /// Queues a block; the verdict to report at once when the importers
    /// are gone (shutting down).
    pub fn block(&self, item: ImportItem) -> Option<Input> {
        let (from, hash, size) = (item.from, item.block.hash(), item.size);
        match self.blocks.send(item) {
            Ok(()) => None,
            Err(_) => Some(Input::BlockVerdict {
                from,
                hash,
                size,
                verdict: BlockVerdict::Rejected {
                    reason: "shutting down".into(),
                    misbehaving: false,
                },
            }),
        }
    }

    /// Queues a tx to its sender's worker; like `block`.
    pub fn tx(&self, from: ConnId, tx: Transaction) -> Option<Input> {
        let worker = tx.from.as_bytes()[0] as usize % self.txs.len();
        let (txid, sender, nonce) = (tx.txid(), tx.sender(), tx.nonce);
        match self.txs[worker].send((from, tx)) {
            Ok(()) => None,
            Err(_) => Some(Input::TxVerdict {
                from,
                txid,
                sender,
                nonce,
                verdict: TxVerdict::Rejected {
                    reason: "shutting down".into(),
                    misbehaving: false,
                },
            }),
        }
    }
}

/// Runs `Backend::precheck_block` on up to `PRECHECK_AHEAD` queued blocks
/// at once (only synced blocks: a single gossiped block has its txs'
/// signatures cached from the mempool already), passing them on in order.
async fn precheck_blocks<B: Backend>(
    backend: B,
    queue: mpsc::UnboundedReceiver<ImportItem>,
    checked: mpsc::Sender<ImportItem>,
    cancel: CancellationToken,
) {
    let incoming = futures::stream::unfold(queue, |mut queue| async move {
        queue.recv().await.map(|item| (item, queue))
    });
    let mut prechecked = Box::pin(
        incoming
            .map(|item: ImportItem| {
                let backend = backend.clone();
                async move {
                    if item.from_sync {
                        let block = backend.precheck_block(item.block).await;
                        ImportItem { block, ..item }
                    } else {
                        item
                    }
                }
            })
            .buffered(PRECHECK_AHEAD),
    );
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => break,
            next = prechecked.next() => match next {
                Some(item) => item,
                None => break,
            },
        };
        let sent = tokio::select! {
            _ = cancel.cancelled() => break,
            sent = checked.send(item) => sent,
        };
        if sent.is_err() {
            break;
        }
    }
}

/// Validates blocks one at a time, in arrival order (sync delivers parents
/// before children), off the driver's task.
async fn import_blocks<B: Backend>(
    backend: B,
    mut queue: mpsc::Receiver<ImportItem>,
    verdicts: mpsc::UnboundedSender<Input>,
    cancel: CancellationToken,
) {
    loop {
        let ImportItem {
            from,
            block,
            size,
            from_sync,
        } = tokio::select! {
            _ = cancel.cancelled() => break,
            next = queue.recv() => match next {
                Some(next) => next,
                None => break,
            },
        };
        let hash = block.hash();
        let verdict = tokio::select! {
            _ = cancel.cancelled() => break,
            verdict = async {
                match from {
                    _ if from_sync => backend.submit_synced_block(block).await,
                    Some(from) => backend.submit_block_from(from, block).await,
                    None => backend.submit_block(block).await,
                }
            } => verdict,
        };
        let input = Input::BlockVerdict {
            from,
            hash,
            size,
            verdict,
        };
        if verdicts.send(input).is_err() {
            break;
        }
    }
}

/// Validates txs in arrival order for the senders routed to this importer,
/// taking whatever has queued up (at most `TX_BATCH`) in one submission.
async fn import_txs<B: Backend>(
    backend: B,
    mut queue: mpsc::UnboundedReceiver<(ConnId, Transaction)>,
    verdicts: mpsc::UnboundedSender<Input>,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(TX_BATCH);
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => break,
            received = queue.recv_many(&mut batch, TX_BATCH) => received,
        };
        if received == 0 {
            break;
        }
        let mut origins = Vec::with_capacity(batch.len());
        let mut txs = Vec::with_capacity(batch.len());
        for (from, tx) in batch.drain(..) {
            origins.push((from, tx.txid(), tx.sender(), tx.nonce));
            txs.push(tx);
        }
        let results = tokio::select! {
            _ = cancel.cancelled() => break,
            results = backend.submit_txs(txs) => results,
        };
        for ((from, txid, sender, nonce), verdict) in origins.into_iter().zip(results) {
            let input = Input::TxVerdict {
                from,
                txid,
                sender,
                nonce,
                verdict,
            };
            if verdicts.send(input).is_err() {
                return;
            }
        }
    }
}
