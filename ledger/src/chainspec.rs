//! Chain specs: everything that makes one chain differ from another (name,
//! address prefix, genesis, proof-of-work limits, block time, subsidy, block
//! size, minimum fee, allocations). Two are built in, `dev` and `regtest`,
//! sharing ten public dev accounts; others load from JSON files.

use crate::address::{self, Address};
use crate::amount::{Amount, COIN};
use crate::block::{Block, Header, BLOCK_VERSION};
use crate::encoding;
use crate::hash::{BlockHash, Hash256};
use crate::keys::SecretKey;
use crate::target::{Target, U256};
use crate::Height;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Number of built-in dev accounts.
pub const DEV_ACCOUNTS: usize = 10;

/// The largest `max_block_bytes` a chain file may set. Blocks relay as
/// compact blocks, and every buffer that holds a whole block (a P2P frame,
/// a decode, the orphan pool) is sized from the chain's own limit, so this
/// only keeps those buffers within what one node can hold.
pub const MAX_BLOCK_BYTES_LIMIT: u64 = 32 * 1024 * 1024;
/// Printed wherever dev secret keys are shown.
pub const DEV_KEYS_WARNING: &str =
    "WARNING: these dev keys are public; anyone can spend their coins. Never use them on a real network.";

/// A chain's parameters. Built-in ones come from `ChainSpec::builtin`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    pub name: String,
    pub address_prefix: String,
    /// Unix milliseconds.
    pub genesis_timestamp: u64,
    pub initial_target: Target,
    /// The easiest target retargeting may reach (the proof-of-work limit).
    pub easiest_target: Target,
    pub block_time_ms: u64,
    pub retarget: bool,
    pub block_subsidy: Amount,
    pub max_block_bytes: u64,
    pub min_fee: Amount,
    pub allocations: Vec<Allocation>,
}

/// A genesis balance. The address is bech32m text in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    pub address: String,
    pub balance: Amount,
}

/// Why a chain spec is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainSpecError {
    #[error("cannot read chain file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("chain file {path} is not a valid chain spec: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("invalid chain spec: {0}")]
    Invalid(String),
}

/// A dev account: its index, key and address.
#[derive(Clone, Debug)]
pub struct DevAccount {
    pub index: usize,
    pub secret_key: SecretKey,
    pub address: Address,
}

/// The secret key of dev account `index`: SHA-256 of
/// `gossip-ledger dev account {index}`.
pub fn dev_secret_key(index: usize) -> SecretKey {
    SecretKey::from_seed(&format!("gossip-ledger dev account {index}"))
}

/// All ten dev accounts.
pub fn dev_accounts() -> Vec<DevAccount> {
    (0..DEV_ACCOUNTS)
        .map(|index| {
            let secret_key = dev_secret_key(index);
            let address = Address::from_public_key(&secret_key.public_key());
            DevAccount {
                index,
                secret_key,
                address,
            }
        })
        .collect()
}

/// The initial `dev` target: about 2^256 / 20,000,000. The miner hashes
/// about 10 million headers a second on one core of this kind of machine
/// (BENCHMARKS.md), so one mining node meets it in roughly two seconds;
/// retargeting then follows the real hash rate.
fn dev_initial_target() -> Target {
    Target(U256::MAX.div_u64(20_000_000)).rounded()
}

impl ChainSpec {
    /// The built-in chain called `name` (`dev` or `regtest`).
    pub fn builtin(name: &str) -> Option<ChainSpec> {
        let allocations = dev_accounts()
            .iter()
            .map(|account| Allocation {
                address: account.address.to_bech32("dev"),
                balance: Amount::from_coins(1_000_000).expect("fits"),
            })
            .collect();
        let common = ChainSpec {
            name: name.to_string(),
            address_prefix: "dev".into(),
            genesis_timestamp: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            initial_target: Target::MAX,
            easiest_target: Target::MAX,
            block_time_ms: 2_000,
            retarget: false,
            block_subsidy: Amount::from_base_units(50 * COIN),
            max_block_bytes: 1024 * 1024,
            min_fee: Amount::from_base_units(1_000),
            allocations,
        };
        match name {
            "dev" => Some(ChainSpec {
                initial_target: dev_initial_target(),
                easiest_target: Target(U256::MAX.div_u64(1_000)).rounded(),
                retarget: true,
                ..common
            }),
            "regtest" => {
                // Half of all hashes meet it: a block takes two tries on average.
                let trivial = Target(U256::MAX.div_u64(2)).rounded();
                Some(ChainSpec {
                    initial_target: trivial,
                    easiest_target: trivial,
                    ..common
                })
            }
            _ => None,
        }
    }

    /// A built-in name or the path of a JSON chain file.
    pub fn load(name_or_path: &str) -> Result<ChainSpec, ChainSpecError> {
        if let Some(spec) = ChainSpec::builtin(name_or_path) {
            return Ok(spec);
        }
        ChainSpec::from_file(Path::new(name_or_path))
    }

    pub fn from_file(path: &Path) -> Result<ChainSpec, ChainSpecError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ChainSpecError::Read {
            path: display.clone(),
            source,
        })?;
        let spec: ChainSpec =
            serde_json::from_str(&text).map_err(|source| ChainSpecError::Parse {
                path: display,
                source,
            })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks internal consistency; built-in specs always pass.
    pub fn validate(&self) -> Result<(), ChainSpecError> {
        let invalid = |message: String| Err(ChainSpecError::Invalid(message));
        if self.name.is_empty() || self.name.len() > 32 {
            return invalid("name must be 1 to 32 characters".into());
        }
        if !address::validate_prefix(&self.address_prefix) {
            return invalid(format!(
                "address prefix {:?} must be lowercase letters and digits",
                self.address_prefix
            ));
        }
        if self.initial_target > self.easiest_target {
            return invalid("initial_target must not be easier than easiest_target".into());
        }
        if self.initial_target.rounded() != self.initial_target
            || self.easiest_target.rounded() != self.easiest_target
        {
            return invalid(
                "targets must be representable in compact form (use the value the node prints)"
                    .into(),
            );
        }
        if self.block_time_ms == 0 {
            return invalid("block_time_ms must be positive".into());
        }
        if !(1024..=MAX_BLOCK_BYTES_LIMIT).contains(&self.max_block_bytes) {
            return invalid("max_block_bytes must be between 1 KiB and 32 MiB".into());
        }
        let mut total = Amount::ZERO;
        let mut seen = std::collections::HashSet::new();
        for allocation in &self.allocations {
            let address =
                Address::parse(&allocation.address, &self.address_prefix).map_err(|error| {
                    ChainSpecError::Invalid(format!("allocation {}: {error}", allocation.address))
                })?;
            if !seen.insert(address) {
                return invalid(format!("allocation {} appears twice", allocation.address));
            }
            total = total
                .checked_add(allocation.balance)
                .ok_or_else(|| ChainSpecError::Invalid("allocations overflow".into()))?;
        }
        Ok(())
    }

    /// Allocations as addresses, in file order.
    pub fn allocation_entries(&self) -> Vec<(Address, Amount)> {
        self.allocations
            .iter()
            .map(|allocation| {
                let address = Address::parse(&allocation.address, &self.address_prefix)
                    .expect("allocations are validated when a spec loads");
                (address, allocation.balance)
            })
            .collect()
    }

    /// Sum of the genesis allocations.
    pub fn total_allocated(&self) -> Amount {
        Amount::checked_sum(
            self.allocation_entries()
                .into_iter()
                .map(|(_, balance)| balance),
        )
        .expect("allocations are validated when a spec loads")
    }

    /// The genesis block: no transactions; its merkle root commits to the
    /// whole spec, so chains with different parameters or allocations never
    /// share a genesis hash. It needs no proof-of-work.
    pub fn genesis_block(&self) -> Block {
        let commitment = Hash256::digest_parts(&[
            b"gossip-ledger/genesis/v1\0",
            &serde_json::to_vec(self).expect("a spec always serializes"),
        ]);
        Block {
            header: Header {
                version: BLOCK_VERSION,
                height: Height::ZERO,
                prev_hash: BlockHash::ZERO,
                merkle_root: commitment,
                timestamp: self.genesis_timestamp,
                bits: self.initial_target.to_compact(),
                nonce: 0,
                miner: Address::default(),
                reward: Amount::ZERO,
            },
            txs: Vec::new(),
        }
    }

    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis_block().hash()
    }

    /// Four bytes that open every P2P frame of this chain.
    pub fn network_magic(&self) -> [u8; 4] {
        let hash = self.genesis_hash();
        let bytes = hash.as_bytes();
        [bytes[0], bytes[1], bytes[2], bytes[3]]
    }

    /// Whether this is one of the chains with public dev keys and the
    /// `/v1/dev/mine` route.
    pub fn is_dev_chain(&self) -> bool {
        self.name == "dev" || self.name == "regtest"
    }

    pub fn format_address(&self, address: &Address) -> String {
        address.to_bech32(&self.address_prefix)
    }

    pub fn parse_address(&self, text: &str) -> Result<Address, address::AddressError> {
        Address::parse(text, &self.address_prefix)
    }

    /// The canonical bytes, for storing alongside a data dir.
    pub fn fingerprint(&self) -> Hash256 {
        Hash256::digest(&encoding::encode(&self.genesis_block().header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_specs_are_valid_and_distinct() {
        let dev = ChainSpec::builtin("dev").unwrap();
        let regtest = ChainSpec::builtin("regtest").unwrap();
        dev.validate().unwrap();
        regtest.validate().unwrap();
        assert_ne!(dev.genesis_hash(), regtest.genesis_hash());
        assert_eq!(
            dev.total_allocated(),
            Amount::from_coins(10_000_000).unwrap()
        );
        assert!(ChainSpec::builtin("main").is_none());
    }

    #[test]
    fn documented_example_chain_file_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example-chain.json");
        let spec = ChainSpec::load(path).unwrap();
        assert_eq!(spec.name, "mychain");
        assert!(!spec.is_dev_chain());
        assert_ne!(
            spec.genesis_hash(),
            ChainSpec::builtin("dev").unwrap().genesis_hash()
        );
        assert!(matches!(
            ChainSpec::load("/nonexistent/chain.json"),
            Err(ChainSpecError::Read { .. })
        ));
    }

    #[test]
    fn json_round_trip() {
        let dev = ChainSpec::builtin("dev").unwrap();
        let json = serde_json::to_string_pretty(&dev).unwrap();
        let back: ChainSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, dev);
        assert_eq!(back.genesis_hash(), dev.genesis_hash());
    }
}
