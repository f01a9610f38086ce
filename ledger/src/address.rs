//! `Address`: the first 20 bytes of SHA-256(public key), written as bech32m
//! with the chain's prefix and a leading version symbol `q` (version 0), so
//! a dev-chain address reads `dev1q...`. The checksum makes a mistyped
//! address fail to parse instead of paying a stranger.

use crate::hash::Hash256;
use crate::keys::PublicKey;
use bech32::{Bech32m, Fe32, Hrp};
use std::fmt;

/// Address version carried as the first data symbol (`q`).
const ADDRESS_VERSION: u8 = 0;

/// A 20-byte account address.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 20]);

/// Why an address string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    #[error("not a valid address (bad characters or checksum; check for a typo): {0}")]
    Invalid(String),
    #[error("address is for prefix {found:?}, but this chain uses {expected:?}")]
    WrongPrefix { expected: String, found: String },
    #[error("unsupported address version or length")]
    BadPayload,
}

impl Address {
    pub fn from_public_key(public_key: &PublicKey) -> Address {
        let digest = Hash256::digest(public_key.as_bytes());
        let mut bytes = [0u8; 20];
        bytes.copy_from_slice(&digest.0[..20]);
        Address(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Bech32m text with the given human-readable prefix.
    pub fn to_bech32(&self, prefix: &str) -> String {
        use bech32::{ByteIterExt, Fe32IterExt};
        let hrp = Hrp::parse(prefix).expect("chain prefixes are validated when a spec loads");
        self.0
            .iter()
            .copied()
            .bytes_to_fes()
            .with_checksum::<Bech32m>(&hrp)
            .with_witness_version(Fe32::Q)
            .chars()
            .collect()
    }

    /// Parses bech32m text, requiring `prefix` and a valid checksum.
    pub fn parse(text: &str, prefix: &str) -> Result<Address, AddressError> {
        let (found_prefix, bytes) = Self::parse_any_prefix(text)?;
        if !found_prefix.eq_ignore_ascii_case(prefix) {
            return Err(AddressError::WrongPrefix {
                expected: prefix.to_string(),
                found: found_prefix,
            });
        }
        Ok(bytes)
    }

    /// Parses bech32m text with whatever prefix it carries.
    pub fn parse_any_prefix(text: &str) -> Result<(String, Address), AddressError> {
        use bech32::primitives::decode::CheckedHrpstring;
        let checked = CheckedHrpstring::new::<Bech32m>(text.trim())
            .map_err(|_| AddressError::Invalid(text.to_string()))?;
        let prefix = checked.hrp().to_lowercase();
        let mut symbols = checked.fe32_iter::<std::vec::IntoIter<u8>>();
        let version = symbols.next().ok_or(AddressError::BadPayload)?;
        if version.to_u8() != ADDRESS_VERSION {
            return Err(AddressError::BadPayload);
        }
        use bech32::Fe32IterExt;
        let payload: Vec<u8> = symbols.fes_to_bytes().collect();
        let bytes: [u8; 20] = payload.try_into().map_err(|_| AddressError::BadPayload)?;
        // Reject non-canonical padding: re-encoding must give the same text.
        let address = Address(bytes);
        if address.to_bech32(&prefix) != text.trim().to_lowercase() {
            return Err(AddressError::Invalid(text.to_string()));
        }
        Ok((prefix, address))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Address({})", hex::encode(self.0))
    }
}

/// Checks that `prefix` can serve as an address prefix.
pub fn validate_prefix(prefix: &str) -> bool {
    Hrp::parse(prefix).is_ok()
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_typo_detection() {
        let address = Address([7u8; 20]);
        let text = address.to_bech32("dev");
        assert!(text.starts_with("dev1q"), "{text}");
        assert_eq!(Address::parse(&text, "dev").unwrap(), address);
        assert_eq!(
            Address::parse(&text.to_uppercase(), "dev").unwrap(),
            address
        );
        // Change one character: the checksum must catch it.
        for position in 5..text.len() {
            let mut chars: Vec<char> = text.chars().collect();
            chars[position] = if chars[position] == 'q' { 'p' } else { 'q' };
            let typo: String = chars.into_iter().collect();
            assert!(Address::parse(&typo, "dev").is_err(), "{typo}");
        }
        assert!(matches!(
            Address::parse(&address.to_bech32("tst"), "dev"),
            Err(AddressError::WrongPrefix { .. })
        ));
    }
}
