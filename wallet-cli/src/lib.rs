//! gossip-ledger's wallet: keys kept encrypted on disk, transactions signed
//! locally, and a typed client for the node's HTTP API. It depends on the
//! `ledger` types without the `storage` feature (no sled) and never on the
//! `node` crate; it talks to a node only over HTTP.
//!
//! Map of the crate:
//! - [`keystore`]: one argon2id + XChaCha20-Poly1305 JSON file per key.
//! - [`known_chains`]: the genesis hash pinned per RPC URL on first use.
//! - [`password`]: password from `--password-file`, `LEDGER_PASSWORD` or a
//!   hidden prompt; never from the command line.
//! - [`who`]: the `WHO` argument (key name, address or `dev:I`).
//! - [`client`]: `Client`, blocking requests for every API route, with
//!   errors that separate "unreachable", "refused with a code" and "garbled".
//! - [`output`]: stdout data vs stderr messages, `NO_COLOR`, the spinner.
//! - [`cli`]: the commands and the mapping of failures to exit codes;
//!   `cli::main_with_args` is the whole program (the `wallet-cli` binary
//!   and `testnet wallet` both call it).

pub mod cli;
pub mod client;
pub mod keystore;
pub mod known_chains;
pub mod output;
pub mod password;
pub mod who;
