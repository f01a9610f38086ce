//! `Height`: the number of blocks between a block and genesis. It is a plain
//! `u64` in the canonical encoding (eight little-endian bytes), a plain
//! number in JSON and on command lines, and big-endian bytes in storage keys
//! so that keys sort by height.

use crate::encoding::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::ParseIntError;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::str::FromStr;

/// Block height: genesis is `Height::ZERO`, its child `Height(1)`.
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
pub struct Height(pub u64);

impl Height {
    /// The height of genesis.
    pub const ZERO: Height = Height(0);
    pub const MAX: Height = Height(u64::MAX);

    pub const fn new(height: u64) -> Height {
        Height(height)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The height of a child block; `None` past `u64::MAX`.
    pub const fn next(self) -> Option<Height> {
        match self.0.checked_add(1) {
            Some(next) => Some(Height(next)),
            None => None,
        }
    }

    /// The height of the parent; `None` at genesis.
    pub const fn prev(self) -> Option<Height> {
        match self.0.checked_sub(1) {
            Some(prev) => Some(Height(prev)),
            None => None,
        }
    }

    pub const fn checked_add(self, blocks: u64) -> Option<Height> {
        match self.0.checked_add(blocks) {
            Some(height) => Some(Height(height)),
            None => None,
        }
    }

    pub const fn checked_sub(self, blocks: u64) -> Option<Height> {
        match self.0.checked_sub(blocks) {
            Some(height) => Some(Height(height)),
            None => None,
        }
    }

    pub const fn saturating_add(self, blocks: u64) -> Height {
        Height(self.0.saturating_add(blocks))
    }

    pub const fn saturating_sub(self, blocks: u64) -> Height {
        Height(self.0.saturating_sub(blocks))
    }

    /// Blocks from `earlier` up to `self`; `None` when `earlier` is higher.
    pub const fn blocks_since(self, earlier: Height) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }

    /// Storage key bytes: big-endian, so keys sort by height.
    pub const fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub const fn from_be_bytes(bytes: [u8; 8]) -> Height {
        Height(u64::from_be_bytes(bytes))
    }
}

impl fmt::Display for Height {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, formatter)
    }
}

impl FromStr for Height {
    type Err = ParseIntError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse::<u64>().map(Height)
    }
}

/// `height + blocks`: like `u64`, it overflows only past `u64::MAX`, which
/// no chain reaches; use `checked_add` for heights read from peers.
impl Add<u64> for Height {
    type Output = Height;
    fn add(self, blocks: u64) -> Height {
        Height(self.0 + blocks)
    }
}

impl AddAssign<u64> for Height {
    fn add_assign(&mut self, blocks: u64) {
        self.0 += blocks;
    }
}

/// `height - blocks`: panics (debug) below genesis like `u64`; prefer
/// `checked_sub` or `saturating_sub` when that can happen.
impl Sub<u64> for Height {
    type Output = Height;
    fn sub(self, blocks: u64) -> Height {
        Height(self.0 - blocks)
    }
}

impl SubAssign<u64> for Height {
    fn sub_assign(&mut self, blocks: u64) {
        self.0 -= blocks;
    }
}

/// `later - earlier`: the number of blocks between two heights.
impl Sub<Height> for Height {
    type Output = u64;
    fn sub(self, earlier: Height) -> u64 {
        self.0 - earlier.0
    }
}

/// `height == 5`: compares with a plain number, as tests and the genesis
/// checks do; arithmetic still goes through the methods above.
impl PartialEq<u64> for Height {
    fn eq(&self, other: &u64) -> bool {
        self.0 == *other
    }
}

impl From<u64> for Height {
    fn from(height: u64) -> Height {
        Height(height)
    }
}

impl From<Height> for u64 {
    fn from(height: Height) -> u64 {
        height.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding;

    #[test]
    fn encodes_as_a_plain_u64() {
        let height = Height(0x0102_0304_0506_0708);
        assert_eq!(encoding::encode(&height), encoding::encode(&height.0));
        assert_eq!(
            encoding::decode::<Height>(&encoding::encode(&height)).unwrap(),
            height
        );
        assert_eq!(serde_json::to_string(&height).unwrap(), "72623859790382856");
        assert_eq!(serde_json::from_str::<Height>("7").unwrap(), Height(7));
        assert_eq!(height.to_be_bytes(), height.0.to_be_bytes());
        assert_eq!(Height::from_be_bytes(height.to_be_bytes()), height);
    }

    #[test]
    fn parses_and_prints_plain_numbers() {
        assert_eq!("42".parse::<Height>().unwrap(), Height(42));
        assert!("-1".parse::<Height>().is_err());
        assert_eq!(Height(42).to_string(), "42");
        assert_eq!(format!("{:>4}", Height(7)), "   7");
    }

    #[test]
    fn steps_stop_at_the_ends() {
        assert_eq!(Height::ZERO.prev(), None);
        assert_eq!(Height::ZERO.next(), Some(Height(1)));
        assert_eq!(Height::MAX.next(), None);
        assert_eq!(Height(3).saturating_sub(5), Height::ZERO);
        assert_eq!(Height(5).blocks_since(Height(3)), Some(2));
        assert_eq!(Height(3).blocks_since(Height(5)), None);
        assert_eq!(Height(3) + 2, Height(5));
        assert_eq!(Height(5) - 2, Height(3));
        assert_eq!(Height(5) - Height(3), 2);
        assert!(Height(5) == 5 && Height(5) != 4);
    }
}
