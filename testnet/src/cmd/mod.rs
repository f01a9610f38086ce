//! The command line of `testnet` and the dispatch to its commands: `up`
//! (a local multi-node testnet), `load` (a load generator), `check` (a
//! convergence check), `chaos` (fault rounds against a Docker or local
//! testnet, with a verdict), and the two pass-through commands `node` and
//! `wallet`, which run exactly what `ledger-node` and `wallet-cli` run, from
//! the same libraries, so `up` can start nodes from its own executable and
//! tests can drive every tool as a real process.

mod chaos;
mod chaos_nodes;
mod check;
mod load;
mod sim;
mod up;

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "testnet",
    version,
    about = "Run a local gossip-ledger testnet, load it, and check that it converges",
    after_help = "Node mode: `testnet node [ledger-node options]` runs one node exactly as \
                  `ledger-node` does; `testnet wallet [wallet-cli arguments]` runs the wallet."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start N nodes on loopback (node i: P2P 7070+i, RPC 8080+i) and stop them all on Ctrl-C
    Up(up::UpArgs),
    /// Send signed transfers at a target rate and report throughput, latency and block propagation
    Load(load::LoadArgs),
    /// Exit 0 once all nodes report the same tip and state digest, 1 on timeout
    Check(check::CheckArgs),
    /// Run fault rounds (kill, pause, partition, netem) against a Docker or `testnet up` testnet under load, then judge it
    Chaos(chaos::ChaosArgs),
    /// Simulate a large network on virtual time, running the real protocol, chain and mempool code
    Sim(sim::SimArgs),
    /// Run one node: same options as `ledger-node` (see `testnet node --help`)
    #[command(disable_help_flag = true)]
    Node {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run the wallet: same arguments as `wallet-cli` (see `testnet wallet --help`)
    #[command(disable_help_flag = true)]
    Wallet {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Runs `testnet` with `args` (the first being the program name).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    // `node` and `wallet` hand everything after them, `--help` included,
    // to their own parsers, so they are dispatched before clap sees them.
    match args.get(1).and_then(|arg| arg.to_str()) {
        Some("node") => return run_node(args[2..].to_vec()),
        Some("wallet") => return run_wallet(args[2..].to_vec()),
        _ => {}
    }
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Load(args) => load::run(args),
        Command::Check(args) => check::run(args),
        Command::Chaos(args) => chaos::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Node { args } => return run_node(args),
        Command::Wallet { args } => return run_wallet(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("testnet: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_node(args: Vec<OsString>) -> ExitCode {
    // Started by `testnet up`: die with the launcher, even if it is killed.
    if let Err(error) = testnet::process::die_with_parent() {
        eprintln!("testnet node: {error}");
        return ExitCode::FAILURE;
    }
    let argv = std::iter::once(OsString::from("testnet node")).chain(args);
    node::cli::main_with_args(argv)
}

fn run_wallet(args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("testnet wallet")).chain(args);
    wallet_cli::cli::main_with_args(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_defaults_follow_the_spec() {
        let cli = Cli::try_parse_from(["testnet", "up"]).unwrap();
        let Command::Up(args) = cli.command else {
            panic!("not up")
        };
        assert_eq!(args.nodes, 4);
        assert_eq!(args.miners, None);
        assert_eq!(args.chain, "dev");
        assert_eq!(args.data_dir, std::path::PathBuf::from("./testnet-data"));
        assert!(!args.fresh);
        assert_eq!((args.p2p_base, args.rpc_base), (7070, 8080));
    }

    #[test]
    fn load_and_check_parse_url_lists() {
        let cli = Cli::try_parse_from([
            "testnet",
            "load",
            "--rpc-url",
            "http://127.0.0.1:8081,127.0.0.1:8082",
            "--tps",
            "50",
            "--duration",
            "5",
            "--senders",
            "20",
            "--json",
        ])
        .unwrap();
        let Command::Load(args) = cli.command else {
            panic!("not load")
        };
        assert_eq!(
            args.rpc_url,
            vec![
                "http://127.0.0.1:8081".to_string(),
                "http://127.0.0.1:8082".to_string()
            ]
        );
        assert_eq!(
            (args.tps, args.duration, args.senders, args.json),
            (50, 5, Some(20), true)
        );
        let cli =
            Cli::try_parse_from(["testnet", "check", "--rpc-url", "a:1,b:2", "--timeout", "3"])
                .unwrap();
        let Command::Check(args) = cli.command else {
            panic!("not check")
        };
        assert_eq!(args.rpc_url.len(), 2);
        assert_eq!(args.timeout, 3);
        assert!(Cli::try_parse_from(["testnet", "check"]).is_err());
        assert!(
            Cli::try_parse_from(["testnet", "load", "--rpc-url", "a:1", "--tps", "0"]).is_err()
        );
        assert!(Cli::try_parse_from(["testnet", "up", "--nodes", "0"]).is_err());
    }

    #[test]
    fn chaos_takes_urls_or_a_compose_file() {
        let cli = Cli::try_parse_from([
            "testnet",
            "chaos",
            "--compose-file",
            "docker-compose.yml",
            "--rounds",
            "5",
            "--faults",
            "kill,netem",
            "--seed",
            "7",
            "--json",
        ])
        .unwrap();
        let Command::Chaos(args) = cli.command else {
            panic!("not chaos")
        };
        assert_eq!((args.rounds, args.seed, args.json), (5, 7, true));
        assert_eq!(
            args.faults,
            Some(vec![
                testnet::chaos::FaultKind::Kill,
                testnet::chaos::FaultKind::Netem
            ])
        );
        let cli = Cli::try_parse_from(["testnet", "chaos", "--rpc-url", "a:1,b:2"]).unwrap();
        let Command::Chaos(args) = cli.command else {
            panic!("not chaos")
        };
        // No --faults: every fault the testnet found supports.
        assert_eq!(
            (args.rpc_url.len(), args.rounds, args.faults),
            (2, 20, None)
        );
        assert!(Cli::try_parse_from(["testnet", "chaos"]).is_err());
        assert!(
            Cli::try_parse_from(["testnet", "chaos", "--rpc-url", "a:1", "--faults", "flood"])
                .is_err()
        );
        assert!(Cli::try_parse_from([
            "testnet",
            "chaos",
            "--rpc-url",
            "a:1",
            "--compose-file",
            "f.yml"
        ])
        .is_err());
    }
}
