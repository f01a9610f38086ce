//! The `ledger-node` command line: the clap definitions of every option and
//! environment variable in SPEC.md (`NodeArgs`, reused by `testnet node`),
//! the `healthcheck` subcommand, and `main_with_args`, which turns raw
//! arguments into a validated `NodeConfig`, installs logging, runs the node
//! until SIGINT or SIGTERM and chooses the exit code. This is the only place
//! that prints errors for the user and decides how the process ends.

use crate::config::{LogFormat, NodeConfig};
use crate::shutdown::StopSignals;
use crate::Node;
use anyhow::Context as _;
use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Every option of a running node, each with the environment variable that
/// SPEC.md names. Raw text only: `NodeConfig::from_args` validates it once.
#[derive(Args, Clone, Debug)]
pub struct NodeArgs {
    /// Chain to run: `dev`, `regtest`, or the path of a JSON chain spec.
    #[arg(
        long,
        env = "LEDGER_CHAIN",
        default_value = "dev",
        value_name = "dev|regtest|FILE"
    )]
    pub chain: String,

    /// Directory holding the chain database and the node key.
    #[arg(
        long,
        env = "LEDGER_DATA_DIR",
        default_value = "./ledger-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Address to listen on for peers.
    #[arg(
        long,
        env = "LEDGER_P2P_ADDR",
        default_value = "0.0.0.0:7070",
        value_name = "ADDR"
    )]
    pub p2p_addr: String,

    /// Address to serve the HTTP JSON API on.
    #[arg(
        long,
        env = "LEDGER_RPC_ADDR",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub rpc_addr: String,

    /// A peer to connect to (repeatable; host names are resolved at every dial).
    #[arg(
        long = "peer",
        env = "LEDGER_PEERS",
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    pub peers: Vec<String>,

    /// A DNS name to find peers by (repeatable): every address it resolves
    /// to is a dial candidate, resolved again every seed round (e.g.
    /// Swarm's `tasks.<service>:7070`, a Kubernetes headless Service).
    #[arg(
        long = "dns-seed",
        env = "LEDGER_DNS_SEEDS",
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    pub dns_seeds: Vec<String>,

    /// The address peers should dial this node at, when it is not the bound
    /// `--p2p-addr` (NAT, port mapping); resolved once at start.
    #[arg(long, env = "LEDGER_EXTERNAL_ADDR", value_name = "HOST:PORT")]
    pub external_addr: Option<String>,

    /// Dial only the `--peer` addresses (still accept inbound connections
    /// and answer address requests).
    #[arg(long, env = "LEDGER_NO_DISCOVERY", value_parser = BoolishValueParser::new())]
    pub no_discovery: bool,

    /// Mine blocks.
    #[arg(long, env = "LEDGER_MINE", value_parser = BoolishValueParser::new())]
    pub mine: bool,

    /// Address credited with mined blocks (default: dev account 0 on `dev`
    /// and `regtest`; required on other chains).
    #[arg(long, env = "LEDGER_MINER_ADDRESS", value_name = "ADDR")]
    pub miner_address: Option<String>,

    /// Most inbound peer connections.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_inbound: usize,

    /// Most outbound peer connections.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_outbound: usize,

    /// MiB of the store's page cache (sled's), the bulk of the node's
    /// memory besides the mempool.
    #[arg(
        long = "db-cache-mb",
        env = "LEDGER_DB_CACHE_MB",
        default_value_t = 16,
        value_name = "MIB"
    )]
    pub db_cache_mb: u64,

    /// Bearer token that unlocks the admin routes for non-loopback clients
    /// (and is then required from every client).
    #[arg(
        long,
        env = "LEDGER_RPC_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub rpc_admin_token: Option<String>,

    /// Another `Host` name the API answers to (repeatable; `*` for any),
    /// besides the bind address, `localhost`, `127.0.0.1` and `[::1]`.
    /// Other hosts get 403, which stops DNS-rebinding pages.
    #[arg(
        long = "rpc-allowed-host",
        env = "LEDGER_RPC_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub rpc_allowed_hosts: Vec<String>,

    /// A web origin (`scheme://host[:port]`) whose pages may call the API
    /// (repeatable; CORS is off without it). Admin routes stay closed to
    /// them.
    #[arg(
        long = "rpc-cors-origin",
        env = "LEDGER_RPC_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub rpc_cors_origins: Vec<String>,

    /// Log filter, e.g. `info` or `node=debug,info`.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_name = "FILTER")]
    pub log: String,

    /// Log line format on stderr.
    #[arg(long, env = "LEDGER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

#[derive(Parser, Debug)]
#[command(
    name = "ledger-node",
    version,
    about = "gossip-ledger node: P2P, miner and JSON RPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Exit 0 when the node answers `GET /ready` with 200, 1 otherwise.
    Healthcheck {
        /// Base URL of the node's API (default: derived from `--rpc-addr`
        /// / `LEDGER_RPC_ADDR`, with an unspecified IP replaced by loopback).
        #[arg(long, value_name = "URL")]
        rpc_url: Option<String>,
    },
}

/// What `ledger-node`'s `main` calls (and `testnet node`, with its own
/// arguments): parses, runs, and maps the outcome to an exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    match cli.command {
        Some(Command::Healthcheck { rpc_url }) => {
            let url = rpc_url.unwrap_or_else(|| default_rpc_url(&cli.node.rpc_addr));
            healthcheck(&url)
        }
        None => run(cli.node),
    }
}

/// The node's async runtime: its threads (workers and blocking threads
/// alike) run `priority::ASYNC_NICE` below the chain writer.
fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(|| {
            crate::priority::lower_current_thread(crate::priority::ASYNC_NICE, "async runtime")
        })
        .max_blocking_threads(max_blocking_threads())
        .build()
}

/// Runs a node with already-parsed arguments until SIGINT or SIGTERM.
pub fn run(args: NodeArgs) -> ExitCode {
    disable_transparent_huge_pages();
    let config = match NodeConfig::from_args(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ledger-node: error: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = crate::logging::init(&config.log_filter, config.log_format) {
        eprintln!("ledger-node: error: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match build_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ledger-node: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        let mut signals = StopSignals::install().context("cannot install signal handlers")?;
        let running = Node::start(config).await?;
        print!("{}", running.banner());
        let _ = std::io::stdout().flush();
        signals.recv().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        anyhow::Ok(())
    });
    // Blocking work still running (a stuck request, a solver chunk) must not
    // hold the process past the 5 s SPEC allows.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the chain of causes joined, as ripgrep does.
            eprintln!("ledger-node: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime's blocking threads: tx admissions, heavy reads, block
/// rebuilds and the dev miner's solve queue for these rather than start a
/// thread each (tokio's default allows 512). Twice the cores keep both
/// cores busy with signature checks; more only added memory: mimalloc
/// keeps a heap per thread, and with 35 blocking threads started by
/// a burst of submissions a node that built 200 full blocks held 509 MB
/// instead of 225 MB (BENCHMARKS.md, "Blocking threads and memory").
fn max_blocking_threads() -> usize {
    std::thread::available_parallelism().map_or(4, |cores| (cores.get() * 2).max(4))
}

/// mimalloc asks the kernel for transparent huge pages on its regions, and
/// with Linux's default `defrag=madvise` a fault in such a region zeroes
/// 2 MiB and may compact memory first, on the faulting thread. The node's
/// heap is small and sparse, so it gains little from huge pages and pays
/// those stalls in the middle of block checks; like Redis and other
/// latency-minded servers it turns them off for its own process (no
/// system setting is touched). Faults after this call get normal pages.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("ledger-node: warning: cannot turn off transparent huge pages: {error}");
    }
}

/// `http://HOST:PORT` for a listen address, with `0.0.0.0` / `::` mapped to
/// loopback so the healthcheck inside a container reaches its own node.
fn default_rpc_url(rpc_addr: &str) -> String {
    match rpc_addr.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let loopback: std::net::IpAddr = if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            format!("http://{}", SocketAddr::new(loopback, addr.port()))
        }
        _ => format!("http://{rpc_addr}"),
    }
}

/// A tiny HTTP/1.1 GET of `/ready`, with std sockets and short timeouts, so
/// the healthcheck needs no async runtime and no HTTP client dependency.
fn healthcheck(url: &str) -> ExitCode {
    match ready_status(url) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("ledger-node healthcheck: {url}/ready answered {status}");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("ledger-node healthcheck: {message}");
            ExitCode::FAILURE
        }
    }
}

fn ready_status(url: &str) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported, got {url}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let base_path = rest[authority.len()..].trim_end_matches('/');
    let host_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let timeout = Duration::from_secs(3);
    let addr = host_port
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {authority}: {error}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {authority}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|error| format!("cannot connect to {authority}: {error}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|error| error.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|error| error.to_string())?;
    let request =
        format!("GET {base_path}/ready HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|error| format!("cannot send to {authority}: {error}"))?;
    let mut head = [0u8; 64];
    let mut filled = 0;
    while filled < 12 {
        let read = stream
            .read(&mut head[filled..])
            .map_err(|error| format!("no answer from {authority}: {error}"))?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    let text = String::from_utf8_lossy(&head[..filled]);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("{authority} did not answer HTTP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kinds of the runtime's threads, workers and blocking ones, run
    /// below the thread that built it (where the chain writer starts).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_runtime_runs_below_the_chain_writer() {
        use crate::priority::{current_thread_nice, ASYNC_NICE};
        let own = current_thread_nice();
        let expected = (own + i64::from(ASYNC_NICE)).min(19);
        let runtime = build_runtime().unwrap();
        let (worker, blocking) = runtime.block_on(async {
            let worker = tokio::spawn(async { current_thread_nice() }).await.unwrap();
            let blocking = tokio::task::spawn_blocking(current_thread_nice)
                .await
                .unwrap();
            (worker, blocking)
        });
        assert_eq!((worker, blocking), (expected, expected));
        assert_eq!(current_thread_nice(), own, "the caller keeps its priority");
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("ledger-node").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_follow_spec() {
        let cli = parse(&[]);
        let args = cli.node;
        assert_eq!(args.chain, "dev");
        assert_eq!(args.data_dir, PathBuf::from("./ledger-data"));
        assert_eq!(args.p2p_addr, "0.0.0.0:7070");
        assert_eq!(args.rpc_addr, "127.0.0.1:8080");
        assert!(args.peers.is_empty());
        assert!(!args.no_discovery && !args.mine);
        assert_eq!((args.max_inbound, args.max_outbound), (32, 8));
        assert_eq!(args.log_format, LogFormat::Pretty);
    }

    #[test]
    fn repeatable_peers_and_subcommand() {
        let cli = parse(&[
            "--peer",
            "a:1",
            "--peer",
            "b:2,c:3",
            "--mine",
            "--log-format",
            "json",
        ]);
        assert_eq!(cli.node.peers, ["a:1", "b:2", "c:3"]);
        assert!(cli.node.mine);
        assert_eq!(cli.node.log_format, LogFormat::Json);
        let cli = parse(&["healthcheck", "--rpc-url", "http://127.0.0.1:1"]);
        assert!(matches!(
            cli.command,
            Some(Command::Healthcheck { rpc_url: Some(_) })
        ));
    }

    #[test]
    fn healthcheck_url_maps_unspecified_to_loopback() {
        assert_eq!(default_rpc_url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(default_rpc_url("127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(default_rpc_url("[::]:8080"), "http://[::1]:8080");
    }

    #[test]
    fn healthcheck_fails_when_nothing_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(ready_status(&format!("http://{addr}")).is_err());
        assert!(ready_status("https://example.com").is_err());
    }
}
