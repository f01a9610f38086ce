//! The `wallet-cli` command line: clap definitions, one function per
//! command, and the single place where failures become exit codes (SPEC):
//! 0 ok, 2 usage, 3 not found, 4 rejected by the node (its code printed),
//! 5 node unreachable or timed out, 6 keystore or password problem, 1
//! anything else. Everything a user typed is checked before the node is
//! contacted or a password asked for, so a mistyped address exits 2 with
//! nothing sent. Data goes to stdout (JSON with `--json`), messages to
//! stderr. A key name that is not in the keystore is "not found" (3).
//!
//! `balance` reports `pending_balance`: the confirmed balance minus the
//! amount and fee of this account's pending outgoing transactions plus the
//! amounts of its pending incoming ones (a transfer to itself counts both
//! ways), floored at zero; it is what the balance will be once everything
//! in the mempool confirms.
//!
//! `send` trusts the node only as far as it can check it: a fee the node
//! suggests (its `min_fee`) above `--max-fee` (default
//! `DEFAULT_MAX_FEE_COINS`) is refused with code `fee_above_cap` unless
//! `--fee` is given; and the genesis hash the transaction is signed for
//! must be the one pinned for that `--rpc-url` (`known_chains`; pinned on
//! first use), or the one `--chain-genesis` names, else `chain_changed`.
//! Both refusals exit 4 and send nothing.
//!
//! `main_with_args` is the whole program, so `testnet wallet ...` runs the
//! same code as the `wallet-cli` binary.

use crate::client::{Client, ClientError, DEFAULT_RPC_URL};
use crate::keystore::{self, KeyInfo, Keystore, KeystoreError};
use crate::known_chains::{KnownChains, KnownChainsError};
use crate::output::{coins, Output};
use crate::password::{self, PasswordError, Purpose};
use crate::who::{Who, WhoError};
use clap::{ArgGroup, Args, Parser, Subcommand};
use ledger::chainspec::{dev_accounts, dev_secret_key, DEV_ACCOUNTS, DEV_KEYS_WARNING};
use ledger::json::{TxJson, TxLookupJson, TxStatus};
use ledger::{Address, Amount, BlockHash, SecretKey, Transaction, TxId};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How many history entries `balance` reads to find pending transactions.
const PENDING_SCAN_LIMIT: u32 = 1000;
/// The highest fee `send` accepts from the node without `--fee`: 0.001
/// coins, a hundred times the built-in chains' minimum fee, and a small
/// loss should a node lie.
pub const DEFAULT_MAX_FEE_COINS: &str = "0.001";
/// How often `send --wait` asks the node about the transaction.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Parser)]
#[command(
    name = "wallet-cli",
    version,
    about = "gossip-ledger wallet: encrypted keys, signing and sending",
    after_help = "WHO is a key name, an address, or dev:I (public dev account I).\n\
                  Exit codes: 0 ok, 2 usage, 3 not found, 4 rejected by the node, \
                  5 node unreachable or timed out, 6 keystore or password problem, 1 other."
)]
struct Cli {
    /// The node's RPC URL.
    #[arg(long, env = "LEDGER_RPC_URL", default_value = DEFAULT_RPC_URL, global = true, value_name = "URL")]
    rpc_url: String,

    /// The keystore directory [default: $XDG_DATA_HOME/gossip-ledger/keystore or ~/.local/share/gossip-ledger/keystore].
    #[arg(long, env = "LEDGER_KEYSTORE", global = true, value_name = "DIR")]
    keystore: Option<PathBuf>,

    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,

    /// Read the keystore password from the first line of FILE (for scripts;
    /// LEDGER_PASSWORD also works). Without either, a hidden prompt asks.
    #[arg(long, env = "LEDGER_PASSWORD_FILE", global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,

    /// The chain's address prefix (both built-in chains use `dev`).
    #[arg(
        long,
        env = "LEDGER_ADDRESS_PREFIX",
        default_value = "dev",
        global = true,
        value_name = "PREFIX"
    )]
    address_prefix: String,

    /// Seconds one request to the node may take before giving up (exit 5).
    #[arg(long, env = "LEDGER_RPC_TIMEOUT", default_value_t = 10, global = true, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    rpc_timeout: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new key, stored encrypted; prints its name and address.
    New {
        /// 1 to 32 letters, digits, '-', '_' or '.'.
        name: String,
    },
    /// Store an existing secret key (or a public dev key) under NAME.
    Import(ImportArgs),
    /// Names and addresses of the stored keys.
    List,
    /// The address of WHO (no node needed).
    Address { who: String },
    /// Confirmed and pending balance and nonce of WHO.
    Balance { who: String },
    /// Sign a transfer locally and submit it.
    Send(SendArgs),
    /// Look up a transaction by id.
    Tx { txid: String },
    /// Transactions sent or received by WHO, newest first, pending included.
    History {
        who: String,
        /// How many transactions to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// The node's status.
    Status,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["dev", "secret_file"])))]
struct ImportArgs {
    name: String,
    /// Import dev account I (its key is public: for testing only).
    #[arg(long, value_name = "I", value_parser = clap::value_parser!(u8).range(0..DEV_ACCOUNTS as i64))]
    dev: Option<u8>,
    /// A file holding the 32-byte secret key as 64 hex characters.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SendArgs {
    /// The paying account: a key name, dev:I, or the address of a stored key.
    #[arg(long, value_name = "WHO")]
    from: String,
    /// The recipient: a key name, an address or dev:I.
    #[arg(long, value_name = "WHO")]
    to: String,
    /// Decimal coins, e.g. 1.5 or 0.00000001.
    #[arg(long, value_name = "COINS", value_parser = parse_amount, allow_negative_numbers = true)]
    amount: Amount,
    /// Decimal coins [default: the node's minimum fee, up to --max-fee].
    #[arg(long, value_name = "COINS", value_parser = parse_amount, allow_negative_numbers = true)]
    fee: Option<Amount>,
    /// The most the node's suggested fee may be; above it `send` refuses
    /// (exit 4, fee_above_cap). Not used with --fee.
    #[arg(long, value_name = "COINS", value_parser = parse_amount, default_value = DEFAULT_MAX_FEE_COINS)]
    max_fee: Amount,
    /// Accept this genesis hash for --rpc-url (and pin it), when the node
    /// reports another than the one pinned on first use.
    #[arg(long, value_name = "HASH", value_parser = parse_genesis)]
    chain_genesis: Option<BlockHash>,
    /// [default: the sender's next nonce, from the node].
    #[arg(long, value_name = "N")]
    nonce: Option<u64>,
    /// Up to 64 bytes of text stored with the transaction.
    #[arg(long, value_name = "TEXT")]
    memo: Option<String>,
    /// Wait until the transaction is in a block (or --timeout passes: exit 5).
    #[arg(long)]
    wait: bool,
    /// Seconds --wait waits.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
    /// Sign and print the transaction, submit nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Amounts are decimal coins, parsed exactly (no floats).
pub fn parse_amount(text: &str) -> Result<Amount, String> {
    Amount::parse_coins(text).map_err(|error| error.to_string())
}

fn parse_genesis(text: &str) -> Result<BlockHash, String> {
    text.trim()
        .parse()
        .map_err(|_| "expected a genesis hash: 64 hex characters".to_string())
}

/// The classes of failure, one per exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Usage,
    NotFound,
    Rejected,
    Unreachable,
    Keystore,
    Other,
}

impl FailureKind {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Other => 1,
            FailureKind::Usage => 2,
            FailureKind::NotFound => 3,
            FailureKind::Rejected => 4,
            FailureKind::Unreachable => 5,
            FailureKind::Keystore => 6,
        }
    }
}

/// A failed command: its class, a stable code (the node's code for node
/// errors) and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub code: String,
    pub message: String,
}

impl Failure {
    fn new(kind: FailureKind, code: &str, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            code: code.to_string(),
            message: message.into(),
        }
    }

    fn usage(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Usage, "usage", message)
    }

    fn keystore(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Keystore, "keystore", message)
    }

    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        let message = error.to_string();
        match &error {
            ClientError::BadUrl { .. } => Failure::usage(message),
            ClientError::Unreachable { .. } => Failure::new(
                FailureKind::Unreachable,
                "unreachable",
                format!("{message} (is the node running? set --rpc-url or LEDGER_RPC_URL)"),
            ),
            ClientError::Timeout { .. } => {
                Failure::new(FailureKind::Unreachable, "timeout", message)
            }
            ClientError::Api { code, .. } if code == "not_found" => {
                Failure::new(FailureKind::NotFound, code, message)
            }
            ClientError::Api { code, .. } => Failure::new(FailureKind::Rejected, code, message),
            _ => Failure::new(FailureKind::Other, "bad_response", message),
        }
    }
}

impl From<KeystoreError> for Failure {
    fn from(error: KeystoreError) -> Failure {
        let message = error.to_string();
        match error {
            KeystoreError::NotFound { .. } => {
                Failure::new(FailureKind::NotFound, "not_found", message)
            }
            KeystoreError::BadName(_) => Failure::usage(message),
            KeystoreError::WrongPassword(_) => {
                Failure::new(FailureKind::Keystore, "wrong_password", message)
            }
            _ => Failure::keystore(message),
        }
    }
}

impl From<KnownChainsError> for Failure {
    fn from(error: KnownChainsError) -> Failure {
        Failure::keystore(error.to_string())
    }
}

impl From<PasswordError> for Failure {
    fn from(error: PasswordError) -> Failure {
        Failure::new(FailureKind::Keystore, "password", error.to_string())
    }
}

impl From<WhoError> for Failure {
    fn from(error: WhoError) -> Failure {
        Failure::usage(error.to_string())
    }
}

/// Runs the wallet with `args` (the first item is the program name, as in
/// `std::env::args_os()`) and returns its exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version print to stdout and succeed; every other
            // parse error is a usage error (2).
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    let output = Output::new(cli.json);
    match Context::new(&cli, output).and_then(|context| context.run(&cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            output.error(&failure.message);
            if output.json {
                output.json_value(
                    &json!({"error": {"code": failure.code, "message": failure.message}}),
                );
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Validated global options; nothing below reads flags.
struct Context {
    output: Output,
    rpc_url: String,
    rpc_timeout: Duration,
    keystore_dir: Option<PathBuf>,
    password_file: Option<PathBuf>,
    prefix: String,
}

/// A resolved account: its address and, when it has one, a display name.
struct Account {
    label: String,
    name: Option<String>,
    address: Address,
}

impl Context {
    fn new(cli: &Cli, output: Output) -> Result<Context, Failure> {
        if !ledger::address::validate_prefix(&cli.address_prefix) {
            return Err(Failure::usage(format!(
                "invalid address prefix {:?}: use lowercase letters and digits",
                cli.address_prefix
            )));
        }
        Ok(Context {
            output,
            rpc_url: cli.rpc_url.clone(),
            rpc_timeout: Duration::from_secs(cli.rpc_timeout),
            keystore_dir: cli.keystore.clone().or_else(keystore::default_dir),
            password_file: cli.password_file.clone(),
            prefix: cli.address_prefix.clone(),
        })
    }

    fn run(&self, command: &Command) -> Result<(), Failure> {
        match command {
            Command::New { name } => self.new_key(name),
            Command::Import(args) => self.import(args),
            Command::List => self.list(),
            Command::Address { who } => self.address(who),
            Command::Balance { who } => self.balance(who),
            Command::Send(args) => self.send(args),
            Command::Tx { txid } => self.tx(txid),
            Command::History { who, limit } => self.history(who, *limit),
            Command::Status => self.status(),
        }
    }

    fn keystore(&self) -> Result<Keystore, Failure> {
        self.keystore_dir.clone().map(Keystore::new).ok_or_else(|| {
            Failure::keystore(
                "no keystore directory: set --keystore or LEDGER_KEYSTORE (HOME is not set)",
            )
        })
    }

    fn client(&self) -> Result<Client, Failure> {
        Ok(Client::new(&self.rpc_url, self.rpc_timeout)?)
    }

    fn format(&self, address: &Address) -> String {
        address.to_bech32(&self.prefix)
    }

    /// Resolves WHO to an address: dev accounts and addresses need nothing,
    /// key names only the clear part of their file.
    fn resolve(&self, text: &str) -> Result<Account, Failure> {
        let who = Who::parse(text, &self.prefix)?;
        self.resolve_who(&who)
    }

    fn resolve_who(&self, who: &Who) -> Result<Account, Failure> {
        let label = who.label(&self.prefix);
        match who {
            Who::Dev(index) => Ok(Account {
                name: Some(label.clone()),
                label,
                address: dev_accounts()[*index].address,
            }),
            Who::Address(address) => Ok(Account {
                // Name the key when the address is one of ours; a keystore
                // we cannot read does not stop an address lookup.
                name: self
                    .keystore()
                    .ok()
                    .and_then(|store| store.find_by_address(address).ok().flatten())
                    .map(|key| key.name),
                label,
                address: *address,
            }),
            Who::Key(name) => {
                let info = self.keystore()?.info(name)?;
                Ok(Account {
                    name: Some(info.name),
                    label,
                    address: info.address,
                })
            }
        }
    }

    fn print_key(&self, info: &KeyInfo) {
        let address = self.format(&info.address);
        if self.output.json {
            self.output
                .json_value(&json!({"name": info.name, "address": address}));
        } else {
            self.output
                .fields(&[("name", info.name.clone()), ("address", address)]);
        }
    }

    fn new_key(&self, name: &str) -> Result<(), Failure> {
        let store = self.keystore()?;
        keystore::validate_name(name)?;
        if store.path_of(name).exists() {
            return Err(Failure::keystore(format!(
                "a key named {name:?} already exists in {}",
                store.dir().display()
            )));
        }
        let password = password::obtain(self.password_file.as_deref(), Purpose::NewKey(name))?;
        let secret = SecretKey::generate();
        let info = store.store(name, &secret, password.as_bytes(), &self.prefix)?;
        self.output.success(&format!(
            "Created key {name}, stored encrypted in {}",
            info.path.display()
        ));
        self.print_key(&info);
        Ok(())
    }

    fn import(&self, args: &ImportArgs) -> Result<(), Failure> {
        let store = self.keystore()?;
        keystore::validate_name(&args.name)?;
        if store.path_of(&args.name).exists() {
            return Err(Failure::keystore(format!(
                "a key named {:?} already exists in {}",
                args.name,
                store.dir().display()
            )));
        }
        let secret = match (&args.dev, &args.secret_file) {
            (Some(index), _) => {
                self.output.notice(DEV_KEYS_WARNING);
                dev_secret_key(usize::from(*index))
            }
            (None, Some(path)) => read_secret_file(path)?,
            (None, None) => return Err(Failure::usage("give --dev I or --secret-file FILE")),
        };
        let password =
            password::obtain(self.password_file.as_deref(), Purpose::NewKey(&args.name))?;
        let info = store.store(&args.name, &secret, password.as_bytes(), &self.prefix)?;
        self.output.success(&format!(
            "Imported key {}, stored encrypted in {}",
            args.name,
            info.path.display()
        ));
        self.print_key(&info);
        Ok(())
    }

    fn list(&self) -> Result<(), Failure> {
        let store = self.keystore()?;
        let mut keys = Vec::new();
        for entry in store.scan()? {
            match entry {
                Ok(key) => keys.push(key),
                Err(error) => self.output.warn(&error.to_string()),
            }
        }
        if self.output.json {
            let entries: Vec<Value> = keys
                .iter()
                .map(|key| json!({"name": key.name, "address": self.format(&key.address)}))
                .collect();
            self.output.json_value(&Value::Array(entries));
            return Ok(());
        }
        if keys.is_empty() {
            self.output.info(&format!(
                "No keys in {}; create one with `wallet-cli new NAME`.",
                store.dir().display()
            ));
        }
        let width = keys.iter().map(|key| key.name.len()).max().unwrap_or(0);
        for key in &keys {
            self.output.line(&format!(
                "{:<width$}  {}",
                key.name,
                self.format(&key.address)
            ));
        }
        Ok(())
    }

    fn address(&self, who: &str) -> Result<(), Failure> {
        let who = Who::parse(who, &self.prefix)?;
        let account = self.resolve_who(&who)?;
        let address = self.format(&account.address);
        if self.output.json {
            self.output
                .json_value(&json!({"name": account.name, "address": address}));
        } else {
            if let Who::Dev(_) = who {
                self.output.notice(DEV_KEYS_WARNING);
            }
            self.output.line(&address);
        }
        Ok(())
    }

    fn balance(&self, who: &str) -> Result<(), Failure> {
        let account = self.resolve(who)?;
        let client = self.client()?;
        let address = self.format(&account.address);
        let state = client.account(&address)?;
        let history = client.account_txs(&address, PENDING_SCAN_LIMIT)?;
        let pending_balance =
            pending_balance(state.balance, &account.address, &history, &self.prefix);
        if self.output.json {
            let mut value = serde_json::to_value(&state)
                .map_err(|error| Failure::new(FailureKind::Other, "internal", error.to_string()))?;
            value["pending_balance"] = json!(pending_balance);
            self.output.json_value(&value);
        } else {
            let pending_count = state.next_nonce.saturating_sub(state.nonce);
            self.output.fields(&[
                ("account", account.label),
                ("address", state.address),
                ("balance", coins(state.balance)),
                ("pending balance", coins(pending_balance)),
                (
                    "nonce",
                    format!(
                        "{} (next {}, {} pending)",
                        state.nonce, state.next_nonce, pending_count
                    ),
                ),
            ]);
        }
        Ok(())
    }

    /// The secret of the paying account: dev keys directly, stored keys
    /// after the password.
    fn signing_key(&self, who: &Who) -> Result<SecretKey, Failure> {
        let name = match who {
            Who::Dev(index) => return Ok(dev_secret_key(*index)),
            Who::Key(name) => name.clone(),
            Who::Address(address) => {
                let found = self.keystore()?.find_by_address(address)?;
                match found {
                    Some(key) => key.name,
                    None => {
                        return Err(Failure::usage(format!(
                            "no stored key has address {}; send from a key name or dev:I",
                            self.format(address)
                        )))
                    }
                }
            }
        };
        let store = self.keystore()?;
        // Fail on a missing key before asking for a password.
        store.info(&name)?;
        let password: Zeroizing<String> =
            password::obtain(self.password_file.as_deref(), Purpose::Unlock(&name))?;
        Ok(store.unlock(&name, password.as_bytes())?)
    }

    fn send(&self, args: &SendArgs) -> Result<(), Failure> {
        // Everything the user typed is checked before the node is asked
        // anything or a password is read.
        let from_who = Who::parse(&args.from, &self.prefix)?;
        let to = self.resolve(&args.to)?;
        let from = self.resolve_who(&from_who)?;
        let memo = args.memo.clone().unwrap_or_default();
        if memo.len() > ledger::tx::MAX_MEMO_BYTES {
            return Err(Failure::usage(format!(
                "--memo is {} bytes; at most {} are allowed",
                memo.len(),
                ledger::tx::MAX_MEMO_BYTES
            )));
        }
        if args.amount == Amount::ZERO {
            return Err(Failure::usage("--amount must be greater than zero"));
        }
        if let Some(fee) = args.fee {
            if args.amount.checked_add(fee).is_none() {
                return Err(Failure::usage("--amount plus --fee overflows"));
            }
        }
        if args.wait && args.dry_run {
            return Err(Failure::usage("--wait and --dry-run cannot be combined"));
        }

        // The key is unlocked before the node is contacted: a wrong
        // password then costs no network round trip and sends nothing.
        let key = self.signing_key(&from_who)?;
        if Address::from_public_key(&key.public_key()) != from.address {
            return Err(Failure::keystore(
                "the stored key does not match its address",
            ));
        }
        let client = self.client()?;
        let status = client.status()?;
        self.check_genesis(status.genesis_hash, args.chain_genesis)?;
        let fee = match args.fee {
            Some(fee) => fee,
            None if status.min_fee > args.max_fee => {
                return Err(Failure::new(
                    FailureKind::Rejected,
                    "fee_above_cap",
                    format!(
                        "the node asks a fee of {}, above --max-fee {}; nothing was sent                          (pass --fee to pay a fee of your choice, or raise --max-fee)",
                        coins(status.min_fee),
                        coins(args.max_fee)
                    ),
                ))
            }
            None => status.min_fee,
        };
        let nonce = match args.nonce {
            Some(nonce) => nonce,
            None => client.account(&self.format(&from.address))?.next_nonce,
        };
        let tx = Transaction::new_signed(
            &key,
            &status.genesis_hash,
            to.address,
            args.amount,
            fee,
            nonce,
            memo,
        );
        drop(key);
        tx.check_format()
            .map_err(|error| Failure::usage(error.to_string()))?;
        let txid = tx.txid();

        if args.dry_run {
            return self.print_dry_run(&tx);
        }

        self.output.info(&format!(
            "Sending {} from {} to {}, fee {}, nonce {}",
            coins(tx.amount),
            from.label,
            to.label,
            coins(tx.fee),
            tx.nonce
        ));
        let accepted = client.submit_transaction(&tx)?;
        if accepted != txid {
            return Err(Failure::new(
                FailureKind::Other,
                "bad_response",
                format!("the node reported txid {accepted}, expected {txid}"),
            ));
        }
        let mut result = json!({
            "txid": txid,
            "from": self.format(&from.address),
            "to": self.format(&to.address),
            "amount": tx.amount,
            "fee": tx.fee,
            "nonce": tx.nonce,
        });
        if !args.wait {
            if self.output.json {
                self.output.json_value(&result);
            } else {
                self.output.line(&txid.to_hex());
            }
            return Ok(());
        }
        let lookup = self.wait_confirmed(&client, &txid, Duration::from_secs(args.timeout))?;
        let (block_hash, block_height) = match (lookup.block_hash, lookup.block_height) {
            (Some(hash), Some(height)) => (hash, height),
            _ => {
                return Err(Failure::new(
                    FailureKind::Other,
                    "bad_response",
                    "the node reported the tx confirmed without a block",
                ))
            }
        };
        if self.output.json {
            result["block_hash"] = json!(block_hash);
            result["block_height"] = json!(block_height);
            self.output.json_value(&result);
        } else {
            self.output
                .success(&format!("Confirmed in block {block_height}"));
            self.output.line(&txid.to_hex());
            self.output
                .line(&format!("block {block_height} {block_hash}"));
        }
        Ok(())
    }

    /// Refuses to sign for a genesis other than the one pinned for this
    /// `--rpc-url` (or named by `--chain-genesis`), and pins it on first
    /// use. Without a keystore directory (no HOME) nothing can be pinned:
    /// then only `--chain-genesis` is checked, and a warning says so.
    fn check_genesis(&self, reported: BlockHash, named: Option<BlockHash>) -> Result<(), Failure> {
        let url = &self.rpc_url;
        if let Some(named) = named {
            if named != reported {
                return Err(Failure::new(
                    FailureKind::Rejected,
                    "chain_changed",
                    format!(
                        "the node at {url} reports genesis {reported}, not the --chain-genesis {named}; nothing was sent"
                    ),
                ));
            }
        }
        let Some(dir) = &self.keystore_dir else {
            if named.is_none() {
                self.output.warn(
                    "no keystore directory, so the chain's genesis hash cannot be pinned                      (set --keystore, or pass --chain-genesis)",
                );
            }
            return Ok(());
        };
        let mut known = KnownChains::load(dir)?;
        match known.get(url) {
            Some(pinned) if pinned == reported => Ok(()),
            Some(pinned) if named.is_none() => Err(Failure::new(
                FailureKind::Rejected,
                "chain_changed",
                format!(
                    "the node at {url} now reports genesis {reported}, but genesis {pinned}                      was pinned for it on first use: it serves another chain; nothing was                      sent (if you meant to switch chains, pass --chain-genesis {reported})"
                ),
            )),
            previous => {
                known.pin(url, reported)?;
                if previous.is_none() {
                    self.output.info(&format!(
                        "First use of {url}: pinned its chain's genesis {reported}"
                    ));
                }
                Ok(())
            }
        }
    }

    /// Polls `GET /v1/txs/{txid}` until the transaction is confirmed or the
    /// deadline passes (exit 5). Brief outages of the node are ridden out.
    fn wait_confirmed(
        &self,
        client: &Client,
        txid: &TxId,
        timeout: Duration,
    ) -> Result<TxLookupJson, Failure> {
        let deadline = Instant::now() + timeout;
        let mut spinner = self
            .output
            .spinner(format!("waiting for {} to confirm", &txid.to_hex()[..12]));
        loop {
            spinner.tick();
            match client.tx(txid) {
                Ok(lookup) if lookup.status == TxStatus::Confirmed => {
                    spinner.finish();
                    return Ok(lookup);
                }
                Ok(lookup) if lookup.status == TxStatus::Dropped => {
                    spinner.finish();
                    return Err(Failure::new(
                        FailureKind::Rejected,
                        "dropped",
                        format!(
                            "the node dropped {txid} from its mempool ({}); it will not confirm unless sent again",
                            lookup.reason.as_deref().unwrap_or("no reason given")
                        ),
                    ));
                }
                Ok(_) => {}
                Err(error) if error.is_unreachable() || error.api_code() == Some("not_found") => {}
                Err(error) => return Err(error.into()),
            }
            if Instant::now() >= deadline {
                spinner.finish();
                return Err(Failure::new(
                    FailureKind::Unreachable,
                    "timeout",
                    format!(
                        "{txid} was submitted but not confirmed within {}s; it may still confirm (check with `wallet-cli tx {txid}`)",
                        timeout.as_secs()
                    ),
                ));
            }
            std::thread::sleep(
                WAIT_POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }

    fn print_dry_run(&self, tx: &Transaction) -> Result<(), Failure> {
        let raw = hex::encode(ledger::encoding::encode(tx));
        let object = tx_json(tx, &self.prefix);
        if self.output.json {
            let mut value = serde_json::to_value(&object)
                .map_err(|error| Failure::new(FailureKind::Other, "internal", error.to_string()))?;
            value["raw"] = json!(raw);
            self.output.json_value(&value);
        } else {
            self.output.fields(&[
                ("txid", tx.txid().to_hex()),
                ("from", self.format(&tx.sender())),
                ("to", self.format(&tx.to)),
                ("amount", coins(tx.amount)),
                ("fee", coins(tx.fee)),
                ("nonce", tx.nonce.to_string()),
                ("memo", tx.memo.clone()),
                ("signature", hex::encode(tx.signature.0)),
                ("raw", raw),
            ]);
        }
        self.output.info("Dry run: nothing was submitted.");
        Ok(())
    }

    fn tx(&self, txid: &str) -> Result<(), Failure> {
        let txid: TxId = txid.trim().parse().map_err(|_| {
            Failure::usage(format!(
                "{txid:?} is not a transaction id (64 hex characters)"
            ))
        })?;
        let lookup = self.client()?.tx(&txid)?;
        if self.output.json {
            self.output.json_value(&to_json(&lookup)?);
            return Ok(());
        }
        let status = match (lookup.status, lookup.block_height) {
            (TxStatus::Confirmed, Some(height)) => {
                format!(
                    "confirmed in block {height} ({} confirmations)",
                    lookup.confirmations
                )
            }
            (TxStatus::Dropped, _) => format!(
                "dropped ({})",
                lookup.reason.as_deref().unwrap_or("no reason given")
            ),
            _ => "pending".to_string(),
        };
        let mut rows = vec![
            (
                "txid",
                lookup
                    .tx
                    .txid
                    .map(|id| id.to_hex())
                    .unwrap_or_else(|| txid.to_hex()),
            ),
            ("status", status),
        ];
        if let Some(hash) = lookup.block_hash {
            rows.push(("block hash", hash.to_hex()));
        }
        rows.extend([
            ("from", lookup.tx.from.clone().unwrap_or_default()),
            ("to", lookup.tx.to.clone()),
            ("amount", coins(lookup.tx.amount)),
            ("fee", coins(lookup.tx.fee)),
            ("nonce", lookup.tx.nonce.to_string()),
        ]);
        if let Some(memo) = &lookup.tx.memo {
            rows.push(("memo", memo.clone()));
        }
        self.output.fields(&rows);
        Ok(())
    }

    fn history(&self, who: &str, limit: u32) -> Result<(), Failure> {
        let account = self.resolve(who)?;
        let address = self.format(&account.address);
        let entries = self.client()?.account_txs(&address, limit)?;
        if self.output.json {
            self.output.json_value(&to_json(&entries)?);
            return Ok(());
        }
        if entries.is_empty() {
            self.output
                .info(&format!("No transactions for {}.", account.label));
            return Ok(());
        }
        for entry in &entries {
            let tx = &entry.tx;
            let outgoing = tx.from.as_deref() == Some(address.as_str());
            let incoming = tx.to == address;
            let (direction, other) = match (outgoing, incoming) {
                (true, true) => ("self", address.clone()),
                (true, false) => ("out", tx.to.clone()),
                _ => ("in", tx.from.clone().unwrap_or_default()),
            };
            let place = match (entry.status, entry.block_height) {
                (TxStatus::Confirmed, Some(height)) => format!("block {height}"),
                _ => "pending".to_string(),
            };
            let sign = if direction == "out" { "-" } else { "+" };
            self.output.line(&format!(
                "{place:<12} {direction:<4} {sign}{:<40} {:<4} {} fee {} {}",
                coins(tx.amount),
                if direction == "out" { "to" } else { "from" },
                other,
                tx.fee.to_coins_string(),
                tx.txid.map(|id| id.to_hex()).unwrap_or_default(),
            ));
        }
        Ok(())
    }

    fn status(&self) -> Result<(), Failure> {
        let status = self.client()?.status()?;
        if self.output.json {
            self.output.json_value(&to_json(&status)?);
            return Ok(());
        }
        self.output.fields(&[
            ("chain", status.chain),
            ("genesis hash", status.genesis_hash.to_hex()),
            ("height", status.height.to_string()),
            ("tip", status.tip.to_hex()),
            ("total work", status.total_work.to_hex()),
            ("target", status.target.to_hex()),
            ("peers", status.peers.to_string()),
            ("mempool", format!("{} txs", status.mempool)),
            ("min fee", coins(status.min_fee)),
            ("syncing", status.syncing.to_string()),
            ("mining", status.mining.to_string()),
            ("node id", status.node_id),
            ("version", status.version),
            ("rpc url", self.rpc_url.clone()),
        ]);
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, Failure> {
    serde_json::to_value(value)
        .map_err(|error| Failure::new(FailureKind::Other, "internal", error.to_string()))
}

/// The API's tx object for `tx`, with addresses in `prefix`.
pub fn tx_json(tx: &Transaction, prefix: &str) -> TxJson {
    TxJson {
        txid: Some(tx.txid()),
        from: Some(tx.sender().to_bech32(prefix)),
        from_pubkey: hex::encode(tx.from.0),
        to: tx.to.to_bech32(prefix),
        amount: tx.amount,
        fee: tx.fee,
        nonce: tx.nonce,
        memo: (!tx.memo.is_empty()).then(|| tx.memo.clone()),
        signature: hex::encode(tx.signature.0),
    }
}

/// Confirmed balance, minus the amount and fee of pending outgoing txs,
/// plus the amount of pending incoming ones, floored at zero (see the
/// module docs). Computed in i128 so no sum can overflow.
pub fn pending_balance(
    balance: Amount,
    address: &Address,
    history: &[TxLookupJson],
    prefix: &str,
) -> Amount {
    let me = address.to_bech32(prefix);
    let mut total = i128::from(balance.base_units());
    for entry in history
        .iter()
        .filter(|entry| entry.status == TxStatus::Pending)
    {
        let tx = &entry.tx;
        let sent = match &tx.from {
            Some(from) => from.eq_ignore_ascii_case(&me),
            None => hex::decode(&tx.from_pubkey)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .map(|bytes| Address::from_public_key(&ledger::PublicKey(bytes)) == *address)
                .unwrap_or(false),
        };
        if sent {
            total -= i128::from(tx.amount.base_units()) + i128::from(tx.fee.base_units());
        }
        if tx.to.eq_ignore_ascii_case(&me) {
            total += i128::from(tx.amount.base_units());
        }
    }
    Amount::from_base_units(total.clamp(0, i128::from(u64::MAX)) as u64)
}

/// Reads a secret key file: 64 hex characters, surrounding whitespace
/// ignored. The text is wiped after use.
fn read_secret_file(path: &Path) -> Result<SecretKey, Failure> {
    let failure = |reason: &str| {
        Failure::keystore(format!(
            "cannot use secret file {}: {reason}",
            path.display()
        ))
    };
    let length = std::fs::metadata(path)
        .map_err(|error| failure(&error.to_string()))?
        .len();
    if length > 1024 {
        return Err(failure("it is too large to hold one key"));
    }
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|error| failure(&error.to_string()))?);
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), bytes.as_mut_slice())
        .map_err(|_| failure("expected the secret key as 64 hex characters"))?;
    Ok(SecretKey::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::json::TxLookupJson;

    fn run(args: &[&str]) -> u8 {
        let mut full = vec![OsString::from("wallet-cli")];
        full.extend(args.iter().map(OsString::from));
        // ExitCode has no accessor; compare against the known values.
        let code = main_with_args(full);
        (0..=255u8)
            .find(|value| ExitCode::from(*value) == code)
            .unwrap_or(255)
    }

    #[test]
    fn exit_codes_follow_the_spec() {
        let cases = [
            (FailureKind::Other, 1),
            (FailureKind::Usage, 2),
            (FailureKind::NotFound, 3),
            (FailureKind::Rejected, 4),
            (FailureKind::Unreachable, 5),
            (FailureKind::Keystore, 6),
        ];
        for (kind, code) in cases {
            assert_eq!(kind.exit_code(), code);
        }
        let api = |code: &str| ClientError::Api {
            status: 400,
            code: code.into(),
            message: "m".into(),
        };
        assert_eq!(Failure::from(api("insufficient_funds")).exit_code(), 4);
        assert_eq!(
            Failure::from(api("insufficient_funds")).code,
            "insufficient_funds"
        );
        assert_eq!(Failure::from(api("not_found")).exit_code(), 3);
        let unreachable = ClientError::Unreachable {
            url: "u".into(),
            detail: "refused".into(),
        };
        assert_eq!(Failure::from(unreachable).exit_code(), 5);
        let timeout = ClientError::Timeout {
            url: "u".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(Failure::from(timeout).exit_code(), 5);
        assert_eq!(
            Failure::from(ClientError::BadResponse("x".into())).exit_code(),
            1
        );
        assert_eq!(
            Failure::from(KeystoreError::WrongPassword("k".into())).exit_code(),
            6
        );
        assert_eq!(Failure::from(PasswordError::NoSource).exit_code(), 6);
        assert_eq!(
            Failure::from(KeystoreError::NotFound {
                name: "k".into(),
                dir: "d".into()
            })
            .exit_code(),
            3
        );
    }

    #[test]
    fn usage_errors_exit_2_and_help_exits_0() {
        assert_eq!(run(&["--help"]), 0);
        assert_eq!(run(&["frobnicate"]), 2);
        assert_eq!(run(&["send", "--from", "dev:0"]), 2);
        assert_eq!(
            run(&[
                "send",
                "--from",
                "dev:0",
                "--to",
                "dev:1",
                "--amount",
                "1.000000001"
            ]),
            2
        );
        assert_eq!(
            run(&["send", "--from", "dev:0", "--to", "dev:1", "--amount", "-1"]),
            2
        );
        assert_eq!(run(&["import", "k"]), 2);
        assert_eq!(run(&["import", "k", "--dev", "10"]), 2);
        assert_eq!(run(&["address", "dev:10"]), 2);
        assert_eq!(run(&["--address-prefix", "BAD!", "address", "dev:1"]), 2);
    }

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(parse_amount("0.00000001"), Ok(Amount::from_base_units(1)));
        assert_eq!(
            parse_amount("2.5"),
            Ok(Amount::from_base_units(250_000_000))
        );
        let error = parse_amount("1.000000001").unwrap_err();
        assert!(error.contains("8 decimal places"), "{error}");
        assert!(parse_amount("1,5").is_err());
        assert!(parse_amount("abc").is_err());
        assert!(parse_amount("1e8").is_err());
    }

    fn lookup(tx: &Transaction, status: TxStatus) -> TxLookupJson {
        TxLookupJson {
            tx: tx_json(tx, "dev"),
            status,
            block_hash: None,
            block_height: None,
            confirmations: 0,
            reason: None,
        }
    }

    #[test]
    fn pending_balance_counts_pending_txs_only() {
        let me = dev_secret_key(0);
        let my_address = Address::from_public_key(&me.public_key());
        let other = dev_secret_key(1);
        let other_address = Address::from_public_key(&other.public_key());
        let genesis = ledger::BlockHash::ZERO;
        let units = Amount::from_base_units;
        let out = Transaction::new_signed(
            &me,
            &genesis,
            other_address,
            units(500),
            units(10),
            0,
            String::new(),
        );
        let incoming = Transaction::new_signed(
            &other,
            &genesis,
            my_address,
            units(70),
            units(10),
            0,
            String::new(),
        );
        let to_self = Transaction::new_signed(
            &me,
            &genesis,
            my_address,
            units(5),
            units(1),
            1,
            String::new(),
        );
        let history = vec![
            lookup(&out, TxStatus::Pending),
            lookup(&incoming, TxStatus::Pending),
            lookup(&to_self, TxStatus::Pending),
            lookup(&out, TxStatus::Confirmed),
        ];
        // 1000 - (500 + 10) + 70 - 1 = 559
        assert_eq!(
            pending_balance(units(1000), &my_address, &history, "dev"),
            units(559)
        );
        assert_eq!(
            pending_balance(units(100), &my_address, &history[..1], "dev"),
            Amount::ZERO
        );
        assert_eq!(
            pending_balance(Amount::MAX, &my_address, &history[1..2], "dev"),
            Amount::MAX
        );
    }

    #[test]
    fn secret_files_are_hex() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("secret");
        let key = dev_secret_key(4);
        std::fs::write(&path, format!("  {}\n", hex::encode(key.to_bytes()))).unwrap();
        assert_eq!(
            read_secret_file(&path).unwrap().public_key(),
            key.public_key()
        );
        std::fs::write(&path, "zz").unwrap();
        assert_eq!(read_secret_file(&path).unwrap_err().exit_code(), 6);
    }
}
