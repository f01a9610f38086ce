//! The signature verifiers: a few background threads that check the
//! signatures of synced blocks ahead of the chain writer, filling the
//! shared signature cache so the writer finds them done. The writer is the
//! one serial stage of a sync, and when the verifiers ran at its priority
//! the scheduler shared the cores fairly among them and the writer waited
//! its turn: on Linux the verifiers therefore run at a lower priority
//! (`VERIFIER_NICE`), so they use whatever CPU the writer, the network and
//! sled leave over. Jobs are taken in submission order; a bad signature is
//! not reported here (the writer finds and reports it precisely).

use ledger::sigcache::SignatureCache;
use ledger::{Block, BlockHash, Transaction, TxId};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub use crate::priority::VERIFIER_NICE;

struct Job {
    // Field order matters: the block's share is dropped before `done`, so
    // when the requester hears back it holds the only reference.
    block: Arc<Block>,
    done: oneshot::Sender<()>,
}

/// A handle on the verifier threads; they stop once every handle is gone.
#[derive(Clone)]
pub struct Verifier {
    jobs: mpsc::Sender<Job>,
}

impl Verifier {
    /// Starts `threads` verifiers (at least one) checking signatures for
    /// the chain whose genesis is `genesis` into `cache`.
    pub fn start(
        threads: usize,
        genesis: BlockHash,
        cache: SignatureCache,
    ) -> std::io::Result<Verifier> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let cache = cache.clone();
            std::thread::Builder::new()
                .name(format!("sig-verify-{index}"))
                .spawn(move || run(&queue, &genesis, &cache))?;
        }
        Ok(Verifier { jobs })
    }

    /// Checks `block`'s signatures into the cache, then hands the block
    /// back (also when the verifiers are gone, unchecked then).
    pub async fn precheck(&self, block: Block) -> Block {
        let block = Arc::new(block);
        let (done, checked) = oneshot::channel();
        let job = Job {
            block: Arc::clone(&block),
            done,
        };
        if self.jobs.send(job).is_ok() {
            // An error means the job was dropped unrun: same outcome.
            let _ = checked.await;
        }
        // The job is gone by now and took its share with it (`run` drops the
        // share before answering), so the block is ours alone; the copy is
        // only a fallback.
        Arc::try_unwrap(block).unwrap_or_else(|shared| (*shared).clone())
    }
}

fn run(queue: &Mutex<mpsc::Receiver<Job>>, genesis: &BlockHash, cache: &SignatureCache) {
    crate::priority::lower_current_thread(VERIFIER_NICE, "signature verifier");
    loop {
        // The lock is held while waiting for a job, never while checking.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(Job { block, done }) = job else {
            return;
        };
        check(&block.txs, genesis, cache);
        drop(block);
        // The requester may have given up (shutdown): nothing to do then.
        let _ = done.send(());
    }
}

fn check(txs: &[Transaction], genesis: &BlockHash, cache: &SignatureCache) {
    let txids: Vec<TxId> = txs.iter().map(Transaction::txid).collect();
    let _ = ledger::validation::check_signatures(txs, &txids, genesis, cache);
}

/// Lowers the calling thread's priority. On Linux the nice value belongs to
/// the thread, so this leaves the rest of the node alone; elsewhere it
/// would renice the whole process, so it is not done.
#[cfg(test)]
mod tests {
    use super::*;
    use ledger::chainspec::{dev_accounts, dev_secret_key};
    use ledger::{Amount, ChainSpec};

    fn block_of(count: usize, first_nonce: u64, genesis: &BlockHash) -> Block {
        let mut block = ChainSpec::builtin("regtest").unwrap().genesis_block();
        block.txs = (0..count)
            .map(|index| {
                Transaction::new_signed(
                    &dev_secret_key(index % 10),
                    genesis,
                    dev_accounts()[(index + 1) % 10].address,
                    Amount::from_base_units(1 + index as u64),
                    Amount::from_base_units(1_000),
                    first_nonce + index as u64,
                    String::new(),
                )
            })
            .collect();
        block
    }

    #[tokio::test]
    async fn checks_signatures_into_the_cache_and_hands_the_block_back() {
        let genesis = ChainSpec::builtin("regtest").unwrap().genesis_hash();
        let cache = SignatureCache::new(1_000);
        let verifier = Verifier::start(2, genesis, cache.clone()).expect("threads start");
        let good = block_of(30, 0, &genesis);
        let mut bad = block_of(3, 100, &genesis);
        bad.txs[1].amount = Amount::from_base_units(999_999);

        let (good_back, bad_back) = tokio::join!(
            verifier.precheck(good.clone()),
            verifier.precheck(bad.clone())
        );
        assert_eq!(good_back, good);
        assert_eq!(bad_back, bad);
        assert!(good.txs.iter().all(|tx| cache.contains(&tx.txid())));
        // A bad signature is left for the chain writer to report: nothing of
        // that block is cached, not even its good txs.
        assert!(!bad.txs.iter().any(|tx| cache.contains(&tx.txid())));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn verifiers_run_below_the_callers_priority() {
        use crate::priority::nice_in_stat as nice_of;
        let genesis = ChainSpec::builtin("regtest").unwrap().genesis_hash();
        let verifier = Verifier::start(2, genesis, SignatureCache::new(10)).unwrap();
        // After one job every thread has at least started.
        verifier.precheck(block_of(1, 0, &genesis)).await;
        let own = nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut verifiers = Vec::new();
            for task in std::fs::read_dir("/proc/self/task").unwrap() {
                let path = task.unwrap().path();
                let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
                if name.starts_with("sig-verify-") {
                    if let Ok(stat) = std::fs::read_to_string(path.join("stat")) {
                        verifiers.push(nice_of(&stat));
                    }
                }
            }
            // Other tests in this process may run verifiers too: every one
            // must be lowered, and ours (at least two) must be there.
            let lowered = verifiers
                .iter()
                .all(|&nice| nice == (own + i64::from(VERIFIER_NICE)).min(19));
            if verifiers.len() >= 2 && lowered {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "verifier threads at nice {verifiers:?}, caller at {own}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
