//! The wallet against a real node, both as real processes: `testnet node`
//! runs the node (the same library as `ledger-node`) on a regtest chain in a
//! temp dir with loopback ports, and `testnet wallet` runs the wallet (the
//! same code as `wallet-cli`). Blocks are mined on demand with
//! `POST /v1/dev/mine`, and the miner is dev account 9, so the balances of
//! the accounts under test move by exactly the amounts and fees sent.
//! Every wait polls a condition against a deadline; nothing sleeps blindly.

use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use wallet_cli::client::Client;

const PASSWORD: &str = "e2e password";
const DEADLINE: Duration = Duration::from_secs(60);
const MINER: usize = 9;

fn testnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_testnet"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns `Some`, or panics at the deadline.
fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    node::test_utils::wait_for_value(what, DEADLINE, check)
}

/// A node process with its temp dir; killed when dropped.
struct TestNode {
    child: Child,
    rpc_url: String,
    client: Client,
    dir: tempfile::TempDir,
}

impl TestNode {
    fn start() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let rpc_addr = format!("127.0.0.1:{}", free_port());
        let p2p_addr = format!("127.0.0.1:{}", free_port());
        let miner = ledger::chainspec::dev_accounts()[MINER]
            .address
            .to_bech32("dev");
        let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
        let child = testnet()
            .args(["node", "--chain", "regtest", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--rpc-addr",
                &rpc_addr,
                "--p2p-addr",
                &p2p_addr,
                "--no-discovery",
            ])
            .args(["--miner-address", &miner])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("testnet node starts");
        let rpc_url = format!("http://{rpc_addr}");
        let client = Client::new(&rpc_url, Duration::from_secs(10)).unwrap();
        let mut node = TestNode {
            child,
            rpc_url,
            client,
            dir,
        };
        wait_for("the node to be ready", || {
            if let Ok(Some(status)) = node.child.try_wait() {
                let log =
                    std::fs::read_to_string(node.dir.path().join("node.log")).unwrap_or_default();
                panic!("the node exited early ({status}):\n{log}");
            }
            node.client.ready().ok().filter(|ready| *ready)
        });
        node
    }

    fn keystore(&self) -> PathBuf {
        self.dir.path().join("keystore")
    }

    /// `testnet wallet` aimed at this node, with a password from the
    /// environment and no terminal.
    fn wallet(&self) -> Command {
        let mut command = testnet();
        command
            .arg("wallet")
            .env("LEDGER_RPC_URL", &self.rpc_url)
            .env("LEDGER_KEYSTORE", self.keystore())
            .env("LEDGER_PASSWORD", PASSWORD)
            .env("NO_COLOR", "1")
            .env_remove("LEDGER_PASSWORD_FILE")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.wallet()
            .args(args)
            .output()
            .expect("testnet wallet runs")
    }

    /// Runs with `--json`, expects exit 0, returns the parsed stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let output = self.run(&full);
        assert_eq!(
            code(&output),
            0,
            "wallet {args:?} failed: {}",
            stderr(&output)
        );
        parse(&output)
    }

    fn balance(&self, who: &str) -> u64 {
        self.json(&["balance", who])["balance"].as_u64().unwrap()
    }

    fn mempool_count(&self) -> usize {
        self.client.mempool().unwrap().count
    }

    fn mine(&self, blocks: u32) {
        self.client.mine(blocks).expect("mining on regtest");
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn parse(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn dev_address(index: usize) -> String {
    ledger::chainspec::dev_accounts()[index]
        .address
        .to_bech32("dev")
}

#[test]
fn new_key_send_wait_history_and_tx() {
    let node = TestNode::start();

    let created = node.json(&["new", "alice"]);
    let alice = created["address"].as_str().unwrap().to_string();
    let balance = node.json(&["balance", "alice"]);
    assert_eq!(balance["address"], alice.as_str());
    assert_eq!(balance["balance"], 0);
    assert_eq!(balance["pending_balance"], 0);
    assert_eq!(balance["nonce"], 0);

    let sender_before = node.balance("dev:0");

    // `send --wait` runs while the test mines the block that confirms it.
    let sending = node
        .wallet()
        .args([
            "--json", "send", "--from", "dev:0", "--to", "alice", "--amount", "1.5",
        ])
        .args([
            "--fee",
            "0.0001",
            "--memo",
            "e2e",
            "--wait",
            "--timeout",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the transfer to reach the mempool", || {
        (node.mempool_count() == 1).then_some(())
    });
    let pending = node.json(&["balance", "alice"]);
    assert_eq!(pending["balance"], 0);
    assert_eq!(pending["pending_balance"], 150_000_000);
    node.mine(1);
    let sent = sending.wait_with_output().unwrap();
    assert_eq!(code(&sent), 0, "{}", stderr(&sent));
    let sent = parse(&sent);
    assert_eq!(sent["from"], dev_address(0).as_str());
    assert_eq!(sent["to"], alice.as_str());
    assert_eq!(sent["amount"], 150_000_000);
    assert_eq!(sent["fee"], 10_000);
    assert_eq!(sent["nonce"], 0);
    assert_eq!(sent["block_height"], 1);
    let txid = sent["txid"].as_str().unwrap().to_string();
    assert_eq!(
        sent["block_hash"],
        node.client.status().unwrap().tip.to_hex().as_str()
    );

    // Both balances moved by exactly the amount and the fee.
    assert_eq!(node.balance("alice"), 150_000_000);
    assert_eq!(node.balance("dev:0"), sender_before - 150_000_000 - 10_000);
    let sender = node.json(&["balance", "dev:0"]);
    assert_eq!(sender["nonce"], 1);
    assert_eq!(sender["pending_balance"], sender["balance"]);

    // The human form shows coins and base units.
    let human = node.run(&["balance", "alice"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("1.5 coins (150000000 base units)"));

    for who in ["alice", "dev:0"] {
        let history = node.json(&["history", who]);
        let entries = history.as_array().unwrap();
        assert_eq!(entries.len(), 1, "{history}");
        assert_eq!(entries[0]["tx"]["txid"], txid.as_str());
        assert_eq!(entries[0]["status"], "confirmed");
    }

    let shown = node.json(&["tx", &txid]);
    assert_eq!(shown["status"], "confirmed");
    assert_eq!(shown["block_height"], 1);
    assert_eq!(shown["confirmations"], 1);
    assert_eq!(shown["tx"]["txid"], txid.as_str());
    assert_eq!(shown["tx"]["memo"], "e2e");
    assert_eq!(shown["tx"]["amount"], 150_000_000);
    let human = node.run(&["tx", &txid]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("confirmed"));

    let status = node.json(&["status"]);
    assert_eq!(status["chain"], "regtest");
    assert_eq!(status["height"], 1);
}

#[test]
fn rejections_typos_wrong_password_and_dry_run() {
    let node = TestNode::start();
    node.json(&["new", "poor"]);

    // Insufficient funds: exit 4 and the node's code, on stderr and in JSON.
    let rejected = node.run(&["send", "--from", "poor", "--to", "dev:1", "--amount", "1"]);
    assert_eq!(code(&rejected), 4, "{}", stderr(&rejected));
    assert!(
        stderr(&rejected).contains("insufficient_funds"),
        "{}",
        stderr(&rejected)
    );
    let rejected = node.run(&[
        "--json", "send", "--from", "poor", "--to", "dev:1", "--amount", "1",
    ]);
    assert_eq!(code(&rejected), 4);
    assert_eq!(parse(&rejected)["error"]["code"], "insufficient_funds");

    // A wrong password: exit 6, keystore unchanged, nothing submitted.
    let key_file = node.keystore().join("poor.json");
    let before = std::fs::read(&key_file).unwrap();
    let wrong = node
        .wallet()
        .env("LEDGER_PASSWORD", "not the password")
        .args(["send", "--from", "poor", "--to", "dev:1", "--amount", "1"])
        .output()
        .unwrap();
    assert_eq!(code(&wrong), 6, "{}", stderr(&wrong));
    assert_eq!(std::fs::read(&key_file).unwrap(), before);

    // One character of the address changed: exit 2, nothing sent.
    let good = dev_address(1);
    let mut chars: Vec<char> = good.chars().collect();
    let position = chars.len() - 8;
    chars[position] = if chars[position] == 'q' { 'p' } else { 'q' };
    let typo: String = chars.into_iter().collect();
    let mistyped = node.run(&["send", "--from", "dev:0", "--to", &typo, "--amount", "1"]);
    assert_eq!(code(&mistyped), 2, "{}", stderr(&mistyped));
    assert!(
        stderr(&mistyped).contains("not a valid address"),
        "{}",
        stderr(&mistyped)
    );
    assert_eq!(node.mempool_count(), 0);
    assert_eq!(node.json(&["balance", "dev:0"])["next_nonce"], 0);

    // --dry-run --json: nothing is submitted, and its `raw` is accepted
    // by POST /v1/txs unchanged, under the same txid.
    let dry = node.json(&[
        "send",
        "--from",
        "dev:0",
        "--to",
        "dev:1",
        "--amount",
        "2",
        "--dry-run",
    ]);
    assert_eq!(node.mempool_count(), 0);
    let raw = dry["raw"].as_str().unwrap();
    let accepted = node
        .client
        .submit_raw(raw)
        .expect("the node accepts the dry run's raw bytes");
    assert_eq!(accepted.to_hex(), dry["txid"].as_str().unwrap());
    assert_eq!(node.mempool_count(), 1);

    // The smallest amount works, at the next nonce after the pending one.
    let receiver_before = node.balance("dev:1");
    let tiny = node.json(&[
        "send",
        "--from",
        "dev:0",
        "--to",
        "dev:1",
        "--amount",
        "0.00000001",
    ]);
    assert_eq!(tiny["amount"], 1);
    assert_eq!(tiny["nonce"], 1);
    node.mine(1);
    assert_eq!(node.balance("dev:1"), receiver_before + 200_000_000 + 1);

    // An unknown txid is "not found".
    let unknown = node.run(&["tx", &"ab".repeat(32)]);
    assert_eq!(code(&unknown), 3, "{}", stderr(&unknown));
}
