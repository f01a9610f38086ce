//! Test harness for the P2P layer: a `Backend` over a real `ledger` chain
//! (sled in a temp dir) and a real mempool that publishes the node's events
//! as the node does (`BlockValidated` from the chain's validated hook, with
//! the payload in a relay cache, then `BlockConnected`, `Reorg`,
//! `TxAccepted`, `TxReadmitted`), the P2P network started on 127.0.0.1
//! port 0, and a hand-driven `FakePeer` that speaks the wire protocol (or
//! deliberately does not) for the bad-peer tests. `FakePeer` talks through
//! the node's own secure transport (`secure_connect`), so what it sends
//! reaches the frame layer exactly as a real peer's bytes would.

pub use super::{
    dev_address, now_ms, percentile, regtest, transfer_with_memo, wait_for, wait_for_async,
};
use crate::events::NodeEvent;
use crate::local_chain::{HasLocalChain, LocalChain};
use crate::metrics::Metrics;
use crate::p2p::codec::{encode_message, CodecError, FrameCodec, MessageCodec};
use crate::p2p::message::{Hello, HelloAck, Message, NetworkMagic, PROTOCOL_VERSION};
use crate::p2p::noise::{self, LocalIdentity, NoiseStream, Role, TransportError};
use crate::p2p::protocol::ConnId;
use crate::p2p::{self, Backend, BlockVerdict, P2pConfig, P2pHandle, P2pTiming, TxVerdict};
use crate::relay_cache::RelayCache;
use futures::{SinkExt, StreamExt};
use ledger::chain::{Chain, ChainReader, ProcessError, ProcessOutcome};
use ledger::mempool::{Mempool, MempoolConfig, MempoolError};
use ledger::sigcache::SignatureCache;
use ledger::sync::lock;
use ledger::Height;
use ledger::{Address, Block, BlockHash, ChainSpec, PublicKey, SecretKey, Transaction, TxId};
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

struct Inner {
    spec: ChainSpec,
    genesis: BlockHash,
    chain: Mutex<Option<Chain>>,
    reader: ChainReader,
    mempool: Mutex<Mempool>,
    cache: SignatureCache,
    events: broadcast::Sender<NodeEvent>,
    /// Payloads of the blocks validated last, as the node keeps them.
    relay_cache: Arc<RelayCache>,
    /// How long each `process_block` took, for benchmarks.
    process_times: Mutex<Vec<Duration>>,
}

/// The node as P2P sees it: chain writer and mempool behind std mutexes,
/// validation on blocking threads, events on a broadcast channel.
#[derive(Clone)]
pub struct TestBackend {
    inner: Arc<Inner>,
}

impl TestBackend {
    pub fn open(dir: &Path) -> TestBackend {
        let spec = regtest();
        let mut chain = Chain::open(spec.clone(), dir).expect("chain opens");
        let cache = SignatureCache::new(200_000);
        chain.set_signature_cache(cache.clone());
        let reader = chain.reader();
        let mempool = Mempool::new(spec.clone(), MempoolConfig::default(), cache.clone());
        let (events, _) = broadcast::channel(16_384);
        let relay_cache = Arc::new(RelayCache::default());
        {
            // As the node's chain writer: a block is announced the moment
            // it is validated, before it is written.
            let events = events.clone();
            let relay_cache = Arc::clone(&relay_cache);
            chain.set_validated_hook(Box::new(move |hash, block, _txids| {
                relay_cache.insert_block(*hash, block);
                let _ = events.send(NodeEvent::BlockValidated {
                    hash: *hash,
                    height: block.header.height,
                });
            }));
        }
        TestBackend {
            inner: Arc::new(Inner {
                genesis: spec.genesis_hash(),
                spec,
                chain: Mutex::new(Some(chain)),
                reader,
                mempool: Mutex::new(mempool),
                cache,
                events,
                relay_cache,
                process_times: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn spec(&self) -> &ChainSpec {
        &self.inner.spec
    }

    pub fn reader(&self) -> &ChainReader {
        &self.inner.reader
    }

    pub fn genesis(&self) -> BlockHash {
        self.inner.genesis
    }

    pub fn tip_hash(&self) -> BlockHash {
        self.inner.reader.tip().hash
    }

    pub fn height(&self) -> u64 {
        self.inner.reader.tip().height.0
    }

    pub fn mempool_len(&self) -> usize {
        lock(&self.inner.mempool).len()
    }

    pub fn mempool_has(&self, txid: &TxId) -> bool {
        lock(&self.inner.mempool).contains(txid)
    }

    pub fn has_block_hash(&self, hash: &BlockHash) -> bool {
        self.inner.reader.has_block(hash)
    }

    /// Blocks in the chain's in-memory block index, on every branch.
    pub fn index_len(&self) -> usize {
        lock(&self.inner.chain).as_ref().map_or(0, Chain::index_len)
    }

    /// Blocks waiting in the chain's orphan pool.
    pub fn orphan_count(&self) -> usize {
        lock(&self.inner.chain)
            .as_ref()
            .map_or(0, Chain::orphan_count)
    }

    /// Blocks in the chain's index that are off the best chain.
    pub fn side_block_count(&self) -> usize {
        lock(&self.inner.chain)
            .as_ref()
            .map_or(0, Chain::side_block_count)
    }

    pub fn confirmed(&self, txid: &TxId) -> bool {
        self.inner.reader.tx(txid).is_some()
    }

    /// Closes the chain (flushes sled) so the directory can be reopened.
    pub fn close(&self) {
        if let Some(mut chain) = lock(&self.inner.chain).take() {
            let _ = chain.flush();
        }
    }

    /// Applies a block as the node's chain writer would, publishing events.
    pub fn process_block(&self, block: Block) -> Result<ProcessOutcome, ProcessError> {
        self.process(block, false, None)
    }

    /// `process_block`; an `unrequested` block (a peer's gossip) is not
    /// stored on a chain with less work than the tip, as in the node.
    /// A peer's block, validated off the async threads like the node's.
    fn submit_unrequested(
        &self,
        block: Block,
        source: Option<ledger::chain::OrphanSource>,
    ) -> impl Future<Output = BlockVerdict> + Send {
        let backend = self.clone();
        async move {
            match tokio::task::spawn_blocking(move || backend.process(block, true, source)).await {
                Ok(result) => block_verdict(result),
                Err(error) => BlockVerdict::Rejected {
                    reason: error.to_string(),
                    misbehaving: false,
                },
            }
        }
    }

    fn process(
        &self,
        block: Block,
        unrequested: bool,
        source: Option<ledger::chain::OrphanSource>,
    ) -> Result<ProcessOutcome, ProcessError> {
        let mut guard = lock(&self.inner.chain);
        let chain = guard.as_mut().expect("chain open");
        let now = now_ms();
        let started = Instant::now();
        let outcome = if unrequested {
            chain.process_block_from(block, now, source)
        } else {
            chain.process_block(block, now)
        };
        lock(&self.inner.process_times).push(started.elapsed());
        let outcome = outcome?;
        if let ProcessOutcome::Connected(update) = &outcome {
            // Announce first: relaying needs only the chain, and peers
            // should not wait for our mempool bookkeeping.
            for block in &update.connected {
                let _ = self.inner.events.send(NodeEvent::BlockConnected {
                    height: block.header.height,
                    block: Arc::clone(block),
                });
            }
            let mut mempool = lock(&self.inner.mempool);
            mempool.apply_update(update, &self.inner.reader, now);
            self.publish_released(&mut mempool);
            if update.is_reorg() {
                let _ = self.inner.events.send(NodeEvent::reorg(update));
                // Re-admitted txs are news to peers on the winning branch.
                for block in &update.disconnected {
                    for tx in &block.txs {
                        if mempool.contains(&tx.txid()) {
                            let _ = self.inner.events.send(NodeEvent::TxReadmitted {
                                tx: Arc::new(tx.clone()),
                            });
                        }
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Durations of every `process_block` call so far.
    pub fn process_times(&self) -> Vec<Duration> {
        lock(&self.inner.process_times).clone()
    }

    pub fn add_tx(&self, tx: Transaction) -> Result<TxId, MempoolError> {
        Mempool::precheck(&self.inner.genesis, &self.inner.cache, &tx)?;
        let mut mempool = lock(&self.inner.mempool);
        let added = mempool.add(tx.clone(), &self.inner.reader, now_ms());
        // As the node: a held tx (behind a nonce gap) is published only
        // when its gap fills.
        if added.as_ref().is_ok_and(|txid| !mempool.is_held(txid)) {
            let _ = self
                .inner
                .events
                .send(NodeEvent::TxAccepted { tx: Arc::new(tx) });
        }
        self.publish_released(&mut mempool);
        added
    }

    /// Publishes the held txs the mempool released, as the node does.
    fn publish_released(&self, mempool: &mut Mempool) {
        for tx in mempool.take_promoted() {
            let _ = self
                .inner
                .events
                .send(NodeEvent::TxAccepted { tx: Arc::new(tx) });
        }
    }

    /// Builds and solves a block on our tip from the mempool (at most
    /// `max_txs` txs) without applying it.
    pub fn make_block(&self, max_txs: usize) -> Block {
        let guard = lock(&self.inner.chain);
        let chain = guard.as_ref().expect("chain open");
        let context = chain.next_block_context(now_ms());
        let mut txs = lock(&self.inner.mempool).select_for_block(
            &self.inner.reader,
            ledger::miner::max_tx_bytes(&self.inner.spec),
        );
        txs.truncate(max_txs);
        let mut block =
            ledger::miner::build_block(&self.inner.spec, &context, Address([7; 20]), txs);
        assert!(ledger::miner::solve(
            &mut block.header,
            &AtomicBool::new(false),
            1
        ));
        block
    }

    /// Mines one block on our tip with up to `max_txs` mempool txs.
    pub fn mine(&self, max_txs: usize) -> BlockHash {
        let block = self.make_block(max_txs);
        let hash = block.hash();
        match self.process_block(block).expect("own block is valid") {
            ProcessOutcome::Connected(_) => hash,
            other => panic!("own block not connected: {other:?}"),
        }
    }
}

fn block_verdict(result: Result<ProcessOutcome, ProcessError>) -> BlockVerdict {
    match result {
        Ok(ProcessOutcome::Connected(_)) => BlockVerdict::Accepted,
        Ok(ProcessOutcome::SideChain) => BlockVerdict::SideBranch,
        Ok(ProcessOutcome::Known) => BlockVerdict::Known,
        Ok(ProcessOutcome::Orphan) => BlockVerdict::Orphan,
        Ok(ProcessOutcome::LowWork) => BlockVerdict::Rejected {
            reason: crate::handle::LOW_WORK_REASON.into(),
            misbehaving: false,
        },
        Err(error) => error.into(),
    }
}

impl HasLocalChain for TestBackend {
    fn local_chain(&self) -> LocalChain<'_> {
        LocalChain {
            reader: &self.inner.reader,
            relay_cache: &self.inner.relay_cache,
            mempool: &self.inner.mempool,
        }
    }
}

impl Backend for TestBackend {
    fn genesis_hash(&self) -> BlockHash {
        self.inner.genesis
    }

    fn chain_spec(&self) -> &ChainSpec {
        &self.inner.spec
    }

    fn block(&self, hash: &BlockHash) -> Option<Block> {
        self.inner.reader.block(hash)
    }

    fn block_payload(&self, hash: &BlockHash) -> Option<tokio_util::bytes::Bytes> {
        self.local_chain().block_payload(hash)
    }

    fn compact_payload(&self, hash: &BlockHash) -> Option<tokio_util::bytes::Bytes> {
        self.local_chain().compact_payload(hash)
    }

    fn recent_block(&self, hash: &BlockHash) -> Option<Block> {
        self.local_chain().recent_block(hash)
    }

    fn submit_block(&self, block: Block) -> impl Future<Output = BlockVerdict> + Send {
        self.submit_unrequested(block, None)
    }

    fn submit_block_from(
        &self,
        from: ConnId,
        block: Block,
    ) -> impl Future<Output = BlockVerdict> + Send {
        self.submit_unrequested(block, Some(ledger::chain::OrphanSource(from.0)))
    }

    fn submit_synced_block(&self, block: Block) -> impl Future<Output = BlockVerdict> + Send {
        let backend = self.clone();
        async move {
            match tokio::task::spawn_blocking(move || backend.process(block, false, None)).await {
                Ok(result) => block_verdict(result),
                Err(error) => BlockVerdict::Rejected {
                    reason: error.to_string(),
                    misbehaving: false,
                },
            }
        }
    }

    fn submit_tx(&self, tx: Transaction) -> impl Future<Output = TxVerdict> + Send {
        let backend = self.clone();
        async move {
            match tokio::task::spawn_blocking(move || backend.add_tx(tx)).await {
                Ok(Ok(_)) => TxVerdict::Accepted,
                Ok(Err(MempoolError::Duplicate)) => TxVerdict::Known,
                Ok(Err(error)) => TxVerdict::Rejected {
                    misbehaving: matches!(
                        error,
                        MempoolError::BadSignature
                            | MempoolError::WrongChain
                            | MempoolError::Malformed(_)
                    ),
                    reason: error.code().to_string(),
                },
                Err(error) => TxVerdict::Rejected {
                    reason: error.to_string(),
                    misbehaving: false,
                },
            }
        }
    }

    fn precheck_block(&self, block: Block) -> impl Future<Output = Block> + Send {
        let backend = self.clone();
        async move {
            let genesis = backend.inner.genesis;
            let cache = backend.inner.cache.clone();
            tokio::task::spawn_blocking(move || {
                // Failures are left for `submit_block` to report.
                for tx in &block.txs {
                    let _ = Mempool::precheck(&genesis, &cache, tx);
                }
                block
            })
            .await
            .expect("precheck thread")
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }
}

/// How to start a test node.
#[derive(Clone)]
pub struct NodeOptions {
    pub peers: Vec<String>,
    pub dns_seeds: Vec<String>,
    pub external_addr: Option<SocketAddr>,
    pub no_discovery: bool,
    pub max_outbound: usize,
    pub max_inbound: usize,
    pub timing: P2pTiming,
    pub key: Option<SecretKey>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            peers: Vec::new(),
            dns_seeds: Vec::new(),
            external_addr: None,
            no_discovery: true,
            max_outbound: 8,
            max_inbound: 32,
            timing: fast_timing(),
            key: None,
        }
    }
}

/// Production timers, except for the checks' cadence.
pub fn fast_timing() -> P2pTiming {
    P2pTiming {
        maintenance_interval: Duration::from_millis(100),
        request_timeout: Duration::from_secs(2),
        ..P2pTiming::default()
    }
}

/// A running node: the test backend plus the real P2P network.
pub struct TestNode {
    pub backend: TestBackend,
    pub p2p: P2pHandle,
    pub metrics: Metrics,
    pub cancel: CancellationToken,
    pub key: SecretKey,
    pub dir: PathBuf,
    pub options: NodeOptions,
}

impl TestNode {
    pub async fn start(dir: &Path, options: NodeOptions) -> TestNode {
        let backend = TestBackend::open(dir);
        let key = options.key.clone().unwrap_or_else(SecretKey::generate);
        let (address_book, ban_store) = {
            let guard = lock(&backend.inner.chain);
            let chain = guard.as_ref().expect("chain open");
            (
                chain.aux_tree("p2p_addresses").ok(),
                chain.aux_tree("p2p_bans").ok(),
            )
        };
        let spec = backend.spec().clone();
        let mut config = P2pConfig::new(
            "127.0.0.1:0".parse().expect("literal"),
            spec.network_magic(),
            spec.genesis_hash(),
            key.clone(),
        );
        config.protocol.peers = options.peers.clone();
        config.protocol.no_discovery = options.no_discovery;
        config.protocol.max_outbound = options.max_outbound;
        config.protocol.max_inbound = options.max_inbound;
        config.protocol.dns_seeds = options.dns_seeds.clone();
        config.protocol.external_addr = options.external_addr;
        config.address_book = address_book;
        config.ban_store = ban_store;
        config.protocol.timing = options.timing.clone();
        let metrics = Metrics::new();
        let cancel = CancellationToken::new();
        let p2p = p2p::start(config, backend.clone(), metrics.clone(), cancel.clone())
            .await
            .expect("p2p starts");
        TestNode {
            backend,
            p2p,
            metrics,
            cancel,
            key,
            dir: dir.to_path_buf(),
            options,
        }
    }

    pub fn addr(&self) -> String {
        self.p2p.local_addr().to_string()
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.p2p.local_addr()
    }

    pub fn received(&self, kind: &str) -> u64 {
        self.metrics
            .counter("p2p_messages_received_total", &[("kind", kind)])
    }

    pub fn bans(&self, reason: &str) -> u64 {
        self.metrics
            .counter("p2p_bans_total", &[("reason", reason)])
    }

    pub fn has_peer(&self, other: &TestNode) -> bool {
        let id = other.p2p.node_id();
        self.p2p.peers().iter().any(|peer| peer.node_id == id)
    }

    /// Stops the network and closes the chain; returns what a restart needs.
    pub async fn stop(self) -> (PathBuf, NodeOptions, SecretKey) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.p2p.closed())
            .await
            .expect("p2p stops within 10 s");
        self.backend.close();
        (self.dir, self.options, self.key)
    }
}

/// The harness's workload tx: dev account `from` pays 1,000 + `nonce`
/// base units (so every tx differs) to an address of its own that no key
/// holds, with the minimum fee.
pub fn transfer(genesis: &BlockHash, from: usize, nonce: u64, memo: &str) -> Transaction {
    let to = Address([from as u8 + 100; 20]);
    ledger::testing::transfer_with_memo(genesis, from, to, 1_000 + nonce, 1_000, nonce, memo)
}

/// Memory in use by this process (resident set), in bytes.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .nth(1)
                .and_then(|pages| pages.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// The client side of the node's transport: dials `addr` and runs the
/// Noise handshake as `key`'s node. Returns the secured stream and the node
/// id the other side proved.
pub async fn secure_connect(
    addr: SocketAddr,
    key: &SecretKey,
) -> Result<(NoiseStream<TcpStream>, PublicKey), TransportError> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    noise::handshake(stream, Role::Initiator, &LocalIdentity::new(key)).await
}

/// A hand-driven peer on a real socket, through the secure transport.
pub struct FakePeer {
    pub reader: FramedRead<ReadHalf<NoiseStream<TcpStream>>, MessageCodec>,
    pub writer: FramedWrite<WriteHalf<NoiseStream<TcpStream>>, FrameCodec>,
    pub key: SecretKey,
    pub local_addr: SocketAddr,
    /// The node id the node proved in the Noise handshake.
    pub server_id: PublicKey,
}

impl FakePeer {
    /// Connects with a fresh node key and completes the Noise handshake
    /// (not yet the `Hello` exchange).
    pub async fn connect(addr: SocketAddr) -> FakePeer {
        FakePeer::connect_as(addr, SecretKey::generate()).await
    }

    pub async fn connect_as(addr: SocketAddr, key: SecretKey) -> FakePeer {
        let stream = TcpStream::connect(addr).await.expect("connects");
        FakePeer::secure(stream, Role::Initiator, key).await
    }

    /// Connects from a chosen local IP (another loopback address, so that
    /// the node sees another source).
    pub async fn connect_from(addr: SocketAddr, local_ip: std::net::IpAddr) -> FakePeer {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(local_ip, 0))
            .expect("binds a local address");
        let stream = socket.connect(addr).await.expect("connects");
        FakePeer::secure(stream, Role::Initiator, SecretKey::generate()).await
    }

    /// A peer on a connection the node dialed: it answers the node's Noise
    /// handshake.
    pub async fn from_stream(stream: TcpStream) -> FakePeer {
        FakePeer::secure(stream, Role::Responder, SecretKey::generate()).await
    }

    /// Completes the Noise handshake on `stream` (not yet the `Hello`
    /// exchange).
    async fn secure(stream: TcpStream, role: Role, key: SecretKey) -> FakePeer {
        let _ = stream.set_nodelay(true);
        let local_addr = stream.local_addr().expect("local addr");
        let (stream, server_id) = noise::handshake(stream, role, &LocalIdentity::new(&key))
            .await
            .expect("completes the noise handshake");
        let (read, write) = tokio::io::split(stream);
        FakePeer {
            reader: FramedRead::new(read, MessageCodec::default()),
            writer: FramedWrite::new(write, FrameCodec::default()),
            key,
            local_addr,
            server_id,
        }
    }

    pub fn hello(&self, magic: impl Into<NetworkMagic>, genesis: BlockHash) -> Hello {
        Hello {
            magic: magic.into(),
            protocol_version: PROTOCOL_VERSION,
            genesis_hash: genesis,
            node_id: self.key.public_key(),
            best_height: Height::ZERO,
            best_work: ledger::Work::ZERO,
            listen_port: 0,
        }
    }

    pub async fn send(&mut self, message: &Message) -> bool {
        self.writer.send(encode_message(message)).await.is_ok()
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        // The transport buffers what it encrypts until a flush.
        let raw = self.writer.get_mut();
        raw.write_all(bytes).await.is_ok() && raw.flush().await.is_ok()
    }

    /// The next message, `None` on close, error or after `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Message> {
        match tokio::time::timeout(timeout, self.reader.next()).await {
            Ok(Some(Ok((message, _)))) => Some(message),
            _ => None,
        }
    }

    /// The next message of a kind, skipping others (pings, addr, ...).
    pub async fn recv_matching(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Message) -> bool,
    ) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.recv(left).await?;
            if let Message::Ping(nonce) = message {
                self.send(&Message::Pong(nonce)).await;
                continue;
            }
            if wanted(&message) {
                return Some(message);
            }
        }
    }

    /// Waits until the node closes the connection (read returns end or a
    /// reset), answering nothing meanwhile. True when closed in time.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.reader.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(CodecError::Io(_)))) => return true,
                Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// A full, honest handshake with a node on `spec`'s chain.
    pub async fn handshake(&mut self, spec: &ChainSpec) -> Hello {
        self.handshake_claiming(spec, ledger::Work::ZERO).await
    }

    /// A handshake that claims `best_work` (true or not).
    pub async fn handshake_claiming(&mut self, spec: &ChainSpec, best_work: ledger::Work) -> Hello {
        let magic = NetworkMagic(spec.network_magic());
        let genesis = spec.genesis_hash();
        let mut ours = self.hello(magic, genesis);
        ours.best_work = best_work;
        ours.best_height = Height(1_000_000);
        assert!(self.send(&Message::Hello(Box::new(ours.clone()))).await);
        let theirs = match self.recv(Duration::from_secs(5)).await {
            Some(Message::Hello(hello)) => *hello,
            other => panic!("expected hello, got {other:?}"),
        };
        assert_eq!(
            theirs.node_id, self.server_id,
            "hello names the proven node"
        );
        assert!(self.send(&Message::HelloAck(HelloAck {})).await);
        match self.recv(Duration::from_secs(5)).await {
            Some(Message::HelloAck(HelloAck {})) => {}
            other => panic!("expected hello_ack, got {other:?}"),
        }
        theirs
    }
}

/// Distinct txids seen in a list.
pub fn unique(txids: &[TxId]) -> usize {
    txids.iter().collect::<HashSet<_>>().len()
}

/// How long the bad-peer tests wait for any one condition.
pub const LONG: Duration = Duration::from_secs(20);

/// A node and an honest peer connected to it.
pub struct Setup {
    pub node: TestNode,
    pub honest: TestNode,
    _dirs: Vec<tempfile::TempDir>,
}

pub async fn setup_with_honest_peer(options: NodeOptions) -> Setup {
    let dirs: Vec<tempfile::TempDir> = (0..2)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let node = TestNode::start(dirs[0].path(), options).await;
    let honest = TestNode::start(
        dirs[1].path(),
        NodeOptions {
            peers: vec![node.addr()],
            ..NodeOptions::default()
        },
    )
    .await;
    wait_for("honest peer connected", LONG, || {
        node.has_peer(&honest) && honest.has_peer(&node)
    })
    .await;
    Setup {
        node,
        honest,
        _dirs: dirs,
    }
}

impl Setup {
    /// The node still relays to its honest peer: a new tx and a new block
    /// both arrive there.
    pub async fn still_serves(&self, nonce: u64) {
        let genesis = self.node.backend.genesis();
        let txid = self
            .node
            .backend
            .add_tx(transfer(&genesis, 5, nonce, "still here"))
            .expect("admitted");
        wait_for("honest peer gets the tx", LONG, || {
            self.honest.backend.mempool_has(&txid)
        })
        .await;
        let block = self.node.backend.mine(10);
        wait_for("honest peer gets the block", LONG, || {
            self.honest.backend.tip_hash() == block
        })
        .await;
        assert!(
            self.node.has_peer(&self.honest),
            "honest peer still connected"
        );
    }

    pub async fn stop(self) {
        self.honest.stop().await;
        self.node.stop().await;
    }

    /// Stops the node and starts it again on the same data dir and key.
    pub async fn restart_node(self) -> Setup {
        let Setup {
            node,
            honest,
            _dirs,
        } = self;
        let (dir, options, key) = node.stop().await;
        let node = TestNode::start(
            &dir,
            NodeOptions {
                key: Some(key),
                ..options
            },
        )
        .await;
        Setup {
            node,
            honest,
            _dirs,
        }
    }
}

/// Starts one node per dir where node i dials node i-1 (a line), each once
/// the link before it is up (waiting up to `link_timeout` per link).
pub async fn line(dirs: &[tempfile::TempDir], link_timeout: Duration) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for dir in dirs {
        let peers = nodes
            .last()
            .map(|previous| vec![previous.addr()])
            .unwrap_or_default();
        let node = TestNode::start(
            dir.path(),
            NodeOptions {
                peers,
                ..NodeOptions::default()
            },
        )
        .await;
        // Each link is up before the next node starts, so what a node
        // hears in its first `Addr` (its neighbour's links) is settled.
        if let Some(left) = nodes.last() {
            wait_for("line link up", link_timeout, || {
                left.has_peer(&node) && node.has_peer(left)
            })
            .await;
        }
        nodes.push(node);
    }
    nodes
}

/// `n` fresh temp dirs, removed when dropped.
pub fn temp_dirs(n: usize) -> Vec<tempfile::TempDir> {
    (0..n)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect()
}

/// Waits until every txid in `wanted` has been reported by `TxAccepted`
/// on `events`; panics after `timeout`.
pub async fn txs_accepted(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    wanted: &std::collections::HashSet<TxId>,
    timeout: Duration,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut seen = std::collections::HashSet::new();
    let wait = async {
        while seen.len() < wanted.len() {
            match events.recv().await {
                Ok(NodeEvent::TxAccepted { tx }) if wanted.contains(&tx.txid()) => {
                    seen.insert(tx.txid());
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("events closed"),
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .expect("all txs arrive");
}

/// Waits up to `timeout` on a node's event stream for the block to connect.
pub async fn block_connected(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    hash: BlockHash,
    timeout: Duration,
) {
    use tokio::sync::broadcast::error::RecvError;
    let wait = async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::BlockConnected { block, .. }) if block.hash() == hash => return,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("events closed"),
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .expect("block arrives");
}
