//! Router tests: every route through `oneshot` against a real node (sled in
//! a temp dir, sockets on loopback port 0), with its success answer and
//! each error code it can give.

use super::*;
use crate::{Node, RunningNode};
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use ledger::chainspec::{dev_accounts, dev_secret_key};
use ledger::json::{
    AccountJson, BlockJson, MempoolJson, MineResponse, StateJson, StatusJson, TxJson,
};
use ledger::Height;
use ledger::{Amount, BlockHash, ChainSpec, Transaction};
use serde_json::{json, Value};

const FEE: u64 = 1_000;

struct TestNode {
    _dir: tempfile::TempDir,
    node: RunningNode,
    config: NodeConfig,
}

impl TestNode {
    async fn start_with(spec: ChainSpec, adjust: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::for_tests(spec, dir.path());
        adjust(&mut config);
        let node = Node::start(config.clone()).await.unwrap();
        TestNode {
            _dir: dir,
            node,
            config,
        }
    }

    async fn regtest() -> TestNode {
        TestNode::start_with(ChainSpec::builtin("regtest").unwrap(), |_| {}).await
    }

    /// The router as a loopback client sees it.
    fn app(&self) -> Router {
        self.app_from(([127, 0, 0, 1], 40_000).into())
    }

    fn app_from(&self, client: SocketAddr) -> Router {
        router(RpcState::new(self.node.handle.clone(), &self.config)).layer(MockConnectInfo(client))
    }

    fn spec(&self) -> &ChainSpec {
        self.node.handle.spec()
    }

    fn transfer(&self, from: usize, to: usize, amount: u64, fee: u64, nonce: u64) -> Transaction {
        let genesis = self.spec().genesis_hash();
        ledger::testing::transfer(
            &genesis,
            from,
            ledger::testing::dev_address(to),
            amount,
            fee,
            nonce,
        )
    }

    fn tx_json(&self, tx: &Transaction) -> Value {
        serde_json::to_value(TxJson::from_tx(tx, self.spec())).unwrap()
    }

    fn address(&self, index: usize) -> String {
        self.spec().format_address(&dev_accounts()[index].address)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.app(), Request::get(path).body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        post_to(self.app(), path, body).await
    }

    async fn post_tx(&self, tx: &Transaction) -> (StatusCode, Value) {
        self.post("/v1/txs", self.tx_json(tx).to_string()).await
    }

    async fn mine(&self, blocks: u32) -> Vec<BlockHash> {
        let (status, body) = self
            .post("/v1/dev/mine", json!({ "blocks": blocks }).to_string())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value::<MineResponse>(body).unwrap().hashes
    }

    async fn stop(self) {
        self.node.shutdown().await;
    }
}

async fn post_to(app: Router, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    send(app, request).await
}

async fn send(app: Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

/// Asserts SPEC's error shape and code.
#[track_caller]
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.1
    );
    assert_eq!(answer.1.as_object().unwrap().len(), 1, "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_status() {
    let test = TestNode::regtest().await;
    assert_eq!(
        test.get("/health").await,
        (StatusCode::OK, json!({ "status": "ok" }))
    );
    assert_eq!(test.get("/ready").await.0, StatusCode::OK);
    let (status, body) = test.get("/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "chain",
        "genesis_hash",
        "height",
        "tip",
        "total_work",
        "target",
        "peers",
        "mempool",
        "min_fee",
        "syncing",
        "mining",
        "node_id",
        "version",
    ];
    expected.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, expected);
    let parsed: StatusJson = serde_json::from_value(body).unwrap();
    assert_eq!(parsed.chain, "regtest");
    assert_eq!(parsed.height, 0);
    assert_eq!(parsed.genesis_hash, test.spec().genesis_hash());
    assert_eq!(parsed.tip, parsed.genesis_hash);
    assert_eq!(parsed.min_fee, Amount::from_base_units(FEE));
    assert_eq!(parsed.node_id.len(), 64);
    // While shutting down the node is no longer ready.
    test.node.handle.shutdown_token().cancel();
    assert_error(
        &test.get("/ready").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_routes() {
    let test = TestNode::regtest().await;
    let hashes = test.mine(3).await;
    assert_eq!(hashes.len(), 3);

    let (status, body) = test.get("/v1/blocks?from=1&limit=2").await;
    assert_eq!(status, StatusCode::OK);
    let blocks: Vec<BlockJson> = serde_json::from_value(body).unwrap();
    assert_eq!(
        blocks.iter().map(|b| b.hash).collect::<Vec<_>>(),
        hashes[..2]
    );
    assert_eq!(blocks[0].height, 1);
    assert!(blocks[0].txs.is_some());
    let (_, body) = test.get("/v1/blocks").await;
    assert_eq!(body.as_array().unwrap().len(), 4, "genesis plus three");
    let (_, body) = test.get("/v1/blocks?from=100").await;
    assert_eq!(body, json!([]));
    assert_error(
        &test.get("/v1/blocks?from=-1").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test.get("/v1/blocks?limit=x").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test.get("/v1/blocks?frm=1").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );

    let (status, tip) = test.get("/v1/blocks/tip").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tip["hash"], json!(hashes[2]));
    for key in [
        "hash",
        "height",
        "prev_hash",
        "merkle_root",
        "timestamp",
        "target",
        "nonce",
        "miner",
        "reward",
        "txs",
    ] {
        assert!(tip.get(key).is_some(), "block lacks {key}");
    }
    assert_eq!(tip["miner"], json!(test.address(0)));

    let (status, by_height) = test.get("/v1/blocks/2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_height["hash"], json!(hashes[1]));
    let (status, by_hash) = test.get(&format!("/v1/blocks/{}", hashes[1])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_hash, by_height);
    let (_, genesis) = test.get("/v1/blocks/0").await;
    assert_eq!(genesis["hash"], json!(test.spec().genesis_hash()));

    assert_error(
        &test.get("/v1/blocks/99").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &test.get(&format!("/v1/blocks/{}", "ab".repeat(32))).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &test.get("/v1/blocks/xyz").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test.get(&format!("/v1/blocks/{}", "g".repeat(64))).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test.get("/v1/blocks/99999999999999999999").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_lookup_and_confirm() {
    let test = TestNode::regtest().await;
    let tx = test.transfer(1, 2, 5 * ledger::amount::COIN, FEE, 0);
    let (status, body) = test.post("/v1/txs", test.tx_json(&tx).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({ "txid": tx.txid() }));

    // Pending: lookup, account next_nonce, history, mempool.
    let (status, lookup) = test.get(&format!("/v1/txs/{}", tx.txid())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lookup["status"], "pending");
    assert_eq!(
        (
            &lookup["block_hash"],
            &lookup["block_height"],
            &lookup["confirmations"]
        ),
        (&Value::Null, &Value::Null, &json!(0))
    );
    assert_eq!(lookup["tx"], test.tx_json(&tx));
    let (_, account) = test.get(&format!("/v1/accounts/{}", test.address(1))).await;
    let account: AccountJson = serde_json::from_value(account).unwrap();
    assert_eq!((account.nonce, account.next_nonce), (0, 1));
    let (_, mempool) = test.get("/v1/mempool").await;
    let mempool: MempoolJson = serde_json::from_value(mempool).unwrap();
    assert_eq!((mempool.count, mempool.txids.clone()), (1, vec![tx.txid()]));
    assert!(mempool.bytes > 0);
    let (_, history) = test
        .get(&format!("/v1/accounts/{}/txs", test.address(2)))
        .await;
    assert_eq!(history[0]["status"], "pending");

    // The echoed txid/from keys are accepted, and the raw form works.
    let second = test.transfer(1, 2, 7, FEE, 1);
    let mut echoed = test.tx_json(&second);
    echoed["from"] = json!(test.address(1));
    let (status, _) = test.post("/v1/txs", echoed.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let third = test.transfer(1, 2, 9, FEE, 2);
    let raw = hex::encode(ledger::encoding::encode(&third));
    let (status, body) = test
        .post("/v1/txs", json!({ "raw": raw }).to_string())
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({ "txid": third.txid() }))
    );

    let hashes = test.mine(1).await;
    let (_, lookup) = test.get(&format!("/v1/txs/{}", tx.txid())).await;
    assert_eq!(lookup["status"], "confirmed");
    assert_eq!(
        (
            &lookup["block_hash"],
            &lookup["block_height"],
            &lookup["confirmations"]
        ),
        (&json!(hashes[0]), &json!(1), &json!(1))
    );
    let (_, account) = test.get(&format!("/v1/accounts/{}", test.address(2))).await;
    let expected = 1_000_000 * ledger::amount::COIN + 5 * ledger::amount::COIN + 16;
    assert_eq!(account["balance"], json!(expected));
    let (_, account) = test.get(&format!("/v1/accounts/{}", test.address(1))).await;
    assert_eq!(
        (account["nonce"].as_u64(), account["next_nonce"].as_u64()),
        (Some(3), Some(3))
    );
    let (_, history) = test
        .get(&format!("/v1/accounts/{}/txs?limit=2", test.address(1)))
        .await;
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[0]["status"], "confirmed");
    let (_, mempool) = test.get("/v1/mempool").await;
    assert_eq!(mempool["count"], 0);

    // State: supply is allocations plus one subsidy plus nothing else.
    let (status, state) = test.get("/v1/state").await;
    assert_eq!(status, StatusCode::OK);
    let state: StateJson = serde_json::from_value(state).unwrap();
    assert_eq!((state.height, state.tip), (Height(1), hashes[0]));
    let supply = test
        .spec()
        .total_allocated()
        .checked_add(test.spec().block_subsidy)
        .unwrap();
    assert_eq!(state.total_supply, supply);
    assert_eq!(state.digest.len(), 64);

    assert_error(
        &test.get(&format!("/v1/txs/{}", "00".repeat(32))).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &test.get("/v1/txs/nothex").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test.get("/v1/accounts/dev1notanaddress").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    let other_prefix = dev_accounts()[1].address.to_bech32("xyz");
    assert_error(
        &test.get(&format!("/v1/accounts/{other_prefix}")).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test.get("/v1/accounts/dev1x/txs").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test
            .get(&format!("/v1/accounts/{}/txs?limit=-3", test.address(1)))
            .await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test.get("/v1/mempool?limit=abc").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tx_error_code() {
    let test = TestNode::start_with(ChainSpec::builtin("regtest").unwrap(), |config| {
        config.mempool.max_txs = 3;
    })
    .await;
    // Confirm nonce 0 of account 1 so that nonce 0 becomes too low.
    assert_eq!(
        test.post_tx(&test.transfer(1, 2, 1, FEE, 0)).await.0,
        StatusCode::ACCEPTED
    );
    test.mine(1).await;
    assert_error(
        &test.post_tx(&test.transfer(1, 2, 1, FEE, 0)).await,
        StatusCode::CONFLICT,
        "nonce_too_low",
    );

    let pending = test.transfer(1, 2, 1, FEE, 1);
    assert_eq!(test.post_tx(&pending).await.0, StatusCode::ACCEPTED);
    assert_error(
        &test.post_tx(&pending).await,
        StatusCode::CONFLICT,
        "duplicate",
    );
    assert_error(
        &test.post_tx(&test.transfer(1, 2, 2, FEE + 50, 1)).await,
        StatusCode::CONFLICT,
        "replacement_underpriced",
    );
    assert_error(
        &test.post_tx(&test.transfer(1, 2, 1, FEE, 2 + 65)).await,
        StatusCode::CONFLICT,
        "nonce_too_high",
    );
    assert_error(
        &test
            .post_tx(&test.transfer(3, 2, 2_000_000 * ledger::amount::COIN, FEE, 0))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient_funds",
    );
    assert_error(
        &test.post_tx(&test.transfer(3, 2, 1, FEE - 1, 0)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "fee_too_low",
    );

    let mut forged = test.transfer(3, 2, 1, FEE, 0);
    forged.amount = Amount::from_base_units(2);
    assert_error(
        &test.post_tx(&forged).await,
        StatusCode::BAD_REQUEST,
        "bad_signature",
    );
    let dev_genesis = ChainSpec::builtin("dev").unwrap().genesis_hash();
    let other_chain = Transaction::new_signed(
        &dev_secret_key(3),
        &dev_genesis,
        dev_accounts()[2].address,
        Amount::from_base_units(1),
        Amount::from_base_units(FEE),
        0,
        String::new(),
    );
    assert_error(
        &test.post_tx(&other_chain).await,
        StatusCode::BAD_REQUEST,
        "wrong_chain",
    );
    assert_error(
        &test.post_tx(&test.transfer(3, 2, 0, FEE, 0)).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );

    // Fill the (3-tx) pool, then one more at the same fee cannot get in.
    assert_eq!(
        test.post_tx(&test.transfer(4, 2, 1, FEE, 0)).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        test.post_tx(&test.transfer(5, 2, 1, FEE, 0)).await.0,
        StatusCode::ACCEPTED
    );
    assert_error(
        &test.post_tx(&test.transfer(6, 2, 1, FEE, 0)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "mempool_full",
    );

    let metrics = send(
        test.app(),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await
    .1;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("ledger_txs_rejected_total{reason=\"mempool_full\"} 1"),
        "{text}"
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_spec_shaped() {
    let test = TestNode::regtest().await;
    let valid = test.tx_json(&test.transfer(1, 2, 10, FEE, 0));
    let with = |key: &str, value: Value| {
        let mut body = valid.clone();
        body[key] = value;
        body.to_string()
    };
    let cases: Vec<(&str, String)> = vec![
        ("malformed json", "{\"from_pubkey\": ".into()),
        ("not json", "hello".into()),
        ("empty", String::new()),
        ("array", "[1,2]".into()),
        ("wrong type", with("amount", json!("ten"))),
        ("wrong type nonce", with("nonce", json!(1.5))),
        ("unknown field", with("colour", json!("red"))),
        ("negative amount", with("amount", json!(-5))),
        (
            "overflowing amount",
            with("amount", json!(0)).replace("\"amount\":0", "\"amount\":18446744073709551616"),
        ),
        (
            "huge amount",
            with("amount", json!(0)).replace("\"amount\":0", "\"amount\":1e30"),
        ),
        ("overflowing sum", with("amount", json!(u64::MAX))),
        ("bad recipient", with("to", json!("dev1qqqqqqqqqq"))),
        (
            "recipient checksum",
            with("to", json!(test.address(2).replace('q', "p"))),
        ),
        ("short pubkey", with("from_pubkey", json!("abcd"))),
        (
            "bad signature hex",
            with("signature", json!("zz".repeat(64))),
        ),
        ("raw not hex", json!({ "raw": "xyz" }).to_string()),
        ("raw garbage", json!({ "raw": "00ff" }).to_string()),
        ("raw extra", json!({ "raw": "00", "x": 1 }).to_string()),
        (
            "missing field",
            json!({ "to": test.address(2) }).to_string(),
        ),
    ];
    for (name, body) in cases {
        let answer = test.post("/v1/txs", body).await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{name}: {}", answer.1);
        assert!(
            answer.1["error"]["code"] == "malformed",
            "{name}: {}",
            answer.1
        );
    }
    let huge = vec![b' '; 1 << 20];
    assert_error(
        &test.post("/v1/txs", huge.clone()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_error(
        &test.post("/v1/dev/mine", huge.clone()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_error(
        &test.post("/v1/peers", huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // Just under the cap is read (and then refused as not JSON).
    let almost = vec![b' '; BODY_LIMIT_BYTES - 1];
    assert_error(
        &test.post("/v1/txs", almost).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );

    assert_error(
        &test.get("/v1/nothing").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &test.get("/v1/txs").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &test.post("/v1/status", "{}").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // The node is still fine.
    assert_eq!(test.get("/health").await.0, StatusCode::OK);
    assert_eq!(
        test.post("/v1/txs", valid.to_string()).await.0,
        StatusCode::ACCEPTED
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_and_peers() {
    let test = TestNode::regtest().await;
    let (status, peers) = test.get("/v1/peers").await;
    assert_eq!((status, peers), (StatusCode::OK, json!([])));
    let (status, body) = test
        .post("/v1/peers", json!({ "addr": "127.0.0.1:9" }).to_string())
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({ "addr": "127.0.0.1:9" }))
    );
    assert_error(
        &test
            .post("/v1/peers", json!({ "addr": "nope" }).to_string())
            .await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test
            .post("/v1/peers", json!({ "address": "a:1" }).to_string())
            .await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test
            .post("/v1/dev/mine", json!({ "blocks": 0 }).to_string())
            .await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test
            .post("/v1/dev/mine", json!({ "blocks": -1 }).to_string())
            .await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_error(
        &test.post("/v1/dev/mine", "{").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );

    let remote = test.app_from(([10, 1, 2, 3], 5555).into());
    let answer = post_to(
        remote.clone(),
        "/v1/peers",
        json!({ "addr": "127.0.0.1:9" }).to_string(),
    )
    .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
    let answer = post_to(
        remote.clone(),
        "/v1/dev/mine",
        json!({ "blocks": 1 }).to_string(),
    )
    .await;
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
    // Public routes stay public.
    let (status, _) = send(
        remote,
        Request::get("/v1/status").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_required_from_everyone() {
    let test = TestNode::start_with(ChainSpec::builtin("regtest").unwrap(), |config| {
        config.rpc_admin_token = Some("s3cret".into());
    })
    .await;
    let mine = |app: Router, auth: Option<&str>| {
        let mut request = Request::post("/v1/dev/mine").header("content-type", "application/json");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        send(
            app,
            request
                .body(Body::from(json!({ "blocks": 1 }).to_string()))
                .unwrap(),
        )
    };
    let remote = test.app_from(([192, 168, 1, 9], 5555).into());
    assert_error(
        &mine(remote.clone(), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &mine(remote.clone(), Some("Bearer wrong")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &mine(test.app(), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, body) = mine(remote, Some("Bearer s3cret")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hashes"].as_array().unwrap().len(), 1);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mine_is_only_on_dev_chains() {
    let mut spec = ChainSpec::builtin("regtest").unwrap();
    spec.name = "private".into();
    let test = TestNode::start_with(spec, |config| {
        config.miner_address = Some(dev_accounts()[0].address);
    })
    .await;
    assert_error(
        &test
            .post("/v1/dev/mine", json!({ "blocks": 1 }).to_string())
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_is_spec_shaped() {
    let test = TestNode::start_with(ChainSpec::builtin("regtest").unwrap(), |config| {
        config.request_timeout = Duration::from_millis(20);
    })
    .await;
    // The same tower layers the router puts on its timed routes, around a
    // handler that never finishes.
    let state = RpcState::new(test.node.handle.clone(), &test.config);
    let app: Router = Router::new()
        .route("/slow", get(std::future::pending::<()>))
        .route_layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(timed_out(0)))
                .timeout(state.request_timeout),
        )
        .with_state(state);
    let answer = send(app, Request::get("/slow").body(Body::empty()).unwrap()).await;
    assert_error(&answer, StatusCode::SERVICE_UNAVAILABLE, "timeout");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_network_explorer_openapi() {
    let test = TestNode::regtest().await;
    test.mine(1).await;
    let (status, text) = test.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    for needle in [
        "ledger_height 1",
        "ledger_peers 0",
        "ledger_mempool_size 0",
        "ledger_blocks_accepted_total{branch=\"best\"} 1",
        "ledger_block_validation_seconds_count",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let (status, network) = test.get("/v1/network").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(network["node_id"], json!(test.node.handle.node_id()));
    let response = test
        .app()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, openapi) = test.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(openapi["openapi"], "3.0.3");
    test.stop().await;
}

/// The router and `openapi.json` list exactly the same routes, and every
/// listed route is really served (not answered by the fallbacks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_matches_router() {
    let document: Value = serde_json::from_str(openapi::OPENAPI_JSON).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut routed: Vec<(String, String)> = listed_routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    routed.sort();
    assert_eq!(documented, routed);

    // Every route answers a well-formed request, sent as a browser on
    // this machine or a script would (Host, JSON bodies), with its success
    // status, or for a lookup of something absent one of its documented
    // ones.
    let test = TestNode::regtest().await;
    let tx = test.transfer(1, 2, 10, FEE, 0);
    for (method, path) in routed {
        let concrete = path
            .replace("{id}", "0")
            .replace("{txid}", &"00".repeat(32))
            .replace("{address}", &test.address(0));
        let body = match (method.as_str(), path.as_str()) {
            ("POST", "/v1/txs") => test.tx_json(&tx).to_string(),
            ("POST", "/v1/peers") => json!({ "addr": "127.0.0.1:9" }).to_string(),
            ("POST", "/v1/dev/mine") => json!({ "blocks": 1 }).to_string(),
            _ => String::new(),
        };
        let request = Request::builder()
            .method(method.as_str())
            .uri(&concrete)
            .header("host", "127.0.0.1:8080")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let response = test.app().oneshot(request).await.unwrap();
        let status = response.status();
        let documented: Vec<u16> = document["paths"][&path][method.to_lowercase()]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|code| code.parse().unwrap())
            .collect();
        assert!(
            documented.contains(&status.as_u16()),
            "{method} {path} answered {status}, documented {documented:?}"
        );
        if path != "/v1/txs/{txid}" {
            assert!(status.is_success(), "{method} {path} answered {status}");
        }
        if path == "/v1/events" {
            continue;
        }
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("no route for"),
            "{method} {path} fell through: {text}"
        );
    }
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_blocks_and_txs() {
    use futures::StreamExt as _;
    let test = TestNode::regtest().await;
    let response = test
        .app()
        .oneshot(Request::get("/v1/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = response.into_body().into_data_stream();
    let tx = test.transfer(1, 2, 10, FEE, 0);
    assert_eq!(
        test.post("/v1/txs", test.tx_json(&tx).to_string()).await.0,
        StatusCode::ACCEPTED
    );
    let hashes = test.mine(1).await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(seen.contains("event: tx") && seen.contains("event: block")) {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events arrive in time")
            .expect("stream open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains(&tx.txid().to_string()), "{seen}");
    let block_line = seen
        .lines()
        .skip_while(|line| *line != "event: block")
        .nth(1)
        .and_then(|line| line.strip_prefix("data: "))
        .unwrap();
    let block: Value = serde_json::from_str(block_line).unwrap();
    assert_eq!(block["hash"], json!(hashes[0]));
    assert_eq!(block["tx_count"], 1);
    assert!(block.get("txs").is_none());
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_only_the_types_asked_for() {
    use futures::StreamExt as _;
    let test = TestNode::regtest().await;
    assert_error(
        &test.get("/v1/events?types=block,gossip").await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    let response = test
        .app()
        .oneshot(
            Request::get("/v1/events?types=block")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.into_body().into_data_stream();
    let tx = test.transfer(1, 2, 10, FEE, 0);
    assert_eq!(
        test.post("/v1/txs", test.tx_json(&tx).to_string()).await.0,
        StatusCode::ACCEPTED
    );
    test.mine(1).await;
    // The tx event would come first; the block's arrival shows it never did.
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: block") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events arrive in time")
            .expect("stream open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!seen.contains("event: tx"), "{seen}");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_app_answers_not_ready_until_the_node_is_built() {
    let (app, slot) = late_app();
    let get = |path: &str| send(app.clone(), Request::get(path).body(Body::empty()).unwrap());
    assert_eq!(
        get("/health").await,
        (StatusCode::OK, json!({ "status": "ok" }))
    );
    assert_error(
        &get("/ready").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    );
    assert_error(
        &get("/v1/status").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    );
    let test = TestNode::regtest().await;
    let _ = slot.set(test.app());
    assert_eq!(get("/ready").await.0, StatusCode::OK);
    assert_eq!(get("/v1/status").await.1["chain"], "regtest");
    test.stop().await;
}

/// A request as a browser would send it: with `Host` and, for a page of
/// another site, `Origin`.
fn browser_request(
    method: &str,
    path: &str,
    host: &str,
    origin: Option<&str>,
    content_type: &str,
    body: String,
) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("content-type", content_type);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.body(Body::from(body)).unwrap()
}

/// A cross-site attack: a page on another site posts `text/plain` (no
/// CORS preflight needed) to the loopback node's admin routes. Refused,
/// and nothing happens: no block, no dial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_admin_posts_are_refused_and_do_nothing() {
    let test = TestNode::regtest().await;
    let host = "127.0.0.1:8080";
    for (path, body) in [
        ("/v1/dev/mine", json!({ "blocks": 1 }).to_string()),
        (
            "/v1/peers",
            json!({ "addr": "198.51.100.7:7070" }).to_string(),
        ),
    ] {
        // A foreign Origin is refused first (403); without one, a body that
        // is not JSON is the wrong media type (415).
        for (origin, content_type, status, code) in [
            (Some("https://evil.example"), "text/plain", 403, "forbidden"),
            (
                Some("https://evil.example"),
                "application/json",
                403,
                "forbidden",
            ),
            (Some("null"), "text/plain", 403, "forbidden"),
            (None, "text/plain", 415, "unsupported_media_type"),
            (
                None,
                "application/x-www-form-urlencoded",
                415,
                "unsupported_media_type",
            ),
        ] {
            let request = browser_request("POST", path, host, origin, content_type, body.clone());
            let answer = send(test.app(), request).await;
            assert_error(&answer, StatusCode::from_u16(status).unwrap(), code);
        }
    }
    // Nothing was mined; and nothing was dialed, since the admin check is
    // the first thing either handler does (before the body is read).
    assert_eq!(
        test.node.handle.reader().tip().height,
        0,
        "nothing was mined"
    );
    // The same admin request as JSON from loopback with the right Host
    // (and the node's own Origin, as its explorer would send) works.
    for origin in [None, Some("http://127.0.0.1:8080")] {
        let request = browser_request(
            "POST",
            "/v1/dev/mine",
            host,
            origin,
            "application/json",
            json!({ "blocks": 1 }).to_string(),
        );
        let (status, body) = send(test.app(), request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(test.node.handle.reader().tip().height, 2);
    let request = browser_request(
        "POST",
        "/v1/peers",
        "localhost:8080",
        None,
        "application/json; charset=utf-8",
        json!({ "addr": "127.0.0.1:9" }).to_string(),
    );
    assert_eq!(send(test.app(), request).await.0, StatusCode::ACCEPTED);
    test.stop().await;
}

/// `POST /v1/peers` pins at most `--max-outbound` peers: with every slot
/// held by a connecting peer, another pin is refused with a code, not
/// accepted and silently dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_past_the_cap_is_refused_with_a_code() {
    let test = TestNode::start_with(ChainSpec::builtin("regtest").unwrap(), |config| {
        config.max_outbound = 2;
    })
    .await;
    // Loopback listeners that never answer the handshake: a dial to one
    // holds its slot until the handshake timeout.
    let silent: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let pin = |addr: std::net::SocketAddr| {
        browser_request(
            "POST",
            "/v1/peers",
            "127.0.0.1:8080",
            None,
            "application/json",
            json!({ "addr": addr.to_string() }).to_string(),
        )
    };
    for listener in &silent[..2] {
        let (status, body) = send(test.app(), pin(listener.local_addr().unwrap())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let refused = send(test.app(), pin(silent[2].local_addr().unwrap())).await;
    assert_error(&refused, StatusCode::CONFLICT, "too_many_pinned_peers");
    // Asking again for one already pinned is not a new pin.
    let again = send(test.app(), pin(silent[0].local_addr().unwrap())).await;
    assert_eq!(again.0, StatusCode::ACCEPTED);
    test.stop().await;
}

/// DNS rebinding: a page's own name pointed at 127.0.0.1 arrives as
/// `Host: evil.example`, and every route, reads included, refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_is_refused_on_every_route() {
    let test = TestNode::regtest().await;
    for path in ["/v1/status", "/v1/state", "/", "/v1/nothing", "/health"] {
        let request = Request::get(path)
            .header("host", "evil.example")
            .body(Body::empty())
            .unwrap();
        assert_error(
            &send(test.app(), request).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
    }
    let request = browser_request(
        "POST",
        "/v1/dev/mine",
        "evil.example:8080",
        None,
        "application/json",
        json!({ "blocks": 1 }).to_string(),
    );
    assert_error(
        &send(test.app(), request).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(test.node.handle.reader().tip().height, 0);
    for host in ["127.0.0.1:8080", "localhost", "[::1]:8080", "LOCALHOST:1"] {
        let request = Request::get("/v1/status")
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(test.app(), request).await.0, StatusCode::OK, "{host}");
    }
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_and_cors_origins_are_configurable() {
    let test = TestNode::start_with(ChainSpec::builtin("regtest").unwrap(), |config| {
        config.rpc_allowed_hosts = vec!["node1".into()];
        config.rpc_cors_origins = vec!["http://localhost:3000".into()];
    })
    .await;
    let get = |host: &str, origin: Option<&str>| {
        let mut request = Request::get("/v1/status").header("host", host);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        test.app().oneshot(request.body(Body::empty()).unwrap())
    };
    let response = get("node1:8080", None).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let response = get("127.0.0.1:8080", Some("http://localhost:3000"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let response = get("127.0.0.1:8080", Some("https://evil.example"))
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    // A CORS origin may read, but admin routes stay closed to it.
    let request = browser_request(
        "POST",
        "/v1/dev/mine",
        "127.0.0.1:8080",
        Some("http://localhost:3000"),
        "application/json",
        json!({ "blocks": 1 }).to_string(),
    );
    assert_error(
        &send(test.app(), request).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // Without CORS origins, no CORS headers at all.
    let plain = TestNode::regtest().await;
    let response = plain
        .app()
        .oneshot(
            Request::get("/v1/status")
                .header("origin", "http://localhost:3000")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    plain.stop().await;
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_pages_past_the_largest_height_are_malformed() {
    let test = TestNode::regtest().await;
    for query in [
        format!("from={}", u64::MAX),
        format!("from={}&limit=1", u64::MAX),
        format!("from={}&limit=100", u64::MAX - 50),
    ] {
        assert_error(
            &test.get(&format!("/v1/blocks?{query}")).await,
            StatusCode::BAD_REQUEST,
            "malformed",
        );
    }
    let (status, body) = test
        .get(&format!("/v1/blocks?from={}&limit=0", u64::MAX))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    test.stop().await;
}

/// History pages: the cursor of a full page leads to the next one, and
/// the pages together are the whole history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_history_pages_with_a_cursor() {
    let test = TestNode::regtest().await;
    for nonce in 0..5 {
        let tx = test.transfer(1, 2, 10, FEE, nonce);
        assert_eq!(test.post_tx(&tx).await.0, StatusCode::ACCEPTED);
        if nonce % 2 == 1 {
            test.mine(1).await;
        }
    }
    test.mine(1).await;
    let address = test.address(1);
    let (_, all) = test.get(&format!("/v1/accounts/{address}/txs")).await;
    assert_eq!(all.as_array().unwrap().len(), 5);
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/accounts/{address}/txs?limit=2&cursor={cursor}"),
            None => format!("/v1/accounts/{address}/txs?limit=2"),
        };
        let response = test
            .app()
            .oneshot(Request::get(&path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        cursor = response
            .headers()
            .get("next-cursor")
            .map(|value| value.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let page: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
        paged.extend(page);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(Value::Array(paged), all);
    assert_error(
        &test
            .get(&format!("/v1/accounts/{address}/txs?cursor=x"))
            .await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_with_a_full_queue_is_told_to_retry_later() {
    let test = TestNode::regtest().await;
    for nonce in 0..crate::handle::MAX_PENDING_PER_SENDER as u64 {
        let (status, body) = test.post_tx(&test.transfer(1, 2, 1, FEE, nonce)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "nonce {nonce}: {body}");
    }
    let next = test.transfer(1, 2, 1, FEE, crate::handle::MAX_PENDING_PER_SENDER as u64);
    let response = test
        .app()
        .oneshot(
            Request::post("/v1/txs")
                .header("content-type", "application/json")
                .body(Body::from(test.tx_json(&next).to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()[axum::http::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    // Refused, not taken: nothing of it is pending, and another sender
    // still gets in.
    assert_eq!(
        test.get(&format!("/v1/txs/{}", next.txid())).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        test.post_tx(&test.transfer(3, 2, 1, FEE, 0)).await.0,
        StatusCode::ACCEPTED
    );
    // Once a block takes the queue, the sender is welcome again.
    test.mine(1).await;
    assert_eq!(test.post_tx(&next).await.0, StatusCode::ACCEPTED);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tx_reads_as_dropped_with_its_reason() {
    let test = TestNode::regtest().await;
    let first = test.transfer(1, 2, 1, FEE, 0);
    let bumped = test.transfer(1, 2, 1, FEE * 2, 0);
    assert_eq!(test.post_tx(&first).await.0, StatusCode::ACCEPTED);
    assert_eq!(test.post_tx(&bumped).await.0, StatusCode::ACCEPTED);
    let (status, body) = test.get(&format!("/v1/txs/{}", first.txid())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "dropped");
    assert_eq!(body["reason"], "replaced");
    let (_, pending) = test.get(&format!("/v1/txs/{}", bumped.txid())).await;
    assert_eq!(pending["status"], "pending");
    assert!(pending.get("reason").is_none());
    let metrics = send(
        test.app(),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await
    .1;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("ledger_mempool_dropped_total{reason=\"replaced\"} 1"),
        "{metrics}"
    );
    test.stop().await;
}
