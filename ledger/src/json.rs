//! The JSON shapes of the node's HTTP API (see SPEC.md), shared by the node
//! that serves them and the wallet and testnet tools that read them. Amounts
//! are integers in base units, hashes and keys hex, addresses bech32m.

use crate::address::AddressError;
use crate::amount::Amount;
use crate::block::Block;
use crate::chainspec::ChainSpec;
use crate::hash::{BlockHash, TxId};
use crate::keys::{PublicKey, Signature};
use crate::target::{Target, U256};
use crate::tx::Transaction;
use crate::Height;
use serde::{Deserialize, Serialize};

/// A transaction as the API shows and accepts it. On input `txid` and
/// `from` are ignored (they are derived), and unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxJson {
    #[serde(default)]
    pub txid: Option<TxId>,
    #[serde(default)]
    pub from: Option<String>,
    pub from_pubkey: String,
    pub to: String,
    pub amount: Amount,
    pub fee: Amount,
    pub nonce: u64,
    #[serde(default)]
    pub memo: Option<String>,
    pub signature: String,
}

// `txid` and `from` are read back when a client parses the node's own
// objects, but `to_tx` never uses them: they are derived values, and the
// node recomputes both from the signed fields.

/// Why a JSON transaction cannot become a `Transaction`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxJsonError {
    #[error("from_pubkey must be 64 hex characters")]
    BadPublicKey,
    #[error("signature must be 128 hex characters")]
    BadSignature,
    #[error("invalid recipient address: {0}")]
    BadAddress(#[from] AddressError),
    #[error("invalid transaction JSON: {0}")]
    Shape(String),
}

impl TxJson {
    pub fn from_tx(tx: &Transaction, spec: &ChainSpec) -> TxJson {
        TxJson {
            txid: Some(tx.txid()),
            from: Some(spec.format_address(&tx.sender())),
            from_pubkey: hex::encode(tx.from.0),
            to: spec.format_address(&tx.to),
            amount: tx.amount,
            fee: tx.fee,
            nonce: tx.nonce,
            memo: (!tx.memo.is_empty()).then(|| tx.memo.clone()),
            signature: hex::encode(tx.signature.0),
        }
    }

    pub fn to_tx(&self, spec: &ChainSpec) -> Result<Transaction, TxJsonError> {
        let mut from = [0u8; 32];
        hex::decode_to_slice(&self.from_pubkey, &mut from)
            .map_err(|_| TxJsonError::BadPublicKey)?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut signature)
            .map_err(|_| TxJsonError::BadSignature)?;
        Ok(Transaction {
            from: PublicKey(from),
            to: spec.parse_address(&self.to)?,
            amount: self.amount,
            fee: self.fee,
            nonce: self.nonce,
            memo: self.memo.clone().unwrap_or_default(),
            signature: Signature(signature),
        })
    }

    /// Parses a JSON object as a transaction, ignoring `txid` and `from`
    /// (derived values a client may echo back) and refusing other unknown keys.
    pub fn parse_value(mut value: serde_json::Value) -> Result<TxJson, TxJsonError> {
        if let Some(object) = value.as_object_mut() {
            object.remove("txid");
            object.remove("from");
        }
        serde_json::from_value(value).map_err(|error| TxJsonError::Shape(error.to_string()))
    }
}

/// `POST /v1/txs` with `{"raw": "<hex>"}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTxRequest {
    pub raw: String,
}

/// 202 answer of `POST /v1/txs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitTxResponse {
    pub txid: TxId,
}

/// A block as the API shows it. `txs` is absent in `block` events, where
/// `tx_count` says how many there are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockJson {
    pub hash: BlockHash,
    pub height: Height,
    pub prev_hash: BlockHash,
    pub merkle_root: String,
    pub timestamp: u64,
    pub target: U256,
    pub nonce: u64,
    pub miner: String,
    pub reward: Amount,
    pub tx_count: usize,
    pub size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txs: Option<Vec<TxJson>>,
}

impl BlockJson {
    /// The full block object; `with_txs` false gives the event form.
    pub fn from_block(block: &Block, spec: &ChainSpec, with_txs: bool) -> BlockJson {
        let header = &block.header;
        let target = Target::from_compact(header.bits)
            .map(|target| target.0)
            .unwrap_or_default();
        BlockJson {
            hash: block.hash(),
            height: header.height,
            prev_hash: header.prev_hash,
            merkle_root: header.merkle_root.to_hex(),
            timestamp: header.timestamp,
            target,
            nonce: header.nonce,
            miner: spec.format_address(&header.miner),
            reward: header.reward,
            tx_count: block.txs.len(),
            size: block.encoded_len(),
            txs: with_txs.then(|| {
                block
                    .txs
                    .iter()
                    .map(|tx| TxJson::from_tx(tx, spec))
                    .collect()
            }),
        }
    }
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusJson {
    pub chain: String,
    pub genesis_hash: BlockHash,
    pub height: Height,
    pub tip: BlockHash,
    pub total_work: U256,
    pub target: U256,
    pub peers: usize,
    pub mempool: usize,
    pub min_fee: Amount,
    pub syncing: bool,
    pub mining: bool,
    pub node_id: String,
    pub version: String,
}

/// `GET /v1/accounts/{address}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountJson {
    pub address: String,
    pub balance: Amount,
    /// Confirmed nonce: the number of confirmed txs this account sent.
    pub nonce: u64,
    /// The nonce the next new tx should use, after pending ones.
    pub next_nonce: u64,
}

/// Whether a tx is in the mempool, in a best-chain block, or was let go by
/// the mempool lately (`reason` says why).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    Pending,
    Confirmed,
    Dropped,
}

/// `GET /v1/txs/{txid}`, and each entry of an account's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxLookupJson {
    pub tx: TxJson,
    pub status: TxStatus,
    pub block_hash: Option<BlockHash>,
    pub block_height: Option<Height>,
    pub confirmations: u64,
    /// Why a `dropped` tx was let go (a `DropReason` code); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/mempool`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MempoolJson {
    pub count: usize,
    pub bytes: usize,
    pub txids: Vec<TxId>,
}

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// One entry of `GET /v1/peers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerJson {
    pub addr: String,
    pub direction: Direction,
    pub node_id: String,
    pub height: Height,
    pub ping_ms: Option<u64>,
    pub connected_secs: u64,
    /// Misbehaviour points short of a ban (the node disconnects at 100).
    #[serde(default)]
    pub score: u32,
    /// The rule holding the peer back now (a rate limit, expiring
    /// requests), if any.
    #[serde(default)]
    pub throttled: Option<String>,
}

/// `GET /v1/network`: this node's peers, and the peers each node it heard
/// of reported in its last `Addr`.
///
/// Fields stand in alphabetical order, and each peer's keys too (see
/// `sorted_keys`), so the route prints the bytes a `serde_json::Value` of
/// the same document would (its maps sort their keys), whatever order a
/// client's parser keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkJson {
    pub known: Vec<KnownNodeJson>,
    pub node_id: String,
    #[serde(serialize_with = "sorted_keys")]
    pub peers: Vec<PeerJson>,
}

/// A node another node told us about, with the node ids it is linked to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownNodeJson {
    pub addr: String,
    pub node_id: String,
    pub peers: Vec<String>,
}

/// Serialises `value` with every object's keys in alphabetical order.
fn sorted_keys<T: Serialize, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    // Without serde_json's `preserve_order` feature a `Value`'s maps are
    // sorted by key.
    serde_json::to_value(value)
        .map_err(serde::ser::Error::custom)?
        .serialize(serializer)
}

/// `POST /v1/peers`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPeerRequest {
    pub addr: String,
}

/// `GET /v1/state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateJson {
    pub height: Height,
    pub tip: BlockHash,
    pub accounts: u64,
    pub total_supply: Amount,
    pub digest: String,
}

/// `POST /v1/dev/mine` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MineRequest {
    pub blocks: u32,
}

/// `POST /v1/dev/mine` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MineResponse {
    pub hashes: Vec<BlockHash>,
}

/// The `reorg` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReorgJson {
    pub old_tip: BlockHash,
    pub new_tip: BlockHash,
    pub fork_height: Height,
    pub disconnected: Vec<BlockHash>,
    pub connected: Vec<BlockHash>,
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// `code` is snake_case and stable; `message` is for humans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chainspec::dev_secret_key;

    #[test]
    fn network_json_prints_every_key_in_alphabetical_order() {
        let view = NetworkJson {
            known: vec![KnownNodeJson {
                addr: "127.0.0.1:1".into(),
                node_id: "aa".into(),
                peers: vec!["bb".into()],
            }],
            node_id: "cc".into(),
            peers: vec![PeerJson {
                addr: "127.0.0.1:2".into(),
                direction: Direction::Outbound,
                node_id: "bb".into(),
                height: Height(7),
                ping_ms: None,
                connected_secs: 3,
                score: 0,
                throttled: None,
            }],
        };
        let printed = serde_json::to_string(&view).unwrap();
        // What a `serde_json::Value` of the same document prints.
        let as_map = serde_json::to_value(&view).unwrap().to_string();
        assert_eq!(printed, as_map);
        assert!(printed.starts_with(r#"{"known":[{"addr":"127.0.0.1:1","node_id":"aa","peers":["bb"]}],"node_id":"cc","peers":[{"addr":"127.0.0.1:2","connected_secs":3,"direction":"outbound""#), "{printed}");
        let back: NetworkJson = serde_json::from_str(&printed).unwrap();
        assert_eq!(back, view);
    }

    #[test]
    fn tx_json_round_trip_and_strictness() {
        let spec = ChainSpec::builtin("regtest").unwrap();
        let tx = Transaction::new_signed(
            &dev_secret_key(0),
            &spec.genesis_hash(),
            crate::chainspec::dev_accounts()[1].address,
            Amount::from_base_units(10),
            Amount::from_base_units(1000),
            0,
            String::new(),
        );
        let json = serde_json::to_value(TxJson::from_tx(&tx, &spec)).unwrap();
        assert_eq!(json["memo"], serde_json::Value::Null);
        assert_eq!(json["amount"], 10);
        let parsed = TxJson::parse_value(json.clone()).unwrap();
        assert_eq!(parsed.to_tx(&spec).unwrap(), tx);
        let mut unknown = json.clone();
        unknown["extra"] = 1.into();
        assert!(TxJson::parse_value(unknown).is_err());
        let mut negative = json;
        negative["amount"] = (-1).into();
        assert!(TxJson::parse_value(negative).is_err());
    }
}
