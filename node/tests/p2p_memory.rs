//! The 4 GiB length-prefix attack, alone in its own test binary because it
//! measures the process's resident memory, which other tests running in
//! the same process would blur. Like the tests in `p2p_bad_peers.rs`, a
//! node runs with an honest peer attached; the node must stay up, keep
//! relaying to the honest peer, and drop and ban the offender.

#[path = "common/p2p_net.rs"]
mod p2p_net;

use p2p_net::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_gib_length_prefix_costs_no_memory() {
    let setup = setup_with_honest_peer(NodeOptions::default()).await;
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
