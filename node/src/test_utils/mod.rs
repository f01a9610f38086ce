//! What the node's tests share, built only for tests (`cfg(test)` or the
//! `test-utils` feature, which the node's own integration tests turn on):
//! the chain and clock helpers every test needs (the chain ones from
//! `ledger::testing`), `headers`, the made-up header chains and solved
//! empty blocks the sync and attack tests feed a node, and `p2p_net`, the
//! P2P harness of real nodes, a test `Backend` that publishes what the
//! real node publishes, and a hand-driven `FakePeer`. Waiting is always on
//! a condition with a deadline, never a bare sleep.

pub mod headers;
pub mod p2p_net;

pub use ledger::testing::{dev_address, regtest, transfer, transfer_with_memo};
use std::future::Future;
use std::time::{Duration, Instant};

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> u64 {
    crate::p2p::unix_ms()
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

/// [`wait_for`] for a test without an async runtime: polls every 2 ms
/// (fine enough for the latencies the process benchmarks time with it).
pub fn wait_for_blocking(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    wait_for_value(what, timeout, || condition().then_some(()));
}

/// Polls `check` every 2 ms until it gives a value, and returns it; panics
/// with `what` at the deadline. Without an async runtime.
pub fn wait_for_value<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
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

/// A regtest node started in a fresh directory, which is kept (and the
/// spec handed back) while the node runs.
pub async fn regtest_node() -> (tempfile::TempDir, ledger::ChainSpec, crate::RunningNode) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let spec = ledger::ChainSpec::builtin("regtest").expect("built-in");
    let node = crate::Node::start(crate::config::NodeConfig::for_tests(
        spec.clone(),
        dir.path(),
    ))
    .await
    .expect("the node starts");
    (dir, spec, node)
}
