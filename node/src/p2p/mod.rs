//! The peer-to-peer network: framing, handshake, gossip, discovery, sync
//! and defence against bad peers. It reaches the rest of the node only
//! through the `Backend` trait.

pub mod backend;

pub use backend::{Backend, BlockVerdict, TipSummary, TxVerdict};
