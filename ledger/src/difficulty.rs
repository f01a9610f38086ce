//! Difficulty retargeting and the timestamp rules. Both are pure functions
//! of a block's ancestors (and, for the future-drift rule, the local clock),
//! so every node computes the same required target bit for bit.
//!
//! Retargeting runs every block: the next target is the mean target of the
//! last `RETARGET_WINDOW` blocks scaled by how long they actually took over
//! how long they should have taken, then clamped to at most
//! `MAX_STEP_NUMERATOR / MAX_STEP_DENOMINATOR` easier or harder than the
//! parent's target, never easier than the spec's `easiest_target`, and
//! finally rounded down to what the compact header form can carry. Using the
//! window's mean target (not the parent's) keeps repeated corrections from
//! compounding into oscillation.

use crate::chainspec::ChainSpec;
use crate::target::{CompactTarget, Target, U256};

/// Number of solve intervals the retarget averages over.
pub const RETARGET_WINDOW: usize = 16;
/// Blocks whose timestamps form the median a new timestamp must exceed.
pub const MEDIAN_TIME_SPAN: usize = 11;
/// How far past the local clock a block's timestamp may be, in ms.
pub const MAX_FUTURE_DRIFT_MS: u64 = 2 * 60 * 1000;
/// Per-block clamp: the target moves by at most x5/4 or x4/5.
pub const MAX_STEP_NUMERATOR: u64 = 5;
pub const MAX_STEP_DENOMINATOR: u64 = 4;

/// What retargeting needs from one ancestor block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockTiming {
    pub timestamp: u64,
    pub bits: CompactTarget,
}

/// The compact target a child of the last entry of `recent` must carry.
///
/// `recent` holds the parent and its ancestors, oldest first, ending with
/// the parent; at most `RETARGET_WINDOW + 1` entries are used (extra older
/// ones are ignored). Ancestor bits are valid by induction; should one not
/// decode, the spec's initial target stands in for it.
pub fn next_required_bits(spec: &ChainSpec, recent: &[BlockTiming]) -> CompactTarget {
    next_required_target(spec, recent).to_compact()
}

/// The target (already rounded to compact form) a child of the last entry
/// of `recent` must meet. See [`next_required_bits`].
pub fn next_required_target(spec: &ChainSpec, recent: &[BlockTiming]) -> Target {
    let decode = |bits: CompactTarget| Target::from_compact(bits).unwrap_or(spec.initial_target);
    if !spec.retarget {
        return spec.initial_target.rounded();
    }
    let window = &recent[recent.len().saturating_sub(RETARGET_WINDOW + 1)..];
    let (Some(first), Some(parent)) = (window.first(), window.last()) else {
        return spec.initial_target.rounded();
    };
    if window.len() < 2 {
        return decode(parent.bits).min(spec.easiest_target).rounded();
    }
    let intervals = (window.len() - 1) as u64;
    // Mean target of the blocks whose solve times the window measures.
    // Dividing each term first keeps the sum below 2^256.
    let mut mean = U256::ZERO;
    for timing in &window[1..] {
        mean = mean.saturating_add(&decode(timing.bits).0.div_u64(intervals));
    }
    let expected = spec.block_time_ms.saturating_mul(intervals).max(1);
    // Timestamps only have to beat a median, so they can go backwards;
    // count such a window as (almost) instant rather than negative.
    let actual = parent.timestamp.saturating_sub(first.timestamp).max(1);
    let scaled = scale(mean, actual, expected);

    let parent_target = decode(parent.bits).0;
    let easiest_step = scale(parent_target, MAX_STEP_NUMERATOR, MAX_STEP_DENOMINATOR);
    let hardest_step = scale(parent_target, MAX_STEP_DENOMINATOR, MAX_STEP_NUMERATOR);
    let clamped = scaled.min(easiest_step).max(hardest_step);
    let bounded = Target(clamped.max(U256::ONE)).min(spec.easiest_target);
    bounded.rounded()
}

/// `value * numerator / denominator` without overflow: multiply first when
/// it fits (exact), otherwise divide first (the value is then so large that
/// the lost low bits do not matter). Saturates at `U256::MAX`.
fn scale(value: U256, numerator: u64, denominator: u64) -> U256 {
    let denominator = denominator.max(1);
    match value.checked_mul_u64(numerator) {
        Some(product) => product.div_u64(denominator),
        None => value
            .div_u64(denominator)
            .checked_mul_u64(numerator)
            .unwrap_or(U256::MAX),
    }
}

/// Median of the last `MEDIAN_TIME_SPAN` timestamps of `recent` (oldest
/// first, ending with the parent). A new block's timestamp must be strictly
/// greater. For an even count the lower middle is used.
pub fn median_time_past(recent: &[BlockTiming]) -> u64 {
    let window = &recent[recent.len().saturating_sub(MEDIAN_TIME_SPAN)..];
    let mut times: Vec<u64> = window.iter().map(|timing| timing.timestamp).collect();
    if times.is_empty() {
        return 0;
    }
    times.sort_unstable();
    times[(times.len() - 1) / 2]
}

/// Latest timestamp a block may carry when the local clock reads `now_ms`.
pub fn max_timestamp(now_ms: u64) -> u64 {
    now_ms.saturating_add(MAX_FUTURE_DRIFT_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> ChainSpec {
        ChainSpec::builtin("dev").unwrap()
    }

    fn steady(spec: &ChainSpec, count: usize, interval: u64) -> Vec<BlockTiming> {
        (0..count)
            .map(|i| BlockTiming {
                timestamp: spec.genesis_timestamp + i as u64 * interval,
                bits: spec.initial_target.to_compact(),
            })
            .collect()
    }

    #[test]
    fn on_time_blocks_keep_the_target() {
        let spec = dev();
        let recent = steady(&spec, 17, spec.block_time_ms);
        let target = next_required_target(&spec, &recent);
        // Rounding to compact form may shave the last mantissa digit.
        assert!(target <= spec.initial_target);
        assert!(target.0 >= scale(spec.initial_target.0, 999, 1000));
    }

    #[test]
    fn fast_and_slow_blocks_move_at_most_one_step() {
        let spec = dev();
        let fast = next_required_target(&spec, &steady(&spec, 17, 1));
        let expected_hard = scale(spec.initial_target.0, 4, 5);
        assert!(fast.0 <= expected_hard && fast.0 >= scale(expected_hard, 999, 1000));
        let slow = next_required_target(&spec, &steady(&spec, 17, 100 * spec.block_time_ms));
        // Never easier than the easiest target, never more than x5/4.
        assert!(slow.0 <= scale(spec.initial_target.0, 5, 4));
        assert!(slow <= spec.easiest_target);
        assert!(slow > spec.initial_target);
    }

    #[test]
    fn no_retarget_keeps_initial_target() {
        let spec = ChainSpec::builtin("regtest").unwrap();
        let recent = steady(&spec, 17, 1);
        assert_eq!(next_required_target(&spec, &recent), spec.initial_target);
        assert_eq!(
            next_required_bits(&spec, &[]),
            spec.initial_target.to_compact()
        );
    }

    #[test]
    fn median_of_last_eleven() {
        let recent: Vec<BlockTiming> = [5u64, 1, 9, 3, 7]
            .iter()
            .map(|&timestamp| BlockTiming {
                timestamp,
                bits: CompactTarget(0),
            })
            .collect();
        assert_eq!(median_time_past(&recent), 5);
        assert_eq!(median_time_past(&recent[..2]), 1);
        assert_eq!(median_time_past(&[]), 0);
    }
}
