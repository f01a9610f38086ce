//! The P2P layer as a stranger reaches it: the frame codec on a byte
//! stream cut anywhere, every message decoder, and the protocol core's
//! handshake and session rules (`NetworkState`, driven through its `Input`
//! / `Action` interface with no I/O, as the driver drives it).

use crate::dev;
use arbitrary::{Arbitrary, Unstructured};
use ledger::Height;
use ledger::{
    Address, Amount, BlockHash, Hash256, Header, PublicKey, SecretKey, Transaction, TxId, Work,
    U256,
};
use node::events::NodeEvent;
use node::p2p::codec::{decode_message, encode_message, FrameCodec, MessageCodec, MAX_FRAME_BYTES};
use node::p2p::message::{max_frame_for, Hello, HelloAck, InvItem, Message, PROTOCOL_VERSION};
use node::p2p::message::{NetworkMagic, PeerAddr};
use node::p2p::protocol::{
    Action, CloseCause, Input, Mono, NetworkState, Outgoing, ProtocolConfig, Restored, Time,
};
use node::p2p::{BlockVerdict, ChainView, ConnId, P2pTiming, TipSummary, TxVerdict};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

use dev::regtest;

/// What reading a whole stream gave: each message with its payload size,
/// then the error that stopped it, if any (as its metric label and text).
type StreamOutcome = (Vec<(Message, usize)>, Option<String>);

fn read_stream(chunks: &[&[u8]], max_frame: usize) -> StreamOutcome {
    let mut codec = MessageCodec::new(max_frame);
    let mut buffer = BytesMut::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(item)) => messages.push(item),
                Ok(None) => break,
                Err(error) => return (messages, Some(error.to_string())),
            }
        }
    }
    (messages, None)
}

/// `p2p_frames`: the first bytes choose a frame cap and where the stream
/// is cut; the rest is the stream. Reading it in those pieces must give
/// exactly what reading it whole gives, and every frame read must be the
/// canonical encoding of its message.
pub fn frames(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let max_frame = match data[0] % 4 {
        0 => MAX_FRAME_BYTES,
        1 => 1024,
        2 => max_frame_for(regtest()),
        _ => 64,
    };
    let cuts = usize::from(data[1] % 16);
    let rest = &data[2..];
    let (cut_bytes, stream) = rest.split_at(cuts.min(rest.len()));
    let whole = read_stream(&[stream], max_frame);
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cut_bytes {
        let end = (start + usize::from(*cut)).min(stream.len());
        pieces.push(&stream[start..end]);
        start = end;
    }
    pieces.push(&stream[start..]);
    let split = read_stream(&pieces, max_frame);
    assert_eq!(whole.0, split.0, "messages differ when the stream is split");
    assert_eq!(whole.1, split.1, "errors differ when the stream is split");
    // The frames under the messages, through the frame codec alone.
    let mut frames = FrameCodec::new(max_frame);
    let mut buffer = BytesMut::from(stream);
    for (message, size) in &whole.0 {
        let payload = frames
            .decode(&mut buffer)
            .expect("a frame that gave a message")
            .expect("complete");
        assert_eq!(payload.len(), *size);
        assert_eq!(&encode_message(message)[..], &payload[..]);
    }
}

/// `p2p_message`: the bytes as one frame payload, under the default and
/// the regtest frame caps: a message that decodes re-encodes to exactly
/// the payload, and its kind and counts are what the decoder enforced.
pub fn message(data: &[u8]) {
    for max_frame in [MAX_FRAME_BYTES, max_frame_for(regtest()), 1024] {
        let Ok(message) = decode_message(data, max_frame) else {
            continue;
        };
        assert_eq!(&encode_message(&message)[..], data);
        assert!(message.kind_index() < node::p2p::message::KINDS.len());
        let _ = message.kind();
        let _ = message.is_urgent();
        message
            .check_counts(max_frame / node::p2p::message::MIN_TX_BYTES)
            .expect("the decoder checked the counts");
        if let Message::CompactBlock(compact) = &message {
            let _ = compact.tx_count();
        }
    }
}

// ------------------------------------------------------------ the session

/// A chain view that answers from a few fixed facts: enough for the core
/// to answer and judge every message.
#[derive(Clone)]
struct View {
    genesis: Header,
    txs: Arc<BTreeMap<TxId, Transaction>>,
    work: u64,
}

impl ChainView for View {
    fn tip(&self) -> TipSummary {
        TipSummary {
            height: Height::ZERO,
            hash: self.genesis.hash(),
            total_work: Work(U256::from_u64(self.work)),
        }
    }
    fn locator(&self) -> Vec<BlockHash> {
        vec![self.genesis.hash()]
    }
    fn headers_after(&self, _locator: &[BlockHash], _max: usize) -> Vec<Header> {
        Vec::new()
    }
    fn has_block(&self, hash: &BlockHash) -> bool {
        *hash == self.genesis.hash()
    }
    fn mempool_tx(&self, txid: &TxId) -> Option<Transaction> {
        self.txs.get(txid).cloned()
    }
    fn mempool_txids(&self, limit: usize) -> Vec<TxId> {
        self.txs.keys().take(limit).copied().collect()
    }
    fn has_tx(&self, txid: &TxId) -> bool {
        self.txs.contains_key(txid)
    }
    fn oldest_pending_txids(&self, limit: usize) -> Vec<TxId> {
        self.txs.keys().take(limit).copied().collect()
    }
    fn next_nonce(&self, sender: &Address) -> u64 {
        self.txs
            .values()
            .filter(|tx| tx.sender() == *sender)
            .count() as u64
    }
    fn sender_txs(&self, sender: &Address, first_nonce: u64, limit: usize) -> Vec<Transaction> {
        self.txs
            .values()
            .filter(|tx| tx.sender() == *sender && tx.nonce >= first_nonce)
            .take(limit)
            .cloned()
            .collect()
    }
}

/// One step the driver could take.
#[derive(Arbitrary, Debug)]
enum Op {
    Inbound {
        ip: u8,
        port: u8,
    },
    Connected {
        which: u8,
        ip: u8,
    },
    DialFailed {
        which: u8,
    },
    Secured {
        conn: u8,
        key: u8,
    },
    Hello {
        conn: u8,
        key: u8,
        flaws: u8,
        height: u8,
        work: u16,
        port: u16,
    },
    HelloAck {
        conn: u8,
    },
    Message {
        conn: u8,
        message: Small,
    },
    Raw {
        conn: u8,
        payload: Vec<u8>,
    },
    Closed {
        conn: u8,
        cause: u8,
    },
    Tick {
        advance_ms: u16,
        seconds: u8,
    },
    Idle,
    BlockVerdict {
        which: u8,
        verdict: u8,
    },
    TxVerdict {
        which: u8,
        verdict: u8,
    },
    TxAccepted {
        sender: u8,
        nonce: u8,
    },
    BlockValidated {
        height: u8,
    },
    Dial {
        ip: u8,
    },
}

/// Messages built from a few choices, so the fuzzer reaches the rules
/// behind valid framing without first finding valid bytes.
#[derive(Arbitrary, Debug)]
enum Small {
    Ping(u64),
    Pong(u64),
    GetAddr,
    Addr(Vec<(u8, u8, u16)>),
    InvTx(Vec<u8>),
    InvBlock(Vec<u8>),
    GetData(Vec<(bool, u8)>),
    NotFound(Vec<(bool, u8)>),
    Tx {
        sender: u8,
        nonce: u8,
        fee: u16,
    },
    GetHeaders(u8),
    Headers(Vec<u8>),
    GetSenderTxs {
        sender: u8,
        first_nonce: u8,
        count: u8,
    },
    SendCompact(bool),
    GetBlockTxs(Vec<u32>),
}

fn small_hash(byte: u8) -> Hash256 {
    Hash256::digest(&[byte])
}

fn dev_tx(sender: u8, nonce: u8, fee: u16) -> Transaction {
    Transaction::new_signed(
        dev::key(usize::from(sender % 4)),
        &dev::regtest_genesis(),
        dev::address(usize::from(sender % 4 + 4)),
        Amount::from_base_units(1_000),
        Amount::from_base_units(1_000 + u64::from(fee)),
        u64::from(nonce % 8),
        String::new(),
    )
}

impl Small {
    fn build(self, genesis: &Header) -> Message {
        let inv = |items: Vec<(bool, u8)>| {
            items
                .into_iter()
                .take(64)
                .map(|(block, byte)| match block {
                    true => InvItem::Block(BlockHash(small_hash(byte))),
                    false => InvItem::Tx(TxId(small_hash(byte))),
                })
                .collect()
        };
        match self {
            Small::Ping(nonce) => Message::Ping(nonce),
            Small::Pong(nonce) => Message::Pong(nonce),
            Small::GetAddr => Message::GetAddr,
            Small::Addr(addrs) => Message::Addr(
                addrs
                    .into_iter()
                    .take(64)
                    .map(|(a, b, port)| PeerAddr {
                        addr: SocketAddr::from(([10, a, b, 1], port)),
                        node_id: (a & 1 == 0).then(|| PublicKey(small_hash(a ^ b).0)),
                        last_seen_ms: 1_800_000_000_000,
                        connected: b & 1 == 0,
                    })
                    .collect(),
            ),
            Small::InvTx(bytes) => Message::Inv(
                bytes
                    .into_iter()
                    .take(64)
                    .map(|b| InvItem::Tx(TxId(small_hash(b))))
                    .collect(),
            ),
            Small::InvBlock(bytes) => Message::Inv(
                bytes
                    .into_iter()
                    .take(64)
                    .map(|b| InvItem::Block(BlockHash(small_hash(b))))
                    .collect(),
            ),
            Small::GetData(items) => Message::GetData(inv(items)),
            Small::NotFound(items) => Message::NotFound(inv(items)),
            Small::Tx { sender, nonce, fee } => Message::Tx(Box::new(dev_tx(sender, nonce, fee))),
            Small::GetHeaders(byte) => {
                Message::GetHeaders(vec![BlockHash(small_hash(byte)), genesis.hash()])
            }
            Small::Headers(bytes) => {
                let mut prev = genesis.clone();
                let mut headers = Vec::new();
                for byte in bytes.into_iter().take(32) {
                    let mut header = prev.clone();
                    header.height += 1;
                    header.prev_hash = if byte == 0 {
                        BlockHash(small_hash(byte))
                    } else {
                        prev.hash()
                    };
                    header.timestamp += 1_000 * u64::from(byte);
                    headers.push(header.clone());
                    prev = header;
                }
                Message::Headers(headers)
            }
            Small::GetSenderTxs {
                sender,
                first_nonce,
                count,
            } => Message::GetSenderTxs {
                sender: dev::address(usize::from(sender % 10)),
                first_nonce: u64::from(first_nonce),
                count: u32::from(count),
            },
            Small::SendCompact(high_bandwidth) => Message::SendCompact { high_bandwidth },
            Small::GetBlockTxs(indexes) => Message::GetBlockTxs {
                block: genesis.hash(),
                indexes: indexes.into_iter().take(16).collect(),
            },
        }
    }
}

/// Peers' keys: four strangers, and (255) our own, for self-connections.
fn peer_key(index: u8) -> &'static SecretKey {
    static KEYS: OnceLock<Vec<SecretKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0..5)
            .map(|i| SecretKey::from_seed(&format!("fuzz peer {i}")))
            .collect()
    });
    &keys[if index == 255 {
        4
    } else {
        usize::from(index % 4)
    }]
}

/// What the fuzz driver knows about each connection the core made.
#[derive(Default)]
struct ConnBook {
    /// Every connection id the core named in `Admit` or `Dial`.
    made: BTreeSet<ConnId>,
    /// Open ones, in order of creation (the ops pick among these).
    open: Vec<ConnId>,
    /// Dials not yet answered.
    dialing: Vec<ConnId>,
    /// Connections the core closed or saw closed: nothing more is sent.
    closed: BTreeSet<ConnId>,
    secured: BTreeMap<ConnId, PublicKey>,
    authenticated: BTreeSet<ConnId>,
    imports_blocks: Vec<(Option<ConnId>, BlockHash, usize)>,
    imports_txs: Vec<(ConnId, Transaction)>,
}

impl ConnBook {
    fn pick(&self, index: u8) -> Option<ConnId> {
        (!self.open.is_empty()).then(|| self.open[usize::from(index) % self.open.len()])
    }

    fn close(&mut self, conn: ConnId) {
        self.open.retain(|open| *open != conn);
        self.dialing.retain(|open| *open != conn);
        self.closed.insert(conn);
    }

    /// Checks one action against what the core was told, and records it.
    fn take(&mut self, action: Action) {
        let addressed = |book: &ConnBook, conn: &ConnId, what: &str| {
            assert!(book.made.contains(conn), "{what} to unknown {conn}");
            assert!(!book.closed.contains(conn), "{what} to closed {conn}");
        };
        match action {
            Action::Admit { conn, .. } => {
                assert!(self.made.insert(conn), "{conn} admitted twice");
                self.open.push(conn);
            }
            Action::Dial { conn, .. } => {
                assert!(self.made.insert(conn), "{conn} dialed twice");
                self.dialing.push(conn);
            }
            Action::Authenticated { conn } => {
                addressed(self, &conn, "Authenticated");
                assert!(self.secured.contains_key(&conn), "{conn} not secured");
                assert!(
                    self.authenticated.insert(conn),
                    "{conn} authenticated twice"
                );
            }
            Action::Send { conn, message } => {
                addressed(self, &conn, "Send");
                if !self.authenticated.contains(&conn) {
                    assert!(
                        matches!(message, Message::Hello(_) | Message::HelloAck(_)),
                        "{message:?} sent to {conn} before its handshake"
                    );
                }
            }
            Action::PushCompact { conn, .. } => addressed(self, &conn, "PushCompact"),
            Action::Answer { conn, items } => {
                addressed(self, &conn, "Answer");
                assert!(
                    self.authenticated.contains(&conn),
                    "answer before handshake"
                );
                for item in items {
                    if let Outgoing::Message(message) = item {
                        let encoded = encode_message(&message);
                        decode_message(&encoded, max_frame_for(regtest()))
                            .expect("what we send decodes");
                    }
                }
            }
            Action::Disconnect { conn, .. } => {
                assert!(self.made.contains(&conn), "Disconnect of unknown {conn}");
                self.close(conn);
            }
            Action::ImportBlock {
                from, block, size, ..
            } => self.imports_blocks.push((from, block.hash(), size)),
            Action::ImportTx { from, tx } => self.imports_txs.push((from, *tx)),
            Action::Rebuild { .. }
            | Action::Refuse { .. }
            | Action::Store(_)
            | Action::Metric(_)
            | Action::Publish(_) => {}
        }
    }
}

/// `p2p_session`: a sequence of driver steps (connections, handshakes,
/// frames, closes, verdicts, time) fed to a fresh core. After each step
/// every action must address a connection the core made and has not
/// closed, authenticate only a secured connection and only once, and
/// send nothing but the handshake before that.
pub fn session(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let spec = regtest();
    let genesis = dev::regtest_header().clone();
    let txs: BTreeMap<TxId, Transaction> = (0..3)
        .map(|i| dev_tx(i, 0, 0))
        .map(|tx| (tx.txid(), tx))
        .collect();
    let view = View {
        genesis: genesis.clone(),
        txs: Arc::new(txs),
        work: 2,
    };
    let magic = NetworkMagic(dev::regtest_magic());
    let config = ProtocolConfig {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
        peers: vec!["127.0.0.2:7000".to_string()],
        dns_seeds: Vec::new(),
        external_addr: None,
        no_discovery: false,
        max_inbound: 4,
        max_outbound: 2,
        ban_duration: Duration::from_secs(3600),
        network_magic: magic,
        genesis_hash: dev::regtest_genesis(),
        node_key: peer_key(255).clone(),
        timing: P2pTiming::default(),
    };
    let mut ms = 0u64;
    let at = |ms: u64| Time::new(Mono(Duration::from_millis(ms)), 1_800_000_000_000 + ms);
    let mut core = NetworkState::new(config, view, 7, at(0), Restored::default());
    let mut book = ConnBook::default();
    let drain = |core: &mut NetworkState<View>, book: &mut ConnBook| {
        while let Some(action) = core.poll_action() {
            book.take(action);
        }
        let _ = core.next_timer();
    };
    drain(&mut core, &mut book);
    for _ in 0..64 {
        let Ok(op) = Op::arbitrary(&mut input) else {
            break;
        };
        let feed = match op {
            Op::Inbound { ip, port } => Some(Input::Inbound {
                remote: SocketAddr::from(([10, ip % 8, ip, 1], 1000 + u16::from(port))),
            }),
            Op::Connected { which, ip } => (!book.dialing.is_empty()).then(|| {
                let conn = book.dialing.remove(usize::from(which) % book.dialing.len());
                book.open.push(conn);
                Input::Connected {
                    conn,
                    remote: SocketAddr::from(([127, 0, 0, 2 + ip % 4], 7000)),
                }
            }),
            Op::DialFailed { which } => (!book.dialing.is_empty()).then(|| {
                let conn = book.dialing.remove(usize::from(which) % book.dialing.len());
                book.closed.insert(conn);
                Input::DialFailed {
                    conn,
                    error: "refused".into(),
                }
            }),
            Op::Secured { conn, key } => book.pick(conn).and_then(|conn| {
                // The transport proves an identity once per connection.
                (!book.secured.contains_key(&conn)).then(|| {
                    let node_id = peer_key(key).public_key();
                    book.secured.insert(conn, node_id);
                    Input::Secured { conn, node_id }
                })
            }),
            Op::Hello {
                conn,
                key,
                flaws,
                height,
                work,
                port,
            } => book
                .pick(conn)
                .filter(|c| book.secured.contains_key(c))
                .map(|conn| {
                    let node_id = if flaws & 8 != 0 {
                        peer_key(key).public_key()
                    } else {
                        book.secured[&conn]
                    };
                    Input::Frame {
                        conn,
                        message: Message::Hello(Box::new(Hello {
                            magic: if flaws & 1 != 0 {
                                NetworkMagic([1; 4])
                            } else {
                                magic
                            },
                            protocol_version: PROTOCOL_VERSION + u32::from(flaws & 2 != 0),
                            genesis_hash: if flaws & 4 != 0 {
                                BlockHash(small_hash(flaws))
                            } else {
                                dev::regtest_genesis()
                            },
                            node_id,
                            best_height: Height(u64::from(height)),
                            best_work: Work(U256::from_u64(u64::from(work))),
                            listen_port: port,
                        })),
                    }
                }),
            Op::HelloAck { conn } => book
                .pick(conn)
                .filter(|c| book.secured.contains_key(c))
                .map(|conn| Input::Frame {
                    conn,
                    message: Message::HelloAck(HelloAck {}),
                }),
            Op::Message { conn, message } => book
                .pick(conn)
                .filter(|c| book.secured.contains_key(c))
                .map(|conn| Input::Frame {
                    conn,
                    message: message.build(&genesis),
                }),
            Op::Raw { conn, payload } => book
                .pick(conn)
                .filter(|c| book.secured.contains_key(c))
                .map(|conn| match decode_message(&payload, max_frame_for(spec)) {
                    Ok(message) => Input::Frame { conn, message },
                    // What the driver reports for a frame that does not decode.
                    Err(error) => {
                        book.close(conn);
                        Input::Closed {
                            conn,
                            cause: CloseCause::BadFrame {
                                reason: error.reason(),
                                detail: error.to_string(),
                            },
                        }
                    }
                }),
            Op::Closed { conn, cause } => book.pick(conn).map(|conn| {
                book.close(conn);
                let cause = match cause % 4 {
                    0 => CloseCause::Disconnected("reset".into()),
                    1 => CloseCause::SlowPeer,
                    2 => CloseCause::Insecure {
                        reason: "bad_ciphertext",
                        detail: String::new(),
                    },
                    _ => CloseCause::BadFrame {
                        reason: "undecodable_frame",
                        detail: String::new(),
                    },
                };
                Input::Closed { conn, cause }
            }),
            Op::Tick {
                advance_ms,
                seconds,
            } => {
                ms += u64::from(advance_ms) + 1000 * u64::from(seconds);
                Some(Input::Tick)
            }
            Op::Idle => Some(Input::Idle),
            Op::BlockVerdict { which, verdict } => (!book.imports_blocks.is_empty()).then(|| {
                let (from, hash, size) = book
                    .imports_blocks
                    .remove(usize::from(which) % book.imports_blocks.len());
                Input::BlockVerdict {
                    from: from.filter(|c| !book.closed.contains(c)),
                    hash,
                    size,
                    verdict: match verdict % 4 {
                        0 => BlockVerdict::Accepted,
                        1 => BlockVerdict::Known,
                        2 => BlockVerdict::Orphan,
                        _ => BlockVerdict::Rejected {
                            reason: "bad".into(),
                            misbehaving: verdict & 4 != 0,
                        },
                    },
                }
            }),
            Op::TxVerdict { which, verdict } => {
                let open = |c: &ConnId| !book.closed.contains(c);
                let index = book.imports_txs.iter().position(|(from, _)| open(from));
                index.map(|first| {
                    let pick = (first + usize::from(which)) % book.imports_txs.len();
                    let pick = if open(&book.imports_txs[pick].0) {
                        pick
                    } else {
                        first
                    };
                    let (from, tx) = book.imports_txs.remove(pick);
                    Input::TxVerdict {
                        from,
                        txid: tx.txid(),
                        sender: tx.sender(),
                        nonce: tx.nonce,
                        verdict: match verdict % 3 {
                            0 => TxVerdict::Accepted,
                            1 => TxVerdict::Known,
                            _ => TxVerdict::Rejected {
                                reason: "bad".into(),
                                misbehaving: verdict & 4 != 0,
                            },
                        },
                    }
                })
            }
            Op::TxAccepted { sender, nonce } => Some(Input::Node(NodeEvent::TxAccepted {
                tx: Arc::new(dev_tx(sender, nonce, 0)),
            })),
            Op::BlockValidated { height } => Some(Input::Node(NodeEvent::BlockValidated {
                hash: BlockHash(small_hash(height)),
                height: Height(u64::from(height)),
            })),
            Op::Dial { ip } => Some(Input::Command(node::p2p::protocol::Command::Dial(format!(
                "127.0.1.{}:7000",
                ip % 4
            )))),
        };
        if let Some(feed) = feed {
            core.handle(at(ms), feed);
            drain(&mut core, &mut book);
        }
    }
}
