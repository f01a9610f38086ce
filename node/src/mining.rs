//! The background miner (`--mine`): a std thread that builds a block
//! template on the current tip from the mempool's best transactions, solves
//! it with `ledger::miner::solve` and hands the block to the chain writer
//! like any other block. A second small thread watches for a stale
//! template (the tip moved, or new transactions arrived and the template is
//! older than `REBUILD_AFTER`) and raises the solver's cancel flag, so the
//! miner rebuilds at most about every 300 ms under a steady stream of txs.
//!
//! On chains with a fixed target (regtest) proof-of-work takes no time, so
//! the miner paces itself to one block per block time instead.

use crate::chain_writer::{BlockOutcome, ChainWriter};
use crate::handle::NodeHandle;
use ledger::{Address, BlockHash};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Rebuild a template for new transactions at most this often.
const REBUILD_AFTER: Duration = Duration::from_millis(300);
/// How often the watcher looks for a stale template.
const WATCH_INTERVAL: Duration = Duration::from_millis(50);
/// A solver cancel flag raised when it is dropped (so an abandoned HTTP
/// request stops its solver) or when the node shuts down.
pub(crate) struct CancelOnDrop {
    flag: Arc<AtomicBool>,
    _watch: tokio::task::JoinHandle<()>,
}

impl CancelOnDrop {
    pub(crate) fn new(shutdown: CancellationToken) -> CancelOnDrop {
        let flag = Arc::new(AtomicBool::new(false));
        let raise = flag.clone();
        let watch = tokio::spawn(async move {
            shutdown.cancelled().await;
            raise.store(true, Ordering::Relaxed);
        });
        CancelOnDrop {
            flag,
            _watch: watch,
        }
    }

    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Relaxed);
        self._watch.abort();
    }
}

/// A stop request the miner threads can wait on with a timeout.
#[derive(Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl StopSignal {
    fn stop(&self) {
        *ledger::sync::lock(&self.stopped) = true;
        self.changed.notify_all();
    }

    fn is_stopped(&self) -> bool {
        *ledger::sync::lock(&self.stopped)
    }

    /// Waits up to `timeout`; true when stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = ledger::sync::lock(&self.stopped);
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |stopped| !*stopped)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard
    }
}

/// The template the solver works on, for the watcher to judge.
struct Template {
    prev_hash: BlockHash,
    generation: u64,
    built_at: Instant,
}

/// The running background miner; `stop` ends it.
pub struct BackgroundMiner {
    stop: Arc<StopSignal>,
    cancel: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl BackgroundMiner {
    pub(crate) fn start(node: NodeHandle, miner: Address) -> std::io::Result<BackgroundMiner> {
        let stop = Arc::new(StopSignal::default());
        let cancel = Arc::new(AtomicBool::new(false));
        let template = Arc::new(Mutex::new(None::<Template>));
        let solver = {
            let (node, stop, cancel, template) =
                (node.clone(), stop.clone(), cancel.clone(), template.clone());
            std::thread::Builder::new()
                .name("miner".into())
                .spawn(move || {
                    // Below the chain writer, with the async runtime: a
                    // solver burning CPU must not slow the block path.
                    crate::priority::lower_current_thread(crate::priority::ASYNC_NICE, "miner");
                    mine_loop(&node, miner, &stop, &cancel, &template)
                })?
        };
        let watcher = {
            let (stop, cancel) = (stop.clone(), cancel.clone());
            let generation = node.shared.generation.clone();
            let reader = node.reader().clone();
            std::thread::Builder::new()
                .name("miner-watch".into())
                .spawn(move || {
                    while !stop.wait(WATCH_INTERVAL) {
                        let guard = ledger::sync::lock(&template);
                        if let Some(current) = guard.as_ref() {
                            let tip_moved = reader.tip().hash != current.prev_hash;
                            let new_txs = generation.load(Ordering::Relaxed) != current.generation
                                && current.built_at.elapsed() >= REBUILD_AFTER;
                            if tip_moved || new_txs {
                                cancel.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    cancel.store(true, Ordering::Relaxed);
                })?
        };
        Ok(BackgroundMiner {
            stop,
            cancel,
            threads: vec![solver, watcher],
        })
    }

    /// Stops both threads and waits for them (the solver checks its cancel
    /// flag every ~10 ms).
    pub fn stop(self) {
        self.stop.stop();
        self.cancel.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn mine_loop(
    node: &NodeHandle,
    miner: Address,
    stop: &StopSignal,
    cancel: &AtomicBool,
    template: &Mutex<Option<Template>>,
) {
    let spec = node.spec().clone();
    let writer: &ChainWriter = node.writer();
    let paced = !spec.retarget;
    tracing::info!(miner = %spec.format_address(&miner), paced, "miner started");
    while !stop.is_stopped() {
        if paced {
            // Fixed-target chains: one block per block time after the tip.
            let tip_time = node.reader().tip().timestamp;
            let due = tip_time.saturating_add(spec.block_time_ms);
            let now = crate::chain_writer::now_ms();
            if due > now && stop.wait(Duration::from_millis(due - now)) {
                break;
            }
        }
        let context = match writer.next_block_context_blocking() {
            Ok(context) => context,
            Err(_) => break,
        };
        let generation = node.shared.generation.load(Ordering::Relaxed);
        let txs = node
            .mempool()
            .select_for_block(node.reader(), ledger::miner::max_tx_bytes(&spec));
        let mut block = ledger::miner::build_block(&spec, &context, miner, txs);
        cancel.store(false, Ordering::Relaxed);
        *ledger::sync::lock(template) = Some(Template {
            prev_hash: context.prev_hash,
            generation,
            built_at: Instant::now(),
        });
        let found = ledger::miner::solve(&mut block.header, cancel, node.shared.mining_threads);
        *ledger::sync::lock(template) = None;
        if !found {
            continue;
        }
        let hash = block.hash();
        let txs = block.txs.len();
        match writer.submit_mined_block_blocking(block) {
            Ok(BlockOutcome::Connected { height, .. }) => {
                node.metrics().inc("blocks_mined_total", &[]);
                tracing::info!(block = %hash, height = height.0, txs, "mined a block");
            }
            Ok(other) => {
                tracing::debug!(block = %hash, ?other, "mined block did not extend the tip")
            }
            Err(crate::chain_writer::WriterError::Stopped) => break,
            Err(error) => tracing::warn!(block = %hash, %error, "mined block was refused"),
        }
    }
    tracing::info!("miner stopped");
}
