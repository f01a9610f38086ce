//! The wire messages of the peer-to-peer protocol and their limits. Every
//! message is one value of `Message`, encoded with the canonical encoding
//! (`ledger::encoding`), so the bytes of a `Tx` or `Block` on the wire are
//! exactly the bytes that are hashed and stored. Who a peer is, is not a
//! message: the secure transport (`p2p::noise`) proves it before the first
//! message is read.

use ledger::encoding::{Decode, Encode};
use ledger::{
    Address, Block, BlockHash, Hash256, Header, Height, PublicKey, Transaction, TxId, Work,
};
use siphasher::sip::SipHasher24;
use std::net::SocketAddr;

/// Version of this protocol; a peer speaking another one is refused.
/// Version 2 added `GetSenderTxs`; version 3 runs every link over Noise
/// (dropping the signed-nonce handshake it made redundant) and relays
/// blocks compactly (`SendCompact`, `CompactBlock`, `GetBlockTxs`,
/// `BlockTxs`); version 4 keys short ids with SipHash instead of SHA-256.
pub const PROTOCOL_VERSION: u32 = 4;
/// Most txs asked for (and answered) in one `GetSenderTxs`: a sender's
/// whole window of pending nonces.
pub const MAX_SENDER_TXS: u32 = 64;
/// Most addresses in one `Addr` message.
pub const MAX_ADDRS: usize = 1_000;
/// Most entries in one `Inv`, `GetData` or `NotFound`. A block holds at most
/// about 4,000 transactions (1 MiB of 256-byte txs), so an honest announcer
/// never needs more than this in one message.
pub const MAX_INV_ITEMS: usize = 5_000;
/// Most headers in one `Headers` message.
pub const MAX_HEADERS: usize = 2_000;
/// The smallest encoded transaction (an empty memo): a block of
/// `max_block_bytes` holds at most `max_block_bytes / MIN_TX_BYTES` txs,
/// which bounds the entries of compact block messages.
pub const MIN_TX_BYTES: usize = 32 + 20 + 8 + 8 + 8 + 8 + 64;
/// Peers asked to push us new blocks as `CompactBlock`s without an `Inv`
/// first (high-bandwidth mode): the ones that most recently delivered a new
/// block first. More would only duplicate the same bytes.
pub const MAX_HIGH_BANDWIDTH_PEERS: usize = 3;
/// Most hashes in a block locator. Ten dense hashes then doubling steps
/// reach back 2^64 blocks long before this.
pub const MAX_LOCATOR: usize = 128;

/// The four bytes that open every `Hello` and name the network (taken from
/// the genesis hash), so nodes of different chains part at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct NetworkMagic(pub [u8; 4]);

impl From<[u8; 4]> for NetworkMagic {
    fn from(bytes: [u8; 4]) -> NetworkMagic {
        NetworkMagic(bytes)
    }
}

/// The first message each side sends: who it is and what chain it follows.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Hello {
    pub magic: NetworkMagic,
    pub protocol_version: u32,
    pub genesis_hash: BlockHash,
    /// The sender's persistent node key. It must equal the node id the
    /// secure transport proved, or the peer is lying about who it is.
    pub node_id: PublicKey,
    pub best_height: Height,
    pub best_work: Work,
    /// The port the sender accepts connections on (0: it does not listen).
    /// Combined with the IP address we see, this is its dialable address;
    /// the connection's source port is ephemeral and never recorded.
    pub listen_port: u16,
}

/// The answer to a `Hello` that checked out. It carries nothing: the
/// transport already authenticated both sides. It marks the point after
/// which each side may send (and accept) full-size frames.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct HelloAck {}

/// One piece of inventory, named by hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum InvItem {
    Tx(TxId),
    Block(BlockHash),
    /// Only in `GetData`: "send that block as a `CompactBlock`".
    CompactBlock(BlockHash),
}

impl InvItem {
    pub fn hash(&self) -> Hash256 {
        match self {
            InvItem::Tx(txid) => txid.0,
            InvItem::Block(hash) | InvItem::CompactBlock(hash) => hash.0,
        }
    }

    pub fn is_block(&self) -> bool {
        matches!(self, InvItem::Block(_) | InvItem::CompactBlock(_))
    }
}

/// A txid shortened for one block: SipHash-2-4 of the txid under a key
/// drawn from the block (`ShortIdKey`). Keyed by the block, whose hash
/// nobody knows before it is mined, so no one can grind txs whose short
/// ids collide in it; a rare accidental collision only costs the receiver
/// a fetch of the full block. SipHash rather than SHA-256 because a
/// receiver computes one for every tx in its mempool on each block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct ShortId(pub u64);

/// Domain separation of the short-id key.
const SHORT_ID_DOMAIN: &[u8] = b"gossip-ledger/short-id/v2";

/// The SipHash key of one block's short ids: the first 16 bytes of SHA-256
/// over a domain tag and the block hash, read as two little-endian words.
#[derive(Clone, Copy, Debug)]
pub struct ShortIdKey {
    k0: u64,
    k1: u64,
}

impl ShortIdKey {
    pub fn for_block(block: &BlockHash) -> ShortIdKey {
        let digest = Hash256::digest_parts(&[SHORT_ID_DOMAIN, block.as_bytes()]);
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest.0[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        ShortIdKey {
            k0: word(0),
            k1: word(8),
        }
    }

    pub fn short_id(&self, txid: &TxId) -> ShortId {
        ShortId(SipHasher24::new_with_keys(self.k0, self.k1).hash(&txid.0 .0))
    }
}

impl ShortId {
    /// `txid`'s short id in `block`; computing many for one block, take
    /// its `ShortIdKey` once.
    pub fn new(block: &BlockHash, txid: &TxId) -> ShortId {
        ShortIdKey::for_block(block).short_id(txid)
    }
}

/// A tx sent in full inside a `CompactBlock`, at its index in the block.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PrefilledTx {
    pub index: u32,
    pub tx: Transaction,
}

/// A block as its header and the short ids of its txs, in block order,
/// except the `prefilled` ones (sent whole, in ascending index order). The
/// receiver rebuilds the block from its mempool and asks with
/// `GetBlockTxs` for what it lacks.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CompactBlock {
    pub header: Header,
    pub short_ids: Vec<ShortId>,
    pub prefilled: Vec<PrefilledTx>,
}

impl CompactBlock {
    /// The compact form of `block`, no tx prefilled.
    pub fn from_block(block: &Block) -> CompactBlock {
        let txids: Vec<TxId> = block.txs.iter().map(Transaction::txid).collect();
        CompactBlock::prefilling(block, &txids, |_| false)
    }

    /// The compact form of `block`, whose txids are `txids`, with the txs
    /// at the indexes `prefill` picks sent whole.
    pub fn prefilling(
        block: &Block,
        txids: &[TxId],
        prefill: impl Fn(usize) -> bool,
    ) -> CompactBlock {
        let key = ShortIdKey::for_block(&block.hash());
        let mut short_ids = Vec::with_capacity(txids.len());
        let mut prefilled = Vec::new();
        for (index, (tx, txid)) in block.txs.iter().zip(txids).enumerate() {
            if prefill(index) {
                prefilled.push(PrefilledTx {
                    index: index as u32,
                    tx: tx.clone(),
                });
            } else {
                short_ids.push(key.short_id(txid));
            }
        }
        CompactBlock {
            header: block.header.clone(),
            short_ids,
            prefilled,
        }
    }

    /// How many txs the block holds.
    pub fn tx_count(&self) -> usize {
        self.short_ids.len() + self.prefilled.len()
    }
}

/// A peer's dialable address as shared in `Addr`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PeerAddr {
    pub addr: SocketAddr,
    /// The node id seen at that address, when a handshake proved it.
    pub node_id: Option<PublicKey>,
    /// Unix milliseconds when the sender last had a working connection to it.
    pub last_seen_ms: u64,
    /// Whether the sender is connected to it right now (lets explorers draw
    /// the network beyond direct peers).
    pub connected: bool,
}

/// Every message of the protocol. The variants that carry a large value
/// box it (a box encodes as its contents), so a `Message`, and every
/// input and action holding one, stays small to move: a node moves one
/// for every frame, most of them a one-item `Inv`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Message {
    Hello(Box<Hello>),
    HelloAck(HelloAck),
    Ping(u64),
    Pong(u64),
    GetAddr,
    Addr(Vec<PeerAddr>),
    /// "I have these": announcements, answered with `GetData` for what is new.
    Inv(Vec<InvItem>),
    GetData(Vec<InvItem>),
    /// Answer to `GetData` for items the sender does not have (any more).
    NotFound(Vec<InvItem>),
    Tx(Box<Transaction>),
    Block(Box<Block>),
    /// Block locator of the sender's best chain.
    GetHeaders(Vec<BlockHash>),
    Headers(Vec<Header>),
    /// "Send me `sender`'s pending txs with nonces `first_nonce..` (at most
    /// `count`)": how a node fills a gap in a sender's nonces that an
    /// announcement by txid could not (it was never fetched, or refused
    /// while its predecessor was missing). Answered with `Tx`s, in nonce
    /// order, for those the peer has.
    GetSenderTxs {
        sender: Address,
        first_nonce: u64,
        count: u32,
    },
    /// "Push me new blocks as `CompactBlock`s before you announce them"
    /// (`true`), or stop doing so (`false`).
    SendCompact {
        high_bandwidth: bool,
    },
    CompactBlock(Box<CompactBlock>),
    /// "Send me the txs at these indexes of this block" (ascending), to
    /// finish rebuilding it from a `CompactBlock`.
    GetBlockTxs {
        block: BlockHash,
        indexes: Vec<u32>,
    },
    /// The answer to `GetBlockTxs`: the txs asked for, in the order asked.
    BlockTxs {
        block: BlockHash,
        txs: Vec<Transaction>,
    },
}

/// Message kinds in discriminant order (the encoding writes the variant
/// index as a little-endian `u32` first). Used for metrics labels and
/// per-kind size caps before decoding.
pub const KINDS: [&str; 18] = [
    "hello",
    "hello_ack",
    "ping",
    "pong",
    "get_addr",
    "addr",
    "inv",
    "get_data",
    "not_found",
    "tx",
    "block",
    "get_headers",
    "headers",
    "get_sender_txs",
    "send_compact",
    "compact_block",
    "get_block_txs",
    "block_txs",
];

/// Upper bound, in bytes, of an encoded `Header` (all fields fixed width).
const HEADER_BYTES: usize = 4 + 8 + 32 + 32 + 8 + 4 + 8 + 20 + 8;
/// Upper bound of an encoded `InvItem`.
const INV_ITEM_BYTES: usize = 4 + 32;
/// Upper bound of an encoded `PeerAddr` (IPv6 with flow info and scope).
const PEER_ADDR_BYTES: usize = (4 + 16 + 2 + 4 + 4) + (1 + 32) + 8 + 1;
/// The discriminant and a `Vec` length prefix.
const ENVELOPE_BYTES: usize = 4 + 8;

/// The largest encoded size a message of kind `index` may have, or `None`
/// for an unknown kind. `max_frame` caps blocks and the messages that can
/// carry a block's worth of txs (`CompactBlock` with prefilled txs,
/// `BlockTxs`); `GetBlockTxs` holds one index per tx of such a block.
pub fn max_encoded_len(index: u32, max_frame: usize) -> Option<usize> {
    let cap = match index {
        0 => 256,                                          // hello
        1 => 4 + 64,                                       // hello_ack
        2 | 3 => 4 + 8,                                    // ping, pong
        4 => 4,                                            // get_addr
        5 => ENVELOPE_BYTES + MAX_ADDRS * PEER_ADDR_BYTES, // addr
        6..=8 => ENVELOPE_BYTES + MAX_INV_ITEMS * INV_ITEM_BYTES,
        // A tx is at most 256 bytes plus its memo; leave room for growth of
        // the format without letting a tx frame carry a block's worth.
        9 => 4 + 1024,
        10 => max_frame,
        11 => ENVELOPE_BYTES + MAX_LOCATOR * 32,
        12 => ENVELOPE_BYTES + MAX_HEADERS * HEADER_BYTES,
        13 => 4 + 20 + 8 + 4,
        14 => 4 + 1,
        15 | 17 => max_frame,
        16 => ENVELOPE_BYTES + 32 + (max_frame / MIN_TX_BYTES) * 4,
        _ => return None,
    };
    Some(cap.min(max_frame))
}

/// The largest `Block` message of a chain: the kind tag and a block of
/// its `max_block_bytes`. Every cap on block messages derives from this
/// one function of the chain spec.
pub fn max_block_message_bytes(spec: &ledger::ChainSpec) -> usize {
    usize::try_from(spec.max_block_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(4)
}

/// Kinds whose cap is the frame cap or follows it: a block, and the
/// compact block messages that can carry a block's worth of txs.
const BLOCK_SIZED_KINDS: [u32; 4] = [10, 15, 16, 17];

/// The frame cap after the handshake on a chain: its largest block
/// message, or the largest message of any other kind if that is larger.
pub fn max_frame_for(spec: &ledger::ChainSpec) -> usize {
    let others = (0..KINDS.len() as u32)
        .filter(|index| !BLOCK_SIZED_KINDS.contains(index))
        .filter_map(|index| max_encoded_len(index, usize::MAX))
        .max()
        .unwrap_or(0);
    max_block_message_bytes(spec).max(others)
}

impl Message {
    /// `kind_index` of `Message::Tx`.
    pub const TX_KIND_INDEX: usize = 9;
    /// `kind_index` of `Message::Block`.
    pub const BLOCK_KIND_INDEX: usize = 10;
    /// `kind_index` of `Message::CompactBlock`.
    pub const COMPACT_BLOCK_KIND_INDEX: usize = 15;

    /// Index of the variant, as on the wire.
    pub fn kind_index(&self) -> usize {
        match self {
            Message::Hello(_) => 0,
            Message::HelloAck(_) => 1,
            Message::Ping(_) => 2,
            Message::Pong(_) => 3,
            Message::GetAddr => 4,
            Message::Addr(_) => 5,
            Message::Inv(_) => 6,
            Message::GetData(_) => 7,
            Message::NotFound(_) => 8,
            Message::Tx(_) => Message::TX_KIND_INDEX,
            Message::Block(_) => Message::BLOCK_KIND_INDEX,
            Message::GetHeaders(_) => 11,
            Message::Headers(_) => 12,
            Message::GetSenderTxs { .. } => 13,
            Message::SendCompact { .. } => 14,
            Message::CompactBlock(_) => Message::COMPACT_BLOCK_KIND_INDEX,
            Message::GetBlockTxs { .. } => 16,
            Message::BlockTxs { .. } => 17,
        }
    }

    /// Metrics label of this message.
    pub fn kind(&self) -> &'static str {
        KINDS[self.kind_index()]
    }

    /// Whether the message is about blocks or the connection itself (the
    /// handshake, pings, headers, blocks, and inventory that names a
    /// block), which a node handles ahead of tx traffic so that a busy
    /// mempool never delays a block's relay.
    pub fn is_urgent(&self) -> bool {
        match self {
            Message::Inv(items) | Message::GetData(items) | Message::NotFound(items) => {
                items.iter().any(InvItem::is_block)
            }
            Message::Tx(_) | Message::GetAddr | Message::Addr(_) | Message::GetSenderTxs { .. } => {
                false
            }
            Message::Hello(_)
            | Message::HelloAck(_)
            | Message::Ping(_)
            | Message::Pong(_)
            | Message::Block(_)
            | Message::GetHeaders(_)
            | Message::Headers(_)
            | Message::SendCompact { .. }
            | Message::CompactBlock(_)
            | Message::GetBlockTxs { .. }
            | Message::BlockTxs { .. } => true,
        }
    }

    /// Checks the item counts that the byte caps only bound loosely.
    /// `max_block_txs`: the most txs a block of this chain can hold.
    pub fn check_counts(&self, max_block_txs: usize) -> Result<(), String> {
        let (count, max) = match self {
            Message::CompactBlock(compact) => (compact.tx_count(), max_block_txs),
            Message::GetBlockTxs { indexes, .. } => (indexes.len(), max_block_txs),
            Message::BlockTxs { txs, .. } => (txs.len(), max_block_txs),
            Message::Addr(addrs) => (addrs.len(), MAX_ADDRS),
            Message::Inv(items) | Message::GetData(items) | Message::NotFound(items) => {
                (items.len(), MAX_INV_ITEMS)
            }
            Message::GetHeaders(locator) => (locator.len(), MAX_LOCATOR),
            Message::Headers(headers) => (headers.len(), MAX_HEADERS),
            Message::GetSenderTxs { count, .. } => (*count as usize, MAX_SENDER_TXS as usize),
            _ => return Ok(()),
        };
        if count > max {
            return Err(format!(
                "{} with {count} entries, at most {max} allowed",
                self.kind()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::encoding;
    use ledger::Height;
    use ledger::{Address, Amount, Hash256, SecretKey};

    fn sample_messages() -> Vec<Message> {
        let key = SecretKey::from_seed("message test");
        let genesis = BlockHash(Hash256::digest(b"genesis"));
        let tx = Transaction::new_signed(
            &key,
            &genesis,
            Address([3; 20]),
            Amount::from_base_units(10),
            Amount::from_base_units(1_000),
            4,
            "memo".into(),
        );
        vec![
            Message::Hello(Box::new(Hello {
                magic: NetworkMagic(*b"gl00"),
                protocol_version: PROTOCOL_VERSION,
                genesis_hash: genesis,
                node_id: key.public_key(),
                best_height: Height(u64::MAX),
                best_work: Work(ledger::U256::MAX),
                listen_port: 7070,
            })),
            Message::HelloAck(HelloAck {}),
            Message::Ping(1),
            Message::Pong(u64::MAX),
            Message::GetAddr,
            Message::Addr(vec![PeerAddr {
                addr: "[::1]:7070".parse().expect("literal"),
                node_id: Some(key.public_key()),
                last_seen_ms: 5,
                connected: true,
            }]),
            Message::Inv(vec![InvItem::Tx(tx.txid()), InvItem::Block(genesis)]),
            Message::GetData(vec![InvItem::Block(genesis)]),
            Message::NotFound(vec![InvItem::Tx(tx.txid())]),
            Message::Tx(Box::new(tx)),
            Message::GetHeaders(vec![genesis; 3]),
            Message::GetSenderTxs {
                sender: Address([9; 20]),
                first_nonce: u64::MAX,
                count: MAX_SENDER_TXS,
            },
        ]
    }

    #[test]
    fn a_message_is_small_to_move() {
        // Every input and action holding a message moves it; the large
        // variants are boxed so that this stays true.
        assert!(std::mem::size_of::<Message>() <= 64);
    }

    #[test]
    fn short_ids_are_siphash_2_4_keyed_by_the_block() {
        // The reference vector of the SipHash paper (key 00..0f, message
        // 00..0e), so the hash behind short ids cannot silently change.
        let key = ShortIdKey {
            k0: u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]),
            k1: u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]),
        };
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(
            SipHasher24::new_with_keys(key.k0, key.k1).hash(&message),
            0xa129_ca61_49be_45e5
        );
        let txid = TxId(Hash256::digest(b"a tx"));
        let one = BlockHash(Hash256::digest(b"one"));
        let two = BlockHash(Hash256::digest(b"two"));
        assert_eq!(ShortId::new(&one, &txid), ShortId::new(&one, &txid));
        assert_ne!(ShortId::new(&one, &txid), ShortId::new(&two, &txid));
        assert_eq!(
            ShortIdKey::for_block(&one).short_id(&txid),
            ShortId::new(&one, &txid)
        );
    }

    #[test]
    fn every_kind_round_trips_and_fits_its_cap() {
        for message in sample_messages() {
            let bytes = encoding::encode(&message);
            let index = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
            assert_eq!(index as usize, message.kind_index());
            let cap = max_encoded_len(index, 4 << 20).expect("known kind");
            assert!(
                bytes.len() <= cap,
                "{} is {} > {cap}",
                message.kind(),
                bytes.len()
            );
            let decoded: Message = encoding::decode(&bytes).expect("decodes");
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn caps_hold_for_full_messages() {
        let full_inv = Message::Inv(vec![InvItem::Tx(TxId(Hash256::ZERO)); MAX_INV_ITEMS]);
        assert!(encoding::encoded_len(&full_inv) <= max_encoded_len(6, 4 << 20).expect("cap"));
        let header = Header {
            version: 1,
            height: Height(u64::MAX),
            prev_hash: BlockHash::ZERO,
            merkle_root: Hash256::ZERO,
            timestamp: u64::MAX,
            bits: ledger::target::CompactTarget(0),
            nonce: u64::MAX,
            miner: Address([0; 20]),
            reward: Amount::from_base_units(u64::MAX),
        };
        assert_eq!(encoding::encoded_len(&header), HEADER_BYTES);
        let full_headers = Message::Headers(vec![header; MAX_HEADERS]);
        assert!(encoding::encoded_len(&full_headers) <= max_encoded_len(12, 4 << 20).expect("cap"));
        assert!(
            Message::Inv(vec![InvItem::Tx(TxId(Hash256::ZERO)); MAX_INV_ITEMS + 1])
                .check_counts(1_000)
                .is_err()
        );
    }

    /// The decoder's claim budget grows with the input: messages made of
    /// the elements whose memory is largest against their encoding (an
    /// IPv4 address without a node id) still decode at every count up to
    /// their cap.
    #[test]
    fn full_messages_of_the_leanest_elements_decode_at_every_count() {
        let lean = PeerAddr {
            addr: SocketAddr::from(([10, 0, 0, 1], 7070)),
            node_id: None,
            last_seen_ms: 0,
            connected: false,
        };
        for count in 1..=MAX_ADDRS {
            let message = Message::Addr(vec![lean.clone(); count]);
            let bytes = encoding::encode(&message);
            let decoded: Message = encoding::decode(&bytes).expect("decodes");
            assert_eq!(decoded, message, "{count} addresses");
        }
        for count in (1..=MAX_INV_ITEMS).step_by(97) {
            let message = Message::GetData(vec![InvItem::Tx(TxId(Hash256::ZERO)); count]);
            let decoded: Message = encoding::decode(&encoding::encode(&message)).expect("decodes");
            assert_eq!(decoded, message, "{count} items");
        }
    }

    #[test]
    fn block_and_connection_messages_are_urgent_tx_traffic_is_not() {
        let tx = InvItem::Tx(TxId(Hash256::ZERO));
        let block = InvItem::Block(BlockHash::ZERO);
        assert!(Message::Inv(vec![tx, block]).is_urgent());
        assert!(!Message::Inv(vec![tx]).is_urgent());
        assert!(Message::GetData(vec![block]).is_urgent());
        assert!(!Message::GetData(vec![tx]).is_urgent());
        assert!(Message::Ping(1).is_urgent() && Message::GetHeaders(Vec::new()).is_urgent());
        assert!(!Message::GetAddr.is_urgent());
    }
}
