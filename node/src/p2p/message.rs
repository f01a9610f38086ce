//! The wire messages of the peer-to-peer protocol and their limits. Every
//! message is one value of `Message`, encoded with the canonical encoding
//! (`ledger::encoding`), so the bytes of a `Tx` or `Block` on the wire are
//! exactly the bytes that are hashed and stored. This module also owns the
//! handshake's signed statement (`handshake_message`), because what a
//! signature covers is part of the protocol, not of any one task.

use ledger::encoding::{Decode, Encode};
use ledger::{
    Address, Block, BlockHash, Hash256, Header, Height, PublicKey, Signature, Transaction, TxId,
    Work,
};
use std::net::SocketAddr;

/// Version of this protocol; a peer speaking another one is refused.
/// Version 2 added `GetSenderTxs`.
pub const PROTOCOL_VERSION: u32 = 2;
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
/// Most hashes in a block locator. Ten dense hashes then doubling steps
/// reach back 2^64 blocks long before this.
pub const MAX_LOCATOR: usize = 128;

/// Domain separation for the handshake signature, so a node key can never be
/// tricked into signing something that is also a valid tx or block statement.
pub const HANDSHAKE_DOMAIN: &[u8] = b"gossip-ledger/p2p-handshake/v1\0";

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
    /// The sender's persistent node key; the `HelloAck` proves possession.
    pub node_id: PublicKey,
    pub best_height: Height,
    pub best_work: Work,
    /// The port the sender accepts connections on (0: it does not listen).
    /// Combined with the IP address we see, this is its dialable address;
    /// the connection's source port is ephemeral and never recorded.
    pub listen_port: u16,
    /// Random challenge: the other side must sign it.
    pub nonce: [u8; 32],
}

/// The answer to a `Hello`: a signature over the receiver's challenge.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct HelloAck {
    pub signature: Signature,
}

/// One piece of inventory, named by hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum InvItem {
    Tx(TxId),
    Block(BlockHash),
}

impl InvItem {
    pub fn hash(&self) -> Hash256 {
        match self {
            InvItem::Tx(txid) => txid.0,
            InvItem::Block(hash) => hash.0,
        }
    }

    pub fn is_block(&self) -> bool {
        matches!(self, InvItem::Block(_))
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

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Message {
    Hello(Hello),
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
    Tx(Transaction),
    Block(Block),
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
}

/// Message kinds in discriminant order (the encoding writes the variant
/// index as a little-endian `u32` first). Used for metrics labels and
/// per-kind size caps before decoding.
pub const KINDS: [&str; 14] = [
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
/// for an unknown kind. `max_frame` caps blocks.
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

/// The frame cap after the handshake on a chain: its largest block
/// message, or the largest message of any other kind if that is larger.
pub fn max_frame_for(spec: &ledger::ChainSpec) -> usize {
    let others = (0..KINDS.len() as u32)
        .filter(|index| *index as usize != Message::BLOCK_KIND_INDEX)
        .filter_map(|index| max_encoded_len(index, usize::MAX))
        .max()
        .unwrap_or(0);
    max_block_message_bytes(spec).max(others)
}

impl Message {
    /// Index of the variant, as on the wire.
    /// `kind_index` of `Message::Block`.
    pub const BLOCK_KIND_INDEX: usize = 10;

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
            Message::Tx(_) => 9,
            Message::Block(_) => Message::BLOCK_KIND_INDEX,
            Message::GetHeaders(_) => 11,
            Message::Headers(_) => 12,
            Message::GetSenderTxs { .. } => 13,
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
            | Message::Headers(_) => true,
        }
    }

    /// Checks the item counts that the byte caps only bound loosely.
    pub fn check_counts(&self) -> Result<(), String> {
        let (count, max) = match self {
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

/// The bytes a node signs to answer a `Hello`: the domain, the chain, the
/// challenge it was given and both node ids, so the signature cannot be
/// replayed on another chain, to another node or for another challenge.
pub fn handshake_message(
    magic: NetworkMagic,
    genesis_hash: &BlockHash,
    challenge: &[u8; 32],
    signer: &PublicKey,
    verifier: &PublicKey,
) -> Vec<u8> {
    let mut message = Vec::with_capacity(HANDSHAKE_DOMAIN.len() + 4 + 32 * 4);
    message.extend_from_slice(HANDSHAKE_DOMAIN);
    message.extend_from_slice(&magic.0);
    message.extend_from_slice(genesis_hash.as_bytes());
    message.extend_from_slice(challenge);
    message.extend_from_slice(signer.as_bytes());
    message.extend_from_slice(verifier.as_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::encoding;
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
            Message::Hello(Hello {
                magic: NetworkMagic(*b"gl00"),
                protocol_version: PROTOCOL_VERSION,
                genesis_hash: genesis,
                node_id: key.public_key(),
                best_height: u64::MAX,
                best_work: Work(ledger::U256::MAX),
                listen_port: 7070,
                nonce: [9; 32],
            }),
            Message::HelloAck(HelloAck {
                signature: key.sign(b"x"),
            }),
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
            Message::Tx(tx),
            Message::GetHeaders(vec![genesis; 3]),
            Message::GetSenderTxs {
                sender: Address([9; 20]),
                first_nonce: u64::MAX,
                count: MAX_SENDER_TXS,
            },
        ]
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
            height: u64::MAX,
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
                .check_counts()
                .is_err()
        );
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

    #[test]
    fn handshake_statement_binds_every_part() {
        let a = SecretKey::from_seed("a").public_key();
        let b = SecretKey::from_seed("b").public_key();
        let genesis = BlockHash(Hash256::digest(b"g"));
        let base = handshake_message(NetworkMagic(*b"abcd"), &genesis, &[1; 32], &a, &b);
        assert_ne!(
            base,
            handshake_message(NetworkMagic(*b"abce"), &genesis, &[1; 32], &a, &b)
        );
        assert_ne!(
            base,
            handshake_message(NetworkMagic(*b"abcd"), &genesis, &[2; 32], &a, &b)
        );
        assert_ne!(
            base,
            handshake_message(NetworkMagic(*b"abcd"), &genesis, &[1; 32], &b, &a)
        );
        assert!(base.starts_with(HANDSHAKE_DOMAIN));
    }
}
