//! `testnet sim`: parses the flags into `SimOptions` (every flag has a
//! default and a one-line error), runs the simulation, and prints the
//! report (a table, or JSON with `--json`), writing the SVG with `--plot`.
//! A progress line goes to stderr only when stderr is a terminal and the
//! output is not JSON.

use anyhow::Context;
use clap::Args;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;
use testnet::sim::options::{self, SimOptions};
use testnet::sim::scheduler::SECOND;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Nodes in the network
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Outbound connections per node
    #[arg(long, default_value_t = 8)]
    degree: usize,
    /// Who dials whom: random, ring, line or clusters
    #[arg(long, default_value = "random", value_parser = options::parse_topology)]
    topology: options::Topology,
    /// One-way latency per connection: fixed (50ms) or uniform (20ms..150ms)
    #[arg(long, default_value = "20ms..150ms", value_parser = options::parse_latency)]
    latency: options::Latency,
    /// Upload bandwidth per node (100Mbit, 10MB, ...)
    #[arg(long, default_value = "100Mbit", value_parser = options::parse_rate)]
    bandwidth: u64,
    /// Fraction of messages lost
    #[arg(long, default_value = "0", value_parser = options::parse_fraction)]
    loss: f64,
    /// Mean time between blocks
    #[arg(long, default_value = "10s", value_parser = options::parse_duration)]
    block_time: std::time::Duration,
    /// Miners: a count with equal hash power, or shares (0.5,0.3,0.2) [default: min(10, nodes)]
    #[arg(long, value_parser = parse_miner_shares)]
    miners: Option<MinerShares>,
    /// Transactions per second across the network
    #[arg(long, default_value = "1", value_parser = options::parse_tx_rate)]
    tx_rate: f64,
    /// Mean interval between a node's tx announcement rounds (0: at once, as ledger-node)
    #[arg(long, default_value = "0s", value_parser = options::parse_duration)]
    tx_trickle: std::time::Duration,
    /// Simulated time to run
    #[arg(long, default_value = "1h", value_parser = options::parse_duration)]
    duration: std::time::Duration,
    /// Seed of every random draw: the same seed gives the same report
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cut the network in two: at=10m,for=5m,split=0.5
    #[arg(long, value_parser = options::parse_partition)]
    partition: Option<options::Partition>,
    /// Nodes leaving and coming back: every=1m,down=2m
    #[arg(long, value_parser = options::parse_churn)]
    churn: Option<options::Churn>,
    /// Nodes leaving for good: at=10m,nodes=100 (or nodes=0.1, a fraction)
    #[arg(long, value_parser = options::parse_kill)]
    kill: Option<options::Kill>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Write the propagation CDF and tips-in-use charts to this SVG file
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Write the event log here, one JSON object per line (large: for small runs)
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
}

/// The parsed `--miners` (one value: clap would read a bare `Vec` as a
/// flag given several times).
#[derive(Clone, Debug)]
struct MinerShares(Vec<f64>);

fn parse_miner_shares(text: &str) -> Result<MinerShares, String> {
    options::parse_miners(text).map(MinerShares)
}

impl SimArgs {
    fn options(&self) -> SimOptions {
        SimOptions {
            nodes: self.nodes,
            degree: self.degree,
            topology: self.topology,
            latency: self.latency.clone(),
            bandwidth: self.bandwidth,
            loss: self.loss,
            block_time: self.block_time,
            miners: self
                .miners
                .clone()
                .map(|shares| shares.0)
                .unwrap_or_else(|| options::equal_shares(self.nodes.clamp(1, 10))),
            tx_rate: self.tx_rate,
            tx_trickle: self.tx_trickle,
            duration: self.duration,
            seed: self.seed,
            partition: self.partition.clone(),
            churn: self.churn.clone(),
            kill: self.kill.clone(),
        }
    }
}

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let options = args.options();
    options.validate().map_err(anyhow::Error::msg)?;
    let total = options.duration.as_nanos() as u64;
    let show_progress = !args.json && std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut progress = |now: u64| {
        if !now.is_multiple_of(10 * SECOND) {
            return;
        }
        let wall = started.elapsed().as_secs_f64().max(1e-3);
        let ratio = now as f64 / SECOND as f64 / wall;
        let left = (total.saturating_sub(now)) as f64 / SECOND as f64 / ratio.max(1e-9);
        eprint!(
            "\r  simulated {:>6.0}/{:.0} s  {:>6.1}x real time  ETA {:>5.0} s ",
            now as f64 / SECOND as f64,
            total as f64 / SECOND as f64,
            ratio,
            left
        );
        let _ = std::io::stderr().flush();
    };
    let seed = options.seed;
    let mut world = testnet::sim::World::new(options).map_err(anyhow::Error::msg)?;
    if let Some(path) = &args.trace {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating the trace file {}", path.display()))?;
        world = world.with_trace(Box::new(std::io::BufWriter::with_capacity(1 << 20, file)));
    }
    let outcome = world.run(if show_progress {
        Some(&mut progress)
    } else {
        None
    });
    if show_progress {
        eprintln!();
    }
    if let Err(error) = &outcome.trace {
        anyhow::bail!("{error} (seed {seed})");
    }
    if let Some(path) = &args.plot {
        let svg = testnet::sim::plot::svg(&outcome.report, &outcome.block_delays_ms);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.report)?);
    } else {
        print!("{}", outcome.report.table());
    }
    Ok(if outcome.report.txs_lost == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "testnet sim: {} txs were lost (seed {} replays it)",
            outcome.report.txs_lost, outcome.report.seed
        );
        ExitCode::FAILURE
    })
}
