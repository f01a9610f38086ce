//! Issue 14, attack 8: an orphan refused for a clock reason when its
//! parent arrives (its timestamp too far ahead of our clock) is kept, with
//! the orphans waiting on it, for a later retry, not dropped for good.

use crate::common::*;
use ledger::chain::ProcessOutcome;

#[test]
fn orphan_children_refused_for_a_clock_reason_are_kept_for_later() {
    let mut fixture = Fixture::new();
    let genesis = fixture.spec.genesis_block();
    let parent = block_on(
        &fixture.spec,
        &genesis.header,
        genesis.header.timestamp + 2_000,
        dev_address(1),
        Vec::new(),
    );
    // Ten minutes after its parent: early for a clock at the parent's time.
    let early = block_on(
        &fixture.spec,
        &parent.header,
        parent.header.timestamp + 600_000,
        dev_address(1),
        Vec::new(),
    );
    let grandchild = block_on(
        &fixture.spec,
        &early.header,
        early.header.timestamp + 2_000,
        dev_address(1),
        Vec::new(),
    );
    let now = parent.header.timestamp;
    let later = grandchild.header.timestamp;
    assert_eq!(
        fixture
            .chain
            .process_block(grandchild.clone(), now)
            .unwrap(),
        ProcessOutcome::Orphan
    );
    assert_eq!(
        fixture.chain.process_block(early.clone(), now).unwrap(),
        ProcessOutcome::Orphan
    );
    // The parent connects; its child is too far ahead of the clock.
    assert!(matches!(
        fixture.chain.process_block(parent.clone(), now).unwrap(),
        ProcessOutcome::Connected(_)
    ));
    assert_eq!(fixture.chain.reader().tip().hash, parent.hash());
    assert_eq!(fixture.chain.orphan_count(), 2, "both kept");
    // Delivered again once the clock has caught up: both connect.
    assert!(matches!(
        fixture.chain.process_block(early.clone(), later).unwrap(),
        ProcessOutcome::Connected(_)
    ));
    assert_eq!(fixture.chain.reader().tip().hash, grandchild.hash());
    assert_eq!(fixture.chain.orphan_count(), 0);
}
