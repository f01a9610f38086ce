//! What replaces proof-of-work and users: the simulated chain's spec (its
//! own genesis, a target every hash meets, so the oracle alone decides when
//! blocks happen while validation runs unchanged and no real chain could
//! accept these blocks), and the wallets that send transfers.

use super::options::SimOptions;
use ledger::chainspec::Allocation;
use ledger::{Address, Amount, BlockHash, ChainSpec, SecretKey, Target, Transaction};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The simulated chain: regtest's rules with the run's block time, a
/// target every hash meets, and the wallets' balances.
pub fn sim_chain_spec(options: &SimOptions, wallets: &[Address]) -> ChainSpec {
    let base = ChainSpec::builtin("regtest").expect("regtest is built in");
    let balance = Amount::from_coins(1_000_000).expect("fits");
    ChainSpec {
        name: format!("sim-{}", options.seed),
        address_prefix: "sim".into(),
        initial_target: Target::MAX,
        easiest_target: Target::MAX,
        retarget: false,
        block_time_ms: options.block_time.as_millis() as u64,
        allocations: wallets
            .iter()
            .map(|address| Allocation {
                address: address.to_bech32("sim"),
                balance,
            })
            .collect(),
        ..base
    }
}

/// Funded accounts that take turns sending one coin to each other, each
/// tracking its next nonce.
pub struct Wallets {
    keys: Vec<SecretKey>,
    addresses: Vec<Address>,
    nonces: Vec<u64>,
    next: usize,
}

impl Wallets {
    pub fn new(count: usize) -> Wallets {
        let keys: Vec<SecretKey> = (0..count)
            .map(|index| SecretKey::from_seed(&format!("sim-wallet-{index}")))
            .collect();
        let addresses = keys
            .iter()
            .map(|key| Address::from_public_key(&key.public_key()))
            .collect();
        Wallets {
            keys,
            addresses,
            nonces: vec![0; count],
            next: 0,
        }
    }

    pub fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// The next sender's transfer to a wallet drawn at random, at the
    /// minimum fee. Call `sent` once a node took it.
    pub fn next_tx(
        &self,
        genesis: &BlockHash,
        min_fee: Amount,
        rng: &mut ChaCha8Rng,
    ) -> Transaction {
        let sender = self.next;
        let to = self.addresses[rng.gen_range(0..self.addresses.len())];
        Transaction::new_signed(
            &self.keys[sender],
            genesis,
            to,
            Amount::from_coins(1).expect("fits"),
            min_fee,
            self.nonces[sender],
            String::new(),
        )
    }

    /// The last tx was admitted: the sender's nonce moves on, and the next
    /// sender takes its turn.
    pub fn sent(&mut self) {
        self.nonces[self.next] += 1;
        self.next = (self.next + 1) % self.keys.len();
    }

    /// The last tx was refused: its nonce stays free, the next sender
    /// takes its turn.
    pub fn refused(&mut self) {
        self.next = (self.next + 1) % self.keys.len();
    }
}
