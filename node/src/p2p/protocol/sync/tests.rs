//! The sync's books on a fake clock: the moving window over several
//! peers, per-block timeouts and stalls, and checked work counted from the
//! fork point.

use super::*;
use crate::test_utils::headers::{easiest_bits, easy_headers};
use ledger::target::CompactTarget;

/// The work of one easy header.
fn unit() -> Work {
    Target::from_compact(easiest_bits()).expect("valid").work()
}

fn times(n: u64) -> Work {
    (0..n).fold(Work::ZERO, |work, _| work.saturating_add(&unit()))
}

/// `n` easy headers from nothing.
fn chain(n: usize) -> Vec<Header> {
    easy_headers(BlockHash::ZERO, 0, n, 0)
}

/// Each block of `ours` with the work of the chain up to it (one unit a
/// block), as our chain would count it.
fn work_by_hash(ours: &[Header]) -> BTreeMap<BlockHash, Work> {
    ours.iter()
        .enumerate()
        .map(|(k, header)| (header.hash(), times(k as u64 + 1)))
        .collect()
}

fn ms(n: u64) -> Mono {
    Mono(Duration::from_millis(n))
}

const A: ConnId = ConnId(1);
const B: ConnId = ConnId(2);

/// Each of `peers` was asked for headers and answered with `headers`,
/// from a node with nothing.
fn shown_by(headers: &[Header], peers: impl IntoIterator<Item = ConnId>) -> BlockSync {
    let mut sync = BlockSync::new();
    for peer in peers {
        sync.headers_requested(peer, ms(0), vec![]);
        sync.on_headers(peer, headers, ms(0), Work::ZERO, |_| None, |_| false)
            .expect("valid");
    }
    sync
}

/// Both peers showed the same `n` headers, from a node with nothing.
fn two_holders(n: usize) -> (BlockSync, Vec<Header>) {
    let headers = chain(n);
    let mut sync = BlockSync::new();
    for peer in [A, B] {
        assert!(sync.wants_headers(peer));
        sync.headers_requested(peer, ms(0), vec![BlockHash::ZERO]);
        assert!(sync.expects_headers_from(peer));
        sync.on_headers(peer, &headers, ms(0), Work::ZERO, |_| None, |_| false)
            .expect("valid");
        assert!(sync.headers_complete(peer));
        assert_eq!(
            sync.peer(peer).expect("known").checked_work,
            times(n as u64)
        );
    }
    (sync, headers)
}

#[test]
fn blocks_come_from_several_peers_at_once_lowest_heights_first() {
    let (mut sync, headers) = two_holders(100);
    let batch = sync.next_requests(ms(0), |_| true);
    assert_eq!(batch.len(), 2 * MAX_BLOCKS_IN_FLIGHT_PER_PEER);
    let from_a = batch.iter().filter(|(id, _)| *id == A).count();
    assert_eq!(
        from_a, MAX_BLOCKS_IN_FLIGHT_PER_PEER,
        "the share is per peer"
    );
    let asked: BTreeSet<BlockHash> = batch.iter().map(|(_, hash)| *hash).collect();
    let lowest: BTreeSet<BlockHash> = headers[..batch.len()].iter().map(Header::hash).collect();
    assert_eq!(
        asked, lowest,
        "the window starts at the lowest missing height"
    );
    // Each arrival frees a place in its peer's share.
    let (peer, hash) = batch[0];
    assert!(sync.block_received(peer, &hash, 100, ms(5)));
    assert!(
        !sync.block_received(peer, &hash, 100, ms(5)),
        "counted once"
    );
    let next = sync.next_requests(ms(10), |_| true);
    assert_eq!(next, vec![(peer, headers[batch.len()].hash())]);
    assert!(sync.block_judged(&hash, false));
    assert_eq!(sync.blocks_imported, 1);
}

#[test]
fn the_window_is_bounded_ahead_of_the_lowest_missing_block() {
    let headers = chain(BLOCK_WINDOW + 50);
    let mut sync = shown_by(&headers, (1..=100).map(ConnId));
    let batch = sync.next_requests(ms(0), |_| true);
    assert_eq!(batch.len(), BLOCK_WINDOW);
    let highest = headers[BLOCK_WINDOW - 1].hash();
    assert!(batch.iter().any(|(_, hash)| *hash == highest));
    assert!(sync.next_requests(ms(0), |_| true).is_empty());
}

#[test]
fn a_timed_out_block_goes_to_another_peer_and_a_staller_loses_its_share() {
    let (mut sync, _) = two_holders(200);
    let timeout = Duration::from_secs(5);
    let batch = sync.next_requests(ms(0), |_| true);
    // B delivers everything at once; A nothing.
    for (peer, hash) in &batch {
        if *peer == B {
            sync.block_received(B, hash, 10, ms(50));
        }
    }
    let second = sync.next_requests(ms(100), |_| true);
    assert!(second.iter().all(|(id, _)| *id == B), "A's share is full");
    let (stalled, back) = sync.expire(ms(4_000), timeout);
    assert!(stalled.is_empty() && back.is_empty(), "not yet");
    let (stalled, back) = sync.expire(ms(5_100), timeout);
    assert_eq!(stalled.get(&A), Some(&(MAX_BLOCKS_IN_FLIGHT_PER_PEER, 1)));
    assert!(!stalled.contains_key(&B), "B's were asked at 100 ms");
    assert_eq!(back.len(), MAX_BLOCKS_IN_FLIGHT_PER_PEER);
    // A's blocks are B's to deliver now; A only gets half a share, of
    // later blocks.
    for (_, hash) in &second {
        sync.block_received(B, hash, 10, ms(50));
    }
    let again = sync.next_requests(ms(5_200), |_| true);
    for hash in &back {
        assert!(again.contains(&(B, *hash)), "re-asked of the other peer");
    }
    assert_eq!(
        again.iter().filter(|(id, _)| *id == A).count(),
        MAX_BLOCKS_IN_FLIGHT_PER_PEER / 2
    );
    // Two more rounds of stalling and it is at the disconnect limit.
    let (stalled, _) = sync.expire(ms(10_300), timeout);
    assert_eq!(stalled.get(&A).map(|s| s.1), Some(2));
    sync.next_requests(ms(10_300), |_| true);
    let (stalled, _) = sync.expire(ms(15_400), timeout);
    assert_eq!(stalled.get(&A).map(|s| s.1), Some(MAX_BLOCK_STALLS));
}

#[test]
fn a_lone_holder_is_asked_again_and_a_departed_one_hands_its_blocks_back() {
    let mut sync = shown_by(&chain(5), [A]);
    let batch = sync.next_requests(ms(0), |_| true);
    assert_eq!(batch.len(), 5);
    sync.expire(ms(6_000), Duration::from_secs(5));
    // Nobody else has them: asked again of the same peer, within its
    // halved share.
    assert_eq!(sync.next_requests(ms(6_000), |_| true).len(), 5);
    assert_eq!(sync.peer(A).expect("known").stalls, 1);
    assert_eq!(sync.peer_gone(A).len(), 5);
    assert_eq!(sync.n_wanted(), 0, "nobody else named them");
    assert!(sync.finish().is_some());
}

#[test]
fn an_early_block_stays_in_the_window_until_it_is_ours() {
    let mut sync = shown_by(&chain(BLOCK_WINDOW + 10), (1..=20).map(ConnId));
    let batch = sync.next_requests(ms(0), |_| true);
    assert_eq!(batch.len(), BLOCK_WINDOW);
    // All but the first arrive, and wait for it as orphans: the window
    // does not move past them.
    for (peer, hash) in &batch[1..] {
        assert!(sync.block_received(*peer, hash, 10, ms(10)));
        assert!(sync.block_judged(hash, true), "an orphan of the sync");
    }
    assert!(sync.next_requests(ms(20), |_| true).is_empty());
    // The first arrives: it and the early ones are ours, the window moves.
    let (peer, first) = batch[0];
    sync.block_received(peer, &first, 10, ms(30));
    sync.block_judged(&first, false);
    for (_, hash) in &batch[1..] {
        sync.block_held(hash);
    }
    let rest = sync.next_requests(ms(40), |_| true);
    assert_eq!(rest.len(), 10);
    // An early block whose parent never makes it is fetched again.
    let (peer, hash) = rest[0];
    sync.block_received(peer, &hash, 10, ms(50));
    sync.block_judged(&hash, true);
    assert_eq!(sync.expire_received(ms(30_000), Duration::from_secs(30)), 0);
    assert_eq!(sync.expire_received(ms(30_051), Duration::from_secs(30)), 1);
}

#[test]
fn checked_work_counts_from_the_fork_point() {
    // We hold 10 blocks; the peer's branch leaves ours after block 4 and
    // has 3 blocks of its own: 7 blocks of work, less than our 10.
    let ours = chain(10);
    let held = work_by_hash(&ours);
    let work_of = |hash: &BlockHash| held.get(hash).copied();
    let our_work = times(10);
    let mut branch: Vec<Header> = ours[..4].to_vec();
    branch.extend(easy_headers(ours[3].hash(), 4, 3, 9));
    let mut sync = BlockSync::new();
    sync.headers_requested(A, ms(0), vec![]);
    sync.on_headers(A, &branch, ms(0), our_work, work_of, |hash| {
        work_of(hash).is_some()
    })
    .expect("valid");
    assert_eq!(sync.peer(A).expect("known").checked_work, times(7));
    assert_eq!(sync.n_wanted(), 0, "a branch with less work is not fetched");
    // Counted from our tip instead, it would have seemed worth 13.
    // Its continuation is counted on top of what it showed.
    let longer = easy_headers(branch[6].hash(), 7, 4, 9);
    sync.headers_requested(A, ms(1), vec![]);
    sync.on_headers(A, &longer, ms(1), our_work, work_of, |hash| {
        work_of(hash).is_some()
    })
    .expect("valid");
    assert_eq!(sync.peer(A).expect("known").checked_work, times(11));
    assert_eq!(
        sync.n_wanted(),
        7,
        "now it beats our tip: its whole branch, from the fork point"
    );
}

#[test]
fn a_branch_that_overtakes_ours_later_is_fetched_from_the_fork_point() {
    // A partition healed: we hold 12 blocks, the peer's branch leaves ours
    // after block 10 with 2 blocks of its own (12 blocks of work, no more
    // than ours), so they are not fetched. Then it mines one more and
    // shows it (a block whose parent we lack): its answer goes on from
    // the last header it sent, and its chain now beats ours. Every block
    // of its branch must be wanted, not only the new one, or the new one
    // waits for a parent nobody asks for.
    let ours = chain(12);
    let held = work_by_hash(&ours);
    let work_of = |hash: &BlockHash| held.get(hash).copied();
    let has_block = |hash: &BlockHash| held.contains_key(hash);
    let our_work = times(12);
    let branch = easy_headers(ours[9].hash(), 10, 2, 7);
    let mut sync = BlockSync::new();
    sync.headers_requested(A, ms(0), vec![ours[11].hash()]);
    sync.on_headers(A, &branch, ms(0), our_work, work_of, has_block)
        .expect("valid");
    assert_eq!(sync.peer(A).expect("known").checked_work, times(12));
    assert_eq!(sync.n_wanted(), 0, "no more work than ours: not fetched");
    assert!(sync.peer_done(A));
    let newest = easy_headers(branch[1].hash(), 12, 1, 7);
    sync.reopen(A);
    assert!(sync.wants_headers(A));
    let locator = sync.headers_requested(A, ms(1_000), vec![ours[11].hash()]);
    assert_eq!(locator[0], branch[1].hash(), "it goes on from its last");
    sync.on_headers(A, &newest, ms(1_000), our_work, work_of, has_block)
        .expect("valid");
    assert_eq!(sync.peer(A).expect("known").checked_work, times(13));
    assert_eq!(sync.take_earlier_wanted(), 2, "counted for the log");
    let asked: BTreeSet<BlockHash> = sync
        .next_requests(ms(1_000), |_| true)
        .into_iter()
        .map(|(_, hash)| hash)
        .collect();
    let branch_hashes: BTreeSet<BlockHash> =
        branch.iter().chain(&newest).map(Header::hash).collect();
    assert_eq!(
        asked, branch_hashes,
        "the whole branch, from the fork point"
    );
    assert!(!sync.peer_done(A));
}

#[test]
fn blocks_of_a_lighter_branch_that_came_another_way_are_not_wanted_again() {
    let ours = chain(12);
    let mut held: BTreeMap<BlockHash, Work> = ours
        .iter()
        .enumerate()
        .map(|(k, header)| (header.hash(), times(k as u64 + 1)))
        .collect();
    let branch = easy_headers(ours[9].hash(), 10, 2, 7);
    let mut sync = BlockSync::new();
    sync.headers_requested(A, ms(0), vec![]);
    sync.on_headers(
        A,
        &branch,
        ms(0),
        times(12),
        |hash| held.get(hash).copied(),
        |hash| held.contains_key(hash),
    )
    .expect("valid");
    // Its first block reached us through another peer meanwhile.
    held.insert(branch[0].hash(), times(11));
    let newest = easy_headers(branch[1].hash(), 12, 1, 7);
    sync.headers_requested(A, ms(1), vec![]);
    sync.on_headers(
        A,
        &newest,
        ms(1),
        times(12),
        |hash| held.get(hash).copied(),
        |hash| held.contains_key(hash),
    )
    .expect("valid");
    assert_eq!(sync.n_wanted(), 2, "its second block and the newest");
}

#[test]
fn headers_are_asked_only_while_there_is_room() {
    let mut sync = BlockSync::new();
    let mut prev = BlockHash::ZERO;
    let mut height = 0;
    while sync.wants_headers(A) || sync.peer(A).is_none() {
        sync.headers_requested(A, ms(0), vec![]);
        let headers = easy_headers(prev, height, MAX_HEADERS, 0);
        prev = headers.last().expect("full").hash();
        height += MAX_HEADERS as u64;
        sync.on_headers(A, &headers, ms(0), Work::ZERO, |_| None, |_| false)
            .expect("valid");
    }
    assert!(sync.n_wanted() <= MAX_WANTED);
    assert_eq!(
        sync.n_wanted(),
        MAX_HEADERS,
        "held headers running low first"
    );
}

#[test]
fn bad_headers_are_refused() {
    let mut headers = chain(3);
    headers[1].prev_hash = BlockHash::ZERO;
    assert_eq!(check_headers(&headers), Err(HeadersError::Unconnected));
    let mut headers = chain(2);
    headers[1].bits = CompactTarget(0x0300_0001);
    assert_eq!(check_headers(&headers), Err(HeadersError::BadProofOfWork));
    let mut sync = BlockSync::new();
    sync.headers_requested(A, ms(0), vec![]);
    assert!(sync
        .headers_overdue(ms(15_000), Duration::from_secs(15))
        .is_empty());
    assert_eq!(
        sync.headers_overdue(ms(15_001), Duration::from_secs(15)),
        vec![A]
    );
}

#[test]
fn a_repeated_answer_is_not_read_again_nor_asked_for_again() {
    let headers = chain(MAX_HEADERS);
    let mut sync = shown_by(&headers, [A]);
    let shown = sync.peer(A).expect("known").checked_work;
    assert_eq!(shown, times(MAX_HEADERS as u64));
    // One of its blocks came from elsewhere: it has more, and fewer than
    // an answer's worth of its headers are left, so it is asked again,
    // from the last header it sent.
    sync.block_held(&headers[0].hash());
    assert!(sync.wants_headers(A));
    let locator = sync.headers_requested(A, ms(1), vec![BlockHash::ZERO]);
    assert_eq!(locator[0], headers[MAX_HEADERS - 1].hash());
    // It answers with the same headers: nothing is looked up for them,
    // nothing changes, and it is not asked again.
    let lookups = std::cell::Cell::new(0);
    let answer = sync.on_headers(
        A,
        &headers,
        ms(2),
        Work::ZERO,
        |_| {
            lookups.set(lookups.get() + 1);
            None
        },
        |_| {
            lookups.set(lookups.get() + 1);
            false
        },
    );
    assert_eq!(answer, Ok(HeadersAnswer::Repeated));
    assert_eq!(lookups.get(), 0, "the repeat is not read");
    assert!(!sync.expects_headers_from(A));
    assert!(sync.headers_complete(A));
    assert!(!sync.wants_headers(A));
    assert_eq!(sync.peer(A).expect("known").checked_work, shown);
    assert_eq!(sync.n_wanted(), MAX_HEADERS - 1);
    // Once it shows something new, it is asked again, and an answer that
    // goes on from its last header is read.
    sync.reopen(A);
    assert!(sync.wants_headers(A));
    sync.headers_requested(A, ms(3), vec![]);
    let more = easy_headers(headers[MAX_HEADERS - 1].hash(), MAX_HEADERS as u64, 5, 0);
    let answer = sync.on_headers(A, &more, ms(4), Work::ZERO, |_| None, |_| false);
    assert_eq!(answer, Ok(HeadersAnswer::Read));
    assert_eq!(
        sync.peer(A).expect("known").checked_work,
        times(MAX_HEADERS as u64 + 5)
    );
}
