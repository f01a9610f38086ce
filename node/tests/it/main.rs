//! Process-level tests of the `ledger-node` binary: real processes, real
//! sockets on loopback (port 0, with the bound addresses read from the
//! banner), real sled in temp dirs, real signals.

mod in_process;
mod line_bench;

use ledger::chainspec::{dev_accounts, dev_secret_key, DEV_KEYS_WARNING};
use ledger::json::TxJson;
use ledger::Transaction;
use node::test_utils::{dev_address, regtest};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FEE: u64 = 1_000;
const COIN: u64 = ledger::amount::COIN;

/// A running `ledger-node` process.
struct NodeProcess {
    child: Child,
    rpc_url: String,
    banner: Vec<String>,
    http: reqwest::blocking::Client,
}

fn node_command(data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger-node"));
    command.arg("--data-dir").arg(data_dir);
    // Defaults for tests, unless the caller sets the same option.
    for (flag, value) in [
        ("--chain", "regtest"),
        ("--rpc-addr", "127.0.0.1:0"),
        ("--p2p-addr", "127.0.0.1:0"),
        ("--log", "warn"),
    ] {
        if !extra.contains(&flag) {
            command.args([flag, value]);
        }
    }
    command
        .arg("--no-discovery")
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("LEDGER_PEERS")
        .env_remove("LEDGER_MINE");
    command
}

impl NodeProcess {
    /// Starts the node and reads its banner until the RPC address appears.
    fn start(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        NodeProcess::start_with_env(data_dir, extra, &[])
    }

    fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> NodeProcess {
        let mut child = node_command(data_dir, extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ledger-node starts");
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut banner = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = received
                .recv_timeout(remaining)
                .expect("banner printed in time");
            let done = line.starts_with("WARNING");
            banner.push(line);
            if done {
                break;
            }
        }
        let rpc_addr = banner
            .iter()
            .find_map(|line| line.strip_prefix("rpc address:"))
            .expect("banner has the rpc address")
            .trim()
            .to_string();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        NodeProcess {
            child,
            rpc_url: format!("http://{rpc_addr}"),
            banner,
            http,
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.rpc_url))
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn post(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.rpc_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// Sends SIGTERM and waits (at most 5 s, as SPEC promises) for the exit.
    fn terminate(mut self) -> ExitStatus {
        send_sigterm(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node did not exit within 5 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM through the `kill` command, so the test needs no `unsafe`
/// (the workspace forbids it).
fn send_sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {pid} failed");
}

fn address(index: usize) -> String {
    regtest().format_address(&dev_accounts()[index].address)
}

/// A regtest transfer between dev accounts with the tests' fee.
fn transfer(from: usize, to: usize, amount: u64, nonce: u64) -> Transaction {
    let genesis = regtest().genesis_hash();
    node::test_utils::transfer(&genesis, from, dev_address(to), amount, FEE, nonce)
}

#[test]
fn transfer_mine_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let banner = node.banner.join("\n");
    assert!(banner.contains("chain:        regtest"), "{banner}");
    assert!(banner.contains(&regtest().genesis_hash().to_string()));
    assert!(banner.contains(&address(9)), "dev accounts are listed");
    assert!(banner.contains(&hex::encode(dev_secret_key(9).to_bytes())));
    assert!(banner.contains(DEV_KEYS_WARNING));
    assert!(banner.contains("mining:       off"));
    assert_eq!(node.get("/ready").0, 200);

    // Submit a dev-account transfer and see it pending.
    let tx = transfer(3, 4, 12 * COIN, 0);
    let body = serde_json::to_string(&TxJson::from_tx(&tx, &regtest())).unwrap();
    let (status, answer) = node.post("/v1/txs", body);
    assert_eq!((status, &answer), (202, &json!({ "txid": tx.txid() })));
    let (_, lookup) = node.get(&format!("/v1/txs/{}", tx.txid()));
    assert_eq!(lookup["status"], "pending");
    let (_, sender) = node.get(&format!("/v1/accounts/{}", address(3)));
    assert_eq!(
        (sender["nonce"].as_u64(), sender["next_nonce"].as_u64()),
        (Some(0), Some(1))
    );

    // Mine it.
    let (status, mined) = node.post("/v1/dev/mine", json!({ "blocks": 2 }).to_string());
    assert_eq!(status, 200, "{mined}");
    let hashes = mined["hashes"].as_array().unwrap().clone();
    assert_eq!(hashes.len(), 2);
    let (_, lookup) = node.get(&format!("/v1/txs/{}", tx.txid()));
    assert_eq!(lookup["status"], "confirmed");
    assert_eq!(lookup["block_hash"], hashes[0]);
    assert_eq!(lookup["block_height"], 1);
    assert_eq!(lookup["confirmations"], 2);
    let start_balance = 1_000_000 * COIN;
    let (_, sender) = node.get(&format!("/v1/accounts/{}", address(3)));
    assert_eq!(sender["balance"], json!(start_balance - 12 * COIN - FEE));
    assert_eq!(
        (sender["nonce"].as_u64(), sender["next_nonce"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, recipient) = node.get(&format!("/v1/accounts/{}", address(4)));
    assert_eq!(recipient["balance"], json!(start_balance + 12 * COIN));
    let (_, miner) = node.get(&format!("/v1/accounts/{}", address(0)));
    let subsidy = regtest().block_subsidy.base_units();
    assert_eq!(miner["balance"], json!(start_balance + 2 * subsidy + FEE));
    let (_, history) = node.get(&format!("/v1/accounts/{}/txs", address(4)));
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["tx"]["txid"], json!(tx.txid()));
    assert_eq!(history[0]["status"], "confirmed");
    let (_, state) = node.get("/v1/state");
    assert_eq!(state["height"], 2);
    assert_eq!(state["tip"], hashes[1]);
    let supply = regtest().total_allocated().base_units() + 2 * subsidy;
    assert_eq!(state["total_supply"], json!(supply));
    let (_, status) = node.get("/v1/status");

    // SIGTERM: exit 0 in time; a restart serves the same chain.
    let exit = node.terminate();
    assert!(exit.success(), "exit status {exit:?}");
    let node = NodeProcess::start(dir.path(), &[]);
    let (_, restarted_state) = node.get("/v1/state");
    assert_eq!(restarted_state, state);
    let (_, restarted_status) = node.get("/v1/status");
    assert_eq!(restarted_status["tip"], status["tip"]);
    assert_eq!(
        restarted_status["node_id"], status["node_id"],
        "the node key persists"
    );
    let (_, lookup) = node.get(&format!("/v1/txs/{}", tx.txid()));
    assert_eq!(lookup["status"], "confirmed");
    assert!(node.terminate().success());
}

#[test]
fn bad_input_never_takes_the_node_down() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let valid = serde_json::to_value(TxJson::from_tx(&transfer(1, 2, 10, 0), &regtest())).unwrap();
    let with = |key: &str, raw: &str| {
        let mut body = valid.clone();
        body[key] = json!("PLACEHOLDER");
        body.to_string().replace("\"PLACEHOLDER\"", raw)
    };
    let cases = [
        ("malformed json", "{\"to\": ".to_string()),
        ("wrong type", with("amount", "\"ten\"")),
        ("unknown field", with("extra", "1")),
        ("negative amount", with("amount", "-1")),
        ("overflowing amount", with("amount", "18446744073709551616")),
        ("overflowing fee", with("fee", "99999999999999999999999")),
        (
            "amount plus fee overflows",
            with("amount", "18446744073709551615"),
        ),
        ("invalid address", with("to", "\"dev1qqqqqq\"")),
    ];
    for (name, body) in cases {
        let (status, answer) = node.post("/v1/txs", body);
        assert_eq!(status, 400, "{name}: {answer}");
        assert_eq!(answer["error"]["code"], "malformed", "{name}: {answer}");
        assert!(answer["error"]["message"].is_string());
    }
    // An oversized body must come back as a 413 the client sees, not as a
    // reset while it is still sending; several times, since that is a race.
    for size in [1 << 20, 300 << 10, 4 << 20, 1 << 20, 1 << 20] {
        let (status, answer) = node.post("/v1/txs", vec![b'x'; size]);
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (413, Some("payload_too_large")),
            "{size} bytes"
        );
    }
    // A client that asks before sending gets the verdict without sending.
    let head = expect_continue_exchange(&node.rpc_url, 10 << 20);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    for (path, code, status) in [
        ("/v1/accounts/notanaddress", "malformed", 400),
        ("/v1/txs/1234", "malformed", 400),
        ("/v1/blocks/zz", "malformed", 400),
        (
            &format!("/v1/txs/{}", "ab".repeat(32)) as &str,
            "not_found",
            404,
        ),
        ("/v2/nothing", "not_found", 404),
    ] {
        let answer = node.get(path);
        assert_eq!(
            (answer.0, answer.1["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}"
        );
    }
    assert_eq!(node.get("/health"), (200, json!({ "status": "ok" })));
    let (status, _) = node.post("/v1/txs", valid.to_string());
    assert_eq!(status, 202, "still accepting after the bad input");
    assert!(node.terminate().success());
}

/// Sends only the head of a POST that declares `length` bytes and asks
/// `Expect: 100-continue`, and returns the first line of the answer.
fn expect_continue_exchange(rpc_url: &str, length: usize) -> String {
    use std::io::Write;
    let addr = rpc_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /v1/txs HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\nexpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// Unusable arguments exit non-zero with one line, before touching data.
#[test]
fn unusable_arguments_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str], data_dir: &Path| {
        let output = node_command(data_dir, extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        (output.status, stderr)
    };
    let fresh = dir.path().join("fresh");
    for extra in [
        &["--rpc-addr", "not-an-address"][..],
        &["--chain", "/nonexistent/chain.json"][..],
        &["--miner-address", "dev1bad"][..],
    ] {
        let (status, stderr) = run(extra, &fresh);
        assert!(!status.success(), "{extra:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{extra:?}: {stderr}");
        assert!(!fresh.exists(), "{extra:?} touched the data dir");
    }
    // Port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let (status, stderr) = run(&["--rpc-addr", &busy_addr], &fresh);
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&busy_addr), "{stderr}");
    assert!(!fresh.exists(), "port in use touched the data dir");

    // A data dir of another chain.
    let node = NodeProcess::start(&fresh, &[]);
    assert!(node.terminate().success());
    let (status, stderr) = run(&["--chain", "dev"], &fresh);
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("regtest"), "{stderr}");
}

/// Boolean flags read `1`, `yes`, `true`... from their environment
/// variables, as compose files write them.
#[test]
fn boolean_flags_from_environment() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_with_env(
        dir.path(),
        &[],
        &[("LEDGER_MINE", "1"), ("LEDGER_NO_DISCOVERY", "yes")],
    );
    assert!(
        node.banner
            .iter()
            .any(|line| line.starts_with("mining:       on")),
        "{:?}",
        node.banner
    );
    let (_, status) = node.get("/v1/status");
    assert_eq!(status["mining"], true);
    assert!(node.terminate().success());
}

#[test]
fn healthcheck_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let healthy = Command::new(env!("CARGO_BIN_EXE_ledger-node"))
        .args(["healthcheck", "--rpc-url", &node.rpc_url])
        .status()
        .unwrap();
    assert!(healthy.success());
    let url = node.rpc_url.clone();
    assert!(node.terminate().success());
    let down = Command::new(env!("CARGO_BIN_EXE_ledger-node"))
        .args(["healthcheck", "--rpc-url", &url])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!down.success());
}

/// The node turns transparent huge pages off for its own process
/// (`cli::run`): the kernel reports it in the process's status file.
#[cfg(target_os = "linux")]
#[test]
fn transparent_huge_pages_are_off_for_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    let thp = status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
        .map(str::trim);
    // Kernels before 5.0 do not report it; there is nothing to check then.
    if let Some(thp) = thp {
        assert_eq!(thp, "0", "{status}");
    }
    assert!(node.terminate().success());
}
