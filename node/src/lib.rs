//! The gossip-ledger daemon as a library: the binary `ledger-node` and the
//! `testnet` launcher run the same code. (Bird's-eye view: see
//! ARCHITECTURE.md.)
//!
//! Tasks and threads of a running node:
//! - the **chain writer** (`chain_writer`), a std thread that owns the
//!   chain and applies every block, then updates the mempool and publishes
//!   `NodeEvent`s;
//! - the **P2P** tasks (`p2p`), reaching the node through `p2p::Backend`;
//! - the **signature verifiers** (`verifier`), low-priority threads that
//!   check synced blocks' signatures ahead of the chain writer;
//! - the **HTTP API** (`rpc`), an axum server on tokio;
//! - with `--mine`, the **miner** (`mining`): a solver thread and a watcher.
//!
//! The chain writer runs at the process's priority and everything else
//! lower (`priority`), so a new block never waits behind tx work.
//!
//! Everything shares one `NodeHandle` (`handle`). Entry points:
//! `cli::main_with_args` (the binary), `Node::start` (in-process).
//! Invariants: only the chain writer writes the chain; reads never wait on
//! it; no lock is held across `.await`.

/// Every program linking the node (`ledger-node`, `testnet`, the tests)
/// allocates with mimalloc: sled allocates and frees a node copy per write,
/// and under glibc's allocator that was half the cost of committing a
/// block (BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod chain_writer;
pub mod cli;
pub mod config;
mod daemon;
pub mod events;
pub mod handle;
pub mod local_chain;
pub mod logging;
pub mod metrics;
pub mod mining;
pub mod node_key;
pub mod p2p;
pub mod priority;
pub mod relay_cache;
pub mod rpc;
pub mod shutdown;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod verifier;

pub use config::NodeConfig;
pub use daemon::{Node, RunningNode};
pub use handle::NodeHandle;
