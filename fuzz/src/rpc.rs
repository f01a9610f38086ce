//! The HTTP API through the real router of a real node (regtest, sled in a
//! temp dir, started once per process, three blocks mined): any method,
//! path segment, query string, headers and body on every route. The answer
//! must never be a 5xx, and no handler may panic; a body that is not a
//! stream is read in full.

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, Uri};
use axum::Router;
use ledger::ChainSpec;
use node::rpc::{router, RpcState};
use node::{Node, NodeConfig, RunningNode};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tower::ServiceExt;

/// Route templates; `{}` takes the fuzzed path segment.
const ROUTES: &[&str] = &[
    "/health",
    "/ready",
    "/v1/status",
    "/v1/blocks",
    "/v1/blocks/tip",
    "/v1/blocks/{}",
    "/v1/txs",
    "/v1/txs/{}",
    "/v1/accounts/{}",
    "/v1/accounts/{}/txs",
    "/v1/mempool",
    "/v1/peers",
    "/v1/state",
    "/v1/network",
    "/metrics",
    "/openapi.json",
    "/v1/events",
    "/v1/dev/mine",
    "/",
    "/explorer/app.js",
    "/{}",
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: Router,
    /// A client that is not on loopback: admin routes refuse it, so the
    /// fuzzer never makes the node dial or mine.
    foreign_app: Router,
    _node: RunningNode,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = ChainSpec::builtin("regtest").expect("built-in");
        let config = NodeConfig::for_tests(spec, dir.path());
        let node = runtime
            .block_on(Node::start(config.clone()))
            .expect("node starts");
        let state = RpcState::new(node.handle.clone(), &config);
        let app = router(state.clone())
            .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
        let foreign_app =
            router(state).layer(MockConnectInfo(SocketAddr::from(([10, 1, 2, 3], 40_000))));
        runtime.block_on(async {
            let request = Request::post("/v1/dev/mine")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"blocks":3}"#))
                .expect("request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            assert!(response.status().is_success(), "mining the fixture");
        });
        Fixture {
            runtime,
            app,
            foreign_app,
            _node: node,
            _dir: dir,
        }
    })
}

#[derive(Arbitrary, Debug)]
struct Choice {
    route: u8,
    method: u8,
    segment: String,
    query: Option<String>,
    host: u8,
    content_type: u8,
    body: BodyChoice,
}

#[derive(Arbitrary, Debug)]
enum BodyChoice {
    None,
    Raw(Vec<u8>),
    Tx {
        from: String,
        to: String,
        amount: String,
        fee: String,
        nonce: u64,
        memo: String,
        signature: String,
    },
    Mine(i64),
    Peer(String),
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `rpc`: one request built from the input.
pub fn request(data: &[u8]) {
    let Ok(choice) = Choice::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let fixture = fixture();
    let template = ROUTES[usize::from(choice.route) % ROUTES.len()];
    let mut target = template.replace("{}", &encode(&choice.segment));
    if let Some(query) = &choice.query {
        let raw = format!("{target}?{query}");
        target = if raw.parse::<Uri>().is_ok() {
            raw
        } else {
            format!("{target}?{}", encode(query))
        };
    }
    let method = match choice.method % 6 {
        0 | 1 => Method::GET,
        2 | 3 => Method::POST,
        4 => Method::PUT,
        _ => Method::OPTIONS,
    };
    let mut builder = Request::builder().method(method).uri(target.as_str());
    match choice.host % 4 {
        0 => {}
        1 => builder = builder.header("host", "127.0.0.1:8080"),
        2 => builder = builder.header("host", "localhost"),
        _ => builder = builder.header("host", "evil.example"),
    }
    match choice.content_type % 4 {
        0 => builder = builder.header("content-type", "application/json"),
        1 => builder = builder.header("content-type", "text/plain"),
        2 => builder = builder.header("content-type", "application/json; charset=utf-8"),
        _ => {}
    }
    let body = match choice.body {
        BodyChoice::None => Body::empty(),
        BodyChoice::Raw(bytes) => Body::from(bytes),
        BodyChoice::Tx {
            from,
            to,
            amount,
            fee,
            nonce,
            memo,
            signature,
        } => Body::from(
            serde_json::json!({
                "from": from, "to": to, "amount": amount, "fee": fee,
                "nonce": nonce, "memo": memo, "signature": signature,
            })
            .to_string(),
        ),
        BodyChoice::Mine(blocks) => Body::from(serde_json::json!({ "blocks": blocks }).to_string()),
        BodyChoice::Peer(addr) => Body::from(serde_json::json!({ "addr": addr }).to_string()),
    };
    let Ok(request) = builder.body(body) else {
        return;
    };
    // Admin routes only from a foreign client: never a real dial or mining.
    let admin = template == "/v1/dev/mine" || template == "/v1/peers";
    let app = if admin {
        fixture.foreign_app.clone()
    } else {
        fixture.app.clone()
    };
    let streaming = template == "/v1/events";
    fixture.runtime.block_on(async move {
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        assert!(
            !status.is_server_error(),
            "{status} for {target} (a 5xx, or a panic above, is a bug)"
        );
        if !streaming {
            let read = tokio::time::timeout(
                Duration::from_secs(10),
                axum::body::to_bytes(response.into_body(), 16 << 20),
            )
            .await;
            let bytes = read.expect("body read within 10 s").expect("body reads");
            let _ = bytes.len();
        }
    });
}
