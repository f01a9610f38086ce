//! DNS seeds on loopback: a node given only seed names (no `--peer`, no
//! discovery) dials every address they resolve to, and gossip then flows
//! through those links. The core's rules for seeds have their own unit
//! tests (`p2p::protocol::seeds`); this one proves the driver resolves the
//! names and feeds the addresses in.

use node::test_utils::p2p_net;

use p2p_net::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_only_dns_seeds_connects_to_every_address() {
    let dirs = temp_dirs(3);
    let first = TestNode::start(dirs[0].path(), NodeOptions::default()).await;
    let second = TestNode::start(dirs[1].path(), NodeOptions::default()).await;
    // One seed by name and one by address: both are resolved by the driver.
    let seeded = TestNode::start(
        dirs[2].path(),
        NodeOptions {
            dns_seeds: vec![
                format!("localhost:{}", first.socket_addr().port()),
                second.addr(),
            ],
            ..NodeOptions::default()
        },
    )
    .await;
    wait_for("the seeded node reaches both seeds", LONG, || {
        seeded.has_peer(&first) && seeded.has_peer(&second)
    })
    .await;
    // Traffic crosses the seeded links: a block from the first node reaches
    // the second only through the seeded node.
    let block = first.backend.mine(0);
    wait_for("block relayed through the seeded node", LONG, || {
        second.backend.tip_hash() == block
    })
    .await;
    assert!(!first.has_peer(&second), "no direct link between the seeds");
    seeded.stop().await;
    second.stop().await;
    first.stop().await;
}
