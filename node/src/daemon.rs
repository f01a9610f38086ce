//! `Node::start` and `RunningNode`: wiring one node together in the current
//! tokio runtime, in an order that fails before touching data where it can:
//! bind the RPC socket and probe the P2P port, then create the data dir and
//! open the chain, load the node key, start the chain writer thread, P2P,
//! the HTTP server and (with `--mine`) the miner. `RunningNode::shutdown`
//! undoes it in reverse: stop mining, close peers and the API, flush
//! storage. Tests and the `testnet` crate run nodes in-process through this.

use crate::chain_writer::{ChainWriter, WriterContext};
use crate::config::{chain_marker, NodeConfig, CHAIN_MARKER_FILE};
use crate::handle::{NodeHandle, Shared};
use crate::metrics::Metrics;
use crate::mining::BackgroundMiner;
use crate::p2p::{self, P2pConfig, P2pHandle};
use crate::relay_cache::RelayCache;
use crate::verifier::Verifier;
use anyhow::Context as _;
use ledger::chain::Chain;
use ledger::chainspec::{dev_accounts, DEV_KEYS_WARNING};
use ledger::mempool::Mempool;
use ledger::sigcache::{SignatureCache, DEFAULT_SIGNATURE_CACHE_CAPACITY};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events buffered per subscriber before a slow one starts missing some.
const EVENT_CHANNEL_CAPACITY: usize = 16_384;
/// How long misbehaving peers stay banned.
const BAN_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// How often the mempool drops expired transactions.
const MEMPOOL_EXPIRY_INTERVAL: Duration = Duration::from_secs(60);
/// Longest wait for each stage of shutdown; together well inside 5 s.
const SHUTDOWN_STAGE_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Entry point for running a node in-process.
pub struct Node;

/// A started node. Drop does not stop it; call `shutdown`.
pub struct RunningNode {
    pub rpc_addr: SocketAddr,
    pub p2p_addr: SocketAddr,
    pub handle: NodeHandle,
    pub data_dir: PathBuf,
    network: P2pHandle,
    miner: Option<BackgroundMiner>,
    server: tokio::task::JoinHandle<()>,
    writer_thread: std::thread::JoinHandle<()>,
    cancel: CancellationToken,
}

fn describe_metrics(metrics: &Metrics) {
    metrics.describe("height", "Height of the best chain.");
    metrics.describe("peers", "Connected peers.");
    metrics.describe("mempool_size", "Transactions in the mempool.");
    metrics.describe(
        "blocks_accepted_total",
        "Valid new blocks stored, by branch (best or side).",
    );
    metrics.describe("blocks_rejected_total", "Invalid blocks, by reason.");
    metrics.describe(
        "txs_accepted_total",
        "Transactions admitted to the mempool.",
    );
    metrics.describe(
        "txs_rejected_total",
        "Transactions refused, by reason (the API error code).",
    );
    metrics.describe(
        "block_validation_seconds",
        "Time to validate and store one block.",
    );
    metrics.describe(
        "blocks_mined_total",
        "Blocks this node's background miner found.",
    );
    metrics.describe(
        "reorgs_total",
        "Best-chain switches that disconnected blocks.",
    );
    metrics.describe("http_requests_total", "HTTP requests, by status class.");
    metrics.describe(
        "mempool_future_txs",
        "Held transactions (behind a nonce gap, not relayed yet) in the mempool's side pool.",
    );
    metrics.describe(
        "mempool_future_refused_total",
        "Transactions refused because the side pool of held transactions was at its cap.",
    );
    metrics.describe(
        "mempool_future_released_total",
        "Held transactions released for relay once their nonce gap filled.",
    );
    metrics.describe(
        "p2p_announcements_known_total",
        "Announced txs we already held, answered from memory; added at each maintenance round.",
    );
    metrics.describe(
        "p2p_known_inventory_forgotten_total",
        "Items the known-inventory table forgot to make room: which peers had them is no longer remembered.",
    );
}

impl Node {
    /// Starts every part of a node in the current tokio runtime.
    pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
        // Sockets first: a port in use must fail before any data is touched.
        let rpc_listener = tokio::net::TcpListener::bind(config.rpc_addr)
            .await
            .with_context(|| format!("cannot listen on --rpc-addr {}", config.rpc_addr))?;
        let rpc_addr = rpc_listener
            .local_addr()
            .context("rpc listener has no address")?;
        if config.p2p_addr.port() != 0 {
            // Only a probe (released at once): the P2P layer binds for real.
            std::net::TcpListener::bind(config.p2p_addr)
                .with_context(|| format!("cannot listen on --p2p-addr {}", config.p2p_addr))?;
        }
        // Serve at once, answering 503 `not_ready` until the node is built.
        let cancel = CancellationToken::new();
        let (app, router_slot) = crate::rpc::late_app();
        let server_cancel = cancel.clone();
        let server = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let serve = axum::serve(rpc_listener, app)
                .with_graceful_shutdown(server_cancel.cancelled_owned());
            if let Err(error) = serve.await {
                tracing::error!(%error, "rpc server failed");
            }
        });
        // Whatever fails below, the server started above must not outlive it.
        let stop_server_on_error = cancel.clone().drop_guard();

        let spec = config.spec.clone();
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let marker = data_dir.join(CHAIN_MARKER_FILE);
        if !marker.exists() {
            std::fs::write(&marker, chain_marker(&spec))
                .with_context(|| format!("cannot write {}", marker.display()))?;
        }
        let chain_dir = data_dir.join("chain");
        ledger::storage::set_cache_capacity(config.db_cache_bytes);
        let mut chain = {
            let spec = spec.clone();
            tokio::task::spawn_blocking(move || Chain::open(spec, &chain_dir))
                .await
                .context("opening the chain panicked")?
                .with_context(|| format!("cannot open the chain in {}", data_dir.display()))?
        };
        let node_key = crate::node_key::load_or_create(&data_dir)?;
        let node_id = hex::encode(node_key.public_key().0);
        let address_book = match chain.aux_tree("peers") {
            Ok(tree) => Some(tree),
            Err(error) => {
                tracing::warn!(%error, "no address book; peers will not be remembered");
                None
            }
        };
        let ban_store = match chain.aux_tree("bans") {
            Ok(tree) => Some(tree),
            Err(error) => {
                tracing::warn!(%error, "no ban store; bans will not survive a restart");
                None
            }
        };

        let metrics = Metrics::new();
        describe_metrics(&metrics);
        let signature_cache = SignatureCache::new(DEFAULT_SIGNATURE_CACHE_CAPACITY);
        chain.set_signature_cache(signature_cache.clone());
        let reader = chain.reader();
        let mempool = Arc::new(Mutex::new(Mempool::new(
            spec.clone(),
            config.mempool.clone(),
            signature_cache.clone(),
        )));
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        let generation = Arc::new(AtomicU64::new(0));
        let relay_cache = Arc::new(RelayCache::default());
        let (writer, writer_thread) = ChainWriter::spawn(
            chain,
            WriterContext {
                reader: reader.clone(),
                mempool: mempool.clone(),
                events: events.clone(),
                metrics: metrics.clone(),
                generation: generation.clone(),
                relay_cache: relay_cache.clone(),
            },
        )
        .context("cannot start the chain writer thread")?;
        // As many verifiers as cores: they run below the writer's priority,
        // so they only take what it leaves.
        let verifier = Verifier::start(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            spec.genesis_hash(),
            signature_cache.clone(),
        )
        .context("cannot start the signature verifier threads")?;
        let handle = NodeHandle {
            shared: Arc::new(Shared {
                genesis_hash: spec.genesis_hash(),
                spec: spec.clone(),
                reader,
                writer,
                mempool,
                signature_cache,
                verifier,
                relay_cache,
                events,
                metrics: metrics.clone(),
                generation,
                miner_address: config.miner_address,
                mining: config.mine,
                mining_threads: config.mining_threads.max(1),
                node_id,
                network: OnceLock::new(),
                ready: AtomicBool::new(false),
                shutdown: cancel.clone(),
                admissions: Arc::new(tokio::sync::Semaphore::new(
                    crate::handle::MAX_CONCURRENT_ADMISSIONS,
                )),
            }),
        };

        let mut p2p_config = P2pConfig::new(
            config.p2p_addr,
            spec.network_magic(),
            spec.genesis_hash(),
            node_key,
        );
        p2p_config.protocol.peers = config.peers.clone();
        p2p_config.protocol.no_discovery = config.no_discovery;
        p2p_config.protocol.max_inbound = config.max_inbound;
        p2p_config.protocol.max_outbound = config.max_outbound;
        p2p_config.protocol.ban_duration = BAN_DURATION;
        p2p_config.protocol.dns_seeds = config.dns_seeds.clone();
        p2p_config.protocol.external_addr = config.external_addr;
        p2p_config.address_book = address_book;
        p2p_config.ban_store = ban_store;
        let network = match p2p::start(
            p2p_config,
            handle.clone(),
            metrics.clone(),
            cancel.child_token(),
        )
        .await
        {
            Ok(network) => network,
            Err(error) => {
                let _ = handle.writer().shutdown().await;
                return Err(anyhow::anyhow!(
                    "cannot start P2P on --p2p-addr {}: {error}",
                    config.p2p_addr
                ));
            }
        };
        let p2p_addr = network.local_addr();
        handle.set_network(network.clone());

        let state = crate::rpc::RpcState::new(handle.clone(), &config);
        let _ = router_slot.set(crate::rpc::router(state));
        stop_server_on_error.disarm();

        spawn_mempool_expiry(handle.clone(), cancel.clone());
        let miner = match (config.mine, config.miner_address) {
            (true, Some(address)) => Some(
                BackgroundMiner::start(handle.clone(), address)
                    .context("cannot start the miner")?,
            ),
            _ => None,
        };
        tracing::info!(%rpc_addr, %p2p_addr, chain = %spec.name, "node started");
        Ok(RunningNode {
            rpc_addr,
            p2p_addr,
            handle,
            data_dir: config.data_dir,
            network,
            miner,
            server,
            writer_thread,
            cancel,
        })
    }
}

/// Drops mempool transactions older than the expiry (3 h) once a minute.
fn spawn_mempool_expiry(node: NodeHandle, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(MEMPOOL_EXPIRY_INTERVAL);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticks.tick() => {
                    let expired = node.expire_mempool(crate::chain_writer::now_ms());
                    if expired > 0 {
                        tracing::info!(expired, "expired old mempool transactions");
                    }
                }
            }
        }
    });
}

impl RunningNode {
    /// `http://<rpc addr>`, for clients.
    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    /// The start banner: chain, genesis hash, node id, addresses, data dir,
    /// mining, and on dev chains the dev accounts with the warning. The
    /// `p2p address:` and `rpc address:` lines carry the bound addresses
    /// (useful with port 0), one per line, for scripts to parse.
    pub fn banner(&self) -> String {
        let node = &self.handle;
        let spec = node.spec();
        let mut text = String::new();
        let _ = writeln!(text, "gossip-ledger node {}", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(text, "chain:        {}", spec.name);
        let _ = writeln!(text, "genesis hash: {}", spec.genesis_hash());
        let _ = writeln!(text, "node id:      {}", node.node_id());
        let _ = writeln!(text, "p2p address:  {}", self.p2p_addr);
        let _ = writeln!(text, "rpc address:  {}", self.rpc_addr);
        let _ = writeln!(text, "data dir:     {}", self.data_dir.display());
        let mining = match (node.is_mining(), node.shared.miner_address) {
            (true, Some(address)) => format!("on (paying {})", spec.format_address(&address)),
            _ => "off".to_string(),
        };
        let _ = writeln!(text, "mining:       {mining}");
        if spec.is_dev_chain() {
            let _ = writeln!(text, "dev accounts (index, address, secret key):");
            for account in dev_accounts() {
                let _ = writeln!(
                    text,
                    "  {}  {}  {}",
                    account.index,
                    spec.format_address(&account.address),
                    hex::encode(account.secret_key.to_bytes())
                );
            }
            let _ = writeln!(text, "{DEV_KEYS_WARNING}");
        }
        text
    }

    /// Stops mining, closes peers and the API, flushes storage. Each stage
    /// is bounded so the whole takes well under 5 s.
    pub async fn shutdown(self) {
        if let Some(miner) = self.miner {
            let _ = tokio::task::spawn_blocking(move || miner.stop()).await;
        }
        self.cancel.cancel();
        if tokio::time::timeout(SHUTDOWN_STAGE_TIMEOUT, self.network.closed())
            .await
            .is_err()
        {
            tracing::warn!("P2P tasks did not end in time");
        }
        let mut server = self.server;
        if tokio::time::timeout(SHUTDOWN_STAGE_TIMEOUT, &mut server)
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections did not close in time");
            server.abort();
        }
        if let Err(error) = self.handle.writer().shutdown().await {
            tracing::warn!(%error, "chain writer already stopped");
        }
        let writer_thread = self.writer_thread;
        let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
        tracing::info!("node stopped");
    }
}
