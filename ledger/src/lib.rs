//! The consensus library of gossip-ledger: every rule that decides what a
//! valid chain is lives here, and nothing here opens a socket or starts an
//! async runtime.
//!
//! Map of the crate, from the bottom up:
//! - [`encoding`]: the one canonical byte encoding (pinned bincode 2); all
//!   hashing, signing, storage and wire bytes come from it.
//! - [`amount`], [`hash`], [`height`], [`address`], [`keys`], [`target`]:
//!   domain newtypes.
//! - [`tx`], [`block`]: transactions, headers, blocks, merkle roots.
//! - [`chainspec`]: built-in `dev` and `regtest` chains and JSON chain files.
//! - [`difficulty`]: retargeting and timestamp rules.
//! - [`state`]: account state, applying a block and undoing it exactly.
//! - [`validation`]: stateless and stateful checks with one error per rule.
//! - [`mempool`], [`miner`]: fee-ordered pending transactions, block templates
//!   and cancellable proof-of-work.
//! - [`chain`] and [`storage`] (feature `storage`): the sled-backed block
//!   tree, fork choice and reorgs.
//! - [`sync`]: `lock`, how every crate of the workspace takes a std mutex.
//! - [`prefetch`]: the CPU's prefetch hint, for callers that know what they
//!   will read next (the simulator).
//! - [`testing`] (tests only, feature `test-utils`): the regtest spec, a
//!   clock and signed dev transfers that every crate's tests share.
//! - [`json`]: the JSON shapes of the node's HTTP API, shared by the node
//!   (server) and the wallet (client) so they cannot drift apart.

pub mod address;
pub mod amount;
pub mod block;
#[cfg(feature = "storage")]
pub mod chain;
pub mod chainspec;
pub mod difficulty;
pub mod encoding;
pub mod hash;
pub mod height;
pub mod json;
pub mod keys;
pub mod mempool;
pub mod miner;
pub mod prefetch;
pub mod sigcache;
pub mod state;
#[cfg(feature = "storage")]
pub mod storage;
pub mod sync;
pub mod target;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
pub mod tx;
pub mod validation;

pub use address::Address;
pub use amount::Amount;
pub use block::{Block, Header};
pub use chainspec::ChainSpec;
pub use hash::{BlockHash, Hash256, TxId};
pub use height::Height;
pub use keys::{PublicKey, SecretKey, Signature};
pub use target::{Target, Work, U256};
pub use tx::Transaction;
