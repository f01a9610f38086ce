//! The wallet against a node it should not trust: a test double of the
//! API (status, account, submit) on loopback that can ask an absurd fee or
//! switch chains under the same URL. The wallet must refuse with exit 4
//! and a stable code, and send nothing.

use ledger::{BlockHash, ChainSpec, Transaction};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// What the double answers and what it was sent.
struct NodeState {
    genesis: BlockHash,
    min_fee: u64,
    submitted: Vec<Transaction>,
}

struct FakeNode {
    url: String,
    state: Arc<Mutex<NodeState>>,
}

impl FakeNode {
    fn start(genesis: BlockHash, min_fee: u64) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(NodeState {
            genesis,
            min_fee,
            submitted: Vec::new(),
        }));
        let shared = state.clone();
        // Ends with the test process; one request per connection.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &shared);
            }
        });
        FakeNode { url, state }
    }

    fn switch_chain(&self, genesis: BlockHash) {
        self.state.lock().unwrap().genesis = genesis;
    }

    fn submitted(&self) -> usize {
        self.state.lock().unwrap().submitted.len()
    }
}

fn serve(stream: TcpStream, state: &Mutex<NodeState>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; content_length];
    let _ = reader.read_exact(&mut body);
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let mut state = state.lock().unwrap();
    let (status, answer) = match (method, path) {
        ("GET", "/v1/status") => (
            200,
            json!({
                "chain": "fake", "genesis_hash": state.genesis, "height": 0,
                "tip": state.genesis, "total_work": "00".repeat(32), "target": "ff".repeat(32),
                "peers": 0, "mempool": 0, "min_fee": state.min_fee, "syncing": false,
                "mining": false, "node_id": "11".repeat(32), "version": "0.1.0",
            }),
        ),
        ("GET", path) if path.starts_with("/v1/accounts/") => {
            let address = path.trim_start_matches("/v1/accounts/");
            (
                200,
                json!({ "address": address, "balance": 1u64 << 60, "nonce": 0, "next_nonce": 0 }),
            )
        }
        ("POST", "/v1/txs") => {
            let body: Value = serde_json::from_slice(&body).unwrap();
            let raw = hex::decode(body["raw"].as_str().unwrap()).unwrap();
            let tx: Transaction = ledger::encoding::decode(&raw).unwrap();
            let txid = tx.txid();
            state.submitted.push(tx);
            (202, json!({ "txid": txid }))
        }
        _ => (
            404,
            json!({ "error": { "code": "not_found", "message": "no such route" } }),
        ),
    };
    let body = answer.to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn genesis_of(chain: &str) -> BlockHash {
    ChainSpec::builtin(chain).unwrap().genesis_hash()
}

fn wallet(keystore: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wallet-cli"))
        .env("NO_COLOR", "1")
        .env_remove("LEDGER_RPC_URL")
        .env_remove("LEDGER_PASSWORD_FILE")
        .arg("--keystore")
        .arg(keystore)
        .args(["--rpc-url", url, "--json"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the wallet binary runs")
}

fn send(keystore: &Path, url: &str, extra: &[&str]) -> Output {
    let mut args = vec!["send", "--from", "dev:0", "--to", "dev:1", "--amount", "1"];
    args.extend_from_slice(extra);
    wallet(keystore, url, &args)
}

#[track_caller]
fn assert_refused(output: &Output, code: &str) {
    assert_eq!(
        output.status.code(),
        Some(4),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["error"]["code"], code, "{answer}");
}

#[track_caller]
fn assert_sent(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A node asking a fee of 10^15 base units (10 million coins) gets
/// nothing, unless the user names a fee or raises the cap.
#[test]
fn a_fee_above_the_cap_is_refused_and_nothing_is_sent() {
    let keystore = tempfile::tempdir().unwrap();
    let node = FakeNode::start(genesis_of("regtest"), 1_000_000_000_000_000);
    assert_refused(&send(keystore.path(), &node.url, &[]), "fee_above_cap");
    assert_refused(
        &send(keystore.path(), &node.url, &["--max-fee", "1"]),
        "fee_above_cap",
    );
    assert_eq!(node.submitted(), 0, "nothing was sent");

    let sent = assert_sent(&send(keystore.path(), &node.url, &["--fee", "0.00001"]));
    assert_eq!(sent["fee"], 1_000);
    let sent = assert_sent(&send(
        keystore.path(),
        &node.url,
        &["--max-fee", "10000000"],
    ));
    assert_eq!(sent["fee"], 1_000_000_000_000_000u64);
    assert_eq!(node.submitted(), 2);
}

/// The first send pins the node's genesis for its URL; when the same URL
/// later serves another chain, the wallet refuses until the user names
/// the new genesis.
#[test]
fn a_node_that_switches_chains_is_refused() {
    let keystore = tempfile::tempdir().unwrap();
    let regtest = genesis_of("regtest");
    let dev = genesis_of("dev");
    let node = FakeNode::start(regtest, 1_000);
    let first = assert_sent(&send(keystore.path(), &node.url, &[]));
    assert_eq!(node.submitted(), 1);
    assert_eq!(
        node.state.lock().unwrap().submitted[0].txid().to_hex(),
        first["txid"].as_str().unwrap()
    );
    // The URL keeps its pin across runs; the key listing ignores the file.
    assert_sent(&send(keystore.path(), &node.url, &[]));
    let list = wallet(keystore.path(), &node.url, &["list"]);
    assert!(list.status.success());

    node.switch_chain(dev);
    assert_refused(&send(keystore.path(), &node.url, &[]), "chain_changed");
    assert_refused(
        &send(keystore.path(), &node.url, &["--dry-run"]),
        "chain_changed",
    );
    // Naming a genesis the node does not serve is refused too.
    let regtest_hex = regtest.to_hex();
    assert_refused(
        &send(
            keystore.path(),
            &node.url,
            &["--chain-genesis", &regtest_hex],
        ),
        "chain_changed",
    );
    assert_eq!(node.submitted(), 2, "nothing was sent to the other chain");

    // The user names the new chain: sent, and pinned from now on.
    let dev_hex = dev.to_hex();
    assert_sent(&send(
        keystore.path(),
        &node.url,
        &["--chain-genesis", &dev_hex],
    ));
    assert_sent(&send(keystore.path(), &node.url, &[]));
    assert_eq!(node.submitted(), 4);
    let last = node.state.lock().unwrap().submitted[3].clone();
    assert!(
        last.verify_signature(&dev).is_ok(),
        "signed for the chain the user named"
    );
}
