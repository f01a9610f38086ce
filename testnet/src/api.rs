//! `Api`: an async client for the node routes `testnet` uses, one value per
//! node URL. Every answer is parsed into the `ledger::json` types the node
//! serves, so the tool and the node cannot disagree about a field. It is
//! async (reqwest over tokio) rather than the wallet's blocking client
//! because `load` keeps hundreds of requests in flight over keep-alive
//! connections; cloning an `Api` shares its connection pool.

use ledger::json::{
    AccountJson, AddPeerRequest, BlockJson, ErrorBody, MineRequest, MineResponse, RawTxRequest,
    StateJson, StatusJson, SubmitTxResponse, TxJson,
};
use ledger::{ChainSpec, Transaction, TxId};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Why a request to a node did not give the expected answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{url}: node unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{url}: request timed out")]
    Timeout { url: String },
    #[error("{url}: rejected with {status} {code}: {message}")]
    Rejected {
        url: String,
        status: u16,
        code: String,
        message: String,
        /// The `Retry-After` the node sent (with 429 `busy`).
        retry_after: Option<std::time::Duration>,
    },
    #[error("{url}: unexpected answer: {detail}")]
    BadAnswer { url: String, detail: String },
}

impl ApiError {
    /// A short stable name for counting errors: the node's error code for
    /// rejections, else `unreachable`, `timeout` or `bad_answer`.
    pub fn code(&self) -> &str {
        match self {
            ApiError::Unreachable { .. } => "unreachable",
            ApiError::Timeout { .. } => "timeout",
            ApiError::Rejected { code, .. } => code,
            ApiError::BadAnswer { .. } => "bad_answer",
        }
    }

    fn from_reqwest(url: &str, error: reqwest::Error) -> ApiError {
        if error.is_timeout() {
            ApiError::Timeout {
                url: url.to_string(),
            }
        } else if error.is_decode() || error.is_body() {
            ApiError::BadAnswer {
                url: url.to_string(),
                detail: error.to_string(),
            }
        } else {
            ApiError::Unreachable {
                url: url.to_string(),
                detail: error.to_string(),
            }
        }
    }
}

/// How `submit_tx` encodes a transaction: the JSON tx object, or
/// `{"raw": hex}` (smaller and cheaper for the node to parse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxFormat {
    Json,
    Raw,
}

/// Adds `http://` when missing and drops trailing slashes, so
/// `127.0.0.1:8081/` and `http://127.0.0.1:8081` name the same node.
pub fn normalize_url(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}

/// Splits a comma-separated `--rpc-url` list, refusing empty entries.
pub fn parse_url_list(text: &str) -> Result<Vec<String>, String> {
    let urls: Vec<String> = text.split(',').map(str::trim).map(normalize_url).collect();
    if text.trim().is_empty() || text.split(',').any(|part| part.trim().is_empty()) {
        return Err(format!("empty entry in URL list {text:?}"));
    }
    Ok(urls)
}

/// One node's API.
#[derive(Clone, Debug)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    /// A client with keep-alive, Nagle off and a per-request timeout, shared
    /// by every `Api` built from it.
    pub fn client(request_timeout: Duration) -> Result<reqwest::Client, ApiError> {
        reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|error| ApiError::BadAnswer {
                url: String::new(),
                detail: format!("cannot build HTTP client: {error}"),
            })
    }

    /// A client for streams (`/v1/events`): no overall timeout, because the
    /// body never ends.
    pub fn stream_client() -> Result<reqwest::Client, ApiError> {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .map_err(|error| ApiError::BadAnswer {
                url: String::new(),
                detail: format!("cannot build HTTP client: {error}"),
            })
    }

    pub fn new(client: reqwest::Client, url: &str) -> Api {
        Api {
            client,
            base: normalize_url(url),
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    async fn read<T: DeserializeOwned>(
        &self,
        url: &str,
        response: reqwest::Response,
    ) -> Result<T, ApiError> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ApiError::from_reqwest(url, error))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|error| ApiError::BadAnswer {
                url: url.to_string(),
                detail: format!("{status}: {error}"),
            });
        }
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ApiError::Rejected {
                url: url.to_string(),
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
                retry_after,
            },
            Err(_) => ApiError::BadAnswer {
                url: url.to_string(),
                detail: format!(
                    "{status} without an error body: {}",
                    String::from_utf8_lossy(&bytes)
                ),
            },
        })
    }

    /// Sends `request` (made for `url`), naming `url` in the error.
    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        request
            .send()
            .await
            .map_err(|error| ApiError::from_reqwest(url, error))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let url = format!("{}{}", self.base, path);
        let response = self.send(&url, self.client.get(&url)).await?;
        self.read(&url, response).await
    }

    async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let url = format!("{}{}", self.base, path);
        let response = self.send(&url, self.client.post(&url).json(body)).await?;
        self.read(&url, response).await
    }

    /// `GET /ready`: true on 200, false on any other status; errors only
    /// when the node cannot be reached.
    pub async fn ready(&self) -> Result<bool, ApiError> {
        let url = format!("{}/ready", self.base);
        let response = self.send(&url, self.client.get(&url)).await?;
        Ok(response.status() == StatusCode::OK)
    }

    pub async fn status(&self) -> Result<StatusJson, ApiError> {
        self.get("/v1/status").await
    }

    pub async fn state(&self) -> Result<StateJson, ApiError> {
        self.get("/v1/state").await
    }

    pub async fn account(&self, address: &str) -> Result<AccountJson, ApiError> {
        self.get(&format!("/v1/accounts/{address}")).await
    }

    /// `GET /v1/blocks/{height or hash}`, with its transactions.
    pub async fn block(&self, id: &str) -> Result<BlockJson, ApiError> {
        self.get(&format!("/v1/blocks/{id}")).await
    }

    /// `GET /v1/blocks?from=H&limit=N`: best-chain blocks from height `from`.
    pub async fn blocks(&self, from: u64, limit: u32) -> Result<Vec<BlockJson>, ApiError> {
        self.get(&format!("/v1/blocks?from={from}&limit={limit}"))
            .await
    }

    /// `POST /v1/txs`; answers the txid the node computed.
    pub async fn submit_tx(
        &self,
        tx: &Transaction,
        spec: &ChainSpec,
        format: TxFormat,
    ) -> Result<TxId, ApiError> {
        let answer: SubmitTxResponse = match format {
            TxFormat::Json => self.post("/v1/txs", &TxJson::from_tx(tx, spec)).await?,
            TxFormat::Raw => {
                let raw = RawTxRequest {
                    raw: hex::encode(ledger::encoding::encode(tx)),
                };
                self.post("/v1/txs", &raw).await?
            }
        };
        Ok(answer.txid)
    }

    /// `GET /v1/txs/{txid}`: the `status` word the node gives (`pending`,
    /// `confirmed`, or one a newer node adds), `None` when it does not know
    /// the tx. Read as loose JSON so a new status word is no parse error.
    pub async fn tx_status(&self, txid: &TxId) -> Result<Option<String>, ApiError> {
        match self
            .get::<serde_json::Value>(&format!("/v1/txs/{txid}"))
            .await
        {
            Ok(answer) => Ok(Some(
                answer["status"].as_str().unwrap_or_default().to_string(),
            )),
            Err(ApiError::Rejected { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `POST /v1/dev/mine` (loopback or admin token only).
    pub async fn mine(&self, blocks: u32) -> Result<MineResponse, ApiError> {
        self.post("/v1/dev/mine", &MineRequest { blocks }).await
    }

    /// `POST /v1/peers`: asks the node to dial `addr`.
    pub async fn add_peer(&self, addr: &str) -> Result<(), ApiError> {
        let url = format!("{}/v1/peers", self.base);
        let response = self
            .client
            .post(&url)
            .json(&AddPeerRequest {
                addr: addr.to_string(),
            })
            .send()
            .await
            .map_err(|error| ApiError::from_reqwest(&url, error))?;
        if response.status().is_success() {
            return Ok(());
        }
        self.read::<serde_json::Value>(&url, response)
            .await
            .map(|_| ())
    }

    /// Opens `GET /v1/events?types=...` for the event names in `types`
    /// (`"block,reorg"`); read it with `Response::chunk` and an
    /// `sse::SseParser`.
    pub async fn events(
        &self,
        stream_client: &reqwest::Client,
        types: &str,
    ) -> Result<reqwest::Response, ApiError> {
        let url = format!("{}/v1/events?types={types}", self.base);
        let response = stream_client
            .get(&url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|error| ApiError::from_reqwest(&url, error))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(ApiError::BadAnswer {
                url,
                detail: format!("events stream answered {}", response.status()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized_and_lists_split() {
        assert_eq!(normalize_url("127.0.0.1:8081/"), "http://127.0.0.1:8081");
        assert_eq!(
            normalize_url("https://node.example:1"),
            "https://node.example:1"
        );
        assert_eq!(
            parse_url_list("http://a:1, b:2").unwrap(),
            vec!["http://a:1".to_string(), "http://b:2".to_string()]
        );
        assert!(parse_url_list("a:1,,b:2").is_err());
        assert!(parse_url_list("").is_err());
    }

    #[test]
    fn served_blocks_parse_with_their_txids() {
        use ledger::chainspec::{dev_accounts, dev_secret_key};
        let spec = ChainSpec::builtin("regtest").unwrap();
        let tx = Transaction::new_signed(
            &dev_secret_key(0),
            &spec.genesis_hash(),
            dev_accounts()[1].address,
            ledger::Amount::from_base_units(5),
            ledger::Amount::from_base_units(1_000),
            0,
            "memo".into(),
        );
        let mut block = spec.genesis_block();
        block.txs.push(tx.clone());
        // What `block` and `blocks` read: the node's own serialization.
        let served = serde_json::to_string(&BlockJson::from_block(&block, &spec, true)).unwrap();
        let parsed: BlockJson = serde_json::from_str(&served).unwrap();
        let txs = parsed.txs.unwrap();
        assert_eq!(txs[0].txid, Some(tx.txid()));
        assert_eq!(txs[0].to_tx(&spec).unwrap(), tx);
        // The event form (no txs) parses too.
        let event = serde_json::to_string(&BlockJson::from_block(&block, &spec, false)).unwrap();
        assert!(serde_json::from_str::<BlockJson>(&event)
            .unwrap()
            .txs
            .is_none());
    }

    #[test]
    fn error_codes_name_the_cause() {
        let rejected = ApiError::Rejected {
            url: "u".into(),
            status: 409,
            code: "nonce_too_low".into(),
            message: "m".into(),
            retry_after: None,
        };
        assert_eq!(rejected.code(), "nonce_too_low");
        assert_eq!(ApiError::Timeout { url: "u".into() }.code(), "timeout");
    }
}
