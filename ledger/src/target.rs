//! 256-bit numbers for proof-of-work: `U256` (just the arithmetic the chain
//! needs), `Target` (a hash must be numerically at most this), its compact
//! 32-bit form carried in headers, and `Work` (expected hashes per block,
//! 2^256 / (target + 1), summed along a chain for fork choice).

use crate::encoding::{Decode, Encode};
use crate::hash::BlockHash;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;

/// An unsigned 256-bit integer, little-endian 64-bit limbs.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Encode, Decode)]
pub struct U256(pub [u64; 4]);

impl U256 {
    pub const ZERO: U256 = U256([0; 4]);
    pub const ONE: U256 = U256([1, 0, 0, 0]);
    pub const MAX: U256 = U256([u64::MAX; 4]);

    pub const fn from_u64(value: u64) -> U256 {
        U256([value, 0, 0, 0])
    }

    pub fn from_be_bytes(bytes: &[u8; 32]) -> U256 {
        let mut limbs = [0u64; 4];
        for (index, limb) in limbs.iter_mut().enumerate() {
            let start = 32 - 8 * (index + 1);
            *limb = u64::from_be_bytes(bytes[start..start + 8].try_into().expect("8 bytes"));
        }
        U256(limbs)
    }

    pub fn to_be_bytes(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        for (index, limb) in self.0.iter().enumerate() {
            let start = 32 - 8 * (index + 1);
            bytes[start..start + 8].copy_from_slice(&limb.to_be_bytes());
        }
        bytes
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    /// Number of significant bits.
    pub fn bits(&self) -> u32 {
        for index in (0..4).rev() {
            if self.0[index] != 0 {
                return 64 * index as u32 + (64 - self.0[index].leading_zeros());
            }
        }
        0
    }

    pub fn checked_add(&self, other: &U256) -> Option<U256> {
        let mut result = [0u64; 4];
        let mut carry = false;
        for (index, slot) in result.iter_mut().enumerate() {
            let (sum, overflow_a) = self.0[index].overflowing_add(other.0[index]);
            let (sum, overflow_b) = sum.overflowing_add(carry as u64);
            *slot = sum;
            carry = overflow_a || overflow_b;
        }
        (!carry).then_some(U256(result))
    }

    pub fn saturating_add(&self, other: &U256) -> U256 {
        self.checked_add(other).unwrap_or(U256::MAX)
    }

    pub fn checked_sub(&self, other: &U256) -> Option<U256> {
        let mut result = [0u64; 4];
        let mut borrow = false;
        for (index, slot) in result.iter_mut().enumerate() {
            let (difference, borrow_a) = self.0[index].overflowing_sub(other.0[index]);
            let (difference, borrow_b) = difference.overflowing_sub(borrow as u64);
            *slot = difference;
            borrow = borrow_a || borrow_b;
        }
        (!borrow).then_some(U256(result))
    }

    pub fn not(&self) -> U256 {
        U256(self.0.map(|limb| !limb))
    }

    pub fn checked_mul_u64(&self, factor: u64) -> Option<U256> {
        let mut result = [0u64; 4];
        let mut carry = 0u128;
        for (index, slot) in result.iter_mut().enumerate() {
            let product = self.0[index] as u128 * factor as u128 + carry;
            *slot = product as u64;
            carry = product >> 64;
        }
        (carry == 0).then_some(U256(result))
    }

    /// Division by a non-zero `u64`.
    pub fn div_u64(&self, divisor: u64) -> U256 {
        assert!(divisor != 0, "division by zero");
        let mut result = [0u64; 4];
        let mut remainder = 0u128;
        for index in (0..4).rev() {
            let current = (remainder << 64) | self.0[index] as u128;
            result[index] = (current / divisor as u128) as u64;
            remainder = current % divisor as u128;
        }
        U256(result)
    }

    pub fn shl1(&self) -> U256 {
        let mut result = [0u64; 4];
        for index in (0..4).rev() {
            result[index] = self.0[index] << 1;
            if index > 0 {
                result[index] |= self.0[index - 1] >> 63;
            }
        }
        U256(result)
    }

    fn bit(&self, position: u32) -> bool {
        (self.0[(position / 64) as usize] >> (position % 64)) & 1 == 1
    }

    /// Long division; `divisor` must be non-zero.
    pub fn div(&self, divisor: &U256) -> U256 {
        assert!(!divisor.is_zero(), "division by zero");
        let mut quotient = U256::ZERO;
        let mut remainder = U256::ZERO;
        for position in (0..self.bits()).rev() {
            remainder = remainder.shl1();
            if self.bit(position) {
                remainder.0[0] |= 1;
            }
            if remainder >= *divisor {
                remainder = remainder
                    .checked_sub(divisor)
                    .expect("remainder >= divisor");
                quotient.0[(position / 64) as usize] |= 1 << (position % 64);
            }
        }
        quotient
    }

    /// Truncates to a `u64` when it fits.
    pub fn low_u64(&self) -> Option<u64> {
        (self.0[1..] == [0; 3]).then_some(self.0[0])
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_be_bytes())
    }

    pub fn from_hex(text: &str) -> Option<U256> {
        let text = text.strip_prefix("0x").unwrap_or(text);
        if text.is_empty() || text.len() > 64 {
            return None;
        }
        let padded = format!("{text:0>64}");
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(padded, &mut bytes).ok()?;
        Some(U256::from_be_bytes(&bytes))
    }
}

impl Ord for U256 {
    fn cmp(&self, other: &Self) -> Ordering {
        for index in (0..4).rev() {
            match self.0[index].cmp(&other.0[index]) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for U256 {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "0x{}", self.to_hex())
    }
}

impl Serialize for U256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for U256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        U256::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("expected up to 64 hex characters"))
    }
}

/// The proof-of-work threshold: a block hash read as a big-endian 256-bit
/// number must be at most the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Target(pub U256);

/// The compact 32-bit form of a target carried in headers: one exponent byte
/// (length in bytes) and a 23-bit mantissa, as in Bitcoin's `nBits`. Only
/// targets that survive the round trip exactly are valid in headers.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct CompactTarget(pub u32);

/// Why a compact target is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compact target {0:#010x}")]
pub struct CompactTargetError(pub u32);

impl Target {
    pub const MAX: Target = Target(U256::MAX);

    /// Whether `hash` meets this target.
    pub fn is_met_by(&self, hash: &BlockHash) -> bool {
        U256::from_be_bytes(hash.as_bytes()) <= self.0
    }

    /// The work a block at this target represents: 2^256 / (target + 1),
    /// computed as !target / (target + 1) + 1 so it fits in 256 bits. A
    /// zero target (which no header can carry) would be worth 2^256: it
    /// saturates at `U256::MAX`.
    pub fn work(&self) -> Work {
        match self.0.checked_add(&U256::ONE) {
            None => Work(U256::ONE),
            Some(divisor) => Work(
                self.0
                    .not()
                    .div(&divisor)
                    .checked_add(&U256::ONE)
                    .unwrap_or(U256::MAX),
            ),
        }
    }

    /// Encodes to compact form, rounding the target down to what it can hold.
    pub fn to_compact(&self) -> CompactTarget {
        let mut size = self.0.bits().div_ceil(8);
        let bytes = self.0.to_be_bytes();
        let value_at = |index: i64| -> u32 {
            if (0..32).contains(&index) {
                bytes[index as usize] as u32
            } else {
                0
            }
        };
        // The three most significant bytes of the number.
        let first = 32 - size as i64;
        let mut mantissa =
            (value_at(first) << 16) | (value_at(first + 1) << 8) | value_at(first + 2);
        if mantissa & 0x0080_0000 != 0 {
            mantissa >>= 8;
            size += 1;
        }
        CompactTarget((size << 24) | mantissa)
    }

    /// Decodes compact form; negative, overflowing or zero targets are errors.
    pub fn from_compact(compact: CompactTarget) -> Result<Target, CompactTargetError> {
        let size = compact.0 >> 24;
        let mantissa = compact.0 & 0x007f_ffff;
        if compact.0 & 0x0080_0000 != 0 || mantissa == 0 || size > 33 {
            return Err(CompactTargetError(compact.0));
        }
        let mut value = U256::from_u64(mantissa as u64);
        if size <= 3 {
            value = U256::from_u64((mantissa >> (8 * (3 - size))) as u64);
        } else {
            for _ in 0..8 * (size - 3) {
                if value.bits() == 256 {
                    return Err(CompactTargetError(compact.0));
                }
                value = value.shl1();
            }
        }
        if value.is_zero() {
            return Err(CompactTargetError(compact.0));
        }
        Ok(Target(value))
    }

    /// The target rounded to what the compact form carries.
    pub fn rounded(&self) -> Target {
        Target::from_compact(self.to_compact()).unwrap_or(*self)
    }
}

/// Expected number of hashes behind a block or a chain.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Encode,
    Decode,
    Serialize,
    Deserialize,
)]
#[serde(transparent)]
pub struct Work(pub U256);

impl Work {
    pub const ZERO: Work = Work(U256::ZERO);

    pub fn saturating_add(&self, other: &Work) -> Work {
        Work(self.0.saturating_add(&other.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_of_simple_targets() {
        // Target 2^255 - 1: half of all hashes meet it, so work is 2.
        let half = Target(U256::MAX.div_u64(2));
        assert_eq!(half.work().0, U256::from_u64(2));
        assert_eq!(Target::MAX.work().0, U256::ONE);
        let small = Target(U256::MAX.div_u64(1_000_000));
        let work = small.work().0.low_u64().unwrap();
        assert!((999_999..=1_000_001).contains(&work), "{work}");
    }

    /// Found by the `difficulty` fuzz target: the work of a zero target
    /// overflowed and panicked.
    #[test]
    fn fuzz_difficulty_work_of_zero_target_saturates() {
        assert_eq!(Target(U256::ZERO).work().0, U256::MAX);
        assert_eq!(
            Target(U256::ONE).work().0,
            U256::MAX.div_u64(2).checked_add(&U256::ONE).unwrap()
        );
    }

    #[test]
    fn compact_round_trip() {
        for target in [
            U256::MAX.div_u64(2),
            U256::MAX.div_u64(6_000_000),
            U256::from_u64(0x1234_5678),
            U256::from_u64(1),
        ] {
            let rounded = Target(target).rounded();
            assert!(rounded.0 <= target);
            assert_eq!(Target::from_compact(rounded.to_compact()).unwrap(), rounded);
        }
        assert!(Target::from_compact(CompactTarget(0x0480_0000)).is_err());
        assert!(Target::from_compact(CompactTarget(0xff12_3456)).is_err());
    }

    #[test]
    fn division_matches_u128() {
        let a = U256([0x1234_5678_9abc_def0, 0xfeed, 0, 0]);
        let b = U256::from_u64(0xabcdef);
        let expected = ((0xfeedu128 << 64) | 0x1234_5678_9abc_def0) / 0xabcdef;
        let quotient = a.div(&b);
        assert_eq!(
            quotient.0[0] as u128 | ((quotient.0[1] as u128) << 64),
            expected
        );
        assert_eq!(a.div_u64(0xabcdef), quotient);
    }
}
