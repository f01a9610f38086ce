//! The node's view of the P2P layer: `start`, `P2pConfig` and `P2pHandle`.
//!
//! TEMPORARY SHIM: until `node::p2p::start` (owned by the P2P engineer)
//! compiles, this file provides the same API with a listener that accepts
//! and drops connections and knows no peers, so the rest of the node and
//! its tests can run. Once the real one lands, this whole file becomes
//! `pub use crate::p2p::{start, P2pConfig, P2pHandle};`.

use crate::metrics::Metrics;
use crate::p2p::Backend;
use ledger::chain::AuxTree;
use ledger::json::PeerJson;
use ledger::{BlockHash, SecretKey};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Same fields as the real `p2p::P2pConfig`.
pub struct P2pConfig {
    pub listen_addr: SocketAddr,
    pub peers: Vec<String>,
    pub no_discovery: bool,
    pub max_inbound: usize,
    pub max_outbound: usize,
    pub ban_duration: Duration,
    pub network_magic: [u8; 4],
    pub genesis_hash: BlockHash,
    pub node_key: SecretKey,
    pub address_book: Option<AuxTree>,
}

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

#[derive(Clone)]
pub struct P2pHandle {
    local_addr: SocketAddr,
    node_id: String,
    tracker: TaskTracker,
    _config: Arc<P2pConfig>,
}

/// Binds the listener and accepts (then drops) connections until `cancel`.
pub async fn start<B: Backend>(
    config: P2pConfig,
    _backend: B,
    _metrics: Metrics,
    cancel: CancellationToken,
) -> Result<P2pHandle, P2pError> {
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| P2pError::Bind {
            addr: config.listen_addr,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| P2pError::Bind {
        addr: config.listen_addr,
        source,
    })?;
    let tracker = TaskTracker::new();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => drop(accepted),
            }
        }
    });
    tracker.close();
    Ok(P2pHandle {
        local_addr,
        node_id: hex::encode(config.node_key.public_key().0),
        tracker,
        _config: Arc::new(config),
    })
}

impl P2pHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn node_id(&self) -> String {
        self.node_id.clone()
    }

    pub fn peers(&self) -> Vec<PeerJson> {
        Vec::new()
    }

    pub fn n_peers(&self) -> usize {
        0
    }

    pub fn dial(&self, addr: String) {
        tracing::warn!(%addr, "P2P shim: dialing is not implemented yet");
    }

    pub fn is_syncing(&self) -> bool {
        false
    }

    pub fn network_view(&self) -> serde_json::Value {
        serde_json::json!({ "node_id": self.node_id, "peers": [], "known": [] })
    }

    pub async fn closed(&self) {
        self.tracker.wait().await;
    }
}
