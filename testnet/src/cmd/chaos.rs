//! `testnet chaos`: fault rounds against a running testnet, with a
//! verdict. It finds the nodes (`chaos_nodes`: a compose project, a swarm
//! stack, the containers behind `--rpc-url`, or the local `testnet up` processes
//! behind loopback `--rpc-url`s), draws the fault schedule from `--seed`
//! (`testnet::chaos::plan`), and keeps a steady load of transfers running
//! while, round by round, it applies a fault, holds it, heals it, waits
//! until every node has the same tip and state digest, and checks the
//! invariants: total supply = genesis allocations + subsidy x height, and
//! a killed node comes back (its store opens). At the end every accepted
//! transaction must be confirmed, or at least pending somewhere: one known
//! to no node is lost. Exit 0 only when nothing was lost, nothing broke and
//! every round converged within `--converge-timeout`.
//!
//! The load: dev accounts 1..=8 send to dev account 9, each sender through
//! one node. Each (sender, nonce) always gives the same transaction, so a
//! retry after a timeout is harmless (`duplicate` means it was taken).
//! A node about to be killed gets no new transactions from a second
//! before the kill until it is back: its mempool dies with it, and a tx it
//! took a moment earlier might never have left it. That is how a
//! mempool works, not a fault of the network, so the load avoids it.

use super::chaos_nodes::Nodes;
use super::check::{all_agree, parse_url, states};
use anyhow::{bail, Context};
use futures::StreamExt;
use ledger::chainspec::dev_accounts;
use ledger::json::ReorgJson;
use ledger::sync::lock;
use ledger::Height;
use ledger::{Amount, ChainSpec, Transaction, TxId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testnet::api::{Api, ApiError, TxFormat};
use testnet::chaos::{plan, ChaosReport, FaultKind, RoundReport, TxTally};
use testnet::sse::SseParser;
use tokio::sync::watch;

#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    /// RPC URLs of the nodes, comma-separated; each must reach a container
    /// (by its published port on loopback, or by its IP)
    #[arg(long, value_delimiter = ',', value_parser = parse_url,
          required_unless_present_any = ["compose_file", "stack"],
          conflicts_with_all = ["compose_file", "stack"])]
    pub rpc_url: Vec<String>,
    /// A compose file whose running project is the testnet
    #[arg(long, value_name = "FILE", conflicts_with = "stack")]
    pub compose_file: Option<PathBuf>,
    /// A Docker Swarm stack on this engine whose tasks are the testnet
    /// (`docker stack deploy ... NAME`); reached from the host through
    /// their `docker_gwbridge` IPs
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
    /// Compose project name (default: COMPOSE_PROJECT_NAME, else the name
    /// of the compose file's directory, as compose does)
    #[arg(long, env = "COMPOSE_PROJECT_NAME", value_name = "NAME")]
    pub project: Option<String>,
    /// Fault rounds to run
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Faults to draw from, comma-separated [default: kill,pause,partition,netem
    /// on Docker; kill,pause on local `testnet up` nodes]
    #[arg(long, value_delimiter = ',')]
    pub faults: Option<Vec<FaultKind>>,
    /// Seed of the fault schedule: the same seed gives the same schedule
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Transfers per second of the steady load (0: none)
    #[arg(long, default_value_t = 10)]
    pub tps: u32,
    /// Seconds a round may take to converge after healing
    #[arg(long, default_value_t = 120)]
    pub converge_timeout: u64,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Find the nodes and print the schedule, then stop (touches nothing)
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(chaos(args))
}

/// What compose calls a project by default: the directory name, lower
/// case, keeping only letters, digits, `-` and `_`.
pub(super) fn default_project(compose_file: &std::path::Path) -> String {
    let dir = std::fs::canonicalize(compose_file)
        .ok()
        .and_then(|path| path.parent().map(|dir| dir.to_path_buf()))
        .and_then(|dir| {
            dir.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    dir.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Logs progress on stderr (the report goes to stdout).
fn note(started: Instant, text: &str) {
    eprintln!("[chaos {:>6.1}s] {text}", started.elapsed().as_secs_f64());
}

/// The load's shared bookkeeping. A std mutex: it is never held across an
/// `.await`.
#[derive(Default)]
struct LoadBook {
    submitted: u64,
    accepted: BTreeSet<TxId>,
    errors: BTreeMap<String, u64>,
}

struct Load {
    book: Mutex<LoadBook>,
    /// Nodes that get no new transactions right now.
    fenced: Mutex<BTreeSet<usize>>,
}

async fn chaos(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (mut nodes, urls) = Nodes::find(&args).await?;
    let faults = nodes.faults(args.faults.as_deref())?;
    let n_nodes = nodes.len();
    let client = Api::client(Duration::from_secs(5))?;
    let apis: Vec<Api> = urls
        .iter()
        .map(|url| Api::new(client.clone(), url))
        .collect();
    note(
        started,
        &format!(
            "{} nodes: {}",
            n_nodes,
            nodes
                .names()
                .iter()
                .zip(&urls)
                .map(|(name, url)| format!("{name} at {url}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let schedule = plan(args.seed, args.rounds, &faults, n_nodes);
    note(
        started,
        &format!(
            "schedule for seed {} ({} rounds):",
            args.seed,
            schedule.len()
        ),
    );
    for (index, fault) in schedule.iter().enumerate() {
        eprintln!("    round {:>2}: {}", index + 1, fault.describe());
    }

    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let bound = Duration::from_secs(args.converge_timeout);
    if converge(&apis, bound).await.is_none() {
        bail!(
            "the testnet does not converge even before any fault (waited {} s)",
            bound.as_secs()
        );
    }
    let status = apis[0].status().await?;
    let spec =
        ChainSpec::builtin(&status.chain).filter(|spec| spec.genesis_hash() == status.genesis_hash);
    if spec.is_none() {
        note(
            started,
            &format!(
                "chain {:?} is not built in: the supply check is skipped and no load runs",
                status.chain
            ),
        );
    }

    let (stop_sender, stop) = watch::channel(false);
    let load = Arc::new(Load {
        book: Mutex::new(LoadBook::default()),
        fenced: Mutex::new(BTreeSet::new()),
    });
    let mut tasks = Vec::new();
    if let (Some(spec), true) = (&spec, args.tps > 0) {
        let fee = status.min_fee;
        for (index, sender) in (1..=8).enumerate() {
            tasks.push(tokio::spawn(send_steadily(
                spec.clone(),
                fee,
                sender,
                index % n_nodes,
                apis[index % n_nodes].clone(),
                f64::from(args.tps) / 8.0,
                load.clone(),
                stop.clone(),
            )));
        }
    }
    let deepest_reorg = Arc::new(AtomicU64::new(0));
    let stream_client = Api::stream_client()?;
    for api in &apis {
        tasks.push(tokio::spawn(watch_reorgs(
            api.clone(),
            stream_client.clone(),
            deepest_reorg.clone(),
            stop.clone(),
        )));
    }

    let mut rounds = Vec::new();
    let mut interrupted = false;
    for (index, fault) in schedule.into_iter().enumerate() {
        let round = index + 1;
        note(started, &format!("round {round}: {}", fault.describe()));
        // The PIDs change when a node restarts: look again each round.
        nodes.refresh().await;
        *lock(&load.fenced) = fault.fenced().into_iter().collect();
        if !fault.fenced().is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut violations = Vec::new();
        let mut description = fault.describe();
        match nodes.apply(&fault).await {
            Ok(Some(note_text)) => {
                note(started, &format!("round {round}: {note_text}"));
                description.push_str(&format!(" ({note_text})"));
            }
            Ok(None) => {}
            Err(error) => violations.push(format!("could not apply the fault: {error}")),
        }
        let held = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(fault.hold_ms())) => true,
            _ = tokio::signal::ctrl_c() => false,
        };
        let healed_at = Instant::now();
        if let Err(error) = nodes.heal(&fault, &apis, bound).await {
            violations.push(error);
        }
        let converged = converge(&apis, bound).await;
        let converge_ms = converged
            .as_ref()
            .map(|_| healed_at.elapsed().as_millis() as u64);
        lock(&load.fenced).clear();
        let height = converged.as_ref().map(|state| state.height);
        if let (Some(state), Some(spec)) = (&converged, &spec) {
            if let Some(error) = supply_error(spec, state.height.0, state.total_supply) {
                violations.push(error);
            }
        }
        note(
            started,
            &format!(
                "round {round}: {}{}",
                match converge_ms {
                    Some(ms) => format!(
                        "converged {ms} ms after heal at height {}",
                        height.unwrap_or(Height::ZERO)
                    ),
                    None => format!("NOT converged within {} s", bound.as_secs()),
                },
                if violations.is_empty() {
                    String::new()
                } else {
                    format!("; {}", violations.join("; "))
                }
            ),
        );
        rounds.push(RoundReport {
            round,
            description,
            fault,
            converge_ms,
            height: height.map(u64::from),
            violations,
        });
        if !held {
            note(started, "interrupted: healed the fault, stopping");
            interrupted = true;
            break;
        }
    }

    let _ = stop_sender.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let tally = settle_txs(&apis, &load, bound, started).await;
    let book = lock(&load.book);
    if !book.errors.is_empty() {
        note(
            started,
            &format!(
                "load: refused or failed submissions by code: {:?}",
                book.errors
            ),
        );
    }
    drop(book);
    let mut report = ChaosReport {
        seed: args.seed,
        nodes: nodes.names(),
        converge_bound_secs: bound.as_secs(),
        rounds,
        convergence: Default::default(),
        deepest_reorg: deepest_reorg.load(Ordering::Relaxed),
        txs: tally,
        violations: Vec::new(),
        passed: false,
        wall_secs: started.elapsed().as_secs_f64(),
    };
    if interrupted {
        report
            .violations
            .push("interrupted before the last round".into());
    }
    report.judge();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in report.describe() {
            println!("{line}");
        }
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Polls every node until all report the same tip and digest; the agreed
/// state, or `None` when `bound` passes first.
async fn converge(apis: &[Api], bound: Duration) -> Option<ledger::json::StateJson> {
    let deadline = Instant::now() + bound;
    loop {
        let answers = states(apis).await;
        if all_agree(&answers) {
            return answers.into_iter().next().and_then(Result::ok);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Total supply must be the genesis allocations plus one subsidy per block
/// (fees move coins, they do not make them).
fn supply_error(spec: &ChainSpec, height: u64, total_supply: Amount) -> Option<String> {
    let expected = spec
        .block_subsidy
        .checked_mul(height)
        .and_then(|minted| minted.checked_add(spec.total_allocated()));
    (expected != Some(total_supply)).then(|| {
        format!(
            "total supply {} at height {height}, expected {}",
            total_supply.base_units(),
            expected.map_or("an overflow".to_string(), |amount| amount
                .base_units()
                .to_string())
        )
    })
}

/// One sender of the steady load: dev account `sender` sends to dev
/// account 9 through `api`, `rate` times a second, until stopped.
#[allow(clippy::too_many_arguments)]
async fn send_steadily(
    spec: ChainSpec,
    fee: Amount,
    sender: usize,
    node: usize,
    api: Api,
    rate: f64,
    load: Arc<Load>,
    mut stop: watch::Receiver<bool>,
) {
    let accounts = dev_accounts();
    let key = accounts[sender].secret_key.clone();
    let from = spec.format_address(&accounts[sender].address);
    let to = accounts[9].address;
    let genesis = spec.genesis_hash();
    let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut nonce = None;
    let mut next = Instant::now();
    loop {
        next += period;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        if *stop.borrow() {
            return;
        }
        if lock(&load.fenced).contains(&node) {
            continue;
        }
        let current = match nonce {
            Some(nonce) => nonce,
            None => match api.account(&from).await {
                Ok(account) => account.next_nonce,
                Err(_) => continue,
            },
        };
        // The same (sender, nonce) always makes the same tx, so a retry
        // is the same tx and cannot double-spend or conflict.
        let tx = Transaction::new_signed(
            &key,
            &genesis,
            to,
            Amount::from_base_units(1_000),
            fee,
            current,
            String::new(),
        );
        let txid = tx.txid();
        let result = api.submit_tx(&tx, &spec, TxFormat::Raw).await;
        let mut book = lock(&load.book);
        book.submitted += 1;
        match result {
            Ok(_) => {
                book.accepted.insert(txid);
                nonce = Some(current + 1);
            }
            Err(ApiError::Rejected { code, .. }) if code == "duplicate" => {
                book.accepted.insert(txid);
                nonce = Some(current + 1);
            }
            Err(error) => {
                *book.errors.entry(error.code().to_string()).or_default() += 1;
                // Where we stand is unknown after a timeout or a nonce
                // complaint: ask the node again next time, unless the tx
                // may have been taken (then the retry says `duplicate`).
                if matches!(error, ApiError::Rejected { .. }) {
                    nonce = None;
                } else {
                    nonce = Some(current);
                }
            }
        }
    }
}

/// Follows a node's reorg events, reconnecting when the stream breaks (the
/// node may be down for a fault), and keeps the deepest one.
async fn watch_reorgs(
    api: Api,
    stream_client: reqwest::Client,
    deepest: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        if let Ok(mut response) = api.events(&stream_client, "reorg").await {
            let mut parser = SseParser::new(|name| name == "reorg", 1 << 20);
            loop {
                let chunk = tokio::select! {
                    _ = stop.changed() => return,
                    chunk = response.chunk() => chunk,
                };
                let Ok(Some(bytes)) = chunk else { break };
                let Ok(events) = parser.push(&bytes) else {
                    break;
                };
                for event in events {
                    if let Ok(reorg) = serde_json::from_str::<ReorgJson>(&event.data) {
                        deepest.fetch_max(reorg.disconnected.len() as u64, Ordering::Relaxed);
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

/// After the last round: waits (within `bound`) for the accepted txs to be
/// confirmed, then counts them: confirmed on the agreed chain, pending in
/// some mempool, or lost (known to no node).
async fn settle_txs(apis: &[Api], load: &Load, bound: Duration, started: Instant) -> TxTally {
    let (submitted, accepted): (u64, Vec<TxId>) = {
        let book = lock(&load.book);
        (book.submitted, book.accepted.iter().copied().collect())
    };
    let deadline = Instant::now() + bound;
    let mut unconfirmed: Vec<TxId> = accepted.clone();
    loop {
        let _ = converge(apis, deadline.saturating_duration_since(Instant::now())).await;
        let statuses = statuses_on(&apis[0], &unconfirmed).await;
        unconfirmed = unconfirmed
            .iter()
            .zip(statuses)
            .filter(|(_, status)| status.as_deref() != Some("confirmed"))
            .map(|(txid, _)| *txid)
            .collect();
        if unconfirmed.is_empty() || Instant::now() >= deadline {
            break;
        }
        note(
            started,
            &format!("waiting for {} txs to confirm", unconfirmed.len()),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut pending = 0;
    let mut lost = 0;
    for txid in &unconfirmed {
        let mut known = false;
        for api in apis {
            if let Ok(Some(status)) = api.tx_status(txid).await {
                if status == "pending" || status == "confirmed" {
                    known = true;
                    break;
                }
            }
        }
        if known {
            pending += 1;
        } else {
            lost += 1;
            note(started, &format!("LOST: tx {txid} is known to no node"));
        }
    }
    TxTally {
        submitted,
        accepted: accepted.len() as u64,
        confirmed: (accepted.len() - unconfirmed.len()) as u64,
        pending,
        lost,
    }
}

/// Each tx's status on one node (`None`: unknown or no answer), asking 32
/// at a time.
async fn statuses_on(api: &Api, txids: &[TxId]) -> Vec<Option<String>> {
    futures::stream::iter(
        txids
            .iter()
            .map(|txid| async move { api.tx_status(txid).await.ok().flatten() }),
    )
    .buffered(32)
    .collect()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supply_is_allocations_plus_subsidies() {
        let spec = ChainSpec::builtin("dev").unwrap();
        let at = |height: u64| {
            spec.total_allocated()
                .checked_add(spec.block_subsidy.checked_mul(height).unwrap())
                .unwrap()
        };
        assert_eq!(supply_error(&spec, 10, at(10)), None);
        assert!(supply_error(&spec, 10, at(9)).is_some());
    }

    #[test]
    fn project_name_follows_compose() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("My.Test_net-1");
        std::fs::create_dir(&nested).unwrap();
        let file = nested.join("docker-compose.yml");
        std::fs::write(&file, "services: {}\n").unwrap();
        assert_eq!(default_project(&file), "mytest_net-1");
    }
}
