//! `testnet up`: starts N nodes as child processes of this executable
//! (`testnet node ...`, the same code as `ledger-node`) on loopback, in a
//! ring of initial peers, waits until every node is ready and has a peer,
//! prints a banner, and on Ctrl-C or SIGTERM stops them all (SIGTERM, then
//! SIGKILL after `--stop-timeout`), leaving no process behind. On SIGUSR1
//! it starts every node that has exited again, with the same data dir and
//! flags: `testnet chaos` kills a node with SIGKILL and asks for its
//! restart this way, so the node stays this launcher's child.
//!
//! Beyond SPEC's flags: `--p2p-base` and `--rpc-base` (default 7070 and
//! 8080) move the port ranges so several testnets, or tests, can run side
//! by side; `--no-discovery` pins the ring; `--miner-address` pays every
//! miner to one address (by default node i mines to dev account i-1, so
//! rewards show who mined); `--log`, `--ready-timeout` and `--stop-timeout`
//! tune the nodes' logging and the start and stop deadlines. LEDGER_*
//! variables of the caller's environment are not passed to the nodes.
//!
//! Children are spawned from the main thread (this command runs a
//! current-thread runtime) because their parent-death signal is tied to the
//! thread that forked them; see `testnet::process`.

use anyhow::{bail, Context};
use ledger::chainspec::{dev_accounts, DEV_KEYS_WARNING};
use ledger::ChainSpec;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use testnet::api::Api;
use testnet::process::{stop_all, StopOutcome, Supervised};
use testnet::topology::{self, NodePlan};
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Number of nodes
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub nodes: u16,
    /// How many nodes mine, counting from node1 [default: 2, or --nodes if fewer]
    #[arg(long)]
    pub miners: Option<usize>,
    /// Chain: dev, regtest, or a chain spec JSON file
    #[arg(long, default_value = "dev")]
    pub chain: String,
    /// Where node i keeps its data and node.log: <DATA_DIR>/node<i>
    #[arg(long, default_value = "./testnet-data")]
    pub data_dir: PathBuf,
    /// Delete the nodes' data dirs first (only <DATA_DIR>/node1..node<N>)
    #[arg(long)]
    pub fresh: bool,
    /// Node i listens for peers on 127.0.0.1:<P2P_BASE + i>
    #[arg(long, default_value_t = 7070)]
    pub p2p_base: u16,
    /// Node i serves RPC on 127.0.0.1:<RPC_BASE + i>
    #[arg(long, default_value_t = 8080)]
    pub rpc_base: u16,
    /// Nodes dial only their ring neighbours (no peer discovery)
    #[arg(long)]
    pub no_discovery: bool,
    /// Address miners are paid to [default on dev/regtest: node i mines to dev account i-1]
    #[arg(long)]
    pub miner_address: Option<String>,
    /// Log filter for every node (their --log)
    #[arg(long, default_value = "info")]
    pub log: String,
    /// Seconds to wait for every node to be ready and connected
    #[arg(long, default_value_t = 120)]
    pub ready_timeout: u64,
    /// Seconds each node gets to exit after SIGTERM before it is killed
    #[arg(long, default_value_t = 10)]
    pub stop_timeout: u64,
}

/// A started node: its place in the plan, how to reach it and how it was
/// started (to start it again the same way). Its process
/// is kept apart, at the same index of a `Vec<Supervised>`, so stopping can
/// take all processes as one slice.
struct Launched {
    plan: NodePlan,
    miner_address: Option<String>,
    /// `http://127.0.0.1:PORT`, also the `Api` base.
    api: Api,
    argv: Vec<OsString>,
    log_path: PathBuf,
}

pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(up(args))
}

/// The `--miner-address` each mining node gets, or `None` for non-miners.
fn miner_address(
    args: &UpArgs,
    spec: &ChainSpec,
    plan: &NodePlan,
) -> anyhow::Result<Option<String>> {
    if !plan.mining {
        return Ok(None);
    }
    if let Some(address) = &args.miner_address {
        return Ok(Some(address.clone()));
    }
    if spec.is_dev_chain() {
        let accounts = dev_accounts();
        let account = &accounts[(plan.index - 1) % accounts.len()];
        return Ok(Some(spec.format_address(&account.address)));
    }
    bail!(
        "chain {} has no dev accounts: give miners an address with --miner-address",
        spec.name
    )
}

/// The `testnet node` arguments of one node.
fn node_args(
    args: &UpArgs,
    chain: &str,
    data_dir: &Path,
    plan: &NodePlan,
    plans: &[NodePlan],
    miner: Option<&str>,
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![
        "node".into(),
        "--chain".into(),
        chain.into(),
        "--data-dir".into(),
        data_dir.as_os_str().to_owned(),
        "--p2p-addr".into(),
        plan.p2p_addr.to_string().into(),
        "--rpc-addr".into(),
        plan.rpc_addr.to_string().into(),
        "--log".into(),
        args.log.clone().into(),
    ];
    for &peer in &plan.dials {
        argv.push("--peer".into());
        argv.push(plans[peer - 1].p2p_addr.to_string().into());
    }
    if args.no_discovery {
        argv.push("--no-discovery".into());
    }
    if let Some(address) = miner {
        argv.push("--mine".into());
        argv.push("--miner-address".into());
        argv.push(address.into());
    }
    argv
}

/// Fails early, with the port, when something already listens there; a
/// node would fail the same way, but less clearly and after others started.
fn check_ports_free(plans: &[NodePlan]) -> anyhow::Result<()> {
    for plan in plans {
        for addr in [plan.p2p_addr, plan.rpc_addr] {
            std::net::TcpListener::bind(addr).with_context(|| {
                format!(
                    "{} port {addr} is not free (another testnet running? choose other ports with --p2p-base/--rpc-base)",
                    plan.name()
                )
            })?;
        }
    }
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let nodes = usize::from(args.nodes);
    let miners = args.miners.unwrap_or(2.min(nodes));
    let plans = topology::plan(nodes, miners, args.p2p_base, args.rpc_base)?;
    let spec = ChainSpec::load(&args.chain)
        .with_context(|| format!("cannot use chain {:?}", args.chain))?;
    // A chain file path must survive the children's own path handling.
    let chain_arg = if ChainSpec::builtin(&args.chain).is_some() {
        args.chain.clone()
    } else {
        std::fs::canonicalize(&args.chain)
            .with_context(|| format!("cannot resolve chain file {}", args.chain))?
            .display()
            .to_string()
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let miner_addresses: Vec<Option<String>> = plans
        .iter()
        .map(|plan| miner_address(&args, &spec, plan))
        .collect::<anyhow::Result<_>>()?;
    for plan in &plans {
        let node_dir = data_dir.join(plan.name());
        if args.fresh && node_dir.exists() {
            std::fs::remove_dir_all(&node_dir)
                .with_context(|| format!("cannot delete {}", node_dir.display()))?;
        }
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("cannot create {}", node_dir.display()))?;
    }
    check_ports_free(&plans)?;
    let exe = std::env::current_exe().context("cannot find this executable to start nodes from")?;

    // Handlers first: a Ctrl-C during start-up must still stop what started.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    // Early too: SIGUSR1's default action would end the launcher.
    let mut restart = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;

    // The node reads its settings from LEDGER_* variables too; one left in
    // the user's shell (LEDGER_MINE, LEDGER_PEERS...) must not change the
    // testnet this command describes.
    let unset: Vec<OsString> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            let name = name.to_string_lossy();
            name.starts_with("LEDGER_") || name == "RUST_LOG"
        })
        .collect();
    let client = Api::client(Duration::from_secs(5))?;
    let mut launched: Vec<Launched> = Vec::with_capacity(nodes);
    let mut processes: Vec<Supervised> = Vec::with_capacity(nodes);
    for (plan, miner) in plans.iter().zip(miner_addresses) {
        let node_dir = data_dir.join(plan.name());
        let argv = node_args(&args, &chain_arg, &node_dir, plan, &plans, miner.as_deref());
        let log_path = node_dir.join("node.log");
        match Supervised::spawn(&plan.name(), &exe, &argv, &unset, &log_path) {
            Ok(process) => {
                processes.push(process);
                launched.push(Launched {
                    plan: plan.clone(),
                    miner_address: miner,
                    api: Api::new(client.clone(), &plan.rpc_url()),
                    argv,
                    log_path,
                });
            }
            Err(error) => {
                stop(&mut processes, args.stop_timeout);
                return Err(error.into());
            }
        }
    }
    eprintln!("testnet: started {nodes} nodes, waiting for them to be ready...");

    let deadline = Instant::now() + Duration::from_secs(args.ready_timeout);
    let wait = tokio::select! {
        result = wait_ready(&launched, &mut processes, &plans, deadline) => Some(result),
        _ = interrupt.recv() => None,
        _ = terminate.recv() => None,
    };
    match wait {
        Some(Ok(())) => {}
        Some(Err(error)) => {
            stop(&mut processes, args.stop_timeout);
            return Err(error);
        }
        None => {
            eprintln!("testnet: interrupted during start-up, stopping nodes");
            stop(&mut processes, args.stop_timeout);
            return Ok(ExitCode::from(130));
        }
    }
    print_banner(&launched, &processes, &spec, &data_dir).await;

    // Supervise until asked to stop; a node that dies is reported once,
    // and SIGUSR1 starts every exited node again (`testnet chaos` kills).
    let mut reported = vec![false; processes.len()];
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = restart.recv() => {
                for (index, node) in launched.iter().enumerate() {
                    if processes[index].poll_exit().is_none() {
                        continue;
                    }
                    match Supervised::spawn(&node.plan.name(), &exe, &node.argv, &unset, &node.log_path) {
                        Ok(process) => {
                            eprintln!("testnet: {} started again (pid {})", process.name, process.pid());
                            processes[index] = process;
                            reported[index] = false;
                        }
                        Err(error) => eprintln!("testnet: cannot start {} again: {error}", node.plan.name()),
                    }
                }
            }
            _ = ticker.tick() => {
                for (process, reported) in processes.iter_mut().zip(reported.iter_mut()) {
                    if let (Some(status), false) = (process.poll_exit(), *reported) {
                        *reported = true;
                        eprintln!(
                            "testnet: {} exited unexpectedly ({status}); last lines of {}:\n{}",
                            process.name,
                            process.log_path.display(),
                            process.log_tail(10)
                        );
                    }
                }
            }
        }
    }
    eprintln!("testnet: stopping {} nodes...", processes.len());
    let clean = stop(&mut processes, args.stop_timeout);
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Stops every started node; true when all exited by themselves with
/// status 0 after SIGTERM (none killed, none failed).
fn stop(processes: &mut [Supervised], stop_timeout: u64) -> bool {
    let outcomes = stop_all(processes, Duration::from_secs(stop_timeout));
    let mut clean = true;
    for (process, outcome) in processes.iter().zip(&outcomes) {
        let name = &process.name;
        match outcome {
            StopOutcome::Terminated(status) if status.success() => {
                eprintln!("testnet: {name} stopped")
            }
            StopOutcome::Terminated(status) => {
                clean = false;
                eprintln!("testnet: {name} stopped with {status}");
            }
            StopOutcome::AlreadyExited(status) => {
                clean = false;
                eprintln!("testnet: {name} had already exited ({status})");
            }
            StopOutcome::Killed => {
                clean = false;
                eprintln!("testnet: {name} did not stop within {stop_timeout} s and was killed");
            }
        }
    }
    clean
}

/// What start-up found out about one node in the last poll.
#[derive(Clone, Debug, Default)]
struct Readiness {
    ready: bool,
    peers: Option<usize>,
    error: Option<String>,
}

/// How long all nodes may be ready but not all connected before `up` stops
/// waiting for peers and only warns: a node without peers is still usable,
/// and its log says why it is alone.
const PEER_GRACE: Duration = Duration::from_secs(20);

/// Waits until every node answers `/ready` (an error at `deadline`) and,
/// with more than one node, has at least one peer (a warning after
/// `PEER_GRACE`). Nodes that are ready but still alone are asked, every few
/// seconds, to dial their ring neighbours again through `POST /v1/peers`,
/// in case their first dial raced the neighbour's start.
async fn wait_ready(
    launched: &[Launched],
    processes: &mut [Supervised],
    plans: &[NodePlan],
    deadline: Instant,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_kick = Instant::now();
    let mut all_ready_since: Option<Instant> = None;
    loop {
        for process in processes.iter_mut() {
            if let Some(status) = process.poll_exit() {
                bail!(
                    "{} exited during start-up ({status}); last lines of {}:\n{}",
                    process.name,
                    process.log_path.display(),
                    process.log_tail(20)
                );
            }
        }
        let polls: Vec<Readiness> =
            futures::future::join_all(launched.iter().map(|node| async move {
                match node.api.ready().await {
                    Ok(true) => match node.api.status().await {
                        Ok(status) => Readiness {
                            ready: true,
                            peers: Some(status.peers),
                            error: None,
                        },
                        Err(error) => Readiness {
                            ready: true,
                            peers: None,
                            error: Some(error.to_string()),
                        },
                    },
                    Ok(false) => Readiness::default(),
                    Err(error) => Readiness {
                        error: Some(error.to_string()),
                        ..Readiness::default()
                    },
                }
            }))
            .await;
        let connected =
            |poll: &Readiness| launched.len() == 1 || poll.peers.is_some_and(|peers| peers > 0);
        if polls.iter().all(|poll| poll.ready && connected(poll)) {
            eprintln!(
                "testnet: all {} nodes ready after {:.1} s",
                launched.len(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if polls.iter().all(|poll| poll.ready) {
            let since = *all_ready_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= PEER_GRACE {
                for (node, poll) in launched.iter().zip(&polls) {
                    if !connected(poll) {
                        eprintln!(
                            "testnet: warning: {} has no peer after {} s; see {}/node.log",
                            node.plan.name(),
                            PEER_GRACE.as_secs(),
                            node.plan.name()
                        );
                    }
                }
                return Ok(());
            }
        } else {
            all_ready_since = None;
        }
        if last_kick.elapsed() >= Duration::from_secs(3) {
            last_kick = Instant::now();
            for (node, poll) in launched.iter().zip(&polls) {
                if poll.ready && !connected(poll) {
                    for &peer in &node.plan.dials {
                        // A failed kick is retried at the next one.
                        let _ = node
                            .api
                            .add_peer(&plans[peer - 1].p2p_addr.to_string())
                            .await;
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            let mut message =
                String::from("nodes not ready in time (raise --ready-timeout on a slow machine):");
            for ((node, poll), process) in launched.iter().zip(&polls).zip(processes.iter()) {
                let state = match (poll.ready, connected(poll)) {
                    (true, true) => continue,
                    (true, false) => "ready but has no peer".to_string(),
                    (false, _) => format!("not ready ({})", poll.error.as_deref().unwrap_or("503")),
                };
                message.push_str(&format!(
                    "\n  {}: {state}; last lines of {}:\n{}",
                    node.plan.name(),
                    process.log_path.display(),
                    process.log_tail(10)
                ));
            }
            bail!(message);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn print_banner(
    launched: &[Launched],
    processes: &[Supervised],
    spec: &ChainSpec,
    data_dir: &Path,
) {
    let genesis = match launched.first() {
        Some(node) => match node.api.status().await {
            Ok(status) => status.genesis_hash.to_string(),
            Err(_) => spec.genesis_hash().to_string(),
        },
        None => spec.genesis_hash().to_string(),
    };
    let mut out = String::new();
    out.push_str(&format!(
        "gossip-ledger testnet: {} nodes on chain {} (genesis {genesis})\ndata: {}\n\n",
        launched.len(),
        spec.name,
        data_dir.display()
    ));
    for (node, process) in launched.iter().zip(processes) {
        let mining = match &node.miner_address {
            Some(address) => format!("mining to {address}"),
            None => "not mining".to_string(),
        };
        out.push_str(&format!(
            "  {:<7} rpc {:<24} p2p {:<16} pid {:<8} {mining}\n",
            node.plan.name(),
            node.plan.rpc_url(),
            node.plan.p2p_addr,
            process.pid()
        ));
    }
    out.push_str("\ninitial links (a ring; blocks must be gossiped):");
    for node in launched {
        for peer in &node.plan.dials {
            out.push_str(&format!(" node{}->node{peer}", node.plan.index));
        }
    }
    out.push_str(&format!(
        "\nlogs: {}/node<i>/node.log\n",
        data_dir.display()
    ));
    if spec.is_dev_chain() {
        out.push_str(
            "\ndev accounts (1,000,000 coins each at genesis; wallet-cli: --from dev:<I>):\n",
        );
        for account in dev_accounts() {
            out.push_str(&format!(
                "  dev:{}  {}  secret {}\n",
                account.index,
                spec.format_address(&account.address),
                hex::encode(account.secret_key.to_bytes())
            ));
        }
        out.push_str(&format!("{DEV_KEYS_WARNING}\n"));
    }
    let urls: Vec<String> = launched.iter().map(|node| node.plan.rpc_url()).collect();
    if let Some(first) = urls.first() {
        out.push_str(&format!(
            "\ntry:\n  wallet-cli --rpc-url {first} send --from dev:0 --to dev:1 --amount 1.5 --wait\n  curl {first}/v1/status\n  testnet check --rpc-url {}\n  testnet load --rpc-url {} --tps 200 --duration 30\n",
            urls.join(","),
            urls.join(",")
        ));
    }
    out.push_str("\nPress Ctrl-C to stop all nodes.\n");
    print!("{out}");
    use std::io::Write;
    // The banner is what scripts wait for; make sure it is not buffered.
    let _ = std::io::stdout().flush();
}
