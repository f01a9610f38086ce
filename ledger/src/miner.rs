//! Block assembly and proof-of-work search. [`build_block`] turns a
//! template's transactions into a block paying the miner subsidy plus fees;
//! [`solve`] searches header nonces on as many threads as asked, in chunks
//! of about 10 ms of hashing, and checks a cancel flag between chunks so a
//! stale tip or a shutdown stops it quickly. The node owns the mining loop
//! (when to rebuild a template); this module is the reusable core.
//!
//! The search hashes the pre-encoded header with the nonce patched in place
//! at [`Header::NONCE_OFFSET`], and reuses the SHA-256 state after the first
//! 64-byte block, which the nonce does not touch, so each attempt costs two
//! compressions instead of three. Nonces are handed out to threads in
//! contiguous, increasing ranges, and a thread stops only once a hit below
//! its next range is known, so the result is always the smallest valid
//! nonce at or after the start, whatever the thread count or timing:
//! mining is deterministic.

use crate::address::Address;
use crate::amount::Amount;
use crate::block::{merkle_root, Block, Header, BLOCK_VERSION};
use crate::chainspec::ChainSpec;
use crate::encoding;
use crate::hash::{BlockHash, Hash256};
use crate::target::Target;
use crate::tx::Transaction;
use crate::Height;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Hashing time between two looks at the cancel flag.
const CHUNK_DURATION: Duration = Duration::from_millis(10);
/// First chunk of each thread, before its speed is known. Small enough to
/// answer a cancel at once; the size then adapts to `CHUNK_DURATION`.
const FIRST_CHUNK: u64 = 4_096;
const MAX_CHUNK: u64 = 1 << 26;
/// Nonces tried on the calling thread before spawning any: on an easy
/// target (regtest) the answer is almost always among them.
const PROBE_NONCES: u64 = 256;
/// SHA-256 block size: the bytes before the block holding the nonce never
/// change during a search.
const SHA256_BLOCK: usize = 64;

/// The bytes a block of `max_block_bytes` leaves for transactions: the
/// header and the length prefix of the transaction list take the rest.
pub fn max_tx_bytes(spec: &ChainSpec) -> usize {
    let empty = Block {
        header: empty_header(),
        txs: Vec::new(),
    };
    usize::try_from(spec.max_block_bytes)
        .unwrap_or(usize::MAX)
        .saturating_sub(empty.encoded_len())
}

fn empty_header() -> Header {
    Header {
        version: BLOCK_VERSION,
        height: Height::ZERO,
        prev_hash: BlockHash::ZERO,
        merkle_root: Hash256::ZERO,
        timestamp: 0,
        bits: Target::MAX.to_compact(),
        nonce: 0,
        miner: Address::default(),
        reward: Amount::ZERO,
    }
}

/// Assembles a block at an explicit position: the merkle root set, the
/// reward exactly subsidy plus fees, nonce 0. A transaction whose fee would
/// overflow the reward is left out (no valid chain gets there; it keeps the
/// block valid whatever the input).
pub fn assemble_block(
    spec: &ChainSpec,
    height: Height,
    prev_hash: BlockHash,
    target: Target,
    timestamp: u64,
    miner: Address,
    txs: Vec<Transaction>,
) -> Block {
    let mut reward = spec.block_subsidy;
    let mut kept = Vec::with_capacity(txs.len());
    for tx in txs {
        if let Some(next) = reward.checked_add(tx.fee) {
            reward = next;
            kept.push(tx);
        }
    }
    let txids: Vec<_> = kept.iter().map(Transaction::txid).collect();
    Block {
        header: Header {
            version: BLOCK_VERSION,
            height,
            prev_hash,
            merkle_root: merkle_root(&txids),
            timestamp,
            bits: target.to_compact(),
            nonce: 0,
            miner,
            reward,
        },
        txs: kept,
    }
}

/// A block on the tip described by `ctx`, paying `miner` subsidy plus fees.
#[cfg(feature = "storage")]
pub fn build_block(
    spec: &ChainSpec,
    ctx: &crate::chain::NextBlockContext,
    miner: Address,
    txs: Vec<Transaction>,
) -> Block {
    assemble_block(
        spec,
        ctx.height,
        ctx.prev_hash,
        ctx.target,
        ctx.timestamp,
        miner,
        txs,
    )
}

/// What a search did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchOutcome {
    /// The header's nonce was set to a solution.
    pub found: bool,
    /// Hashes computed, over all threads.
    pub hashes: u64,
}

/// Searches for a nonce, starting at `header.nonce`, that makes the header
/// meet its own target, on `threads` threads (at least one). Returns true
/// with `header.nonce` set when found; false, leaving the header unchanged,
/// when `cancel` was set (checked between chunks of about 10 ms) or the
/// bits are not a valid target.
pub fn solve(header: &mut Header, cancel: &AtomicBool, threads: usize) -> bool {
    search(header, cancel, threads).found
}

/// [`solve`], also reporting how many hashes it took.
pub fn search(header: &mut Header, cancel: &AtomicBool, threads: usize) -> SearchOutcome {
    let Ok(target) = Target::from_compact(header.bits) else {
        return SearchOutcome {
            found: false,
            hashes: 0,
        };
    };
    let prepared = PreparedHeader::new(header, &target);
    let start = header.nonce;

    // A short probe on this thread first: cheap easy targets need no threads.
    let probe = prepared.scan(start, PROBE_NONCES);
    let mut hashes = probe.1;
    if let Some(offset) = probe.0 {
        header.nonce = start.wrapping_add(offset);
        return SearchOutcome {
            found: true,
            hashes,
        };
    }

    let shared = SharedSearch {
        next_offset: AtomicU64::new(PROBE_NONCES),
        best_offset: AtomicU64::new(u64::MAX),
        hashes: AtomicU64::new(0),
    };
    // The calling thread is one of the workers.
    std::thread::scope(|scope| {
        for _ in 1..threads.max(1) {
            scope.spawn(|| search_worker(&prepared, start, &shared, cancel));
        }
        search_worker(&prepared, start, &shared, cancel);
    });
    hashes += shared.hashes.load(Ordering::Relaxed);
    let best = shared.best_offset.load(Ordering::Relaxed);
    if best == u64::MAX {
        return SearchOutcome {
            found: false,
            hashes,
        };
    }
    header.nonce = start.wrapping_add(best);
    SearchOutcome {
        found: true,
        hashes,
    }
}

struct SharedSearch {
    /// Offsets from the start nonce are handed out in increasing order.
    next_offset: AtomicU64,
    /// Smallest offset found so far; `u64::MAX` for none.
    best_offset: AtomicU64,
    hashes: AtomicU64,
}

fn search_worker(
    prepared: &PreparedHeader,
    start: u64,
    shared: &SharedSearch,
    cancel: &AtomicBool,
) {
    let mut chunk = FIRST_CHUNK;
    let mut hashes = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let begin = shared.next_offset.fetch_add(chunk, Ordering::Relaxed);
        // Every offset below `begin` was handed out earlier; once a hit is
        // known below it, nothing this thread could find would be smaller.
        if begin >= shared.best_offset.load(Ordering::Relaxed) || begin > u64::MAX - chunk {
            break;
        }
        let started = Instant::now();
        let (found, done) = prepared.scan_until(start, begin, chunk, &shared.best_offset);
        hashes += done;
        if let Some(offset) = found {
            shared.best_offset.fetch_min(offset, Ordering::Relaxed);
            break;
        }
        let elapsed = started.elapsed();
        if done == chunk {
            let nanos = elapsed.as_nanos().max(1);
            let ideal = u128::from(chunk) * CHUNK_DURATION.as_nanos() / nanos;
            // Grow at most 4x per step so one descheduled chunk cannot make
            // the next one huge.
            chunk = (ideal as u64).clamp(FIRST_CHUNK / 4, (chunk * 4).min(MAX_CHUNK));
        }
    }
    shared.hashes.fetch_add(hashes, Ordering::Relaxed);
}

/// A header encoded once, with the SHA-256 state after the blocks before
/// the nonce. Each attempt patches the nonce into the rest of the bytes and
/// hashes only those (for our 124-byte header: two compressions of three).
pub struct PreparedHeader {
    midstate: Sha256,
    tail: Vec<u8>,
    nonce_in_tail: usize,
    target_be: [u8; 32],
}

impl PreparedHeader {
    pub fn new(header: &Header, target: &Target) -> PreparedHeader {
        let bytes = encoding::encode(header);
        // Blocks wholly before the nonce never change during a search.
        let prefix_len = (Header::NONCE_OFFSET / SHA256_BLOCK) * SHA256_BLOCK;
        let mut midstate = Sha256::new();
        midstate.update(&bytes[..prefix_len]);
        PreparedHeader {
            midstate,
            tail: bytes[prefix_len..].to_vec(),
            nonce_in_tail: Header::NONCE_OFFSET - prefix_len,
            target_be: target.0.to_be_bytes(),
        }
    }

    fn digest_with_nonce(&self, tail: &mut [u8], nonce: u64) -> [u8; 32] {
        tail[self.nonce_in_tail..self.nonce_in_tail + 8].copy_from_slice(&nonce.to_le_bytes());
        let mut hasher = self.midstate.clone();
        hasher.update(&*tail);
        hasher.finalize().into()
    }

    /// The header hash with `nonce` in place of the header's own.
    pub fn hash_with_nonce(&self, nonce: u64) -> BlockHash {
        let mut tail = self.tail.clone();
        BlockHash(Hash256(self.digest_with_nonce(&mut tail, nonce)))
    }

    /// Tries offsets `0..count` from `start`; the first hit and the number
    /// of hashes done.
    pub fn scan(&self, start: u64, count: u64) -> (Option<u64>, u64) {
        let never = AtomicU64::new(u64::MAX);
        self.scan_until(start, 0, count, &never)
    }

    /// Tries offsets `begin..begin + count` from `start`, stopping at the
    /// first hit or once `best` falls below the current offset.
    fn scan_until(
        &self,
        start: u64,
        begin: u64,
        count: u64,
        best: &AtomicU64,
    ) -> (Option<u64>, u64) {
        let mut tail = self.tail.clone();
        let mut done = 0;
        for offset in begin..begin.saturating_add(count) {
            // Another thread's hit below us makes the rest of this chunk moot.
            if offset & 0x3ff == 0 && offset >= best.load(Ordering::Relaxed) {
                break;
            }
            let hash = self.digest_with_nonce(&mut tail, start.wrapping_add(offset));
            done += 1;
            // Big-endian bytes compare like the 256-bit numbers they hold.
            if hash <= self.target_be {
                return (Some(offset), done);
            }
        }
        (None, done)
    }
}
