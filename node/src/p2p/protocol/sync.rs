//! The books of header-first block sync from several peers at once. Every
//! peer that may have more than we do is asked for headers from our
//! locator; its answers are checked (chaining, proof-of-work) and give it a
//! checked best header and the work of its chain counted from where it
//! forks from ours. That checked work, never a `Hello` claim, decides which
//! blocks we fetch and from whom: a block is wanted once a peer whose chain
//! has more work than our tip showed its header (headers it showed before
//! its chain overtook ours count too: a partition's lighter side may turn
//! heavier one block later), and it may be asked of any peer whose headers
//! named it. Blocks are fetched in a moving window (the
//! lowest missing heights first, at most `BLOCK_WINDOW` of them, at most
//! `MAX_BLOCKS_IN_FLIGHT_PER_PEER` from one peer), each with its own
//! timeout: a block that times out goes to another peer that has it, and
//! the slow peer gets a strike that lowers its priority and its share, and
//! is disconnected at `MAX_BLOCK_STALLS`, as Bitcoin Core's block download
//! does. This module keeps the books and decides; `NetworkState` sends.

use super::time::Mono;
use super::ConnId;
use crate::p2p::message::{MAX_HEADERS, MAX_LOCATOR};
use ledger::{BlockHash, Header, Height, Target, Work};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Blocks of the moving window: the lowest heights not yet ours, asked
/// for or arrived and waiting for their parents. Bitcoin Core's is 1,024,
/// but it stores blocks that arrive early; here they wait in the chain's
/// orphan pool (`ledger::chain::MAX_ORPHANS`, 256), so the window stays
/// well inside it.
pub const BLOCK_WINDOW: usize = 128;
/// Blocks asked of one peer at once (Bitcoin Core's figure).
pub const MAX_BLOCKS_IN_FLIGHT_PER_PEER: usize = 16;
/// Rounds with a timed-out block after which a peer is disconnected; each
/// one halves its share of the window first.
pub const MAX_BLOCK_STALLS: u32 = 3;
/// Headers of blocks we lack kept at once (a peer is asked for more only
/// while there is room for a whole answer): memory stays bounded whatever
/// branches peers show us.
pub const MAX_WANTED: usize = 8 * MAX_HEADERS;
/// Bytes of received blocks not yet ours (being validated, or waiting for
/// their parents) before we stop asking for more: memory stays bounded
/// even with full 1 MiB blocks, and early arrivals fit the chain's orphan
/// pool (`ledger::chain::MAX_ORPHAN_BYTES`, 32 MiB).
pub const MAX_IMPORT_BYTES: usize = 24 * 1024 * 1024;

/// Why a `Headers` answer is unacceptable.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadersError {
    /// Headers that do not chain one to the next.
    Unconnected,
    /// A header whose hash misses its own target.
    BadProofOfWork,
}

/// What became of a `Headers` answer that passed the checks.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadersAnswer {
    /// Read and booked.
    Read,
    /// It ends at the header the peer's previous answer ended at, which
    /// our locator named first: it shows nothing new (an honest peer
    /// answers with what comes after that header), so it is not read
    /// past its last header, and the peer is not asked again until it
    /// shows us something new.
    Repeated,
}

/// What one peer's headers have shown us, and how it serves blocks.
#[derive(Clone, Debug, Default)]
pub struct PeerSync {
    /// When our `GetHeaders` to it went out, while unanswered.
    headers_asked: Option<Mono>,
    /// Its last answer was full, so it has more.
    more: bool,
    /// It has answered at least once.
    answered: bool,
    /// The last header it sent (where its next answer continues).
    best: Option<BlockHash>,
    pub best_height: Height,
    /// The work of its chain up to `best`: the work of the block where it
    /// forks from ours plus that of each header after it.
    pub checked_work: Work,
    in_flight: usize,
    /// Wanted blocks its headers named.
    held: usize,
    /// Blocks we lack that its headers named while its chain had no more
    /// work than our tip, so they were not wanted then (at most
    /// `MAX_HEADERS`, the lowest first). An answer that goes on from its
    /// last header starts after them, so when such an answer makes its
    /// chain beat our tip they are wanted with the answer's own: without
    /// them its new blocks could never connect.
    unbooked: Vec<(Height, BlockHash)>,
    /// Rounds in which one of its blocks timed out (see `MAX_BLOCK_STALLS`).
    pub stalls: u32,
    /// Blocks delivered in time since its last stall; a full share of
    /// them clears one stall.
    clean_run: usize,
}

impl PeerSync {
    /// How many blocks it may have in flight: halved per stall.
    fn share(&self) -> usize {
        (MAX_BLOCKS_IN_FLIGHT_PER_PEER >> self.stalls.min(4)).max(1)
    }
}

/// A block we lack whose header some peer showed.
#[derive(Clone, Debug)]
struct Wanted {
    height: Height,
    /// Peers whose checked headers name it.
    holders: BTreeSet<ConnId>,
    /// Who it was asked of, and when.
    asked: Option<(ConnId, Mono)>,
    /// When it arrived, and its size: it stays in the window until it is
    /// ours (validated, or connected after its parent).
    received: Option<(Mono, usize)>,
}

/// The state of the sync. See the module docs.
#[derive(Default)]
pub struct BlockSync {
    peers: BTreeMap<ConnId, PeerSync>,
    wanted: BTreeMap<BlockHash, Wanted>,
    /// `wanted` in height order: the window is its start.
    by_height: BTreeSet<(Height, BlockHash)>,
    /// Bytes of the blocks arrived and not yet ours.
    importing_bytes: usize,
    /// When the current round of catching up began.
    started_at: Option<Mono>,
    pub blocks_imported: u64,
    /// Blocks wanted from headers shown before their branch overtook our
    /// tip, since the caller last took the count (for its log).
    earlier_wanted: usize,
}

/// What a block timeout round found, per peer: how many of its blocks
/// timed out, and its stalls now.
pub type Stalled = BTreeMap<ConnId, (usize, u32)>;

impl BlockSync {
    pub fn new() -> BlockSync {
        BlockSync::default()
    }

    /// Whether we are catching up: headers asked, or blocks wanted or
    /// being validated.
    pub fn is_active(&self) -> bool {
        !self.wanted.is_empty() || self.peers.values().any(|peer| peer.headers_asked.is_some())
    }

    pub fn started_at(&self) -> Option<Mono> {
        self.started_at
    }

    /// What `peer`'s headers have shown, if it sent any.
    pub fn peer(&self, peer: ConnId) -> Option<&PeerSync> {
        self.peers.get(&peer)
    }

    /// Whether `peer` owes us headers.
    pub fn expects_headers_from(&self, peer: ConnId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|sync| sync.headers_asked.is_some())
    }

    /// Whether `peer` has sent its last headers (a short answer).
    pub fn headers_complete(&self, peer: ConnId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|sync| sync.answered && !sync.more && sync.headers_asked.is_none())
    }

    /// Whether to ask `peer` for headers now: it is new to the sync, or it
    /// has more and the headers we already hold from it are running low
    /// (and there is room for a whole answer).
    pub fn wants_headers(&self, peer: ConnId) -> bool {
        let Some(sync) = self.peers.get(&peer) else {
            return self.wanted.len() + MAX_HEADERS <= MAX_WANTED;
        };
        sync.headers_asked.is_none()
            && sync.more
            && self.wanted.len() + MAX_HEADERS <= MAX_WANTED
            && self.held_by(peer) < MAX_HEADERS
    }

    /// `peer` showed us something new (a block whose parent we lack): its
    /// headers are asked for again even if it had sent its last.
    pub fn reopen(&mut self, peer: ConnId) {
        if let Some(sync) = self.peers.get_mut(&peer) {
            sync.more = true;
        }
    }

    /// Blocks still wanted that `peer`'s headers named.
    fn held_by(&self, peer: ConnId) -> usize {
        self.peers.get(&peer).map_or(0, |sync| sync.held)
    }

    /// Forgets a wanted block, and that its holders named it.
    fn remove_wanted(&mut self, hash: &BlockHash) -> Option<Wanted> {
        let wanted = self.wanted.remove(hash)?;
        self.by_height.remove(&(wanted.height, *hash));
        if let Some((_, size)) = wanted.received {
            self.importing_bytes = self.importing_bytes.saturating_sub(size);
        }
        for holder in &wanted.holders {
            if let Some(sync) = self.peers.get_mut(holder) {
                sync.held = sync.held.saturating_sub(1);
            }
        }
        Some(wanted)
    }

    /// A `GetHeaders` goes to `peer` now; returns its locator: after the
    /// last header it sent, then our best chain.
    pub fn headers_requested(
        &mut self,
        peer: ConnId,
        now: Mono,
        chain_locator: Vec<BlockHash>,
    ) -> Vec<BlockHash> {
        self.started_at.get_or_insert(now);
        let sync = self.peers.entry(peer).or_default();
        sync.headers_asked = Some(now);
        let mut locator: Vec<BlockHash> = sync.best.into_iter().collect();
        locator.extend(chain_locator);
        locator.truncate(MAX_LOCATOR);
        locator
    }

    /// A `Headers` answer from `peer` (one we asked for). `work_of` gives
    /// the cumulative work of a block we hold (`None` if we do not), and
    /// `our_work` our tip's, `has_block` whether we hold a block (one still
    /// being committed may have no work recorded yet). The peer's checked
    /// work is counted from the fork point: the work of the last header we
    /// hold, plus each header after it. Blocks we lack are wanted only if
    /// that work beats our tip. An answer that repeats where the peer's
    /// last one ended costs one hash and is not read further (see
    /// `HeadersAnswer::Repeated`), so a peer cannot make us redo the work
    /// of its answer by sending it again.
    pub fn on_headers(
        &mut self,
        peer: ConnId,
        headers: &[Header],
        now: Mono,
        our_work: Work,
        work_of: impl Fn(&BlockHash) -> Option<Work>,
        has_block: impl Fn(&BlockHash) -> bool,
    ) -> Result<HeadersAnswer, HeadersError> {
        if let (Some(last), Some(sync)) = (headers.last(), self.peers.get_mut(&peer)) {
            if sync.best.is_some() && sync.best == Some(last.hash()) {
                sync.headers_asked = None;
                sync.more = false;
                return Ok(HeadersAnswer::Repeated);
            }
        }
        let hashes = check_headers(headers)?;
        let sync = self.peers.entry(peer).or_default();
        sync.headers_asked = None;
        sync.answered = true;
        sync.more = headers.len() == MAX_HEADERS;
        let Some(first) = headers.first() else {
            // Nothing after our locator: its chain is ours, as far as it
            // knows.
            if sync.best.is_none() {
                sync.checked_work = sync.checked_work.max(our_work);
            }
            return Ok(HeadersAnswer::Read);
        };
        let continues = sync.best == Some(first.prev_hash);
        if !continues {
            // Read from a block we hold: this answer names every block of
            // its branch we lack, up to a full answer.
            sync.unbooked.clear();
        }
        let mut work = if continues {
            sync.checked_work
        } else {
            work_of(&first.prev_hash).unwrap_or(our_work)
        };
        let mut lacking = Vec::new();
        for (header, &hash) in headers.iter().zip(&hashes) {
            match work_of(&hash) {
                Some(held) => work = held,
                None => {
                    if let Ok(target) = Target::from_compact(header.bits) {
                        work = work.saturating_add(&target.work());
                    }
                    if !has_block(&hash) {
                        lacking.push((header.height, hash));
                    }
                }
            }
        }
        let last = headers.last().expect("not empty");
        sync.best = hashes.last().copied();
        sync.best_height = last.height;
        sync.checked_work = work;
        let worth_fetching = work > our_work;
        if worth_fetching {
            // What earlier answers of this chain named comes first; some
            // of it may have reached us another way since.
            let mut earlier = std::mem::take(&mut sync.unbooked);
            earlier.retain(|(_, hash)| !has_block(hash));
            self.earlier_wanted += earlier.len();
            earlier.extend(lacking);
            lacking = earlier;
        } else {
            let room = MAX_HEADERS.saturating_sub(sync.unbooked.len());
            sync.unbooked.extend(lacking.iter().copied().take(room));
        }
        let mut named = 0;
        for (height, hash) in lacking {
            if let Some(wanted) = self.wanted.get_mut(&hash) {
                named += usize::from(wanted.holders.insert(peer));
            } else if worth_fetching && self.wanted.len() < MAX_WANTED {
                named += 1;
                self.wanted.insert(
                    hash,
                    Wanted {
                        height,
                        holders: BTreeSet::from([peer]),
                        asked: None,
                        received: None,
                    },
                );
                self.by_height.insert((height, hash));
            }
        }
        if let Some(sync) = self.peers.get_mut(&peer) {
            sync.held += named;
        }
        if worth_fetching {
            self.started_at.get_or_insert(now);
        }
        Ok(HeadersAnswer::Read)
    }

    /// Blocks to ask for now, with whom to ask: the lowest missing
    /// heights first, each from the holder with the fewest stalls, then
    /// the fewest in flight, within every peer's share and the import
    /// buffer. `usable` says whether a peer may be asked at all.
    pub fn next_requests(
        &mut self,
        now: Mono,
        usable: impl Fn(ConnId) -> bool,
    ) -> Vec<(ConnId, BlockHash)> {
        let mut batch = Vec::new();
        if self
            .peers
            .values()
            .all(|peer| peer.in_flight >= peer.share())
        {
            return batch;
        }
        let window: Vec<BlockHash> = self
            .by_height
            .iter()
            .take(BLOCK_WINDOW)
            .map(|(_, hash)| *hash)
            .collect();
        for hash in window {
            if self.importing_bytes >= MAX_IMPORT_BYTES {
                break;
            }
            let Some(wanted) = self.wanted.get_mut(&hash) else {
                continue;
            };
            if wanted.asked.is_some() || wanted.received.is_some() {
                continue;
            }
            let best = wanted
                .holders
                .iter()
                .filter(|id| usable(**id))
                .filter_map(|id| self.peers.get(id).map(|peer| (*id, peer)))
                .filter(|(_, peer)| peer.in_flight < peer.share())
                .min_by_key(|(id, peer)| (peer.stalls, peer.in_flight, *id))
                .map(|(id, _)| id);
            let Some(id) = best else { continue };
            wanted.asked = Some((id, now));
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.in_flight += 1;
            }
            batch.push((id, hash));
        }
        batch
    }

    /// A block arrived from `from`. Returns whether the sync wanted it
    /// (asked of anyone, or not yet asked) and had not had it yet.
    pub fn block_received(
        &mut self,
        from: ConnId,
        hash: &BlockHash,
        size: usize,
        now: Mono,
    ) -> bool {
        let Some(wanted) = self.wanted.get_mut(hash) else {
            return false;
        };
        if wanted.received.is_some() {
            return false;
        }
        wanted.received = Some((now, size));
        self.importing_bytes += size;
        let Some((asked_of, _)) = wanted.asked.take() else {
            return true;
        };
        if let Some(peer) = self.peers.get_mut(&asked_of) {
            peer.in_flight = peer.in_flight.saturating_sub(1);
            if asked_of == from {
                peer.clean_run += 1;
                if peer.clean_run >= MAX_BLOCKS_IN_FLIGHT_PER_PEER {
                    peer.clean_run = 0;
                    peer.stalls = peer.stalls.saturating_sub(1);
                }
            }
        }
        true
    }

    /// Validation of a block finished. Unless it waits for its parent
    /// (`orphan`), it leaves the window. Returns whether the sync had
    /// received it.
    pub fn block_judged(&mut self, hash: &BlockHash, orphan: bool) -> bool {
        let received = self
            .wanted
            .get(hash)
            .is_some_and(|wanted| wanted.received.is_some());
        if received && !orphan {
            self.remove_wanted(hash);
            self.blocks_imported += 1;
        }
        received
    }

    /// We hold a block now (validated, however it came): it leaves the
    /// window. Returns who it was asked of, if it was still asked.
    pub fn block_held(&mut self, hash: &BlockHash) -> Option<ConnId> {
        let wanted = self.remove_wanted(hash)?;
        let (asked_of, _) = wanted.asked?;
        if let Some(peer) = self.peers.get_mut(&asked_of) {
            peer.in_flight = peer.in_flight.saturating_sub(1);
        }
        Some(asked_of)
    }

    /// Blocks that arrived more than `timeout` ago and are still not ours
    /// (their parent never came, or the orphan pool let them go) are
    /// wanted again.
    pub fn expire_received(&mut self, now: Mono, timeout: Duration) -> usize {
        let mut again = 0;
        for wanted in self.wanted.values_mut() {
            if let Some((at, size)) = wanted.received {
                if now.saturating_duration_since(at) > timeout {
                    wanted.received = None;
                    self.importing_bytes = self.importing_bytes.saturating_sub(size);
                    again += 1;
                }
            }
        }
        again
    }

    /// `peer` says it does not have a block its headers named (`NotFound`):
    /// it is no longer asked for it. Returns whether it had been asked.
    pub fn block_unavailable(&mut self, peer: ConnId, hash: &BlockHash) -> bool {
        let Some(wanted) = self.wanted.get_mut(hash) else {
            return false;
        };
        let named = wanted.holders.remove(&peer);
        let asked = matches!(wanted.asked, Some((id, _)) if id == peer);
        if asked {
            wanted.asked = None;
        }
        if let Some(sync) = self.peers.get_mut(&peer) {
            sync.in_flight = sync.in_flight.saturating_sub(usize::from(asked));
            sync.held = sync.held.saturating_sub(usize::from(named));
        }
        if wanted.holders.is_empty() {
            self.forget_wanted(hash);
        }
        asked
    }

    fn forget_wanted(&mut self, hash: &BlockHash) {
        self.remove_wanted(hash);
    }

    /// Blocks asked more than `timeout` ago are taken back: each goes to
    /// another holder when there is one (the slow peer stops being one),
    /// and each peer that let one time out gets one stall for the round.
    pub fn expire(&mut self, now: Mono, timeout: Duration) -> (Stalled, Vec<BlockHash>) {
        let mut timed_out: BTreeMap<ConnId, (usize, usize)> = BTreeMap::new();
        let mut taken_back = Vec::new();
        for (hash, wanted) in &mut self.wanted {
            let Some((id, asked_at)) = wanted.asked else {
                continue;
            };
            if now.saturating_duration_since(asked_at) <= timeout {
                continue;
            }
            wanted.asked = None;
            let (blocks, no_longer_held) = timed_out.entry(id).or_default();
            *blocks += 1;
            if wanted.holders.len() > 1 && wanted.holders.remove(&id) {
                *no_longer_held += 1;
            }
            taken_back.push(*hash);
        }
        let mut stalled: Stalled = BTreeMap::new();
        for (id, (blocks, no_longer_held)) in timed_out {
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.in_flight = peer.in_flight.saturating_sub(blocks);
                peer.held = peer.held.saturating_sub(no_longer_held);
                peer.stalls += 1;
                peer.clean_run = 0;
                stalled.insert(id, (blocks, peer.stalls));
            }
        }
        (stalled, taken_back)
    }

    /// Peers that owe us headers for longer than `timeout`.
    pub fn headers_overdue(&self, now: Mono, timeout: Duration) -> Vec<ConnId> {
        self.peers
            .iter()
            .filter(|(_, peer)| {
                peer.headers_asked
                    .is_some_and(|at| now.saturating_duration_since(at) > timeout)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// A peer left: what it was asked goes back to the window, blocks only
    /// it named are forgotten. Returns the blocks it had been asked.
    pub fn peer_gone(&mut self, peer: ConnId) -> Vec<BlockHash> {
        self.peers.remove(&peer);
        let mut asked = Vec::new();
        let mut orphaned = Vec::new();
        for (hash, wanted) in &mut self.wanted {
            if matches!(wanted.asked, Some((id, _)) if id == peer) {
                wanted.asked = None;
                asked.push(*hash);
            }
            wanted.holders.remove(&peer);
            if wanted.holders.is_empty() {
                orphaned.push(*hash);
            }
        }
        for hash in orphaned {
            self.forget_wanted(&hash);
        }
        asked
    }

    /// Whether `peer` has given us all it has: its headers are complete
    /// and no block its headers named is still wanted.
    pub fn peer_done(&self, peer: ConnId) -> bool {
        self.headers_complete(peer) && self.held_by(peer) == 0
    }

    /// Ends a round of catching up when nothing is left to ask or to
    /// wait for; returns when it began and how many blocks it imported.
    pub fn finish(&mut self) -> Option<(Mono, u64)> {
        if self.is_active() {
            return None;
        }
        let started = self.started_at.take()?;
        let imported = std::mem::take(&mut self.blocks_imported);
        Some((started, imported))
    }

    /// How many blocks were wanted from headers shown before their branch
    /// overtook our tip since the last call.
    pub fn take_earlier_wanted(&mut self) -> usize {
        std::mem::take(&mut self.earlier_wanted)
    }

    /// Blocks being asked (for tests and the published state).
    pub fn in_flight(&self) -> usize {
        self.wanted
            .values()
            .filter(|wanted| wanted.asked.is_some())
            .count()
    }

    /// Blocks wanted, asked or not.
    pub fn n_wanted(&self) -> usize {
        self.wanted.len()
    }
}

/// Headers must chain, and each must meet its own target (cheap checks
/// that keep a peer from sending us to fetch junk; full validation happens
/// when the blocks arrive). Returns their hashes, so each is hashed once.
pub fn check_headers(headers: &[Header]) -> Result<Vec<BlockHash>, HeadersError> {
    let mut hashes: Vec<BlockHash> = Vec::with_capacity(headers.len());
    for header in headers {
        let hash = header.hash();
        if let Some(previous) = hashes.last() {
            if header.prev_hash != *previous {
                return Err(HeadersError::Unconnected);
            }
        }
        match Target::from_compact(header.bits) {
            Ok(target) if target.is_met_by(&hash) => {}
            _ => return Err(HeadersError::BadProofOfWork),
        }
        hashes.push(hash);
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests;
