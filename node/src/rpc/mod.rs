//! The HTTP JSON API of SPEC.md. `router(state)` is the whole app as a
//! value, so tests drive it with `oneshot` and no socket; `Node::start`
//! serves it with `axum::serve`. Map of the module:
//! - `error`: `ApiError`, the one place errors become statuses and codes;
//! - `extract`: body, query and client-address extractors that reject in
//!   SPEC's error shape;
//! - `routes`: the handlers for chain, transaction, account and admin
//!   routes; `events`: the SSE stream; `openapi`: `GET /openapi.json`;
//! - `explorer` (the explorer engineer's): the static explorer page.
//!
//! - `guard`: the `Host` check on every route, the `Origin` and
//!   `Content-Type` checks of admin routes, and the optional CORS layer.
//!
//! Cross-cutting rules live here: a 256 KiB body cap (a body declared
//! larger is read off the socket, up to 4 MiB, and refused with a 413 the
//! client can actually see); on every route except the event stream and
//! `POST /v1/dev/mine`, tower's timeout (10 s, then 503 `timeout`) around
//! tower's global concurrency limit (`MAX_CONCURRENT_REQUESTS` handlers at
//! once; more wait their turn, within the timeout); reads that scan or
//! decode run on blocking threads, at most `heavy_read_permits()` at a
//! time (`RpcState::blocking_json`), so they never occupy the async
//! workers that P2P shares; SPEC-shaped 404s for unknown routes and 405s
//! for wrong methods; and admin routes that answer loopback clients only,
//! or, with `--rpc-admin-token`, only clients that send
//! `Authorization: Bearer <token>`. Without `--rpc-cors-origin` no CORS
//! headers are sent, so browsers let only the pages the node serves itself
//! (the explorer) read its answers.

mod error;
mod events;
mod explorer;
mod extract;
mod guard;
mod openapi;
mod routes;

pub use error::ApiError;
pub use guard::{normalize_host, AllowedHosts};

use crate::config::NodeConfig;
use crate::handle::NodeHandle;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower::ServiceExt as _;

/// Largest request body accepted.
pub const BODY_LIMIT_BYTES: usize = 256 * 1024;

/// Most requests handled at once (SSE streams, `POST /v1/dev/mine` and
/// the explorer's files aside); more wait for a turn within their timeout.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;

/// How many scanning or decoding reads run at once on blocking threads:
/// half the cores (at least one), so P2P, the chain writer and the
/// verifiers keep the rest.
pub fn heavy_read_permits() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

/// What every handler gets: the node plus the RPC's own settings.
#[derive(Clone)]
pub struct RpcState {
    pub node: NodeHandle,
    admin_token: Option<Arc<str>>,
    request_timeout: Duration,
    guard: Arc<guard::GuardConfig>,
    heavy_reads: Arc<tokio::sync::Semaphore>,
}

impl RpcState {
    pub fn new(node: NodeHandle, config: &NodeConfig) -> RpcState {
        let allowed_hosts = AllowedHosts::new(
            config.rpc_addr,
            config.rpc_addr_name.as_deref(),
            &config.rpc_allowed_hosts,
        );
        let cors_origins = config
            .rpc_cors_origins
            .iter()
            .filter_map(|origin| HeaderValue::from_str(origin).ok())
            .collect();
        RpcState {
            node,
            admin_token: config.rpc_admin_token.as_deref().map(Arc::from),
            request_timeout: config.request_timeout,
            guard: Arc::new(guard::GuardConfig {
                allowed_hosts,
                cors_origins,
            }),
            heavy_reads: Arc::new(tokio::sync::Semaphore::new(heavy_read_permits())),
        }
    }

    /// The `Host` names this RPC answers to, for the start-up log.
    pub fn allowed_hosts(&self) -> &AllowedHosts {
        &self.guard.allowed_hosts
    }

    /// Runs a read that scans or decodes (blocks, histories, tx lookups)
    /// on a blocking thread, once one of the `heavy_read_permits()` is
    /// free, and serializes its answer there too: a 100-block page is
    /// megabytes of JSON. The permit goes with the work, so a request that
    /// times out still holds it until its thread is done.
    pub(crate) async fn blocking_json<T, F>(&self, read: F) -> Result<Response, ApiError>
    where
        T: serde::Serialize,
        F: FnOnce(&NodeHandle) -> Result<T, ApiError> + Send + 'static,
    {
        let permit = self
            .heavy_reads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Unavailable("the node is shutting down".into()))?;
        let node = self.node.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let value = read(&node)?;
            serde_json::to_vec(&value).map_err(|error| ApiError::Internal(error.to_string()))
        })
        .await
        .map_err(|_| ApiError::Internal("a read failed on its thread".into()))??;
        Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response())
    }

    /// Whether the request may use an admin route (`POST /v1/peers`,
    /// `POST /v1/dev/mine`). First what a web page could forge
    /// (`guard::check_admin_request`: a foreign `Origin`, a type other
    /// than JSON), then the caller. Without a token: loopback clients
    /// only. With a token: exactly the clients that present it, loopback
    /// included, so a token can never be bypassed through a local proxy.
    pub(crate) fn authorize_admin(
        &self,
        headers: &HeaderMap,
        client: Option<SocketAddr>,
    ) -> Result<(), ApiError> {
        guard::check_admin_request(headers)?;
        match &self.admin_token {
            Some(token) => {
                let presented = headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .unwrap_or("");
                if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(
                        "admin routes need the header Authorization: Bearer <token>".into(),
                    ))
                }
            }
            None if client.is_some_and(|addr| addr.ip().is_loopback()) => Ok(()),
            None => Err(ApiError::Forbidden(
                "admin routes answer loopback clients only (start the node with --rpc-admin-token to allow others)".into(),
            )),
        }
    }
}

/// Compares without an early exit, so response timing does not reveal how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Builds the router while recording each (method, path), so a test can
/// prove the router and `openapi.json` list the same routes.
struct RouteTable {
    router: Router<RpcState>,
    listed: Vec<(&'static str, &'static str)>,
}

impl RouteTable {
    fn new() -> RouteTable {
        RouteTable {
            router: Router::new(),
            listed: Vec::new(),
        }
    }

    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        handler: MethodRouter<RpcState>,
    ) -> RouteTable {
        self.listed.push((method, path));
        self.router = self.router.route(path, handler);
        self
    }
}

/// Every route except the explorer's, with a flag for routes exempt from
/// the request timeout (long-lived or long-running by design).
fn route_table() -> (RouteTable, RouteTable) {
    let timed = RouteTable::new()
        .add("GET", "/health", get(routes::health))
        .add("GET", "/ready", get(routes::ready))
        .add("GET", "/v1/status", get(routes::status))
        .add("GET", "/v1/blocks", get(routes::blocks))
        .add("GET", "/v1/blocks/tip", get(routes::tip_block))
        .add("GET", "/v1/blocks/{id}", get(routes::block))
        .add("POST", "/v1/txs", post(routes::submit_tx))
        .add("GET", "/v1/txs/{txid}", get(routes::tx))
        .add("GET", "/v1/accounts/{address}", get(routes::account))
        .add(
            "GET",
            "/v1/accounts/{address}/txs",
            get(routes::account_txs),
        )
        .add("GET", "/v1/mempool", get(routes::mempool))
        .add(
            "GET",
            "/v1/peers",
            get(routes::peers).post(routes::add_peer),
        )
        .add("GET", "/v1/state", get(routes::state))
        .add("GET", "/v1/network", get(routes::network))
        .add("GET", "/metrics", get(routes::metrics))
        .add("GET", "/openapi.json", get(openapi::serve));
    let mut timed = timed;
    // `/v1/peers` has two methods on one path; list the second one too.
    timed.listed.push(("POST", "/v1/peers"));
    let untimed = RouteTable::new()
        .add("GET", "/v1/events", get(events::stream))
        .add("POST", "/v1/dev/mine", post(routes::dev_mine));
    (timed, untimed)
}

/// The explorer's routes, served by `explorer::routes`.
#[cfg(test)]
const EXPLORER_ROUTES: [(&str, &str); 3] = [
    ("GET", "/"),
    ("GET", "/explorer/app.css"),
    ("GET", "/explorer/app.js"),
];

/// Every (method, path) the router serves, in OpenAPI path syntax.
#[cfg(test)]
pub(crate) fn listed_routes() -> Vec<(&'static str, &'static str)> {
    let (timed, untimed) = route_table();
    let mut all = timed.listed;
    all.extend(untimed.listed);
    all.extend(EXPLORER_ROUTES);
    all
}

/// The whole API.
pub fn router(state: RpcState) -> Router {
    let (timed, untimed) = route_table();
    // Outermost first: errors answered, then the timeout (so waiting for a
    // turn counts), then one limit shared by every timed route.
    let timed = timed.router.route_layer(
        tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(timed_out(
                state.request_timeout.as_secs(),
            )))
            .timeout(state.request_timeout)
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                MAX_CONCURRENT_REQUESTS,
            )),
    );
    let app = timed
        .merge(untimed.router)
        .merge(explorer::routes::<RpcState>())
        .fallback(unknown_route)
        // Must come after every route: it applies to the routes present.
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn(refuse_oversized));
    let app = match guard::cors_layer(&state.guard) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    // Outermost: a request for a foreign Host is refused before anything
    // else looks at it (CORS preflights included).
    app.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        guard::check_host,
    ))
    .with_state(state)
}

/// Answers a failure of the timed routes' tower layers: the timeout as
/// SPEC's 503 `timeout` (the limit and the routes themselves cannot fail).
fn timed_out(seconds: u64) -> impl Fn(tower::BoxError) -> std::future::Ready<ApiError> + Clone {
    move |error: tower::BoxError| {
        std::future::ready(if error.is::<tower::timeout::error::Elapsed>() {
            ApiError::Timeout(seconds)
        } else {
            ApiError::Internal(error.to_string())
        })
    }
}

/// Most of an oversized body that is read and thrown away before the 413
/// is sent.
const OVERSIZED_DRAIN_BYTES: usize = 16 * BODY_LIMIT_BYTES;

/// How long an oversized body may take to be read and thrown away.
const OVERSIZED_DRAIN_TIME: Duration = Duration::from_secs(2);

/// Refuses a body whose `Content-Length` is over the cap before any route
/// runs. A server that answers and closes while the client is still
/// sending makes the kernel reset the connection, and most clients then
/// report a broken pipe instead of the 413. So, as web servers do, the
/// rest of the body (up to `OVERSIZED_DRAIN_BYTES`, for at most 2 s) is
/// read and discarded chunk by chunk, never held, before the answer. A
/// client that sent `Expect: 100-continue` is answered at once: it waits
/// for the verdict and sends nothing.
async fn refuse_oversized(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&length| length > BODY_LIMIT_BYTES as u64) else {
        return next.run(request).await;
    };
    let expects_continue = request
        .headers()
        .get(axum::http::header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    tracing::debug!(
        path = request.uri().path(),
        declared,
        "refusing an oversized request body"
    );
    if !expects_continue {
        let mut body = request.into_body().into_data_stream();
        let drain = async {
            let mut read = 0usize;
            while let Some(Ok(chunk)) = futures::StreamExt::next(&mut body).await {
                read = read.saturating_add(chunk.len());
                if read > OVERSIZED_DRAIN_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(OVERSIZED_DRAIN_TIME, drain).await;
    }
    ApiError::PayloadTooLarge {
        limit: BODY_LIMIT_BYTES,
    }
    .into_response()
}

/// The app served from the moment the RPC socket is bound: until the node
/// is assembled, `/health` answers 200, `/ready` and everything else 503
/// `not_ready`; afterwards each request goes to the router placed in the
/// returned slot. So `/ready` says 503 while storage opens instead of
/// refusing connections.
pub fn late_app() -> (Router, Arc<OnceLock<Router>>) {
    let slot: Arc<OnceLock<Router>> = Arc::new(OnceLock::new());
    let forward = slot.clone();
    let app = Router::new().fallback_service(tower::service_fn(move |request: Request| {
        let router = forward.get().cloned();
        async move {
            match router {
                Some(router) => router.oneshot(request).await,
                None if request.uri().path() == "/health" => {
                    Ok(axum::Json(serde_json::json!({ "status": "ok" })).into_response())
                }
                None => Ok(
                    ApiError::NotReady("storage is not open or P2P does not listen yet")
                        .into_response(),
                ),
            }
        }
    }));
    (app, slot)
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn wrong_method(method: Method) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
    }
}

#[cfg(test)]
mod tests;
