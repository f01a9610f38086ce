//! What the node's tests share, built only for tests (`cfg(test)` or the
//! `test-utils` feature, which the node's own integration tests turn on):
//! the chain and clock helpers every test needs, and `p2p_net`, the P2P
//! harness of real nodes, a test `Backend` that publishes what the real
//! node publishes, and a hand-driven `FakePeer`. Waiting is always on a
//! condition with a deadline, never a bare sleep.

pub mod p2p_net;

use ledger::ChainSpec;
use std::future::Future;
use std::time::{Duration, Instant};

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> u64 {
    crate::p2p::unix_ms()
}

/// The built-in `regtest` chain.
pub fn regtest() -> ChainSpec {
    ChainSpec::builtin("regtest").expect("built-in chain")
}

/// The value at `fraction` (0 to 1) of a sorted, non-empty slice.
pub fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Polls `condition` every 5 ms until it holds; panics with `what` at the
/// deadline.
pub async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Same, for conditions that must be evaluated asynchronously.
pub async fn wait_for_async<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
