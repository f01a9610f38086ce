//! Thread priorities. On shared cores the scheduler gives each runnable
//! thread a share by its nice value, and a thread may lower its own
//! priority without any privilege but never raise it again. So the node
//! keeps its block path at the priority it was started with and lowers
//! everything else: the chain writer (which validates blocks and also
//! rebuilds large compact blocks) runs at the process's own priority; the
//! async runtime (HTTP, the P2P links and driver, tx admission) and the
//! miner run `ASYNC_NICE` lower; a sync's signature verifiers run
//! `VERIFIER_NICE` lower. Under a flood of txs on a machine several nodes
//! share, a new block is then rebuilt and validated without waiting behind
//! the tx work (BENCHMARKS.md, "Session 15"). Elsewhere than on Linux
//! nothing changes.

/// How much lower than the chain writer the async runtime's threads and
/// the miner run: CFS then gives a runnable writer about three times the
/// share of each of them, and the tx work still gets every cycle the
/// block path leaves.
pub const ASYNC_NICE: i32 = 5;

/// How much lower than the chain writer the signature verifiers run (CFS
/// then gives a runnable writer about nine times the share of each
/// verifier). Threads a verifier starts (`verify_many` on a large block)
/// inherit it.
pub const VERIFIER_NICE: i32 = 10;

/// Lowers the calling thread's priority by `by` (a nice increment; on
/// Linux a nice value belongs to one thread, and threads it starts
/// inherit it). A failure is logged, not fatal.
pub fn lower_current_thread(by: i32, what: &str) {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::nice(by) {
        tracing::debug!(%error, what, "could not lower a thread's priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (by, what);
}

/// The calling thread's nice value, from `/proc/thread-self/stat` (tests).
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn current_thread_nice() -> i64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("readable stat");
    nice_in_stat(&stat)
}

/// The nice field of a `/proc/.../stat` line (tests).
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn nice_in_stat(stat: &str) -> i64 {
    // The command name may hold spaces: fields count from after its ')'.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    rest.split(' ')
        .nth(16)
        .expect("nice field")
        .parse()
        .expect("a number")
}
