//! The gossip-ledger daemon as a library: the binary `ledger-node` and the
//! `testnet` launcher run the same code. (Bird's-eye view: see
//! ARCHITECTURE.md.)

pub mod events;
pub mod metrics;
pub mod p2p;
