//! `NodeConfig`: the node's settings, validated once from the raw
//! `NodeArgs` (ripgrep style) so nothing downstream reads flags or
//! environment variables. Validation touches no data: it parses addresses,
//! loads the chain spec and reads the data dir's chain marker, so a wrong
//! argument fails with one line before any file is created or changed.

use crate::cli::NodeArgs;
use ledger::chainspec::{dev_accounts, ChainSpecError};
use ledger::mempool::MempoolConfig;
use ledger::{Address, BlockHash, ChainSpec};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the file in the data dir that records which chain it holds.
pub const CHAIN_MARKER_FILE: &str = "CHAIN";

/// Log line format on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything the node needs to start, already checked.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub spec: ChainSpec,
    pub data_dir: PathBuf,
    pub p2p_addr: SocketAddr,
    pub rpc_addr: SocketAddr,
    /// `HOST:PORT` strings; host names are resolved again at every dial.
    pub peers: Vec<String>,
    /// `HOST:PORT` names whose every address is a dial candidate, resolved
    /// again every seed round.
    pub dns_seeds: Vec<String>,
    /// The address advertised to peers, when not the bound one.
    pub external_addr: Option<SocketAddr>,
    pub no_discovery: bool,
    pub mine: bool,
    /// Who is paid for mined blocks; `None` only on non-dev chains without
    /// `--mine` (then nothing is ever mined).
    pub miner_address: Option<Address>,
    pub max_inbound: usize,
    pub max_outbound: usize,
    /// The store's page cache (`--db-cache-mb`), in bytes.
    pub db_cache_bytes: u64,
    pub rpc_admin_token: Option<String>,
    /// The host part of `--rpc-addr` when it was given as a name (it is
    /// one of the `Host` values the RPC answers to).
    pub rpc_addr_name: Option<String>,
    /// `--rpc-allowed-host` names (`*`: any), on top of the defaults.
    pub rpc_allowed_hosts: Vec<String>,
    /// `--rpc-cors-origin` origins (`scheme://host[:port]`); empty: CORS off.
    pub rpc_cors_origins: Vec<String>,
    pub log_filter: String,
    pub log_format: LogFormat,
    /// Longest time one HTTP request may take (SSE streams excepted).
    pub request_timeout: Duration,
    /// Threads the background miner uses.
    pub mining_threads: usize,
    /// Mempool limits (SPEC's defaults; tests shrink them).
    pub mempool: MempoolConfig,
}

/// Why the arguments cannot be used. Each message is one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{0}")]
    Chain(#[from] ChainSpecError),
    #[error("invalid {option} {value:?}: {reason}")]
    BadListenAddress {
        option: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid --peer {0:?}: expected HOST:PORT")]
    BadPeer(String),
    #[error("invalid --dns-seed {0:?}: expected HOST:PORT")]
    BadDnsSeed(String),
    #[error("invalid --external-addr {value:?}: {reason}")]
    BadExternalAddress { value: String, reason: String },
    #[error("invalid --miner-address {value:?}: {reason}")]
    BadMinerAddress { value: String, reason: String },
    #[error("--mine on chain {0:?} needs --miner-address (only dev and regtest have a default)")]
    MinerAddressRequired(String),
    #[error("--max-inbound and --max-outbound must leave room for at least one peer")]
    NoPeerSlots,
    #[error("--rpc-admin-token must not be empty")]
    EmptyToken,
    #[error("invalid --rpc-allowed-host {0:?}: expected a host name or IP address")]
    BadAllowedHost(String),
    #[error("invalid --rpc-cors-origin {0:?}: expected scheme://host[:port], e.g. http://localhost:3000")]
    BadCorsOrigin(String),
    #[error("data dir {path} is not usable: {reason}")]
    DataDir { path: String, reason: String },
    #[error("data dir {path} holds chain {found}, not {expected}; use another --data-dir")]
    WrongChain {
        path: String,
        found: String,
        expected: String,
    },
}

impl NodeConfig {
    /// Validates raw arguments. Reads (never writes) the data dir.
    pub fn from_args(args: &NodeArgs) -> Result<NodeConfig, ConfigError> {
        let spec = ChainSpec::load(&args.chain)?;
        let p2p_addr = parse_listen_addr("--p2p-addr", &args.p2p_addr)?;
        let rpc_addr = parse_listen_addr("--rpc-addr", &args.rpc_addr)?;
        let peers: Vec<String> = args
            .peers
            .iter()
            .map(|peer| peer.trim())
            .filter(|peer| !peer.is_empty())
            .map(|peer| check_peer(peer).map(|()| peer.to_string()))
            .collect::<Result<_, _>>()?;
        let dns_seeds: Vec<String> = args
            .dns_seeds
            .iter()
            .map(|seed| seed.trim())
            .filter(|seed| !seed.is_empty())
            .map(|seed| {
                check_peer(seed)
                    .map(|()| seed.to_string())
                    .map_err(|_| ConfigError::BadDnsSeed(seed.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let external_addr = match args.external_addr.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(parse_external_addr(text)?),
        };
        let miner_address = match &args.miner_address {
            Some(text) => {
                Some(
                    spec.parse_address(text)
                        .map_err(|error| ConfigError::BadMinerAddress {
                            value: text.clone(),
                            reason: error.to_string(),
                        })?,
                )
            }
            None if spec.is_dev_chain() => Some(dev_accounts()[0].address),
            None if args.mine => return Err(ConfigError::MinerAddressRequired(spec.name.clone())),
            None => None,
        };
        if args.max_inbound == 0 && args.max_outbound == 0 {
            return Err(ConfigError::NoPeerSlots);
        }
        if args
            .rpc_admin_token
            .as_deref()
            .is_some_and(|token| token.trim().is_empty())
        {
            return Err(ConfigError::EmptyToken);
        }
        let rpc_allowed_hosts = clean_list(&args.rpc_allowed_hosts);
        if let Some(bad) = rpc_allowed_hosts
            .iter()
            .find(|host| *host != "*" && crate::rpc::normalize_host(host).is_none())
        {
            return Err(ConfigError::BadAllowedHost(bad.clone()));
        }
        let rpc_cors_origins = clean_list(&args.rpc_cors_origins);
        if let Some(bad) = rpc_cors_origins.iter().find(|origin| !is_origin(origin)) {
            return Err(ConfigError::BadCorsOrigin(bad.clone()));
        }
        let rpc_addr_name = args
            .rpc_addr
            .rsplit_once(':')
            .map(|(host, _)| host)
            .filter(|host| host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('['))
            .map(str::to_string);
        check_data_dir(&args.data_dir, &spec)?;
        Ok(NodeConfig {
            spec,
            data_dir: args.data_dir.clone(),
            p2p_addr,
            rpc_addr,
            peers,
            dns_seeds,
            external_addr,
            no_discovery: args.no_discovery,
            mine: args.mine,
            miner_address,
            max_inbound: args.max_inbound,
            max_outbound: args.max_outbound,
            db_cache_bytes: args.db_cache_mb.max(1).saturating_mul(1 << 20),
            rpc_admin_token: args.rpc_admin_token.clone(),
            rpc_addr_name,
            rpc_allowed_hosts,
            rpc_cors_origins,
            log_filter: args.log.clone(),
            log_format: args.log_format,
            request_timeout: Duration::from_secs(10),
            mining_threads: 1,
            mempool: MempoolConfig::default(),
        })
    }

    /// A config for tests and embedders: the given chain in `data_dir`,
    /// both sockets on loopback with port 0, no peers, not mining.
    pub fn for_tests(spec: ChainSpec, data_dir: &Path) -> NodeConfig {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        NodeConfig {
            miner_address: spec.is_dev_chain().then(|| dev_accounts()[0].address),
            spec,
            data_dir: data_dir.to_path_buf(),
            p2p_addr: loopback,
            rpc_addr: loopback,
            peers: Vec::new(),
            dns_seeds: Vec::new(),
            external_addr: None,
            no_discovery: true,
            mine: false,
            max_inbound: 32,
            max_outbound: 8,
            db_cache_bytes: ledger::storage::DEFAULT_CACHE_BYTES,
            rpc_admin_token: None,
            rpc_addr_name: None,
            rpc_allowed_hosts: Vec::new(),
            rpc_cors_origins: Vec::new(),
            log_filter: "info".into(),
            log_format: LogFormat::Pretty,
            request_timeout: Duration::from_secs(10),
            mining_threads: 1,
            mempool: MempoolConfig::default(),
        }
    }
}

/// A listen address: an IP and port, or a host name that resolves now.
fn parse_listen_addr(option: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |reason: String| ConfigError::BadListenAddress {
        option,
        value: value.to_string(),
        reason,
    };
    if !value.contains(':') {
        return Err(bad("expected IP:PORT".into()));
    }
    value
        .to_socket_addrs()
        .map_err(|error| bad(error.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

/// Trimmed, non-empty entries (an env var may hold `a, b,`).
fn clean_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
        .map(str::to_string)
        .collect()
}

/// `http://host[:port]` or `https://host[:port]`, as browsers send it in
/// `Origin` (no path, no trailing slash).
fn is_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && !authority.contains(['/', ' ', '?', '#'])
        && axum::http::HeaderValue::from_str(origin).is_ok()
}

/// `--external-addr`: `HOST:PORT` resolved now (the first address), which
/// peers must be able to dial, so neither an unspecified IP nor port 0.
fn parse_external_addr(value: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |reason: &str| ConfigError::BadExternalAddress {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    check_peer(value).map_err(|_| bad("expected HOST:PORT"))?;
    let addr = match value.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => value
            .to_socket_addrs()
            .map_err(|error| bad(&error.to_string()))?
            .next()
            .ok_or_else(|| bad("resolves to no address"))?,
    };
    if addr.ip().is_unspecified() {
        return Err(bad("an unspecified IP cannot be dialed"));
    }
    Ok(addr)
}

/// `HOST:PORT` with a non-empty host and a valid port. Not resolved here:
/// the P2P layer resolves at every dial, since containers change address.
fn check_peer(peer: &str) -> Result<(), ConfigError> {
    let (host, port) = peer
        .rsplit_once(':')
        .ok_or_else(|| ConfigError::BadPeer(peer.to_string()))?;
    let host_ok = !host.is_empty() && !host.contains(char::is_whitespace) && !host.contains('/');
    match port.parse::<u16>() {
        Ok(port) if port != 0 && host_ok => Ok(()),
        _ => Err(ConfigError::BadPeer(peer.to_string())),
    }
}

/// The chain marker's text: `<name> <genesis hash>`.
pub(crate) fn chain_marker(spec: &ChainSpec) -> String {
    format!("{} {}\n", spec.name, spec.genesis_hash())
}

/// Refuses a data dir that is a file, or that holds another chain. A dir
/// that does not exist yet is fine: the node creates it at start.
fn check_data_dir(dir: &Path, spec: &ChainSpec) -> Result<(), ConfigError> {
    let path = dir.display().to_string();
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err(ConfigError::DataDir {
                path,
                reason: "not a directory".into(),
            })
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(ConfigError::DataDir {
                path,
                reason: error.to_string(),
            })
        }
    }
    let marker = match std::fs::read_to_string(dir.join(CHAIN_MARKER_FILE)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(ConfigError::DataDir {
                path,
                reason: format!("cannot read {CHAIN_MARKER_FILE}: {error}"),
            })
        }
    };
    let mut words = marker.split_whitespace();
    let (name, genesis) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let expected_genesis = spec.genesis_hash();
    if genesis.parse::<BlockHash>().ok() == Some(expected_genesis) {
        return Ok(());
    }
    Err(ConfigError::WrongChain {
        path,
        found: format!("{name:?} (genesis {genesis})"),
        expected: format!("{:?} (genesis {expected_genesis})", spec.name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: NodeArgs,
    }

    fn args(extra: &[&str]) -> NodeArgs {
        Wrapper::try_parse_from(std::iter::once("ledger-node").chain(extra.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn valid_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        let config = NodeConfig::from_args(&args(&[
            "--chain",
            "regtest",
            "--data-dir",
            data,
            "--peer",
            "node2:7070",
        ]))
        .unwrap();
        assert_eq!(config.spec.name, "regtest");
        assert_eq!(config.rpc_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.miner_address, Some(dev_accounts()[0].address));
        assert_eq!(config.peers, ["node2:7070"]);
        assert!(config.dns_seeds.is_empty());
        assert_eq!(config.external_addr, None);
        assert!(
            !Path::new(data).exists(),
            "validation must not create the data dir"
        );
    }

    #[test]
    fn each_bad_argument_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let cases: &[&[&str]] = &[
            &["--chain", "/nonexistent/chain.json"],
            &["--rpc-addr", "nonsense"],
            &["--p2p-addr", "1.2.3.4:99999"],
            &["--peer", "no-port"],
            &["--peer", ":7070"],
            &["--miner-address", "dev1qqqq"],
            &["--rpc-admin-token", " "],
            &["--rpc-allowed-host", "a b"],
            &["--rpc-cors-origin", "evil.example"],
            &["--rpc-cors-origin", "http://x.example/path"],
            &["--dns-seed", "tasks.node"],
            &["--external-addr", "0.0.0.0:7070"],
            &["--external-addr", "no-port"],
        ];
        for case in cases {
            let mut full = vec!["--data-dir", data];
            full.extend_from_slice(case);
            let error = NodeConfig::from_args(&args(&full)).unwrap_err().to_string();
            assert!(!error.contains('\n'), "{case:?}: {error}");
        }
    }

    #[test]
    fn dns_seeds_and_external_address() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let config = NodeConfig::from_args(&args(&[
            "--data-dir",
            data,
            "--dns-seed",
            "tasks.node:7070,tasks.miner:7070",
            "--dns-seed",
            "seed.example:7071",
            "--external-addr",
            "203.0.113.7:17070",
        ]))
        .unwrap();
        assert_eq!(
            config.dns_seeds,
            ["tasks.node:7070", "tasks.miner:7070", "seed.example:7071"]
        );
        assert_eq!(
            config.external_addr,
            Some("203.0.113.7:17070".parse().unwrap())
        );
    }

    #[test]
    fn data_dir_of_another_chain_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let regtest = ChainSpec::builtin("regtest").unwrap();
        std::fs::write(dir.path().join(CHAIN_MARKER_FILE), chain_marker(&regtest)).unwrap();
        let data = dir.path().to_str().unwrap();
        let error =
            NodeConfig::from_args(&args(&["--data-dir", data, "--chain", "dev"])).unwrap_err();
        assert!(matches!(error, ConfigError::WrongChain { .. }), "{error}");
        NodeConfig::from_args(&args(&["--data-dir", data, "--chain", "regtest"])).unwrap();
        let file = dir.path().join(CHAIN_MARKER_FILE);
        let error =
            NodeConfig::from_args(&args(&["--data-dir", file.to_str().unwrap()])).unwrap_err();
        assert!(matches!(error, ConfigError::DataDir { .. }), "{error}");
    }
}
