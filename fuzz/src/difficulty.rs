//! Compact targets, work, `U256` arithmetic and retargeting, each checked
//! against a reference computed with `num-bigint` (arbitrary precision, so
//! none of `U256`'s limb arithmetic, shifts or long division is reused):
//! the compact form's decoding and encoding, `work = 2^256 / (target+1)`,
//! every `U256` operation, the median time past and the retarget rule.

use arbitrary::{Arbitrary, Unstructured};
use ledger::difficulty::{self, BlockTiming, RETARGET_WINDOW};
use ledger::target::CompactTarget;
use ledger::{ChainSpec, Target, U256};
use num_bigint::BigUint;

fn big(value: &U256) -> BigUint {
    BigUint::from_bytes_be(&value.to_be_bytes())
}

fn two_256() -> BigUint {
    BigUint::from(1u8) << 256usize
}

fn max() -> BigUint {
    two_256() - 1u8
}

fn from_big(value: &BigUint) -> U256 {
    assert!(value < &two_256());
    let bytes = value.to_bytes_be();
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    U256::from_be_bytes(&out)
}

fn reference_from_compact(compact: u32) -> Option<BigUint> {
    let size = compact >> 24;
    let mantissa = compact & 0x007f_ffff;
    if compact & 0x0080_0000 != 0 || mantissa == 0 || size > 33 {
        return None;
    }
    let value = if size <= 3 {
        BigUint::from(mantissa) >> (8 * (3 - size) as usize)
    } else {
        BigUint::from(mantissa) << (8 * (size - 3) as usize)
    };
    (value != BigUint::from(0u8) && value < two_256()).then_some(value)
}

fn reference_to_compact(value: &BigUint) -> u32 {
    let mut size = value.bits().div_ceil(8) as u32;
    let mantissa = if size <= 3 {
        value << (8 * (3 - size) as usize)
    } else {
        value >> (8 * (size - 3) as usize)
    };
    let mut mantissa = u32::try_from(&mantissa).expect("three bytes");
    if mantissa & 0x0080_0000 != 0 {
        mantissa >>= 8;
        size += 1;
    }
    (size << 24) | mantissa
}

fn reference_rounded(value: &BigUint) -> BigUint {
    reference_from_compact(reference_to_compact(value)).unwrap_or_else(|| value.clone())
}

fn reference_scale(value: &BigUint, numerator: u64, denominator: u64) -> BigUint {
    let denominator = denominator.max(1);
    let product = value * numerator;
    if product < two_256() {
        product / denominator
    } else {
        ((value / denominator) * numerator).min(max())
    }
}

fn reference_next_target(spec: &ChainSpec, recent: &[BlockTiming]) -> BigUint {
    let initial = big(&spec.initial_target.0);
    let easiest = big(&spec.easiest_target.0);
    let decode =
        |bits: CompactTarget| reference_from_compact(bits.0).unwrap_or_else(|| initial.clone());
    if !spec.retarget {
        return reference_rounded(&initial);
    }
    let window = &recent[recent.len().saturating_sub(RETARGET_WINDOW + 1)..];
    let (Some(first), Some(parent)) = (window.first(), window.last()) else {
        return reference_rounded(&initial);
    };
    if window.len() < 2 {
        return reference_rounded(&decode(parent.bits).min(easiest));
    }
    let intervals = (window.len() - 1) as u64;
    let mut mean = BigUint::from(0u8);
    for timing in &window[1..] {
        mean += decode(timing.bits) / intervals;
    }
    let mean = mean.min(max());
    let expected = spec.block_time_ms.saturating_mul(intervals).max(1);
    let actual = parent.timestamp.saturating_sub(first.timestamp).max(1);
    let scaled = reference_scale(&mean, actual, expected);
    let parent_target = decode(parent.bits);
    let easiest_step = reference_scale(&parent_target, 5, 4);
    let hardest_step = reference_scale(&parent_target, 4, 5);
    let clamped = scaled.min(easiest_step).max(hardest_step);
    let bounded = clamped.max(BigUint::from(1u8)).min(easiest);
    reference_rounded(&bounded)
}

#[derive(Arbitrary, Debug)]
struct Input {
    a: [u8; 32],
    b: [u8; 32],
    compact: u32,
    small: u64,
    /// Retargeting: spec targets (compact), block time, the timings.
    initial: u32,
    easiest: u32,
    block_time_ms: u32,
    retarget: bool,
    timings: Vec<(u32, u32)>,
}

/// `difficulty`: every function on the same fuzzed numbers as the
/// reference.
pub fn check(data: &[u8]) {
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    // The compact form.
    let decoded = Target::from_compact(CompactTarget(input.compact));
    assert_eq!(
        decoded.as_ref().ok().map(|target| big(&target.0)),
        reference_from_compact(input.compact),
        "from_compact({:#010x})",
        input.compact
    );
    let a = U256::from_be_bytes(&input.a);
    let b = U256::from_be_bytes(&input.b);
    let (big_a, big_b) = (big(&a), big(&b));
    assert_eq!(
        Target(a).to_compact().0,
        reference_to_compact(&big_a),
        "to_compact({a:?})"
    );
    assert_eq!(big(&Target(a).rounded().0), reference_rounded(&big_a));
    if !a.is_zero() {
        assert!(Target(a).rounded().0 <= a);
    }
    // Work: 2^256 / (target + 1), saturating (only a zero target's does
    // not fit).
    assert_eq!(
        big(&Target(a).work().0),
        (two_256() / (&big_a + 1u8)).min(max()),
        "work({a:?})"
    );
    // U256 arithmetic.
    assert_eq!(u64::from(a.bits()), big_a.bits());
    assert_eq!(a.cmp(&b), big_a.cmp(&big_b));
    let sum = &big_a + &big_b;
    assert_eq!(
        a.checked_add(&b).map(|v| big(&v)),
        (sum < two_256()).then(|| sum.clone())
    );
    assert_eq!(big(&a.saturating_add(&b)), sum.min(max()));
    assert_eq!(
        a.checked_sub(&b).map(|v| big(&v)),
        (big_a >= big_b).then(|| &big_a - &big_b)
    );
    assert_eq!(big(&a.not()), max() - &big_a);
    let product = &big_a * input.small;
    assert_eq!(
        a.checked_mul_u64(input.small).map(|v| big(&v)),
        (product < two_256()).then_some(product)
    );
    if input.small != 0 {
        assert_eq!(big(&a.div_u64(input.small)), &big_a / input.small);
    }
    if !b.is_zero() {
        assert_eq!(big(&a.div(&b)), &big_a / &big_b, "{a:?} / {b:?}");
    }
    assert_eq!(big(&a.shl1()), (&big_a << 1usize) % two_256());
    assert_eq!(
        a.low_u64().map(BigUint::from),
        (big_a.bits() <= 64).then(|| big_a.clone())
    );
    assert_eq!(U256::from_hex(&a.to_hex()), Some(a));
    assert_eq!(from_big(&big_a), a);
    // Timestamps and retargeting.
    let timings: Vec<BlockTiming> = input
        .timings
        .iter()
        .take(24)
        .scan(0u64, |time, (gap, bits)| {
            *time = time.saturating_add(u64::from(*gap));
            Some(BlockTiming {
                timestamp: *time,
                bits: CompactTarget(*bits),
            })
        })
        .collect();
    let mut times: Vec<u64> = timings
        .iter()
        .rev()
        .take(difficulty::MEDIAN_TIME_SPAN)
        .map(|t| t.timestamp)
        .collect();
    times.sort_unstable();
    let median = times
        .get(times.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0);
    assert_eq!(difficulty::median_time_past(&timings), median);
    let target_of = |compact: u32| {
        Target::from_compact(CompactTarget(compact)).unwrap_or(Target(U256::MAX.div_u64(2)))
    };
    let mut spec = ChainSpec::builtin("dev").expect("built-in");
    spec.initial_target = target_of(input.initial);
    spec.easiest_target = target_of(input.easiest);
    spec.block_time_ms = u64::from(input.block_time_ms);
    spec.retarget = input.retarget;
    let next = difficulty::next_required_target(&spec, &timings);
    assert_eq!(
        big(&next.0),
        reference_next_target(&spec, &timings),
        "next_required_target"
    );
    assert_eq!(
        difficulty::next_required_bits(&spec, &timings),
        next.to_compact()
    );
}
