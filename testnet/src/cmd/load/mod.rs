//! `testnet load`: a bounded load generator. It sends signed transfers from
//! K sender accounts at a target rate over keep-alive HTTP, follows the
//! chain through every node's `/v1/events`, and reports throughput,
//! submit-to-confirmed latency, block propagation between nodes, and
//! whether any accepted transaction was lost.
//!
//! Phases:
//! 1. Set-up: read every node's status (same genesis), pick the senders
//!    (dev accounts for K <= 10, else keys derived from a fixed seed, funded
//!    from the dev accounts and confirmed before the run), read their nonces.
//! 2. Run: each sender is a task pinned to one URL (sender i uses URL
//!    i mod n, so its nonces arrive in order at one node), tracking its
//!    nonce locally and keeping at most `--window` unconfirmed transactions
//!    in flight, because nodes refuse nonces far ahead of the chain. A shared
//!    pacer spaces submissions at the target rate.
//! 3. Drain: stop sending, wait until every accepted transaction is in a
//!    block and every node has the same tip (bounded by `--drain-timeout`).
//! 4. Verify: read every node's best chain from the first height that could
//!    hold our transactions and count accepted txids missing anywhere.
//!
//! Meanwhile one watcher per URL reads `block` and `reorg` events: the first
//! arrival of a block anywhere starts its propagation clock, its arrival on
//! each other node stops one, and its transactions (fetched once) confirm
//! ours. A slow poll of each node's tip catches blocks whose events were
//! missed, walking back parents, so a dropped event costs only precision.
//!
//! One module a phase: `plan` (set-up and funding, into a `Plan` every
//! later phase reads), `send` (the pacer and the sender tasks), `watch`
//! (events, tip polls, block fetches, the drain) and `report` (reading the
//! chains back and the figures).

/// Progress lines go to stderr so `--json` output stays one object.
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("load: {}", format_args!($($arg)*)) };
}

mod plan;
mod report;
mod send;
mod watch;

use anyhow::Context;
use ledger::chainspec::{dev_secret_key, DEV_ACCOUNTS};
use ledger::{Address, Amount, SecretKey};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Node RPC URLs, comma-separated (or repeat the flag); senders are spread over them
    #[arg(long, value_delimiter = ',', required = true, value_parser = super::check::parse_url)]
    pub rpc_url: Vec<String>,
    /// Target submissions per second
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub tps: u32,
    /// Seconds of sending
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: u64,
    /// Sender accounts: dev accounts when 10 or fewer, else derived accounts funded from the dev accounts [default: one per 10 tx/s, at least 10]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub senders: Option<u32>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait, after sending stops, for confirmations and for the nodes to agree
    #[arg(long, default_value_t = 60)]
    pub drain_timeout: u64,
    /// Seconds to wait for the funding of derived senders to confirm
    #[arg(long, default_value_t = 180)]
    pub funding_timeout: u64,
    /// Most unconfirmed transactions one sender keeps in flight (nodes refuse nonces more than 64 ahead)
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub window: u64,
    /// The nodes' chain when it is not a built-in one: a chain file whose genesis allocates to the dev accounts (as testnet/chains/throughput.json does)
    #[arg(long)]
    pub chain: Option<String>,
    /// How transactions are posted: `raw` (hex of canonical bytes) or `json` (the tx object)
    #[arg(long, value_enum, default_value_t = WireFormat::Raw)]
    pub tx_format: WireFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireFormat {
    Raw,
    Json,
}

/// Amount of each load transfer, in base units (any positive amount works;
/// the fee is the chain's minimum).
const TRANSFER_AMOUNT: Amount = Amount::from_base_units(1_000);
/// Blocks per page when reading whole chains back at the end: a full block
/// is about 7,000 transactions, a few MB of JSON.
const VERIFY_PAGE_BLOCKS: u32 = 4;

pub fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(load(args))
}

/// One sender account.
struct Sender {
    key: SecretKey,
    address: Address,
    /// Index of the URL it sends to.
    url: usize,
    /// Its next nonce when the run starts.
    nonce: u64,
}

fn sender_keys(count: usize) -> Vec<SecretKey> {
    if count <= DEV_ACCOUNTS {
        (0..count).map(dev_secret_key).collect()
    } else {
        (0..count)
            .map(|index| SecretKey::from_seed(&format!("gossip-ledger load sender {index}")))
            .collect()
    }
}

/// Where the transfers go: one fixed account nobody sends from, so the
/// senders' balances only ever shrink by what they send.
fn sink_address() -> Address {
    Address::from_public_key(&SecretKey::from_seed("gossip-ledger load sink").public_key())
}

async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let (plan, senders) = plan::prepare(&args).await?;
    // Watch before sending, so no block of the run goes unseen.
    let watchers = watch::Watchers::start(&plan, senders.len()).await?;
    let run = Arc::clone(&watchers.run);

    progress!("sending...");
    let start = Instant::now();
    let end = start + plan.duration;
    send::send_all(&plan, &run, senders, start, end).await?;
    let send_end = Instant::now();
    let (submitted, accepted) = {
        let tracker = run.tracker();
        (tracker.submitted, tracker.accepted.len() as u64)
    };
    progress!(
        "sent {submitted} ({accepted} accepted) in {:.1} s; draining...",
        (send_end - start).as_secs_f64()
    );

    let converged_height = watchers.drain(&plan, send_end + plan.drain_timeout).await;

    progress!("verifying every accepted tx on every node...");
    let verification = report::verify(&plan, &run, converged_height).await?;
    let timing = report::Timing {
        start,
        end,
        send_end,
    };
    let report = report::build_report(&plan, &run, timing, verification);
    if plan.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("cannot print the report")?
        );
    } else {
        print!("{}", report.describe());
    }
    Ok(if report.lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_dev_accounts_up_to_ten_then_derived() {
        let dev = sender_keys(3);
        assert_eq!(dev[2].to_bytes(), dev_secret_key(2).to_bytes());
        let derived = sender_keys(11);
        assert_eq!(derived.len(), 11);
        assert_ne!(derived[0].to_bytes(), dev_secret_key(0).to_bytes());
        // Deterministic, so a second run reuses the funded accounts.
        assert_eq!(derived[5].to_bytes(), sender_keys(12)[5].to_bytes());
    }
}
