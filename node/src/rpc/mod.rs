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
//! Cross-cutting rules live here: a 256 KiB body cap (a body declared
//! larger is read off the socket, up to 4 MiB, and refused with a 413 the
//! client can actually see), a request timeout on
//! every route except the event stream and `POST /v1/dev/mine`, SPEC-shaped
//! 404s for unknown routes and 405s for wrong methods, and admin routes
//! that answer loopback clients only, or, with `--rpc-admin-token`, only
//! clients that send `Authorization: Bearer <token>`. No CORS layer is
//! installed, on purpose: browsers may only call the API from pages the
//! node serves itself (the explorer), so other sites cannot drive a
//! node's admin routes from a user's browser.

mod error;
mod events;
mod explorer;
mod extract;
mod openapi;
mod routes;

pub use error::ApiError;

use crate::config::NodeConfig;
use crate::handle::NodeHandle;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, Uri};
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

/// What every handler gets: the node plus the RPC's own settings.
#[derive(Clone)]
pub struct RpcState {
    pub node: NodeHandle,
    admin_token: Option<Arc<str>>,
    request_timeout: Duration,
}

impl RpcState {
    pub fn new(node: NodeHandle, config: &NodeConfig) -> RpcState {
        RpcState {
            node,
            admin_token: config.rpc_admin_token.as_deref().map(Arc::from),
            request_timeout: config.request_timeout,
        }
    }

    /// Whether the client may use an admin route (`POST /v1/peers`,
    /// `POST /v1/dev/mine`). Without a token: loopback clients only. With a
    /// token: exactly the clients that present it, loopback included, so a
    /// token can never be bypassed through a local proxy.
    pub(crate) fn authorize_admin(
        &self,
        headers: &HeaderMap,
        client: Option<SocketAddr>,
    ) -> Result<(), ApiError> {
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
    let timed = timed
        .router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            enforce_timeout,
        ));
    timed
        .merge(untimed.router)
        .merge(explorer::routes::<RpcState>())
        .fallback(unknown_route)
        // Must come after every route: it applies to the routes present.
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn(refuse_oversized))
        .with_state(state)
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

async fn enforce_timeout(State(state): State<RpcState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(state.request_timeout.as_secs()).into_response(),
    }
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
