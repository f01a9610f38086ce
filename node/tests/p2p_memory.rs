//! The 4 GiB length-prefix attack, alone in its own test binary because it
//! measures the process's resident memory, which other tests running in
//! the same process would blur. Like the tests in `p2p_bad_peers.rs`, a
//! node runs with an honest peer attached; the node must stay up, keep
//! relaying to the honest peer, and drop and ban the offender.

#[path = "common/p2p_net.rs"]
mod p2p_net;

use p2p_net::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(20);

/// A node and an honest peer connected to it.
struct Setup {
    node: TestNode,
    honest: TestNode,
    _dirs: Vec<tempfile::TempDir>,
}

async fn setup(options: NodeOptions) -> Setup {
    let dirs: Vec<tempfile::TempDir> = (0..2)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let node = TestNode::start(dirs[0].path(), options).await;
    let honest = TestNode::start(
        dirs[1].path(),
        NodeOptions {
            peers: vec![node.addr()],
            ..NodeOptions::default()
        },
    )
    .await;
    wait_for("honest peer connected", LONG, || {
        node.has_peer(&honest) && honest.has_peer(&node)
    })
    .await;
    Setup {
        node,
        honest,
        _dirs: dirs,
    }
}

impl Setup {
    /// The node still relays to its honest peer: a new tx and a new block
    /// both arrive there.
    async fn still_serves(&self, nonce: u64) {
        let genesis = self.node.backend.genesis();
        let txid = self
            .node
            .backend
            .add_tx(transfer(&genesis, 5, nonce, "still here"))
            .expect("admitted");
        wait_for("honest peer gets the tx", LONG, || {
            self.honest.backend.mempool_has(&txid)
        })
        .await;
        let block = self.node.backend.mine(10);
        wait_for("honest peer gets the block", LONG, || {
            self.honest.backend.tip_hash() == block
        })
        .await;
        assert!(
            self.node.has_peer(&self.honest),
            "honest peer still connected"
        );
    }

    async fn stop(self) {
        self.honest.stop().await;
        self.node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_gib_length_prefix_costs_no_memory() {
    let setup = setup(NodeOptions::default()).await;
    let before = resident_bytes();
    let mut bad = FakePeer::connect(setup.node.socket_addr()).await;
    // u32::MAX: the largest length the 4-byte prefix can claim (4 GiB - 1).
    bad.send_raw(&[0xff, 0xff, 0xff, 0xff]).await;
    bad.send_raw(&[0u8; 64 * 1024]).await;
    assert!(bad.closed_within(LONG).await, "offender disconnected");
    let after = resident_bytes();
    let growth = after.saturating_sub(before);
    println!(
        "FIGURE 4 GiB prefix: resident memory grew by {} KiB",
        growth / 1024
    );
    assert!(growth < 8 * 1024 * 1024, "memory grew by {growth} bytes");
    wait_for("ban recorded", LONG, || {
        setup.node.bans("oversized_frame") == 1
    })
    .await;
    assert!(setup.node.p2p.is_banned(bad.local_addr));
    setup.still_serves(0).await;
    setup.stop().await;
}
