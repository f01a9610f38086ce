//! Handlers of the REST routes: each reads through the `NodeHandle` (chain
//! reads never queue behind the chain writer), answers one of the
//! `ledger::json` shapes, and fails with an `ApiError`.

use super::error::ApiError;
use super::extract::{parse_json, ApiBytes, ApiJson, ApiQuery, ClientAddr};
use super::RpcState;
use crate::handle::MAX_MINE_BLOCKS;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use ledger::json::{
    AddPeerRequest, BlockJson, MineRequest, MineResponse, NetworkJson, StateJson, SubmitTxResponse,
    TxJson,
};
use ledger::tx::{MAX_MEMO_BYTES, MAX_TX_BYTES};
use ledger::Height;
use ledger::{Address, BlockHash, Transaction, TxId};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most blocks one `GET /v1/blocks` returns.
const MAX_BLOCKS_PER_PAGE: u64 = 100;
const DEFAULT_BLOCKS_PER_PAGE: u64 = 20;
/// Most entries of an account's history.
const MAX_HISTORY: u64 = 1_000;
const DEFAULT_HISTORY: u64 = 50;
/// Txids listed by `GET /v1/mempool` unless `?limit=` asks otherwise (the
/// full pool would be megabytes; `count` is always the full count).
const DEFAULT_MEMPOOL_TXIDS: u64 = 1_000;

fn path_text(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(text)| text)
        .map_err(|rejection| ApiError::Malformed(format!("invalid path: {rejection}")))
}

fn parse_address(state: &RpcState, text: &str) -> Result<Address, ApiError> {
    state
        .node
        .spec()
        .parse_address(text)
        .map_err(|error| ApiError::Malformed(format!("invalid address {text:?}: {error}")))
}

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn ready(State(state): State<RpcState>) -> Result<Json<Value>, ApiError> {
    if state.node.is_ready() {
        Ok(Json(json!({ "status": "ready" })))
    } else {
        Err(ApiError::NotReady(
            "storage is not open or P2P does not listen yet",
        ))
    }
}

pub async fn status(State(state): State<RpcState>) -> impl IntoResponse {
    Json(state.node.status())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlocksQuery {
    from: Option<u64>,
    limit: Option<u64>,
}

/// Most bytes of stored blocks one `GET /v1/blocks` page carries: past it
/// the page ends early (with at least one block), so a page of full
/// blocks costs a few MB, not `limit` MB. Clients go on from the height
/// after the last block they got.
const MAX_BLOCK_PAGE_BYTES: usize = 4 << 20;

pub async fn blocks(
    State(state): State<RpcState>,
    ApiQuery(query): ApiQuery<BlocksQuery>,
) -> Result<axum::response::Response, ApiError> {
    let limit = query
        .limit
        .unwrap_or(DEFAULT_BLOCKS_PER_PAGE)
        .min(MAX_BLOCKS_PER_PAGE);
    let from = query.from.unwrap_or(0);
    let end = from.checked_add(limit).ok_or_else(|| {
        ApiError::Malformed(format!(
            "from {from} plus limit {limit} is past the largest height"
        ))
    })?;
    state
        .blocking_json(move |node| {
            let reader = node.reader();
            let mut blocks = Vec::new();
            let mut bytes = 0usize;
            for height in from..end {
                if bytes >= MAX_BLOCK_PAGE_BYTES {
                    break;
                }
                let Some(block) = reader.block_at(Height(height)) else {
                    break;
                };
                let json = BlockJson::from_block(&block, node.spec(), true);
                bytes = bytes.saturating_add(json.size);
                blocks.push(json);
            }
            Ok(blocks)
        })
        .await
}

pub async fn tip_block(
    State(state): State<RpcState>,
) -> Result<axum::response::Response, ApiError> {
    state
        .blocking_json(|node| {
            let reader = node.reader();
            let tip = reader.tip();
            reader
                .block(&tip.hash)
                .map(|block| BlockJson::from_block(&block, node.spec(), true))
                .ok_or_else(|| ApiError::Internal("the tip block is missing from storage".into()))
        })
        .await
}

/// `{id}` is a height (decimal digits) or a block hash (64 hex chars).
pub async fn block(
    State(state): State<RpcState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::response::Response, ApiError> {
    let id = path_text(id)?;
    let reader = state.node.reader();
    let hash = if !id.is_empty() && id.len() <= 20 && id.bytes().all(|byte| byte.is_ascii_digit()) {
        let height: u64 = id
            .parse()
            .map_err(|_| ApiError::Malformed(format!("height {id} is out of range")))?;
        reader
            .hash_at(Height(height))
            .ok_or_else(|| ApiError::NotFound(format!("no block at height {height}")))?
    } else {
        id.parse::<BlockHash>().map_err(|_| {
            ApiError::Malformed(format!(
                "{id:?} is neither a height nor a block hash (64 hex characters)"
            ))
        })?
    };
    state
        .blocking_json(move |node| {
            node.reader()
                .block(&hash)
                .map(|block| BlockJson::from_block(&block, node.spec(), true))
                .ok_or_else(|| ApiError::NotFound(format!("unknown block {hash}")))
        })
        .await
}

/// The body of `POST /v1/txs`: a tx object (`txid` and `from`, derived
/// values a client may echo back, are accepted and ignored) or
/// `{"raw": "<hex>"}`. Parsed in one pass, since this is the hot route.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxBody {
    #[serde(default)]
    txid: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    from: Option<serde::de::IgnoredAny>,
    from_pubkey: Option<String>,
    to: Option<String>,
    amount: Option<ledger::Amount>,
    fee: Option<ledger::Amount>,
    nonce: Option<u64>,
    #[serde(default)]
    memo: Option<String>,
    signature: Option<String>,
    raw: Option<String>,
}

/// Turns either body form of `POST /v1/txs` into a transaction.
fn parse_submitted_tx(state: &RpcState, body: &[u8]) -> Result<Transaction, ApiError> {
    let body: TxBody = parse_json(body)?;
    let _ = (body.txid, body.from);
    if let Some(raw) = body.raw {
        let has_tx_fields = body.from_pubkey.is_some()
            || body.to.is_some()
            || body.amount.is_some()
            || body.fee.is_some()
            || body.nonce.is_some()
            || body.memo.is_some()
            || body.signature.is_some();
        if has_tx_fields {
            return Err(ApiError::Malformed(
                "send either a tx object or {\"raw\": \"<hex>\"}, not both".into(),
            ));
        }
        let limit = MAX_TX_BYTES + MAX_MEMO_BYTES;
        if raw.len() > 2 * limit {
            return Err(ApiError::Malformed(format!(
                "raw transaction is longer than {limit} bytes"
            )));
        }
        let bytes = hex::decode(&raw).map_err(|_| ApiError::Malformed("raw must be hex".into()))?;
        return ledger::encoding::decode_with_limit::<Transaction>(&bytes, limit).map_err(
            |error| ApiError::Malformed(format!("raw is not a canonical transaction: {error}")),
        );
    }
    let missing =
        |field: &str| ApiError::Malformed(format!("invalid JSON body: missing field `{field}`"));
    let tx_json = TxJson {
        txid: None,
        from: None,
        from_pubkey: body.from_pubkey.ok_or_else(|| missing("from_pubkey"))?,
        to: body.to.ok_or_else(|| missing("to"))?,
        amount: body.amount.ok_or_else(|| missing("amount"))?,
        fee: body.fee.ok_or_else(|| missing("fee"))?,
        nonce: body.nonce.ok_or_else(|| missing("nonce"))?,
        memo: body.memo,
        signature: body.signature.ok_or_else(|| missing("signature"))?,
    };
    tx_json
        .to_tx(state.node.spec())
        .map_err(|error| ApiError::Malformed(error.to_string()))
}

pub async fn submit_tx(
    State(state): State<RpcState>,
    ApiBytes(body): ApiBytes,
) -> Result<(StatusCode, Json<SubmitTxResponse>), ApiError> {
    let tx = parse_submitted_tx(&state, &body)?;
    let txid = state.node.submit_local_tx(tx).await?;
    Ok((StatusCode::ACCEPTED, Json(SubmitTxResponse { txid })))
}

pub async fn tx(
    State(state): State<RpcState>,
    txid: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let text = path_text(txid)?;
    let txid: TxId = text
        .parse()
        .map_err(|_| ApiError::Malformed(format!("{text:?} is not a txid (64 hex characters)")))?;
    state
        .blocking_json(move |node| {
            node.lookup_tx(&txid)
                .ok_or_else(|| ApiError::NotFound(format!("unknown transaction {txid}")))
        })
        .await
}

pub async fn account(
    State(state): State<RpcState>,
    address: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let address = parse_address(&state, &path_text(address)?)?;
    Ok(Json(state.node.account(&address)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    limit: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<u64>,
    /// `HEIGHT-INDEX` from the previous page's `Next-Cursor` header.
    cursor: Option<String>,
}

/// The header that carries the cursor of the next history page.
const NEXT_CURSOR_HEADER: &str = "next-cursor";

/// `GET /v1/accounts/{a}/txs`: newest first, pending txs on the first
/// page only. A full page answers `Next-Cursor: HEIGHT-INDEX`, the
/// position of its last confirmed tx; `?cursor=` with it gives the txs
/// before that one. Each page reads only the txs it returns.
pub async fn account_txs(
    State(state): State<RpcState>,
    address: Result<Path<String>, PathRejection>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<axum::response::Response, ApiError> {
    let address = parse_address(&state, &path_text(address)?)?;
    let limit = query.limit.unwrap_or(DEFAULT_HISTORY).min(MAX_HISTORY);
    let limit = usize::try_from(limit).unwrap_or(0);
    let cursor = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let next = std::sync::Arc::new(std::sync::Mutex::new(None));
    let next_in = next.clone();
    let mut response = state
        .blocking_json(move |node| {
            let page = node.address_history_page(&address, limit, cursor);
            *ledger::sync::lock(&next_in) = page.next_cursor;
            Ok(page.entries)
        })
        .await?;
    let next = *ledger::sync::lock(&next);
    if let Some((height, index)) = next {
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("{height}-{index}")) {
            response.headers_mut().insert(NEXT_CURSOR_HEADER, value);
        }
    }
    Ok(response)
}

fn parse_cursor(text: &str) -> Result<(Height, u32), ApiError> {
    text.split_once('-')
        .and_then(|(height, index)| Some((height.parse().ok()?, index.parse().ok()?)))
        .ok_or_else(|| ApiError::Malformed(format!("cursor {text:?} must be HEIGHT-INDEX")))
}

pub async fn mempool(
    State(state): State<RpcState>,
    ApiQuery(query): ApiQuery<LimitQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = usize::try_from(query.limit.unwrap_or(DEFAULT_MEMPOOL_TXIDS)).unwrap_or(usize::MAX);
    Ok(Json(state.node.mempool_summary(limit)))
}

pub async fn peers(State(state): State<RpcState>) -> impl IntoResponse {
    Json(
        state
            .node
            .network()
            .map(|network| network.peers())
            .unwrap_or_default(),
    )
}

pub async fn add_peer(
    State(state): State<RpcState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<ApiJson<AddPeerRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    state.authorize_admin(&headers, client)?;
    let ApiJson(request) = body?;
    let addr = request.addr.trim().to_string();
    let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port != 0)
    });
    if !valid {
        return Err(ApiError::Malformed(format!(
            "addr {addr:?} must be host:port"
        )));
    }
    let network = state
        .node
        .network()
        .ok_or(ApiError::NotReady("P2P is not running yet"))?;
    match network.pin(addr.clone()).await {
        Some(true) => Ok((StatusCode::ACCEPTED, Json(json!({ "addr": addr })))),
        Some(false) => Err(ApiError::TooManyPinnedPeers(format!(
            "not dialing {addr}: every pinned-peer slot (at most --max-outbound) holds a connected or connecting peer; \
             retry when one disconnects, or restart the node with a higher --max-outbound"
        ))),
        None => Err(ApiError::NotReady("P2P has stopped")),
    }
}

/// O(1): the summary is kept up to date as blocks connect and disconnect
/// (`ledger::storage`), so this is one read.
pub async fn state(State(state): State<RpcState>) -> impl IntoResponse {
    let summary = state.node.reader().state_summary();
    Json(StateJson {
        height: summary.height,
        tip: summary.tip,
        accounts: summary.accounts,
        total_supply: summary.total_supply,
        digest: summary.digest.to_hex(),
    })
}

pub async fn network(State(state): State<RpcState>) -> impl IntoResponse {
    Json(
        state
            .node
            .network()
            .map(|network| network.network_view())
            .unwrap_or_else(|| NetworkJson {
                known: Vec::new(),
                node_id: state.node.node_id().to_string(),
                peers: Vec::new(),
            }),
    )
}

pub async fn metrics(State(state): State<RpcState>) -> impl IntoResponse {
    let node = &state.node;
    let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
    let metrics = node.metrics();
    metrics.set(
        "height",
        &[],
        i64::try_from(node.reader().tip().height.0).unwrap_or(i64::MAX),
    );
    metrics.set(
        "peers",
        &[],
        gauge(node.network().map_or(0, |network| network.n_peers())),
    );
    metrics.set("mempool_size", &[], gauge(node.mempool().len()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// `POST /v1/dev/mine`. Admin checks come first, so a non-admin client
/// learns nothing about the chain; on chains other than `dev` and
/// `regtest` the route answers 404 `not_found`, as if it did not exist.
pub async fn dev_mine(
    State(state): State<RpcState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<ApiJson<MineRequest>, ApiError>,
) -> Result<Json<MineResponse>, ApiError> {
    state.authorize_admin(&headers, client)?;
    if !state.node.spec().is_dev_chain() {
        return Err(ApiError::NotFound(
            "POST /v1/dev/mine exists only on the dev and regtest chains".into(),
        ));
    }
    let ApiJson(request) = body?;
    if request.blocks == 0 || request.blocks > MAX_MINE_BLOCKS {
        return Err(ApiError::Malformed(format!(
            "blocks must be between 1 and {MAX_MINE_BLOCKS}"
        )));
    }
    let hashes = state
        .node
        .mine_blocks(request.blocks)
        .await
        .map_err(|error| match error {
            crate::handle::MineError::ShuttingDown => ApiError::Unavailable(error.to_string()),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok(Json(MineResponse { hashes }))
}
