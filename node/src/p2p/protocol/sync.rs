//! Header-first block sync from one peer at a time. After a handshake with
//! a peer that claims more work, or when a peer's block turns out to be an
//! orphan, we send our locator in `GetHeaders`, queue the hashes of the
//! headers it answers that we lack, and fetch those blocks in a sliding
//! window while asking for the next headers early, so the importer never
//! waits on the network. A sync peer that stops answering for the stall
//! timeout is dropped and the sync restarts with another peer. No flag is
//! needed to catch up: any node behind its peers syncs. This module keeps
//! the books; `NetworkState` sends.

use super::time::Mono;
use super::ConnId;
use crate::p2p::message::{MAX_HEADERS, MAX_LOCATOR};
use ledger::{BlockHash, Header, Height, Target, Work};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Blocks requested from the sync peer at once.
pub const BLOCK_WINDOW: usize = 256;
/// Bytes of received blocks waiting for validation before we stop asking
/// for more: memory stays bounded even with full 1 MiB blocks.
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;

/// Why a `Headers` answer is unacceptable.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadersError {
    /// Headers that do not chain one to the next.
    Unconnected,
    /// A header whose hash misses its own target.
    BadProofOfWork,
}

/// The state of the current sync, if any.
pub struct BlockSync {
    peer: Option<ConnId>,
    started_at: Mono,
    /// Hashes from headers, in chain order, whose blocks we have not asked for.
    queue: VecDeque<BlockHash>,
    /// Blocks asked for and not yet arrived, with when they were asked.
    requested: BTreeMap<BlockHash, Mono>,
    /// When the last asked-for block arrived.
    last_block_at: Mono,
    /// Our tip's work when the sync started, plus the work of every header
    /// the peer sent that we lacked: what its chain is shown to be worth.
    checked_work: Work,
    /// Blocks arrived and handed to validation, with their sizes.
    importing: BTreeSet<BlockHash>,
    importing_bytes: usize,
    last_header: Option<BlockHash>,
    /// Height of the last header received: how far this sync goes.
    last_header_height: Height,
    headers_in_flight: bool,
    /// The last `Headers` answer was full, so the peer has more.
    more_headers: bool,
    last_progress: Mono,
    pub blocks_imported: u64,
}

impl Default for BlockSync {
    fn default() -> Self {
        BlockSync::new()
    }
}

impl BlockSync {
    pub fn new() -> BlockSync {
        let now = Mono::ZERO;
        BlockSync {
            peer: None,
            started_at: now,
            queue: VecDeque::new(),
            requested: BTreeMap::new(),
            last_block_at: now,
            checked_work: Work::ZERO,
            importing: BTreeSet::new(),
            importing_bytes: 0,
            last_header: None,
            last_header_height: Height::ZERO,
            headers_in_flight: false,
            more_headers: false,
            last_progress: now,
            blocks_imported: 0,
        }
    }

    pub fn peer(&self) -> Option<ConnId> {
        self.peer
    }

    pub fn is_active(&self) -> bool {
        self.peer.is_some()
    }

    /// The height of the last header the sync peer sent (0 before any).
    pub fn last_header_height(&self) -> Height {
        self.last_header_height
    }

    pub fn started_at(&self) -> Mono {
        self.started_at
    }

    /// Starts a sync with `peer` unless one runs. Returns whether it started;
    /// the caller then sends `GetHeaders` with `locator`.
    pub fn start(&mut self, peer: ConnId, now: Mono, our_work: Work) -> bool {
        if self.peer.is_some() {
            return false;
        }
        *self = BlockSync::new();
        self.peer = Some(peer);
        self.started_at = now;
        self.last_progress = now;
        self.last_block_at = now;
        self.checked_work = our_work;
        true
    }

    /// The work the sync peer's headers have shown so far (see
    /// `checked_work`).
    pub fn checked_work(&self) -> Work {
        self.checked_work
    }

    /// Whether the sync peer has sent its last headers (a short answer).
    pub fn headers_complete(&self) -> bool {
        self.peer.is_some() && !self.headers_in_flight && !self.more_headers
    }

    /// Whether a `Headers` from `peer` answers our request. Anything else
    /// is refused before a single header is hashed.
    pub fn expects_headers_from(&self, peer: ConnId) -> bool {
        self.peer == Some(peer) && self.headers_in_flight
    }

    /// Forgets the current sync (its peer left, stalled or misbehaved).
    /// Blocks already handed to validation stay counted until judged.
    /// Returns the blocks still requested, so the caller can forget them.
    pub fn reset(&mut self) -> Vec<BlockHash> {
        let importing = std::mem::take(&mut self.importing);
        let importing_bytes = self.importing_bytes;
        let requested = std::mem::take(&mut self.requested).into_keys().collect();
        *self = BlockSync::new();
        self.importing = importing;
        self.importing_bytes = importing_bytes;
        requested
    }

    /// The locator for the next `GetHeaders`: continue after the last header
    /// received (still being fetched), then our own best chain.
    pub fn locator(&self, chain_locator: Vec<BlockHash>) -> Vec<BlockHash> {
        let mut locator: Vec<BlockHash> = self.last_header.into_iter().collect();
        locator.extend(chain_locator);
        locator.truncate(MAX_LOCATOR);
        locator
    }

    pub fn headers_requested(&mut self, now: Mono) {
        self.headers_in_flight = true;
        self.last_progress = now;
    }

    /// A `Headers` answer from `peer`. Hashes we lack (`has_block` false)
    /// are queued for fetching.
    pub fn on_headers(
        &mut self,
        peer: ConnId,
        headers: &[Header],
        now: Mono,
        has_block: impl Fn(&BlockHash) -> bool,
    ) -> Result<(), HeadersError> {
        if !self.expects_headers_from(peer) {
            // Unsolicited or late: ignored unread.
            return Ok(());
        }
        check_headers(headers)?;
        self.headers_in_flight = false;
        self.last_progress = now;
        self.more_headers = headers.len() == MAX_HEADERS;
        for header in headers {
            let hash = header.hash();
            if !has_block(&hash)
                && !self.requested.contains_key(&hash)
                && !self.importing.contains(&hash)
            {
                self.queue.push_back(hash);
                if let Ok(target) = Target::from_compact(header.bits) {
                    self.checked_work = self.checked_work.saturating_add(&target.work());
                }
            }
            self.last_header = Some(hash);
            self.last_header_height = header.height;
        }
        Ok(())
    }

    /// Whether to ask for the next headers now: the peer has more and our
    /// queue is running low.
    pub fn wants_headers(&self) -> bool {
        self.peer.is_some()
            && self.more_headers
            && !self.headers_in_flight
            && self.queue.len() < MAX_HEADERS
    }

    /// Blocks to request now, keeping the window and the import buffer full.
    pub fn next_requests(&mut self, now: Mono) -> Vec<BlockHash> {
        let mut batch = Vec::new();
        if self.peer.is_none() {
            return batch;
        }
        while self.requested.len() < BLOCK_WINDOW && self.importing_bytes < MAX_IMPORT_BYTES {
            match self.queue.pop_front() {
                Some(hash) => {
                    self.requested.insert(hash, now);
                    batch.push(hash);
                }
                None => break,
            }
        }
        batch
    }

    /// A block arrived. Returns whether the sync had asked for it.
    pub fn block_received(&mut self, hash: &BlockHash, size: usize, now: Mono) -> bool {
        if self.requested.remove(hash).is_none() {
            return false;
        }
        self.importing.insert(*hash);
        self.importing_bytes += size;
        self.last_progress = now;
        self.last_block_at = now;
        true
    }

    /// Validation of a synced block finished (any verdict).
    pub fn block_judged(&mut self, hash: &BlockHash, size: usize) -> bool {
        if self.importing.remove(hash) {
            self.importing_bytes = self.importing_bytes.saturating_sub(size);
            self.blocks_imported += 1;
            true
        } else {
            false
        }
    }

    /// A requested block will not come from the sync peer (`NotFound`).
    pub fn block_unavailable(&mut self, hash: &BlockHash) -> bool {
        self.requested.remove(hash).is_some()
    }

    /// Nothing is left to ask or to wait for.
    pub fn is_done(&self) -> bool {
        self.peer.is_some()
            && !self.headers_in_flight
            && !self.more_headers
            && self.queue.is_empty()
            && self.requested.is_empty()
            && self.importing.is_empty()
    }

    /// The sync peer owes us an answer and has been silent too long.
    pub fn is_stalled(&self, now: Mono, timeout: Duration) -> bool {
        self.peer.is_some()
            && (self.headers_in_flight || !self.requested.is_empty())
            && now.saturating_duration_since(self.last_progress) > timeout
    }

    /// The moving window's head is stuck: blocks are owed, and none has
    /// arrived for `timeout` since the oldest of them was asked for. A peer
    /// that drips one block at a time trips this long before the stall
    /// timeout, however often it sends something.
    pub fn window_stalled(&self, now: Mono, timeout: Duration) -> bool {
        let Some(oldest) = self.requested.values().min() else {
            return false;
        };
        self.peer.is_some()
            && now.saturating_duration_since((*oldest).max(self.last_block_at)) > timeout
    }
}

/// Headers must chain, and each must meet its own target (cheap checks
/// that keep a peer from sending us to fetch junk; full validation happens
/// when the blocks arrive).
pub fn check_headers(headers: &[Header]) -> Result<(), HeadersError> {
    let mut previous: Option<BlockHash> = None;
    for header in headers {
        let hash = header.hash();
        if let Some(previous) = previous {
            if header.prev_hash != previous {
                return Err(HeadersError::Unconnected);
            }
        }
        match Target::from_compact(header.bits) {
            Ok(target) if target.is_met_by(&hash) => {}
            _ => return Err(HeadersError::BadProofOfWork),
        }
        previous = Some(hash);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::target::CompactTarget;
    use ledger::Height;
    use ledger::{Address, Amount, Hash256};

    fn chain(n: usize) -> Vec<Header> {
        let easy = Target(ledger::U256::MAX.div_u64(2)).rounded().to_compact();
        let mut headers: Vec<Header> = Vec::new();
        let mut prev = BlockHash::ZERO;
        for height in 1..=n {
            let mut header = Header {
                version: 1,
                height: Height(height as u64),
                prev_hash: prev,
                merkle_root: Hash256::ZERO,
                timestamp: height as u64,
                bits: easy,
                nonce: 0,
                miner: Address([0; 20]),
                reward: Amount::ZERO,
            };
            while !Target::from_compact(easy)
                .expect("valid")
                .is_met_by(&header.hash())
            {
                header.nonce += 1;
            }
            prev = header.hash();
            headers.push(header);
        }
        headers
    }

    #[test]
    fn fetches_in_windows_and_finishes() {
        let now = Mono::ZERO;
        let headers = chain(300);
        let mut sync = BlockSync::new();
        assert_eq!(sync.last_header_height(), 0);
        assert!(sync.start(ConnId(7), now, Work::ZERO));
        assert!(!sync.start(ConnId(8), now, Work::ZERO));
        sync.headers_requested(now);
        sync.on_headers(ConnId(7), &headers, now, |_| false)
            .expect("valid");
        let first = sync.next_requests(now);
        assert_eq!(first.len(), BLOCK_WINDOW);
        assert_eq!(first[0], headers[0].hash());
        assert!(!sync.wants_headers());
        for hash in &first {
            assert!(sync.block_received(hash, 100, now));
            assert!(sync.block_judged(hash, 100));
        }
        let rest = sync.next_requests(now);
        assert_eq!(rest.len(), 300 - BLOCK_WINDOW);
        assert!(!sync.is_done());
        for hash in &rest {
            sync.block_received(hash, 100, now);
            sync.block_judged(hash, 100);
        }
        assert!(sync.is_done());
        assert_eq!(sync.last_header_height(), 300);
        assert_eq!(sync.locator(vec![BlockHash::ZERO])[0], headers[299].hash());
    }

    #[test]
    fn rejects_bad_headers_and_detects_stalls() {
        let mut headers = chain(3);
        headers[1].prev_hash = BlockHash::ZERO;
        assert_eq!(check_headers(&headers), Err(HeadersError::Unconnected));
        let mut headers = chain(2);
        headers[1].bits = CompactTarget(0x0300_0001);
        assert_eq!(check_headers(&headers), Err(HeadersError::BadProofOfWork));

        let now = Mono::ZERO;
        let mut sync = BlockSync::new();
        sync.start(ConnId(1), now, Work::ZERO);
        sync.headers_requested(now);
        assert!(!sync.is_stalled(now, Duration::from_secs(5)));
        assert!(sync.is_stalled(now + Duration::from_secs(6), Duration::from_secs(5)));
    }
}
