//! `Amount`: a quantity of base units (1 coin = 100_000_000 base units) with
//! checked arithmetic only, and exact conversion to and from decimal coins.
//! There are no floats anywhere in amount handling.

use crate::encoding::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Base units per coin.
pub const COIN: u64 = 100_000_000;
/// Decimal places of a coin.
pub const DECIMALS: usize = 8;

/// A non-negative number of base units. JSON carries it as an integer.
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
pub struct Amount(u64);

/// Why a decimal coin string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseAmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount must be a decimal number of coins like 1.5, got {0:?}")]
    NotANumber(String),
    #[error("amount has more than 8 decimal places (the smallest unit is 0.00000001)")]
    TooPrecise,
    #[error("amount is too large")]
    Overflow,
    #[error("amount cannot be negative")]
    Negative,
}

impl Amount {
    pub const ZERO: Amount = Amount(0);
    pub const MAX: Amount = Amount(u64::MAX);

    pub const fn from_base_units(units: u64) -> Amount {
        Amount(units)
    }

    /// Whole coins; `None` when the result does not fit.
    pub const fn from_coins(coins: u64) -> Option<Amount> {
        match coins.checked_mul(COIN) {
            Some(units) => Some(Amount(units)),
            None => None,
        }
    }

    pub const fn base_units(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn checked_mul(self, factor: u64) -> Option<Amount> {
        self.0.checked_mul(factor).map(Amount)
    }

    /// Sums amounts, `None` on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(amounts: I) -> Option<Amount> {
        amounts
            .into_iter()
            .try_fold(Amount::ZERO, |total, next| total.checked_add(next))
    }

    /// Parses decimal coins ("1.5", "0.00000001", "12") exactly.
    pub fn parse_coins(text: &str) -> Result<Amount, ParseAmountError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ParseAmountError::Empty);
        }
        if text.starts_with('-') {
            return Err(ParseAmountError::Negative);
        }
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (text, ""),
        };
        let digits_only = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !digits_only(whole)
            || !digits_only(fraction)
            || (text.contains('.') && fraction.is_empty() && whole.is_empty())
        {
            return Err(ParseAmountError::NotANumber(text.to_string()));
        }
        if fraction.len() > DECIMALS {
            // Trailing zeros beyond 8 places carry no value; anything else
            // would be silently rounded, so it is an error.
            if fraction[DECIMALS..].bytes().any(|byte| byte != b'0') {
                return Err(ParseAmountError::TooPrecise);
            }
        }
        let whole_units = if whole.is_empty() {
            0
        } else {
            whole
                .parse::<u64>()
                .map_err(|_| ParseAmountError::Overflow)?
                .checked_mul(COIN)
                .ok_or(ParseAmountError::Overflow)?
        };
        let mut fraction_units = 0u64;
        for (place, digit) in fraction.bytes().take(DECIMALS).enumerate() {
            let scale = 10u64.pow((DECIMALS - 1 - place) as u32);
            fraction_units += u64::from(digit - b'0') * scale;
        }
        whole_units
            .checked_add(fraction_units)
            .map(Amount)
            .ok_or(ParseAmountError::Overflow)
    }

    /// Decimal coins with trailing zeros trimmed ("1.5", "0.00000001", "3").
    pub fn to_coins_string(self) -> String {
        let whole = self.0 / COIN;
        let fraction = self.0 % COIN;
        if fraction == 0 {
            return whole.to_string();
        }
        let fraction = format!("{fraction:08}");
        format!("{whole}.{}", fraction.trim_end_matches('0'))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.to_coins_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_coins_exactly() {
        assert_eq!(
            Amount::parse_coins("1.5").unwrap().base_units(),
            150_000_000
        );
        assert_eq!(Amount::parse_coins("0.00000001").unwrap().base_units(), 1);
        assert_eq!(Amount::parse_coins("12").unwrap().base_units(), 12 * COIN);
        assert_eq!(Amount::parse_coins(".5").unwrap().base_units(), COIN / 2);
        assert_eq!(Amount::parse_coins("1.").unwrap().base_units(), COIN);
        assert_eq!(
            Amount::parse_coins("1.000000010").unwrap().base_units(),
            COIN + 1
        );
        assert_eq!(
            Amount::parse_coins("1.000000001"),
            Err(ParseAmountError::TooPrecise)
        );
        assert_eq!(Amount::parse_coins("-1"), Err(ParseAmountError::Negative));
        assert!(Amount::parse_coins("1e5").is_err());
        assert!(Amount::parse_coins(".").is_err());
        assert!(Amount::parse_coins("").is_err());
        assert_eq!(
            Amount::parse_coins("184467440738"),
            Err(ParseAmountError::Overflow)
        );
    }

    #[test]
    fn formats_and_round_trips() {
        for units in [0, 1, 10, COIN, COIN + 1, 150_000_000, u64::MAX] {
            let amount = Amount::from_base_units(units);
            assert_eq!(
                Amount::parse_coins(&amount.to_coins_string()).unwrap(),
                amount
            );
        }
        assert_eq!(Amount::from_base_units(150_000_000).to_string(), "1.5");
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Amount::MAX.checked_add(Amount::from_base_units(1)), None);
        assert_eq!(Amount::ZERO.checked_sub(Amount::from_base_units(1)), None);
        assert_eq!(
            Amount::checked_sum([Amount::MAX, Amount::from_base_units(1)]),
            None
        );
    }
}
