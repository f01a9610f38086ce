//! The `testnet` tool as a library: the reusable pieces behind the `testnet`
//! binary's `up`, `load` and `check` commands, kept here so they can be unit
//! tested without starting anything.
//!
//! Map of the crate:
//! - [`api`]: a small async HTTP client for the node routes the tool needs,
//!   parsing every answer with the shared `ledger::json` types.
//! - [`sse`]: an incremental parser for the server-sent events of
//!   `GET /v1/events`.
//! - [`stats`]: percentiles and latency summaries for the load report.
//! - [`topology`]: which ports each node of a local testnet uses and which
//!   peers it dials first (a ring, so blocks must be gossiped).
//! - [`chaos`]: the fault kinds of `testnet chaos`, the schedule a seed
//!   gives, and the report with its verdict (no I/O).
//! - [`docker`]: the containers of a Docker testnet and the faults put on
//!   them (`docker` CLI, `nsenter` with `iptables` and `tc`).
//! - [`local`]: the node processes of a `testnet up` behind loopback RPC
//!   URLs (found through `/proc`) and the faults put on them (signals).
//! - [`sim`]: `testnet sim`, a deterministic simulation of a large network
//!   running the real protocol core, chain and mempool on virtual time.
//! - [`process`]: child process supervision: spawning nodes in their own
//!   process group, stopping them with SIGTERM then SIGKILL, and the
//!   parent-death signal that keeps a killed launcher from leaving orphans.
//!
//! The commands themselves (`src/cmd/`) live in the binary, which alone uses
//! `anyhow` and decides exit codes. `testnet node` and `testnet wallet` are
//! not implemented here at all: they hand their arguments to
//! `node::cli::main_with_args` and `wallet_cli::cli::main_with_args`.

pub mod api;
pub mod chaos;
pub mod docker;
pub mod local;
pub mod process;
pub mod sim;
pub mod sse;
pub mod stats;
pub mod topology;
