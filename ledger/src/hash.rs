//! SHA-256 and the 32-byte hash newtypes (`Hash256`, `BlockHash`, `TxId`).
//! They are bytes in the canonical encoding and 64 lowercase hex characters
//! in JSON and in logs.

use crate::encoding::{Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A plain SHA-256 output.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash256(pub [u8; 32]);

/// Why a hex hash could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hex characters")]
pub struct ParseHashError;

impl Hash256 {
    pub const ZERO: Hash256 = Hash256([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn digest(bytes: &[u8]) -> Hash256 {
        Hash256(Sha256::digest(bytes).into())
    }

    /// SHA-256 over several parts, as if concatenated.
    pub fn digest_parts(parts: &[&[u8]]) -> Hash256 {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash256(hasher.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Hash256 {
    type Err = ParseHashError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 64 {
            return Err(ParseHashError);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ParseHashError)?;
        Ok(Hash256(bytes))
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl Serialize for Hash256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Hash256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! hash_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Hash256);

        impl $name {
            pub const ZERO: $name = $name(Hash256::ZERO);
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0 .0
            }
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
        }

        impl FromStr for $name {
            type Err = ParseHashError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                text.parse().map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, formatter)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

hash_newtype!(
    /// Hash of a block's canonical header encoding.
    BlockHash
);
hash_newtype!(
    /// Hash of a transaction's canonical encoding, signature included.
    TxId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_json() {
        let hash = Hash256::digest(b"abc");
        assert_eq!(
            hash.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let txid = TxId(hash);
        let json = serde_json::to_string(&txid).unwrap();
        assert_eq!(json, format!("\"{}\"", hash.to_hex()));
        assert_eq!(serde_json::from_str::<TxId>(&json).unwrap(), txid);
        assert!("zz".parse::<TxId>().is_err());
        assert!(format!("{}0", hash).parse::<BlockHash>().is_err());
    }
}
