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

use anyhow::{bail, Context};
use ledger::chainspec::{dev_accounts, dev_secret_key, DEV_ACCOUNTS};
use ledger::json::{BlockJson, ReorgJson, StatusJson};
use ledger::{Address, Amount, BlockHash, ChainSpec, SecretKey, Transaction, TxId};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use testnet::api::{Api, ApiError, TxFormat};
use testnet::sse::SseParser;
use testnet::stats::LatencySummary;
use tokio::sync::{mpsc, watch, Notify};

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

/// Progress lines go to stderr so `--json` output stays one object.
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("load: {}", format_args!($($arg)*)) };
}

/// Spaces submissions `1/tps` apart. Falling behind (a stalled sender, a
/// slow node) lets at most `max_burst` of lag be made up at once, so a
/// stall is not followed by an unbounded burst.
pub(crate) struct Pacer {
    interval: Duration,
    max_burst: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    pub(crate) fn new(tps: u32, start: Instant) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / f64::from(tps.max(1))),
            max_burst: Duration::from_millis(100),
            next: Mutex::new(start),
        }
    }

    /// The instant the caller may send its next transaction.
    pub(crate) fn reserve(&self, now: Instant) -> Instant {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let floor = now.checked_sub(self.max_burst).unwrap_or(now);
        if *next < floor {
            *next = floor;
        }
        let due = *next;
        *next += self.interval;
        due
    }
}

/// A block some node announced, with what we learned about it.
#[derive(Debug)]
struct SeenBlock {
    /// When it arrived at each URL, and whether through an event (exact)
    /// or through polling (late, excluded from propagation figures).
    arrivals: Vec<Option<(Instant, bool)>>,
    /// Its txids once fetched.
    txids: Option<Vec<TxId>>,
}

impl SeenBlock {
    fn first_arrival(&self) -> Option<Instant> {
        self.arrivals.iter().flatten().map(|(at, _)| *at).min()
    }
}

/// An accepted transaction.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    submitted_at: Instant,
    url: usize,
    sender: usize,
}

/// Everything the run learns, behind one std mutex: every critical section
/// is a few map operations and none awaits.
#[derive(Debug, Default)]
struct Tracker {
    n_urls: usize,
    start_height: u64,
    accepted: HashMap<TxId, Accepted>,
    /// Txid -> the block that holds it, for every fetched block still on a
    /// best chain as far as the events told us.
    included: HashMap<TxId, BlockHash>,
    blocks: HashMap<BlockHash, SeenBlock>,
    sender_accepted: Vec<u64>,
    sender_confirmed: Vec<u64>,
    confirmed: u64,
    submitted: u64,
    rejected: BTreeMap<String, u64>,
    txid_mismatches: u64,
    reorgs: u64,
    /// Events the nodes dropped because we read too slowly (`lagged`).
    events_missed: u64,
}

impl Tracker {
    /// Records that `hash` reached URL `url`. True when the block was
    /// unknown until now and must be fetched.
    fn block_arrived(&mut self, hash: BlockHash, url: usize, at: Instant, via_event: bool) -> bool {
        let n_urls = self.n_urls;
        let mut new = false;
        let block = self.blocks.entry(hash).or_insert_with(|| {
            new = true;
            SeenBlock {
                arrivals: vec![None; n_urls],
                txids: None,
            }
        });
        if let Some(slot) = block.arrivals.get_mut(url) {
            if slot.is_none() {
                *slot = Some((at, via_event));
            }
        }
        new
    }

    fn knows_block(&self, hash: &BlockHash) -> bool {
        self.blocks.contains_key(hash)
    }

    fn arrived_at(&self, hash: &BlockHash, url: usize) -> bool {
        self.blocks
            .get(hash)
            .and_then(|block| block.arrivals.get(url))
            .is_some_and(Option::is_some)
    }

    fn block_fetched(&mut self, hash: BlockHash, txids: Vec<TxId>) {
        self.include(hash, &txids);
        if let Some(block) = self.blocks.get_mut(&hash) {
            block.txids = Some(txids);
        }
    }

    /// Marks `txids` as held by block `hash`, counting newly confirmed ones.
    fn include(&mut self, hash: BlockHash, txids: &[TxId]) {
        for txid in txids {
            let previous = self.included.insert(*txid, hash);
            if previous.is_none() {
                if let Some(accepted) = self.accepted.get(txid) {
                    self.confirmed += 1;
                    self.sender_confirmed[accepted.sender] += 1;
                }
            }
        }
    }

    fn accept(&mut self, txid: TxId, accepted: Accepted) {
        self.sender_accepted[accepted.sender] += 1;
        if self.accepted.insert(txid, accepted).is_none() && self.included.contains_key(&txid) {
            // Its block was fetched before the submission's answer came.
            self.confirmed += 1;
            self.sender_confirmed[accepted.sender] += 1;
        }
    }

    /// A node switched branches: the transactions of the blocks it
    /// disconnected are no longer confirmed (unless meanwhile seen in
    /// another block), and those of the blocks it connected are, which
    /// matters when those blocks were seen and fetched before, on another
    /// node, and so will not be fetched again. Different nodes may report
    /// opposite reorgs; each report leaves the counts consistent.
    fn reorg(&mut self, disconnected: &[BlockHash], connected: &[BlockHash]) {
        self.reorgs += 1;
        for hash in disconnected {
            let Some(txids) = self.blocks.get(hash).and_then(|block| block.txids.clone()) else {
                continue;
            };
            for txid in txids {
                if self.included.get(&txid) == Some(hash) {
                    self.included.remove(&txid);
                    if let Some(accepted) = self.accepted.get(&txid) {
                        self.confirmed -= 1;
                        self.sender_confirmed[accepted.sender] -= 1;
                    }
                }
            }
        }
        for hash in connected {
            if let Some(txids) = self.blocks.get(hash).and_then(|block| block.txids.clone()) {
                self.include(*hash, &txids);
            }
        }
    }

    fn outstanding(&self, sender: usize) -> u64 {
        self.sender_accepted[sender].saturating_sub(self.sender_confirmed[sender])
    }

    fn reject(&mut self, code: &str) {
        *self.rejected.entry(code.to_string()).or_insert(0) += 1;
    }

    /// When an accepted tx counts as confirmed: when its block reached the
    /// node it was submitted to, else (that event missed) anywhere first.
    fn confirmed_at(&self, txid: &TxId, accepted: &Accepted) -> Option<Instant> {
        let block = self.blocks.get(self.included.get(txid)?)?;
        block
            .arrivals
            .get(accepted.url)
            .copied()
            .flatten()
            .map(|(at, _)| at)
            .or_else(|| block.first_arrival())
    }
}

/// Shared by the tasks of one run.
struct Run {
    apis: Vec<Api>,
    spec: ChainSpec,
    tracker: Mutex<Tracker>,
    /// Woken whenever a block's transactions have been counted.
    confirmations: Notify,
    fetch_queue: mpsc::UnboundedSender<(BlockHash, usize)>,
    stream_client: reqwest::Client,
}

impl Run {
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        // A panic elsewhere must not hide the figures gathered so far.
        self.tracker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note_block(&self, hash: BlockHash, height: u64, url: usize, at: Instant, via_event: bool) {
        let start_height = self.tracker().start_height;
        if height <= start_height {
            return;
        }
        if self.tracker().block_arrived(hash, url, at, via_event) {
            // The receiver lives as long as the run; a send error only
            // happens during teardown.
            let _ = self.fetch_queue.send((hash, url));
        }
    }
}

/// One sender account.
struct Sender {
    key: SecretKey,
    address: Address,
    url: usize,
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

async fn load(mut args: LoadArgs) -> anyhow::Result<ExitCode> {
    let client = Api::client(Duration::from_secs(15))?;
    let apis: Vec<Api> = args
        .rpc_url
        .iter()
        .map(|url| Api::new(client.clone(), url))
        .collect();
    let n_urls = apis.len();
    let statuses: Vec<StatusJson> = futures::future::try_join_all(apis.iter().map(Api::status))
        .await
        .context("cannot read the status of every node")?;
    let first = &statuses[0];
    if let Some((api, other)) = apis
        .iter()
        .zip(&statuses)
        .find(|(_, status)| status.genesis_hash != first.genesis_hash)
    {
        bail!(
            "{} is on another chain ({} genesis {}) than {}",
            api.url(),
            other.chain,
            other.genesis_hash,
            apis[0].url()
        );
    }
    let spec = match &args.chain {
        Some(chain) => ChainSpec::load(chain)
            .with_context(|| format!("cannot use chain {chain:?}"))?,
        None => ChainSpec::builtin(&first.chain).with_context(|| {
            format!(
                "the nodes run chain {}: give its chain file with --chain (its genesis must pay the dev accounts)",
                first.chain
            )
        })?,
    };
    if spec.genesis_hash() != first.genesis_hash {
        bail!(
            "the nodes' genesis is {}, not chain {}'s {}",
            first.genesis_hash,
            spec.name,
            spec.genesis_hash()
        );
    }
    let fee = first.min_fee;
    let start_height = statuses
        .iter()
        .map(|status| status.height)
        .min()
        .unwrap_or(0);
    let senders_count = args
        .senders
        .map_or_else(|| default_senders(args.tps), |count| count as usize);
    args.senders = Some(senders_count as u32);
    progress!(
        "{n_urls} nodes on {} at height {}, {} senders, target {} tx/s for {} s",
        spec.name,
        start_height,
        senders_count,
        args.tps,
        args.duration
    );
    for limit in rate_limits(&spec, args.tps, senders_count, args.window) {
        progress!("note: {limit}");
    }

    let senders: Vec<Sender> = sender_keys(senders_count)
        .into_iter()
        .enumerate()
        .map(|(index, key)| Sender {
            address: Address::from_public_key(&key.public_key()),
            key,
            url: index % n_urls,
        })
        .collect();
    // Each sender must afford its share with a wide margin (the pacer may
    // give one sender more than its share).
    let per_tx = TRANSFER_AMOUNT.checked_add(fee).context("fee too large")?;
    let share = (u64::from(args.tps) * args.duration).div_ceil(senders_count as u64) + args.window;
    let need = per_tx
        .checked_mul(share.saturating_mul(4))
        .and_then(|amount| amount.checked_add(Amount::from_coins(1)?))
        .context("funding amount overflows")?;
    if senders_count > DEV_ACCOUNTS {
        fund_senders(
            &apis,
            &spec,
            &senders,
            need,
            fee,
            args.window,
            Duration::from_secs(args.funding_timeout),
        )
        .await?;
    }
    let mut nonces = Vec::with_capacity(senders.len());
    for sender in &senders {
        let address = spec.format_address(&sender.address);
        let account = apis[sender.url].account(&address).await?;
        if account.balance < need && senders_count <= DEV_ACCOUNTS {
            bail!(
                "sender {address} holds {} coins, less than the {} this run needs",
                account.balance.to_coins_string(),
                need.to_coins_string()
            );
        }
        nonces.push(account.next_nonce);
    }

    // Watch before sending, so no block of the run goes unseen.
    let (fetch_queue, fetch_receiver) = mpsc::unbounded_channel();
    let run = Arc::new(Run {
        apis: apis.clone(),
        spec: spec.clone(),
        tracker: Mutex::new(Tracker {
            n_urls,
            start_height,
            sender_accepted: vec![0; senders.len()],
            sender_confirmed: vec![0; senders.len()],
            ..Tracker::default()
        }),
        confirmations: Notify::new(),
        fetch_queue,
        stream_client: Api::stream_client()?,
    });
    let (stop_sender, stop) = watch::channel(false);
    let mut background = Vec::new();
    let connected: Vec<Arc<AtomicBool>> = (0..n_urls)
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    for (url, flag) in connected.iter().enumerate() {
        background.push(tokio::spawn(watch_events(
            run.clone(),
            url,
            flag.clone(),
            stop.clone(),
        )));
        background.push(tokio::spawn(poll_tips(run.clone(), url, stop.clone())));
    }
    let fetcher = tokio::spawn(fetch_blocks(run.clone(), fetch_receiver, stop.clone()));
    let connect_deadline = Instant::now() + Duration::from_secs(10);
    while !connected.iter().all(|flag| flag.load(Ordering::Relaxed)) {
        if Instant::now() >= connect_deadline {
            bail!("could not open /v1/events on every node within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    progress!("sending...");
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let pacer = Arc::new(Pacer::new(args.tps, start));
    let format = match args.tx_format {
        WireFormat::Raw => TxFormat::Raw,
        WireFormat::Json => TxFormat::Json,
    };
    let sink = sink_address();
    let mut tasks = Vec::with_capacity(senders.len());
    for (index, (sender, nonce)) in senders.into_iter().zip(nonces).enumerate() {
        let run = run.clone();
        let pacer = pacer.clone();
        let window = args.window;
        tasks.push(tokio::spawn(async move {
            send_loop(
                &run, index, sender, nonce, &pacer, end, window, sink, fee, format,
            )
            .await
        }));
    }
    let mut last_report = Instant::now();
    for task in tasks {
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if last_report.elapsed() >= Duration::from_secs(10) {
                last_report = Instant::now();
                let tracker = run.tracker();
                progress!(
                    "{:.0} s: submitted {}, accepted {}, confirmed {}",
                    start.elapsed().as_secs_f64(),
                    tracker.submitted,
                    tracker.accepted.len(),
                    tracker.confirmed
                );
            }
        }
        task.await.context("a sender task failed")?;
    }
    let send_end = Instant::now();
    let (submitted, accepted) = {
        let tracker = run.tracker();
        (tracker.submitted, tracker.accepted.len() as u64)
    };
    progress!(
        "sent {submitted} ({accepted} accepted) in {:.1} s; draining...",
        (send_end - start).as_secs_f64()
    );

    // Drain: every accepted tx in a block, then every node on one tip.
    let drain_deadline = send_end + Duration::from_secs(args.drain_timeout);
    loop {
        let notified = run.confirmations.notified();
        {
            let tracker = run.tracker();
            if tracker.confirmed >= tracker.accepted.len() as u64 {
                break;
            }
        }
        if Instant::now() >= drain_deadline {
            break;
        }
        // A `Notified` sees `notify_waiters` from its creation on, so none is
        // missed between the check and the wait; the timeout rechecks the
        // deadline.
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
    let converged_height = wait_converged(
        &apis,
        drain_deadline.max(Instant::now() + Duration::from_secs(10)),
    )
    .await;
    let _ = stop_sender.send(true);
    for task in background {
        let _ = task.await;
    }
    let _ = fetcher.await;

    progress!("verifying every accepted tx on every node...");
    let accepted_txids: HashSet<TxId> = run.tracker().accepted.keys().copied().collect();
    let mut missing_per_node = Vec::with_capacity(n_urls);
    let mut missing_anywhere: HashSet<TxId> = HashSet::new();
    let mut final_chain: Option<HashSet<BlockHash>> = None;
    for api in &apis {
        let up_to = match converged_height {
            Some(height) => height,
            None => api.status().await.map(|status| status.height).unwrap_or(0),
        };
        let (on_chain, hashes) = chain_contents(api, start_height + 1, up_to).await?;
        final_chain.get_or_insert(hashes);
        let missing: Vec<TxId> = accepted_txids
            .iter()
            .filter(|txid| !on_chain.contains(txid))
            .copied()
            .collect();
        missing_per_node.push(missing.len() as u64);
        missing_anywhere.extend(missing);
    }

    let final_chain = final_chain.unwrap_or_default();
    let report = build_report(
        &args,
        &run,
        &apis,
        Timing {
            start,
            end,
            send_end,
        },
        &final_chain,
        missing_per_node,
        missing_anywhere.len() as u64,
        converged_height,
    );
    if args.json {
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

/// What a sender does after a refusal.
enum Retry {
    /// Send the same nonce again after this long.
    After(Duration),
    /// Ask the node for the sender's next nonce first.
    Resync,
}

/// Senders when `--senders` is not given: one per 10 tx/s, at least 10. A
/// sender keeps at most `--window` txs unconfirmed, and a tx takes a block
/// interval or two to confirm, so fewer senders cannot reach the rate.
fn default_senders(tps: u32) -> usize {
    (tps as usize).div_ceil(10).max(DEV_ACCOUNTS)
}

/// Why the run may fall short of `tps`, said before it starts: the senders'
/// windows, or the chain's block capacity (past which the nodes refuse
/// with `busy` and the run counts the refusals).
fn rate_limits(spec: &ChainSpec, tps: u32, senders: usize, window: u64) -> Vec<String> {
    let mut limits = Vec::new();
    let block_secs = (spec.block_time_ms as f64 / 1000.0).max(0.5);
    // About 1.5 block intervals from submission to confirmation.
    let by_windows = senders as f64 * window as f64 / (1.5 * block_secs);
    if by_windows < f64::from(tps) {
        limits.push(format!(
            "{senders} senders with {window} txs each in flight reach about {by_windows:.0} tx/s at {block_secs} s blocks; raise --senders to about {}",
            (f64::from(tps) * 1.5 * block_secs / window as f64).ceil()
        ));
    }
    // A transfer without memo is about 150 bytes on the chain.
    let by_blocks = spec.max_block_bytes as f64 / 150.0 / block_secs;
    if by_blocks < f64::from(tps) {
        limits.push(format!(
            "blocks of {} bytes every {block_secs} s confirm at most about {by_blocks:.0} tx/s; past that the nodes answer 429 busy and the refusals are counted by code",
            spec.max_block_bytes
        ));
    }
    limits
}

/// One sender's loop: wait for window room, wait for the pacer, sign, post.
#[allow(clippy::too_many_arguments)]
async fn send_loop(
    run: &Run,
    index: usize,
    sender: Sender,
    mut nonce: u64,
    pacer: &Pacer,
    end: Instant,
    window: u64,
    sink: Address,
    fee: Amount,
    format: TxFormat,
) {
    let api = &run.apis[sender.url];
    let genesis = run.spec.genesis_hash();
    let address_text = run.spec.format_address(&sender.address);
    loop {
        // Room in the window: fewer than `window` of ours unconfirmed.
        loop {
            let notified = run.confirmations.notified();
            if run.tracker().outstanding(index) < window {
                break;
            }
            if Instant::now() >= end {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
        let due = pacer.reserve(Instant::now());
        if due >= end {
            return;
        }
        tokio::time::sleep_until(due.into()).await;
        let tx = Transaction::new_signed(
            &sender.key,
            &genesis,
            sink,
            TRANSFER_AMOUNT,
            fee,
            nonce,
            String::new(),
        );
        let txid = tx.txid();
        let submitted_at = Instant::now();
        let result = api.submit_tx(&tx, &run.spec, format).await;
        // What to do after a refusal; decided under the lock, done after.
        let recovery = {
            let mut tracker = run.tracker();
            tracker.submitted += 1;
            match result {
                Ok(answered) => {
                    if answered != txid {
                        tracker.txid_mismatches += 1;
                    }
                    let record = Accepted {
                        submitted_at,
                        url: sender.url,
                        sender: index,
                    };
                    tracker.accept(txid, record);
                    nonce += 1;
                    None
                }
                Err(error) => {
                    tracker.reject(error.code());
                    Some(match &error {
                        // Refused before it was taken: the same nonce again
                        // when the node says, or once a block makes room.
                        ApiError::Rejected {
                            retry_after: Some(wait),
                            ..
                        } => Retry::After(*wait),
                        _ if error.code() == "mempool_full" => {
                            Retry::After(Duration::from_millis(100))
                        }
                        _ => Retry::Resync,
                    })
                }
            }
        };
        match recovery {
            None => {}
            Some(Retry::After(wait)) => {
                let until = (Instant::now() + wait).min(end);
                tokio::time::sleep_until(until.into()).await;
            }
            Some(Retry::Resync) => {
                // Whether it was taken is unknown (a timeout) or our nonce
                // is off: ask the node where we stand.
                if let Ok(account) = api.account(&address_text).await {
                    nonce = account.next_nonce;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Reads `/v1/events` of one URL until stopped, reconnecting when the
/// stream ends (a restarted node).
async fn watch_events(
    run: Arc<Run>,
    url: usize,
    connected: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let api = run.apis[url].clone();
    while !*stop.borrow() {
        if let Ok(mut response) = api.events(&run.stream_client, "block,reorg").await {
            connected.store(true, Ordering::Relaxed);
            let mut parser =
                SseParser::new(|name| matches!(name, "block" | "reorg" | "lagged"), 1 << 20);
            loop {
                let chunk = tokio::select! {
                    _ = stop.changed() => return,
                    chunk = response.chunk() => chunk,
                };
                let Ok(Some(bytes)) = chunk else { break };
                let at = Instant::now();
                let Ok(events) = parser.push(&bytes) else {
                    break;
                };
                for event in events {
                    match event.event.as_str() {
                        "block" => {
                            if let Ok(block) = serde_json::from_str::<BlockJson>(&event.data) {
                                run.note_block(block.hash, block.height, url, at, true);
                            }
                        }
                        "reorg" => {
                            if let Ok(reorg) = serde_json::from_str::<ReorgJson>(&event.data) {
                                run.tracker().reorg(&reorg.disconnected, &reorg.connected);
                            }
                        }
                        "lagged" => {
                            // We read too slowly and the node dropped events
                            // for us; the tip poller fills any block gap.
                            let missed = serde_json::from_str::<serde_json::Value>(&event.data)
                                .ok()
                                .and_then(|value| value["missed"].as_u64())
                                .unwrap_or(0);
                            run.tracker().events_missed += missed;
                        }
                        _ => {}
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Every second, compares a node's tip with what its events told us. A tip
/// still unknown one poll later means missed events (a status answer may
/// simply beat the event by a moment, hence the second look); the block is
/// then noted as a late arrival and the fetcher walks back from it.
async fn poll_tips(run: Arc<Run>, url: usize, mut stop: watch::Receiver<bool>) {
    let mut suspect: Option<BlockHash> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Ok(status) = run.apis[url].status().await else {
            continue;
        };
        if run.tracker().arrived_at(&status.tip, url) {
            suspect = None;
        } else if suspect == Some(status.tip) {
            run.note_block(status.tip, status.height, url, Instant::now(), false);
            suspect = None;
        } else {
            suspect = Some(status.tip);
        }
    }
}

/// Fetches each new block once (from the node that announced it, falling
/// back to the others), counts its transactions, and queues its parent when
/// that is unknown too.
async fn fetch_blocks(
    run: Arc<Run>,
    mut queue: mpsc::UnboundedReceiver<(BlockHash, usize)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            biased;
            next = queue.recv() => next,
            _ = stop.changed() => {
                // Finish what is queued, then stop.
                queue.close();
                queue.recv().await
            }
        };
        let Some((hash, url)) = next else { return };
        let n_urls = run.apis.len();
        let mut fetched = None;
        for attempt in 0..n_urls * 2 {
            match run.apis[(url + attempt) % n_urls]
                .block(&hash.to_string())
                .await
            {
                Ok(block) => {
                    fetched = Some(block);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let Some(block) = fetched else { continue };
        let txids: Vec<TxId> = block
            .txs
            .unwrap_or_default()
            .iter()
            .filter_map(|tx| {
                tx.txid
                    .or_else(|| tx.to_tx(&run.spec).ok().map(|tx| tx.txid()))
            })
            .collect();
        let parent_unknown = {
            let mut tracker = run.tracker();
            tracker.block_fetched(hash, txids);
            block.height > tracker.start_height + 1 && !tracker.knows_block(&block.prev_hash)
        };
        run.confirmations.notify_waiters();
        if parent_unknown {
            run.note_block(
                block.prev_hash,
                block.height - 1,
                url,
                Instant::now(),
                false,
            );
        }
    }
}

/// Waits until every node reports the same tip; its height, or `None` at
/// the deadline.
async fn wait_converged(apis: &[Api], deadline: Instant) -> Option<u64> {
    loop {
        let statuses = futures::future::join_all(apis.iter().map(Api::status)).await;
        let tips: Vec<_> = statuses
            .iter()
            .map(|status| {
                status
                    .as_ref()
                    .ok()
                    .map(|status| (status.tip, status.height))
            })
            .collect();
        if let Some(Some(first)) = tips.first() {
            if tips.iter().all(|tip| tip.as_ref() == Some(first)) {
                return Some(first.1);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every txid and block hash in a node's best chain from height `from` to
/// `to`.
async fn chain_contents(
    api: &Api,
    from: u64,
    to: u64,
) -> anyhow::Result<(HashSet<TxId>, HashSet<BlockHash>)> {
    let mut txids = HashSet::new();
    let mut hashes = HashSet::new();
    let mut height = from;
    while height <= to {
        let blocks = api.blocks(height, VERIFY_PAGE_BLOCKS).await?;
        if blocks.is_empty() {
            break;
        }
        for block in blocks {
            if block.height > to {
                break;
            }
            height = block.height + 1;
            hashes.insert(block.hash);
            txids.extend(
                block
                    .txs
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|tx| tx.txid),
            );
        }
    }
    Ok((txids, hashes))
}

/// Block propagation figures, over the blocks of the final best chain (a
/// block that lost a race is never connected by most nodes, so it has no
/// arrival time there to measure).
#[derive(Debug, Serialize)]
struct Propagation {
    /// Final-chain blocks of the run seen through events.
    blocks: usize,
    /// Of those, blocks whose arrival every node announced.
    reached_all_nodes: usize,
    /// Time from a block's first arrival (connection to the best chain) on
    /// any node to its arrival on each other node. A node that first
    /// followed a competing block adopts this one only at its reorg, and
    /// that wait counts too.
    delay: LatencySummary,
}

/// The run's clock marks.
struct Timing {
    start: Instant,
    /// When sending was scheduled to stop.
    end: Instant,
    /// When the last sender actually stopped.
    send_end: Instant,
}

#[derive(Debug, Serialize)]
struct Report {
    rpc_urls: Vec<String>,
    chain: String,
    target_tps: u32,
    duration_secs: u64,
    senders: u32,
    submitted: u64,
    accepted: u64,
    rejected: BTreeMap<String, u64>,
    confirmed: u64,
    /// Accepted transactions not in any block by the end of the drain.
    unconfirmed: u64,
    /// Accepted per second of sending.
    accepted_tps: f64,
    /// Confirmed transactions over the time from the first submission to
    /// the last confirmation (drain included): the conservative figure.
    confirmed_tps: f64,
    /// Transactions confirmed during the sending window over its length.
    confirmed_tps_while_sending: f64,
    /// Submit to the arrival of the including block on the node it was
    /// submitted to.
    latency: LatencySummary,
    blocks: usize,
    /// Blocks seen during the run that are not in the final best chain.
    stale_blocks: usize,
    max_block_txs: usize,
    propagation: Propagation,
    reorgs: u64,
    txid_mismatches: u64,
    events_missed: u64,
    /// Accepted txids missing from the final best chain of at least one node.
    lost: u64,
    missing_per_node: Vec<u64>,
    converged: bool,
    final_height: Option<u64>,
    elapsed_secs: f64,
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    args: &LoadArgs,
    run: &Run,
    apis: &[Api],
    timing: Timing,
    final_chain: &HashSet<BlockHash>,
    missing_per_node: Vec<u64>,
    lost: u64,
    converged_height: Option<u64>,
) -> Report {
    let Timing {
        start,
        end,
        send_end,
    } = timing;
    let tracker = run.tracker();
    let mut latencies = Vec::with_capacity(tracker.accepted.len());
    let mut last_confirmation = start;
    let mut confirmed_while_sending = 0u64;
    for (txid, accepted) in &tracker.accepted {
        if let Some(at) = tracker.confirmed_at(txid, accepted) {
            latencies.push(at.saturating_duration_since(accepted.submitted_at));
            last_confirmation = last_confirmation.max(at);
            if at <= end {
                confirmed_while_sending += 1;
            }
        }
    }
    let mut delays = Vec::new();
    let mut blocks_by_event = 0;
    let mut reached_all = 0;
    let mut max_block_txs = 0;
    let mut stale_blocks = 0;
    for (hash, block) in &tracker.blocks {
        max_block_txs = max_block_txs.max(block.txids.as_ref().map_or(0, Vec::len));
        if !final_chain.contains(hash) {
            stale_blocks += 1;
            continue;
        }
        let by_event: Vec<Instant> = block
            .arrivals
            .iter()
            .flatten()
            .filter(|(_, via_event)| *via_event)
            .map(|(at, _)| *at)
            .collect();
        let Some(first) = by_event.iter().min().copied() else {
            continue;
        };
        blocks_by_event += 1;
        if by_event.len() == tracker.n_urls {
            reached_all += 1;
        }
        let mut skipped_first = false;
        for at in by_event {
            if at == first && !skipped_first {
                skipped_first = true;
                continue;
            }
            delays.push(at - first);
        }
    }
    let confirmed = tracker.confirmed;
    let accepted = tracker.accepted.len() as u64;
    let sending_secs = (send_end - start).as_secs_f64().max(1e-9);
    let confirm_span = (last_confirmation - start).as_secs_f64();
    Report {
        rpc_urls: apis.iter().map(|api| api.url().to_string()).collect(),
        chain: run.spec.name.clone(),
        target_tps: args.tps,
        duration_secs: args.duration,
        senders: args.senders.unwrap_or_default(),
        submitted: tracker.submitted,
        accepted,
        rejected: tracker.rejected.clone(),
        confirmed,
        unconfirmed: accepted.saturating_sub(confirmed),
        accepted_tps: accepted as f64 / sending_secs,
        confirmed_tps: if confirm_span > 0.0 {
            confirmed as f64 / confirm_span
        } else {
            0.0
        },
        confirmed_tps_while_sending: confirmed_while_sending as f64
            / (end - start).as_secs_f64().max(1e-9),
        latency: LatencySummary::from_durations(latencies),
        blocks: tracker.blocks.len(),
        stale_blocks,
        max_block_txs,
        propagation: Propagation {
            blocks: blocks_by_event,
            reached_all_nodes: reached_all,
            delay: LatencySummary::from_durations(delays),
        },
        reorgs: tracker.reorgs,
        txid_mismatches: tracker.txid_mismatches,
        events_missed: tracker.events_missed,
        lost,
        missing_per_node,
        converged: converged_height.is_some(),
        final_height: converged_height,
        elapsed_secs: start.elapsed().as_secs_f64(),
    }
}

impl Report {
    fn describe(&self) -> String {
        let rejected_total: u64 = self.rejected.values().sum();
        let rejected = if self.rejected.is_empty() {
            String::new()
        } else {
            let codes: Vec<String> = self
                .rejected
                .iter()
                .map(|(code, count)| format!("{code} {count}"))
                .collect();
            format!(" ({})", codes.join(", "))
        };
        let verdict = if self.lost == 0 {
            "every accepted tx is confirmed on every node".to_string()
        } else {
            format!("missing per node: {:?}", self.missing_per_node)
        };
        let convergence = match self.final_height {
            Some(height) => format!("all nodes on one tip at height {height}"),
            None => "nodes did NOT converge within the drain timeout".to_string(),
        };
        format!(
            "load report: {} nodes, chain {}, {} senders, target {} tx/s for {} s\n\
             \x20 submitted    {}\n\
             \x20 accepted     {} ({:.1} tx/s)\n\
             \x20 rejected     {rejected_total}{rejected}\n\
             \x20 confirmed    {} ({:.1} tx/s first submit to last confirmation; {:.1} tx/s while sending)\n\
             \x20 unconfirmed  {}\n\
             \x20 latency      submit to confirmed: {}\n\
             \x20 blocks       {} (largest {} txs), {} stale, {} reorgs, {} events dropped for us\n\
             \x20 propagation  first node to each other node: {} ({} final-chain blocks, {} reached all nodes)\n\
             \x20 lost         {} ({verdict})\n\
             \x20 convergence  {convergence}\n\
             \x20 elapsed      {:.1} s\n",
            self.rpc_urls.len(),
            self.chain,
            self.senders,
            self.target_tps,
            self.duration_secs,
            self.submitted,
            self.accepted,
            self.accepted_tps,
            self.confirmed,
            self.confirmed_tps,
            self.confirmed_tps_while_sending,
            self.unconfirmed,
            self.latency.describe(),
            self.blocks,
            self.max_block_txs,
            self.stale_blocks,
            self.reorgs,
            self.events_missed,
            self.propagation.delay.describe(),
            self.propagation.blocks,
            self.propagation.reached_all_nodes,
            self.lost,
            self.elapsed_secs,
        )
    }
}

/// Funds derived senders from the dev accounts: each dev account pays every
/// tenth sender, at most `window` at a time (the nonce limit), and every
/// payment must be confirmed on every node before the run starts. Senders
/// that already hold enough (an earlier run) are skipped.
async fn fund_senders(
    apis: &[Api],
    spec: &ChainSpec,
    senders: &[Sender],
    need: Amount,
    fee: Amount,
    window: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let addresses: Vec<String> = senders
        .iter()
        .map(|sender| spec.format_address(&sender.address))
        .collect();
    let balances = balances_everywhere(apis, &addresses).await?;
    let mut unfunded: Vec<usize> = (0..senders.len())
        .filter(|&index| balances[index] < need)
        .collect();
    if unfunded.is_empty() {
        progress!("all {} senders already funded", senders.len());
        return Ok(());
    }
    progress!(
        "funding {} sender accounts with {} coins each...",
        unfunded.len(),
        need.to_coins_string()
    );
    let funders = dev_accounts();
    let genesis = spec.genesis_hash();
    while !unfunded.is_empty() {
        // One wave: up to `window` payments per dev account.
        let mut wave: Vec<usize> = Vec::new();
        let mut per_funder = vec![0u64; funders.len()];
        unfunded.retain(|&index| {
            let funder = index % funders.len();
            if per_funder[funder] < window {
                per_funder[funder] += 1;
                wave.push(index);
                false
            } else {
                true
            }
        });
        let mut next_nonce = HashMap::new();
        for &index in &wave {
            let funder = &funders[index % funders.len()];
            let nonce = match next_nonce.get(&funder.index) {
                Some(&nonce) => nonce,
                None => {
                    apis[0]
                        .account(&spec.format_address(&funder.address))
                        .await?
                        .next_nonce
                }
            };
            let tx = Transaction::new_signed(
                &funder.secret_key,
                &genesis,
                senders[index].address,
                need,
                fee,
                nonce,
                String::new(),
            );
            apis[0]
                .submit_tx(&tx, spec, TxFormat::Json)
                .await
                .with_context(|| {
                    format!("funding {} from dev:{}", addresses[index], funder.index)
                })?;
            next_nonce.insert(funder.index, nonce + 1);
        }
        loop {
            let balances = balances_everywhere(apis, &addresses).await?;
            if wave.iter().all(|&index| balances[index] >= need) {
                break;
            }
            if Instant::now() >= deadline {
                bail!("funding transactions not confirmed on every node within {} s (is any node mining?)", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        progress!("funded {} senders, {} to go", wave.len(), unfunded.len());
    }
    Ok(())
}

/// Each address's smallest confirmed balance across all nodes.
async fn balances_everywhere(apis: &[Api], addresses: &[String]) -> anyhow::Result<Vec<Amount>> {
    use futures::StreamExt;
    let mut lowest = vec![Amount::MAX; addresses.len()];
    for api in apis {
        let answers: Vec<(usize, Result<Amount, ApiError>)> =
            futures::stream::iter(addresses.iter().enumerate())
                .map(|(index, address)| async move {
                    (
                        index,
                        api.account(address).await.map(|account| account.balance),
                    )
                })
                .buffer_unordered(32)
                .collect()
                .await;
        for (index, answer) in answers {
            lowest[index] = lowest[index].min(answer?);
        }
    }
    Ok(lowest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txid(byte: u8) -> TxId {
        TxId(ledger::Hash256([byte; 32]))
    }

    fn block_hash(byte: u8) -> BlockHash {
        BlockHash(ledger::Hash256([byte; 32]))
    }

    #[test]
    fn pacer_spaces_sends_and_limits_catch_up() {
        let start = Instant::now();
        let pacer = Pacer::new(1000, start);
        let first = pacer.reserve(start);
        let second = pacer.reserve(start);
        assert_eq!(first, start);
        assert_eq!(second - first, Duration::from_millis(1));
        // After a 5 s stall, at most 100 ms of backlog is made up.
        let later = start + Duration::from_secs(5);
        let due = pacer.reserve(later);
        assert_eq!(due, later - Duration::from_millis(100));
        let mut count_past = 0;
        while pacer.reserve(later) < later {
            count_past += 1;
        }
        assert_eq!(count_past, 99);
    }

    #[test]
    fn tracker_confirms_in_either_order_and_undoes_reorgs() {
        let now = Instant::now();
        let mut tracker = Tracker {
            n_urls: 2,
            sender_accepted: vec![0; 2],
            sender_confirmed: vec![0; 2],
            ..Tracker::default()
        };
        let accepted = |sender| Accepted {
            submitted_at: now,
            url: 0,
            sender,
        };
        // Accepted first, then included.
        tracker.accept(txid(1), accepted(0));
        assert_eq!(tracker.outstanding(0), 1);
        assert!(tracker.block_arrived(block_hash(10), 1, now + Duration::from_millis(30), true));
        assert!(!tracker.block_arrived(block_hash(10), 0, now + Duration::from_millis(50), true));
        tracker.block_fetched(block_hash(10), vec![txid(1), txid(2)]);
        assert_eq!(tracker.confirmed, 1);
        assert_eq!(tracker.outstanding(0), 0);
        // Included first (the block beat the submit answer), then accepted.
        tracker.accept(txid(2), accepted(1));
        assert_eq!(tracker.confirmed, 2);
        assert_eq!(tracker.outstanding(1), 0);
        // Latency is measured to the arrival on the submitting node (url 0).
        assert_eq!(
            tracker.confirmed_at(&txid(1), &accepted(0)),
            Some(now + Duration::from_millis(50))
        );
        // A reorg away from the block unconfirms both; re-inclusion counts once.
        tracker.reorg(&[block_hash(10)], &[]);
        assert_eq!(tracker.confirmed, 0);
        assert_eq!(tracker.outstanding(0), 1);
        tracker.block_arrived(block_hash(11), 0, now, true);
        tracker.block_fetched(block_hash(11), vec![txid(1), txid(2)]);
        assert_eq!(tracker.confirmed, 2);
        // A late reorg report naming the old block changes nothing now.
        tracker.reorg(&[block_hash(10)], &[]);
        assert_eq!(tracker.confirmed, 2);
        // Another node switching back to the first block, already fetched,
        // keeps both confirmed (no refetch will come for it).
        tracker.reorg(&[block_hash(11)], &[block_hash(10)]);
        assert_eq!(tracker.confirmed, 2);
        assert_eq!(tracker.included.get(&txid(1)), Some(&block_hash(10)));
    }

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
