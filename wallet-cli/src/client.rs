//! `Client`: a small blocking, typed client for every route of the node's
//! HTTP API, using the `ledger::json` shapes the node serves, so the wallet
//! and the testnet tools can never drift from the server. Its errors keep
//! apart the three things a caller reacts to differently: the node could not
//! be reached (or did not answer in time), the node answered with an API
//! error (and its stable `code`), and the node answered something we could
//! not understand.

use ledger::json::{
    AccountJson, AddPeerRequest, BlockJson, ErrorBody, MempoolJson, MineRequest, MineResponse,
    PeerJson, RawTxRequest, StateJson, StatusJson, SubmitTxResponse, TxJson, TxLookupJson,
};
use ledger::{Transaction, TxId};
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// The default node URL (SPEC: `--rpc-url` / `LEDGER_RPC_URL`).
pub const DEFAULT_RPC_URL: &str = "http://127.0.0.1:8080";
/// How long one request may take by default, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer body we read; the biggest real answer (100 full
/// blocks) stays well below it.
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("invalid RPC URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the node at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the node at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The node answered with an error body; `code` is its stable code.
    #[error("the node refused the request: {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from the node: {0}")]
    BadResponse(String),
}

impl ClientError {
    /// The node's error code, when the node answered with one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True for "not reachable" and "no answer in time".
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Timeout { .. }
        )
    }
}

/// One server-sent event of `GET /v1/events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerEvent {
    /// `block`, `tx` or `reorg` (or `message` when the server named none).
    pub event: String,
    /// The JSON text of the event.
    pub data: String,
}

/// Reads `GET /v1/events` one event at a time; ends when the node closes
/// the stream.
pub struct EventStream {
    reader: BufReader<Response>,
}

impl Iterator for EventStream {
    type Item = Result<ServerEvent, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut event = String::new();
        let mut data = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(error) => {
                    return Some(Err(ClientError::BadResponse(format!(
                        "event stream: {error}"
                    ))))
                }
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_empty() && event.is_empty() {
                    continue; // keep-alive or a comment-only block
                }
                let event = if event.is_empty() {
                    "message".to_string()
                } else {
                    event
                };
                return Some(Ok(ServerEvent { event, data }));
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = value.to_string(),
                "data" => {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                _ => {}
            }
        }
    }
}

/// A blocking client for one node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    base_url: String,
    timeout: Duration,
    admin_token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client for the node at `base_url` (e.g. `http://127.0.0.1:8080`),
    /// giving every request at most `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Client, ClientError> {
        let trimmed = base_url.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&trimmed).map_err(|error| ClientError::BadUrl {
            url: base_url.to_string(),
            reason: error.to_string(),
        })?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(ClientError::BadUrl {
                url: base_url.to_string(),
                reason: "the scheme must be http".into(),
            });
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|error| ClientError::BadUrl {
                url: base_url.to_string(),
                reason: error.to_string(),
            })?;
        Ok(Client {
            base_url: trimmed,
            timeout,
            admin_token: None,
            http,
        })
    }

    /// Sends `Authorization: Bearer <token>` on admin routes.
    pub fn with_admin_token(mut self, token: Option<String>) -> Client {
        self.admin_token = token;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    fn admin(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.admin_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        request.send().map_err(|error| self.transport_error(error))
    }

    fn transport_error(&self, error: reqwest::Error) -> ClientError {
        if error.is_timeout() {
            ClientError::Timeout {
                url: self.base_url.clone(),
                timeout: self.timeout,
            }
        } else if error.is_connect() || error.is_request() {
            ClientError::Unreachable {
                url: self.base_url.clone(),
                detail: root_cause(&error),
            }
        } else {
            ClientError::BadResponse(root_cause(&error))
        }
    }

    /// Reads the body (bounded), and turns a non-success status into
    /// `ClientError::Api` with the node's code.
    fn body(&self, response: Response) -> Result<(StatusCode, Vec<u8>), ClientError> {
        use std::io::Read;
        let status = response.status();
        let mut bytes = Vec::new();
        response
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|error| {
                let timed_out = error.kind() == std::io::ErrorKind::TimedOut
                    || error
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                        .is_some_and(reqwest::Error::is_timeout);
                if timed_out {
                    ClientError::Timeout {
                        url: self.base_url.clone(),
                        timeout: self.timeout,
                    }
                } else {
                    ClientError::BadResponse(format!("reading the answer: {error}"))
                }
            })?;
        if status.is_success() {
            return Ok((status, bytes));
        }
        Err(api_error(status, &bytes))
    }

    fn json<T: DeserializeOwned>(&self, response: Response) -> Result<T, ClientError> {
        let (_, bytes) = self.body(response)?;
        serde_json::from_slice(&bytes).map_err(|error| ClientError::BadResponse(format!("{error}")))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.send(self.http.get(self.url(path)))?;
        self.json(response)
    }

    /// `GET /health`: Ok while the process runs.
    pub fn health(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/health")
    }

    /// `GET /ready`: true once storage is open and P2P listens, false on 503.
    pub fn ready(&self) -> Result<bool, ClientError> {
        let response = self.send(self.http.get(self.url("/ready")))?;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            return Ok(false);
        }
        self.body(response).map(|_| true)
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<StatusJson, ClientError> {
        self.get("/v1/status")
    }

    /// `GET /v1/blocks?from=H&limit=N` (the node caps `limit` at 100).
    pub fn blocks(&self, from: u64, limit: u32) -> Result<Vec<BlockJson>, ClientError> {
        let value: Value = self.get(&format!("/v1/blocks?from={from}&limit={limit}"))?;
        decode_array(value, decode_block)
    }

    /// `GET /v1/blocks/tip`.
    pub fn tip_block(&self) -> Result<BlockJson, ClientError> {
        decode_block(self.get("/v1/blocks/tip")?)
    }

    /// `GET /v1/blocks/{id}`, `id` a height or a block hash.
    pub fn block(&self, id: &str) -> Result<BlockJson, ClientError> {
        decode_block(self.get(&format!("/v1/blocks/{}", path_segment(id)))?)
    }

    /// `POST /v1/txs` with a tx object.
    pub fn submit_tx(&self, tx: &TxJson) -> Result<TxId, ClientError> {
        let response = self.send(self.http.post(self.url("/v1/txs")).json(tx))?;
        self.json::<SubmitTxResponse>(response)
            .map(|answer| answer.txid)
    }

    /// `POST /v1/txs` with `{"raw": hex}`.
    pub fn submit_raw(&self, raw_hex: &str) -> Result<TxId, ClientError> {
        let body = RawTxRequest {
            raw: raw_hex.to_string(),
        };
        let response = self.send(self.http.post(self.url("/v1/txs")).json(&body))?;
        self.json::<SubmitTxResponse>(response)
            .map(|answer| answer.txid)
    }

    /// Submits a signed transaction in its canonical bytes.
    pub fn submit_transaction(&self, tx: &Transaction) -> Result<TxId, ClientError> {
        self.submit_raw(&hex::encode(ledger::encoding::encode(tx)))
    }

    /// `GET /v1/txs/{txid}`; `not_found` when the node does not know it.
    pub fn tx(&self, txid: &TxId) -> Result<TxLookupJson, ClientError> {
        decode_lookup(self.get(&format!("/v1/txs/{txid}"))?)
    }

    /// `GET /v1/accounts/{address}`.
    pub fn account(&self, address: &str) -> Result<AccountJson, ClientError> {
        self.get(&format!("/v1/accounts/{}", path_segment(address)))
    }

    /// `GET /v1/accounts/{address}/txs?limit=N`, newest first, pending included.
    pub fn account_txs(&self, address: &str, limit: u32) -> Result<Vec<TxLookupJson>, ClientError> {
        let value: Value = self.get(&format!(
            "/v1/accounts/{}/txs?limit={limit}",
            path_segment(address)
        ))?;
        decode_array(value, decode_lookup)
    }

    /// `GET /v1/mempool`.
    pub fn mempool(&self) -> Result<MempoolJson, ClientError> {
        self.get("/v1/mempool")
    }

    /// `GET /v1/peers`.
    pub fn peers(&self) -> Result<Vec<PeerJson>, ClientError> {
        self.get("/v1/peers")
    }

    /// `POST /v1/peers` (admin): asks the node to dial `addr`.
    pub fn add_peer(&self, addr: &str) -> Result<(), ClientError> {
        let body = AddPeerRequest {
            addr: addr.to_string(),
        };
        let request = self.admin(self.http.post(self.url("/v1/peers")).json(&body));
        let response = self.send(request)?;
        self.body(response).map(|_| ())
    }

    /// `GET /v1/state`.
    pub fn state(&self) -> Result<StateJson, ClientError> {
        self.get("/v1/state")
    }

    /// `GET /v1/network`: the node's view of the P2P graph.
    pub fn network(&self) -> Result<ledger::json::NetworkJson, ClientError> {
        self.get("/v1/network")
    }

    /// `GET /metrics`: Prometheus text.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let response = self.send(self.http.get(self.url("/metrics")))?;
        let (_, bytes) = self.body(response)?;
        String::from_utf8(bytes)
            .map_err(|_| ClientError::BadResponse("metrics are not UTF-8".into()))
    }

    /// `POST /v1/dev/mine` (admin, dev chains only): mines `blocks` blocks now.
    pub fn mine(&self, blocks: u32) -> Result<MineResponse, ClientError> {
        let request = self.admin(
            self.http
                .post(self.url("/v1/dev/mine"))
                .json(&MineRequest { blocks }),
        );
        let response = self.send(request)?;
        self.json(response)
    }

    /// `GET /v1/events`: a stream of server-sent events with no overall
    /// deadline (only connecting is bounded by the client's timeout).
    pub fn events(&self) -> Result<EventStream, ClientError> {
        let streaming = reqwest::blocking::Client::builder()
            .connect_timeout(self.timeout)
            .timeout(None)
            .build()
            .map_err(|error| ClientError::BadResponse(error.to_string()))?;
        let response = streaming
            .get(self.url("/v1/events"))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .map_err(|error| self.transport_error(error))?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(match self.body(response) {
                Err(error) => error,
                Ok(_) => ClientError::BadResponse(format!("event stream answered {status}")),
            });
        }
        Ok(EventStream {
            reader: BufReader::new(response),
        })
    }
}

// Decoding answers that contain tx objects. `TxJson` refuses unknown
// fields and skips `txid` and `from` when deserializing (they are derived
// values the node ignores on input), so serde alone rejects the node's own
// output. These helpers take the two fields out of each tx object, let
// serde read the rest, and put them back, so callers see exactly what the
// node sent.

/// Removes and returns `txid` and `from` from one tx object.
fn take_derived(tx: &mut Value) -> Result<(Option<TxId>, Option<String>), ClientError> {
    let Some(object) = tx.as_object_mut() else {
        return Err(ClientError::BadResponse(
            "a transaction is not a JSON object".into(),
        ));
    };
    let txid = match object.remove("txid") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            serde_json::from_value::<TxId>(value)
                .map_err(|error| ClientError::BadResponse(format!("bad txid: {error}")))?,
        ),
    };
    let from = match object.remove("from") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(_) => return Err(ClientError::BadResponse("`from` is not a string".into())),
    };
    Ok((txid, from))
}

fn put_back(tx: &mut TxJson, (txid, from): (Option<TxId>, Option<String>)) {
    tx.txid = txid;
    tx.from = from;
}

fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(|error| ClientError::BadResponse(error.to_string()))
}

/// A tx object as the node serves it.
pub fn decode_tx(mut value: Value) -> Result<TxJson, ClientError> {
    let derived = take_derived(&mut value)?;
    let mut tx: TxJson = from_value(value)?;
    put_back(&mut tx, derived);
    Ok(tx)
}

/// A `GET /v1/txs/{txid}` answer or one history entry.
pub fn decode_lookup(mut value: Value) -> Result<TxLookupJson, ClientError> {
    let derived = match value.get_mut("tx") {
        Some(tx) => take_derived(tx)?,
        None => return Err(ClientError::BadResponse("missing field `tx`".into())),
    };
    let mut lookup: TxLookupJson = from_value(value)?;
    put_back(&mut lookup.tx, derived);
    Ok(lookup)
}

/// A block object, with or without `txs`.
pub fn decode_block(mut value: Value) -> Result<BlockJson, ClientError> {
    let mut derived = Vec::new();
    if let Some(Value::Array(txs)) = value.get_mut("txs") {
        for tx in txs.iter_mut() {
            derived.push(take_derived(tx)?);
        }
    }
    let mut block: BlockJson = from_value(value)?;
    if let Some(txs) = block.txs.as_mut() {
        for (tx, fields) in txs.iter_mut().zip(derived) {
            put_back(tx, fields);
        }
    }
    Ok(block)
}

fn decode_array<T>(
    value: Value,
    decode: fn(Value) -> Result<T, ClientError>,
) -> Result<Vec<T>, ClientError> {
    match value {
        Value::Array(items) => items.into_iter().map(decode).collect(),
        _ => Err(ClientError::BadResponse("expected a JSON array".into())),
    }
}

/// Builds `ClientError::Api` from an error answer; a body that is not the
/// API's error shape still yields a code derived from the status.
fn api_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => {
            let code = match status {
                StatusCode::NOT_FOUND => "not_found".to_string(),
                StatusCode::FORBIDDEN => "forbidden".to_string(),
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large".to_string(),
                other => format!("http_{}", other.as_u16()),
            };
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                .trim()
                .to_string();
            ClientError::Api {
                status: status.as_u16(),
                code,
                message: if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_string()
                } else {
                    text
                },
            }
        }
    }
}

/// Keeps user text from changing the path: only characters that can appear
/// in heights, hex hashes and bech32 addresses pass unescaped.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// The innermost error message, which is where "connection refused" lives.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_keep_the_node_code() {
        let body = br#"{"error":{"code":"insufficient_funds","message":"balance 5 < 10"}}"#;
        let error = api_error(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(error.api_code(), Some("insufficient_funds"));
        let bare = api_error(StatusCode::NOT_FOUND, b"");
        assert_eq!(bare.api_code(), Some("not_found"));
        let odd = api_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(odd.api_code(), Some("http_502"));
    }

    #[test]
    fn tx_objects_keep_their_derived_fields() {
        use ledger::chainspec::{dev_accounts, dev_secret_key};
        use ledger::{Amount, ChainSpec, Transaction};
        let spec = ChainSpec::builtin("regtest").unwrap();
        let tx = Transaction::new_signed(
            &dev_secret_key(0),
            &spec.genesis_hash(),
            dev_accounts()[1].address,
            Amount::from_base_units(5),
            Amount::from_base_units(1000),
            0,
            "memo".into(),
        );
        let tx_json = TxJson::from_tx(&tx, &spec);
        let lookup = TxLookupJson {
            tx: tx_json.clone(),
            status: ledger::json::TxStatus::Pending,
            block_hash: None,
            block_height: None,
            confirmations: 0,
            reason: None,
        };
        let served = serde_json::to_value(&lookup).unwrap();
        assert_eq!(decode_lookup(served.clone()).unwrap(), lookup);
        assert_eq!(
            decode_array(Value::Array(vec![served]), decode_lookup).unwrap(),
            vec![lookup]
        );
        assert_eq!(
            decode_tx(serde_json::to_value(&tx_json).unwrap()).unwrap(),
            tx_json
        );
        let block = spec.genesis_block();
        let mut block_json = ledger::json::BlockJson::from_block(&block, &spec, true);
        block_json.txs = Some(vec![tx_json]);
        assert_eq!(
            decode_block(serde_json::to_value(&block_json).unwrap()).unwrap(),
            block_json
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("dev1qabc"), "dev1qabc");
        assert_eq!(path_segment("../x?y"), "%2E%2E%2Fx%3Fy");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(
            Client::new("ftp://x", DEFAULT_TIMEOUT),
            Err(ClientError::BadUrl { .. })
        ));
        assert!(Client::new("not a url", DEFAULT_TIMEOUT).is_err());
        assert!(Client::new("http://127.0.0.1:1/", DEFAULT_TIMEOUT).is_ok());
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        // Bind then drop a listener: the port is free and nothing answers.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .unwrap();
        let client =
            Client::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
        let error = client.status().unwrap_err();
        assert!(error.is_unreachable(), "{error:?}");
    }
}
