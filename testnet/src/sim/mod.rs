//! `testnet sim`: a deterministic discrete-event simulation of a whole
//! network on virtual time, in one thread. Every node runs the real
//! protocol core (`node::p2p::protocol::NetworkState`), the real chain
//! (validation, fork choice, reorgs) and the real mempool; only sockets
//! (`network`), clocks and randomness (`scheduler`, seeded RNGs), storage
//! (every node's chain a member of one in-memory arena,
//! `ledger::chain::MemoryArena`, which holds data nodes agree on once),
//! proof-of-work (`mining`, an
//! exponential oracle on a chain whose target every hash meets) and
//! repeated signature checks (one `SignatureCache` for all nodes) are
//! replaced. The same options and seed give the same report, byte for
//! byte, apart from the `wall_*` keys.
//!
//! - `options`: the validated settings and their parsers.
//! - `scheduler`: the event queue ordered by (time, sequence); `timers`:
//!   each node's next core timer.
//! - `network`: addresses, topology, connections, latency, bandwidth, loss,
//!   partitions; `regions`: the per-region latency matrix.
//! - `node`: one node, wired as the daemon wires it, but synchronously;
//!   `payloads`: the compact blocks every node sends, encoded once.
//! - `mining`: the simulated chain spec and the wallets.
//! - `world`: the event loop that ties them together.
//! - `report`: the statistics and the report; `plot`: the SVG; `trace`:
//!   the event log of `--trace`.

pub mod mining;
pub mod network;
pub mod node;
pub mod options;
pub mod payloads;
pub mod plot;
pub mod regions;
pub mod report;
pub mod scheduler;
pub mod timers;
pub mod trace;
pub mod world;

pub use options::SimOptions;
pub use report::Report;
pub use world::{Outcome, World};

/// Runs a simulation to the end. `progress` hears the simulated time
/// once per simulated second.
pub fn run(options: SimOptions, progress: Option<world::Progress<'_>>) -> Result<Outcome, String> {
    Ok(World::new(options)?.run(progress))
}
