//! The node's view of the P2P layer: `start`, `P2pConfig` and `P2pHandle`,
//! re-exported from `p2p` (the P2P engineer's module) so the rest of the
//! node names one place. (This file held a temporary listener-only shim
//! while `p2p::start` was being written.)

pub use crate::p2p::{start, P2pConfig, P2pError, P2pHandle};
